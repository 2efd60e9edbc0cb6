//! Signing appliances with org keys: `vmseal sign`, and the signing step of `vmseal build`.
//!
//! The appliance PE gets one Authenticode signature (`signing::authenticode::sign`: RSA
//! PKCS#1 v1.5 + SHA-256, no signingTime, so the same PE and key give the same bytes).
//!
//! `vmseal build` signs while it streams ([`crate::pipeline`]): [`table_size`] gives the
//! certificate table's size up front (a signature over a dummy digest has the real one's
//! length), the PE streams with its headers already pointing at the table, the SHA-256
//! Authenticode digest is taken from the stream, [`certificate_table`] makes the table from
//! it, and the build appends it and patches the CheckSum, in `NAME.efi` and in the clusters
//! reserved for `\EFI\BOOT\BOOTX64.EFI`. Nothing holds the PE in memory.
//!
//! `vmseal sign` signs after the fact, in memory: in an image only the FAT file
//! `\EFI\BOOT\BOOTX64.EFI` is rewritten, in place, with the `fatfs` crate the builder formats
//! the ESP with ([`write_boot_file`]); the GPT (whose GUIDs are derived from the unsigned
//! content) stays. The streamed build writes exactly those bytes — the table after the
//! sections, the same clusters (fatfs extends a file into the clusters after it, which the
//! build reserves from the start), the same modification time (`SOURCE_DATE_EPOCH`) — so
//! `vmseal sign` of an unsigned image gives a signed build's image.
//!
//! A `.linux` kernel gets the org signature appended to its certificate table (a vendor
//! signature stays) before it becomes the section: it is read into memory for that (a
//! kernel, ~10–20 MiB). No private key byte is ever written or printed: keys are only used
//! through [`signing::keys::Signer`], and no error carries key material.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Value, json};
use sha2::Digest as _;
use signing::authenticode::{self, DigestAlgorithm, SignError};
use signing::efivar::Guid as EfiGuid;
use signing::keys::{self, Certificate, KeyError, KeyPair, Purpose, Signer};
use signing::pkcs11::{self, Pkcs11Error, Pkcs11Signer, Pkcs11Uri, TokenAccess, TokenFlags};
use signing::varstore::Template;

use crate::compose::inputs::{Planned, Source};
use crate::compose::manifest::{ErrorKind, Manifest, ManifestError, Payload};
use crate::disk::BOOT_PATH;
use crate::disk::{self, BlockCache, FixedTime, Window};

/// The OVMF variable-store template a build enrolls into by default (Debian's 4 MiB layout).
pub const DEFAULT_VARS_TEMPLATE: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The store Microsoft's KEK/db certificates and dbx come from by default (Debian's `ovmf`).
pub const DEFAULT_MICROSOFT_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// Why signing failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum SignCmdError {
    /// The key or certificate is unusable (mismatch, expired, not for code signing, unreadable).
    #[error(
        "{0} — give the db key and its code-signing certificate (vmseal keys new writes db.key + db.crt)"
    )]
    Key(#[from] KeyError),
    /// The PE cannot be signed (truncated, malformed, already signed by this certificate).
    #[error("{file}: {source}")]
    Pe {
        /// The file (or `IMG: BOOTX64.EFI`).
        file: String,
        /// Why.
        source: SignError,
    },
    /// A `pkcs11:` key cannot be used (the message names the URI and the fix, never the PIN).
    #[error("{0}")]
    Token(#[from] Pkcs11Error),
    /// The file is neither a PE nor a vmseal disk image.
    #[error("{0}: not a PE (no MZ) nor a GPT disk image — give NAME.efi or NAME.img")]
    Unknown(String),
    /// The image has no ESP or no `\EFI\BOOT\BOOTX64.EFI`.
    #[error("{0}: no EFI System Partition with \\EFI\\BOOT\\BOOTX64.EFI — is it a vmseal image?")]
    NoBootFile(String),
    /// The lock file is not valid JSON.
    #[error("{0}: not a vmseal lock file ({1}) — rebuild the image or move the lock file away")]
    BadLock(String, String),
    /// The variable store could not be written.
    #[error("{file}: {why}")]
    Vars {
        /// The template or keys file.
        file: String,
        /// Why.
        why: String,
    },
    /// Reading or writing failed.
    #[error("{0}: {1}")]
    Io(String, io::Error),
}

impl SignCmdError {
    /// Whether the error is about the input (exit 2) rather than the machine (exit 1).
    pub fn is_input_error(&self) -> bool {
        !matches!(self, Self::Io(..))
    }
}

fn ioe(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> SignCmdError {
    let what = what.to_string();
    move |e| SignCmdError::Io(what, e)
}

/// What a manifest's `[signing]` table resolves to.
pub struct SignPlan {
    /// The db key (a file, or a key in a PKCS#11 token) and its certificate.
    pub signer: Box<dyn Signer>,
    /// The PCR 11 policy key and banks (`signing.pcr-key`), if any.
    pub pcr: Option<PcrPlan>,
    /// What to enroll into `NAME.vars.fd`, when the table names PK and KEK (directly or
    /// through `keys`).
    pub vars: Option<VarsPlan>,
}

/// The certificates and options of a variable store.
#[derive(Debug)]
pub struct VarsPlan {
    /// PK.
    pub pk: Certificate,
    /// KEK.
    pub kek: Certificate,
    /// db.
    pub db: Certificate,
    /// SignatureOwner.
    pub owner: EfiGuid,
    /// The template store.
    pub template: PathBuf,
    /// The Secure Boot template.
    pub sb_template: Template,
    /// The store the template's Microsoft entries come from (when it takes any).
    pub microsoft_from: Option<PathBuf>,
}

/// Read an owner GUID file (`owner.guid`: one GUID, whitespace ignored).
pub fn read_owner(path: &Path) -> Result<EfiGuid, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    EfiGuid::parse(text.trim()).map_err(|e| e.to_string())
}

/// What `.pcrpkey` and `.pcrsig` are made from.
pub struct PcrPlan {
    /// The key that signs (a file or a token key).
    pub key: Box<dyn keys::RawKey>,
    /// The banks to sign for.
    pub banks: Vec<policies::tcg::HashAlg>,
    /// The `.pcrpkey` contents: the key's public half, PEM.
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for PcrPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcrPlan")
            .field("banks", &self.banks)
            .finish()
    }
}

