//! The ESP's FAT file system: formatted by the `fatfs` crate with a fixed volume id, label and
//! timestamps, and the `.`/`..` entries fixed after it.

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::gpt::{Layout, SECTOR, VOLUME_ID, VOLUME_LABEL, bad};

/// The FAT type for an ESP of `len` bytes: FAT32 from 33 MiB (the UEFI spec's preference and
/// the smallest size with ≥ 65525 clusters of 512 bytes), FAT16 from 16 MiB, else FAT12.
pub fn fat_type(len: u64) -> fatfs::FatType {
    if len >= 33 << 20 {
        fatfs::FatType::Fat32
    } else if len >= 16 << 20 {
        fatfs::FatType::Fat16
    } else {
        fatfs::FatType::Fat12
    }
}

/// FAT timestamps: one fixed date and time (`SOURCE_DATE_EPOCH`, else 1980-01-01 00:00).
#[derive(Debug)]
pub struct FixedTime(pub(super) fatfs::DateTime);

impl FixedTime {
    /// From seconds since the Unix epoch (clamped to FAT's 1980..=2107 range).
    pub fn from_epoch(secs: u64) -> Self {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u16;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u16;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
        let (date, time) = if year < 1980 {
            (
                fatfs::Date {
                    year: 1980,
                    month: 1,
                    day: 1,
                },
                fatfs::Time {
                    hour: 0,
                    min: 0,
                    sec: 0,
                    millis: 0,
                },
            )
        } else if year > 2107 {
            (
                fatfs::Date {
                    year: 2107,
                    month: 12,
                    day: 31,
                },
                fatfs::Time {
                    hour: 23,
                    min: 59,
                    sec: 58,
                    millis: 0,
                },
            )
        } else {
            (
                fatfs::Date { year, month, day },
                fatfs::Time {
                    hour: (rem / 3600) as u16,
                    min: (rem / 60 % 60) as u16,
                    sec: (rem % 60) as u16 & !1,
                    millis: 0,
                },
            )
        };
        Self(fatfs::DateTime { date, time })
    }
}

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

/// Format `esp` (the partition's bytes, `layout.len` long: a [`super::Window`] of the image, best
/// behind a [`super::BlockCache`]) and return the file system, ready for files.
pub fn format_esp<T: Read + Write + Seek>(
    mut esp: T,
    layout: &Layout,
    time: &'static FixedTime,
) -> io::Result<fatfs::FileSystem<T>> {
    let sectors =
        u32::try_from(layout.len / SECTOR).map_err(|_| io::Error::other("ESP larger than 2TiB"))?;
    let opts = fatfs::FormatVolumeOptions::new()
        .fat_type(fat_type(layout.len))
        .bytes_per_sector(512)
        .total_sectors(sectors)
        .fats(2)
        .media(0xf8)
        .volume_id(VOLUME_ID)
        .volume_label(*VOLUME_LABEL);
    fatfs::format_volume(&mut esp, opts)?;
    esp.seek(SeekFrom::Start(0))?;
    fatfs::FileSystem::new(
        esp,
        fatfs::FsOptions::new()
            .time_provider(time)
            .update_accessed_date(false),
    )
}

/// Where a FAT volume's regions lie, from its boot sector (Microsoft FAT spec §3).
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    /// Bytes per cluster.
    cluster: u64,
    /// Byte offset of the FAT12/16 root directory (the end of the FATs).
    root_start: u64,
    /// FAT12/16 root directory entries (0 on FAT32).
    root_entries: u64,
    /// Byte offset of cluster 2.
    pub(super) data_start: u64,
    /// The FAT32 root directory's first cluster.
    root_cluster: u64,
}

