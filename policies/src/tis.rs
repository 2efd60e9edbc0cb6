//! A minimal polled TPM TIS (FIFO) driver, locality 0: the transport under
//! [`crate::tpm2`] after ExitBootServices, when EFI_TCG2_PROTOCOL is gone.
//!
//! The sequence is `shared/reference/tpm-tis-and-commands.md` §A.6 step by step (Linux
//! `tpm_tis_core.c`, EDK2 `Tpm2Tis.c`): take locality 0 (OVMF hands over with it held, §A.10),
//! commandReady, the command minus its last byte in burstCount runs with Expect checked after
//! each, the last byte with Expect clear, tpmGo, wait for dataAvail, the 10-byte header then
//! the rest honouring burstCount, dataAvail clear at the end — and commandReady always last,
//! also after an error. STS is read as one aligned 32-bit access (§A.9 item 2), the FIFO byte
//! by byte (§A.9 item 4). The locality is not given back (as EDK2: the next owner finds the
//! state OVMF left).
//!
//! The registers are behind [`Mmio`] and time behind [`Clock`] (the binary implements them
//! with volatile MMIO and the TSC; the tests with a simulated TIS). Every wait has a deadline
//! (§A.7 timeouts) and a poll limit, so a dead or absent TPM gives a [`TisError`], never a
//! hang or a panic.

use crate::record::{Token, write_dec, write_hex_0x};
use crate::tpm2::{HEADER_SIZE, Transport};
use core::fmt;

/// Physical base of the TIS register window (locality 0).
pub const BASE: u64 = 0xFED4_0000;
/// Size of the locality 0 window.
pub const WINDOW: u64 = 0x1000;

/// Register offsets in a locality window (§A.2).
pub mod reg {
    /// `TPM_ACCESS`, 8 bits.
    pub const ACCESS: u16 = 0x00;
    /// `TPM_STS`, 32 bits.
    pub const STS: u16 = 0x18;
    /// `TPM_DATA_FIFO`, 8 bits.
    pub const FIFO: u16 = 0x24;
}

/// `TPM_ACCESS` bits (§A.3).
pub mod access {
    /// tpmRegValidSts.
    pub const VALID: u8 = 0x80;
    /// activeLocality (write 1: relinquish).
    pub const ACTIVE: u8 = 0x20;
    /// pendingRequest.
    pub const PENDING: u8 = 0x04;
    /// requestUse.
    pub const REQUEST_USE: u8 = 0x02;
}

/// `TPM_STS` bits (§A.4).
pub mod sts {
    /// Expect: the TPM wants more command bytes.
    pub const EXPECT: u32 = 0x08;
    /// dataAvail: response bytes are waiting.
    pub const DATA_AVAIL: u32 = 0x10;
    /// tpmGo (write).
    pub const GO: u8 = 0x20;
    /// commandReady.
    pub const COMMAND_READY: u32 = 0x40;
    /// stsValid: Expect and dataAvail are meaningful.
    pub const VALID: u32 = 0x80;
    /// Bits that read 0 on a valid STS (Linux `TPM_STS_READ_ZERO`): a read with any of them
    /// set (e.g. 0xFFFFFFFF from a locality we do not own) is not a status.
    pub const READ_ZERO: u32 = 0x23;
}

/// Timeouts in milliseconds (§A.7; Linux/EDK2 values).
pub mod timeout {
    /// Locality granted; burstCount non-zero (Linux timeout_a, EDK2 TIS_TIMEOUT_A/D).
    pub const A: u64 = 750;
    /// commandReady after writing it (Linux timeout_b).
    pub const B: u64 = 4000;
    /// stsValid after FIFO accesses (EDK2 TIS_TIMEOUT_C).
    pub const C: u64 = 750;
    /// dataAvail after tpmGo. Linux allows 120 s, EDK2 90 s for any command; GetCapability and
    /// PCR_Read are short ones, and the boot runner's own timeout must stay larger.
    pub const RESPONSE: u64 = 30_000;
}

/// Upper bound on polls of one wait, whatever the clock says (a TSC that does not advance
/// must not turn a wait into a hang). An MMIO read under TCG costs at least ~100 ns.
pub const MAX_POLLS: u64 = 200_000_000;

/// The TIS registers of locality 0.
pub trait Mmio {
    /// Read the 8-bit register at `offset`.
    fn read8(&mut self, offset: u16) -> u8;
    /// Read the 32-bit register at `offset` (one aligned access).
    fn read32(&mut self, offset: u16) -> u32;
    /// Write the 8-bit register at `offset`.
    fn write8(&mut self, offset: u16, value: u8);
}

