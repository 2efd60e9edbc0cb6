//! Secure Boot end to end: OVMF's Secure Boot build (`OVMF_CODE_4M.secboot.fd`) with the
//! `NAME.vars.fd` that `vmseal build` wrote from keys of `vmseal keys new` is the oracle. The
//! signed `images/hello` must boot; the firmware must refuse (verdict `firmware-rejected`, the
//! stub never runs) the unsigned image, the signed image with one byte of `.guest` flipped,
//! and the image signed by a key that is not in db.
//!
//! One VM at a time (`vm_lock`); each boot has 240 s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vmseal::boot::{self, BootOptions, Verdict};
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
