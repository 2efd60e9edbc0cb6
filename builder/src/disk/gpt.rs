//! The GPT: protective MBR, primary and backup headers and entries (UEFI 2.10 §5.3), written
//! for one ESP and read back with every CRC checked.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// Sector size.
pub const SECTOR: u64 = 512;
/// Partition alignment and start (1 MiB).
pub const ALIGN: u64 = 1 << 20;
/// Number of partition entries (the minimum the spec allows for 16 KiB of entries).
pub const ENTRIES: u32 = 128;
/// Size of one entry.
pub const ENTRY_SIZE: u32 = 128;
/// Smallest image: 1 MiB before the ESP, a 1 MiB ESP, 1 MiB that holds the backup GPT.
pub const MIN_IMAGE_SIZE: u64 = 3 * ALIGN;
/// Partition type GUID of an EFI System Partition, C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// The ESP's partition name.
pub const ESP_NAME: &str = "EFI System Partition";
/// FAT volume id (fixed: volume ids are usually taken from the clock).
pub const VOLUME_ID: u32 = 0x5EA1_0001;
/// FAT volume label.
pub const VOLUME_LABEL: &[u8; 11] = b"VMSEAL     ";
/// Sectors of the entry array (128 × 128 / 512).
const ENTRY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR;

/// A GUID in its on-disk (mixed-endian) byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parse `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` into on-disk order.
    pub fn parse(s: &str) -> Option<Self> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        let b = hex::decode(hex).ok()?;
        let b: [u8; 16] = b.try_into().ok()?;
        Some(Self::from_rfc_bytes(b))
    }

    fn from_rfc_bytes(b: [u8; 16]) -> Self {
        let mut d = b;
        d[0..4].reverse();
        d[4..6].reverse();
        d[6..8].reverse();
        Self(d)
    }

    /// The usual text form.
    pub fn to_text(self) -> String {
        let mut b = self.0;
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        let h = hex::encode_upper(b);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// A GUID derived from content: the first 16 bytes of SHA-256(`parts` joined by NUL), with
/// the RFC 9562 version 8 ("custom") and variant bits set.
pub fn guid_from(parts: &[&[u8]]) -> Guid {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0u8]);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Guid::from_rfc_bytes(b)
}

/// Where the ESP lies, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Image size.
    pub disk: u64,
    /// ESP start (byte offset).
    pub start: u64,
    /// ESP length in bytes.
    pub len: u64,
}

impl Layout {
    /// The layout of an image of `disk` bytes (a multiple of 1 MiB, at least
    /// [`MIN_IMAGE_SIZE`]).
    pub fn new(disk: u64) -> Self {
        let last_usable = disk / SECTOR - 1 - 1 - ENTRY_SECTORS; // LBA
        let end = ((last_usable + 1) * SECTOR) / ALIGN * ALIGN;
        Self {
            disk,
            start: ALIGN,
            len: end.saturating_sub(ALIGN),
        }
    }

    /// A conservative capacity for one file in the ESP: the partition minus FAT overhead
    /// (two FATs of 4-byte entries per 512-byte cluster, reserved sectors and one cluster of
    /// slack per 4 KiB).
    pub fn file_capacity(&self) -> u64 {
        let overhead = self.len / 64 + 64 * 1024;
        self.len.saturating_sub(overhead)
    }
}

