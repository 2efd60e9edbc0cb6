//! Authenticode signing and verification of PE images (`shared/reference/measured-boot.md`
//! §C.2, §C.3).
//!
//! [`sign`] appends a `WIN_CERTIFICATE` (revision 0x0200, type `WIN_CERT_TYPE_PKCS_SIGNED_DATA`)
//! holding a PKCS#7 `SignedData` over the image's SHA-256 Authenticode digest:
//!
//! * an unsigned image is first zero-padded to a multiple of 8 bytes (the padding is part of
//!   the image and hashed as trailing data, as sbsign does), then the table is appended;
//! * a signed image keeps its signatures and gets one more entry at the end of the table (so
//!   the org signature can be added to a vendor-signed kernel); its digest does not change,
//!   because the table is excluded from it. An image already signed with the same certificate
//!   is refused;
//! * each entry's `dwLength` is 8 + the PKCS#7 length (unpadded, as sbsign writes it) and the
//!   entry is zero-padded to 8 bytes, so EDK2's walk (`offset += dwLength + ALIGN_SIZE(8)`)
//!   ends exactly at `VirtualAddress + Size`;
//! * data directory 4 is updated (`VirtualAddress` is a file offset) and the optional header
//!   `CheckSum` is **recomputed** over the final file (the classic `imagehlp` algorithm), so
//!   the image stays consistent for tools that check it; neither EDK2 nor the digest uses it.
//!
//! Signing is deterministic: no signingTime, and RSA PKCS#1 v1.5 has no randomness.
//!
//! Bad input gives a [`SignError`], never a panic.

use super::{AuthenticodeError, DigestAlgorithm, PeLayout, digest, layout};
use crate::asn1::{self, DerError, oids, tag};
use crate::keys::{Certificate, KeyError, Signer};
use crate::pkcs7;

/// `WIN_CERTIFICATE.wRevision` for the current format.
pub const WIN_CERT_REVISION_2_0: u16 = 0x0200;
/// `WIN_CERTIFICATE.wCertificateType`: a PKCS#7 SignedData follows.
pub const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;
/// `WIN_CERTIFICATE.wCertificateType`: a `WIN_CERTIFICATE_UEFI_GUID` follows.
pub const WIN_CERT_TYPE_EFI_GUID: u16 = 0x0EF1;

/// Why signing or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The PE could not be read.
    #[error("{0}")]
    Pe(#[from] AuthenticodeError),
    /// The PE cannot be signed as it is.
    #[error("cannot sign this PE: {0}")]
    Unsupported(String),
    /// The attribute-certificate table is malformed.
    #[error("malformed certificate table: {0}")]
    BadTable(String),
    /// The image already carries a signature by this certificate.
    #[error("already signed by vmseal with certificate {0}; sign the unsigned image instead")]
    AlreadySigned(String),
    /// The key or certificate failed.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// A signature blob could not be parsed.
    #[error("signature {index}: {source}")]
    Der {
        /// The table entry.
        index: usize,
        /// What was wrong.
        source: DerError,
    },
}

/// One entry of the attribute-certificate table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WinCertificate {
    /// File offset of the 8-byte header.
    pub offset: u64,
    /// `dwLength` (header included).
    pub length: u32,
    /// `wRevision`.
    pub revision: u16,
    /// `wCertificateType`.
    pub cert_type: u16,
    /// The bytes after the header (`dwLength - 8`).
    pub data: Vec<u8>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

fn align8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

/// Every entry of `pe`'s certificate table, walked as EDK2 does: the walk must end exactly at
/// `VirtualAddress + Size`.
pub fn certificates(pe: &[u8]) -> Result<Vec<WinCertificate>, SignError> {
    let l = layout(pe)?;
    table_entries(pe, &l)
}

