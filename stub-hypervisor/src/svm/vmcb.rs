//! The virtual machine control block (VMCB): one 4 KiB page per vCPU, a control area at
//! offset 0 and the guest's state save area at offset 0x400.
//!
//! Layout: AMD64 Architecture Programmer's Manual vol. 2 (publication 24593), appendix B
//! "Layout of VMCB", table B-1 (control area) and table B-2 (state save area; offsets there
//! are relative to 0x400). Every field the stub reads or writes is named; the rest is
//! reserved or unused space, named by its offset, which must stay zero (the processor checks
//! some of it: "SBZ"). The offsets are asserted at compile time below against the table.
//!
//! [`Vmcb::partition`] builds the complete initial VMCB of a partition from a [`Setup`]: a pure
//! function, so the guest state and intercepts are tested on the host.

use core::mem::{offset_of, size_of};
use policies::record::Token;

/// A segment register in the state save area (table B-2: selector, attributes, limit, base).
/// The attributes are the descriptor's bits 40–47 and 52–55 packed into 12 bits (type, S,
/// DPL, P in bits 0–7; AVL, L, D/B, G in bits 8–11).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Attributes (see the type's doc).
    pub attrib: u16,
    /// Limit (bytes, after granularity).
    pub limit: u32,
    /// Base address.
    pub base: u64,
}

/// The control area (table B-1), bytes 0x000–0x3FF.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlArea {
    /// 0x000: intercept reads (bits 0–15) and writes (bits 16–31) of CR0–CR15.
    pub intercept_cr: u32,
    /// 0x004: intercept reads (bits 0–15) and writes (bits 16–31) of DR0–DR15.
    pub intercept_dr: u32,
    /// 0x008: intercept exception vectors 0–31.
    pub intercept_exceptions: u32,
    /// 0x00C: intercept vector 3 ([`misc1`]).
    pub intercept_misc1: u32,
    /// 0x010: intercept vector 4 ([`misc2`]).
    pub intercept_misc2: u32,
    /// 0x014: intercept vector 5 (INVLPGB, INVPCID, MCOMMIT, TLBSYNC, …).
    pub intercept_misc3: u32,
    /// 0x018–0x03B: reserved.
    pub reserved_018: [u8; 0x24],
    /// 0x03C: pause filter threshold.
    pub pause_filter_threshold: u16,
    /// 0x03E: pause filter count.
    pub pause_filter_count: u16,
    /// 0x040: physical address of the I/O permission map (12 KiB).
    pub iopm_base_pa: u64,
    /// 0x048: physical address of the MSR permission map (8 KiB).
    pub msrpm_base_pa: u64,
    /// 0x050: TSC offset.
    pub tsc_offset: u64,
    /// 0x058: guest ASID (must not be 0).
    pub guest_asid: u32,
    /// 0x05C: TLB control ([`tlb`]).
    pub tlb_control: u8,
    /// 0x05D–0x05F: reserved.
    pub reserved_05d: [u8; 3],
    /// 0x060: virtual interrupt control (V_TPR, V_IRQ, …; bit 24 = V_INTR_MASKING).
    pub v_intr: u64,
    /// 0x068: interrupt shadow (bit 0), guest interrupt mask (bit 1).
    pub interrupt_shadow: u64,
    /// 0x070: exit code (appendix C).
    pub exitcode: u64,
    /// 0x078: exit information 1.
    pub exitinfo1: u64,
    /// 0x080: exit information 2.
    pub exitinfo2: u64,
    /// 0x088: exit interrupt information.
    pub exitintinfo: u64,
    /// 0x090: bit 0 NP_ENABLE, bit 1 SEV, bit 2 SEV-ES, …
    pub np_control: u64,
    /// 0x098: AVIC APIC BAR.
    pub avic_apic_bar: u64,
    /// 0x0A0: guest physical address of the GHCB (SEV-ES).
    pub ghcb_pa: u64,
    /// 0x0A8: event injection.
    pub event_inj: u64,
    /// 0x0B0: nested page table root (host-physical).
    pub n_cr3: u64,
    /// 0x0B8: bit 0 LBR virtualization, bit 1 virtual VMSAVE/VMLOAD.
    pub virt_ext: u64,
    /// 0x0C0: VMCB clean bits (0 = the processor reloads everything; TCG has none anyway).
    pub clean_bits: u32,
    /// 0x0C4: reserved.
    pub reserved_0c4: u32,
    /// 0x0C8: next RIP (always 0 under QEMU TCG: no NRIPS).
    pub next_rip: u64,
    /// 0x0D0: number of instruction bytes fetched (decode assists).
    pub bytes_fetched: u8,
    /// 0x0D1–0x0DF: the guest instruction bytes.
    pub guest_instruction_bytes: [u8; 15],
    /// 0x0E0–0x3FF: AVIC and SEV fields (unused), reserved, and bytes for the host's use.
    pub reserved_0e0: [u8; 0x320],
}

