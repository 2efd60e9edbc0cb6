//! PCR replay: the values a TPM holds after the extends of an event log.
//!
//! Per bank: `PCR_new = H(PCR_old ‖ event_digest)` with the bank's own algorithm and the event's
//! digest for that bank (TPM 2.0 Part 1 §17.2 "PCR Extend"; `shared/reference/measured-boot.md`
//! §A.6). `EV_NO_ACTION` events are never extended (TCG PFP §10.4.1, `Tcg2Dxe.c →
//! TcgDxeHashLogExtendEvent` only logs them).
//!
//! Starting values ([`initial_value`]): after `TPM2_Startup(CLEAR)` at locality 0, PCR 0–16
//! and 23 are all zero; PCR 17–22 (the DRTM PCRs) are all 0xFF.
//!
//! Host-only, like [`crate::digest`].

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::fmt::Write as _;

use crate::digest::{Hasher, UnsupportedAlgorithm};
use crate::eventlog::{Event, EventLog};
use crate::tcg::{EventType, HashAlg};

/// Number of PCRs of a PC Client TPM.
pub const NUM_PCRS: usize = 24;

/// The value of `pcr` in bank `alg` right after `TPM2_Startup(CLEAR)` at locality 0: zeros for
/// PCR 0–16 and 23; all 0xFF for PCR 17–22.
///
/// **UNCONFIRMED** in the reference for PCR 17–22 (measured-boot.md §A.6, §G): the 0xFF start
/// is the TPM / PC Client rule for the DRTM PCRs, swtpm showed it over its socket
/// (`tpm-tis-and-commands.md` §B.4), and the dump `pcrs-uki-sb-off.txt` (read in the booted
/// guest) lists 0xFF for 17–22, which the fixture replay test checks — but no other platform
/// than swtpm + OVMF has been looked at. `None` for `pcr ≥ 24` or an algorithm of unknown size.
pub fn initial_value(alg: HashAlg, pcr: u32) -> Option<Vec<u8>> {
    let size = alg.digest_size()?;
    match pcr {
        0..=16 | 23 => Some(vec![0; size]),
        17..=22 => Some(vec![0xFF; size]),
        _ => None,
    }
}

/// Why a replay or a PCR dump failed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ReplayError {
    /// A bank vmseal cannot compute.
    Unsupported(UnsupportedAlgorithm),
    /// PCR index over 23.
    PcrOutOfRange(u32),
    /// An extended event has no digest for a replayed bank.
    MissingDigest {
        /// Index of the event in the log.
        event: usize,
        /// The bank.
        alg: HashAlg,
    },
    /// A digest whose length is not the bank's digest size.
    DigestSize {
        /// Index of the event in the log (or line number of a PCR dump, from 1).
        event: usize,
        /// The bank.
        alg: HashAlg,
        /// Length found.
        len: usize,
    },
    /// A line of a PCR dump that is not `PCR <bank> <index> <HEX>`.
    BadLine {
        /// Line number, from 1.
        line: usize,
        /// The line.
        text: String,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported(u) => u.fmt(f),
            Self::PcrOutOfRange(p) => write!(f, "PCR index {p} is over 23"),
            Self::MissingDigest { event, alg } => write!(
                f,
                "event {event} has no {} digest, so that bank cannot be replayed",
                alg.name().unwrap_or("?")
            ),
            Self::DigestSize { event, alg, len } => write!(
                f,
                "event {event}: {} digest is {len} bytes, expected {}",
                alg.name().unwrap_or("?"),
                alg.digest_size().unwrap_or(0)
            ),
            Self::BadLine { line, text } => {
                write!(f, "line {line} is not \"PCR <bank> <index> <HEX>\": {text:?}")
            }
        }
    }
}

impl core::error::Error for ReplayError {}

impl From<UnsupportedAlgorithm> for ReplayError {
    fn from(u: UnsupportedAlgorithm) -> Self {
        Self::Unsupported(u)
    }
}

/// PCR values per bank. `None` = not known (not replayed, not listed in a dump).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Pcrs {
    banks: BTreeMap<HashAlg, [Option<Vec<u8>>; NUM_PCRS]>,
}

impl Pcrs {
    /// No banks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every PCR of every bank in `banks` at its [`initial_value`].
    pub fn initial(banks: &[HashAlg]) -> Result<Self, ReplayError> {
        let mut p = Self::new();
        for alg in banks {
            Hasher::new(*alg)?;
            let mut i = 0u32;
            let bank = [(); NUM_PCRS].map(|()| {
                let v = initial_value(*alg, i);
                i += 1;
                v
            });
            p.banks.insert(*alg, bank);
        }
        Ok(p)
    }

