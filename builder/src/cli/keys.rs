//! `vmseal keys new|rotate|append`: org key hierarchies and db/dbx updates ([`vmseal::sign::keys`],
//! [`vmseal::sign::update`]).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Failure, Pkcs11Args, input};

#[derive(Subcommand, Debug)]
pub(crate) enum KeysVerb {
    /// Generate PK, KEK and db (RSA keys, X.509 certificates PK -> KEK -> db), their signature
    /// lists and authenticated enrollment payloads (.esl, .auth) and owner.guid (a random
    /// SignatureOwner). Private keys are PKCS#8 PEM, mode 0600; nothing is overwritten.
    New(KeysNewArgs),
    /// Rotate the db key: a new db key certified by the KEK, the KEK-signed db-append.auth
    /// that enrolls it in the field (SetVariable with APPEND_WRITE), and a keys directory for
    /// builds signed by it. The old db stays trusted until revoked with `keys append dbx`.
    Rotate(KeysRotateArgs),
    /// A KEK-signed update that appends to db or dbx (a certificate, an image's Authenticode
    /// hash, a SHA-256): what an owner applies in the field; byte-identical to efitools'
    /// sign-efi-sig-list -a.
    Append(KeysAppendArgs),
}

/// db or dbx.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DatabaseArg {
    Db,
    Dbx,
}

#[derive(Args, Debug)]
pub(crate) struct KeysAppendArgs {
    /// The database to append to: db (allow) or dbx (revoke).
    #[arg(value_enum)]
    database: DatabaseArg,
    /// The org's keys directory (KEK.crt with KEK.key or KEK.uri, owner.guid).
    #[arg(long)]
    keys: PathBuf,
    /// Append this X.509 certificate (PEM or DER).
    #[arg(long, group = "entry")]
    cert: Option<PathBuf>,
    /// Append the Authenticode SHA-256 of this EFI binary, or of BOOTX64.EFI in this image
    /// (dbx: revoke exactly that image).
    #[arg(long, group = "entry")]
    image: Option<PathBuf>,
    /// Append this SHA-256 digest (64 hex digits).
    #[arg(long, group = "entry", value_name = "HEX")]
    sha256: Option<String>,
    /// SignatureOwner of the entry (default: KEYS/owner.guid).
    #[arg(long)]
    owner: Option<String>,
    /// Where to write the signed update (for SetVariable with APPEND_WRITE).
    #[arg(long)]
    out: PathBuf,
    /// Apply the update to this variable store too …
    #[arg(long, requires = "vars_out")]
    vars: Option<PathBuf>,
    /// … and write the result here (predict PCR 7 with it).
    #[arg(long, requires = "vars")]
    vars_out: Option<PathBuf>,
    #[command(flatten)]
    token: Pkcs11Args,
}

#[derive(Args, Debug)]
pub(crate) struct KeysRotateArgs {
    /// The org's keys directory (KEK.crt with KEK.key or KEK.uri, PK.crt, owner.guid).
    #[arg(long)]
    keys: PathBuf,
    /// Directory for the new db key: a keys directory for builds signed by it.
    #[arg(long)]
    out: PathBuf,
    /// RSA modulus size of the new key.
    #[arg(long, default_value_t = 2048)]
    bits: usize,
    /// Enroll the new db certificate into this variable store too …
    #[arg(long, requires = "vars_out")]
    vars: Option<PathBuf>,
    /// … and write the result here.
    #[arg(long, requires = "vars")]
    vars_out: Option<PathBuf>,
    #[command(flatten)]
    token: Pkcs11Args,
}

#[derive(Args, Debug)]
pub(crate) struct KeysNewArgs {
    /// Directory to write into (created; must not hold keys already).
    #[arg(long)]
    out: PathBuf,
    /// Organisation name: subjects are "CN=ORG PK|KEK|db, O=ORG".
    #[arg(long, default_value = "vmseal")]
    org: String,
    /// RSA modulus size (2048 is what every firmware verifies; 4096 PKs trouble some).
    #[arg(long, default_value_t = 2048)]
    bits: usize,
    /// Create the three keys inside this PKCS#11 token (an RFC 7512 URI naming the token,
    /// e.g. pkcs11:token=acme): the private keys never leave it; --out gets the certificates,
    /// .esl/.auth files, owner.guid and PK.uri, KEK.uri, db.uri naming the keys.
    #[arg(long, value_name = "URI")]
    pkcs11: Option<String>,
    #[command(flatten)]
    token: Pkcs11Args,
}

pub(crate) fn run(v: KeysVerb) -> Result<(), Failure> {
    match v {
        KeysVerb::New(a) => {
            let files = match &a.pkcs11 {
                Some(uri) => vmseal::sign::keys::keys_new_pkcs11(
                    &a.out,
                    &a.org,
                    a.bits,
                    uri,
                    &a.token.flags(),
                ),
                None => vmseal::sign::keys::keys_new(&a.out, &a.org, a.bits),
            }
            .map_err(|e| Failure {
                code: if e.is_input_error() { 2 } else { 1 },
                error: e.into(),
            })?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
        KeysVerb::Rotate(a) => {
            let files = vmseal::sign::update::rotate(&vmseal::sign::update::RotateOptions {
                keys: a.keys,
                out: a.out,
                bits: a.bits,
                vars: a.vars.zip(a.vars_out),
                pkcs11: a.token.flags(),
            })
            .map_err(keys_failure)?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
        KeysVerb::Append(a) => {
            use vmseal::sign::update::{Database, Entry};
            let entry = match (a.cert, a.image, a.sha256) {
                (Some(c), _, _) => Entry::Cert(c),
                (_, Some(i), _) => Entry::Image(i),
                (_, _, Some(h)) => Entry::Sha256(
                    hex::decode(h.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| {
                            input(anyhow::anyhow!(
                                "--sha256 {h}: not 64 hex digits — give a SHA-256 digest in hex"
                            ))
                        })?,
                ),
                _ => {
                    return Err(input(anyhow::anyhow!(
                        "keys append: nothing to append — give --cert FILE, --image FILE or --sha256 HEX"
                    )));
                }
            };
            let owner = a
                .owner
                .map(|g| {
                    signing::efivar::Guid::parse(&g)
                        .map_err(|e| input(anyhow::anyhow!("--owner: {e}")))
                })
                .transpose()?;
            let files = vmseal::sign::update::append(&vmseal::sign::update::AppendOptions {
                keys: a.keys,
                database: match a.database {
                    DatabaseArg::Db => Database::Db,
                    DatabaseArg::Dbx => Database::Dbx,
                },
                entry,
                owner,
                out: a.out,
                vars: a.vars.zip(a.vars_out),
                pkcs11: a.token.flags(),
            })
            .map_err(keys_failure)?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
    }
}

pub(crate) fn keys_failure(e: vmseal::sign::keys::KeysError) -> Failure {
    Failure {
        code: if e.is_input_error() { 2 } else { 1 },
        error: e.into(),
    }
}