/// The state save area (table B-2), bytes 0x400–0xFFF of the VMCB (offsets in the field docs
/// are relative to 0x400, as in the table). Fields after 0x298 are SEV-ES or reserved.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateSaveArea {
    /// 0x000: ES.
    pub es: Segment,
    /// 0x010: CS.
    pub cs: Segment,
    /// 0x020: SS.
    pub ss: Segment,
    /// 0x030: DS.
    pub ds: Segment,
    /// 0x040: FS (loaded by VMLOAD, not VMRUN).
    pub fs: Segment,
    /// 0x050: GS (VMLOAD).
    pub gs: Segment,
    /// 0x060: GDTR (limit and base only).
    pub gdtr: Segment,
    /// 0x070: LDTR (VMLOAD).
    pub ldtr: Segment,
    /// 0x080: IDTR (limit and base only).
    pub idtr: Segment,
    /// 0x090: TR (VMLOAD).
    pub tr: Segment,
    /// 0x0A0–0x0CA: reserved.
    pub reserved_0a0: [u8; 0x2B],
    /// 0x0CB: CPL.
    pub cpl: u8,
    /// 0x0CC–0x0CF: reserved.
    pub reserved_0cc: u32,
    /// 0x0D0: EFER (SVME must be set).
    pub efer: u64,
    /// 0x0D8–0x147: reserved (SEV-ES fields).
    pub reserved_0d8: [u8; 0x70],
    /// 0x148: CR4.
    pub cr4: u64,
    /// 0x150: CR3.
    pub cr3: u64,
    /// 0x158: CR0.
    pub cr0: u64,
    /// 0x160: DR7.
    pub dr7: u64,
    /// 0x168: DR6.
    pub dr6: u64,
    /// 0x170: RFLAGS.
    pub rflags: u64,
    /// 0x178: RIP.
    pub rip: u64,
    /// 0x180–0x1D7: reserved (performance counters for SEV-ES).
    pub reserved_180: [u8; 0x58],
    /// 0x1D8: RSP.
    pub rsp: u64,
    /// 0x1E0: S_CET.
    pub s_cet: u64,
    /// 0x1E8: SSP.
    pub ssp: u64,
    /// 0x1F0: ISST_ADDR.
    pub isst_addr: u64,
    /// 0x1F8: RAX.
    pub rax: u64,
    /// 0x200: STAR (VMLOAD).
    pub star: u64,
    /// 0x208: LSTAR (VMLOAD).
    pub lstar: u64,
    /// 0x210: CSTAR (VMLOAD).
    pub cstar: u64,
    /// 0x218: SFMASK (VMLOAD).
    pub sfmask: u64,
    /// 0x220: KernelGsBase (VMLOAD).
    pub kernel_gs_base: u64,
    /// 0x228: SYSENTER_CS (VMLOAD).
    pub sysenter_cs: u64,
    /// 0x230: SYSENTER_ESP (VMLOAD).
    pub sysenter_esp: u64,
    /// 0x238: SYSENTER_EIP (VMLOAD).
    pub sysenter_eip: u64,
    /// 0x240: CR2.
    pub cr2: u64,
    /// 0x248–0x267: reserved.
    pub reserved_248: [u8; 0x20],
    /// 0x268: guest PAT (used with nested paging).
    pub g_pat: u64,
    /// 0x270: DBGCTL.
    pub dbgctl: u64,
    /// 0x278: BR_FROM.
    pub br_from: u64,
    /// 0x280: BR_TO.
    pub br_to: u64,
    /// 0x288: LASTEXCPFROM.
    pub last_excp_from: u64,
    /// 0x290: LASTEXCPTO.
    pub last_excp_to: u64,
    /// 0x298–0xBFF: reserved and SEV-ES fields, to the end of the page.
    pub reserved_298: [u8; 0xC00 - 0x298],
}

