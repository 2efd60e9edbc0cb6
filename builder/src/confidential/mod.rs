//! Confidential-VM launch measurements: what an SEV-SNP (AMD) launch of the appliance
//! measures, computed on the host without SNP hardware (`docs/confidential.md`).
//!
//! - [`ovmf`]: the SEV tables an OVMF image declares (footer GUID table, SEV metadata) —
//!   a parser of untrusted bytes (fuzz target `fuzz/fuzz_targets/ovmf_sev.rs`).
//! - [`snp`]: the SNP launch digest (SNP_LAUNCH_UPDATE chain, SEV hash table, VMSAs).
//! - This module: [`measure`] from files, and [`SnpPrediction`], the `snp` object of
//!   `NAME.pcrs.json` (`docs/pcrs-json.md`).
//!
//! Checked only against `sev-snp-measure` (PyPI, virtee), the reference calculator; never
//! against the report of a real SNP guest.

pub mod ovmf;
pub mod snp;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use ovmf::SevFirmware;
use snp::{DirectBoot, SnpConfig, Vmm};

/// What the launch digest covers when the appliance is its direct-boot payload.
pub const COVERS_APPLIANCE: &str = "firmware, SEV metadata pages, the SEV hash table with the SHA-256 of the appliance PE (kernel), no initrd, empty command line, and one VMSA per vCPU";
/// What the launch digest covers without a payload.
pub const COVERS_FIRMWARE_ONLY: &str = "firmware, SEV metadata pages and one VMSA per vCPU only: NOT the appliance (the firmware has no SNP_KERNEL_HASHES section, or no payload was asked for)";
/// What was verified, stated in every prediction.
pub const VERIFIED: &str = "computed as sev-snp-measure computes it (checked against it in vmseal's tests); not checked against an attestation report of real SEV-SNP hardware, and QEMU's direct boot of the appliance PE under SNP was not run";

/// What to measure.
#[derive(Clone, Debug)]
pub struct SnpOptions {
    /// The SEV OVMF image (loaded with QEMU `-bios`, ending at 4 GiB).
    pub firmware: PathBuf,
    /// vCPUs, model, features, policy, VMM.
    pub config: SnpConfig,
    /// Whether the appliance is the direct-boot payload (`-kernel NAME.efi`): the digest then
    /// covers it, and a firmware without an `SNP_KERNEL_HASHES` section is an error.
    pub payload: bool,
}

/// The direct-boot payload recorded in a prediction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpPayload {
    /// Which file is the kernel (`EFI/BOOT/BOOTX64.EFI` of the image = `NAME.efi`).
    pub kernel: String,
    /// SHA-256 of it, lowercase hex.
    pub kernel_sha256: String,
    /// The initrd (`null`: none).
    pub initrd: Option<String>,
    /// The command line QEMU passes (`-append`).
    pub cmdline: String,
}

/// The `snp` object of `NAME.pcrs.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpPrediction {
    /// The launch digest (attestation report `MEASUREMENT`), SHA-384 lowercase hex.
    pub launch_digest: String,
    /// The firmware file as given.
    pub firmware: String,
    /// SHA-256 of the firmware file, lowercase hex.
    pub firmware_sha256: String,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// QEMU CPU model (`null` when only a signature was given).
    pub vcpu_type: Option<String>,
    /// CPUID Fn0000_0001_EAX in the VMSA, `0x…`.
    pub vcpu_signature: String,
    /// `SEV_FEATURES` of the VMSAs, `0x…`.
    pub guest_features: String,
    /// The guest policy the launch assumes (not part of the digest), `0x…`.
    pub policy: String,
    /// `qemu`, `ec2` or `gce`.
    pub vmm: String,
    /// The direct-boot payload in the digest (`null`: none).
    pub payload: Option<SnpPayload>,
    /// What the digest covers, in words.
    pub covers: String,
    /// What was and was not verified, in words.
    pub verified: String,
}

