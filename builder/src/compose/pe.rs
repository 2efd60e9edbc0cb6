//! Composition of the appliance PE: the stub with vmseal's sections appended.
//!
//! Reads the stub with `goblin`, writes the output with its own code so that every byte is
//! chosen here (`shared/reference/measured-boot.md` §C.1):
//! - new sections follow the stub's last section: `VirtualAddress` aligned to
//!   `SectionAlignment`, raw data contiguous and `FileAlignment`-aligned right after the previous
//!   section's raw data (no gaps: EDK2 hashes gaps as trailing data), `VirtualSize` = content
//!   length, `SizeOfRawData` = aligned length, characteristics `INITIALIZED_DATA | MEM_READ`;
//! - the header area grows when the section table needs room; the stub's section raw data then
//!   moves by whole `FileAlignment` units (refused if a file offset inside the stub would need
//!   fixing beyond the debug directory's `PointerToRawData`, which is fixed, or if the headers
//!   would reach the first section's `VirtualAddress`);
//! - `NumberOfSections`, `SizeOfImage`, `SizeOfInitializedData`, `TimeDateStamp`
//!   (`SOURCE_DATE_EPOCH` or 0) and `CheckSum` (the real PE checksum of the output) are
//!   updated; the certificate table stays empty — a signer appends it last.
//!
//! The output is a list of borrowed byte slices ([`Composed::pieces`]): the header bytes (owned
//! here), the stub's body and each payload (borrowed), and zero padding. Nothing is copied;
//! several writers and hashers can stream the same pieces at once.
//!
//! Refused: a stub that is already signed, is not a PE32+ x86_64 EFI application, has a COFF
//! symbol table, data after its last section, or gaps between its sections.

use std::borrow::Cow;

use goblin::pe::PE;

/// `IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ`.
pub const DATA_CHARACTERISTICS: u32 = 0x0000_0040 | 0x4000_0000;
static ZEROS: [u8; 0x1_0000] = [0; 0x1_0000];
const SECTION_HEADER_SIZE: usize = 40;

/// Why the PE could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum PeError {
    /// The stub is not a PE goblin can read.
    #[error("the stub is not a valid PE: {0}")]
    Parse(String),
    /// The stub is something vmseal cannot extend.
    #[error("the stub cannot be used: {0}")]
    Unsupported(String),
    /// A section name is invalid or used twice.
    #[error("section {0}: {1}")]
    Section(String, String),
    /// The result is too large for the 32-bit PE fields.
    #[error("the appliance PE would be larger than 4GiB")]
    TooLarge,
    /// The output failed re-validation (a bug in vmseal).
    #[error("internal error: the composed PE does not re-parse: {0}")]
    Validate(String),
}

/// One section of the output, with its layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionLayout {
    /// Name (≤ 8 bytes).
    pub name: String,
    /// RVA.
    pub virtual_address: u32,
    /// Content length.
    pub virtual_size: u32,
    /// File offset.
    pub pointer_to_raw_data: u32,
    /// Aligned length.
    pub size_of_raw_data: u32,
    /// Whether vmseal added it (false: a stub section).
    pub added: bool,
}

/// One piece of the output PE, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'p> {
    /// Bytes vmseal holds (the headers, the stub's body).
    Bytes(&'p [u8]),
    /// The content of added section number N (in the order given to [`Composed::new`]),
    /// supplied by the caller: exactly the length given.
    Section(usize),
    /// Zero padding to `FileAlignment`.
    Zeros(usize),
}

/// The zero bytes of a [`Piece::Zeros`] (padding is always shorter than 64 KiB).
pub fn zeros(n: usize) -> &'static [u8] {
    ZEROS.get(..n).unwrap_or(&[])
}

/// The composed appliance PE: its headers and layout, with the added sections' contents left
/// to the caller, who streams them ([`Composed::pieces`]).
#[derive(Debug)]
pub struct Composed<'a> {
    headers: Vec<u8>,
    body: Cow<'a, [u8]>,
    added: Vec<(u64, usize)>,
    checksum_offset: u64,
    /// Every section, in section-table order.
    pub sections: Vec<SectionLayout>,
    /// Total file size.
    pub len: u64,
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

