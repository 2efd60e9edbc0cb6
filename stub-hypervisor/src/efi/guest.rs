//! Launch of a `.guest` ELF unikernel in direct mode (ABI: `policies::bootinfo`).
//!
//! Allocations (all before ExitBootServices, all survive it):
//! - the guest's memory grant: `AllocatePages(AllocateAddress, EfiLoaderData)` at the lowest
//!   `PT_LOAD` page, the guest's `memory` bytes from the `.vmseal` policy, zeroed, then the
//!   segments copied in;
//! - the `BootInfo`: pool, EfiLoaderData;
//! - the event-log copy: pages, EfiLoaderData (see `tcg2.rs`);
//! - the final memory map: EfiLoaderData (uefi-rs `exit_boot_services`).
//!   `cmdline` and `policy` point into the stub's own image (EfiLoaderCode).
//!
//! The entry is called as `extern "sysv64" fn(*const BootInfo) -> u64` (RDI = BootInfo, RAX =
//! exit status) on the stub's stack, interrupts off, on the firmware's identity page tables.

use super::{LogCopy, St, fail, power_off};
use alloc::boxed::Box;
use policies::bootinfo::{self, BootInfo};
use stub::elf::{self, Guest};
use stub::record::line;
use stub::serial::Uart;
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::MemoryMap;
use uefi::prelude::*;

fn addr(s: &[u8]) -> u64 {
    if s.is_empty() { 0 } else { s.as_ptr() as u64 }
}

/// Hand over to the guest in `.guest`. Never returns.
pub fn launch(
    rec: &mut Uart,
    elf_bytes: &'static [u8],
    cmdline: Option<&'static [u8]>,
    policy: &'static [u8],
    memory: u64,
    log: &LogCopy,
) -> ! {
    let guest = match Guest::parse(elf_bytes) {
        Ok(g) => g,
        // A malformed guest is refused, never partially loaded.
        Err(e) => fail(rec, "load-guest", e),
    };
    let grant = match guest.grant(Some(memory)) {
        Ok(g) => g,
        // A segment outside the granted memory would escape the policy: refuse.
        Err(e) => fail(rec, "load-guest", e),
    };
    let Ok(pages) = usize::try_from(grant.pages()) else {
        fail(rec, "guest-alloc", "too-large")
    };
    let Ok(size) = usize::try_from(grant.size) else {
        fail(rec, "guest-alloc", "too-large")
    };
    let mem = match boot::allocate_pages(
        AllocateType::Address(grant.base),
        MemoryType::LOADER_DATA,
        pages,
    ) {
        Ok(p) => p,
        // The guest is linked for addresses we cannot have: it cannot run.
        Err(e) => fail(rec, "guest-alloc", St(e.status())),
    };
    // SAFETY: `mem` is `pages` pages just allocated for us at `grant.base`; nothing else
    // references them. The slice lives until the guest owns the memory.
    let mem = unsafe { core::slice::from_raw_parts_mut(mem.as_ptr(), size) };
    mem.fill(0);
    if let Err(e) = elf::load(elf_bytes, &guest, grant, mem) {
        fail(rec, "load-guest", e);
    }
    let cmdline = cmdline.unwrap_or(&[]);
    let info: &'static mut BootInfo = Box::leak(Box::new(BootInfo {
        magic: bootinfo::MAGIC,
        version: bootinfo::VERSION,
        size: size_of::<BootInfo>() as u32,
        cmdline: addr(cmdline),
        cmdline_len: cmdline.len() as u64,
        memory_map: 0,
        memory_map_len: 0,
        memory_descriptor_size: 0,
        event_log: log.addr,
        event_log_len: log.len,
        final_events: log.final_events,
        final_events_preboot_count: log.final_count,
        guest_memory_base: grant.base,
        guest_memory_size: grant.size,
        policy: addr(policy),
        policy_len: policy.len() as u64,
        tsc_per_ms: 0,
    }));

    // The TIS driver's deadlines need a clock; the TSC is calibrated while Stall exists.
    let tsc_per_ms = super::report::calibrate_tsc();
    info.tsc_per_ms = tsc_per_ms;
    // SAFETY: nothing below uses boot services, the allocator or a protocol opened before
    // (the record writer is port I/O only); the memory map is kept alive (forgotten) for the
    // guest.
    let mmap = unsafe { boot::exit_boot_services(None) };
    let meta = mmap.meta();
    info.memory_map = mmap.buffer().as_ptr() as u64;
    info.memory_map_len = meta.map_size as u64;
    info.memory_descriptor_size = meta.desc_size as u64;
    core::mem::forget(mmap);

    // The complete event log and the PCRs, read after the firmware's last extend (the PCR 5
    // ExitBootServices events) and before the guest could touch the TPM.
    super::report::after_exit(rec, log, tsc_per_ms);
    line(rec, "launch")
        .kv("kind", "guest")
        .kv("section", policies::sections::GUEST)
        .hex("entry", guest.entry)
        .hex("grant_base", grant.base)
        .hex("grant_size", grant.size)
        .hex("eventlog", log.addr)
        .kv("eventlog_len", log.len)
        .hex("final_events", log.final_events)
        .kv("final_events_count", log.final_count)
        .end();
    // SAFETY: the entry was checked to lie in an executable PT_LOAD segment that is now
    // loaded at its (identity-mapped) physical address; the ABI is the documented one.
    let entry: extern "sysv64" fn(*const BootInfo) -> u64 =
        unsafe { core::mem::transmute(guest.entry as usize) };
    // SAFETY: `cli` only masks interrupts; after ExitBootServices no firmware handler may run.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
    let status = entry(info);
    line(rec, "exit").kv("status", status).end();
    line(rec, "end").end();
    power_off(Status::SUCCESS)
}
