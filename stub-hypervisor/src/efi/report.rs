//! Hypervisor mode, after ExitBootServices: send the complete event log and the PCR values read
//! over TIS on the record channel (`stub::report`), before any partition runs.
//!
//! Decision on failures here (written down as `STYLE.md` asks): every measurement was already
//! made and logged before ExitBootServices, so nothing here can make the guest run unmeasured.
//! A failure to read the Final Events Table or the TPM is therefore *reported* —
//! `error stage=eventlog-final …` or `error stage=tis …` (`policies::record::NONFATAL_STAGES`) — and
//! the guest is still launched; the host's verdict reports the missing event log or PCRs, and
//! a verifier cannot attest such a boot. Stopping instead would turn a broken TPM into a
//! denial of service without protecting anything.

use super::LogCopy;
use core::arch::x86_64::_rdtsc;
use policies::tis::{self, Clock, Mmio, Tis};
use stub::eventlog;
use stub::record::line;
use stub::report::{self, LogWriter};
use stub::serial::Uart;
use uefi::boot;

/// The TSC, read-only and side-effect free.
fn tsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter; it touches no memory.
    unsafe { _rdtsc() }
}

/// TSC ticks per millisecond, measured against the firmware's Stall over 10 ms. Needs boot
/// services: call it before ExitBootServices.
pub fn calibrate_tsc() -> u64 {
    let t0 = tsc();
    boot::stall(core::time::Duration::from_millis(10));
    (tsc().wrapping_sub(t0) / 10).max(1)
}

/// The TSC as the TIS driver's clock.
struct Tsc(u64);

impl Clock for Tsc {
    fn now(&mut self) -> u64 {
        tsc()
    }
    fn ticks_per_ms(&self) -> u64 {
        self.0
    }
}

/// Locality 0 of the TIS at its fixed physical address, through the firmware's identity map.
struct PhysTis;

impl PhysTis {
    fn reg(offset: u16) -> usize {
        tis::BASE as usize + usize::from(offset)
    }
}

impl Mmio for PhysTis {
    fn read8(&mut self, offset: u16) -> u8 {
        // SAFETY: 0xFED40000 + offset (< 0x1000) is the TIS register window, identity-mapped
        // by the firmware's page tables that are still live; a volatile MMIO read there has no
        // effect on memory the stub uses.
        unsafe { core::ptr::read_volatile(Self::reg(offset) as *const u8) }
    }
    fn read32(&mut self, offset: u16) -> u32 {
        // SAFETY: as in `read8`; `offset` is a 4-aligned register (STS), so the access is one
        // aligned 32-bit MMIO read.
        unsafe { core::ptr::read_volatile(Self::reg(offset) as *const u32) }
    }
    fn write8(&mut self, offset: u16, value: u8) {
        // SAFETY: as in `read8`; writing a TIS register changes only the TPM interface state,
        // which this driver alone uses after ExitBootServices.
        unsafe { core::ptr::write_volatile(Self::reg(offset) as *mut u8, value) }
    }
}

/// `n` bytes of physical memory at `addr` (`None` for a null or overflowing range).
///
/// # Safety
/// The range must be readable and unmodified while the slice lives.
unsafe fn phys<'a>(addr: u64, n: usize) -> Option<&'a [u8]> {
    let p = usize::try_from(addr).ok().filter(|p| *p != 0)?;
    p.checked_add(n)?;
    // SAFETY: the caller guarantees the range.
    Some(unsafe { core::slice::from_raw_parts(p as *const u8, n) })
}

/// Write the event log (the copy, then the Final Events Table entries logged after it) and
/// every PCR of every allocated bank. Boot services must be gone; never allocates.
pub fn after_exit(rec: &mut Uart, log: &LogCopy, tsc_per_ms: u64) {
    // SAFETY: the copy is EfiLoaderData pages the stub allocated and filled before
    // ExitBootServices; nothing else writes them.
    let copied = unsafe { phys(log.addr, log.len as usize) }.unwrap_or(&[]);
    let tail = if log.final_events == 0 {
        Ok((0, 0, 0))
    } else {
        eventlog::final_events_tail(
            // SAFETY: the Final Events Table is EfiACPIMemoryNVS (survives ExitBootServices,
            // firmware no longer writes it now); we read only as far as its own headers
            // declare.
            |n| unsafe { phys(log.final_events, n) },
            &log.sizes,
            log.final_count,
        )
    };
    match tail {
        Ok((off, len, added)) => {
            let mut w = LogWriter::new(rec);
            w.write(copied);
            // SAFETY: as above; `final_events_tail` checked these bytes are whole entries.
            let extra = unsafe { phys(log.final_events.wrapping_add(off as u64), len) };
            w.write(extra.unwrap_or(&[]));
            w.end(copied.len(), added);
        }
        // Non-fatal, see the module docs.
        Err(e) => line(rec, "error")
            .kv("stage", "eventlog-final")
            .kv("status", e)
            .end(),
    }

    let t0 = tsc();
    let mut tpm = Tis::new(PhysTis, Tsc(tsc_per_ms));
    let read = policies::tpm2::read_banks(&mut tpm)
        .and_then(|banks| policies::tpm2::read_pcrs(&mut tpm, &banks));
    let ms = tsc().wrapping_sub(t0) / tsc_per_ms.max(1);
    match read {
        Ok(values) => report::pcrs(rec, &values, ms),
        // Non-fatal, see the module docs.
        Err(e) => line(rec, "error")
            .kv("stage", "tis")
            .kv("status", e)
            .kv("ms", ms)
            .end(),
    }
}
