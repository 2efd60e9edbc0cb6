//! Org keys and Secure Boot, through the real `vmseal` binary, checked with tools vmseal did
//! not write: `openssl verify` (the PK → KEK → db chain), `sbverify` and `osslsigncode
//! verify` (Authenticode), `mcopy` (mtools: the file in the ESP), `virt-fw-vars` (the
//! variable store) and `objcopy` (the `.linux` section). A missing tool fails the test
//! (scripts/setup.sh installs them).

mod common;
use common::tool;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const EPOCH: &str = "1700000000";

fn vmseal(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal")
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn keys_new(dir: &Path, out: &str, org: &str) -> PathBuf {
    let o = vmseal(&["keys", "new", "--out", out, "--org", org], dir);
    ok(&o);
    dir.join(out)
}

/// A hello appliance in `dir` whose `[signing]` table is `signing`.
fn appliance(dir: &Path, signing: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("guest.elf"),
        vmseal::compose::init::sample_guest_elf("hello\r\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("vmseal.toml"),
        format!(
            "[image]\nname = \"app\"\nversion = \"1\"\nsize = \"16MiB\"\n[guest]\nelf = \"guest.elf\"\n\
             cmdline = \"x\"\nmemory = \"16MiB\"\nconsole = \"on\"\n{signing}"
        ),
    )
    .unwrap();
}

fn build(dir: &Path, out: &str, extra: &[&str]) -> Output {
    let mut args = vec!["-q", "build", "vmseal.toml", "--out", out];
    args.extend_from_slice(extra);
    vmseal(&args, dir)
}

fn esp_file(img: &Path, work: &Path) -> Vec<u8> {
    let dest = work.join("extracted.efi");
    let _ = std::fs::remove_file(&dest);
    let o = tool(
        Command::new("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(format!("{}@@{}", img.display(), 2048 * 512))
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .arg(&dest),
    );
    assert!(o.status.success(), "mcopy: {}", text(&o));
    std::fs::read(dest).unwrap()
}

#[test]
fn keys_new_writes_a_chain_openssl_accepts_with_private_keys_0600() {
    let t = tempfile::tempdir().unwrap();
    let k = keys_new(t.path(), "keys", "Acme Corp");
    let o = tool(
        Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(k.join("PK.crt"))
            .arg("-untrusted")
            .arg(k.join("KEK.crt"))
            .arg(k.join("db.crt")),
    );
    assert!(
        o.status.success() && text(&o).contains(": OK"),
        "{}",
        text(&o)
    );
    for n in ["PK", "KEK", "db"] {
        let mode = std::fs::metadata(k.join(format!("{n}.key")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{n}.key");
        for ext in ["crt", "der", "esl", "auth"] {
            assert!(k.join(format!("{n}.{ext}")).is_file(), "{n}.{ext}");
        }
        // PKCS#8 PEM, readable by openssl.
        let key = std::fs::read_to_string(k.join(format!("{n}.key"))).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
    let guid = std::fs::read_to_string(k.join("owner.guid")).unwrap();
    assert_eq!(guid.trim().len(), 36);
    assert_eq!(&guid[14..15], "4", "random version-4 GUID: {guid}");
    // Never overwritten: exit 2, one line, the keys unchanged.
    let before = std::fs::read(k.join("db.key")).unwrap();
    let o = vmseal(&["keys", "new", "--out", "keys"], t.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(k.join("db.key")).unwrap(), before);
    let o = vmseal(&["keys", "new", "--out", "k2", "--bits", "1024"], t.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!t.path().join("k2").exists());
}

#[test]
fn signed_build_passes_sbverify_osslsigncode_virt_fw_vars_and_is_reproducible() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let k = keys_new(d, "keys", "Acme Corp");
    appliance(&d.join("app"), "[signing]\nkeys = \"../keys\"\n");
    let app = d.join("app");
    ok(&build(&app, "o1", &[]));
    ok(&build(&app, "o2", &[]));
    let (o1, o2) = (app.join("o1"), app.join("o2"));
    for f in ["app.img", "app.efi", "app.vars.fd", "app.lock.json"] {
        assert_eq!(
            std::fs::read(o1.join(f)).unwrap(),
            std::fs::read(o2.join(f)).unwrap(),
            "{f} differs between two builds"
        );
    }
    let efi = o1.join("app.efi");
    let o = tool(
        Command::new("sbverify")
            .arg("--cert")
            .arg(k.join("db.crt"))
            .arg(&efi),
    );
    assert!(
        o.status.success() && text(&o).contains("Signature verification OK"),
        "{}",
        text(&o)
    );
    let o = tool(
        Command::new("sbverify")
            .arg("--cert")
            .arg(k.join("PK.crt"))
            .arg(&efi),
    );
    assert!(!o.status.success(), "sbverify trusted PK: {}", text(&o));
    // osslsigncode builds a full chain: its CA file is PK + KEK.
    let chain = common::ca_chain(&k, d);
    let o = tool(
        Command::new("osslsigncode")
            .args(["verify", "-CAfile"])
            .arg(&chain)
            .arg("-in")
            .arg(&efi),
    );
    assert!(
        o.status.success()
            && text(&o).contains("Signature verification: ok")
            && !text(&o).contains("MISMATCH"),
        "{}",
        text(&o)
    );
    // BOOTX64.EFI in the image is the same signed bytes.
    assert_eq!(
        esp_file(&o1.join("app.img"), d),
        std::fs::read(&efi).unwrap()
    );
    // The variable store, read by virt-fw-vars.
    let o = tool(
        Command::new("virt-fw-vars")
            .arg("--input")
            .arg(o1.join("app.vars.fd"))
            .args(["--print", "--verbose"]),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "subject CN=Acme Corp PK",
        "subject CN=Acme Corp KEK",
        "subject CN=Acme Corp db",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let o = tool(
        Command::new("virt-fw-vars")
            .arg("--input")
            .arg(o1.join("app.vars.fd"))
            .arg("--print"),
    );
    let out = text(&o);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{name} missing: {out}"))
            .to_string()
    };
    for v in ["PK", "KEK", "db", "dbx"] {
        assert!(line(v).contains("blob"), "{}", line(v));
    }
    assert!(line("SecureBootEnable").contains("ON"), "{out}");
    assert!(line("CustomMode").contains("off"), "{out}");
    // The lock file records both PE digests and the store.
    let lock: Value =
        serde_json::from_slice(&std::fs::read(o1.join("app.lock.json")).unwrap()).unwrap();
    let s = &lock["signing"];
    assert_eq!(
        s["signed_sha256"],
        hex::encode(sha2_256(&std::fs::read(&efi).unwrap()))
    );
    assert_ne!(s["unsigned_sha256"], s["signed_sha256"]);
    assert_eq!(
        s["vars"]["sha256"],
        hex::encode(sha2_256(&std::fs::read(o1.join("app.vars.fd")).unwrap()))
    );
    // vmseal verify: against the cert, against the store; exit 0.
    let o = vmseal(&["verify", "o1/app.img", "--cert", "../keys/db.crt"], &app);
    ok(&o);
    let o = vmseal(
        &["verify", "o1/app.img", "--vars", "o1/app.vars.fd", "--json"],
        &app,
    );
    ok(&o);
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["ok"], true);

    // --unsigned: no signature, no store; vmseal sign then gives the signed build's bytes.
    ok(&build(&app, "u", &["--unsigned"]));
    let u = app.join("u");
    assert!(!u.join("app.vars.fd").exists());
    let o = vmseal(&["verify", "u/app.img", "--cert", "../keys/db.crt"], &app);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL signature: appliance PE"));
    let o = vmseal(
        &[
            "sign",
            "u/app.img",
            "--key",
            "../keys/db.key",
            "--cert",
            "../keys/db.crt",
        ],
        &app,
    );
    ok(&o);
    assert_eq!(
        std::fs::read(u.join("app.img")).unwrap(),
        std::fs::read(o1.join("app.img")).unwrap(),
        "vmseal sign of an unsigned build = the signed build"
    );
    // Signed in place, NAME.efi next to the image is signed too: the signed build's bytes.
    assert_eq!(
        std::fs::read(u.join("app.efi")).unwrap(),
        std::fs::read(&efi).unwrap(),
        "vmseal sign NAME.img also signs NAME.efi"
    );
    // Without --keys there is no store to write.
    assert!(!u.join("app.vars.fd").exists());
    let ul: Value =
        serde_json::from_slice(&std::fs::read(u.join("app.lock.json")).unwrap()).unwrap();
    assert_eq!(ul["signing"]["signed_sha256"], s["signed_sha256"]);
    assert_eq!(ul["outputs"][1], lock["outputs"][1], "the image digest");
    assert_eq!(ul["outputs"][0], lock["outputs"][0], "the .efi digest");

    // With --keys: the store and the prediction too — those of the signed build.
    ok(&build(&app, "u2", &["--unsigned"]));
    let o = vmseal(
        &[
            "sign",
            "u2/app.img",
            "--key",
            "../keys/db.key",
            "--cert",
            "../keys/db.crt",
            "--keys",
            "../keys",
        ],
        &app,
    );
    ok(&o);
    for f in ["app.img", "app.efi", "app.vars.fd"] {
        assert!(
            std::fs::read(app.join("u2").join(f)).unwrap() == std::fs::read(o1.join(f)).unwrap(),
            "{f}: sign --keys of an unsigned build != the signed build"
        );
    }
    // The prediction: the same events and PCRs (its `sources` name other paths).
    let pcrs = |dir: &str| -> Value {
        serde_json::from_slice(&std::fs::read(app.join(dir).join("app.pcrs.json")).unwrap())
            .unwrap()
    };
    let (a, b) = (pcrs("u2"), pcrs("o1"));
    assert_eq!(a["pcrs"], b["pcrs"]);
    assert_eq!(a["events"], b["events"]);
    let o = vmseal(&["verify", "u/app.img", "--cert", "../keys/db.crt"], &app);
    ok(&o);

    // One byte of .guest flipped after signing: verify names the signature and the section.
    let mut pe = std::fs::read(&efi).unwrap();
    let guest = lock["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == ".guest")
        .unwrap()["pointer_to_raw_data"]
        .as_u64()
        .unwrap() as usize;
    pe[guest + 64] ^= 1;
    std::fs::write(o1.join("app.efi"), &pe).unwrap();
    let o = vmseal(&["verify", "o1/app.efi", "--cert", "../keys/db.crt"], &app);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAIL signature: appliance PE"), "{out}");
    assert!(out.contains("FAIL section .guest"), "{out}");
}

#[test]
fn signing_an_efi_updates_its_lock_file_and_twice_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keys_new(d, "keys", "Acme Corp");
    appliance(&d.join("app"), "[signing]\nkeys = \"../keys\"\n");
    let app = d.join("app");
    ok(&build(&app, "u", &["--unsigned"]));
    let sign = || {
        vmseal(
            &[
                "sign",
                "u/app.efi",
                "--key",
                "../keys/db.key",
                "--cert",
                "../keys/db.crt",
            ],
            &app,
        )
    };
    let o = sign();
    ok(&o);
    assert!(text(&o).contains("u/app.lock.json"), "{}", text(&o));
    let lock: Value =
        serde_json::from_slice(&std::fs::read(app.join("u/app.lock.json")).unwrap()).unwrap();
    let efi = lock["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["file"] == "app.efi")
        .unwrap();
    // The recorded digest and size are the signed file's (sha256sum reads it independently).
    let sum = tool(Command::new("sha256sum").arg(app.join("u/app.efi")));
    assert_eq!(
        efi["sha256"].as_str().unwrap(),
        &String::from_utf8_lossy(&sum.stdout)[..64]
    );
    assert_eq!(
        efi["size"].as_u64().unwrap(),
        std::fs::metadata(app.join("u/app.efi")).unwrap().len()
    );
    assert_eq!(
        lock["signing"]["cert_subject"],
        "CN=Acme Corp db,O=Acme Corp"
    );
    // Signing again with the same certificate: exit 2, one line, nothing changed.
    let before = (
        std::fs::read(app.join("u/app.efi")).unwrap(),
        std::fs::read(app.join("u/app.lock.json")).unwrap(),
    );
    let o = sign();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
    assert_eq!(std::fs::read(app.join("u/app.efi")).unwrap(), before.0);
    assert_eq!(
        std::fs::read(app.join("u/app.lock.json")).unwrap(),
        before.1
    );
}

#[test]
fn a_key_error_is_said_once() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keys_new(d, "keys", "Acme Corp");
    appliance(&d.join("app"), "[signing]\nkeys = \"../keys\"\n");
    ok(&build(&d.join("app"), "u", &["--unsigned"]));
    let o = vmseal(
        &[
            "sign",
            "app/u/app.efi",
            "--key",
            "keys/KEK.key",
            "--cert",
            "keys/db.crt",
            "--out",
            "x.efi",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(
        err.matches("does not match certificate").count(),
        1,
        "{err}"
    );
}

#[test]
fn a_certificate_without_key_usage_signs_with_a_warning_naming_the_risk() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keys_new(d, "keys", "Acme Corp");
    appliance(&d.join("app"), "[signing]\nkeys = \"../keys\"\n");
    ok(&build(&d.join("app"), "u", &["--unsigned"]));
    // openssl req -x509's default: no keyUsage, no extendedKeyUsage (firmware accepts it).
    let o = tool(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=plain",
            ])
            .args(["-days", "30", "-keyout", "plain.key", "-out", "plain.crt"])
            .current_dir(d),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = vmseal(
        &[
            "sign",
            "app/u/app.efi",
            "--key",
            "plain.key",
            "--cert",
            "plain.crt",
            "--out",
            "p.efi",
        ],
        d,
    );
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning:") && err.contains("no keyUsage"),
        "{err}"
    );
    assert!(err.contains("may sign anything"), "{err}");
    let o = tool(
        Command::new("sbverify")
            .args(["--cert", "plain.crt", "p.efi"])
            .current_dir(d),
    );
    assert!(o.status.success(), "sbverify: {}", text(&o));
}

#[test]
fn a_rebuild_removes_the_outputs_it_does_not_produce() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keys_new(d, "keys", "Acme Corp");
    appliance(&d.join("app"), "[signing]\nkeys = \"../keys\"\n");
    let app = d.join("app");
    ok(&build(&app, "out", &[]));
    assert!(app.join("out/app.vars.fd").exists() && app.join("out/app.pcrs.json").exists());
    // Unsigned into the same directory: the old store would enroll keys for another image.
    ok(&build(&app, "out", &["--unsigned"]));
    assert!(
        !app.join("out/app.vars.fd").exists(),
        "stale NAME.vars.fd left behind"
    );
    assert!(app.join("out/app.pcrs.json").exists());
    // Without a prediction: the old one would predict another image.
    ok(&build(&app, "out", &["--unsigned", "--no-predict"]));
    assert!(
        !app.join("out/app.pcrs.json").exists(),
        "stale NAME.pcrs.json left behind"
    );
    assert!(app.join("out/app.img").exists() && app.join("out/app.lock.json").exists());
}

fn sha2_256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}

