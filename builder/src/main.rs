//! The `vmseal` command line: wires arguments to the library.
//!
//! Exit status: 0 ok, 1 a check failed (or the work failed for a reason outside the input,
//! e.g. a disk error), 2 bad usage or input (clap's usage errors included). Errors are one
//! line on stderr: `error: FILE: FIELD: PROBLEM — FIX`.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use vmseal::appliance::{self, BuildOptions};
use vmseal::progress::Progress;

/// Build sealed appliance VM images: a UEFI disk image holding a measured stub hypervisor,
/// its services and a guest, reproducible byte for byte.
#[derive(Parser, Debug)]
#[command(name = "vmseal", version, about, long_about = None)]
struct Cli {
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// Write a starter appliance (manifest, sample guest, README) into a directory.
    Init(InitArgs),
    /// Build NAME.img (GPT disk with an EFI System Partition), NAME.efi (the appliance PE),
    /// NAME.lock.json and NAME.pcrs.json (the predicted event log and PCRs) from a manifest.
    Build(BuildArgs),
    /// Show what is in an image or appliance PE: partitions, ESP files, PE sections with
    /// digests, the Authenticode hash and the launch policy.
    Inspect(InspectArgs),
    /// Boot an image in QEMU + OVMF + swtpm and record the console, the stub's record and the
    /// verdict.
    Boot(BootArgs),
    /// Read TCG2 event logs.
    #[command(subcommand)]
    Eventlog(EventlogVerb),
    /// Predict PCRs and compare a prediction with a boot.
    #[command(subcommand)]
    Pcr(PcrVerb),
    /// Firmware profiles (the events of PCR 0-3 and 6 that vmseal cannot compute).
    #[command(subcommand)]
    Firmware(FirmwareVerb),
    /// Org Secure Boot keys (PK, KEK, db).
    #[command(subcommand)]
    Keys(KeysVerb),
    /// Add an Authenticode signature with the org db key to NAME.efi, or to
    /// \EFI\BOOT\BOOTX64.EFI inside NAME.img (and update NAME.lock.json next to it), for
    /// flows where CI builds unsigned and a signing host holds the key.
    Sign(SignArgs),
    /// Write an OVMF variable store with an org's PK, KEK and db enrolled (Secure Boot on,
    /// CustomMode off).
    Vars(VarsArgs),
    /// Check every signature of an image (the appliance PE and a `.linux` kernel) against a
    /// certificate or the db of a variable store, and every section against NAME.lock.json.
    /// Exit 0 valid, 1 invalid, 2 unreadable input.
    Verify(VerifyArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `vmseal completions bash > /etc/bash_completion.d/vmseal`.
    Completions(CompletionsArgs),
    /// Write the man pages (vmseal.1 and one vmseal-VERB.1 per verb) into a directory.
    Man(ManArgs),
    /// Write an image in the form a cloud imports, with the org's Secure Boot keys (from the
    /// variable store it boots with) in that cloud's format: Azure (fixed VHD + the image
    /// version's uefiSettings), GCP (disk.raw in a .tar.gz + Shielded VM key files), AWS (raw
    /// disk + the --uefi-data blob). See docs/export.md.
    Export(ExportArgs),
    /// Verify what an appliance sends (TPM2 quote, event log) against a prediction.
    #[command(subcommand)]
    Attest(vmseal::attest::cli::AttestVerb),
}

#[derive(Args, Debug)]
struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
struct ManArgs {
    /// The directory to write into (created).
    #[arg(long, default_value = "man")]
    out: PathBuf,
}

/// Print completions for `shell`.
fn run_completions(a: CompletionsArgs) -> Result<(), Failure> {
    use clap::CommandFactory as _;
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "vmseal", &mut std::io::stdout());
    Ok(())
}

/// Write `vmseal.1` and `vmseal-VERB.1` (nested verbs `vmseal-VERB-SUB.1`) into `a.out`.
fn run_man(a: ManArgs) -> Result<(), Failure> {
    use clap::CommandFactory as _;
    let io = |e: std::io::Error| Failure {
        code: 1,
        error: anyhow::anyhow!("{}: {e}", a.out.display()),
    };
    std::fs::create_dir_all(&a.out).map_err(io)?;
    fn write(
        cmd: clap::Command,
        name: &str,
        dir: &std::path::Path,
    ) -> std::io::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let mut page = Vec::new();
        clap_mangen::Man::new(
            cmd.clone()
                .display_name(name.to_string())
                .bin_name(name.replace('-', " ")),
        )
        .render(&mut page)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page)?;
        written.push(path);
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let sub_name = format!("{name}-{}", sub.get_name());
            written.extend(write(sub.clone(), &sub_name, dir)?);
        }
        Ok(written)
    }
    for p in write(Cli::command(), "vmseal", &a.out).map_err(io)? {
        println!("{}", p.display());
    }
    Ok(())
}