impl std::fmt::Debug for SignPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignPlan")
            .field("cert", &self.signer.certificate().subject())
            .field("vars", &self.vars)
            .finish()
    }
}

/// Where a db private key is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// A PEM/DER key file.
    File(PathBuf),
    /// A key in a PKCS#11 token.
    Token(Box<Pkcs11Uri>),
}

impl KeyRef {
    /// `text` as written: a `pkcs11:` URI, else a path (resolved by `resolve_path`).
    pub fn parse(
        text: &str,
        resolve_path: impl FnOnce(&str) -> PathBuf,
    ) -> Result<Self, Pkcs11Error> {
        if pkcs11::is_uri(text) {
            Pkcs11Uri::parse(text).map(|u| Self::Token(Box::new(u)))
        } else {
            Ok(Self::File(resolve_path(text)))
        }
    }
}

/// The file `vmseal keys new --pkcs11` writes next to the certificates: the URI of a key.
pub fn uri_file(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}.uri"))
}

/// Read a `STEM.uri` file.
pub fn read_uri_file(path: &Path) -> Result<Pkcs11Uri, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    Pkcs11Uri::parse(text.trim()).map_err(|e| e.to_string())
}

/// Load a raw signing key (no certificate: a PCR policy key): a PEM/DER file or a token key.
pub fn load_raw_key(
    key: &KeyRef,
    flags: &TokenFlags,
) -> Result<Box<dyn keys::RawKey>, SignCmdError> {
    match key {
        KeyRef::File(path) => Ok(Box::new(keys::load_key(path)?)),
        KeyRef::Token(uri) => {
            let access = TokenAccess::resolve(uri, flags)?;
            Ok(Box::new(pkcs11::OwnedTokenKey::open(uri, &access)?))
        }
    }
}

/// Load a code-signing signer: `cert` checked (valid now by the wall clock, code signing),
/// the key a file (matched against the certificate) or a token key (the same check, in the
/// token, after logging in with the PIN `flags`/the environment give).
pub fn load_signer(
    key: &KeyRef,
    cert: &Path,
    flags: &TokenFlags,
) -> Result<Box<dyn Signer>, SignCmdError> {
    load_signer_for(key, cert, Purpose::CodeSigning, flags)
}

/// [`load_signer`] for any purpose (a KEK signing variable updates: [`Purpose::Variables`]).
pub fn load_signer_for(
    key: &KeyRef,
    cert: &Path,
    purpose: Purpose,
    flags: &TokenFlags,
) -> Result<Box<dyn Signer>, SignCmdError> {
    let signer: Box<dyn Signer> = match key {
        KeyRef::File(path) => Box::new(KeyPair::load(path, cert, purpose, SystemTime::now())?),
        KeyRef::Token(uri) => {
            let c = keys::load_cert(cert)?;
            c.check_time(SystemTime::now())?;
            c.check_usage(purpose)?;
            let access = TokenAccess::resolve(uri, flags)?;
            Box::new(Pkcs11Signer::open(uri, &access, c)?)
        }
    };
    // Accepted, with the risk named: a certificate without keyUsage / extendedKeyUsage.
    for w in signer.certificate().usage_warnings(purpose) {
        eprintln!("warning: {}: {w}", cert.display());
    }
    Ok(signer)
}

