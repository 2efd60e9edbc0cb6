//! Org Secure Boot keys: an RSA key + X.509 v3 certificate for each of PK, KEK and db, and the
//! [`Signer`] trait that Authenticode and authenticated variables sign through.
//!
//! # The hierarchy
//!
//! [`generate_hierarchy`] makes a self-signed **PK**, a **KEK** certified by PK and a **db**
//! certified by KEK. UEFI does not need the chain (EDK2 verifies against any db certificate,
//! partial chains allowed, `shared/reference/measured-boot.md` §B.2), and each key is enrolled in
//! its own variable; chaining them anyway lets `openssl verify -CAfile pk.crt -untrusted kek.crt
//! db.crt` check that the three belong together, and lets an operator keep PK offline while KEK
//! rotates db. PK and KEK are CAs (`basicConstraints` CA:TRUE, critical; `keyUsage`
//! keyCertSign + cRLSign + digitalSignature); db is an end-entity code-signing certificate
//! (CA:FALSE, `keyUsage` digitalSignature, `extendedKeyUsage` codeSigning). All carry subject
//! and authority key identifiers (RFC 5280 §4.2.1.2 method 1: SHA-1 of the public key bits).
//!
//! Certificates are deterministic given the keys and the validity period: the serial number is
//! derived from the subject's public key, so the same keys give the same certificate bytes.
//!
//! # Secrets
//!
//! A [`PrivateKey`] never prints: its `Debug` is redacted, and no error of this module carries
//! key bytes. [`PrivateKey::write_pem`] creates the file with mode 0600 and refuses to overwrite.
//! Code that signs takes a `&dyn Signer`, so an HSM-backed signer can replace the file key.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{OctetString, Utf8StringRef};
use der::{Decode, DecodePem, Encode, EncodePem, Sequence};
use pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::Digest as _;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

/// Why a key or certificate operation failed. Never carries private key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The private key file exists; vmseal never overwrites a key.
    #[error("{0}: already exists; vmseal never overwrites a private key (move it away first)")]
    Exists(PathBuf),
    /// The file is not a PEM/DER private key vmseal can read.
    #[error("{path}: not an RSA private key in PKCS#8 or PKCS#1 PEM ({why})")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What the decoder said (no key bytes).
        why: String,
    },
    /// The file is not a PEM or DER X.509 certificate.
    #[error("{path}: not an X.509 certificate in PEM or DER ({why})")]
    BadCert {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        why: String,
    },
    /// The certificate's public key is not RSA or cannot be decoded.
    #[error("certificate {subject}: public key is not a usable RSA key ({why})")]
    BadPublicKey {
        /// The certificate subject.
        subject: String,
        /// Why.
        why: String,
    },
    /// The key does not belong to the certificate.
    #[error(
        "the private key does not match certificate {subject}: their public keys differ \
         (pair the .key with the .crt generated with it)"
    )]
    Mismatch {
        /// The certificate subject.
        subject: String,
    },
    /// The certificate is outside its validity period.
    #[error("certificate {subject} is not valid at this time: valid {not_before} to {not_after}")]
    NotValidNow {
        /// The certificate subject.
        subject: String,
        /// notBefore, RFC 3339.
        not_before: String,
        /// notAfter, RFC 3339.
        not_after: String,
    },
    /// The certificate lacks a usage the operation needs.
    #[error("certificate {subject} cannot sign {purpose}: it lacks {missing}")]
    Usage {
        /// The certificate subject.
        subject: String,
        /// What it was to sign.
        purpose: &'static str,
        /// The missing extension or bit.
        missing: &'static str,
    },
    /// An RSA operation failed (key generation, signing).
    #[error("RSA: {0}")]
    Rsa(String),
    /// Encoding a certificate or key failed.
    #[error("encoding: {0}")]
    Encode(String),
    /// An invalid parameter.
    #[error("{0}")]
    Param(String),
}

fn enc<E: fmt::Display>(e: E) -> KeyError {
    KeyError::Encode(e.to_string())
}

/// RSA modulus sizes vmseal generates. A closed choice (it is vmseal's, not read from firmware).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyBits {
    /// 2048 bits: what OVMF and most firmware verify fastest; the minimum.
    Rsa2048,
    /// 3072 bits.
    Rsa3072,
    /// 4096 bits (some older firmware cannot verify PK/KEK of this size).
    Rsa4096,
}

impl KeyBits {
    /// The modulus size in bits.
    pub fn bits(self) -> usize {
        match self {
            Self::Rsa2048 => 2048,
            Self::Rsa3072 => 3072,
            Self::Rsa4096 => 4096,
        }
    }
}

