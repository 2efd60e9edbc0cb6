//! Boot-and-diff for the Linux appliance (Debian's cloud kernel + a busybox initrd,
//! `images/linux`): the real `vmseal` binary builds, `vmseal boot --record` boots in QEMU +
//! OVMF + swtpm (the firmware, the stub and the kernel's EFI stub measure for real), and
//! `vmseal pcr diff` compares the prediction with what the VM read from its TPM.
//!
//! - Secure Boot on: the appliance signed with org keys of `vmseal keys new` (the build also
//!   signs the kernel the stub hands to `LoadImage`) boots with the build's `NAME.vars.fd` and
//!   the Secure Boot OVMF; the build's `NAME.pcrs.json` equals the record in PCR 0-7, 9, 11,
//!   12, 13 of all four banks.
//! - A TPM with only the sha256 bank (`--pcr-bank sha256`, predicted with `--bank sha256`).
//! - Another db certificate: the same image boots with a store whose db holds another org's
//!   certificate besides the right one (written by `virt-fw-vars`, not by vmseal); the diff
//!   against the build's prediction exits 1 and names PCR 7, db and both certificates by CN
//!   and SHA-256 as `openssl` reads them.
//!
//! Expected values come from the prediction, from the issue (which PCRs, which banks) or from
//! tools that are not vmseal (`openssl`, `virt-fw-vars`, `tpm2_eventlog`), never from a boot.
//! One VM at a time ([`common::vm_lock`]); each boot has 240 s. They need qemu-system-x86,
//! ovmf, swtpm, tpm2-tools, openssl and virt-fw-vars (`scripts/setup.sh` installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{linux_example, tool, vm_lock};

/// The PCRs the issue requires to match: firmware, Secure Boot policy, Linux EFI stub, stub.
const PCRS: [u32; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 13];
/// The banks of a fresh swtpm (no `swtpm_setup`).
const FOUR_BANKS: [&str; 4] = ["sha1", "sha256", "sha384", "sha512"];

/// `vmseal ARGS` in `dir`, echoed; returns the output whatever the exit status.
fn vmseal(dir: &Path, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal");
    eprintln!(
        "vmseal {args:?}: {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `vmseal ARGS` in `dir`, which must succeed; returns stdout.
fn vmseal_ok(dir: &Path, args: &[&str]) -> String {
    let o = vmseal(dir, args);
    assert!(o.status.success(), "vmseal {args:?} failed: {}", o.status);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `vmseal boot IMAGE --record RECORD --timeout 240 EXTRA…` in `dir`, one VM at a time; the
/// verdict must be `booted`. Returns the console log.
fn boot(dir: &Path, image: &str, record: &str, extra: &[&str]) -> String {
    let mut args = vec!["-q", "boot", image, "--record", record, "--timeout", "240"];
    args.extend_from_slice(extra);
    let started = std::time::Instant::now();
    let o = {
        let _vm = vm_lock();
        vmseal(dir, &args)
    };
    eprintln!(
        "boot {image} {extra:?}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let console = std::fs::read_to_string(dir.join(record).join("console.log")).unwrap_or_default();
    assert!(
        o.status.success(),
        "the verdict of booting {image} {extra:?} is not booted:\n{console}"
    );
    for file in ["eventlog.bin", "pcrs.json"] {
        assert!(
            dir.join(record).join(file).is_file(),
            "the record {record} has no {file}"
        );
    }
    console
}

/// `vmseal pcr diff EXPECTED ACTUAL` in `dir`: (exit code, text, JSON report).
fn diff(dir: &Path, expected: &str, actual: &str) -> (Option<i32>, String, serde_json::Value) {
    let text = vmseal(dir, &["pcr", "diff", expected, actual]);
    let json = vmseal(dir, &["pcr", "diff", "--json", expected, actual]);
    assert_eq!(
        text.status.code(),
        json.status.code(),
        "text and --json agree"
    );
    let report = serde_json::from_slice(&json.stdout).expect("pcr diff --json prints JSON");
    (
        text.status.code(),
        String::from_utf8_lossy(&text.stdout).into_owned(),
        report,
    )
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_string))
        .collect()
}

fn numbers(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|n| n.as_u64().expect("a number") as u32)
        .collect()
}

/// An X.509 certificate as `openssl` (not vmseal) reads it: subject CN, SHA-256 of the DER.
#[derive(Debug)]
struct Cert {
    cn: String,
    sha256: String,
}

fn openssl_cert(crt: &Path) -> Cert {
    let o = tool(
        Command::new("openssl")
            .args(["x509", "-noout", "-nameopt", "multiline", "-subject", "-in"])
            .arg(crt),
    );
    assert!(o.status.success(), "openssl x509 {}", crt.display());
    let text = String::from_utf8_lossy(&o.stdout);
    let cn = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("commonName"))
        .and_then(|l| l.split_once('='))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("no commonName in {text}"));
    let o = tool(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(crt),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let sha256 = text
        .trim()
        .split_once('=')
        .map(|(_, v)| v.replace(':', "").to_ascii_lowercase())
        .unwrap_or_else(|| panic!("no fingerprint in {text}"));
    assert_eq!(sha256.len(), 64, "{text}");
    Cert { cn, sha256 }
}

