//! The AMD SVM backend: the VMCB layout, exit decoding, nested page tables and the I/O and
//! MSR permission maps — the parts that are data, testable on the host — and, in [`hw`], the
//! instructions (`VMRUN`, the EFER/VM_HSAVE_PA writes) behind [`crate::hv::Vcpu`].
//!
//! - [`vmcb`]: the VMCB as `#[repr(C)]` structs (offsets asserted against appendix B) and
//!   the initial VMCB of a partition;
//! - [`decode_exit`]: exit code + EXITINFO → [`Exit`];
//! - [`map_identity`] / [`translate`]: nested page tables over a [`Tables`] arena;
//! - [`fill_iopm`] / [`fill_msrpm`]: the permission maps;
//! - [`Support::from_cpuid`]: SVM and nested-paging detection;
//! - [`timer`]: the local APIC timer that ends every time slice (preemption).
//!
//! Reference: AMD64 Architecture Programmer's Manual vol. 2, chapter 15 ("Secure Virtual
//! Machine") and appendix B ("Layout of VMCB"), appendix C ("SVM Intercept Exit Codes");
//! what QEMU TCG does with it: `shared/reference/svm-on-qemu-tcg.md`.

pub mod hw;
pub mod timer;
pub mod vmcb;

use crate::hv::{Access, Exit};

/// Size of a page, of the VMCB and of a page table.
pub const PAGE: u64 = 0x1000;

/// Exit codes (APM vol. 2, appendix C, table C-1).
pub mod code {
    /// Physical interrupt.
    pub const INTR: u64 = 0x60;
    /// NMI.
    pub const NMI: u64 = 0x61;
    /// MOV from DR0 … MOV to DR15: 0x20 ..= 0x3F.
    pub const DR_FIRST: u64 = 0x20;
    /// The last DR access exit code.
    pub const DR_LAST: u64 = 0x3F;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// INVD.
    pub const INVD: u64 = 0x76;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// INVLPGA.
    pub const INVLPGA: u64 = 0x7A;
    /// IN/OUT.
    pub const IOIO: u64 = 0x7B;
    /// RDMSR/WRMSR.
    pub const MSR: u64 = 0x7C;
    /// Shutdown (triple fault).
    pub const SHUTDOWN: u64 = 0x7F;
    /// VMRUN.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// VMLOAD, VMSAVE, STGI, CLGI, SKINIT: 0x82 ..= 0x86.
    pub const VMLOAD: u64 = 0x82;
    /// SKINIT.
    pub const SKINIT: u64 = 0x86;
    /// RDTSCP, ICEBP, WBINVD, MONITOR, MWAIT, MWAIT_CONDITIONAL, XSETBV: 0x87 ..= 0x8D.
    pub const RDTSCP: u64 = 0x87;
    /// XSETBV.
    pub const XSETBV: u64 = 0x8D;
    /// Nested page fault.
    pub const NPF: u64 = 0x400;
    /// VMRUN found an invalid guest state (low 32 bits; QEMU does not sign-extend).
    pub const INVALID: u64 = 0xFFFF_FFFF;
}

/// EXITINFO1 bits of an IOIO exit (APM vol. 2, 15.10.2 "IN and OUT Behavior").
pub mod ioio {
    /// TYPE: 1 = IN, 0 = OUT.
    pub const IN: u64 = 1 << 0;
    /// 8-bit operand.
    pub const SZ8: u64 = 1 << 4;
    /// 16-bit operand.
    pub const SZ16: u64 = 1 << 5;
    /// 32-bit operand.
    pub const SZ32: u64 = 1 << 6;
}

/// EXITINFO1 bits of a nested page fault (APM vol. 2, 15.25.6 "Nested versus Guest Page
/// Faults, Fault Ordering"; the bits of a #PF error code).
pub mod npf {
    /// The page was present (a protection violation).
    pub const PRESENT: u64 = 1 << 0;
    /// A write.
    pub const WRITE: u64 = 1 << 1;
    /// An instruction fetch.
    pub const FETCH: u64 = 1 << 4;
}

