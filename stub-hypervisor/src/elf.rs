//! An ELF partition (the `.guest` or a `.svcN` service): an ELF64 x86_64 `ET_EXEC` unikernel,
//! the plan to load it into its memory grant, and the hypervisor area written at the top of
//! that grant ([`write_area`]).
//!
//! Reference: System V gABI "ELF Header" / "Program Header" (ELF-64 Object File Format 1.5).
//! The stub loads each `PT_LOAD` at its physical address into the partition's grant (see
//! `policies::bootinfo` for the ABI). The partition runs on the identity page tables of its
//! area, so every `PT_LOAD` must have `p_vaddr == p_paddr`. Bad input gives an [`ElfError`],
//! never a panic.

use crate::bytes::{slice, u16_at, u32_at, u64_at};
use alloc::vec::Vec;
use core::fmt;
use policies::bootinfo::{self, BootInfo, HV_AREA_SIZE};
use policies::record::Token;

/// Page size of the grant.
pub const PAGE: u64 = 0x1000;
/// Slack added to the segments' span when the launch policy names no memory size.
pub const DEFAULT_SLACK: u64 = 0x10_0000;
/// At most this many program headers are accepted.
pub const MAX_PHDRS: u16 = 64;

/// Why the guest ELF cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not `\x7fELF`, not 64-bit little-endian, not `ET_EXEC`, or not x86_64.
    NotExecutable,
    /// Program header table out of bounds or too many entries.
    BadPhdrs,
    /// A `PT_LOAD` segment is malformed (index carried): file range out of bounds,
    /// `p_filesz > p_memsz`, address overflow, or `p_vaddr != p_paddr`.
    BadSegment(usize),
    /// No `PT_LOAD` segment.
    NoSegments,
    /// The entry point is not inside an executable `PT_LOAD`.
    BadEntry(u64),
    /// A segment lies outside the memory grant (index carried).
    OutsideGrant(usize),
    /// The grant from the policy is empty or overflows.
    BadGrant,
    /// The grant is too small for the hypervisor area, or a segment reaches into it.
    AreaOverlap,
    /// The command line is longer than `policies::bootinfo::MAX_CMDLINE`.
    CmdlineTooLong,
}

/// The record word (`error … status=`); `Display` writes the same.
impl Token for ElfError {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        w.write_str(match self {
            Self::NotExecutable => "elf-not-x86_64-exec",
            Self::BadPhdrs => "elf-bad-phdrs",
            Self::BadSegment(_) => "elf-bad-segment",
            Self::NoSegments => "elf-no-load-segments",
            Self::BadEntry(_) => "elf-bad-entry",
            Self::OutsideGrant(_) => "elf-segment-outside-grant",
            Self::BadGrant => "elf-bad-grant",
            Self::AreaOverlap => "elf-segments-overlap-hypervisor-area",
            Self::CmdlineTooLong => "cmdline-too-long",
        })
    }
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_token(f)
    }
}

/// One `PT_LOAD` segment to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Physical (= virtual) load address.
    pub paddr: u64,
    /// Offset of the file bytes in the ELF.
    pub offset: u64,
    /// File bytes to copy.
    pub filesz: u64,
    /// Bytes in memory; `memsz - filesz` are zeroed (bss).
    pub memsz: u64,
}

/// A validated guest: entry and segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    /// The entry point (physical address).
    pub entry: u64,
    /// The `PT_LOAD` segments (non-empty `memsz`), in program header order.
    pub segments: Vec<Segment>,
}

/// The guest's memory grant: `[base, base + size)`, page aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Base physical address (4 KiB aligned).
    pub base: u64,
    /// Size in bytes (multiple of 4 KiB).
    pub size: u64,
}

impl Grant {
    /// Number of 4 KiB pages.
    pub fn pages(&self) -> u64 {
        self.size / PAGE
    }
}

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;