/// A whole VMCB page.
#[repr(C, align(4096))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vmcb {
    /// 0x000: the control area.
    pub control: ControlArea,
    /// 0x400: the guest's state save area.
    pub save: StateSaveArea,
}

// Table B-1 (control area).
const _: () = {
    assert!(offset_of!(ControlArea, intercept_cr) == 0x000);
    assert!(offset_of!(ControlArea, intercept_dr) == 0x004);
    assert!(offset_of!(ControlArea, intercept_exceptions) == 0x008);
    assert!(offset_of!(ControlArea, intercept_misc1) == 0x00C);
    assert!(offset_of!(ControlArea, intercept_misc2) == 0x010);
    assert!(offset_of!(ControlArea, intercept_misc3) == 0x014);
    assert!(offset_of!(ControlArea, pause_filter_threshold) == 0x03C);
    assert!(offset_of!(ControlArea, pause_filter_count) == 0x03E);
    assert!(offset_of!(ControlArea, iopm_base_pa) == 0x040);
    assert!(offset_of!(ControlArea, msrpm_base_pa) == 0x048);
    assert!(offset_of!(ControlArea, tsc_offset) == 0x050);
    assert!(offset_of!(ControlArea, guest_asid) == 0x058);
    assert!(offset_of!(ControlArea, tlb_control) == 0x05C);
    assert!(offset_of!(ControlArea, v_intr) == 0x060);
    assert!(offset_of!(ControlArea, interrupt_shadow) == 0x068);
    assert!(offset_of!(ControlArea, exitcode) == 0x070);
    assert!(offset_of!(ControlArea, exitinfo1) == 0x078);
    assert!(offset_of!(ControlArea, exitinfo2) == 0x080);
    assert!(offset_of!(ControlArea, exitintinfo) == 0x088);
    assert!(offset_of!(ControlArea, np_control) == 0x090);
    assert!(offset_of!(ControlArea, avic_apic_bar) == 0x098);
    assert!(offset_of!(ControlArea, ghcb_pa) == 0x0A0);
    assert!(offset_of!(ControlArea, event_inj) == 0x0A8);
    assert!(offset_of!(ControlArea, n_cr3) == 0x0B0);
    assert!(offset_of!(ControlArea, virt_ext) == 0x0B8);
    assert!(offset_of!(ControlArea, clean_bits) == 0x0C0);
    assert!(offset_of!(ControlArea, next_rip) == 0x0C8);
    assert!(offset_of!(ControlArea, bytes_fetched) == 0x0D0);
    assert!(offset_of!(ControlArea, guest_instruction_bytes) == 0x0D1);
    assert!(size_of::<ControlArea>() == 0x400);
};

