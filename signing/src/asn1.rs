//! A minimal DER writer and reader for the hand-laid structures of this crate (Authenticode
//! and UEFI PKCS#7 `SignedData`), where the exact bytes matter: EDK2 reads some fields at fixed
//! byte offsets (`shared/reference/measured-boot.md` §C.3), so vmseal lays them out itself
//! instead of trusting a general encoder's choices.
//!
//! Only single-byte tags and definite lengths up to 4 length bytes are supported; anything
//! else read is an error, never a panic.
//!
//! Why a TLV layer of its own rather than the `der` crate's typed model (`der` 0.8 is used
//! where it fits: certificates and keys go through `x509-cert`, `spki` and `pkcs8`):
//! - **Certificate order.** The PKCS#7 `certificates [0] IMPLICIT SET OF Certificate` of an
//!   Authenticode signature holds the signer first, then its chain, in the order the signer
//!   put them — OpenSSL (sbsign, osslsigncode, sign-efi-sig-list) declares the field as an
//!   implicitly tagged SEQUENCE OF and never sorts it. `der::asn1::SetOfVec` sorts its
//!   elements by their DER encoding (on decode and on encode) and `SetOfRef` refuses an
//!   unsorted set (`ErrorKind::SetOrdering`): a typed model would reorder a CA chain and so
//!   change the bytes that EDK2 and `osslsigncode verify` read.
//! - **Signed bytes, not values.** Verification hashes what was signed, as it was encoded:
//!   the signed attributes re-tagged from `[0]` to `SET`, the SpcIndirectDataContent content
//!   octets, the issuer `Name` compared as raw DER. The reader hands out borrowed raw slices
//!   with their offset in the blob (for errors that point at a byte), never a re-encoding.

/// Universal and context tags used by this crate.
pub(crate) mod tag {
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const BIT_STRING: u8 = 0x03;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const NULL: u8 = 0x05;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const SET: u8 = 0x31;
    /// `[0]` constructed (EXPLICIT, or IMPLICIT of a constructed type).
    pub(crate) const CTX0: u8 = 0xa0;
    /// `[0]` primitive (IMPLICIT of a primitive type).
    pub(crate) const CTX0_PRIM: u8 = 0x80;
    /// `[2]` constructed.
    pub(crate) const CTX2: u8 = 0xa2;
}

/// Encode one TLV with a canonical (shortest) DER length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let len_bytes = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | len_bytes.len() as u8);
        out.extend_from_slice(len_bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Concatenate TLVs into the content of a constructed value.
pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `SEQUENCE { parts }`.
pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag::SEQUENCE, &cat(parts))
}

/// `SET { parts }` in the given order (the caller sorts a DER `SET OF`).
pub(crate) fn set(parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag::SET, &cat(parts))
}

/// A DER `OBJECT IDENTIFIER` TLV from its content bytes.
pub(crate) fn oid(value: &[u8]) -> Vec<u8> {
    tlv(tag::OID, value)
}

/// `AlgorithmIdentifier { oid, NULL }`.
pub(crate) fn alg_null(oid_value: &[u8]) -> Vec<u8> {
    seq(&[&oid(oid_value), &[tag::NULL, 0]])
}

/// A small non-negative `INTEGER`.
pub(crate) fn small_int(v: u8) -> Vec<u8> {
    if v < 0x80 {
        vec![tag::INTEGER, 1, v]
    } else {
        vec![tag::INTEGER, 2, 0, v]
    }
}

