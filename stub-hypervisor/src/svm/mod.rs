//! The AMD SVM backend: the VMCB layout, exit decoding, nested page tables and the I/O and
//! MSR permission maps — the parts that are data, testable on the host — and, in [`hw`], the
//! instructions (`VMRUN`, the EFER/VM_HSAVE_PA writes) behind [`crate::hv::Vcpu`].
//!
//! Reference: AMD64 Architecture Programmer's Manual vol. 2, chapter 15 ("Secure Virtual
//! Machine") and appendix B ("Layout of VMCB"), appendix C ("SVM Intercept Exit Codes");
//! what QEMU TCG does with it: `shared/reference/svm-on-qemu-tcg.md`.

pub mod hw;

use crate::hv::{Access, Exit};

/// Size of a page, of the VMCB and of a page table.
pub const PAGE: u64 = 0x1000;

/// VMCB field offsets (APM vol. 2, appendix B, tables B-1 and B-2).
pub mod vmcb {
    /// Intercept vector 3 (u32): INTR, NMI, …, CPUID, HLT, IOIO_PROT, MSR_PROT, SHUTDOWN.
    pub const INTERCEPT_MISC1: usize = 0x00C;
    /// Intercept vector 4 (u32): VMRUN, VMMCALL, VMLOAD, VMSAVE, STGI, CLGI, SKINIT, …
    pub const INTERCEPT_MISC2: usize = 0x010;
    /// Physical address of the I/O permission map.
    pub const IOPM_BASE_PA: usize = 0x040;
    /// Physical address of the MSR permission map.
    pub const MSRPM_BASE_PA: usize = 0x048;
    /// Guest ASID (u32).
    pub const GUEST_ASID: usize = 0x058;
    /// TLB control (u8).
    pub const TLB_CONTROL: usize = 0x05C;
    /// Virtual interrupt control (u64); bit 24 = V_INTR_MASKING.
    pub const V_INTR: usize = 0x060;
    /// Exit code (u64; QEMU writes VMEXIT_INVALID as 0x0000_0000_FFFF_FFFF).
    pub const EXITCODE: usize = 0x070;
    /// Exit information 1.
    pub const EXITINFO1: usize = 0x078;
    /// Exit information 2.
    pub const EXITINFO2: usize = 0x080;
    /// Nested paging control (u64); bit 0 = NP_ENABLE.
    pub const NP_ENABLE: usize = 0x090;
    /// Nested page table root (host-physical).
    pub const N_CR3: usize = 0x0B0;
    /// State save area: ES (each segment: selector u16, attributes u16, limit u32, base u64).
    pub const ES: usize = 0x400;
    /// CS.
    pub const CS: usize = 0x410;
    /// SS.
    pub const SS: usize = 0x420;
    /// DS.
    pub const DS: usize = 0x430;
    /// FS.
    pub const FS: usize = 0x440;
    /// GS.
    pub const GS: usize = 0x450;
    /// GDTR (limit and base used).
    pub const GDTR: usize = 0x460;
    /// LDTR.
    pub const LDTR: usize = 0x470;
    /// IDTR.
    pub const IDTR: usize = 0x480;
    /// TR.
    pub const TR: usize = 0x490;
    /// CPL (u8).
    pub const CPL: usize = 0x4CB;
    /// EFER.
    pub const EFER: usize = 0x4D0;
    /// CR4.
    pub const CR4: usize = 0x548;
    /// CR3.
    pub const CR3: usize = 0x550;
    /// CR0.
    pub const CR0: usize = 0x558;
    /// DR7.
    pub const DR7: usize = 0x560;
    /// DR6.
    pub const DR6: usize = 0x568;
    /// RFLAGS.
    pub const RFLAGS: usize = 0x570;
    /// RIP.
    pub const RIP: usize = 0x578;
    /// RSP.
    pub const RSP: usize = 0x5D8;
    /// RAX.
    pub const RAX: usize = 0x5F8;
    /// Guest PAT.
    pub const G_PAT: usize = 0x668;
}

/// Intercept bits of [`vmcb::INTERCEPT_MISC1`].
pub mod misc1 {
    /// Physical interrupt.
    pub const INTR: u32 = 1 << 0;
    /// NMI.
    pub const NMI: u32 = 1 << 1;
    /// CPUID.
    pub const CPUID: u32 = 1 << 18;
    /// HLT.
    pub const HLT: u32 = 1 << 24;
    /// INVLPGA.
    pub const INVLPGA: u32 = 1 << 26;
    /// IN/OUT through the I/O permission map.
    pub const IOIO_PROT: u32 = 1 << 27;
    /// RDMSR/WRMSR through the MSR permission map.
    pub const MSR_PROT: u32 = 1 << 28;
    /// Shutdown (triple fault).
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Intercept bits of [`vmcb::INTERCEPT_MISC2`].
pub mod misc2 {
    /// VMRUN (required, or VMRUN fails).
    pub const VMRUN: u32 = 1 << 0;
    /// VMMCALL (the hypercall).
    pub const VMMCALL: u32 = 1 << 1;
    /// VMLOAD, VMSAVE, STGI, CLGI, SKINIT.
    pub const SVM_INSTRUCTIONS: u32 = 0b111_1100;
}

/// Exit codes (APM vol. 2, appendix C).
pub mod code {
    /// Physical interrupt.
    pub const INTR: u64 = 0x60;
    /// NMI.
    pub const NMI: u64 = 0x61;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// IN/OUT.
    pub const IOIO: u64 = 0x7B;
    /// RDMSR/WRMSR.
    pub const MSR: u64 = 0x7C;
    /// Shutdown (triple fault).
    pub const SHUTDOWN: u64 = 0x7F;
    /// VMRUN … SKINIT are 0x80 … 0x86; VMMCALL is 0x81.
    pub const VMMCALL: u64 = 0x81;
    /// Nested page fault.
    pub const NPF: u64 = 0x400;
    /// VMRUN found an invalid guest state (low 32 bits; QEMU does not sign-extend).
    pub const INVALID: u64 = 0xFFFF_FFFF;
}

/// Decode an exit from `EXITCODE`, `EXITINFO1`, `EXITINFO2` (a pure function: unknown codes
/// become [`Exit::Unknown`]).
pub fn decode_exit(exitcode: u64, info1: u64, info2: u64) -> Exit {
    match exitcode {
        c if c & 0xFFFF_FFFF == code::INVALID => Exit::Invalid(c),
        code::VMMCALL => Exit::Hypercall,
        code::IOIO => Exit::Io {
            port: (info1 >> 16) as u16,
            size: if info1 & (1 << 6) != 0 {
                4
            } else if info1 & (1 << 5) != 0 {
                2
            } else {
                1
            },
            write: info1 & 1 == 0,
        },
        code::NPF => Exit::NestedPageFault {
            gpa: info2,
            access: if info1 & (1 << 4) != 0 {
                Access::Execute
            } else if info1 & (1 << 1) != 0 {
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
        0x7A | 0x80 | 0x82..=0x86 => Exit::Instruction(exitcode),
        c => Exit::Unknown(c),
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

/// Fill an I/O permission map: every port intercepted except `allowed` (inclusive ranges).
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
}
