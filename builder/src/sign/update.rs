//! Field updates of the Secure Boot databases: `vmseal keys rotate` (a new db key certified by
//! the KEK) and `vmseal keys append db|dbx` (add a certificate to db; revoke an image's
//! Authenticode hash or a certificate in dbx).
//!
//! Each update is an `EFI_VARIABLE_AUTHENTICATION_2` payload (`.auth`) for `SetVariable` with
//! `EFI_VARIABLE_APPEND_WRITE`, signed by the org's KEK (a key file or a key in a PKCS#11
//! token): byte-identical to what efitools' `sign-efi-sig-list -a -t TIME -k KEK.key -c KEK.crt
//! VAR FILE.esl` writes for the same list, key and time. With `--vars IN --vars-out OUT` the
//! update is also applied to a variable store as the firmware applies it (EDK2
//! `FilterSignatureList`: entries already present are skipped, the rest appended as new
//! lists), so `vmseal pcr predict --vars OUT` predicts PCR 7 of a device that applied it.
//!
//! Time: `SOURCE_DATE_EPOCH`, else the wall clock (EDK2 does not require an append to carry a
//! later timestamp than the variable's; a later one replaces it).

use std::path::{Path, PathBuf};

use signing::efivar::{
    self, ATTR_APPEND_WRITE, ATTRS_SECURE_BOOT_DB, EFI_IMAGE_SECURITY_DATABASE, EfiTime, Guid,
};
use signing::keys::{self, Certificate, HierarchyParams, KeyBits, Purpose};
use signing::pkcs11::TokenFlags;
use signing::varstore::{VarStore, Variable};

use crate::sign::image::{KeyRef, read_owner, read_uri_file, uri_file};
use crate::sign::keys::KeysError;

/// The database an update appends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database {
    /// `db`: what may run.
    Db,
    /// `dbx`: what may not.
    Dbx,
}

impl Database {
    /// The variable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Db => "db",
            Self::Dbx => "dbx",
        }
    }
}

/// What to append.
#[derive(Clone, Debug)]
pub enum Entry {
    /// An X.509 certificate (DER or PEM file).
    Cert(PathBuf),
    /// The Authenticode SHA-256 of an EFI binary (`NAME.efi`) or of an image's
    /// `\EFI\BOOT\BOOTX64.EFI` (`NAME.img`).
    Image(PathBuf),
    /// A SHA-256 digest.
    Sha256([u8; 32]),
}

/// `vmseal keys append`.
#[derive(Clone, Debug)]
pub struct AppendOptions {
    /// The org's keys directory: `KEK.crt`, `KEK.key` or `KEK.uri`, `owner.guid`.
    pub keys: PathBuf,
    /// db or dbx.
    pub database: Database,
    /// The entry.
    pub entry: Entry,
    /// The SignatureOwner (default: `KEYS/owner.guid`).
    pub owner: Option<Guid>,
    /// Where to write the `.auth`.
    pub out: PathBuf,
    /// A store to apply the update to, and where to write the result.
    pub vars: Option<(PathBuf, PathBuf)>,
    /// Module and PIN file for a KEK in a token.
    pub pkcs11: TokenFlags,
}

fn input(file: &Path, why: impl std::fmt::Display, fix: &'static str) -> KeysError {
    KeysError::Input {
        file: file.display().to_string(),
        why: why.to_string(),
        fix,
    }
}

