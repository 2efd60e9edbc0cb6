//! The Authenticode image digest of a PE/COFF file, exactly as EDK2 computes it.
//!
//! Implements the walk of `shared/reference/measured-boot.md` §C.1 (EDK2
//! `MeasureBootPeCoff.c → MeasurePeImageAndExtend`, `DxeImageVerificationLib.c → HashPeImage`):
//! the headers up to `SizeOfHeaders` minus the `CheckSum` field and the certificate-table
//! data-directory entry, then every section with `SizeOfRawData != 0` sorted (stably) by
//! `PointerToRawData`, then any trailing data up to `file size − certificate table size`. Gaps
//! between sections are *not* hashed where they are; EDK2 only accounts for them in the
//! trailing-data computation, and so does this module.
//!
//! The digest is computed over an abstract [`PeSource`], so the same code hashes an in-memory
//! slice (what vmseal writes) and a file on disk (a third-party binary) without loading it.
//!
//! Bad input gives an [`AuthenticodeError`], never a panic. What it does not do: check
//! signatures, or validate anything about the PE beyond what the walk needs.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use sha2::Digest as _;

mod sign;
pub use sign::{
    SignError, SignatureReport, VerifyReport, WIN_CERT_REVISION_2_0, WIN_CERT_TYPE_EFI_GUID,
    WIN_CERT_TYPE_PKCS_SIGNED_DATA, WinCertificate, authenticode_pkcs7, certificates, pe_checksum,
    sign, verify,
};

/// A hash algorithm that EDK2 accepts for Authenticode (sha224 has no implementation there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    /// SHA-1 (20 bytes).
    Sha1,
    /// SHA-256 (32 bytes).
    Sha256,
    /// SHA-384 (48 bytes).
    Sha384,
    /// SHA-512 (64 bytes).
    Sha512,
}

impl DigestAlgorithm {
    /// Every algorithm, in TPM bank order.
    pub const ALL: [Self; 4] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];

    /// The lowercase name (`sha256`), as TPM tools and `openssl` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }
}

/// The incremental hasher: the bank hasher of `policies` (one implementation for PCR banks
/// and Authenticode digests).
pub use policies::digest::Hasher;

impl DigestAlgorithm {
    /// A fresh [`Hasher`] for this algorithm (every [`DigestAlgorithm`] is computable).
    pub fn hasher(self) -> Hasher {
        match self {
            Self::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Self::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Self::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            Self::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

/// Random access to the bytes of a PE file.
pub trait PeSource {
    /// The file size in bytes.
    fn size(&self) -> u64;
    /// Call `f` with the bytes of `[start, end)` in order, in one or more pieces. Fails if the
    /// range is outside the file.
    fn visit(&self, start: u64, end: u64, f: &mut dyn FnMut(&[u8])) -> io::Result<()>;
}

impl PeSource for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn visit(&self, start: u64, end: u64, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let range = usize::try_from(start).ok()..usize::try_from(end).ok();
        match range {
            std::ops::Range {
                start: Some(s),
                end: Some(e),
            } => match self.get(s..e) {
                Some(bytes) => {
                    f(bytes);
                    Ok(())
                }
                None => Err(out_of_file(start, end, self.size())),
            },
            _ => Err(out_of_file(start, end, self.size())),
        }
    }
}

/// A PE file on disk, read in 1 MiB pieces.
#[derive(Debug)]
pub struct FileSource {
    file: std::cell::RefCell<File>,
    len: u64,
}

impl FileSource {
    /// Wrap an open file.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            file: std::cell::RefCell::new(file),
            len,
        })
    }
}

impl PeSource for FileSource {
    fn size(&self) -> u64 {
        self.len
    }

    fn visit(&self, start: u64, end: u64, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        if start > end || end > self.len {
            return Err(out_of_file(start, end, self.len));
        }
        let mut file = self.file.borrow_mut();
        file.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = end - start;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let piece = buf.get_mut(..n).ok_or_else(|| io::Error::other("buffer"))?;
            file.read_exact(piece)?;
            f(piece);
            left -= n as u64;
        }
        Ok(())
    }
}

