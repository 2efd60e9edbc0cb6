//! The `vmseal` command line: one module per verb, each its clap arguments and the wiring from
//! them to the library (`vmseal::…`); nothing here computes anything itself.
//!
//! Exit status: 0 ok, 1 a check failed (or the work failed for a reason outside the input,
//! e.g. a disk error), 2 bad usage or input (clap's usage errors included). Errors are one
//! line on stderr: `error: FILE: FIELD: PROBLEM — FIX`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use vmseal::progress::Progress;

mod attest;
mod boot;
mod build;
mod completions;
mod eventlog;
mod export;
mod firmware;
mod init;
mod inspect;
mod keys;
mod man;
mod pcr;
mod sign;
mod vars;
mod verify;

/// Build sealed appliance VM images: a UEFI disk image holding a measured stub hypervisor,
/// its services and a guest, reproducible byte for byte.
#[derive(Parser, Debug)]
#[command(name = "vmseal", version, about, long_about = None)]
pub(crate) struct Cli {
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Verb {
    /// Write a starter appliance (manifest, sample guest, README) into a directory.
    Init(init::InitArgs),
    /// Build NAME.img (GPT disk with an EFI System Partition), NAME.efi (the appliance PE),
    /// NAME.lock.json and NAME.pcrs.json (the predicted event log and PCRs) from a manifest.
    Build(build::BuildArgs),
    /// Show what is in an image or appliance PE: partitions, ESP files, PE sections with
    /// digests, the Authenticode hash and the launch policy.
    Inspect(inspect::InspectArgs),
    /// Boot an image in QEMU + OVMF + swtpm and record the console, the stub's record and the
    /// verdict.
    Boot(boot::BootArgs),
    /// Read TCG2 event logs.
    #[command(subcommand)]
    Eventlog(eventlog::EventlogVerb),
    /// Predict PCRs and compare a prediction with a boot.
    #[command(subcommand)]
    Pcr(pcr::PcrVerb),
    /// Firmware profiles (the events of PCR 0-3 and 6 that vmseal cannot compute).
    #[command(subcommand)]
    Firmware(firmware::FirmwareVerb),
    /// Org Secure Boot keys (PK, KEK, db).
    #[command(subcommand)]
    Keys(keys::KeysVerb),
    /// Add an Authenticode signature with the org db key to NAME.efi, or to
    /// \EFI\BOOT\BOOTX64.EFI inside NAME.img (and update NAME.lock.json next to it), for
    /// flows where CI builds unsigned and a signing host holds the key.
    Sign(sign::SignArgs),
    /// Write an OVMF variable store with an org's PK, KEK and db enrolled (Secure Boot on,
    /// CustomMode off).
    Vars(vars::VarsArgs),
    /// Check every signature of an image (the appliance PE and a `.linux` kernel) against a
    /// certificate or the db of a variable store, and every section against NAME.lock.json.
    /// Exit 0 valid, 1 invalid, 2 unreadable input.
    Verify(verify::VerifyArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `vmseal completions bash > /etc/bash_completion.d/vmseal`.
    Completions(completions::CompletionsArgs),
    /// Write the man pages (vmseal.1 and one vmseal-VERB.1 per verb) into a directory.
    Man(man::ManArgs),
    /// Attestation: check what a booted appliance sends (TPM2 quote, attestation key, event
    /// log) against its prediction. See docs/attestation.md.
    #[command(subcommand)]
    Attest(attest::AttestVerb),
    /// Write an image in the form a cloud imports, with the org's Secure Boot keys (from the
    /// variable store it boots with) in that cloud's format: Azure (fixed VHD + the image
    /// version's uefiSettings), GCP (disk.raw in a .tar.gz + Shielded VM key files), AWS (raw
    /// disk + the --uefi-data blob). See docs/export.md.
    Export(export::ExportArgs),
}

/// A TPM bank vmseal computes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bank {
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
pub(crate) enum OnOff {
    On,
    Off,
}

/// Which OVMF files (default: VMSEAL_OVMF_CODE / VMSEAL_OVMF_VARS, else QEMU's firmware
/// descriptors, else Debian's paths).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct FirmwareArgs {
    /// The OVMF code file (also: VMSEAL_OVMF_CODE).
    #[arg(long, value_name = "FILE")]
    ovmf_code: Option<PathBuf>,
    /// The pristine OVMF variable store used without --vars (also: VMSEAL_OVMF_VARS).
    #[arg(long, value_name = "FILE")]
    ovmf_vars: Option<PathBuf>,
}

impl FirmwareArgs {
    fn flags(&self) -> vmseal::measure::ovmf::FirmwareFlags {
        vmseal::measure::ovmf::FirmwareFlags {
            code: self.ovmf_code.clone(),
            vars: self.ovmf_vars.clone(),
        }
    }
}

/// Where a `pkcs11:` key's module and PIN come from (docs/pkcs11.md).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct Pkcs11Args {
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

/// An error with the exit status it maps to.
pub(crate) struct Failure {
    code: u8,
    error: anyhow::Error,
}

pub(crate) fn input(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: e.into(),
    }
}

pub(crate) fn run(cli: Cli) -> Result<(), Failure> {
    let progress = Progress::new(cli.quiet);
    let quiet = cli.quiet;
    match cli.verb {
        Verb::Init(a) => init::run(a),
        Verb::Build(a) => build::run(a, progress),
        Verb::Inspect(a) => inspect::run(a),
        Verb::Eventlog(v) => eventlog::run(v),
        Verb::Pcr(v) => pcr::run(v),
        Verb::Firmware(v) => firmware::run(v),
        Verb::Keys(v) => keys::run(v),
        Verb::Sign(a) => sign::run(a),
        Verb::Vars(a) => vars::run(a),
        Verb::Verify(a) => verify::run(a),
        Verb::Export(a) => export::run(a),
        Verb::Attest(v) => attest::run(v),
        Verb::Completions(a) => completions::run(a),
        Verb::Man(a) => man::run(a),
        Verb::Boot(a) => boot::run(a, quiet),
    }
}

/// Size and SHA-256 (hex) of a file.
pub(crate) fn file_digest(p: &std::path::Path) -> std::io::Result<(u64, String)> {
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

pub(crate) fn print(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// The error and its causes on one line, each cause once: a library error that already says
/// what its source says (`"{0} — fix"` over a `#[from]` source) is not followed by it again.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
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

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // A manifest with several problems: each on its own line, as a compiler does.
            let manifest = f
                .error
                .chain()
                .find_map(|c| {
                    use vmseal::compose::manifest::ManifestError;
                    use vmseal::pipeline::BuildError;
                    match c.downcast_ref::<BuildError>() {
                        Some(BuildError::Manifest(m)) => Some(m),
                        _ => c.downcast_ref::<ManifestError>(),
                    }
                })
                .filter(|m| !m.more.is_empty());
            match manifest {
                Some(m) => {
                    for p in m.all() {
                        eprintln!("error: {p}");
                    }
                    eprintln!("error: {} problems in {}", m.more.len() + 1, m.file);
                }
                None => eprintln!("error: {}", one_line(&f.error)),
            }
            ExitCode::from(f.code)
        }
    }
}
