//! `vmseal verify`: every signature and digest of an image checked ([`vmseal::sign::verify`]).

use std::path::PathBuf;

use clap::Args;

use super::{Failure, input, print};

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
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

pub(crate) fn run(a: VerifyArgs) -> Result<(), Failure> {
    let r = vmseal::sign::verify::verify(&vmseal::sign::verify::VerifyOptions {
        image: a.image,
        certs: a.cert,
        vars: a.vars,
    })
    .map_err(input)?;
    if a.json {
        print(&(serde_json::to_string_pretty(&r).unwrap_or_default() + "\n"));
    } else {
        print(&vmseal::sign::verify::render(&r));
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
