//! `TPM2_MakeCredential` in software, and the secret wrapped under the credential.
//!
//! Credential activation proves that an attestation key (AK) lives in the same TPM as an
//! endorsement key (EK): the verifier protects a credential so that only a TPM that holds
//! the EK's private key **and** has an object with the AK's Name loaded can recover it
//! (`TPM2_ActivateCredential`). The scheme is TCG *TPM 2.0 Library* Part 1 §24 "Credential
//! Protection" (with §11.4.9 KDFa, §11.4.10.3 KDFe, §C.6/§C.7 the seed's encryption), the
//! command Part 3 §12.6 `TPM2_MakeCredential`; `tpm2_makecredential --tcti none` computes the
//! same in software, and `tpm2_activatecredential` accepts both (`builder/tests/attest_serve.rs`).
//!
//! With `H` the EK's `nameAlg` (SHA-256) and `seed` random:
//! 1. the seed goes to the EK: RSA-OAEP(`H`, label `"IDENTITY\0"`) for an RSA EK; for an ECC
//!    EK an ephemeral key `e`, `Z = x(e·EK)`, `seed = KDFe(H, Z, "IDENTITY", x(e·G), x(EK),
//!    |H|)` and the ephemeral point is what is sent (`TPM2B_ENCRYPTED_SECRET`);
//! 2. `symKey = KDFa(H, seed, "STORAGE", Name(AK), "", keyBits of the EK's symmetric)`,
//!    `encIdentity = AES-CFB(symKey, IV 0, TPM2B_DIGEST(credential))`;
//! 3. `hmacKey = KDFa(H, seed, "INTEGRITY", "", "", |H|)`, `outerHMAC = HMAC-H(hmacKey,
//!    encIdentity || Name(AK))`; the `TPM2B_ID_OBJECT` is `TPM2B_DIGEST(outerHMAC) ||
//!    encIdentity`.
//!
//! The secret itself is never given to the TPM: the credential is a fresh AES-256 key, and the
//! secret is sent as AES-256-GCM under it ([`wrap_secret`]), so only the TPM that activates the
//! credential can read it.
//!
//! What it does not do: judge whether the EK is a real TPM's (an EK certificate chain to a
//! manufacturer, or an allow list of EKs, is the deployment's choice — `docs/attestation.md`).
//! EKs: RSA 2048 (any size the `rsa` crate takes) or ECC NIST P-256, `nameAlg` SHA-256,
//! symmetric AES-128/256 in CFB mode — the TCG EK Credential Profile's default templates L-1
//! and L-2, which `tpm2_createek -G rsa|ecc` creates. Bad input is an error, never a panic.

use aes::cipher::KeyIvInit as _;
use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use hmac::Mac as _;
use policies::quote::{AlgId, EccCurve, PublicKey, parse_public2b};
use policies::tcg::HashAlg;
use sha2::{Digest as _, Sha256};

/// The size of a SHA-256 digest: the seed, the HMAC key and the credential.
const DIGEST: usize = 32;
/// The bytes of a credential (an AES-256 key; at most the EK nameAlg's digest size).
pub const CREDENTIAL_BYTES: usize = 32;
/// The GCM nonce of [`wrap_secret`].
pub const GCM_IV_BYTES: usize = 12;
/// The associated data of [`wrap_secret`]: a version tag, then the attestation nonce.
pub const WRAP_AAD_PREFIX: &[u8] = b"vmseal-secret-v1";
/// The magic and version `tpm2_makecredential -o` writes before its two TPM2Bs.
pub const TPM2_TOOLS_MAGIC: u32 = 0xBADC_C0DE;

/// An EK's public key, as `TPM2_MakeCredential` needs it.
#[derive(Clone, Debug)]
pub struct Ek {
    key: EkKey,
    /// `symmetric.keyBits`: 128 or 256.
    sym_bits: u16,
    /// The EK's Name (`000b || SHA-256(TPMT_PUBLIC)`), hex — for the log.
    pub name: String,
}

#[derive(Clone, Debug)]
enum EkKey {
    Rsa(Box<rsa::PublicKey>),
    P256(p256::PublicKey),
}

