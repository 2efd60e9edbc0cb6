//! Secure Boot templates (after Hyper-V's): the org's keys alone or next to Microsoft's
//! certificates, taken from Debian's `OVMF_VARS_4M.ms.fd`. Checked with tools vmseal did not
//! write: `virt-fw-vars --print --verbose` lists the Microsoft certificates next to the org's;
//! `virt-fw-vars --extract-certs` + `openssl` give the digests the lock file records;
//! `sha256sum` the source store's; a real Secure Boot boot with the template store measures
//! PCR 7 exactly as predicted.

mod common;
use common::{ok, text, tool};

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const MS_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

fn vmseal(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal")
}

fn appliance(dir: &Path, signing: &str) {
    common::sample_appliance(
        dir,
        "hello under a template",
        &format!("[signing]\nkeys = \"../keys\"\n{signing}"),
    );
}

fn print_store(store: &Path) -> String {
    let o = tool(
        Command::new("virt-fw-vars")
            .arg("-i")
            .arg(store)
            .args(["--print", "--verbose"]),
    );
    assert!(o.status.success(), "virt-fw-vars: {}", text(&o));
    text(&o)
}

/// SHA-256 (hex) of the DER of each certificate `virt-fw-vars --extract-certs` finds in `store`
/// under variable `var` (file names `VAR-OWNER-SUBJECT.pem`), by openssl.
fn extracted(store: &Path, var: &str, dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let o = tool(
        Command::new("virt-fw-vars")
            .arg("-i")
            .arg(store)
            .arg("--extract-certs")
            .current_dir(dir),
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut out = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{var}-77fa9abd")) && n.ends_with(".pem"))
        .collect();
    names.sort();
    for n in names {
        let o = tool(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "openssl x509 -in '{n}' -outform der | openssl dgst -sha256 -r"
                ))
                .current_dir(dir),
        );
        out.push(String::from_utf8_lossy(&o.stdout)[..64].to_string());
    }
    out.sort();
    out
}

#[test]
fn templates_enroll_microsofts_certificates_next_to_the_orgs_and_boot_as_predicted() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    ok(&vmseal(
        &["keys", "new", "--out", "keys", "--org", "Template Org"],
        root,
    ));

    // org+microsoft-uefi-ca: build and `vmseal vars` write the same store.
    appliance(&root.join("uefi"), "template = \"org+microsoft-uefi-ca\"\n");
    ok(&vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out"],
        &root.join("uefi"),
    ));
    ok(&vmseal(
        &[
            "vars",
            "--keys",
            "keys",
            "--template",
            "org+microsoft-uefi-ca",
            "--out",
            "uefi.fd",
        ],
        root,
    ));
    let built = root.join("uefi/out/app.vars.fd");
    assert!(std::fs::read(&built).unwrap() == std::fs::read(root.join("uefi.fd")).unwrap());
    let listing = print_store(&built);
    for want in [
        "subject CN=Template Org PK",
        "subject CN=Template Org KEK",
        "subject CN=Template Org db",
        "Microsoft Corporation KEK CA 2011",
        "Microsoft Windows Production PCA 2011",
        "Microsoft Corporation UEFI CA 2011",
    ] {
        assert!(listing.contains(want), "{want}: {listing}");
    }
    assert!(
        !listing.contains("Debian"),
        "only Microsoft-owned entries: {listing}"
    );

    // The lock records the source store and every certificate taken, by digest.
    let lock: Value =
        serde_json::from_slice(&std::fs::read(root.join("uefi/out/app.lock.json")).unwrap())
            .unwrap();
    let tpl = &lock["signing"]["vars"]["template"];
    assert_eq!(tpl["name"], "org+microsoft-uefi-ca");
    let sum = tool(Command::new("sha256sum").arg(MS_VARS));
    assert_eq!(
        tpl["microsoft_vars"]["sha256"].as_str().unwrap(),
        &String::from_utf8_lossy(&sum.stdout)[..64]
    );
    let digests = |v: &Value| {
        let mut d: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["sha256"].as_str().unwrap().to_string())
            .collect();
        d.sort();
        d
    };
    assert_eq!(
        digests(&tpl["db"]),
        extracted(&built, "db", &root.join("x1"))
    );
    assert_eq!(
        digests(&tpl["kek"]),
        extracted(&built, "KEK", &root.join("x1"))
    );
    assert_eq!(tpl["db"].as_array().unwrap().len(), 2);

    // org+microsoft-windows: the Windows CA only in db.
    ok(&vmseal(
        &[
            "vars",
            "--keys",
            "keys",
            "--template",
            "org+microsoft-windows",
            "--out",
            "win.fd",
        ],
        root,
    ));
    let listing = print_store(&root.join("win.fd"));
    assert!(
        listing.contains("Microsoft Windows Production PCA 2011"),
        "{listing}"
    );
    assert!(
        listing.contains("Microsoft Corporation KEK CA 2011"),
        "{listing}"
    );
    assert!(!listing.contains("UEFI CA 2011"), "{listing}");
    // org-only: no Microsoft entry.
    ok(&vmseal(
        &["vars", "--keys", "keys", "--out", "org.fd"],
        root,
    ));
    assert!(!print_store(&root.join("org.fd")).contains("Microsoft"));

    // The prediction covers the template: a Secure Boot boot with the template store measures
    // exactly what the build predicted (PCR 7 holds the Microsoft certificates).
    let o = vmseal(
        &[
            "boot",
            "out/app.img",
            "--vars",
            "out/app.vars.fd",
            "--secure-boot",
            "--record",
            "run",
            "--timeout",
            "240",
        ],
        &root.join("uefi"),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "booted",
        "{}",
        text(&o)
    );
    let d = vmseal(
        &["pcr", "diff", "out/app.pcrs.json", "run"],
        &root.join("uefi"),
    );
    assert!(d.status.success(), "pcr diff: {}", text(&d));

    // An unknown template: one line, exit 2, naming the field and the choices.
    appliance(&root.join("bad"), "template = \"microsoft-only\"\n");
    let o = vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out"],
        &root.join("bad"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("signing.template") && err.contains("org+microsoft-uefi-ca"),
        "{err}"
    );
    assert!(!root.join("bad/out").exists());
}
