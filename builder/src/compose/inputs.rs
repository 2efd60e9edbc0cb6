//! The inputs of a build: which file or bytes go into which PE section, in which order, and
//! the checks that need the files (existence, emptiness, executable format, fit in the image).
//!
//! Section order (deterministic): [`policies::sections::MEASURED`] order for the sections
//! present, then `.svc0`, `.svc1`, … in manifest order, then extra `[sections]` sorted by name.
//! Checks read only the first 4 KiB of each file; the build then streams each file once.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use policies::sections;

use crate::compose::manifest::{ErrorKind, Manifest, ManifestError, Payload, human_size};
use crate::disk::Layout;

/// What a file must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// ELF64, little-endian, x86_64, `ET_EXEC`.
    ElfExec,
    /// PE32+ x86_64 (an EFI-stub Linux kernel).
    LinuxPe,
    /// Any non-empty file.
    Data,
}

/// Where a section's content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file named by the manifest.
    File {
        /// The manifest field (`guest.elf`).
        field: String,
        /// The path as written.
        path: String,
        /// The path resolved against the manifest's directory.
        abs: PathBuf,
        /// Size in bytes at check time.
        size: u64,
    },
    /// Bytes vmseal makes (`.cmdline`, `.vmseal`).
    Inline(Vec<u8>),
}

/// One section to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// Section name.
    pub name: String,
    /// Its content.
    pub source: Source,
}

/// What identifies a file's contents without reading them: device, inode, size, modification
/// and status-change times. Any write changes the status-change time, so two reads that
/// both see one stamp before and after saw the same bytes — the test `tar` makes for "file
/// changed as we read it" (and as coarse as the file system's clock: a write within the same
/// tick as the first stamp can go unseen).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    /// The stamp of an open file.
    pub fn of(f: &File) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let m = f.metadata()?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }
}

