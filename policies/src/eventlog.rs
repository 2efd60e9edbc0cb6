//! The TCG2 crypto-agile event log: parse, serialize, the Final Events Table, and merge.
//!
//! Format (TCG PC Client PFP §10; EDK2 `MdePkg/Include/IndustryStandard/UefiTcgPlatform.h`,
//! `SecurityPkg/Tcg/Tcg2Dxe/Tcg2Dxe.c → SetupEventLog, TcgDxeLogHashEvent`;
//! `shared/reference/measured-boot.md` §A.3–A.4), all little-endian, packed:
//!
//! 1. One legacy `TCG_PCR_EVENT`: PCRIndex u32 (0), EventType u32 (`EV_NO_ACTION`), a 20-byte
//!    SHA-1-sized digest (zero), EventSize u32, then `TCG_EfiSpecIDEventStruct` ([`SpecId`]),
//!    which lists every algorithm the later entries carry and its digest size.
//! 2. Any number of `TCG_PCR_EVENT2`: PCRIndex u32, EventType u32, digest count u32, count ×
//!    (`TPM_ALG_ID` u16, digest of the size the Spec ID table gives), EventSize u32, event data.
//!
//! **Padding.** EDK2 fills the whole log area with 0xFF before writing the first entry ("To
//! initialize them as 0xFF is recommended because the OS can know the last entry for that",
//! `Tcg2Dxe.c → SetupEventLog`), so a copy of the whole area ends in 0xFF bytes. [`parse`]
//! therefore stops cleanly where an entry would start and **every** remaining byte is 0xFF
//! (PCR index 0xFFFFFFFF is never valid). A zero-filled tail is *not* accepted: EDK2 never
//! leaves one, and zeros would be a well-formed PCR 0 event with no digests. Linux's
//! `binary_bios_measurements` (the fixtures) has no padding at all. [`EventLog::serialize`]
//! writes no padding.
//!
//! Limits (bad input gives a [`LogError`] naming the byte offset, never a panic): at most
//! [`MAX_DIGESTS`] digests per event and algorithms in the Spec ID table; every digest's
//! algorithm must be listed in the table, at most once per event; event data no longer than
//! the bytes left; PCR index at most 23.
//!
//! The payload decoder for the events on the boot path is [`Event::describe`].

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::reader::Reader;
use crate::tcg::{EventType, HashAlg};

/// Most digests per event / algorithms in the Spec ID table: the five banks EDK2 knows
/// (SHA1, SHA256, SHA384, SHA512, SM3_256; `Tcg2Dxe.c → mTcg2EventInfo`, `HASH_COUNT`).
pub const MAX_DIGESTS: u32 = 5;
/// Largest digest size accepted in the Spec ID table (SHA-512).
pub const MAX_DIGEST_SIZE: u16 = 64;
/// Highest PCR index of a TPM 2.0 PC Client TPM (24 PCRs).
pub const MAX_PCR: u32 = 23;
/// `"Spec ID Event03\0"`, the signature of [`SpecId`] (`TCG_EfiSpecIDEventStruct_SIGNATURE_03`).
pub const SPEC_ID_SIGNATURE: [u8; 16] = *b"Spec ID Event03\0";

/// `TCG_EfiSpecIDEventStruct` (`UefiTcgPlatform.h`), the event data of the first log entry.
///
/// | off | size | field |
/// | --- | --- | --- |
/// | 0 | 16 | signature [`SPEC_ID_SIGNATURE`] |
/// | 16 | 4 | platformClass |
/// | 20 | 1 | specVersionMinor |
/// | 21 | 1 | specVersionMajor |
/// | 22 | 1 | specErrata |
/// | 23 | 1 | uintnSize (2 = UINT64) |
/// | 24 | 4 | numberOfAlgorithms |
/// | 28 | 4·n | `{ algorithmId u16, digestSize u16 }` |
/// | 28+4n | 1 | vendorInfoSize |
/// | 29+4n | v | vendorInfo |
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SpecId {
    /// `platformClass` (0 = client).
    pub platform_class: u32,
    /// `specVersionMinor`.
    pub spec_version_minor: u8,
    /// `specVersionMajor`.
    pub spec_version_major: u8,
    /// `specErrata`.
    pub spec_errata: u8,
    /// `uintnSize`.
    pub uintn_size: u8,
    /// The algorithms of the log and their digest sizes, in log order.
    pub algorithms: Vec<(HashAlg, u16)>,
    /// `vendorInfo`.
    pub vendor_info: Vec<u8>,
}

/// One `TCG_PCR_EVENT2` entry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Event {
    /// PCRIndex.
    pub pcr: u32,
    /// EventType.
    pub event_type: EventType,
    /// The digests, in log order.
    pub digests: Vec<(HashAlg, Vec<u8>)>,
    /// The event data.
    pub data: Vec<u8>,
}

