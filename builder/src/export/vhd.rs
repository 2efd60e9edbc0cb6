//! The fixed VHD footer: what Azure takes as a disk (a raw disk followed by one 512-byte
//! footer), from Microsoft's *Virtual Hard Disk Image Format Specification* v1.0 (2006),
//! "Hard Disk Footer Format" and Appendix "CHS Calculation".
//!
//! Written by hand because no well-kept crate writes VHD footers (the `vhdx` crates read the
//! newer format only); the footer is 512 bytes of big-endian fields.
//!
//! | offset | size | field | vmseal writes |
//! | --- | --- | --- | --- |
//! | 0 | 8 | Cookie | `conectix` |
//! | 8 | 4 | Features | `0x00000002` (the reserved bit the spec says is always set) |
//! | 12 | 4 | File Format Version | `0x00010000` |
//! | 16 | 8 | Data Offset | `0xFFFFFFFFFFFFFFFF` (fixed disks have no dynamic header) |
//! | 24 | 4 | Time Stamp | seconds since 2000-01-01 00:00:00 UTC: `SOURCE_DATE_EPOCH`, else 0 |
//! | 28 | 4 | Creator Application | `vmsl` |
//! | 32 | 4 | Creator Version | `0x00010000` |
//! | 36 | 4 | Creator Host OS | `Wi2k` (`0x5769326B`) |
//! | 40 | 8 | Original Size | the disk's size in bytes |
//! | 48 | 8 | Current Size | the same |
//! | 56 | 4 | Disk Geometry | cylinders (u16), heads (u8), sectors per track (u8), by the spec's algorithm |
//! | 60 | 4 | Disk Type | `2` (fixed) |
//! | 64 | 4 | Checksum | one's complement of the byte sum of the footer with this field zero |
//! | 68 | 16 | Unique Id | derived from the disk's primary GPT header (content-addressed, reproducible) |
//! | 84 | 1 | Saved State | `0` |
//! | 85 | 427 | Reserved | zeros |
//!
//! The size a reader sees: Azure (Hyper-V) uses Current Size. QEMU's `vpc` driver uses the
//! CHS geometry unless the creator is one it knows (`win `, `qem2`, `d2v `, …) — read a vmseal
//! VHD with `qemu-img … --image-opts driver=vpc,force_size_calc=current_size,file.filename=F`.

/// Footer length.
pub const FOOTER_LEN: usize = 512;
/// Azure's granularity: a VHD's virtual size is a whole number of MiB.
pub const AZURE_ALIGN: u64 = 1 << 20;
/// Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC).
pub const VHD_EPOCH_UNIX: u64 = 946_684_800;

/// The Creator Application field.
pub const CREATOR_APP: [u8; 4] = *b"vmsl";
/// The Creator Host OS field ("Wi2k").
pub const CREATOR_HOST_OS: u32 = 0x5769_326b;
/// Disk Type: fixed hard disk.
pub const DISK_TYPE_FIXED: u32 = 2;

/// CHS geometry (the footer's Disk Geometry field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors_per_track: u8,
}

/// The spec's CHS calculation for a disk of `size` bytes (Appendix: "CHS Calculation").
pub fn geometry(size: u64) -> Geometry {
    let total = (size / 512).min(65535 * 16 * 255);
    let (spt, heads, cth) = if total >= 65535 * 16 * 63 {
        (255, 16, total / 255)
    } else {
        let mut spt = 17;
        let mut cth = total / spt;
        let mut heads = cth.div_ceil(1024).max(4);
        if cth >= heads * 1024 || heads > 16 {
            spt = 31;
            heads = 16;
            cth = total / spt;
        }
        if cth >= heads * 1024 {
            spt = 63;
            heads = 16;
            cth = total / spt;
        }
        (spt, heads, cth)
    };
    Geometry {
        // The clamp above keeps cylinders <= 65535, heads <= 16 and spt <= 255.
        cylinders: u16::try_from(cth / heads).unwrap_or(u16::MAX),
        heads: u8::try_from(heads).unwrap_or(16),
        sectors_per_track: u8::try_from(spt).unwrap_or(255),
    }
}

