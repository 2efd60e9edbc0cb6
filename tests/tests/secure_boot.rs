//! Secure Boot end to end: OVMF's Secure Boot build (`OVMF_CODE_4M.secboot.fd`) with the
//! `NAME.vars.fd` that `vmseal build` wrote from keys of `vmseal keys new` is the oracle. The
//! signed `images/hello` must boot; the firmware must refuse (verdict `firmware-rejected`, the
//! stub never runs) the unsigned image, the signed image with one byte of `.guest` flipped,
//! and the image signed by a key that is not in db, and an image whose Authenticode hash is in
//! dbx. The Linux appliance (Debian's vendor-signed kernel plus the org signature vmseal adds)
//! boots with Secure Boot on and sees it enabled.
//!
//! One VM at a time (`vm_lock`); each boot has 240 s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vmseal::run::boot::{self, BootOptions, Verdict};
use vmseal_tests::{hello_elf, run, vm_lock, vmseal_bin};

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

/// Keys, a signed build, an unsigned build, a tampered and a foreign-signed image.
fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().expect("scratch dir");
        let root = dir.path().to_path_buf();
        let elf = hello_elf();
        let v = |args: &[&str]| {
            run(Command::new(vmseal_bin())
                .args(args)
                .current_dir(&root)
                .env("SOURCE_DATE_EPOCH", "1700000000"))
        };
        v(&["keys", "new", "--out", "keys", "--org", "vmseal e2e"]);
        v(&["keys", "new", "--out", "other", "--org", "Not Enrolled"]);
        std::fs::write(
            root.join("vmseal.toml"),
            format!(
                "[image]\nname = \"hello\"\nversion = \"0.1.0\"\nsize = \"16MiB\"\n\
                 [guest]\nelf = \"{}\"\ncmdline = \"greeting=hello\"\nmemory = \"16MiB\"\n\
                 console = \"on\"\n[signing]\nkeys = \"keys\"\n",
                elf.display()
            ),
        )
        .expect("manifest");
        v(&["-q", "build", "vmseal.toml", "--out", "signed"]);
        v(&[
            "-q",
            "build",
            "--unsigned",
            "vmseal.toml",
            "--out",
            "unsigned",
        ]);
        v(&[
            "sign",
            "unsigned/hello.img",
            "--key",
            "other/db.key",
            "--cert",
            "other/db.crt",
            "--out",
            "other.img",
        ]);
        // Flip one byte of .guest inside the signed image's ESP file: BOOTX64.EFI of a fresh
        // ESP is contiguous, so find the PE's first 4 KiB and check the whole file is there.
        let efi = std::fs::read(root.join("signed/hello.efi")).expect("efi");
        let lock: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join("signed/hello.lock.json")).expect("lock"),
        )
        .expect("lock json");
        let guest = lock["sections"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == ".guest"))
            .and_then(|s| s["pointer_to_raw_data"].as_u64())
            .expect(".guest in the lock file") as usize;
        let mut img = std::fs::read(root.join("signed/hello.img")).expect("img");
        let at = img
            .chunks(512)
            .position(|c| efi.starts_with(c) && c.starts_with(b"MZ"))
            .expect("BOOTX64.EFI in the image")
            * 512;
        assert_eq!(&img[at..at + efi.len()], &efi[..], "contiguous BOOTX64.EFI");
        let hits = [at + guest];
        img[hits[0] + 7] ^= 0x01;
        std::fs::write(root.join("tampered.img"), img).expect("tampered");
        Setup { _dir: dir, root }
    })
}

fn boot_with_org_vars(image: &Path, record: &str) -> boot::BootOutcome {
    let s = setup();
    let _vm = vm_lock();
    let opts = BootOptions {
        vars: Some(s.root.join("signed/hello.vars.fd")),
        secure_boot: true,
        timeout_secs: 240,
        ..BootOptions::new(image, s.root.join(record))
    };
    let outcome = boot::run(&opts).expect("the boot runner ran");
    eprintln!(
        "{}: {} ({}) in {:.1} s",
        image.display(),
        outcome.verdict(),
        outcome.decision.reason,
        outcome.elapsed.as_secs_f64()
    );
    outcome
}

fn assert_refused(image: &str) {
    let s = setup();
    let outcome = boot_with_org_vars(
        &s.root.join(image),
        &format!("run-{}", image.replace('/', "-")),
    );
    assert_eq!(
        outcome.verdict(),
        Verdict::FirmwareRejected,
        "{image}: {}",
        outcome.decision.reason
    );
    assert!(
        outcome.record.is_empty(),
        "{image}: the stub must not have run: {:?}",
        outcome.record
    );
    assert!(!outcome.console.contains("hello from vmseal guest"));
}