/// A parsed crypto-agile event log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EventLog {
    /// The algorithm table of the first (legacy-format) entry.
    pub spec_id: SpecId,
    /// Every `TCG_PCR_EVENT2` entry after it, in log order.
    pub events: Vec<Event>,
}

/// `EFI_TCG2_FINAL_EVENTS_TABLE` (`MdePkg/Include/Protocol/Tcg2Protocol.h`; Linux
/// `struct efi_tcg2_final_events_table`): Version u64 (1), NumberOfEvents u64, then that many
/// `TCG_PCR_EVENT2` entries. See `shared/reference/tpm-tis-and-commands.md` §C.6.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FinalEvents {
    /// `Version` (always 1 so far).
    pub version: u64,
    /// The events, in order; `events.len()` == `NumberOfEvents`.
    pub events: Vec<Event>,
}

/// What is wrong with an event log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum LogErrorKind {
    /// The input ends inside a field.
    Truncated(&'static str),
    /// The first entry is not PCR 0 / `EV_NO_ACTION`.
    NotSpecIdHeader {
        /// PCRIndex found.
        pcr: u32,
        /// EventType found.
        event_type: EventType,
    },
    /// The first entry's data does not start with [`SPEC_ID_SIGNATURE`].
    BadSpecIdSignature([u8; 16]),
    /// The Spec ID event's size disagrees with its contents.
    SpecIdSize {
        /// EventSize of the first entry.
        event_size: u32,
        /// Size its contents need.
        expected: usize,
    },
    /// More than [`MAX_DIGESTS`] algorithms in the table or digests in an event.
    TooManyDigests(u32),
    /// A digest size in the table that is 0, over [`MAX_DIGEST_SIZE`], or differs from the
    /// algorithm's known size.
    BadDigestSize(HashAlg, u16),
    /// An algorithm listed twice in the table or an event.
    DuplicateAlgorithm(HashAlg),
    /// A digest whose algorithm is not in the Spec ID table (so its size is unknown).
    UnknownAlgorithm(HashAlg),
    /// PCR index over [`MAX_PCR`].
    PcrOutOfRange(u32),
    /// EventSize larger than the bytes left.
    EventTooLarge {
        /// EventSize found.
        size: u32,
        /// Bytes left after the field.
        remaining: usize,
    },
    /// A Final Events Table version other than 1.
    UnsupportedFinalVersion(u64),
    /// NumberOfEvents larger than the bytes could hold.
    TooManyEvents(u64),
}

/// An event-log parse error: what and where.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LogError {
    /// Byte offset of the offending field from the start of the input.
    pub offset: usize,
    /// Index of the `TCG_PCR_EVENT2` entry being parsed (`None` for the header).
    pub event: Option<usize>,
    /// What is wrong.
    pub kind: LogErrorKind,
}

impl fmt::Display for LogErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(what) => write!(f, "log ends inside {what}"),
            Self::NotSpecIdHeader { pcr, event_type } => write!(
                f,
                "first entry is PCR {pcr} type {:#x}, expected the PCR 0 EV_NO_ACTION Spec ID event (not a TCG2 crypto-agile log?)",
                event_type.0
            ),
            Self::BadSpecIdSignature(s) => {
                write!(f, "Spec ID signature is {s:02x?}, expected \"Spec ID Event03\\0\"")
            }
            Self::SpecIdSize { event_size, expected } => {
                write!(f, "Spec ID event size is {event_size}, its contents need {expected}")
            }
            Self::TooManyDigests(n) => write!(f, "{n} digests/algorithms, at most {MAX_DIGESTS}"),
            Self::BadDigestSize(a, s) => {
                write!(f, "digest size {s} for algorithm {:#06x} is wrong", a.0)
            }
            Self::DuplicateAlgorithm(a) => write!(f, "algorithm {:#06x} listed twice", a.0),
            Self::UnknownAlgorithm(a) => {
                write!(f, "digest algorithm {:#06x} is not in the Spec ID table", a.0)
            }
            Self::PcrOutOfRange(p) => write!(f, "PCR index {p} is over {MAX_PCR}"),
            Self::EventTooLarge { size, remaining } => {
                write!(f, "event size {size} is larger than the {remaining} bytes left")
            }
            Self::UnsupportedFinalVersion(v) => {
                write!(f, "Final Events Table version {v} is not supported (expected 1)")
            }
            Self::TooManyEvents(n) => {
                write!(f, "Final Events Table claims {n} events, more than its bytes can hold")
            }
        }
    }
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.event {
            Some(i) => write!(f, "event log entry {i} at offset {:#x}: {}", self.offset, self.kind),
            None => write!(f, "event log header at offset {:#x}: {}", self.offset, self.kind),
        }
    }
}

impl core::error::Error for LogError {}

/// Parse state shared by the log and the Final Events Table parsers.
struct Parser<'a, 'b> {
    r: Reader<'a>,
    event: Option<usize>,
    spec_id: &'b SpecId,
}