/// The KEK signer of a keys directory: `KEK.key`, else the token key in `KEK.uri`.
fn kek_signer(keys: &Path, flags: &TokenFlags) -> Result<Box<dyn keys::Signer>, KeysError> {
    let cert = keys.join("KEK.crt");
    if !cert.is_file() {
        return Err(input(
            &cert,
            "does not exist",
            "give the keys directory of `vmseal keys new` (--keys DIR)",
        ));
    }
    let key = if keys.join("KEK.key").is_file() {
        KeyRef::File(keys.join("KEK.key"))
    } else if uri_file(keys, "KEK").is_file() {
        let p = uri_file(keys, "KEK");
        KeyRef::Token(Box::new(read_uri_file(&p).map_err(|e| {
            input(&p, e, "vmseal keys new --pkcs11 writes KEK.uri")
        })?))
    } else {
        return Err(input(
            &keys.join("KEK.key"),
            "does not exist (nor KEK.uri)",
            "the KEK signs db/dbx updates: give the keys directory that holds it",
        ));
    };
    Ok(crate::sign::image::load_signer_for(
        &key,
        &cert,
        Purpose::Variables,
        flags,
    )?)
}

fn owner_of(keys: &Path, given: Option<Guid>) -> Result<Guid, KeysError> {
    match given {
        Some(g) => Ok(g),
        None => {
            let p = keys.join("owner.guid");
            read_owner(&p).map_err(|e| {
                input(
                    &p,
                    e,
                    "vmseal keys new writes owner.guid; or pass --owner GUID",
                )
            })
        }
    }
}

fn epoch_time() -> Result<EfiTime, KeysError> {
    Ok(EfiTime::from_unix(crate::sign::keys::epoch_or_now()?)?)
}

/// The signature list of `entry` (one entry, owner `owner`).
pub fn entry_list(entry: &Entry, owner: Guid) -> Result<Vec<u8>, KeysError> {
    Ok(match entry {
        Entry::Cert(p) => {
            let c = keys::load_cert(p)
                .map_err(|e| input(p, e, "give a PEM or DER X.509 certificate"))?;
            efivar::x509_list(owner, c.der())
        }
        Entry::Sha256(h) => efivar::sha256_list(owner, &[*h]),
        Entry::Image(p) => efivar::sha256_list(owner, &[image_hash(p)?]),
    })
}

/// The Authenticode SHA-256 of a PE, or of the `\EFI\BOOT\BOOTX64.EFI` of a disk image.
pub fn image_hash(p: &Path) -> Result<[u8; 32], KeysError> {
    let bytes = std::fs::read(p).map_err(|e| input(p, e, "give NAME.efi or NAME.img"))?;
    let pe = if bytes.starts_with(b"MZ") {
        bytes
    } else {
        crate::sign::image::read_boot_file(p)?
    };
    let d = signing::authenticode::digest(
        pe.as_slice(),
        signing::authenticode::DigestAlgorithm::Sha256,
    )
    .map_err(|e| input(p, e, "give a PE/COFF EFI binary or a vmseal image"))?;
    d.as_slice()
        .try_into()
        .map_err(|_| input(p, "the Authenticode digest is not 32 bytes", "report this"))
}

/// The `.auth` appending `list` to `database`, signed by `kek` at `time`.
pub fn append_auth(
    database: Database,
    list: &[u8],
    time: EfiTime,
    kek: &dyn keys::Signer,
) -> Result<Vec<u8>, KeysError> {
    Ok(efivar::auth2_payload(
        database.name(),
        EFI_IMAGE_SECURITY_DATABASE,
        ATTRS_SECURE_BOOT_DB | ATTR_APPEND_WRITE,
        time,
        list,
        kek,
    )?)
}