#[test]
fn signed_hello_boots_with_secure_boot_on() {
    let s = setup();
    let outcome = boot_with_org_vars(&s.root.join("signed/hello.img"), "run-signed");
    assert_eq!(
        outcome.verdict(),
        Verdict::Booted,
        "{}\n{}",
        outcome.decision.reason,
        outcome.console
    );
    assert!(outcome.console.contains("hello from vmseal guest"));
    // The signed build predicted this boot (its own store, Secure Boot on): pcr diff agrees.
    let diff = run(Command::new(vmseal_bin())
        .args(["pcr", "diff", "signed/hello.pcrs.json", "run-signed"])
        .current_dir(&s.root));
    assert!(diff.contains("0 differ"), "{diff}");
}

#[test]
fn firmware_refuses_the_unsigned_image() {
    assert_refused("unsigned/hello.img");
}

#[test]
fn firmware_refuses_a_flipped_guest_byte() {
    assert_refused("tampered.img");
}

#[test]
fn firmware_refuses_a_key_not_in_db() {
    assert_refused("other.img");
}

#[test]
fn firmware_refuses_an_image_whose_hash_is_in_dbx() {
    use signing::authenticode::{self, DigestAlgorithm};
    use signing::{efivar, keys, varstore};
    let s = setup();
    let efi = std::fs::read(s.root.join("signed/hello.efi")).expect("efi");
    let hash: [u8; 32] = authenticode::digest(&efi[..], DigestAlgorithm::Sha256)
        .expect("digest")
        .try_into()
        .expect("32 bytes");
    let k = s.root.join("keys");
    let cert = |n: &str| keys::load_cert(&k.join(n)).expect("cert");
    let (pk, kek, db) = (cert("PK.crt"), cert("KEK.crt"), cert("db.crt"));
    let owner = efivar::Guid::parse(
        std::fs::read_to_string(k.join("owner.guid"))
            .expect("owner")
            .trim(),
    )
    .expect("guid");
    let mut dbx = efivar::default_dbx();
    dbx.extend(efivar::sha256_list(owner, &[hash]));
    let template = std::fs::read("/usr/share/OVMF/OVMF_VARS_4M.fd").expect("template");
    let store = varstore::enroll(
        &template,
        varstore::OrgCerts {
            pk: &pk,
            kek: &kek,
            db: &db,
        },
        &varstore::EnrollOptions {
            owner,
            dbx: Some(dbx),
            ..Default::default()
        },
    )
    .expect("enroll");
    let vars = s.root.join("dbx.vars.fd");
    std::fs::write(&vars, store).expect("write store");
    // vmseal verify sees it too (exit 1, the dbx check named).
    let o = Command::new(vmseal_bin())
        .args(["verify", "signed/hello.img", "--vars", "dbx.vars.fd"])
        .current_dir(&s.root)
        .output()
        .expect("vmseal verify");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL dbx: revoked"));
    let _vm = vm_lock();
    let opts = BootOptions {
        vars: Some(vars),
        secure_boot: true,
        timeout_secs: 240,
        ..BootOptions::new(s.root.join("signed/hello.img"), s.root.join("run-dbx"))
    };
    let outcome = boot::run(&opts).expect("the boot runner ran");
    eprintln!(
        "dbx: {} ({}) in {:.1} s",
        outcome.verdict(),
        outcome.decision.reason,
        outcome.elapsed.as_secs_f64()
    );
    assert_eq!(outcome.verdict(), Verdict::FirmwareRejected);
    assert!(outcome.record.is_empty());
}

#[test]
fn signed_linux_appliance_boots_with_secure_boot_on() {
    let s = setup();
    let inputs = vmseal_tests::linux_inputs();
    let linux = vmseal_tests::repo_root().join("images/linux");
    let dir = s.root.join("linux");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("vmseal.toml"),
        format!(
            "[image]\nname = \"linux\"\nversion = \"0.1.0\"\nsize = \"64MiB\"\n[guest]\n\
             kernel = \"{}\"\ninitrd = \"{}\"\nos-release = \"{}\"\n\
             cmdline = \"console=ttyS0 quiet panic=-1\"\nmemory = \"256MiB\"\nconsole = \"on\"\n\
             [signing]\nkeys = \"../keys\"\n",
            inputs.join("vmlinuz").display(),
            inputs.join("initrd.img").display(),
            linux.join("os-release").display()
        ),
    )
    .expect("manifest");
    run(Command::new(vmseal_bin())
        .args(["-q", "build", "vmseal.toml", "--out", "out"])
        .current_dir(&dir));
    let _vm = vm_lock();
    let opts = BootOptions {
        vars: Some(dir.join("out/linux.vars.fd")),
        secure_boot: true,
        timeout_secs: 240,
        ..BootOptions::new(dir.join("out/linux.img"), dir.join("run"))
    };
    let outcome = boot::run(&opts).expect("the boot runner ran");
    eprintln!(
        "linux: {} ({}) in {:.1} s",
        outcome.verdict(),
        outcome.decision.reason,
        outcome.elapsed.as_secs_f64()
    );
    assert_eq!(outcome.verdict(), Verdict::Booted, "{}", outcome.console);
    assert!(
        outcome
            .console
            .contains("vmseal-secureboot enabled source=efivars"),
        "{}",
        outcome.console
    );
}