impl TryFrom<usize> for KeyBits {
    type Error = KeyError;
    fn try_from(bits: usize) -> Result<Self, KeyError> {
        match bits {
            2048 => Ok(Self::Rsa2048),
            3072 => Ok(Self::Rsa3072),
            4096 => Ok(Self::Rsa4096),
            b => Err(KeyError::Param(format!(
                "RSA key size {b} is not supported (use 2048, 3072 or 4096)"
            ))),
        }
    }
}

/// An RSA private key. `Debug` is redacted; the key leaves memory only through
/// [`PrivateKey::write_pem`].
#[derive(Clone)]
pub struct PrivateKey(rsa::PrivateKey);

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(RSA-{}, <redacted>)", self.bits())
    }
}

impl PrivateKey {
    /// Generate a key with public exponent 65537 from the operating system's RNG.
    pub fn generate(bits: KeyBits) -> Result<Self, KeyError> {
        Self::generate_with_rng(bits, &mut getrandom::SysRng)
    }

    /// Generate a key from `rng` (tests pass a seeded one).
    pub fn generate_with_rng<R: rand_core::TryCryptoRng + ?Sized>(
        bits: KeyBits,
        rng: &mut R,
    ) -> Result<Self, KeyError> {
        rsa::PrivateKey::new(rng, bits.bits())
            .map(Self)
            .map_err(|e| KeyError::Rsa(e.to_string()))
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        use rsa::traits::PublicKeyParts as _;
        self.0.size() * 8
    }

    /// The public half as a DER `SubjectPublicKeyInfo`.
    pub fn public_key_der(&self) -> Result<Vec<u8>, KeyError> {
        Ok(self
            .0
            .to_public_key()
            .to_public_key_der()
            .map_err(enc)?
            .into_vec())
    }

    /// Parse a PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM, or PKCS#8 DER.
    /// `path` only names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, KeyError> {
        let bad = |why: String| KeyError::BadKey {
            path: path.to_owned(),
            why,
        };
        if let Ok(text) = std::str::from_utf8(bytes) {
            if text.contains("-----BEGIN PRIVATE KEY-----") {
                return rsa::PrivateKey::from_pkcs8_pem(text)
                    .map(Self)
                    .map_err(|e| bad(e.to_string()));
            }
            if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
                use rsa::pkcs1::DecodeRsaPrivateKey as _;
                return rsa::PrivateKey::from_pkcs1_pem(text)
                    .map(Self)
                    .map_err(|e| bad(e.to_string()));
            }
            if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                return Err(bad(
                    "encrypted keys are not supported; use an unencrypted key in a protected \
                     location, or an HSM signer"
                        .into(),
                ));
            }
        }
        rsa::PrivateKey::from_pkcs8_der(bytes)
            .map(Self)
            .map_err(|e| bad(e.to_string()))
    }

    /// Create `path` with mode 0600 (never overwriting: `create_new`), write the key as
    /// PKCS#8 PEM and fsync it. On any failure after creating the file, the partial file is
    /// removed.
    pub fn write_pem(&self, path: &Path) -> Result<(), KeyError> {
        let pem = self.0.to_pkcs8_pem(LineEnding::LF).map_err(enc)?;
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut file = match opts.open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(KeyError::Exists(path.to_owned()));
            }
            Err(e) => return Err(io(e)),
        };
        let written = file
            .write_all(pem.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(io(e));
        }
        Ok(())
    }

    /// PKCS#1 v1.5 signature with SHA-256 over `msg`.
    pub fn sign_pkcs1v15_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.0
            .pkcs1v15_sign::<sha2::Sha256>(msg)
            .map_err(|e| KeyError::Rsa(e.to_string()))
    }
}

/// Read a private key file (see [`PrivateKey::from_bytes`]).
pub fn load_key(path: &Path) -> Result<PrivateKey, KeyError> {
    let bytes = zeroize_on_drop(std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?);
    PrivateKey::from_bytes(&bytes.0, path)
}

/// A byte buffer overwritten with zeros when dropped (for key file contents).
struct Wiped(Vec<u8>);
impl Drop for Wiped {
    fn drop(&mut self) {
        for b in &mut self.0 {
            // A volatile-free best effort; the rsa crate zeroizes its own copies.
            *b = 0;
        }
        std::hint::black_box(&self.0);
    }
}
fn zeroize_on_drop(v: Vec<u8>) -> Wiped {
    Wiped(v)
}

/// An X.509 certificate with its DER bytes kept verbatim (signatures and EFI signature lists
/// need the exact bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    x509: x509_cert::Certificate,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificate({})", self.subject())
    }
}

