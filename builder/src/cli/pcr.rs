//! `vmseal pcr predict|diff|sign`: predictions ([`vmseal::measure::predict`]), their diff against a
//! boot ([`vmseal::run::diff`]) and signed PCR policies ([`vmseal::sign::pcr_policy`]).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Bank, Failure, FirmwareArgs, OnOff, Pkcs11Args, input, print};

#[derive(Subcommand, Debug)]
pub(crate) enum PcrVerb {
    /// The expected event log and PCR values of an image, from the image, the variable store
    /// and a firmware profile (docs/pcrs-json.md).
    Predict(PcrPredictArgs),
    /// Compare a prediction with what a boot measured, and explain every difference. Exit 0
    /// identical, 1 different, 2 unreadable.
    Diff(PcrDiffArgs),
    /// Sign PCR 11 policies for an appliance, as `systemd-measure sign` does: per bank and
    /// boot phase the TPM2_PolicyPCR digest, signed (the JSON systemd-stub carries as .pcrsig;
    /// docs/pcr-sign.md).
    Sign(PcrSignArgs),
}

#[derive(Args, Debug)]
pub(crate) struct PcrSignArgs {
    /// NAME.efi, or NAME.img (its \EFI\BOOT\BOOTX64.EFI).
    input: PathBuf,
    /// The PCR policy key: an RSA private key file (PEM), or a pkcs11: URI.
    #[arg(long)]
    key: String,
    /// Banks to sign for (repeat); default sha256, as systemd-measure.
    #[arg(long, value_enum)]
    bank: Vec<Bank>,
    /// Boot phases to sign for (repeat); default systemd's four: enter-initrd,
    /// enter-initrd:leave-initrd, …:sysinit, …:sysinit:ready.
    #[arg(long)]
    phase: Vec<String>,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
}

#[derive(Args, Debug)]
pub(crate) struct PcrPredictArgs {
    /// The disk image (NAME.img).
    image: PathBuf,
    /// The OVMF variable store the image boots with; default: Debian's pristine
    /// OVMF_VARS_4M.fd (no keys, Secure Boot off).
    #[arg(long)]
    vars: Option<PathBuf>,
    /// Which OVMF build boots it (as `vmseal boot --secure-boot`); default: on when the
    /// variable store enables Secure Boot.
    #[arg(long, value_enum)]
    secure_boot: Option<OnOff>,
    /// Banks to predict (repeat); default: the four a fresh swtpm has.
    #[arg(long, value_enum)]
    bank: Vec<Bank>,
    /// Firmware profile (from `vmseal firmware learn`); default: the shipped profile matching
    /// the installed OVMF.
    #[arg(long, value_name = "FILE")]
    firmware_profile: Option<PathBuf>,
    /// Print pcrs.json instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    snp: SnpArgs,
    #[command(flatten)]
    firmware: FirmwareArgs,
}

/// Where the appliance goes in an SEV-SNP launch.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SnpPayload {
    /// The appliance PE is QEMU's `-kernel` (no initrd, empty command line): its SHA-256 is in
    /// the firmware's SEV hash table, so the digest covers it.
    Appliance,
    /// The firmware alone (the digest does not cover the appliance).
    None,
}

/// A VMM whose SEV-SNP launch vmseal models.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SnpVmm {
    Qemu,
    Ec2,
    Gce,
}

