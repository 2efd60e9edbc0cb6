//! End-to-end tests of the `vmseal` binary on generated inputs, checked with tools vmseal did
//! not write: `fsck.fat` (dosfstools), `sgdisk -v` (gdisk), `objdump -h` (binutils), `sbsign`
//! + `osslsigncode` (an independent Authenticode implementation), `openssl` (a throwaway key).

mod common;
use common::{sbsign_digest, tool, vmseal};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

const BASE: &str = r#"
[image]
name = "app"
version = "1.2.3"
size = "SIZE"

[guest]
elf = "guest.elf"
cmdline = "console=ttyS0"
memory = "16MiB"
console = "on"

[[service]]
name = "attest"
elf = "attest.elf"
memory = "8MiB"
devices = ["tpm"]

[[service]]
name = "log"
elf = "log.elf"
memory = "4MiB"
devices = ["serial"]

[[channel]]
name = "attest"
client = "app"
server = "attest"

[sections]
".sbat" = "sbat.csv"
"#;

/// An appliance directory with a manifest of `size` and its inputs.
fn appliance(dir: &Path, size: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("guest.elf"),
        vmseal::compose::init::sample_guest_elf("guest\r\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("attest.elf"),
        vmseal::compose::init::sample_elf_at(0x600_0000, "attest\r\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("log.elf"),
        vmseal::compose::init::sample_elf_at(0x700_0000, "log\r\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("sbat.csv"),
        "sbat,1,SBAT Version,sbat,1,https://example.invalid\n",
    )
    .unwrap();
    let m = dir.join("vmseal.toml");
    let manifest = if size.is_empty() {
        BASE.replace("size = \"SIZE\"\n", "")
    } else {
        BASE.replace("SIZE", size)
    };
    std::fs::write(&m, manifest).unwrap();
    m
}

fn build(dir: &Path) -> (PathBuf, PathBuf, Value) {
    ok(&vmseal(
        &["build", "vmseal.toml", "--out", "out", "--quiet"],
        dir,
    ));
    let lock: Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/app.lock.json")).unwrap()).unwrap();
    (dir.join("out/app.img"), dir.join("out/app.efi"), lock)
}

#[test]
fn same_manifest_in_two_directories_gives_identical_bytes() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("one/deeper");
    let b = t.path().join("two");
    appliance(&a, "16MiB");
    appliance(&b, "16MiB");
    let (img_a, efi_a, lock_a) = build(&a);
    let (img_b, efi_b, lock_b) = build(&b);
    assert!(
        std::fs::read(&efi_a).unwrap() == std::fs::read(&efi_b).unwrap(),
        "the .efi differs"
    );
    assert!(
        std::fs::read(&img_a).unwrap() == std::fs::read(&img_b).unwrap(),
        "the .img differs"
    );
    assert_eq!(lock_a, lock_b);
    // And a rebuild in place is identical too (no clock, no leftovers).
    let before = std::fs::read(&img_a).unwrap();
    build(&a);
    assert!(std::fs::read(&img_a).unwrap() == before);
    let names: Vec<_> = std::fs::read_dir(a.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        4,
        "only the four outputs (.img, .efi, .lock.json, .pcrs.json), no temporaries: {names:?}"
    );
}

#[test]
fn no_predict_builds_the_same_image_without_the_prediction() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    appliance(&a, "16MiB");
    let (img, efi, _) = build(&a);
    ok(&vmseal(
        &[
            "build",
            "vmseal.toml",
            "--out",
            "np",
            "--quiet",
            "--no-predict",
        ],
        &a,
    ));
    assert!(std::fs::read(a.join("np/app.img")).unwrap() == std::fs::read(img).unwrap());
    assert!(std::fs::read(a.join("np/app.efi")).unwrap() == std::fs::read(efi).unwrap());
    assert!(!a.join("np/app.pcrs.json").exists());
    assert!(a.join("out/app.pcrs.json").is_file());
}

