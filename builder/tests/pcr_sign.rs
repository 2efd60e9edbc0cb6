//! Signed PCR 11 policies, checked against systemd's own tool: a build with `signing.pcr-key`
//! carries `.pcrpkey` and `.pcrsig`, and `.pcrsig` equals — value for value, in every bank and
//! default phase — what `systemd-measure sign` (systemd 252, Debian 12) writes for the same
//! `.linux`, `.osrel`, `.cmdline`, `.initrd` and `.pcrpkey` sections and key, with a software
//! TPM (swtpm) for its policy digests. `vmseal pcr sign` gives the same JSON; the prediction's
//! PCR 11 equals `systemd-measure calculate --pcrpkey`; the appliance boots (QEMU + OVMF +
//! swtpm, Secure Boot on) exactly as predicted, `.pcrpkey` measured by the stub.

mod common;
use common::{Swtpm, ok, text, vmseal};

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const SYSTEMD_MEASURE: &str = "/usr/lib/systemd/systemd-measure";
const BANKS: [&str; 4] = ["sha1", "sha256", "sha384", "sha512"];

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/setup.sh installs it)"));
    assert!(o.status.success(), "{cmd:?}: {}", text(&o));
    o
}

#[test]
fn pcrsig_equals_systemd_measure_sign_and_the_appliance_boots_as_predicted() {
    let linux = repo().join("images/linux");
    if !linux.join("out/vmlinuz").is_file() || !linux.join("out/initrd.img").is_file() {
        let st = Command::new("bash")
            .arg(linux.join("build.sh"))
            .status()
            .expect("bash");
        assert!(st.success(), "images/linux/build.sh failed");
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(&vmseal(
        &["keys", "new", "--out", "keys", "--org", "PCR Org"],
        d,
    ));
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "pcr.key",
        ])
        .current_dir(d));
    run(Command::new("openssl")
        .args(["pkey", "-in", "pcr.key", "-pubout", "-out", "pcr.pub"])
        .current_dir(d));
    let manifest = std::fs::read_to_string(linux.join("vmseal.toml"))
        .unwrap()
        .replace("\"out/", &format!("\"{}/out/", linux.display()))
        .replace(
            "\"os-release\"",
            &format!("\"{}/os-release\"", linux.display()),
        );
    std::fs::create_dir_all(d.join("app")).unwrap();
    std::fs::write(
        d.join("app/vmseal.toml"),
        format!(
            "{manifest}\n[signing]\nkeys = \"../keys\"\npcr-key = \"../pcr.key\"\npcr-banks = [\"sha1\", \"sha256\", \"sha384\", \"sha512\"]\n"
        ),
    )
    .unwrap();
    ok(&vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out"],
        &d.join("app"),
    ));
    let efi = d.join("app/out/linux.efi");

    // The sections as objcopy (binutils) reads them from the PE.
    for s in [
        ".linux", ".osrel", ".cmdline", ".initrd", ".pcrpkey", ".pcrsig",
    ] {
        let out = d.join(format!("sec{s}"));
        // objcopy writes the dumped section before failing on the /dev/null output.
        let _ = Command::new("objcopy")
            .arg("--dump-section")
            .arg(format!("{s}={}", out.display()))
            .arg(&efi)
            .arg(d.join("scratch.efi"))
            .output()
            .expect("objcopy");
        assert!(out.is_file(), "{s} missing from the PE");
    }
    // .pcrpkey is the key's public half (openssl's PEM).
    assert_eq!(
        std::fs::read(d.join("sec.pcrpkey")).unwrap(),
        std::fs::read(d.join("pcr.pub")).unwrap()
    );

    let tpm = Swtpm::start();
    let mut cmd = Command::new(SYSTEMD_MEASURE);
    cmd.arg("sign")
        .args([
            "--linux=sec.linux",
            "--osrel=sec.osrel",
            "--cmdline=sec.cmdline",
        ])
        .args(["--initrd=sec.initrd", "--pcrpkey=sec.pcrpkey"])
        .args([
            "--private-key=pcr.key",
            "--public-key=pcr.pub",
            "--json=short",
        ])
        .env("SYSTEMD_TPM2_DEVICE", format!("swtpm:port={}", tpm.port))
        .current_dir(d);
    for b in BANKS {
        cmd.arg(format!("--bank={b}"));
    }
    let theirs: Value = serde_json::from_slice(&run(&mut cmd).stdout).unwrap();
    drop(tpm);
    let ours: Value =
        serde_json::from_slice(&std::fs::read(d.join("sec.pcrsig")).unwrap()).unwrap();
    for b in BANKS {
        assert_eq!(theirs[b].as_array().map(Vec::len), Some(4), "{b}: {theirs}");
    }
    assert_eq!(ours, theirs, ".pcrsig != systemd-measure sign");

    // `vmseal pcr sign` of the image (its BOOTX64.EFI) and of NAME.efi: the same JSON.
    for input in ["out/linux.img", "out/linux.efi"] {
        let mut args = vec!["pcr", "sign", input, "--key", "../pcr.key"];
        for b in BANKS {
            args.extend(["--bank", b]);
        }
        let o = vmseal(&args, &d.join("app"));
        ok(&o);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v, theirs, "vmseal pcr sign {input}");
    }
    // Another key than the one in .pcrpkey is refused.
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "other.key",
        ])
        .current_dir(d));
    let o = vmseal(
        &["pcr", "sign", "out/linux.efi", "--key", "../other.key"],
        &d.join("app"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(".pcrpkey"), "{}", text(&o));

    // The prediction's PCR 11 (with .pcrpkey measured) equals systemd-measure calculate.
    let mut cmd = Command::new(SYSTEMD_MEASURE);
    cmd.arg("calculate")
        .args([
            "--linux=sec.linux",
            "--osrel=sec.osrel",
            "--cmdline=sec.cmdline",
        ])
        .args(["--initrd=sec.initrd", "--pcrpkey=sec.pcrpkey", "--phase="])
        .current_dir(d);
    for b in BANKS {
        cmd.arg(format!("--bank={b}"));
    }
    let calc = String::from_utf8_lossy(&run(&mut cmd).stdout).into_owned();
    let pred: Value =
        serde_json::from_slice(&std::fs::read(d.join("app/out/linux.pcrs.json")).unwrap()).unwrap();
    for line in calc.lines().filter_map(|l| l.strip_prefix("11:")) {
        let (bank, value) = line.split_once('=').unwrap();
        assert_eq!(
            pred["pcrs"][bank.to_ascii_lowercase()]["11"]
                .as_str()
                .unwrap(),
            value.to_ascii_lowercase(),
            "PCR 11 {bank}"
        );
    }

    // inspect shows both sections; verify accepts the signed image.
    let o = vmseal(&["inspect", "out/linux.efi", "--json"], &d.join("app"));
    ok(&o);
    let names: Vec<String> = serde_json::from_slice::<Value>(&o.stdout).unwrap()["pe"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        names.contains(&".pcrpkey".into()) && names.contains(&".pcrsig".into()),
        "{names:?}"
    );
    ok(&vmseal(
        &["verify", "out/linux.img", "--vars", "out/linux.vars.fd"],
        &d.join("app"),
    ));

    // Booted with Secure Boot on: the stub measures .pcrpkey, the record matches the
    // prediction.
    let o = vmseal(
        &[
            "boot",
            "out/linux.img",
            "--vars",
            "out/linux.vars.fd",
            "--secure-boot",
            "--record",
            "run",
            "--timeout",
            "240",
        ],
        &d.join("app"),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "booted",
        "{}",
        text(&o)
    );
    let o = vmseal(
        &["pcr", "diff", "out/linux.pcrs.json", "run"],
        &d.join("app"),
    );
    assert!(o.status.success(), "pcr diff: {}", text(&o));

    // A missing key: one line, exit 2, naming the field.
    std::fs::write(
        d.join("app/vmseal.toml"),
        std::fs::read_to_string(d.join("app/vmseal.toml"))
            .unwrap()
            .replace("../pcr.key", "../no-such.key"),
    )
    .unwrap();
    let o = vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out2"],
        &d.join("app"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("signing.pcr-key"), "{err}");
    assert!(!d.join("app/out2").exists());
}