/// Apply an append of `list` to `database` in the store `input` as the firmware would.
pub fn apply_to_store(
    store_path: &Path,
    database: Database,
    list: &[u8],
    time: EfiTime,
) -> Result<Vec<u8>, KeysError> {
    let bytes = std::fs::read(store_path)
        .map_err(|e| input(store_path, e, "give an OVMF variable store (NAME.vars.fd)"))?;
    let mut store = VarStore::parse(&bytes).map_err(|e| {
        input(
            store_path,
            e,
            "give an OVMF variable store (NAME.vars.fd from a signed build)",
        )
    })?;
    let name = database.name();
    let old = store.get(name, EFI_IMAGE_SECURITY_DATABASE).cloned();
    let existing = old.as_ref().map(|v| v.data.as_slice()).unwrap_or(&[]);
    let added = efivar::filter_new_entries(existing, list).map_err(|e| {
        input(
            store_path,
            format!("{name}: {e}"),
            "the store's database is malformed",
        )
    })?;
    // EDK2 `UpdateVariable`: an append to an existing variable keeps the later timestamp; one
    // that creates the variable stores a zero timestamp.
    let mut var = match old {
        Some(mut v) => {
            let stamp = time.to_bytes();
            if efi_time_later(&stamp, &v.timestamp) {
                v.timestamp = stamp;
            }
            v
        }
        None => Variable::new(
            name,
            EFI_IMAGE_SECURITY_DATABASE,
            ATTRS_SECURE_BOOT_DB,
            Vec::new(),
        ),
    };
    var.data.extend_from_slice(&added);
    store.set(var);
    store
        .to_bytes()
        .map_err(|e| input(store_path, e, "the store has no room: use the 4 MiB layout"))
}

/// EDK2's `CompareTimeStamp(old, new)`: is `new` later than `old` (year, month, day, hour,
/// minute, second, nanosecond)?
fn efi_time_later(new: &[u8; 16], old: &[u8; 16]) -> bool {
    let key = |t: &[u8; 16]| {
        (
            u16::from_le_bytes([t[0], t[1]]),
            t[2],
            t[3],
            t[4],
            t[5],
            t[6],
            u32::from_le_bytes([t[8], t[9], t[10], t[11]]),
        )
    };
    key(new) > key(old)
}

/// `bytes` in a temporary file next to `path` (renamed into place by [`persist_all`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile, KeysError> {
    use std::io::Write as _;
    let mut t = crate::sign::image::temp_next_to(path)?;
    t.write_all(bytes)
        .map_err(|e| KeysError::Io(path.display().to_string(), e))?;
    Ok(t)
}

/// Rename every staged file into place (public files: mode 0644).
fn persist_all(files: Vec<(tempfile::NamedTempFile, PathBuf)>) -> Result<Vec<PathBuf>, KeysError> {
    let mut out = Vec::new();
    for (t, p) in files {
        crate::sign::image::persist(t, &p)?;
        out.push(p);
    }
    Ok(out)
}

/// `vmseal keys append db|dbx`: the `.auth`, and the updated store when asked for. Nothing is
/// written unless everything succeeded.
pub fn append(opts: &AppendOptions) -> Result<Vec<PathBuf>, KeysError> {
    let owner = owner_of(&opts.keys, opts.owner)?;
    let list = entry_list(&opts.entry, owner)?;
    let kek = kek_signer(&opts.keys, &opts.pkcs11)?;
    let time = epoch_time()?;
    let auth = append_auth(opts.database, &list, time, kek.as_ref())?;
    let mut files = vec![(write_atomic(&opts.out, &auth)?, opts.out.clone())];
    if let Some((from, to)) = &opts.vars {
        let store = apply_to_store(from, opts.database, &list, time)?;
        files.push((write_atomic(to, &store)?, to.clone()));
    }
    persist_all(files)
}

/// `vmseal keys rotate`.
#[derive(Clone, Debug)]
pub struct RotateOptions {
    /// The org's keys directory (`KEK.crt`, `KEK.key`/`KEK.uri`, `PK.crt`, `owner.guid`).
    pub keys: PathBuf,
    /// The new directory: a keys directory for builds signed by the new db key.
    pub out: PathBuf,
    /// RSA modulus size of the new key.
    pub bits: usize,
    /// A store to enroll the new db certificate into, and where to write the result.
    pub vars: Option<(PathBuf, PathBuf)>,
    /// Module and PIN file for a KEK in a token.
    pub pkcs11: TokenFlags,
}