#[test]
fn lock_file_records_inputs_outputs_and_sections() {
    let t = tempfile::tempdir().unwrap();
    appliance(t.path(), "16MiB");
    let (img, efi, lock) = build(t.path());
    assert_eq!(lock["format"], 1);
    assert_eq!(lock["vmseal"], env!("CARGO_PKG_VERSION"));
    assert_eq!(lock["manifest"]["image"]["size"], 16 << 20);
    assert_eq!(lock["manifest"]["guest"]["payload"]["elf"], "guest.elf");
    let inputs = lock["inputs"].as_array().unwrap();
    let fields: Vec<_> = inputs
        .iter()
        .map(|i| i["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "stub",
            "guest.elf",
            "service[0].elf",
            "service[1].elf",
            "sections.\".sbat\""
        ]
    );
    let guest = std::fs::read(t.path().join("guest.elf")).unwrap();
    assert_eq!(inputs[1]["size"], guest.len());
    assert_eq!(inputs[1]["sha256"], sha256_hex(&guest));
    let outputs = lock["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["file"], "app.efi");
    assert_eq!(
        outputs[0]["sha256"],
        sha256_hex(&std::fs::read(efi).unwrap())
    );
    assert_eq!(outputs[1]["file"], "app.img");
    assert_eq!(
        outputs[1]["sha256"],
        sha256_hex(&std::fs::read(img).unwrap())
    );
    let guest_section = lock["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == ".guest")
        .unwrap();
    assert_eq!(guest_section["sha256"], sha256_hex(&guest));
    // Keys are sorted in the text.
    let text = std::fs::read_to_string(t.path().join("out/app.lock.json")).unwrap();
    let top: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("  \""))
        .map(|l| l.trim().split('"').nth(1).unwrap().to_string())
        .collect();
    let mut sorted = top.clone();
    sorted.sort();
    assert_eq!(top, sorted);
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

fn esp_checks(size: &str, expect_fat: &str) {
    let t = tempfile::tempdir().unwrap();
    appliance(t.path(), size);
    let (img, efi, lock) = build(t.path());
    assert_eq!(lock["disk"]["fat"], expect_fat);
    let sg = tool(Command::new("sgdisk").arg("-v").arg(&img));
    let out = String::from_utf8_lossy(&sg.stdout);
    assert!(
        sg.status.success() && out.contains("No problems found"),
        "sgdisk -v:\n{out}"
    );
    let first = lock["disk"]["esp_first_lba"].as_u64().unwrap();
    let last = lock["disk"]["esp_last_lba"].as_u64().unwrap();
    let esp = t.path().join("esp.bin");
    let dd = tool(
        Command::new("dd")
            .arg(format!("if={}", img.display()))
            .arg(format!("of={}", esp.display()))
            .arg("bs=512")
            .arg(format!("skip={first}"))
            .arg(format!("count={}", last + 1 - first))
            .arg("status=none"),
    );
    assert!(dd.status.success());
    let fsck = tool(Command::new("fsck.fat").arg("-n").arg(&esp));
    let text =
        String::from_utf8_lossy(&fsck.stdout).to_string() + &String::from_utf8_lossy(&fsck.stderr);
    assert!(fsck.status.success(), "fsck.fat -n:\n{text}");
    assert_eq!(
        text.lines().count(),
        2,
        "fsck.fat reported something:\n{text}"
    );
    // mtools reads BOOTX64.EFI back, byte for byte the .efi (vmseal writes the file's data
    // itself, into the clusters fatfs allocated).
    let back = t.path().join("back.efi");
    let o = tool(
        Command::new("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(&esp)
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .arg(&back),
    );
    assert!(
        o.status.success(),
        "mcopy: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        std::fs::read(&back).unwrap() == std::fs::read(&efi).unwrap(),
        "BOOTX64.EFI in the {expect_fat} ESP differs from the .efi"
    );
}

#[test]
fn small_esp_is_fat12_and_passes_fsck_and_sgdisk() {
    esp_checks("16MiB", "fat12");
}

#[test]
fn medium_esp_is_fat16_and_passes_fsck_and_sgdisk() {
    esp_checks("24MiB", "fat16");
}

#[test]
fn large_esp_is_fat32_and_passes_fsck_and_sgdisk() {
    esp_checks("64MiB", "fat32");
}

#[test]
fn objdump_lists_the_sections_in_canonical_order() {
    let t = tempfile::tempdir().unwrap();
    appliance(t.path(), "16MiB");
    let (_, efi, _) = build(t.path());
    let o = tool(Command::new("objdump").arg("-h").arg(&efi));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.next().filter(|i| i.parse::<u32>().is_ok()).and(w.next())
        })
        .collect();
    let tail = &names[names.len() - 6..];
    assert_eq!(
        tail,
        [".guest", ".cmdline", ".vmseal", ".svc0", ".svc1", ".sbat"],
        "{text}"
    );
    assert!(names.contains(&".text"));
}

#[test]
fn pe_checksum_matches_pefile() {
    let t = tempfile::tempdir().unwrap();
    appliance(t.path(), "16MiB");
    let (_, efi, _) = build(t.path());
    // pefile (Python, PyPI) recomputes the CheckSum field from the file; setup.sh installs it.
    let o = tool(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, pefile\n\
         pe = pefile.PE(sys.argv[1], fast_load=True)\n\
         print(pe.OPTIONAL_HEADER.CheckSum, pe.generate_checksum())",
            )
            .arg(&efi),
    );
    assert!(
        o.status.success(),
        "pefile: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    assert!(
        v.len() == 2 && v[0] != 0 && v[0] == v[1],
        "stored, computed: {text}"
    );
}

