//! The measurement loop: which sections, in which order, into which PCR — all from
//! `policies::sections` (never re-listed here) — against the TPM behind [`Tpm`].
//!
//! For each present section, in [`policies::sections::MEASURED`] order and then `.svcN` by
//! ascending `N`: two `HashLogExtendEvent` calls, EV_IPL with event data
//! [`sections::event_data`], first over [`sections::name_digest_input`], then over the
//! section's `VirtualSize` bytes. After each, the entry the firmware logged is read back and
//! written to the record. The first failure stops the loop (fail closed): the caller reports
//! it and powers off.

use crate::eventlog::{Event2, LogError};
use crate::pe::{Image, PeError};
use crate::record::{self, Hex8};
use alloc::vec::Vec;
use core::fmt::{self, Write};
use policies::predict::{self, Step};
use policies::record::{Token, write_hex_0x};
use policies::sections;
use policies::tcg::EventType;

/// One section to measure: the plan step shared with the builder's prediction.
pub type Planned<'i> = Step<'i, 'i>;

/// The sections of `img` to measure, in canonical order — [`policies::predict::plan`] over the
/// image's sections, so the stub and the builder's prediction share one ordering. A measured
/// name present twice is refused (`pe-duplicate-section`), never guessed at.
pub fn plan<'i>(img: &'i Image<'_>) -> Result<Vec<Planned<'i>>, PeError> {
    let mut present: Vec<(&'i str, &'i [u8])> = Vec::new();
    for (i, s) in img.sections().iter().enumerate() {
        let Some(name) = s.name().filter(|n| sections::is_reserved(n)) else {
            continue;
        };
        if present.iter().any(|(n, _)| *n == name) {
            return Err(PeError::Duplicate(i));
        }
        present.push((name, img.contents(s)));
    }
    // Duplicates were refused above, which is the only error `plan` reports in the stub.
    predict::plan(&present).map_err(|_| PeError::Duplicate(0))
}

/// Why a measurement failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A firmware call returned this EFI status.
    Status(u64),
    /// The event log could not be read back.
    Log(LogError),
    /// The firmware reported the log truncated: the extend happened but is not logged.
    LogTruncated,
    /// The last log entry is not the event just extended.
    Mismatch,
}

