//! Signed PCR 11 policies, systemd-compatible: what `systemd-measure sign` (systemd 252,
//! `src/boot/measure.c → verb_sign`) writes and `systemd-stub` carries as `.pcrsig`, with the
//! public key as `.pcrpkey` — so `systemd-cryptenroll --tpm2-public-key` / `systemd-cryptsetup`
//! unlock a disk only under an appliance the org signed, and a key-release server can check
//! the same statement.
//!
//! For each bank and each boot phase:
//! - **PCR 11** as the stub leaves it (every measured section, [`policies::sections`]), then
//!   extended by each word of the phase (`enter-initrd:leave-initrd` → H("enter-initrd"),
//!   H("leave-initrd")), as `systemd-pcrphase` measures them.
//! - **`pol`**: the `TPM2_PolicyPCR` policy digest of a SHA-256 trial session (TPM 2.0 Part 3
//!   §23.7): SHA-256(0³² ‖ `TPM_CC_PolicyPCR` ‖ `TPML_PCR_SELECTION`{bank, PCR 11} ‖
//!   SHA-256(PCR 11 value)). Computed here; systemd 252 asks a TPM for it.
//! - **`sig`**: RSASSA-PKCS1-v1_5 over `pol` with the **bank's** hash (systemd 252 signs with
//!   `EVP_get_digestbyname(bank)`; for SHA-256, what `TPM2_PolicyAuthorize` checks with an
//!   empty policyRef), base64.
//! - **`pkfp`**: SHA-256 of the public key as PKCS#1 `RSAPublicKey` DER (OpenSSL's
//!   `i2d_PublicKey`, systemd's `pubkey_fingerprint`).
//!
//! JSON: `{"<bank>": [{"pcrs": [11], "pkfp": hex, "pol": hex, "sig": base64}, …one per phase]}`.

use base64::Engine as _;
use der::Decode as _;
use policies::tcg::HashAlg;
use serde_json::{Map, Value, json};
use sha2::Digest as _;
use signing::keys::RawKey;

/// The PCR a signed policy covers.
pub const PCR: u32 = policies::tcg::pcr::KERNEL_BOOT;
/// systemd-measure's default phases (`sign` without `--phase`), in its order.
pub const DEFAULT_PHASES: [&str; 4] = [
    "enter-initrd",
    "enter-initrd:leave-initrd",
    "enter-initrd:leave-initrd:sysinit",
    "enter-initrd:leave-initrd:sysinit:ready",
];
/// `TPM_CC_PolicyPCR` (TPM 2.0 Part 2 §6.5.2).
pub const TPM_CC_POLICY_PCR: u32 = 0x0000_017f;

/// Why a policy cannot be computed or signed.
#[derive(Debug, thiserror::Error)]
pub enum PcrSignError {
    /// A bank vmseal cannot hash, or a duplicate section.
    #[error("{0}")]
    Compute(String),
    /// The key is not an RSA key, or signing failed.
    #[error("{0}")]
    Key(#[from] signing::keys::KeyError),
    /// A phase is malformed.
    #[error(
        "phase {0:?}: words are separated by ':' and may not be empty — e.g. enter-initrd:leave-initrd"
    )]
    Phase(String),
}

/// PCR 11 in `bank` after the stub measured `sections` (`(name, VirtualSize bytes)`).
pub fn stub_pcr11(sections: &[(&str, &[u8])], bank: HashAlg) -> Result<Vec<u8>, PcrSignError> {
    let events = policies::predict::stub_events(sections, &[bank])
        .map_err(|e| PcrSignError::Compute(e.to_string()))?;
    pcr11_of(&events, bank)
}

/// [`stub_pcr11`] for sections known by `(name, VirtualSize, contents digest in bank)`: for a
/// build that hashes its inputs while streaming them.
pub fn stub_pcr11_from(
    sections: &[(&str, u64, Vec<u8>)],
    bank: HashAlg,
) -> Result<Vec<u8>, PcrSignError> {
    let sizes: Vec<(&str, u64)> = sections.iter().map(|(n, s, _)| (*n, *s)).collect();
    let events = policies::predict::stub_events_from(&sizes, &[bank], &mut |name| {
        Ok(sections
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, d)| vec![(bank, d.clone())])
            .unwrap_or_default())
    })
    .map_err(|e| PcrSignError::Compute(e.to_string()))?;
    pcr11_of(&events, bank)
}