impl Certificate {
    /// Parse DER bytes.
    pub fn from_der(der: &[u8]) -> Result<Self, der::Error> {
        let x509 = x509_cert::Certificate::from_der(der)?;
        Ok(Self {
            der: der.to_vec(),
            x509,
        })
    }

    /// Parse PEM (`CERTIFICATE`) or DER bytes. `path` only names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, KeyError> {
        let bad = |why: String| KeyError::BadCert {
            path: path.to_owned(),
            why,
        };
        if bytes.first() != Some(&0x30) {
            let text = std::str::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
            let x509 = x509_cert::Certificate::from_pem(text).map_err(|e| bad(e.to_string()))?;
            let der = x509.to_der().map_err(|e| bad(e.to_string()))?;
            Ok(Self { der, x509 })
        } else {
            Self::from_der(bytes).map_err(|e| bad(e.to_string()))
        }
    }

    /// The DER encoding (what goes into EFI signature lists and PKCS#7).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM text (`-----BEGIN CERTIFICATE-----`), LF line endings.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.x509.to_pem(LineEnding::LF).map_err(enc)
    }

    /// The parsed certificate.
    pub fn x509(&self) -> &x509_cert::Certificate {
        &self.x509
    }

    /// The subject as an RFC 4514 string.
    pub fn subject(&self) -> String {
        self.x509.tbs_certificate().subject().to_string()
    }

    /// The issuer as an RFC 4514 string.
    pub fn issuer(&self) -> String {
        self.x509.tbs_certificate().issuer().to_string()
    }

    /// DER of the issuer `Name` (for PKCS#7 `IssuerAndSerialNumber`).
    pub fn issuer_der(&self) -> Result<Vec<u8>, KeyError> {
        self.x509.tbs_certificate().issuer().to_der().map_err(enc)
    }

    /// DER of the serial number `INTEGER`.
    pub fn serial_der(&self) -> Result<Vec<u8>, KeyError> {
        self.x509
            .tbs_certificate()
            .serial_number()
            .to_der()
            .map_err(enc)
    }

    /// DER of the subject name.
    pub fn subject_der(&self) -> Result<Vec<u8>, KeyError> {
        self.x509.tbs_certificate().subject().to_der().map_err(enc)
    }

    /// DER of the `SubjectPublicKeyInfo`.
    pub fn public_key_der(&self) -> Result<Vec<u8>, KeyError> {
        self.x509
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(enc)
    }

    /// The RSA public key.
    pub fn rsa_public_key(&self) -> Result<rsa::PublicKey, KeyError> {
        use pkcs8::DecodePublicKey as _;
        let spki = self.public_key_der()?;
        rsa::PublicKey::from_public_key_der(&spki).map_err(|e| KeyError::BadPublicKey {
            subject: self.subject(),
            why: e.to_string(),
        })
    }

    /// SHA-256 of the DER (a stable fingerprint).
    pub fn sha256(&self) -> [u8; 32] {
        sha2::Sha256::digest(&self.der).into()
    }

    /// notBefore and notAfter.
    pub fn validity(&self) -> (SystemTime, SystemTime) {
        let v = self.x509.tbs_certificate().validity();
        (v.not_before.to_system_time(), v.not_after.to_system_time())
    }

    /// Fail unless `now` is within the validity period.
    pub fn check_time(&self, now: SystemTime) -> Result<(), KeyError> {
        let (nb, na) = self.validity();
        if now < nb || now > na {
            let v = self.x509.tbs_certificate().validity();
            return Err(KeyError::NotValidNow {
                subject: self.subject(),
                not_before: v.not_before.to_string(),
                not_after: v.not_after.to_string(),
            });
        }
        Ok(())
    }

    fn key_usage(&self) -> Option<KeyUsage> {
        self.x509
            .tbs_certificate()
            .get_extension::<KeyUsage>()
            .ok()
            .flatten()
            .map(|(_, ku)| ku)
    }

    fn extended_key_usage(&self) -> Option<ExtendedKeyUsage> {
        self.x509
            .tbs_certificate()
            .get_extension::<ExtendedKeyUsage>()
            .ok()
            .flatten()
            .map(|(_, e)| e)
    }

    /// Whether the certificate is a CA (`basicConstraints` CA:TRUE).
    pub fn is_ca(&self) -> bool {
        self.x509
            .tbs_certificate()
            .get_extension::<BasicConstraints>()
            .ok()
            .flatten()
            .is_some_and(|(_, bc)| bc.ca)
    }

    /// Fail unless the certificate may make `purpose` signatures: a `keyUsage` extension with
    /// digitalSignature is required, and for [`Purpose::CodeSigning`] an `extendedKeyUsage`
    /// with codeSigning. vmseal requires the extensions to be present (stricter than
    /// RFC 5280, where absence means "any"), so a mistaken certificate is caught early.
    pub fn check_usage(&self, purpose: Purpose) -> Result<(), KeyError> {
        let fail = |missing| KeyError::Usage {
            subject: self.subject(),
            purpose: purpose.describe(),
            missing,
        };
        // An absent keyUsage restricts nothing (RFC 5280 §4.2.1.3) and firmware accepts such
        // certificates (`openssl req -x509` makes them): allowed, with
        // [`Certificate::usage_warnings`]. A present extension that lacks the use is refused.
        match self.key_usage() {
            Some(ku) if !ku.digital_signature() => {
                return Err(fail("the keyUsage bit digitalSignature"));
            }
            _ => {}
        }
        if purpose == Purpose::CodeSigning {
            match self.extended_key_usage() {
                Some(e) if !e.0.contains(&const_oid::db::rfc5280::ID_KP_CODE_SIGNING) => {
                    return Err(fail("codeSigning in its extendedKeyUsage extension"));
                }
                // A certificate restricted by keyUsage (PK, KEK: keyCertSign) but not marked
                // for code signing was not meant to sign binaries.
                None if self.key_usage().is_some() => {
                    return Err(fail("an extendedKeyUsage extension with codeSigning"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// What [`Certificate::check_usage`] let pass only because an extension is absent, with
    /// the risk named: such a certificate's key is not limited to this use.
    pub fn usage_warnings(&self, purpose: Purpose) -> Vec<String> {
        let mut w = Vec::new();
        if self.key_usage().is_none() {
            w.push(format!(
                "certificate {} has no keyUsage extension: its key may sign anything (certificates, CRLs, TLS); firmware accepts it, but a dedicated key with keyUsage digitalSignature limits what a leak can do",
                self.subject()
            ));
        }
        if purpose == Purpose::CodeSigning
            && self.key_usage().is_none()
            && self.extended_key_usage().is_none()
        {
            w.push(format!(
                "certificate {} has no extendedKeyUsage extension: nothing marks it as a code-signing certificate; `vmseal keys new` makes db certificates with codeSigning",
                self.subject()
            ));
        }
        w
    }
}

/// What a certificate is checked for by [`Certificate::check_usage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Authenticode signatures on EFI binaries (db).
    CodeSigning,
    /// Authenticated variable updates (PK, KEK).
    Variables,
}

impl Purpose {
    fn describe(self) -> &'static str {
        match self {
            Self::CodeSigning => "EFI binaries (Authenticode)",
            Self::Variables => "Secure Boot variable updates",
        }
    }
}

/// Read a certificate file, PEM or DER.
pub fn load_cert(path: &Path) -> Result<Certificate, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    Certificate::from_bytes(&bytes, path)
}

/// Fail unless `key` is the private half of `cert`'s public key.
pub fn check_pair(key: &PrivateKey, cert: &Certificate) -> Result<(), KeyError> {
    let cert_pub = cert.rsa_public_key()?;
    if key.0.to_public_key() != cert_pub {
        return Err(KeyError::Mismatch {
            subject: cert.subject(),
        });
    }
    Ok(())
}

/// Something that makes RSA PKCS#1 v1.5 SHA-256 signatures for a certificate: a key file
/// ([`KeyPair`]), a test key, later an HSM. The private key never has to leave the signer.
pub trait Signer {
    /// The certificate whose key signs.
    fn certificate(&self) -> &Certificate;
    /// Extra certificates to embed with signatures (intermediates), in order. None by default.
    fn chain(&self) -> &[Certificate] {
        &[]
    }
    /// An RSASSA-PKCS1-v1_5 signature with SHA-256 over `msg` (the signer hashes).
    fn sign_pkcs1v15_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// A private key and its certificate: the file-based [`Signer`].
#[derive(Clone, Debug)]
pub struct KeyPair {
    /// The private key (redacted in `Debug`).
    pub key: PrivateKey,
    /// Its certificate.
    pub cert: Certificate,
}

impl KeyPair {
    /// Pair a key with its certificate, checking that they match.
    pub fn new(key: PrivateKey, cert: Certificate) -> Result<Self, KeyError> {
        check_pair(&key, &cert)?;
        Ok(Self { key, cert })
    }

    /// Load `key_path` + `cert_path`, check they match, that the certificate is valid at
    /// `now` and has the usage `purpose` needs.
    pub fn load(
        key_path: &Path,
        cert_path: &Path,
        purpose: Purpose,
        now: SystemTime,
    ) -> Result<Self, KeyError> {
        let cert = load_cert(cert_path)?;
        cert.check_time(now)?;
        cert.check_usage(purpose)?;
        let key = load_key(key_path)?;
        Self::new(key, cert)
    }

    /// Write `<dir>/<stem>.key` (0600, never overwritten), `<stem>.crt` (PEM) and
    /// `<stem>.der`. Certificates are written with `create_new` too, so an existing set is never
    /// half-replaced.
    pub fn write_files(&self, dir: &Path, stem: &str) -> Result<(), KeyError> {
        let key = dir.join(format!("{stem}.key"));
        let crt = dir.join(format!("{stem}.crt"));
        let der = dir.join(format!("{stem}.der"));
        for p in [&key, &crt, &der] {
            if p.exists() {
                return Err(KeyError::Exists(p.clone()));
            }
        }
        write_new(&crt, self.cert.to_pem()?.as_bytes())?;
        write_new(&der, self.cert.der())?;
        self.key.write_pem(&key)
    }
}

impl Signer for KeyPair {
    fn certificate(&self) -> &Certificate {
        &self.cert
    }
    fn sign_pkcs1v15_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.key.sign_pkcs1v15_sha256(msg)
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)
}

/// The three keys of an org's Secure Boot hierarchy.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    /// Platform Key: self-signed CA.
    pub pk: KeyPair,
    /// Key Exchange Key: CA certified by PK.
    pub kek: KeyPair,
    /// Signature database key: code-signing end entity certified by KEK.
    pub db: KeyPair,
}

/// Parameters of [`generate_hierarchy`].
#[derive(Clone, Debug)]
pub struct HierarchyParams {
    /// The organisation: subjects are `CN=<org> PK|KEK|db, O=<org>`.
    pub org: String,
    /// RSA modulus size of all three keys.
    pub bits: KeyBits,
    /// notBefore, seconds since the Unix epoch (e.g. `SOURCE_DATE_EPOCH`, or now).
    pub not_before: u64,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: u64,
}

impl HierarchyParams {
    /// 2048-bit keys valid for 30 years from `not_before`.
    pub fn new(org: &str, not_before: u64) -> Self {
        Self {
            org: org.to_owned(),
            bits: KeyBits::Rsa2048,
            not_before,
            not_after: not_before + 30 * 365 * 86400 + 7 * 86400,
        }
    }
}

/// Generate PK, KEK and db keys from the OS RNG and certify them (see the module docs).
pub fn generate_hierarchy(params: &HierarchyParams) -> Result<Hierarchy, KeyError> {
    hierarchy_from_keys(
        params,
        PrivateKey::generate(params.bits)?,
        PrivateKey::generate(params.bits)?,
        PrivateKey::generate(params.bits)?,
    )
}

/// Certify existing keys as PK, KEK and db (deterministic: same keys and params, same bytes).
pub fn hierarchy_from_keys(
    params: &HierarchyParams,
    pk: PrivateKey,
    kek: PrivateKey,
    db: PrivateKey,
) -> Result<Hierarchy, KeyError> {
    let [pk_cert, kek_cert, db_cert] = certify_hierarchy(params, &pk, &kek, &db)?;
    Ok(Hierarchy {
        pk: KeyPair::new(pk, pk_cert)?,
        kek: KeyPair::new(kek, kek_cert)?,
        db: KeyPair::new(db, db_cert)?,
    })
}

/// Check the organisation name and the validity period of `params` (before any key is made).
pub fn check_org(params: &HierarchyParams) -> Result<(), KeyError> {
    let org = params.org.trim();
    if org.is_empty() || org.len() > 48 {
        return Err(KeyError::Param(format!(
            "organisation name {:?} must be 1 to 48 characters",
            params.org
        )));
    }
    if params.not_after <= params.not_before {
        return Err(KeyError::Param(
            "notAfter must be later than notBefore".into(),
        ));
    }
    Ok(())
}

/// A raw signing key, wherever it lives: a [`PrivateKey`] in memory, or a key in a PKCS#11
/// token ([`crate::pkcs11::TokenKey`]). Enough to certify it and to sign with it.
pub trait RawKey {
    /// The public half as a DER `SubjectPublicKeyInfo`.
    fn public_key_der(&self) -> Result<Vec<u8>, KeyError>;
    /// PKCS#1 v1.5 signature with SHA-256 over `msg`.
    fn sign_pkcs1v15_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// PKCS#1 v1.5 signature with `hash` over `msg` (systemd signs a PCR policy of bank B
    /// with B's hash). Keys that only do SHA-256 refuse the others.
    fn sign_pkcs1v15(&self, hash: SignHash, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        match hash {
            SignHash::Sha256 => self.sign_pkcs1v15_sha256(msg),
            other => Err(KeyError::Param(format!(
                "this key signs with SHA-256 only, not {other:?}"
            ))),
        }
    }
}

/// The hash of a PKCS#1 v1.5 signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignHash {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl RawKey for PrivateKey {
    fn public_key_der(&self) -> Result<Vec<u8>, KeyError> {
        PrivateKey::public_key_der(self)
    }
    fn sign_pkcs1v15_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        PrivateKey::sign_pkcs1v15_sha256(self, msg)
    }
    fn sign_pkcs1v15(&self, hash: SignHash, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let r = match hash {
            SignHash::Sha1 => self.0.pkcs1v15_sign::<sha1::Sha1>(msg),
            SignHash::Sha256 => self.0.pkcs1v15_sign::<sha2::Sha256>(msg),
            SignHash::Sha384 => self.0.pkcs1v15_sign::<sha2::Sha384>(msg),
            SignHash::Sha512 => self.0.pkcs1v15_sign::<sha2::Sha512>(msg),
        };
        r.map_err(|e| KeyError::Rsa(e.to_string()))
    }
}

