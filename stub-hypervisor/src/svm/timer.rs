//! Preemption: the local APIC timer, owned by the hypervisor.
//!
//! When a partition's time slice starts (its first `VMRUN` after being scheduled) the
//! hypervisor arms the bootstrap processor's local APIC timer (xAPIC, MMIO at
//! `IA32_APIC_BASE`) in one-shot mode for one slice, and leaves it running across the
//! partition's exits (no APIC access per hypercall); the partition runs with the
//! physical-interrupt intercept on and `V_INTR_MASKING` set, so when the timer fires the
//! processor leaves the partition (`#VMEXIT(INTR)`) whatever the partition's own `IF` — at
//! once at the next `VMRUN` if it fired while the hypervisor was handling an exit. The
//! hypervisor takes the interrupt itself (a gate in the firmware's IDT, installed after
//! ExitBootServices, that only writes EOI) and schedules; [`end_slice`] stops the timer and
//! takes an interrupt still pending, so the next partition starts a clean slice. Partitions never see the APIC: its
//! page is not in any nested page table (an access is an `mmio` violation) and every MSR,
//! `IA32_APIC_BASE` and the x2APIC range included, is intercepted.
//!
//! If the firmware's IDT is too short for [`VECTOR`] or there is no APIC, [`install`]
//! returns `None` and nothing is preempted (the record's `hv` line says `timer=off`).
#![expect(
    unsafe_code,
    reason = "RDMSR of IA32_APIC_BASE, SIDT, writing an IDT gate, APIC MMIO, the handler"
)]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The vector of the timer interrupt (above the legacy and firmware range).
pub const VECTOR: u8 = 0xEC;
/// `IA32_APIC_BASE`.
const MSR_APIC_BASE: u32 = 0x1B;
/// APIC registers (Intel SDM vol. 3, table 11-1; AMD APM vol. 2, 16.3).
const EOI: u64 = 0xB0;
const SVR: u64 = 0xF0;
const LVT_TIMER: u64 = 0x320;
const INITIAL_COUNT: u64 = 0x380;
const CURRENT_COUNT: u64 = 0x390;
const DIVIDE: u64 = 0x3E0;
/// LVT mask bit.
const MASKED: u32 = 1 << 16;
/// SVR: APIC software enable.
const APIC_ENABLE: u32 = 1 << 8;
/// Divide configuration: divide by 1.
const DIVIDE_BY_1: u32 = 0b1011;

/// The address of the EOI register, read by the handler.
static EOI_ADDRESS: AtomicU64 = AtomicU64::new(0);
/// The active timer's APIC base (0: no preemption) and slice in counts.
static ACTIVE_APIC: AtomicU64 = AtomicU64::new(0);
static SLICE_COUNTS: AtomicU64 = AtomicU64::new(0);

/// Preempt every partition after `slice` counts of `timer` from now on.
pub fn activate(timer: Timer, slice: u32) {
    SLICE_COUNTS.store(u64::from(slice), Ordering::Relaxed);
    ACTIVE_APIC.store(timer.apic, Ordering::Relaxed);
}

/// The active timer, if [`activate`] was called.
fn active() -> Option<Timer> {
    let apic = ACTIVE_APIC.load(Ordering::Relaxed);
    (apic != 0).then_some(Timer {
        apic,
        counts_per_ms: 0,
    })
}

/// Whether the current slice's timer is running.
static ARMED: AtomicBool = AtomicBool::new(false);

/// Before `VMRUN`: arm the slice if it has not started; whether a timer is active (the
/// partition then runs with the host's IF set, so the interrupt makes it exit).
pub fn before_run() -> bool {
    let Some(t) = active() else {
        return false;
    };
    if !ARMED.swap(true, Ordering::Relaxed) {
        t.arm(u32::try_from(SLICE_COUNTS.load(Ordering::Relaxed)).unwrap_or(u32::MAX));
    }
    true
}

/// The running partition's slice is over (it blocked, stopped or was preempted): stop the
/// timer and take its interrupt if it fired meanwhile (the gate acknowledges it), so it does
/// not cut the next partition's first `VMRUN` short.
pub fn end_slice() {
    let Some(t) = active() else {
        return;
    };
    if ARMED.swap(false, Ordering::Relaxed) {
        t.disarm();
        // SAFETY: the only interrupt source left after ExitBootServices is this timer, whose
        // gate is installed (`install`); RFLAGS (IF) is restored as it was.
        unsafe {
            core::arch::asm!("pushfq", "sti", "nop", "popfq", options(nomem));
        }
    }
}

// The handler: acknowledge (EOI) and return. The interrupt only exists to make the
// processor leave the partition; by the time it is taken the hypervisor is already back.
core::arch::global_asm!(
    ".global vmseal_timer_isr",
    "vmseal_timer_isr:",
    "push rax",
    "mov rax, qword ptr [rip + {eoi}]",
    "mov dword ptr [rax], 0",
    "pop rax",
    "iretq",
    eoi = sym EOI_ADDRESS,
);

unsafe extern "C" {
    fn vmseal_timer_isr();
}