/// A monotonic time source.
pub trait Clock {
    /// The current time in ticks.
    fn now(&mut self) -> u64;
    /// Ticks per millisecond (at least 1).
    fn ticks_per_ms(&self) -> u64;
}

/// What a wait was waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// activeLocality after requestUse.
    Locality,
    /// commandReady after writing it.
    CommandReady,
    /// A non-zero burstCount.
    BurstCount,
    /// stsValid after FIFO accesses.
    StsValid,
    /// stsValid + dataAvail after tpmGo or between response chunks.
    DataAvail,
}

/// Why a TIS transaction failed. `Display` is one record-friendly token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TisError {
    /// TPM_ACCESS reads 0xFF (or without tpmRegValidSts): no TIS decoded at the base.
    NotPresent(u8),
    /// A wait passed its deadline; the last STS (or ACCESS) value read.
    Timeout(Wait, u32),
    /// Expect went to 0 before the last command byte: the TPM saw a shorter command.
    ExpectLost(u32),
    /// Expect still 1 after the last byte: the command's size field is larger than sent.
    ExpectStuck(u32),
    /// A command shorter than a header, or a response buffer smaller than one.
    ShortBuffer,
    /// The response header's size is under 10 or over the buffer.
    ResponseSize(u32),
    /// dataAvail still set after the whole response was read.
    LeftoverData(u32),
}

impl Token for TisError {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        let (word, value) = match *self {
            Self::NotPresent(a) => {
                w.write_str("tis-not-present-access-")?;
                return write_hex_0x(w, a.into(), 2);
            }
            Self::Timeout(wait, v) => {
                w.write_str("tis-timeout-")?;
                w.write_str(match wait {
                    Wait::Locality => "locality",
                    Wait::CommandReady => "command-ready",
                    Wait::BurstCount => "burst-count",
                    Wait::StsValid => "sts-valid",
                    Wait::DataAvail => "data-avail",
                })?;
                ("-", v)
            }
            Self::ExpectLost(s) => ("tis-expect-lost-", s),
            Self::ExpectStuck(s) => ("tis-expect-stuck-", s),
            Self::ShortBuffer => return w.write_str("tis-short-buffer"),
            Self::ResponseSize(n) => {
                w.write_str("tis-response-size-")?;
                return write_dec(w, n.into());
            }
            Self::LeftoverData(s) => ("tis-leftover-data-", s),
        };
        w.write_str(word)?;
        write_hex_0x(w, value.into(), 1)
    }
}

impl fmt::Display for TisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_token(f)
    }
}

/// The TIS driver over registers `M` and clock `C`.
pub struct Tis<M, C> {
    mmio: M,
    clock: C,
}

impl<M: Mmio, C: Clock> Tis<M, C> {
    /// A driver; touches no register until the first [`Transport::transact`].
    pub fn new(mmio: M, clock: C) -> Self {
        Self { mmio, clock }
    }

    /// The registers (tests inspect the fake).
    pub fn mmio(&mut self) -> &mut M {
        &mut self.mmio
    }

    /// Poll `read` until `done` holds for its value, at most `ms` milliseconds.
    fn wait(
        &mut self,
        ms: u64,
        what: Wait,
        read: impl Fn(&mut M) -> u32,
        done: impl Fn(u32) -> bool,
    ) -> Result<u32, TisError> {
        let start = self.clock.now();
        let limit = ms.saturating_mul(self.clock.ticks_per_ms().max(1));
        let mut last = 0;
        for _ in 0..MAX_POLLS {
            last = read(&mut self.mmio);
            if done(last) {
                return Ok(last);
            }
            if self.clock.now().wrapping_sub(start) > limit {
                break;
            }
            core::hint::spin_loop();
        }
        Err(TisError::Timeout(what, last))
    }

    /// Wait until STS is valid and `mask` bits are all set; returns STS.
    fn wait_sts(&mut self, ms: u64, what: Wait, mask: u32) -> Result<u32, TisError> {
        self.wait(
            ms,
            what,
            |m| m.read32(reg::STS),
            |s| s & sts::READ_ZERO == 0 && s & (sts::VALID | mask) == sts::VALID | mask,
        )
    }

