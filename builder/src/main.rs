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
    /// Build NAME.img (GPT disk with an EFI System Partition), NAME.efi (the appliance PE) and
    /// NAME.lock.json from a manifest.
    Build(BuildArgs),
    /// Show what is in an image or appliance PE: partitions, ESP files, PE sections with
    /// digests, the Authenticode hash and the launch policy.
    Inspect(InspectArgs),
    /// Boot an image in QEMU + OVMF + swtpm and record the console, the stub's record and the
    /// verdict.
    Boot(BootArgs),
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
            };
            let built = appliance::build(&opts).map_err(|e| Failure {
                code: if e.is_input_error() { 2 } else { 1 },
                error: e.into(),
            })?;
            for p in [&built.img, &built.efi, &built.lock] {
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
        Verb::Boot(a) => {
            let mut opts = vmseal::boot::BootOptions::new(a.image, a.record);
            opts.vars = a.vars;
            opts.secure_boot = a.secure_boot;
            opts.timeout_secs = a.timeout;
            let outcome = vmseal::boot::run(&opts).map_err(input)?;
            println!("{}", outcome.verdict().as_str());
            if outcome.verdict() == vmseal::boot::Verdict::Booted {
                Ok(())
            } else {
                Err(Failure {
                    code: 1,
                    error: anyhow::anyhow!("boot verdict: {}", outcome.verdict().as_str()),
                })
            }
        }
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