fn err(offset: usize, event: Option<usize>, kind: LogErrorKind) -> LogError {
    LogError { offset, event, kind }
}

impl Parser<'_, '_> {
    fn fail(&self, offset: usize, kind: LogErrorKind) -> LogError {
        err(offset, self.event, kind)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, LogError> {
        let at = self.r.offset();
        self.r.u32().ok_or_else(|| self.fail(at, LogErrorKind::Truncated(what)))
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<Vec<u8>, LogError> {
        let at = self.r.offset();
        self.r
            .bytes(n)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| self.fail(at, LogErrorKind::Truncated(what)))
    }

    /// One `TCG_PCR_EVENT2`.
    fn event2(&mut self) -> Result<Event, LogError> {
        let at = self.r.offset();
        let pcr = self.u32("PCRIndex")?;
        if pcr > MAX_PCR {
            return Err(self.fail(at, LogErrorKind::PcrOutOfRange(pcr)));
        }
        let event_type = EventType(self.u32("EventType")?);
        let at = self.r.offset();
        let count = self.u32("digest count")?;
        if count > MAX_DIGESTS {
            return Err(self.fail(at, LogErrorKind::TooManyDigests(count)));
        }
        let mut digests: Vec<(HashAlg, Vec<u8>)> = Vec::new();
        for _ in 0..count {
            let at = self.r.offset();
            let alg = self
                .r
                .u16()
                .map(HashAlg)
                .ok_or_else(|| self.fail(at, LogErrorKind::Truncated("digest algorithm")))?;
            let size = self
                .spec_id
                .digest_size(alg)
                .ok_or_else(|| self.fail(at, LogErrorKind::UnknownAlgorithm(alg)))?;
            if digests.iter().any(|(a, _)| *a == alg) {
                return Err(self.fail(at, LogErrorKind::DuplicateAlgorithm(alg)));
            }
            digests.push((alg, self.bytes(usize::from(size), "digest")?));
        }
        let at = self.r.offset();
        let size = self.u32("EventSize")?;
        let remaining = self.r.remaining();
        if size as usize > remaining {
            return Err(self.fail(at, LogErrorKind::EventTooLarge { size, remaining }));
        }
        let data = self.bytes(size as usize, "event data")?;
        Ok(Event { pcr, event_type, digests, data })
    }
}

impl SpecId {
    /// The digest size the table gives for `alg`.
    pub fn digest_size(&self, alg: HashAlg) -> Option<u16> {
        self.algorithms.iter().find(|(a, _)| *a == alg).map(|(_, s)| *s)
    }

    /// Decode `TCG_EfiSpecIDEventStruct` from the first entry's event data (exactly).
    /// `base` is the data's offset in the log, for error offsets.
    pub fn parse(data: &[u8], base: usize) -> Result<Self, LogError> {
        let mut r = Reader::new(data);
        let e = |r: &Reader<'_>, kind| err(base + r.offset(), None, kind);
        let t = |r: &Reader<'_>, what| e(r, LogErrorKind::Truncated(what));
        let sig: [u8; 16] = r.array().ok_or_else(|| t(&r, "Spec ID signature"))?;
        if sig != SPEC_ID_SIGNATURE {
            return Err(err(base, None, LogErrorKind::BadSpecIdSignature(sig)));
        }
        let platform_class = r.u32().ok_or_else(|| t(&r, "platformClass"))?;
        let [spec_version_minor, spec_version_major, spec_errata, uintn_size] =
            r.array().ok_or_else(|| t(&r, "Spec ID version fields"))?;
        let count = r.u32().ok_or_else(|| t(&r, "numberOfAlgorithms"))?;
        if count > MAX_DIGESTS {
            return Err(e(&r, LogErrorKind::TooManyDigests(count)));
        }
        let mut algorithms: Vec<(HashAlg, u16)> = Vec::new();
        for _ in 0..count {
            let at = r.clone();
            let alg = HashAlg(r.u16().ok_or_else(|| t(&r, "algorithmId"))?);
            let size = r.u16().ok_or_else(|| t(&r, "digestSize"))?;
            let known = alg.digest_size().is_none_or(|k| k == usize::from(size));
            if size == 0 || size > MAX_DIGEST_SIZE || !known {
                return Err(e(&at, LogErrorKind::BadDigestSize(alg, size)));
            }
            if algorithms.iter().any(|(a, _)| *a == alg) {
                return Err(e(&at, LogErrorKind::DuplicateAlgorithm(alg)));
            }
            algorithms.push((alg, size));
        }
        let vendor_size =
            r.bytes(1).and_then(|b| b.first().copied()).ok_or_else(|| t(&r, "vendorInfoSize"))?;
        let vendor_info =
            r.bytes(usize::from(vendor_size)).ok_or_else(|| t(&r, "vendorInfo"))?.to_vec();
        let spec = Self {
            platform_class,
            spec_version_minor,
            spec_version_major,
            spec_errata,
            uintn_size,
            algorithms,
            vendor_info,
        };
        if r.remaining() != 0 {
            return Err(err(
                base,
                None,
                LogErrorKind::SpecIdSize {
                    event_size: u32::try_from(data.len()).unwrap_or(u32::MAX),
                    expected: spec.encoded_len(),
                },
            ));
        }
        Ok(spec)
    }

