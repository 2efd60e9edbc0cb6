//! Just enough of the TCG crypto-agile event log (`EFI_TCG2_EVENT_LOG_FORMAT_TCG_2`) for the
//! stub: the digest sizes from the first entry ("Spec ID Event03"), and one `TCG_PCR_EVENT2`
//! entry read with bounds checks. Reference: TCG PC Client PFP spec §10.2 and
//! `shared/reference/measured-boot.md` §A.3–A.4.
//!
//! Why not `policies::eventlog`: its parser builds `Vec`s, and the stub reads entries also
//! after ExitBootServices (the Final Events Table, [`final_events_tail`]) where nothing may
//! allocate; and before it, the log can only be mapped in growing prefixes. The host parses
//! what the stub sends with `policies::eventlog` (and `tpm2_eventlog`).
//!
//! The firmware hands out only the log's start and the start of its last entry, not a length,
//! so the parsers here are *incremental*: given too few bytes they answer
//! [`LogError::Truncated`] with how many they need, and the caller maps that many and asks
//! again (see [`read_entry`]). Bad input gives an error, never a panic.

use crate::bytes::{slice, u16_at, u32_at, u64_at};
use core::fmt;
use policies::record::Token;
use policies::tcg::{EventType, HashAlg};

/// At most this many algorithms in the Spec ID event.
pub const MAX_ALGS: usize = 8;
/// An entry larger than this is treated as corrupt.
pub const MAX_ENTRY: usize = 16 << 20;

/// Why a log entry could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogError {
    /// More bytes are needed: at least this many from the entry's start.
    Truncated(usize),
    /// The first entry is not a "Spec ID Event03" `TCG_PCR_EVENT`.
    NotSpecId,
    /// The Spec ID event lists more than [`MAX_ALGS`] algorithms or a zero/oversized digest.
    BadSpecId,
    /// An entry uses an algorithm the Spec ID event does not list.
    UnknownAlg(u16),
    /// An entry is larger than [`MAX_ENTRY`] or its size overflows.
    TooLarge,
    /// The Final Events Table has a version other than 1 or more than [`MAX_FINAL_EVENTS`].
    BadFinalTable,
}

/// The record word (`error … status=`); `Display` writes the same.
impl Token for LogError {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        w.write_str(match self {
            Self::Truncated(_) => "log-truncated",
            Self::NotSpecId => "log-no-spec-id",
            Self::BadSpecId => "log-bad-spec-id",
            Self::UnknownAlg(_) => "log-unknown-alg",
            Self::TooLarge => "log-entry-too-large",
            Self::BadFinalTable => "log-bad-final-events-table",
        })
    }
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_token(f)
    }
}

/// The algorithms and digest sizes of the log, in Spec ID order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DigestSizes {
    algs: [(u16, u16); MAX_ALGS],
    len: usize,
}

impl DigestSizes {
    /// The `(algorithm id, digest size)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, usize)> + '_ {
        self.algs
            .iter()
            .take(self.len)
            .map(|&(a, s)| (HashAlg(a), usize::from(s)))
    }

    fn size_of(&self, alg: u16) -> Option<usize> {
        self.iter().find(|(a, _)| a.0 == alg).map(|(_, s)| s)
    }
}

fn need(b: &[u8], n: usize) -> Result<(), LogError> {
    if n > MAX_ENTRY {
        Err(LogError::TooLarge)
    } else if b.len() < n {
        Err(LogError::Truncated(n))
    } else {
        Ok(())
    }
}

/// Parse the first entry (`TCG_PCR_EVENT` with the Spec ID event). Returns the digest sizes
/// and the entry's length in bytes.
pub fn parse_spec_id(b: &[u8]) -> Result<(DigestSizes, usize), LogError> {
    need(b, 32)?;
    let event_size = u32_at(b, 28).ok_or(LogError::Truncated(32))? as usize;
    let total = 32usize.checked_add(event_size).ok_or(LogError::TooLarge)?;
    need(b, total)?;
    let ev = slice(b, 32, event_size).ok_or(LogError::Truncated(total))?;
    if u32_at(b, 4) != Some(EventType::NO_ACTION.0) || ev.get(..16) != Some(b"Spec ID Event03\0") {
        return Err(LogError::NotSpecId);
    }
    let n = u32_at(ev, 24).ok_or(LogError::BadSpecId)? as usize;
    if n == 0 || n > MAX_ALGS {
        return Err(LogError::BadSpecId);
    }
    let mut sizes = DigestSizes::default();
    for (i, slot) in sizes.algs.iter_mut().take(n).enumerate() {
        let alg = u16_at(ev, 28 + 4 * i).ok_or(LogError::BadSpecId)?;
        let size = u16_at(ev, 30 + 4 * i).ok_or(LogError::BadSpecId)?;
        if size == 0 || size > 64 {
            return Err(LogError::BadSpecId);
        }
        *slot = (alg, size);
    }
    sizes.len = n;
    Ok((sizes, total))
}

