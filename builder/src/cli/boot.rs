//! `vmseal boot`: QEMU + OVMF + swtpm over an image ([`vmseal::run::boot`]).

use std::path::PathBuf;

use clap::Args;

use super::{Bank, Failure, FirmwareArgs, input, print};

#[derive(Args, Debug)]
pub(crate) struct BootArgs {
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
    #[arg(long, default_value_t = vmseal::run::boot::DEFAULT_TIMEOUT_SECS)]
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
    /// Give the guest one network path: to the attestation server at HOST:PORT (`vmseal
    /// attest serve`), which the guest reaches as 10.0.2.100:80 (QEMU user networking,
    /// restrict=on, one guestfwd relayed by `vmseal attest relay`); nothing else is
    /// reachable. The NIC has no option ROM and OVMF's PXE is off, so the firmware measures
    /// nothing new. Default: no network device.
    #[arg(long, value_name = "HOST:PORT")]
    attest_server: Option<String>,
}

pub(crate) fn run(a: BootArgs, quiet: bool) -> Result<(), Failure> {
    let mut opts = vmseal::run::boot::BootOptions::new(a.image, a.record);
    // A store with keys enrolled is predicted (and meant) for the Secure Boot firmware.
    let auto_sb = !a.secure_boot
        && a.vars
            .as_deref()
            .is_some_and(vmseal::run::boot::store_enables_secure_boot);
    if auto_sb {
        eprintln!(
            "note: {} enrolls Secure Boot keys: booting the Secure Boot firmware {}",
            a.vars
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            vmseal::measure::ovmf::OVMF_CODE_SECBOOT
        );
    }
    opts.vars = a.vars;
    opts.secure_boot = a.secure_boot || auto_sb;
    opts.timeout_secs = a.timeout;
    opts.echo = if quiet {
        vmseal::run::boot::Echo::Quiet
    } else if a.verbose {
        vmseal::run::boot::Echo::Verbose
    } else {
        vmseal::run::boot::Echo::Console
    };
    let record_dir = opts.record_dir.clone();
    opts.firmware = a.firmware.flags();
    opts.failed_boot_option_first = a.empty_cdrom_first;
    if let Some(server) = &a.attest_server {
        if server.parse::<std::net::SocketAddr>().is_err() {
            return Err(input(anyhow::anyhow!(
                "--attest-server {server}: not an IP address and port — give HOST:PORT, e.g. 127.0.0.1:8443"
            )));
        }
        let exe = std::env::current_exe().map_err(|e| {
            input(anyhow::anyhow!(
                "--attest-server: cannot find the vmseal executable for the relay: {e}"
            ))
        })?;
        opts.guest_net = Some(vmseal::run::boot::GuestNet {
            relay: vec![
                exe.display().to_string(),
                "attest".into(),
                "relay".into(),
                server.clone(),
            ],
        });
    }
    if !a.pcr_banks.is_empty() {
        let mut banks: Vec<_> = a.pcr_banks.iter().map(|b| b.alg()).collect();
        banks.sort();
        banks.dedup();
        opts.pcr_banks = Some(banks);
    }
    let outcome = vmseal::run::boot::run(&opts).map_err(input)?;
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
    if outcome.verdict() == vmseal::run::boot::Verdict::Booted {
        Ok(())
    } else {
        Err(Failure {
            // A record whose log does not replay to its PCRs is bad input to every
            // later step (`pcr diff` refuses it too); other verdicts are failed checks.
            code: if outcome.verdict() == vmseal::run::boot::Verdict::RecordInconsistent {
                2
            } else {
                1
            },
            error: anyhow::anyhow!("boot verdict: {}", outcome.verdict().as_str()),
        })
    }
}