/// Decode an exit from `EXITCODE`, `EXITINFO1`, `EXITINFO2`: a pure function, total over its
/// input — codes the hypervisor does not handle become [`Exit::Unknown`]. [`Exit::Msr`] comes
/// back with `msr: 0`: the MSR number is the guest's ECX, which the caller fills in.
pub fn decode_exit(exitcode: u64, info1: u64, info2: u64) -> Exit {
    match exitcode {
        c if c & 0xFFFF_FFFF == code::INVALID => Exit::Invalid(c),
        code::VMMCALL => Exit::Hypercall,
        code::IOIO => Exit::Io {
            port: (info1 >> 16) as u16,
            size: if info1 & ioio::SZ32 != 0 {
                4
            } else if info1 & ioio::SZ16 != 0 {
                2
            } else {
                1
            },
            write: info1 & ioio::IN == 0,
        },
        code::NPF => Exit::NestedPageFault {
            gpa: info2,
            access: if info1 & npf::FETCH != 0 {
                Access::Execute
            } else if info1 & npf::WRITE != 0 {
                Access::Write
            } else {
                Access::Read
            },
        },
        code::MSR => Exit::Msr {
            msr: 0,
            write: info1 & 1 != 0,
        },
        code::CPUID => Exit::Cpuid,
        code::HLT => Exit::Hlt,
        code::SHUTDOWN => Exit::Shutdown,
        code::INTR | code::NMI => Exit::Interrupt,
        code::DR_FIRST..=code::DR_LAST
        | code::INVD
        | code::INVLPGA
        | code::VMRUN
        | code::VMLOAD..=code::XSETBV => Exit::Instruction(exitcode),
        c => Exit::Unknown(c),
    }
}

/// What the processor offers for SVM (from CPUID only: probing with MSRs or CR4 misbehaves
/// under QEMU TCG, `shared/reference/svm-on-qemu-tcg.md` gotchas 6 and 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Support {
    /// CPUID 0x8000_0001 ECX bit 2.
    pub svm: bool,
    /// CPUID 0x8000_000A EDX bit 0.
    pub nested_paging: bool,
    /// CPUID 0x8000_000A EBX: number of ASIDs.
    pub asids: u32,
}

impl Support {
    /// Decide from `cpuid(leaf, subleaf) -> [eax, ebx, ecx, edx]` (the real instruction in
    /// the stub, a table in tests). Leaves beyond the maximum extended leaf are not asked.
    pub fn from_cpuid(cpuid: impl Fn(u32, u32) -> [u32; 4]) -> Self {
        let [max_ext, ..] = cpuid(0x8000_0000, 0);
        let [_, _, ecx, _] = if max_ext >= 0x8000_0001 {
            cpuid(0x8000_0001, 0)
        } else {
            [0; 4]
        };
        let svm = ecx & (1 << 2) != 0;
        let [_, asids, _, edx] = if svm && max_ext >= 0x8000_000A {
            cpuid(0x8000_000A, 0)
        } else {
            [0; 4]
        };
        Self {
            svm,
            nested_paging: edx & 1 != 0,
            asids,
        }
    }

    /// Whether partitions can run isolated: SVM, nested paging, and an ASID for each
    /// partition (ASID 0 is the host's).
    pub fn can_isolate(&self, partitions: usize) -> bool {
        self.svm && self.nested_paging && (self.asids as usize) > partitions
    }
}

/// Page-table memory for the nested page tables: zeroed 4 KiB pages with their physical
/// addresses, and access to their entries.
pub trait Tables {
    /// A new zeroed page; `None` when the arena is exhausted.
    fn alloc(&mut self) -> Option<u64>;
    /// Entry `index` of the table at `table`.
    fn entry(&self, table: u64, index: usize) -> u64;
    /// Set entry `index` of the table at `table`.
    fn set_entry(&mut self, table: u64, index: usize, value: u64);
}

/// Nested page table entry bits: present, writable, user (every guest access is a user
/// access to the nested tables), page size (2 MiB leaf), write-through + cache-disable (UC).
pub mod pte {
    /// Present.
    pub const P: u64 = 1;
    /// Writable.
    pub const RW: u64 = 2;
    /// User (required for nested tables).
    pub const US: u64 = 4;
    /// Write-through.
    pub const PWT: u64 = 8;
    /// Cache disable.
    pub const PCD: u64 = 0x10;
    /// 2 MiB page (in a page directory).
    pub const PS: u64 = 0x80;
    /// Physical address bits of an entry.
    pub const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
}