    /// The banks present, in `TPM_ALG_ID` order.
    pub fn banks(&self) -> impl Iterator<Item = HashAlg> + '_ {
        self.banks.keys().copied()
    }

    /// All PCRs of one bank.
    pub fn bank(&self, alg: HashAlg) -> Option<&[Option<Vec<u8>>; NUM_PCRS]> {
        self.banks.get(&alg)
    }

    /// One value.
    pub fn get(&self, alg: HashAlg, pcr: u32) -> Option<&[u8]> {
        self.banks.get(&alg)?.get(pcr as usize)?.as_deref()
    }

    /// Set one value (adds the bank if needed).
    pub fn set(&mut self, alg: HashAlg, pcr: u32, value: Vec<u8>) -> Result<(), ReplayError> {
        let slot = self
            .banks
            .entry(alg)
            .or_insert_with(|| [(); NUM_PCRS].map(|()| None))
            .get_mut(pcr as usize)
            .ok_or(ReplayError::PcrOutOfRange(pcr))?;
        *slot = Some(value);
        Ok(())
    }

    /// `PCR[pcr] = H(PCR[pcr] ‖ digest)` in bank `alg`. A PCR that is `None` starts from its
    /// [`initial_value`].
    pub fn extend(&mut self, alg: HashAlg, pcr: u32, digest: &[u8]) -> Result<(), ReplayError> {
        let mut h = Hasher::new(alg)?;
        let old = match self.get(alg, pcr) {
            Some(v) => v.to_vec(),
            None => initial_value(alg, pcr).ok_or(ReplayError::PcrOutOfRange(pcr))?,
        };
        h.update(&old);
        h.update(digest);
        self.set(alg, pcr, h.finalize())
    }

    /// Apply the extends of `events` (skipping `EV_NO_ACTION`) in every bank already present.
    pub fn extend_events<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<(), ReplayError> {
        let banks: Vec<HashAlg> = self.banks().collect();
        for (i, e) in events.into_iter().enumerate() {
            if e.event_type == EventType::NO_ACTION {
                continue;
            }
            for alg in &banks {
                let d = e.digest(*alg).ok_or(ReplayError::MissingDigest { event: i, alg: *alg })?;
                if Some(d.len()) != alg.digest_size() {
                    return Err(ReplayError::DigestSize { event: i, alg: *alg, len: d.len() });
                }
                self.extend(*alg, e.pcr, d)?;
            }
        }
        Ok(())
    }

    /// Parse a PCR dump: lines `PCR <bank> <index> <HEX>` (the fixtures' `pcrs-*.txt`, hex in
    /// either case). Blank lines and lines starting with `#` are skipped.
    pub fn from_text(text: &str) -> Result<Self, ReplayError> {
        let mut p = Self::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let bad = || ReplayError::BadLine { line: line_no, text: line.into() };
            let mut it = t.split_ascii_whitespace();
            let (Some("PCR"), Some(bank), Some(idx), Some(hex), None) =
                (it.next(), it.next(), it.next(), it.next(), it.next())
            else {
                return Err(bad());
            };
            let alg = HashAlg::from_name(bank).ok_or_else(bad)?;
            let pcr: u32 = idx.parse().map_err(|_| bad())?;
            let value = from_hex(hex).ok_or_else(bad)?;
            if Some(value.len()) != alg.digest_size() {
                return Err(ReplayError::DigestSize { event: line_no, alg, len: value.len() });
            }
            p.set(alg, pcr, value).map_err(|_| bad())?;
        }
        Ok(p)
    }

    /// Write the known values as `PCR <bank> <index> <HEX>` lines (upper-case hex), banks in
    /// `TPM_ALG_ID` order, PCRs ascending: the inverse of [`Pcrs::from_text`].
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (alg, bank) in &self.banks {
            for (i, v) in bank.iter().enumerate() {
                if let Some(v) = v {
                    let _ = write!(s, "PCR {} {i} ", alg.name().unwrap_or("?"));
                    for b in v {
                        let _ = write!(s, "{b:02X}");
                    }
                    s.push('\n');
                }
            }
        }
        s
    }
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|c| core::str::from_utf8(c).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Replay a whole log in every bank of its Spec ID table that vmseal computes (an SM3 bank is
/// skipped: it cannot be computed).
pub fn replay(log: &EventLog) -> Result<Pcrs, ReplayError> {
    let banks: Vec<HashAlg> = log
        .spec_id
        .algorithms
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| Hasher::new(*a).is_ok())
        .collect();
    replay_events(&log.events, &banks)
}

/// Replay `events` from the start values in `banks`.
pub fn replay_events<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    banks: &[HashAlg],
) -> Result<Pcrs, ReplayError> {
    let mut p = Pcrs::initial(banks)?;
    p.extend_events(events)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::hash;

    #[test]
    fn separator_only_pcr_matches_the_reference() {
        // measured-boot.md §A.6: a PCR that only received the separator (digest = H(00000000)).
        let sep = Event {
            pcr: 2,
            event_type: EventType::SEPARATOR,
            digests: vec![(HashAlg::SHA256, hash(HashAlg::SHA256, &[0; 4]).unwrap())],
            data: vec![0; 4],
        };
        let noop = Event { event_type: EventType::NO_ACTION, digests: vec![], ..sep.clone() };
        let p = replay_events([&noop, &sep], &[HashAlg::SHA256]).unwrap();
        let text = p.to_text();
        assert!(text.contains(
            "PCR sha256 2 3D458CFE55CC03EA1F443F1562BEEC8DF51C75E14A9FCF9A7234A13F198E7969\n"
        ));
        assert!(text.contains(&alloc::format!("PCR sha256 17 {}\n", "FF".repeat(32))));
        assert_eq!(Pcrs::from_text(&text), Ok(p));
        assert!(matches!(
            replay_events([&sep], &[HashAlg::SHA1]),
            Err(ReplayError::MissingDigest { event: 0, .. })
        ));
        assert!(matches!(Pcrs::from_text("PCR sha256 x 00"), Err(ReplayError::BadLine { .. })));
        assert!(matches!(Pcrs::from_text("PCR sha256 24 00"), Err(ReplayError::DigestSize { .. })));
    }
}
