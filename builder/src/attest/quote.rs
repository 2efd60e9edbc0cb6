//! The attestation key (AK) and the quote's signature under it.
//!
//! An AK arrives as a `TPM2B_PUBLIC` (`tpm2_createak -u`), a bare `TPMT_PUBLIC` (the
//! hypervisor-mode attest report's `key`), or a SubjectPublicKeyInfo in PEM or DER
//! (`tpm2_readpublic -f pem|der`, `openssl`). Only a TPM-format key says what the TPM will do
//! with it (`objectAttributes`), so only there the verifier can check that it is a
//! *restricted* signing key — the property that makes a signature over a
//! `TPM_GENERATED_VALUE` structure a proof that the TPM made it.
//!
//! Signatures: ECDSA over NIST P-256 and RSASSA-PKCS1-v1_5 / RSASSA-PSS (any salt length:
//! TPMs differ) with SHA-256, over the `TPMS_ATTEST` bytes (TPM 2.0 Part 1 §18.3, reference
//! §B.8 step 5), by the RustCrypto `p256` and `rsa` crates.

use der::Decode as _;
use p256::ecdsa::signature::Verifier as _;
use policies::quote::{AlgId, EccCurve, ObjectAttributes, Public, PublicKey, Signature};
use policies::quote::{SignatureValue, parse_public, parse_public2b};
use policies::tcg::HashAlg;
use sha2::Sha256;

use super::{InputError, Source};

/// A public key a quote is checked with.
#[derive(Clone, Debug)]
pub enum AkKey {
    /// ECDSA over P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// RSA.
    Rsa(rsa::PublicKey),
}

/// What the TPM says about an AK given in a TPM format.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TpmKeyInfo {
    /// `nameAlg`.
    pub name_alg: String,
    /// `objectAttributes`, hex.
    pub attributes: String,
    /// `restricted` and `sign` are set (and `decrypt` is not).
    pub restricted_signing: bool,
    /// `fixedTPM` is set: the private key cannot leave the TPM.
    pub fixed_tpm: bool,
    /// The key's Name (`nameAlg || H(TPMT_PUBLIC)`), hex — what credential activation binds.
    pub name: Option<String>,
}

/// A parsed AK.
#[derive(Clone, Debug)]
pub struct Ak {
    /// The key.
    pub key: AkKey,
    /// `TPM2B_PUBLIC`, `TPMT_PUBLIC`, `PEM` or `DER`.
    pub form: &'static str,
    /// The TPM's view of the key, for a TPM format.
    pub tpm: Option<TpmKeyInfo>,
}

impl Ak {
    /// `ecc-p256` or `rsa-BITS`.
    pub fn kind(&self) -> String {
        match &self.key {
            AkKey::P256(_) => "ecc-p256".into(),
            AkKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts as _;
                format!("rsa-{}", k.size() * 8)
            }
        }
    }
}

const AK_FIX: &str = "give the AK's TPM2B_PUBLIC (`tpm2_createak -u ak.pub`), or its public key as PEM/DER (`tpm2_readpublic -f pem`)";

/// The Name of a TPM object: `nameAlg || H_nameAlg(TPMT_PUBLIC)` (Part 1 §16).
fn tpm_name(p: &Public<'_>) -> Option<Vec<u8>> {
    let digest = policies::digest::hash(p.name_alg, p.bytes).ok()?;
    let mut name = p.name_alg.0.to_be_bytes().to_vec();
    name.extend(digest);
    Some(name)
}