impl Guest {
    /// Parse and validate the ELF.
    pub fn parse(elf: &[u8]) -> Result<Self, ElfError> {
        let bad = ElfError::NotExecutable;
        if elf.get(..4) != Some(b"\x7fELF")
            || elf.get(4) != Some(&2) // ELFCLASS64
            || elf.get(5) != Some(&1) // ELFDATA2LSB
            || u16_at(elf, 16) != Some(2) // ET_EXEC
            || u16_at(elf, 18) != Some(0x3E)
        // EM_X86_64
        {
            return Err(bad);
        }
        let entry = u64_at(elf, 24).ok_or(bad)?;
        let phoff = usize::try_from(u64_at(elf, 32).ok_or(bad)?).map_err(|_| ElfError::BadPhdrs)?;
        let phentsize = usize::from(u16_at(elf, 54).ok_or(bad)?);
        let phnum = u16_at(elf, 56).ok_or(bad)?;
        if phnum > MAX_PHDRS || phentsize < 56 {
            return Err(ElfError::BadPhdrs);
        }
        let table = slice(elf, phoff, phentsize * usize::from(phnum)).ok_or(ElfError::BadPhdrs)?;
        let mut segments = Vec::new();
        let mut entry_ok = false;
        for (i, ph) in table.chunks_exact(phentsize).enumerate() {
            let e = ElfError::BadSegment(i);
            if u32_at(ph, 0).ok_or(e)? != PT_LOAD {
                continue;
            }
            let flags = u32_at(ph, 4).ok_or(e)?;
            let offset = u64_at(ph, 8).ok_or(e)?;
            let vaddr = u64_at(ph, 16).ok_or(e)?;
            let paddr = u64_at(ph, 24).ok_or(e)?;
            let filesz = u64_at(ph, 32).ok_or(e)?;
            let memsz = u64_at(ph, 40).ok_or(e)?;
            let file_ok = usize::try_from(offset)
                .ok()
                .zip(usize::try_from(filesz).ok())
                .and_then(|(o, n)| slice(elf, o, n))
                .is_some();
            let end = paddr.checked_add(memsz).ok_or(e)?;
            if !file_ok || filesz > memsz || vaddr != paddr {
                return Err(e);
            }
            if memsz == 0 {
                continue;
            }
            if flags & PF_X != 0 && (paddr..end).contains(&entry) {
                entry_ok = true;
            }
            segments.push(Segment {
                paddr,
                offset,
                filesz,
                memsz,
            });
        }
        if segments.is_empty() {
            return Err(ElfError::NoSegments);
        }
        if !entry_ok {
            return Err(ElfError::BadEntry(entry));
        }
        Ok(Self { entry, segments })
    }

    /// The lowest `p_paddr` rounded down to 4 KiB, and the highest segment end.
    pub fn span(&self) -> (u64, u64) {
        let lo = self.segments.iter().map(|s| s.paddr).min().unwrap_or(0) & !(PAGE - 1);
        let hi = self
            .segments
            .iter()
            .map(|s| s.paddr.saturating_add(s.memsz))
            .max()
            .unwrap_or(0);
        (lo, hi)
    }

    /// The grant: from the lowest segment page, `memory_size` bytes (rounded up to pages), or
    /// when the policy gives none, the segments' span + [`DEFAULT_SLACK`]. Every segment must
    /// lie inside it.
    pub fn grant(&self, memory_size: Option<u64>) -> Result<Grant, ElfError> {
        let (lo, hi) = self.span();
        let size = match memory_size {
            Some(s) => s,
            None => (hi - lo)
                .checked_add(DEFAULT_SLACK)
                .ok_or(ElfError::BadGrant)?,
        };
        let size = size.checked_add(PAGE - 1).ok_or(ElfError::BadGrant)? & !(PAGE - 1);
        let end = lo.checked_add(size).ok_or(ElfError::BadGrant)?;
        if size == 0 {
            return Err(ElfError::BadGrant);
        }
        for (i, s) in self.segments.iter().enumerate() {
            if s.paddr < lo || s.paddr.saturating_add(s.memsz) > end {
                return Err(ElfError::OutsideGrant(i));
            }
        }
        Ok(Grant { base: lo, size })
    }
}

