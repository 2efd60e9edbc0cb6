//! The raw disk: a GPT (written here, UEFI 2.10 §5.3) with one EFI System Partition, formatted
//! FAT by the `fatfs` crate, holding `\EFI\BOOT\BOOTX64.EFI`.
//!
//! Layout (512-byte sectors): protective MBR at LBA 0, primary header at LBA 1, 128 entries of
//! 128 bytes at LBA 2–33, the ESP from LBA 2048 (1 MiB) to the last 1 MiB boundary before the
//! backup entries, backup entries and header in the last 33 sectors. GUIDs are derived from
//! content ([`guid_from`]), FAT timestamps are fixed ([`FixedTime`]), the volume id is
//! [`VOLUME_ID`]: the same inputs give the same bytes.
//!
//! The FAT file system is written straight into the partition's byte range of the image file
//! through [`Window`]; nothing is staged elsewhere. Reading back ([`read_gpt`]) checks CRCs and
//! returns errors, never panics, on bad input.

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

/// A `Read + Write + Seek` window `[start, start + len)` of an underlying stream.
#[derive(Debug)]
pub struct Window<T> {
    inner: T,
    start: u64,
    len: u64,
    pos: u64,
}

impl<T: Seek> Window<T> {
    /// The window over `inner`.
    pub fn new(inner: T, start: u64, len: u64) -> Self {
        Self {
            inner,
            start,
            len,
            pos: 0,
        }
    }
}

impl<T: Read + Seek> Read for Window<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<T: Write + Seek> Write for Window<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let put = self.inner.write(&buf[..n])?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Seek> Seek for Window<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the partition",
            )),
        }
    }
}

/// Size of a block of [`BlockCache`].
const BLOCK: u64 = 4096;
/// A pending large write is flushed when it reaches this size.
const PENDING_MAX: usize = 8 << 20;

/// A write-back cache between `fatfs` and the image file. `fatfs` 0.3 does every FAT entry
/// update, directory entry write and data cluster as its own seek + read/write; on a 256 MiB
/// payload that is over a million system calls. Small accesses (FAT entries, directory
/// entries, boot sectors) go to an in-memory block cache; large sequential writes (file data)
/// are coalesced into one buffer. [`BlockCache::flush`] writes everything out, in an order
/// that leaves the newest bytes on disk (the block cache is kept up to date by large writes).
///
/// While a [`Reservation`] is open, file data is not written at all: the cache records where
/// `fatfs` put it ([`Extents`]) and the caller writes the real bytes there itself, straight
/// from its own buffers (`vmseal build` streams the appliance PE that way).
#[derive(Debug)]
pub struct BlockCache<T> {
    inner: T,
    pos: u64,
    blocks: std::collections::BTreeMap<u64, (Vec<u8>, bool)>,
    pending: Vec<u8>,
    pending_start: u64,
    reservation: std::sync::Arc<std::sync::Mutex<Option<Extents>>>,
    /// Every range ever reserved: flushing a cached block leaves these bytes alone (a block
    /// can hold a directory cluster and the start of the file when clusters are small).
    reserved: Vec<(u64, u64)>,
    data_start: Option<u64>,
}

/// Where a file's data lies in the partition: runs of `(partition offset, length)` in file
/// order, as recorded by a [`Reservation`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extents(Vec<(u64, u64)>);

impl Extents {
    fn push(&mut self, at: u64, len: u64) {
        match self.0.last_mut() {
            Some((s, l)) if *s + *l == at => *l += len,
            _ => self.0.push((at, len)),
        }
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|&(_, l)| l).sum()
    }

    /// Whether no byte was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The runs, `(partition offset, length)`, in file order.
    pub fn runs(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// The pieces of the file range `[offset, offset + len)`: `(partition offset, range of
    /// the file range)` in order; short if the range runs past the file.
    pub fn map(&self, offset: u64, len: usize) -> Vec<(u64, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        let (mut file_at, mut done) = (0u64, 0usize);
        for &(at, run) in &self.0 {
            if done == len {
                break;
            }
            let want = offset + done as u64;
            if want < file_at + run {
                let skip = want - file_at;
                let n = usize::try_from(run - skip)
                    .unwrap_or(usize::MAX)
                    .min(len - done);
                out.push((at + skip, done..done + n));
                done += n;
            }
            file_at += run;
        }
        out
    }
}

/// An open reservation of a [`BlockCache`]: see [`BlockCache::reservation`].
#[derive(Clone, Debug)]
pub struct Reservation(std::sync::Arc<std::sync::Mutex<Option<Extents>>>);

