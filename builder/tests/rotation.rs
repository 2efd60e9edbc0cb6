//! Key rotation and revocation in the field, through the real `vmseal` binary and real boots
//! (QEMU + OVMF with Secure Boot on + swtpm): after `keys rotate` an image signed by the new db
//! key boots and the old one still does; after `keys append dbx --image OLD` the old image is
//! refused by the firmware and the new one boots; every boot measures PCR 7 exactly as
//! predicted from its store (`pcr diff` exit 0).
//!
//! The signed updates are checked by tools vmseal did not write: efitools' `sign-efi-sig-list
//! -a` produces the same `.auth` bytes from the same list, key and time; `hash-to-efi-sig-list`
//! computes the same Authenticode hash for the revoked image; `virt-fw-vars` applies the same
//! update (`--add-db`, `--add-dbx` of vmseal's own `.auth`) to the same entries.

mod common;
use common::{ok, text, tool};

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

const EPOCH: &str = "1700000000";
const EPOCH_TEXT: &str = "2023-11-14 22:13:20";

/// One VM at a time.
static VM: Mutex<()> = Mutex::new(());

fn vmseal(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal")
}

fn appliance(dir: &Path, keys: &str, greeting: &str) {
    common::sample_appliance(dir, greeting, &format!("[signing]\nkeys = \"{keys}\"\n"));
}

/// Boot `app/out/app.img` with `store` and Secure Boot on; returns the verdict. When it
/// booted, predict PCRs from the same store and `pcr diff` against the record (exit 0).
fn boot_with(root: &Path, app: &str, store: &str, run: &str) -> String {
    let _vm = VM.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let img = format!("{app}/out/app.img");
    let o = vmseal(
        &[
            "boot",
            &img,
            "--vars",
            store,
            "--secure-boot",
            "--record",
            run,
            "--timeout",
            "240",
        ],
        root,
    );
    let verdict = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if verdict == "booted" {
        let pred = format!("{run}.pcrs.json");
        let p = vmseal(&["pcr", "predict", &img, "--vars", store, "--json"], root);
        ok(&p);
        std::fs::write(root.join(&pred), &p.stdout).unwrap();
        let d = vmseal(&["pcr", "diff", &pred, run], root);
        assert!(
            d.status.success(),
            "{app} with {store}: pcr diff: {}",
            text(&d)
        );
    }
    verdict
}

fn efitools_append(root: &Path, var: &str, esl: &str, out: &str) -> Vec<u8> {
    let o = tool(
        Command::new("sign-efi-sig-list")
            .env("TZ", "UTC")
            .args([
                "-a",
                "-t",
                EPOCH_TEXT,
                "-k",
                "keys/KEK.key",
                "-c",
                "keys/KEK.crt",
            ])
            .args([var, esl, out])
            .current_dir(root),
    );
    assert!(o.status.success(), "sign-efi-sig-list: {}", text(&o));
    std::fs::read(root.join(out)).unwrap()
}

/// The entries of variable `name` in a store, as virt-fw-vars decodes them: (type, owner,
/// data) per signature, sorted.
fn entries(root: &Path, store: &str, name: &str) -> Vec<(String, String, String)> {
    let json = root.join(format!("{store}.json"));
    let o = tool(
        Command::new("virt-fw-vars")
            .args(["-i", store, "--output-json"])
            .arg(&json)
            .current_dir(root),
    );
    assert!(o.status.success(), "virt-fw-vars: {}", text(&o));
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let data = v["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .map(|x| hex::decode(x["data"].as_str().unwrap()).unwrap())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 28 <= data.len() {
        let ty = hex::encode(&data[at..at + 16]);
        let list = u32::from_le_bytes(data[at + 16..at + 20].try_into().unwrap()) as usize;
        let hdr = u32::from_le_bytes(data[at + 20..at + 24].try_into().unwrap()) as usize;
        let size = u32::from_le_bytes(data[at + 24..at + 28].try_into().unwrap()) as usize;
        let mut e = at + 28 + hdr;
        while e + size <= at + list {
            out.push((
                ty.clone(),
                hex::encode(&data[e..e + 16]),
                hex::encode(&data[e + 16..e + size]),
            ));
            e += size;
        }
        at += list;
    }
    out.sort();
    out
}