/// Parse an AK in any of the accepted forms.
pub fn load_ak(bytes: &[u8], src: &Source) -> Result<Ak, InputError> {
    let text_start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if bytes
        .get(text_start..)
        .is_some_and(|b| b.starts_with(b"-----BEGIN"))
    {
        let text =
            std::str::from_utf8(bytes).map_err(|_| src.error("PEM", "not UTF-8 text", AK_FIX))?;
        let (label, der) = der::pem::decode_vec(text.trim().as_bytes())
            .map_err(|e| src.error("PEM", format!("not PEM: {e}"), AK_FIX))?;
        if label != "PUBLIC KEY" {
            return Err(src.error(
                "PEM",
                format!("a {label:?}, not a \"PUBLIC KEY\" (SubjectPublicKeyInfo)"),
                AK_FIX,
            ));
        }
        return from_spki(&der, src, "PEM");
    }
    if bytes.first() == Some(&0x30) {
        return from_spki(bytes, src, "DER");
    }
    let declared = bytes
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    let (public, form) = if declared == Some(bytes.len().saturating_sub(2)) {
        (
            parse_public2b(bytes).map_err(|e| src.error("TPM2B_PUBLIC", e.to_string(), AK_FIX))?,
            "TPM2B_PUBLIC",
        )
    } else {
        match parse_public(bytes) {
            Ok(p) => (p, "TPMT_PUBLIC"),
            Err(e) => {
                return Err(src.error(
                    "TPM2B_PUBLIC",
                    format!(
                        "not a TPM2B_PUBLIC (its size field says {} bytes, {} follow), TPMT_PUBLIC ({e}) or PEM/DER public key",
                        declared.unwrap_or(0),
                        bytes.len().saturating_sub(2)
                    ),
                    AK_FIX,
                ));
            }
        }
    };
    let key = match public.key {
        PublicKey::Ecc { curve, x, y, .. } => {
            if curve != EccCurve::NIST_P256 {
                return Err(src.error(
                    format!("{form}.parameters.curveID"),
                    format!(
                        "curve {:#06x}, vmseal verifies NIST P-256 (0x0003) AKs",
                        curve.0
                    ),
                    "create the AK on P-256 (`tpm2_createak -G ecc256`) or as RSA",
                ));
            }
            AkKey::P256(p256_point(x, y).ok_or_else(|| {
                src.error(format!("{form}.unique"), "not a point on P-256", AK_FIX)
            })?)
        }
        PublicKey::Rsa {
            key_bits,
            exponent,
            modulus,
        } => {
            if usize::from(key_bits) != modulus.len() * 8 {
                return Err(src.error(
                    format!("{form}.unique.rsa"),
                    format!("a {}-byte modulus for keyBits {key_bits}", modulus.len()),
                    AK_FIX,
                ));
            }
            let e = if exponent == 0 { 65537 } else { exponent };
            let key = rsa::PublicKey::new(
                rsa::BoxedUint::from_be_slice_vartime(modulus),
                rsa::BoxedUint::from(u64::from(e)),
            )
            .map_err(|err| {
                src.error(
                    format!("{form}.unique.rsa"),
                    format!("not a usable RSA public key: {err}"),
                    AK_FIX,
                )
            })?;
            AkKey::Rsa(key)
        }
    };
    let attrs = public.attributes;
    Ok(Ak {
        key,
        form,
        tpm: Some(TpmKeyInfo {
            name_alg: public
                .name_alg
                .name()
                .map_or_else(|| format!("{:#06x}", public.name_alg.0), str::to_string),
            attributes: format!("{:#010x}", attrs.0),
            restricted_signing: attrs.has(ObjectAttributes::RESTRICTED | ObjectAttributes::SIGN)
                && !attrs.has(ObjectAttributes::DECRYPT),
            fixed_tpm: attrs.has(ObjectAttributes::FIXED_TPM),
            name: tpm_name(&public).map(hex::encode),
        }),
    })
}

/// A P-256 key from its coordinates (each at most 32 bytes, left-padded).
fn p256_point(x: &[u8], y: &[u8]) -> Option<p256::ecdsa::VerifyingKey> {
    if x.len() > 32 || y.len() > 32 {
        return None;
    }
    let mut sec1 = [0u8; 65];
    sec1[0] = 4;
    sec1.get_mut(33 - x.len()..33)?.copy_from_slice(x);
    sec1.get_mut(65 - y.len()..65)?.copy_from_slice(y);
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok()
}

/// `id-ecPublicKey`.
const OID_EC: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `prime256v1`.
const OID_P256: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `rsaEncryption`.
const OID_RSA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

