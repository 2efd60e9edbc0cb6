//! The SEV facts an OVMF firmware image declares about itself: the GUIDed footer table at its
//! end and the SEV metadata ("ASEV") it points to. Read from untrusted bytes: every offset is
//! checked, nothing panics.
//!
//! Hand-written: the one crate that parses these tables, `sev` (`measurement::ovmf`), indexes
//! and subtracts unchecked and panics on short or corrupt files (see [`super::snp`]); the
//! `igvm` crate covers IGVM files, not OVMF's reset-vector tables. Layouts, from edk2:
//!
//! - **Footer table** (`OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm`, "OVMF GUIDed
//!   structure table"): it ends 32 bytes before the end of the image with the footer entry
//!   `{ u16 size; GUID 96b582de-1fb2-45f7-baea-a366c55a082d }`, where `size` counts the whole
//!   table including that 18-byte entry. The entries before it are read backwards, each
//!   `{ data[size - 18]; u16 size; GUID }` (data first, its size and GUID last).
//! - **SEV metadata** (`OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`): the table entry with
//!   GUID `dc886566-984a-4798-a75e-5585a7bf67cc` holds a `u32` offset of the metadata from the
//!   end of the image; there `{ "ASEV"; u32 size; u32 version = 1; u32 count }` then `count`
//!   sections `{ u32 gpa; u32 size; u32 type }` (type 1 SNP_SEC_MEM, 2 SNP_SECRETS, 3 CPUID,
//!   4 SVSM_CAA, 0x10 SNP_KERNEL_HASHES).
//! - **SEV-ES reset block** (`00f771de-1a7e-4fcb-890e-68c77e2fb44e`): `u32` reset EIP of the
//!   application processors; **SEV hash table** (`7255371f-3a3b-4b04-927b-1da6efa8d454`):
//!   `u32` GPA and `u32` size of the table QEMU fills with the kernel/initrd/cmdline hashes.
//!
//! All integers are little-endian; GUIDs are in the EFI byte order (first three fields
//! little-endian).

use std::collections::BTreeMap;

/// A GUID in EFI byte order from its textual fields (`aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee`).
pub const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// `96b582de-1fb2-45f7-baea-a366c55a082d`: the footer entry of the table.
pub const TABLE_FOOTER_GUID: [u8; 16] = guid(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// `00f771de-1a7e-4fcb-890e-68c77e2fb44e`: SEV-ES AP reset block (`u32` reset EIP).
pub const SEV_ES_RESET_BLOCK_GUID: [u8; 16] = guid(
    0x00f7_71de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);
/// `7255371f-3a3b-4b04-927b-1da6efa8d454`: SEV hash table (`u32` GPA, `u32` size).
pub const SEV_HASH_TABLE_RV_GUID: [u8; 16] = guid(
    0x7255_371f,
    0x3a3b,
    0x4b04,
    [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54],
);
/// `dc886566-984a-4798-a75e-5585a7bf67cc`: SEV metadata (`u32` offset from the end).
pub const SEV_METADATA_GUID: [u8; 16] = guid(
    0xdc88_6566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);

/// Size of a table entry's trailer (`u16` size + GUID).
const ENTRY_TRAILER: usize = 18;
/// The table ends this many bytes before the end of the image.
const TABLE_END_FROM_IMAGE_END: usize = 32;
/// Size of the metadata header ("ASEV", size, version, count).
const METADATA_HEADER: usize = 16;
/// Size of one metadata section descriptor.
const SECTION_DESC: usize = 12;

/// What an SEV metadata section asks the VMM to do with its pages at launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// 1: pre-validated zero memory (`SNP_LAUNCH_UPDATE` of zero pages).
    SecMem,
    /// 2: the SNP secrets page.
    Secrets,
    /// 3: the CPUID page.
    Cpuid,
    /// 4: the SVSM calling-area page (zero pages).
    SvsmCaa,
    /// 0x10: the page holding the kernel/initrd/cmdline hash table.
    KernelHashes,
}