/// One `TCG_PCR_EVENT2` entry, borrowed from the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event2<'a> {
    /// `PCRIndex`.
    pub pcr: u32,
    /// `EventType`.
    pub event_type: EventType,
    digests: &'a [u8],
    count: u32,
    sizes: DigestSizes,
    /// The event data.
    pub event: &'a [u8],
    /// The entry's length in bytes.
    pub len: usize,
}

impl<'a> Event2<'a> {
    /// The logged digests `(algorithm, digest)`, in log order.
    pub fn digests(&self) -> impl Iterator<Item = (HashAlg, &'a [u8])> + '_ {
        let mut off = 0usize;
        (0..self.count).map_while(move |_| {
            let alg = u16_at(self.digests, off)?;
            let size = self.sizes.size_of(alg)?;
            let d = slice(self.digests, off + 2, size)?;
            off += 2 + size;
            Some((HashAlg(alg), d))
        })
    }
}

/// Parse a `TCG_PCR_EVENT2` at the start of `b`.
pub fn parse_event2<'a>(sizes: &DigestSizes, b: &'a [u8]) -> Result<Event2<'a>, LogError> {
    need(b, 12)?;
    let t = LogError::Truncated(12);
    let pcr = u32_at(b, 0).ok_or(t)?;
    let event_type = EventType(u32_at(b, 4).ok_or(t)?);
    let count = u32_at(b, 8).ok_or(t)?;
    if count as usize > MAX_ALGS {
        return Err(LogError::TooLarge);
    }
    let mut off = 12usize;
    for _ in 0..count {
        need(b, off + 2)?;
        let alg = u16_at(b, off).ok_or(LogError::Truncated(off + 2))?;
        off += 2 + sizes.size_of(alg).ok_or(LogError::UnknownAlg(alg))?;
    }
    need(b, off + 4)?;
    let event_size = u32_at(b, off).ok_or(LogError::Truncated(off + 4))? as usize;
    let total = (off + 4)
        .checked_add(event_size)
        .ok_or(LogError::TooLarge)?;
    need(b, total)?;
    Ok(Event2 {
        pcr,
        event_type,
        digests: slice(b, 12, off - 12).ok_or(LogError::Truncated(off))?,
        count,
        sizes: *sizes,
        event: slice(b, off + 4, event_size).ok_or(LogError::Truncated(total))?,
        len: total,
    })
}

/// Read one entry from memory that can only be mapped in growing prefixes: `map(n)` returns
/// the first `n` bytes at the entry's start (or `None` if it cannot). Calls `parse` with a
/// 12-byte prefix, then with as many bytes as it asks for, up to [`MAX_ENTRY`].
pub fn read_entry<'a, T>(
    mut map: impl FnMut(usize) -> Option<&'a [u8]>,
    parse: impl Fn(&'a [u8]) -> Result<T, LogError>,
) -> Result<T, LogError> {
    let mut n = 12;
    loop {
        let b = map(n).ok_or(LogError::TooLarge)?;
        match parse(b) {
            Err(LogError::Truncated(more)) if more > n && more <= MAX_ENTRY => n = more,
            r => return r,
        }
    }
}

/// Most events accepted in the Final Events Table (its area is 0x8000 bytes on EDK2,
/// `PcdTcg2FinalLogAreaLen`, and an entry is at least 16 bytes).
pub const MAX_FINAL_EVENTS: u64 = 0x8000 / 16;