#[test]
fn a_linux_kernel_gets_the_org_signature_next_to_the_vendor_one() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keys_new(d, "keys", "Acme Corp");
    keys_new(d, "vendor", "Vendor");
    // A vendor-signed "kernel": an appliance PE signed by another org.
    appliance(&d.join("seed"), "");
    ok(&build(&d.join("seed"), "o", &[]));
    ok(&vmseal(
        &[
            "sign",
            "seed/o/app.efi",
            "--key",
            "vendor/db.key",
            "--cert",
            "vendor/db.crt",
            "--out",
            "vmlinuz",
        ],
        d,
    ));
    std::fs::write(
        d.join("vmseal.toml"),
        "[image]\nname = \"lin\"\nversion = \"1\"\nsize = \"16MiB\"\n[guest]\nkernel = \"vmlinuz\"\n\
         memory = \"256MiB\"\nconsole = \"off\"\n[signing]\nkeys = \"keys\"\n",
    )
    .unwrap();
    ok(&vmseal(&["-q", "build", "vmseal.toml", "--out", "out"], d));
    let dump = d.join("linux.efi");
    let o = tool(
        Command::new("objcopy")
            .arg("--dump-section")
            .arg(format!(".linux={}", dump.display()))
            .arg(d.join("out/lin.efi"))
            .arg(d.join("scratch.efi")),
    );
    assert!(o.status.success(), "{}", text(&o));
    for keys in ["keys", "vendor"] {
        let o = tool(
            Command::new("sbverify")
                .arg("--cert")
                .arg(d.join(keys).join("db.crt"))
                .arg(&dump),
        );
        assert!(o.status.success(), "{keys}: {}", text(&o));
    }
    let o = vmseal(&["verify", "out/lin.img", "--cert", "keys/db.crt"], d);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok   signature: .linux kernel"));
}

