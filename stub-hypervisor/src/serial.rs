//! A polled 16550 UART on an x86 I/O port (115200 8N1).
#![expect(unsafe_code, reason = "port I/O to the 16550 UART")]

/// A 16550 UART at an I/O port base.
pub struct Uart {
    base: u16,
}

#[cfg(target_arch = "x86_64")]
fn outb(port: u16, value: u8) {
    // SAFETY: writes to the COM port registers only; no memory is touched.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

#[cfg(target_arch = "x86_64")]
fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: reads a COM port register only; no memory is touched.
    unsafe {
        core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    }
    v
}

impl Uart {
    /// Program the UART at `base` for 115200 8N1, FIFOs on, interrupts off.
    pub fn init(base: u16) -> Self {
        outb(base + 1, 0x00); // IER: no interrupts
        outb(base + 3, 0x80); // LCR: DLAB
        outb(base, 0x01); // DLL: 115200
        outb(base + 1, 0x00); // DLM
        outb(base + 3, 0x03); // LCR: 8N1
        outb(base + 2, 0xC7); // FCR: enable + clear FIFOs
        outb(base + 4, 0x03); // MCR: DTR + RTS
        Self { base }
    }

    /// Write one byte, waiting for the transmit holding register to be empty.
    pub fn write_byte(&mut self, b: u8) {
        let mut spins = 0u32;
        while inb(self.base + 5) & 0x20 == 0 && spins < 1_000_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        outb(self.base, b);
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            self.write_byte(b);
        }
        Ok(())
    }
}

impl crate::hv::Console for Uart {
    fn write_bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_byte(*b);
        }
    }
}