fn table_entries(pe: &[u8], l: &PeLayout) -> Result<Vec<WinCertificate>, SignError> {
    let (va, size) = l.cert_table;
    if size == 0 {
        return Ok(Vec::new());
    }
    let end = va
        .checked_add(size)
        .filter(|&e| e <= pe.len() as u64)
        .ok_or_else(|| {
            SignError::BadTable(format!(
                "table {va:#x}+{size:#x} runs past the end of the file ({:#x} bytes)",
                pe.len()
            ))
        })?;
    let mut out = Vec::new();
    let mut off = va;
    while off < end {
        let o = off as usize;
        let (Some(length), Some(revision), Some(cert_type)) =
            (le32(pe, o), le16(pe, o + 4), le16(pe, o + 6))
        else {
            return Err(SignError::BadTable(format!(
                "entry header at {off:#x} is truncated"
            )));
        };
        let data_end = off + u64::from(length);
        if length < 8 || data_end > end {
            return Err(SignError::BadTable(format!(
                "entry at {off:#x} has dwLength {length:#x}, outside the table ending at {end:#x}"
            )));
        }
        let data = pe
            .get(o + 8..data_end as usize)
            .ok_or_else(|| SignError::BadTable("entry outside the file".into()))?
            .to_vec();
        out.push(WinCertificate {
            offset: off,
            length,
            revision,
            cert_type,
            data,
        });
        off += align8(u64::from(length));
    }
    if off != end {
        return Err(SignError::BadTable(format!(
            "the entries end at {off:#x}, not at the table end {end:#x} (EDK2 rejects this image)"
        )));
    }
    Ok(out)
}

/// The `SpcIndirectDataContent` (whole TLV) for a SHA-256 image digest (§C.3): SPC_PE_IMAGE_DATA
/// with empty flags and the `<<<Obsolete>>>` file link, then the DigestInfo **last**.
fn spc_indirect_data(image_digest: &[u8]) -> Vec<u8> {
    let obsolete: Vec<u8> = "<<<Obsolete>>>"
        .encode_utf16()
        .flat_map(|c| c.to_be_bytes())
        .collect();
    let link = asn1::tlv(tag::CTX2, &asn1::tlv(tag::CTX0_PRIM, &obsolete));
    let pe_image_data = asn1::seq(&[&[tag::BIT_STRING, 1, 0], &asn1::tlv(tag::CTX0, &link)]);
    asn1::seq(&[
        &asn1::seq(&[&asn1::oid(oids::SPC_PE_IMAGE_DATA), &pe_image_data]),
        &asn1::seq(&[
            &asn1::alg_null(oids::SHA256),
            &asn1::tlv(tag::OCTET_STRING, image_digest),
        ]),
    ])
}

/// The PKCS#7 `ContentInfo` that signs a SHA-256 Authenticode digest. EDK2 finds the digest
/// algorithm OID at byte 32 (§C.3); this is checked here and the blob refused otherwise.
pub fn authenticode_pkcs7(image_digest: &[u8], signer: &dyn Signer) -> Result<Vec<u8>, SignError> {
    if image_digest.len() != 32 {
        return Err(SignError::Unsupported(format!(
            "a SHA-256 digest has 32 bytes, not {}",
            image_digest.len()
        )));
    }
    let blob = pkcs7::authenticode(&spc_indirect_data(image_digest), signer)?;
    if blob.get(1) != Some(&0x82) || blob.get(32..32 + oids::SHA256.len()) != Some(oids::SHA256) {
        return Err(SignError::Unsupported(format!(
            "the PKCS#7 blob ({} bytes) does not have the layout EDK2 parses (0x82 lengths, \
             digest OID at byte 32); it must be between 256 bytes and 64 KiB",
            blob.len()
        )));
    }
    Ok(blob)
}

/// The PE optional-header `CheckSum` of `data` (the field itself counted as zero).
pub fn pe_checksum(data: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, chunk) in data.chunks(2).enumerate() {
        let at = i * 2;
        if at == checksum_offset || at == checksum_offset + 2 {
            continue;
        }
        let word = match *chunk {
            [a, b] => u16::from_le_bytes([a, b]),
            [a] => u16::from(a),
            _ => 0,
        };
        sum += u64::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(data.len() as u32)
}

