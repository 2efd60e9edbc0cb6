//! The stub's record channel: a line format, version 1.
//!
//! The stub writes its record on the second serial port (COM2, I/O port 0x2F8, 115200 8N1 —
//! QEMU's second `-serial`); the console stays on COM1. Each line is ASCII:
//!
//! ```text
//! VMSEAL1 <verb> key=value key=value ...\r\n
//! ```
//!
//! Keys are `[a-z0-9_]+`; values contain no whitespace (hex digests, decimal or `0x` numbers,
//! section names, single words). Readers
//! ignore lines that do not start with `VMSEAL1 ` (serial noise) and keys they do not know,
//! and keep verbs they do not know. Verbs written by the stub, in order:
//!
//! | verb | keys | meaning |
//! | --- | --- | --- |
//! | `start` | `stub` (version), `mode` (`linux`/`guest`/`hypervisor`) | the stub runs |
//! | `measure` | `pcr`, `type` (`0x%08x`), `section`, `part` (`name`/`data`), `size`, one `<bank>=<hex>` per logged bank | one HashLogExtendEvent succeeded; the digests are read back from the firmware's event log entry |
//! | `eventlog` | `offset` (decimal), `hex` (at most [`EVENTLOG_CHUNK`] bytes) | after ExitBootServices (before a `.guest`'s partitions start): a piece of the complete event log (the copy taken before ExitBootServices, then the Final Events Table entries logged after it); offsets are contiguous from 0 |
//! | `eventlog-end` | `size`, `crc32` (`0x%08x`, [`Crc32`]), `copied`, `final_added` | the log is complete: `size` bytes, of which `copied` from the pre-ExitBootServices copy and `final_added` Final Events Table entries |
//! | `pcr` | `bank` (`sha256`, … or `0x%04x`), `index`, `value` (hex) | one PCR as read from the TPM over TIS after ExitBootServices |
//! | `pcrs-end` | `banks` (comma-separated), `count`, `update_counter`, `ms` | every PCR of every allocated bank was written; `ms` is how long the TIS reads took |
//! | `launch` | `kind` (`linux`/`hypervisor`), `section`, `entry` (guest: `0x…`) | about to hand over |
//! | `hv` | `backend` (`svm`), `asids`, `partitions`, then `slice_ms` and `timer_per_ms` (APIC timer counts per ms), or `timer=off` | hypervisor mode: the backend is on; partitions are preempted every `slice_ms` (no preemption with `timer=off`) |
//! | `partition` | `name`, `section`, `base`, `size`, `entry`, `devices` (comma-separated or `none`) | a partition was loaded (services first, then the guest) |
//! | `console` | `partition`, `dropped` (bytes) | written once at the end if `console = off` dropped guest output |
//! | `violation` | `partition`, `kind` (`policies::hypercall::Violation`), kind-specific keys (`gpa`, `access`, `port`, `size`, `dir`, `msr`, `nr`, `addr`, `len`, `count`, `exit`, `budget_ms`, `used_ms`), `rip` | a partition did something its policy does not allow; it is stopped |
//! | `stopped` | `partition`, `reason` (`exit`/`violation`), `status` (exit only), `hypercalls` | a partition ended; the others keep running |
//! | `wait-failed` | `partition`, `channel`, `error` (`no-reply`/`deadlock`, `policies::hypercall::Error`) | nothing could run: the client's wait for a reply on `channel` failed with that error (its server was idle, or clients waited on each other in a cycle); it goes on, nobody is stopped |
//! | `health` | `channel`, `server`, `status` (`answered`/`silent`/`gone`) | after the guest ended: the hypervisor checked that each server of the guest's channels still answers |
//! | `hv-stats` | `hypercalls`, `exits`, `preemptions` (slices ended by the timer), `guest_ns` (time spent in partitions), `mean_run_ns` (per VMRUN) | the hypervisor shuts down |
//! | `hv-startup` | `record_us`, `ebs_to_guest_us` (absent if the guest never ran) | after `exit`: microseconds from ExitBootServices to the end of the record dump (`eventlog`, `pcr` lines) and to the guest partition's first instruction (its first `VMRUN`; the services' first runs come before it) |
//! | `exit` | `status` | the guest partition ended (its `EXIT` status; a stopped guest reports 255) |
//! | `error` | `stage`, `status` (`0x…` EFI status or a word) | the stub stops (fail closed) — except for the stages in [`NONFATAL_STAGES`], after which the boot goes on and the record lacks what that stage would have written |
//! | `end` | — | the last line before power-off |
//!
//! The host collects the event log with [`collect_eventlog`] and the PCRs with
//! [`collect_pcrs`]. Values are spelled by [`Token`] and [`write_dec`], [`write_hex`],
//! [`write_hex_0x`], which the stub writes with and which need no `core::fmt` formatting.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::tcg::HashAlg;