fn from_spki(der_bytes: &[u8], src: &Source, form: &'static str) -> Result<Ak, InputError> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(der_bytes).map_err(|e| {
        src.error(
            format!("{form} SubjectPublicKeyInfo"),
            format!("not a public key: {e}"),
            AK_FIX,
        )
    })?;
    let raw = spki.subject_public_key.raw_bytes();
    let key = if spki.algorithm.oid == OID_EC {
        let curve = spki
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<der::oid::ObjectIdentifier>().ok());
        if curve != Some(OID_P256) {
            return Err(src.error(
                format!("{form} SubjectPublicKeyInfo.algorithm"),
                format!("an EC key on {curve:?}, vmseal verifies P-256 AKs"),
                "create the AK on P-256 (`tpm2_createak -G ecc256`) or as RSA",
            ));
        }
        AkKey::P256(
            p256::ecdsa::VerifyingKey::from_sec1_bytes(raw).map_err(|_| {
                src.error(
                    format!("{form} SubjectPublicKeyInfo.subjectPublicKey"),
                    "not a point on P-256",
                    AK_FIX,
                )
            })?,
        )
    } else if spki.algorithm.oid == OID_RSA {
        use rsa::pkcs1::DecodeRsaPublicKey as _;
        AkKey::Rsa(rsa::PublicKey::from_pkcs1_der(raw).map_err(|e| {
            src.error(
                format!("{form} SubjectPublicKeyInfo.subjectPublicKey"),
                format!("not an RSA public key: {e}"),
                AK_FIX,
            )
        })?)
    } else {
        return Err(src.error(
            format!("{form} SubjectPublicKeyInfo.algorithm"),
            format!("{}: neither EC nor RSA", spki.algorithm.oid),
            AK_FIX,
        ));
    };
    Ok(Ak {
        key,
        form,
        tpm: None,
    })
}

/// Check that `sig` fits `ak` (scheme and hash vmseal verifies). A mismatch is bad input:
/// such a signature cannot be checked at all.
pub fn check_scheme(
    ak: &Ak,
    sig: &Signature<'_>,
    sig_src: &Source,
    ak_src: &Source,
) -> Result<(), InputError> {
    if sig.hash != HashAlg::SHA256 {
        return Err(sig_src.error(
            "TPMT_SIGNATURE.hash",
            format!(
                "{} ({:#06x}), vmseal verifies SHA-256 signatures",
                sig.hash.name().unwrap_or("unknown"),
                sig.hash.0
            ),
            "quote with `tpm2_quote -g sha256` and an AK whose scheme hash is SHA-256",
        ));
    }
    let fits = matches!(
        (&ak.key, sig.alg),
        (AkKey::P256(_), AlgId::ECDSA) | (AkKey::Rsa(_), AlgId::RSASSA | AlgId::RSAPSS)
    );
    if !fits {
        return Err(ak_src.error(
            ak.form,
            format!(
                "an {} key, but the signature is {}",
                ak.kind(),
                sig.alg.name().unwrap_or("unknown")
            ),
            "give the AK that made this quote (the one `tpm2_quote -c` used)",
        ));
    }
    Ok(())
}

/// Whether `sig` (of a scheme [`check_scheme`] accepted) is a signature by `ak` over `msg`.
/// `Err` says why not.
pub fn verify_signature(ak: &Ak, msg: &[u8], sig: &Signature<'_>) -> Result<(), String> {
    match (&ak.key, sig.value) {
        (AkKey::P256(key), SignatureValue::Ecc { r, s }) => {
            let field = |v: &[u8]| -> Option<p256::FieldBytes> {
                let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
                let v = v.get(start..)?;
                if v.len() > 32 {
                    return None;
                }
                let mut out = p256::FieldBytes::default();
                out.get_mut(32 - v.len()..)?.copy_from_slice(v);
                Some(out)
            };
            let (Some(r), Some(s)) = (field(r), field(s)) else {
                return Err("the ECDSA r or s is longer than a P-256 integer".into());
            };
            let sig = p256::ecdsa::Signature::from_scalars(r, s)
                .map_err(|_| "the ECDSA r or s is zero or not below the group order".to_string())?;
            key.verify(msg, &sig)
                .map_err(|_| "the ECDSA P-256 signature does not verify under the AK".into())
        }
        (AkKey::Rsa(key), SignatureValue::Rsa { sig: bytes }) => {
            let result = if sig.alg == AlgId::RSAPSS {
                let s = rsa::pss::Signature::try_from(bytes).map_err(|e| e.to_string())?;
                rsa::pss::VerifyingKey::<Sha256>::new_with_auto_salt_len(key.clone())
                    .verify(msg, &s)
            } else {
                let s = rsa::pkcs1v15::Signature::try_from(bytes).map_err(|e| e.to_string())?;
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone()).verify(msg, &s)
            };
            result.map_err(|_| {
                format!(
                    "the {} signature does not verify under the AK",
                    sig.alg.name().unwrap_or("RSA")
                )
            })
        }
        _ => Err("the signature's scheme does not fit the key".into()),
    }
}