/// The hypervisor's timer: the APIC's MMIO base and the counts per millisecond.
#[derive(Clone, Copy, Debug)]
pub struct Timer {
    apic: u64,
    counts_per_ms: u64,
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only IA32_APIC_BASE, which every x86_64 processor with an APIC has (CPUID
    // checked by the caller); reading has no effect.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

impl Timer {
    fn read(&self, reg: u64) -> u32 {
        // SAFETY: `apic` is the APIC's MMIO page (identity-mapped by the firmware), `reg` one
        // of its registers; a read has no side effect on these registers.
        unsafe { core::ptr::read_volatile((self.apic + reg) as *const u32) }
    }

    fn write(&self, reg: u64, value: u32) {
        // SAFETY: as in `read`; only the timer, SVR and EOI registers are written.
        unsafe { core::ptr::write_volatile((self.apic + reg) as *mut u32, value) }
    }

    /// Arm the timer to fire once after `counts` (one slice).
    pub fn arm(&self, counts: u32) {
        self.write(INITIAL_COUNT, counts);
    }

    /// Stop the timer; the counts that were left.
    pub fn disarm(&self) -> u32 {
        let left = self.read(CURRENT_COUNT);
        self.write(INITIAL_COUNT, 0);
        left
    }

    /// Timer counts in `ms` milliseconds, saturated to `u32`.
    pub fn counts(&self, ms: u64) -> u32 {
        u32::try_from(self.counts_per_ms.saturating_mul(ms)).unwrap_or(u32::MAX)
    }

    /// Counts per millisecond (calibrated against the TSC).
    pub fn counts_per_ms(&self) -> u64 {
        self.counts_per_ms
    }
}

/// Take the local APIC timer for the hypervisor: a gate for [`VECTOR`] in the current IDT,
/// the APIC enabled, the timer one-shot on [`VECTOR`] at divide-by-1, calibrated against the
/// TSC (`tsc_per_ms`). `None` (and nothing changed) without an xAPIC or with an IDT too short.
///
/// # Safety
///
/// After ExitBootServices only (the firmware no longer uses its IDT or the APIC timer), with
/// interrupts disabled; the IDT and the APIC page identity-mapped and writable.
pub unsafe fn install(tsc_per_ms: u64) -> Option<Timer> {
    // CPUID.1:EDX.APIC
    if super::hw::cpuid(1, 0)[3] & (1 << 9) == 0 {
        return None;
    }
    let base = rdmsr(MSR_APIC_BASE);
    // Enabled (bit 11), not x2APIC mode (bit 10).
    if base & (1 << 11) == 0 || base & (1 << 10) != 0 {
        return None;
    }
    let apic = base & 0x000F_FFFF_FFFF_F000;
    let mut idtr = [0u8; 10];
    // SAFETY: SIDT stores 10 bytes into `idtr`.
    unsafe {
        core::arch::asm!("sidt [{}]", in(reg) idtr.as_mut_ptr(), options(nostack));
    }
    let limit = u64::from(u16::from_le_bytes([idtr[0], idtr[1]]));
    let mut b = [0u8; 8];
    b.copy_from_slice(idtr.get(2..10)?);
    let idt = u64::from_le_bytes(b);
    let at = u64::from(VECTOR) * 16;
    if limit < at + 15 {
        return None;
    }
    let cs: u16;
    // SAFETY: reading CS has no effect.
    unsafe {
        core::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack));
    }
    let handler = vmseal_timer_isr as *const () as u64;
    // A 64-bit interrupt gate, present, DPL 0, IST 0 (APM vol. 2, 4.8.4).
    let low = (handler & 0xFFFF)
        | (u64::from(cs) << 16)
        | (0x8E << 40)
        | (((handler >> 16) & 0xFFFF) << 48);
    let high = handler >> 32;
    EOI_ADDRESS.store(apic + EOI, Ordering::Relaxed);
    // SAFETY: `idt + at .. + 16` is the gate of VECTOR inside the IDT (limit checked); the
    // caller guarantees the firmware no longer uses it and interrupts are off.
    unsafe {
        core::ptr::write_volatile((idt + at) as *mut u64, low);
        core::ptr::write_volatile((idt + at + 8) as *mut u64, high);
    }
    let mut t = Timer {
        apic,
        counts_per_ms: 0,
    };
    t.write(SVR, t.read(SVR) | APIC_ENABLE);
    t.write(DIVIDE, DIVIDE_BY_1);
    // Calibrate with the LVT masked: count down from the maximum for 1 ms of TSC.
    t.write(LVT_TIMER, MASKED | u32::from(VECTOR));
    t.write(INITIAL_COUNT, u32::MAX);
    let t0 = super::hw::rdtsc();
    while super::hw::rdtsc().wrapping_sub(t0) < tsc_per_ms {
        core::hint::spin_loop();
    }
    let left = t.read(CURRENT_COUNT);
    t.write(INITIAL_COUNT, 0);
    t.counts_per_ms = u64::from(u32::MAX - left).max(1);
    t.write(LVT_TIMER, u32::from(VECTOR));
    Some(t)
}