impl Planned {
    /// Content length.
    pub fn len(&self) -> u64 {
        match &self.source {
            Source::File { size, .. } => *size,
            Source::Inline(b) => b.len() as u64,
        }
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn check_magic(head: &[u8], expect: Expect) -> Result<(), String> {
    match expect {
        Expect::Data => Ok(()),
        Expect::ElfExec => {
            if head.get(..4) != Some(b"\x7fELF") {
                return Err("is not an ELF file (no \\x7fELF magic)".into());
            }
            if head.get(4) != Some(&2) || head.get(5) != Some(&1) {
                return Err("is not a 64-bit little-endian ELF".into());
            }
            let e_type = head.get(16..18).map(|b| u16::from_le_bytes([b[0], b[1]]));
            let e_machine = head.get(18..20).map(|b| u16::from_le_bytes([b[0], b[1]]));
            if e_machine != Some(0x3e) {
                return Err(format!(
                    "is an ELF for machine {:#x}, not x86_64 (0x3e)",
                    e_machine.unwrap_or(0)
                ));
            }
            if e_type != Some(2) {
                return Err(format!(
                    "is an ELF of type {} , not an executable (ET_EXEC = 2; link it static, non-PIE)",
                    e_type.unwrap_or(0)
                ));
            }
            Ok(())
        }
        Expect::LinuxPe => {
            if head.get(..2) != Some(b"MZ") {
                return Err("is not a PE/COFF file (no MZ magic)".into());
            }
            let pe = head
                .get(0x3c..0x40)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if head.get(pe..pe + 4) != Some(b"PE\0\0") {
                return Err("has no PE signature (not an EFI-stub kernel)".into());
            }
            let machine = head
                .get(pe + 4..pe + 6)
                .map(|b| u16::from_le_bytes([b[0], b[1]]));
            if machine != Some(0x8664) {
                return Err(format!(
                    "is a PE for machine {:#x}, not x86_64 (0x8664)",
                    machine.unwrap_or(0)
                ));
            }
            if head.get(pe + 24..pe + 26) != Some(&[0x0b, 0x02]) {
                return Err("is not PE32+".into());
            }
            Ok(())
        }
    }
}

/// Check that the file `path` of manifest field `field` exists, is not empty and has the
/// magic `expect` names.
pub(crate) fn file(
    m: &Manifest,
    field: &str,
    path: &str,
    expect: Expect,
) -> Result<Source, ManifestError> {
    let abs = m.resolve(path);
    let meta = std::fs::metadata(&abs).map_err(|e| {
        let problem = if e.kind() == std::io::ErrorKind::NotFound {
            format!("file '{path}' not found")
        } else {
            format!("file '{path}' cannot be read: {e}")
        };
        m.error(
            ErrorKind::NotFound,
            field,
            problem,
            "build it first or fix the path".into(),
        )
    })?;
    if !meta.is_file() {
        return Err(m.error(
            ErrorKind::NotFound,
            field,
            format!("'{path}' is not a regular file"),
            "point it at a file".into(),
        ));
    }
    if meta.len() == 0 {
        return Err(m.error(
            ErrorKind::Empty,
            field,
            format!("file '{path}' is empty"),
            "rebuild it (a failed build can leave an empty file) or fix the path".into(),
        ));
    }
    let mut head = Vec::with_capacity(4096);
    File::open(&abs)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .map_err(|e| {
            m.error(
                ErrorKind::NotFound,
                field,
                format!("file '{path}' cannot be read: {e}"),
                "check its permissions".into(),
            )
        })?;
    check_magic(&head, expect).map_err(|p| {
        let fix = match expect {
            Expect::ElfExec => "give an ELF64 x86_64 executable (for a Linux kernel use `kernel`)",
            Expect::LinuxPe => "give an EFI-stub bzImage/vmlinuz (for an ELF unikernel use `elf`)",
            Expect::Data => "",
        };
        m.error(
            ErrorKind::WrongFormat,
            field,
            format!("'{path}' {p}"),
            fix.into(),
        )
    })?;
    Ok(Source::File {
        field: field.into(),
        path: path.into(),
        abs,
        size: meta.len(),
    })
}

/// Check the inputs of `m` and return the sections to add, in order. `stub` is the stub PE
/// (its size counts against the image, its section names must not be reused); `policy` is the
/// encoded launch policy; `pcrpkey` the `.pcrpkey` contents of a build that signs PCR 11
/// policies (its `.pcrsig` is added once the measured contents are known:
/// `appliance::add_pcrsig`).
pub fn plan(
    m: &Manifest,
    stub_sections: &[String],
    stub_len: u64,
    policy: Vec<u8>,
    pcrpkey: Option<Vec<u8>>,
) -> Result<Vec<Planned>, ManifestError> {
    let mut out = Vec::new();
    let mut policy = Some(policy);
    let mut pcrpkey = pcrpkey;
    for rule in sections::MEASURED {
        let source = match (rule.name, &m.guest.payload) {
            (sections::LINUX, Payload::Kernel(p)) => {
                Some(file(m, "guest.kernel", p, Expect::LinuxPe)?)
            }
            (sections::GUEST, Payload::Elf(p)) => Some(file(m, "guest.elf", p, Expect::ElfExec)?),
            (sections::OSREL, _) => m
                .guest
                .os_release
                .as_deref()
                .map(|p| file(m, "guest.os-release", p, Expect::Data))
                .transpose()?,
            (sections::CMDLINE, _) => m
                .guest
                .cmdline
                .as_ref()
                .map(|c| Source::Inline(c.as_bytes().to_vec())),
            (sections::INITRD, _) => m
                .guest
                .initrd
                .as_deref()
                .map(|p| file(m, "guest.initrd", p, Expect::Data))
                .transpose()?,
            (sections::PCRPKEY, _) => pcrpkey.take().map(Source::Inline),
            (sections::VMSEAL, _) => policy.take().map(Source::Inline),
            _ => None,
        };
        if let Some(source) = source {
            out.push(Planned {
                name: rule.name.into(),
                source,
            });
        }
    }
    for (i, s) in m.service.iter().enumerate() {
        let source = file(m, &format!("service[{i}].elf"), &s.elf, Expect::ElfExec)?;
        out.push(Planned {
            name: format!("{}{i}", sections::SERVICE_PREFIX),
            source,
        });
    }
    for (name, p) in &m.sections {
        let field = format!("sections.\"{name}\"");
        if stub_sections.iter().any(|s| s == name) {
            return Err(m.error(
                ErrorKind::Collision,
                &field,
                format!("the stub already has a section {name}"),
                format!(
                    "rename it (the stub's sections: {})",
                    stub_sections.join(", ")
                ),
            ));
        }
        out.push(Planned {
            name: name.clone(),
            source: file(m, &field, p, Expect::Data)?,
        });
    }
    // Fit: the PE (stub + 4 KiB-aligned sections + room for headers) must fit in the ESP
    // (without `image.size`, the build chooses a size that fits: `smallest_image`).
    let pe = pe_size(stub_len, &out);
    if !m.image.size_auto && pe > Layout::new(m.image.size).file_capacity() {
        // Smallest whole-MiB image whose ESP holds it.
        let mut need = m.image.size.max(crate::disk::MIN_IMAGE_SIZE);
        while Layout::new(need).file_capacity() < pe {
            need += need.div_ceil(8 << 20) << 20;
        }
        let biggest = out.iter().max_by_key(|p| p.len()).map(|p| match &p.source {
            Source::File { path, .. } => format!("'{path}' ({})", human_size(p.len())),
            Source::Inline(_) => p.name.clone(),
        });
        return Err(m.error(
            ErrorKind::TooBig,
            "image.size",
            format!(
                "the appliance PE (~{} bytes; largest input {}) does not fit the ESP of a {} image",
                pe,
                biggest.unwrap_or_default(),
                human_size(m.image.size)
            ),
            format!(
                "raise image.size to at least \"{}MiB\"",
                need.div_ceil(1 << 20)
            ),
        ));
    }
    Ok(out)
}

/// An upper bound of the appliance PE's size: the stub, a page for headers, and every
/// planned section rounded up to 4 KiB.
pub fn pe_size(stub_len: u64, plan: &[Planned]) -> u64 {
    stub_len
        + 4096
        + plan
            .iter()
            .map(|p| p.len().div_ceil(4096) * 4096)
            .sum::<u64>()
}

/// The smallest whole-MiB image (at least `disk::MIN_IMAGE_SIZE`) whose ESP holds a file of
/// `pe` bytes: what a manifest without `image.size` gets.
pub fn smallest_image(pe: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let fits = |size: u64| Layout::new(size).file_capacity() >= pe;
    let mut lo = crate::disk::MIN_IMAGE_SIZE.div_ceil(MIB);
    if fits(lo * MIB) {
        return lo * MIB;
    }
    // Grow until it fits, then the smallest MiB count between (capacity grows with size).
    let mut hi = lo * 2;
    while !fits(hi * MIB) {
        lo = hi;
        hi *= 2;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid * MIB) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi * MIB
}

/// `SOURCE_DATE_EPOCH` is set but not a number of seconds.
#[derive(Debug, thiserror::Error)]
#[error(
    "SOURCE_DATE_EPOCH: '{0}' is not a number of seconds — unset it or give seconds since 1970 (e.g. `git log -1 --format=%ct`)"
)]
pub struct EpochError(pub String);