/// The files `keys rotate` writes into `--out`.
pub const ROTATE_FILES: [&str; 8] = [
    "db.key",
    "db.crt",
    "db.der",
    "db.esl",
    "db-append.auth",
    "PK.crt",
    "KEK.crt",
    "owner.guid",
];

/// `vmseal keys rotate`: a new db key (PKCS#8 PEM, 0600) certified by the KEK, its signature
/// list, the KEK-signed `db-append.auth` that enrolls it in the field, and `PK.crt`,
/// `KEK.crt`, `owner.guid` copied, so `--out` is a keys directory for builds signed by the new
/// key. The old db stays enrolled until its images are revoked (`keys append dbx`).
pub fn rotate(opts: &RotateOptions) -> Result<Vec<PathBuf>, KeysError> {
    let bits = KeyBits::try_from(opts.bits)
        .map_err(|_| KeysError::Param(format!("--bits {}: use 2048, 3072 or 4096", opts.bits)))?;
    for f in ROTATE_FILES {
        let p = opts.out.join(f);
        if p.exists() {
            return Err(KeysError::Exists(p));
        }
    }
    let owner = owner_of(&opts.keys, None)?;
    let kek = kek_signer(&opts.keys, &opts.pkcs11)?;
    let kek_cert: Certificate = kek.certificate().clone();
    let org = kek_cert
        .x509()
        .tbs_certificate()
        .subject()
        .to_string()
        .split(',')
        .find_map(|rdn| rdn.trim().strip_prefix("O=").map(str::to_owned))
        .unwrap_or_else(|| "vmseal".into());
    let now = crate::sign::keys::epoch_or_now()?;
    let time = EfiTime::from_unix(now)?;
    let mut params = HierarchyParams::new(&org, now);
    params.bits = bits;
    let key = keys::PrivateKey::generate(bits)?;
    struct KekKey<'a>(&'a dyn keys::Signer);
    impl keys::RawKey for KekKey<'_> {
        fn public_key_der(&self) -> Result<Vec<u8>, keys::KeyError> {
            self.0.certificate().public_key_der()
        }
        fn sign_pkcs1v15_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, keys::KeyError> {
            self.0.sign_pkcs1v15_sha256(msg)
        }
    }
    let cert = keys::certify_db(&params, &kek_cert, &KekKey(kek.as_ref()), &key)?;
    let list = efivar::x509_list(owner, cert.der());
    let auth = append_auth(Database::Db, &list, time, kek.as_ref())?;
    let store = match &opts.vars {
        Some((from, to)) => Some((apply_to_store(from, Database::Db, &list, time)?, to.clone())),
        None => None,
    };
    let read = |f: &str| {
        let p = opts.keys.join(f);
        std::fs::read(&p).map_err(|e| input(&p, e, "give the keys directory of `vmseal keys new`"))
    };
    let (pk_crt, kek_crt, owner_txt) = (read("PK.crt")?, read("KEK.crt")?, read("owner.guid")?);
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| KeysError::Io(opts.out.display().to_string(), e))?;
    let mut staged = Vec::new();
    for (f, bytes) in [
        ("db.crt", cert.to_pem()?.into_bytes()),
        ("db.der", cert.der().to_vec()),
        ("db.esl", list.clone()),
        ("db-append.auth", auth),
        ("PK.crt", pk_crt),
        ("KEK.crt", kek_crt),
        ("owner.guid", owner_txt),
    ] {
        let p = opts.out.join(f);
        staged.push((write_atomic(&p, &bytes)?, p));
    }
    if let Some((bytes, to)) = store {
        staged.push((write_atomic(&to, &bytes)?, to));
    }
    // The private key last, created 0600 and never overwriting (as `keys new` writes keys).
    key.write_pem(&opts.out.join("db.key"))?;
    let mut written = vec![opts.out.join("db.key")];
    written.extend(persist_all(staged)?);
    Ok(written)
}