// Table B-2 (state save area; offsets relative to 0x400).
const _: () = {
    assert!(size_of::<Segment>() == 16);
    assert!(offset_of!(StateSaveArea, es) == 0x000);
    assert!(offset_of!(StateSaveArea, cs) == 0x010);
    assert!(offset_of!(StateSaveArea, ss) == 0x020);
    assert!(offset_of!(StateSaveArea, ds) == 0x030);
    assert!(offset_of!(StateSaveArea, fs) == 0x040);
    assert!(offset_of!(StateSaveArea, gs) == 0x050);
    assert!(offset_of!(StateSaveArea, gdtr) == 0x060);
    assert!(offset_of!(StateSaveArea, ldtr) == 0x070);
    assert!(offset_of!(StateSaveArea, idtr) == 0x080);
    assert!(offset_of!(StateSaveArea, tr) == 0x090);
    assert!(offset_of!(StateSaveArea, cpl) == 0x0CB);
    assert!(offset_of!(StateSaveArea, efer) == 0x0D0);
    assert!(offset_of!(StateSaveArea, cr4) == 0x148);
    assert!(offset_of!(StateSaveArea, cr3) == 0x150);
    assert!(offset_of!(StateSaveArea, cr0) == 0x158);
    assert!(offset_of!(StateSaveArea, dr7) == 0x160);
    assert!(offset_of!(StateSaveArea, dr6) == 0x168);
    assert!(offset_of!(StateSaveArea, rflags) == 0x170);
    assert!(offset_of!(StateSaveArea, rip) == 0x178);
    assert!(offset_of!(StateSaveArea, rsp) == 0x1D8);
    assert!(offset_of!(StateSaveArea, s_cet) == 0x1E0);
    assert!(offset_of!(StateSaveArea, ssp) == 0x1E8);
    assert!(offset_of!(StateSaveArea, isst_addr) == 0x1F0);
    assert!(offset_of!(StateSaveArea, rax) == 0x1F8);
    assert!(offset_of!(StateSaveArea, star) == 0x200);
    assert!(offset_of!(StateSaveArea, lstar) == 0x208);
    assert!(offset_of!(StateSaveArea, cstar) == 0x210);
    assert!(offset_of!(StateSaveArea, sfmask) == 0x218);
    assert!(offset_of!(StateSaveArea, kernel_gs_base) == 0x220);
    assert!(offset_of!(StateSaveArea, sysenter_cs) == 0x228);
    assert!(offset_of!(StateSaveArea, sysenter_esp) == 0x230);
    assert!(offset_of!(StateSaveArea, sysenter_eip) == 0x238);
    assert!(offset_of!(StateSaveArea, cr2) == 0x240);
    assert!(offset_of!(StateSaveArea, g_pat) == 0x268);
    assert!(offset_of!(StateSaveArea, dbgctl) == 0x270);
    assert!(offset_of!(StateSaveArea, last_excp_to) == 0x290);
    assert!(size_of::<StateSaveArea>() == 0xC00);
    assert!(offset_of!(Vmcb, save) == 0x400);
    assert!(size_of::<Vmcb>() == 0x1000);
};