/// The AMD SEV-SNP launch digest (docs/confidential.md).
#[derive(Args, Debug)]
pub(crate) struct SnpArgs {
    /// Also compute the SEV-SNP launch digest of the appliance booted by this SEV OVMF image
    /// (QEMU `-bios FILE`); it goes into the `snp` object of pcrs.json.
    #[arg(long, value_name = "OVMF")]
    snp_firmware: Option<PathBuf>,
    /// Number of vCPUs (one VMSA each).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "snp_firmware")]
    snp_vcpus: u32,
    /// QEMU CPU model of the vCPUs (EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, …).
    #[arg(long, value_name = "MODEL", default_value = "EPYC", value_parser = vcpu_type, requires = "snp_firmware")]
    snp_vcpu_type: String,
    /// The vCPU signature (CPUID Fn0000_0001_EAX) instead of a model's.
    #[arg(long, value_name = "VALUE", value_parser = number::<u32>, requires = "snp_firmware", conflicts_with = "snp_vcpu_type")]
    snp_vcpu_sig: Option<u32>,
    /// SEV_FEATURES of the VMSAs (bit 0 SNPActive must be set).
    #[arg(long, value_name = "VALUE", default_value = "0x1", value_parser = number::<u64>, requires = "snp_firmware")]
    snp_guest_features: u64,
    /// The guest policy the launch uses (recorded beside the digest, not part of it).
    #[arg(long, value_name = "VALUE", default_value = "0x30000", value_parser = number::<u64>, requires = "snp_firmware")]
    snp_policy: u64,
    /// The VMM whose launch is modelled.
    #[arg(long, value_enum, default_value = "qemu", requires = "snp_firmware")]
    snp_vmm: SnpVmm,
    /// What the launch digest covers besides the firmware.
    #[arg(
        long,
        value_enum,
        default_value = "appliance",
        requires = "snp_firmware"
    )]
    snp_payload: SnpPayload,
}

/// A number in decimal or `0x` hex.
pub(crate) fn number<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?}: {e}"))?;
    T::try_from(v).map_err(|_| format!("{s:?} is out of range"))
}

/// A QEMU CPU model vmseal knows the signature of.
pub(crate) fn vcpu_type(s: &str) -> Result<String, String> {
    use vmseal::confidential::snp::VCPU_TYPES;
    if VCPU_TYPES.iter().any(|(n, ..)| *n == s) {
        Ok(s.to_string())
    } else {
        let names: Vec<&str> = VCPU_TYPES.iter().map(|(n, ..)| *n).collect();
        Err(format!(
            "unknown model {s:?}; one of {} (or give --snp-vcpu-sig)",
            names.join(", ")
        ))
    }
}

impl SnpArgs {
    fn options(&self) -> Option<vmseal::confidential::SnpOptions> {
        use vmseal::confidential::snp::{SnpConfig, Vmm, vcpu_signature};
        let firmware = self.snp_firmware.clone()?;
        let (vcpu_type, vcpu_signature) = match self.snp_vcpu_sig {
            Some(sig) => (None, sig),
            None => (
                Some(self.snp_vcpu_type.clone()),
                vcpu_signature(&self.snp_vcpu_type).unwrap_or_default(),
            ),
        };
        Some(vmseal::confidential::SnpOptions {
            firmware,
            config: SnpConfig {
                vcpus: self.snp_vcpus,
                vcpu_type,
                vcpu_signature,
                guest_features: self.snp_guest_features,
                policy: self.snp_policy,
                vmm: match self.snp_vmm {
                    SnpVmm::Qemu => Vmm::Qemu,
                    SnpVmm::Ec2 => Vmm::Ec2,
                    SnpVmm::Gce => Vmm::Gce,
                },
            },
            payload: self.snp_payload == SnpPayload::Appliance,
        })
    }
}

