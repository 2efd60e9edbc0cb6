//! Firmware profiles learned from the event log of a real boot (`vmseal firmware learn
//! --from-log`, no `--code`), proved on QEMU + OVMF + swtpm: the oracle is the TPM (the PCR
//! values and the event log the stub read from the firmware), compared by `vmseal pcr diff`.
//!
//! - Secure Boot on (`OVMF_CODE_4M.secboot.fd`, the org's keys) with an empty CD-ROM first in
//!   the boot order (a failed boot option: PCR 4 has a "Returning from…/Calling…" pair, PCR 1
//!   other boot variables): the profile learned from image A's boot predicts image B (another
//!   command line, so another `.cmdline` and Authenticode hash) and the Linux appliance (a
//!   kernel loaded by the stub, PCR 9) booted the same way, exactly.
//! - Secure Boot off (`OVMF_CODE_4M.fd`), disk first: the profile learned from that boot
//!   predicts it; used for B's Secure Boot boot (another firmware build), `pcr diff` names
//!   PCR 0 and the firmware volume first.
//!
//! Three boots of `images/hello` (~7 s each under TCG) and one of `images/linux` (~15 s), one
//! VM at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vmseal::run::boot::{BootOptions, Verdict};
use vmseal_tests::{boot_image, hello_elf, run, vmseal_bin};

