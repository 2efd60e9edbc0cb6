//! # hello — vmseal's example direct-mode guest
//!
//! A `#![no_std]` ELF unikernel for `x86_64-unknown-none`, linked at physical `0x4000000`
//! (`linker.ld`). The stub loads it, calls `ExitBootServices` and enters [`_start`] with the
//! System V AMD64 ABI and `RDI` = the physical address of a
//! [`policies::bootinfo::BootInfo`] (ABI version 1, see `policies/src/bootinfo.rs`).
//!
//! It checks the block's magic, version and size, programs the 16550 UART at COM1
//! (`0x3F8`, 115200 8N1), prints `hello from vmseal guest` and a one-line summary of what the
//! stub handed over (command line, event log length, memory map and memory grant), and
//! returns its exit status: 0 on success, non-zero (see [`Status`]) when the boot info is
//! unusable. The stub reports the status on the record channel as `exit status=N`.
//!
//! What it does not do: allocate, take interrupts, touch any device but COM1, or panic on any
//! input (every read of the boot info is checked; there is no indexing or arithmetic that can
//! overflow).
#![no_std]
#![no_main]

mod serial;

use policies::bootinfo::{BootInfo, MAGIC, VERSION};
use serial::Com1;

/// The guest's exit status, returned in `RAX`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct Status(pub u64);

impl Status {
    /// The boot info was valid and the greeting was printed.
    pub const OK: Self = Self(0);
    /// `RDI` was null or misaligned.
    pub const BAD_POINTER: Self = Self(1);
    /// The magic did not match [`MAGIC`].
    pub const BAD_MAGIC: Self = Self(2);
    /// The version is not one this guest understands, or `size` is too small.
    pub const BAD_VERSION: Self = Self(3);
}

/// The longest command line this guest prints (a longer one is cut, and said so).
const MAX_CMDLINE: u64 = 4096;

/// The guest entry point (ELF `e_entry`), called by the stub.
///
/// # Safety
///
/// `boot_info` must be null or point to a readable [`BootInfo`] whose `cmdline` /
/// `cmdline_len` describe readable memory, as the boot-info ABI promises. The function checks
/// null, alignment, magic, version and size before it reads any other field.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
pub unsafe extern "sysv64" fn _start(boot_info: *const BootInfo) -> u64 {
    let mut com1 = Com1::init();
    com1.write_str("hello: guest entered\r\n");
    // SAFETY: the caller (the stub) passes the boot-info pointer per the ABI; `summarize`
    // validates it before dereferencing anything beyond the header.
    let status = unsafe { run(&mut com1, boot_info) };
    if status != Status::OK {
        com1.write_str("hello: bad boot info, status=");
        com1.write_dec(status.0);
        com1.write_str("\r\n");
    }
    status.0
}

/// Validate the boot info, greet, summarise.
///
/// # Safety
///
/// As for [`_start`].
unsafe fn run(com1: &mut Com1, boot_info: *const BootInfo) -> Status {
    if boot_info.is_null() || !boot_info.is_aligned() {
        return Status::BAD_POINTER;
    }
    // SAFETY: non-null and aligned; the ABI guarantees at least the header (magic, version,
    // size) is readable. Read it before trusting `size`.
    let (magic, version, size) = unsafe {
        let header = &*boot_info;
        (header.magic, header.version, header.size)
    };
    if magic != MAGIC {
        return Status::BAD_MAGIC;
    }
    if version != VERSION || (size as usize) < core::mem::size_of::<BootInfo>() {
        return Status::BAD_VERSION;
    }
    // SAFETY: magic, version and size say the stub filled the whole version-1 struct.
    let info = unsafe { *boot_info };

    com1.write_str("hello from vmseal guest\r\n");
    com1.write_str("hello: cmdline=\"");
    let shown = info.cmdline_len.min(MAX_CMDLINE);
    if info.cmdline != 0 && shown != 0 {
        // SAFETY: the ABI says `cmdline` points to `cmdline_len` readable bytes; we read at
        // most that many (capped at MAX_CMDLINE), one volatile byte at a time.
        let bytes =
            unsafe { core::slice::from_raw_parts(info.cmdline as *const u8, shown as usize) };
        com1.write_printable(bytes);
    }
    com1.write_str("\"");
    if info.cmdline_len > MAX_CMDLINE {
        com1.write_str(" (cut)");
    }
    com1.write_str(" cmdline_len=");
    com1.write_dec(info.cmdline_len);
    com1.write_str(" event_log_len=");
    com1.write_dec(info.event_log_len);
    com1.write_str(" memory_map_entries=");
    com1.write_dec(
        info.memory_map_len
            .checked_div(info.memory_descriptor_size)
            .unwrap_or(0),
    );
    com1.write_str(" guest_memory=");
    com1.write_hex(info.guest_memory_base);
    com1.write_str("+");
    com1.write_hex(info.guest_memory_size);
    com1.write_str(" policy_len=");
    com1.write_dec(info.policy_len);
    com1.write_str("\r\nhello: returning 0\r\n");
    Status::OK
}

/// `policies` links `alloc` (its parsers return `Vec`s), so the link needs an allocator; this
/// guest never allocates, so every request fails (`alloc` then reports through the panic
/// handler, which halts).
struct NoAlloc;

// SAFETY: `alloc` returns null ("allocation failed"), which GlobalAlloc permits; `dealloc` is
// never handed a pointer because none is ever produced.
unsafe impl core::alloc::GlobalAlloc for NoAlloc {
    unsafe fn alloc(&self, _layout: core::alloc::Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: core::alloc::Layout) {}
}

#[global_allocator]
static ALLOCATOR: NoAlloc = NoAlloc;

/// No code path above panics; this is required by `no_std` and only halts.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    let mut com1 = Com1::init();
    com1.write_str("hello: panic\r\n");
    loop {
        // SAFETY: `hlt` with interrupts disabled (as the stub enters us) stops this CPU; it
        // touches no memory.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
    }
}