fn put32(buf: &mut [u8], at: u64, v: u32) -> Result<(), SignError> {
    let at = at as usize;
    buf.get_mut(at..at + 4)
        .ok_or_else(|| SignError::Unsupported("header field outside the file".into()))?
        .copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// Sign `pe` with `signer` (see the module docs for the exact layout). Returns the new image.
pub fn sign(pe: &[u8], signer: &dyn Signer) -> Result<Vec<u8>, SignError> {
    let l = layout(pe)?;
    let Some(dir) = l.cert_dir_offset else {
        return Err(SignError::Unsupported(
            "it has no certificate-table data directory (NumberOfRvaAndSizes <= 4)".into(),
        ));
    };
    // Validates the section table against the file (errors, not panics).
    digest(pe, DigestAlgorithm::Sha256)?;
    let entries = table_entries(pe, &l)?;
    let mut out;
    let table_start;
    if entries.is_empty() {
        out = pe.to_vec();
        out.resize(align8(pe.len() as u64) as usize, 0);
        table_start = out.len() as u64;
    } else {
        let (va, size) = l.cert_table;
        if va + size != pe.len() as u64 {
            return Err(SignError::Unsupported(format!(
                "its certificate table ({va:#x}+{size:#x}) is not at the end of the file \
                 ({:#x} bytes)",
                pe.len()
            )));
        }
        let mine = signer.certificate().der();
        for (i, e) in entries.iter().enumerate() {
            if e.cert_type != WIN_CERT_TYPE_PKCS_SIGNED_DATA {
                continue;
            }
            let sd = pkcs7::parse_signed_data(&e.data)
                .map_err(|source| SignError::Der { index: i, source })?;
            let signed_by_me = sd.signers.iter().any(|s| {
                pkcs7::find_signer_cert(&sd.certificates, s).is_some_and(|c| c.der() == mine)
            });
            if signed_by_me {
                return Err(SignError::AlreadySigned(signer.certificate().subject()));
            }
        }
        out = pe.to_vec();
        table_start = va;
    }
    let image_digest = digest(out.as_slice(), DigestAlgorithm::Sha256)?;
    let blob = authenticode_pkcs7(&image_digest, signer)?;
    let length = u32::try_from(8 + blob.len())
        .map_err(|_| SignError::Unsupported("signature too large".into()))?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_REVISION_2_0.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
    out.extend_from_slice(&blob);
    out.resize(align8(out.len() as u64) as usize, 0);
    let va = u32::try_from(table_start)
        .map_err(|_| SignError::Unsupported("the image is larger than 4 GiB".into()))?;
    let size = u32::try_from(out.len() as u64 - table_start)
        .map_err(|_| SignError::Unsupported("certificate table too large".into()))?;
    put32(&mut out, dir, va)?;
    put32(&mut out, dir + 4, size)?;
    let sum = pe_checksum(&out, l.checksum_offset as usize);
    put32(&mut out, l.checksum_offset, sum)?;
    debug_assert_eq!(
        digest(out.as_slice(), DigestAlgorithm::Sha256).ok(),
        Some(image_digest)
    );
    Ok(out)
}

/// What [`verify`] found for one table entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureReport {
    /// Index in the certificate table.
    pub index: usize,
    /// The signer certificate's subject, if it was found in the signature.
    pub signer: Option<String>,
    /// The digest algorithm of the embedded image digest.
    pub digest_algorithm: Option<DigestAlgorithm>,
    /// The embedded image digest equals the recomputed Authenticode digest.
    pub digest_matches: bool,
    /// The RSA signature over the authenticated attributes (and messageDigest) holds.
    pub signature_valid: bool,
    /// The trusted certificate the signer is, or chains to.
    pub trusted_by: Option<String>,
    /// Why this entry does not verify, if it does not.
    pub problem: Option<String>,
}