    /// Size of [`SpecId::serialize`]'s output.
    pub fn encoded_len(&self) -> usize {
        29 + 4 * self.algorithms.len() + self.vendor_info.len()
    }

    /// Encode `TCG_EfiSpecIDEventStruct`.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&SPEC_ID_SIGNATURE);
        out.extend_from_slice(&self.platform_class.to_le_bytes());
        out.extend_from_slice(&[
            self.spec_version_minor,
            self.spec_version_major,
            self.spec_errata,
            self.uintn_size,
        ]);
        out.extend_from_slice(&len_u32(self.algorithms.len()).to_le_bytes());
        for (alg, size) in &self.algorithms {
            out.extend_from_slice(&alg.0.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
        }
        out.push(u8::try_from(self.vendor_info.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&self.vendor_info);
        out
    }

    /// The Spec ID EDK2 writes for the given banks (platform class 0, spec 2.0, errata 0,
    /// UINT64, no vendor info; `Tcg2Dxe.c → SetupEventLog`).
    pub fn edk2(banks: &[HashAlg]) -> Self {
        Self {
            platform_class: 0,
            spec_version_minor: 0,
            spec_version_major: 2,
            spec_errata: 0,
            uintn_size: 2,
            algorithms: banks
                .iter()
                .filter_map(|a| Some((*a, u16::try_from(a.digest_size()?).ok()?)))
                .collect(),
            vendor_info: Vec::new(),
        }
    }
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Event {
    /// The digest of bank `alg`, if the event carries one.
    pub fn digest(&self, alg: HashAlg) -> Option<&[u8]> {
        self.digests.iter().find(|(a, _)| *a == alg).map(|(_, d)| d.as_slice())
    }

    /// Append the `TCG_PCR_EVENT2` encoding.
    pub fn serialize_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pcr.to_le_bytes());
        out.extend_from_slice(&self.event_type.0.to_le_bytes());
        out.extend_from_slice(&len_u32(self.digests.len()).to_le_bytes());
        for (alg, d) in &self.digests {
            out.extend_from_slice(&alg.0.to_le_bytes());
            out.extend_from_slice(d);
        }
        out.extend_from_slice(&len_u32(self.data.len()).to_le_bytes());
        out.extend_from_slice(&self.data);
    }
}

/// Parse the first (legacy `TCG_PCR_EVENT`) entry: returns the Spec ID table and the entry's
/// size in bytes (where the first `TCG_PCR_EVENT2` starts).
pub fn parse_header(bytes: &[u8]) -> Result<(SpecId, usize), LogError> {
    let mut r = Reader::new(bytes);
    let t = |r: &Reader<'_>, what| err(r.offset(), None, LogErrorKind::Truncated(what));
    let pcr = r.u32().ok_or_else(|| t(&r, "PCRIndex"))?;
    let event_type = EventType(r.u32().ok_or_else(|| t(&r, "EventType"))?);
    if pcr != 0 || event_type != EventType::NO_ACTION {
        return Err(err(0, None, LogErrorKind::NotSpecIdHeader { pcr, event_type }));
    }
    // The SHA-1-sized digest of the legacy header is zero in every log EDK2 writes; its value
    // is not interpreted (TCG PFP §10.4.5.1).
    r.bytes(20).ok_or_else(|| t(&r, "header digest"))?;
    let at = r.offset();
    let size = r.u32().ok_or_else(|| t(&r, "EventSize"))?;
    let remaining = r.remaining();
    if size as usize > remaining {
        return Err(err(at, None, LogErrorKind::EventTooLarge { size, remaining }));
    }
    let base = r.offset();
    let data = r.bytes(size as usize).ok_or_else(|| t(&r, "Spec ID event"))?;
    Ok((SpecId::parse(data, base)?, r.offset()))
}

/// Size in bytes of the `TCG_PCR_EVENT2` at the start of `bytes`, using the digest sizes of
/// `spec_id`. This is what a loader needs to turn GetEventLog's `EventLogLastEntry` into the
/// log's length: `(LastEntry − Location) + event_size(LastEntry)` (tpm-tis-and-commands.md §C.4,
/// Linux `__calc_tpm2_event_size`).
pub fn event_size(bytes: &[u8], spec_id: &SpecId) -> Result<usize, LogError> {
    let mut p = Parser { r: Reader::new(bytes), event: None, spec_id };
    p.event2()?;
    Ok(p.r.offset())
}

/// Parse a crypto-agile log (header + `TCG_PCR_EVENT2` entries), stopping at the end or at a
/// tail of 0xFF bytes (see the module docs).
pub fn parse(bytes: &[u8]) -> Result<EventLog, LogError> {
    let (spec_id, start) = parse_header(bytes)?;
    let mut r = Reader::new(bytes);
    r.bytes(start).ok_or(err(0, None, LogErrorKind::Truncated("header")))?;
    let mut p = Parser { r, event: Some(0), spec_id: &spec_id };
    let mut events = Vec::new();
    while p.r.remaining() != 0 {
        if p.r.clone().bytes(p.r.remaining()).is_some_and(|rest| rest.iter().all(|b| *b == 0xFF)) {
            break;
        }
        p.event = Some(events.len());
        events.push(p.event2()?);
    }
    Ok(EventLog { spec_id, events })
}

impl EventLog {
    /// Encode the log: the legacy header with the Spec ID event, then every event. Identical
    /// to the input of [`parse`] for a log without 0xFF padding.
    pub fn serialize(&self) -> Vec<u8> {
        let spec = self.spec_id.serialize();
        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&EventType::NO_ACTION.0.to_le_bytes());
        out.extend_from_slice(&[0; 20]);
        out.extend_from_slice(&len_u32(spec.len()).to_le_bytes());
        out.extend_from_slice(&spec);
        for e in &self.events {
            e.serialize_into(&mut out);
        }
        out
    }