/// `vmseal sign` with `key`/`cert` must exit 2 with one line and write nothing.
fn refused(dir: &Path, input: &str, key: &Path, cert: &Path, words: &str) {
    let before = std::fs::read(dir.join(input)).unwrap();
    let key = key.to_str().unwrap();
    let cert = cert.to_str().unwrap();
    let o = vmseal(
        &[
            "sign",
            input,
            "--key",
            key,
            "--cert",
            cert,
            "--out",
            "refused.out",
        ],
        dir,
    );
    assert_eq!(o.status.code(), Some(2), "{words}: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(words), "{words}: {err}");
    assert!(o.stdout.is_empty());
    assert!(!dir.join("refused.out").exists(), "{words}: output written");
    assert_eq!(std::fs::read(dir.join(input)).unwrap(), before);
    let strays: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".vmseal"))
        .collect();
    assert!(strays.is_empty(), "temporary files left: {strays:?}");
}

#[test]
fn bad_keys_and_bad_pes_exit_2_with_one_line_and_no_output() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let k = keys_new(d, "keys", "Acme Corp");
    let other = keys_new(d, "other", "Other");
    appliance(&d.join("app"), "");
    ok(&build(&d.join("app"), "o", &[]));
    std::fs::copy(d.join("app/o/app.efi"), d.join("app.efi")).unwrap();
    std::fs::copy(d.join("app/o/app.img"), d.join("app.img")).unwrap();
    let (db_key, db_crt) = (k.join("db.key"), k.join("db.crt"));
    refused(
        d,
        "app.efi",
        &other.join("db.key"),
        &db_crt,
        "does not match",
    );
    refused(
        d,
        "app.img",
        &other.join("db.key"),
        &db_crt,
        "does not match",
    );
    refused(
        d,
        "app.efi",
        &k.join("PK.key"),
        &k.join("PK.crt"),
        "codeSigning",
    );
    // An expired code-signing certificate (made by the library, not by vmseal's CLI).
    let mut p = signing::keys::HierarchyParams::new("Old", 1_000_000_000);
    p.not_after = 1_000_086_400;
    let old = signing::keys::generate_hierarchy(&p).unwrap();
    old.db.write_files(d, "old").unwrap();
    refused(
        d,
        "app.efi",
        &d.join("old.key"),
        &d.join("old.crt"),
        "not valid at this time",
    );
    // A truncated PE.
    let pe = std::fs::read(d.join("app.efi")).unwrap();
    std::fs::write(d.join("short.efi"), &pe[..pe.len() / 3]).unwrap();
    refused(d, "short.efi", &db_key, &db_crt, "short.efi");
    // Already signed by this certificate.
    ok(&vmseal(
        &[
            "sign",
            "app.efi",
            "--key",
            db_key.to_str().unwrap(),
            "--cert",
            db_crt.to_str().unwrap(),
            "--out",
            "signed.efi",
        ],
        d,
    ));
    refused(d, "signed.efi", &db_key, &db_crt, "already signed");
    // The same refusals from vmseal build: exit 2, one line, no output directory.
    appliance(
        &d.join("bad"),
        "[signing]\nkey = \"../other/db.key\"\ncert = \"../keys/db.crt\"\n",
    );
    let o = build(&d.join("bad"), "o", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("signing.cert") && err.contains("does not match"),
        "{err}"
    );
    assert!(!d.join("bad/o").exists());
}

