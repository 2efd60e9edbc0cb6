//! Writer for the record channel; the format (and its parser) is `policies::record`.
//!
//! A line is built field by field straight into a [`core::fmt::Write`] sink (the COM2 UART),
//! so writing a record never allocates and works after ExitBootServices. Values are
//! [`Token`]s: only `write_str` is called, never `core::fmt`'s formatting machinery (which
//! alone would take several KiB of the stub, issue 17). Keys and values must not contain
//! whitespace; callers pass fixed keys and hex/decimal/word values.

use core::fmt::{self, Write};
use policies::record::{PREFIX, Token, write_hex, write_hex_0x};

/// One record line being written; finish it with [`Line::end`].
#[must_use = "a record line is only terminated by Line::end"]
pub struct Line<'w, W: Write> {
    w: &'w mut W,
}

/// Start a record line with `verb`.
pub fn line<'w, W: Write>(w: &'w mut W, verb: &str) -> Line<'w, W> {
    // A serial sink cannot fail; a failing sink loses the line, which the host reports as a
    // missing record (there is no better channel to report it on).
    let _ = w.write_str(PREFIX);
    let _ = w.write_str(verb);
    Line { w }
}

impl<W: Write> Line<'_, W> {
    /// ` key=`.
    fn key(&mut self, key: &str) {
        let _ = self.w.write_str(" ");
        let _ = self.w.write_str(key);
        let _ = self.w.write_str("=");
    }

    /// ` key=value` (`value`: a word, a decimal number, or a [`Token`] such as [`Hex8`]).
    pub fn kv(mut self, key: &str, value: impl Token) -> Self {
        self.key(key);
        let _ = value.write_token(self.w);
        self
    }

    /// ` key=0x…` (lower-case hex, no padding).
    pub fn hex(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        let _ = write_hex_0x(self.w, value, 1);
        self
    }

    /// ` key=<lower-case hex of bytes>`.
    pub fn bytes(mut self, key: &str, value: &[u8]) -> Self {
        self.key(key);
        for b in value {
            let _ = write_hex(self.w, (*b).into(), 2);
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

impl Token for Hex8 {
    fn write_token<V: Write + ?Sized>(&self, w: &mut V) -> fmt::Result {
        write_hex_0x(w, self.0.into(), 8)
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
            .kv("pcr", 11u32)
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

    /// Every writer against `format!` with the spelling it replaced.
    #[test]
    fn fields_equal_core_fmt() {
        for v in [
            0u64,
            1,
            0xf,
            0x10,
            0xff,
            0x100,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
        ] {
            let (d, b) = (v as u32, v as u8);
            let mut s = String::new();
            line(&mut s, "v")
                .kv("d", v)
                .hex("h", v)
                .kv("t", Hex8(d))
                .bytes("b", &[b, 0, b])
                .kv("w", "word")
                .end();
            assert_eq!(
                s,
                format!("VMSEAL1 v d={v} h={v:#x} t={d:#010x} b={b:02x}00{b:02x} w=word\r\n")
            );
        }
    }
}
