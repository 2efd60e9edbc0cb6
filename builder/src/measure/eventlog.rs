//! `vmseal eventlog show`: decode and replay any TCG2 crypto-agile event log.
//!
//! The log is parsed by [`policies::eventlog::parse`] (which stops at a 0xFF tail, as EDK2
//! leaves one) and replayed with [`policies::replay::replay`] in every bank of its Spec ID
//! table that vmseal computes. Text output: one block per event (index, PCR, type by name or
//! `0x%08x`, every digest, the decoded description — raw hex for an unknown type), then the
//! final PCRs per bank. Events are numbered from 1, as `tpm2_eventlog`'s `EventNum` (whose 0 is
//! the Spec ID header). JSON output: a [`crate::measure::pcrs_json::PcrsFile`] (format 1, every PCR).
//! A corrupt, truncated or absurd log is a one-line error with the byte offset, never a panic.

use std::fmt::Write as _;
use std::path::Path;

use policies::eventlog::{EventLog, LogError};
use policies::replay::{Pcrs, ReplayError};

use crate::measure::describe;
use crate::measure::pcrs_json::{PcrsFile, bank_name};

/// Logs larger than this are refused (a real firmware log is tens of KiB; EDK2's area is
/// 64 KiB + the final-events table).
pub const MAX_LOG_BYTES: u64 = 64 << 20;

/// Why a log cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum EventlogError {
    /// Reading failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_LOG_BYTES`].
    #[error(
        "{file}: {size} bytes is not an event log (at most {MAX_LOG_BYTES} bytes) — give the binary_bios_measurements / eventlog.bin file"
    )]
    TooLarge {
        /// The file.
        file: String,
        /// Its size.
        size: u64,
    },
    /// The bytes are not a valid log.
    #[error(
        "{file}: {source} — give a TCG2 crypto-agile log (e.g. /sys/kernel/security/tpm0/binary_bios_measurements or a record's eventlog.bin)"
    )]
    Parse {
        /// The file.
        file: String,
        /// Where and what.
        source: LogError,
    },
    /// The log parses but cannot be replayed.
    #[error("{file}: cannot replay: {source}")]
    Replay {
        /// The file.
        file: String,
        /// Why.
        source: ReplayError,
    },
}

/// A parsed and replayed log.
#[derive(Clone, Debug)]
pub struct Shown {
    /// The log.
    pub log: EventLog,
    /// Its replay.
    pub pcrs: Pcrs,
}

/// Read, parse and replay the log at `path`.
pub fn load(path: &Path) -> Result<Shown, EventlogError> {
    let file = path.display().to_string();
    let size = std::fs::metadata(path)
        .map_err(|source| EventlogError::Io {
            file: file.clone(),
            source,
        })?
        .len();
    if size > MAX_LOG_BYTES {
        return Err(EventlogError::TooLarge { file, size });
    }
    let bytes = std::fs::read(path).map_err(|source| EventlogError::Io {
        file: file.clone(),
        source,
    })?;
    parse(&bytes, &file)
}

/// Parse and replay `bytes`; `file` names them in errors.
pub fn parse(bytes: &[u8], file: &str) -> Result<Shown, EventlogError> {
    let log = policies::eventlog::parse(bytes).map_err(|source| EventlogError::Parse {
        file: file.into(),
        source,
    })?;
    let pcrs = policies::replay::replay(&log).map_err(|source| EventlogError::Replay {
        file: file.into(),
        source,
    })?;
    Ok(Shown { log, pcrs })
}

/// The JSON form ([`PcrsFile`]).
pub fn to_json(s: &Shown, file: &str) -> PcrsFile {
    let mut sources = serde_json::Map::new();
    sources.insert("eventlog".into(), file.into());
    PcrsFile::from_log(&s.log, &s.pcrs, sources)
}

/// The text form.
pub fn render(s: &Shown) -> String {
    let mut out = String::new();
    let banks: Vec<String> = s
        .log
        .spec_id
        .algorithms
        .iter()
        .map(|(a, _)| bank_name(*a))
        .collect();
    let _ = writeln!(
        out,
        "event log: {} events, banks {}",
        s.log.events.len(),
        banks.join(", ")
    );
    for (i, e) in s.log.events.iter().enumerate() {
        let _ = writeln!(
            out,
            "#{:<3} PCR {:<2} {:<34} {}",
            i + 1,
            e.pcr,
            describe::type_name(e.event_type),
            describe::describe(e)
        );
        for (alg, d) in &e.digests {
            let _ = writeln!(out, "       {:<7} {}", bank_name(*alg), hex::encode(d));
        }
    }
    for alg in s.pcrs.banks() {
        let _ = writeln!(out, "PCRs {}:", bank_name(alg));
        for i in 0..policies::replay::NUM_PCRS as u32 {
            if let Some(v) = s.pcrs.get(alg, i) {
                let _ = writeln!(out, "  {i:>2}: {}", hex::encode(v));
            }
        }
    }
    out
}
