//! The SVM instructions: feature detection, enabling SVM, and `VMRUN` with the general
//! registers switched by hand (VMRUN switches only RAX, RSP and RIP).
#![expect(
    unsafe_code,
    reason = "CPUID, RDMSR/WRMSR of EFER and VM_HSAVE_PA, VMRUN, VMCB access"
)]

use super::{decode_exit, vmcb};
use crate::hv::{Exit, Regs, Vcpu};

/// `EFER`.
const MSR_EFER: u32 = 0xC000_0080;
/// `VM_HSAVE_PA`: where VMRUN saves the host state.
const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;
/// `EFER.SVME`.
pub const EFER_SVME: u64 = 1 << 12;

/// `CPUID` (reads only: safe).
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    // CPUID exists on every x86_64 processor and only reads (a safe intrinsic).
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// What the processor offers for SVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Support {
    /// CPUID 0x8000_0001 ECX bit 2.
    pub svm: bool,
    /// CPUID 0x8000_000A EDX bit 0.
    pub nested_paging: bool,
    /// CPUID 0x8000_000A EBX: number of ASIDs.
    pub asids: u32,
}

/// Detect SVM and nested paging from CPUID only (probing with MSRs or CR4 misbehaves under
/// QEMU TCG: `shared/reference/svm-on-qemu-tcg.md`, gotchas 6 and 7).
pub fn support() -> Support {
    let max_ext = cpuid(0x8000_0000, 0)[0];
    let svm = max_ext >= 0x8000_0001 && cpuid(0x8000_0001, 0)[2] & (1 << 2) != 0;
    let (nested_paging, asids) = if svm && max_ext >= 0x8000_000A {
        let r = cpuid(0x8000_000A, 0);
        (r[3] & 1 != 0, r[1])
    } else {
        (false, 0)
    };
    Support {
        svm,
        nested_paging,
        asids,
    }
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called for EFER, which every x86_64 processor has; reading has no effect.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Turn SVM on: `EFER.SVME` and the host save area.
///
/// # Safety
///
/// The processor must support SVM ([`support`]); `hsave` must be the physical address of a
/// 4 KiB page reserved for the processor for as long as SVM is on.
pub unsafe fn enable(hsave: u64) {
    let efer = rdmsr(MSR_EFER) | EFER_SVME;
    // SAFETY: the caller checked SVM support; setting SVME changes nothing else; the host
    // save area is a page the caller reserved.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") MSR_EFER, in("eax") efer as u32, in("edx") (efer >> 32) as u32, options(nostack));
        core::arch::asm!("wrmsr", in("ecx") MSR_VM_HSAVE_PA, in("eax") hsave as u32, in("edx") (hsave >> 32) as u32, options(nostack));
    }
}

/// Registers as the `VMRUN` trampoline reads and writes them (byte offsets fixed below).
#[repr(C)]
#[derive(Default)]
struct Gprs {
    rbx: u64, // 0
    rcx: u64, // 8
    rdx: u64, // 16
    rsi: u64, // 24
    rdi: u64, // 32
    rbp: u64, // 40
    r8: u64,  // 48
    r9: u64,  // 56
    r10: u64, // 64
    r11: u64, // 72
    r12: u64, // 80
    r13: u64, // 88
    r14: u64, // 96
    r15: u64, // 104
}

