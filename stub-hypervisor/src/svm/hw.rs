//! The SVM instructions: feature detection, enabling SVM, and `VMRUN` with the general
//! registers switched by hand (VMRUN switches only RAX, RSP and RIP), plus the VMLOAD/VMSAVE
//! state and the x87/SSE registers, so nothing of one partition reaches another.
#![expect(
    unsafe_code,
    reason = "RDMSR/WRMSR of EFER and VM_HSAVE_PA, XSETBV, VMRUN/VMLOAD/VMSAVE, FXSAVE, VMCB access"
)]

use super::vmcb::{Vmcb, tlb};
use super::{Support, decode_exit};
use crate::hv::{Exit, Regs, Vcpu};
use core::sync::atomic::{AtomicBool, Ordering};

/// `EFER`.
const MSR_EFER: u32 = 0xC000_0080;
/// `VM_HSAVE_PA`: where VMRUN saves the host state.
const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;
/// `EFER.SVME`.
pub const EFER_SVME: u64 = 1 << 12;
/// XCR0 with only x87 and SSE state enabled.
const XCR0_X87_SSE: u64 = 0b11;

/// `CPUID` (reads only: safe).
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    // CPUID exists on every x86_64 processor and only reads (a safe intrinsic).
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// What this processor offers for SVM ([`Support::from_cpuid`] over the real CPUID).
pub fn support() -> Support {
    Support::from_cpuid(cpuid)
}

/// The TSC.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called for EFER, which every x86_64 processor has; reading has no effect.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Turn SVM on: `EFER.SVME` and the host save area; and pin XCR0 to x87 + SSE, so the only
/// extended register state a partition can reach is what FXSAVE switches between partitions
/// (XCR0 itself is not switched by VMRUN, and XSETBV is intercepted).
///
/// # Safety
///
/// The processor must support SVM ([`support`]); `hsave` must be the physical address of a
/// 4 KiB page reserved for the processor for as long as SVM is on; nothing in the stub may
/// rely on AVX or later register state afterwards (the stub's Rust code is soft-float).
pub unsafe fn enable(hsave: u64) {
    let efer = rdmsr(MSR_EFER) | EFER_SVME;
    // SAFETY: the caller checked SVM support; setting SVME changes nothing else; the host
    // save area is a page the caller reserved.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") MSR_EFER, in("eax") efer as u32, in("edx") (efer >> 32) as u32, options(nostack));
        core::arch::asm!("wrmsr", in("ecx") MSR_VM_HSAVE_PA, in("eax") hsave as u32, in("edx") (hsave >> 32) as u32, options(nostack));
    }
    // XSAVE supported but not enabled by the firmware (OVMF): enable it, so the hypervisor
    // can read and pin XCR0 — a partition can enable it in its own CR4, and XCR0 is shared.
    if cpuid(1, 0)[2] & (1 << 26) != 0 && !has_xcr0() {
        // SAFETY: CPUID says XSAVE exists, so CR4.OSXSAVE may be set; it changes nothing
        // else for the host (XCR0 is x87 | SSE after reset or is pinned just below).
        unsafe {
            core::arch::asm!("mov {t}, cr4", "or {t}, {b}", "mov cr4, {t}", t = out(reg) _, b = in(reg) CR4_OSXSAVE, options(nomem, nostack));
        }
    }
    if has_xcr0() {
        // SAFETY: XCR0 exists; the caller promised no AVX use.
        unsafe { pin_xcr0() };
        XCR0_PINNED.store(true, Ordering::Relaxed);
    }
}

/// Whether XGETBV/XSETBV exist: CPUID.1:ECX.OSXSAVE mirrors the host's CR4.OSXSAVE.
fn has_xcr0() -> bool {
    cpuid(1, 0)[2] & (1 << 27) != 0
}

/// `CR4.OSXSAVE`.
const CR4_OSXSAVE: u64 = 1 << 18;

/// Set by [`enable`] once XCR0 is pinned: from then on it is checked after every exit.
static XCR0_PINNED: AtomicBool = AtomicBool::new(false);

/// XCR0.
fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called when `has_xcr0`; XGETBV only reads.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Set XCR0 to x87 | SSE.
///
/// # Safety
///
/// Only when [`has_xcr0`]; nothing may rely on AVX or later register state afterwards.
unsafe fn pin_xcr0() {
    // SAFETY: x87 | SSE is always a valid XCR0 when CR4.OSXSAVE is set (bit 0 must be 1;
    // SSE exists on every x86_64); the caller vouches for the rest.
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0, in("eax") XCR0_X87_SSE as u32, in("edx") 0, options(nomem, nostack));
    }
}