impl Ek {
    /// Parse an EK's `TPM2B_PUBLIC` (`tpm2_createek -u`). `Err` says what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let p = parse_public2b(bytes).map_err(|e| format!("not a TPM2B_PUBLIC: {e}"))?;
        if p.name_alg != HashAlg::SHA256 {
            return Err(format!(
                "nameAlg {:#06x}, vmseal makes credentials for SHA-256 EKs (the default EK templates)",
                p.name_alg.0
            ));
        }
        let attrs = p.attributes;
        use policies::quote::ObjectAttributes as A;
        if !attrs.has(A::RESTRICTED | A::DECRYPT | A::FIXED_TPM) || attrs.has(A::SIGN) {
            return Err(format!(
                "objectAttributes {:#010x}: an EK is a restricted decryption key fixed to its TPM",
                attrs.0
            ));
        }
        if p.symmetric != AlgId::AES
            || p.symmetric_mode != AlgId::CFB
            || !matches!(p.symmetric_bits, 128 | 256)
        {
            return Err(format!(
                "symmetric {:#06x}/{} bits/mode {:#06x}: an EK's is AES-128 or AES-256 in CFB mode",
                p.symmetric.0, p.symmetric_bits, p.symmetric_mode.0
            ));
        }
        let key = match p.key {
            PublicKey::Rsa {
                key_bits,
                exponent,
                modulus,
            } => {
                if usize::from(key_bits) != modulus.len() * 8 {
                    return Err(format!(
                        "a {}-byte modulus for keyBits {key_bits}",
                        modulus.len()
                    ));
                }
                let e = if exponent == 0 { 65537 } else { exponent };
                let k = rsa::PublicKey::new(
                    rsa::BoxedUint::from_be_slice_vartime(modulus),
                    rsa::BoxedUint::from(u64::from(e)),
                )
                .map_err(|err| format!("not a usable RSA public key: {err}"))?;
                EkKey::Rsa(Box::new(k))
            }
            PublicKey::Ecc { curve, x, y, .. } => {
                if curve != EccCurve::NIST_P256 {
                    return Err(format!(
                        "curve {:#06x}: vmseal makes credentials for NIST P-256 EKs",
                        curve.0
                    ));
                }
                let (Some(x), Some(y)) = (pad32(x), pad32(y)) else {
                    return Err("a coordinate longer than 32 bytes".into());
                };
                let mut sec1 = vec![4u8];
                sec1.extend(x);
                sec1.extend(y);
                EkKey::P256(
                    p256::PublicKey::from_sec1_bytes(&sec1)
                        .map_err(|_| "not a point on P-256".to_string())?,
                )
            }
        };
        let mut name = HashAlg::SHA256.0.to_be_bytes().to_vec();
        name.extend(Sha256::digest(p.bytes));
        Ok(Self {
            key,
            sym_bits: p.symmetric_bits,
            name: hex::encode(name),
        })
    }

    /// `rsa-BITS` or `ecc-p256`.
    pub fn kind(&self) -> String {
        match &self.key {
            EkKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts as _;
                format!("rsa-{}", k.size() * 8)
            }
            EkKey::P256(_) => "ecc-p256".into(),
        }
    }
}

/// Left-pad a big-endian coordinate to 32 bytes.
fn pad32(v: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    out.get_mut(32usize.checked_sub(v.len())?..)?
        .copy_from_slice(v);
    Some(out)
}

/// What `TPM2_MakeCredential` returns: `TPM2_ActivateCredential`'s two inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The `TPM2B_ID_OBJECT` (with its size): `TPM2B_DIGEST(outerHMAC) || encIdentity`.
    pub id_object: Vec<u8>,
    /// The `TPM2B_ENCRYPTED_SECRET` (with its size): the seed, encrypted to the EK.
    pub encrypted_secret: Vec<u8>,
}

impl Credential {
    /// The file `tpm2_makecredential -o` writes and `tpm2_activatecredential -i` reads:
    /// `u32 0xBADCC0DE | u32 1 | TPM2B_ID_OBJECT | TPM2B_ENCRYPTED_SECRET` (big-endian).
    pub fn tpm2_tools_blob(&self) -> Vec<u8> {
        let mut out = TPM2_TOOLS_MAGIC.to_be_bytes().to_vec();
        out.extend(1u32.to_be_bytes());
        out.extend(&self.id_object);
        out.extend(&self.encrypted_secret);
        out
    }
}