/// Why nested page tables cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NptError {
    /// The arena has no page left.
    OutOfPages,
    /// A range is not page aligned or overflows.
    BadRange,
}

/// Identity-map `base .. base + size` (guest-physical = host-physical) into the nested page
/// tables rooted at `root` with `flags`, using 2 MiB pages where the range allows.
pub fn map_identity<T: Tables>(
    t: &mut T,
    root: u64,
    base: u64,
    size: u64,
    flags: u64,
) -> Result<(), NptError> {
    let end = base.checked_add(size).ok_or(NptError::BadRange)?;
    if !base.is_multiple_of(PAGE) || !end.is_multiple_of(PAGE) || end > (1 << 48) {
        return Err(NptError::BadRange);
    }
    let mut at = base;
    while at < end {
        let large = at.is_multiple_of(2 << 20) && end - at >= (2 << 20);
        let pdpt = next(t, root, (at >> 39) & 511)?;
        let pd = next(t, pdpt, (at >> 30) & 511)?;
        if large {
            t.set_entry(pd, ((at >> 21) & 511) as usize, at | flags | pte::PS);
            at += 2 << 20;
        } else {
            let pt = next(t, pd, (at >> 21) & 511)?;
            t.set_entry(pt, ((at >> 12) & 511) as usize, at | flags);
            at += PAGE;
        }
    }
    Ok(())
}

/// The table that entry `index` of `table` points to, created if absent.
fn next<T: Tables>(t: &mut T, table: u64, index: u64) -> Result<u64, NptError> {
    let e = t.entry(table, index as usize);
    if e & pte::P != 0 {
        return Ok(e & pte::ADDR);
    }
    let new = t.alloc().ok_or(NptError::OutOfPages)?;
    t.set_entry(table, index as usize, new | pte::P | pte::RW | pte::US);
    Ok(new)
}

/// Walk the nested tables: the host-physical address and flags `gpa` maps to, if any.
pub fn translate<T: Tables>(t: &T, root: u64, gpa: u64) -> Option<(u64, u64)> {
    let l4 = t.entry(root, ((gpa >> 39) & 511) as usize);
    if l4 & pte::P == 0 {
        return None;
    }
    let l3 = t.entry(l4 & pte::ADDR, ((gpa >> 30) & 511) as usize);
    if l3 & pte::P == 0 {
        return None;
    }
    let l2 = t.entry(l3 & pte::ADDR, ((gpa >> 21) & 511) as usize);
    if l2 & pte::P == 0 {
        return None;
    }
    if l2 & pte::PS != 0 {
        return Some((
            (l2 & pte::ADDR & !0x1F_FFFF) | (gpa & 0x1F_FFFF),
            l2 & 0xFFF,
        ));
    }
    let l1 = t.entry(l2 & pte::ADDR, ((gpa >> 12) & 511) as usize);
    if l1 & pte::P == 0 {
        return None;
    }
    Some(((l1 & pte::ADDR) | (gpa & 0xFFF), l1 & 0xFFF))
}

/// Size of the I/O permission map (three pages).
pub const IOPM_SIZE: usize = 3 * PAGE as usize;
/// Size of the MSR permission map (two pages).
pub const MSRPM_SIZE: usize = 2 * PAGE as usize;

/// Fill an I/O permission map (APM vol. 2, 15.10.1: one bit per port, 1 = intercept; the
/// third page covers accesses that run past port 0xFFFF): every port intercepted except
/// `allowed` (inclusive ranges).
pub fn fill_iopm(map: &mut [u8], allowed: &[(u16, u16)]) {
    map.fill(0xFF);
    for &(lo, hi) in allowed {
        for port in lo..=hi {
            if let Some(b) = map.get_mut(usize::from(port) / 8) {
                *b &= !(1 << (port % 8));
            }
        }
    }
}

/// Fill an MSR permission map (APM vol. 2, 15.11: two bits per MSR, read then write, for the
/// ranges 0–0x1FFF, 0xC000_0000–0xC000_1FFF and 0xC001_0000–0xC001_1FFF; MSRs outside them
/// are always intercepted): every read and write of every MSR intercepted.
pub fn fill_msrpm(map: &mut [u8]) {
    map.fill(0xFF);
}

