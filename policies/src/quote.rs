//! The TPM 2.0 structures a quote verifier reads: the signed `TPMS_ATTEST` of a `TPM2_Quote`,
//! its `TPMT_SIGNATURE`, and the attestation key's `TPMT_PUBLIC` / `TPM2B_PUBLIC`.
//!
//! Byte layouts: TCG *TPM 2.0 Library* Part 2 — §10.12.12 `TPMS_ATTEST`, §10.11.1
//! `TPMS_CLOCK_INFO`, §10.12.1 `TPMS_QUOTE_INFO`, §10.9.7 `TPML_PCR_SELECTION`, §11.3.4
//! `TPMT_SIGNATURE`, §12.2.4 `TPMT_PUBLIC`, §12.2.3.5/6 `TPMS_RSA_PARMS`/`TPMS_ECC_PARMS`,
//! §8.3 `TPMA_OBJECT`; and `shared/reference/tpm-tis-and-commands.md` §B.7–B.8 (a quote taken
//! from swtpm, decoded field by field). Integers are big-endian; a `TPM2B_*` is a u16 size then
//! that many bytes. These are the bytes `tpm2_quote -m` (TPMS_ATTEST), `tpm2_quote -s`
//! (TPMT_SIGNATURE) and `tpm2_createak -u` (TPM2B_PUBLIC) write.
//!
//! Parsing only: the checks that need a hash or a public-key algorithm (the signature, the PCR
//! digest, the nonce) are the verifier's (`vmseal attest verify`). What *is* checked here is
//! what makes the bytes a quote at all: the magic `TPM_GENERATED_VALUE`, the type
//! `TPM_ST_ATTEST_QUOTE`, selections of PCRs 0–23 only, no bytes after the last field.
//!
//! No allocation, no hashing; bad input gives a [`QuoteError`] naming the field (and the
//! offset, for a short input), never a panic (fuzzed by `fuzz/fuzz_targets/tpms_attest.rs`,
//! `tpmt_signature.rs`, `tpm2b_public.rs`). Values that come from the bytes (algorithms,
//! curves, attributes) are integer newtypes, so an unknown one stays representable.

use core::fmt;

use crate::tcg::HashAlg;
use crate::tpm2::{MAX_BANKS, PcrSet};

/// `TPM_GENERATED_VALUE`: the first four bytes of every structure the TPM signs itself. A
/// restricted signing key never signs external data that starts with it (Part 1 §34.2), so a
/// signature over bytes with this magic proves that the TPM made them.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;

/// `TPM_ST` of an attestation structure.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AttestType(pub u16);

impl AttestType {
    /// `TPM_ST_ATTEST_QUOTE`: the result of `TPM2_Quote`.
    pub const QUOTE: Self = Self(0x8018);
}

/// `TPM_ALG_ID` of a key type, signature scheme, symmetric or KDF algorithm (Part 2 §6.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AlgId(pub u16);

impl AlgId {
    /// `TPM_ALG_RSA`.
    pub const RSA: Self = Self(0x0001);
    /// `TPM_ALG_KEYEDHASH`.
    pub const KEYEDHASH: Self = Self(0x0008);
    /// `TPM_ALG_NULL`.
    pub const NULL: Self = Self(0x0010);
    /// `TPM_ALG_RSASSA` (PKCS#1 v1.5 signatures).
    pub const RSASSA: Self = Self(0x0014);
    /// `TPM_ALG_RSAES`.
    pub const RSAES: Self = Self(0x0015);
    /// `TPM_ALG_RSAPSS`.
    pub const RSAPSS: Self = Self(0x0016);
    /// `TPM_ALG_OAEP`.
    pub const OAEP: Self = Self(0x0017);
    /// `TPM_ALG_ECDSA`.
    pub const ECDSA: Self = Self(0x0018);
    /// `TPM_ALG_ECDH`.
    pub const ECDH: Self = Self(0x0019);
    /// `TPM_ALG_ECDAA`.
    pub const ECDAA: Self = Self(0x001A);
    /// `TPM_ALG_SM2`.
    pub const SM2: Self = Self(0x001B);
    /// `TPM_ALG_ECSCHNORR`.
    pub const ECSCHNORR: Self = Self(0x001C);
    /// `TPM_ALG_ECMQV`.
    pub const ECMQV: Self = Self(0x001D);
    /// `TPM_ALG_ECC`.
    pub const ECC: Self = Self(0x0023);
    /// `TPM_ALG_SYMCIPHER`.
    pub const SYMCIPHER: Self = Self(0x0025);
    /// `TPM_ALG_AES`.
    pub const AES: Self = Self(0x0006);
    /// `TPM_ALG_CFB` (a block cipher mode).
    pub const CFB: Self = Self(0x0043);

