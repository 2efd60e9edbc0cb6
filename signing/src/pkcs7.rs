//! PKCS#7 (RFC 2315) `SignedData`, laid out byte by byte for the two consumers in EDK2:
//! Authenticode image signatures (`shared/reference/measured-boot.md` §C.3) and time-based
//! authenticated variables (UEFI 2.10 §8.2.2, `EFI_VARIABLE_AUTHENTICATION_2`).
//!
//! Everything is SHA-256 with RSA PKCS#1 v1.5, which is deterministic: the same inputs and key
//! give the same bytes. No `signingTime` attribute is ever added.
//!
//! The parser ([`parse_signed_data`]) reads what these writers, sbsign, osslsigncode and
//! Microsoft's signer produce; bad input is an error, never a panic.
//!
//! Why not the `cms` crate (RustCrypto, 0.2.3; its `builder` feature): it writes RFC 5652 CMS,
//! and both consumers here want RFC 2315 PKCS#7 bytes that CMS forbids.
//! - **SignedData version.** RFC 5652 §5.1 makes the version 3 whenever eContentType is not
//!   id-data, and `cms::builder::SignedDataBuilder::calculate_version` does so: an
//!   Authenticode signature (eContentType SPC_INDIRECT_DATA, 1.3.6.1.4.1.311.2.1.4) would get
//!   `02 01 03` at bytes 23–25 of the blob. The Authenticode PE format requires version 1
//!   (`02 01 01`), which is what sbsign, osslsigncode and signtool write.
//! - **Authenticated attributes always.** `SignerInfoBuilder` always signs a `signedAttrs` set
//!   (it stores the message digest there). The `.auth` payload of a time-based authenticated
//!   variable (UEFI 2.10 §8.2.2) as efitools' `sign-efi-sig-list` writes it — and as vmseal
//!   reproduces byte for byte — has a SignerInfo with no attributes: the RSA signature is over
//!   the serialized variable itself, and the SignerInfo goes straight from
//!   `digestAlgorithm` to `digestEncryptionAlgorithm`.
//! - **A second crypto stack.** `cms` 0.2 is built on `der` 0.7 / `x509-cert` 0.2, while this
//!   workspace is on `der` 0.8 / `x509-cert` 0.3 (its 0.3 is a release candidate only).
//!
//! What EDK2 then checks byte by byte (`shared/reference/measured-boot.md` §C.3): the
//! digest-algorithm OID at byte 32, which holds because ContentInfo, `[0]` and SignedData all
//! get two-byte lengths (`82 LL LL`) for a blob of 256 B to 64 KiB.

use crate::asn1::{self, DerError, Reader, Tlv, oids, tag};
use crate::keys::{Certificate, KeyError, Signer};

/// The `[0] IMPLICIT` certificates field: the signer's certificate, then its chain.
fn certificates_field(signer: &dyn Signer) -> Vec<u8> {
    let mut all = signer.certificate().der().to_vec();
    for c in signer.chain() {
        all.extend_from_slice(c.der());
    }
    asn1::tlv(tag::CTX0, &all)
}

/// `SignerInfo` (version 1, issuerAndSerialNumber, sha256, optional authenticated attributes,
/// rsaEncryption). `attrs` is the concatenation of the attributes in DER `SET OF` order; the
/// signature covers them re-tagged as a `SET`, or `content` when there are none.
fn signer_info(
    signer: &dyn Signer,
    attrs: Option<&[u8]>,
    content: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let cert = signer.certificate();
    let (sig, attrs_field) = match attrs {
        Some(a) => (
            signer.sign_pkcs1v15_sha256(&asn1::set(&[a]))?,
            asn1::tlv(tag::CTX0, a),
        ),
        None => (signer.sign_pkcs1v15_sha256(content)?, Vec::new()),
    };
    Ok(asn1::seq(&[
        &asn1::small_int(1),
        &asn1::seq(&[&cert.issuer_der()?, &cert.serial_der()?]),
        &asn1::alg_null(oids::SHA256),
        &attrs_field,
        &asn1::alg_null(oids::RSA_ENCRYPTION),
        &asn1::tlv(tag::OCTET_STRING, &sig),
    ]))
}