fn put32(b: &mut [u8], at: usize, v: u32) -> Result<(), PeError> {
    b.get_mut(at..at + 4)
        .ok_or_else(|| PeError::Validate(format!("header offset {at:#x}")))?
        .copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn put16(b: &mut [u8], at: usize, v: u16) -> Result<(), PeError> {
    b.get_mut(at..at + 2)
        .ok_or_else(|| PeError::Validate(format!("header offset {at:#x}")))?
        .copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// Names of the stub's own sections (for collision checks).
pub fn stub_section_names(stub: &[u8]) -> Result<Vec<String>, PeError> {
    let pe = PE::parse(stub).map_err(|e| PeError::Parse(e.to_string()))?;
    Ok(pe
        .sections
        .iter()
        .map(|s| String::from_utf8_lossy(s.name().unwrap_or("").as_bytes()).into_owned())
        .collect())
}

impl<'a> Composed<'a> {
    /// Lay out `added` (name, content length) after `stub`'s sections, in the given order.
    /// `CheckSum` is left 0: set it with [`PeChecksum`] once the contents have streamed by.
    pub fn new(stub: &'a [u8], added: &[(String, u64)], timestamp: u32) -> Result<Self, PeError> {
        let pe = PE::parse(stub).map_err(|e| PeError::Parse(e.to_string()))?;
        let unsupported = |m: &str| Err(PeError::Unsupported(m.to_string()));
        if pe.header.coff_header.machine != goblin::pe::header::COFF_MACHINE_X86_64 {
            return unsupported("not an x86_64 image");
        }
        let Some(opt) = pe.header.optional_header else {
            return unsupported("no optional header");
        };
        if opt.standard_fields.magic != goblin::pe::optional_header::MAGIC_64 {
            return unsupported("not PE32+");
        }
        let w = &opt.windows_fields;
        if w.subsystem != goblin::pe::subsystem::IMAGE_SUBSYSTEM_EFI_APPLICATION {
            return unsupported("not an EFI application (subsystem 10)");
        }
        if w.number_of_rva_and_sizes < 5 {
            return unsupported("fewer than 5 data directories (no room for a certificate table)");
        }
        if opt
            .data_directories
            .get_certificate_table()
            .is_some_and(|d| d.size != 0 || d.virtual_address != 0)
        {
            return unsupported(
                "it is already signed (remove the signature, e.g. `sbattach --remove`)",
            );
        }
        if pe.header.coff_header.pointer_to_symbol_table != 0
            || pe.header.coff_header.number_of_symbol_table != 0
        {
            return unsupported("it has a COFF symbol table (build it stripped)");
        }
        let fa = u64::from(w.file_alignment);
        let sa = u64::from(w.section_alignment);
        if !fa.is_power_of_two()
            || !(512..=0x1_0000).contains(&fa)
            || !sa.is_power_of_two()
            || sa < fa
        {
            return unsupported("unusual FileAlignment/SectionAlignment");
        }
        let old_soh = u64::from(w.size_of_headers);
        // The stub's raw data must be contiguous from SizeOfHeaders.
        let mut raw: Vec<(u64, u64)> = pe
            .sections
            .iter()
            .filter(|s| s.size_of_raw_data != 0)
            .map(|s| {
                (
                    u64::from(s.pointer_to_raw_data),
                    u64::from(s.size_of_raw_data),
                )
            })
            .collect();
        raw.sort();
        let mut end = old_soh;
        for (ptr, size) in &raw {
            if *ptr != end {
                return unsupported(
                    "its sections are not contiguous from SizeOfHeaders (EDK2 would hash the gap as trailing data)",
                );
            }
            end = ptr + size;
        }
        if end != stub.len() as u64 {
            return unsupported("it has data after its last section (an overlay or a debug table)");
        }
        if end % fa != 0 {
            return unsupported("its last section does not end on FileAlignment");
        }
        let pe_off = pe.header.dos_header.pe_pointer as usize;
        let opt_off = pe_off + 24;
        let table_off = opt_off + usize::from(pe.header.coff_header.size_of_optional_header);
        let n_old = pe.sections.len();
        let n_new = n_old + added.len();
        if n_new > 96 {
            return Err(PeError::Section(
                format!("{} sections", added.len()),
                "too many sections (a PE holds at most 96)".into(),
            ));
        }
        // Names.
        let mut seen: Vec<String> = stub_section_names(stub)?;
        for (name, _) in added {
            if name.is_empty() || name.len() > policies::sections::MAX_NAME_LEN || !name.is_ascii()
            {
                return Err(PeError::Section(
                    name.clone(),
                    "a name must be 1-8 ASCII bytes".into(),
                ));
            }
            if seen.contains(name) {
                return Err(PeError::Section(
                    name.clone(),
                    "the name is already used".into(),
                ));
            }
            seen.push(name.clone());
        }
        // Headers: grow if the table needs room.
        let table_end = (table_off + n_new * SECTION_HEADER_SIZE) as u64;
        let new_soh = align_up(table_end, fa).max(old_soh);
        let first_va = pe
            .sections
            .iter()
            .map(|s| u64::from(s.virtual_address))
            .min()
            .unwrap_or(u64::MAX);
        if new_soh > first_va {
            return unsupported(
                "its section table cannot grow: the headers would overlap the first section's VirtualAddress",
            );
        }
        let delta = new_soh - old_soh;
        let body_start = usize::try_from(old_soh).map_err(|_| PeError::TooLarge)?;
        let mut body: Cow<'a, [u8]> = Cow::Borrowed(stub.get(body_start..).unwrap_or(&[]));
        // Moving raw data: the only file offsets inside a PE's sections are the debug
        // directory's PointerToRawData fields (PE/COFF spec, "Debug Directory"); fix them.
        if let Some(d) = opt
            .data_directories
            .get_debug_table()
            .filter(|d| d.size != 0 && delta != 0)
        {
            let file_off = pe
                .sections
                .iter()
                .find(|s| {
                    d.virtual_address >= s.virtual_address
                        && d.virtual_address + d.size <= s.virtual_address + s.size_of_raw_data
                })
                .map(|s| (d.virtual_address - s.virtual_address + s.pointer_to_raw_data) as usize)
                .ok_or_else(|| {
                    PeError::Unsupported("its debug directory is not inside a section".into())
                })?;
            let owned = body.to_mut();
            for i in 0..(d.size as usize / 28) {
                let at = (file_off + i * 28 + 24)
                    .checked_sub(body_start)
                    .ok_or_else(|| {
                        PeError::Unsupported("its debug directory is in the headers".into())
                    })?;
                let old = owned
                    .get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes)
                    .ok_or_else(|| {
                        PeError::Unsupported("its debug directory is truncated".into())
                    })?;
                if old != 0 {
                    let new =
                        u32::try_from(u64::from(old) + delta).map_err(|_| PeError::TooLarge)?;
                    put32(owned, at, new)?;
                }
            }
        }
        let mut headers = vec![0u8; usize::try_from(new_soh).map_err(|_| PeError::TooLarge)?];
        let copy = usize::try_from(old_soh.min(table_end)).map_err(|_| PeError::TooLarge)?;
        headers
            .get_mut(..copy)
            .zip(stub.get(..copy))
            .ok_or_else(|| PeError::Parse("headers truncated".into()))?
            .0
            .copy_from_slice(stub.get(..copy).unwrap_or(&[]));
        let mut sections = Vec::with_capacity(n_new);
        for s in &pe.sections {
            let ptr = if s.size_of_raw_data == 0 {
                s.pointer_to_raw_data
            } else {
                u32::try_from(u64::from(s.pointer_to_raw_data) + delta)
                    .map_err(|_| PeError::TooLarge)?
            };
            sections.push(SectionLayout {
                name: s.name().unwrap_or("").to_string(),
                virtual_address: s.virtual_address,
                virtual_size: s.virtual_size,
                pointer_to_raw_data: ptr,
                size_of_raw_data: s.size_of_raw_data,
                added: false,
            });
        }
        let mut va = pe
            .sections
            .iter()
            .map(|s| {
                u64::from(s.virtual_address) + u64::from(s.virtual_size.max(s.size_of_raw_data))
            })
            .max()
            .unwrap_or(new_soh);
        va = align_up(va, sa);
        let mut file_off = end + delta;
        let mut init_data = opt.standard_fields.size_of_initialized_data;
        let mut added_pieces = Vec::with_capacity(added.len());
        for (name, len) in added {
            let len = *len;
            if len == 0 {
                return Err(PeError::Section(
                    name.clone(),
                    "the content is empty".into(),
                ));
            }
            let raw_len = align_up(len, fa);
            let t = |v: u64| u32::try_from(v).map_err(|_| PeError::TooLarge);
            sections.push(SectionLayout {
                name: name.clone(),
                virtual_address: t(va)?,
                virtual_size: t(len)?,
                pointer_to_raw_data: t(file_off)?,
                size_of_raw_data: t(raw_len)?,
                added: true,
            });
            added_pieces.push((
                len,
                usize::try_from(raw_len - len).map_err(|_| PeError::TooLarge)?,
            ));
            va = align_up(va + len, sa);
            file_off += raw_len;
            init_data += raw_len;
        }
        let t = |v: u64| u32::try_from(v).map_err(|_| PeError::TooLarge);
        // Patch the headers.
        put16(
            &mut headers,
            pe_off + 6,
            u16::try_from(n_new).map_err(|_| PeError::TooLarge)?,
        )?;
        put32(&mut headers, pe_off + 8, timestamp)?;
        put32(&mut headers, opt_off + 8, t(init_data)?)?;
        put32(&mut headers, opt_off + 56, t(va)?)?; // SizeOfImage
        put32(&mut headers, opt_off + 60, t(new_soh)?)?;
        put32(&mut headers, opt_off + 64, 0)?; // CheckSum: see `PeChecksum`
        for (i, s) in sections.iter().enumerate() {
            let h = table_off + i * SECTION_HEADER_SIZE;
            if s.added {
                let mut name = [0u8; 8];
                name.get_mut(..s.name.len())
                    .ok_or_else(|| PeError::Section(s.name.clone(), "name too long".into()))?
                    .copy_from_slice(s.name.as_bytes());
                headers
                    .get_mut(h..h + 8)
                    .ok_or(PeError::TooLarge)?
                    .copy_from_slice(&name);
                put32(&mut headers, h + 8, s.virtual_size)?;
                put32(&mut headers, h + 12, s.virtual_address)?;
                put32(&mut headers, h + 16, s.size_of_raw_data)?;
                put32(&mut headers, h + 36, DATA_CHARACTERISTICS)?;
            }
            put32(&mut headers, h + 20, s.pointer_to_raw_data)?;
        }
        let c = Composed {
            headers,
            body,
            added: added_pieces,
            checksum_offset: (opt_off + 64) as u64,
            sections,
            len: file_off,
        };
        c.validate()?;
        Ok(c)
    }

    /// File offset of the 4-byte `CheckSum` field.
    pub fn checksum_offset(&self) -> u64 {
        self.checksum_offset
    }

    /// The output, in order.
    pub fn pieces(&self) -> Vec<Piece<'_>> {
        let mut v = vec![Piece::Bytes(&self.headers), Piece::Bytes(&self.body)];
        for (i, (_, pad)) in self.added.iter().enumerate() {
            v.push(Piece::Section(i));
            if *pad > 0 {
                v.push(Piece::Zeros(*pad));
            }
        }
        v
    }

    /// The header bytes (`[0, SizeOfHeaders)`, `CheckSum` 0).
    pub fn headers(&self) -> &[u8] {
        &self.headers
    }

    /// File offset of the certificate table's data-directory entry (index 4 of PE32+).
    pub fn cert_dir_offset(&self) -> u64 {
        self.checksum_offset + 80
    }

    /// Point the certificate-table entry (data directory 4) at a table of `size` bytes
    /// appended after the sections, at [`Composed::len`] rounded up to 8 (a signer pads the
    /// image to 8 bytes first: `shared/reference/measured-boot.md` §C.2), and return that
    /// offset. The headers then describe the signed file; [`Composed::pieces`] still yields
    /// the unsigned bytes, so the caller appends the padding and the table. The Authenticode
    /// digest skips the entry, so it is the same before and after.
    pub fn reserve_certificate_table(&mut self, size: u32) -> Result<u64, PeError> {
        let at = align_up(self.len, 8);
        let va = u32::try_from(at).map_err(|_| PeError::TooLarge)?;
        if u32::try_from(at + u64::from(size)).is_err() {
            return Err(PeError::TooLarge);
        }
        let dir = usize::try_from(self.cert_dir_offset()).map_err(|_| PeError::TooLarge)?;
        put32(&mut self.headers, dir, va)?;
        put32(&mut self.headers, dir + 4, size)?;
        Ok(at)
    }

    /// Re-parse the result (headers and section table with goblin, layout and contiguity with
    /// the Authenticode walker).
    fn validate(&self) -> Result<(), PeError> {
        let mut head = self.headers.clone();
        head.extend_from_slice(&self.body);
        let pe = PE::parse(&head).map_err(|e| PeError::Validate(e.to_string()))?;
        if pe.sections.len() != self.sections.len() {
            return Err(PeError::Validate("section count".into()));
        }
        let l = signing::authenticode::layout(&HeaderView(self))
            .map_err(|e| PeError::Validate(e.to_string()))?;
        let mut raw: Vec<_> = l.sections.iter().copied().filter(|s| s.1 != 0).collect();
        raw.sort();
        let mut end = l.size_of_headers;
        for (ptr, size) in raw {
            if ptr != end {
                return Err(PeError::Validate(format!(
                    "gap before raw data at {ptr:#x}"
                )));
            }
            end = ptr + size;
        }
        if end != self.len || l.cert_table != (0, 0) {
            return Err(PeError::Validate(
                "sections do not end at the end of the file".into(),
            ));
        }
        Ok(())
    }
}

