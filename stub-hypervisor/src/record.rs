//! Writer for the record channel; the format (and its parser) is `policies::record`.
//!
//! A line is built field by field straight into a [`core::fmt::Write`] sink (the COM2 UART),
//! so writing a record never allocates and works after ExitBootServices. Keys and values
//! must not contain whitespace; callers pass fixed keys and hex/decimal/word values.

use core::fmt::{self, Display, Write};
use policies::record::PREFIX;

/// One record line being written; finish it with [`Line::end`].
#[must_use = "a record line is only terminated by Line::end"]
pub struct Line<'w, W: Write> {
    w: &'w mut W,
}

/// Start a record line with `verb`.
pub fn line<'w, W: Write>(w: &'w mut W, verb: &str) -> Line<'w, W> {
    // A serial sink cannot fail; a failing sink loses the line, which the host reports as a
    // missing record (there is no better channel to report it on).
    let _ = write!(w, "{PREFIX}{verb}");
    Line { w }
}

impl<W: Write> Line<'_, W> {
    /// ` key=value` with `value` formatted by `Display`.
    pub fn kv(self, key: &str, value: impl Display) -> Self {
        let _ = write!(self.w, " {key}={value}");
        self
    }

    /// ` key=0x…` (lower-case hex, no padding).
    pub fn hex(self, key: &str, value: u64) -> Self {
        let _ = write!(self.w, " {key}={value:#x}");
        self
    }

    /// ` key=<lower-case hex of bytes>`.
    pub fn bytes(self, key: &str, value: &[u8]) -> Self {
        let _ = write!(self.w, " {key}=");
        for b in value {
            let _ = write!(self.w, "{b:02x}");
        }
        self
    }

    /// Terminate the line (`\r\n`).
    pub fn end(self) {
        let _ = self.w.write_str("\r\n");
    }
}

/// A 32-bit value as `0x%08x` (the `type=` field).
pub struct Hex8(pub u32);

impl Display for Hex8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policies::record::Line as Parsed;

    #[test]
    fn writes_a_line_the_policies_parser_reads() {
        let mut s = String::new();
        line(&mut s, "measure")
            .kv("pcr", 11)
            .kv("type", Hex8(0xd))
            .kv("section", ".linux")
            .bytes("sha1", &[0xab, 0x01])
            .hex("entry", 0x400_0000)
            .end();
        assert_eq!(
            s,
            "VMSEAL1 measure pcr=11 type=0x0000000d section=.linux sha1=ab01 entry=0x4000000\r\n"
        );
        let p = Parsed::parse(&s).unwrap().unwrap();
        assert_eq!(p.verb, "measure");
        assert_eq!(p.get("type"), Some("0x0000000d"));
    }
}
