//! The hypercalls this guest makes (`policies::hypercall`, docs/hypercalls.md) and a console
//! writer on top of `CONSOLE_WRITE`. The only instruction that leaves the partition is
//! `VMMCALL`; no port I/O (that would be a violation).

use policies::hypercall::{Call, Error};

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

/// The result as `Ok(value)` or the hypervisor's error.
pub fn result(rax: u64) -> Result<u64, Error> {
    if Error::is_error(rax) {
        Err(Error(rax))
    } else {
        Ok(rax)
    }
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
    pub const fn new() -> Self {
        Self {
            buf: [0; 256],
            len: 0,
        }
    }

    /// Send what is buffered.
    pub fn flush(&mut self) {
        if self.len > 0 {
            call(
                Call::CONSOLE_WRITE,
                self.buf.as_ptr() as u64,
                self.len as u64,
                0,
                0,
            );
            self.len = 0;
        }
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