/// Resolve `[signing]` of `m` (`None` when there is no table): load and check the db key pair
/// (matching, valid now by the wall clock, code signing) and the PK/KEK certificates. A key in
/// a PKCS#11 token is opened with the module and PIN from `flags` and the environment.
pub fn resolve(m: &Manifest, flags: &TokenFlags) -> Result<Option<SignPlan>, ManifestError> {
    let Some(s) = &m.signing else {
        return Ok(None);
    };
    let keys_dir = s.keys.as_deref().map(|k| m.resolve(k));
    let pick = |field: &str, given: &Option<String>, default: &str| -> Option<(String, PathBuf)> {
        match (given, &keys_dir) {
            (Some(p), _) => Some((format!("signing.{field}"), m.resolve(p))),
            (None, Some(d)) => Some(("signing.keys".into(), d.join(default))),
            (None, None) => None,
        }
    };
    let fail = |field: &str, problem: String, fix: &str| {
        m.error(ErrorKind::Invalid, field, problem, fix.into())
    };
    // The key: `signing.key` (a path or a pkcs11: URI), else KEYS/db.key, else the URI in
    // KEYS/db.uri (`vmseal keys new --pkcs11`).
    let key_ref = match (&s.key, &keys_dir) {
        (Some(k), _) => Some((
            "signing.key".to_string(),
            KeyRef::parse(k, |p| m.resolve(p)).map_err(|e| {
                fail(
                    "signing.key",
                    e.to_string(),
                    "give a key file path or an RFC 7512 pkcs11: URI",
                )
            })?,
        )),
        (None, Some(d)) if !d.join("db.key").exists() && uri_file(d, "db").is_file() => {
            let p = uri_file(d, "db");
            let uri = read_uri_file(&p).map_err(|e| {
                fail(
                    "signing.keys",
                    format!("{}: {e}", p.display()),
                    "vmseal keys new --pkcs11 writes db.uri; or set signing.key",
                )
            })?;
            Some(("signing.keys".to_string(), KeyRef::Token(Box::new(uri))))
        }
        (None, Some(d)) => Some(("signing.keys".to_string(), KeyRef::File(d.join("db.key")))),
        (None, None) => None,
    };
    let (Some((kf, key)), Some((cf, cert))) = (key_ref, pick("cert", &s.cert, "db.crt")) else {
        return Err(fail(
            "signing",
            "names no db key and certificate".into(),
            "add `keys = \"DIR\"` (from vmseal keys new) or `key` and `cert`",
        ));
    };
    let files = [
        match &key {
            KeyRef::File(p) => Some((&kf, p)),
            KeyRef::Token(_) => None,
        },
        Some((&cf, &cert)),
    ];
    for (f, p) in files.into_iter().flatten() {
        if !p.is_file() {
            return Err(m.error(
                ErrorKind::NotFound,
                f,
                format!("{} does not exist", p.display()),
                "run `vmseal keys new --out DIR` or fix the path".into(),
            ));
        }
    }
    let signer = load_signer(&key, &cert, flags).map_err(|e| match e {
        SignCmdError::Token(t) => {
            let (problem, fix) = t.parts();
            fail(&kf, problem, &fix)
        }
        SignCmdError::Key(k) => fail(
            &cf,
            k.to_string(),
            "pair db.key with the db.crt made with it",
        ),
        other => fail(
            &cf,
            other.to_string(),
            "pair db.key with the db.crt made with it",
        ),
    })?;
    let pk = pick("pk", &s.pk, "PK.crt");
    let kek = pick("kek", &s.kek, "KEK.crt");
    let vars = match (pk, kek) {
        (Some((pf, pk)), Some((kf, kek))) => {
            let load = |f: &str, p: &Path| {
                keys::load_cert(p)
                    .map_err(|e| fail(f, e.to_string(), "give a PEM or DER certificate"))
            };
            let pk = load(&pf, &pk)?;
            let kek = load(&kf, &kek)?;
            let owner = match (&s.owner, &keys_dir) {
                (Some(g), _) => EfiGuid::parse(g)
                    .map_err(|e| fail("signing.owner", e.to_string(), "give a GUID"))?,
                (None, Some(d)) => read_owner(&d.join("owner.guid")).map_err(|e| {
                    fail(
                        "signing.keys",
                        format!("{}: {e}", d.join("owner.guid").display()),
                        "vmseal keys new writes owner.guid; or set signing.owner",
                    )
                })?,
                (None, None) => {
                    return Err(fail(
                        "signing.owner",
                        "is needed to enroll PK/KEK/db".into(),
                        "set `owner = \"GUID\"` or `keys = \"DIR\"`",
                    ));
                }
            };
            let template = s
                .vars_template
                .as_deref()
                .map_or_else(|| PathBuf::from(DEFAULT_VARS_TEMPLATE), |t| m.resolve(t));
            if !template.is_file() {
                return Err(m.error(
                    ErrorKind::NotFound,
                    "signing.vars-template",
                    format!("{} does not exist", template.display()),
                    "install ovmf or set vars-template to an OVMF_VARS*.fd".into(),
                ));
            }
            let sb_template = match &s.template {
                None => Template::OrgOnly,
                Some(t) => Template::parse(t).ok_or_else(|| {
                    fail(
                        "signing.template",
                        format!("{t:?} is not a Secure Boot template"),
                        "use org-only, org+microsoft-uefi-ca or org+microsoft-windows",
                    )
                })?,
            };
            let microsoft_from = if sb_template.needs_microsoft() {
                let p = s
                    .microsoft_vars
                    .as_deref()
                    .map_or_else(|| PathBuf::from(DEFAULT_MICROSOFT_VARS), |t| m.resolve(t));
                if !p.is_file() {
                    return Err(m.error(
                        ErrorKind::NotFound,
                        if s.microsoft_vars.is_some() {
                            "signing.microsoft-vars"
                        } else {
                            "signing.template"
                        },
                        format!("{} does not exist", p.display()),
                        "install ovmf (it ships OVMF_VARS_4M.ms.fd) or set microsoft-vars".into(),
                    ));
                }
                Some(p)
            } else {
                None
            };
            Some(VarsPlan {
                pk,
                kek,
                db: signer.certificate().clone(),
                owner,
                template,
                sb_template,
                microsoft_from,
            })
        }
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(fail(
                "signing",
                "names only one of pk and kek".into(),
                "name both (or `keys`) to get NAME.vars.fd, or neither",
            ));
        }
    };
    let pcr = match &s.pcr_key {
        None => None,
        Some(k) => {
            let f = "signing.pcr-key";
            let key_ref = KeyRef::parse(k, |p| m.resolve(p)).map_err(|e| {
                fail(
                    f,
                    e.to_string(),
                    "give an RSA key file path or a pkcs11: URI",
                )
            })?;
            if let KeyRef::File(p) = &key_ref
                && !p.is_file()
            {
                return Err(m.error(
                    ErrorKind::NotFound,
                    f,
                    format!("{} does not exist", p.display()),
                    "make one: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out pcr.key".into(),
                ));
            }
            let key = load_raw_key(&key_ref, flags).map_err(|e| match e {
                SignCmdError::Token(t) => {
                    let (problem, fix) = t.parts();
                    fail(f, problem, &fix)
                }
                other => fail(
                    f,
                    other.to_string(),
                    "give an unencrypted RSA private key (PEM)",
                ),
            })?;
            let banks = match &s.pcr_banks {
                None => vec![policies::tcg::HashAlg::SHA256],
                Some(list) => {
                    let mut banks = Vec::new();
                    for b in list {
                        let alg = policies::tcg::HashAlg::from_name(b)
                            .filter(|a| policies::tcg::HashAlg::COMPUTED.contains(a))
                            .ok_or_else(|| {
                                fail(
                                    "signing.pcr-banks",
                                    format!("{b:?} is not a bank vmseal signs for"),
                                    "use sha1, sha256, sha384 or sha512",
                                )
                            })?;
                        banks.push(alg);
                    }
                    banks.sort();
                    banks.dedup();
                    if banks.is_empty() {
                        return Err(fail(
                            "signing.pcr-banks",
                            "is empty".into(),
                            "name at least one bank, e.g. [\"sha256\"]",
                        ));
                    }
                    banks
                }
            };
            let pem = crate::sign::pcr_policy::public_key_pem(key.as_ref())
                .map_err(|e| fail(f, e.to_string(), "give an RSA private key"))?
                .into_bytes();
            Some(PcrPlan { key, banks, pem })
        }
    };
    Ok(Some(SignPlan { signer, vars, pcr }))
}