    /// The events that are extended (every one except `EV_NO_ACTION`).
    pub fn extended(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(|e| e.event_type != EventType::NO_ACTION)
    }
}

/// Parse an `EFI_TCG2_FINAL_EVENTS_TABLE`. Digest sizes come from the main log's Spec ID
/// table (as Linux does, `efi_tpm_eventlog_init`). Bytes after the `NumberOfEvents` events are
/// the unused part of the table's 0xFF-filled area (`PcdTcg2FinalLogAreaLen`) and are ignored.
pub fn parse_final_events(bytes: &[u8], spec_id: &SpecId) -> Result<FinalEvents, LogError> {
    let mut r = Reader::new(bytes);
    let version = r.u64().ok_or(err(0, None, LogErrorKind::Truncated("Version")))?;
    if version != 1 {
        return Err(err(0, None, LogErrorKind::UnsupportedFinalVersion(version)));
    }
    let count = r.u64().ok_or(err(8, None, LogErrorKind::Truncated("NumberOfEvents")))?;
    // The smallest TCG_PCR_EVENT2 is 16 bytes (no digests, no data).
    if count > (r.remaining() / 16) as u64 {
        return Err(err(8, None, LogErrorKind::TooManyEvents(count)));
    }
    let mut p = Parser { r, event: None, spec_id };
    let mut events = Vec::new();
    for i in 0..count {
        p.event = usize::try_from(i).ok();
        events.push(p.event2()?);
    }
    Ok(FinalEvents { version, events })
}

impl FinalEvents {
    /// Encode the table (no trailing area).
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.events.len() as u64).to_le_bytes());
        for e in &self.events {
            e.serialize_into(&mut out);
        }
        out
    }
}

/// Complete a log copied before ExitBootServices with the Final Events Table read after it:
/// the copy, then every final event with index ≥ `preboot_count` (the table's
/// `NumberOfEvents` when the copy was taken: those earlier events are already in the copy).
/// `shared/reference/tpm-tis-and-commands.md` §C.6–C.7; Linux `tpm_read_log_efi` does the
/// same by byte size.
pub fn merge(copied: &EventLog, final_events: &FinalEvents, preboot_count: u64) -> EventLog {
    let skip = usize::try_from(preboot_count).unwrap_or(usize::MAX);
    let mut out = copied.clone();
    out.events.extend(final_events.events.iter().skip(skip).cloned());
    out
}