fn vmseal(dir: &Path, args: &[&str]) -> Output {
    let o = Command::new(vmseal_bin())
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run vmseal");
    eprintln!(
        "+ vmseal {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Build `images/hello` with `cmdline`, signed with `keys`, into `dir/out`.
fn build(root: &Path, name: &str, cmdline: &str) -> PathBuf {
    std::fs::write(
        root.join(format!("{name}.toml")),
        format!(
            "[image]\nname = \"hello\"\nversion = \"0.1.0\"\nsize = \"16MiB\"\n\
             [guest]\nelf = \"{}\"\ncmdline = \"{cmdline}\"\nmemory = \"16MiB\"\n\
             console = \"on\"\n[signing]\nkeys = \"keys\"\n",
            hello_elf().display()
        ),
    )
    .expect("manifest");
    let out = root.join(name);
    run(Command::new(vmseal_bin())
        .args(["-q", "build", &format!("{name}.toml"), "--out", name])
        .current_dir(root)
        .env("SOURCE_DATE_EPOCH", "1700000000"));
    out
}

/// Boot and require the guest to have run; returns the record directory.
fn boot(opts: BootOptions) -> PathBuf {
    let outcome = boot_image(opts);
    assert_eq!(
        outcome.verdict(),
        Verdict::Booted,
        "{}\n{}",
        outcome.decision.reason,
        outcome.console
    );
    assert!(
        outcome.record_dir.join("eventlog.bin").is_file(),
        "the stub sent no event log"
    );
    outcome.record_dir
}

/// `pcr predict` of `img` with `profile` (default: the shipped one) and `vars`, then `pcr diff` against `record`:
/// (exit status, JSON report).
fn predict_and_diff(
    root: &Path,
    img: &Path,
    vars: Option<&Path>,
    profile: Option<&str>,
    record: &Path,
    name: &str,
) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["pcr".to_string(), "predict".into(), "--json".into()];
    if let Some(p) = profile {
        args.extend(["--firmware-profile".into(), p.into()]);
    }
    if let Some(v) = vars {
        args.extend(["--vars".into(), v.display().to_string()]);
    }
    args.push(img.display().to_string());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = vmseal(root, &a);
    assert!(o.status.success());
    let expected = root.join(format!("{name}.pcrs.json"));
    std::fs::write(&expected, &o.stdout).expect("write prediction");
    let o = vmseal(
        root,
        &[
            "pcr",
            "diff",
            "--json",
            expected.to_str().unwrap(),
            record.to_str().unwrap(),
        ],
    );
    (
        o.status.code(),
        serde_json::from_slice(&o.stdout).expect("diff --json"),
    )
}

#[test]
fn a_profile_learned_from_one_boot_predicts_another_image_and_names_another_firmware() {
    let dir = tempfile::tempdir().expect("scratch");
    let root = dir.path();
    run(Command::new(vmseal_bin())
        .args(["keys", "new", "--out", "keys", "--org", "vmseal profile"])
        .current_dir(root));
    let a = build(root, "a", "greeting=hello");
    let b = build(root, "b", "greeting=profile other");
    let (a_img, a_vars) = (a.join("hello.img"), a.join("hello.vars.fd"));
    let (b_img, b_vars) = (b.join("hello.img"), b.join("hello.vars.fd"));

    // 1. Secure Boot on, an empty CD-ROM tried first: learn from A's boot.
    let mut o = BootOptions::new(&a_img, root.join("run-a"));
    o.vars = Some(a_vars.clone());
    o.secure_boot = true;
    o.failed_boot_option_first = true;
    let run_a = boot(o);
    let learned = vmseal(
        root,
        &[
            "firmware",
            "learn",
            "--from-log",
            "run-a/eventlog.bin",
            "--out",
            "sb-cd.json",
        ],
    );
    assert!(learned.status.success());
    let text = std::fs::read_to_string(root.join("sb-cd.json")).expect("profile");
    assert!(
        text.contains(vmseal::measure::predict::RETURNING_BOOT_OPTION),
        "the failed boot option is in the profile"
    );
    // The profile predicts the boot it was learned from …
    let (code, r) = predict_and_diff(root, &a_img, Some(&a_vars), Some("sb-cd.json"), &run_a, "a");
    assert_eq!(code, Some(0), "{r:#}");
    // … and B, another image, booted the same way.
    let mut o = BootOptions::new(&b_img, root.join("run-b"));
    o.vars = Some(b_vars.clone());
    o.secure_boot = true;
    o.failed_boot_option_first = true;
    let run_b = boot(o);
    let (code, r) = predict_and_diff(root, &b_img, Some(&b_vars), Some("sb-cd.json"), &run_b, "b");
    assert_eq!(code, Some(0), "{r:#}");
    assert!(
        r["pcrs_compared"].as_array().is_some_and(|p| p.len() >= 10),
        "{r:#}"
    );
    // … and the Linux appliance (a kernel the stub loads: its own authority, PCR 4 load and
    // PCR 9 events), a different kind of image, booted the same way.
    let inputs = vmseal_tests::linux_inputs();
    std::fs::write(
        root.join("linux.toml"),
        format!(
            "[image]\nname = \"linux\"\nversion = \"0.1.0\"\nsize = \"64MiB\"\n[guest]\n\
             kernel = \"{}\"\ninitrd = \"{}\"\nos-release = \"{}\"\n\
             cmdline = \"console=ttyS0 quiet panic=-1\"\nmemory = \"256MiB\"\nconsole = \"on\"\n\
             [signing]\nkeys = \"keys\"\n",
            inputs.join("vmlinuz").display(),
            inputs.join("initrd.img").display(),
            vmseal_tests::repo_root()
                .join("images/linux/os-release")
                .display()
        ),
    )
    .expect("manifest");
    run(Command::new(vmseal_bin())
        .args([
            "-q",
            "build",
            "--no-predict",
            "linux.toml",
            "--out",
            "linux",
        ])
        .current_dir(root));
    let (l_img, l_vars) = (
        root.join("linux/linux.img"),
        root.join("linux/linux.vars.fd"),
    );
    let mut o = BootOptions::new(&l_img, root.join("run-linux"));
    o.vars = Some(l_vars.clone());
    o.secure_boot = true;
    o.failed_boot_option_first = true;
    let run_linux = boot(o);
    let (code, r) = predict_and_diff(
        root,
        &l_img,
        Some(&l_vars),
        Some("sb-cd.json"),
        &run_linux,
        "linux",
    );
    assert_eq!(code, Some(0), "{r:#}");

    // The shipped profile (disk first) does not: PCR 1 (boot variables) and PCR 4 differ,
    // PCR 4 naming the failed boot option.
    let (code, r) = predict_and_diff(root, &b_img, Some(&b_vars), None, &run_b, "b-shipped");
    assert_eq!(code, Some(1), "{r:#}");
    let pcrs: Vec<u64> = r["differences"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["pcr"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(pcrs, [1, 4], "{r:#}");
    assert!(
        r.to_string()
            .contains("a boot option before the disk failed"),
        "{r:#}"
    );

    // 2. Secure Boot off, disk first: another firmware build (OVMF_CODE_4M.fd).
    let run_off = boot(BootOptions::new(&a_img, root.join("run-off")));
    let learned = vmseal(
        root,
        &[
            "firmware",
            "learn",
            "--from-log",
            "run-off/eventlog.bin",
            "--out",
            "off.json",
        ],
    );
    assert!(learned.status.success());
    let (code, r) = predict_and_diff(root, &a_img, None, Some("off.json"), &run_off, "a-off");
    assert_eq!(code, Some(0), "{r:#}");
    // Its profile for B's Secure Boot boot: the first difference is PCR 0, the firmware.
    let (code, r) = predict_and_diff(
        root,
        &b_img,
        Some(&b_vars),
        Some("off.json"),
        &run_b,
        "b-off",
    );
    assert_eq!(code, Some(1), "{r:#}");
    let first = &r["differences"][0];
    assert_eq!(first["pcr"], 0, "{r:#}");
    let why = first["explanations"][0].as_str().unwrap_or_default();
    assert!(
        why.contains("firmware event firmware volume at")
            && why.contains("EV_EFI_PLATFORM_FIRMWARE_BLOB"),
        "{why}"
    );
}
