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
//! | `launch` | `kind` (`linux`/`guest`), `section`, `entry` (guest: `0x…`) | about to hand over |
//! | `exit` | `status` | a direct-mode guest returned |
//! | `error` | `stage`, `status` (`0x…` EFI status or a word) | the stub stops (fail closed) |
//! | `end` | — | the last line before power-off |

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

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
}