impl SectionKind {
    /// The kind of metadata type `t`.
    pub fn from_type(t: u32) -> Option<Self> {
        Some(match t {
            1 => Self::SecMem,
            2 => Self::Secrets,
            3 => Self::Cpuid,
            4 => Self::SvsmCaa,
            0x10 => Self::KernelHashes,
            _ => return None,
        })
    }

    /// The edk2 name.
    pub fn name(self) -> &'static str {
        match self {
            Self::SecMem => "SNP_SEC_MEM",
            Self::Secrets => "SNP_SECRETS",
            Self::Cpuid => "CPUID",
            Self::SvsmCaa => "SVSM_CAA",
            Self::KernelHashes => "SNP_KERNEL_HASHES",
        }
    }
}

/// One SEV metadata section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// Guest physical address.
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
    /// What it is.
    pub kind: SectionKind,
}

/// The SEV facts of a firmware image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SevFirmware {
    /// The footer table's entries by GUID (their data).
    pub table: BTreeMap<[u8; 16], Vec<u8>>,
    /// The SEV metadata sections in file order (empty when the firmware has none).
    pub sections: Vec<Section>,
}

/// Why firmware bytes are not an SEV OVMF.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OvmfError {
    /// No GUIDed table at the end.
    #[error("no OVMF GUIDed footer table (GUID 96b582de-… 32 bytes before the end)")]
    NoFooter,
    /// The table is inconsistent.
    #[error("OVMF footer table: {0}")]
    Table(String),
    /// The SEV metadata is inconsistent.
    #[error("SEV metadata: {0}")]
    Metadata(String),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn guid_text(g: &[u8; 16]) -> String {
    let mut s = String::new();
    let a = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
    let b = u16::from_le_bytes([g[4], g[5]]);
    let c = u16::from_le_bytes([g[6], g[7]]);
    s.push_str(&format!("{a:08x}-{b:04x}-{c:04x}-"));
    for (i, x) in g.iter().enumerate().skip(8) {
        if i == 10 {
            s.push('-');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

impl SevFirmware {
    /// Parse the footer table and the SEV metadata of a firmware image.
    pub fn parse(image: &[u8]) -> Result<Self, OvmfError> {
        let table_err = |m: String| OvmfError::Table(m);
        // The footer entry's trailer ends 32 bytes before the end.
        let footer_end = image
            .len()
            .checked_sub(TABLE_END_FROM_IMAGE_END)
            .ok_or(OvmfError::NoFooter)?;
        let footer_at = footer_end
            .checked_sub(ENTRY_TRAILER)
            .ok_or(OvmfError::NoFooter)?;
        if image.get(footer_at + 2..footer_end) != Some(&TABLE_FOOTER_GUID[..]) {
            return Err(OvmfError::NoFooter);
        }
        let total = u16_at(image, footer_at).ok_or(OvmfError::NoFooter)? as usize;
        let body_len = total.checked_sub(ENTRY_TRAILER).ok_or_else(|| {
            table_err(format!(
                "footer size {total} is smaller than its own {ENTRY_TRAILER}-byte entry"
            ))
        })?;
        let body_start = footer_at.checked_sub(body_len).ok_or_else(|| {
            table_err(format!(
                "footer size {total} reaches before the start of the image"
            ))
        })?;
        let body = image.get(body_start..footer_at).unwrap_or_default();
        let mut table = BTreeMap::new();
        let mut end = body.len();
        while end > 0 {
            let at = end.checked_sub(ENTRY_TRAILER).ok_or_else(|| {
                table_err(format!(
                    "{end} byte(s) left at the start of the table, fewer than an entry's {ENTRY_TRAILER}"
                ))
            })?;
            let size = u16_at(body, at).unwrap_or_default() as usize;
            let g: [u8; 16] = body
                .get(at + 2..end)
                .and_then(|s| s.try_into().ok())
                .unwrap_or_default();
            if size < ENTRY_TRAILER || size > end {
                return Err(table_err(format!(
                    "entry {} has size {size}: not between {ENTRY_TRAILER} and the {end} byte(s) left",
                    guid_text(&g)
                )));
            }
            let start = end - size;
            let data = body.get(start..at).unwrap_or_default().to_vec();
            if table.insert(g, data).is_some() {
                return Err(table_err(format!("entry {} appears twice", guid_text(&g))));
            }
            end = start;
        }
        let sections = match table.get(&SEV_METADATA_GUID) {
            Some(d) => parse_metadata(image, d)?,
            None => Vec::new(),
        };
        Ok(Self { table, sections })
    }

    /// The SEV-ES AP reset EIP (`None` when the firmware has no reset block).
    pub fn reset_eip(&self) -> Option<u32> {
        self.table
            .get(&SEV_ES_RESET_BLOCK_GUID)
            .and_then(|d| u32_at(d, 0))
    }

    /// The GPA of the SEV hash table (`None` when absent or 0).
    pub fn hash_table_gpa(&self) -> Option<u32> {
        self.table
            .get(&SEV_HASH_TABLE_RV_GUID)
            .and_then(|d| u32_at(d, 0))
            .filter(|g| *g != 0)
    }

    /// Whether a metadata section of `kind` is declared.
    pub fn has_section(&self, kind: SectionKind) -> bool {
        self.sections.iter().any(|s| s.kind == kind)
    }
}

fn parse_metadata(image: &[u8], entry: &[u8]) -> Result<Vec<Section>, OvmfError> {
    let bad = |m: String| OvmfError::Metadata(m);
    let from_end = u32_at(entry, 0)
        .ok_or_else(|| bad("the table entry holds no 4-byte offset".into()))?
        as usize;
    let start = image.len().checked_sub(from_end).ok_or_else(|| {
        bad(format!(
            "offset {from_end:#x} from the end is beyond the start of the image"
        ))
    })?;
    let header = image
        .get(start..start.saturating_add(METADATA_HEADER))
        .filter(|h| h.len() == METADATA_HEADER)
        .ok_or_else(|| bad(format!("header at {start:#x} runs past the end")))?;
    if header.get(0..4) != Some(&b"ASEV"[..]) {
        return Err(bad(format!("no \"ASEV\" signature at {start:#x}")));
    }
    let size = u32_at(header, 4).unwrap_or_default() as usize;
    let version = u32_at(header, 8).unwrap_or_default();
    let count = u32_at(header, 12).unwrap_or_default() as usize;
    if version != 1 {
        return Err(bad(format!("version {version}, only 1 is known")));
    }
    let needed = count
        .checked_mul(SECTION_DESC)
        .and_then(|n| n.checked_add(METADATA_HEADER))
        .ok_or_else(|| bad(format!("{count} sections overflow")))?;
    if needed > size {
        return Err(bad(format!(
            "{count} sections need {needed} bytes, the header's size is {size}"
        )));
    }
    let items = image
        .get(start..)
        .and_then(|s| s.get(METADATA_HEADER..needed))
        .ok_or_else(|| bad(format!("{count} sections run past the end of the image")))?;
    let mut sections = Vec::with_capacity(count);
    for (i, d) in items.chunks_exact(SECTION_DESC).enumerate() {
        let t = u32_at(d, 8).unwrap_or_default();
        let kind = SectionKind::from_type(t)
            .ok_or_else(|| bad(format!("section {i} has unknown type {t:#x}")))?;
        sections.push(Section {
            gpa: u32_at(d, 0).unwrap_or_default(),
            size: u32_at(d, 4).unwrap_or_default(),
            kind,
        });
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of `entries` (GUID, data) at the end of `len` zero bytes, with 32 bytes after it.
    pub(crate) fn with_table(len: usize, entries: &[([u8; 16], Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (g, d) in entries.iter().rev() {
            body.extend_from_slice(d);
            body.extend_from_slice(&((d.len() + ENTRY_TRAILER) as u16).to_le_bytes());
            body.extend_from_slice(g);
        }
        body.extend_from_slice(&((body.len() + ENTRY_TRAILER) as u16).to_le_bytes());
        body.extend_from_slice(&TABLE_FOOTER_GUID);
        let mut img = vec![0u8; len];
        let at = len - 32 - body.len();
        img[at..len - 32].copy_from_slice(&body);
        img
    }

    #[test]
    fn guid_text_round_trips_the_edk2_spelling() {
        assert_eq!(
            guid_text(&TABLE_FOOTER_GUID),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
        assert_eq!(
            guid_text(&SEV_METADATA_GUID),
            "dc886566-984a-4798-a75e-5585a7bf67cc"
        );
    }

    #[test]
    fn reads_entries_and_metadata() {
        let mut img = with_table(
            8192,
            &[
                (SEV_ES_RESET_BLOCK_GUID, 0x80_b004u32.to_le_bytes().to_vec()),
                (SEV_METADATA_GUID, 4096u32.to_le_bytes().to_vec()),
            ],
        );
        let m = 4096;
        img[m..m + 4].copy_from_slice(b"ASEV");
        img[m + 4..m + 8].copy_from_slice(&40u32.to_le_bytes());
        img[m + 8..m + 12].copy_from_slice(&1u32.to_le_bytes());
        img[m + 12..m + 16].copy_from_slice(&2u32.to_le_bytes());
        for (i, (g, s, t)) in [(0x80_0000u32, 0x9000u32, 1u32), (0x80_d000, 0x1000, 2)]
            .into_iter()
            .enumerate()
        {
            let at = m + 16 + 12 * i;
            img[at..at + 4].copy_from_slice(&g.to_le_bytes());
            img[at + 4..at + 8].copy_from_slice(&s.to_le_bytes());
            img[at + 8..at + 12].copy_from_slice(&t.to_le_bytes());
        }
        let f = SevFirmware::parse(&img).unwrap();
        assert_eq!(f.reset_eip(), Some(0x80_b004));
        assert_eq!(f.hash_table_gpa(), None);
        assert_eq!(f.sections.len(), 2);
        assert_eq!(f.sections[1].kind, SectionKind::Secrets);
        // A count beyond the header's size is refused.
        img[m + 12..m + 16].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(
            SevFirmware::parse(&img),
            Err(OvmfError::Metadata(_))
        ));
    }

    #[test]
    fn refuses_bad_tables_without_panicking() {
        assert_eq!(SevFirmware::parse(&[]), Err(OvmfError::NoFooter));
        assert_eq!(SevFirmware::parse(&[0; 4096]), Err(OvmfError::NoFooter));
        let mut img = with_table(4096, &[(SEV_ES_RESET_BLOCK_GUID, vec![1, 2, 3, 4])]);
        // Entry size larger than what is left.
        let at = 4096 - 32 - 18 - 18;
        img[at..at + 2].copy_from_slice(&0xff00u16.to_le_bytes());
        assert!(matches!(SevFirmware::parse(&img), Err(OvmfError::Table(_))));
        // Footer size reaching before the image.
        let mut img = with_table(64, &[]);
        img[64 - 32 - 18..64 - 32 - 16].copy_from_slice(&0xffffu16.to_le_bytes());
        assert!(matches!(SevFirmware::parse(&img), Err(OvmfError::Table(_))));
        // Pseudo-random bytes written over a valid table and metadata parse or err.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let base = with_table(8192, &[(SEV_METADATA_GUID, 4096u32.to_le_bytes().to_vec())]);
        for _ in 0..2000 {
            let mut img = base.clone();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = 4096 + (seed as usize % 4096);
                img[at] = (seed >> 32) as u8;
            }
            let _ = SevFirmware::parse(&img);
        }
        // Every truncation of a valid image parses or errs, never panics.
        let img = with_table(256, &[(SEV_METADATA_GUID, 100u32.to_le_bytes().to_vec())]);
        for n in 0..img.len() {
            let _ = SevFirmware::parse(&img[..n]);
            let _ = SevFirmware::parse(&img[n..]);
        }
    }
}