/// Intercept bits of [`ControlArea::intercept_misc1`] (table B-1, offset 0x00C).
pub mod misc1 {
    /// Physical interrupt.
    pub const INTR: u32 = 1 << 0;
    /// NMI.
    pub const NMI: u32 = 1 << 1;
    /// CPUID.
    pub const CPUID: u32 = 1 << 18;
    /// INVD (would discard the host's dirty cache lines).
    pub const INVD: u32 = 1 << 22;
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

/// Intercept bits of [`ControlArea::intercept_misc2`] (table B-1, offset 0x010).
pub mod misc2 {
    /// VMRUN (required, or VMRUN fails).
    pub const VMRUN: u32 = 1 << 0;
    /// VMMCALL (the hypercall).
    pub const VMMCALL: u32 = 1 << 1;
    /// VMLOAD.
    pub const VMLOAD: u32 = 1 << 2;
    /// VMSAVE.
    pub const VMSAVE: u32 = 1 << 3;
    /// STGI.
    pub const STGI: u32 = 1 << 4;
    /// CLGI.
    pub const CLGI: u32 = 1 << 5;
    /// SKINIT.
    pub const SKINIT: u32 = 1 << 6;
    /// WBINVD (also how QEMU 7.2 TCG checks INVD: its translator maps INVD to the WBINVD
    /// intercept, fixed upstream in 2023 — so both are intercepted).
    pub const WBINVD: u32 = 1 << 9;
    /// MONITOR.
    pub const MONITOR: u32 = 1 << 10;
    /// MWAIT (unconditional).
    pub const MWAIT: u32 = 1 << 11;
    /// MWAIT (conditional).
    pub const MWAIT_CONDITIONAL: u32 = 1 << 12;
    /// XSETBV (XCR0 is not switched by VMRUN: a guest's XSETBV would change the host's).
    pub const XSETBV: u32 = 1 << 13;
}

/// Values of [`ControlArea::tlb_control`].
pub mod tlb {
    /// Flush nothing.
    pub const NOTHING: u8 = 0;
    /// Flush this guest's ASID.
    pub const FLUSH_ASID: u8 = 3;
}

/// [`ControlArea::intercept_dr`]: reads (bits 0–15) and writes (bits 16–31) of every debug
/// register.
pub const INTERCEPT_ALL_DR: u32 = 0xFFFF_FFFF;

/// `V_INTR_MASKING` in [`ControlArea::v_intr`]: the guest's IF masks only virtual interrupts.
pub const V_INTR_MASKING: u64 = 1 << 24;
/// `NP_ENABLE` in [`ControlArea::np_control`].
pub const NP_ENABLE: u64 = 1;

/// Segment attributes of the bootinfo contract.
pub mod attr {
    /// 64-bit code: type 0xB (execute/read, accessed), S, P, L (0xA9B, as observed working
    /// under TCG; D must be 0 with L).
    pub const CODE64: u16 = 0xA9B;
    /// Data: type 3 (read/write, accessed), S, P, D/B, G.
    pub const DATA: u16 = 0xC93;
    /// TR: busy 64-bit TSS, present.
    pub const TSS_BUSY: u16 = 0x8B;
    /// LDTR: LDT, present.
    pub const LDT: u16 = 0x82;
}

/// Initial guest control registers (the bootinfo contract: long mode, paging, no SSE
/// enabled by the hypervisor).
pub mod guest {
    /// CR0: PE, MP, ET, NE, WP, PG (CD = NW = 0: VMRUN refuses NW=1 with CD=0).
    pub const CR0: u64 = 0x8001_0033;
    /// CR4: PAE.
    pub const CR4: u64 = 0x20;
    /// EFER: SCE=0, LME, LMA, SVME (VMRUN refuses a guest EFER without SVME).
    pub const EFER: u64 = 0x1500;
    /// RFLAGS: only the reserved bit 1 (IF = 0).
    pub const RFLAGS: u64 = 0x2;
    /// The power-on PAT (WB, WT, UC-, UC, repeated).
    pub const PAT: u64 = 0x0007_0406_0007_0406;
    /// DR7 at reset.
    pub const DR7: u64 = 0x400;
    /// DR6 at reset.
    pub const DR6: u64 = 0xFFFF_0FF0;
}

/// Everything that differs between partitions' initial VMCBs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// ASID: partition index + 1 (never 0).
    pub asid: u32,
    /// Root of the partition's nested page tables.
    pub n_cr3: u64,
    /// Its I/O permission map.
    pub iopm: u64,
    /// Its MSR permission map.
    pub msrpm: u64,
    /// Guest CR3: the PML4 in its hypervisor area.
    pub cr3: u64,
    /// The GDT in its hypervisor area (3 entries).
    pub gdt: u64,
    /// Entry point.
    pub rip: u64,
    /// Initial stack pointer.
    pub rsp: u64,
}

impl Segment {
    /// A null segment (all zero).
    pub const NULL: Self = Self {
        selector: 0,
        attrib: 0,
        limit: 0,
        base: 0,
    };

    const fn flat(selector: u16, attrib: u16) -> Self {
        Self {
            selector,
            attrib,
            limit: 0xFFFF_FFFF,
            base: 0,
        }
    }
}

