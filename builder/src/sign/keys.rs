//! `vmseal keys new` (an org Secure Boot hierarchy on disk) and `vmseal vars` (a variable
//! store with it enrolled).
//!
//! `keys new --out DIR` writes, for each of PK, KEK and db: `X.key` (PKCS#8 PEM, mode 0600,
//! never overwritten), `X.crt` (PEM), `X.der`, `X.esl` (one X.509 signature list) and `X.auth`
//! (`EFI_VARIABLE_AUTHENTICATION_2`: PK signs PK and KEK, KEK signs db), plus `owner.guid`: the
//! SignatureOwner of the org's entries, a **random** version-4 GUID from the OS RNG
//! (`getrandom`). It is random rather than derived because it names the org, not the keys, and
//! it is measured into PCR 7 with every db entry: a derived value would change on every key
//! rotation. Validity and the `.auth` timestamp are `SOURCE_DATE_EPOCH` when set, else the wall
//! clock (keys are secrets from the OS RNG, so a reproducible certificate is only useful in
//! tests). Nothing is written if any target file exists.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use signing::efivar::{self, EfiTime, Guid};
use signing::keys::{self, HierarchyParams, KeyBits};

use crate::sign::image::{SignCmdError, read_owner};

/// Why `keys new` or `vars` failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A target file exists.
    #[error(
        "{0}: already exists; vmseal never overwrites keys — choose an empty --out directory or move the old keys away"
    )]
    Exists(PathBuf),
    /// A parameter is wrong.
    #[error("{0}")]
    Param(String),
    /// Key generation or a key file failed.
    #[error("{0}")]
    Key(#[from] keys::KeyError),
    /// Making an `.auth` failed.
    #[error("{0}")]
    Var(#[from] efivar::EfiVarError),
    /// A keys directory file is missing or wrong.
    #[error("{file}: {why} — {fix}")]
    Input {
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
        /// The fix.
        fix: &'static str,
    },
    /// Signing / store errors.
    #[error(transparent)]
    Sign(#[from] SignCmdError),
    /// Reading or writing failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

impl KeysError {
    /// Exit 2 (input) or 1 (machine).
    pub fn is_input_error(&self) -> bool {
        match self {
            Self::Io(..) => false,
            Self::Sign(s) => s.is_input_error(),
            _ => true,
        }
    }
}

/// The timestamp `SOURCE_DATE_EPOCH`, else now.
pub(crate) fn epoch_or_now() -> Result<u64, KeysError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.trim().is_empty() => s.trim().parse().map_err(|_| {
            KeysError::Param(format!(
                "SOURCE_DATE_EPOCH: '{s}' is not a number of seconds — unset it or give seconds since 1970"
            ))
        }),
        _ => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)),
    }
}

/// A random RFC 9562 version-4 GUID.
pub fn random_guid() -> Result<Guid, KeysError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| KeysError::Param(format!("the OS RNG failed: {e}")))?;
    // Text form fields: time_low (LE), time_mid (LE), time_hi_and_version (LE), then bytes.
    b[7] = (b[7] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(Guid(b))
}

/// The files `keys new` writes, in order.
pub const KEY_FILES: [&str; 16] = [
    "PK.key",
    "PK.crt",
    "PK.der",
    "PK.esl",
    "PK.auth",
    "KEK.key",
    "KEK.crt",
    "KEK.der",
    "KEK.esl",
    "KEK.auth",
    "db.key",
    "db.crt",
    "db.der",
    "db.esl",
    "db.auth",
    "owner.guid",
];