/// A cloud.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum CloudArg {
    Azure,
    Gcp,
    Aws,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// The disk image (NAME.img from vmseal build).
    image: PathBuf,
    /// The cloud.
    #[arg(long, value_enum)]
    to: CloudArg,
    /// Directory to write into (created; files of the same name are replaced).
    #[arg(long)]
    out: PathBuf,
    /// The variable store whose PK, KEK, db and dbx the cloud enrolls; default: NAME.vars.fd
    /// next to the image.
    #[arg(long, value_name = "FILE")]
    vars: Option<PathBuf>,
    /// Export the disk alone (Secure Boot off, or keys managed elsewhere).
    #[arg(long, conflicts_with = "vars")]
    no_keys: bool,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum EventlogVerb {
    /// Decode and replay a TCG2 crypto-agile event log: every event (PCR, type, digests,
    /// decoded payload), then the final PCRs per bank.
    Show(EventlogShowArgs),
}

#[derive(Args, Debug)]
struct EventlogShowArgs {
    /// The binary log (binary_bios_measurements, or a record's eventlog.bin).
    file: PathBuf,
    /// Print the log as pcrs.json (format 1, see docs/pcrs-json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum PcrVerb {
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
struct PcrSignArgs {
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

/// A TPM bank vmseal computes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Bank {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Bank {
    fn alg(self) -> policies::tcg::HashAlg {
        use policies::tcg::HashAlg;
        match self {
            Self::Sha1 => HashAlg::SHA1,
            Self::Sha256 => HashAlg::SHA256,
            Self::Sha384 => HashAlg::SHA384,
            Self::Sha512 => HashAlg::SHA512,
        }
    }
}

/// On or off.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OnOff {
    On,
    Off,
}

#[derive(Args, Debug)]
struct PcrPredictArgs {
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
enum SnpPayload {
    /// The appliance PE is QEMU's `-kernel` (no initrd, empty command line): its SHA-256 is in
    /// the firmware's SEV hash table, so the digest covers it.
    Appliance,
    /// The firmware alone (the digest does not cover the appliance).
    None,
}

/// A VMM whose SEV-SNP launch vmseal models.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SnpVmm {
    Qemu,
    Ec2,
    Gce,
}

/// The AMD SEV-SNP launch digest (docs/confidential.md).
#[derive(Args, Debug)]
struct SnpArgs {
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
fn number<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?}: {e}"))?;
    T::try_from(v).map_err(|_| format!("{s:?} is out of range"))
}