fn pcr11_of(events: &[policies::eventlog::Event], bank: HashAlg) -> Result<Vec<u8>, PcrSignError> {
    let mut value = policies::replay::initial_value(bank, PCR)
        .ok_or_else(|| PcrSignError::Compute(format!("bank {bank:?} cannot be computed")))?;
    for e in events.iter().filter(|e| e.pcr == PCR) {
        if let Some(d) = e.digest(bank) {
            value = extend(bank, &value, d)?;
        }
    }
    Ok(value)
}

fn extend(bank: HashAlg, value: &[u8], digest: &[u8]) -> Result<Vec<u8>, PcrSignError> {
    let mut h =
        policies::digest::Hasher::new(bank).map_err(|e| PcrSignError::Compute(e.to_string()))?;
    h.update(value);
    h.update(digest);
    Ok(h.finalize())
}

/// `value` extended by each word of `phase`, as `systemd-pcrphase` measures it.
pub fn with_phase(bank: HashAlg, value: &[u8], phase: &str) -> Result<Vec<u8>, PcrSignError> {
    let mut v = value.to_vec();
    if phase.is_empty() {
        return Ok(v);
    }
    for word in phase.split(':') {
        if word.is_empty() {
            return Err(PcrSignError::Phase(phase.into()));
        }
        let d = policies::digest::hash(bank, word.as_bytes())
            .map_err(|e| PcrSignError::Compute(e.to_string()))?;
        v = extend(bank, &v, &d)?;
    }
    Ok(v)
}

/// The `TPM2_PolicyPCR` digest (SHA-256 session) for PCR 11 holding `value` in `bank`.
pub fn policy_digest(bank: HashAlg, value: &[u8]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update([0u8; 32]);
    h.update(TPM_CC_POLICY_PCR.to_be_bytes());
    // TPML_PCR_SELECTION: count 1, TPMS_PCR_SELECTION {hash, sizeofSelect 3, pcrSelect}.
    h.update(1u32.to_be_bytes());
    h.update(bank.0.to_be_bytes());
    let mut select = [0u8; 3];
    select[(PCR / 8) as usize] |= 1 << (PCR % 8);
    h.update([3]);
    h.update(select);
    h.update(sha2::Sha256::digest(value));
    h.finalize().into()
}

/// systemd's public key fingerprint: SHA-256 of the PKCS#1 `RSAPublicKey` inside `spki`.
pub fn fingerprint(spki: &[u8]) -> Result<[u8; 32], PcrSignError> {
    let info = spki::SubjectPublicKeyInfoRef::from_der(spki)
        .map_err(|e| PcrSignError::Compute(format!("the public key: {e}")))?;
    let bits = info.subject_public_key.as_bytes().ok_or_else(|| {
        PcrSignError::Compute("the public key's bit string is not whole bytes".into())
    })?;
    Ok(sha2::Sha256::digest(bits).into())
}

/// The PEM public key of `key`, as `.pcrpkey` carries it (`-----BEGIN PUBLIC KEY-----`, LF
/// line ends, 64-column base64: byte for byte what `openssl pkey -pubout` writes).
pub fn public_key_pem(key: &dyn RawKey) -> Result<String, PcrSignError> {
    let der = key.public_key_der()?;
    der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &der)
        .map_err(|e| PcrSignError::Compute(format!("encoding the public key: {e}")))
}

/// The PKCS#1 v1.5 hash systemd signs a policy of `bank` with.
fn sign_hash(bank: HashAlg) -> Result<signing::keys::SignHash, PcrSignError> {
    use signing::keys::SignHash;
    Ok(match bank {
        HashAlg::SHA1 => SignHash::Sha1,
        HashAlg::SHA256 => SignHash::Sha256,
        HashAlg::SHA384 => SignHash::Sha384,
        HashAlg::SHA512 => SignHash::Sha512,
        other => {
            return Err(PcrSignError::Compute(format!(
                "bank {other:?} cannot be signed"
            )));
        }
    })
}