/// The hex of one `openssl rsa -text` field as bytes.
fn rsa_field(dump: &str, name: &str) -> Vec<u8> {
    let mut hex = String::new();
    let mut on = false;
    for l in dump.lines() {
        if l.starts_with(name) {
            on = true;
            continue;
        }
        if on {
            if !l.starts_with(' ') {
                break;
            }
            hex.extend(l.trim().split(':').filter(|s| !s.is_empty()));
        }
    }
    let b = hex::decode(&hex).unwrap();
    // Drop the sign byte openssl prints.
    b.strip_prefix(&[0u8][..]).unwrap_or(&b).to_vec()
}

#[test]
fn no_private_key_byte_in_any_output_or_message() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let keys_out = vmseal(&["keys", "new", "--out", "keys"], d);
    ok(&keys_out);
    let k = d.join("keys");
    appliance(&d.join("app"), "[signing]\nkeys = \"../keys\"\n");
    let mut messages = vec![keys_out];
    messages.push(build(&d.join("app"), "o", &[]));
    messages.push(build(&d.join("app"), "u", &["--unsigned"]));
    let app = d.join("app");
    messages.push(vmseal(
        &[
            "sign",
            "u/app.img",
            "--key",
            "../keys/db.key",
            "--cert",
            "../keys/db.crt",
        ],
        &app,
    ));
    messages.push(vmseal(
        &[
            "sign",
            "u/app.img",
            "--key",
            "../keys/db.key",
            "--cert",
            "../keys/db.crt",
        ],
        &app,
    ));
    messages.push(vmseal(
        &[
            "sign",
            "u/app.img",
            "--key",
            "../keys/db.key",
            "--cert",
            "../keys/PK.crt",
        ],
        &app,
    ));
    messages.push(vmseal(
        &["vars", "--keys", "../keys", "--out", "v.fd"],
        &app,
    ));
    messages.push(vmseal(
        &["verify", "o/app.img", "--vars", "v.fd", "--json"],
        &app,
    ));
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    for n in ["PK", "KEK", "db"] {
        let pem = std::fs::read_to_string(k.join(format!("{n}.key"))).unwrap();
        for l in pem.lines().filter(|l| !l.starts_with("-----")) {
            secrets.push((format!("{n}.key PEM line"), l.as_bytes().to_vec()));
        }
        let o = tool(
            Command::new("openssl")
                .args(["rsa", "-noout", "-text", "-in"])
                .arg(k.join(format!("{n}.key"))),
        );
        let dump = String::from_utf8_lossy(&o.stdout).into_owned();
        for f in ["privateExponent:", "prime1:", "prime2:"] {
            let b = rsa_field(&dump, f);
            assert!(b.len() >= 64, "{n} {f}");
            // Any 32-byte window would do; the first and last 32 bytes, big- and
            // little-endian.
            let mut le = b.clone();
            le.reverse();
            for (tag, v) in [("be", &b), ("le", &le)] {
                secrets.push((format!("{n} {f} {tag} head"), v[..32].to_vec()));
                secrets.push((format!("{n} {f} {tag} tail"), v[v.len() - 32..].to_vec()));
            }
        }
    }
    let mut files = Vec::new();
    for dir in [app.join("o"), app.join("u"), app.clone(), k.clone()] {
        for e in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
            let p = e.path();
            if p.is_file() && p.extension().is_none_or(|x| x != "key") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 10, "{files:?}");
    let mut blobs: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
        .collect();
    for (i, m) in messages.iter().enumerate() {
        blobs.push((format!("command {i} stdout"), m.stdout.clone()));
        blobs.push((format!("command {i} stderr"), m.stderr.clone()));
    }
    for (what, blob) in &blobs {
        for (name, s) in &secrets {
            assert!(
                !blob.windows(s.len()).any(|w| w == s.as_slice()),
                "{name} found in {what}"
            );
        }
    }
}