/// An FXSAVE image (x87, MMX, SSE state; APM vol. 5 FXSAVE, table "FXSAVE format"), 16-byte
/// aligned as FXSAVE requires.
#[repr(C, align(16))]
struct FxArea {
    /// Bytes 0–1: FCW.
    fcw: u16,
    /// Bytes 2–23: FSW, FTW, FOP, FIP, FDP.
    _x87: [u8; 22],
    /// Bytes 24–27: MXCSR.
    mxcsr: u32,
    /// Bytes 28–511: MXCSR_MASK, ST0–7, XMM0–15, reserved.
    _rest: [u8; 484],
}

const _: () = assert!(size_of::<FxArea>() == 512);

impl FxArea {
    /// The state after `FNINIT` and reset: FCW 0x037F, MXCSR 0x1F80, everything else 0.
    const fn reset() -> Self {
        Self {
            fcw: 0x037F,
            _x87: [0; 22],
            mxcsr: 0x1F80,
            _rest: [0; 484],
        }
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
/// `#VMEXIT`, the guest's registers are back in `g`. The state VMRUN does not switch but
/// VMLOAD/VMSAVE do (FS, GS, TR, LDTR with their hidden parts, KernelGsBase, STAR, LSTAR,
/// CSTAR, SFMASK, SYSENTER_*) is switched too: the host's is saved to `host_pa` and the
/// guest's loaded from its VMCB before VMRUN, and the reverse after, all with GIF = 0 so no
/// NMI or SMI sees a half-switched processor (the order KVM uses).
///
/// # Safety
///
/// SVM must be enabled ([`enable`]); `vmcb_pa` must be the physical (= virtual, identity
/// map) address of a valid VMCB whose intercepts include VMRUN, whose nested page tables map
/// only the guest's memory, and which nothing else uses concurrently; `host_pa` a 4 KiB page
/// reserved for the host's VMSAVE state.
unsafe fn vmrun(vmcb_pa: u64, host_pa: u64, g: &mut Gprs, interruptible: bool) {
    let gp: *mut Gprs = g;
    // SAFETY: per the function contract. The sequence is the reference's (pushfq; cli;
    // vmrun; stgi; popfq) with CLGI and the VMSAVE/VMLOAD pairs added. RBX and RBP cannot be
    // asm operands, so they are pushed and popped by hand; every other general register is
    // declared clobbered. The VMCB and host-state addresses and the Gprs pointer are kept on
    // the stack across VMRUN (the guest owns every register meanwhile; #VMEXIT restores RSP
    // and RAX = the VMCB address). Stack layout after `pushfq`: [rsp] RFLAGS, [rsp+8] Gprs
    // pointer, [rsp+16] host page, [rsp+24] VMCB.
    unsafe {
        core::arch::asm!(
            "push rbp",
            "push rbx",
            "push rax",
            "push rsi",
            "push rdi",
            "pushfq",
            "cli",
            "clgi",
            // With the hypervisor's timer armed: IF = 1 while GIF = 0, so the timer's
            // interrupt is held until VMRUN, makes the partition exit (INTR intercept,
            // V_INTR_MASKING), and is taken by the hypervisor's gate at STGI below.
            "test rcx, rcx",
            "jz 2f",
            "sti",
            "2:",
            "mov rax, rsi",
            "vmsave rax",
            "mov rax, [rsp + 24]",
            "vmload rax",
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
            "vmrun rax",
            "vmsave rax",
            "push rdi",
            "mov rdi, [rsp + 16]",
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
            "mov rax, [rsp + 16]",
            "vmload rax",
            "stgi",
            "popfq",
            "add rsp, 24",
            "pop rbx",
            "pop rbp",
            inout("rax") vmcb_pa => _,
            inout("rsi") host_pa => _,
            inout("rdi") gp => _,
            inout("rcx") u64::from(interruptible) => _, out("rdx") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        );
    }
}

/// A partition's vCPU on SVM: its VMCB page, the registers VMRUN does not keep there, and
/// its x87/SSE state (switched with FXSAVE/FXRSTOR: VMRUN does not, and partitions must not
/// see each other's registers).
pub struct SvmVcpu {
    vmcb: *mut Vmcb,
    host_state: u64,
    regs: Regs,
    guest_fx: FxArea,
    host_fx: FxArea,
}

impl SvmVcpu {
    /// A vCPU over the VMCB page at `vmcb` (identity-mapped physical address), which the
    /// caller set up completely (`Vmcb::partition`); `regs` holds the initial general
    /// registers (RAX, RSP and RIP are taken from the VMCB at every run); `host_state` is a
    /// page for the host's VMSAVE state (may be shared by all vCPUs: they run one at a time).
    ///
    /// # Safety
    ///
    /// `vmcb` must be a 4 KiB page used by this vCPU alone for its whole life, with a valid
    /// guest state and intercepts (VMRUN included); `host_state` a page reserved for the
    /// host state; SVM must be enabled before [`Vcpu::run`].
    pub unsafe fn new(vmcb: u64, host_state: u64, regs: Regs) -> Self {
        Self {
            vmcb: vmcb as *mut Vmcb,
            host_state,
            regs,
            guest_fx: FxArea::reset(),
            host_fx: FxArea::reset(),
        }
    }
}

/// Read a field of the VMCB through the raw pointer (the processor writes it behind Rust's
/// back: volatile).
macro_rules! vmcb_get {
    ($v:expr, $($f:ident).+) => {
        // SAFETY: the VMCB page belongs to this vCPU (`SvmVcpu::new`); the field is inside it.
        unsafe { (&raw const (*$v.vmcb).$($f).+).read_volatile() }
    };
}

/// Write a field of the VMCB (volatile, as [`vmcb_get`]).
macro_rules! vmcb_set {
    ($v:expr, $($f:ident).+, $val:expr) => {
        // SAFETY: as in `vmcb_get`.
        unsafe { (&raw mut (*$v.vmcb).$($f).+).write_volatile($val) }
    };
}

impl Vcpu for SvmVcpu {
    fn run(&mut self) -> Exit {
        vmcb_set!(self, save.rax, self.regs.rax);
        vmcb_set!(self, save.rsp, self.regs.rsp);
        vmcb_set!(self, save.rip, self.regs.rip);
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
        let (host_fx, guest_fx) = (&raw mut self.host_fx, &raw mut self.guest_fx);
        // SAFETY: both areas are 512 bytes, 16-byte aligned, owned by this vCPU; the stub's
        // Rust code is soft-float, so nothing between here and the FXRSTOR below uses the
        // x87/SSE registers; the guest image was written by FXSAVE or is the reset state.
        unsafe {
            core::arch::asm!("fxsave64 [{h}]", "fxrstor64 [{g}]", h = in(reg) host_fx, g = in(reg) guest_fx, options(nostack));
        }
        let interruptible = super::timer::before_run();
        // SAFETY: the VMCB was set up by the caller of `new` (its contract); SVM is on.
        unsafe { vmrun(self.vmcb as u64, self.host_state, &mut g, interruptible) };
        // SAFETY: as above, in reverse.
        unsafe {
            core::arch::asm!("fxsave64 [{g}]", "fxrstor64 [{h}]", h = in(reg) host_fx, g = in(reg) guest_fx, options(nostack));
        }
        // XSETBV is intercepted, so XCR0 cannot change in a partition — except under QEMU TCG
        // (7.2), which ignores the XSETBV intercept (observed: a guest's XSETBV ran and
        // changed XCR0). Catch that at the next exit: report it as the forbidden
        // instruction it is (the partition is stopped) and pin XCR0 again. A guest that
        // restores XCR0 itself before exiting is not caught — on TCG only.
        let xsetbv = XCR0_PINNED.load(Ordering::Relaxed) && xcr0() != XCR0_X87_SSE;
        if xsetbv {
            // SAFETY: XCR0 exists; the stub is soft-float.
            unsafe { pin_xcr0() };
        }
        // The ASID's TLB was flushed on the first run; the nested tables never change.
        vmcb_set!(self, control.tlb_control, tlb::NOTHING);
        let r = &mut self.regs;
        (r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp) = (g.rbx, g.rcx, g.rdx, g.rsi, g.rdi, g.rbp);
        (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) =
            (g.r8, g.r9, g.r10, g.r11, g.r12, g.r13, g.r14, g.r15);
        self.regs.rax = vmcb_get!(self, save.rax);
        self.regs.rsp = vmcb_get!(self, save.rsp);
        self.regs.rip = vmcb_get!(self, save.rip);
        if xsetbv {
            return Exit::Instruction(super::code::XSETBV);
        }
        match decode_exit(
            vmcb_get!(self, control.exitcode),
            vmcb_get!(self, control.exitinfo1),
            vmcb_get!(self, control.exitinfo2),
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