/// Why an SNP measurement failed; every variant names the firmware file.
#[derive(Debug, thiserror::Error)]
pub enum ConfidentialError {
    /// The firmware cannot be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not an SEV OVMF.
    #[error(
        "{file}: {problem} — give an OVMF built with SEV support (Debian's OVMF.fd, or an AmdSev build: docs/confidential.md)"
    )]
    Firmware {
        /// The file.
        file: String,
        /// What is wrong.
        problem: ovmf::OvmfError,
    },
    /// A launch setting out of range (vCPUs, guest features, policy).
    #[error("SEV-SNP {0}")]
    Config(snp::SnpError),
    /// The digest cannot be computed.
    #[error("{file}: {problem}{fix}")]
    Snp {
        /// The file.
        file: String,
        /// What is wrong.
        problem: snp::SnpError,
        /// How to fix it.
        fix: &'static str,
    },
}

/// Parse `firmware` and compute the launch digest with `payload` in the hash table.
pub fn measure_bytes(
    firmware: &[u8],
    file: &str,
    config: &SnpConfig,
    payload: Option<&DirectBoot>,
) -> Result<snp::LaunchDigest, ConfidentialError> {
    let sev = SevFirmware::parse(firmware).map_err(|problem| ConfidentialError::Firmware {
        file: file.into(),
        problem,
    })?;
    snp::launch_digest(firmware, &sev, config, payload).map_err(|problem| {
        if matches!(problem, snp::SnpError::Config { .. }) {
            return ConfidentialError::Config(problem);
        }
        let fix = match problem {
            snp::SnpError::NoKernelHashes => {
                " — build an AmdSev OVMF (edk2 OvmfPkg/AmdSev/AmdSevX64.dsc) for a digest that covers the appliance, or measure the firmware alone (--snp-payload none)"
            }
            _ => " — give an OVMF built with SEV support (docs/confidential.md)",
        };
        ConfidentialError::Snp {
            file: file.into(),
            problem,
            fix,
        }
    })
}

/// Measure `opts.firmware`; `kernel` is the appliance PE's path (as recorded) and SHA-256,
/// required when `opts.payload` (an error without it, never a firmware-only digest).
pub fn measure(
    opts: &SnpOptions,
    kernel: Option<(&str, [u8; 32])>,
) -> Result<SnpPrediction, ConfidentialError> {
    let file = opts.firmware.display().to_string();
    let bytes = read(&opts.firmware)?;
    let payload = match (opts.payload, kernel) {
        (true, None) => {
            return Err(ConfidentialError::Config(snp::SnpError::Config {
                field: "payload",
                problem: "the appliance is the payload but no appliance PE was hashed".into(),
            }));
        }
        (true, Some((name, sha))) => Some((
            SnpPayload {
                kernel: name.to_string(),
                kernel_sha256: hex::encode(sha),
                initrd: None,
                cmdline: String::new(),
            },
            DirectBoot::new(sha, None, ""),
        )),
        _ => None,
    };
    let digest = measure_bytes(&bytes, &file, &opts.config, payload.as_ref().map(|p| &p.1))?;
    let c = &opts.config;
    Ok(SnpPrediction {
        launch_digest: hex::encode(digest),
        firmware: file,
        firmware_sha256: hex::encode(Sha256::digest(&bytes)),
        vcpus: c.vcpus,
        vcpu_type: c.vcpu_type.clone(),
        vcpu_signature: format!("{:#x}", c.vcpu_signature),
        guest_features: format!("{:#x}", c.guest_features),
        policy: format!("{:#x}", c.policy),
        vmm: Vmm::name(c.vmm).into(),
        covers: if payload.is_some() {
            COVERS_APPLIANCE
        } else {
            COVERS_FIRMWARE_ONLY
        }
        .into(),
        payload: payload.map(|p| p.0),
        verified: VERIFIED.into(),
    })
}

/// Check that `opts.firmware` gives a launch digest with `opts` (as [`measure`] will), without
/// the payload's hash.
pub fn check(opts: &SnpOptions) -> Result<(), ConfidentialError> {
    let bytes = read(&opts.firmware)?;
    let placeholder = opts.payload.then(|| DirectBoot::new([0; 32], None, ""));
    measure_bytes(
        &bytes,
        &opts.firmware.display().to_string(),
        &opts.config,
        placeholder.as_ref(),
    )
    .map(|_| ())
}

fn read(p: &Path) -> Result<Vec<u8>, ConfidentialError> {
    std::fs::read(p).map_err(|source| ConfidentialError::Io {
        file: p.display().to_string(),
        source,
    })
}
