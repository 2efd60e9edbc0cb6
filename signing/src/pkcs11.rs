//! Keys in a PKCS#11 token (an HSM, a smart card, SoftHSM2): RFC 7512 `pkcs11:` URIs and a
//! [`Signer`] whose private key never leaves the token. Talks PKCS#11 through the `cryptoki`
//! crate (the module is loaded at run time, e.g. `/usr/lib/softhsm/libsofthsm2.so`).
//!
//! # Which token, which key
//!
//! A URI names the token by its path attributes `token` (label), `manufacturer`, `model`,
//! `serial` or `slot-id`, and the key by `object` (`CKA_LABEL`) and/or `id` (`CKA_ID`,
//! percent-encoded bytes); `type` may be `private` (or `public`/`cert`, ignored for signing).
//! Exactly one token and one private key must match; none or several is an error that says so.
//!
//! # The module and the PIN (never on the command line, never in a message)
//!
//! The module: `--pkcs11-module` (a caller's flag), else `VMSEAL_PKCS11_MODULE`, else the URI's
//! `module-path` query attribute. The PIN: a PIN file (a caller's `--pin-file`), else the file
//! named by `VMSEAL_PKCS11_PIN_FILE`, else `VMSEAL_PKCS11_PIN`, else the URI's `pin-source`
//! (`file:PATH` or a path). A URI with `pin-value` is refused: a PIN in a URI ends up in shell
//! history, process lists and logs. Errors show the URI as vmseal re-encodes it (which can hold
//! no PIN) and never the PIN.
//!
//! # Signatures
//!
//! `CKM_SHA256_RSA_PKCS`: the token hashes and pads, exactly as [`crate::keys::PrivateKey`]
//! does in software, so a token key and the same key as a file give the same bytes (RSA
//! PKCS#1 v1.5 is deterministic). Before signing for a certificate, the token key's modulus
//! and exponent are compared with the certificate's public key.

use std::fmt;
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use pkcs8::EncodePublicKey as _;

use crate::keys::{Certificate, KeyError, RawKey, SignHash, Signer};

/// The module's path, when no flag gives it.
pub const MODULE_ENV: &str = "VMSEAL_PKCS11_MODULE";
/// A file holding the PIN, when no flag gives one.
pub const PIN_FILE_ENV: &str = "VMSEAL_PKCS11_PIN_FILE";
/// The PIN itself (for CI secrets), when no PIN file is given.
pub const PIN_ENV: &str = "VMSEAL_PKCS11_PIN";

/// Why a token key cannot be used. Messages name the URI, never the PIN.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    /// The URI is malformed.
    #[error("{uri}: {problem} — {fix}")]
    Uri {
        /// The URI (redacted: no query part).
        uri: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// The token, the key or the module cannot be used.
    #[error("{uri}: {problem} — {fix}")]
    Token {
        /// The URI as vmseal encodes it.
        uri: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
}

impl Pkcs11Error {
    /// `("URI: problem", fix)`, for callers that format errors their own way.
    pub fn parts(&self) -> (String, String) {
        match self {
            Self::Uri { uri, problem, fix } | Self::Token { uri, problem, fix } => {
                (format!("{uri}: {problem}"), fix.clone())
            }
        }
    }
}

/// A parsed `pkcs11:` URI (RFC 7512). It never holds a PIN value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token`: the token label.
    pub token: Option<String>,
    /// `manufacturer`.
    pub manufacturer: Option<String>,
    /// `model`.
    pub model: Option<String>,
    /// `serial`.
    pub serial: Option<String>,
    /// `slot-id`.
    pub slot_id: Option<u64>,
    /// `object`: the key's `CKA_LABEL`.
    pub object: Option<String>,
    /// `id`: the key's `CKA_ID`.
    pub id: Option<Vec<u8>>,
    /// `type`.
    pub object_type: Option<String>,
    /// `module-path` (query).
    pub module_path: Option<PathBuf>,
    /// `pin-source` (query): `file:PATH` or a path.
    pub pin_source: Option<String>,
}

