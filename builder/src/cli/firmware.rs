//! `vmseal firmware learn`: a firmware profile from a log or a probe boot ([`vmseal::run::learn`]).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Failure, input};

#[derive(Subcommand, Debug)]
pub(crate) enum FirmwareVerb {
    /// Record a firmware profile (format 2, docs/firmware-profiles.md): from an event log of
    /// any machine (--from-log, e.g. a cloud VM's binary_bios_measurements), or by booting a
    /// probe appliance with --code under vmseal's pinned QEMU command line. Keeps the
    /// firmware's events (PCR 0-3, 6) and what it measures into PCR 4, 5, 7 around the
    /// appliance; prediction recomputes the appliance's own events.
    Learn(FirmwareLearnArgs),
}

#[derive(Args, Debug)]
pub(crate) struct FirmwareLearnArgs {
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

pub(crate) fn run(v: FirmwareVerb) -> Result<(), Failure> {
    match v {
        FirmwareVerb::Learn(a) => {
            let opts = vmseal::run::learn::LearnOptions {
                code: a.code,
                vars: a.vars,
                from_log: a.from_log,
                work: a.work,
            };
            let p = vmseal::run::learn::learn(&opts).map_err(input)?;
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
