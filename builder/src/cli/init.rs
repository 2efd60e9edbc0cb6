//! `vmseal init DIR`: a starter project ([`vmseal::compose::init`]).

use std::path::PathBuf;

use clap::Args;

use super::{Failure, input};

#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// Directory to write into (created if missing).
    dir: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(a: InitArgs) -> Result<(), Failure> {
    let files = vmseal::compose::init::init(&a.dir, a.force).map_err(input)?;
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