fn pct_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(out)
}

fn pct_encode(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02x}")
            }
        })
        .collect()
}

/// True for a key reference that is a `pkcs11:` URI rather than a file path.
pub fn is_uri(s: &str) -> bool {
    s.starts_with("pkcs11:")
}

impl Pkcs11Uri {
    /// Parse a URI. Unknown attributes are refused (a typo would otherwise widen the match),
    /// except RFC 7512's vendor-specific `x-…` ones, which are ignored.
    pub fn parse(text: &str) -> Result<Self, Pkcs11Error> {
        // Never echo a query part (it may hold pin-value).
        let shown = text.split('?').next().unwrap_or_default().to_string();
        let bad = |problem: String, fix: &str| Pkcs11Error::Uri {
            uri: shown.clone(),
            problem,
            fix: fix.into(),
        };
        let rest = text.strip_prefix("pkcs11:").ok_or_else(|| {
            bad(
                "is not a pkcs11: URI".into(),
                "write pkcs11:token=LABEL;object=KEY (RFC 7512)",
            )
        })?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut u = Self::default();
        let text_value = |k: &str, v: &str| {
            pct_decode(v)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    bad(
                        format!("attribute {k}: bad percent-encoding"),
                        "encode bytes as %XX",
                    )
                })
        };
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (k, v) = attr.split_once('=').ok_or_else(|| {
                bad(
                    format!("path attribute {attr:?} has no '='"),
                    "write NAME=VALUE pairs separated by ';'",
                )
            })?;
            match k {
                "token" => u.token = Some(text_value(k, v)?),
                "manufacturer" => u.manufacturer = Some(text_value(k, v)?),
                "model" => u.model = Some(text_value(k, v)?),
                "serial" => u.serial = Some(text_value(k, v)?),
                "object" => u.object = Some(text_value(k, v)?),
                "type" => u.object_type = Some(text_value(k, v)?),
                "id" => {
                    u.id = Some(pct_decode(v).ok_or_else(|| {
                        bad(
                            "attribute id: bad percent-encoding".into(),
                            "encode bytes as %XX",
                        )
                    })?)
                }
                "slot-id" => {
                    u.slot_id = Some(text_value(k, v)?.parse().map_err(|_| {
                        bad(
                            format!("slot-id {v:?} is not a number"),
                            "give the decimal slot id",
                        )
                    })?)
                }
                "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-manufacturer"
                | "slot-description" => {}
                x if x.starts_with("x-") => {}
                _ => {
                    return Err(bad(
                        format!("unknown path attribute {k:?}"),
                        "use token, manufacturer, model, serial, slot-id, object, id or type",
                    ));
                }
            }
        }
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            match k {
                "pin-value" => {
                    return Err(bad(
                        "carries pin-value: a PIN in a URI ends up in shell history, process lists and logs".into(),
                        "remove it and give the PIN in a file (--pin-file or VMSEAL_PKCS11_PIN_FILE) or in VMSEAL_PKCS11_PIN",
                    ));
                }
                "module-path" => u.module_path = Some(PathBuf::from(text_value(k, v)?)),
                "pin-source" => u.pin_source = Some(text_value(k, v)?),
                "module-name" => {}
                x if x.starts_with("x-") => {}
                _ => {
                    return Err(bad(
                        format!("unknown query attribute {k:?}"),
                        "use module-path or pin-source",
                    ));
                }
            }
        }
        // A URI may name only a token (`keys new --pkcs11`); signing checks for a key.
        Ok(u)
    }

    /// The same URI naming the object `label` in the same token (no `id`, `type=private`).
    pub fn with_object(&self, label: &str) -> Self {
        Self {
            object: Some(label.to_owned()),
            id: None,
            object_type: Some("private".into()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Pkcs11Uri {
    /// The URI re-encoded: path attributes, then `module-path`/`pin-source` (never a PIN).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut text = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}={}", pct_encode(v.as_bytes())));
            }
        };
        text("token", &self.token);
        text("manufacturer", &self.manufacturer);
        text("model", &self.model);
        text("serial", &self.serial);
        text("object", &self.object);
        text("type", &self.object_type);
        if let Some(id) = &self.id {
            parts.push(format!("id={}", pct_encode(id)));
        }
        if let Some(s) = self.slot_id {
            parts.push(format!("slot-id={s}"));
        }
        write!(f, "pkcs11:{}", parts.join(";"))?;
        let mut q = Vec::new();
        if let Some(m) = &self.module_path {
            q.push(format!(
                "module-path={}",
                pct_encode(m.to_string_lossy().as_bytes()).replace("%2f", "/")
            ));
        }
        if let Some(p) = &self.pin_source {
            q.push(format!(
                "pin-source={}",
                pct_encode(p.as_bytes())
                    .replace("%2f", "/")
                    .replace("%3a", ":")
            ));
        }
        if !q.is_empty() {
            write!(f, "?{}", q.join("&"))?;
        }
        Ok(())
    }
}

