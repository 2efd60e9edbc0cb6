//! The boot-information block handed to a partition (the `.guest` ELF or a `.svcN` service)
//! by the stub-hypervisor, and the layout of the area it writes at the top of the grant.
//!
//! ABI (version 2): the hypervisor loads every `PT_LOAD` segment of the partition's ELF at its
//! physical address inside the partition's memory grant (`base .. base + memory` of the launch
//! policy; guest-physical = host-physical), writes the [hypervisor area](HV_AREA_SIZE) at the
//! top of the grant, and starts the partition in its own SVM guest with nested paging:
//!
//! - 64-bit long mode, CPL 0, `CS` = 0x08 (64-bit code), `DS`/`ES`/`SS` = 0x10, `FS`/`GS` = 0;
//!   paging on with the area's identity page tables (guest-virtual = guest-physical for
//!   0 ..= 4 GiB, 2 MiB pages, writable, executable); the nested page tables decide what is
//!   really reachable (the grant, plus the device windows the policy grants);
//! - `RFLAGS` = 0x2 (interrupts off); no IDT (`IDTR` limit 0): any exception is a triple
//!   fault, which stops the partition;
//! - the ELF entry point is called with the System V AMD64 convention, `RDI` = the
//!   guest-physical address of a [`BootInfo`], `RSP` = [`STACK_TOP`] − 8 holding the address
//!   of an exit trampoline: a partition that returns exits with `RAX` as its status (the
//!   `EXIT` hypercall, `policies::hypercall`).
//!
//! The ELF's segments must end at or below the area (`base + memory - HV_AREA_SIZE`).
//! All addresses are guest-physical; all integers little-endian. Fields are only ever
//! appended; `size` tells a partition how much of the struct the hypervisor filled.
//!
//! Version 1 (direct mode, where the guest ran with the firmware's privileges) is gone: an ELF
//! payload always runs isolated.

/// `b"VMSEALBI"` as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"VMSEALBI");
/// Current version of the layout.
pub const VERSION: u32 = 2;

/// Size of the hypervisor-written area at the top of every ELF partition's grant.
pub const HV_AREA_SIZE: u64 = 0x1_0000;
/// Offset in the area of the [`BootInfo`].
pub const BOOT_INFO_OFFSET: u64 = 0x0;
/// Offset in the area of the exit trampoline (`mov rdi, rax; mov eax, 6; vmmcall; ud2`).
pub const TRAMPOLINE_OFFSET: u64 = 0x200;
/// Offset in the area of the GDT (null, 64-bit code 0x08, data 0x10).
pub const GDT_OFFSET: u64 = 0x300;
/// Offset in the area of the command line (at most [`MAX_CMDLINE`] bytes, no NUL).
pub const CMDLINE_OFFSET: u64 = 0x1000;
/// Longest command line handed to a partition.
pub const MAX_CMDLINE: u64 = 0x1000;
/// Offset in the area of the PML4; the PDPT follows, then four page directories (0–4 GiB).
pub const PAGE_TABLES_OFFSET: u64 = 0x2000;
/// Offset in the area of the top of the initial stack (the stack is `0x8000 .. 0x10000`).
pub const STACK_TOP: u64 = HV_AREA_SIZE;
/// Bytes of the exit trampoline: `mov rdi, rax; mov eax, 6 (EXIT); vmmcall; ud2`.
pub const TRAMPOLINE: [u8; 15] =
    [0x48, 0x89, 0xC7, 0xB8, 0x06, 0x00, 0x00, 0x00, 0x0F, 0x01, 0xD9, 0x0F, 0x0B, 0x90, 0x90];

/// Boot information for a partition. C layout, 8-byte aligned, size asserted below.
/// Fields the hypervisor does not give a partition are 0 (`memory_map*`, `event_log*`,
/// `final_events*`: the firmware's structures are not mapped into any partition).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// `size_of::<BootInfo>()` as the stub built it.
    pub size: u32,
    /// A copy of the `.cmdline` section contents (UTF-8, no NUL) in the area, or 0. Services
    /// get none.
    pub cmdline: u64,
    /// Length of the command line in bytes.
    pub cmdline_len: u64,
    /// The final UEFI memory map (array of `EFI_MEMORY_DESCRIPTOR`), as returned by
    /// `ExitBootServices`' last `GetMemoryMap`.
    pub memory_map: u64,
    /// Length of the memory map in bytes.
    pub memory_map_len: u64,
    /// Size of one memory descriptor (may exceed `sizeof(EFI_MEMORY_DESCRIPTOR)`).
    pub memory_descriptor_size: u64,
    /// Copy of the firmware's TCG2 (crypto-agile) event log taken after the stub's own
    /// measurements and before `ExitBootServices` (the original is boot-services memory).
    pub event_log: u64,
    /// Length of that copy in bytes.
    pub event_log_len: u64,
    /// Address of the firmware's `EFI_TCG2_FINAL_EVENTS_TABLE` (it survives
    /// `ExitBootServices`), or 0. Events with index ≥ `final_events_preboot_count` happened
    /// after the copy (e.g. the two PCR 5 ExitBootServices events) and complete the log.
    pub final_events: u64,
    /// `NumberOfEvents` of the Final Events Table when the log was copied.
    pub final_events_preboot_count: u64,
    /// The partition's memory grant from the launch policy: base address.
    pub guest_memory_base: u64,
    /// The partition's memory grant from the launch policy: size in bytes.
    pub guest_memory_size: u64,
    /// The launch policy (`.vmseal` contents); 0 in version 2 (partitions learn what they need
    /// by hypercall).
    pub policy: u64,
    /// Length of the launch policy in bytes.
    pub policy_len: u64,
    /// TSC ticks per millisecond, as the stub calibrated them against the firmware's `Stall`
    /// (0 if unknown).
    pub tsc_per_ms: u64,
}

const _: () = assert!(core::mem::size_of::<BootInfo>() == 128);
const _: () = assert!(core::mem::size_of::<BootInfo>() as u64 <= TRAMPOLINE_OFFSET);
const _: () = assert!(core::mem::align_of::<BootInfo>() == 8);
