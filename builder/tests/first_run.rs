//! A first run with no surprises (the journey a new user takes), with real boots: `vmseal boot
//! IMG --vars NAME.vars.fd` without `--secure-boot` boots the firmware the build predicted for
//! (the store enrolls keys, so the Secure Boot build) and `pcr diff` exits 0; a boot with
//! another firmware than the prediction's is named as such by `pcr diff`, not explained as a
//! profile to learn; the console echo is plain text, `-v` shows the commands run, `-q` is
//! quiet, and `build`/`boot --json` summarise on stdout.

mod common;
use common::{ok, text, vmseal};

use std::process::Command;

#[test]
fn boot_with_the_build_store_uses_the_predicted_firmware_and_diff_names_another() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(&vmseal(
        &["keys", "new", "--out", "keys", "--org", "First Run"],
        d,
    ));
    common::sample_appliance(
        &d.join("app"),
        "first run",
        "[signing]\nkeys = \"../keys\"\n",
    );
    let app = d.join("app");
    ok(&vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out"],
        &app,
    ));

    // No --secure-boot: the store enrolls keys, so the Secure Boot firmware boots it.
    let o = vmseal(
        &[
            "boot",
            "out/app.img",
            "--vars",
            "out/app.vars.fd",
            "--record",
            "run",
            "--timeout",
            "240",
        ],
        &app,
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "booted",
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("Secure Boot firmware"), "{}", text(&o));
    // The console echo is plain text (OVMF sends terminal escape sequences), without the
    // commands run (that is -v).
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("console| "), "{err}");
    assert!(!err.contains('\u{1b}'), "escape codes in the echo: {err:?}");
    assert!(!err.contains("qemu-system-x86_64 "), "{err}");
    let o = vmseal(&["pcr", "diff", "out/app.pcrs.json", "run"], &app);
    assert!(o.status.success(), "pcr diff: {}", text(&o));

    // Booted without the store (Debian's plain firmware), -v and --json: the commands run are
    // shown, the summary is JSON; diff says the firmware differs.
    let o = vmseal(
        &[
            "boot",
            "out/app.img",
            "--record",
            "plain",
            "--timeout",
            "240",
            "-v",
            "--json",
        ],
        &app,
    );
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("--json: {e}: {}", text(&o)));
    assert_eq!(v["verdict"], "booted", "{v}");
    assert_eq!(v["secure_boot_firmware"], false, "{v}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("qemu-system-x86_64 "),
        "{}",
        text(&o)
    );
    let o = vmseal(&["pcr", "diff", "out/app.pcrs.json", "plain"], &app);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("the boot ran firmware /usr/share/OVMF/OVMF_CODE_4M.fd")
            && out.contains("the prediction is for /usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
        "{out}"
    );

    // -q: nothing on stderr, the verdict on stdout.
    let o = vmseal(
        &[
            "-q",
            "boot",
            "out/app.img",
            "--record",
            "quiet",
            "--timeout",
            "240",
        ],
        &app,
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "booted",
        "{}",
        text(&o)
    );
    assert!(
        o.stderr.is_empty(),
        "-q printed: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // build --json: every output with its size and SHA-256 (sha256sum agrees).
    let o = vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out", "--json"],
        &app,
    );
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let outputs = v["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 5, "{v}");
    for f in outputs {
        let path = f["path"].as_str().unwrap();
        let sum = Command::new("sha256sum")
            .arg(path)
            .current_dir(&app)
            .output()
            .expect("sha256sum");
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            &String::from_utf8_lossy(&sum.stdout)[..64],
            "{path}"
        );
    }
}

#[test]
fn firmware_from_a_flag_or_the_environment_is_what_boots_and_what_is_predicted() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    common::sample_appliance(&d.join("app"), "own firmware", "");
    let app = d.join("app");
    ok(&vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out"],
        &app,
    ));
    // A firmware file of one's own (here: a copy of Debian's, so the shipped profile still
    // matches it by hash).
    std::fs::copy("/usr/share/OVMF/OVMF_CODE_4M.fd", d.join("my-code.fd")).unwrap();
    let code = d.join("my-code.fd");
    let o = Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(["pcr", "predict", "out/app.img", "--json"])
        .current_dir(&app)
        .env("VMSEAL_OVMF_CODE", &code)
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal");
    ok(&o);
    std::fs::write(app.join("mine.pcrs.json"), &o.stdout).unwrap();
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        p["sources"]["firmware_code"],
        code.display().to_string(),
        "{}",
        p["sources"]
    );
    let o = vmseal(
        &[
            "boot",
            "out/app.img",
            "--record",
            "mine",
            "--timeout",
            "240",
            "--ovmf-code",
            code.to_str().unwrap(),
        ],
        &app,
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "booted",
        "{}",
        text(&o)
    );
    let verdict: serde_json::Value =
        serde_json::from_slice(&std::fs::read(app.join("mine/verdict.json")).unwrap()).unwrap();
    assert_eq!(verdict["firmware_code"], code.display().to_string());
    let o = vmseal(&["pcr", "diff", "mine.pcrs.json", "mine"], &app);
    assert!(o.status.success(), "pcr diff: {}", text(&o));
}

/// Issue 17: a manifest with several problems gets all of them at once, each on its own line
/// with the file's line and the field path, in the order of the file, then a count; exit 2
/// and nothing written. Before, the build stopped at the first (and named a missing
/// `guest.console` under `image`).
#[test]
fn every_manifest_problem_at_once_with_field_and_line() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("app");
    ok(&vmseal(&["init", dir.to_str().unwrap()], t.path()));
    let m = dir.join("vmseal.toml");
    let good = std::fs::read_to_string(&m).unwrap();
    let bad = good
        .replace(
            "version = \"0.1.0\"",
            "version = \"0.1 .0\"\ncolour = \"blue\"",
        )
        .replace("memory = \"16MiB\"", "memory = \"3MiB\"\nflavour = 1")
        + "\n[[service]]\nname = \"Bad_Name\"\nelf = \"\"\nmemory = \"8MiB\"\n";
    std::fs::write(&m, &bad).unwrap();
    let o = vmseal(&["build", "vmseal.toml", "--out", "out"], &dir);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!dir.join("out").exists(), "nothing written");
    let lines: Vec<&str> = err.lines().collect();
    let line_of = |needle: &str| bad.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let want = [
        (line_of("version"), "image.version"),
        (line_of("colour"), "image.colour"),
        (line_of("memory = \"3MiB\""), "guest.memory"),
        (line_of("flavour"), "guest.flavour"),
        (line_of("name = \"Bad_Name\""), "service[0].name"),
        (line_of("elf = \"\""), "service[0].elf"),
    ];
    assert_eq!(lines.len(), want.len() + 1, "{err}");
    for (l, (n, field)) in lines.iter().zip(want) {
        let prefix = format!("error: vmseal.toml:{n}: {field}: ");
        assert!(l.starts_with(&prefix), "want {prefix:?}, got {l:?}");
        assert!(l.contains(" — "), "no fix: {l}");
    }
    assert_eq!(lines[6], "error: 6 problems in vmseal.toml");

    // A missing required key is named under its own table, at that table's line.
    let no_console: String = good
        .lines()
        .filter(|l| !l.starts_with("console"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&m, &no_console).unwrap();
    let o = vmseal(&["build", "vmseal.toml", "--out", "out"], &dir);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let guest = no_console.lines().position(|l| l == "[guest]").unwrap() + 1;
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with(&format!(
            "error: vmseal.toml:{guest}: guest.console: missing — add `console"
        )),
        "{err}"
    );
}
