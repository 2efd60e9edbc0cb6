//! Boot-and-diff: build an example appliance, boot it with `vmseal boot --record` (QEMU, OVMF
//! and swtpm: the real firmware measures), and check that `vmseal pcr diff` of the build's
//! `NAME.pcrs.json` against the record exits 0 — the prediction from the image alone equals
//! what the firmware, the stub and the kernel measured, in every bank.
//!
//! Each test boots one VM; a lock keeps it to one at a time (a boot takes 10–60 s under TCG).
//! They need qemu-system-x86, ovmf and swtpm (`scripts/setup.sh` installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// One VM at a time.
static VM: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn vmseal(args: &[&std::ffi::OsStr]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal");
    eprintln!(
        "vmseal {:?}: {:?}\n{}{}",
        args,
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `images/NAME` with its payload built (`images/NAME/build.sh`); returns the folder.
fn example(name: &str) -> PathBuf {
    let dir = repo().join("images").join(name);
    let o = Command::new("bash")
        .arg(dir.join("build.sh"))
        .status()
        .expect("bash");
    assert!(o.success(), "images/{name}/build.sh failed");
    dir
}

/// The example's manifest for a copy in another directory: the service's ELF path (relative
/// to the example, `../attest/…`) made absolute. The guest's `out/NAME.elf` is copied beside
/// it by the caller.
fn relocated_manifest(example: &Path) -> String {
    let attest = example.join("../attest/out/attest.elf");
    std::fs::read_to_string(example.join("vmseal.toml"))
        .unwrap()
        .replace(
            "\"../attest/out/attest.elf\"",
            &format!("{:?}", attest.display().to_string()),
        )
}

/// `vmseal -q build MANIFEST --out OUT [extra…]`, which must succeed.
fn build(manifest: &Path, out: &Path, extra: &[&str]) {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "-q".as_ref(),
        "build".as_ref(),
        manifest.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    let o = vmseal(&args);
    assert!(
        o.status.success(),
        "vmseal build {} failed",
        manifest.display()
    );
}

/// Build `manifest` into `out`, boot `out/NAME.img`, diff; returns the diff's output.
fn build_boot_diff(manifest: &Path, name: &str, scratch: &Path) -> Output {
    let _vm = VM.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = scratch.join("out");
    build(manifest, &out, &[]);
    let img = out.join(format!("{name}.img"));
    let record = scratch.join("run");
    let o = vmseal(&[
        "boot".as_ref(),
        img.as_os_str(),
        "--record".as_ref(),
        record.as_os_str(),
        "--timeout".as_ref(),
        "240".as_ref(),
    ]);
    assert!(o.status.success(), "boot verdict is not booted");
    let record_log = std::fs::read_to_string(record.join("record.log")).unwrap_or_default();
    assert!(
        record.join("eventlog.bin").is_file() && record.join("pcrs.json").is_file(),
        "the record of {name} carries no event log or PCR values: {record_log}"
    );
    let pcrs = out.join(format!("{name}.pcrs.json"));
    vmseal(&[
        "pcr".as_ref(),
        "diff".as_ref(),
        pcrs.as_os_str(),
        record.as_os_str(),
    ])
}

#[test]
fn linux_appliance_boots_exactly_as_predicted() {
    let dir = example("linux");
    let t = tempfile::tempdir().unwrap();
    let o = build_boot_diff(&dir.join("vmseal.toml"), "linux", t.path());
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("identical: 12 PCR(s) × 4 bank(s)"),
        "{text}"
    );
}

#[test]
fn hello_appliance_boots_exactly_as_predicted() {
    let dir = example("hello");
    let t = tempfile::tempdir().unwrap();
    let o = build_boot_diff(&dir.join("vmseal.toml"), "hello", t.path());
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The same record against the prediction of a variant with another command line: the
    // diff must name the section, the PE and the disk (its GUIDs derive from the content).
    let variant = t.path().join("variant");
    std::fs::create_dir_all(variant.join("out")).unwrap();
    std::fs::copy(dir.join("out/hello.elf"), variant.join("out/hello.elf")).unwrap();
    let manifest = relocated_manifest(&dir).replace("greeting=hello", "greeting=tampered");
    std::fs::write(variant.join("vmseal.toml"), manifest).unwrap();
    let vout = variant.join("built");
    build(&variant.join("vmseal.toml"), &vout, &[]);
    let o = vmseal(&[
        "pcr".as_ref(),
        "diff".as_ref(),
        vout.join("hello.pcrs.json").as_os_str(),
        t.path().join("run").as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    for want in [
        "PCR 4: BOOTX64.EFI (the appliance PE) differs — expected Authenticode sha256",
        "PCR 5: the GPT differs — expected disk",
        "PCR 11: section .cmdline differs — expected sha256",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

/// A TPM set up by `swtpm_setup` with only the sha256 bank (its default): the prediction for
/// that bank alone equals the boot; and a variant whose guest differs in one byte is named.
#[test]
fn sha256_only_tpm_and_one_changed_guest_byte() {
    let dir = example("hello");
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build(&dir.join("vmseal.toml"), &out, &["--no-predict"]);
    let img = out.join("hello.img");
    let o = vmseal(&[
        "pcr".as_ref(),
        "predict".as_ref(),
        img.as_os_str(),
        "--bank".as_ref(),
        "sha256".as_ref(),
        "--json".as_ref(),
    ]);
    assert!(o.status.success(), "predict failed");
    let expected = t.path().join("sha256.pcrs.json");
    std::fs::write(&expected, &o.stdout).unwrap();
    let record = t.path().join("run");
    {
        let _vm = VM.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let o = vmseal(&[
            "boot".as_ref(),
            img.as_os_str(),
            "--record".as_ref(),
            record.as_os_str(),
            "--pcr-bank".as_ref(),
            "sha256".as_ref(),
            "--timeout".as_ref(),
            "240".as_ref(),
        ]);
        assert!(o.status.success(), "boot verdict is not booted");
    }
    let o = vmseal(&[
        "pcr".as_ref(),
        "diff".as_ref(),
        expected.as_os_str(),
        record.as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("identical: 12 PCR(s) × 1 bank(s)"),
        "{text}"
    );

    // One byte of the guest changed (its last, so the ELF stays valid): PCR 11 names .guest.
    let variant = t.path().join("variant");
    std::fs::create_dir_all(variant.join("out")).unwrap();
    let mut elf = std::fs::read(dir.join("out/hello.elf")).unwrap();
    *elf.last_mut().unwrap() ^= 0x01;
    std::fs::write(variant.join("out/hello.elf"), elf).unwrap();
    std::fs::write(variant.join("vmseal.toml"), relocated_manifest(&dir)).unwrap();
    let vout = variant.join("built");
    build(&variant.join("vmseal.toml"), &vout, &["--no-predict"]);
    let o = vmseal(&[
        "pcr".as_ref(),
        "predict".as_ref(),
        vout.join("hello.img").as_os_str(),
        "--bank".as_ref(),
        "sha256".as_ref(),
        "--json".as_ref(),
    ]);
    assert!(o.status.success(), "variant predict failed");
    let vexpected = t.path().join("variant.pcrs.json");
    std::fs::write(&vexpected, &o.stdout).unwrap();
    let o = vmseal(&[
        "pcr".as_ref(),
        "diff".as_ref(),
        vexpected.as_os_str(),
        record.as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("PCR 11: section .guest differs"),
        "missing the .guest explanation in\n{text}"
    );
}

/// QEMU with an extra, failing boot option first (an empty CD-ROM at bootindex 0): the diff
/// against the prediction names the cause.
#[test]
fn a_failed_boot_option_first_is_explained() {
    let dir = example("hello");
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build(&dir.join("vmseal.toml"), &out, &[]);
    let record = t.path().join("run");
    {
        let _vm = VM.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut opts = vmseal::run::boot::BootOptions::new(out.join("hello.img"), &record);
        opts.failed_boot_option_first = true;
        opts.timeout_secs = 240;
        let outcome = vmseal::run::boot::run(&opts).expect("the boot runner ran");
        assert_eq!(
            outcome.verdict(),
            vmseal::run::boot::Verdict::Booted,
            "{}",
            outcome.decision.reason
        );
    }
    let o = vmseal(&[
        "pcr".as_ref(),
        "diff".as_ref(),
        out.join("hello.pcrs.json").as_os_str(),
        record.as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("a boot option before the disk failed"),
        "missing the failed-boot-option explanation in\n{text}"
    );
}

#[test]
fn firmware_learn_reproduces_the_shipped_profile() {
    // The shipped profile was learned from a boot of images/linux; a probe boot of the
    // `vmseal init` starter must give the same firmware events (PCR 0-3 and 6 do not depend on
    // the image).
    let _vm = VM.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("p.json");
    let work = t.path().join("work");
    let o = vmseal(&[
        "-q".as_ref(),
        "firmware".as_ref(),
        "learn".as_ref(),
        "--code".as_ref(),
        "/usr/share/OVMF/OVMF_CODE_4M.fd".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--work".as_ref(),
        work.as_os_str(),
    ]);
    assert!(o.status.success());
    let learned = vmseal::measure::firmware::Profile::load(&out).unwrap();
    let shipped = vmseal::measure::firmware::Profile::embedded()
        .into_iter()
        .find(|(n, _)| *n == "debian-ovmf-2022.11")
        .unwrap()
        .1;
    assert_eq!(learned.firmware.sha256, shipped.firmware.sha256);
    assert_eq!(learned.events, shipped.events);
    // The learned template (format 2, cut from the probe's real log) is the shipped format 1
    // profile's fixed OVMF skeleton: the same events and slots in the same order, every bank.
    assert_eq!(learned.format, 2);
    let banks = policies::tcg::HashAlg::COMPUTED;
    assert_eq!(
        learned.steps(&banks).unwrap(),
        shipped.steps(&banks).unwrap()
    );
}

fn tool(cmd: &mut Command) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn secure_boot_hello_boots_exactly_as_predicted_with_the_db_authority() {
    // hello signed by sbsign with a throwaway key, put back into the ESP with mcopy, the cert
    // enrolled as PK/KEK/db by virt-fw-vars; OVMF_CODE_4M.secboot.fd verifies and measures.
    let dir = example("hello");
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let _vm = VM.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = d.join("out");
    build(&dir.join("vmseal.toml"), &out, &[]);
    let (key, crt) = (d.join("k.pem"), d.join("c.pem"));
    tool(
        Command::new("openssl")
            .args(["req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", "/CN=vmseal e2e db", "-days", "1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&crt),
    );
    let signed = d.join("signed.efi");
    tool(
        Command::new("sbsign")
            .arg("--key")
            .arg(&key)
            .arg("--cert")
            .arg(&crt)
            .arg("--output")
            .arg(&signed)
            .arg(out.join("hello.efi")),
    );
    let img = d.join("sb.img");
    std::fs::copy(out.join("hello.img"), &img).unwrap();
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("hello.lock.json")).unwrap()).unwrap();
    let offset = lock["disk"]["esp_first_lba"].as_u64().unwrap() * 512;
    tool(
        Command::new("mcopy")
            .arg("-o")
            .arg("-i")
            .arg(format!("{}@@{offset}", img.display()))
            .arg(&signed)
            .arg("::EFI/BOOT/BOOTX64.EFI"),
    );
    let vars = d.join("vars.fd");
    let g = "22222222-3333-4444-5555-666666666666";
    tool(
        Command::new("virt-fw-vars")
            .args(["-i", "/usr/share/OVMF/OVMF_VARS_4M.fd", "-o"])
            .arg(&vars)
            .args(["--set-pk", g])
            .arg(&crt)
            .args(["--add-kek", g])
            .arg(&crt)
            .args(["--add-db", g])
            .arg(&crt)
            .arg("--secure-boot"),
    );
    let o = vmseal(&[
        "pcr".as_ref(),
        "predict".as_ref(),
        "--json".as_ref(),
        img.as_os_str(),
        "--vars".as_ref(),
        vars.as_os_str(),
    ]);
    assert!(o.status.success());
    let expected = d.join("sb.pcrs.json");
    std::fs::write(&expected, &o.stdout).unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("certificate CN=vmseal e2e db"));
    assert_eq!(text.matches("EV_EFI_VARIABLE_AUTHORITY").count(), 1);
    let record = d.join("run");
    let o = vmseal(&[
        "boot".as_ref(),
        img.as_os_str(),
        "--vars".as_ref(),
        vars.as_os_str(),
        "--secure-boot".as_ref(),
        "--record".as_ref(),
        record.as_os_str(),
        "--timeout".as_ref(),
        "240".as_ref(),
    ]);
    assert!(o.status.success(), "Secure Boot refused the signed image?");
    let o = vmseal(&[
        "pcr".as_ref(),
        "diff".as_ref(),
        expected.as_os_str(),
        record.as_os_str(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The Secure Boot-off prediction of the same image against this boot: PCR 7 explained.
    let off = d.join("off.pcrs.json");
    let o = vmseal(&[
        "pcr".as_ref(),
        "predict".as_ref(),
        "--json".as_ref(),
        img.as_os_str(),
        "--secure-boot".as_ref(),
        "on".as_ref(),
    ]);
    assert!(o.status.success());
    std::fs::write(&off, &o.stdout).unwrap();
    let o = vmseal(&[
        "pcr".as_ref(),
        "diff".as_ref(),
        off.as_os_str(),
        record.as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    for want in [
        "PCR 7: SecureBoot differs — expected 0 (disabled), the firmware measured 1 (enabled)",
        "PCR 7: PK differs — expected absent (measured with no data), the firmware measured certificate CN=vmseal e2e db",
        "PCR 7: extra authority event — the firmware verified an image against certificate CN=vmseal e2e db",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}