/// The certificates of PK, KEK and db for three keys (see the module docs): the same
/// certificates whether the keys are files or live in a token.
pub fn certify_hierarchy(
    params: &HierarchyParams,
    pk: &dyn RawKey,
    kek: &dyn RawKey,
    db: &dyn RawKey,
) -> Result<[Certificate; 3], KeyError> {
    check_org(params)?;
    let org = params.org.trim();
    let validity = validity(params.not_before, params.not_after)?;
    let pk_name = name(&format!("{org} PK"), org)?;
    let kek_name = name(&format!("{org} KEK"), org)?;
    let db_name = name(&format!("{org} db"), org)?;
    let pk_cert = issue(&CertRequest {
        subject: &pk_name,
        subject_spki: &pk.public_key_der()?,
        profile: Profile::Ca,
        issuer: &pk_name,
        issuer_spki: &pk.public_key_der()?,
        validity,
        sign: &|m| pk.sign_pkcs1v15_sha256(m),
    })?;
    let kek_cert = issue(&CertRequest {
        subject: &kek_name,
        subject_spki: &kek.public_key_der()?,
        profile: Profile::Ca,
        issuer: &pk_name,
        issuer_spki: &pk.public_key_der()?,
        validity,
        sign: &|m| pk.sign_pkcs1v15_sha256(m),
    })?;
    let db_cert = issue(&CertRequest {
        subject: &db_name,
        subject_spki: &db.public_key_der()?,
        profile: Profile::CodeSigning,
        issuer: &kek_name,
        issuer_spki: &kek.public_key_der()?,
        validity,
        sign: &|m| kek.sign_pkcs1v15_sha256(m),
    })?;
    Ok([pk_cert, kek_cert, db_cert])
}