/// The prefix of every record line (includes the version and the separating space).
pub const PREFIX: &str = "VMSEAL1 ";
/// The COM port base of the record channel.
pub const RECORD_PORT: u16 = 0x2F8;
/// The COM port base of the console.
pub const CONSOLE_PORT: u16 = 0x3F8;

/// One parsed record line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The verb (`measure`, `launch`, …).
    pub verb: String,
    /// The `key=value` pairs in the order written.
    pub fields: Vec<(String, String)>,
}

/// Why a record line could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The line has no verb after the prefix.
    MissingVerb,
    /// A field is not of the form `key=value` (the offending token is carried).
    BadField(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingVerb => write!(f, "record line has no verb after {PREFIX:?}"),
            Self::BadField(t) => write!(f, "record field {t:?} is not key=value"),
        }
    }
}

impl Line {
    /// Parse one line. Returns `Ok(None)` for a line that is not a record line (noise).
    pub fn parse(line: &str) -> Result<Option<Self>, RecordError> {
        let line = line.trim_end_matches(['\r', '\n']);
        let Some(rest) = line.find(PREFIX).and_then(|i| line.get(i + PREFIX.len()..)) else {
            return Ok(None);
        };
        let mut tokens = rest.split_ascii_whitespace();
        let verb = tokens.next().ok_or(RecordError::MissingVerb)?;
        let mut fields = Vec::new();
        for t in tokens {
            let (k, v) = t
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| RecordError::BadField(t.into()))?;
            fields.push((k.into(), v.into()));
        }
        Ok(Some(Self { verb: verb.into(), fields }))
    }

    /// The value of `key`, if present (first occurrence).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Parse every record line of a capture (e.g. the COM2 log file).
    pub fn parse_all(text: &str) -> Result<Vec<Self>, RecordError> {
        let mut out = Vec::new();
        for l in text.lines() {
            if let Some(line) = Self::parse(l)? {
                out.push(line);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.verb)?;
        for (k, v) in &self.fields {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// Most event-log bytes in one `eventlog` line (128 hex digits).
pub const EVENTLOG_CHUNK: usize = 64;

/// `error` stages after which the stub does not stop (after ExitBootServices, `.guest` images):
/// `eventlog-final` (the Final Events Table could not be read: no `eventlog` lines) and `tis`
/// (the TPM could not be read: no `pcr` lines). Every measurement was already made, so the
/// guest is still launched; a verdict must report the missing values. (`error
/// stage=eventlog`, a failed copy before ExitBootServices, stops the boot like every other.)
pub const NONFATAL_STAGES: [&str; 2] = ["eventlog-final", "tis"];

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320, as zlib's `crc32`), the check value
/// of `eventlog-end`. Bitwise: small, and the stub has no table to spare.
#[derive(Clone, Copy, Debug)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// A fresh checksum.
    pub const fn new() -> Self {
        Self(0xFFFF_FFFF)
    }

    /// Feed `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            for _ in 0..8 {
                self.0 = (self.0 >> 1) ^ (0xEDB8_8320 & (self.0 & 1).wrapping_neg());
            }
        }
    }

    /// The checksum of everything fed.
    pub const fn finish(self) -> u32 {
        !self.0
    }
}