/// Sign the `.linux` kernel of `plan` (if any) with `signer`: its source becomes the signed
/// bytes. Returns the lock-file record of what was signed.
pub fn sign_kernel(
    m: &Manifest,
    plan: &mut [Planned],
    signer: &dyn Signer,
) -> Result<Option<Value>, SignCmdError> {
    let Payload::Kernel(path) = &m.guest.payload else {
        return Ok(None);
    };
    let Some(p) = plan
        .iter_mut()
        .find(|p| p.name == policies::sections::LINUX)
    else {
        return Ok(None);
    };
    let Source::File { abs, .. } = &p.source else {
        return Ok(None);
    };
    let bytes = std::fs::read(abs).map_err(ioe(path))?;
    let signed = authenticode::sign(&bytes, signer).map_err(|source| SignCmdError::Pe {
        file: format!("{}: guest.kernel: {path}", m.file),
        source,
    })?;
    let rec = json!({
        "path": path,
        "sha256": hex::encode(sha2::Sha256::digest(&bytes)),
        "signed_sha256": hex::encode(sha2::Sha256::digest(&signed)),
    });
    p.source = Source::Inline(signed);
    Ok(Some(rec))
}

/// Where the ESP of an image is: `(start, len)` in bytes.
pub fn esp_range(img: &mut File, name: &str) -> Result<(u64, u64), SignCmdError> {
    let gpt = disk::read_gpt(img).map_err(|_| SignCmdError::Unknown(name.into()))?;
    let p = gpt
        .partitions
        .iter()
        .find(|p| p.type_guid == disk::ESP_TYPE)
        .ok_or_else(|| SignCmdError::NoBootFile(name.into()))?;
    Ok((
        p.first_lba * disk::SECTOR,
        (p.last_lba + 1 - p.first_lba) * disk::SECTOR,
    ))
}

/// The bytes of `\EFI\BOOT\BOOTX64.EFI` in the image `path`.
pub fn read_boot_file(path: &Path) -> Result<Vec<u8>, SignCmdError> {
    let name = path.display().to_string();
    let mut f = File::open(path).map_err(ioe(&name))?;
    let (start, len) = esp_range(&mut f, &name)?;
    let fs = fatfs::FileSystem::new(
        Window::new(
            crate::disk::ReadOnly::open(path).map_err(ioe(&name))?,
            start,
            len,
        ),
        fatfs::FsOptions::new().update_accessed_date(false),
    )
    .map_err(|_| SignCmdError::NoBootFile(name.clone()))?;
    let mut b = fs
        .root_dir()
        .open_file(BOOT_PATH)
        .map_err(|_| SignCmdError::NoBootFile(name.clone()))?;
    let mut out = Vec::new();
    b.read_to_end(&mut out)
        .map_err(ioe(format!("{name}: BOOTX64.EFI")))?;
    Ok(out)
}

