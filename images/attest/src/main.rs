//! # attest — vmseal's attestation service partition
//!
//! A root-partition service (`[[service]]` with `devices = ["tpm"]`): the hypervisor maps it
//! the TPM's TIS page (0xFED40000) and nothing else of the machine. At start it creates an
//! ECC P-256 restricted signing key in the endorsement hierarchy (`TPM2_CreatePrimary`,
//! deterministic: the same key at every boot of the same TPM), then serves its `attest`
//! channel forever: for every request (`policies::attest::Request`, built by the hypervisor
//! with the caller's name and nonce) it reads the SHA-256 PCRs 0–23, quotes them with the
//! nonce as qualifyingData, and answers a `policies::attest::Report`. A malformed request or a
//! failing TPM gets a report with a non-zero status — it always answers.
//!
//! The TPM commands and the TIS driver are `policies::tpm2` and `policies::tis`, the same code
//! the stub uses before the partitions start.
#![no_std]
#![no_main]

use core::fmt::Write;
use policies::attest::{Report, Request, STATUS_BAD_REQUEST, STATUS_NO_TPM};
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

/// The key: its handle and `TPMT_PUBLIC`.
struct Key {
    handle: u32,
    public: [u8; 256],
    public_len: usize,
}

fn create_key(tpm: &mut Tpm) -> Result<Key, u32> {
    let mut resp = [0u8; tpm2::MAX_RESPONSE];
    let params = tpm2::execute(
        tpm,
        CommandCode::CREATE_PRIMARY,
        &tpm2::create_primary_ecc_ak(),
        &mut resp,
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
    let mut tpm = Tis::new(PhysTis, Tsc(info.tsc_per_ms.max(1)));
    let key = create_key(&mut tpm);
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
    let mut req_buf = [0u8; 4096];
    let mut out = [0u8; 4096];
    loop {
        let Ok(n) = sdk::recv(channel, &mut req_buf) else {
            // The channel is gone (the hypervisor stopped the client): nothing left to serve.
            return 0;
        };
        let len = match req_buf.get(..n).map(Request::decode) {
            Some(Ok(req)) => answer(&mut tpm, &key, &req, &mut out),
            _ => {
                let bad = Report {
                    status: STATUS_BAD_REQUEST,
                    caller: &[],
                    nonce: &[],
                    bank: 0,
                    pcr_mask: 0,
                    digests: &[],
                    quote: &[],
                    signature: &[],
                    key: &[],
                };
                bad.encode(&mut out).unwrap_or(0)
            }
        };
        let _ = sdk::send(channel, out.get(..len).unwrap_or(&[]));
    }
}

/// Read the PCRs, quote them, encode the report into `out`; its length.
fn answer(tpm: &mut Tpm, key: &Result<Key, u32>, req: &Request<'_>, out: &mut [u8]) -> usize {
    let fail = |status: u32, out: &mut [u8]| {
        Report {
            status,
            caller: req.caller,
            nonce: req.nonce,
            bank: 0,
            pcr_mask: 0,
            digests: &[],
            quote: &[],
            signature: &[],
            key: &[],
        }
        .encode(out)
        .unwrap_or(0)
    };
    let key = match key {
        Ok(k) => k,
        Err(rc) => return fail(*rc, out),
    };
    // PCR_Read answers at most 8 digests per call: read until every PCR of the bank came.
    let mut digests = [0u8; 24 * 32];
    let mut have = PcrSet::EMPTY;
    let mut resp = [0u8; tpm2::MAX_RESPONSE];
    for _ in 0..8 {
        let want = PcrSet::ALL.without(have);
        if want.is_empty() {
            break;
        }
        let params = match tpm2::execute(
            tpm,
            CommandCode::PCR_READ,
            &tpm2::pcr_read(HashAlg::SHA256, want),
            &mut resp,
        ) {
            Ok(p) => p,
            Err(e) => return fail(rc_of(e), out),
        };
        let Ok(read) = tpm2::parse_pcr_read(params) else {
            return fail(STATUS_NO_TPM, out);
        };
        for (pcr, value) in read.values() {
            if let Some(d) = digests.get_mut(pcr as usize * 32..pcr as usize * 32 + 32)
                && value.len() == 32
            {
                d.copy_from_slice(value);
                have = PcrSet(have.0 | (1 << pcr));
            }
        }
    }
    if have != PcrSet::ALL {
        return fail(STATUS_NO_TPM, out);
    }
    let mut cmd = [0u8; tpm2::QUOTE_MAX];
    let Some(n) = tpm2::quote(key.handle, req.nonce, PcrSet::ALL, &mut cmd) else {
        return fail(STATUS_BAD_REQUEST, out);
    };
    let mut qresp = [0u8; tpm2::MAX_RESPONSE];
    let params = match tpm2::execute(
        tpm,
        CommandCode::QUOTE,
        cmd.get(..n).unwrap_or(&[]),
        &mut qresp,
    ) {
        Ok(p) => p,
        Err(e) => return fail(rc_of(e), out),
    };
    let Ok(q) = tpm2::parse_quote(params) else {
        return fail(STATUS_NO_TPM, out);
    };
    Report {
        status: 0,
        caller: req.caller,
        nonce: req.nonce,
        bank: HashAlg::SHA256.0,
        pcr_mask: PcrSet::ALL.0,
        digests: &digests,
        quote: q.attest,
        signature: q.signature,
        key: key.public.get(..key.public_len).unwrap_or(&[]),
    }
    .encode(out)
    .unwrap_or(0)
}