#[test]
fn authenticode_digest_matches_sbsign() {
    let t = tempfile::tempdir().unwrap();
    appliance(t.path(), "16MiB");
    let (_, efi, _) = build(t.path());
    let ours = signing::authenticode::digest(
        std::fs::read(&efi).unwrap().as_slice(),
        signing::authenticode::DigestAlgorithm::Sha256,
    )
    .unwrap();
    assert_eq!(hex::encode(&ours), sbsign_digest(&efi, t.path()));
    // And vmseal inspect on the signed copy still reports the same digest (cert table excluded).
    let o = vmseal(&["inspect", "--json", "signed.efi"], t.path());
    ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["pe"]["authenticode_sha256"], hex::encode(&ours));
    assert!(v["pe"]["certificate_table"]["size"].as_u64().unwrap() > 0);
}

#[test]
fn many_extra_sections_grow_the_headers_and_stay_valid() {
    let t = tempfile::tempdir().unwrap();
    appliance(t.path(), "16MiB");
    let mut m = std::fs::read_to_string(t.path().join("vmseal.toml")).unwrap();
    for i in 0..40 {
        let f = format!("x{i:02}.bin");
        std::fs::write(t.path().join(&f), vec![i as u8; 100 + i * 37]).unwrap();
        m.push_str(&format!("\".x{i:02}\" = \"{f}\"\n"));
    }
    std::fs::write(t.path().join("vmseal.toml"), m).unwrap();
    let (img, efi, _) = build(t.path());
    let o = tool(Command::new("objdump").arg("-h").arg(&efi));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(".x39"));
    let ours = signing::authenticode::digest(
        std::fs::read(&efi).unwrap().as_slice(),
        signing::authenticode::DigestAlgorithm::Sha256,
    )
    .unwrap();
    assert_eq!(hex::encode(ours), sbsign_digest(&efi, t.path()));
    let sg = tool(Command::new("sgdisk").arg("-v").arg(&img));
    assert!(sg.status.success());
}

