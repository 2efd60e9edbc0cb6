//! The SEV-SNP launch digest `vmseal pcr predict --snp-*` writes into pcrs.json, against
//! `sev-snp-measure` (PyPI; scripts/setup.sh installs it), the reference implementation, on
//! the same firmware and inputs. No VM boots here, and no SNP hardware is involved: these
//! tests prove that vmseal computes what sev-snp-measure computes, nothing more
//! (docs/confidential.md).
//!
//! - Debian's `OVMF.fd` (a real SEV-capable OvmfPkgX64 build with SEV metadata, but no
//!   `SNP_KERNEL_HASHES` section): the digest of the firmware and VMSAs for several vCPU
//!   counts, models, guest features and VMMs; and vmseal refuses to claim that it covers the
//!   appliance.
//! - A **synthetic** firmware file made here (footer GUID table + SEV metadata listing an
//!   `SNP_KERNEL_HASHES` page, pages of patterned bytes — it boots nothing): the digest with
//!   the appliance PE as the direct-boot kernel. Debian ships no AmdSev OVMF, so this proves
//!   only the arithmetic of the hash-table page against the oracle.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vmseal_tests::{Built, hello_elf, linux_inputs, repo_root, run, vmseal_bin, vmseal_build};

/// Debian's unified OVMF image (code + variables), SEV-capable.
const DEBIAN_OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// `images/NAME` built once per test process (both tests read the same images) into cargo's
/// scratch directory for integration tests.
fn example(name: &str) -> &'static Built {
    static BUILT: OnceLock<Vec<(&'static str, Built)>> = OnceLock::new();
    let all = BUILT.get_or_init(|| {
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("snp");
        let _ = std::fs::remove_dir_all(&scratch);
        ["hello", "linux"]
            .into_iter()
            .map(|name| {
                let ready = match name {
                    "hello" => hello_elf().is_file(),
                    _ => linux_inputs().join("vmlinuz").is_file(),
                };
                assert!(ready, "images/{name}: the build script wrote no payload");
                let built = vmseal_build(
                    &repo_root().join(format!("images/{name}/vmseal.toml")),
                    &scratch.join(name),
                    name,
                );
                (name, built)
            })
            .collect()
    });
    all.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| b)
        .expect("an example appliance")
}

/// `sev-snp-measure --mode snp ARGS` (the module the setup installed, run with the tests'
/// python3): the digest it prints.
fn oracle(args: &[&str]) -> String {
    let out = run(Command::new("python3")
        .args(["-m", "sevsnpmeasure.cli", "--mode", "snp"])
        .args(args));
    let d = out.trim().to_string();
    assert_eq!(d.len(), 96, "sev-snp-measure printed {out:?}");
    d
}

/// `vmseal pcr predict IMAGE --json ARGS`: the `snp` object (one PCR bank: the PCRs are not
/// what is checked here, and every bank costs a hash of the payload).
fn vmseal_snp(image: &Path, args: &[&str]) -> serde_json::Value {
    let out = run(Command::new(vmseal_bin())
        .args(["pcr", "predict", "--json", "--bank", "sha256"])
        .arg(image)
        .args(args));
    let v: serde_json::Value = serde_json::from_str(&out).expect("pcr predict --json");
    v.get("snp").cloned().expect("an snp object")
}

/// One launch setting, as both tools spell it.
struct Case {
    vcpus: u32,
    vcpu_type: &'static str,
    features: &'static str,
    vmm: (&'static str, &'static str),
    policy: &'static str,
}

const CASES: &[Case] = &[
    Case {
        vcpus: 1,
        vcpu_type: "EPYC-v4",
        features: "0x1",
        vmm: ("qemu", "QEMU"),
        policy: "0x30000",
    },
    Case {
        vcpus: 4,
        vcpu_type: "EPYC-Milan",
        features: "0x21",
        vmm: ("qemu", "QEMU"),
        policy: "0xb0000",
    },
    Case {
        vcpus: 2,
        vcpu_type: "EPYC-Genoa",
        features: "0x1",
        vmm: ("ec2", "ec2"),
        policy: "0x30000",
    },
    Case {
        vcpus: 3,
        vcpu_type: "EPYC-Rome",
        features: "0x1",
        vmm: ("gce", "gce"),
        policy: "0x30000",
    },
];