#[derive(Args, Debug)]
pub(crate) struct PcrDiffArgs {
    /// The prediction (NAME.pcrs.json).
    expected: PathBuf,
    /// A record directory of `vmseal boot --record` (eventlog.bin, pcrs.json), a pcrs.json,
    /// or a binary event log.
    actual: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(v: PcrVerb) -> Result<(), Failure> {
    match v {
        PcrVerb::Predict(a) => {
            let mut opts = vmseal::measure::predict::PredictOptions::new(a.image);
            opts.vars = a.vars;
            opts.secure_boot = a.secure_boot.map(|s| s == OnOff::On);
            if !a.bank.is_empty() {
                let mut banks: Vec<_> = a.bank.iter().map(|b| b.alg()).collect();
                banks.sort();
                banks.dedup();
                opts.banks = Some(banks);
            }
            opts.profile = a.firmware_profile;
            opts.firmware = a.firmware.flags();
            opts.snp = a.snp.options();
            let p = vmseal::measure::predict::predict(&opts).map_err(input)?;
            let file = p.to_file();
            if a.json {
                print(&file.to_text());
            } else {
                print(&render_prediction(&file));
            }
            Ok(())
        }
        PcrVerb::Sign(a) => {
            let key =
                vmseal::sign::image::KeyRef::parse(&a.key, |p| PathBuf::from(p)).map_err(input)?;
            let key = vmseal::sign::image::load_raw_key(&key, &a.pkcs11.flags()).map_err(input)?;
            let bytes = std::fs::read(&a.input)
                .with_context(|| format!("{}: cannot read", a.input.display()))
                .map_err(input)?;
            let pe = if bytes.starts_with(b"MZ") {
                bytes
            } else {
                vmseal::sign::image::read_boot_file(&a.input).map_err(input)?
            };
            let mut banks: Vec<_> = a.bank.iter().map(|b| b.alg()).collect();
            if banks.is_empty() {
                banks.push(policies::tcg::HashAlg::SHA256);
            }
            banks.sort();
            banks.dedup();
            let phases: Vec<&str> = if a.phase.is_empty() {
                vmseal::sign::pcr_policy::DEFAULT_PHASES.to_vec()
            } else {
                a.phase.iter().map(String::as_str).collect()
            };
            let v = vmseal::sign::pcr_policy::sign_pe(&pe, &banks, &phases, key.as_ref())
                .map_err(|e| input(anyhow::anyhow!("{}: {e}", a.input.display())))?;
            print(&(serde_json::to_string(&v).unwrap_or_default() + "\n"));
            Ok(())
        }
        PcrVerb::Diff(a) => {
            let exp = vmseal::run::diff::load_expected(&a.expected).map_err(input)?;
            let act = vmseal::run::diff::load_actual(&a.actual).map_err(input)?;
            let report = vmseal::run::diff::diff(&exp, &act);
            if a.json {
                print(&(serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"));
            } else {
                print(&vmseal::run::diff::render(&report));
            }
            if report.identical {
                Ok(())
            } else {
                Err(Failure {
                    code: 1,
                    error: anyhow::anyhow!(
                        "{} PCR(s) differ between {} and {}",
                        report.differences.len(),
                        a.expected.display(),
                        a.actual.display()
                    ),
                })
            }
        }
    }
}

pub(crate) fn render_prediction(f: &vmseal::measure::pcrs_json::PcrsFile) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for (k, v) in &f.sources {
        let _ = writeln!(
            s,
            "{k}: {}",
            v.as_str().map_or_else(|| v.to_string(), str::to_string)
        );
    }
    for e in &f.events {
        let _ = writeln!(s, "PCR {:<2} {:<34} {}", e.pcr, e.event_type, e.description);
    }
    for (bank, values) in &f.pcrs {
        let _ = writeln!(s, "PCRs {bank}:");
        for (i, v) in values {
            let _ = writeln!(s, "  {i:>2}: {v}");
        }
    }
    if let Some(snp) = &f.snp {
        let _ = writeln!(s, "SEV-SNP launch digest: {}", snp.launch_digest);
        let _ = writeln!(
            s,
            "  firmware {} (sha256 {}), {} vCPU(s) {} signature {}, guest features {}, policy {}, vmm {}",
            snp.firmware,
            snp.firmware_sha256,
            snp.vcpus,
            snp.vcpu_type.as_deref().unwrap_or("-"),
            snp.vcpu_signature,
            snp.guest_features,
            snp.policy,
            snp.vmm
        );
        let _ = writeln!(s, "  covers: {}", snp.covers);
        let _ = writeln!(s, "  verified: {}", snp.verified);
    }
    s
}
