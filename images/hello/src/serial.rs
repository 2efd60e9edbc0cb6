//! A write-only driver for the 16550 UART at COM1 (I/O port `0x3F8`), polled, 115200 8N1.
//!
//! Register offsets from the PC16550D datasheet: THR/DLL +0, IER/DLM +1, FCR +2, LCR +3,
//! MCR +4, LSR +5.

use policies::record::CONSOLE_PORT;

/// Line Status Register bit: transmit holding register empty.
const LSR_THRE: u8 = 0x20;
/// Bound on the busy-wait for THRE, so a missing UART cannot hang the guest.
const SPIN_LIMIT: u32 = 100_000;

/// COM1, programmed for 115200 8N1.
pub struct Com1(());

impl Com1 {
    /// Program the UART: interrupts off, divisor 1 (115200 baud), 8N1, FIFOs on, DTR/RTS.
    pub fn init() -> Self {
        outb(CONSOLE_PORT + 1, 0x00); // IER: no interrupts
        outb(CONSOLE_PORT + 3, 0x80); // LCR: DLAB on
        outb(CONSOLE_PORT, 0x01); // DLL: divisor 1 -> 115200
        outb(CONSOLE_PORT + 1, 0x00); // DLM
        outb(CONSOLE_PORT + 3, 0x03); // LCR: 8N1, DLAB off
        outb(CONSOLE_PORT + 2, 0xC7); // FCR: enable + clear FIFOs, 14-byte threshold
        outb(CONSOLE_PORT + 4, 0x03); // MCR: DTR + RTS, no loopback
        Self(())
    }

    /// Send one byte, waiting (bounded) for the transmitter.
    pub fn write_byte(&mut self, b: u8) {
        let mut spins = 0u32;
        while inb(CONSOLE_PORT + 5) & LSR_THRE == 0 && spins < SPIN_LIMIT {
            spins += 1;
            core::hint::spin_loop();
        }
        outb(CONSOLE_PORT, b);
    }

    /// Send a string as is.
    pub fn write_str(&mut self, s: &str) {
        for b in s.bytes() {
            self.write_byte(b);
        }
    }

    /// Send bytes, replacing anything but printable ASCII with `?`.
    pub fn write_printable(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(if (0x20..0x7F).contains(&b) { b } else { b'?' });
        }
    }

    /// Send `v` in decimal.
    pub fn write_dec(&mut self, mut v: u64) {
        let mut buf = [0u8; 20];
        let mut n = 0usize;
        for slot in buf.iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
            n += 1;
            if v == 0 {
                break;
            }
        }
        for &b in buf.iter().skip(buf.len() - n) {
            self.write_byte(b);
        }
    }

    /// Send `v` as `0x` followed by 16 hex digits.
    pub fn write_hex(&mut self, v: u64) {
        self.write_str("0x");
        for shift in (0..16u32).rev() {
            let nibble = ((v >> (shift * 4)) & 0xF) as u8;
            self.write_byte(if nibble < 10 {
                b'0' + nibble
            } else {
                b'a' + nibble - 10
            });
        }
    }
}

fn outb(port: u16, value: u8) {
    // SAFETY: writes one byte to a UART I/O port; it touches no memory. The guest owns COM1
    // in direct mode (the stub has exited boot services).
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: reads one byte from a UART I/O port; it touches no memory.
    unsafe {
        core::arch::asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    value
}
