//! PCR 11 of the Linux appliance, predicted by `vmseal build` (`NAME.pcrs.json`), equals what
//! systemd's own predictor computes from the same section contents:
//! `systemd-measure calculate --linux= --osrel= --cmdline= --initrd= --phase=` (systemd 252,
//! Debian 12; `/usr/lib/systemd/systemd-measure`). systemd-measure is an independent oracle:
//! vmseal's PCR 11 scheme is systemd-stub's (`policies::sections`).

use std::path::{Path, PathBuf};
use std::process::Command;

const SYSTEMD_MEASURE: &str = "/usr/lib/systemd/systemd-measure";

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `11:<bank>=<hex>` lines of `systemd-measure calculate`.
fn systemd_pcr11(dir: &Path, cmdline: &Path) -> Vec<(String, String)> {
    let linux = repo().join("images/linux");
    let mut cmd = Command::new(SYSTEMD_MEASURE);
    cmd.arg("calculate")
        .arg(format!("--linux={}", linux.join("out/vmlinuz").display()))
        .arg(format!("--osrel={}", linux.join("os-release").display()))
        .arg(format!("--cmdline={}", cmdline.display()))
        .arg(format!(
            "--initrd={}",
            linux.join("out/initrd.img").display()
        ))
        .arg("--phase=")
        .current_dir(dir);
    for bank in ["sha1", "sha256", "sha384", "sha512"] {
        cmd.arg(format!("--bank={bank}"));
    }
    let o = cmd.output().expect("run systemd-measure");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let (bank, value) = l.strip_prefix("11:")?.split_once('=')?;
            Some((bank.to_string(), value.to_ascii_lowercase()))
        })
        .collect()
}

#[test]
fn linux_pcr11_equals_systemd_measure() {
    assert!(
        Path::new(SYSTEMD_MEASURE).is_file(),
        "{SYSTEMD_MEASURE} is missing: install Debian's systemd package (scripts/setup.sh does)"
    );
    let linux = repo().join("images/linux");
    if !linux.join("out/vmlinuz").is_file() || !linux.join("out/initrd.img").is_file() {
        let st = Command::new("bash")
            .arg(linux.join("build.sh"))
            .status()
            .expect("bash");
        assert!(st.success(), "images/linux/build.sh failed");
    }
    let t = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(["-q", "build"])
        .arg(linux.join("vmseal.toml"))
        .arg("--out")
        .arg(t.path().join("out"))
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The .cmdline section's exact bytes, as the manifest gives them (no newline).
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(linux.join("vmseal.toml")).unwrap()).unwrap();
    let cmdline = manifest["guest"]["cmdline"]
        .as_str()
        .expect("guest.cmdline");
    let cmdline_file = t.path().join("cmdline");
    std::fs::write(&cmdline_file, cmdline).unwrap();

    let expected = systemd_pcr11(t.path(), &cmdline_file);
    assert_eq!(expected.len(), 4, "{expected:?}");
    let pcrs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path().join("out/linux.pcrs.json")).unwrap())
            .unwrap();
    for (bank, value) in &expected {
        assert_eq!(
            pcrs["pcrs"][bank]["11"].as_str(),
            Some(value.as_str()),
            "PCR 11 {bank}: vmseal's prediction differs from systemd-measure"
        );
    }
}