fn check(image: &Path, firmware: &Path, c: &Case, kernel: Option<&Path>) {
    let fw = firmware.to_str().expect("UTF-8 path");
    let vcpus = c.vcpus.to_string();
    let mut ours = vec![
        "--snp-firmware",
        fw,
        "--snp-vcpus",
        &vcpus,
        "--snp-vcpu-type",
        c.vcpu_type,
        "--snp-guest-features",
        c.features,
        "--snp-vmm",
        c.vmm.0,
        "--snp-policy",
        c.policy,
    ];
    let mut theirs = vec![
        "--ovmf",
        fw,
        "--vcpus",
        &vcpus,
        "--vcpu-type",
        c.vcpu_type,
        "--guest-features",
        c.features,
        "--vmm-type",
        c.vmm.1,
    ];
    let k;
    match kernel {
        Some(p) => {
            k = p.to_str().expect("UTF-8 path").to_string();
            theirs.extend(["--kernel", &k]);
        }
        None => ours.extend(["--snp-payload", "none"]),
    }
    let snp = vmseal_snp(image, &ours);
    let expected = oracle(&theirs);
    assert_eq!(
        snp["launch_digest"].as_str(),
        Some(expected.as_str()),
        "{} vCPU {} features {} vmm {} kernel {kernel:?}: {snp:#}",
        c.vcpus,
        c.vcpu_type,
        c.features,
        c.vmm.0
    );
    assert_eq!(snp["policy"].as_str(), Some(c.policy));
    assert_eq!(snp["vcpus"].as_u64(), Some(u64::from(c.vcpus)));
    assert_eq!(snp["payload"].is_null(), kernel.is_none(), "{snp:#}");
    let covers = snp["covers"].as_str().unwrap_or_default();
    assert_eq!(covers.contains("NOT the appliance"), kernel.is_none());
}

#[test]
fn snp_digest_of_debian_ovmf_equals_sev_snp_measure_and_never_claims_the_appliance() {
    for name in ["hello", "linux"] {
        let built = example(name);
        for c in CASES {
            check(&built.image, Path::new(DEBIAN_OVMF), c, None);
        }
        // The default payload is the appliance: Debian's firmware cannot measure it, so
        // vmseal says so (exit 2, one line, nothing on stdout) instead of a digest.
        let out = Command::new(vmseal_bin())
            .args(["pcr", "predict", "--json"])
            .arg(&built.image)
            .args(["--snp-firmware", DEBIAN_OVMF])
            .output()
            .expect("vmseal runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(out.stdout.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(DEBIAN_OVMF) && err.contains("SNP_KERNEL_HASHES"),
            "{err}"
        );
    }
    // A vCPU signature instead of a model (EPYC-Milan's, family 25 model 1 stepping 1).
    let built = example("hello");
    let snp = vmseal_snp(
        &built.image,
        &[
            "--snp-firmware",
            DEBIAN_OVMF,
            "--snp-vcpus",
            "2",
            "--snp-vcpu-sig",
            "0xa00f11",
            "--snp-payload",
            "none",
        ],
    );
    let expected = oracle(&[
        "--ovmf",
        DEBIAN_OVMF,
        "--vcpus",
        "2",
        "--vcpu-sig",
        "0xa00f11",
    ]);
    assert_eq!(snp["launch_digest"].as_str(), Some(expected.as_str()));
    assert!(snp["vcpu_type"].is_null());
}

/// A synthetic SEV firmware image of `pages` pages (see the module docs): patterned bytes, the
/// SEV metadata in the second-to-last page, the footer GUID table ending 32 bytes before the
/// end (edk2 `ResetVectorVtf0.asm`, `OvmfSevMetadata.asm`).
fn synthetic_firmware(pages: usize) -> Vec<u8> {
    fn guid(s: &str) -> [u8; 16] {
        // EFI byte order: the first three fields little-endian.
        let h: Vec<u8> = s
            .split('-')
            .flat_map(|p| {
                (0..p.len())
                    .step_by(2)
                    .map(move |i| u8::from_str_radix(&p[i..i + 2], 16).expect("hex"))
            })
            .collect();
        let mut g = [0u8; 16];
        g.copy_from_slice(&h);
        g[0..4].reverse();
        g[4..6].reverse();
        g[6..8].reverse();
        g
    }
    let len = pages * 4096;
    let mut img: Vec<u8> = (0..len)
        .map(|i| ((i / 4096) * 31 + (i % 4096) * 7) as u8)
        .collect();
    // SEV metadata: "ASEV", size, version 1, count, then { gpa, size, type }.
    let sections: [(u32, u32, u32); 5] = [
        (0x80_0000, 0x9000, 1),  // SNP_SEC_MEM
        (0x80_9000, 0x1000, 2),  // SNP_SECRETS
        (0x80_a000, 0x1000, 3),  // CPUID
        (0x80_b000, 0x1000, 16), // SNP_KERNEL_HASHES
        (0x80_c000, 0x4000, 1),  // SNP_SEC_MEM
    ];
    let mut meta = b"ASEV".to_vec();
    meta.extend_from_slice(&(16 + 12 * sections.len() as u32).to_le_bytes());
    meta.extend_from_slice(&1u32.to_le_bytes());
    meta.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (g, s, t) in sections {
        for v in [g, s, t] {
            meta.extend_from_slice(&v.to_le_bytes());
        }
    }
    let meta_at = len - 2 * 4096 + 0x100;
    img[meta_at..meta_at + meta.len()].copy_from_slice(&meta);
    // The table, entries in order from its start: { data; u16 size; GUID }.
    let entries: [(&str, Vec<u8>); 4] = [
        // An entry neither tool uses (edk2's SEV-ES work area GUID), to be skipped.
        ("4c2eb361-7d9b-4cc3-8081-127c90d3d294", [0u8; 8].to_vec()),
        // SEV hash table: GPA (offset 0xc00 into the SNP_KERNEL_HASHES page), size.
        (
            "7255371f-3a3b-4b04-927b-1da6efa8d454",
            [0x80_bc00u32.to_le_bytes(), 0x400u32.to_le_bytes()].concat(),
        ),
        // SEV-ES reset block: the APs' reset EIP.
        (
            "00f771de-1a7e-4fcb-890e-68c77e2fb44e",
            0x80_b004u32.to_le_bytes().to_vec(),
        ),
        // SEV metadata: offset from the end.
        (
            "dc886566-984a-4798-a75e-5585a7bf67cc",
            ((len - meta_at) as u32).to_le_bytes().to_vec(),
        ),
    ];
    let mut table = Vec::new();
    for (g, d) in &entries {
        table.extend_from_slice(d);
        table.extend_from_slice(&((d.len() + 18) as u16).to_le_bytes());
        table.extend_from_slice(&guid(g));
    }
    table.extend_from_slice(&((table.len() + 18) as u16).to_le_bytes());
    table.extend_from_slice(&guid("96b582de-1fb2-45f7-baea-a366c55a082d"));
    let end = len - 32;
    img[end - table.len()..end].copy_from_slice(&table);
    img
}