impl SignatureReport {
    /// Digest, signature and trust all hold.
    pub fn ok(&self) -> bool {
        self.digest_matches && self.signature_valid && self.trusted_by.is_some()
    }
}

/// The result of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The SHA-256 Authenticode digest of the image.
    pub sha256: Vec<u8>,
    /// One report per certificate-table entry.
    pub signatures: Vec<SignatureReport>,
}

impl VerifyReport {
    /// At least one signature verifies against the trusted certificates (EDK2's rule: any
    /// entry passing db is enough).
    pub fn ok(&self) -> bool {
        self.signatures.iter().any(SignatureReport::ok)
    }
}

fn alg_of(oid: &[u8]) -> Option<DigestAlgorithm> {
    Some(match oid {
        o if o == oids::SHA1 => DigestAlgorithm::Sha1,
        o if o == oids::SHA256 => DigestAlgorithm::Sha256,
        o if o == oids::SHA384 => DigestAlgorithm::Sha384,
        o if o == oids::SHA512 => DigestAlgorithm::Sha512,
        _ => return None,
    })
}

/// Check every signature of `pe`: the embedded digest against the recomputed Authenticode
/// digest, the RSA signature, and that the signer is (or chains to) one of `trusted`.
/// A malformed PE or table is an error; a bad signature is a report with `ok() == false`.
pub fn verify(pe: &[u8], trusted: &[Certificate]) -> Result<VerifyReport, SignError> {
    let l = layout(pe)?;
    let sha256 = digest(pe, DigestAlgorithm::Sha256)?;
    let entries = table_entries(pe, &l)?;
    let mut signatures = Vec::new();
    for (index, e) in entries.iter().enumerate() {
        signatures.push(verify_entry(pe, index, e, trusted));
    }
    Ok(VerifyReport { sha256, signatures })
}

fn verify_entry(
    pe: &[u8],
    index: usize,
    e: &WinCertificate,
    trusted: &[Certificate],
) -> SignatureReport {
    let mut rep = SignatureReport {
        index,
        signer: None,
        digest_algorithm: None,
        digest_matches: false,
        signature_valid: false,
        trusted_by: None,
        problem: None,
    };
    if let Err(p) = check_entry(pe, e, trusted, &mut rep) {
        rep.problem = Some(p);
    }
    rep
}