/// The events of a binary TCG log as `tpm2_eventlog` reads them: (PCR, type, digest banks).
fn tpm2_events(log: &Path) -> Vec<(u32, String, Vec<String>)> {
    let o = tool(Command::new("tpm2_eventlog").arg(log));
    assert!(
        o.status.success(),
        "tpm2_eventlog {}: {}",
        log.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let mut events: Vec<(u32, String, Vec<String>)> = Vec::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let t = line.trim();
        if t.starts_with("- EventNum:") {
            events.push((u32::MAX, String::new(), Vec::new()));
        } else if line.starts_with("pcrs:") {
            break;
        } else if let Some(e) = events.last_mut() {
            if let Some(v) = t.strip_prefix("PCRIndex:") {
                e.0 = v.trim().parse().unwrap_or(u32::MAX);
            } else if let Some(v) = t.strip_prefix("EventType:") {
                e.1 = v.trim().to_string();
            } else if let Some(v) = t.strip_prefix("- AlgorithmId:") {
                e.2.push(v.trim().to_string());
            }
        }
    }
    events
}

/// The org-signed Linux appliance: keys of two orgs (`keys`, enrolled by the build, and
/// `other`), a manifest with `[signing] keys = "keys"`, and `vmseal build` into `out/`.
struct Signed {
    _dir: tempfile::TempDir,
    root: PathBuf,
    org: Cert,
    other: Cert,
}

fn signed() -> &'static Signed {
    static S: OnceLock<Signed> = OnceLock::new();
    S.get_or_init(|| {
        let linux = linux_example();
        let dir = tempfile::tempdir().expect("scratch dir");
        let root = dir.path().to_path_buf();
        vmseal_ok(
            &root,
            &["keys", "new", "--out", "keys", "--org", "vmseal linux org"],
        );
        vmseal_ok(
            &root,
            &["keys", "new", "--out", "other", "--org", "Another Org"],
        );
        std::fs::write(
            root.join("vmseal.toml"),
            format!(
                "[image]\nname = \"linux\"\nversion = \"0.1.0\"\nsize = \"64MiB\"\n[guest]\n\
                 kernel = \"{}\"\ninitrd = \"{}\"\nos-release = \"{}\"\n\
                 cmdline = \"console=ttyS0 quiet panic=-1\"\nmemory = \"256MiB\"\n\
                 console = \"on\"\n[signing]\nkeys = \"keys\"\n",
                linux.join("out/vmlinuz").display(),
                linux.join("out/initrd.img").display(),
                linux.join("os-release").display()
            ),
        )
        .expect("manifest");
        vmseal_ok(&root, &["-q", "build", "vmseal.toml", "--out", "out"]);
        for f in ["linux.img", "linux.vars.fd", "linux.pcrs.json"] {
            assert!(
                root.join("out").join(f).is_file(),
                "vmseal build wrote no {f}"
            );
        }
        let org = openssl_cert(&root.join("keys/db.crt"));
        let other = openssl_cert(&root.join("other/db.crt"));
        assert_ne!(org.cn, other.cn);
        Signed {
            _dir: dir,
            root,
            org,
            other,
        }
    })
}

/// The signed appliance booted with its own store (`out/linux.vars.fd`) and Secure Boot on;
/// the record is `run-org`. Call before taking [`vm_lock`].
fn org_boot() -> &'static Signed {
    static BOOTED: OnceLock<()> = OnceLock::new();
    let s = signed();
    BOOTED.get_or_init(|| {
        let console = boot(
            &s.root,
            "out/linux.img",
            "run-org",
            &["--vars", "out/linux.vars.fd", "--secure-boot"],
        );
        // The initrd reads the SecureBoot variable from efivars: OVMF enforced it.
        assert!(
            console.contains("vmseal-secureboot enabled"),
            "Secure Boot is not on in the guest:\n{console}"
        );
    });
    s
}

#[test]
fn secure_boot_linux_appliance_boots_exactly_as_predicted() {
    let s = org_boot();
    // The firmware verified images against db (an authority event in PCR 7, as tpm2-tools
    // reads the record's log) and the Linux EFI stub measured into PCR 9.
    let events = tpm2_events(&s.root.join("run-org/eventlog.bin"));
    assert!(
        events
            .iter()
            .any(|e| e.0 == 7 && e.1 == "EV_EFI_VARIABLE_AUTHORITY"),
        "no authority event in the record's PCR 7: {events:?}"
    );
    assert!(
        events.iter().any(|e| e.0 == 9),
        "nothing in PCR 9: {events:?}"
    );
    // The prediction names the org's db certificate as the authority.
    let predicted = std::fs::read_to_string(s.root.join("out/linux.pcrs.json")).expect("pcrs");
    assert!(
        predicted.contains(&format!(
            "certificate CN={} (sha256 {})",
            s.org.cn, s.org.sha256
        )),
        "the prediction does not name the org's db certificate"
    );
    let (code, text, report) = diff(&s.root, "out/linux.pcrs.json", "run-org");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with("identical: 12 PCR(s) × 4 bank(s)"),
        "{text}"
    );
    assert_eq!(numbers(&report["pcrs_compared"]), PCRS, "{report}");
    assert_eq!(strings(&report["banks"]), FOUR_BANKS, "{report}");
    assert_eq!(report["identical"], true);
}