/// An EFI GUID as serialized in event data: Data1 u32 LE, Data2 u16 LE, Data3 u16 LE, Data4
/// 8 bytes (`MdePkg/Include/Uefi/UefiBaseType.h`; measured-boot.md §A.5). Displayed in the
/// registry form `8be4df61-93ca-11d2-aa0d-00e098032b8c`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Guid(pub [u8; 16]);

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        let [a0, a1, a2, a3, b0, b1, c0, c1, d @ ..] = b;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-",
            u32::from_le_bytes([a0, a1, a2, a3]),
            u16::from_le_bytes([b0, b1]),
            u16::from_le_bytes([c0, c1])
        )?;
        for (i, x) in d.iter().enumerate() {
            if i == 2 {
                f.write_str("-")?;
            }
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

/// A decoded event payload ([`Event::describe`]). Borrowed from the event data.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Payload<'a> {
    /// The Spec ID event (`EV_NO_ACTION`).
    SpecId(SpecId),
    /// `UEFI_VARIABLE_DATA` (`EV_EFI_VARIABLE_*`): GUID ‖ UnicodeNameLength u64 (characters,
    /// no NUL) ‖ VariableDataLength u64 ‖ UTF-16LE name ‖ data (`UefiTcgPlatform.h`).
    Variable {
        /// VariableName (the vendor GUID).
        guid: Guid,
        /// UnicodeName.
        name: String,
        /// VariableData.
        data: &'a [u8],
    },
    /// `UEFI_IMAGE_LOAD_EVENT` (`EV_EFI_BOOT_SERVICES_*`, `EV_EFI_RUNTIME_SERVICES_DRIVER`):
    /// four u64 then the device path (`DxeTpm2MeasureBootLib.c → Tcg2MeasurePeImage`).
    ImageLoad {
        /// ImageLocationInMemory.
        location: u64,
        /// ImageLengthInMemory.
        length: u64,
        /// ImageLinkTimeAddress.
        link_time_address: u64,
        /// DevicePath (LengthOfDevicePath bytes).
        device_path: &'a [u8],
    },
    /// `UEFI_GPT_DATA` (`EV_EFI_GPT_EVENT`): the 92-byte `EFI_PARTITION_TABLE_HEADER`
    /// (`UefiGpt.h`), NumberOfPartitions u64, then the non-empty entries.
    Gpt {
        /// DiskGUID (header offset 56).
        disk_guid: Guid,
        /// SizeOfPartitionEntry (header offset 84).
        entry_size: u32,
        /// NumberOfPartitions.
        partitions: u64,
        /// The raw header.
        header: &'a [u8],
        /// The raw entries.
        entries: &'a [u8],
    },
    /// `UEFI_PLATFORM_FIRMWARE_BLOB` (`EV_EFI_PLATFORM_FIRMWARE_BLOB`): BlobBase ‖ BlobLength.
    FirmwareBlob {
        /// BlobBase.
        base: u64,
        /// BlobLength.
        length: u64,
    },
    /// `TCG_PCClientTaggedEvent` (`EV_EVENT_TAG`): taggedEventID ‖ size ‖ data.
    Tagged {
        /// taggedEventID (Linux: 0x8F3B22EC initrd, 0x8F3B22ED LoadOptions).
        id: u32,
        /// taggedEventData.
        data: &'a [u8],
    },
    /// Text: `EV_EFI_ACTION`, `EV_ACTION`, or `EV_IPL`/`EV_S_CRTM_VERSION` as ASCII or
    /// UTF-16LE (trailing NULs removed).
    Text {
        /// The text.
        text: String,
        /// Whether it was UTF-16LE in the log.
        utf16: bool,
    },
    /// `EV_SEPARATOR`: a u32 (0 normally, 1 = error, `TCG PFP §10.4.1`).
    Separator(u32),
    /// Anything else, or data that does not decode as its type says.
    Raw(&'a [u8]),
}

/// UTF-16LE code units of `b` (an odd last byte is ignored).
fn utf16_units(b: &[u8]) -> impl Iterator<Item = u16> + '_ {
    b.chunks_exact(2).map(|c| <[u8; 2]>::try_from(c).map_or(0, u16::from_le_bytes))
}

fn utf16_text(data: &[u8]) -> Option<String> {
    if data.len() < 2 || !data.len().is_multiple_of(2) {
        return None;
    }
    let s: String = char::decode_utf16(utf16_units(data)).collect::<Result<_, _>>().ok()?;
    let s = s.trim_end_matches('\0');
    // ASCII text of even length would decode as UTF-16 garbage: require printable characters.
    s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t').then(|| s.into())
}

fn ascii_text(data: &[u8]) -> Option<String> {
    let s = core::str::from_utf8(data).ok()?.trim_end_matches('\0');
    s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t').then(|| s.into())
}

fn looks_utf16(data: &[u8]) -> bool {
    data.len() >= 2
        && data.len().is_multiple_of(2)
        && data.iter().skip(1).step_by(2).all(|b| *b == 0)
}

impl Event {
    /// Decode the event data by event type. Never fails: data that does not decode as its
    /// type says is [`Payload::Raw`].
    pub fn describe(&self) -> Payload<'_> {
        describe(self.event_type, &self.data).unwrap_or(Payload::Raw(&self.data))
    }
}