/// A QEMU CPU model vmseal knows the signature of.
fn vcpu_type(s: &str) -> Result<String, String> {
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
struct PcrDiffArgs {
    /// The prediction (NAME.pcrs.json).
    expected: PathBuf,
    /// A record directory of `vmseal boot --record` (eventlog.bin, pcrs.json), a pcrs.json,
    /// or a binary event log.
    actual: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum FirmwareVerb {
    /// Record a firmware profile (format 2, docs/firmware-profiles.md): from an event log of
    /// any machine (--from-log, e.g. a cloud VM's binary_bios_measurements), or by booting a
    /// probe appliance with --code under vmseal's pinned QEMU command line. Keeps the
    /// firmware's events (PCR 0-3, 6) and what it measures into PCR 4, 5, 7 around the
    /// appliance; prediction recomputes the appliance's own events.
    Learn(FirmwareLearnArgs),
}

#[derive(Args, Debug)]
struct FirmwareLearnArgs {
    /// The OVMF code file: booted to record a probe log; with --from-log optional (its SHA-256
    /// then keys the profile too).
    #[arg(long, required_unless_present = "from_log")]
    code: Option<PathBuf>,
    /// Variable store to boot the probe with (default: pristine).
    #[arg(long)]
    vars: Option<PathBuf>,
    /// Learn from this TCG2 event log (binary_bios_measurements of a booted machine, or a
    /// record's eventlog.bin) instead of booting.
    #[arg(long, value_name = "LOG")]
    from_log: Option<PathBuf>,
    /// Where to write the profile.
    #[arg(long)]
    out: PathBuf,
    /// Scratch directory for the probe image and the boot record.
    #[arg(long, default_value = "firmware-learn")]
    work: PathBuf,
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Directory to write into (created if missing).
    dir: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// The manifest (vmseal.toml); paths in it are relative to its directory.
    manifest: PathBuf,
    /// Output directory (created); outputs appear only when the whole build succeeded.
    #[arg(long, short, default_value = "out")]
    out: PathBuf,
    /// Use this stub-hypervisor PE instead of the one built into vmseal (also:
    /// VMSEAL_STUB_EFI). Its digest is recorded in the lock file.
    #[arg(long, value_name = "PATH")]
    stub: Option<PathBuf>,
    /// Do not write NAME.pcrs.json. Predicting hashes the payload once more per PCR bank; use
    /// this when the prediction is made elsewhere (`vmseal pcr predict`).
    #[arg(long)]
    no_predict: bool,
    /// Do not sign, even if the manifest's [signing] table names keys (no NAME.vars.fd).
    #[arg(long)]
    unsigned: bool,
    /// Print a JSON summary on stdout (each output's path, size and SHA-256) instead of the
    /// output paths.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
}

/// Which OVMF files (default: VMSEAL_OVMF_CODE / VMSEAL_OVMF_VARS, else QEMU's firmware
/// descriptors, else Debian's paths).
#[derive(Args, Debug, Clone, Default)]
struct FirmwareArgs {
    /// The OVMF code file (also: VMSEAL_OVMF_CODE).
    #[arg(long, value_name = "FILE")]
    ovmf_code: Option<PathBuf>,
    /// The pristine OVMF variable store used without --vars (also: VMSEAL_OVMF_VARS).
    #[arg(long, value_name = "FILE")]
    ovmf_vars: Option<PathBuf>,
}

impl FirmwareArgs {
    fn flags(&self) -> vmseal::ovmf::FirmwareFlags {
        vmseal::ovmf::FirmwareFlags {
            code: self.ovmf_code.clone(),
            vars: self.ovmf_vars.clone(),
        }
    }
}

/// Where a `pkcs11:` key's module and PIN come from (docs/pkcs11.md).
#[derive(Args, Debug, Clone, Default)]
struct Pkcs11Args {
    /// The PKCS#11 module for a `pkcs11:` key (also: VMSEAL_PKCS11_MODULE, or the URI's
    /// module-path), e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, value_name = "SO")]
    pkcs11_module: Option<PathBuf>,
    /// A file holding the token's user PIN (also: VMSEAL_PKCS11_PIN_FILE, VMSEAL_PKCS11_PIN,
    /// or the URI's pin-source). Never give a PIN on the command line.
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,
}

impl Pkcs11Args {
    fn flags(&self) -> signing::pkcs11::TokenFlags {
        signing::pkcs11::TokenFlags {
            module: self.pkcs11_module.clone(),
            pin_file: self.pin_file.clone(),
        }
    }
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// NAME.img (a GPT disk) or NAME.efi (an appliance PE).
    image: PathBuf,
    /// Print JSON (stable keys, for scripts) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct BootArgs {
    /// The disk image (NAME.img); QEMU gets a copy, the file is never written.
    image: PathBuf,
    /// OVMF variable store to boot with (NAME.vars.fd); default: pristine, no keys enrolled.
    #[arg(long)]
    vars: Option<PathBuf>,
    /// Use the Secure Boot build of OVMF (also chosen without this flag when --vars enrolls
    /// keys, as the prediction assumes; Secure Boot is then enforced).
    #[arg(long)]
    secure_boot: bool,
    /// Record directory: console.log, record.log, verdict.json.
    #[arg(long, default_value = "run")]
    record: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = vmseal::boot::DEFAULT_TIMEOUT_SECS)]
    timeout: u64,
    /// The TPM's active PCR banks (repeat the flag). Default: a fresh swtpm's four banks;
    /// `--pcr-bank sha256` models a TPM set up by swtpm_setup's defaults. Predict with the
    /// same banks (`vmseal pcr predict --bank`).
    #[arg(long = "pcr-bank", value_enum)]
    pcr_banks: Vec<Bank>,
    /// Put an empty CD-ROM drive first in the boot order (the disk second): OVMF tries it
    /// and fails, which adds a "Returning from EFI Application from Boot Option" pair to PCR
    /// 4 and changes PCR 1. For capturing a log of another boot order (`vmseal firmware learn
    /// --from-log`); the shipped profiles assume the disk first.
    #[arg(long)]
    empty_cdrom_first: bool,
    /// Also show every command run (swtpm, QEMU). `-q` shows nothing but the verdict.
    #[arg(long, short)]
    verbose: bool,
    /// Print a JSON summary on stdout (verdict, reason, seconds, record directory, firmware)
    /// instead of the verdict word.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    firmware: FirmwareArgs,
}