/// A command's own flags for the module and the PIN file (each optional: the environment and
/// the URI fill in what they leave out).
#[derive(Clone, Debug, Default)]
pub struct TokenFlags {
    /// `--pkcs11-module`.
    pub module: Option<PathBuf>,
    /// `--pin-file`.
    pub pin_file: Option<PathBuf>,
}

/// The module and the PIN to open a token with.
pub struct TokenAccess {
    /// The PKCS#11 module.
    pub module: PathBuf,
    pin: AuthPin,
}

impl fmt::Debug for TokenAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAccess")
            .field("module", &self.module)
            .field("pin", &"(redacted)")
            .finish()
    }
}

fn read_pin_file(path: &Path, uri: &Pkcs11Uri, origin: &str) -> Result<AuthPin, Pkcs11Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Pkcs11Error::Token {
        uri: uri.to_string(),
        problem: format!("the PIN file {} ({origin}): {e}", path.display()),
        fix: "give a readable file holding the PIN".into(),
    })?;
    let pin = text.trim_end_matches(['\r', '\n']);
    if pin.is_empty() {
        return Err(Pkcs11Error::Token {
            uri: uri.to_string(),
            problem: format!("the PIN file {} ({origin}) is empty", path.display()),
            fix: "write the PIN into it".into(),
        });
    }
    Ok(AuthPin::from(pin.to_owned()))
}

impl TokenAccess {
    /// Resolve the module and the PIN for `uri` (see the module docs for the order).
    pub fn resolve(uri: &Pkcs11Uri, flags: &TokenFlags) -> Result<Self, Pkcs11Error> {
        let (module_flag, pin_file_flag) = (flags.module.as_deref(), flags.pin_file.as_deref());
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let module = module_flag
            .map(Path::to_path_buf)
            .or_else(|| env(MODULE_ENV).map(PathBuf::from))
            .or_else(|| uri.module_path.clone())
            .ok_or_else(|| Pkcs11Error::Token {
                uri: uri.to_string(),
                problem: "no PKCS#11 module given".into(),
                fix: format!(
                    "pass --pkcs11-module, set {MODULE_ENV}, or add ?module-path=… to the URI (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"
                ),
            })?;
        let pin = if let Some(p) = pin_file_flag {
            read_pin_file(p, uri, "--pin-file")?
        } else if let Some(p) = env(PIN_FILE_ENV) {
            read_pin_file(Path::new(&p), uri, PIN_FILE_ENV)?
        } else if let Some(p) = std::env::var(PIN_ENV).ok().filter(|p| !p.is_empty()) {
            AuthPin::from(p)
        } else if let Some(src) = &uri.pin_source {
            let path = src.strip_prefix("file:").unwrap_or(src);
            read_pin_file(Path::new(path), uri, "the URI's pin-source")?
        } else {
            return Err(Pkcs11Error::Token {
                uri: uri.to_string(),
                problem: "no PIN given".into(),
                fix: format!(
                    "pass --pin-file FILE, set {PIN_FILE_ENV} or {PIN_ENV}, or add ?pin-source=file:PATH to the URI"
                ),
            });
        };
        Ok(Self { module, pin })
    }
}

