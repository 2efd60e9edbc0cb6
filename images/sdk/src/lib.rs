//! # vmseal-guest — the SDK of vmseal partitions
//!
//! A partition (`images/hello`, `images/attest`, `images/redteam`) is a `no_std` ELF for
//! `x86_64-unknown-none` run by the stub-hypervisor in its own SVM guest. This crate is how it
//! talks to the hypervisor (`policies::hypercall`, docs/hypercalls.md): the `VMMCALL` wrapper,
//! a console writer over `CONSOLE_WRITE`, channels, `ATTEST`, `EXIT`; the TSC and RDRAND; the
//! panic handler (prints and exits 255) and a global allocator that refuses (partitions do not
//! allocate; `policies` links `alloc`).
//!
//! # Entry contract (`policies::bootinfo`, docs/hypercalls.md)
//!
//! The partition is a static `ET_EXEC` ELF linked at its grant's base (`p_vaddr == p_paddr`),
//! its segments ending at least 64 KiB below the grant's end (the hypervisor area: `BootInfo`,
//! exit trampoline, GDT, command line, page tables, stack). The hypervisor calls the ELF entry
//! as `extern "sysv64" fn _start(info: *const BootInfo) -> u64` in 64-bit mode, CPL 0,
//! interrupts off and **no IDT** (any exception is a triple fault, which stops the
//! partition), on identity page tables for 0–4 GiB and a 32 KiB stack at the top of the
//! area; returning exits with `RAX` as the status. Read the `BootInfo` with [`boot_info`];
//! only the grant (and granted device pages) are reachable, everything else is a violation.
#![no_std]

use policies::hypercall::{Call, Error, Stamp};

/// `VMMCALL` with `nr` and up to four arguments (RDI, RSI, RDX, R10); the raw `RAX` result.
pub fn call(nr: Call, a1: u64, a2: u64, a3: u64, a4: u64) -> u64 {
    let rax: u64;
    // SAFETY: VMMCALL exits to the hypervisor, which validates every argument (pointers are
    // checked against our grant before it touches them) and preserves every register but RAX.
    unsafe {
        core::arch::asm!(
            "vmmcall",
            inlateout("rax") nr.0 => rax,
            in("rdi") a1, in("rsi") a2, in("rdx") a3, in("r10") a4,
            options(nostack)
        );
    }
    rax
}

/// `VMMCALL` with `nr` and all five arguments (RDI, RSI, RDX, R10, R8); the raw `RAX` result.
pub fn call5(nr: Call, args: [u64; 5]) -> u64 {
    let rax: u64;
    // SAFETY: as in `call`: the hypervisor validates every argument and preserves every
    // register but RAX; VMMCALL touches no memory of ours except through checked pointers.
    unsafe {
        core::arch::asm!(
            "vmmcall",
            inlateout("rax") nr.0 => rax,
            in("rdi") args[0], in("rsi") args[1], in("rdx") args[2], in("r10") args[3],
            in("r8") args[4],
            options(nostack)
        );
    }
    rax
}

/// `VERSION`: the hypervisor's ABI version (`policies::hypercall::ABI_VERSION`).
pub fn version() -> u64 {
    call(Call::VERSION, 0, 0, 0, 0)
}

/// `CONSOLE_WRITE` of `bytes` (at most `MAX_MESSAGE`); the number of bytes taken. Under
/// `console = "off"` the hypervisor drops them and still answers their length.
pub fn console_write(bytes: &[u8]) -> Result<usize, Error> {
    result(call(
        Call::CONSOLE_WRITE,
        bytes.as_ptr() as u64,
        bytes.len() as u64,
        0,
        0,
    ))
    .map(|n| n as usize)
}

/// The result as `Ok(value)` or the hypervisor's error.
pub fn result(rax: u64) -> Result<u64, Error> {
    if Error::is_error(rax) {
        Err(Error(rax))
    } else {
        Ok(rax)
    }
}

/// The id of channel `name`, if the caller is one of its ends.
pub fn channel_find(name: &str) -> Result<u64, Error> {
    result(call(
        Call::CHANNEL_FIND,
        name.as_ptr() as u64,
        name.len() as u64,
        0,
        0,
    ))
}

/// `SEND` `msg` on channel `id`.
pub fn send(id: u64, msg: &[u8]) -> Result<u64, Error> {
    result(call(
        Call::SEND,
        id,
        msg.as_ptr() as u64,
        msg.len() as u64,
        0,
    ))
}