    /// The spec name, for messages.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::RSA => "rsa",
            Self::KEYEDHASH => "keyedhash",
            Self::NULL => "null",
            Self::RSASSA => "rsassa",
            Self::RSAES => "rsaes",
            Self::RSAPSS => "rsapss",
            Self::OAEP => "oaep",
            Self::ECDSA => "ecdsa",
            Self::ECDH => "ecdh",
            Self::ECDAA => "ecdaa",
            Self::SM2 => "sm2",
            Self::ECSCHNORR => "ecschnorr",
            Self::ECMQV => "ecmqv",
            Self::ECC => "ecc",
            Self::SYMCIPHER => "symcipher",
            Self::AES => "aes",
            Self::CFB => "cfb",
            _ => return None,
        })
    }
}

/// `TPM_ECC_CURVE` (Part 2 §6.4).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EccCurve(pub u16);

impl EccCurve {
    /// `TPM_ECC_NIST_P256`.
    pub const NIST_P256: Self = Self(0x0003);
    /// `TPM_ECC_NIST_P384`.
    pub const NIST_P384: Self = Self(0x0004);
    /// `TPM_ECC_NIST_P521`.
    pub const NIST_P521: Self = Self(0x0005);
}

/// `TPMA_OBJECT` (Part 2 §8.3): the attributes of a key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    /// `fixedTPM`: the key cannot leave this TPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// `stClear`.
    pub const ST_CLEAR: u32 = 1 << 2;
    /// `fixedParent`.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// `sensitiveDataOrigin`: the TPM generated the private part.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// `userWithAuth`.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// `adminWithPolicy`.
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    /// `noDA`.
    pub const NO_DA: u32 = 1 << 10;
    /// `encryptedDuplication`.
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    /// `restricted`: signs only TPM-made structures (or digests the TPM checked).
    pub const RESTRICTED: u32 = 1 << 16;
    /// `decrypt`.
    pub const DECRYPT: u32 = 1 << 17;
    /// `sign` (`encrypt` for symmetric keys).
    pub const SIGN: u32 = 1 << 18;

    /// Whether every bit of `mask` is set.
    pub const fn has(self, mask: u32) -> bool {
        self.0 & mask == mask
    }
}

/// Most selections a quote may carry: one per bank a TPM can have ([`MAX_BANKS`]).
pub const MAX_SELECTIONS: usize = MAX_BANKS;

/// A `TPML_PCR_SELECTION`: `(bank, PCRs)` in the order the TPM hashed them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PcrSelection {
    entries: [(HashAlg, PcrSet); MAX_SELECTIONS],
    len: usize,
}

impl PcrSelection {
    /// The selections, in order.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, PcrSet)> + '_ {
        self.entries.iter().take(self.len).copied()
    }

    /// Number of selections.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `TPMS_CLOCK_INFO` (Part 2 §10.11.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since its clock was last set.
    pub clock: u64,
    /// TPM resets (reboots) since the TPM was cleared.
    pub reset_count: u32,
    /// Restarts (resume from hibernation) since the last reset.
    pub restart_count: u32,
    /// `safe`: the clock has not gone back since it was last reported.
    pub safe: bool,
}

/// A parsed `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Attest<'a> {
    /// `qualifiedSigner`: the Qualified Name of the signing key (`TPM2B_NAME` contents).
    pub qualified_signer: &'a [u8],
    /// `extraData`: the caller's qualifyingData (the nonce, or what binds it).
    pub extra_data: &'a [u8],
    /// `clockInfo`.
    pub clock_info: ClockInfo,
    /// `firmwareVersion` (vendor-defined).
    pub firmware_version: u64,
    /// `attested.quote.pcrSelect`.
    pub pcr_select: PcrSelection,
    /// `attested.quote.pcrDigest`: the hash of the selected PCR values, concatenated in
    /// selection order (banks as listed, PCRs ascending), with the signing scheme's hash.
    pub pcr_digest: &'a [u8],
}

/// The signature-specific part of a [`Signature`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SignatureValue<'a> {
    /// `TPMS_SIGNATURE_ECC`: the integers r and s, big-endian.
    Ecc {
        /// `signatureR`.
        r: &'a [u8],
        /// `signatureS`.
        s: &'a [u8],
    },
    /// `TPMS_SIGNATURE_RSA`: the signature, big-endian, the modulus' size.
    Rsa {
        /// `sig`.
        sig: &'a [u8],
    },
}