/// The record word (`error … status=`); `Display` writes the same.
impl Token for Failure {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        match self {
            Self::Status(s) => write_hex_0x(w, *s, 1),
            Self::Log(e) => e.write_token(w),
            Self::LogTruncated => w.write_str("log-truncated"),
            Self::Mismatch => w.write_str("log-mismatch"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_token(f)
    }
}

/// The TPM as the measurement loop needs it (EFI_TCG2_PROTOCOL in the stub, a fake in tests).
pub trait Tpm {
    /// `HashLogExtendEvent(flags 0, data, EFI_TCG2_EVENT{pcr, event_type, event_data})`.
    fn extend(
        &mut self,
        pcr: u32,
        event_type: EventType,
        event_data: &[u8],
        data: &[u8],
    ) -> Result<(), Failure>;
    /// Call `f` with the last entry of the event log (TCG_2 format).
    fn last_entry(&mut self, f: &mut dyn FnMut(&Event2<'_>)) -> Result<(), Failure>;
}

/// Measure every planned section, writing one `measure` record line per extend.
pub fn measure_all<W: Write>(
    tpm: &mut dyn Tpm,
    plan: &[Planned<'_>],
    rec: &mut W,
) -> Result<(), Failure> {
    for p in plan {
        let event_data = p.event_data();
        let name_input = p.name_digest_input();
        for (part, input) in [("name", name_input.as_slice()), ("data", p.contents)] {
            tpm.extend(p.pcr, p.event_type, &event_data, input)?;
            let mut ok = false;
            tpm.last_entry(&mut |ev| {
                // Only an entry that is exactly our event may be reported as our measurement;
                // anything else means the log does not show what we extended.
                if ev.pcr != p.pcr
                    || ev.event_type != p.event_type
                    || ev.event != event_data.as_slice()
                {
                    return;
                }
                ok = true;
                let mut l = record::line(rec, "measure")
                    .kv("pcr", p.pcr)
                    .kv("type", Hex8(p.event_type.0))
                    .kv("section", p.name)
                    .kv("part", part)
                    .kv("size", input.len());
                for (alg, d) in ev.digests() {
                    if let Some(n) = alg.name() {
                        l = l.bytes(n, d);
                    }
                }
                l.end();
            })?;
            if !ok {
                return Err(Failure::Mismatch);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::tests::{event2, spec_id};
    use crate::eventlog::{parse_event2, parse_spec_id};
    use crate::pe::tests::image;
    use policies::record::Line;

    /// Logs every extend with fake digests (the first bytes are the data length).
    #[derive(Default)]
    struct FakeTpm {
        log: Vec<Vec<u8>>,
        fail_at: Option<usize>,
    }

    impl Tpm for FakeTpm {
        fn extend(
            &mut self,
            pcr: u32,
            _t: EventType,
            ev: &[u8],
            data: &[u8],
        ) -> Result<(), Failure> {
            if self.fail_at == Some(self.log.len()) {
                return Err(Failure::Status(0x8000_0000_0000_0007));
            }
            let mut d = [0u8; 32];
            d[0] = data.len() as u8;
            self.log.push(event2(pcr, [pcr as u8; 20], d, ev));
            Ok(())
        }
        fn last_entry(&mut self, f: &mut dyn FnMut(&Event2<'_>)) -> Result<(), Failure> {
            let (sizes, _) = parse_spec_id(&spec_id()).unwrap();
            let e = self.log.last().ok_or(Failure::Mismatch)?;
            f(&parse_event2(&sizes, e).map_err(Failure::Log)?);
            Ok(())
        }
    }

    fn sample() -> Vec<u8> {
        // Table order deliberately differs from the canonical order.
        image(
            &[
                (".svc1", 0x1000, b"s1"),
                (".vmseal", 0x1100, b"policy"),
                (".svc0", 0x1200, b"s0"),
                (".cmdline", 0x1300, b"console=ttyS0"),
                (".empty", 0x1400, b""),
                (".guest", 0x1500, b"\x7fELF"),
            ],
            0x2000,
        )
    }

    #[test]
    fn canonical_order_and_records() {
        let b = sample();
        let img = Image::parse(&b).unwrap();
        let p = plan(&img).unwrap();
        let names: Vec<_> = p.iter().map(|p| (p.name, p.pcr)).collect();
        assert_eq!(
            names,
            [
                (".guest", 11),
                (".cmdline", 11),
                (".vmseal", 12),
                (".svc0", 13),
                (".svc1", 13)
            ]
        );
        let mut tpm = FakeTpm::default();
        let mut rec = String::new();
        measure_all(&mut tpm, &p, &mut rec).unwrap();
        let lines = Line::parse_all(&rec).unwrap();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0].get("part"), Some("name"));
        assert_eq!(lines[0].get("size"), Some("7"));
        assert_eq!(lines[1].get("part"), Some("data"));
        assert_eq!(lines[1].get("size"), Some("4"));
        assert_eq!(lines[1].get("type"), Some("0x0000000d"));
        assert_eq!(lines[9].get("section"), Some(".svc1"));
        assert_eq!(lines[9].get("pcr"), Some("13"));
        assert!(lines[9].get("sha1").is_some() && lines[9].get("sha256").is_some());
    }

    #[test]
    fn stops_at_the_first_failure() {
        let b = sample();
        let img = Image::parse(&b).unwrap();
        let p = plan(&img).unwrap();
        let mut tpm = FakeTpm {
            fail_at: Some(3),
            ..Default::default()
        };
        let mut rec = String::new();
        assert_eq!(
            measure_all(&mut tpm, &p, &mut rec),
            Err(Failure::Status(0x8000_0000_0000_0007))
        );
        assert_eq!(Line::parse_all(&rec).unwrap().len(), 3);
    }

    #[test]
    fn duplicate_services_are_refused() {
        let b = image(&[(".svc0", 0x1000, b"a"), (".svc0", 0x1100, b"b")], 0x2000);
        assert_eq!(plan(&Image::parse(&b).unwrap()), Err(PeError::Duplicate(1)));
    }
}