/// The PE checksum (`imagehlp!CheckSumMappedFile`), computed incrementally: the 16-bit
/// ones'-complement sum of the file as little-endian words, with the CheckSum field counted
/// as zero, plus the file length. Feed it the whole file in order with `CheckSum` = 0.
#[derive(Clone, Debug, Default)]
pub struct PeChecksum {
    sum: u64,
    len: u64,
    odd: Option<u8>,
}

impl PeChecksum {
    /// Feed the next bytes.
    pub fn update(&mut self, mut p: &[u8]) {
        self.len += p.len() as u64;
        if let Some(lo) = self.odd.take() {
            match p.split_first() {
                Some((&hi, rest)) => {
                    self.sum += u64::from(u16::from_le_bytes([lo, hi]));
                    p = rest;
                }
                None => {
                    self.odd = Some(lo);
                    return;
                }
            }
        }
        // 64-byte blocks summed into 32 lanes of u32 (vectorised), each run of at most 2^15
        // blocks folded into the u64 sum before a lane could overflow (2^15 · 0xffff < 2^32).
        let whole = p.len() / 64 * 64;
        for run in p[..whole].chunks(64 << 15) {
            let mut lanes = [0u32; 32];
            for block in run.chunks_exact(64) {
                for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(2)) {
                    *lane += u32::from(u16::from_le_bytes([w[0], w[1]]));
                }
            }
            self.sum += lanes.iter().map(|&l| u64::from(l)).sum::<u64>();
        }
        let mut rest = &p[whole..];
        while let [a, b, tail @ ..] = rest {
            self.sum += u64::from(u16::from_le_bytes([*a, *b]));
            rest = tail;
        }
        if let [b] = rest {
            self.odd = Some(*b);
        }
    }

    /// The sum of the bytes fed to `self`, then those fed to `next` (summed on their own);
    /// `None` when `self` was fed an odd number of bytes (`next`'s words would straddle).
    pub fn followed_by(&self, next: &Self) -> Option<Self> {
        if self.odd.is_some() {
            return None;
        }
        Some(Self {
            sum: self.sum + next.sum,
            len: self.len + next.len,
            odd: next.odd,
        })
    }

    /// The checksum.
    pub fn finish(&self) -> u32 {
        let mut sum = self.sum + self.odd.map_or(0, u64::from);
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        (sum + self.len) as u32
    }
}

