//! `vmseal inspect`: what an image or appliance PE holds ([`vmseal::compose::inspect`]).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::{Failure, input, print};

#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// NAME.img (a GPT disk) or NAME.efi (an appliance PE).
    image: PathBuf,
    /// Print JSON (stable keys, for scripts) instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: InspectArgs) -> Result<(), Failure> {
    let report = vmseal::compose::inspect::inspect(&a.image).map_err(input)?;
    let text = if a.json {
        serde_json::to_string_pretty(&report)
            .context("encoding JSON")
            .map_err(|e| Failure { code: 1, error: e })?
            + "\n"
    } else {
        vmseal::compose::inspect::render(&report)
    };
    print(&text);
    Ok(())
}