#[test]
fn linux_payload_goes_to_dot_linux() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // Any PE32+ x86_64 image stands in for a kernel: take a built appliance PE.
    appliance(&dir.join("seed"), "16MiB");
    let (_, seed_efi, _) = build(&dir.join("seed"));
    std::fs::copy(&seed_efi, dir.join("vmlinuz")).unwrap();
    std::fs::write(dir.join("initrd.img"), b"070701fake-cpio").unwrap();
    std::fs::write(dir.join("os-release"), "ID=vmseal\n").unwrap();
    std::fs::write(
        dir.join("vmseal.toml"),
        "[image]\nname = \"app\"\nversion = \"1\"\nsize = \"16MiB\"\n[guest]\nkernel = \"vmlinuz\"\ninitrd = \"initrd.img\"\nos-release = \"os-release\"\ncmdline = \"console=ttyS0\"\nmemory = \"256MiB\"\nconsole = \"off\"\n",
    )
    .unwrap();
    let (_, efi, _) = build(dir);
    let o = vmseal(&["inspect", "--json", efi.to_str().unwrap()], dir);
    ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<_> = v["pe"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        &names[names.len() - 5..],
        [".linux", ".osrel", ".cmdline", ".initrd", ".vmseal"]
    );
    assert_eq!(v["pe"]["launch_policy"]["guest"]["kind"], "linux");
    assert_eq!(v["pe"]["launch_policy"]["console"], "off");
}

#[test]
fn inspect_json_shows_partitions_files_sections_and_policy() {
    let t = tempfile::tempdir().unwrap();
    appliance(t.path(), "16MiB");
    let (img, efi, lock) = build(t.path());
    let o = vmseal(&["inspect", "--json", img.to_str().unwrap()], t.path());
    ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "disk");
    assert_eq!(v["gpt"]["partitions"][0]["name"], "EFI System Partition");
    assert_eq!(
        v["gpt"]["partitions"][0]["type_guid"],
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    );
    assert_eq!(v["gpt"]["disk_guid"], lock["disk"]["disk_guid"]);
    assert_eq!(v["esp"]["files"][0]["path"], "\\EFI\\BOOT\\BOOTX64.EFI");
    assert_eq!(v["esp"]["files"][0]["sha256"], lock["outputs"][0]["sha256"]);
    let sections = v["pe"]["sections"].as_array().unwrap();
    for s in lock["sections"].as_array().unwrap() {
        let found = sections.iter().find(|x| x["name"] == s["name"]).unwrap();
        assert_eq!(found["sha256"], s["sha256"], "{}", s["name"]);
    }
    let p = &v["pe"]["launch_policy"];
    assert_eq!(p["name"], "app");
    assert_eq!(p["services"][0]["devices"][0], "tpm");
    assert_eq!(p["services"][1]["section"], ".svc1");
    // The .efi alone gives the same PE report; the text form names the digest.
    let o = vmseal(&["inspect", "--json", efi.to_str().unwrap()], t.path());
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["pe"], v["pe"]);
    let o = vmseal(&["inspect", img.to_str().unwrap()], t.path());
    ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains(v["pe"]["authenticode_sha256"].as_str().unwrap())
    );
}

