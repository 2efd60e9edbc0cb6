//! A first run with no surprises (the journey a new user takes), with real boots: `vmseal boot
//! IMG --vars NAME.vars.fd` without `--secure-boot` boots the firmware the build predicted for
//! (the store enrolls keys, so the Secure Boot build) and `pcr diff` exits 0; a boot with
//! another firmware than the prediction's is named as such by `pcr diff`, not explained as a
//! profile to learn.

use std::path::Path;
use std::process::{Command, Output};

fn vmseal(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) {
    assert!(o.status.success(), "status {:?}\n{}", o.status, text(o));
}

#[test]
fn boot_with_the_build_store_uses_the_predicted_firmware_and_diff_names_another() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(&vmseal(
        &["keys", "new", "--out", "keys", "--org", "First Run"],
        d,
    ));
    std::fs::create_dir_all(d.join("app")).unwrap();
    std::fs::write(
        d.join("app/guest.elf"),
        vmseal::init::sample_guest_elf("first run\r\n"),
    )
    .unwrap();
    std::fs::write(
        d.join("app/vmseal.toml"),
        "[image]\nname = \"app\"\nversion = \"1\"\nsize = \"16MiB\"\n[guest]\nelf = \"guest.elf\"\n\
         cmdline = \"x\"\nmemory = \"16MiB\"\nconsole = \"on\"\n[signing]\nkeys = \"../keys\"\n",
    )
    .unwrap();
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
    let o = vmseal(&["pcr", "diff", "out/app.pcrs.json", "run"], &app);
    assert!(o.status.success(), "pcr diff: {}", text(&o));

    // Booted without the store (Debian's plain firmware): diff says the firmware differs.
    let o = vmseal(
        &[
            "boot",
            "out/app.img",
            "--record",
            "plain",
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
    let o = vmseal(&["pcr", "diff", "out/app.pcrs.json", "plain"], &app);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("the boot ran firmware /usr/share/OVMF/OVMF_CODE_4M.fd")
            && out.contains("the prediction is for /usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
        "{out}"
    );
}