impl Vmcb {
    /// An all-zero VMCB.
    pub const ZERO: Self = Self {
        control: ControlArea {
            intercept_cr: 0,
            intercept_dr: 0,
            intercept_exceptions: 0,
            intercept_misc1: 0,
            intercept_misc2: 0,
            intercept_misc3: 0,
            reserved_018: [0; 0x24],
            pause_filter_threshold: 0,
            pause_filter_count: 0,
            iopm_base_pa: 0,
            msrpm_base_pa: 0,
            tsc_offset: 0,
            guest_asid: 0,
            tlb_control: 0,
            reserved_05d: [0; 3],
            v_intr: 0,
            interrupt_shadow: 0,
            exitcode: 0,
            exitinfo1: 0,
            exitinfo2: 0,
            exitintinfo: 0,
            np_control: 0,
            avic_apic_bar: 0,
            ghcb_pa: 0,
            event_inj: 0,
            n_cr3: 0,
            virt_ext: 0,
            clean_bits: 0,
            reserved_0c4: 0,
            next_rip: 0,
            bytes_fetched: 0,
            guest_instruction_bytes: [0; 15],
            reserved_0e0: [0; 0x320],
        },
        save: StateSaveArea {
            es: Segment::NULL,
            cs: Segment::NULL,
            ss: Segment::NULL,
            ds: Segment::NULL,
            fs: Segment::NULL,
            gs: Segment::NULL,
            gdtr: Segment::NULL,
            ldtr: Segment::NULL,
            idtr: Segment::NULL,
            tr: Segment::NULL,
            reserved_0a0: [0; 0x2B],
            cpl: 0,
            reserved_0cc: 0,
            efer: 0,
            reserved_0d8: [0; 0x70],
            cr4: 0,
            cr3: 0,
            cr0: 0,
            dr7: 0,
            dr6: 0,
            rflags: 0,
            rip: 0,
            reserved_180: [0; 0x58],
            rsp: 0,
            s_cet: 0,
            ssp: 0,
            isst_addr: 0,
            rax: 0,
            star: 0,
            lstar: 0,
            cstar: 0,
            sfmask: 0,
            kernel_gs_base: 0,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            cr2: 0,
            reserved_248: [0; 0x20],
            g_pat: 0,
            dbgctl: 0,
            br_from: 0,
            br_to: 0,
            last_excp_from: 0,
            last_excp_to: 0,
            reserved_298: [0; 0xC00 - 0x298],
        },
    };

    /// The initial VMCB of a partition (the bootinfo contract, `policies::bootinfo`): 64-bit
    /// mode at CPL 0 with the area's GDT and page tables, no IDT, IF = 0; nested paging over
    /// `n_cr3`; every exit the hypervisor handles intercepted — VMRUN (required), VMMCALL,
    /// IN/OUT (IOPM), RDMSR/WRMSR (MSRPM), CPUID, HLT, shutdown, INTR, NMI, the other SVM
    /// instructions, and the instructions that reach beyond the partition (INVD, WBINVD,
    /// XSETBV, MONITOR/MWAIT). The TLB of the ASID is flushed on the first VMRUN.
    pub const fn partition(s: &Setup) -> Self {
        let mut v = Self::ZERO;
        let c = &mut v.control;
        // Debug registers: DR0–DR3 are not switched by VMRUN, so one partition could leave
        // breakpoints (or a value) for the next; no partition needs them (it has no IDT).
        c.intercept_dr = INTERCEPT_ALL_DR;
        c.intercept_misc1 = misc1::INTR
            | misc1::NMI
            | misc1::CPUID
            | misc1::INVD
            | misc1::HLT
            | misc1::INVLPGA
            | misc1::IOIO_PROT
            | misc1::MSR_PROT
            | misc1::SHUTDOWN;
        c.intercept_misc2 = misc2::VMRUN
            | misc2::VMMCALL
            | misc2::VMLOAD
            | misc2::VMSAVE
            | misc2::STGI
            | misc2::CLGI
            | misc2::SKINIT
            | misc2::WBINVD
            | misc2::MONITOR
            | misc2::MWAIT
            | misc2::MWAIT_CONDITIONAL
            | misc2::XSETBV;
        c.iopm_base_pa = s.iopm;
        c.msrpm_base_pa = s.msrpm;
        c.guest_asid = s.asid;
        c.tlb_control = tlb::FLUSH_ASID;
        c.v_intr = V_INTR_MASKING;
        c.np_control = NP_ENABLE;
        c.n_cr3 = s.n_cr3;
        let g = &mut v.save;
        g.cs = Segment::flat(0x08, attr::CODE64);
        let data = Segment::flat(0x10, attr::DATA);
        (g.ss, g.ds, g.es) = (data, data, data);
        // FS and GS are null selectors (the contract), base 0.
        g.gdtr = Segment {
            selector: 0,
            attrib: 0,
            limit: 3 * 8 - 1,
            base: s.gdt,
        };
        // No IDT: any exception is a triple fault, which is intercepted (SHUTDOWN).
        g.tr = Segment {
            selector: 0,
            attrib: attr::TSS_BUSY,
            limit: 0x67,
            base: 0,
        };
        g.ldtr.attrib = attr::LDT;
        g.cpl = 0;
        g.efer = guest::EFER;
        g.cr0 = guest::CR0;
        g.cr3 = s.cr3;
        g.cr4 = guest::CR4;
        g.dr7 = guest::DR7;
        g.dr6 = guest::DR6;
        g.rflags = guest::RFLAGS;
        g.rip = s.rip;
        g.rsp = s.rsp;
        g.g_pat = guest::PAT;
        v
    }