#[test]
fn rotate_then_revoke_boot_matrix() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    ok(&vmseal(
        &["keys", "new", "--out", "keys", "--org", "Rotation Org"],
        root,
    ));
    appliance(&root.join("old"), "../keys", "signed by the first db key");
    ok(&vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out"],
        &root.join("old"),
    ));
    std::fs::copy(root.join("old/out/app.vars.fd"), root.join("s0.fd")).unwrap();

    // Rotation: a new db key certified by the KEK, enrolled by a KEK-signed append.
    ok(&vmseal(
        &[
            "keys",
            "rotate",
            "--keys",
            "keys",
            "--out",
            "keys2",
            "--vars",
            "s0.fd",
            "--vars-out",
            "s1.fd",
        ],
        root,
    ));
    let o = tool(
        Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                "keys/PK.crt",
                "-untrusted",
                "keys/KEK.crt",
                "keys2/db.crt",
            ])
            .current_dir(root),
    );
    assert!(o.status.success(), "openssl verify: {}", text(&o));
    assert_eq!(
        std::fs::read(root.join("keys2/db-append.auth")).unwrap(),
        efitools_append(root, "db", "keys2/db.esl", "efitools-db.auth"),
        "db-append.auth != sign-efi-sig-list -a"
    );
    let owner = std::fs::read_to_string(root.join("keys/owner.guid")).unwrap();
    let o = tool(
        Command::new("virt-fw-vars")
            .args([
                "-i",
                "s0.fd",
                "--add-db",
                owner.trim(),
                "keys2/db.crt",
                "-o",
                "v1.fd",
            ])
            .current_dir(root),
    );
    assert!(o.status.success(), "virt-fw-vars --add-db: {}", text(&o));
    assert_eq!(entries(root, "s1.fd", "db"), entries(root, "v1.fd", "db"));
    assert_eq!(entries(root, "s1.fd", "db").len(), 2);

    appliance(
        &root.join("new"),
        "../keys2",
        "signed by the rotated db key",
    );
    ok(&vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out"],
        &root.join("new"),
    ));
    assert_eq!(boot_with(root, "old", "s1.fd", "run-old-s1"), "booted");
    assert_eq!(boot_with(root, "new", "s1.fd", "run-new-s1"), "booted");
    // Before the rotation reaches a device, the new image is refused there.
    assert_eq!(
        boot_with(root, "new", "s0.fd", "run-new-s0"),
        "firmware-rejected"
    );

    // Revocation: the old image's Authenticode hash into dbx.
    ok(&vmseal(
        &[
            "keys",
            "append",
            "dbx",
            "--keys",
            "keys",
            "--image",
            "old/out/app.img",
            "--out",
            "dbx-old.auth",
            "--vars",
            "s1.fd",
            "--vars-out",
            "s2.fd",
        ],
        root,
    ));
    let o = tool(
        Command::new("hash-to-efi-sig-list")
            .args(["old/out/app.efi", "efitools-hash.esl"])
            .current_dir(root),
    );
    assert!(o.status.success(), "hash-to-efi-sig-list: {}", text(&o));
    let efitools_hash = std::fs::read(root.join("efitools-hash.esl")).unwrap();
    let auth = std::fs::read(root.join("dbx-old.auth")).unwrap();
    assert_eq!(
        auth[auth.len() - 32..],
        efitools_hash[efitools_hash.len() - 32..]
    );
    // The same list (vmseal's owner) signed by efitools: the same .auth.
    let esl = &auth[auth.len() - 76..];
    std::fs::write(root.join("dbx-old.esl"), esl).unwrap();
    assert_eq!(
        auth,
        efitools_append(root, "dbx", "dbx-old.esl", "efitools-dbx.auth")
    );
    // virt-fw-vars applies vmseal's .auth to the same dbx entries.
    let o = tool(
        Command::new("virt-fw-vars")
            .args(["-i", "s1.fd", "--add-dbx", "dbx-old.auth", "-o", "v2.fd"])
            .current_dir(root),
    );
    assert!(o.status.success(), "virt-fw-vars --add-dbx: {}", text(&o));
    assert_eq!(entries(root, "s2.fd", "dbx"), entries(root, "v2.fd", "dbx"));
    assert_eq!(entries(root, "s2.fd", "dbx").len(), 2);

    assert_eq!(
        boot_with(root, "old", "s2.fd", "run-old-s2"),
        "firmware-rejected"
    );
    assert_eq!(boot_with(root, "new", "s2.fd", "run-new-s2"), "booted");
}

#[test]
fn bad_update_inputs_exit_2_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    ok(&vmseal(
        &["keys", "new", "--out", "keys", "--org", "Err Org"],
        root,
    ));
    let one_line = |args: &[&str], words: &[&str]| {
        let o = vmseal(args, root);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for w in words {
            assert!(err.contains(w), "{w:?} not in {err}");
        }
    };
    one_line(
        &[
            "keys",
            "append",
            "dbx",
            "--keys",
            "nokeys",
            "--sha256",
            &"ab".repeat(32),
            "--out",
            "x.auth",
        ],
        &["nokeys/owner.guid"],
    );
    one_line(
        &[
            "keys", "append", "dbx", "--keys", "keys", "--sha256", "abcd", "--out", "x.auth",
        ],
        &["--sha256", "64 hex digits"],
    );
    one_line(
        &[
            "keys",
            "append",
            "db",
            "--keys",
            "keys",
            "--cert",
            "keys/owner.guid",
            "--out",
            "x.auth",
        ],
        &["keys/owner.guid", "certificate"],
    );
    one_line(
        &[
            "keys",
            "append",
            "dbx",
            "--keys",
            "keys",
            "--image",
            "keys/PK.der",
            "--out",
            "x.auth",
        ],
        &["keys/PK.der"],
    );
    one_line(
        &[
            "keys",
            "append",
            "dbx",
            "--keys",
            "keys",
            "--sha256",
            &"ab".repeat(32),
            "--out",
            "x.auth",
            "--vars",
            "keys/PK.der",
            "--vars-out",
            "y.fd",
        ],
        &["keys/PK.der", "variable store"],
    );
    assert!(!root.join("x.auth").exists() && !root.join("y.fd").exists());
    // Rotating into a directory that holds a db key is refused (keys are never overwritten).
    one_line(
        &["keys", "rotate", "--keys", "keys", "--out", "keys"],
        &["already exists"],
    );
}