/// A parsed `TPMT_SIGNATURE` of a scheme vmseal verifies: ECDSA, RSASSA or RSAPSS.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Signature<'a> {
    /// `sigAlg`.
    pub alg: AlgId,
    /// The scheme's hash (`hash`).
    pub hash: HashAlg,
    /// The signature itself.
    pub value: SignatureValue<'a>,
}

/// The key-type-specific part of a [`Public`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PublicKey<'a> {
    /// `TPMS_RSA_PARMS` + `TPM2B_PUBLIC_KEY_RSA`.
    Rsa {
        /// `keyBits`.
        key_bits: u16,
        /// `exponent`; 0 means the default 2^16 + 1.
        exponent: u32,
        /// The modulus, big-endian.
        modulus: &'a [u8],
    },
    /// `TPMS_ECC_PARMS` + `TPMS_ECC_POINT`.
    Ecc {
        /// `curveID`.
        curve: EccCurve,
        /// The KDF scheme (`TPM_ALG_NULL` for a signing key).
        kdf: AlgId,
        /// The point's x coordinate, big-endian.
        x: &'a [u8],
        /// The point's y coordinate, big-endian.
        y: &'a [u8],
    },
}

/// A parsed `TPMT_PUBLIC` of an RSA or ECC key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Public<'a> {
    /// `type`: [`AlgId::RSA`] or [`AlgId::ECC`].
    pub object_type: AlgId,
    /// `nameAlg`: the hash of the key's Name.
    pub name_alg: HashAlg,
    /// `objectAttributes`.
    pub attributes: ObjectAttributes,
    /// `authPolicy`.
    pub auth_policy: &'a [u8],
    /// `symmetric.algorithm` (`TPM_ALG_NULL` for a signing key; AES for a storage key such
    /// as an EK, whose symmetric definition also encrypts the credential of
    /// `TPM2_MakeCredential`).
    pub symmetric: AlgId,
    /// `symmetric.keyBits` (0 when the algorithm is `TPM_ALG_NULL`).
    pub symmetric_bits: u16,
    /// `symmetric.mode` (`TPM_ALG_NULL` when the algorithm is; `TPM_ALG_CFB` 0x0043 for an EK).
    pub symmetric_mode: AlgId,
    /// `scheme.scheme` (`TPM_ALG_NULL`: any scheme the caller names).
    pub scheme: AlgId,
    /// The scheme's hash, when the scheme is not `TPM_ALG_NULL`.
    pub scheme_hash: Option<HashAlg>,
    /// The key.
    pub key: PublicKey<'a>,
    /// The whole `TPMT_PUBLIC`, as hashed into the key's Name (`nameAlg || H(these bytes)`).
    pub bytes: &'a [u8],
}

/// Why bytes are not the structure asked for. `Display` names the field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QuoteError {
    /// The input ends inside `field`, which starts at or before `offset`.
    Truncated {
        /// The field.
        field: &'static str,
        /// Where reading it started.
        offset: usize,
    },
    /// `count` bytes follow the last field, from `offset`.
    Trailing {
        /// Where the extra bytes start.
        offset: usize,
        /// How many.
        count: usize,
    },
    /// `TPMS_ATTEST.magic` is not [`TPM_GENERATED_VALUE`].
    Magic(u32),
    /// `TPMS_ATTEST.type` is not [`AttestType::QUOTE`].
    Type(u16),
    /// `TPML_PCR_SELECTION.count` over [`MAX_SELECTIONS`].
    SelectionCount(u32),
    /// A `sizeofSelect` over 4 bytes.
    SelectSize(u8),
    /// A selection of PCRs beyond 23 (bank, the bitmap).
    PcrBeyond(HashAlg, u32),
    /// A `TPMT_SIGNATURE.sigAlg` that is not ECDSA, RSASSA or RSAPSS.
    SignatureAlg(u16),
    /// A `TPMT_PUBLIC.type` that is not RSA or ECC.
    ObjectType(u16),
    /// A scheme whose details are not known (so its length is not either).
    Scheme(u16),
    /// The size of a `TPM2B_PUBLIC` is not the bytes that follow it.
    Size {
        /// The declared size.
        declared: u16,
        /// The bytes after the size field.
        actual: usize,
    },
    /// `clockInfo.safe` is neither 0 nor 1.
    Safe(u8),
}