/// Copy every segment into `mem`, the grant's memory (`mem[0]` is at `grant.base`): file
/// bytes, then zeros up to `memsz`. The rest of the grant is left as the caller set it.
pub fn load(elf: &[u8], guest: &Guest, grant: Grant, mem: &mut [u8]) -> Result<(), ElfError> {
    for (i, s) in guest.segments.iter().enumerate() {
        let e = ElfError::OutsideGrant(i);
        let at = usize::try_from(s.paddr.checked_sub(grant.base).ok_or(e)?).map_err(|_| e)?;
        let (filesz, memsz) = (s.filesz as usize, s.memsz as usize);
        let src = slice(elf, s.offset as usize, filesz).ok_or(ElfError::BadSegment(i))?;
        let dst = mem.get_mut(at..at.checked_add(memsz).ok_or(e)?).ok_or(e)?;
        let (file, bss) = dst.split_at_mut(filesz);
        file.copy_from_slice(src);
        bss.fill(0);
    }
    Ok(())
}

/// The GDT of the hypervisor area: null, 64-bit code (selector 0x08: P, DPL 0, S, type
/// execute/read, L), data (0x10: P, S, type read/write, D/B, G).
pub const GDT: [u64; 3] = [0, 0x00AF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];

/// Where a partition starts, once its hypervisor area is written (all guest-physical).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// The [`BootInfo`] (RDI at entry).
    pub boot_info: u64,
    /// RSP at entry: the area's stack top − 8, holding the exit trampoline's address.
    pub rsp: u64,
    /// CR3: the area's PML4.
    pub cr3: u64,
    /// GDTR base: the area's [`GDT`].
    pub gdt: u64,
}

/// Write the hypervisor area (`policies::bootinfo`) into the top [`HV_AREA_SIZE`] bytes of
/// `mem`, the grant's memory (`mem[0]` at `grant.base`): the [`BootInfo`], the exit trampoline,
/// the [`GDT`], `cmdline`, identity page tables for 0–4 GiB (2 MiB pages, present, writable)
/// and the initial stack with the trampoline's address on top. Fails (never truncates) when
/// the grant cannot hold the area or the command line is too long; the caller checked that no
/// segment reaches into the area ([`Guest::fits_below_area`]).
pub fn write_area(
    mem: &mut [u8],
    grant: Grant,
    cmdline: &[u8],
    tsc_per_ms: u64,
) -> Result<Start, ElfError> {
    if cmdline.len() as u64 > bootinfo::MAX_CMDLINE {
        return Err(ElfError::CmdlineTooLong);
    }
    if mem.len() as u64 != grant.size || grant.size < HV_AREA_SIZE {
        return Err(ElfError::AreaOverlap);
    }
    let area_off = mem.len() - HV_AREA_SIZE as usize;
    let area_pa = grant.base + area_off as u64;
    let area = mem.get_mut(area_off..).ok_or(ElfError::AreaOverlap)?;
    area.fill(0);
    let at = |off: u64| area_pa + off;
    let info = BootInfo {
        magic: bootinfo::MAGIC,
        version: bootinfo::VERSION,
        size: size_of::<BootInfo>() as u32,
        cmdline: if cmdline.is_empty() {
            0
        } else {
            at(bootinfo::CMDLINE_OFFSET)
        },
        cmdline_len: cmdline.len() as u64,
        guest_memory_base: grant.base,
        guest_memory_size: grant.size,
        tsc_per_ms,
        ..BootInfo::default()
    };
    let mut w = Writer(area);
    w.put(bootinfo::BOOT_INFO_OFFSET, &boot_info_bytes(&info))?;
    w.put(bootinfo::TRAMPOLINE_OFFSET, &bootinfo::TRAMPOLINE)?;
    for (i, d) in GDT.iter().enumerate() {
        w.put(bootinfo::GDT_OFFSET + 8 * i as u64, &d.to_le_bytes())?;
    }
    w.put(bootinfo::CMDLINE_OFFSET, cmdline)?;
    // PML4 → PDPT → four page directories of 2 MiB pages (P | RW | PS).
    let pml4 = bootinfo::PAGE_TABLES_OFFSET;
    let pdpt = pml4 + PAGE;
    w.put(pml4, &(at(pdpt) | 3).to_le_bytes())?;
    for gib in 0..4u64 {
        let pd = pdpt + PAGE * (gib + 1);
        w.put(pdpt + 8 * gib, &(at(pd) | 3).to_le_bytes())?;
        for j in 0..512u64 {
            w.put(
                pd + 8 * j,
                &(((gib << 30) + (j << 21)) | 0x83).to_le_bytes(),
            )?;
        }
    }
    let rsp = bootinfo::STACK_TOP - 8;
    w.put(rsp, &at(bootinfo::TRAMPOLINE_OFFSET).to_le_bytes())?;
    Ok(Start {
        boot_info: at(bootinfo::BOOT_INFO_OFFSET),
        rsp: at(rsp),
        cr3: at(pml4),
        gdt: at(bootinfo::GDT_OFFSET),
    })
}