/// Run `f` on the recording, if any.
fn recording<R>(
    r: &std::sync::Mutex<Option<Extents>>,
    f: impl FnOnce(&mut Option<Extents>) -> R,
) -> io::Result<R> {
    let mut g = r
        .lock()
        .map_err(|_| io::Error::other("block cache lock poisoned"))?;
    Ok(f(&mut g))
}

impl Reservation {
    /// From now on, writes into the FAT data region are recorded, not written.
    pub fn begin(&self) -> io::Result<()> {
        recording(&self.0, |r| *r = Some(Extents::default()))
    }

    /// Stop recording; what was recorded since [`Reservation::begin`].
    pub fn end(&self) -> io::Result<Extents> {
        recording(&self.0, |r| r.take().unwrap_or_default())
    }
}

impl<T: Read + Write + Seek> BlockCache<T> {
    /// A cache over `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pos: 0,
            blocks: Default::default(),
            pending: Vec::new(),
            pending_start: 0,
            reservation: Default::default(),
            reserved: Vec::new(),
            data_start: None,
        }
    }

    /// The handle that opens and closes reservations; it stays usable while `fatfs` owns the
    /// cache. While open, every write at or past the start of the FAT data region (read from
    /// the boot sector, so: after formatting) is recorded as an extent and otherwise dropped;
    /// writes before it (FATs, FSInfo, a FAT12/16 root directory) go through as usual. Open
    /// one only around writes of file data: a directory entry written meanwhile would be
    /// recorded, not written (a caller can tell: the extents are longer than the data).
    pub fn reservation(&self) -> Reservation {
        Reservation(std::sync::Arc::clone(&self.reservation))
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.inner.seek(SeekFrom::Start(self.pending_start))?;
        self.inner.write_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    fn overlaps_pending(&self, start: u64, end: u64) -> bool {
        !self.pending.is_empty()
            && start < self.pending_start + self.pending.len() as u64
            && end > self.pending_start
    }

    fn block(&mut self, b: u64) -> io::Result<&mut (Vec<u8>, bool)> {
        if !self.blocks.contains_key(&b) {
            if self.overlaps_pending(b * BLOCK, (b + 1) * BLOCK) {
                self.flush_pending()?;
            }
            let mut data = vec![0u8; BLOCK as usize];
            self.inner.seek(SeekFrom::Start(b * BLOCK))?;
            let mut got = 0;
            while got < data.len() {
                let n = self.inner.read(&mut data[got..])?;
                if n == 0 {
                    break; // past the end: zeros
                }
                got += n;
            }
            self.blocks.insert(b, (data, false));
        }
        self.blocks
            .get_mut(&b)
            .ok_or_else(|| io::Error::other("block cache"))
    }

    /// Where the FAT data region starts (boot sector fields, cached after the first call).
    fn data_start(&mut self) -> io::Result<u64> {
        if let Some(d) = self.data_start {
            return Ok(d);
        }
        let mut bpb = [0u8; 512];
        bpb.copy_from_slice(&self.block(0)?.0[..512]);
        let d = Geometry::parse(&bpb)?.data_start;
        self.data_start = Some(d);
        Ok(d)
    }

    /// If a reservation is open and `[start, start + len)` is file data: record it.
    fn reserve(&mut self, start: u64, len: u64) -> io::Result<bool> {
        if !recording(&self.reservation, |r| r.is_some())? || start < self.data_start()? {
            return Ok(false);
        }
        recording(&self.reservation, |r| {
            if let Some(e) = r {
                e.push(start, len);
            }
        })?;
        match self.reserved.last_mut() {
            Some((s, e)) if *e == start => *e = start + len,
            _ => self.reserved.push((start, start + len)),
        }
        Ok(true)
    }

    /// Write everything out and return the inner stream.
    pub fn into_inner(mut self) -> io::Result<T> {
        self.flush()?;
        Ok(self.inner)
    }
}