    /// §A.6 (1): own locality 0.
    fn locality(&mut self) -> Result<(), TisError> {
        let a = self.mmio.read8(reg::ACCESS);
        if a == 0xFF || a & access::VALID == 0 {
            return Err(TisError::NotPresent(a));
        }
        let own = access::VALID | access::ACTIVE;
        if a & (own | access::PENDING) == own {
            return Ok(());
        }
        self.mmio.write8(reg::ACCESS, access::REQUEST_USE);
        self.wait(
            timeout::A,
            Wait::Locality,
            |m| u32::from(m.read8(reg::ACCESS)),
            |a| a & u32::from(own) == u32::from(own),
        )
        .map(drop)
    }

    /// A non-zero burstCount (STS bits 8–23).
    fn burst(&mut self) -> Result<usize, TisError> {
        let s = self.wait(
            timeout::A,
            Wait::BurstCount,
            |m| m.read32(reg::STS),
            |s| s & sts::READ_ZERO == 0 && (s >> 8) & 0xFFFF != 0,
        )?;
        Ok(((s >> 8) & 0xFFFF) as usize)
    }

    /// §A.6 (2): commandReady, the bytes, tpmGo.
    fn send(&mut self, cmd: &[u8]) -> Result<(), TisError> {
        let Some((last, body)) = cmd.split_last() else {
            return Err(TisError::ShortBuffer);
        };
        let s = self.mmio.read32(reg::STS);
        if s & sts::READ_ZERO != 0 || s & sts::COMMAND_READY == 0 {
            self.mmio.write8(reg::STS, sts::COMMAND_READY as u8);
            self.wait_sts(timeout::B, Wait::CommandReady, sts::COMMAND_READY)?;
        }
        let mut rest = body;
        while !rest.is_empty() {
            let n = self.burst()?.min(rest.len());
            let (run, tail) = rest.split_at(n);
            for b in run {
                self.mmio.write8(reg::FIFO, *b);
            }
            rest = tail;
            let s = self.wait_sts(timeout::C, Wait::StsValid, 0)?;
            if s & sts::EXPECT == 0 {
                return Err(TisError::ExpectLost(s));
            }
        }
        self.burst()?;
        self.mmio.write8(reg::FIFO, *last);
        let s = self.wait_sts(timeout::C, Wait::StsValid, 0)?;
        if s & sts::EXPECT != 0 {
            return Err(TisError::ExpectStuck(s));
        }
        self.mmio.write8(reg::STS, sts::GO);
        Ok(())
    }

    /// Read `buf.len()` response bytes, waiting for dataAvail and honouring burstCount.
    fn read_fifo(&mut self, buf: &mut [u8], ms: u64) -> Result<(), TisError> {
        let mut rest = buf;
        while !rest.is_empty() {
            let s = self.wait_sts(ms, Wait::DataAvail, sts::DATA_AVAIL)?;
            let burst = ((s >> 8) & 0xFFFF) as usize;
            let n = if burst == 0 { self.burst()? } else { burst }.min(rest.len());
            let (run, tail) = rest.split_at_mut(n);
            for b in run {
                *b = self.mmio.read8(reg::FIFO);
            }
            rest = tail;
        }
        Ok(())
    }

    /// §A.6 (3): the response into `resp`; returns its length.
    fn recv(&mut self, resp: &mut [u8]) -> Result<usize, TisError> {
        let (head, _) = resp.split_at_mut_checked(HEADER_SIZE).ok_or(TisError::ShortBuffer)?;
        self.read_fifo(head, timeout::RESPONSE)?;
        let size = head
            .get(2..6)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or(TisError::ShortBuffer)?;
        let n = usize::try_from(size).unwrap_or(usize::MAX);
        if n < HEADER_SIZE || n > resp.len() {
            return Err(TisError::ResponseSize(size));
        }
        let body = resp.get_mut(HEADER_SIZE..n).ok_or(TisError::ResponseSize(size))?;
        self.read_fifo(body, timeout::C)?;
        let s = self.wait_sts(timeout::C, Wait::StsValid, 0)?;
        if s & sts::DATA_AVAIL != 0 {
            return Err(TisError::LeftoverData(s));
        }
        Ok(n)
    }
}

impl<M: Mmio, C: Clock> Transport for Tis<M, C> {
    type Error = TisError;

    fn transact(&mut self, cmd: &[u8], resp: &mut [u8]) -> Result<usize, TisError> {
        if cmd.len() < HEADER_SIZE || resp.len() < HEADER_SIZE {
            return Err(TisError::ShortBuffer);
        }
        self.locality()?;
        let r = self.send(cmd).and_then(|()| self.recv(resp));
        // §A.6 (4): always end with commandReady (back to Ready; aborts a half-done command).
        self.mmio.write8(reg::STS, sts::COMMAND_READY as u8);
        r
    }