/// Object identifier content bytes (the value, without tag and length).
pub(crate) mod oids {
    /// 1.2.840.113549.1.7.1 id-data
    pub(crate) const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    /// 1.2.840.113549.1.7.2 id-signedData
    pub(crate) const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    /// 1.2.840.113549.1.9.3 contentType attribute
    pub(crate) const CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
    /// 1.2.840.113549.1.9.4 messageDigest attribute
    pub(crate) const MESSAGE_DIGEST: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
    /// 1.2.840.113549.1.1.1 rsaEncryption
    pub(crate) const RSA_ENCRYPTION: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// 1.3.14.3.2.26 sha1
    pub(crate) const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    /// 2.16.840.1.101.3.4.2.1 sha256
    pub(crate) const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// 2.16.840.1.101.3.4.2.2 sha384
    pub(crate) const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    /// 2.16.840.1.101.3.4.2.3 sha512
    pub(crate) const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    /// 1.3.6.1.4.1.311.2.1.4 SPC_INDIRECT_DATA_OBJID
    pub(crate) const SPC_INDIRECT_DATA: &[u8] =
        &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01, 0x04];
    /// 1.3.6.1.4.1.311.2.1.15 SPC_PE_IMAGE_DATAOBJ
    pub(crate) const SPC_PE_IMAGE_DATA: &[u8] =
        &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01, 0x0f];
}

/// A DER parse failure: what was expected and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DER: {what} at byte {offset}")]
pub struct DerError {
    /// What was wrong.
    pub what: &'static str,
    /// Offset within the buffer being read.
    pub offset: usize,
}

/// A cursor over DER bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

/// One element read: its tag, content, and the whole TLV.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) content: &'a [u8],
    pub(crate) raw: &'a [u8],
    /// Offset of the content within the outermost buffer.
    pub(crate) content_offset: usize,
}

impl<'a> Tlv<'a> {
    /// A reader over the content of this (constructed) element.
    pub(crate) fn reader(&self) -> Reader<'a> {
        Reader {
            buf: self.content,
            pos: 0,
            base: self.content_offset,
        }
    }
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            base: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, what: &'static str) -> DerError {
        DerError {
            what,
            offset: self.base + self.pos,
        }
    }

    /// Read the next TLV.
    pub(crate) fn next(&mut self) -> Result<Tlv<'a>, DerError> {
        let start = self.pos;
        let tag = *self.buf.get(start).ok_or(self.err("unexpected end"))?;
        if tag & 0x1f == 0x1f {
            return Err(self.err("multi-byte tag"));
        }
        let first = *self.buf.get(start + 1).ok_or(self.err("missing length"))?;
        let (len, hdr) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err(self.err("unsupported length form"));
            }
            let bytes = self
                .buf
                .get(start + 2..start + 2 + n)
                .ok_or(self.err("truncated length"))?;
            let len = bytes.iter().fold(0usize, |a, &b| (a << 8) | b as usize);
            (len, 2 + n)
        };
        let end = (start + hdr)
            .checked_add(len)
            .ok_or(self.err("length overflow"))?;
        let content = self
            .buf
            .get(start + hdr..end)
            .ok_or(self.err("element runs past its container"))?;
        let raw = self.buf.get(start..end).ok_or(self.err("truncated"))?;
        self.pos = end;
        Ok(Tlv {
            tag,
            content,
            raw,
            content_offset: self.base + start + hdr,
        })
    }

    /// Read the next TLV and require its tag.
    pub(crate) fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, DerError> {
        let at = self.pos;
        let t = self.next()?;
        if t.tag != tag {
            return Err(DerError {
                what,
                offset: self.base + at,
            });
        }
        Ok(t)
    }

    /// Peek the next tag.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_canonical() {
        assert_eq!(tlv(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        assert_eq!(&tlv(0x04, &[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(&tlv(0x04, &[0; 0x100])[..4], [0x04, 0x82, 0x01, 0x00]);
        let big = tlv(0x30, &[0; 0x1234]);
        let mut r = Reader::new(&big);
        let t = r.next().unwrap();
        assert_eq!(t.content.len(), 0x1234);
        assert!(r.is_empty());
    }

    #[test]
    fn bad_input_is_an_error() {
        for b in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 0, 0, 0, 0, 1],
            &[0x30, 0x82, 0x01],
            &[0x30, 3, 1],
        ] {
            assert!(Reader::new(b).next().is_err(), "{b:x?}");
        }
    }
}