/// Certify a new db key `db` with the KEK (`kek_cert`, signing through `kek`): a code-signing
/// certificate `CN=<org> db <tag>, O=<org>` valid from `params.not_before` to
/// `params.not_after`, issued by the KEK's subject — the certificate a db key rotation enrolls.
/// `<tag>` (8 hex digits of the new key's SHA-256 key identifier) tells rotated db
/// certificates apart.
pub fn certify_db(
    params: &HierarchyParams,
    kek_cert: &Certificate,
    kek: &dyn RawKey,
    db: &dyn RawKey,
) -> Result<Certificate, KeyError> {
    check_org(params)?;
    let org = params.org.trim();
    let kek_spki = kek.public_key_der()?;
    if kek_spki != kek_cert.public_key_der()? {
        return Err(KeyError::Param(format!(
            "the KEK key does not match the KEK certificate {}",
            kek_cert.subject()
        )));
    }
    let db_spki = db.public_key_der()?;
    let tag: String = sha2::Sha256::digest(&db_spki)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let subject = name(&format!("{org} db {tag}"), org)?;
    let issuer = kek_cert.x509().tbs_certificate().subject().clone();
    issue(&CertRequest {
        subject: &subject,
        subject_spki: &db_spki,
        profile: Profile::CodeSigning,
        issuer: &issuer,
        issuer_spki: &kek_spki,
        validity: validity(params.not_before, params.not_after)?,
        sign: &|m| kek.sign_pkcs1v15_sha256(m),
    })
}