    fn backoff(&mut self, attempt: u32) {
        // Linux: 20 ms, doubling (tpm_transmit); capped at ~1 s here.
        let ms = 20u64 << attempt.min(6);
        let start = self.clock.now();
        let ticks = ms.saturating_mul(self.clock.ticks_per_ms());
        for _ in 0..MAX_POLLS {
            if self.clock.now().wrapping_sub(start) > ticks {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcg::HashAlg;
    use crate::tpm2::{self, PcrSet};
    use alloc::format;
    use alloc::vec;
    use alloc::vec::Vec;

    /// QEMU's TIS state machine (§A.6, §A.9), small enough to follow: Idle → Ready →
    /// Reception → Completion, burstCount `burst` (QEMU: 4096; real parts: small), the
    /// "TPM" answering each command with `respond`.
    struct FakeTis {
        active: bool,
        ready: bool,
        cmd: Vec<u8>,
        resp: Vec<u8>,
        pos: usize,
        burst: u32,
        respond: fn(&[u8]) -> Vec<u8>,
        /// Ignore requestUse (a locality that is never granted).
        deaf: bool,
        /// Count of commandReady writes, tpmGo writes.
        ready_writes: u32,
        commands: Vec<Vec<u8>>,
    }

    impl FakeTis {
        fn new(respond: fn(&[u8]) -> Vec<u8>) -> Self {
            Self {
                active: false,
                ready: false,
                cmd: Vec::new(),
                resp: Vec::new(),
                pos: 0,
                burst: 7,
                respond,
                deaf: false,
                ready_writes: 0,
                commands: Vec::new(),
            }
        }

        fn expected_len(&self) -> Option<usize> {
            self.cmd.get(2..6).map(|b| u32::from_be_bytes(b.try_into().unwrap()) as usize)
        }
    }

    impl Mmio for FakeTis {
        fn read8(&mut self, offset: u16) -> u8 {
            match offset {
                reg::ACCESS => 0x81 | if self.active { 0x20 } else { 0 },
                reg::FIFO if self.pos < self.resp.len() => {
                    self.pos += 1;
                    self.resp[self.pos - 1]
                }
                _ => 0xFF,
            }
        }

        fn read32(&mut self, offset: u16) -> u32 {
            assert_eq!(offset, reg::STS);
            if !self.active {
                return 0xFFFF_FFFF;
            }
            let mut s = 0x0400_0000 | sts::VALID;
            if self.ready {
                s |= sts::COMMAND_READY;
            }
            let left = self.resp.len() - self.pos;
            if left > 0 {
                s |= sts::DATA_AVAIL | (left.min(self.burst as usize) as u32) << 8;
            } else {
                s |= self.burst << 8;
                if !self.cmd.is_empty() && self.expected_len().is_none_or(|n| self.cmd.len() < n) {
                    s |= sts::EXPECT;
                }
            }
            s
        }

        fn write8(&mut self, offset: u16, value: u8) {
            match (offset, value) {
                (reg::ACCESS, access::REQUEST_USE) if !self.deaf => self.active = true,
                (reg::STS, 0x40) => {
                    self.ready_writes += 1;
                    self.ready = true;
                    self.cmd.clear();
                    self.resp.clear();
                    self.pos = 0;
                }
                (reg::STS, sts::GO) => {
                    self.commands.push(self.cmd.clone());
                    self.resp = (self.respond)(&self.cmd);
                    self.pos = 0;
                    self.ready = false;
                }
                (reg::FIFO, b) if self.ready => self.cmd.push(b),
                _ => {}
            }
        }
    }

    /// One tick per call: deadlines are poll counts.
    struct Ticks(u64);

    impl Clock for Ticks {
        fn now(&mut self) -> u64 {
            self.0 += 1;
            self.0
        }
        fn ticks_per_ms(&self) -> u64 {
            1
        }
    }

    /// §B.3's four-bank answer, and PCR_Read answers with value `[pcr; size]`.
    fn swtpm(cmd: &[u8]) -> Vec<u8> {
        if cmd == tpm2::get_capability_pcrs() {
            let mut r = vec![0x80, 0x01, 0, 0, 0, 0x2b, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 4];
            for a in [4u8, 0x0b, 0x0c, 0x0d] {
                r.extend_from_slice(&[0, a, 3, 0xff, 0xff, 0xff]);
            }
            return r;
        }
        let alg = HashAlg(u16::from_be_bytes([cmd[14], cmd[15]]));
        let size = alg.digest_size().unwrap();
        let mut sel = u32::from_le_bytes([cmd[17], cmd[18], cmd[19], 0]);
        while sel.count_ones() > 8 {
            sel &= !(1 << (31 - sel.leading_zeros()));
        }
        let mut r = vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 1];
        r.extend_from_slice(&cmd[14..16]);
        r.push(3);
        r.extend_from_slice(&sel.to_le_bytes()[..3]);
        r.extend_from_slice(&sel.count_ones().to_be_bytes());
        for i in PcrSet(sel).iter() {
            r.extend_from_slice(&(size as u16).to_be_bytes());
            r.extend(core::iter::repeat_n(i as u8, size));
        }
        let n = r.len() as u32;
        r[2..6].copy_from_slice(&n.to_be_bytes());
        r
    }

    #[test]
    fn reads_all_banks_through_the_fifo() {
        let mut tis = Tis::new(FakeTis::new(swtpm), Ticks(0));
        let banks = tpm2::read_banks(&mut tis).unwrap();
        let v = tpm2::read_pcrs(&mut tis, &banks).unwrap();
        assert_eq!(v.banks().count(), 4);
        assert_eq!(v.bank(HashAlg::SHA512).unwrap().get(17), Some(&[17u8; 64][..]));
        let m = tis.mmio();
        // 1 GetCapability + 4 banks × 3 chunks, each command byte-exact; commandReady once to
        // leave Idle, then after every command (which leaves the TIS Ready for the next).
        assert_eq!(m.commands.len(), 13);
        assert_eq!(m.commands[0], tpm2::get_capability_pcrs());
        assert_eq!(m.commands[1], tpm2::pcr_read(HashAlg::SHA1, PcrSet::ALL));
        assert_eq!(m.commands[2], tpm2::pcr_read(HashAlg::SHA1, PcrSet(0xFF_FF00)));
        assert_eq!(m.ready_writes, 14);
        assert!(m.resp.is_empty());
    }

    #[test]
    fn failures_are_errors_not_hangs() {
        let mut resp = [0u8; 64];
        // Nothing at the address: ACCESS reads 0xFF.
        struct Absent;
        impl Mmio for Absent {
            fn read8(&mut self, _: u16) -> u8 {
                0xFF
            }
            fn read32(&mut self, _: u16) -> u32 {
                u32::MAX
            }
            fn write8(&mut self, _: u16, _: u8) {}
        }
        let cmd = tpm2::get_capability_pcrs();
        let mut tis = Tis::new(Absent, Ticks(0));
        assert_eq!(tis.transact(&cmd, &mut resp), Err(TisError::NotPresent(0xFF)));

        let mut fake = FakeTis::new(swtpm);
        fake.deaf = true;
        let mut tis = Tis::new(fake, Ticks(0));
        assert_eq!(tis.transact(&cmd, &mut resp), Err(TisError::Timeout(Wait::Locality, 0x81)));

        // A TPM that never answers: dataAvail times out, commandReady is still written.
        let mut tis = Tis::new(FakeTis::new(|_| Vec::new()), Ticks(0));
        assert!(matches!(
            tis.transact(&cmd, &mut resp),
            Err(TisError::Timeout(Wait::DataAvail, _))
        ));
        assert_eq!(tis.mmio().ready_writes, 2);

        // A command whose size field says more than we send: Expect stays set.
        let mut long = cmd;
        long[5] = 23;
        let mut tis = Tis::new(FakeTis::new(swtpm), Ticks(0));
        assert!(matches!(tis.transact(&long, &mut resp), Err(TisError::ExpectStuck(_))));
        // ...and one that says less: Expect drops before the last byte.
        let mut short = cmd;
        short[5] = 12;
        let mut tis = Tis::new(FakeTis::new(swtpm), Ticks(0));
        assert!(matches!(tis.transact(&short, &mut resp), Err(TisError::ExpectLost(_))));

        // A response larger than the buffer.
        let mut tis = Tis::new(FakeTis::new(swtpm), Ticks(0));
        assert_eq!(tis.transact(&cmd, &mut resp[..20]), Err(TisError::ResponseSize(43)));
        // A response whose size field is smaller than what the TPM has: left-over data.
        let mut tis =
            Tis::new(FakeTis::new(|_| vec![0x80, 0x01, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0xAA]), Ticks(0));
        assert!(matches!(tis.transact(&cmd, &mut resp), Err(TisError::LeftoverData(_))));
        assert_eq!(
            format!("{}", TisError::Timeout(Wait::DataAvail, 0x90)),
            "tis-timeout-data-avail-0x90"
        );
    }
}