/// Bounds-checked writes into the area.
struct Writer<'a>(&'a mut [u8]);

impl Writer<'_> {
    fn put(&mut self, off: u64, bytes: &[u8]) -> Result<(), ElfError> {
        let off = usize::try_from(off).map_err(|_| ElfError::AreaOverlap)?;
        let end = off.checked_add(bytes.len()).ok_or(ElfError::AreaOverlap)?;
        self.0
            .get_mut(off..end)
            .ok_or(ElfError::AreaOverlap)?
            .copy_from_slice(bytes);
        Ok(())
    }
}

/// The [`BootInfo`] as its C layout (little-endian fields in declaration order, no padding;
/// checked against `offset_of!` in the tests).
fn boot_info_bytes(b: &BootInfo) -> [u8; 128] {
    let words = [
        b.magic,
        u64::from(b.version) | (u64::from(b.size) << 32),
        b.cmdline,
        b.cmdline_len,
        b.memory_map,
        b.memory_map_len,
        b.memory_descriptor_size,
        b.event_log,
        b.event_log_len,
        b.final_events,
        b.final_events_preboot_count,
        b.guest_memory_base,
        b.guest_memory_size,
        b.policy,
        b.policy_len,
        b.tsc_per_ms,
    ];
    let mut out = [0u8; 128];
    for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    out
}