/// Overwrite `\EFI\BOOT\BOOTX64.EFI` in the ESP `(start, len)` of `img` with `bytes`, in
/// place (the file's clusters are reused and extended; the modification time is `epoch`).
pub fn write_boot_file(
    img: &File,
    (start, len): (u64, u64),
    bytes: &[u8],
    epoch: u64,
) -> io::Result<()> {
    // fatfs wants a `&'static` time provider: one small value leaked per call.
    let time: &'static FixedTime = Box::leak(Box::new(FixedTime::from_epoch(epoch)));
    let mut esp = BlockCache::new(Window::new(img, start, len));
    {
        let fs = fatfs::FileSystem::new(
            &mut esp,
            fatfs::FsOptions::new()
                .time_provider(time)
                .update_accessed_date(false),
        )?;
        {
            let mut f = fs.root_dir().open_file(BOOT_PATH)?;
            f.write_all(bytes)?;
            f.truncate()?;
            f.flush()?;
        }
        fs.stats()?;
        fs.unmount()?;
    }
    esp.flush()
}

/// What signing an appliance PE did, for the lock file.
pub fn record(unsigned: &[u8], signed: &[u8], cert: &Certificate) -> Value {
    let auth = authenticode::digest(signed, DigestAlgorithm::Sha256).unwrap_or_default();
    record_digests(
        &sha2::Sha256::digest(unsigned),
        &sha2::Sha256::digest(signed),
        &auth,
        cert,
    )
}

/// [`record`] from the digests: SHA-256 of the unsigned and the signed PE, and the SHA-256
/// Authenticode digest (what `vmseal build` took while the PE streamed by).
pub fn record_digests(
    unsigned_sha256: &[u8],
    signed_sha256: &[u8],
    authenticode_sha256: &[u8],
    cert: &Certificate,
) -> Value {
    json!({
        "cert_subject": cert.subject(),
        "cert_sha256": hex::encode(cert.sha256()),
        "unsigned_sha256": hex::encode(unsigned_sha256),
        "signed_sha256": hex::encode(signed_sha256),
        "authenticode_sha256": hex::encode(authenticode_sha256),
        "boot_file": BOOT_PATH,
    })
}

/// The size of the certificate table that [`certificate_table`] makes with `signer`: one
/// `WIN_CERTIFICATE` entry padded to 8 bytes. Known before the image is hashed, so that
/// `vmseal build` lays out (and reserves clusters for) the signed PE up front: the PKCS#7
/// blob's length does not depend on the digest it signs (the digest and the RSA signature
/// have fixed sizes, every DER length around them follows), so a signature over a dummy
/// digest has the length of the real one. With a token key this is one more signing
/// operation.
pub fn table_size(signer: &dyn Signer) -> Result<u32, SignCmdError> {
    let blob = authenticode::authenticode_pkcs7(&[0u8; 32], signer).map_err(|source| {
        SignCmdError::Pe {
            file: "the db key".into(),
            source,
        }
    })?;
    u32::try_from((8 + blob.len() as u64).div_ceil(8) * 8).map_err(|_| {
        SignCmdError::Io(
            "signing".into(),
            io::Error::other("the signature is larger than 4 GiB"),
        )
    })
}

