//! Test guest: prints the boot info it got on COM1 and returns 7.
#![no_std]
#![no_main]
#![allow(unsafe_code)]

use core::fmt::Write;
use policies::bootinfo::{BootInfo, MAGIC};

struct Com1;

fn outb(p: u16, v: u8) {
    unsafe { core::arch::asm!("out dx, al", in("dx") p, in("al") v) }
}
fn inb(p: u16) -> u8 {
    let v: u8;
    unsafe { core::arch::asm!("in al, dx", in("dx") p, out("al") v) };
    v
}

impl Write for Com1 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            while inb(0x3F8 + 5) & 0x20 == 0 {}
            outb(0x3F8, b);
        }
        Ok(())
    }
}

static mut BSS_PROBE: [u64; 512] = [0; 512];

#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
pub extern "sysv64" fn _start(bi: *const BootInfo) -> u64 {
    let bi = unsafe { &*bi };
    let mut c = Com1;
    let bss_zero = unsafe { (*core::ptr::addr_of!(BSS_PROBE)).iter().all(|&x| x == 0) };
    let cmd =
        unsafe { core::slice::from_raw_parts(bi.cmdline as *const u8, bi.cmdline_len as usize) };
    let _ = writeln!(
        c,
        "testguest: magic_ok={} version={} cmdline={:?} mmap_len={} desc={} log={:#x}+{} final={:#x}/{} grant={:#x}+{:#x} policy_len={} bss_zero={}\r",
        bi.magic == MAGIC,
        bi.version,
        core::str::from_utf8(cmd).unwrap_or("?"),
        bi.memory_map_len,
        bi.memory_descriptor_size,
        bi.event_log,
        bi.event_log_len,
        bi.final_events,
        bi.final_events_preboot_count,
        bi.guest_memory_base,
        bi.guest_memory_size,
        bi.policy_len,
        bss_zero
    );
    7
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// `policies` links `alloc`; this guest never allocates.
struct NoAlloc;
unsafe impl core::alloc::GlobalAlloc for NoAlloc {
    unsafe fn alloc(&self, _: core::alloc::Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _: *mut u8, _: core::alloc::Layout) {}
}
#[global_allocator]
static A: NoAlloc = NoAlloc;