impl fmt::Display for QuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { field, offset } => {
                write!(f, "{field}: the bytes end inside it (at offset {offset})")
            }
            Self::Trailing { offset, count } => {
                write!(f, "{count} byte(s) after the last field, from offset {offset}")
            }
            Self::Magic(m) => write!(
                f,
                "magic: {m:#010x}, not TPM_GENERATED_VALUE {TPM_GENERATED_VALUE:#010x} (not made by a TPM)"
            ),
            Self::Type(t) => write!(f, "type: {t:#06x}, not TPM_ST_ATTEST_QUOTE 0x8018"),
            Self::SelectionCount(n) => write!(
                f,
                "pcrSelect.count: {n} selections (a TPM has at most {MAX_SELECTIONS} banks)"
            ),
            Self::SelectSize(n) => write!(f, "pcrSelect.sizeofSelect: {n} bytes (at most 4)"),
            Self::PcrBeyond(alg, bits) => write!(
                f,
                "pcrSelect: bank {:#06x} selects PCRs beyond 23 (bitmap {bits:#010x}; a PC Client TPM has PCR 0-23)",
                alg.0
            ),
            Self::SignatureAlg(a) => write!(
                f,
                "sigAlg: {a:#06x} ({}), not ecdsa 0x0018, rsassa 0x0014 or rsapss 0x0016",
                AlgId(*a).name().unwrap_or("unknown")
            ),
            Self::ObjectType(t) => write!(
                f,
                "type: {t:#06x} ({}), not an rsa 0x0001 or ecc 0x0023 key",
                AlgId(*t).name().unwrap_or("unknown")
            ),
            Self::Scheme(s) => write!(f, "scheme: {s:#06x} is not a known scheme"),
            Self::Size { declared, actual } => {
                write!(f, "size: {declared} declared, {actual} bytes follow (not a TPM2B_PUBLIC)")
            }
            Self::Safe(v) => write!(f, "clockInfo.safe: {v}, not 0 or 1"),
        }
    }
}

impl core::error::Error for QuoteError {}