/// An open, logged-in session on the token a URI names.
pub struct Token {
    // Dropped after the session (field order): the session closes before the library finalizes.
    session: Session,
    _ctx: Pkcs11,
    uri: Pkcs11Uri,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.uri)
    }
}

fn rv_name(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, func) => format!("{func:?}: {rv}"),
        other => other.to_string(),
    }
}

impl Token {
    fn err(uri: &Pkcs11Uri, problem: String, fix: &str) -> Pkcs11Error {
        Pkcs11Error::Token {
            uri: uri.to_string(),
            problem,
            fix: fix.into(),
        }
    }

    /// Load the module, find the one token `uri` names, open a session (read-write when
    /// `rw`) and log in as the user.
    pub fn open(uri: &Pkcs11Uri, access: &TokenAccess, rw: bool) -> Result<Self, Pkcs11Error> {
        let ctx = Pkcs11::new(&access.module).map_err(|e| {
            Self::err(
                uri,
                format!("cannot load the module {}: {e}", access.module.display()),
                "give the path of a PKCS#11 module (.so)",
            )
        })?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| {
                Self::err(
                    uri,
                    format!("C_Initialize: {}", rv_name(&e)),
                    "check the module's configuration (SoftHSM2: SOFTHSM2_CONF)",
                )
            })?;
        let slots = ctx.get_slots_with_token().map_err(|e| {
            Self::err(
                uri,
                format!("listing slots: {}", rv_name(&e)),
                "check the module",
            )
        })?;
        let mut matching = Vec::new();
        for slot in slots {
            let Ok(info) = ctx.get_token_info(slot) else {
                continue;
            };
            let ok = |want: &Option<String>, have: &str| {
                want.as_deref().is_none_or(|w| w == have.trim_end())
            };
            if ok(&uri.token, info.label())
                && ok(&uri.manufacturer, info.manufacturer_id())
                && ok(&uri.model, info.model())
                && ok(&uri.serial, info.serial_number())
                && uri.slot_id.is_none_or(|s| s == slot.id())
            {
                matching.push(slot);
            }
        }
        let slot = match matching.as_slice() {
            [one] => *one,
            [] => {
                return Err(Self::err(
                    uri,
                    "no token matches".into(),
                    "check token= (the token's label; `pkcs11-tool --list-slots` shows them)",
                ));
            }
            many => {
                return Err(Self::err(
                    uri,
                    format!("{} tokens match", many.len()),
                    "add token=, serial= or slot-id= to name one",
                ));
            }
        };
        let session = if rw {
            ctx.open_rw_session(slot)
        } else {
            ctx.open_ro_session(slot)
        }
        .map_err(|e| {
            Self::err(
                uri,
                format!("opening a session: {}", rv_name(&e)),
                "check the token",
            )
        })?;
        match session.login(UserType::User, Some(&access.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(Self::err(
                    uri,
                    "the token refused the PIN (CKR_PIN_INCORRECT)".into(),
                    "give the user PIN of this token",
                ));
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(Self::err(
                    uri,
                    "the user PIN is locked (CKR_PIN_LOCKED)".into(),
                    "unlock it with the SO PIN",
                ));
            }
            Err(e) => {
                return Err(Self::err(
                    uri,
                    format!("login: {}", rv_name(&e)),
                    "check the PIN and the token",
                ));
            }
        }
        Ok(Self {
            session,
            _ctx: ctx,
            uri: uri.clone(),
        })
    }

    /// The URI this token was opened with.
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    fn key_template(uri: &Pkcs11Uri, class: ObjectClass) -> Vec<Attribute> {
        let mut t = vec![Attribute::Class(class)];
        if let Some(l) = &uri.object {
            t.push(Attribute::Label(l.as_bytes().to_vec()));
        }
        if let Some(id) = &uri.id {
            t.push(Attribute::Id(id.clone()));
        }
        t
    }

    /// The one private key `key_uri` names in this token.
    pub fn private_key(&self, key_uri: &Pkcs11Uri) -> Result<ObjectHandle, Pkcs11Error> {
        if key_uri.object.is_none() && key_uri.id.is_none() {
            return Err(Self::err(
                key_uri,
                "names no key".into(),
                "add object=LABEL (or id=…) to the URI",
            ));
        }
        let found = self
            .session
            .find_objects(&Self::key_template(key_uri, ObjectClass::PRIVATE_KEY))
            .map_err(|e| {
                Self::err(
                    key_uri,
                    format!("searching keys: {}", rv_name(&e)),
                    "check the token",
                )
            })?;
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(Self::err(
                key_uri,
                "no private key object matches in the token".into(),
                "check object=/id= (`pkcs11-tool --list-objects --login` shows them) or create the keys with `vmseal keys new --pkcs11`",
            )),
            many => Err(Self::err(
                key_uri,
                format!("{} private keys match", many.len()),
                "add id= or a more specific object= to name one",
            )),
        }
    }

    /// The SubjectPublicKeyInfo (DER) of an RSA private key, from its modulus and exponent.
    pub fn public_key_der(&self, key: ObjectHandle) -> Result<Vec<u8>, Pkcs11Error> {
        let attrs = self
            .session
            .get_attributes(
                key,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )
            .map_err(|e| {
                Self::err(
                    &self.uri,
                    format!("reading the key's modulus: {}", rv_name(&e)),
                    "use an RSA key",
                )
            })?;
        let (mut n, mut e) = (None, None);
        for a in attrs {
            match a {
                Attribute::Modulus(m) => n = Some(m),
                Attribute::PublicExponent(x) => e = Some(x),
                _ => {}
            }
        }
        let (Some(n), Some(e)) = (n, e) else {
            return Err(Self::err(
                &self.uri,
                "the key shows no RSA modulus and exponent".into(),
                "use an RSA key",
            ));
        };
        let public = rsa::PublicKey::new(
            rsa::BoxedUint::from_be_slice_vartime(&n),
            rsa::BoxedUint::from_be_slice_vartime(&e),
        )
        .map_err(|err| {
            Self::err(
                &self.uri,
                format!("the key's RSA public key is invalid: {err}"),
                "use an RSA key of 2048 bits or more",
            )
        })?;
        public
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|err| {
                Self::err(
                    &self.uri,
                    format!("encoding the public key: {err}"),
                    "report this",
                )
            })
    }

    /// An RSASSA-PKCS1-v1_5 SHA-256 signature by `key` over `msg` (`CKM_SHA256_RSA_PKCS`).
    pub fn sign(&self, key: ObjectHandle, msg: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        self.sign_with(key, SignHash::Sha256, msg)
    }

    /// An RSASSA-PKCS1-v1_5 signature with `hash` (`CKM_SHA{1,256,384,512}_RSA_PKCS`).
    pub fn sign_with(
        &self,
        key: ObjectHandle,
        hash: SignHash,
        msg: &[u8],
    ) -> Result<Vec<u8>, Pkcs11Error> {
        let mech = match hash {
            SignHash::Sha1 => Mechanism::Sha1RsaPkcs,
            SignHash::Sha256 => Mechanism::Sha256RsaPkcs,
            SignHash::Sha384 => Mechanism::Sha384RsaPkcs,
            SignHash::Sha512 => Mechanism::Sha512RsaPkcs,
        };
        self.session.sign(&mech, key, msg).map_err(|e| {
            Self::err(
                &self.uri,
                format!("C_Sign: {}", rv_name(&e)),
                "use an RSA key with CKA_SIGN that the token can use with CKM_SHA256_RSA_PKCS",
            )
        })
    }

    /// Generate an RSA key pair inside the token: private `CKA_TOKEN`, `CKA_PRIVATE`,
    /// `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`, `CKA_SIGN`; both halves labelled `label` with
    /// `CKA_ID` `id`. Refuses a label already used by a private key.
    pub fn generate_rsa(
        &self,
        label: &str,
        id: &[u8],
        bits: u64,
    ) -> Result<ObjectHandle, Pkcs11Error> {
        let key_uri = self.uri.with_object(label);
        let existing = self
            .session
            .find_objects(&Self::key_template(&key_uri, ObjectClass::PRIVATE_KEY))
            .map_err(|e| {
                Self::err(
                    &key_uri,
                    format!("searching keys: {}", rv_name(&e)),
                    "check the token",
                )
            })?;
        if !existing.is_empty() {
            return Err(Self::err(
                &key_uri,
                "a private key with this label already exists in the token".into(),
                "use another token, or delete the old keys first (vmseal never overwrites keys)",
            ));
        }
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::ModulusBits(bits.into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
            Attribute::KeyType(KeyType::RSA),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
            Attribute::KeyType(KeyType::RSA),
        ];
        let (_, priv_handle) = self
            .session
            .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
            .map_err(|e| {
                Self::err(
                    &key_uri,
                    format!("C_GenerateKeyPair: {}", rv_name(&e)),
                    "check that the token can generate RSA keys of this size and has room",
                )
            })?;
        Ok(priv_handle)
    }

    /// Store a certificate object (`CKO_CERTIFICATE`, X.509) next to a key, same label and id.
    pub fn store_certificate(
        &self,
        label: &str,
        id: &[u8],
        cert: &Certificate,
    ) -> Result<(), Pkcs11Error> {
        let subject = cert.subject_der().map_err(|e| {
            Self::err(
                &self.uri,
                format!("certificate subject: {e}"),
                "report this",
            )
        })?;
        self.session
            .create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(cryptoki::object::CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.to_vec()),
                Attribute::Subject(subject),
                Attribute::Value(cert.der().to_vec()),
            ])
            .map(|_| ())
            .map_err(|e| {
                Self::err(
                    &self.uri,
                    format!("storing the {label} certificate: {}", rv_name(&e)),
                    "check that the token has room",
                )
            })
    }
}