/// `SOURCE_DATE_EPOCH` (seconds), 0 when unset: the one clock a build reads (FAT timestamps,
/// the lock file).
pub fn source_date_epoch() -> Result<u64, EpochError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.trim().is_empty() => s.trim().parse().map_err(|_| EpochError(s)),
        _ => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_image_is_the_first_mib_that_fits() {
        for pe in [1u64, 5 << 20, 33 << 20, 300 << 20] {
            let s = smallest_image(pe);
            assert_eq!(s % (1 << 20), 0);
            assert!(Layout::new(s).file_capacity() >= pe, "{pe}");
            if s > crate::disk::MIN_IMAGE_SIZE {
                assert!(
                    Layout::new(s - (1 << 20)).file_capacity() < pe,
                    "{pe}: not the smallest"
                );
            }
        }
    }

    #[test]
    fn a_write_changes_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        let f = File::open(&path).unwrap();
        let a = Stamp::of(&f).unwrap();
        assert_eq!(a, Stamp::of(&f).unwrap(), "no write, same stamp");
        // Past the file system's timestamp granularity (a jiffy on ext4).
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(&path, b"two").unwrap(); // same size, new bytes
        assert_ne!(a, Stamp::of(&f).unwrap());
    }

    #[test]
    fn magic_checks() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[16] = 2;
        elf[18] = 0x3e;
        assert!(check_magic(&elf, Expect::ElfExec).is_ok());
        elf[16] = 3;
        assert!(
            check_magic(&elf, Expect::ElfExec)
                .unwrap_err()
                .contains("ET_EXEC")
        );
        assert!(check_magic(b"MZ", Expect::ElfExec).is_err());
        assert!(check_magic(&elf, Expect::LinuxPe).is_err());
        assert!(check_magic(&[], Expect::LinuxPe).is_err());
    }
}
