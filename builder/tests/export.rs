//! `vmseal export` through the real binary, each cloud's output checked by a reader vmseal did
//! not write: `qemu-img` (qemu-utils: the VHD footer, its checksum and geometry, its data),
//! GNU `tar` (the GCP archive), `uefivars` (python-uefivars, AWS's own tool: the
//! `--uefi-data` blob against its own reading of the OVMF store), `openssl` (the DER key
//! files). A missing tool fails the test (scripts/setup.sh installs them).

mod common;
use common::{ok, text, tool};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

const EPOCH: &str = "1700000000";

fn vmseal(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal")
}

/// A signed 16 MiB appliance built once: `keys/` from `keys new`, `out/app.{img,vars.fd}`.
struct Built {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        ok(&vmseal(
            &["keys", "new", "--out", "keys", "--org", "Export Org"],
            &root,
        ));
        common::sample_appliance(&root, "hello", "[signing]\nkeys = \"keys\"\n");
        ok(&vmseal(
            &["-q", "build", "vmseal.toml", "--out", "out"],
            &root,
        ));
        Built { _dir: dir, root }
    })
}

fn qemu_img_info(args: &[&str]) -> Output {
    tool(Command::new("qemu-img").arg("info").args(args))
}

#[test]
fn azure_vhd_reads_back_as_the_image_in_qemu_img_and_carries_the_org_keys() {
    let b = built();
    let out = b.root.join("azure");
    let o = vmseal(
        &["export", "out/app.img", "--to", "azure", "--out", "azure"],
        &b.root,
    );
    ok(&o);
    let vhd = out.join("app.vhd");
    let img = std::fs::read(b.root.join("out/app.img")).unwrap();
    assert_eq!(img.len(), 16 << 20);
    assert_eq!(std::fs::metadata(&vhd).unwrap().len(), (16 << 20) + 512);

    // qemu-img as fixed vpc, by Current Size: exactly the image's size.
    let opts = format!(
        "driver=vpc,force_size_calc=current_size,file.filename={}",
        vhd.display()
    );
    let o = qemu_img_info(&["--output=json", "--image-opts", &opts]);
    assert!(o.status.success(), "{}", text(&o));
    let info: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["format"], "vpc");
    assert_eq!(info["virtual-size"], 16u64 << 20);
    // By the CHS geometry (qemu-img's default for creators it does not know): the VHD spec's
    // algorithm for 32768 sectors gives 17 sectors/track, 4 heads, 481 cylinders.
    let o = qemu_img_info(&["--output=json", "-f", "vpc", vhd.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let info: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["virtual-size"], 481u64 * 4 * 17 * 512);
    // The data: qemu-img converts it back to the raw image byte for byte.
    let back = out.join("back.raw");
    let o = tool(
        Command::new("qemu-img")
            .args(["convert", "--image-opts", &opts, "-O", "raw"])
            .arg(&back),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read(&back).unwrap() == img, "VHD data != image");
    // qemu-img checks the footer checksum: one flipped reserved byte is refused.
    let mut bad = std::fs::read(&vhd).unwrap();
    let at = bad.len() - 512 + 100;
    bad[at] ^= 1;
    let bad_path = out.join("bad.vhd");
    std::fs::write(&bad_path, bad).unwrap();
    let o = qemu_img_info(&["-f", "vpc", bad_path.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("checksum"), "{}", text(&o));

    // uefiSettings: the org's certificates, base64 DER, as `keys new` wrote them.
    let j: Value =
        serde_json::from_slice(&std::fs::read(out.join("app.azure.json")).unwrap()).unwrap();
    let s = &j["properties"]["securityProfile"]["uefiSettings"];
    assert_eq!(
        s["signatureTemplateNames"],
        serde_json::json!(["NoSignatureTemplate"])
    );
    let sig = &s["additionalSignatures"];
    let der = |name: &str| std::fs::read(b.root.join("keys").join(name)).unwrap();
    let b64 = |v: &Value| {
        let o = tool(
            Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s '{}' | base64 -d", v.as_str().unwrap())),
        );
        o.stdout
    };
    assert_eq!(sig["pk"]["type"], "x509");
    assert_eq!(b64(&sig["pk"]["value"][0]), der("PK.der"));
    assert_eq!(sig["kek"][0]["type"], "x509");
    assert_eq!(b64(&sig["kek"][0]["value"][0]), der("KEK.der"));
    assert_eq!(b64(&sig["db"][0]["value"][0]), der("db.der"));
    // The store's default dbx: one SHA-256 entry, the digest of empty data.
    assert_eq!(sig["dbx"][0]["type"], "sha256");
    let empty = tool(
        Command::new("sh")
            .arg("-c")
            .arg("printf '' | openssl dgst -sha256 -binary"),
    );
    assert_eq!(b64(&sig["dbx"][0]["value"][0]), empty.stdout);
}

#[test]
fn gcp_tarball_unpacks_with_gnu_tar_to_the_padded_image_and_key_files_are_der() {
    let b = built();
    let o = vmseal(
        &["export", "out/app.img", "--to", "gcp", "--out", "gcp"],
        &b.root,
    );
    ok(&o);
    let out = b.root.join("gcp");
    let list = tool(Command::new("tar").arg("-tzf").arg(out.join("app.tar.gz")));
    assert_eq!(String::from_utf8_lossy(&list.stdout), "disk.raw\n");
    let un = out.join("un");
    std::fs::create_dir_all(&un).unwrap();
    let x = tool(
        Command::new("tar")
            .arg("-xzf")
            .arg(out.join("app.tar.gz"))
            .arg("-C")
            .arg(&un),
    );
    assert!(x.status.success(), "{}", text(&x));
    // disk.raw = the image, then zeros up to 1 GiB (truncate(1) pads the same way).
    let padded = out.join("padded.raw");
    std::fs::copy(b.root.join("out/app.img"), &padded).unwrap();
    let t = tool(Command::new("truncate").args(["-s", "1G"]).arg(&padded));
    assert!(t.status.success());
    let c = tool(Command::new("cmp").arg(&padded).arg(un.join("disk.raw")));
    assert!(c.status.success(), "disk.raw differs: {}", text(&c));
    for (file, org_der) in [
        ("PK-1.der", "PK.der"),
        ("KEK-1.der", "KEK.der"),
        ("db-1.der", "db.der"),
    ] {
        let o = tool(
            Command::new("openssl")
                .args(["x509", "-inform", "der", "-noout", "-subject", "-in"])
                .arg(out.join(file)),
        );
        assert!(o.status.success(), "{file}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("Export Org"));
        assert_eq!(
            std::fs::read(out.join(file)).unwrap(),
            std::fs::read(b.root.join("keys").join(org_der)).unwrap()
        );
    }
    let script = std::fs::read_to_string(out.join("gcloud.sh")).unwrap();
    for flag in [
        "--platform-key-file=PK-1.der",
        "--key-exchange-key-file=KEK-1.der",
        "--signature-database-file=db-1.der",
        "--forbidden-database-file=dbx-1.sha256.bin",
    ] {
        assert!(script.contains(flag), "{script}");
    }
    // Reproducible: the same export again gives the same archive.
    ok(&vmseal(
        &["export", "out/app.img", "--to", "gcp", "--out", "gcp2"],
        &b.root,
    ));
    assert!(
        std::fs::read(out.join("app.tar.gz")).unwrap()
            == std::fs::read(b.root.join("gcp2/app.tar.gz")).unwrap()
    );
}

#[test]
fn aws_uefi_data_decodes_in_uefivars_to_the_stores_secure_boot_variables() {
    let b = built();
    let o = vmseal(
        &["export", "out/app.img", "--to", "aws", "--out", "aws"],
        &b.root,
    );
    ok(&o);
    let out = b.root.join("aws");
    assert!(
        std::fs::read(out.join("app.raw")).unwrap()
            == std::fs::read(b.root.join("out/app.img")).unwrap()
    );
    let decode = |input: &str, file: &Path, json: &Path| {
        let o = tool(
            Command::new("uefivars")
                .args(["-i", input, "-o", "json", "-I"])
                .arg(file)
                .arg("-O")
                .arg(json),
        );
        assert!(o.status.success(), "uefivars: {}", text(&o));
        let v: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        v["variables"].as_array().unwrap().clone()
    };
    let from_blob = decode("aws", &out.join("app.uefi-data"), &out.join("blob.json"));
    let from_store = decode(
        "edk2",
        &b.root.join("out/app.vars.fd"),
        &out.join("store.json"),
    );
    let names: Vec<&str> = from_blob
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["PK", "KEK", "db", "dbx"]);
    for v in &from_blob {
        let same = from_store
            .iter()
            .find(|s| s["name"] == v["name"] && s["guid"] == v["guid"])
            .unwrap_or_else(|| panic!("{} not in the store", v["name"]));
        assert_eq!(v, same, "{}", v["name"]);
    }
}

#[test]
fn bad_inputs_exit_2_with_one_line_and_leave_nothing() {
    let b = built();
    let one_line = |o: &Output, words: &[&str]| {
        assert_eq!(o.status.code(), Some(2), "{}", text(o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for w in words {
            assert!(err.contains(w), "{w:?} not in {err}");
        }
    };
    // Not a vmseal image.
    std::fs::write(b.root.join("junk.img"), vec![0u8; 1 << 20]).unwrap();
    let o = vmseal(
        &["export", "junk.img", "--to", "aws", "--out", "bad1"],
        &b.root,
    );
    one_line(&o, &["junk.img", "GPT"]);
    assert!(!b.root.join("bad1").exists());
    // A store without PK (Debian's pristine OVMF store).
    let o = vmseal(
        &[
            "export",
            "out/app.img",
            "--to",
            "azure",
            "--out",
            "bad2",
            "--vars",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
        ],
        &b.root,
    );
    one_line(&o, &["OVMF_VARS_4M.fd", "no PK", "--no-keys"]);
    assert!(!b.root.join("bad2").exists());
    // Not a variable store.
    let o = vmseal(
        &[
            "export",
            "out/app.img",
            "--to",
            "gcp",
            "--out",
            "bad3",
            "--vars",
            "junk.img",
        ],
        &b.root,
    );
    one_line(&o, &["junk.img", "OVMF_VARS"]);
    assert!(!b.root.join("bad3").exists());
    // No store next to an image: say how to proceed.
    std::fs::create_dir_all(b.root.join("lone")).unwrap();
    std::fs::copy(b.root.join("out/app.img"), b.root.join("lone/app.img")).unwrap();
    let o = vmseal(
        &["export", "lone/app.img", "--to", "aws", "--out", "bad4"],
        &b.root,
    );
    one_line(&o, &["lone/app.img", "--vars", "--no-keys"]);
    // … and --no-keys exports the disk alone.
    let o = vmseal(
        &[
            "export",
            "lone/app.img",
            "--to",
            "aws",
            "--out",
            "nokeys",
            "--no-keys",
        ],
        &b.root,
    );
    ok(&o);
    let mut names: Vec<String> = std::fs::read_dir(b.root.join("nokeys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["app.raw", "aws.sh"]);
}
