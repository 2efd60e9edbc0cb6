//! Attestation messages on the [`crate::hypercall::ATTEST_CHANNEL`]: the request the
//! hypervisor sends the attestation service, and the report the service answers with.
//!
//! Written and read without allocation (the service and the guests have no heap): encoding
//! goes into a caller's buffer, decoding borrows from the input. Decoding untrusted bytes
//! returns an [`AttestError`], never panics.
//!
//! All integers little-endian; a *blob* is a u32 length then that many bytes.
//!
//! Request (hypervisor → service), [`Request`]:
//!
//! | field | encoding |
//! | --- | --- |
//! | magic | `b"VMSATRQ1"` |
//! | caller | blob, the calling partition's name as the hypervisor knows it (≤ [`MAX_NAME`]) |
//! | nonce | blob, 1 ..= [`crate::hypercall::MAX_NONCE`] bytes from the caller |
//!
//! Report (service → caller), [`Report`]:
//!
//! | field | encoding |
//! | --- | --- |
//! | magic | `b"VMSATRP1"` |
//! | status | u32: 0 = every field below is valid; otherwise the TPM response code, [`STATUS_NO_TPM`], [`STATUS_BAD_REQUEST`] or [`STATUS_WRONG_CALLER`], and the rest may be empty |
//! | caller | blob, the sender of the request as the hypervisor stamped it (equal to the request's caller, or the status is [`STATUS_WRONG_CALLER`]) |
//! | nonce | blob, echoed from the request |
//! | bank | u16, the TPM algorithm id of the digests (`0x000B` = SHA-256) |
//! | pcr mask | u32, bit *n* set = PCR *n* is included |
//! | digests | blob, the PCR values in ascending PCR order, each the bank's digest size |
//! | quote | blob, the `TPMS_ATTEST` of a `TPM2_Quote` over those PCRs with [`qualifying_data`] of the caller and the nonce as qualifyingData (the contents of the `TPM2B_ATTEST`) |
//! | signature | blob, the `TPMT_SIGNATURE` of the quote |
//! | key | blob, the `TPMT_PUBLIC` of the signing key (the contents of the `TPM2B_PUBLIC`) |

use core::fmt;

/// First bytes of a request.
pub const REQUEST_MAGIC: [u8; 8] = *b"VMSATRQ1";
/// First bytes of a report.
pub const REPORT_MAGIC: [u8; 8] = *b"VMSATRP1";
/// Longest caller name.
pub const MAX_NAME: usize = 64;
/// Status: the service has no working TPM.
pub const STATUS_NO_TPM: u32 = 0x5653_0001;
/// Status: the request could not be decoded.
pub const STATUS_BAD_REQUEST: u32 = 0x5653_0002;
/// Status: the request claims a caller that is not its sender (the name the hypervisor
/// stamped on it, `crate::hypercall::Stamp`); the report names the sender.
pub const STATUS_WRONG_CALLER: u32 = 0x5653_0003;

/// The first bytes hashed by [`qualifying_data`] (domain separation).
pub const QUALIFYING_DATA_TAG: [u8; 8] = *b"VMSATQD1";

/// The qualifyingData (`extraData` of the `TPMS_ATTEST`) of a report's quote: SHA-256 over
/// [`QUALIFYING_DATA_TAG`], then the caller and the nonce, each as a blob (u32 little-endian
/// length, then the bytes). The caller is the requesting partition's name as the hypervisor
/// stamped it (`crate::hypercall::Stamp`), so the TPM's signature covers *who* asked as well
/// as the nonce: a verifier recomputes it from its nonce and the partition it expects and
/// passes it to `tpm2_checkquote --qualification`.
#[cfg(not(target_os = "uefi"))]
pub fn qualifying_data(caller: &[u8], nonce: &[u8]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(QUALIFYING_DATA_TAG);
    for blob in [caller, nonce] {
        h.update(u32::try_from(blob.len()).unwrap_or(u32::MAX).to_le_bytes());
        h.update(blob);
    }
    h.finalize().into()
}

/// Why bytes are not an attestation message, or do not fit a buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AttestError {
    /// The input ends inside `field`.
    Truncated(&'static str),
    /// Wrong magic.
    BadMagic,
    /// A field is longer than its limit, or the nonce is empty.
    BadLength(&'static str, usize),
    /// The digests blob is not `popcount(mask)` digests of the bank's size.
    DigestsMismatch,
    /// Bytes after the last field.
    TrailingBytes(usize),
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for AttestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(w) => write!(f, "attestation message ends inside {w}"),
            Self::BadMagic => f.write_str("attestation message has a wrong magic"),
            Self::BadLength(w, n) => write!(f, "attestation message field {w} has bad length {n}"),
            Self::DigestsMismatch => {
                f.write_str("attestation report digests do not match its PCR mask and bank")
            }
            Self::TrailingBytes(n) => write!(f, "attestation message has {n} trailing bytes"),
            Self::BufferTooSmall => f.write_str("attestation message does not fit the buffer"),
        }
    }
}