/// A TPM set up like `swtpm_setup`'s default (the sha256 bank only): the firmware logs one
/// digest per event, the prediction for that bank alone equals the boot.
#[test]
fn sha256_only_tpm_linux_appliance_boots_as_predicted() {
    let linux = linux_example();
    let t = tempfile::tempdir().expect("scratch dir");
    let d = t.path();
    let manifest = linux.join("vmseal.toml");
    vmseal_ok(
        d,
        &[
            "-q",
            "build",
            manifest.to_str().expect("utf-8 path"),
            "--out",
            "out",
            "--no-predict",
        ],
    );
    let json = vmseal_ok(
        d,
        &[
            "pcr",
            "predict",
            "out/linux.img",
            "--bank",
            "sha256",
            "--json",
        ],
    );
    std::fs::write(d.join("sha256.pcrs.json"), json).expect("write prediction");
    boot(d, "out/linux.img", "run", &["--pcr-bank", "sha256"]);
    let events = tpm2_events(&d.join("run/eventlog.bin"));
    assert!(events.len() > 20, "{events:?}");
    for e in events.iter().filter(|e| e.1 != "EV_NO_ACTION") {
        assert_eq!(e.2, ["sha256"], "an event with other banks: {e:?}");
    }
    let (code, text, report) = diff(d, "sha256.pcrs.json", "run");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with("identical: 12 PCR(s) × 1 bank(s)"),
        "{text}"
    );
    assert_eq!(numbers(&report["pcrs_compared"]), PCRS, "{report}");
    assert_eq!(strings(&report["banks"]), ["sha256"], "{report}");
}

/// The build predicted its own store (db = the org's certificate); the VM boots with a store
/// whose db also holds another org's certificate. The image still verifies (same authority),
/// but OVMF measures another db into PCR 7: the diff must say so, with both CNs.
#[test]
fn another_db_certificate_is_named_by_pcr_diff() {
    let s = org_boot();
    let owner = std::fs::read_to_string(s.root.join("other/owner.guid")).expect("owner.guid");
    let o = tool(
        Command::new("virt-fw-vars")
            .current_dir(&s.root)
            .args(["-i", "out/linux.vars.fd", "-o", "mixed.vars.fd", "--add-db"])
            .arg(owner.trim())
            .arg("other/db.crt"),
    );
    assert!(
        o.status.success(),
        "virt-fw-vars: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let console = boot(
        &s.root,
        "out/linux.img",
        "run-mixed",
        &["--vars", "mixed.vars.fd", "--secure-boot"],
    );
    assert!(
        console.contains("vmseal-secureboot enabled"),
        "Secure Boot is not on in the guest:\n{console}"
    );

    let (code, text, report) = diff(&s.root, "out/linux.pcrs.json", "run-mixed");
    assert_eq!(code, Some(1), "{text}");
    let differences = report["differences"].as_array().expect("differences");
    assert_eq!(
        differences
            .iter()
            .map(|d| d["pcr"].as_u64())
            .collect::<Vec<_>>(),
        [Some(7)],
        "only PCR 7 differs:\n{text}"
    );
    let explanations = strings(&differences[0]["explanations"]);
    assert_eq!(explanations.len(), 1, "one cause, the db:\n{text}");
    let why = &explanations[0];
    let org = format!("certificate CN={} (sha256 {})", s.org.cn, s.org.sha256);
    let other = format!("certificate CN={} (sha256 {})", s.other.cn, s.other.sha256);
    for want in [
        format!("PCR 7: db differs — expected {org}"),
        "the firmware measured certificate CN=".to_string(),
        format!("the firmware's db has {other}"),
        "predict with `vmseal pcr predict --vars`".to_string(),
    ] {
        assert!(why.contains(&want), "missing {want:?} in\n{why}");
    }
    assert!(text.contains(why.as_str()), "{text}");
    eprintln!("the db mismatch explained:\n{text}");

    // Predicted with the store the VM booted with, the same record is identical: the store
    // was the only cause. And that prediction against the boot with the org's own store names
    // the certificate the firmware's db lacks.
    let json = vmseal_ok(
        &s.root,
        &[
            "pcr",
            "predict",
            "out/linux.img",
            "--vars",
            "mixed.vars.fd",
            "--json",
        ],
    );
    std::fs::write(s.root.join("mixed.pcrs.json"), json).expect("write prediction");
    let (code, text, _) = diff(&s.root, "mixed.pcrs.json", "run-mixed");
    assert_eq!(code, Some(0), "{text}");
    let (code, text, _) = diff(&s.root, "mixed.pcrs.json", "run-org");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("the firmware's db lacks {other}")),
        "{text}"
    );
}