/// The footer of a fixed VHD whose data is `size` bytes.
///
/// `timestamp_unix` is the creation time in Unix seconds (a time before 2000 is written as 0);
/// `unique_id` identifies the disk.
pub fn footer(size: u64, timestamp_unix: u64, unique_id: [u8; 16]) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    fn put(f: &mut [u8; FOOTER_LEN], at: usize, bytes: &[u8]) {
        if let Some(dst) = f.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    put(&mut f, 0, b"conectix");
    put(&mut f, 8, &2u32.to_be_bytes());
    put(&mut f, 12, &0x0001_0000u32.to_be_bytes());
    put(&mut f, 16, &u64::MAX.to_be_bytes());
    let stamp = u32::try_from(timestamp_unix.saturating_sub(VHD_EPOCH_UNIX)).unwrap_or(u32::MAX);
    put(&mut f, 24, &stamp.to_be_bytes());
    put(&mut f, 28, &CREATOR_APP);
    put(&mut f, 32, &0x0001_0000u32.to_be_bytes());
    put(&mut f, 36, &CREATOR_HOST_OS.to_be_bytes());
    put(&mut f, 40, &size.to_be_bytes());
    put(&mut f, 48, &size.to_be_bytes());
    let g = geometry(size);
    put(&mut f, 56, &g.cylinders.to_be_bytes());
    put(&mut f, 58, &[g.heads, g.sectors_per_track]);
    put(&mut f, 60, &DISK_TYPE_FIXED.to_be_bytes());
    put(&mut f, 68, &unique_id);
    let sum = checksum(&f);
    put(&mut f, 64, &sum.to_be_bytes());
    f
}

/// The footer checksum: the one's complement of the sum of every byte, the Checksum field
/// (bytes 64..68) counted as zero.
pub fn checksum(footer: &[u8; FOOTER_LEN]) -> u32 {
    let sum = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |s, (_, b)| s.wrapping_add(u32::from(*b)));
    !sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_follows_the_spec_table() {
        // Worked through the spec's algorithm by hand:
        // 64 MiB = 131072 sectors: spt 17 → cth 7710, heads ceil(7710/1024) = 8,
        // 7710 < 8*1024 → C = 7710/8 = 963.
        assert_eq!(
            geometry(64 << 20),
            Geometry {
                cylinders: 963,
                heads: 8,
                sectors_per_track: 17
            }
        );
        // 1 GiB = 2097152 sectors: spt 17 → cth 123361, heads 121 > 16 → spt 31, heads 16,
        // cth 67650 >= 16384 → spt 63, cth 33288, C = 2080.
        assert_eq!(
            geometry(1 << 30),
            Geometry {
                cylinders: 2080,
                heads: 16,
                sectors_per_track: 63
            }
        );
        // Past 65535*16*63 sectors (~31.5 GiB): 255 sectors, 16 heads.
        assert_eq!(geometry(64 << 30).sectors_per_track, 255);
        // The cap: 65535*16*255 sectors.
        assert_eq!(
            geometry(u64::MAX),
            Geometry {
                cylinders: 65535,
                heads: 16,
                sectors_per_track: 255
            }
        );
    }

    #[test]
    fn footer_fields_and_checksum() {
        let f = footer(64 << 20, VHD_EPOCH_UNIX + 5, [7; 16]);
        assert_eq!(&f[0..8], b"conectix");
        assert_eq!(&f[8..12], &[0, 0, 0, 2]);
        assert_eq!(&f[16..24], &[0xff; 8]);
        assert_eq!(&f[24..28], &[0, 0, 0, 5]);
        assert_eq!(&f[40..48], &(64u64 << 20).to_be_bytes());
        assert_eq!(&f[48..56], &(64u64 << 20).to_be_bytes());
        assert_eq!(&f[60..64], &[0, 0, 0, 2]);
        // The stored checksum makes the whole footer sum to 0xffffffff when added back.
        let stored = u32::from_be_bytes([f[64], f[65], f[66], f[67]]);
        let rest: u32 = f
            .iter()
            .enumerate()
            .filter(|(i, _)| !(64..68).contains(i))
            .map(|(_, b)| u32::from(*b))
            .sum();
        assert_eq!(stored.wrapping_add(rest), u32::MAX);
        // Before 2000: 0.
        assert_eq!(&footer(512, 0, [0; 16])[24..28], &[0; 4]);
    }
}