/// `vmseal keys new`: generate and write the hierarchy; returns the files written.
pub fn keys_new(out: &Path, org: &str, bits: usize) -> Result<Vec<PathBuf>, KeysError> {
    let bits = KeyBits::try_from(bits)
        .map_err(|_| KeysError::Param(format!("--bits {bits}: use 2048, 3072 or 4096")))?;
    for f in KEY_FILES {
        let p = out.join(f);
        if p.exists() {
            return Err(KeysError::Exists(p));
        }
    }
    let now = epoch_or_now()?;
    let mut params = HierarchyParams::new(org, now);
    params.bits = bits;
    let h = keys::generate_hierarchy(&params)?;
    let owner = random_guid()?;
    let auth = efivar::hierarchy_auth_files(&h, owner, EfiTime::from_unix(now)?)?;
    std::fs::create_dir_all(out).map_err(|e| KeysError::Io(out.display().to_string(), e))?;
    h.pk.write_files(out, "PK")?;
    h.kek.write_files(out, "KEK")?;
    h.db.write_files(out, "db")?;
    for (f, b) in [
        ("PK.esl", &auth.pk_esl),
        ("PK.auth", &auth.pk_auth),
        ("KEK.esl", &auth.kek_esl),
        ("KEK.auth", &auth.kek_auth),
        ("db.esl", &auth.db_esl),
        ("db.auth", &auth.db_auth),
    ] {
        write_new(&out.join(f), b)?;
    }
    write_new(&out.join("owner.guid"), format!("{owner}\n").as_bytes())?;
    Ok(KEY_FILES.iter().map(|f| out.join(f)).collect())
}

/// The files `keys new --pkcs11` writes, in order (no private key file: the keys stay in the
/// token; `X.uri` names each key).
pub const TOKEN_KEY_FILES: [&str; 16] = [
    "PK.uri",
    "PK.crt",
    "PK.der",
    "PK.esl",
    "PK.auth",
    "KEK.uri",
    "KEK.crt",
    "KEK.der",
    "KEK.esl",
    "KEK.auth",
    "db.uri",
    "db.crt",
    "db.der",
    "db.esl",
    "db.auth",
    "owner.guid",
];

/// `vmseal keys new --pkcs11 URI`: generate PK, KEK and db inside the token `uri` names
/// (labels `PK`, `KEK`, `db`; private keys sensitive and never extractable), certify them
/// through the token exactly as [`keys_new`] does with file keys, store each certificate in
/// the token next to its key, and write the public files plus `X.uri` into `out`.
pub fn keys_new_pkcs11(
    out: &Path,
    org: &str,
    bits: usize,
    uri: &str,
    flags: &signing::pkcs11::TokenFlags,
) -> Result<Vec<PathBuf>, KeysError> {
    use signing::pkcs11::{Pkcs11Uri, Token, TokenAccess, TokenKey, TokenSigner};
    let bits = KeyBits::try_from(bits)
        .map_err(|_| KeysError::Param(format!("--bits {bits}: use 2048, 3072 or 4096")))?;
    for f in TOKEN_KEY_FILES {
        let p = out.join(f);
        if p.exists() {
            return Err(KeysError::Exists(p));
        }
    }
    let token_err = |e: signing::pkcs11::Pkcs11Error| KeysError::Param(e.to_string());
    let uri = Pkcs11Uri::parse(uri).map_err(token_err)?;
    let access = TokenAccess::resolve(&uri, flags).map_err(token_err)?;
    let token = Token::open(&uri, &access, true).map_err(token_err)?;
    let now = epoch_or_now()?;
    let mut params = HierarchyParams::new(org, now);
    params.bits = bits;
    let owner = random_guid()?;
    // Check the organisation name before creating anything in the token.
    keys::check_org(&params)?;
    let labels = ["PK", "KEK", "db"];
    let mut handles = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let id = [0x76, 0x6d, 0x73, u8::try_from(i + 1).unwrap_or(0)]; // "vms" + 1..3
        handles.push(
            token
                .generate_rsa(label, &id, bits.bits() as u64)
                .map_err(token_err)?,
        );
    }
    let [pk, kek, db] = [handles[0], handles[1], handles[2]].map(|h| TokenKey::new(&token, h));
    let [pk_cert, kek_cert, db_cert] = keys::certify_hierarchy(&params, &pk, &kek, &db)?;
    for (i, (label, cert)) in labels
        .iter()
        .zip([&pk_cert, &kek_cert, &db_cert])
        .enumerate()
    {
        let id = [0x76, 0x6d, 0x73, u8::try_from(i + 1).unwrap_or(0)];
        token
            .store_certificate(label, &id, cert)
            .map_err(token_err)?;
    }
    let pk_signer = TokenSigner::new(pk, pk_cert.clone());
    let kek_signer = TokenSigner::new(kek, kek_cert.clone());
    let auth = efivar::auth_files(
        &pk_signer,
        &kek_signer,
        &db_cert,
        owner,
        EfiTime::from_unix(now)?,
    )?;
    std::fs::create_dir_all(out).map_err(|e| KeysError::Io(out.display().to_string(), e))?;
    for (label, cert, esl, auth_bytes) in [
        ("PK", &pk_cert, &auth.pk_esl, &auth.pk_auth),
        ("KEK", &kek_cert, &auth.kek_esl, &auth.kek_auth),
        ("db", &db_cert, &auth.db_esl, &auth.db_auth),
    ] {
        let key_uri = uri.with_object(label);
        write_new(
            &crate::sign::image::uri_file(out, label),
            format!("{key_uri}\n").as_bytes(),
        )?;
        write_new(&out.join(format!("{label}.crt")), cert.to_pem()?.as_bytes())?;
        write_new(&out.join(format!("{label}.der")), cert.der())?;
        write_new(&out.join(format!("{label}.esl")), esl)?;
        write_new(&out.join(format!("{label}.auth")), auth_bytes)?;
    }
    write_new(&out.join("owner.guid"), format!("{owner}\n").as_bytes())?;
    Ok(TOKEN_KEY_FILES.iter().map(|f| out.join(f)).collect())
}