#[test]
fn vars_writes_a_store_with_the_org_keys_and_optionally_microsofts() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keys_new(d, "keys", "Acme Corp");
    ok(&vmseal(
        &["vars", "--keys", "keys", "--out", "org.fd", "--microsoft"],
        d,
    ));
    let o = tool(
        Command::new("virt-fw-vars")
            .arg("--input")
            .arg(d.join("org.fd"))
            .args(["--print", "--verbose"]),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "subject CN=Acme Corp PK",
        "subject CN=Acme Corp KEK",
        "subject CN=Acme Corp db",
        "Microsoft Corporation KEK",
        "Microsoft Windows Production PCA",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert!(
        !out.contains("Debian"),
        "only Microsoft-owned entries are taken: {out}"
    );
    // Without --microsoft: no Microsoft entry.
    ok(&vmseal(&["vars", "--keys", "keys", "--out", "plain.fd"], d));
    let o = tool(
        Command::new("virt-fw-vars")
            .arg("--input")
            .arg(d.join("plain.fd"))
            .args(["--print", "--verbose"]),
    );
    assert!(!text(&o).contains("Microsoft"), "{}", text(&o));
    // A keys directory without owner.guid, a template that is no store: exit 2, one line.
    std::fs::remove_file(d.join("keys/owner.guid")).unwrap();
    let o = vmseal(&["vars", "--keys", "keys", "--out", "x.fd"], d);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("owner.guid"));
    assert!(!d.join("x.fd").exists());
}

#[test]
fn verify_exits_2_on_unreadable_input() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(d.join("junk.img"), vec![0u8; 4096]).unwrap();
    std::fs::write(d.join("c.crt"), b"not a cert").unwrap();
    for args in [
        &["verify", "missing.img", "--cert", "c.crt"][..],
        &["verify", "junk.img", "--cert", "c.crt"][..],
        &["verify", "junk.img"][..],
    ] {
        let o = vmseal(args, d);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).lines().count(),
            1,
            "{args:?}"
        );
    }
}
