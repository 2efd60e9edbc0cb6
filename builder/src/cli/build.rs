//! `vmseal build`: the pipeline ([`vmseal::pipeline`]) and its summary.

use std::path::PathBuf;

use clap::Args;

use super::{Failure, Pkcs11Args, file_digest, print};
use vmseal::pipeline::{self, BuildOptions};
use vmseal::progress::Progress;

#[derive(Args, Debug)]
pub(crate) struct BuildArgs {
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
    /// Print a JSON summary on stdout (each output's path, size and SHA-256) instead of the
    /// output paths.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
}

pub(crate) fn run(a: BuildArgs, progress: Progress) -> Result<(), Failure> {
    let opts = BuildOptions {
        manifest: a.manifest,
        out: a.out,
        stub: a.stub,
        progress,
        predict: !a.no_predict,
        pkcs11: a.pkcs11.flags(),
    };
    let built = pipeline::build_with(&opts, !a.unsigned).map_err(|e| Failure {
        code: if e.is_input_error() { 2 } else { 1 },
        error: e.into(),
    })?;
    let outputs: Vec<&PathBuf> = [&built.img, &built.efi, &built.lock]
        .into_iter()
        .chain(built.pcrs.as_ref())
        .chain(built.vars.as_ref())
        .collect();
    if a.json {
        let mut files = Vec::new();
        for p in outputs {
            let (size, sha256) = file_digest(p).map_err(|e| Failure {
                code: 1,
                error: anyhow::anyhow!("{}: {e}", p.display()),
            })?;
            files.push(serde_json::json!({ "path": p, "size": size, "sha256": sha256 }));
        }
        let v = serde_json::json!({ "image": built.img, "outputs": files });
        print(&(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"));
    } else {
        for p in outputs {
            println!("{}", p.display());
        }
    }
    Ok(())
}