impl Guest {
    /// Whether every segment ends at or below the hypervisor area at the top of `grant`.
    pub fn fits_below_area(&self, grant: Grant) -> bool {
        let (_, end) = self.span();
        grant
            .size
            .checked_sub(HV_AREA_SIZE)
            .and_then(|s| grant.base.checked_add(s))
            .is_some_and(|area| end <= area)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ELF with two PT_LOADs: text (RX) at 0x4000000 and data+bss (RW) at 0x4001000.
    pub(crate) fn elf() -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&0x3Eu16.to_le_bytes());
        b[24..32].copy_from_slice(&0x400_0010u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        let ph = |b: &mut Vec<u8>, at: usize, flags: u32, off: u64, addr: u64, fs: u64, ms: u64| {
            b[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
            b[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            b[at + 16..at + 24].copy_from_slice(&addr.to_le_bytes());
            b[at + 24..at + 32].copy_from_slice(&addr.to_le_bytes());
            b[at + 32..at + 40].copy_from_slice(&fs.to_le_bytes());
            b[at + 40..at + 48].copy_from_slice(&ms.to_le_bytes());
        };
        ph(&mut b, 64, 5, 0x100, 0x400_0000, 0x20, 0x20);
        ph(&mut b, 120, 6, 0x120, 0x400_1000, 0x8, 0x100);
        b[0x100..0x128].fill(0xAA);
        b
    }

    #[test]
    fn plans_and_loads() {
        let e = elf();
        let g = Guest::parse(&e).unwrap();
        assert_eq!(g.entry, 0x400_0010);
        assert_eq!(g.span(), (0x400_0000, 0x400_1100));
        let grant = g.grant(None).unwrap();
        assert_eq!(
            grant,
            Grant {
                base: 0x400_0000,
                size: 0x2000 + DEFAULT_SLACK
            }
        );
        assert_eq!(g.grant(Some(0x1000)), Err(ElfError::OutsideGrant(1)));
        let mut mem = vec![0x55u8; grant.size as usize];
        load(&e, &g, grant, &mut mem).unwrap();
        assert_eq!(&mem[..0x20], &[0xAA; 0x20]);
        assert_eq!(mem[0x20], 0x55);
        assert_eq!(&mem[0x1000..0x1008], &[0xAA; 8]);
        assert_eq!(&mem[0x1008..0x1100], &[0u8; 0xF8][..]);
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        let e = elf();
        for n in 0..e.len() {
            let _ = Guest::parse(&e[..n]);
        }
        let mut bad = e.clone();
        bad[24..32].copy_from_slice(&0x400_1000u64.to_le_bytes()); // entry in the RW segment
        assert_eq!(Guest::parse(&bad), Err(ElfError::BadEntry(0x400_1000)));
        let mut bad = e.clone();
        bad[64 + 32..64 + 40].copy_from_slice(&0x1000u64.to_le_bytes()); // filesz past EOF
        assert_eq!(Guest::parse(&bad), Err(ElfError::BadSegment(0)));
        let mut bad = e;
        bad[16] = 3; // ET_DYN
        assert_eq!(Guest::parse(&bad), Err(ElfError::NotExecutable));
    }

    #[test]
    fn area_per_bootinfo_contract() {
        use core::mem::offset_of;
        let grant = Grant {
            base: 0x400_0000,
            size: 0x10_0000,
        };
        let mut mem = vec![0x55u8; grant.size as usize];
        let s = write_area(&mut mem, grant, b"greeting=hello", 2_000_000).unwrap();
        let area = 0x400_0000 + 0x10_0000 - 0x1_0000;
        assert_eq!(
            s,
            Start {
                boot_info: area,
                rsp: area + 0x1_0000 - 8,
                cr3: area + 0x2000,
                gdt: area + 0x300,
            }
        );
        let a = &mem[0xF_0000..];
        let u64_at = |o: usize| u64::from_le_bytes(a[o..o + 8].try_into().unwrap());
        assert_eq!(u64_at(offset_of!(BootInfo, magic)), bootinfo::MAGIC);
        assert_eq!(a[offset_of!(BootInfo, version)], 2);
        assert_eq!(a[offset_of!(BootInfo, size)], 128);
        assert_eq!(u64_at(offset_of!(BootInfo, cmdline)), area + 0x1000);
        assert_eq!(u64_at(offset_of!(BootInfo, cmdline_len)), 14);
        assert_eq!(u64_at(offset_of!(BootInfo, guest_memory_base)), 0x400_0000);
        assert_eq!(u64_at(offset_of!(BootInfo, guest_memory_size)), 0x10_0000);
        assert_eq!(u64_at(offset_of!(BootInfo, tsc_per_ms)), 2_000_000);
        assert_eq!(&a[0x200..0x20F], &bootinfo::TRAMPOLINE);
        assert_eq!(u64_at(0x308), 0x00AF_9B00_0000_FFFF);
        assert_eq!(&a[0x1000..0x100E], b"greeting=hello");
        assert_eq!(u64_at(0x2000), (area + 0x3000) | 3);
        assert_eq!(u64_at(0x3000 + 8 * 3), (area + 0x7000) | 3);
        // 3 GiB + 511 * 2 MiB, the last 2 MiB page below 4 GiB.
        assert_eq!(u64_at(0x7000 + 8 * 511), 0xFFE0_0000 | 0x83);
        assert_eq!(u64_at(0xFFF8), area + 0x200);
        // The area is the only thing written.
        assert!(mem[..0xF_0000].iter().all(|&b| b == 0x55));
        // No command line: pointer 0.
        write_area(&mut mem, grant, b"", 0).unwrap();
        assert_eq!(mem[0xF_0000 + 16..0xF_0000 + 32], [0; 16]);
        // Refusals, never truncation.
        let long = vec![b'x'; 0x1001];
        assert_eq!(
            write_area(&mut mem, grant, &long, 0),
            Err(ElfError::CmdlineTooLong)
        );
        let tiny = Grant {
            base: 0x400_0000,
            size: 0x8000,
        };
        assert_eq!(
            write_area(&mut mem[..0x8000], tiny, b"", 0),
            Err(ElfError::AreaOverlap)
        );
        assert_eq!(
            write_area(&mut mem[..0x1000], grant, b"", 0),
            Err(ElfError::AreaOverlap)
        );
        let g = Guest::parse(&elf()).unwrap();
        assert!(g.fits_below_area(grant));
        assert!(!g.fits_below_area(Grant {
            base: 0x400_0000,
            size: 0x1_1000
        }));
    }
}