impl Geometry {
    pub(super) fn parse(bpb: &[u8; 512]) -> io::Result<Self> {
        let u16_at = |o: usize| u64::from(u16::from_le_bytes([bpb[o], bpb[o + 1]]));
        let u32_at = |o: usize| {
            u64::from(u32::from_le_bytes([
                bpb[o],
                bpb[o + 1],
                bpb[o + 2],
                bpb[o + 3],
            ]))
        };
        let bps = u16_at(11);
        let cluster = bps * u64::from(bpb[13]);
        if cluster == 0 || bps == 0 {
            return Err(bad("ESP boot sector has a zero sector or cluster size"));
        }
        let (rsv, nfats, root_entries) = (u16_at(14), u64::from(bpb[16]), u16_at(17));
        let fat_sectors = if u16_at(22) != 0 {
            u16_at(22)
        } else {
            u32_at(36)
        };
        let root_start = (rsv + nfats * fat_sectors) * bps;
        // The root directory occupies whole sectors.
        let data_start = root_start + (root_entries * 32).div_ceil(bps) * bps;
        Ok(Self {
            cluster,
            root_start,
            root_entries,
            data_start,
            root_cluster: u32_at(44),
        })
    }
}

/// Work around `fatfs` 0.3.6 writing long-file-name entries in front of the `.` and `..`
/// entries of every directory it creates: `fsck.fat` (and some firmware) require `.` and `..`
/// in the first two slots. For every subdirectory reachable from the root (only the first
/// cluster of each directory is examined — vmseal's directories hold a handful of entries),
/// drop LFN entries that precede a dot entry and compact the slots; `..` of a directory in
/// the root gets cluster 0 (fatfs writes the FAT32 root cluster). Run after unmounting.
pub fn fix_dot_entries<T: Read + Write + Seek>(esp: &mut T) -> io::Result<()> {
    let mut bpb = [0u8; 512];
    esp.seek(SeekFrom::Start(0))?;
    esp.read_exact(&mut bpb)?;
    let Geometry {
        cluster,
        root_start,
        root_entries,
        data_start,
        root_cluster,
    } = Geometry::parse(&bpb)?;
    let offset_of = |c: u64| data_start + (c.saturating_sub(2)) * cluster;
    let (root_off, root_len) = if root_entries != 0 {
        (root_start, root_entries * 32)
    } else {
        (offset_of(root_cluster), cluster)
    };
    let mut todo = vec![(root_off, root_len, true, false)];
    let mut seen = 0;
    while let Some((off, len, is_root, parent_is_root)) = todo.pop() {
        seen += 1;
        if seen > 64 {
            return Err(bad("too many directories in the ESP"));
        }
        let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        esp.seek(SeekFrom::Start(off))?;
        esp.read_exact(&mut buf)?;
        let entries: Vec<[u8; 32]> = buf
            .chunks_exact(32)
            .take_while(|e| e[0] != 0)
            .map(|e| {
                let mut x = [0u8; 32];
                x.copy_from_slice(e);
                x
            })
            .collect();
        let is_dot = |e: &[u8; 32]| e[0] == b'.' && e[11] & 0x0f != 0x0f;
        let mut kept: Vec<[u8; 32]> = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let lfn = e[11] == 0x0f;
            // Drop an LFN run whose short entry is a dot entry.
            if lfn {
                let short = entries.iter().skip(i).find(|x| x[11] != 0x0f);
                if short.is_some_and(is_dot) {
                    continue;
                }
            }
            let mut e = *e;
            // `..` of a directory in the root points at cluster 0, also on FAT32.
            if parent_is_root && e[0..11] == *b"..         " {
                e[20..22].fill(0);
                e[26..28].fill(0);
            }
            kept.push(e);
        }
        for e in &kept {
            let dir = e[11] & 0x10 != 0 && e[11] != 0x0f && e[0] != 0xe5 && !is_dot(e);
            if dir {
                let c = (u64::from(u16::from_le_bytes([e[20], e[21]])) << 16)
                    | u64::from(u16::from_le_bytes([e[26], e[27]]));
                if c >= 2 {
                    todo.push((offset_of(c), cluster, false, is_root));
                }
            }
        }
        if !is_root && kept != entries {
            let mut out = vec![0u8; buf.len()];
            for (slot, e) in out.chunks_exact_mut(32).zip(&kept) {
                slot.copy_from_slice(e);
            }
            esp.seek(SeekFrom::Start(off))?;
            esp.write_all(&out)?;
        }
    }
    Ok(())
}