/// Authenticode `ContentInfo { signedData }` around an `SpcIndirectDataContent` (whole TLV):
/// authenticated attributes contentType = SPC_INDIRECT_DATA and messageDigest = SHA-256 of the
/// SpcIndirectDataContent content octets (§C.3).
pub(crate) fn authenticode(spc: &[u8], signer: &dyn Signer) -> Result<Vec<u8>, KeyError> {
    use sha2::Digest as _;
    let spc_content = Reader::new(spc)
        .next()
        .map(|t| t.content)
        .map_err(|e| KeyError::Encode(e.to_string()))?;
    let md = sha2::Sha256::digest(spc_content);
    let content_type = asn1::seq(&[
        &asn1::oid(oids::CONTENT_TYPE),
        &asn1::set(&[&asn1::oid(oids::SPC_INDIRECT_DATA)]),
    ]);
    let message_digest = asn1::seq(&[
        &asn1::oid(oids::MESSAGE_DIGEST),
        &asn1::set(&[&asn1::tlv(tag::OCTET_STRING, &md)]),
    ]);
    // DER SET OF: sort the encodings.
    let mut attrs = [content_type, message_digest];
    attrs.sort();
    let attrs = attrs.concat();
    let signed_data = asn1::seq(&[
        &asn1::small_int(1),
        &asn1::set(&[&asn1::alg_null(oids::SHA256)]),
        &asn1::seq(&[
            &asn1::oid(oids::SPC_INDIRECT_DATA),
            &asn1::tlv(tag::CTX0, spc),
        ]),
        &certificates_field(signer),
        &asn1::set(&[&signer_info(signer, Some(&attrs), &[])?]),
    ]);
    Ok(asn1::seq(&[
        &asn1::oid(oids::SIGNED_DATA),
        &asn1::tlv(tag::CTX0, &signed_data),
    ]))
}

/// A detached `SignedData` (no `ContentInfo` wrapper, as `sign-efi-sig-list` writes it) over
/// `data`, content type id-data, no authenticated attributes: the `CertData` of an
/// `EFI_VARIABLE_AUTHENTICATION_2`.
pub(crate) fn detached(data: &[u8], signer: &dyn Signer) -> Result<Vec<u8>, KeyError> {
    Ok(asn1::seq(&[
        &asn1::small_int(1),
        &asn1::set(&[&asn1::alg_null(oids::SHA256)]),
        &asn1::seq(&[&asn1::oid(oids::DATA)]),
        &certificates_field(signer),
        &asn1::set(&[&signer_info(signer, None, data)?]),
    ]))
}

/// One `SignerInfo`, as read.
#[derive(Clone, Debug)]
pub(crate) struct ParsedSigner<'a> {
    pub(crate) issuer: &'a [u8],
    pub(crate) serial: &'a [u8],
    pub(crate) digest_oid: &'a [u8],
    /// The `[0]` authenticated attributes' content (concatenated attributes), if present.
    pub(crate) attrs: Option<&'a [u8]>,
    pub(crate) signature: &'a [u8],
}

/// A `SignedData`, as read.
#[derive(Clone, Debug)]
pub(crate) struct ParsedSignedData<'a> {
    pub(crate) content_type: &'a [u8],
    /// The encapsulated content's TLV (inside `[0]`), if present.
    pub(crate) content: Option<Tlv<'a>>,
    pub(crate) certificates: Vec<Certificate>,
    pub(crate) signers: Vec<ParsedSigner<'a>>,
}