/// The certificate table that signs a PE whose SHA-256 Authenticode digest is `digest`:
/// exactly what `signing::authenticode::sign` appends to an unsigned image (one
/// `WIN_CERTIFICATE`, revision 0x0200, type `WIN_CERT_TYPE_PKCS_SIGNED_DATA`, `dwLength` = 8 +
/// the PKCS#7 length, zero-padded to 8 bytes). Fails unless it is `size` bytes (what
/// [`table_size`] announced and the headers already say).
pub fn certificate_table(
    digest: &[u8],
    signer: &dyn Signer,
    size: u32,
) -> Result<Vec<u8>, SignCmdError> {
    let pe_error = |source| SignCmdError::Pe {
        file: "the appliance PE".into(),
        source,
    };
    let blob = authenticode::authenticode_pkcs7(digest, signer).map_err(pe_error)?;
    let length = u32::try_from(8 + blob.len())
        .map_err(|_| pe_error(SignError::Unsupported("signature too large".into())))?;
    let mut table = Vec::with_capacity(size as usize);
    table.extend_from_slice(&length.to_le_bytes());
    table.extend_from_slice(&authenticode::WIN_CERT_REVISION_2_0.to_le_bytes());
    table.extend_from_slice(&authenticode::WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
    table.extend_from_slice(&blob);
    table.resize(table.len().div_ceil(8) * 8, 0);
    if table.len() != size as usize {
        return Err(pe_error(SignError::Unsupported(format!(
            "the signature took {} bytes, not the {size} reserved for it (the key's signatures \
             vary in length)",
            table.len()
        ))));
    }
    Ok(table)
}

/// Enroll `v` into its template (`signing::varstore::enroll`); timestamps zero. Returns the
/// store and, for a template with Microsoft entries, the lock-file record of what it took
/// (the source store's SHA-256, each certificate's subject and SHA-256, the dbx's SHA-256).
pub fn vars_bytes(v: &VarsPlan) -> Result<(Vec<u8>, Option<Value>), SignCmdError> {
    let file = v.template.display().to_string();
    let template = std::fs::read(&v.template).map_err(ioe(&file))?;
    let ms = match &v.microsoft_from {
        Some(p) => Some((p, std::fs::read(p).map_err(ioe(p.display()))?)),
        None => None,
    };
    let bytes = signing::varstore::enroll(
        &template,
        signing::varstore::OrgCerts {
            pk: &v.pk,
            kek: &v.kek,
            db: &v.db,
        },
        &signing::varstore::EnrollOptions {
            owner: v.owner,
            template: v.sb_template,
            microsoft_from: ms.as_ref().map(|(_, b)| b.as_slice()),
            ..Default::default()
        },
    )
    .map_err(|e| SignCmdError::Vars {
        file: ms
            .as_ref()
            .map_or_else(|| file.clone(), |(p, _)| p.display().to_string()),
        why: format!(
            "{e} — give OVMF_VARS*.fd templates (and an OVMF_VARS*.ms.fd for Microsoft's entries)"
        ),
    })?;
    let record = match &ms {
        Some((p, b)) => Some(template_record(v.sb_template, p, b)?),
        None => None,
    };
    Ok((bytes, record))
}

/// The lock-file record of a template's Microsoft entries.
pub fn template_record(t: Template, source: &Path, ms: &[u8]) -> Result<Value, SignCmdError> {
    let e = signing::varstore::template_entries(ms, t).map_err(|e| SignCmdError::Vars {
        file: source.display().to_string(),
        why: e.to_string(),
    })?;
    let cert = |der: &Vec<u8>| {
        json!({
            "subject": Certificate::from_der(der).map(|c| c.subject()).unwrap_or_default(),
            "sha256": hex::encode(sha2::Sha256::digest(der)),
        })
    };
    Ok(json!({
        "name": t.name(),
        "microsoft_vars": {
            "file": source.display().to_string(),
            "sha256": hex::encode(sha2::Sha256::digest(ms)),
        },
        "kek": e.kek.iter().map(cert).collect::<Vec<_>>(),
        "db": e.db.iter().map(cert).collect::<Vec<_>>(),
        "dbx_sha256": e.dbx.as_ref().map(|d| hex::encode(sha2::Sha256::digest(d))),
    }))
}

/// `vmseal sign` options.
#[derive(Clone, Debug)]
pub struct SignOptions {
    /// `NAME.efi` or `NAME.img`.
    pub input: PathBuf,
    /// The db private key: a file, or a key in a PKCS#11 token.
    pub key: KeyRef,
    /// Its certificate.
    pub cert: PathBuf,
    /// The module and PIN file for a token key.
    pub pkcs11: TokenFlags,
    /// Where to write; default: replace the input.
    pub out: Option<PathBuf>,
    /// The org's keys directory (`PK.crt`, `KEK.crt`, `owner.guid`): signing an image in
    /// place then also writes `NAME.vars.fd` (the db certificate is `cert`) and predicts
    /// `NAME.pcrs.json` for it.
    pub keys: Option<PathBuf>,
}

/// What `vmseal sign` wrote.
#[derive(Clone, Debug)]
pub struct SignOutcome {
    /// The signed file.
    pub out: PathBuf,
    /// The lock file updated, if there was one.
    pub lock: Option<PathBuf>,
    /// Also written when an image is signed in place: `NAME.efi` (the same signed PE),
    /// `NAME.vars.fd` and `NAME.pcrs.json` (with `keys`).
    pub also: Vec<PathBuf>,
}

/// A temporary file in `dest`'s directory, to be renamed onto `dest` by [`persist`].
pub(crate) fn temp_next_to(dest: &Path) -> Result<tempfile::NamedTempFile, SignCmdError> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(".vmseal-sign.")
        .tempfile_in(dir)
        .map_err(ioe(format!(
            "creating a temporary file in {}",
            dir.display()
        )))
}

/// Make `t` mode 0644 (public outputs) and rename it onto `dest`.
pub(crate) fn persist(t: tempfile::NamedTempFile, dest: &Path) -> Result<(), SignCmdError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        t.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(ioe(dest.display()))?;
    }
    t.persist(dest)
        .map_err(|e| SignCmdError::Io(format!("renaming to {}", dest.display()), e.error))?;
    Ok(())
}

/// The lock file next to `input`, if there is one (a malformed one is an error).
fn read_lock(input: &Path) -> Result<Option<Value>, SignCmdError> {
    let in_lock = lock_path(input);
    match std::fs::read(&in_lock) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| {
            SignCmdError::BadLock(in_lock.display().to_string(), e.to_string())
        })?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ioe(in_lock.display())(e)),
    }
}