impl core::error::Error for AttestError {}

/// The digest size of a TPM algorithm id this module knows (SHA-1/256/384/512).
pub const fn digest_size(alg: u16) -> Option<usize> {
    match alg {
        0x0004 => Some(20),
        0x000B => Some(32),
        0x000C => Some(48),
        0x000D => Some(64),
        _ => None,
    }
}

/// A request, borrowed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Request<'a> {
    /// The caller's partition name.
    pub caller: &'a [u8],
    /// The caller's nonce.
    pub nonce: &'a [u8],
}

/// A report, borrowed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Report<'a> {
    /// 0 or the failure.
    pub status: u32,
    /// Echo of the request's caller.
    pub caller: &'a [u8],
    /// Echo of the request's nonce.
    pub nonce: &'a [u8],
    /// TPM algorithm id of the digests.
    pub bank: u16,
    /// Bit n = PCR n included.
    pub pcr_mask: u32,
    /// The PCR values, ascending.
    pub digests: &'a [u8],
    /// `TPMS_ATTEST` bytes.
    pub quote: &'a [u8],
    /// `TPMT_SIGNATURE` bytes.
    pub signature: &'a [u8],
    /// `TPMT_PUBLIC` bytes of the signing key.
    pub key: &'a [u8],
}

impl<'a> Report<'a> {
    /// A report that says only why there is no evidence: `status` non-zero, the request's
    /// caller and nonce echoed, everything else empty.
    pub const fn failure(status: u32, caller: &'a [u8], nonce: &'a [u8]) -> Self {
        Self {
            status,
            caller,
            nonce,
            bank: 0,
            pcr_mask: 0,
            digests: &[],
            quote: &[],
            signature: &[],
            key: &[],
        }
    }

    /// The value of PCR `pcr`, if included.
    pub fn pcr(&self, pcr: u32) -> Option<&'a [u8]> {
        if pcr >= 32 || self.pcr_mask & (1 << pcr) == 0 {
            return None;
        }
        let size = digest_size(self.bank)?;
        let index = (self.pcr_mask & ((1u32 << pcr) - 1)).count_ones() as usize;
        self.digests.get(index * size..(index + 1) * size)
    }
}

/// A writer into a caller's buffer.
struct Out<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), AttestError> {
        let end = self.at.checked_add(bytes.len()).ok_or(AttestError::BufferTooSmall)?;
        self.buf.get_mut(self.at..end).ok_or(AttestError::BufferTooSmall)?.copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }

    fn blob(&mut self, bytes: &[u8]) -> Result<(), AttestError> {
        let len = u32::try_from(bytes.len()).map_err(|_| AttestError::BufferTooSmall)?;
        self.put(&len.to_le_bytes())?;
        self.put(bytes)
    }
}

/// A reader over untrusted bytes.
struct In<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AttestError> {
        let end = self.at.checked_add(n).ok_or(AttestError::Truncated(what))?;
        let s = self.bytes.get(self.at..end).ok_or(AttestError::Truncated(what))?;
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, AttestError> {
        let b = self.take(4, what)?.try_into().map_err(|_| AttestError::Truncated(what))?;
        Ok(u32::from_le_bytes(b))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, AttestError> {
        let b = self.take(2, what)?.try_into().map_err(|_| AttestError::Truncated(what))?;
        Ok(u16::from_le_bytes(b))
    }

    fn blob(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], AttestError> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(AttestError::BadLength(what, len));
        }
        self.take(len, what)
    }

    fn magic(&mut self, magic: &[u8; 8]) -> Result<(), AttestError> {
        if self.take(8, "magic")? != magic {
            return Err(AttestError::BadMagic);
        }
        Ok(())
    }

    fn end(&self) -> Result<(), AttestError> {
        match self.bytes.len() - self.at.min(self.bytes.len()) {
            0 => Ok(()),
            n => Err(AttestError::TrailingBytes(n)),
        }
    }
}

/// Largest blob inside a report (every message fits [`crate::hypercall::MAX_MESSAGE`]).
const MAX_BLOB: usize = crate::hypercall::MAX_MESSAGE as usize;