/// Parse a `ContentInfo { signedData }` or a bare `SignedData`.
pub(crate) fn parse_signed_data(blob: &[u8]) -> Result<ParsedSignedData<'_>, DerError> {
    let outer = Reader::new(blob).expect(tag::SEQUENCE, "expected a SEQUENCE")?;
    let mut r = outer.reader();
    let sd = if r.peek_tag() == Some(tag::OID) {
        let ct = r.next()?;
        if ct.content != oids::SIGNED_DATA {
            return Err(DerError {
                what: "ContentInfo is not signedData",
                offset: ct.content_offset,
            });
        }
        let wrapped = r.expect(tag::CTX0, "expected [0] content")?;
        wrapped
            .reader()
            .expect(tag::SEQUENCE, "expected SignedData")?
    } else {
        outer
    };
    let mut r = sd.reader();
    r.expect(tag::INTEGER, "expected SignedData version")?;
    r.expect(tag::SET, "expected digestAlgorithms")?;
    let encap = r.expect(tag::SEQUENCE, "expected encapContentInfo")?;
    let mut er = encap.reader();
    let content_type = er.expect(tag::OID, "expected content type")?.content;
    let content = if er.is_empty() {
        None
    } else {
        let c = er.expect(tag::CTX0, "expected [0] content")?;
        Some(c.reader().next()?)
    };
    let mut certificates = Vec::new();
    if r.peek_tag() == Some(tag::CTX0) {
        let certs = r.next()?;
        let mut cr = certs.reader();
        while !cr.is_empty() {
            let c = cr.next()?;
            if let Ok(cert) = Certificate::from_der(c.raw) {
                certificates.push(cert);
            }
        }
    }
    if r.peek_tag() == Some(0xa1) {
        r.next()?; // CRLs
    }
    let infos = r.expect(tag::SET, "expected signerInfos")?;
    let mut ir = infos.reader();
    let mut signers = Vec::new();
    while !ir.is_empty() {
        let si = ir.expect(tag::SEQUENCE, "expected SignerInfo")?;
        let mut sr = si.reader();
        sr.expect(tag::INTEGER, "expected SignerInfo version")?;
        let ias = sr.expect(tag::SEQUENCE, "expected issuerAndSerialNumber")?;
        let mut iasr = ias.reader();
        let issuer = iasr.expect(tag::SEQUENCE, "expected issuer Name")?.raw;
        let serial = iasr.expect(tag::INTEGER, "expected serial number")?.raw;
        let dalg = sr.expect(tag::SEQUENCE, "expected digestAlgorithm")?;
        let digest_oid = dalg
            .reader()
            .expect(tag::OID, "expected digest OID")?
            .content;
        let attrs = if sr.peek_tag() == Some(tag::CTX0) {
            Some(sr.next()?.content)
        } else {
            None
        };
        sr.expect(tag::SEQUENCE, "expected digestEncryptionAlgorithm")?;
        let signature = sr.expect(tag::OCTET_STRING, "expected signature")?.content;
        signers.push(ParsedSigner {
            issuer,
            serial,
            digest_oid,
            attrs,
            signature,
        });
    }
    Ok(ParsedSignedData {
        content_type,
        content,
        certificates,
        signers,
    })
}

/// The value of the authenticated attribute `oid` (the first value of its SET).
pub(crate) fn attribute<'a>(attrs: &'a [u8], oid: &[u8]) -> Result<Option<Tlv<'a>>, DerError> {
    let mut r = Reader::new(attrs);
    while !r.is_empty() {
        let a = r.expect(tag::SEQUENCE, "expected Attribute")?;
        let mut ar = a.reader();
        let id = ar.expect(tag::OID, "expected attribute type")?;
        if id.content == oid {
            let values = ar.expect(tag::SET, "expected attribute values")?;
            return Ok(Some(values.reader().next()?));
        }
    }
    Ok(None)
}

/// Verify `sig` over `msg` with `cert`'s RSA key and the digest named by `digest_oid`.
pub(crate) fn verify_rsa(cert: &Certificate, digest_oid: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let Ok(key) = cert.rsa_public_key() else {
        return false;
    };
    let r = if digest_oid == oids::SHA256 {
        key.pkcs1v15_verify::<sha2::Sha256>(msg, sig)
    } else if digest_oid == oids::SHA384 {
        key.pkcs1v15_verify::<sha2::Sha384>(msg, sig)
    } else if digest_oid == oids::SHA512 {
        key.pkcs1v15_verify::<sha2::Sha512>(msg, sig)
    } else {
        return false;
    };
    r.is_ok()
}

/// The certificate among `certs` that `signer` names by issuer and serial number.
pub(crate) fn find_signer_cert<'c>(
    certs: &'c [Certificate],
    signer: &ParsedSigner<'_>,
) -> Option<&'c Certificate> {
    certs.iter().find(|c| {
        c.issuer_der().ok().as_deref() == Some(signer.issuer)
            && c.serial_der().ok().as_deref() == Some(signer.serial)
    })
}

/// Whether `leaf` is, or chains (through `pool`, partial chains allowed as in EDK2) to, one
/// of `trusted`. Returns the trusted certificate.
pub(crate) fn chain_to<'t>(
    leaf: &Certificate,
    pool: &[Certificate],
    trusted: &'t [Certificate],
) -> Option<&'t Certificate> {
    let mut cur = leaf.clone();
    for _ in 0..8 {
        if let Some(t) = trusted.iter().find(|t| t.der() == cur.der()) {
            return Some(t);
        }
        if let Some(t) = trusted
            .iter()
            .find(|t| t.subject() == cur.issuer() && crate::keys::is_signed_by(&cur, t))
        {
            return Some(t);
        }
        let next = pool.iter().find(|p| {
            p.der() != cur.der()
                && p.subject() == cur.issuer()
                && crate::keys::is_signed_by(&cur, p)
        })?;
        cur = next.clone();
    }
    None
}
