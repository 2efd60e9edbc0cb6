//! `vmseal export`: an image and its keys in a cloud's formats ([`vmseal::export`]).

use std::path::PathBuf;

use clap::Args;

use super::{Failure, print};

/// A cloud.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloudArg {
    Azure,
    Gcp,
    Aws,
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
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

pub(crate) fn run(a: ExportArgs) -> Result<(), Failure> {
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
