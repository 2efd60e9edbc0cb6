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
//!
//! [`gpt`] writes and reads the partition table, [`fat`] formats the ESP, [`cache`] holds the
//! byte-range views and caches the FAT file system is written and read through.

pub mod cache;
pub mod fat;
pub mod gpt;

pub use cache::{BlockCache, Extents, ReadOnly, Reservation, Window};
pub use fat::{FixedTime, fat_type, fix_dot_entries, format_esp};
pub use gpt::*;

/// Where the firmware finds the appliance on the ESP (the removable-media boot path, UEFI 2.10
/// §3.5.1.1).
pub const BOOT_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

#[cfg(test)]
mod tests {
    use std::io::{self, Read, Seek, SeekFrom, Write};

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