impl<T: Read + Write + Seek> Read for BlockCache<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (b, off) = (self.pos / BLOCK, (self.pos % BLOCK) as usize);
        let n = buf.len().min(BLOCK as usize - off);
        let block = self.block(b)?;
        buf[..n].copy_from_slice(&block.0[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<T: Read + Write + Seek> Write for BlockCache<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let start = self.pos;
        let end = start + buf.len() as u64;
        if self.reserve(start, buf.len() as u64)? {
            self.pos = end;
            return Ok(buf.len());
        }
        if buf.len() as u64 >= BLOCK {
            // Large: coalesce, and keep cached blocks in step.
            let contiguous = self.pending_start + self.pending.len() as u64 == start;
            if !contiguous || self.pending.len() + buf.len() > PENDING_MAX {
                self.flush_pending()?;
                self.pending_start = start;
            }
            self.pending.extend_from_slice(buf);
            for (&b, (data, _)) in self.blocks.range_mut(start / BLOCK..end.div_ceil(BLOCK)) {
                let (bs, be) = (b * BLOCK, (b + 1) * BLOCK);
                let (s, e) = (start.max(bs), end.min(be));
                data[(s - bs) as usize..(e - bs) as usize]
                    .copy_from_slice(&buf[(s - start) as usize..(e - start) as usize]);
            }
            self.pos = end;
            return Ok(buf.len());
        }
        let (b, off) = (start / BLOCK, (start % BLOCK) as usize);
        let n = buf.len().min(BLOCK as usize - off);
        let block = self.block(b)?;
        block.0[off..off + n].copy_from_slice(&buf[..n]);
        block.1 = true;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        // Cached blocks hold the newest bytes, except in reserved ranges (the caller's).
        for (b, (data, dirty)) in &mut self.blocks {
            if !*dirty {
                continue;
            }
            let (bs, be) = (*b * BLOCK, (*b + 1) * BLOCK);
            let mut at = bs;
            for &(rs, re) in self.reserved.iter().filter(|&&(rs, re)| rs < be && re > bs) {
                if rs > at {
                    self.inner.seek(SeekFrom::Start(at))?;
                    self.inner
                        .write_all(&data[(at - bs) as usize..(rs - bs) as usize])?;
                }
                at = at.max(re);
            }
            if at < be {
                self.inner.seek(SeekFrom::Start(at))?;
                self.inner.write_all(&data[(at - bs) as usize..])?;
            }
            *dirty = false;
        }
        self.inner.flush()
    }
}

impl<T: Seek> Seek for BlockCache<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => Some(self.inner.seek(SeekFrom::End(d))?),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before 0"))?;
        Ok(self.pos)
    }
}

/// FAT timestamps: one fixed date and time (`SOURCE_DATE_EPOCH`, else 1980-01-01 00:00).
#[derive(Debug)]
pub struct FixedTime(fatfs::DateTime);

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

/// Format `esp` (the partition's bytes, `layout.len` long: a [`Window`] of the image, best
/// behind a [`BlockCache`]) and return the file system, ready for files.
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
struct Geometry {
    /// Bytes per cluster.
    cluster: u64,
    /// Byte offset of the FAT12/16 root directory (the end of the FATs).
    root_start: u64,
    /// FAT12/16 root directory entries (0 on FAT32).
    root_entries: u64,
    /// Byte offset of cluster 2.
    data_start: u64,
    /// The FAT32 root directory's first cluster.
    root_cluster: u64,
}