/// The entries of an `EFI_TCG2_FINAL_EVENTS_TABLE` (`Version u64 = 1 | NumberOfEvents u64 |
/// TCG_PCR_EVENT2…`) with index ≥ `preboot` — the events logged after the log was copied
/// (`shared/reference/tpm-tis-and-commands.md` §C.7). `map(n)` returns the table's first `n`
/// bytes. Returns `(offset, length, count)` of those entries: they are contiguous, and
/// appended to the copy they make the complete log.
///
/// Alloc-free, unlike `policies::eventlog::parse_final_events`: the stub calls it after
/// ExitBootServices, where it has no allocator.
pub fn final_events_tail<'a>(
    mut map: impl FnMut(usize) -> Option<&'a [u8]>,
    sizes: &DigestSizes,
    preboot: u64,
) -> Result<(usize, usize, u64), LogError> {
    let head = map(16).ok_or(LogError::Truncated(16))?;
    let version = u64_at(head, 0).ok_or(LogError::Truncated(16))?;
    let count = u64_at(head, 8).ok_or(LogError::Truncated(16))?;
    if version != 1 || count > MAX_FINAL_EVENTS {
        return Err(LogError::BadFinalTable);
    }
    let mut off = 16usize;
    let mut start = None;
    for i in 0..count {
        if i == preboot {
            start = Some(off);
        }
        let at = off;
        let ev = read_entry(
            |n| map(at.checked_add(n)?)?.get(at..),
            |b| parse_event2(sizes, b),
        )?;
        off = off.checked_add(ev.len).ok_or(LogError::TooLarge)?;
    }
    let start = start.unwrap_or(off);
    Ok((start, off - start, count.saturating_sub(preboot)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Spec ID entry with sha1 and sha256.
    pub(crate) fn spec_id() -> Vec<u8> {
        let mut ev = b"Spec ID Event03\0".to_vec();
        ev.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 2]);
        ev.extend_from_slice(&2u32.to_le_bytes());
        ev.extend_from_slice(&[4, 0, 20, 0, 0x0b, 0, 32, 0, 0]);
        let mut b = vec![0u8; 32];
        b[4] = 3;
        b[28..32].copy_from_slice(&(ev.len() as u32).to_le_bytes());
        b.extend_from_slice(&ev);
        b
    }

    pub(crate) fn event2(pcr: u32, sha1: [u8; 20], sha256: [u8; 32], data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&pcr.to_le_bytes());
        b.extend_from_slice(&0xdu32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&sha1);
        b.extend_from_slice(&0xbu16.to_le_bytes());
        b.extend_from_slice(&sha256);
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn reads_spec_id_and_an_entry_incrementally() {
        let s = spec_id();
        let (sizes, len) = parse_spec_id(&s).unwrap();
        assert_eq!(len, s.len());
        assert_eq!(
            sizes.iter().collect::<Vec<_>>(),
            [(HashAlg::SHA1, 20), (HashAlg::SHA256, 32)]
        );
        let e = event2(11, [1; 20], [2; 32], b"x\0");
        let mut asked = Vec::new();
        let ev = read_entry(
            |n| {
                asked.push(n);
                e.get(..n)
            },
            |b| parse_event2(&sizes, b),
        )
        .unwrap();
        assert_eq!(ev.len, e.len());
        assert_eq!(ev.pcr, 11);
        assert_eq!(ev.event, b"x\0");
        let d: Vec<_> = ev.digests().collect();
        assert_eq!(
            d,
            [
                (HashAlg::SHA1, &[1u8; 20][..]),
                (HashAlg::SHA256, &[2u8; 32][..])
            ]
        );
        assert_eq!(asked, [12, 14, 36, 72, 74]);
    }

    #[test]
    fn finds_the_final_events_after_the_copy() {
        let (sizes, _) = parse_spec_id(&spec_id()).unwrap();
        let evs = [
            event2(14, [1; 20], [2; 32], b"before copy"),
            event2(5, [3; 20], [4; 32], b"Exit Boot Services Invocation"),
            event2(
                5,
                [5; 20],
                [6; 32],
                b"Exit Boot Services Returned with Success",
            ),
        ];
        let mut t = 1u64.to_le_bytes().to_vec();
        t.extend_from_slice(&3u64.to_le_bytes());
        for e in &evs {
            t.extend_from_slice(e);
        }
        let body = t.len();
        t.extend_from_slice(&[0xFF; 64]); // the unused, 0xFF-filled rest of the area
        let (off, len, n) = final_events_tail(|n| t.get(..n), &sizes, 1).unwrap();
        assert_eq!(
            (off, len, n),
            (16 + evs[0].len(), evs[1].len() + evs[2].len(), 2)
        );
        assert_eq!(off + len, body);
        assert_eq!(
            final_events_tail(|n| t.get(..n), &sizes, 3).unwrap(),
            (body, 0, 0)
        );
        assert_eq!(
            final_events_tail(|n| t.get(..n), &sizes, 9).unwrap(),
            (body, 0, 0)
        );
        assert!(final_events_tail(|n| t.get(..n.min(body - 1)), &sizes, 0).is_err());
        t[0] = 2;
        assert_eq!(
            final_events_tail(|n| t.get(..n), &sizes, 0),
            Err(LogError::BadFinalTable)
        );
    }

    #[test]
    fn bad_entries_are_errors() {
        let (sizes, _) = parse_spec_id(&spec_id()).unwrap();
        let mut e = event2(11, [1; 20], [2; 32], b"x");
        e[12] = 0x0c; // sha384 not in the Spec ID event
        assert_eq!(parse_event2(&sizes, &e), Err(LogError::UnknownAlg(0x0c)));
        let mut e = event2(11, [1; 20], [2; 32], b"x");
        let l = e.len();
        e[l - 5..l - 1].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_event2(&sizes, &e), Err(LogError::TooLarge));
        let s = spec_id();
        for n in 0..s.len() {
            assert!(parse_spec_id(&s[..n]).is_err());
        }
    }
}
