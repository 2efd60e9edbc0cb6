//! The stub's own PE/COFF headers and section table, read from the **loaded** image.
//!
//! Input is the image as the firmware mapped it (`LoadedImage` ImageBase, ImageSize): headers at
//! offset 0, each section at its `VirtualAddress`, zero-filled from `SizeOfRawData` up to
//! `VirtualSize`. References: Microsoft PE format ("Section Table"); systemd
//! `src/boot/pe.c → pe_memory_locate_sections`.
//!
//! Every offset and size is checked against the image length: an out-of-bounds header,
//! section table or section is a [`PeError`], never a panic.

use crate::bytes::{slice, u16_at, u32_at};
use alloc::vec::Vec;
use core::fmt;
use policies::record::Token;

/// Length of a PE section name field.
pub const NAME_LEN: usize = 8;

/// Why the image's PE headers could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeError {
    /// No `MZ` at offset 0, or `e_lfanew` out of bounds.
    NotMz,
    /// No `PE\0\0` signature at `e_lfanew`.
    NotPe,
    /// The COFF or optional header does not fit in the image.
    HeaderOutOfBounds,
    /// The section table does not fit in the image (number of sections carried).
    TableOutOfBounds(u16),
    /// A section's `[VirtualAddress, +VirtualSize)` is outside the image (index carried).
    SectionOutOfBounds(usize),
    /// A section that vmseal measures appears twice (index of the second carried).
    Duplicate(usize),
}

/// The record word (`error … status=`); `Display` writes the same.
impl Token for PeError {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        match self {
            Self::NotMz => w.write_str("not-mz"),
            Self::NotPe => w.write_str("not-pe"),
            Self::HeaderOutOfBounds => w.write_str("pe-header-out-of-bounds"),
            Self::TableOutOfBounds(_) => w.write_str("section-table-out-of-bounds"),
            Self::SectionOutOfBounds(_) => w.write_str("section-out-of-bounds"),
            Self::Duplicate(_) => w.write_str("duplicate-section"),
        }
    }
}

impl fmt::Display for PeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_token(f)
    }
}

/// One entry of the section table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// The name field, NUL-padded.
    pub name: [u8; NAME_LEN],
    /// `VirtualSize`: the bytes the loader maps (and what is measured).
    pub virtual_size: u32,
    /// `VirtualAddress` (RVA).
    pub virtual_address: u32,
    /// `SizeOfRawData`.
    pub raw_size: u32,
    /// `Characteristics`.
    pub characteristics: u32,
}

impl Section {
    /// The name without NUL padding, if it is ASCII (other names never match vmseal's).
    pub fn name(&self) -> Option<&str> {
        let len = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        let n = self.name.get(..len)?;
        if n.is_ascii() {
            core::str::from_utf8(n).ok()
        } else {
            None
        }
    }
}

/// The parsed section table of a loaded image.
#[derive(Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    sections: Vec<Section>,
}