#[test]
fn init_writes_a_starter_that_builds() {
    let t = tempfile::tempdir().unwrap();
    let o = vmseal(&["init", "My_App"], t.path());
    ok(&o);
    let dir = t.path().join("My_App");
    assert!(dir.join("README.txt").exists());
    // The journey init prints: keys new into DIR/keys, then build — a signed image named
    // after the directory, with its variable store.
    let next = String::from_utf8_lossy(&o.stderr);
    assert!(next.contains("vmseal keys new --out"), "{next}");
    ok(&vmseal(
        &["keys", "new", "--out", "keys", "--org", "My Org"],
        &dir,
    ));
    ok(&vmseal(&["build", "vmseal.toml", "--out", "out"], &dir));
    for f in [
        "my-app.img",
        "my-app.efi",
        "my-app.vars.fd",
        "my-app.pcrs.json",
    ] {
        assert!(dir.join("out").join(f).exists(), "{f}");
    }
    let o = tool(
        Command::new("sbverify")
            .args(["--cert", "keys/db.crt", "out/my-app.efi"])
            .current_dir(&dir),
    );
    assert!(
        o.status.success(),
        "sbverify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // --unsigned builds without keys.
    ok(&vmseal(
        &["build", "vmseal.toml", "--out", "u", "--unsigned"],
        &dir,
    ));
    assert!(dir.join("u/my-app.img").exists() && !dir.join("u/my-app.vars.fd").exists());
    // A second init refuses to overwrite.
    let o = vmseal(&["init", "My_App"], t.path());
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let t = tempfile::tempdir().unwrap();
    let o = vmseal(&["completions", "bash"], t.path());
    ok(&o);
    let script = t.path().join("vmseal.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    // bash itself parses it, and it completes every verb.
    let b = tool(Command::new("bash").arg("-n").arg(&script));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for verb in [
        "build", "boot", "export", "keys", "pcr", "sign", "verify", "vars",
    ] {
        assert!(text.contains(verb), "{verb}");
    }
    for shell in ["zsh", "fish"] {
        ok(&vmseal(&["completions", shell], t.path()));
    }
    let o = vmseal(&["man", "--out", "man"], t.path());
    ok(&o);
    for page in [
        "vmseal.1",
        "vmseal-build.1",
        "vmseal-keys-rotate.1",
        "vmseal-pcr-sign.1",
    ] {
        let p = t.path().join("man").join(page);
        assert!(p.is_file(), "{page}");
        // man(1) renders it (groff): a NAME section naming the command.
        let m = tool(Command::new("man").arg("-l").arg(&p).env("MANPAGER", "cat"));
        assert!(
            m.status.success(),
            "{page}: {}",
            String::from_utf8_lossy(&m.stderr)
        );
        let rendered = String::from_utf8_lossy(&m.stdout);
        assert!(rendered.contains("NAME"), "{page}: {rendered}");
        assert!(
            rendered.contains(page.trim_end_matches(".1")),
            "{page}: {rendered}"
        );
    }
}

#[test]
fn without_image_size_the_image_is_the_smallest_whole_mib_that_fits() {
    let t = tempfile::tempdir().unwrap();
    appliance(t.path(), "");
    // A 5 MiB extra section: more than the smallest image (3 MiB) holds.
    let big = vec![b'x'; 5 << 20];
    std::fs::write(t.path().join("sbat.csv"), &big).unwrap();
    let (img, _, lock) = build(t.path());
    let size = std::fs::metadata(&img).unwrap().len();
    assert!(size > 5 << 20, "{size}");
    assert_eq!(size % (1 << 20), 0);
    assert_eq!(
        lock["manifest"]["image"]["size"], size,
        "recorded in the lock"
    );
    assert_eq!(lock["manifest"]["image"]["size_auto"], true);
    let sg = tool(Command::new("sgdisk").arg("-v").arg(&img));
    assert!(
        String::from_utf8_lossy(&sg.stdout).contains("No problems found"),
        "sgdisk -v: {}",
        String::from_utf8_lossy(&sg.stdout)
    );
    // One MiB less does not hold the appliance: an explicit size that small is refused.
    let smaller = format!("{}MiB", size / (1 << 20) - 1);
    let dir = t.path().join("smaller");
    appliance(&dir, &smaller);
    std::fs::write(dir.join("sbat.csv"), &big).unwrap();
    let o = vmseal(&["build", "vmseal.toml", "--out", "out"], &dir);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{smaller}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("image.size") && err.contains("does not fit"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let t = tempfile::tempdir().unwrap();
    assert_eq!(vmseal(&["build"], t.path()).status.code(), Some(2));
    assert_eq!(vmseal(&["frobnicate"], t.path()).status.code(), Some(2));
    assert_eq!(
        vmseal(&["inspect", "--bogus", "x"], t.path()).status.code(),
        Some(2)
    );
    assert_eq!(
        vmseal(&["inspect", "missing.img"], t.path()).status.code(),
        Some(2)
    );
    assert_eq!(vmseal(&["--help"], t.path()).status.code(), Some(0));
}

/// One malformed manifest: (case, edit of the good appliance, field, words of the message).
fn malformed(case: &str, edit: impl FnOnce(&Path), field: &str, words: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    appliance(dir, "16MiB");
    edit(dir);
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = listing(dir);
    let o = vmseal(&["build", "vmseal.toml", "--out", "out"], dir);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{case}: {stderr}");
    assert!(!stderr.contains("panicked"), "{case}: {stderr}");
    // One line per problem (`vmseal.toml:LINE: FIELD: PROBLEM — FIX`, LINE where the text names
    // the field or its table), then a count when there are several.
    let mut lines: Vec<&str> = stderr.trim_end().lines().collect();
    if lines.len() > 1 {
        let count = lines.pop().unwrap_or_default();
        assert_eq!(
            count,
            format!("error: {} problems in vmseal.toml", lines.len()),
            "{case}:\n{stderr}"
        );
    }
    for line in &lines {
        let rest = line
            .strip_prefix("error: vmseal.toml:")
            .unwrap_or_else(|| panic!("{case}: {line}"));
        let (n, _) = rest
            .split_once(": ")
            .unwrap_or_else(|| panic!("{case}: {line}"));
        assert!(
            n.parse::<usize>().is_ok_and(|n| n >= 1),
            "{case}: no line: {line}"
        );
        assert!(line.contains(" — "), "{case}: no fix: {line}");
    }
    // The problem the case is about is one of them (the others, if any, follow from it).
    let line = lines
        .iter()
        .find(|l| l.contains(&format!(": {field}:")))
        .unwrap_or_else(|| panic!("{case}: field {field} not named:\n{stderr}"));
    for w in words {
        assert!(line.contains(w), "{case}: '{w}' missing: {line}");
    }
    assert_eq!(listing(dir), before, "{case}: files left behind");
    assert!(o.stdout.is_empty());
}

fn rewrite(dir: &Path, from: &str, to: &str) {
    let p = dir.join("vmseal.toml");
    let s = std::fs::read_to_string(&p).unwrap();
    assert!(s.contains(from), "{from}");
    std::fs::write(p, s.replacen(from, to, 1)).unwrap();
}

#[test]
fn ten_malformed_manifests_exit_2_with_one_line_per_problem() {
    malformed(
        "syntax error",
        |d| rewrite(d, "[guest]", "[guest"),
        "syntax",
        &["TOML", "vmseal.toml:7:"],
    );
    malformed(
        "unknown key",
        |d| rewrite(d, "console = \"on\"", "console = \"on\"\ncolour = \"blue\""),
        "guest.colour",
        &["unknown key", "remove"],
    );
    malformed(
        "missing payload",
        |d| rewrite(d, "elf = \"guest.elf\"", "elf = \"hello.elf\""),
        "guest.elf",
        &[
            "file 'hello.elf' not found",
            "build it first or fix the path",
        ],
    );
    malformed(
        "payload not ELF",
        |d| std::fs::write(d.join("guest.elf"), b"#!/bin/sh\necho hi\n").unwrap(),
        "guest.elf",
        &["not an ELF"],
    );
    malformed(
        "payload too big",
        |d| {
            let mut big = vmseal::compose::init::sample_guest_elf("x");
            big.resize(20 << 20, 0);
            std::fs::write(d.join("guest.elf"), big).unwrap();
        },
        "image.size",
        &["does not fit", "raise image.size"],
    );
    malformed(
        "collides with vmseal's section",
        |d| rewrite(d, "\".sbat\"", "\".vmseal\""),
        "sections.\".vmseal\"",
        &["vmseal's own"],
    );
    malformed(
        "collides with the stub's section",
        |d| rewrite(d, "\".sbat\"", "\".text\""),
        "sections.\".text\"",
        &["stub already has"],
    );
    malformed(
        "duplicate service",
        |d| rewrite(d, "name = \"log\"", "name = \"attest\""),
        "service[1].name",
        &["unique"],
    );
    malformed(
        "negative memory",
        |d| rewrite(d, "memory = \"16MiB\"", "memory = -16"),
        "guest.memory",
        &["negative"],
    );
    malformed(
        "absurd memory",
        |d| rewrite(d, "memory = \"16MiB\"", "memory = \"900GiB\""),
        "guest.memory",
        &["64GiB"],
    );
    malformed(
        "image too small",
        |d| rewrite(d, "size = \"16MiB\"", "size = \"2MiB\""),
        "image.size",
        &["at least"],
    );
    malformed(
        "empty file",
        |d| std::fs::write(d.join("attest.elf"), b"").unwrap(),
        "service[0].elf",
        &["empty"],
    );
    malformed(
        "ELF but not x86_64 ET_EXEC",
        |d| {
            let mut e = vmseal::compose::init::sample_guest_elf("x");
            e[16] = 3; // ET_DYN
            std::fs::write(d.join("guest.elf"), e).unwrap();
        },
        "guest.elf",
        &["ET_EXEC"],
    );
}

#[test]
fn malformed_partitions_and_channels_exit_2_with_one_line_per_problem() {
    malformed(
        "channel to an unknown partition",
        |d| rewrite(d, "client = \"app\"", "client = \"nobody\""),
        "channel[0].client",
        &["not a partition", "\"app\" (the guest)"],
    );
    malformed(
        "channel served by the guest",
        |d| rewrite(d, "server = \"attest\"", "server = \"app\""),
        "channel[0].server",
        &["not a service"],
    );
    malformed(
        "duplicate channel",
        |d| {
            let p = d.join("vmseal.toml");
            let s = std::fs::read_to_string(&p).unwrap();
            let extra = "\n[[channel]]\nname = \"attest\"\nclient = \"log\"\nserver = \"attest\"\n";
            std::fs::write(
                &p,
                s.replacen("[sections]", &format!("{extra}\n[sections]"), 1),
            )
            .unwrap();
        },
        "channel[1].name",
        &["unique"],
    );
    malformed(
        "unknown channel key",
        |d| {
            rewrite(
                d,
                "server = \"attest\"",
                "server = \"attest\"\nbandwidth = 3",
            )
        },
        "channel[0].bandwidth",
        &["unknown key"],
    );
    malformed(
        "overlapping grants",
        |d| {
            std::fs::write(
                d.join("log.elf"),
                vmseal::compose::init::sample_elf_at(0x640_0000, "log"),
            )
            .unwrap()
        },
        "service[1].elf",
        &["overlaps", "service[0].elf"],
    );
    malformed(
        "ELF too big for its memory",
        |d| {
            // A PT_LOAD of 5 MiB in a 4 MiB service: segments plus the 64 KiB area do not fit.
            let mut e = vmseal::compose::init::sample_elf_at(0x700_0000, "log");
            e[64 + 40..64 + 48].copy_from_slice(&(5u64 << 20).to_le_bytes());
            std::fs::write(d.join("log.elf"), e).unwrap();
        },
        "service[1].memory",
        &["hypervisor area", "at least \"6MiB\""],
    );
    malformed(
        "services beside a Linux guest",
        |d| {
            let mut pe = vec![0u8; 0x200];
            pe[..2].copy_from_slice(b"MZ");
            std::fs::write(d.join("vmlinuz"), pe).unwrap();
            rewrite(d, "elf = \"guest.elf\"", "kernel = \"vmlinuz\"");
        },
        "service[0]",
        &["ELF guest", "remove the services"],
    );
}
