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
    /// Use the Secure Boot build of OVMF (enforced when --vars enrolls keys).
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
    match cli.verb {
        Verb::Init(a) => {
            let files = vmseal::init::init(&a.dir, a.force).map_err(input)?;
            for f in files {
                eprintln!("wrote {}", f.display());
            }
            eprintln!(
                "next: vmseal build {} --out {}",
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
            };
            let built = appliance::build_with(&opts, !a.unsigned).map_err(|e| Failure {
                code: if e.is_input_error() { 2 } else { 1 },
                error: e.into(),
            })?;
            for p in [&built.img, &built.efi, &built.lock]
                .into_iter()
                .chain(built.pcrs.as_ref())
                .chain(built.vars.as_ref())
            {
                println!("{}", p.display());
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
        Verb::Boot(a) => {
            let mut opts = vmseal::boot::BootOptions::new(a.image, a.record);
            opts.vars = a.vars;
            opts.secure_boot = a.secure_boot;
            opts.timeout_secs = a.timeout;
            opts.failed_boot_option_first = a.empty_cdrom_first;
            if !a.pcr_banks.is_empty() {
                let mut banks: Vec<_> = a.pcr_banks.iter().map(|b| b.alg()).collect();
                banks.sort();
                banks.dedup();
                opts.pcr_banks = Some(banks);
            }
            let outcome = vmseal::boot::run(&opts).map_err(input)?;
            println!("{}", outcome.verdict().as_str());
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
            let p = vmseal::predict::predict(&opts).map_err(input)?;
            let file = p.to_file();
            if a.json {
                print(&file.to_text());
            } else {
                print(&render_prediction(&file));
            }
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
}

#[derive(Args, Debug)]
struct SignArgs {
    /// NAME.efi or NAME.img.
    input: PathBuf,
    /// The db private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Its code-signing certificate.
    #[arg(long)]
    cert: PathBuf,
    /// Write here instead of replacing the input.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct VarsArgs {
    /// The keys directory (vmseal keys new): PK.crt, KEK.crt, db.crt, owner.guid.
    #[arg(long)]
    keys: PathBuf,
    /// The store to write.
    #[arg(long)]
    out: PathBuf,
    /// Template store.
    #[arg(long, default_value = vmseal::sign_cmd::DEFAULT_VARS_TEMPLATE)]
    template: PathBuf,
    /// Also trust Microsoft's KEK and db certificates (from OVMF_VARS_4M.ms.fd), e.g. for
    /// option ROMs or a Microsoft-signed shim.
    #[arg(long)]
    microsoft: bool,
    /// Take the Microsoft entries from this store instead.
    #[arg(long, value_name = "FILE")]
    microsoft_from: Option<PathBuf>,
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
            let files =
                vmseal::keys_cmd::keys_new(&a.out, &a.org, a.bits).map_err(|e| Failure {
                    code: if e.is_input_error() { 2 } else { 1 },
                    error: e.into(),
                })?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
    }
}

fn run_sign(a: SignArgs) -> Result<(), Failure> {
    let out = vmseal::sign_cmd::sign(&vmseal::sign_cmd::SignOptions {
        input: a.input,
        key: a.key,
        cert: a.cert,
        out: a.out,
    })
    .map_err(|e| Failure {
        code: if e.is_input_error() { 2 } else { 1 },
        error: e.into(),
    })?;
    println!("{}", out.out.display());
    if let Some(l) = out.lock {
        println!("{}", l.display());
    }
    Ok(())
}

fn run_vars(a: VarsArgs) -> Result<(), Failure> {
    let microsoft_from = a.microsoft_from.or_else(|| {
        a.microsoft
            .then(|| PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.ms.fd"))
    });
    let opts = vmseal::keys_cmd::VarsOptions {
        keys: a.keys,
        out: a.out,
        template: Some(a.template),
        microsoft_from,
    };
    vmseal::keys_cmd::vars(&opts).map_err(|e| Failure {
        code: if e.is_input_error() { 2 } else { 1 },
        error: e.into(),
    })?;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let msg = format!("{:#}", f.error).replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::from(f.code)
        }
    }
}
