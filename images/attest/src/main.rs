//! # attest — vmseal's attestation service partition
//!
//! A root-partition service (`[[service]]` with `devices = ["tpm"]`): the hypervisor maps it
//! the TPM's TIS page (0xFED40000) and nothing else of the machine. At start it creates an
//! ECC P-256 restricted signing key in the endorsement hierarchy (`TPM2_CreatePrimary`,
//! deterministic: the same key at every boot of the same TPM), then serves its `attest`
//! channel forever: for every request (`policies::attest::Request`, built by the hypervisor
//! with the caller's name and nonce) it reads the SHA-256 PCRs 0–15, quotes them with
//! `policies::attest::qualifying_data` of the caller and the nonce as qualifyingData, and
//! answers a `policies::attest::Report`. The caller is always the sender the hypervisor
//! stamped on the message (`policies::hypercall::Stamp`), never what the request claims: a
//! request claiming someone else gets `STATUS_WRONG_CALLER` naming the real sender. A
//! malformed request or a failing TPM gets a report with a non-zero status — it always
//! answers.
//!
//! The TPM commands and the TIS driver are `policies::tpm2` and `policies::tis`, the same code
//! the stub uses before the partitions start.
#![no_std]
#![no_main]

use core::fmt::Write;
use policies::attest::{
    Report, Request, STATUS_BAD_REQUEST, STATUS_NO_TPM, STATUS_WRONG_CALLER, qualifying_data,
};
use policies::bootinfo::BootInfo;
use policies::tcg::HashAlg;
use policies::tis::{self, Clock, Mmio, Tis};
use policies::tpm2::{self, CommandCode, PcrSet};
use vmseal_guest::{self as sdk, Console};

/// The TIS locality-0 page, mapped into this partition by the nested page tables.
struct PhysTis;

impl Mmio for PhysTis {
    fn read8(&mut self, offset: u16) -> u8 {
        // SAFETY: 0xFED40000 + offset (< 0x1000) is the TIS page the policy grants us; MMIO.
        unsafe { core::ptr::read_volatile((tis::BASE + u64::from(offset)) as *const u8) }
    }
    fn read32(&mut self, offset: u16) -> u32 {
        // SAFETY: as in `read8`; STS is 4-aligned: one aligned 32-bit access.
        unsafe { core::ptr::read_volatile((tis::BASE + u64::from(offset)) as *const u32) }
    }
    fn write8(&mut self, offset: u16, value: u8) {
        // SAFETY: as in `read8`; only the TPM interface changes.
        unsafe { core::ptr::write_volatile((tis::BASE + u64::from(offset)) as *mut u8, value) }
    }
}

/// The TSC, calibrated by the stub (BootInfo.tsc_per_ms).
struct Tsc(u64);

impl Clock for Tsc {
    fn now(&mut self) -> u64 {
        sdk::rdtsc()
    }
    fn ticks_per_ms(&self) -> u64 {
        self.0
    }
}

type Tpm = Tis<PhysTis, Tsc>;

/// The service's message and TPM buffers, in `.bss` rather than on the 32 KiB entry stack
/// (below which lie the partition's page tables).
struct Buffers {
    request: [u8; REQUEST_BUF],
    report: [u8; policies::hypercall::MAX_MESSAGE as usize],
    tpm: [u8; tpm2::MAX_RESPONSE],
}

/// A request as `RECV` delivers it: the sender's stamp, then the message.
const REQUEST_BUF: usize =
    (policies::hypercall::MAX_MESSAGE + policies::hypercall::STAMP_LEN) as usize;

static mut BUFFERS: Buffers = Buffers {
    request: [0; REQUEST_BUF],
    report: [0; policies::hypercall::MAX_MESSAGE as usize],
    tpm: [0; tpm2::MAX_RESPONSE],
};

/// The key: its handle and `TPMT_PUBLIC`.
struct Key {
    handle: u32,
    public: [u8; 256],
    public_len: usize,
}

fn create_key(tpm: &mut Tpm, resp: &mut [u8]) -> Result<Key, u32> {
    let params = tpm2::execute(
        tpm,
        CommandCode::CREATE_PRIMARY,
        &tpm2::create_primary_ecc_ak(),
        resp,
    )
    .map_err(rc_of)?;
    let p = tpm2::parse_create_primary(params).map_err(|_| STATUS_NO_TPM)?;
    let mut public = [0u8; 256];
    let dst = public.get_mut(..p.public.len()).ok_or(STATUS_NO_TPM)?;
    dst.copy_from_slice(p.public);
    Ok(Key {
        handle: p.handle,
        public,
        public_len: p.public.len(),
    })
}

fn rc_of<E>(e: tpm2::Error<E>) -> u32 {
    match e {
        tpm2::Error::Response { rc, .. } => rc.0,
        _ => STATUS_NO_TPM,
    }
}