/// `RECV` on channel `id` into `buf` (blocks until a message arrives): who sent it, as the
/// hypervisor stamped it, and the message. `buf` needs room for the stamp
/// (`policies::hypercall::STAMP_LEN` bytes) too; a stamp that does not parse is
/// [`Error::INVALID`].
pub fn recv(id: u64, buf: &mut [u8]) -> Result<(Stamp<'_>, &[u8]), Error> {
    let n = result(call(
        Call::RECV,
        id,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        0,
    ))?;
    let received = buf.get(..n as usize).ok_or(Error::INVALID)?;
    Stamp::split(received).ok_or(Error::INVALID)
}

/// `ATTEST` with `nonce`; the report's length in `out`.
pub fn attest(nonce: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    result(call(
        Call::ATTEST,
        nonce.as_ptr() as u64,
        nonce.len() as u64,
        out.as_mut_ptr() as u64,
        out.len() as u64,
    ))
    .map(|n| n as usize)
}

/// `EXIT(status)`.
pub fn exit(status: u64) -> ! {
    call(Call::EXIT, status, 0, 0, 0);
    // EXIT does not return; if it ever did, stop here.
    loop {
        core::hint::spin_loop();
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// 64 random bits from RDRAND, if it delivers within a few tries.
pub fn rdrand() -> Option<u64> {
    for _ in 0..16 {
        let mut v = 0u64;
        // SAFETY: RDRAND writes only `v`; CPUID-less use is fine on the EPYC model vmseal
        // boots (and a #UD would be a triple fault: reported, not exploitable).
        if unsafe { core::arch::x86_64::_rdrand64_step(&mut v) } == 1 {
            return Some(v);
        }
    }
    None
}

/// A line-oriented console over `CONSOLE_WRITE`, buffered per 256 bytes.
pub struct Console {
    buf: [u8; 256],
    len: usize,
}

impl Console {
    /// An empty console buffer.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            buf: [0; 256],
            len: 0,
        }
    }

    /// Send what is buffered.
    pub fn flush(&mut self) {
        if let Some(bytes) = self.buf.get(..self.len)
            && !bytes.is_empty()
        {
            let _ = console_write(bytes);
        }
        self.len = 0;
    }

    /// Append bytes.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            if self.len == self.buf.len() {
                self.flush();
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = *b;
                self.len += 1;
            }
        }
    }

    /// Append lower-case hex of `bytes`.
    pub fn write_hex_bytes(&mut self, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for b in bytes {
            self.write_bytes(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]);
        }
    }
}

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

/// The boot info the hypervisor passed in `RDI`, checked (magic, version, size); `None` if it
/// is not one this SDK understands.
///
/// # Safety
///
/// `p` must be the `RDI` the partition was entered with (the ABI makes it readable).
pub unsafe fn boot_info(
    p: *const policies::bootinfo::BootInfo,
) -> Option<policies::bootinfo::BootInfo> {
    use policies::bootinfo::{BootInfo, MAGIC, VERSION};
    if p.is_null() || !p.is_aligned() {
        return None;
    }
    // SAFETY: non-null and aligned; the ABI makes the struct readable.
    let info = unsafe { *p };
    (info.magic == MAGIC && info.version == VERSION && info.size as usize >= size_of::<BootInfo>())
        .then_some(info)
}

/// The command line in the boot info, if any (at most 4 KiB, inside the partition's grant).
///
/// # Safety
///
/// `info` must come from [`boot_info`].
pub unsafe fn cmdline(info: &policies::bootinfo::BootInfo) -> &'static [u8] {
    if info.cmdline == 0 || info.cmdline_len > policies::bootinfo::MAX_CMDLINE {
        return &[];
    }
    // SAFETY: the hypervisor wrote `cmdline_len` bytes at `cmdline` in the hypervisor area of
    // our grant, which stays mapped for the partition's life.
    unsafe { core::slice::from_raw_parts(info.cmdline as *const u8, info.cmdline_len as usize) }
}

/// Partitions never allocate; `policies` links `alloc`, so there must be an allocator: every
/// request fails.
pub struct NoAlloc;

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

/// A panic prints a line and exits 255 (the hypervisor reports `stopped … status=255`).
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    let mut con = Console::new();
    con.write_bytes(b"partition: panic\r\n");
    con.flush();
    exit(255)
}