fn write_new(p: &Path, b: &[u8]) -> Result<(), KeysError> {
    let io = |e| KeysError::Io(p.display().to_string(), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .map_err(io)?;
    f.write_all(b).map_err(io)
}

/// `vmseal vars` options.
#[derive(Clone, Debug)]
pub struct VarsOptions {
    /// The keys directory (PK.crt, KEK.crt, db.crt, owner.guid).
    pub keys: PathBuf,
    /// Output file.
    pub out: PathBuf,
    /// Template (default OVMF_VARS_4M.fd).
    pub template: Option<PathBuf>,
    /// The Secure Boot template.
    pub sb_template: signing::varstore::Template,
    /// The store the Microsoft entries come from (templates other than org-only).
    pub microsoft_from: Option<PathBuf>,
}

/// `vmseal vars`: write a store with the keys of `opts.keys` enrolled — through the same code
/// as `vmseal build`'s `NAME.vars.fd`, so both give the same bytes for the same keys and
/// template.
pub fn vars(opts: &VarsOptions) -> Result<(), KeysError> {
    let cert = |n: &str| {
        let p = opts.keys.join(n);
        keys::load_cert(&p).map_err(|e| KeysError::Input {
            file: p.display().to_string(),
            why: e.to_string(),
            fix: "give the directory written by vmseal keys new",
        })
    };
    let (pk, kek, db) = (cert("PK.crt")?, cert("KEK.crt")?, cert("db.crt")?);
    let owner_path = opts.keys.join("owner.guid");
    let owner = read_owner(&owner_path).map_err(|why| KeysError::Input {
        file: owner_path.display().to_string(),
        why,
        fix: "vmseal keys new writes it (one GUID)",
    })?;
    let template = opts
        .template
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::sign::image::DEFAULT_VARS_TEMPLATE));
    for p in std::iter::once(&template).chain(opts.microsoft_from.as_ref()) {
        if !p.is_file() {
            return Err(KeysError::Input {
                file: p.display().to_string(),
                why: "does not exist".into(),
                fix: "give an OVMF_VARS*.fd file (install ovmf)",
            });
        }
    }
    let (bytes, _) = crate::sign::image::vars_bytes(&crate::sign::image::VarsPlan {
        pk,
        kek,
        db,
        owner,
        template,
        sb_template: opts.sb_template,
        microsoft_from: opts.microsoft_from.clone(),
    })?;
    let dir = opts
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |e| KeysError::Io(opts.out.display().to_string(), e);
    let mut t = tempfile::Builder::new()
        .prefix(".vmseal-vars.")
        .tempfile_in(dir)
        .map_err(io)?;
    t.write_all(&bytes).map_err(io)?;
    t.persist(&opts.out).map_err(|e| io(e.error))?;
    Ok(())
}