/// One token key usable as a [`RawKey`] (for certifying) and a signer.
pub struct TokenKey<'t> {
    token: &'t Token,
    key: ObjectHandle,
}

impl<'t> TokenKey<'t> {
    /// The key `handle` of `token`.
    pub fn new(token: &'t Token, key: ObjectHandle) -> Self {
        Self { token, key }
    }
}

fn key_error(e: Pkcs11Error) -> KeyError {
    KeyError::Param(e.to_string())
}

impl RawKey for TokenKey<'_> {
    fn public_key_der(&self) -> Result<Vec<u8>, KeyError> {
        self.token.public_key_der(self.key).map_err(key_error)
    }
    fn sign_pkcs1v15_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.token.sign(self.key, msg).map_err(key_error)
    }
    fn sign_pkcs1v15(&self, hash: SignHash, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.token.sign_with(self.key, hash, msg).map_err(key_error)
    }
}

/// A token key that owns its session (for one-off signing without a certificate, e.g. a PCR
/// policy key).
pub struct OwnedTokenKey {
    token: Token,
    key: ObjectHandle,
}

impl fmt::Debug for OwnedTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnedTokenKey({})", self.token.uri)
    }
}

impl OwnedTokenKey {
    /// Open the token `key_uri` names and find its private key.
    pub fn open(key_uri: &Pkcs11Uri, access: &TokenAccess) -> Result<Self, Pkcs11Error> {
        let token = Token::open(key_uri, access, false)?;
        let key = token.private_key(key_uri)?;
        Ok(Self { token, key })
    }
}