/// The signed policy JSON for `sections`, per bank and phase (see the module docs).
pub fn sign(
    sections: &[(&str, &[u8])],
    banks: &[HashAlg],
    phases: &[&str],
    key: &dyn RawKey,
) -> Result<Value, PcrSignError> {
    let mut base = Vec::new();
    for &bank in banks {
        base.push((bank, stub_pcr11(sections, bank)?));
    }
    sign_values(&base, phases, key)
}

/// The signed policy JSON for PCR 11 base values `(bank, value)` (before any phase).
pub fn sign_values(
    base_values: &[(HashAlg, Vec<u8>)],
    phases: &[&str],
    key: &dyn RawKey,
) -> Result<Value, PcrSignError> {
    let pkfp = hex::encode(fingerprint(&key.public_key_der()?)?);
    let mut out = Map::new();
    for (bank, base) in base_values {
        let bank = *bank;
        let mut entries = Vec::new();
        for phase in phases {
            let value = with_phase(bank, base, phase)?;
            let pol = policy_digest(bank, &value);
            let sig = key.sign_pkcs1v15(sign_hash(bank)?, &pol)?;
            entries.push(json!({
                "pcrs": [PCR],
                "pkfp": pkfp,
                "pol": hex::encode(pol),
                "sig": base64::engine::general_purpose::STANDARD.encode(sig),
            }));
        }
        out.insert(
            crate::measure::pcrs_json::bank_name(bank),
            Value::Array(entries),
        );
    }
    Ok(Value::Object(out))
}

/// The measured view of a PE's sections: `(name, VirtualSize bytes)` — the raw data, padded
/// with zeros up to `VirtualSize` as the loader maps it.
pub fn pe_sections(pe: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let parsed = goblin::pe::PE::parse(pe).map_err(|e| format!("not a valid PE: {e}"))?;
    let mut out = Vec::new();
    for s in &parsed.sections {
        let name = s
            .name()
            .map_err(|e| format!("a section name: {e}"))?
            .to_string();
        let start = s.pointer_to_raw_data as usize;
        let n = s.virtual_size.min(s.size_of_raw_data) as usize;
        let mut content = pe
            .get(start..start.saturating_add(n))
            .ok_or_else(|| format!("section {name} lies outside the file"))?
            .to_vec();
        content.resize(s.virtual_size as usize, 0);
        out.push((name, content));
    }
    Ok(out)
}

/// `vmseal pcr sign`: the signed policy of the appliance PE `pe` (`NAME.efi`, or the
/// `BOOTX64.EFI` of an image). A PE that carries `.pcrpkey` must carry the key that signs.
pub fn sign_pe(
    pe: &[u8],
    banks: &[HashAlg],
    phases: &[&str],
    key: &dyn RawKey,
) -> Result<Value, String> {
    let sections = pe_sections(pe)?;
    if let Some((_, pkey)) = sections
        .iter()
        .find(|(n, _)| n == policies::sections::PCRPKEY)
    {
        let want = public_key_pem(key).map_err(|e| e.to_string())?;
        let have = String::from_utf8_lossy(pkey);
        if have.trim_end_matches('\0') != want {
            return Err(
                "its .pcrpkey is another public key than the signing key's — sign with the key the appliance was built with"
                    .into(),
            );
        }
    }
    let view: Vec<(&str, &[u8])> = sections
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    sign(&view, banks, phases, key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_extend_word_by_word() {
        let b = HashAlg::SHA256;
        let zero = vec![0u8; 32];
        let one = with_phase(b, &zero, "enter-initrd").unwrap();
        let two = with_phase(b, &zero, "enter-initrd:leave-initrd").unwrap();
        assert_eq!(with_phase(b, &one, "leave-initrd").unwrap(), two);
        assert_eq!(with_phase(b, &zero, "").unwrap(), zero);
        assert!(with_phase(b, &zero, "a::b").is_err());
    }

    #[test]
    fn policy_digest_selects_pcr_11_of_the_bank() {
        // The pcrSelect bitmap of PCR 11: byte 1, bit 3.
        let a = policy_digest(HashAlg::SHA256, &[0; 32]);
        let b = policy_digest(HashAlg::SHA1, &[0; 32]);
        assert_ne!(a, b, "the bank is part of the selection");
    }
}
