//! Byte-range views and caches between `fatfs` and the image file: the partition window,
//! the write-back block cache with its reservations (`vmseal build`), and a read-only cache
//! for reading an image back.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::fat::Geometry;

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
    pub(super) fn push(&mut self, at: u64, len: u64) {
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

/// A file opened for reading that refuses writes (fatfs wants `Write`), with a small cache of
/// aligned blocks.
///
/// `fatfs` reads a file cluster by cluster and looks up the FAT between clusters: through a
/// plain `File` that is a seek and a read of 512 bytes – 4 KiB for every cluster (262 144 of
/// each for a 512 MiB payload). The cache serves those from [`CACHE_BLOCKS`] blocks of
/// [`CACHE_BLOCK`] bytes (least recently used is replaced), so the FAT block and the streamed
/// data block both stay resident; a read of a whole block or more goes straight to the file.
#[derive(Debug)]
pub struct ReadOnly {
    file: File,
    pos: u64,
    /// `(block index, bytes, last use)`.
    blocks: Vec<(u64, Vec<u8>, u64)>,
    uses: u64,
}

/// Size of one cached block.
pub const CACHE_BLOCK: usize = 1 << 20;
/// Number of cached blocks.
pub const CACHE_BLOCKS: usize = 4;

impl ReadOnly {
    /// Open `path` for reading.
    pub fn open(path: &Path) -> io::Result<Self> {
        File::open(path).map(Self::new)
    }

    /// Wrap an open file.
    pub fn new(file: File) -> Self {
        Self {
            file,
            pos: 0,
            blocks: Vec::new(),
            uses: 0,
        }
    }

    /// The cached block `index` (read on a miss; shorter than a block at the end of the file).
    fn block(&mut self, index: u64) -> io::Result<&[u8]> {
        self.uses += 1;
        let uses = self.uses;
        let slot = match self.blocks.iter().position(|b| b.0 == index) {
            Some(i) => i,
            None => {
                let mut data = Vec::with_capacity(CACHE_BLOCK);
                io::Seek::seek(
                    &mut self.file,
                    io::SeekFrom::Start(index * CACHE_BLOCK as u64),
                )?;
                (&mut self.file)
                    .take(CACHE_BLOCK as u64)
                    .read_to_end(&mut data)?;
                if self.blocks.len() < CACHE_BLOCKS {
                    self.blocks.push((index, data, uses));
                    self.blocks.len() - 1
                } else {
                    let lru = (0..self.blocks.len())
                        .min_by_key(|&i| self.blocks[i].2)
                        .unwrap_or(0);
                    self.blocks[lru] = (index, data, uses);
                    lru
                }
            }
        };
        let b = &mut self.blocks[slot];
        b.2 = uses;
        Ok(&b.1)
    }
}

impl Read for ReadOnly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.len() >= CACHE_BLOCK {
            io::Seek::seek(&mut self.file, io::SeekFrom::Start(self.pos))?;
            let n = self.file.read(buf)?;
            self.pos += n as u64;
            return Ok(n);
        }
        let index = self.pos / CACHE_BLOCK as u64;
        let at = (self.pos % CACHE_BLOCK as u64) as usize;
        let block = self.block(index)?;
        let n = block.len().saturating_sub(at).min(buf.len());
        buf[..n].copy_from_slice(&block[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}
impl io::Write for ReadOnly {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "vmseal reads this image, it never writes it",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl io::Seek for ReadOnly {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let new = match to {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            io::SeekFrom::End(d) => self.file.metadata()?.len().checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        Ok(self.pos)
    }
}