#[test]
fn snp_digest_with_the_appliance_in_a_synthetic_kernel_hashes_firmware_equals_sev_snp_measure() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let firmware: PathBuf = scratch.path().join("synthetic-sev-ovmf.fd");
    std::fs::write(&firmware, synthetic_firmware(64)).expect("write the synthetic firmware");
    let mut digests = Vec::new();
    for name in ["hello", "linux"] {
        let built = example(name);
        for c in CASES {
            // The kernel QEMU would get is NAME.efi; vmseal reads BOOTX64.EFI from the image.
            check(&built.image, &firmware, c, Some(&built.efi));
        }
        let snp = vmseal_snp(
            &built.image,
            &["--snp-firmware", firmware.to_str().unwrap()],
        );
        assert_eq!(
            snp["payload"]["kernel_sha256"].as_str(),
            Some(vmseal_tests::hex(&sha256_file(&built.efi)).as_str())
        );
        digests.push(snp["launch_digest"].as_str().map(str::to_string));
    }
    assert_ne!(digests[0], digests[1], "the digest covers the appliance");
}

fn sha256_file(p: &Path) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(std::fs::read(p).expect("read")).to_vec()
}

/// `images/hello/vmseal.toml` with absolute input paths and `extra` appended, in `dir`.
fn hello_manifest_with(dir: &Path, extra: &str) -> PathBuf {
    let _ = hello_elf();
    let root = repo_root().canonicalize().expect("repo root");
    let text = std::fs::read_to_string(root.join("images/hello/vmseal.toml"))
        .expect("images/hello/vmseal.toml")
        .replace("\"out/", &format!("\"{}/images/hello/out/", root.display()))
        .replace(
            "\"../attest/",
            &format!("\"{}/images/attest/", root.display()),
        );
    let m = dir.join("vmseal.toml");
    std::fs::write(&m, format!("{text}\n{extra}")).expect("write the manifest");
    m
}

#[test]
fn build_with_an_snp_table_writes_the_digest_into_pcrs_json() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let firmware = scratch.path().join("synthetic-sev-ovmf.fd");
    std::fs::write(&firmware, synthetic_firmware(64)).expect("write the synthetic firmware");
    let m = hello_manifest_with(
        scratch.path(),
        &format!(
            "[snp]\nfirmware = \"{}\"\nvcpus = 2\nvcpu-type = \"EPYC-Milan\"\npolicy = \"0xb0000\"\n",
            firmware.display()
        ),
    );
    let out = scratch.path().join("out");
    let built = vmseal_build(&m, &out, "hello");
    let pcrs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("hello.pcrs.json")).expect("hello.pcrs.json"),
    )
    .expect("JSON");
    let expected = oracle(&[
        "--ovmf",
        firmware.to_str().unwrap(),
        "--vcpus",
        "2",
        "--vcpu-type",
        "EPYC-Milan",
        "--kernel",
        built.efi.to_str().unwrap(),
    ]);
    assert_eq!(
        pcrs["snp"]["launch_digest"].as_str(),
        Some(expected.as_str())
    );
    assert_eq!(pcrs["snp"]["policy"].as_str(), Some("0xb0000"));

    // Debian's firmware cannot cover the appliance: the build stops before writing anything.
    let m = hello_manifest_with(
        scratch.path(),
        &format!("[snp]\nfirmware = \"{DEBIAN_OVMF}\"\n"),
    );
    let out = scratch.path().join("out-refused");
    let r = Command::new(vmseal_bin())
        .arg("build")
        .arg(&m)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("vmseal runs");
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(err.contains("SNP_KERNEL_HASHES"), "{err}");
    assert!(
        std::fs::read_dir(&out).map_or(true, |mut d| d.next().is_none()),
        "outputs written"
    );
}