/// KDFa with SHA-256 (Part 1 §11.4.10.2, SP 800-108 counter mode over HMAC):
/// `HMAC(key, i || label || 00 || contextU || contextV || bits)` for i = 1, 2, …, truncated
/// to `bits` (a multiple of 8).
pub fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let want = (bits / 8) as usize;
    let mut out = Vec::with_capacity(want + DIGEST);
    let mut counter: u32 = 1;
    while out.len() < want {
        // HMAC takes a key of any length: new_from_slice cannot fail.
        let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
            break;
        };
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend(mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(want);
    out
}

/// KDFe with SHA-256 (Part 1 §11.4.10.3, SP 800-56A concatenation KDF):
/// `H(i || Z || label || 00 || partyUInfo || partyVInfo)` for i = 1, 2, …, truncated to
/// `bits`.
pub fn kdfe(z: &[u8], label: &str, party_u: &[u8], party_v: &[u8], bits: u32) -> Vec<u8> {
    let want = (bits / 8) as usize;
    let mut out = Vec::with_capacity(want + DIGEST);
    let mut counter: u32 = 1;
    while out.len() < want {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(label.as_bytes());
        h.update([0]);
        h.update(party_u);
        h.update(party_v);
        out.extend(h.finalize());
        counter += 1;
    }
    out.truncate(want);
    out
}

/// Random bytes from the OS.
pub fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| format!("the OS RNG failed: {e}"))?;
    Ok(b)
}

fn tpm2b(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let n = u16::try_from(bytes.len()).map_err(|_| "a TPM2B over 65535 bytes".to_string())?;
    let mut out = n.to_be_bytes().to_vec();
    out.extend(bytes);
    Ok(out)
}

/// `TPM2_MakeCredential(ek, credential, ak_name)` with a fresh random seed. `ak_name` is the
/// AK's Name (`nameAlg || H(TPMT_PUBLIC)`); `credential` at most 32 bytes.
pub fn make_credential(ek: &Ek, ak_name: &[u8], credential: &[u8]) -> Result<Credential, String> {
    if credential.is_empty() || credential.len() > DIGEST {
        return Err(format!(
            "a credential of {} bytes, TPM2_MakeCredential takes 1 to {DIGEST}",
            credential.len()
        ));
    }
    let (seed, encrypted_secret) = match &ek.key {
        EkKey::Rsa(k) => {
            let seed = random::<DIGEST>()?;
            let padding = rsa::Oaep::<Sha256>::new_with_label(b"IDENTITY\0".to_vec());
            let enc = k
                .encrypt(&mut getrandom::SysRng, padding, &seed)
                .map_err(|e| format!("RSA-OAEP to the EK: {e}"))?;
            (seed.to_vec(), tpm2b(&enc)?)
        }
        EkKey::P256(q) => {
            // A valid scalar: retry the (2^-32-likely) out-of-range draws.
            let mut eph = None;
            for _ in 0..8 {
                if let Ok(k) = p256::SecretKey::from_slice(&random::<32>()?) {
                    eph = Some(k);
                    break;
                }
            }
            let eph = eph.ok_or("the OS RNG gave no valid P-256 scalar")?;
            let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), q.as_affine());
            let eph_point = eph.public_key().to_sec1_bytes();
            let ek_point = q.to_sec1_bytes();
            // Uncompressed SEC1: 04 || x || y.
            let (Some(ex), Some(ey), Some(qx)) = (
                eph_point.get(1..33),
                eph_point.get(33..65),
                ek_point.get(1..33),
            ) else {
                return Err("a P-256 point not in uncompressed form".into());
            };
            let seed = kdfe(
                shared.raw_secret_bytes().as_slice(),
                "IDENTITY",
                ex,
                qx,
                (DIGEST * 8) as u32,
            );
            // TPMS_ECC_POINT: TPM2B x || TPM2B y.
            let mut point = tpm2b(ex)?;
            point.extend(tpm2b(ey)?);
            (seed, tpm2b(&point)?)
        }
    };
    let sym_key = kdfa(&seed, "STORAGE", ak_name, &[], u32::from(ek.sym_bits));
    let mut enc_identity = tpm2b(credential)?;
    let iv = [0u8; 16];
    match ek.sym_bits {
        128 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(&sym_key, &iv)
            .map_err(|e| format!("AES-128-CFB: {e}"))?
            .encrypt(&mut enc_identity),
        _ => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(&sym_key, &iv)
            .map_err(|e| format!("AES-256-CFB: {e}"))?
            .encrypt(&mut enc_identity),
    }
    let hmac_key = kdfa(&seed, "INTEGRITY", &[], &[], (DIGEST * 8) as u32);
    let mut mac =
        hmac::Hmac::<Sha256>::new_from_slice(&hmac_key).map_err(|e| format!("HMAC key: {e}"))?;
    mac.update(&enc_identity);
    mac.update(ak_name);
    let outer = mac.finalize().into_bytes();
    let mut id = tpm2b(&outer)?;
    id.extend(enc_identity);
    Ok(Credential {
        id_object: tpm2b(&id)?,
        encrypted_secret,
    })
}

