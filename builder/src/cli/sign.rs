//! `vmseal sign`: an Authenticode signature on an appliance, in place ([`vmseal::sign::image`]).

use std::path::PathBuf;

use clap::Args;

use super::{Failure, Pkcs11Args, input};

#[derive(Args, Debug)]
pub(crate) struct SignArgs {
    /// NAME.efi or NAME.img.
    input: PathBuf,
    /// The db private key: a PEM file, or an RFC 7512 pkcs11: URI of a key in a token.
    #[arg(long)]
    key: String,
    /// Its code-signing certificate.
    #[arg(long)]
    cert: PathBuf,
    /// Write here instead of replacing the input.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The org's keys directory (PK.crt, KEK.crt, owner.guid): signing NAME.img in place
    /// then also writes NAME.vars.fd and the prediction NAME.pcrs.json for it.
    #[arg(long)]
    keys: Option<PathBuf>,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
}

pub(crate) fn run(a: SignArgs) -> Result<(), Failure> {
    let key = vmseal::sign::image::KeyRef::parse(&a.key, |p| PathBuf::from(p)).map_err(input)?;
    let out = vmseal::sign::image::sign(&vmseal::sign::image::SignOptions {
        input: a.input,
        key,
        cert: a.cert,
        out: a.out,
        pkcs11: a.pkcs11.flags(),
        keys: a.keys,
    })
    .map_err(|e| Failure {
        code: if e.is_input_error() { 2 } else { 1 },
        error: e.into(),
    })?;
    println!("{}", out.out.display());
    if let Some(l) = out.lock {
        println!("{}", l.display());
    }
    for p in out.also {
        println!("{}", p.display());
    }
    Ok(())
}