impl<'a> Request<'a> {
    /// Encode into `buf`; returns the length used.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, AttestError> {
        self.check()?;
        let mut o = Out { buf, at: 0 };
        o.put(&REQUEST_MAGIC)?;
        o.blob(self.caller)?;
        o.blob(self.nonce)?;
        Ok(o.at)
    }

    fn check(&self) -> Result<(), AttestError> {
        if self.caller.len() > MAX_NAME {
            return Err(AttestError::BadLength("caller", self.caller.len()));
        }
        let max_nonce = crate::hypercall::MAX_NONCE as usize;
        if self.nonce.is_empty() || self.nonce.len() > max_nonce {
            return Err(AttestError::BadLength("nonce", self.nonce.len()));
        }
        Ok(())
    }

    /// Decode untrusted bytes.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, AttestError> {
        let mut r = In { bytes, at: 0 };
        r.magic(&REQUEST_MAGIC)?;
        let caller = r.blob("caller", MAX_NAME)?;
        let nonce = r.blob("nonce", crate::hypercall::MAX_NONCE as usize)?;
        r.end()?;
        let req = Self { caller, nonce };
        req.check()?;
        Ok(req)
    }
}

impl<'a> Report<'a> {
    /// Encode into `buf`; returns the length used.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, AttestError> {
        let mut o = Out { buf, at: 0 };
        o.put(&REPORT_MAGIC)?;
        o.put(&self.status.to_le_bytes())?;
        o.blob(self.caller)?;
        o.blob(self.nonce)?;
        o.put(&self.bank.to_le_bytes())?;
        o.put(&self.pcr_mask.to_le_bytes())?;
        o.blob(self.digests)?;
        o.blob(self.quote)?;
        o.blob(self.signature)?;
        o.blob(self.key)?;
        Ok(o.at)
    }

    /// Decode untrusted bytes. For status 0 the digests must be `popcount(mask)` digests of
    /// the bank's size.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, AttestError> {
        let mut r = In { bytes, at: 0 };
        r.magic(&REPORT_MAGIC)?;
        let status = r.u32("status")?;
        let caller = r.blob("caller", MAX_NAME)?;
        let nonce = r.blob("nonce", crate::hypercall::MAX_NONCE as usize)?;
        let bank = r.u16("bank")?;
        let pcr_mask = r.u32("pcr mask")?;
        let digests = r.blob("digests", MAX_BLOB)?;
        let quote = r.blob("quote", MAX_BLOB)?;
        let signature = r.blob("signature", MAX_BLOB)?;
        let key = r.blob("key", MAX_BLOB)?;
        r.end()?;
        if status == 0 {
            let size = digest_size(bank).ok_or(AttestError::DigestsMismatch)?;
            if digests.len() != pcr_mask.count_ones() as usize * size {
                return Err(AttestError::DigestsMismatch);
            }
        }
        Ok(Self { status, caller, nonce, bank, pcr_mask, digests, quote, signature, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout_and_round_trip() {
        let req = Request { caller: b"hello", nonce: &[0xAA, 0xBB] };
        let mut buf = [0u8; 64];
        let n = req.encode(&mut buf).unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            b'V', b'M', b'S', b'A', b'T', b'R', b'Q', b'1',
            5, 0, 0, 0, b'h', b'e', b'l', b'l', b'o',
            2, 0, 0, 0, 0xAA, 0xBB,
        ];
        assert_eq!(&buf[..n], expected);
        assert_eq!(Request::decode(expected), Ok(req));
        for len in 0..n {
            assert!(Request::decode(&expected[..len]).is_err());
        }
        assert!(Request { caller: b"x", nonce: &[] }.encode(&mut buf).is_err());
        assert!(Request { caller: b"x", nonce: &[0; 33] }.encode(&mut buf).is_err());
        assert_eq!(req.encode(&mut buf[..10]), Err(AttestError::BufferTooSmall));
    }

    #[test]
    fn report_round_trip_and_pcr_lookup() {
        let mut digests = [0u8; 3 * 32];
        for (i, d) in digests.chunks_mut(32).enumerate() {
            d.fill(i as u8 + 1);
        }
        let rep = Report {
            status: 0,
            caller: b"hello",
            nonce: b"n",
            bank: 0x000B,
            pcr_mask: (1 << 0) | (1 << 7) | (1 << 12),
            digests: &digests,
            quote: b"q",
            signature: b"s",
            key: b"k",
        };
        let mut buf = [0u8; 512];
        let n = rep.encode(&mut buf).unwrap();
        let back = Report::decode(&buf[..n]).unwrap();
        assert_eq!(back, rep);
        assert_eq!(back.pcr(0), Some(&[1u8; 32][..]));
        assert_eq!(back.pcr(7), Some(&[2u8; 32][..]));
        assert_eq!(back.pcr(12), Some(&[3u8; 32][..]));
        assert_eq!(back.pcr(1), None);
        assert_eq!(back.pcr(40), None);
        for len in 0..n {
            assert!(Report::decode(&buf[..len]).is_err());
        }
        let bad = Report { pcr_mask: 1, ..rep };
        let n = bad.encode(&mut buf).unwrap();
        assert_eq!(Report::decode(&buf[..n]), Err(AttestError::DigestsMismatch));
    }
}