/// The secret under the credential: AES-256-GCM with key `credential` (32 bytes), a random
/// 12-byte IV, and associated data `"vmseal-secret-v1" || nonce` (the attestation nonce, so
/// the ciphertext belongs to this exchange). Returns `(iv, ciphertext || 16-byte tag)`.
pub fn wrap_secret(
    credential: &[u8],
    nonce: &[u8],
    secret: &[u8],
) -> Result<([u8; GCM_IV_BYTES], Vec<u8>), String> {
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(credential)
        .map_err(|_| "the credential is not a 32-byte AES-256 key".to_string())?;
    let iv = random::<GCM_IV_BYTES>()?;
    let aad = [WRAP_AAD_PREFIX, nonce].concat();
    let ct = cipher
        .encrypt(
            &iv.into(),
            Payload {
                msg: secret,
                aad: &aad,
            },
        )
        .map_err(|_| "AES-256-GCM failed".to_string())?;
    Ok((iv, ct))
}

/// The inverse of [`wrap_secret`], what the appliance does with the activated credential.
pub fn unwrap_secret(
    credential: &[u8],
    nonce: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, String> {
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(credential)
        .map_err(|_| "the credential is not a 32-byte AES-256 key".to_string())?;
    let iv: [u8; GCM_IV_BYTES] = iv
        .try_into()
        .map_err(|_| format!("an IV of {} bytes, not {GCM_IV_BYTES}", iv.len()))?;
    let aad = [WRAP_AAD_PREFIX, nonce].concat();
    cipher
        .decrypt(
            &iv.into(),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| {
            "the secret does not decrypt: another credential, nonce or changed bytes".to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_matches_sp800_108_as_the_tpm_computes_it() {
        // One block: HMAC-SHA256(key, 00000001 || "STORAGE" 00 || u || v || 00000080).
        let key = [7u8; 32];
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(b"\x00\x00\x00\x01STORAGE\x00uv\x00\x00\x00\x80");
        let want = mac.finalize().into_bytes();
        assert_eq!(kdfa(&key, "STORAGE", b"u", b"v", 128), want[..16]);
        // Two blocks for 512 bits, the second with counter 2.
        assert_eq!(kdfa(&key, "X", b"", b"", 512).len(), 64);
    }

    #[test]
    fn a_wrapped_secret_opens_only_with_its_credential_and_nonce() {
        let cred = [1u8; 32];
        let (iv, ct) = wrap_secret(&cred, b"nonce", b"top secret").unwrap();
        assert_eq!(
            unwrap_secret(&cred, b"nonce", &iv, &ct).unwrap(),
            b"top secret"
        );
        assert!(unwrap_secret(&[2u8; 32], b"nonce", &iv, &ct).is_err());
        assert!(unwrap_secret(&cred, b"other", &iv, &ct).is_err());
        assert!(unwrap_secret(&cred, b"nonce", &iv[..4], &ct).is_err());
    }

    #[test]
    fn garbage_eks_are_errors() {
        for bad in [&[][..], &[0, 1, 0], &[0u8; 100], &[0xff; 300]] {
            assert!(Ek::parse(bad).is_err());
        }
    }
}