impl RawKey for OwnedTokenKey {
    fn public_key_der(&self) -> Result<Vec<u8>, KeyError> {
        self.token.public_key_der(self.key).map_err(key_error)
    }
    fn sign_pkcs1v15_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.token.sign(self.key, msg).map_err(key_error)
    }
    fn sign_pkcs1v15(&self, hash: SignHash, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.token.sign_with(self.key, hash, msg).map_err(key_error)
    }
}

/// A token key with its certificate, borrowing the token (several keys of one token sign in
/// one session: a process initializes a PKCS#11 module once).
pub struct TokenSigner<'t> {
    key: TokenKey<'t>,
    cert: Certificate,
}

impl<'t> TokenSigner<'t> {
    /// `key` signing for `cert` (the caller made `cert` for `key`).
    pub fn new(key: TokenKey<'t>, cert: Certificate) -> Self {
        Self { key, cert }
    }
}

impl Signer for TokenSigner<'_> {
    fn certificate(&self) -> &Certificate {
        &self.cert
    }
    fn sign_pkcs1v15_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.key.sign_pkcs1v15_sha256(msg)
    }
}

/// A [`Signer`] whose key lives in a token: the token session, the key and its certificate.
pub struct Pkcs11Signer {
    token: Token,
    key: ObjectHandle,
    cert: Certificate,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("token", &self.token)
            .field("cert", &self.cert.subject())
            .finish()
    }
}