fn out_of_file(start: u64, end: u64, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("range {start:#x}..{end:#x} is outside the file ({len:#x} bytes)"),
    )
}

/// Why a digest could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticodeError {
    /// Reading the file failed, or a header points outside it.
    #[error("reading the PE file: {0}")]
    Io(#[from] io::Error),
    /// The file is not a PE image.
    #[error("not a PE image: {0}")]
    NotPe(&'static str),
    /// The optional header magic is neither PE32 (0x10b) nor PE32+ (0x20b).
    #[error("unknown optional header magic {0:#06x} (expected 0x10b or 0x20b)")]
    BadMagic(u16),
    /// A header field is inconsistent with the file size.
    #[error("malformed PE: {0}")]
    Malformed(String),
}

/// The parts of a PE's layout that the Authenticode walk needs (all offsets are file offsets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeLayout {
    /// Offset of the 4-byte `CheckSum` field.
    pub checksum_offset: u64,
    /// Offset of the 8-byte certificate-table data-directory entry, if present.
    pub cert_dir_offset: Option<u64>,
    /// `SizeOfHeaders`.
    pub size_of_headers: u64,
    /// The certificate table's file offset and size (both 0 when unsigned).
    pub cert_table: (u64, u64),
    /// `(PointerToRawData, SizeOfRawData)` of every section, in section-table order.
    pub sections: Vec<(u64, u64)>,
    /// The file size.
    pub file_size: u64,
}

fn read_headers<S: PeSource + ?Sized>(
    src: &S,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, AuthenticodeError> {
    let mut out = Vec::new();
    src.visit(start, end.min(src.size()), &mut |b| {
        out.extend_from_slice(b)
    })?;
    Ok(out)
}

fn le16(b: &[u8], at: usize) -> Result<u16, AuthenticodeError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(AuthenticodeError::NotPe("header truncated"))
}

fn le32(b: &[u8], at: usize) -> Result<u32, AuthenticodeError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(AuthenticodeError::NotPe("header truncated"))
}

/// Read the layout of `src` (`MZ` + `e_lfanew`, or a bare `PE\0\0` header at offset 0).
pub fn layout<S: PeSource + ?Sized>(src: &S) -> Result<PeLayout, AuthenticodeError> {
    let first = read_headers(src, 0, 4096)?;
    let pe = if first.starts_with(b"MZ") {
        le32(&first, 0x3c)? as usize
    } else {
        0
    };
    // Read enough for the COFF and optional header, then the section table.
    let head = read_headers(src, 0, pe as u64 + 24 + 0x1000)?;
    if head.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(AuthenticodeError::NotPe("no PE signature at e_lfanew"));
    }
    let coff = pe + 4;
    let nsections = le16(&head, coff + 2)? as usize;
    let opt_size = le16(&head, coff + 16)? as usize;
    let opt = coff + 20;
    let magic = le16(&head, opt)?;
    let (nrva_at, cert_at) = match magic {
        0x10b => (opt + 92, opt + 128),
        0x20b => (opt + 108, opt + 144),
        m => return Err(AuthenticodeError::BadMagic(m)),
    };
    let size_of_headers = u64::from(le32(&head, opt + 60)?);
    let nrva = le32(&head, nrva_at)?;
    let (cert_dir_offset, cert_table) = if nrva > 4 {
        let off = le32(&head, cert_at)?;
        let size = le32(&head, cert_at + 4)?;
        (Some(cert_at as u64), (u64::from(off), u64::from(size)))
    } else {
        (None, (0, 0))
    };
    let table = opt + opt_size;
    let table_end = table + 40 * nsections;
    let head = if table_end > head.len() {
        read_headers(src, 0, table_end as u64)?
    } else {
        head
    };
    let mut sections = Vec::with_capacity(nsections);
    for i in 0..nsections {
        let h = table + 40 * i;
        sections.push((
            u64::from(le32(&head, h + 20)?),
            u64::from(le32(&head, h + 16)?),
        ));
    }
    let file_size = src.size();
    if size_of_headers > file_size {
        return Err(AuthenticodeError::Malformed(format!(
            "SizeOfHeaders {size_of_headers:#x} is past the end of the file ({file_size:#x} bytes)"
        )));
    }
    Ok(PeLayout {
        checksum_offset: (opt + 64) as u64,
        cert_dir_offset,
        size_of_headers,
        cert_table,
        sections,
        file_size,
    })
}