impl Geometry {
    fn parse(bpb: &[u8; 512]) -> io::Result<Self> {
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

fn bad(m: &str) -> io::Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_round_trip_and_on_disk_order() {
        let g = Guid::parse(ESP_TYPE).unwrap();
        assert_eq!(g.0[..4], [0x28, 0x73, 0x2a, 0xc1]);
        assert_eq!(g.to_text(), ESP_TYPE);
        let d = guid_from(&[b"x"]);
        assert_eq!(&d.to_text()[14..15], "8");
    }

    #[test]
    fn extents_map_file_ranges_to_runs() {
        let mut e = Extents::default();
        e.push(100, 10);
        e.push(110, 6); // contiguous: merged
        e.push(200, 5);
        assert_eq!(e.runs(), &[(100, 16), (200, 5)]);
        assert_eq!(e.len(), 21);
        assert_eq!(e.map(0, 21), vec![(100, 0..16), (200, 16..21)]);
        assert_eq!(e.map(14, 4), vec![(114, 0..2), (200, 2..4)]);
        assert_eq!(e.map(17, 2), vec![(201, 0..2)]);
        assert_eq!(e.map(20, 5), vec![(204, 0..1)]); // short: past the end
        assert!(e.map(21, 1).is_empty());
    }

    /// A file written while a reservation is open, whose bytes are then written at the
    /// recorded extents behind fatfs's back, reads back through a fresh fatfs mount as
    /// those bytes, on FAT12 (small clusters sharing cache blocks with directories), FAT16
    /// and FAT32; the directories around it survive.
    #[test]
    fn reserved_file_data_written_elsewhere_reads_back() {
        use std::sync::{Arc, Mutex};
        for (disk, len) in [
            (4u64 << 20, 300_001usize),
            (20 << 20, 3 << 20),
            (40 << 20, 5 << 20),
        ] {
            let layout = Layout::new(disk);
            let shared = Arc::new(Mutex::new(vec![0u8; layout.len as usize]));
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + i / 509) as u8).collect();
            let time: &'static FixedTime = Box::leak(Box::new(FixedTime::from_epoch(0)));
            let mut cache = BlockCache::new(SharedCursor(Arc::clone(&shared), 0));
            let reservation = cache.reservation();
            let fs = format_esp(&mut cache, &layout, time).unwrap();
            let boot = fs
                .root_dir()
                .create_dir("EFI")
                .unwrap()
                .create_dir("BOOT")
                .unwrap();
            let mut f = boot.create_file("BOOTX64.EFI").unwrap();
            reservation.begin().unwrap();
            for piece in data.chunks(70_000) {
                f.write_all(&vec![0u8; piece.len()]).unwrap();
            }
            let extents = reservation.end().unwrap();
            assert_eq!(
                extents.len(),
                len as u64,
                "{disk}: extents hold exactly the file"
            );
            {
                let mut v = shared.lock().unwrap();
                for (at, r) in extents.map(0, len) {
                    v[at as usize..at as usize + r.len()].copy_from_slice(&data[r]);
                }
            }
            f.flush().unwrap();
            drop(f);
            boot.create_file("AFTER.TXT")
                .unwrap()
                .write_all(b"after")
                .unwrap();
            drop(boot);
            fs.unmount().unwrap();
            cache.flush().unwrap();
            drop(cache);
            let image = shared.lock().unwrap().clone();
            let fs =
                fatfs::FileSystem::new(io::Cursor::new(image), fatfs::FsOptions::new()).unwrap();
            let mut back = Vec::new();
            fs.root_dir()
                .open_file("EFI/BOOT/BOOTX64.EFI")
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "{disk}: file data differs");
            let mut after = String::new();
            fs.root_dir()
                .open_file("EFI/BOOT/AFTER.TXT")
                .unwrap()
                .read_to_string(&mut after)
                .unwrap();
            assert_eq!(after, "after");
        }
    }

    /// A `Read + Write + Seek` over a shared buffer (the reservation test's "file").
    struct SharedCursor(std::sync::Arc<std::sync::Mutex<Vec<u8>>>, u64);

    impl Read for SharedCursor {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let v = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
            let at = (self.1 as usize).min(v.len());
            let n = buf.len().min(v.len() - at);
            buf[..n].copy_from_slice(&v[at..at + n]);
            self.1 += n as u64;
            Ok(n)
        }
    }

    impl Write for SharedCursor {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut v = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
            let at = self.1 as usize;
            v[at..at + buf.len()].copy_from_slice(buf);
            self.1 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for SharedCursor {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            if let SeekFrom::Start(p) = to {
                self.1 = p;
            }
            Ok(self.1)
        }
    }

    #[test]
    fn layout_is_aligned() {
        let l = Layout::new(64 << 20);
        assert_eq!((l.start, l.len), (1 << 20, 62 << 20));
        let l = Layout::new(MIN_IMAGE_SIZE);
        assert_eq!(l.len, 1 << 20);
    }

    #[test]
    fn gpt_round_trip() {
        let l = Layout::new(8 << 20);
        let mut c = io::Cursor::new(vec![0u8; 8 << 20]);
        write_gpt(&mut c, &l, guid_from(&[b"d"]), guid_from(&[b"p"])).unwrap();
        let g = read_gpt(&mut c).unwrap();
        assert_eq!(g.partitions.len(), 1);
        assert_eq!(g.partitions[0].first_lba, 2048);
        assert_eq!(g.partitions[0].name, ESP_NAME);
        assert_eq!(g.partitions[0].type_guid, ESP_TYPE);
    }

    #[test]
    fn fixed_time() {
        let t = FixedTime::from_epoch(1_700_000_000).0; // 2023-11-14 22:13:20
        assert_eq!((t.date.year, t.date.month, t.date.day), (2023, 11, 14));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (22, 13, 20));
        assert_eq!(FixedTime::from_epoch(0).0.date.year, 1980);
    }
}