/// The entry point (services get no command line).
///
/// # Safety
///
/// As `vmseal_guest::boot_info` requires.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
pub unsafe extern "sysv64" fn _start(boot_info: *const BootInfo) -> u64 {
    let mut con = Console::new();
    // SAFETY: RDI as the hypervisor entered us.
    let Some(info) = (unsafe { sdk::boot_info(boot_info) }) else {
        let _ = writeln!(con, "attest: boot info not understood\r");
        con.flush();
        return 1;
    };
    let Ok(channel) = sdk::channel_find(policies::hypercall::ATTEST_CHANNEL) else {
        let _ = writeln!(con, "attest: no attest channel in the policy\r");
        con.flush();
        return 2;
    };
    // SAFETY: the only reference to BUFFERS ever made: `_start` runs once, on the partition's
    // single vCPU, with interrupts off.
    let bufs: &mut Buffers = unsafe { &mut *core::ptr::addr_of_mut!(BUFFERS) };
    // An uncalibrated TSC (0) is taken as 4 GHz: the TIS timeouts then last at least as long
    // as specified on any slower clock, instead of expiring after a few ticks.
    let tsc_per_ms = if info.tsc_per_ms == 0 {
        4_000_000
    } else {
        info.tsc_per_ms
    };
    let mut tpm = Tis::new(PhysTis, Tsc(tsc_per_ms));
    let key = create_key(&mut tpm, &mut bufs.tpm);
    match &key {
        Ok(k) => {
            let _ = writeln!(con, "attest: ready, key=ecc-p256 handle={:#x}\r", k.handle);
        }
        Err(rc) => {
            let _ = writeln!(
                con,
                "attest: no key (TPM rc {rc:#x}); answering with that status\r"
            );
        }
    }
    con.flush();
    let out = &mut bufs.report;
    loop {
        let Ok((sender, message)) = sdk::recv(channel, &mut bufs.request) else {
            // The channel is gone (the hypervisor stopped the client): nothing left to serve.
            return 0;
        };
        let len = match Request::decode(message) {
            Ok(req) if req.caller == sender.name => {
                answer(&mut tpm, &key, sender.name, req.nonce, &mut bufs.tpm, out)
            }
            Ok(req) => Report::failure(STATUS_WRONG_CALLER, sender.name, req.nonce)
                .encode(out)
                .unwrap_or(0),
            Err(_) => Report::failure(STATUS_BAD_REQUEST, sender.name, &[])
                .encode(out)
                .unwrap_or(0),
        };
        let _ = sdk::send(channel, out.get(..len).unwrap_or(&[]));
    }
}

/// The PCRs reported and quoted: SHA-256 PCR 0–15 (the firmware's, the stub's and the
/// OS's; 16–23 are debug/DRTM PCRs, not part of a static boot).
const PCRS: PcrSet = PcrSet(0xFFFF);

/// Read `PCRS` of the SHA-256 bank into `digests` (32 bytes per PCR, ascending), in chunks of
/// at most 8 (`TPML_DIGEST`); again if `pcrUpdateCounter` changed between chunks.
fn read_pcrs(tpm: &mut Tpm, digests: &mut [u8; 16 * 32], resp: &mut [u8]) -> Result<(), u32> {
    'again: for _ in 0..tpm2::MAX_REREADS {
        let mut have = PcrSet::EMPTY;
        let mut counter = None;
        for _ in 0..PCRS.len() {
            let want = PCRS.without(have);
            if want.is_empty() {
                return Ok(());
            }
            let cmd = tpm2::pcr_read(HashAlg::SHA256, want);
            let params = tpm2::execute(tpm, CommandCode::PCR_READ, &cmd, resp).map_err(rc_of)?;
            let read = tpm2::parse_pcr_read(params).map_err(|_| STATUS_NO_TPM)?;
            // No progress, another bank or PCRs not asked for: not an answer to our question.
            if read.selected.is_empty()
                || !read.selected.without(want).is_empty()
                || read.alg != Some(HashAlg::SHA256)
            {
                return Err(STATUS_NO_TPM);
            }
            if *counter.get_or_insert(read.update_counter) != read.update_counter {
                continue 'again;
            }
            for (pcr, value) in read.values() {
                let at = pcr as usize * 32;
                let d = digests.get_mut(at..at + 32).ok_or(STATUS_NO_TPM)?;
                d.copy_from_slice(value.get(..32).ok_or(STATUS_NO_TPM)?);
            }
            have = PcrSet(have.0 | read.selected.0);
        }
        return if have == PCRS {
            Ok(())
        } else {
            Err(STATUS_NO_TPM)
        };
    }
    Err(STATUS_NO_TPM)
}

/// Read the PCRs, quote them for `caller` (the stamped sender) and `nonce`, encode the report
/// into `out`; its length.
fn answer(
    tpm: &mut Tpm,
    key: &Result<Key, u32>,
    caller: &[u8],
    nonce: &[u8],
    resp: &mut [u8],
    out: &mut [u8],
) -> usize {
    let fail = |status: u32, out: &mut [u8]| {
        Report::failure(status, caller, nonce)
            .encode(out)
            .unwrap_or(0)
    };
    let key = match key {
        Ok(k) => k,
        Err(rc) => return fail(*rc, out),
    };
    let mut digests = [0u8; 16 * 32];
    if let Err(status) = read_pcrs(tpm, &mut digests, resp) {
        return fail(status, out);
    }
    let mut cmd = [0u8; tpm2::QUOTE_MAX];
    let Some(n) = tpm2::quote(key.handle, &qualifying_data(caller, nonce), PCRS, &mut cmd) else {
        return fail(STATUS_BAD_REQUEST, out);
    };
    let params = match tpm2::execute(tpm, CommandCode::QUOTE, cmd.get(..n).unwrap_or(&[]), resp) {
        Ok(p) => p,
        Err(e) => return fail(rc_of(e), out),
    };
    let Ok(q) = tpm2::parse_quote(params) else {
        return fail(STATUS_NO_TPM, out);
    };
    Report {
        status: 0,
        caller,
        nonce,
        bank: HashAlg::SHA256.0,
        pcr_mask: PCRS.0,
        digests: &digests,
        quote: q.attest,
        signature: q.signature,
        key: key.public.get(..key.public_len).unwrap_or(&[]),
    }
    .encode(out)
    .unwrap_or(0)
}