/// A record field's value, written without `core::fmt`'s formatting machinery.
///
/// Only [`fmt::Write::write_str`] is called: the stub links no `Formatter`, padding or integer
/// `Display` code for its record (its size is bounded: issue 17). The text is exactly what
/// `Display` (or the `{:#x}`-style format named at each writer) gives; the types that have
/// both implement `Display` through this, so each spelling exists once. `W` is the stub's
/// UART, a `String` in tests, or a `Formatter`.
pub trait Token {
    /// Write the value's text to `w`.
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result;
}

impl Token for str {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        w.write_str(self)
    }
}

impl Token for String {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        w.write_str(self)
    }
}

impl<T: Token + ?Sized> Token for &T {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        (**self).write_token(w)
    }
}

macro_rules! decimal_token {
    ($($t:ty),*) => {$(
        /// Decimal, as `{}`.
        impl Token for $t {
            fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
                write_dec(w, *self as u64)
            }
        }
    )*};
}
decimal_token!(u8, u16, u32, u64, usize);

/// `v` in decimal: `{}`.
pub fn write_dec<W: fmt::Write + ?Sized>(w: &mut W, v: u64) -> fmt::Result {
    digits(w, v, 10, 1)
}

/// `v` in lower-case hex, zero-padded to at least `min` digits, no prefix: `{:02x}` is
/// `write_hex(w, v, 2)`.
pub fn write_hex<W: fmt::Write + ?Sized>(w: &mut W, v: u64, min: usize) -> fmt::Result {
    digits(w, v, 16, min)
}

/// `0x` then `v` in lower-case hex, zero-padded to at least `min` digits: `{:#x}` is
/// `write_hex_0x(w, v, 1)`, `{:#010x}` is `write_hex_0x(w, v, 8)` (the format's width counts
/// the `0x`).
pub fn write_hex_0x<W: fmt::Write + ?Sized>(w: &mut W, v: u64, min: usize) -> fmt::Result {
    w.write_str("0x")?;
    write_hex(w, v, min)
}

/// `v` in base `radix` (10 or 16), most significant digit first, at least `min` digits.
fn digits<W: fmt::Write + ?Sized>(w: &mut W, v: u64, radix: u64, min: usize) -> fmt::Result {
    const DIGITS: &str = "0123456789abcdef";
    // The place of the leading digit; `v / place < radix` ends the loop before `place`
    // could overflow (u64::MAX < 10^20 and < 16^16).
    let (mut place, mut n) = (1u64, 1usize);
    while v / place >= radix {
        place *= radix;
        n += 1;
    }
    for _ in n..min {
        w.write_str("0")?;
    }
    loop {
        let d = (v / place % radix) as usize;
        w.write_str(DIGITS.get(d..=d).unwrap_or("?"))?;
        if place == 1 {
            return Ok(());
        }
        place /= radix;
    }
}

/// Why the event log or the PCRs could not be collected from a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CollectError {
    /// The record has no line with this verb (the stub did not get that far, or reported an
    /// `error` for the stage).
    Missing(&'static str),
    /// A field is missing or its value cannot be read (`verb`, `key`, value).
    BadValue(&'static str, &'static str, String),
    /// An `eventlog` line does not continue where the previous one ended.
    Gap {
        /// The offset expected (bytes collected so far).
        expected: usize,
        /// The offset the line carries.
        found: usize,
    },
    /// `eventlog-end` disagrees with the collected bytes.
    EventlogEnd {
        /// Bytes collected.
        size: usize,
        /// CRC-32 of the bytes collected.
        crc32: u32,
        /// The `eventlog-end` line.
        line: String,
    },
    /// A PCR value has the wrong size for its bank, or an index over 23.
    BadPcr(String),
    /// The same PCR of the same bank twice.
    DuplicatePcr(String),
    /// `pcrs-end` counts a different number of `pcr` lines.
    PcrCount {
        /// `pcr` lines seen.
        found: usize,
        /// `pcrs-end count=`.
        expected: usize,
    },
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(verb) => write!(f, "the record has no `{verb}` line"),
            Self::BadValue(verb, key, v) => {
                write!(f, "record `{verb}` field {key}={v:?} is missing or unreadable")
            }
            Self::Gap { expected, found } => write!(
                f,
                "record event log is not contiguous: expected offset {expected}, found {found} (lost serial output?)"
            ),
            Self::EventlogEnd { size, crc32, line } => write!(
                f,
                "record event log has {size} bytes with crc32 {crc32:#010x}, but the stub wrote `{line}`"
            ),
            Self::BadPcr(l) => write!(f, "record PCR line has a bad index or value size: `{l}`"),
            Self::DuplicatePcr(l) => write!(f, "record PCR line repeats a PCR: `{l}`"),
            Self::PcrCount { found, expected } => {
                write!(f, "record has {found} PCR lines, pcrs-end says {expected}")
            }
        }
    }
}

