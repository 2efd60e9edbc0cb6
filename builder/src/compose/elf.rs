//! Where an ELF partition lives: its `PT_LOAD` span and entry, read from the program headers
//! only (a 256 MiB payload is never read whole for this).
//!
//! The hypervisor loads every `PT_LOAD` at its physical address inside the partition's grant
//! (`stub-hypervisor/src/elf.rs`, which also requires `p_vaddr == p_paddr`: a partition runs
//! on identity page tables). The builder derives the grant's base from the lowest segment and
//! checks here, with errors a person can act on, what the stub would refuse at boot.
//! Reference: System V gABI, "ELF Header" and "Program Header" (ELF-64). Bad input gives an
//! error string, never a panic.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The grant page size.
pub const PAGE: u64 = 4096;
/// At most this many program headers (as the stub).
pub const MAX_PHDRS: u16 = 64;

/// The load layout of an ELF partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Lowest `PT_LOAD` physical address, rounded down to [`PAGE`]: the grant's base.
    pub base: u64,
    /// End of the highest `PT_LOAD` (`p_paddr + p_memsz`).
    pub end: u64,
    /// `e_entry`.
    pub entry: u64,
}

impl Layout {
    /// Memory the partition needs from `base`: its segments plus the hypervisor area.
    pub fn min_memory(&self) -> u64 {
        let span = self.end.saturating_sub(self.base).div_ceil(PAGE) * PAGE;
        span.saturating_add(policies::bootinfo::HV_AREA_SIZE)
    }
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
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The layout from the ELF header (64 bytes) and the program header table.
pub fn layout_from(header: &[u8], phdrs: &[u8]) -> Result<Layout, String> {
    let entry = u64_at(header, 24).ok_or("the ELF header is truncated")?;
    let phentsize = usize::from(u16_at(header, 54).ok_or("the ELF header is truncated")?);
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    let mut entry_ok = false;
    for (i, ph) in phdrs.chunks_exact(phentsize.max(56)).enumerate() {
        if u32_at(ph, 0) != Some(1) {
            continue; // not PT_LOAD
        }
        let bad = || format!("program header {i} is truncated");
        let flags = u32_at(ph, 4).ok_or_else(bad)?;
        let vaddr = u64_at(ph, 16).ok_or_else(bad)?;
        let paddr = u64_at(ph, 24).ok_or_else(bad)?;
        let filesz = u64_at(ph, 32).ok_or_else(bad)?;
        let memsz = u64_at(ph, 40).ok_or_else(bad)?;
        if vaddr != paddr {
            return Err(format!(
                "PT_LOAD {i} has p_vaddr {vaddr:#x} != p_paddr {paddr:#x} (partitions run on identity page tables; link with equal virtual and physical addresses)"
            ));
        }
        if filesz > memsz {
            return Err(format!("PT_LOAD {i} has p_filesz > p_memsz"));
        }
        if memsz == 0 {
            continue;
        }
        let end = paddr
            .checked_add(memsz)
            .ok_or_else(|| format!("PT_LOAD {i} wraps around the address space"))?;
        if flags & 1 != 0 && (paddr..end).contains(&entry) {
            entry_ok = true;
        }
        lo = lo.min(paddr);
        hi = hi.max(end);
    }
    if hi == 0 {
        return Err("has no PT_LOAD segment".into());
    }
    if !entry_ok {
        return Err(format!(
            "entry point {entry:#x} is not in an executable PT_LOAD segment"
        ));
    }
    Ok(Layout {
        base: lo / PAGE * PAGE,
        end: hi,
        entry,
    })
}

/// Read the header and program headers of the ELF at `path` (which `crate::compose::inputs` has
/// already checked is an ELF64 x86_64 `ET_EXEC`).
pub fn layout(path: &Path) -> Result<Layout, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut header = [0u8; 64];
    f.read_exact(&mut header)
        .map_err(|_| "is shorter than an ELF64 header".to_string())?;
    let phoff = u64_at(&header, 32).ok_or("the ELF header is truncated")?;
    let phentsize = u16_at(&header, 54).ok_or("the ELF header is truncated")?;
    let phnum = u16_at(&header, 56).ok_or("the ELF header is truncated")?;
    if phnum > MAX_PHDRS || phentsize < 56 {
        return Err(format!(
            "has {phnum} program headers of {phentsize} bytes (at most {MAX_PHDRS} of at least 56)"
        ));
    }
    let mut phdrs = vec![0u8; usize::from(phentsize) * usize::from(phnum)];
    f.seek(SeekFrom::Start(phoff))
        .and_then(|_| f.read_exact(&mut phdrs))
        .map_err(|_| "its program header table lies outside the file".to_string())?;
    layout_from(&header, &phdrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phdr(flags: u32, vaddr: u64, paddr: u64, filesz: u64, memsz: u64) -> Vec<u8> {
        let mut p = vec![0u8; 56];
        p[0..4].copy_from_slice(&1u32.to_le_bytes());
        p[4..8].copy_from_slice(&flags.to_le_bytes());
        p[16..24].copy_from_slice(&vaddr.to_le_bytes());
        p[24..32].copy_from_slice(&paddr.to_le_bytes());
        p[32..40].copy_from_slice(&filesz.to_le_bytes());
        p[40..48].copy_from_slice(&memsz.to_le_bytes());
        p
    }

    fn header(entry: u64) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[24..32].copy_from_slice(&entry.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h
    }

    #[test]
    fn base_is_the_lowest_segment_page() {
        let mut ph = phdr(5, 0x400_0123, 0x400_0123, 0x100, 0x2000);
        ph.extend(phdr(6, 0x401_0000, 0x401_0000, 0, 0x3000));
        let l = layout_from(&header(0x400_0200), &ph).unwrap();
        assert_eq!(
            l,
            Layout {
                base: 0x400_0000,
                end: 0x401_3000,
                entry: 0x400_0200
            }
        );
        assert_eq!(l.min_memory(), 0x1_3000 + 0x1_0000);
    }

    #[test]
    fn refusals() {
        let h = header(0x400_0000);
        assert!(layout_from(&h, &phdr(5, 0x400_0000, 0x500_0000, 1, 1)).is_err());
        assert!(layout_from(&h, &phdr(5, 0x400_0000, 0x400_0000, 2, 1)).is_err());
        assert!(
            layout_from(&h, &phdr(6, 0x400_0000, 0x400_0000, 1, 1)).is_err(),
            "not exec"
        );
        assert!(layout_from(&h, &phdr(5, u64::MAX, u64::MAX, 1, 2)).is_err());
        assert!(layout_from(&h, &[]).is_err());
        assert!(layout_from(&h[..10], &phdr(5, 0, 0, 1, 1)).is_err());
        for n in 0..56 {
            let _ = layout_from(&h, &phdr(5, 0x400_0000, 0x400_0000, 1, 1)[..n]);
        }
    }
}