/// The headers and stub body of a [`Composed`] as a [`signing::authenticode::PeSource`]
/// (zeros beyond them): enough for [`signing::authenticode::layout`].
struct HeaderView<'c, 'a>(&'c Composed<'a>);

impl signing::authenticode::PeSource for HeaderView<'_, '_> {
    fn size(&self) -> u64 {
        self.0.len
    }

    fn visit(&self, start: u64, end: u64, f: &mut dyn FnMut(&[u8])) -> std::io::Result<()> {
        let mut known = self.0.headers.clone();
        known.extend_from_slice(&self.0.body);
        known.resize(
            usize::try_from(end)
                .map_err(std::io::Error::other)?
                .max(known.len()),
            0,
        );
        f(known.get(start as usize..end as usize).unwrap_or(&[]));
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal PE32+ EFI application: headers 0x400 bytes (room for 4 section headers before
    /// growth), one `.text` section of 0x200 bytes at RVA 0x1000.
    pub(crate) fn tiny_stub() -> Vec<u8> {
        let mut f = vec![0u8; 0x600];
        f[0..2].copy_from_slice(b"MZ");
        f[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        let pe = 0x80;
        f[pe..pe + 4].copy_from_slice(b"PE\0\0");
        f[pe + 4..pe + 6].copy_from_slice(&0x8664u16.to_le_bytes());
        f[pe + 6..pe + 8].copy_from_slice(&1u16.to_le_bytes());
        f[pe + 20..pe + 22].copy_from_slice(&240u16.to_le_bytes());
        f[pe + 22..pe + 24].copy_from_slice(&0x22u16.to_le_bytes());
        let o = pe + 24;
        f[o..o + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        f[o + 4..o + 8].copy_from_slice(&0x200u32.to_le_bytes()); // SizeOfCode
        f[o + 16..o + 20].copy_from_slice(&0x1000u32.to_le_bytes()); // entry
        f[o + 32..o + 36].copy_from_slice(&0x1000u32.to_le_bytes()); // SectionAlignment
        f[o + 36..o + 40].copy_from_slice(&0x200u32.to_le_bytes()); // FileAlignment
        f[o + 56..o + 60].copy_from_slice(&0x2000u32.to_le_bytes()); // SizeOfImage
        f[o + 60..o + 64].copy_from_slice(&0x400u32.to_le_bytes()); // SizeOfHeaders
        f[o + 68..o + 70].copy_from_slice(&10u16.to_le_bytes()); // EFI application
        f[o + 108..o + 112].copy_from_slice(&16u32.to_le_bytes());
        let t = o + 240;
        f[t..t + 5].copy_from_slice(b".text");
        f[t + 8..t + 12].copy_from_slice(&0x10u32.to_le_bytes());
        f[t + 12..t + 16].copy_from_slice(&0x1000u32.to_le_bytes());
        f[t + 16..t + 20].copy_from_slice(&0x200u32.to_le_bytes());
        f[t + 20..t + 24].copy_from_slice(&0x400u32.to_le_bytes());
        f[t + 36..t + 40].copy_from_slice(&0x6000_0020u32.to_le_bytes());
        f[0x400] = 0xc3;
        f
    }

    /// The file bytes of `c` with these section contents, CheckSum filled in.
    fn materialize(c: &Composed<'_>, contents: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in c.pieces() {
            match p {
                Piece::Bytes(b) => out.extend_from_slice(b),
                Piece::Section(i) => out.extend_from_slice(contents[i]),
                Piece::Zeros(n) => out.extend_from_slice(zeros(n)),
            }
        }
        let mut sum = PeChecksum::default();
        sum.update(&out);
        let at = c.checksum_offset() as usize;
        out[at..at + 4].copy_from_slice(&sum.finish().to_le_bytes());
        out
    }

    #[test]
    fn appends_contiguous_aligned_sections() {
        let stub = tiny_stub();
        let a = vec![1u8; 0x345];
        let b = vec![2u8; 0x200];
        let c = Composed::new(
            &stub,
            &[(".guest".into(), 0x345), (".vmseal".into(), 0x200)],
            7,
        )
        .unwrap();
        let out = materialize(&c, &[&a, &b]);
        assert_eq!(out.len() as u64, c.len);
        let pe = PE::parse(&out).unwrap();
        let names: Vec<_> = pe
            .sections
            .iter()
            .map(|s| s.name().unwrap().to_string())
            .collect();
        assert_eq!(names, [".text", ".guest", ".vmseal"]);
        let g = &pe.sections[1];
        assert_eq!(
            (
                g.virtual_address,
                g.virtual_size,
                g.pointer_to_raw_data,
                g.size_of_raw_data
            ),
            (0x2000, 0x345, 0x600, 0x400)
        );
        let v = &pe.sections[2];
        assert_eq!(
            (v.virtual_address, v.pointer_to_raw_data, v.size_of_raw_data),
            (0x3000, 0xa00, 0x200)
        );
        assert_eq!(v.characteristics, DATA_CHARACTERISTICS);
        let w = pe.header.optional_header.unwrap().windows_fields;
        assert_eq!(w.size_of_image, 0x4000);
        assert_eq!(pe.header.coff_header.time_date_stamp, 7);
        assert_eq!(&out[0x600..0x945], &a[..]);
        // The layout is what the Authenticode walker sees.
        let l = signing::authenticode::layout(out.as_slice()).unwrap();
        assert_eq!(l.sections.len(), 3);
        assert_eq!(l.checksum_offset, c.checksum_offset());
    }

    #[test]
    fn grows_the_header_area_and_moves_sections() {
        let stub = tiny_stub();
        let data = [7u8; 3];
        let names: Vec<String> = (0..20).map(|i| format!(".x{i}")).collect();
        let added: Vec<(String, u64)> = names.iter().map(|n| (n.clone(), 3)).collect();
        let c = Composed::new(&stub, &added, 0).unwrap();
        let out = materialize(&c, &[&data[..]; 20]);
        let pe = PE::parse(&out).unwrap();
        assert_eq!(pe.sections.len(), 21);
        let soh = pe
            .header
            .optional_header
            .unwrap()
            .windows_fields
            .size_of_headers;
        assert_eq!(soh, 0x600);
        assert_eq!(pe.sections[0].pointer_to_raw_data, 0x600);
        assert_eq!(out[0x600], 0xc3);
    }

    #[test]
    fn moving_sections_fixes_the_debug_directory() {
        let mut stub = tiny_stub();
        let o = 0x80 + 24;
        // Debug directory (one 28-byte entry) at RVA 0x1020 = file 0x420, its data at 0x460.
        stub[o + 112 + 6 * 8..o + 112 + 6 * 8 + 4].copy_from_slice(&0x1020u32.to_le_bytes());
        stub[o + 112 + 6 * 8 + 4..o + 112 + 6 * 8 + 8].copy_from_slice(&28u32.to_le_bytes());
        stub[0x420 + 12..0x420 + 16].copy_from_slice(&0u32.to_le_bytes()); // unknown type
        stub[0x420 + 16..0x420 + 20].copy_from_slice(&8u32.to_le_bytes());
        stub[0x420 + 20..0x420 + 24].copy_from_slice(&0x1060u32.to_le_bytes());
        stub[0x420 + 24..0x420 + 28].copy_from_slice(&0x460u32.to_le_bytes());
        let added: Vec<(String, u64)> = (0..20).map(|i| (format!(".x{i}"), 3)).collect();
        let c = Composed::new(&stub, &added, 0).unwrap();
        let out = materialize(&c, &[&[7u8; 3][..]; 20]);
        // Headers grew by 0x200: the entry moved to 0x620 and points at 0x660.
        assert_eq!(
            u32::from_le_bytes(out[0x620 + 24..0x620 + 28].try_into().unwrap()),
            0x660
        );
        assert_eq!(
            u32::from_le_bytes(out[0x620 + 20..0x620 + 24].try_into().unwrap()),
            0x1060
        );
    }

    #[test]
    fn refuses_signed_stub_and_bad_names() {
        let mut stub = tiny_stub();
        assert!(Composed::new(&stub, &[(".text".into(), 4)], 0).is_err());
        assert!(Composed::new(&stub, &[(".toolongname".into(), 4)], 0).is_err());
        assert!(Composed::new(&stub, &[(".empty".into(), 0)], 0).is_err());
        let o = 0x80 + 24;
        stub[o + 144..o + 148].copy_from_slice(&0x600u32.to_le_bytes());
        stub[o + 148..o + 152].copy_from_slice(&8u32.to_le_bytes());
        stub.extend_from_slice(&8u32.to_le_bytes());
        stub.extend_from_slice(&0x0200u16.to_le_bytes());
        stub.extend_from_slice(&2u16.to_le_bytes());
        let e = Composed::new(&stub, &[(".guest".into(), 4)], 0).unwrap_err();
        assert!(e.to_string().contains("signed"), "{e}");
    }

    #[test]
    fn checksum_is_the_pe_checksum() {
        let stub = tiny_stub();
        let data = [9u8; 0x1001];
        let c = Composed::new(&stub, &[(".guest".into(), 0x1001)], 0).unwrap();
        let mut out = materialize(&c, &[&data[..]]);
        let o = 0x80 + 24 + 64;
        let stored = u32::from_le_bytes(out[o..o + 4].try_into().unwrap());
        out[o..o + 4].fill(0);
        // Reference: the textbook word-by-word loop.
        let mut sum = 0u32;
        for w in out.chunks(2) {
            sum += u32::from(u16::from_le_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum = (sum & 0xffff) + (sum >> 16);
        assert_eq!(stored, sum + out.len() as u32);
        // Fed in pieces of any size (odd ones split words), the incremental sum is the same.
        for size in [1, 7, 64, 65, 1000, out.len()] {
            let mut inc = PeChecksum::default();
            for piece in out.chunks(size) {
                inc.update(piece);
            }
            assert_eq!(inc.finish(), stored, "pieces of {size}");
        }
    }

    /// Past 2^15 blocks of 0xffff words (where a u32 lane would overflow) and with an odd
    /// start, the sum is the textbook one.
    #[test]
    fn checksum_of_large_inputs() {
        let len = (64usize << 15) * 3 + 77;
        let data: Vec<u8> = (0..len)
            .map(|i| {
                if i < (64 << 16) {
                    0xff
                } else {
                    (i * 13 + i / 7) as u8
                }
            })
            .collect();
        let textbook = |b: &[u8]| {
            let mut sum = 0u64;
            for w in b.chunks(2) {
                sum += u64::from(u16::from_le_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            }
            while sum >> 16 != 0 {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            (sum + b.len() as u64) as u32
        };
        let mut inc = PeChecksum::default();
        inc.update(&data[..3]);
        inc.update(&data[3..]);
        assert_eq!(inc.finish(), textbook(&data));
    }
}
