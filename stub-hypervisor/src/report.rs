//! What the stub writes on the record channel after ExitBootServices (hypervisor mode), so the
//! host can rebuild `eventlog.bin` and `pcrs.json` (format: `policies::record`, verbs
//! `eventlog`, `eventlog-end`, `pcr`, `pcrs-end`; parsers `collect_eventlog`, `collect_pcrs`).
//! Never allocates.

use crate::record::{Hex8, line};
use core::fmt::{self, Write};
use policies::record::{Crc32, EVENTLOG_CHUNK, Token, write_hex_0x};
use policies::tcg::HashAlg;
use policies::tpm2::PcrValues;

/// Writes the event log as `eventlog offset= hex=` lines of [`EVENTLOG_CHUNK`] bytes,
/// however the bytes are fed, and keeps the CRC-32 for `eventlog-end`.
pub struct LogWriter<'w, W: Write> {
    w: &'w mut W,
    offset: usize,
    crc: Crc32,
    pending: [u8; EVENTLOG_CHUNK],
    len: usize,
}

impl<'w, W: Write> LogWriter<'w, W> {
    /// A writer at offset 0.
    pub fn new(w: &'w mut W) -> Self {
        Self {
            w,
            offset: 0,
            crc: Crc32::new(),
            pending: [0; EVENTLOG_CHUNK],
            len: 0,
        }
    }

    fn flush(&mut self) {
        let chunk = self.pending.get(..self.len).unwrap_or(&[]);
        if chunk.is_empty() {
            return;
        }
        line(self.w, "eventlog")
            .kv("offset", self.offset)
            .bytes("hex", chunk)
            .end();
        self.crc.update(chunk);
        self.offset += chunk.len();
        self.len = 0;
    }

    /// Append `bytes` to the log.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            if let Some(slot) = self.pending.get_mut(self.len) {
                *slot = *b;
                self.len += 1;
            }
            if self.len == EVENTLOG_CHUNK {
                self.flush();
            }
        }
    }

    /// Write the last chunk and `eventlog-end size= crc32= copied= final_added=`.
    pub fn end(mut self, copied: usize, final_added: u64) {
        self.flush();
        line(self.w, "eventlog-end")
            .kv("size", self.offset)
            .kv("crc32", Hex8(self.crc.finish()))
            .kv("copied", copied)
            .kv("final_added", final_added)
            .end();
    }
}

/// A bank as the record names it: `sha256`, or `0x%04x` for an algorithm without a name.
pub struct Bank(pub HashAlg);

impl Token for Bank {
    fn write_token<V: Write + ?Sized>(&self, w: &mut V) -> fmt::Result {
        match self.0.name() {
            Some(n) => w.write_str(n),
            None => write_hex_0x(w, self.0.0.into(), 4),
        }
    }
}

struct BankList<'a>(&'a PcrValues);

impl Token for BankList<'_> {
    fn write_token<V: Write + ?Sized>(&self, w: &mut V) -> fmt::Result {
        for (i, b) in self.0.banks().enumerate() {
            if i > 0 {
                w.write_str(",")?;
            }
            Bank(b.alg).write_token(w)?;
        }
        Ok(())
    }
}

/// `pcr bank= index= value=` for every PCR read, then `pcrs-end banks= count=
/// update_counter= ms=` (`ms`: how long the TIS reads took).
pub fn pcrs<W: Write>(w: &mut W, values: &PcrValues, ms: u64) {
    let mut count = 0u32;
    for bank in values.banks() {
        for (i, v) in bank.iter() {
            line(w, "pcr")
                .kv("bank", Bank(bank.alg))
                .kv("index", i)
                .bytes("value", v)
                .end();
            count += 1;
        }
    }
    line(w, "pcrs-end")
        .kv("banks", BankList(values))
        .kv("count", count)
        .kv("update_counter", values.update_counter)
        .kv("ms", ms)
        .end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use policies::record::{Line, collect_eventlog, collect_pcrs};
    use policies::tpm2::{self, Transport};

    #[test]
    fn the_host_collects_what_the_stub_writes() {
        let log: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let mut s = String::new();
        let mut w = LogWriter::new(&mut s);
        w.write(&log[..150]);
        w.write(&log[150..]);
        w.end(150, 2);
        let lines = Line::parse_all(&s).unwrap();
        assert_eq!(lines.len(), 5); // 64 + 64 + 64 + 8, end
        assert_eq!(lines[3].get("offset"), Some("192"));
        assert_eq!(lines[4].get("copied"), Some("150"));
        assert_eq!(collect_eventlog(&lines).unwrap(), log);

        // A two-bank TPM, PCR 0-23 each.
        struct T;
        impl Transport for T {
            type Error = ();
            fn transact(&mut self, cmd: &[u8], resp: &mut [u8]) -> Result<usize, ()> {
                let mut r = vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
                if cmd == tpm2::get_capability_pcrs() {
                    r.extend_from_slice(&[0, 0, 0, 0, 5, 0, 0, 0, 2]);
                    r.extend_from_slice(&[
                        0, 0x0b, 3, 0xff, 0xff, 0xff, 0, 0x04, 3, 0xff, 0xff, 0xff,
                    ]);
                } else {
                    let size = if cmd[15] == 0x0b { 32 } else { 20 };
                    let sel = u32::from_le_bytes([cmd[17], cmd[18], cmd[19], 0]);
                    let sel = sel & (0xFF << sel.trailing_zeros());
                    r.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1, 0, cmd[15], 3]);
                    r.extend_from_slice(&sel.to_le_bytes()[..3]);
                    r.extend_from_slice(&8u32.to_be_bytes());
                    for i in tpm2::PcrSet(sel).iter() {
                        r.extend_from_slice(&[0, size as u8]);
                        r.extend(std::iter::repeat_n(i as u8, size));
                    }
                }
                let n = r.len();
                r[2..6].copy_from_slice(&(n as u32).to_be_bytes());
                resp[..n].copy_from_slice(&r);
                Ok(n)
            }
        }
        let banks = tpm2::read_banks(&mut T).unwrap();
        let v = tpm2::read_pcrs(&mut T, &banks).unwrap();
        let mut s = String::new();
        pcrs(&mut s, &v, 12);
        let lines = Line::parse_all(&s).unwrap();
        assert_eq!(
            lines.last().unwrap().to_string(),
            "VMSEAL1 pcrs-end banks=sha256,sha1 count=48 update_counter=9 ms=12"
        );
        let p = collect_pcrs(&lines).unwrap();
        assert_eq!(p.len(), 48);
        assert_eq!(p[47], (HashAlg::SHA1, 23, vec![23; 20]));
        for (alg, name) in [
            (0x99, "0x0099"),
            (0, "0x0000"),
            (0xffff, "0xffff"),
            (0xb, "sha256"),
        ] {
            let mut s = String::new();
            Bank(HashAlg(alg)).write_token(&mut s).unwrap();
            assert_eq!(s, name);
        }
    }
}