/// Write the protective MBR and both GPTs for one ESP (`Layout`), with the given GUIDs.
pub fn write_gpt<T: Write + Seek>(
    img: &mut T,
    layout: &Layout,
    disk_guid: Guid,
    part_guid: Guid,
) -> io::Result<()> {
    let lbas = layout.disk / SECTOR;
    // Protective MBR (UEFI 2.10 §5.2.3): one partition of type 0xEE from LBA 1.
    let mut mbr = [0u8; 512];
    let e = &mut mbr[446..462];
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    e[4] = 0xee;
    e[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    e[12..16].copy_from_slice(&u32::try_from(lbas - 1).unwrap_or(u32::MAX).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    // The entry array.
    let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    let esp_type = Guid::parse(ESP_TYPE).ok_or_else(|| io::Error::other("ESP type GUID"))?;
    entries[0..16].copy_from_slice(&esp_type.0);
    entries[16..32].copy_from_slice(&part_guid.0);
    entries[32..40].copy_from_slice(&(layout.start / SECTOR).to_le_bytes());
    entries[40..48].copy_from_slice(&((layout.start + layout.len) / SECTOR - 1).to_le_bytes());
    for (i, u) in ESP_NAME.encode_utf16().enumerate() {
        entries[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
    let entries_crc = crc32fast::hash(&entries);
    let header = |my: u64, alt: u64, entries_lba: u64| {
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(lbas - 2 - ENTRY_SECTORS).to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.0);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let last = lbas - 1;
    img.seek(SeekFrom::Start(0))?;
    img.write_all(&mbr)?;
    img.write_all(&header(1, last, 2))?;
    img.write_all(&entries)?;
    img.seek(SeekFrom::Start((last - ENTRY_SECTORS) * SECTOR))?;
    img.write_all(&entries)?;
    img.write_all(&header(last, 1, last - ENTRY_SECTORS))?;
    Ok(())
}

/// A partition read back from a GPT.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Partition {
    /// Index in the entry array.
    pub index: u32,
    /// Type GUID (text).
    pub type_guid: String,
    /// Unique GUID (text).
    pub guid: String,
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA (inclusive).
    pub last_lba: u64,
    /// Name.
    pub name: String,
}

/// A GPT read back.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Gpt {
    /// Disk GUID (text).
    pub disk_guid: String,
    /// Used partitions.
    pub partitions: Vec<Partition>,
}

pub(super) fn bad(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

/// Read and check the primary GPT of `img`.
pub fn read_gpt<T: Read + Seek>(img: &mut T) -> io::Result<Gpt> {
    let mut h = [0u8; 512];
    img.seek(SeekFrom::Start(SECTOR))?;
    img.read_exact(&mut h)?;
    if &h[0..8] != b"EFI PART" {
        return Err(bad("no GPT header at LBA 1"));
    }
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64_at = |b: &[u8], o: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(x)
    };
    let size = u32_at(&h, 12) as usize;
    if !(92..=512).contains(&size) {
        return Err(bad("GPT header size out of range"));
    }
    let mut hc = h;
    hc[16..20].fill(0);
    if crc32fast::hash(&hc[..size]) != u32_at(&h, 16) {
        return Err(bad("GPT header CRC mismatch"));
    }
    let (lba, n, esz) = (u64_at(&h, 72), u32_at(&h, 80), u32_at(&h, 84));
    if !(128..=4096).contains(&esz) || n > 4096 {
        return Err(bad("GPT entry array size out of range"));
    }
    let mut entries = vec![0u8; n as usize * esz as usize];
    img.seek(SeekFrom::Start(
        lba.checked_mul(SECTOR).ok_or_else(|| bad("entry LBA"))?,
    ))?;
    img.read_exact(&mut entries)?;
    if crc32fast::hash(&entries) != u32_at(&h, 88) {
        return Err(bad("GPT entry array CRC mismatch"));
    }
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&h[56..72]);
    let mut partitions = Vec::new();
    for (i, e) in entries.chunks_exact(esz as usize).enumerate() {
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let g = |o: usize| {
            let mut x = [0u8; 16];
            x.copy_from_slice(&e[o..o + 16]);
            Guid(x).to_text()
        };
        let name: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        partitions.push(Partition {
            index: i as u32,
            type_guid: g(0),
            guid: g(16),
            first_lba: u64_at(e, 32),
            last_lba: u64_at(e, 40),
            name: String::from_utf16_lossy(&name),
        });
    }
    Ok(Gpt {
        disk_guid: Guid(guid).to_text(),
        partitions,
    })
}