    /// The consistency checks VMRUN makes that this builder could get wrong (APM vol. 2,
    /// 15.5.1 "Basic Operation", and `svm-on-qemu-tcg.md` gotcha 1), checked before the first
    /// VMRUN so a mistake is a clear error instead of `VMEXIT_INVALID`.
    pub const fn check(&self) -> Result<(), VmcbError> {
        let (c, g) = (&self.control, &self.save);
        if c.intercept_misc2 & misc2::VMRUN == 0 {
            return Err(VmcbError::NoVmrunIntercept);
        }
        if c.guest_asid == 0 {
            return Err(VmcbError::AsidZero);
        }
        if g.efer & (1 << 12) == 0 {
            return Err(VmcbError::EferSvme);
        }
        // CR0.NW = 1 with CD = 0 is illegal.
        if g.cr0 & (1 << 29) != 0 && g.cr0 & (1 << 30) == 0 {
            return Err(VmcbError::Cr0);
        }
        // Long mode needs paging and PAE; LMA must follow LME & PG.
        if g.efer & (1 << 8) != 0 && (g.cr0 & (1 << 31) == 0 || g.cr4 & (1 << 5) == 0) {
            return Err(VmcbError::LongMode);
        }
        if c.np_control & NP_ENABLE == 0 || c.n_cr3 == 0 || c.n_cr3 & 0xFFF != 0 {
            return Err(VmcbError::NestedPaging);
        }
        if c.iopm_base_pa & 0xFFF != 0 || c.msrpm_base_pa & 0xFFF != 0 {
            return Err(VmcbError::Maps);
        }
        Ok(())
    }
}

/// A VMCB the builder produced would fail VMRUN's checks, or would not isolate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmcbError {
    /// The VMRUN intercept is missing.
    NoVmrunIntercept,
    /// ASID 0 belongs to the host.
    AsidZero,
    /// Guest EFER without SVME.
    EferSvme,
    /// CR0 with NW and not CD.
    Cr0,
    /// EFER.LME without CR0.PG and CR4.PAE.
    LongMode,
    /// Nested paging off, or a bad root.
    NestedPaging,
    /// A permission map that is not page aligned.
    Maps,
}

/// The record word (`error … status=`); `Display` writes the same.
impl Token for VmcbError {
    fn write_token<W: core::fmt::Write + ?Sized>(&self, w: &mut W) -> core::fmt::Result {
        w.write_str(match self {
            Self::NoVmrunIntercept => "vmcb-no-vmrun-intercept",
            Self::AsidZero => "vmcb-asid-zero",
            Self::EferSvme => "vmcb-efer-svme",
            Self::Cr0 => "vmcb-cr0",
            Self::LongMode => "vmcb-long-mode",
            Self::NestedPaging => "vmcb-nested-paging",
            Self::Maps => "vmcb-maps",
        })
    }
}

