//! Checks vmseal's keys, signatures and variable stores with tools vmseal did not write:
//! `openssl`, `sbverify`, `osslsigncode`, `cert-to-efi-sig-list` (efitools) and `virt-fw-vars`.
//! A test whose tool is not installed prints a notice and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use signing::keys::{Hierarchy, HierarchyParams, generate_hierarchy};

fn hierarchy() -> &'static Hierarchy {
    static H: OnceLock<Hierarchy> = OnceLock::new();
    H.get_or_init(|| {
        generate_hierarchy(&HierarchyParams::new("Oracle Org", 1_700_000_000)).unwrap()
    })
}

/// The keys written once into a directory shared by the tests of this binary.
fn key_dir() -> &'static Path {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let h = hierarchy();
        h.pk.write_files(d.path(), "pk").unwrap();
        h.kek.write_files(d.path(), "kek").unwrap();
        h.db.write_files(d.path(), "db").unwrap();
        d
    })
    .path()
}

/// Run `tool args`, echoing it; `None` (with a notice) if the tool is missing.
fn run(tool: &str, args: &[&str]) -> Option<(bool, String)> {
    eprintln!("+ {tool} {}", args.join(" "));
    match Command::new(tool).args(args).output() {
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            eprintln!("{text}");
            Some((o.status.success(), text))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("NOTICE: {tool} is not installed; skipping this oracle");
            None
        }
        Err(e) => panic!("{tool}: {e}"),
    }
}

fn p(path: PathBuf) -> String {
    path.to_string_lossy().into_owned()
}

#[test]
fn openssl_verifies_the_chain_and_shows_the_extensions() {
    let d = key_dir();
    let Some((ok, out)) = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            &p(d.join("pk.crt")),
            "-untrusted",
            &p(d.join("kek.crt")),
            &p(d.join("db.crt")),
        ],
    ) else {
        return;
    };
    assert!(ok && out.contains(": OK"), "{out}");
    let (ok, text) = run(
        "openssl",
        &["x509", "-noout", "-text", "-in", &p(d.join("db.crt"))],
    )
    .unwrap();
    assert!(ok);
    for needle in [
        "Subject: O = Oracle Org, CN = Oracle Org db",
        "Issuer: O = Oracle Org, CN = Oracle Org KEK",
        "X509v3 Basic Constraints: critical",
        "CA:FALSE",
        "X509v3 Key Usage: critical",
        "Digital Signature",
        "Code Signing",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let (_, text) = run(
        "openssl",
        &["x509", "-noout", "-text", "-in", &p(d.join("pk.crt"))],
    )
    .unwrap();
    assert!(
        text.contains("CA:TRUE") && text.contains("Certificate Sign, CRL Sign"),
        "{text}"
    );
    // The key file is PKCS#8 that openssl reads and that matches the certificate.
    let (ok, key_pub) = run("openssl", &["pkey", "-pubout", "-in", &p(d.join("db.key"))]).unwrap();
    assert!(ok);
    let (_, cert_pub) = run(
        "openssl",
        &["x509", "-noout", "-pubkey", "-in", &p(d.join("db.crt"))],
    )
    .unwrap();
    assert_eq!(key_pub, cert_pub);
}
