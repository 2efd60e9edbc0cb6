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

/// A real PE to sign: the stub if it was built, else a minimal PE32+ made here.
fn real_pe() -> Vec<u8> {
    let stub = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../stub-hypervisor/target/x86_64-unknown-uefi/release/stub-hypervisor.efi");
    if let Ok(b) = std::fs::read(&stub)
        && signing::authenticode::certificates(&b).is_ok_and(|c| c.is_empty())
    {
        return b;
    }
    println!(
        "NOTICE: {} not built; signing a minimal PE instead",
        stub.display()
    );
    minimal_pe()
}

fn minimal_pe() -> Vec<u8> {
    let mut f = vec![0u8; 0x400 + 3];
    f[0..2].copy_from_slice(b"MZ");
    f[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    f[0x40..0x44].copy_from_slice(b"PE\0\0");
    let coff = 0x44;
    f[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
    f[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
    f[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
    f[coff + 18..coff + 20].copy_from_slice(&0x2022u16.to_le_bytes());
    let opt = coff + 20;
    f[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    f[opt + 16..opt + 20].copy_from_slice(&0x1000u32.to_le_bytes()); // entry
    f[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes()); // section align
    f[opt + 36..opt + 40].copy_from_slice(&0x200u32.to_le_bytes()); // file align
    f[opt + 56..opt + 60].copy_from_slice(&0x2000u32.to_le_bytes()); // SizeOfImage
    f[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes());
    f[opt + 68..opt + 70].copy_from_slice(&10u16.to_le_bytes()); // EFI application
    f[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
    let t = opt + 240;
    f[t..t + 5].copy_from_slice(b".text");
    f[t + 8..t + 12].copy_from_slice(&0x200u32.to_le_bytes());
    f[t + 12..t + 16].copy_from_slice(&0x1000u32.to_le_bytes());
    f[t + 16..t + 20].copy_from_slice(&0x200u32.to_le_bytes());
    f[t + 20..t + 24].copy_from_slice(&0x200u32.to_le_bytes());
    f[t + 36..t + 40].copy_from_slice(&0x6000_0020u32.to_le_bytes());
    f[0x200] = 0xc3;
    f
}

#[test]
fn sbverify_and_osslsigncode_accept_a_signed_pe() {
    let h = hierarchy();
    let d = key_dir();
    let pe = real_pe();
    let signed = signing::authenticode::sign(&pe, &h.db).unwrap();
    assert_eq!(
        signed,
        signing::authenticode::sign(&pe, &h.db).unwrap(),
        "deterministic"
    );
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("signed.efi");
    std::fs::write(&path, &signed).unwrap();
    let mut tampered = signed.clone();
    tampered[0x300] ^= 0x01;
    let tpath = work.path().join("tampered.efi");
    std::fs::write(&tpath, &tampered).unwrap();
    let db_crt = p(d.join("db.crt"));
    if let Some((ok, out)) = run("sbverify", &["--cert", &db_crt, &p(path.clone())]) {
        assert!(ok && out.contains("Signature verification OK"), "{out}");
        let (ok, out) = run("sbverify", &["--cert", &db_crt, &p(tpath.clone())]).unwrap();
        assert!(!ok, "sbverify accepted a tampered image: {out}");
        let (ok, out) = run(
            "sbverify",
            &["--cert", &p(d.join("pk.crt")), &p(path.clone())],
        )
        .unwrap();
        assert!(!ok, "sbverify accepted an untrusted signer: {out}");
    }
    // osslsigncode builds a full OpenSSL chain (no partial chains), so its CA file holds the
    // hierarchy's root and intermediate: PK and KEK.
    let chain = work.path().join("chain.pem");
    let pem = [h.pk.cert.to_pem().unwrap(), h.kek.cert.to_pem().unwrap()].concat();
    std::fs::write(&chain, pem).unwrap();
    let chain = p(chain);
    if let Some((ok, out)) = run(
        "osslsigncode",
        &["verify", "-CAfile", &chain, "-in", &p(path.clone())],
    ) {
        assert!(
            out.contains("Calculated message digest") && !out.contains("MISMATCH"),
            "{out}"
        );
        assert!(ok && out.contains("Signature verification: ok"), "{out}");
        let (ok, out) = run(
            "osslsigncode",
            &["verify", "-CAfile", &chain, "-in", &p(tpath)],
        )
        .unwrap();
        assert!(!ok, "osslsigncode accepted a tampered image: {out}");
    }
    // The same signature from vmseal's own verifier.
    let rep = signing::authenticode::verify(&signed, std::slice::from_ref(&h.db.cert)).unwrap();
    assert!(rep.ok(), "{rep:?}");
    assert!(
        !signing::authenticode::verify(&tampered, std::slice::from_ref(&h.db.cert))
            .unwrap()
            .ok()
    );
}

#[test]
fn sbverify_reads_an_org_signature_added_after_a_vendor_one() {
    let h = hierarchy();
    let d = key_dir();
    let vendor = signing::authenticode::sign(&real_pe(), &h.kek).unwrap();
    let both = signing::authenticode::sign(&vendor, &h.db).unwrap();
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("both.efi");
    std::fs::write(&path, &both).unwrap();
    if let Some((ok, out)) = run("sbverify", &["--list", &p(path.clone())]) {
        assert!(
            ok && out.contains("signature 1") && out.contains("signature 2"),
            "{out}"
        );
        let (ok, out) = run("sbverify", &["--cert", &p(d.join("db.crt")), &p(path)]).unwrap();
        assert!(ok, "{out}");
    }
}

#[test]
fn efitools_make_the_same_signature_lists_and_auth_payloads() {
    use signing::efivar::{EfiTime, Guid, hierarchy_auth_files};
    let h = hierarchy();
    let d = key_dir();
    let owner = "11111111-2222-3333-4444-555555555555";
    let files = hierarchy_auth_files(
        h,
        Guid::parse(owner).unwrap(),
        EfiTime::from_unix(1_700_000_000).unwrap(),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    for (stem, ours) in [
        ("pk", &files.pk_esl),
        ("kek", &files.kek_esl),
        ("db", &files.db_esl),
    ] {
        let out = work.path().join(format!("{stem}.esl"));
        let Some((ok, text)) = run(
            "cert-to-efi-sig-list",
            &[
                "-g",
                owner,
                &p(d.join(format!("{stem}.crt"))),
                &p(out.clone()),
            ],
        ) else {
            return;
        };
        assert!(ok, "{text}");
        assert_eq!(
            &std::fs::read(&out).unwrap(),
            ours,
            "{stem}.esl differs from efitools'"
        );
    }
    // sign-efi-sig-list with the same timestamp: the whole .auth must be byte-identical
    // (PKCS#1 v1.5 is deterministic and both write a detached, attribute-less SignedData).
    for (var, stem, signer, ours) in [
        ("PK", "pk", "pk", &files.pk_auth),
        ("KEK", "kek", "pk", &files.kek_auth),
        ("db", "db", "kek", &files.db_auth),
    ] {
        let out = work.path().join(format!("{stem}.auth"));
        let (ok, text) = run(
            "sign-efi-sig-list",
            &[
                "-t",
                "2023-11-14 22:13:20",
                "-g",
                owner,
                "-k",
                &p(d.join(format!("{signer}.key"))),
                "-c",
                &p(d.join(format!("{signer}.crt"))),
                var,
                &p(work.path().join(format!("{stem}.esl"))),
                &p(out.clone()),
            ],
        )
        .unwrap();
        assert!(ok, "{text}");
        let theirs = std::fs::read(&out).unwrap();
        assert_eq!(&theirs[..40], &ours[..40], "{var}.auth header differs");
        assert_eq!(
            hex(&theirs),
            hex(ours),
            "{var}.auth differs from sign-efi-sig-list's"
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn virt_fw_vars_reads_the_enrolled_store() {
    use signing::efivar::Guid;
    use signing::varstore::{EnrollOptions, OrgCerts, enroll};
    let Ok(template) = std::fs::read("/usr/share/OVMF/OVMF_VARS_4M.fd") else {
        println!("NOTICE: /usr/share/OVMF/OVMF_VARS_4M.fd is not installed; skipping");
        return;
    };
    let ms = std::fs::read("/usr/share/OVMF/OVMF_VARS_4M.ms.fd").ok();
    let h = hierarchy();
    let owner = "5eed5eed-0000-4000-8000-00000000cafe";
    let opts = EnrollOptions {
        owner: Guid::parse(owner).unwrap(),
        microsoft_from: ms.as_deref(),
        template: if ms.is_some() {
            signing::varstore::Template::OrgMicrosoftUefiCa
        } else {
            signing::varstore::Template::OrgOnly
        },
        ..Default::default()
    };
    let certs = OrgCerts {
        pk: &h.pk.cert,
        kek: &h.kek.cert,
        db: &h.db.cert,
    };
    let out = enroll(&template, certs, &opts).unwrap();
    assert_eq!(out.len(), template.len());
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("out.fd");
    std::fs::write(&path, &out).unwrap();
    let json = work.path().join("vars.json");
    let Some((ok, text)) = run(
        "virt-fw-vars",
        &[
            "--input",
            &p(path.clone()),
            "--print",
            "--verbose",
            "--output-json",
            &p(json.clone()),
        ],
    ) else {
        return;
    };
    assert!(ok, "{text}");
    for needle in [
        "name=PK guid=guid:EfiGlobalVariable",
        "name=KEK guid=guid:EfiGlobalVariable",
        "name=db guid=guid:EfiImageSecurityDatabase",
        "name=dbx guid=guid:EfiImageSecurityDatabase",
        "name=SecureBootEnable",
        "name=CustomMode",
        "Oracle Org PK",
        "Oracle Org KEK",
        "Oracle Org db",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    if ms.is_some() {
        assert!(text.contains("Microsoft Corporation KEK CA 2011"), "{text}");
        assert!(
            text.contains("Microsoft Windows Production PCA 2011"),
            "{text}"
        );
    }
    let block = |name: &str| {
        let start = text.find(&format!("name={name} ")).unwrap();
        let rest = &text[start..];
        rest[..rest.find("\n\n").unwrap_or(rest.len())].to_owned()
    };
    assert!(
        block("SecureBootEnable").contains("bool: ON"),
        "{}",
        block("SecureBootEnable")
    );
    assert!(
        block("CustomMode").contains("bool: off"),
        "{}",
        block("CustomMode")
    );
    // The owner GUID of every org entry, from virt-fw-vars' JSON dump.
    let json = std::fs::read_to_string(&json).unwrap();
    let owner_hex = hex(&Guid::parse(owner).unwrap().0);
    for name in ["PK", "KEK", "db"] {
        let at = json.find(&format!("\"name\": \"{name}\"")).unwrap();
        let data_at = at + json[at..].find("\"data\": \"").unwrap() + 9;
        let data = &json[data_at..data_at + 200];
        assert_eq!(&data[56..88], owner_hex, "{name} owner in {data}");
    }
}
