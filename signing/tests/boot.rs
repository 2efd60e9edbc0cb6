//! A real Secure Boot check (ignored by default: it boots QEMU twice, a few minutes under TCG).
//! Run with `cargo test -p signing --test boot -- --ignored --nocapture`.
//!
//! OVMF (`OVMF_CODE_4M.secboot.fd`) with a variable store written by [`signing::varstore`]
//! must start a `BOOTX64.EFI` signed by the org db key and refuse the same binary unsigned.
//! Judged by OVMF's BDS lines on the serial console: `BdsDxe: starting Boot…` versus
//! `BdsDxe: failed to load Boot…: Access Denied`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use signing::keys::{HierarchyParams, generate_hierarchy};
use signing::varstore::{EnrollOptions, OrgCerts, enroll};

const CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
const VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

fn esp_with(efi: &[u8], dir: &Path, name: &str) -> std::path::PathBuf {
    let img = dir.join(name);
    let efi_path = dir.join(format!("{name}.efi"));
    std::fs::write(&efi_path, efi).unwrap();
    std::fs::write(&img, vec![0u8; 16 << 20]).unwrap();
    let i = img.to_string_lossy().into_owned();
    for args in [
        vec!["mformat", "-i", &i, "::"],
        vec!["mmd", "-i", &i, "::/EFI", "::/EFI/BOOT"],
        vec![
            "mcopy",
            "-i",
            &i,
            &efi_path.to_string_lossy(),
            "::/EFI/BOOT/BOOTX64.EFI",
        ],
    ] {
        eprintln!("+ {}", args.join(" "));
        let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
        assert!(st.success());
    }
    img
}

/// Boot `disk` once; return the serial log when a BDS verdict line appears (or at timeout).
fn boot(disk: &Path, vars: &[u8], dir: &Path, tag: &str) -> String {
    let vars_path = dir.join(format!("{tag}.vars.fd"));
    std::fs::write(&vars_path, vars).unwrap();
    let log = dir.join(format!("{tag}.serial.log"));
    let args = [
        "-machine".to_owned(),
        "q35,smm=on".into(),
        "-accel".into(),
        "tcg".into(),
        "-m".into(),
        "256".into(),
        "-global".into(),
        "driver=cfi.pflash01,property=secure,value=on".into(),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=0,readonly=on,file={CODE}"),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars_path.display()),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", log.display()),
        "-drive".into(),
        format!("if=none,format=raw,id=d0,file={}", disk.display()),
        "-device".into(),
        "virtio-blk-pci,drive=d0,bootindex=0".into(),
    ];
    eprintln!("+ qemu-system-x86_64 {}", args.join(" "));
    let mut child = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut text = String::new();
    while start.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_secs(2));
        text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        if text.contains("BdsDxe: starting") || text.contains("Access Denied") {
            std::thread::sleep(Duration::from_secs(3));
            text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("--- {tag} serial ---\n{text}");
    text
}

#[test]
#[ignore = "boots QEMU (minutes); run with --ignored"]
fn ovmf_secure_boot_starts_the_signed_and_refuses_the_unsigned_binary() {
    if !Path::new(CODE).exists()
        || Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_err()
    {
        println!("NOTICE: OVMF secboot or QEMU missing; skipping");
        return;
    }
    let stub = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../stub-hypervisor/target/x86_64-unknown-uefi/release/stub-hypervisor.efi");
    let Ok(efi) = std::fs::read(&stub) else {
        println!("NOTICE: {} not built; skipping", stub.display());
        return;
    };
    let h = generate_hierarchy(&HierarchyParams::new("Boot Org", 1_700_000_000)).unwrap();
    let vars = enroll(
        &std::fs::read(VARS).unwrap(),
        OrgCerts {
            pk: &h.pk.cert,
            kek: &h.kek.cert,
            db: &h.db.cert,
        },
        &EnrollOptions::default(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let signed = signing::authenticode::sign(&efi, &h.db).unwrap();
    let good = esp_with(&signed, dir.path(), "signed.img");
    let bad = esp_with(&efi, dir.path(), "unsigned.img");
    let out = boot(&good, &vars, dir.path(), "signed");
    assert!(
        out.contains("BdsDxe: starting Boot0001"),
        "the signed binary was not started:\n{out}"
    );
    assert!(!out.contains("Access Denied"), "{out}");
    let out = boot(&bad, &vars, dir.path(), "unsigned");
    assert!(
        out.contains("Access Denied"),
        "the unsigned binary was not refused:\n{out}"
    );
}