impl Pkcs11Signer {
    /// Open the token `key_uri` names, find its private key and check that it is the key of
    /// `cert`.
    pub fn open(
        key_uri: &Pkcs11Uri,
        access: &TokenAccess,
        cert: Certificate,
    ) -> Result<Self, Pkcs11Error> {
        let token = Token::open(key_uri, access, false)?;
        let key = token.private_key(key_uri)?;
        let have = token.public_key_der(key)?;
        let want = cert.public_key_der().map_err(|e| {
            Token::err(
                key_uri,
                format!("the certificate's public key: {e}"),
                "give an RSA certificate",
            )
        })?;
        if have != want {
            return Err(Token::err(
                key_uri,
                format!(
                    "the token key does not match the certificate {}",
                    cert.subject()
                ),
                "pair the key with the certificate made for it",
            ));
        }
        Ok(Self { token, key, cert })
    }

    /// The URI of the key.
    pub fn uri(&self) -> &Pkcs11Uri {
        self.token.uri()
    }
}

impl Signer for Pkcs11Signer {
    fn certificate(&self) -> &Certificate {
        &self.cert
    }
    fn sign_pkcs1v15_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.token.sign(self.key, msg).map_err(key_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_attributes_are_parsed_and_reencoded() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=vmseal%20org;object=db;id=%01%02;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("vmseal org"));
        assert_eq!(u.object.as_deref(), Some("db"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(
            u.module_path.as_deref(),
            Some(Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(
            u.to_string(),
            "pkcs11:token=vmseal%20org;object=db;type=private;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so"
        );
        assert_eq!(Pkcs11Uri::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn pin_value_is_refused_without_echoing_it() {
        let e = Pkcs11Uri::parse("pkcs11:token=t;object=k?pin-value=12345678")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pin-value"), "{e}");
        assert!(!e.contains("12345678"), "{e}");
        assert!(e.starts_with("pkcs11:token=t;object=k:"), "{e}");
    }

    #[test]
    fn malformed_uris_are_errors() {
        for bad in [
            "token=t",
            "pkcs11:token",
            "pkcs11:colour=blue",
            "pkcs11:id=%zz",
            "pkcs11:slot-id=x",
            "pkcs11:token=t?colour=blue",
        ] {
            assert!(Pkcs11Uri::parse(bad).is_err(), "{bad}");
        }
        assert!(Pkcs11Uri::parse("pkcs11:token=t;x-vendor=1").is_ok());
    }
}