/// An error with the exit status it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn input(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: e.into(),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let progress = Progress::new(cli.quiet);
    let quiet = cli.quiet;
    match cli.verb {
        Verb::Init(a) => {
            let files = vmseal::init::init(&a.dir, a.force).map_err(input)?;
            for f in files {
                eprintln!("wrote {}", f.display());
            }
            eprintln!(
                "next: vmseal keys new --out {} --org \"My Org\"",
                a.dir.join("keys").display()
            );
            eprintln!(
                "      vmseal build {} --out {}",
                a.dir.join("vmseal.toml").display(),
                a.dir.join("out").display()
            );
            Ok(())
        }
        Verb::Build(a) => {
            let opts = BuildOptions {
                manifest: a.manifest,
                out: a.out,
                stub: a.stub,
                progress,
                predict: !a.no_predict,
                pkcs11: a.pkcs11.flags(),
            };
            let built = appliance::build_with(&opts, !a.unsigned).map_err(|e| Failure {
                code: if e.is_input_error() { 2 } else { 1 },
                error: e.into(),
            })?;
            let outputs: Vec<&PathBuf> = [&built.img, &built.efi, &built.lock]
                .into_iter()
                .chain(built.pcrs.as_ref())
                .chain(built.vars.as_ref())
                .collect();
            if a.json {
                let mut files = Vec::new();
                for p in outputs {
                    let (size, sha256) = file_digest(p).map_err(|e| Failure {
                        code: 1,
                        error: anyhow::anyhow!("{}: {e}", p.display()),
                    })?;
                    files.push(serde_json::json!({ "path": p, "size": size, "sha256": sha256 }));
                }
                let v = serde_json::json!({ "image": built.img, "outputs": files });
                print(&(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"));
            } else {
                for p in outputs {
                    println!("{}", p.display());
                }
            }
            Ok(())
        }
        Verb::Inspect(a) => {
            let report = vmseal::inspect::inspect(&a.image).map_err(input)?;
            let text = if a.json {
                serde_json::to_string_pretty(&report)
                    .context("encoding JSON")
                    .map_err(|e| Failure { code: 1, error: e })?
                    + "\n"
            } else {
                vmseal::inspect::render(&report)
            };
            let _ = std::io::stdout().write_all(text.as_bytes());
            Ok(())
        }
        Verb::Eventlog(v) => run_eventlog(v),
        Verb::Pcr(v) => run_pcr(v),
        Verb::Firmware(v) => run_firmware(v),
        Verb::Keys(v) => run_keys(v),
        Verb::Sign(a) => run_sign(a),
        Verb::Vars(a) => run_vars(a),
        Verb::Verify(a) => run_verify(a),
        Verb::Export(a) => run_export(a),
        Verb::Completions(a) => run_completions(a),
        Verb::Man(a) => run_man(a),
        Verb::Attest(v) => vmseal::attest::cli::run(v).map_err(|f| Failure {
            code: f.code,
            error: f.error,
        }),
        Verb::Boot(a) => {
            let mut opts = vmseal::boot::BootOptions::new(a.image, a.record);
            // A store with keys enrolled is predicted (and meant) for the Secure Boot firmware.
            let auto_sb = !a.secure_boot
                && a.vars
                    .as_deref()
                    .is_some_and(vmseal::boot::store_enables_secure_boot);
            if auto_sb {
                eprintln!(
                    "note: {} enrolls Secure Boot keys: booting the Secure Boot firmware {}",
                    a.vars
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    vmseal::boot::OVMF_CODE_SECBOOT
                );
            }
            opts.vars = a.vars;
            opts.secure_boot = a.secure_boot || auto_sb;
            opts.timeout_secs = a.timeout;
            opts.echo = if quiet {
                vmseal::boot::Echo::Quiet
            } else if a.verbose {
                vmseal::boot::Echo::Verbose
            } else {
                vmseal::boot::Echo::Console
            };
            let record_dir = opts.record_dir.clone();
            opts.firmware = a.firmware.flags();
            opts.failed_boot_option_first = a.empty_cdrom_first;
            if !a.pcr_banks.is_empty() {
                let mut banks: Vec<_> = a.pcr_banks.iter().map(|b| b.alg()).collect();
                banks.sort();
                banks.dedup();
                opts.pcr_banks = Some(banks);
            }
            let outcome = vmseal::boot::run(&opts).map_err(input)?;
            if a.json {
                let v = serde_json::json!({
                    "verdict": outcome.verdict().as_str(),
                    "reason": outcome.decision.reason,
                    "elapsed_secs": outcome.elapsed.as_secs_f64(),
                    "record": record_dir,
                    "secure_boot_firmware": opts.secure_boot,
                });
                print(&(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"));
            } else {
                println!("{}", outcome.verdict().as_str());
            }
            if outcome.verdict() == vmseal::boot::Verdict::Booted {
                Ok(())
            } else {
                Err(Failure {
                    // A record whose log does not replay to its PCRs is bad input to every
                    // later step (`pcr diff` refuses it too); other verdicts are failed checks.
                    code: if outcome.verdict() == vmseal::boot::Verdict::RecordInconsistent {
                        2
                    } else {
                        1
                    },
                    error: anyhow::anyhow!("boot verdict: {}", outcome.verdict().as_str()),
                })
            }
        }
    }
}

/// Size and SHA-256 (hex) of a file.
fn file_digest(p: &std::path::Path) -> std::io::Result<(u64, String)> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut f = std::fs::File::open(p)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok((size, hex::encode(h.finalize())))
}

fn print(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn run_eventlog(v: EventlogVerb) -> Result<(), Failure> {
    match v {
        EventlogVerb::Show(a) => {
            let shown = vmseal::eventlog_cmd::load(&a.file).map_err(input)?;
            if a.json {
                print(
                    &vmseal::eventlog_cmd::to_json(&shown, &a.file.display().to_string()).to_text(),
                );
            } else {
                print(&vmseal::eventlog_cmd::render(&shown));
            }
            Ok(())
        }
    }
}

fn run_pcr(v: PcrVerb) -> Result<(), Failure> {
    match v {
        PcrVerb::Predict(a) => {
            let mut opts = vmseal::predict::PredictOptions::new(a.image);
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
            let p = vmseal::predict::predict(&opts).map_err(input)?;
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
                vmseal::sign_cmd::KeyRef::parse(&a.key, |p| PathBuf::from(p)).map_err(input)?;
            let key = vmseal::sign_cmd::load_raw_key(&key, &a.pkcs11.flags()).map_err(input)?;
            let bytes = std::fs::read(&a.input)
                .with_context(|| format!("{}: cannot read", a.input.display()))
                .map_err(input)?;
            let pe = if bytes.starts_with(b"MZ") {
                bytes
            } else {
                vmseal::sign_cmd::read_boot_file(&a.input).map_err(input)?
            };
            let mut banks: Vec<_> = a.bank.iter().map(|b| b.alg()).collect();
            if banks.is_empty() {
                banks.push(policies::tcg::HashAlg::SHA256);
            }
            banks.sort();
            banks.dedup();
            let phases: Vec<&str> = if a.phase.is_empty() {
                vmseal::pcr_sign::DEFAULT_PHASES.to_vec()
            } else {
                a.phase.iter().map(String::as_str).collect()
            };
            let v = vmseal::pcr_sign::sign_pe(&pe, &banks, &phases, key.as_ref())
                .map_err(|e| input(anyhow::anyhow!("{}: {e}", a.input.display())))?;
            print(&(serde_json::to_string(&v).unwrap_or_default() + "\n"));
            Ok(())
        }
        PcrVerb::Diff(a) => {
            let exp = vmseal::diff::load_expected(&a.expected).map_err(input)?;
            let act = vmseal::diff::load_actual(&a.actual).map_err(input)?;
            let report = vmseal::diff::diff(&exp, &act);
            if a.json {
                print(&(serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"));
            } else {
                print(&vmseal::diff::render(&report));
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

fn render_prediction(f: &vmseal::pcrs_json::PcrsFile) -> String {
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

fn run_firmware(v: FirmwareVerb) -> Result<(), Failure> {
    match v {
        FirmwareVerb::Learn(a) => {
            let opts = vmseal::firmware::LearnOptions {
                code: a.code,
                vars: a.vars,
                from_log: a.from_log,
                work: a.work,
            };
            let p = vmseal::firmware::learn(&opts).map_err(input)?;
            // No partial output: a temporary file beside the target, then a rename.
            let tmp = a.out.with_extension("json.tmp");
            std::fs::write(&tmp, p.to_text())
                .and_then(|()| std::fs::rename(&tmp, &a.out))
                .with_context(|| format!("writing {}", a.out.display()))
                .map_err(|e| Failure { code: 1, error: e })?;
            println!("{}", a.out.display());
            Ok(())
        }
    }
}

#[derive(Subcommand, Debug)]
enum KeysVerb {
    /// Generate PK, KEK and db (RSA keys, X.509 certificates PK -> KEK -> db), their signature
    /// lists and authenticated enrollment payloads (.esl, .auth) and owner.guid (a random
    /// SignatureOwner). Private keys are PKCS#8 PEM, mode 0600; nothing is overwritten.
    New(KeysNewArgs),
    /// Rotate the db key: a new db key certified by the KEK, the KEK-signed db-append.auth
    /// that enrolls it in the field (SetVariable with APPEND_WRITE), and a keys directory for
    /// builds signed by it. The old db stays trusted until revoked with `keys append dbx`.
    Rotate(KeysRotateArgs),
    /// A KEK-signed update that appends to db or dbx (a certificate, an image's Authenticode
    /// hash, a SHA-256): what an owner applies in the field; byte-identical to efitools'
    /// sign-efi-sig-list -a.
    Append(KeysAppendArgs),
}

/// db or dbx.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum DatabaseArg {
    Db,
    Dbx,
}

#[derive(Args, Debug)]
struct KeysAppendArgs {
    /// The database to append to: db (allow) or dbx (revoke).
    #[arg(value_enum)]
    database: DatabaseArg,
    /// The org's keys directory (KEK.crt with KEK.key or KEK.uri, owner.guid).
    #[arg(long)]
    keys: PathBuf,
    /// Append this X.509 certificate (PEM or DER).
    #[arg(long, group = "entry")]
    cert: Option<PathBuf>,
    /// Append the Authenticode SHA-256 of this EFI binary, or of BOOTX64.EFI in this image
    /// (dbx: revoke exactly that image).
    #[arg(long, group = "entry")]
    image: Option<PathBuf>,
    /// Append this SHA-256 digest (64 hex digits).
    #[arg(long, group = "entry", value_name = "HEX")]
    sha256: Option<String>,
    /// SignatureOwner of the entry (default: KEYS/owner.guid).
    #[arg(long)]
    owner: Option<String>,
    /// Where to write the signed update (for SetVariable with APPEND_WRITE).
    #[arg(long)]
    out: PathBuf,
    /// Apply the update to this variable store too …
    #[arg(long, requires = "vars_out")]
    vars: Option<PathBuf>,
    /// … and write the result here (predict PCR 7 with it).
    #[arg(long, requires = "vars")]
    vars_out: Option<PathBuf>,
    #[command(flatten)]
    token: Pkcs11Args,
}

#[derive(Args, Debug)]
struct KeysRotateArgs {
    /// The org's keys directory (KEK.crt with KEK.key or KEK.uri, PK.crt, owner.guid).
    #[arg(long)]
    keys: PathBuf,
    /// Directory for the new db key: a keys directory for builds signed by it.
    #[arg(long)]
    out: PathBuf,
    /// RSA modulus size of the new key.
    #[arg(long, default_value_t = 2048)]
    bits: usize,
    /// Enroll the new db certificate into this variable store too …
    #[arg(long, requires = "vars_out")]
    vars: Option<PathBuf>,
    /// … and write the result here.
    #[arg(long, requires = "vars")]
    vars_out: Option<PathBuf>,
    #[command(flatten)]
    token: Pkcs11Args,
}

#[derive(Args, Debug)]
struct KeysNewArgs {
    /// Directory to write into (created; must not hold keys already).
    #[arg(long)]
    out: PathBuf,
    /// Organisation name: subjects are "CN=ORG PK|KEK|db, O=ORG".
    #[arg(long, default_value = "vmseal")]
    org: String,
    /// RSA modulus size (2048 is what every firmware verifies; 4096 PKs trouble some).
    #[arg(long, default_value_t = 2048)]
    bits: usize,
    /// Create the three keys inside this PKCS#11 token (an RFC 7512 URI naming the token,
    /// e.g. pkcs11:token=acme): the private keys never leave it; --out gets the certificates,
    /// .esl/.auth files, owner.guid and PK.uri, KEK.uri, db.uri naming the keys.
    #[arg(long, value_name = "URI")]
    pkcs11: Option<String>,
    #[command(flatten)]
    token: Pkcs11Args,
}

#[derive(Args, Debug)]
struct SignArgs {
    /// NAME.efi or NAME.img.
    input: PathBuf,
    /// The db private key: a PEM file, or an RFC 7512 pkcs11: URI of a key in a token.
    #[arg(long)]
    key: String,
    /// Its code-signing certificate.
    #[arg(long)]
    cert: PathBuf,
    /// Write here instead of replacing the input.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The org's keys directory (PK.crt, KEK.crt, owner.guid): signing NAME.img in place
    /// then also writes NAME.vars.fd and the prediction NAME.pcrs.json for it.
    #[arg(long)]
    keys: Option<PathBuf>,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
}

#[derive(Args, Debug)]
struct VarsArgs {
    /// The keys directory (vmseal keys new): PK.crt, KEK.crt, db.crt, owner.guid.
    #[arg(long)]
    keys: PathBuf,
    /// The store to write.
    #[arg(long)]
    out: PathBuf,
    /// The OVMF store to enroll into (its other variables are kept).
    #[arg(long, value_name = "FILE", default_value = vmseal::sign_cmd::DEFAULT_VARS_TEMPLATE)]
    vars_template: PathBuf,
    /// Secure Boot template (as Hyper-V's): org-only; org+microsoft-uefi-ca (also trusts
    /// Microsoft's KEK and every Microsoft db CA: Windows, and the third-party UEFI CA that
    /// signs shim and option ROMs); org+microsoft-windows (Microsoft's KEK and the Windows CA).
    #[arg(long, value_enum, default_value = "org-only")]
    template: TemplateArg,
    /// Same as --template org+microsoft-uefi-ca.
    #[arg(long, conflicts_with = "template")]
    microsoft: bool,
    /// The store Microsoft's certificates and dbx come from.
    #[arg(long, alias = "microsoft-from", value_name = "FILE", default_value = vmseal::sign_cmd::DEFAULT_MICROSOFT_VARS)]
    microsoft_vars: PathBuf,
}

/// A Secure Boot template.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TemplateArg {
    #[value(name = "org-only")]
    Org,
    #[value(name = "org+microsoft-uefi-ca")]
    MicrosoftUefiCa,
    #[value(name = "org+microsoft-windows")]
    MicrosoftWindows,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// NAME.img or NAME.efi.
    image: PathBuf,
    /// Trust this certificate (repeat).
    #[arg(long)]
    cert: Vec<PathBuf>,
    /// Trust the db of this variable store and check its dbx.
    #[arg(long)]
    vars: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn run_keys(v: KeysVerb) -> Result<(), Failure> {
    match v {
        KeysVerb::New(a) => {
            let files = match &a.pkcs11 {
                Some(uri) => {
                    vmseal::keys_cmd::keys_new_pkcs11(&a.out, &a.org, a.bits, uri, &a.token.flags())
                }
                None => vmseal::keys_cmd::keys_new(&a.out, &a.org, a.bits),
            }
            .map_err(|e| Failure {
                code: if e.is_input_error() { 2 } else { 1 },
                error: e.into(),
            })?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
        KeysVerb::Rotate(a) => {
            let files = vmseal::key_update::rotate(&vmseal::key_update::RotateOptions {
                keys: a.keys,
                out: a.out,
                bits: a.bits,
                vars: a.vars.zip(a.vars_out),
                pkcs11: a.token.flags(),
            })
            .map_err(keys_failure)?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
        KeysVerb::Append(a) => {
            use vmseal::key_update::{Database, Entry};
            let entry = match (a.cert, a.image, a.sha256) {
                (Some(c), _, _) => Entry::Cert(c),
                (_, Some(i), _) => Entry::Image(i),
                (_, _, Some(h)) => Entry::Sha256(
                    hex::decode(h.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| {
                            input(anyhow::anyhow!(
                                "--sha256 {h}: not 64 hex digits — give a SHA-256 digest in hex"
                            ))
                        })?,
                ),
                _ => {
                    return Err(input(anyhow::anyhow!(
                        "keys append: nothing to append — give --cert FILE, --image FILE or --sha256 HEX"
                    )));
                }
            };
            let owner = a
                .owner
                .map(|g| {
                    signing::efivar::Guid::parse(&g)
                        .map_err(|e| input(anyhow::anyhow!("--owner: {e}")))
                })
                .transpose()?;
            let files = vmseal::key_update::append(&vmseal::key_update::AppendOptions {
                keys: a.keys,
                database: match a.database {
                    DatabaseArg::Db => Database::Db,
                    DatabaseArg::Dbx => Database::Dbx,
                },
                entry,
                owner,
                out: a.out,
                vars: a.vars.zip(a.vars_out),
                pkcs11: a.token.flags(),
            })
            .map_err(keys_failure)?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
    }
}

fn keys_failure(e: vmseal::keys_cmd::KeysError) -> Failure {
    Failure {
        code: if e.is_input_error() { 2 } else { 1 },
        error: e.into(),
    }
}

fn run_sign(a: SignArgs) -> Result<(), Failure> {
    let key = vmseal::sign_cmd::KeyRef::parse(&a.key, |p| PathBuf::from(p)).map_err(input)?;
    let out = vmseal::sign_cmd::sign(&vmseal::sign_cmd::SignOptions {
        input: a.input,
        key,
        cert: a.cert,
        out: a.out,
        pkcs11: a.pkcs11.flags(),
        keys: a.keys,
    })
    .map_err(|e| Failure {
        code: if e.is_input_error() { 2 } else { 1 },
        error: e.into(),
    })?;
    println!("{}", out.out.display());
    if let Some(l) = out.lock {
        println!("{}", l.display());
    }
    for p in out.also {
        println!("{}", p.display());
    }
    Ok(())
}

fn run_vars(a: VarsArgs) -> Result<(), Failure> {
    use signing::varstore::Template;
    let template = match (a.microsoft, a.template) {
        (true, _) | (_, TemplateArg::MicrosoftUefiCa) => Template::OrgMicrosoftUefiCa,
        (_, TemplateArg::MicrosoftWindows) => Template::OrgMicrosoftWindows,
        (_, TemplateArg::Org) => Template::OrgOnly,
    };
    let opts = vmseal::keys_cmd::VarsOptions {
        keys: a.keys,
        out: a.out,
        template: Some(a.vars_template),
        sb_template: template,
        microsoft_from: template.needs_microsoft().then_some(a.microsoft_vars),
    };
    vmseal::keys_cmd::vars(&opts).map_err(keys_failure)?;
    println!("{}", opts.out.display());
    Ok(())
}

fn run_verify(a: VerifyArgs) -> Result<(), Failure> {
    let r = vmseal::verify::verify(&vmseal::verify::VerifyOptions {
        image: a.image,
        certs: a.cert,
        vars: a.vars,
    })
    .map_err(input)?;
    if a.json {
        print(&(serde_json::to_string_pretty(&r).unwrap_or_default() + "\n"));
    } else {
        print(&vmseal::verify::render(&r));
    }
    if r.ok {
        Ok(())
    } else {
        let failed: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.check.as_str())
            .collect();
        Err(Failure {
            code: 1,
            error: anyhow::anyhow!("{}: invalid: {}", r.image, failed.join(", ")),
        })
    }
}

fn run_export(a: ExportArgs) -> Result<(), Failure> {
    use vmseal::export::Cloud;
    let r = vmseal::export::export(&vmseal::export::ExportOptions {
        image: a.image,
        to: match a.to {
            CloudArg::Azure => Cloud::Azure,
            CloudArg::Gcp => Cloud::Gcp,
            CloudArg::Aws => Cloud::Aws,
        },
        out: a.out,
        vars: a.vars,
        keys: !a.no_keys,
    })
    .map_err(|e| Failure {
        code: if e.is_input_error() { 2 } else { 1 },
        error: e.into(),
    })?;
    if a.json {
        print(&(serde_json::to_string_pretty(&r).unwrap_or_default() + "\n"));
    } else {
        for n in &r.notes {
            eprintln!("note: {n}");
        }
        for f in &r.files {
            println!("{}", f.path.display());
        }
    }
    Ok(())
}

/// The error and its causes on one line, each cause once: a library error that already says
/// what its source says (`"{0} — fix"` over a `#[from]` source) is not followed by it again.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg.replace('\n', " ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let msg = one_line(&f.error);
            eprintln!("error: {msg}");
            ExitCode::from(f.code)
        }
    }
}