/// A big-endian cursor whose errors name the field and its offset.
struct Be<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Be<'a> {
    const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], QuoteError> {
        let short = QuoteError::Truncated { field, offset: self.pos };
        let end = self.pos.checked_add(n).ok_or(short)?;
        let s = self.buf.get(self.pos..end).ok_or(short)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], QuoteError> {
        let offset = self.pos;
        self.take(N, field)?.try_into().map_err(|_| QuoteError::Truncated { field, offset })
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, QuoteError> {
        self.array::<1>(field).map(|[b]| b)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, QuoteError> {
        self.array(field).map(u16::from_be_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, QuoteError> {
        self.array(field).map(u32::from_be_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, QuoteError> {
        self.array(field).map(u64::from_be_bytes)
    }

    /// A `TPM2B_*`: u16 size, then the bytes (returned without the size).
    fn tpm2b(&mut self, field: &'static str) -> Result<&'a [u8], QuoteError> {
        let n = self.u16(field)?;
        self.take(usize::from(n), field)
    }

    fn end(&self) -> Result<(), QuoteError> {
        match self.buf.len().saturating_sub(self.pos) {
            0 => Ok(()),
            count => Err(QuoteError::Trailing { offset: self.pos, count }),
        }
    }
}

/// Parse a `TPMS_ATTEST` that must be a quote (Part 2 §10.12.12, reference §B.7):
/// `magic u32 | type u16 | qualifiedSigner TPM2B_NAME | extraData TPM2B_DATA | clockInfo
/// {clock u64, resetCount u32, restartCount u32, safe u8} | firmwareVersion u64 |
/// TPMS_QUOTE_INFO {TPML_PCR_SELECTION, pcrDigest TPM2B_DIGEST}`, and nothing after it.
pub fn parse_attest(bytes: &[u8]) -> Result<Attest<'_>, QuoteError> {
    let mut r = Be::new(bytes);
    let magic = r.u32("magic")?;
    if magic != TPM_GENERATED_VALUE {
        return Err(QuoteError::Magic(magic));
    }
    let ty = r.u16("type")?;
    if ty != AttestType::QUOTE.0 {
        return Err(QuoteError::Type(ty));
    }
    let qualified_signer = r.tpm2b("qualifiedSigner")?;
    let extra_data = r.tpm2b("extraData")?;
    let clock = r.u64("clockInfo.clock")?;
    let reset_count = r.u32("clockInfo.resetCount")?;
    let restart_count = r.u32("clockInfo.restartCount")?;
    let safe = match r.u8("clockInfo.safe")? {
        0 => false,
        1 => true,
        v => return Err(QuoteError::Safe(v)),
    };
    let firmware_version = r.u64("firmwareVersion")?;
    let count = r.u32("pcrSelect.count")?;
    let n = usize::try_from(count)
        .ok()
        .filter(|n| *n <= MAX_SELECTIONS)
        .ok_or(QuoteError::SelectionCount(count))?;
    let mut pcr_select =
        PcrSelection { entries: [(HashAlg(0), PcrSet::EMPTY); MAX_SELECTIONS], len: n };
    for slot in pcr_select.entries.iter_mut().take(n) {
        let alg = HashAlg(r.u16("pcrSelect.hash")?);
        let size = r.u8("pcrSelect.sizeofSelect")?;
        if size > 4 {
            return Err(QuoteError::SelectSize(size));
        }
        let mut bits = [0u8; 4];
        for (dst, src) in bits.iter_mut().zip(r.take(usize::from(size), "pcrSelect.pcrSelect")?) {
            *dst = *src;
        }
        let set = u32::from_le_bytes(bits);
        if set & !PcrSet::ALL.0 != 0 {
            return Err(QuoteError::PcrBeyond(alg, set));
        }
        *slot = (alg, PcrSet(set));
    }
    let pcr_digest = r.tpm2b("pcrDigest")?;
    r.end()?;
    Ok(Attest {
        qualified_signer,
        extra_data,
        clock_info: ClockInfo { clock, reset_count, restart_count, safe },
        firmware_version,
        pcr_select,
        pcr_digest,
    })
}

/// Parse a `TPMT_SIGNATURE` (Part 2 §11.3.4) of scheme ECDSA (`hash u16 | r TPM2B | s TPM2B`)
/// or RSASSA / RSAPSS (`hash u16 | sig TPM2B`), and nothing after it.
pub fn parse_signature(bytes: &[u8]) -> Result<Signature<'_>, QuoteError> {
    let mut r = Be::new(bytes);
    let alg = AlgId(r.u16("sigAlg")?);
    let value = match alg {
        AlgId::ECDSA => {
            let hash = HashAlg(r.u16("signature.hash")?);
            let rr = r.tpm2b("signatureR")?;
            let s = r.tpm2b("signatureS")?;
            (hash, SignatureValue::Ecc { r: rr, s })
        }
        AlgId::RSASSA | AlgId::RSAPSS => {
            let hash = HashAlg(r.u16("signature.hash")?);
            (hash, SignatureValue::Rsa { sig: r.tpm2b("signature.sig")? })
        }
        other => return Err(QuoteError::SignatureAlg(other.0)),
    };
    r.end()?;
    Ok(Signature { alg, hash: value.0, value: value.1 })
}

/// `TPMT_SYM_DEF_OBJECT`: the algorithm, then key bits and mode unless it is NULL.
fn symmetric(r: &mut Be<'_>) -> Result<(AlgId, u16, AlgId), QuoteError> {
    let alg = AlgId(r.u16("parameters.symmetric.algorithm")?);
    if alg == AlgId::NULL {
        return Ok((alg, 0, AlgId::NULL));
    }
    let bits = r.u16("parameters.symmetric.keyBits")?;
    let mode = AlgId(r.u16("parameters.symmetric.mode")?);
    Ok((alg, bits, mode))
}

/// `TPMT_RSA_SCHEME` / `TPMT_ECC_SCHEME`: the scheme, then its details (Part 2 §11.2.3.2).
fn scheme(r: &mut Be<'_>) -> Result<(AlgId, Option<HashAlg>), QuoteError> {
    let alg = AlgId(r.u16("parameters.scheme.scheme")?);
    match alg {
        AlgId::NULL | AlgId::RSAES => Ok((alg, None)),
        AlgId::RSASSA
        | AlgId::RSAPSS
        | AlgId::OAEP
        | AlgId::ECDSA
        | AlgId::ECDH
        | AlgId::SM2
        | AlgId::ECSCHNORR
        | AlgId::ECMQV => Ok((alg, Some(HashAlg(r.u16("parameters.scheme.hashAlg")?)))),
        AlgId::ECDAA => {
            let h = HashAlg(r.u16("parameters.scheme.hashAlg")?);
            r.u16("parameters.scheme.count")?;
            Ok((alg, Some(h)))
        }
        other => Err(QuoteError::Scheme(other.0)),
    }
}

/// Parse a `TPMT_PUBLIC` (Part 2 §12.2.4) of an RSA or ECC key: `type | nameAlg |
/// objectAttributes u32 | authPolicy TPM2B | parameters | unique`, and nothing after it.
pub fn parse_public(bytes: &[u8]) -> Result<Public<'_>, QuoteError> {
    let mut r = Be::new(bytes);
    let object_type = AlgId(r.u16("type")?);
    if object_type != AlgId::RSA && object_type != AlgId::ECC {
        return Err(QuoteError::ObjectType(object_type.0));
    }
    let name_alg = HashAlg(r.u16("nameAlg")?);
    let attributes = ObjectAttributes(r.u32("objectAttributes")?);
    let auth_policy = r.tpm2b("authPolicy")?;
    let (symmetric, symmetric_bits, symmetric_mode) = symmetric(&mut r)?;
    let (scheme, scheme_hash) = scheme(&mut r)?;
    let key = if object_type == AlgId::RSA {
        let key_bits = r.u16("parameters.keyBits")?;
        let exponent = r.u32("parameters.exponent")?;
        let modulus = r.tpm2b("unique.rsa")?;
        PublicKey::Rsa { key_bits, exponent, modulus }
    } else {
        let curve = EccCurve(r.u16("parameters.curveID")?);
        let kdf = AlgId(r.u16("parameters.kdf.scheme")?);
        if kdf != AlgId::NULL {
            r.u16("parameters.kdf.hashAlg")?;
        }
        let x = r.tpm2b("unique.ecc.x")?;
        let y = r.tpm2b("unique.ecc.y")?;
        PublicKey::Ecc { curve, kdf, x, y }
    };
    r.end()?;
    Ok(Public {
        object_type,
        name_alg,
        attributes,
        auth_policy,
        symmetric,
        symmetric_bits,
        symmetric_mode,
        scheme,
        scheme_hash,
        key,
        bytes,
    })
}

/// Parse a `TPM2B_PUBLIC`: a u16 size that must equal the bytes after it, then a
/// [`parse_public`] `TPMT_PUBLIC`.
pub fn parse_public2b(bytes: &[u8]) -> Result<Public<'_>, QuoteError> {
    let mut r = Be::new(bytes);
    let declared = r.u16("size")?;
    let rest = bytes.get(2..).unwrap_or_default();
    if usize::from(declared) != rest.len() {
        return Err(QuoteError::Size { declared, actual: rest.len() });
    }
    parse_public(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A TPMS_ATTEST as swtpm 0.7 made it for `tpm2_quote -c ak.ctx -l sha256:0,1,2,3,4,5,6,7
    /// -q 00112233445566778899aabbccddeeff` (129 bytes; the layout of reference §B.7 with a
    /// 16-byte nonce and a 3-byte select).
    const QUOTE: [u8; 129] = [
        0xff, 0x54, 0x43, 0x47, // magic TPM_GENERATED_VALUE
        0x80, 0x18, // type TPM_ST_ATTEST_QUOTE
        0x00, 0x22, 0x00, 0x0b, 0xee, 0x55, 0xff, 0x19, 0xff, 0x01, 0x21, 0x81, 0x39, 0xdc, 0xd0,
        0xa5, 0xa6, 0xc0, 0x09, 0x7c, 0x40, 0x5c, 0x39, 0xcf, 0xc9, 0x0d, 0x2e, 0x4a, 0xc0, 0xd0,
        0x9c, 0x5c, 0x90, 0xbe, 0x51, 0xe1, // qualifiedSigner: 34 bytes
        0x00, 0x10, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
        0xdd, 0xee, 0xff, // extraData: 16 bytes
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xa2, // clock 930 ms
        0x00, 0x00, 0x00, 0x01, // resetCount 1
        0x00, 0x00, 0x00, 0x00, // restartCount 0
        0x01, // safe
        0x20, 0x19, 0x10, 0x23, 0x00, 0x16, 0x36, 0x36, // firmwareVersion
        0x00, 0x00, 0x00, 0x01, 0x00, 0x0b, 0x03, 0xff, 0x00, 0x00, // sha256, PCR 0-7
        0x00, 0x20, 0x7e, 0x18, 0xb3, 0xba, 0x34, 0x58, 0x8a, 0xd6, 0xb5, 0x86, 0x15, 0xc1, 0x56,
        0xdc, 0x25, 0xa0, 0xb3, 0x28, 0x82, 0x2b, 0xf0, 0x2d, 0x3b, 0x14, 0x78, 0x78, 0x28, 0xc3,
        0x07, 0xa5, 0xe1, 0x0e, // pcrDigest: 32 bytes
    ];

    /// `tpm2_createak -G ecc -g sha256 -s ecdsa -u ak.pub` (TPM2B_PUBLIC, 90 bytes).
    const AK_ECC: [u8; 90] = [
        0x00, 0x58, // size 88
        0x00, 0x23, 0x00, 0x0b, // type ECC, nameAlg SHA-256
        0x00, 0x05, 0x00,
        0x72, // fixedTPM fixedParent sensitiveDataOrigin userWithAuth restricted sign
        0x00, 0x00, // authPolicy: empty
        0x00, 0x10, // symmetric NULL
        0x00, 0x18, 0x00, 0x0b, // scheme ECDSA / SHA-256
        0x00, 0x03, // curve NIST P-256
        0x00, 0x10, // kdf NULL
        0x00, 0x20, 0xeb, 0xcc, 0x43, 0xde, 0xb0, 0xac, 0x83, 0xa4, 0x01, 0x03, 0xc9, 0x9f, 0x0d,
        0x82, 0xdd, 0xc0, 0x50, 0x27, 0x43, 0xf3, 0xb4, 0x42, 0x16, 0xe6, 0x59, 0x5c, 0x47, 0xd6,
        0xa4, 0x19, 0xb6, 0x8a, // x
        0x00, 0x20, 0xac, 0xfe, 0x6d, 0x37, 0x95, 0x00, 0xe5, 0x3d, 0xc9, 0xd4, 0xff, 0x07, 0x3e,
        0x0e, 0xb4, 0x9a, 0xe4, 0x07, 0x72, 0xf4, 0x3c, 0xe3, 0x6b, 0x95, 0x0a, 0xef, 0x2c, 0x9b,
        0xae, 0xac, 0xe9, 0x60, // y
    ];

    #[test]
    fn a_swtpm_quote_parses_field_by_field() {
        let q = parse_attest(&QUOTE).unwrap();
        assert_eq!(q.qualified_signer.len(), 34);
        assert_eq!(q.qualified_signer[..2], [0x00, 0x0b]);
        assert_eq!(q.extra_data, &QUOTE[44..60]);
        assert_eq!(
            q.clock_info,
            ClockInfo { clock: 930, reset_count: 1, restart_count: 0, safe: true }
        );
        assert_eq!(q.firmware_version, 0x2019_1023_0016_3636);
        let sel: Vec<_> = q.pcr_select.iter().collect();
        assert_eq!(sel, [(HashAlg::SHA256, PcrSet(0xff))]);
        assert_eq!(q.pcr_digest, &QUOTE[97..]);
    }

    #[test]
    fn every_truncation_names_a_field_and_never_panics() {
        for n in 0..QUOTE.len() {
            match parse_attest(&QUOTE[..n]) {
                Err(QuoteError::Truncated { offset, .. }) => assert!(offset <= n),
                other => panic!("{n}: {other:?}"),
            }
        }
        for n in 0..AK_ECC.len() - 2 {
            assert!(parse_public(&AK_ECC[2..2 + n]).is_err(), "{n}");
        }
    }

    #[test]
    fn wrong_magic_type_selection_and_trailing_bytes_are_refused() {
        let mut q = QUOTE;
        q[0] = 0xfe;
        assert_eq!(parse_attest(&q), Err(QuoteError::Magic(0xfe54_4347)));
        let mut q = QUOTE;
        q[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
        assert_eq!(parse_attest(&q), Err(QuoteError::Type(0x8017)));
        let mut q = QUOTE;
        q[88] = 9;
        assert_eq!(parse_attest(&q), Err(QuoteError::SelectionCount(9)));
        let mut q = QUOTE;
        q[91] = 5;
        assert_eq!(parse_attest(&q), Err(QuoteError::SelectSize(5)));
        let mut q = QUOTE.to_vec();
        q[91] = 4; // four bytes of select: PCR 24-31 would be the fourth
        q.insert(95, 0x01);
        assert_eq!(parse_attest(&q), Err(QuoteError::PcrBeyond(HashAlg::SHA256, 0x0100_00ff)));
        let mut q = QUOTE;
        q[76] = 2;
        assert_eq!(parse_attest(&q), Err(QuoteError::Safe(2)));
        let mut q = QUOTE.to_vec();
        q.push(0);
        assert_eq!(parse_attest(&q), Err(QuoteError::Trailing { offset: 129, count: 1 }));
    }

    #[test]
    fn signatures_of_each_scheme() {
        // ECDSA / SHA-256: sigAlg, hash, r (2 bytes), s (1 byte).
        let ecdsa = [0x00, 0x18, 0x00, 0x0b, 0x00, 0x02, 0xaa, 0xbb, 0x00, 0x01, 0xcc];
        assert_eq!(
            parse_signature(&ecdsa),
            Ok(Signature {
                alg: AlgId::ECDSA,
                hash: HashAlg::SHA256,
                value: SignatureValue::Ecc { r: &[0xaa, 0xbb], s: &[0xcc] },
            })
        );
        // RSASSA and RSAPSS / SHA-256: sigAlg, hash, sig (3 bytes).
        for alg in [0x14, 0x16] {
            let rsa = [0x00, alg, 0x00, 0x0b, 0x00, 0x03, 1, 2, 3];
            assert_eq!(
                parse_signature(&rsa),
                Ok(Signature {
                    alg: AlgId(u16::from(alg)),
                    hash: HashAlg::SHA256,
                    value: SignatureValue::Rsa { sig: &[1, 2, 3] },
                })
            );
            assert!(matches!(
                parse_signature(&rsa[..8]),
                Err(QuoteError::Truncated { field: "signature.sig", offset: 6 })
            ));
        }
        // HMAC (0x0005) and NULL are not quote signatures vmseal verifies.
        assert_eq!(parse_signature(&[0, 5, 0, 0xb]), Err(QuoteError::SignatureAlg(5)));
        assert_eq!(parse_signature(&[0, 0x10]), Err(QuoteError::SignatureAlg(0x10)));
        assert!(matches!(
            parse_signature(&[0x00, 0x18, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x00]),
            Err(QuoteError::Trailing { offset: 8, count: 1 })
        ));
    }

    #[test]
    fn an_ecc_ak_and_an_rsa_ak() {
        let p = parse_public2b(&AK_ECC).unwrap();
        assert_eq!(p.object_type, AlgId::ECC);
        assert_eq!(p.name_alg, HashAlg::SHA256);
        assert!(p.attributes.has(
            ObjectAttributes::FIXED_TPM | ObjectAttributes::RESTRICTED | ObjectAttributes::SIGN
        ));
        assert!(!p.attributes.has(ObjectAttributes::DECRYPT));
        assert_eq!((p.scheme, p.scheme_hash), (AlgId::ECDSA, Some(HashAlg::SHA256)));
        assert_eq!(p.bytes, &AK_ECC[2..]);
        match p.key {
            PublicKey::Ecc { curve, kdf, x, y } => {
                assert_eq!((curve, kdf), (EccCurve::NIST_P256, AlgId::NULL));
                assert_eq!((x, y), (&AK_ECC[24..56], &AK_ECC[58..90]));
            }
            other => panic!("{other:?}"),
        }
        // `tpm2_createak -G rsa -g sha256 -s rsassa`: RSA 2048, exponent 0 (= 65537).
        let mut rsa = Vec::from([
            0x01, 0x18, // size 280
            0x00, 0x01, 0x00, 0x0b, 0x00, 0x05, 0x00, 0x72, 0x00, 0x00, // RSA, SHA-256, attrs
            0x00, 0x10, 0x00, 0x14, 0x00, 0x0b, // sym NULL, RSASSA / SHA-256
            0x08, 0x00, 0x00, 0x00, 0x00, 0x00, // keyBits 2048, exponent 0
            0x01, 0x00, // modulus: 256 bytes
        ]);
        rsa.extend([0xc5; 256]);
        let p = parse_public2b(&rsa).unwrap();
        assert_eq!((p.object_type, p.scheme), (AlgId::RSA, AlgId::RSASSA));
        assert!(matches!(
            p.key,
            PublicKey::Rsa { key_bits: 2048, exponent: 0, modulus } if modulus.len() == 256
        ));
        // The size must be exact; a KEYEDHASH object is not a signing key vmseal checks.
        rsa[1] = 0x17;
        assert_eq!(parse_public2b(&rsa), Err(QuoteError::Size { declared: 0x117, actual: 280 }));
        assert_eq!(parse_public(&[0, 8, 0, 0xb]), Err(QuoteError::ObjectType(8)));
        // An unknown scheme has no known length.
        let mut bad = AK_ECC;
        bad[15] = 0x99;
        assert_eq!(parse_public2b(&bad), Err(QuoteError::Scheme(0x0099)));
    }
}
