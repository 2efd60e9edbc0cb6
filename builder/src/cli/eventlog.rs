//! `vmseal eventlog show`: a binary TCG log decoded and replayed ([`vmseal::measure::eventlog`]).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Failure, input, print};

#[derive(Subcommand, Debug)]
pub(crate) enum EventlogVerb {
    /// Decode and replay a TCG2 crypto-agile event log: every event (PCR, type, digests,
    /// decoded payload), then the final PCRs per bank.
    Show(EventlogShowArgs),
}

#[derive(Args, Debug)]
pub(crate) struct EventlogShowArgs {
    /// The binary log (binary_bios_measurements, or a record's eventlog.bin).
    file: PathBuf,
    /// Print the log as pcrs.json (format 1, see docs/pcrs-json.md).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(v: EventlogVerb) -> Result<(), Failure> {
    match v {
        EventlogVerb::Show(a) => {
            let shown = vmseal::measure::eventlog::load(&a.file).map_err(input)?;
            if a.json {
                print(
                    &vmseal::measure::eventlog::to_json(&shown, &a.file.display().to_string())
                        .to_text(),
                );
            } else {
                print(&vmseal::measure::eventlog::render(&shown));
            }
            Ok(())
        }
    }
}