fn validity(not_before: u64, not_after: u64) -> Result<Validity, KeyError> {
    let t = |secs: u64| -> Result<Time, KeyError> {
        let st = UNIX_EPOCH + Duration::from_secs(secs);
        Time::try_from(st).map_err(enc)
    };
    Ok(Validity::new(t(not_before)?, t(not_after)?))
}

/// `O=<org>, CN=<cn>` in DER order (shown by openssl as `O = org, CN = cn`).
fn name(cn: &str, org: &str) -> Result<Name, KeyError> {
    let atv = |oid, v: &str| -> Result<AttributeTypeAndValue, KeyError> {
        Ok(AttributeTypeAndValue {
            oid,
            value: der::Any::encode_from(&Utf8StringRef::new(v).map_err(enc)?).map_err(enc)?,
        })
    };
    let mut rdns = RdnSequence::default();
    rdns.push(
        RelativeDistinguishedName::try_from(vec![atv(const_oid::db::rfc4519::O, org)?])
            .map_err(enc)?,
    );
    rdns.push(
        RelativeDistinguishedName::try_from(vec![atv(const_oid::db::rfc4519::CN, cn)?])
            .map_err(enc)?,
    );
    Name::from_der(&rdns.to_der().map_err(enc)?).map_err(enc)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    Ca,
    CodeSigning,
}