impl core::fmt::Display for VmcbError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.write_token(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            asid: 2,
            n_cr3: 0x7000_0000,
            iopm: 0x7001_0000,
            msrpm: 0x7002_0000,
            cr3: 0x4FF_2000,
            gdt: 0x4FF_0300,
            rip: 0x400_0000,
            rsp: 0x500_0000 - 8,
        }
    }

    #[test]
    fn partition_guest_state_per_contract() {
        let v = Vmcb::partition(&setup());
        assert_eq!(v.check(), Ok(()));
        // (The offsets of these fields are asserted at compile time against tables B-1/B-2.)
        let (c, g) = (&v.control, &v.save);
        assert_eq!((c.n_cr3, c.np_control & NP_ENABLE), (0x7000_0000, 1));
        assert_eq!(
            (c.iopm_base_pa, c.msrpm_base_pa),
            (0x7001_0000, 0x7002_0000)
        );
        assert_eq!((c.guest_asid, c.tlb_control), (2, tlb::FLUSH_ASID));
        assert_eq!(g.efer, 0x1500, "EFER = LME | LMA | SVME");
        assert_eq!((g.cr0, g.cr4, g.cr3), (0x8001_0033, 0x20, 0x4FF_2000));
        assert_eq!((g.rflags, g.rip, g.rsp), (2, 0x400_0000, 0x500_0000 - 8));
        assert_eq!(g.g_pat, 0x0007_0406_0007_0406);
        assert_eq!((g.cs.selector, g.cs.attrib, g.cs.base), (0x08, 0xA9B, 0));
        for s in [g.ss, g.ds, g.es] {
            assert_eq!((s.selector, s.attrib, s.limit), (0x10, 0xC93, 0xFFFF_FFFF));
        }
        assert_eq!((g.fs, g.gs), (Segment::NULL, Segment::NULL));
        assert_eq!((g.gdtr.limit, g.gdtr.base), (23, 0x4FF_0300));
        assert_eq!(g.idtr, Segment::NULL, "no IDT");
        assert_eq!(g.cpl, 0);
        assert_eq!(c.intercept_dr, 0xFFFF_FFFF, "every DR read and write");
        // Intercepts: INTR, NMI, CPUID, INVD, HLT, INVLPGA, IOIO, MSR, SHUTDOWN (vector 3);
        // VMRUN, VMMCALL, VMLOAD, VMSAVE, STGI, CLGI, SKINIT, WBINVD, MONITOR, MWAIT(x2), XSETBV
        // (vector 4).
        for bit in [0, 1, 18, 22, 24, 26, 27, 28, 31] {
            assert_ne!(c.intercept_misc1 & (1 << bit), 0, "misc1 bit {bit}");
        }
        for bit in [0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13] {
            assert_ne!(c.intercept_misc2 & (1 << bit), 0, "misc2 bit {bit}");
        }
        // Nothing outside the named fields is set.
        assert_eq!(v.control.reserved_0e0, [0; 0x320]);
        assert_eq!(v.save.reserved_298, [0; 0xC00 - 0x298]);
    }

    #[test]
    fn check_catches_what_vmrun_refuses() {
        let good = Vmcb::partition(&setup());
        let mut v = good;
        v.control.intercept_misc2 &= !misc2::VMRUN;
        assert_eq!(v.check(), Err(VmcbError::NoVmrunIntercept));
        let mut v = good;
        v.control.guest_asid = 0;
        assert_eq!(v.check(), Err(VmcbError::AsidZero));
        let mut v = good;
        v.save.efer &= !(1 << 12);
        assert_eq!(v.check(), Err(VmcbError::EferSvme));
        let mut v = good;
        v.save.cr0 |= 1 << 29;
        assert_eq!(v.check(), Err(VmcbError::Cr0));
        let mut v = good;
        v.save.cr4 = 0;
        assert_eq!(v.check(), Err(VmcbError::LongMode));
        let mut v = good;
        v.control.n_cr3 = 0;
        assert_eq!(v.check(), Err(VmcbError::NestedPaging));
        let mut v = good;
        v.control.iopm_base_pa |= 8;
        assert_eq!(v.check(), Err(VmcbError::Maps));
    }
}