fn describe(t: EventType, data: &[u8]) -> Option<Payload<'_>> {
    let mut r = Reader::new(data);
    let p = match t {
        EventType::NO_ACTION if data.starts_with(&SPEC_ID_SIGNATURE) => {
            Payload::SpecId(SpecId::parse(data, 0).ok()?)
        }
        EventType::EFI_VARIABLE_DRIVER_CONFIG
        | EventType::EFI_VARIABLE_BOOT
        | EventType::EFI_VARIABLE_BOOT2
        | EventType::EFI_VARIABLE_AUTHORITY => {
            let guid = Guid(r.array()?);
            let chars = usize::try_from(r.u64()?).ok()?;
            let len = usize::try_from(r.u64()?).ok()?;
            let name = r.bytes(chars.checked_mul(2)?)?;
            let name = char::decode_utf16(utf16_units(name)).collect::<Result<String, _>>().ok()?;
            let vdata = r.bytes(len)?;
            (r.remaining() == 0).then_some(())?;
            Payload::Variable { guid, name, data: vdata }
        }
        EventType::EFI_BOOT_SERVICES_APPLICATION
        | EventType::EFI_BOOT_SERVICES_DRIVER
        | EventType::EFI_RUNTIME_SERVICES_DRIVER => {
            let location = r.u64()?;
            let length = r.u64()?;
            let link_time_address = r.u64()?;
            let dp_len = usize::try_from(r.u64()?).ok()?;
            let device_path = r.bytes(dp_len)?;
            (r.remaining() == 0).then_some(())?;
            Payload::ImageLoad { location, length, link_time_address, device_path }
        }
        EventType::EFI_GPT_EVENT | EventType::EFI_GPT_EVENT2 => {
            let header = r.bytes(92)?;
            let disk_guid = Guid(header.get(56..72)?.try_into().ok()?);
            let entry_size = u32::from_le_bytes(header.get(84..88)?.try_into().ok()?);
            let partitions = r.u64()?;
            let n = usize::try_from(partitions).ok()?.checked_mul(entry_size as usize)?;
            let entries = r.bytes(n)?;
            (r.remaining() == 0).then_some(())?;
            Payload::Gpt { disk_guid, entry_size, partitions, header, entries }
        }
        EventType::EFI_PLATFORM_FIRMWARE_BLOB => {
            let base = r.u64()?;
            let length = r.u64()?;
            (r.remaining() == 0).then_some(())?;
            Payload::FirmwareBlob { base, length }
        }
        EventType::EVENT_TAG => {
            let id = r.u32()?;
            let len = r.u32()? as usize;
            let data = r.bytes(len)?;
            (r.remaining() == 0).then_some(())?;
            Payload::Tagged { id, data }
        }
        EventType::SEPARATOR => {
            let v = r.u32()?;
            (r.remaining() == 0).then_some(())?;
            Payload::Separator(v)
        }
        EventType::EFI_ACTION | EventType::ACTION => {
            Payload::Text { text: ascii_text(data)?, utf16: false }
        }
        EventType::IPL | EventType::S_CRTM_VERSION => {
            if looks_utf16(data) {
                Payload::Text { text: utf16_text(data)?, utf16: true }
            } else {
                Payload::Text { text: ascii_text(data)?, utf16: false }
            }
        }
        _ => return None,
    };
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    fn small_log() -> EventLog {
        EventLog {
            spec_id: SpecId::edk2(&[HashAlg::SHA1, HashAlg::SHA256]),
            events: vec![Event {
                pcr: 4,
                event_type: EventType::EFI_ACTION,
                digests: vec![(HashAlg::SHA1, vec![0x11; 20]), (HashAlg::SHA256, vec![0x22; 32])],
                data: b"Hi".to_vec(),
            }],
        }
    }

    #[test]
    fn byte_layout() {
        let mut expected: Vec<u8> = vec![];
        #[rustfmt::skip]
        expected.extend_from_slice(&[
            0, 0, 0, 0,             // PCRIndex 0
            3, 0, 0, 0,             // EV_NO_ACTION
        ]);
        expected.extend_from_slice(&[0; 20]); // SHA-1-sized zero digest
        #[rustfmt::skip]
        expected.extend_from_slice(&[
            37, 0, 0, 0,            // EventSize = 29 + 4·2
        ]);
        expected.extend_from_slice(b"Spec ID Event03\0");
        #[rustfmt::skip]
        expected.extend_from_slice(&[
            0, 0, 0, 0,             // platformClass
            0, 2, 0, 2,             // minor, major, errata, uintnSize
            2, 0, 0, 0,             // numberOfAlgorithms
            0x04, 0, 20, 0,         // sha1, 20
            0x0B, 0, 32, 0,         // sha256, 32
            0,                      // vendorInfoSize
            4, 0, 0, 0,             // PCRIndex 4
            7, 0, 0, 0x80,          // EV_EFI_ACTION
            2, 0, 0, 0,             // two digests
            0x04, 0,                // sha1
        ]);
        expected.extend_from_slice(&[0x11; 20]);
        expected.extend_from_slice(&[0x0B, 0]); // sha256
        expected.extend_from_slice(&[0x22; 32]);
        expected.extend_from_slice(&[2, 0, 0, 0, b'H', b'i']); // EventSize 2, "Hi"
        assert_eq!(small_log().serialize(), expected);
        assert_eq!(parse(&expected), Ok(small_log()));
    }

    #[test]
    fn padding_and_errors() {
        let good = small_log().serialize();
        let mut b = good.clone();
        b.extend_from_slice(&[0xFF; 100]);
        assert_eq!(parse(&b), Ok(small_log()));
        let mut b = good.clone();
        b.extend_from_slice(&[0; 4]);
        assert_eq!(
            parse(&b).unwrap_err(),
            LogError {
                offset: good.len() + 4,
                event: Some(1),
                kind: LogErrorKind::Truncated("EventType")
            }
        );
        let n = good.len();
        let mut b = good.clone();
        b[n - 6] = 0xFF; // EventSize = 0xFF → larger than the 2 bytes left
        assert_eq!(
            parse(&b).unwrap_err().kind,
            LogErrorKind::EventTooLarge { size: 0xFF, remaining: 2 }
        );
        let mut b = good.clone();
        b[69 + 8] = 6; // digest count
        assert_eq!(parse(&b).unwrap_err().kind, LogErrorKind::TooManyDigests(6));
        let mut b = good.clone();
        b[69 + 12] = 0x0C; // sha384 is not in the table
        assert_eq!(parse(&b).unwrap_err().kind, LogErrorKind::UnknownAlgorithm(HashAlg::SHA384));
        let mut b = good.clone();
        b[69] = 24;
        assert_eq!(parse(&b).unwrap_err().kind, LogErrorKind::PcrOutOfRange(24));
        let mut b = good.clone();
        b[32] = b'X';
        assert!(matches!(parse(&b).unwrap_err().kind, LogErrorKind::BadSpecIdSignature(_)));
        assert!(format!("{}", parse(&b).unwrap_err()).contains("Spec ID"));
        for len in 0..good.len() {
            // 69 bytes = the header alone: a valid log without events.
            assert_eq!(parse(&good[..len]).is_ok(), len == 69, "prefix {len}");
        }
    }

    #[test]
    fn sizes_for_a_loader() {
        let bytes = small_log().serialize();
        let (spec, start) = parse_header(&bytes).unwrap();
        assert_eq!(start, 69);
        assert_eq!(event_size(&bytes[start..], &spec), Ok(bytes.len() - start));
    }

    #[test]
    fn final_events_and_merge() {
        let log = small_log();
        let mut ev2 = log.events[0].clone();
        ev2.pcr = 5;
        let fe = FinalEvents { version: 1, events: vec![log.events[0].clone(), ev2.clone()] };
        let mut bytes = fe.serialize();
        bytes.extend_from_slice(&[0xFF; 64]);
        let parsed = parse_final_events(&bytes, &log.spec_id).unwrap();
        assert_eq!(parsed, fe);
        let merged = merge(&log, &parsed, 1);
        assert_eq!(merged.events.len(), 2);
        assert_eq!(merged.events[1], ev2);
        bytes[8] = 0xFF;
        assert_eq!(
            parse_final_events(&bytes, &log.spec_id).unwrap_err().kind,
            LogErrorKind::TooManyEvents(0xFF)
        );
        bytes[0] = 2;
        assert_eq!(
            parse_final_events(&bytes, &log.spec_id).unwrap_err().kind,
            LogErrorKind::UnsupportedFinalVersion(2)
        );
    }

    #[test]
    fn describes_payloads() {
        let guid = Guid([
            0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0, 0xe0, 0x98, 3, 0x2b,
            0x8c,
        ]);
        assert_eq!(format!("{guid}"), "8be4df61-93ca-11d2-aa0d-00e098032b8c");
        let mut data = guid.0.to_vec();
        data.extend_from_slice(&2u64.to_le_bytes());
        data.extend_from_slice(&1u64.to_le_bytes());
        data.extend_from_slice(b"P\0K\0");
        data.push(7);
        let e = Event {
            pcr: 7,
            event_type: EventType::EFI_VARIABLE_DRIVER_CONFIG,
            digests: vec![],
            data,
        };
        assert_eq!(e.describe(), Payload::Variable { guid, name: "PK".into(), data: &[7] });
        let e = Event {
            pcr: 11,
            event_type: EventType::IPL,
            digests: vec![],
            data: crate::sections::event_data(".linux"),
        };
        assert_eq!(e.describe(), Payload::Text { text: ".linux".into(), utf16: true });
        let e = Event {
            pcr: 12,
            event_type: EventType::IPL,
            digests: vec![],
            data: b"initrd=x\0".to_vec(),
        };
        assert_eq!(e.describe(), Payload::Text { text: "initrd=x".into(), utf16: false });
        let mut data = 0x8F3B_22ECu32.to_le_bytes().to_vec();
        data.extend_from_slice(&13u32.to_le_bytes());
        data.extend_from_slice(b"Linux initrd\0");
        let e = Event { pcr: 9, event_type: EventType::EVENT_TAG, digests: vec![], data };
        assert_eq!(e.describe(), Payload::Tagged { id: 0x8F3B_22EC, data: b"Linux initrd\0" });
        let e =
            Event { pcr: 9, event_type: EventType::EVENT_TAG, digests: vec![], data: vec![1, 2] };
        assert_eq!(e.describe(), Payload::Raw(&[1, 2]));
        let e = Event { pcr: 0, event_type: EventType(0x1234), digests: vec![], data: vec![9] };
        assert_eq!(e.describe(), Payload::Raw(&[9]));
    }
}