/// Signs the TBS bytes with the issuer's key.
type SignFn<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, KeyError> + 'a;

struct CertRequest<'a> {
    subject: &'a Name,
    subject_spki: &'a [u8],
    profile: Profile,
    issuer: &'a Name,
    issuer_spki: &'a [u8],
    validity: Validity,
    sign: &'a SignFn<'a>,
}

/// `TBSCertificate` (RFC 5280 §4.1), v3 with extensions, laid out here because x509-cert keeps
/// its fields private.
#[derive(Sequence)]
struct Tbs {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: u8,
    serial: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    spki: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT")]
    extensions: Vec<Extension>,
}

/// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value.
fn key_id(spki_der: &[u8]) -> Result<Vec<u8>, KeyError> {
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der).map_err(enc)?;
    Ok(sha1::Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec())
}

fn ext<T: Encode>(
    oid: const_oid::ObjectIdentifier,
    critical: bool,
    v: &T,
) -> Result<Extension, KeyError> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(v.to_der().map_err(enc)?).map_err(enc)?,
    })
}

fn issue(req: &CertRequest<'_>) -> Result<Certificate, KeyError> {
    use const_oid::AssociatedOid as _;
    let ski = key_id(req.subject_spki)?;
    let aki = key_id(req.issuer_spki)?;
    let sha256_rsa = AlgorithmIdentifierOwned {
        oid: const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
        parameters: Some(der::Any::null()),
    };
    // Serial: 16 bytes derived from the subject key, positive, no leading zero byte.
    let mut serial: [u8; 16] = sha2::Sha256::digest(req.subject_spki)
        .get(..16)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0x11; 16]);
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let (bc, ku) = match req.profile {
        Profile::Ca => (
            BasicConstraints {
                ca: true,
                path_len_constraint: None,
            },
            KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature,
        ),
        Profile::CodeSigning => (
            BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            KeyUsages::DigitalSignature.into(),
        ),
    };
    let mut extensions = vec![
        ext(BasicConstraints::OID, true, &bc)?,
        ext(KeyUsage::OID, true, &KeyUsage(ku))?,
    ];
    if req.profile == Profile::CodeSigning {
        extensions.push(ext(
            ExtendedKeyUsage::OID,
            false,
            &ExtendedKeyUsage(vec![const_oid::db::rfc5280::ID_KP_CODE_SIGNING]),
        )?);
    }
    extensions.push(ext(
        SubjectKeyIdentifier::OID,
        false,
        &SubjectKeyIdentifier(OctetString::new(ski).map_err(enc)?),
    )?);
    extensions.push(ext(
        AuthorityKeyIdentifier::OID,
        false,
        &AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(aki).map_err(enc)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        },
    )?);
    let tbs = Tbs {
        version: 2,
        serial: SerialNumber::new(&serial).map_err(enc)?,
        signature: sha256_rsa.clone(),
        issuer: req.issuer.clone(),
        validity: req.validity,
        subject: req.subject.clone(),
        spki: SubjectPublicKeyInfoOwned::from_der(req.subject_spki).map_err(enc)?,
        extensions,
    };
    let tbs_der = tbs.to_der().map_err(enc)?;
    let sig = (req.sign)(&tbs_der)?;
    let cert_der = crate::asn1::seq(&[
        &tbs_der,
        &sha256_rsa.to_der().map_err(enc)?,
        &crate::asn1::tlv(crate::asn1::tag::BIT_STRING, &[&[0u8][..], &sig].concat()),
    ]);
    Certificate::from_der(&cert_der).map_err(enc)
}

