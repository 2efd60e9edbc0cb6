//! # hello — vmseal's example partition guest
//!
//! A `#![no_std]` ELF unikernel for `x86_64-unknown-none`, linked at physical `0x4000000`
//! (`linker.ld`). The stub-hypervisor runs it in its own SVM guest with nested paging and
//! enters [`_start`] with `RDI` = its [`policies::bootinfo::BootInfo`] (docs/hypercalls.md).
//!
//! It greets through the `CONSOLE_WRITE` hypercall (`hello from vmseal guest`), prints the
//! ABI version and its command line, times the hypercall round trip, and — when the policy
//! gives it an `attest` channel — asks the attestation service for a report over a fresh
//! nonce and prints it in lines the host tests parse (`vmseal-attest …`, `vmseal-pcr sha256 N
//! HEX`, `vmseal-quote …`). It returns 0 on success (the exit trampoline turns that into
//! `EXIT(0)`), non-zero with a line saying why otherwise.
//!
//! What it does not do: touch any device, allocate, or panic on any input.
#![no_std]
#![no_main]

use core::fmt::Write;
use policies::attest::Report;
use policies::bootinfo::{BootInfo, MAGIC, VERSION};
use policies::hypercall::{Call, Error};
use vmseal_guest::{self as hv, Console};

/// Hypercalls timed for the round-trip figure (far below the flood limit).
const ROUND_TRIPS: u64 = 256;

/// The guest entry point (ELF `e_entry`).
///
/// # Safety
///
/// `boot_info` must point to a readable [`BootInfo`] as the hypervisor's ABI promises; it is
/// checked for null, alignment, magic, version and size before anything else is read.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
pub unsafe extern "sysv64" fn _start(boot_info: *const BootInfo) -> u64 {
    let mut con = Console::new();
    // SAFETY: per this function's contract.
    let status = unsafe { run(&mut con, boot_info) };
    let _ = writeln!(con, "hello: exit status {status}\r");
    con.flush();
    status
}

unsafe fn run(con: &mut Console, boot_info: *const BootInfo) -> u64 {
    if boot_info.is_null() || !boot_info.is_aligned() {
        let _ = writeln!(con, "hello: bad boot info pointer\r");
        return 1;
    }
    // SAFETY: non-null and aligned; the ABI guarantees the struct is readable.
    let info = unsafe { *boot_info };
    if info.magic != MAGIC
        || info.version != VERSION
        || (info.size as usize) < size_of::<BootInfo>()
    {
        let _ = writeln!(con, "hello: boot info magic/version/size not understood\r");
        return 2;
    }
    let _ = writeln!(con, "hello from vmseal guest\r");
    let version = hv::call(Call::VERSION, 0, 0, 0, 0);
    let _ = write!(con, "hello: hypercall ABI {version}, cmdline=\"");
    if info.cmdline != 0 && info.cmdline_len <= 4096 {
        // SAFETY: the hypervisor put `cmdline_len` bytes of command line at `cmdline`, inside
        // our grant.
        let bytes = unsafe {
            core::slice::from_raw_parts(info.cmdline as *const u8, info.cmdline_len as usize)
        };
        con.write_bytes(bytes);
    }
    let _ = writeln!(
        con,
        "\" memory={:#x}+{:#x}\r",
        info.guest_memory_base, info.guest_memory_size
    );
    con.flush();

    let t0 = hv::rdtsc();
    for _ in 0..ROUND_TRIPS {
        hv::call(Call::VERSION, 0, 0, 0, 0);
    }
    let ticks = hv::rdtsc().wrapping_sub(t0);
    if info.tsc_per_ms == 0 {
        let _ = writeln!(
            con,
            "hello: hypercall roundtrip_ticks={} (TSC not calibrated)\r",
            ticks / ROUND_TRIPS
        );
    } else {
        let ns = ticks as u128 * 1_000_000 / u128::from(info.tsc_per_ms) / u128::from(ROUND_TRIPS);
        let _ = writeln!(con, "hello: hypercall roundtrip_ns={ns}\r");
    }
    con.flush();

    attest(con)
}

/// Ask for an attestation report and print it.
fn attest(con: &mut Console) -> u64 {
    let mut nonce = [0u8; 32];
    for (i, chunk) in nonce.chunks_mut(8).enumerate() {
        let v = hv::rdrand()
            .unwrap_or_else(|| hv::rdtsc().rotate_left(17 * i as u32) ^ 0x9E37_79B9_7F4A_7C15);
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    let mut out = [0u8; 4096];
    let r = hv::call(
        Call::ATTEST,
        nonce.as_ptr() as u64,
        32,
        out.as_mut_ptr() as u64,
        out.len() as u64,
    );
    let len = match hv::result(r) {
        Ok(n) => n as usize,
        Err(Error::NO_ATTESTATION) => {
            let _ = writeln!(con, "hello: no attestation service in this appliance\r");
            return 0;
        }
        Err(e) => {
            let _ = writeln!(con, "hello: ATTEST failed: {e}\r");
            return 3;
        }
    };
    let Some(Ok(rep)) = out.get(..len).map(Report::decode) else {
        let _ = writeln!(con, "hello: the attestation report does not decode\r");
        return 4;
    };
    if rep.nonce != nonce {
        let _ = writeln!(con, "hello: the report's nonce is not ours\r");
        return 5;
    }
    if rep.status == 0
        && quoted_data(rep.quote)
            != Some(&policies::attest::qualifying_data(rep.caller, &nonce)[..])
    {
        let _ = writeln!(
            con,
            "hello: the quote is not a TPM quote over our nonce and the caller (magic, type or \
             extraData)\r"
        );
        return 7;
    }
    let _ = write!(con, "vmseal-attest status={} caller=", rep.status);
    con.write_bytes(rep.caller);
    let _ = write!(con, " nonce=");
    con.write_hex_bytes(rep.nonce);
    let _ = writeln!(con, " bank=sha256 mask={:#x}\r", rep.pcr_mask);
    for pcr in 0..32 {
        if let Some(v) = rep.pcr(pcr) {
            let _ = write!(con, "vmseal-pcr sha256 {pcr} ");
            con.write_hex_bytes(v);
            let _ = writeln!(con, "\r");
        }
    }
    let _ = write!(con, "vmseal-quote attest=");
    con.write_hex_bytes(rep.quote);
    let _ = write!(con, " signature=");
    con.write_hex_bytes(rep.signature);
    let _ = write!(con, " key=");
    con.write_hex_bytes(rep.key);
    let _ = writeln!(con, "\r");
    con.flush();
    if rep.status != 0 { 6 } else { 0 }
}

/// The `extraData` (qualifyingData) of a `TPMS_ATTEST` that is a TPM-made quote (magic
/// `TPM_GENERATED_VALUE`, type `TPM_ST_ATTEST_QUOTE`); `None` otherwise (TPM 2.0 Part 2,
/// reference §B.7: magic u32 | type u16 | qualifiedSigner TPM2B | extraData TPM2B | …).
fn quoted_data(attest: &[u8]) -> Option<&[u8]> {
    let be16 = |at: usize| -> Option<usize> {
        let b = attest.get(at..at + 2)?;
        Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    if attest.get(..6)? != [0xFF, 0x54, 0x43, 0x47, 0x80, 0x18] {
        return None;
    }
    let signer = be16(6)?;
    let at = 8 + signer;
    let len = be16(at)?;
    attest.get(at + 2..at + 2 + len)
}