/// Point the lock's `outputs` entry of `input` at `dest` with its new size and SHA-256.
fn update_lock(lock: &mut Value, input: &Path, dest: &Path, size: u64, sha256: String) {
    let name = |p: &Path| {
        p.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let (from, to) = (name(input), name(dest));
    if let Some(outs) = lock["outputs"].as_array_mut() {
        for o in outs.iter_mut() {
            if o["file"].as_str() == Some(from.as_str()) {
                o["file"] = to.clone().into();
                o["size"] = size.into();
                o["sha256"] = sha256.clone().into();
            }
        }
    }
}

/// The updated lock, written to a temporary file next to `dest`'s lock path.
fn lock_temp(
    lock: &Value,
    input: &Path,
    dest: &Path,
) -> Result<(tempfile::NamedTempFile, PathBuf), SignCmdError> {
    let mut text = serde_json::to_string_pretty(lock).map_err(|e| {
        SignCmdError::BadLock(lock_path(input).display().to_string(), e.to_string())
    })?;
    text.push('\n');
    let out_lock = lock_path(dest);
    let mut lt = temp_next_to(&out_lock)?;
    lt.write_all(text.as_bytes())
        .map_err(ioe(out_lock.display()))?;
    Ok((lt, out_lock))
}

/// `NAME.lock.json` next to `image` (same stem).
pub fn lock_path(image: &Path) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    image.with_file_name(format!("{stem}.lock.json"))
}