/// Where the read-intercept bit of `msr` is in an MSR permission map (byte, bit); the write
/// bit is the next one. `None` for MSRs outside the map (always intercepted).
pub fn msrpm_bit(msr: u32) -> Option<(usize, u8)> {
    let (range, off) = match msr {
        0..=0x1FFF => (0, msr),
        0xC000_0000..=0xC000_1FFF => (1, msr - 0xC000_0000),
        0xC001_0000..=0xC001_1FFF => (2, msr - 0xC001_0000),
        _ => return None,
    };
    let bit = range * 0x800 * 8 + off as usize * 2;
    Some((bit / 8, (bit % 8) as u8))
}

/// The COM1 ports a service granted `serial` may use.
pub const COM1_PORTS: (u16, u16) = (0x3F8, 0x3FF);
/// The TPM TIS locality-0 page a service granted `tpm` may use.
pub const TPM_PAGE: u64 = 0xFED4_0000;

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    #[derive(Default)]
    struct Arena {
        next: u64,
        limit: u64,
        mem: BTreeMap<(u64, usize), u64>,
    }

    impl Tables for Arena {
        fn alloc(&mut self) -> Option<u64> {
            (self.next < self.limit).then(|| {
                self.next += PAGE;
                0x10_0000 + self.next
            })
        }
        fn entry(&self, table: u64, index: usize) -> u64 {
            self.mem.get(&(table, index)).copied().unwrap_or(0)
        }
        fn set_entry(&mut self, table: u64, index: usize, value: u64) {
            self.mem.insert((table, index), value);
        }
    }

    #[test]
    fn maps_exactly_the_grant() {
        let mut a = Arena {
            limit: 64 * PAGE,
            ..Default::default()
        };
        let root = a.alloc().unwrap();
        let (base, size) = (0x400_0000 + 0x3000, (4 << 20) + 0x5000);
        let rw = pte::P | pte::RW | pte::US;
        map_identity(&mut a, root, base, size, rw).unwrap();
        map_identity(&mut a, root, TPM_PAGE, PAGE, rw | pte::PCD | pte::PWT).unwrap();
        for gpa in [base, base + 0x1234, base + (2 << 20), base + size - 1] {
            assert_eq!(translate(&a, root, gpa).map(|x| x.0), Some(gpa), "{gpa:#x}");
        }
        for gpa in [
            base - 1,
            base + size,
            0,
            0x10_0000,
            0x600_0000,
            TPM_PAGE + PAGE,
            u64::MAX >> 16,
        ] {
            assert_eq!(translate(&a, root, gpa), None, "{gpa:#x}");
        }
        let (_, f) = translate(&a, root, TPM_PAGE + 0x18).unwrap();
        assert_eq!(f & (pte::PCD | pte::PWT), pte::PCD | pte::PWT);
        // A 2 MiB page was used where aligned.
        assert!(a.mem.values().any(|e| e & pte::PS != 0));
        let mut tiny = Arena {
            limit: 2 * PAGE,
            ..Default::default()
        };
        let r = tiny.alloc().unwrap();
        assert_eq!(
            map_identity(&mut tiny, r, base, size, rw),
            Err(NptError::OutOfPages)
        );
        assert_eq!(
            map_identity(&mut a, root, 1, PAGE, rw),
            Err(NptError::BadRange)
        );
    }

    #[test]
    fn exits_decode() {
        assert_eq!(decode_exit(0x81, 0, 0), Exit::Hypercall);
        assert_eq!(decode_exit(0xFFFF_FFFF, 0, 0), Exit::Invalid(0xFFFF_FFFF));
        assert_eq!(decode_exit(u64::MAX, 0, 0), Exit::Invalid(u64::MAX));
        // OUT dx, al to 0x3F8: type 0 (OUT), SZ8 (bit 4).
        assert_eq!(
            decode_exit(0x7B, (0x3F8 << 16) | (1 << 4), 0),
            Exit::Io {
                port: 0x3F8,
                size: 1,
                write: true
            }
        );
        // IN eax, dx from 0xCFC: type 1 (IN), SZ32 (bit 6).
        assert_eq!(
            decode_exit(0x7B, (0xCFC << 16) | (1 << 6) | 1, 0),
            Exit::Io {
                port: 0xCFC,
                size: 4,
                write: false
            }
        );
        assert_eq!(
            decode_exit(0x400, 0x1_0000_0006, 0x600_0000),
            Exit::NestedPageFault {
                gpa: 0x600_0000,
                access: Access::Write
            }
        );
        assert_eq!(
            decode_exit(0x400, 0x1_0000_0014, 0x10_0000),
            Exit::NestedPageFault {
                gpa: 0x10_0000,
                access: Access::Execute
            }
        );
        assert_eq!(decode_exit(0x7F, 0, 0), Exit::Shutdown);
        assert_eq!(decode_exit(0x80, 0, 0), Exit::Instruction(0x80));
        assert_eq!(decode_exit(0x60, 0, 0), Exit::Interrupt);
        assert_eq!(decode_exit(0x4242, 0, 0), Exit::Unknown(0x4242));
    }

    #[test]
    fn iopm_grants_only_com1() {
        let mut m = [0u8; IOPM_SIZE];
        fill_iopm(&mut m, &[COM1_PORTS]);
        let intercepted = |m: &[u8], p: u16| m[usize::from(p) / 8] & (1 << (p % 8)) != 0;
        assert!((0x3F8..=0x3FF).all(|p| !intercepted(&m, p)));
        assert!(
            [0x3F7, 0x400, 0xCF8, 0x2F8]
                .iter()
                .all(|&p| intercepted(&m, p))
        );
        fill_iopm(&mut m, &[]);
        assert!((0..=0xFFFF).all(|p| intercepted(&m, p)));
    }

    /// Every 4 KiB page the tables map, with its flags (2 MiB leaves expanded).
    fn leaves(a: &Arena, root: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for i4 in 0..512u64 {
            let l4 = a.entry(root, i4 as usize);
            if l4 & pte::P == 0 {
                continue;
            }
            for i3 in 0..512u64 {
                let l3 = a.entry(l4 & pte::ADDR, i3 as usize);
                if l3 & pte::P == 0 {
                    continue;
                }
                assert_eq!(l3 & pte::PS, 0, "no 1 GiB pages");
                for i2 in 0..512u64 {
                    let l2 = a.entry(l3 & pte::ADDR, i2 as usize);
                    if l2 & pte::P == 0 {
                        continue;
                    }
                    let va = (i4 << 39) | (i3 << 30) | (i2 << 21);
                    if l2 & pte::PS != 0 {
                        for k in 0..512 {
                            let pa = (l2 & pte::ADDR) + k * PAGE;
                            out.push((va + k * PAGE, pa | (l2 & 0xFFF & !pte::PS)));
                        }
                        continue;
                    }
                    for i1 in 0..512u64 {
                        let l1 = a.entry(l2 & pte::ADDR, i1 as usize);
                        if l1 & pte::P != 0 {
                            out.push((va | (i1 << 12), l1 & !pte::ADDR | (l1 & pte::ADDR)));
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn walk_maps_exactly_the_grant_and_device_page() {
        let mut a = Arena {
            limit: 64 * PAGE,
            ..Default::default()
        };
        let root = a.alloc().unwrap();
        let (base, size) = (0x3FF_D000u64, (6 << 20) + 0x4000);
        let rw = pte::P | pte::RW | pte::US;
        map_identity(&mut a, root, base, size, rw).unwrap();
        map_identity(&mut a, root, TPM_PAGE, PAGE, rw | pte::PCD | pte::PWT).unwrap();
        let mut expect: Vec<(u64, u64)> = (0..size / PAGE)
            .map(|k| (base + k * PAGE, (base + k * PAGE) | rw))
            .collect();
        expect.push((TPM_PAGE, TPM_PAGE | rw | pte::PCD | pte::PWT));
        assert_eq!(leaves(&a, root), expect);
        // Unaligned edges used 4 KiB pages, the aligned middle 2 MiB pages.
        let large = a.mem.values().filter(|e| *e & pte::PS != 0).count();
        assert_eq!(large, 3, "0x4000000 ..= 0x45FFFFF");
    }

    #[test]
    fn msrpm_intercepts_everything() {
        let mut m = [0u8; MSRPM_SIZE];
        fill_msrpm(&mut m);
        for msr in [
            0,
            0x10,
            0x1B,
            0x277,
            0x1FFF,
            0xC000_0080,
            0xC000_0100,
            0xC001_0117,
            0xC001_1FFF,
        ] {
            let (byte, bit) = msrpm_bit(msr).unwrap();
            assert!(byte < MSRPM_SIZE - 0x800, "{msr:#x}");
            assert_ne!(m[byte] & (1 << bit), 0, "read {msr:#x}");
            assert_ne!(m[byte] & (2 << bit), 0, "write {msr:#x}");
        }
        assert_eq!(msrpm_bit(0xC000_0080), Some((0x800 + 0x80 / 4, 0)));
        assert_eq!(msrpm_bit(0x2000), None);
        assert_eq!(msrpm_bit(0x4000_0000), None);
    }

    #[test]
    fn detection_from_cpuid() {
        let epyc = |leaf: u32, _| match leaf {
            0x8000_0000 => [0x8000_001F, 0, 0, 0],
            0x8000_0001 => [0, 0, 1 << 2, 0],
            0x8000_000A => [1, 16, 0, 1],
            _ => [0; 4],
        };
        let s = Support::from_cpuid(epyc);
        assert_eq!(
            s,
            Support {
                svm: true,
                nested_paging: true,
                asids: 16
            }
        );
        assert!(s.can_isolate(2));
        assert!(!s.can_isolate(16), "ASID 0 is the host's");
        // qemu64: SVM without NP.
        let no_np = |leaf: u32, _| match leaf {
            0x8000_0000 => [0x8000_000A, 0, 0, 0],
            0x8000_0001 => [0, 0, 1 << 2, 0],
            0x8000_000A => [1, 16, 0, 0],
            _ => [0; 4],
        };
        assert!(!Support::from_cpuid(no_np).can_isolate(1));
        // No SVM: leaf 0x8000_000A is not trusted even if it says NP.
        let no_svm = |leaf: u32, _| match leaf {
            0x8000_0000 => [0x8000_000A, 0, 0, 0],
            0x8000_000A => [1, 16, 0, 1],
            _ => [0; 4],
        };
        assert!(!Support::from_cpuid(no_svm).nested_paging);
        // Maximum extended leaf too low: nothing asked beyond it.
        let old = |leaf: u32, _| {
            assert!(leaf <= 0x8000_0000, "asked {leaf:#x}");
            [0x8000_0000, 0, 0, 0]
        };
        assert!(!Support::from_cpuid(old).svm);
    }

    #[test]
    fn every_intercepted_instruction_decodes() {
        for c in [
            0x76, 0x7A, 0x80, 0x82, 0x83, 0x84, 0x85, 0x86, 0x8A, 0x8B, 0x8C, 0x8D,
        ] {
            assert_eq!(decode_exit(c, 0, 0), Exit::Instruction(c), "{c:#x}");
        }
        assert_eq!(decode_exit(0x61, 0, 0), Exit::Interrupt);
        assert_eq!(decode_exit(0x72, 0, 0), Exit::Cpuid);
        assert_eq!(decode_exit(0x78, 0, 0), Exit::Hlt);
        assert_eq!(
            decode_exit(0x7C, 1, 0),
            Exit::Msr {
                msr: 0,
                write: true
            }
        );
        assert_eq!(
            decode_exit(0x7C, 0, 0),
            Exit::Msr {
                msr: 0,
                write: false
            }
        );
        // A read NPF on a not-present page.
        assert_eq!(
            decode_exit(0x400, 0x1_0000_0000, 0xFED4_0000),
            Exit::NestedPageFault {
                gpa: 0xFED4_0000,
                access: Access::Read
            }
        );
        // 16-bit OUT.
        assert_eq!(
            decode_exit(0x7B, (0xCF8 << 16) | (1 << 5), 0),
            Exit::Io {
                port: 0xCF8,
                size: 2,
                write: true
            }
        );
        // Exception intercepts, VINTR, … are not handled: Unknown with the code.
        for c in [0x0, 0x46, 0x64, 0x401, 0x1_0000_0000] {
            assert_eq!(decode_exit(c, 0, 0), Exit::Unknown(c), "{c:#x}");
        }
    }
}
