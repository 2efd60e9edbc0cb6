//! The boot-information block handed to a `.guest` ELF unikernel in direct mode.
//!
//! ABI (version 1): the stub loads every `PT_LOAD` segment of the guest at its physical
//! address, calls `ExitBootServices`, and calls the ELF entry point with the System V AMD64
//! calling convention, `RDI` = physical address of a [`BootInfo`], on the stub's stack with
//! interrupts disabled, paging as the firmware left it (identity map). A guest that returns
//! hands back its exit status in `RAX`; the stub reports it on the record channel and powers
//! the machine off through the UEFI runtime `ResetSystem(EfiResetShutdown)`.
//!
//! All addresses are physical; all integers little-endian (x86_64). Fields are only ever
//! appended; `size` tells a guest how much of the struct the stub filled.

/// `b"VMSEALBI"` as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"VMSEALBI");
/// Current version of the layout.
pub const VERSION: u32 = 1;

/// Boot information for a direct-mode guest. C layout, 8-byte aligned, size asserted below.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// `size_of::<BootInfo>()` as the stub built it.
    pub size: u32,
    /// The `.cmdline` section contents (UTF-8, no NUL), or 0.
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
    /// The guest's memory grant from the launch policy: base address.
    pub guest_memory_base: u64,
    /// The guest's memory grant from the launch policy: size in bytes.
    pub guest_memory_size: u64,
    /// The launch policy (`.vmseal` contents).
    pub policy: u64,
    /// Length of the launch policy in bytes.
    pub policy_len: u64,
}

const _: () = assert!(core::mem::size_of::<BootInfo>() == 120);
const _: () = assert!(core::mem::align_of::<BootInfo>() == 8);