impl<'a> Image<'a> {
    /// Parse the headers of a loaded image. `bytes` is the whole mapped image.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PeError> {
        if bytes.get(..2) != Some(b"MZ") {
            return Err(PeError::NotMz);
        }
        let pe = u32_at(bytes, 0x3C).ok_or(PeError::NotMz)? as usize;
        if slice(bytes, pe, 4) != Some(b"PE\0\0") {
            return Err(PeError::NotPe);
        }
        let coff = pe.checked_add(4).ok_or(PeError::HeaderOutOfBounds)?;
        let count = u16_at(bytes, coff + 2).ok_or(PeError::HeaderOutOfBounds)?;
        let opt_size = u16_at(bytes, coff + 16).ok_or(PeError::HeaderOutOfBounds)?;
        let table = coff + 20 + usize::from(opt_size);
        if table > bytes.len() {
            return Err(PeError::HeaderOutOfBounds);
        }
        let table_bytes =
            slice(bytes, table, usize::from(count) * 40).ok_or(PeError::TableOutOfBounds(count))?;
        let mut sections = Vec::with_capacity(usize::from(count));
        for (i, h) in table_bytes.chunks_exact(40).enumerate() {
            let oob = PeError::SectionOutOfBounds(i);
            let s = Section {
                name: crate::bytes::array(h, 0).ok_or(oob)?,
                virtual_size: u32_at(h, 8).ok_or(oob)?,
                virtual_address: u32_at(h, 12).ok_or(oob)?,
                raw_size: u32_at(h, 16).ok_or(oob)?,
                characteristics: u32_at(h, 36).ok_or(oob)?,
            };
            // Every section must lie inside the mapped image, whether or not we measure it:
            // a header that points outside is a malformed image, not something to skip.
            if slice(bytes, s.virtual_address as usize, s.virtual_size as usize).is_none() {
                return Err(oob);
            }
            sections.push(s);
        }
        Ok(Self { bytes, sections })
    }

    /// All sections, in table order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The loaded contents (`VirtualSize` bytes) of `s`.
    pub fn contents(&self, s: &Section) -> &'a [u8] {
        // `parse` checked the range; an empty slice is unreachable but never a panic.
        slice(
            self.bytes,
            s.virtual_address as usize,
            s.virtual_size as usize,
        )
        .unwrap_or(&[])
    }

    /// The section named `name`, if present and non-empty. Errors if it appears twice: the
    /// stub refuses to guess which copy is meant.
    pub fn find(&self, name: &str) -> Result<Option<&Section>, PeError> {
        let mut found = None;
        for (i, s) in self.sections.iter().enumerate() {
            if s.name() == Some(name) {
                if found.is_some() {
                    return Err(PeError::Duplicate(i));
                }
                found = Some(s);
            }
        }
        // An empty section is treated as absent, as systemd-stub does (`measure_sections`
        // skips size 0), so prediction and measurement agree.
        Ok(found.filter(|s| s.virtual_size > 0))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal loaded PE32+ image: headers + the given (name, rva, bytes) sections.
    pub(crate) fn image(sections: &[(&str, u32, &[u8])], size: usize) -> Vec<u8> {
        let mut b = vec![0u8; size];
        b[0..2].copy_from_slice(b"MZ");
        b[0x3C..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        b[0x86..0x88].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        b[0x94..0x96].copy_from_slice(&0xF0u16.to_le_bytes()); // SizeOfOptionalHeader
        let table = 0x84 + 20 + 0xF0;
        for (i, (name, rva, data)) in sections.iter().enumerate() {
            let h = table + 40 * i;
            b[h..h + name.len()].copy_from_slice(name.as_bytes());
            b[h + 8..h + 12].copy_from_slice(&(data.len() as u32).to_le_bytes());
            b[h + 12..h + 16].copy_from_slice(&rva.to_le_bytes());
            b[h + 16..h + 20].copy_from_slice(&(data.len() as u32).to_le_bytes());
            b[*rva as usize..*rva as usize + data.len()].copy_from_slice(data);
        }
        b
    }

    #[test]
    fn finds_sections() {
        let b = image(
            &[
                (".text", 0x1000, b"code"),
                (".cmdline", 0x2000, b"console=ttyS0"),
            ],
            0x3000,
        );
        let img = Image::parse(&b).unwrap();
        let s = img.find(".cmdline").unwrap().unwrap();
        assert_eq!(img.contents(s), b"console=ttyS0");
        assert!(img.find(".linux").unwrap().is_none());
    }

    #[test]
    fn rejects_out_of_bounds_and_duplicates() {
        let b = image(&[(".linux", 0x1000, b"k")], 0x2000);
        assert!(Image::parse(&b[..0x1000]).is_err());
        assert_eq!(
            Image::parse(&b[..0x190]).unwrap_err(),
            PeError::TableOutOfBounds(1)
        );
        assert_eq!(
            Image::parse(&b[..0x100]).unwrap_err(),
            PeError::HeaderOutOfBounds
        );
        assert_eq!(Image::parse(&b[..1]).unwrap_err(), PeError::NotMz);
        let mut bad = b.clone();
        bad[0x3C..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Image::parse(&bad).unwrap_err(), PeError::NotPe);
        let d = image(
            &[(".linux", 0x1000, b"k"), (".linux", 0x1800, b"j")],
            0x2000,
        );
        assert_eq!(
            Image::parse(&d).unwrap().find(".linux").unwrap_err(),
            PeError::Duplicate(1)
        );
    }

    #[test]
    fn truncations_never_panic() {
        let b = image(
            &[(".linux", 0x1000, b"kernel"), (".initrd", 0x1100, b"rd")],
            0x1200,
        );
        for n in 0..b.len() {
            let _ =
                Image::parse(&b[..n]).map(|i| i.find(".initrd").map(|s| s.map(|s| i.contents(s))));
        }
    }
}