/// `vmseal sign`: check the key pair, sign, write. Nothing is written unless everything
/// succeeded.
pub fn sign(opts: &SignOptions) -> Result<SignOutcome, SignCmdError> {
    let signer = load_signer(&opts.key, &opts.cert, &opts.pkcs11)?;
    let signer = signer.as_ref();
    let name = opts.input.display().to_string();
    let mut f = File::open(&opts.input).map_err(ioe(&name))?;
    let mut head = [0u8; 2];
    let is_pe = f.read_exact(&mut head).is_ok() && &head == b"MZ";
    let dest = opts.out.clone().unwrap_or_else(|| opts.input.clone());
    if is_pe {
        let mut pe = Vec::new();
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.read_to_end(&mut pe))
            .map_err(ioe(&name))?;
        let signed = authenticode::sign(&pe, signer).map_err(|source| SignCmdError::Pe {
            file: name.clone(),
            source,
        })?;
        // The lock file next to it, when there is one, records the signed bytes.
        let mut lock = read_lock(&opts.input)?;
        let lock_tmp = match lock.as_mut() {
            Some(l) => {
                let sha = hex::encode(sha2::Sha256::digest(&signed));
                update_lock(l, &opts.input, &dest, signed.len() as u64, sha);
                l["signing"] = record(&pe, &signed, signer.certificate());
                Some(lock_temp(l, &opts.input, &dest)?)
            }
            None => None,
        };
        let mut t = temp_next_to(&dest)?;
        t.write_all(&signed).map_err(ioe(dest.display()))?;
        persist(t, &dest)?;
        let lock_out = match lock_tmp {
            Some((lt, p)) => {
                persist(lt, &p)?;
                Some(p)
            }
            None => None,
        };
        return Ok(SignOutcome {
            out: dest,
            lock: lock_out,
            also: Vec::new(),
        });
    }
    let esp = esp_range(&mut f, &name)?;
    let pe = read_boot_file(&opts.input)?;
    let signed = authenticode::sign(&pe, signer).map_err(|source| SignCmdError::Pe {
        file: format!("{name}: BOOTX64.EFI"),
        source,
    })?;
    // The lock file (read and checked before anything is written).
    let mut lock = read_lock(&opts.input)?;
    let epoch = match lock.as_ref().and_then(|l| l["source_date_epoch"].as_u64()) {
        Some(e) => e,
        None => crate::compose::inputs::source_date_epoch().unwrap_or(0),
    };
    let mut t = temp_next_to(&dest)?;
    {
        let mut src = File::open(&opts.input).map_err(ioe(&name))?;
        io::copy(&mut src, t.as_file_mut()).map_err(ioe(dest.display()))?;
    }
    write_boot_file(t.as_file(), esp, &signed, epoch)
        .map_err(ioe(format!("{}: ESP", dest.display())))?;
    let mut lock_out = None;
    let lock_tmp = if let Some(l) = lock.as_mut() {
        let img_bytes_sha = {
            let b = std::fs::read(t.path()).map_err(ioe(dest.display()))?;
            hex::encode(sha2::Sha256::digest(&b))
        };
        let img_len = t.as_file().metadata().map_err(ioe(dest.display()))?.len();
        update_lock(l, &opts.input, &dest, img_len, img_bytes_sha);
        l["signing"] = record(&pe, &signed, signer.certificate());
        let (lt, out_lock) = lock_temp(l, &opts.input, &dest)?;
        lock_out = Some(out_lock.clone());
        Some((lt, out_lock))
    } else {
        None
    };
    // Signing in place: NAME.efi next to the image, when it is the same unsigned PE, gets the
    // same signed bytes; with `keys`, the store the signed image boots with.
    let in_place = dest == opts.input;
    let mut also: Vec<(tempfile::NamedTempFile, PathBuf)> = Vec::new();
    let efi = opts.input.with_extension("efi");
    if in_place && std::fs::read(&efi).is_ok_and(|b| b == pe) {
        let mut et = temp_next_to(&efi)?;
        et.write_all(&signed).map_err(ioe(efi.display()))?;
        if let Some((lt, _)) = &lock_tmp {
            // The lock about to be written also records the .efi's new digest.
            let mut l: Value = serde_json::from_slice(
                &std::fs::read(lt.path()).map_err(ioe(lt.path().display()))?,
            )
            .map_err(|e| SignCmdError::BadLock(lt.path().display().to_string(), e.to_string()))?;
            let sha = hex::encode(sha2::Sha256::digest(&signed));
            update_lock(&mut l, &efi, &efi, signed.len() as u64, sha);
            let mut text = serde_json::to_string_pretty(&l).map_err(|e| {
                SignCmdError::BadLock(lt.path().display().to_string(), e.to_string())
            })?;
            text.push('\n');
            std::fs::write(lt.path(), text).map_err(ioe(lt.path().display()))?;
        }
        also.push((et, efi));
    }
    let vars_path = opts.input.with_extension("vars.fd");
    let store = match (&opts.keys, in_place) {
        (Some(dir), true) => {
            let cert = |n: &str| {
                keys::load_cert(&dir.join(n)).map_err(|e| SignCmdError::Vars {
                    file: dir.join(n).display().to_string(),
                    why: format!("{e} — give the keys directory of `vmseal keys new` (--keys)"),
                })
            };
            let owner = read_owner(&dir.join("owner.guid")).map_err(|why| SignCmdError::Vars {
                file: dir.join("owner.guid").display().to_string(),
                why,
            })?;
            let (bytes, _) = vars_bytes(&VarsPlan {
                pk: cert("PK.crt")?,
                kek: cert("KEK.crt")?,
                db: signer.certificate().clone(),
                owner,
                template: PathBuf::from(DEFAULT_VARS_TEMPLATE),
                sb_template: Template::OrgOnly,
                microsoft_from: None,
            })?;
            let mut vt = temp_next_to(&vars_path)?;
            vt.write_all(&bytes).map_err(ioe(vars_path.display()))?;
            also.push((vt, vars_path.clone()));
            true
        }
        _ => false,
    };
    persist(t, &dest)?;
    if let Some((lt, p)) = lock_tmp {
        persist(lt, &p)?;
    }
    let mut written = Vec::new();
    for (t, p) in also {
        persist(t, &p)?;
        written.push(p);
    }
    // The prediction of the signed image with its store (Secure Boot changes PCR 7).
    if store {
        let mut popts = crate::measure::predict::PredictOptions::new(&dest);
        popts.vars = Some(vars_path);
        let p = crate::measure::predict::predict(&popts).map_err(|e| SignCmdError::Vars {
            file: dest.display().to_string(),
            why: format!("predicting the signed image: {e}"),
        })?;
        let pcrs = opts.input.with_extension("pcrs.json");
        let mut pt = temp_next_to(&pcrs)?;
        pt.write_all(p.to_file().to_text().as_bytes())
            .map_err(ioe(pcrs.display()))?;
        persist(pt, &pcrs)?;
        written.push(pcrs);
    }
    Ok(SignOutcome {
        out: dest,
        lock: lock_out,
        also: written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::pe::{Composed, PeChecksum, Piece, tests::tiny_stub, zeros};

    /// Streaming a PE whose headers already point at the table, appending
    /// [`certificate_table`] over the streamed digest and patching the CheckSum gives byte for
    /// byte what `signing::authenticode::sign` makes of the unsigned PE (what `vmseal sign`
    /// does), and [`table_size`] announced the table's size.
    #[test]
    fn streamed_signing_equals_signing_the_unsigned_pe() {
        let h = keys::generate_hierarchy(&keys::HierarchyParams::new("Stream", 0)).unwrap();
        let signer: &dyn Signer = &h.db;
        let stub = tiny_stub();
        let data: Vec<u8> = (0..0x1001u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let bytes = |c: &Composed<'_>| {
            let mut out = Vec::new();
            for p in c.pieces() {
                match p {
                    Piece::Bytes(b) => out.extend_from_slice(b),
                    Piece::Section(_) => out.extend_from_slice(&data),
                    Piece::Zeros(n) => out.extend_from_slice(zeros(n)),
                }
            }
            out
        };
        let checksum = |pe: &mut Vec<u8>, at: u64| {
            let mut sum = PeChecksum::default();
            sum.update(pe);
            let at = at as usize;
            pe[at..at + 4].copy_from_slice(&sum.finish().to_le_bytes());
        };
        let mut c = Composed::new(&stub, &[(".guest".into(), data.len() as u64)], 0).unwrap();
        let mut unsigned = bytes(&c);
        checksum(&mut unsigned, c.checksum_offset());
        let want = authenticode::sign(&unsigned, signer).unwrap();

        let size = table_size(signer).unwrap();
        let at = c.reserve_certificate_table(size).unwrap();
        let mut streamed = bytes(&c);
        streamed.resize(at as usize, 0);
        // The digest skips the table: hash the file with the table still zeros.
        let mut placeholder = streamed.clone();
        placeholder.resize(placeholder.len() + size as usize, 0);
        let digest = authenticode::digest(placeholder.as_slice(), DigestAlgorithm::Sha256).unwrap();
        streamed.extend_from_slice(&certificate_table(&digest, signer, size).unwrap());
        checksum(&mut streamed, c.checksum_offset());
        assert!(streamed == want, "the streamed signed PE differs");
        assert!(certificate_table(&digest, signer, size + 8).is_err());
    }
}