/// Run the guest of the VMCB at `vmcb_pa` once, with `g` in the general registers; on
/// `#VMEXIT`, the guest's registers are back in `g`.
///
/// # Safety
///
/// SVM must be enabled ([`enable`]); `vmcb_pa` must be the physical (= virtual, identity
/// map) address of a valid VMCB whose intercepts include VMRUN, whose nested page tables map
/// only the guest's memory, and which nothing else uses concurrently.
unsafe fn vmrun(vmcb_pa: u64, g: &mut Gprs) {
    let gp: *mut Gprs = g;
    // SAFETY: per the function contract. The sequence is the reference's (pushfq; cli;
    // vmrun; stgi; popfq). RBX and RBP cannot be asm operands, so they are pushed and popped
    // by hand; every other general register is declared clobbered. The Gprs pointer is kept
    // on the stack across VMRUN (the guest owns every register meanwhile).
    unsafe {
        core::arch::asm!(
            "push rbp",
            "push rbx",
            "push rdi",
            "mov rbx, [rdi + 0]",
            "mov rcx, [rdi + 8]",
            "mov rdx, [rdi + 16]",
            "mov rsi, [rdi + 24]",
            "mov rbp, [rdi + 40]",
            "mov r8,  [rdi + 48]",
            "mov r9,  [rdi + 56]",
            "mov r10, [rdi + 64]",
            "mov r11, [rdi + 72]",
            "mov r12, [rdi + 80]",
            "mov r13, [rdi + 88]",
            "mov r14, [rdi + 96]",
            "mov r15, [rdi + 104]",
            "mov rdi, [rdi + 32]",
            "pushfq",
            "cli",
            "vmrun rax",
            "stgi",
            "popfq",
            "push rdi",
            "mov rdi, [rsp + 8]",
            "mov [rdi + 0], rbx",
            "mov [rdi + 8], rcx",
            "mov [rdi + 16], rdx",
            "mov [rdi + 24], rsi",
            "mov [rdi + 40], rbp",
            "mov [rdi + 48], r8",
            "mov [rdi + 56], r9",
            "mov [rdi + 64], r10",
            "mov [rdi + 72], r11",
            "mov [rdi + 80], r12",
            "mov [rdi + 88], r13",
            "mov [rdi + 96], r14",
            "mov [rdi + 104], r15",
            "pop rax",
            "mov [rdi + 32], rax",
            "pop rdi",
            "pop rbx",
            "pop rbp",
            inout("rax") vmcb_pa => _,
            inout("rdi") gp => _,
            out("rcx") _, out("rdx") _, out("rsi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        );
    }
}

/// A partition's vCPU on SVM: its VMCB page and the registers VMRUN does not keep there.
pub struct SvmVcpu {
    vmcb: *mut u8,
    regs: Regs,
}

impl SvmVcpu {
    /// A vCPU over the VMCB page at `vmcb` (identity-mapped physical address), which the
    /// caller set up completely; `regs` holds the initial general registers (RAX, RSP and
    /// RIP are taken from the VMCB at every run).
    ///
    /// # Safety
    ///
    /// `vmcb` must be a 4 KiB page used by this vCPU alone for its whole life, with a valid
    /// guest state and intercepts (VMRUN included); SVM must be enabled before [`Vcpu::run`].
    pub unsafe fn new(vmcb: u64, regs: Regs) -> Self {
        Self {
            vmcb: vmcb as *mut u8,
            regs,
        }
    }

    fn get(&self, off: usize) -> u64 {
        // SAFETY: `off` is a VMCB field offset below 4 KiB - 8 (the constants of
        // `super::vmcb`); the page belongs to this vCPU.
        unsafe { self.vmcb.add(off).cast::<u64>().read_volatile() }
    }

    fn set(&mut self, off: usize, v: u64) {
        // SAFETY: as in `get`.
        unsafe { self.vmcb.add(off).cast::<u64>().write_volatile(v) }
    }
}

impl Vcpu for SvmVcpu {
    fn run(&mut self) -> Exit {
        self.set(vmcb::RAX, self.regs.rax);
        self.set(vmcb::RSP, self.regs.rsp);
        self.set(vmcb::RIP, self.regs.rip);
        let r = &self.regs;
        let mut g = Gprs {
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rbp: r.rbp,
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
        };
        // SAFETY: the VMCB was set up by the caller of `new` (its contract); SVM is on.
        unsafe { vmrun(self.vmcb as u64, &mut g) };
        let r = &mut self.regs;
        (r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp) = (g.rbx, g.rcx, g.rdx, g.rsi, g.rdi, g.rbp);
        (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) =
            (g.r8, g.r9, g.r10, g.r11, g.r12, g.r13, g.r14, g.r15);
        self.regs.rax = self.get(vmcb::RAX);
        self.regs.rsp = self.get(vmcb::RSP);
        self.regs.rip = self.get(vmcb::RIP);
        match decode_exit(
            self.get(vmcb::EXITCODE),
            self.get(vmcb::EXITINFO1),
            self.get(vmcb::EXITINFO2),
        ) {
            Exit::Msr { write, .. } => Exit::Msr {
                msr: self.regs.rcx as u32,
                write,
            },
            e => e,
        }
    }

    fn regs(&self) -> &Regs {
        &self.regs
    }

    fn regs_mut(&mut self) -> &mut Regs {
        &mut self.regs
    }
}