/// Whether `cert`'s signature verifies with `issuer`'s public key (sha256/384/512 with RSA).
/// Used for chain checks; does not look at names, times or usages.
pub fn is_signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    let Ok(key) = issuer.rsa_public_key() else {
        return false;
    };
    let mut r = crate::asn1::Reader::new(cert.der());
    let Ok(outer) = r.next() else { return false };
    let Ok(tbs) = outer.reader().next() else {
        return false;
    };
    let sig = cert.x509.signature().raw_bytes();
    let alg = cert.x509.signature_algorithm().oid;
    use const_oid::db::rfc5912 as o;
    let ok = if alg == o::SHA_256_WITH_RSA_ENCRYPTION {
        key.pkcs1v15_verify::<sha2::Sha256>(tbs.raw, sig)
    } else if alg == o::SHA_384_WITH_RSA_ENCRYPTION {
        key.pkcs1v15_verify::<sha2::Sha384>(tbs.raw, sig)
    } else if alg == o::SHA_512_WITH_RSA_ENCRYPTION {
        key.pkcs1v15_verify::<sha2::Sha512>(tbs.raw, sig)
    } else {
        return false;
    };
    ok.is_ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One 2048-bit hierarchy per test binary (key generation is the slow part).
    pub(crate) fn test_hierarchy() -> &'static Hierarchy {
        static H: OnceLock<Hierarchy> = OnceLock::new();
        H.get_or_init(|| {
            let mut p = HierarchyParams::new("Test Org", 1_700_000_000);
            p.bits = KeyBits::Rsa2048;
            generate_hierarchy(&p).unwrap()
        })
    }

    #[test]
    fn hierarchy_chains_and_has_the_extensions() {
        let h = test_hierarchy();
        assert!(is_signed_by(&h.pk.cert, &h.pk.cert));
        assert!(is_signed_by(&h.kek.cert, &h.pk.cert));
        assert!(is_signed_by(&h.db.cert, &h.kek.cert));
        assert!(!is_signed_by(&h.db.cert, &h.pk.cert));
        assert!(h.pk.cert.is_ca() && h.kek.cert.is_ca() && !h.db.cert.is_ca());
        assert_eq!(h.db.cert.subject(), "CN=Test Org db,O=Test Org");
        assert_eq!(h.kek.cert.issuer(), "CN=Test Org PK,O=Test Org");
        h.db.cert.check_usage(Purpose::CodeSigning).unwrap();
        h.kek.cert.check_usage(Purpose::Variables).unwrap();
        assert!(h.db.cert.usage_warnings(Purpose::CodeSigning).is_empty());
        let e = h.kek.cert.check_usage(Purpose::CodeSigning).unwrap_err();
        assert!(e.to_string().contains("codeSigning"), "{e}");
    }

    #[test]
    fn certificates_are_deterministic_given_the_keys() {
        let h = test_hierarchy();
        let p = HierarchyParams::new("Test Org", 1_700_000_000);
        let again =
            hierarchy_from_keys(&p, h.pk.key.clone(), h.kek.key.clone(), h.db.key.clone()).unwrap();
        assert_eq!(again.db.cert.der(), h.db.cert.der());
        assert_eq!(again.pk.cert.der(), h.pk.cert.der());
    }

    #[test]
    fn mismatch_expiry_and_debug_are_handled() {
        let h = test_hierarchy();
        let e = check_pair(&h.db.key, &h.kek.cert).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        let late = UNIX_EPOCH + Duration::from_secs(4_000_000_000);
        assert!(matches!(
            h.db.cert.check_time(late),
            Err(KeyError::NotValidNow { .. })
        ));
        h.db.cert
            .check_time(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
            .unwrap();
        let dbg = format!("{:?}", h.db);
        assert!(
            dbg.contains("<redacted>") && !dbg.contains("BEGIN"),
            "{dbg}"
        );
    }

    #[test]
    fn key_files_round_trip_with_mode_0600_and_no_overwrite() {
        let h = test_hierarchy();
        let dir = tempfile::tempdir().unwrap();
        h.db.write_files(dir.path(), "db").unwrap();
        let key_path = dir.path().join("db.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            h.db.key.write_pem(&key_path),
            Err(KeyError::Exists(_))
        ));
        let pair = KeyPair::load(
            &key_path,
            &dir.path().join("db.crt"),
            Purpose::CodeSigning,
            UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
        .unwrap();
        assert_eq!(pair.cert, h.db.cert);
        assert_eq!(load_cert(&dir.path().join("db.der")).unwrap(), h.db.cert);
        let e = KeyPair::load(
            &key_path,
            &dir.path().join("db.crt"),
            Purpose::CodeSigning,
            UNIX_EPOCH,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not valid"), "{e}");
    }
}