impl core::error::Error for CollectError {}

fn field<'l>(l: &'l Line, verb: &'static str, key: &'static str) -> Result<&'l str, CollectError> {
    l.get(key).ok_or_else(|| CollectError::BadValue(verb, key, String::new()))
}

fn number(l: &Line, verb: &'static str, key: &'static str) -> Result<u64, CollectError> {
    let v = field(l, verb, key)?;
    let n = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    n.map_err(|_| CollectError::BadValue(verb, key, v.into()))
}

fn hex(l: &Line, verb: &'static str, key: &'static str) -> Result<Vec<u8>, CollectError> {
    let v = field(l, verb, key)?;
    let bad = || CollectError::BadValue(verb, key, v.into());
    if !v.len().is_multiple_of(2) {
        return Err(bad());
    }
    v.as_bytes()
        .chunks_exact(2)
        .map(|c| core::str::from_utf8(c).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

/// The event log carried by the `eventlog` lines of a record: the chunks must be contiguous
/// from offset 0, and `eventlog-end` must give their total size and CRC-32. The result is
/// the binary TCG2 log (parse it with [`crate::eventlog::parse`]).
pub fn collect_eventlog(lines: &[Line]) -> Result<Vec<u8>, CollectError> {
    const V: &str = "eventlog";
    let mut log = Vec::new();
    let mut crc = Crc32::new();
    for l in lines {
        if l.verb == V {
            let offset = number(l, V, "offset")?;
            if usize::try_from(offset).ok() != Some(log.len()) {
                let found = usize::try_from(offset).unwrap_or(usize::MAX);
                return Err(CollectError::Gap { expected: log.len(), found });
            }
            let bytes = hex(l, V, "hex")?;
            crc.update(&bytes);
            log.extend_from_slice(&bytes);
        } else if l.verb == "eventlog-end" {
            let crc32 = crc.finish();
            let size = number(l, "eventlog-end", "size")?;
            let want = number(l, "eventlog-end", "crc32")?;
            if usize::try_from(size).ok() != Some(log.len()) || u64::from(crc32) != want {
                return Err(CollectError::EventlogEnd {
                    size: log.len(),
                    crc32,
                    line: l.to_string(),
                });
            }
            return Ok(log);
        }
    }
    Err(CollectError::Missing("eventlog-end"))
}

/// The PCR values carried by the `pcr` lines of a record, `(bank, index, value)` in record
/// order. Each value must have its bank's digest size (any size up to 64 bytes for a bank
/// vmseal does not know), each `(bank, index)` appear once, and `pcrs-end` must count them.
pub fn collect_pcrs(lines: &[Line]) -> Result<Vec<(HashAlg, u32, Vec<u8>)>, CollectError> {
    const V: &str = "pcr";
    let mut out: Vec<(HashAlg, u32, Vec<u8>)> = Vec::new();
    for l in lines {
        if l.verb == V {
            let bank = field(l, V, "bank")?;
            let alg = HashAlg::from_name(bank)
                .or_else(|| {
                    bank.strip_prefix("0x")
                        .and_then(|h| u16::from_str_radix(h, 16).ok())
                        .map(HashAlg)
                })
                .ok_or_else(|| CollectError::BadValue(V, "bank", bank.into()))?;
            let index = number(l, V, "index")?;
            let value = hex(l, V, "value")?;
            let size_ok = alg.digest_size().map_or(value.len() <= 64, |s| s == value.len());
            let index = u32::try_from(index)
                .ok()
                .filter(|i| *i < 24)
                .filter(|_| size_ok && !value.is_empty());
            let Some(index) = index else {
                return Err(CollectError::BadPcr(l.to_string()));
            };
            if out.iter().any(|(a, i, _)| *a == alg && *i == index) {
                return Err(CollectError::DuplicatePcr(l.to_string()));
            }
            out.push((alg, index, value));
        } else if l.verb == "pcrs-end" {
            let expected = number(l, "pcrs-end", "count")?;
            if usize::try_from(expected).ok() != Some(out.len()) {
                let expected = usize::try_from(expected).unwrap_or(usize::MAX);
                return Err(CollectError::PcrCount { found: out.len(), expected });
            }
            return Ok(out);
        }
    }
    Err(CollectError::Missing("pcrs-end"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values around every digit-count boundary in both bases, and the extremes.
    fn numbers() -> Vec<u64> {
        let mut v =
            alloc::vec![0, 1, 7, 9, 10, 11, 15, 16, 17, 99, 100, 255, 256, 4095, 4096, 65535];
        v.extend([u64::from(u32::MAX), u64::MAX - 1, u64::MAX, i64::MAX as u64, 1 << 63]);
        for radix in [10u64, 16] {
            let mut p = 1u64;
            while let Some(next) = p.checked_mul(radix) {
                p = next;
                v.extend([p - 1, p, p + 1]);
            }
        }
        v.extend((0..64).map(|i| 1u64 << i));
        v
    }

    fn text(f: impl FnOnce(&mut String) -> fmt::Result) -> String {
        let mut s = String::new();
        f(&mut s).unwrap();
        s
    }

    #[test]
    fn number_tokens_equal_core_fmt() {
        for v in numbers() {
            assert_eq!(text(|s| write_dec(s, v)), alloc::format!("{v}"), "{v}");
            assert_eq!(text(|s| v.write_token(s)), alloc::format!("{v}"));
            assert_eq!(text(|s| write_hex_0x(s, v, 1)), alloc::format!("{v:#x}"));
            assert_eq!(text(|s| write_hex_0x(s, v, 0)), alloc::format!("{v:#x}"));
            assert_eq!(text(|s| write_hex(s, v, 0)), alloc::format!("{v:x}"));
            for min in [1usize, 2, 4, 8, 15, 16, 17, 20, 24] {
                let width = min + 2;
                assert_eq!(
                    text(|s| write_hex(s, v, min)),
                    alloc::format!("{v:0min$x}"),
                    "{v} {min}"
                );
                assert_eq!(text(|s| write_hex_0x(s, v, min)), alloc::format!("{v:#0width$x}"));
            }
            let (b, h, d, u) = (v as u8, v as u16, v as u32, v as usize);
            assert_eq!(text(|s| b.write_token(s)), alloc::format!("{b}"));
            assert_eq!(text(|s| h.write_token(s)), alloc::format!("{h}"));
            assert_eq!(text(|s| d.write_token(s)), alloc::format!("{d}"));
            assert_eq!(text(|s| u.write_token(s)), alloc::format!("{u}"));
            assert_eq!(text(|s| write_hex(s, b.into(), 2)), alloc::format!("{b:02x}"));
            assert_eq!(text(|s| write_hex_0x(s, h.into(), 4)), alloc::format!("{h:#06x}"));
            assert_eq!(text(|s| write_hex_0x(s, d.into(), 8)), alloc::format!("{d:#010x}"));
            assert_eq!(text(|s| write_hex_0x(s, b.into(), 2)), alloc::format!("{b:#04x}"));
        }
        let name = String::from("svc-a");
        assert_eq!(text(|s| name.write_token(s)), "svc-a");
        assert_eq!(text(|s| "word".write_token(s)), "word");
    }

    #[test]
    fn parses_a_measure_line_amid_noise() {
        let text = "garbage\r\nVMSEAL1 measure pcr=11 type=0x0000000d section=.linux part=name size=7 sha256=ab\r\n";
        let lines = Line::parse_all(text).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].verb, "measure");
        assert_eq!(lines[0].get("section"), Some(".linux"));
        assert_eq!(lines[0].get("sha256"), Some("ab"));
        assert_eq!(lines[0].to_string(), text.lines().nth(1).unwrap().trim_end());
    }

    #[test]
    fn rejects_bad_fields() {
        assert_eq!(Line::parse("VMSEAL1 measure pcr"), Err(RecordError::BadField("pcr".into())));
        assert_eq!(Line::parse("VMSEAL1 "), Err(RecordError::MissingVerb));
    }

    #[test]
    fn crc32_is_zlibs() {
        // The standard check value of CRC-32/ISO-HDLC.
        let mut c = Crc32::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0xCBF4_3926);
        assert_eq!(Crc32::new().finish(), 0);
    }

    fn record(text: &str) -> Vec<Line> {
        Line::parse_all(text).unwrap()
    }

    #[test]
    fn collects_a_chunked_event_log() {
        let mut c = Crc32::new();
        c.update(&[0xde, 0xad, 0xbe, 0xef, 0x01]);
        let end = alloc::format!(
            "VMSEAL1 eventlog-end size=5 crc32={:#010x} copied=4 final_added=1\r\n",
            c.finish()
        );
        let text = alloc::format!(
            "VMSEAL1 start stub=0.1.0 mode=guest\r\nVMSEAL1 eventlog offset=0 hex=deadbe\r\nnoise\r\nVMSEAL1 eventlog offset=3 hex=ef01\r\n{end}"
        );
        assert_eq!(collect_eventlog(&record(&text)), Ok(alloc::vec![0xde, 0xad, 0xbe, 0xef, 0x01]));

        let gap = text.replace("offset=3", "offset=4");
        assert_eq!(
            collect_eventlog(&record(&gap)),
            Err(CollectError::Gap { expected: 3, found: 4 })
        );
        let flipped = text.replace("hex=ef01", "hex=ef02");
        assert!(matches!(
            collect_eventlog(&record(&flipped)),
            Err(CollectError::EventlogEnd { size: 5, .. })
        ));
        let odd = text.replace("hex=ef01", "hex=ef0");
        assert!(matches!(
            collect_eventlog(&record(&odd)),
            Err(CollectError::BadValue("eventlog", "hex", _))
        ));
        let cut = text.replace(&end, "");
        assert_eq!(collect_eventlog(&record(&cut)), Err(CollectError::Missing("eventlog-end")));
    }

    #[test]
    fn collects_pcrs() {
        let v32 = "ab".repeat(32);
        let text = alloc::format!(
            "VMSEAL1 pcr bank=sha256 index=0 value={v32}\r\nVMSEAL1 pcr bank=sha1 index=23 value={}\r\nVMSEAL1 pcrs-end banks=sha1,sha256 count=2 update_counter=7 ms=3\r\n",
            "00".repeat(20)
        );
        let p = collect_pcrs(&record(&text)).unwrap();
        assert_eq!(
            p,
            [(HashAlg::SHA256, 0, alloc::vec![0xab; 32]), (HashAlg::SHA1, 23, alloc::vec![0; 20])]
        );

        let dup = text.replace("sha1 index=23", "sha256 index=0").replace(&"00".repeat(20), &v32);
        assert!(matches!(collect_pcrs(&record(&dup)), Err(CollectError::DuplicatePcr(_))));
        let short = text.replace(&v32, "abab");
        assert!(matches!(collect_pcrs(&record(&short)), Err(CollectError::BadPcr(_))));
        let index = text.replace("index=23", "index=24");
        assert!(matches!(collect_pcrs(&record(&index)), Err(CollectError::BadPcr(_))));
        let count = text.replace("count=2", "count=3");
        assert_eq!(
            collect_pcrs(&record(&count)),
            Err(CollectError::PcrCount { found: 2, expected: 3 })
        );
        let unknown = text.replace("bank=sha256", "bank=0x0012");
        assert_eq!(collect_pcrs(&record(&unknown)).unwrap()[0].0, HashAlg::SM3_256);
        assert_eq!(collect_pcrs(&record("")), Err(CollectError::Missing("pcrs-end")));
    }
}