fn check_entry(
    pe: &[u8],
    e: &WinCertificate,
    trusted: &[Certificate],
    rep: &mut SignatureReport,
) -> Result<(), String> {
    if e.revision != WIN_CERT_REVISION_2_0 || e.cert_type != WIN_CERT_TYPE_PKCS_SIGNED_DATA {
        return Err(format!(
            "unsupported entry revision {:#06x} type {:#06x}",
            e.revision, e.cert_type
        ));
    }
    let sd = pkcs7::parse_signed_data(&e.data).map_err(|d| d.to_string())?;
    if sd.content_type != oids::SPC_INDIRECT_DATA {
        return Err("the content is not SpcIndirectDataContent".into());
    }
    let spc = sd.content.ok_or("no SpcIndirectDataContent")?;
    // The DigestInfo is the last element.
    let mut r = spc.reader();
    let mut last = None;
    while !r.is_empty() {
        last = Some(r.next().map_err(|d| d.to_string())?);
    }
    let di = last.ok_or("empty SpcIndirectDataContent")?;
    let mut dr = di.reader();
    let alg = dr
        .expect(tag::SEQUENCE, "expected AlgorithmIdentifier")
        .map_err(|d| d.to_string())?;
    let alg_oid = alg
        .reader()
        .expect(tag::OID, "expected OID")
        .map_err(|d| d.to_string())?;
    let embedded = dr
        .expect(tag::OCTET_STRING, "expected digest")
        .map_err(|d| d.to_string())?;
    let alg = alg_of(alg_oid.content).ok_or("unknown digest algorithm")?;
    rep.digest_algorithm = Some(alg);
    let actual = digest(pe, alg).map_err(|d| d.to_string())?;
    rep.digest_matches = actual == embedded.content;
    let signer = sd.signers.first().ok_or("no SignerInfo")?;
    let cert = pkcs7::find_signer_cert(&sd.certificates, signer)
        .ok_or("the signer's certificate is not in the signature")?;
    rep.signer = Some(cert.subject());
    let attrs = signer.attrs.ok_or("no authenticated attributes")?;
    let md = pkcs7::attribute(attrs, oids::MESSAGE_DIGEST)
        .map_err(|d| d.to_string())?
        .ok_or("no messageDigest attribute")?;
    let spc_hash = alg_of(signer.digest_oid).ok_or("unknown digest")?.hasher();
    let mut h = spc_hash;
    h.update(spc.content);
    let md_ok = h.finalize() == md.content;
    let sig_ok = pkcs7::verify_rsa(
        cert,
        signer.digest_oid,
        &asn1::set(&[attrs]),
        signer.signature,
    );
    rep.signature_valid = md_ok && sig_ok;
    rep.trusted_by = pkcs7::chain_to(cert, &sd.certificates, trusted).map(Certificate::subject);
    if !rep.digest_matches {
        return Err(
            "the image digest does not match (the image was modified after signing)".into(),
        );
    }
    if !md_ok {
        return Err("messageDigest does not match the SpcIndirectDataContent".into());
    }
    if !sig_ok {
        return Err("the RSA signature does not verify".into());
    }
    if rep.trusted_by.is_none() {
        return Err(
            "the signer is not one of, and does not chain to, the trusted certificates".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::test_hierarchy;

    /// A minimal PE32+: 0x200 bytes of headers, one 0x200-byte section, 5 bytes of trailing
    /// data (so the image needs padding to 8).
    pub(crate) fn small_pe() -> Vec<u8> {
        let mut f = vec![0u8; 0x400 + 5];
        f[0..2].copy_from_slice(b"MZ");
        f[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        f[0x40..0x44].copy_from_slice(b"PE\0\0");
        let coff = 0x44;
        f[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        f[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        f[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        f[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        f[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes());
        f[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let t = opt + 240;
        f[t..t + 5].copy_from_slice(b".text");
        f[t + 16..t + 20].copy_from_slice(&0x200u32.to_le_bytes());
        f[t + 20..t + 24].copy_from_slice(&0x200u32.to_le_bytes());
        for (i, b) in f.iter_mut().enumerate().skip(0x200) {
            *b = (i * 7 % 253) as u8;
        }
        f
    }

    #[test]
    fn signs_with_the_edk2_layout_and_verifies() {
        let h = test_hierarchy();
        let pe = small_pe();
        let signed = sign(&pe, &h.db).unwrap();
        // The image was padded to 8 and the table starts there.
        let table = align8(pe.len() as u64);
        let entries = certificates(&signed).unwrap();
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e.offset, table);
        assert_eq!((e.revision, e.cert_type), (0x0200, 0x0002));
        assert_eq!(signed.len() % 8, 0);
        assert_eq!(signed.len() as u64, table + align8(u64::from(e.length)));
        // EDK2's fixed offsets: 0x82 long-form length, the sha256 OID value at byte 32.
        let blob = &e.data;
        assert_eq!(blob[0..2], [0x30, 0x82]);
        assert_eq!(blob[30..32], [0x06, 0x09]);
        assert_eq!(&blob[32..41], oids::SHA256);
        // Digest unchanged by signing (the padding is part of the image).
        let mut padded = pe.clone();
        padded.resize(table as usize, 0);
        let want = digest(padded.as_slice(), DigestAlgorithm::Sha256).unwrap();
        assert_eq!(
            digest(signed.as_slice(), DigestAlgorithm::Sha256).unwrap(),
            want
        );
        // The digest is the last 32 bytes of the SpcIndirectDataContent.
        let sd = pkcs7::parse_signed_data(blob).unwrap();
        assert!(sd.content.unwrap().raw.ends_with(&want));
        // Checksum consistent.
        let l = layout(signed.as_slice()).unwrap();
        let co = l.checksum_offset as usize;
        let stored = u32::from_le_bytes(signed[co..co + 4].try_into().unwrap());
        assert_eq!(stored, pe_checksum(&signed, co));
        let rep = verify(&signed, std::slice::from_ref(&h.db.cert)).unwrap();
        assert!(rep.ok(), "{rep:?}");
        // Trusted through the chain too (PK -> KEK -> db), only when the chain is given.
        let rep = verify(&signed, std::slice::from_ref(&h.kek.cert)).unwrap();
        assert!(rep.ok(), "{rep:?}");
        let rep = verify(&signed, std::slice::from_ref(&h.pk.cert)).unwrap();
        assert!(
            !rep.ok(),
            "db's chain is not embedded, PK alone cannot trust it"
        );
    }

    #[test]
    fn deterministic_and_tamper_evident() {
        let h = test_hierarchy();
        let pe = small_pe();
        let a = sign(&pe, &h.db).unwrap();
        let b = sign(&pe, &h.db).unwrap();
        assert_eq!(a, b);
        let trusted = std::slice::from_ref(&h.db.cert);
        for at in [0x210, 0x3ff, 0x402] {
            let mut t = a.clone();
            t[at] ^= 1;
            let rep = verify(&t, trusted).unwrap();
            assert!(!rep.ok(), "flipped byte {at:#x} still verifies");
            assert!(!rep.signatures[0].digest_matches);
        }
        // A flipped byte in the signature itself.
        let mut t = a.clone();
        let n = t.len() - 20;
        t[n] ^= 1;
        assert!(verify(&t, trusted).map(|r| !r.ok()).unwrap_or(true));
        assert!(!verify(&a, std::slice::from_ref(&h.pk.cert)).unwrap().ok());
    }

    #[test]
    fn second_signature_is_appended_and_same_cert_is_refused() {
        let h = test_hierarchy();
        let pe = small_pe();
        let once = sign(&pe, &h.kek).unwrap(); // a "vendor" signature
        let twice = sign(&once, &h.db).unwrap();
        assert_eq!(certificates(&twice).unwrap().len(), 2);
        // The first entry and everything before the table stay byte-identical.
        assert_eq!(twice[0x200..once.len()], once[0x200..]);
        let rep = verify(&twice, std::slice::from_ref(&h.db.cert)).unwrap();
        assert!(
            rep.ok() && !rep.signatures[0].ok() && rep.signatures[1].ok(),
            "{rep:?}"
        );
        assert!(matches!(
            sign(&twice, &h.db),
            Err(SignError::AlreadySigned(_))
        ));
        let e = sign(&twice, &h.kek).unwrap_err();
        assert!(e.to_string().contains("already signed by vmseal"), "{e}");
    }

    #[test]
    fn malformed_input_is_an_error() {
        let h = test_hierarchy();
        let pe = small_pe();
        for n in [0, 2, 0x40, 0x100, 0x1ff, 0x300] {
            assert!(sign(&pe[..n], &h.db).is_err(), "{n:#x}");
        }
        let signed = sign(&pe, &h.db).unwrap();
        for n in [signed.len() - 1, signed.len() - 100, 0x410] {
            assert!(sign(&signed[..n], &h.db).is_err(), "{n:#x}");
            let _ = verify(&signed[..n], &[]);
        }
        let mut bad = signed.clone();
        let off = align8(pe.len() as u64) as usize;
        bad[off..off + 4].copy_from_slice(&0xffffu32.to_le_bytes());
        assert!(matches!(certificates(&bad), Err(SignError::BadTable(_))));
    }
}