/// The Authenticode digest of `src` with `alg` (EDK2's walk, see the module docs).
pub fn digest<S: PeSource + ?Sized>(
    src: &S,
    alg: DigestAlgorithm,
) -> Result<Vec<u8>, AuthenticodeError> {
    let ranges = hashed_ranges(&layout(src)?)?;
    let mut h = alg.hasher();
    let mut feed = |b: &[u8]| h.update(b);
    for (start, end) in ranges {
        src.visit(start, end, &mut feed)?;
    }
    Ok(h.finalize())
}

/// The file ranges `[start, end)` that EDK2's walk hashes, in hashing order (see the module
/// docs): the digest is the hash of their concatenation. The order is the file's for an image
/// whose sections follow each other without gaps (what vmseal writes), so a caller can hash
/// them while reading the file once; with gaps, the trailing-data range can go back into the
/// sections (EDK2's arithmetic, kept).
pub fn hashed_ranges(l: &PeLayout) -> Result<Vec<(u64, u64)>, AuthenticodeError> {
    let mut out = Vec::new();
    // Steps 2–4: headers without CheckSum and the certificate-table entry.
    if l.checksum_offset + 4 > l.size_of_headers {
        return Err(AuthenticodeError::Malformed(format!(
            "SizeOfHeaders {:#x} ends inside the optional header",
            l.size_of_headers
        )));
    }
    out.push((0, l.checksum_offset));
    match l.cert_dir_offset {
        Some(cd) if cd + 8 <= l.size_of_headers => {
            out.push((l.checksum_offset + 4, cd));
            out.push((cd + 8, l.size_of_headers));
        }
        Some(_) => {
            return Err(AuthenticodeError::Malformed(
                "SizeOfHeaders ends inside the data directories".into(),
            ));
        }
        None => out.push((l.checksum_offset + 4, l.size_of_headers)),
    }
    // Steps 5–6: sections by PointerToRawData (a stable sort, like EDK2's insertion sort).
    let mut sum = l.size_of_headers;
    let mut sections: Vec<(u64, u64)> = l.sections.iter().copied().filter(|s| s.1 != 0).collect();
    sections.sort_by_key(|s| s.0);
    for (ptr, size) in sections {
        let end = ptr
            .checked_add(size)
            .filter(|&e| e <= l.file_size)
            .ok_or_else(|| {
                AuthenticodeError::Malformed(format!(
                    "section raw data {ptr:#x}+{size:#x} is past the end of the file ({:#x} bytes)",
                    l.file_size
                ))
            })?;
        out.push((ptr, end));
        sum += size;
    }
    // Step 7: trailing data, up to the certificate table.
    let cert_size = l.cert_table.1;
    if l.file_size > sum {
        let end = l
            .file_size
            .checked_sub(cert_size)
            .filter(|&e| e >= sum)
            .ok_or_else(|| {
                AuthenticodeError::Malformed(format!(
                    "certificate table size {cert_size:#x} does not fit after the sections"
                ))
            })?;
        out.push((sum, end));
    } else if l.file_size < sum + cert_size && cert_size != 0 {
        return Err(AuthenticodeError::Malformed(
            "certificate table overlaps the sections".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made PE32+ image: 0x200 bytes of headers, two sections (`.b` stored before `.a`
    /// in the file although listed after it), 16 bytes of trailing data.
    fn sample() -> Vec<u8> {
        let mut f = vec![0u8; 0x200 + 0x200 + 0x200 + 16];
        f[0..2].copy_from_slice(b"MZ");
        f[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        f[0x40..0x44].copy_from_slice(b"PE\0\0");
        let coff = 0x44;
        f[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        f[coff + 2..coff + 4].copy_from_slice(&2u16.to_le_bytes());
        f[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        f[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        f[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes());
        f[opt + 64..opt + 68].copy_from_slice(&0xdead_beefu32.to_le_bytes()); // CheckSum
        f[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let table = opt + 240;
        // .a at 0x400, .b at 0x200
        f[table..table + 2].copy_from_slice(b".a");
        f[table + 16..table + 20].copy_from_slice(&0x200u32.to_le_bytes());
        f[table + 20..table + 24].copy_from_slice(&0x400u32.to_le_bytes());
        f[table + 40..table + 42].copy_from_slice(b".b");
        f[table + 56..table + 60].copy_from_slice(&0x200u32.to_le_bytes());
        f[table + 60..table + 64].copy_from_slice(&0x200u32.to_le_bytes());
        for (i, b) in f.iter_mut().enumerate().skip(0x200) {
            *b = (i % 251) as u8;
        }
        f
    }

    fn by_hand(f: &[u8], alg: DigestAlgorithm) -> Vec<u8> {
        let opt = 0x44 + 20;
        let mut h = alg.hasher();
        h.update(&f[..opt + 64]);
        h.update(&f[opt + 68..opt + 144]);
        h.update(&f[opt + 152..0x200]);
        h.update(&f[0x200..0x400]); // .b first: lower PointerToRawData
        h.update(&f[0x400..0x600]);
        h.update(&f[0x600..]);
        h.finalize()
    }

    #[test]
    fn matches_the_walk_by_hand_for_every_algorithm() {
        let f = sample();
        for alg in DigestAlgorithm::ALL {
            assert_eq!(
                digest(f.as_slice(), alg).unwrap(),
                by_hand(&f, alg),
                "{}",
                alg.name()
            );
        }
    }

    #[test]
    fn checksum_and_cert_entry_are_not_hashed() {
        let f = sample();
        let mut g = f.clone();
        let opt = 0x44 + 20;
        g[opt + 64] ^= 0xff;
        assert_eq!(
            digest(f.as_slice(), DigestAlgorithm::Sha256).unwrap(),
            digest(g.as_slice(), DigestAlgorithm::Sha256).unwrap()
        );
        g[opt + 60] ^= 1; // SizeOfHeaders is hashed
        assert!(
            digest(g.as_slice(), DigestAlgorithm::Sha256).is_err()
                || digest(f.as_slice(), DigestAlgorithm::Sha256).unwrap()
                    != digest(g.as_slice(), DigestAlgorithm::Sha256).unwrap()
        );
    }

    #[test]
    fn certificate_table_is_excluded_from_trailing_data() {
        let mut f = sample();
        let plain = digest(f.as_slice(), DigestAlgorithm::Sha256).unwrap();
        let off = f.len() as u32;
        f.extend_from_slice(&[0x55; 24]);
        let opt = 0x44 + 20;
        f[opt + 144..opt + 148].copy_from_slice(&off.to_le_bytes());
        f[opt + 148..opt + 152].copy_from_slice(&24u32.to_le_bytes());
        assert_eq!(
            digest(f.as_slice(), DigestAlgorithm::Sha256).unwrap(),
            plain
        );
    }

    #[test]
    fn file_source_matches_slice() {
        let f = sample();
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut tmp, &f).unwrap();
        let src = FileSource::new(tmp.reopen().unwrap()).unwrap();
        assert_eq!(
            digest(&src, DigestAlgorithm::Sha384).unwrap(),
            digest(f.as_slice(), DigestAlgorithm::Sha384).unwrap()
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let f = sample();
        for n in [0, 1, 2, 0x3c, 0x44, 0x60, 0x100, 0x1ff, 0x300] {
            let _ = digest(&f[..n], DigestAlgorithm::Sha256);
        }
        let mut g = f.clone();
        g[0x44 + 20 + 240 + 20] = 0xff; // section pointer past the end
        assert!(digest(g.as_slice(), DigestAlgorithm::Sha256).is_err());
        assert!(digest(b"MZ".as_slice(), DigestAlgorithm::Sha1).is_err());
    }
}
