//! What the stub measures, as data: the measurement plan and (on the host) the exact events.
//!
//! The stub and the builder both go through [`plan`], so the order of extends exists once:
//! every present, non-empty section named in [`sections::MEASURED`] in that table's order,
//! then every service section `.svcN` in ascending `N` ([`sections::service_rule`]). Each step
//! is two events (see [`crate::sections`]): the name (digest over the ASCII name with NUL),
//! then the contents (digest over the section's `VirtualSize` bytes), both with the UTF-16LE
//! name as event data. Empty sections are skipped, as systemd-stub does
//! (`measured-boot.md` §E.1). Other sections (`.text`, `.sbat`, …) are not measured by the
//! stub: they are covered by the firmware's Authenticode hash of the whole PE in PCR 4.
//!
//! [`stub_events`] (host only) computes the events with their digests; the builder uses it to
//! predict PCR 11, 12 and 13.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::sections;
use crate::tcg::EventType;

/// One section measurement (two extends).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step<'a, 'b> {
    /// The section name.
    pub name: &'a str,
    /// PCR both events go to.
    pub pcr: u32,
    /// Event type of both events.
    pub event_type: EventType,
    /// The section contents (`VirtualSize` bytes).
    pub contents: &'b [u8],
}

impl Step<'_, '_> {
    /// Event data of both events: the name as UTF-16LE with NUL.
    pub fn event_data(&self) -> Vec<u8> {
        sections::event_data(self.name)
    }

    /// Bytes hashed for the first event: the ASCII name with NUL.
    pub fn name_digest_input(&self) -> Vec<u8> {
        sections::name_digest_input(self.name)
    }
}

/// Why the sections cannot be planned or predicted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PredictError {
    /// A section name given twice.
    DuplicateSection(String),
    /// A bank vmseal cannot compute.
    #[cfg(not(target_os = "uefi"))]
    Unsupported(crate::digest::UnsupportedAlgorithm),
}

impl fmt::Display for PredictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateSection(n) => write!(f, "section {n:?} is given twice"),
            #[cfg(not(target_os = "uefi"))]
            Self::Unsupported(u) => u.fmt(f),
        }
    }
}

impl core::error::Error for PredictError {}

/// The measurement steps for the sections present in an appliance PE, in measurement order.
/// `sections` is `(name, contents)` in any order; unmeasured names are ignored; a duplicate
/// name is an error (a PE with two `.linux` sections is refused, not guessed at).
pub fn plan<'a, 'b>(sections: &[(&'a str, &'b [u8])]) -> Result<Vec<Step<'a, 'b>>, PredictError> {
    for (i, (name, _)) in sections.iter().enumerate() {
        if sections.iter().take(i).any(|(n, _)| n == name) {
            return Err(PredictError::DuplicateSection((*name).into()));
        }
    }
    let mut steps = Vec::new();
    for rule in sections::MEASURED {
        if let Some((name, contents)) = sections.iter().find(|(n, _)| *n == rule.name)
            && !contents.is_empty()
        {
            steps.push(Step { name, pcr: rule.pcr, event_type: rule.event_type, contents });
        }
    }
    // The services in ascending index: each round takes the smallest index above the last.
    // Indices are canonical (no leading zeros) and names unique, so no two are equal and this
    // is the one order; a selection instead of a sort keeps ~2.5 KiB of sort code out of the
    // stub (issue 17), and there are at most a few dozen sections.
    let (pcr, event_type) = sections::service_rule();
    let mut last = None;
    while let Some((index, name, contents)) = sections
        .iter()
        .filter_map(|(n, c)| Some((sections::service_index(n)?, *n, *c)))
        .filter(|(i, _, c)| !c.is_empty() && last.is_none_or(|l| *i > l))
        .min_by_key(|(i, _, _)| *i)
    {
        steps.push(Step { name, pcr, event_type, contents });
        last = Some(index);
    }
    Ok(steps)
}

/// The exact events the stub logs for `sections` (see [`plan`]), with one digest per bank in
/// `banks`, in the order given. Deviation from a plain `Vec<Event>`: a duplicate section or a
/// bank vmseal cannot hash is an error rather than a silently different prediction.
#[cfg(not(target_os = "uefi"))]
pub fn stub_events(
    sections: &[(&str, &[u8])],
    banks: &[crate::tcg::HashAlg],
) -> Result<Vec<crate::eventlog::Event>, PredictError> {
    let sizes: Vec<(&str, u64)> = sections.iter().map(|(n, c)| (*n, c.len() as u64)).collect();
    stub_events_from(&sizes, banks, &mut |name| {
        let contents = sections.iter().find(|(n, _)| *n == name).map_or(&[][..], |(_, c)| *c);
        digests(banks, contents)
    })
}

/// One digest per bank: `(bank, digest)`.
#[cfg(not(target_os = "uefi"))]
pub type BankDigests = Vec<(crate::tcg::HashAlg, Vec<u8>)>;

/// [`stub_events`] for sections known by `(name, VirtualSize)`, with the contents digests
/// supplied by `contents` (`(bank, digest)` for every bank in `banks`, in that order): for a
/// caller that hashed the sections while streaming the file, never holding them in memory.
#[cfg(not(target_os = "uefi"))]
pub fn stub_events_from(
    sections: &[(&str, u64)],
    banks: &[crate::tcg::HashAlg],
    contents: &mut dyn FnMut(&str) -> Result<BankDigests, PredictError>,
) -> Result<Vec<crate::eventlog::Event>, PredictError> {
    use crate::eventlog::Event;

    // `plan` looks at the contents only to skip empty sections: one byte stands for any.
    let stand_in: Vec<(&str, &[u8])> = sections
        .iter()
        .map(|(n, size)| (*n, if *size == 0 { &[][..] } else { &[0u8][..] }))
        .collect();
    let mut events = Vec::new();
    for step in plan(&stand_in)? {
        let data = step.event_data();
        events.push(Event {
            pcr: step.pcr,
            event_type: step.event_type,
            digests: digests(banks, &step.name_digest_input())?,
            data: data.clone(),
        });
        events.push(Event {
            pcr: step.pcr,
            event_type: step.event_type,
            digests: contents(step.name)?,
            data,
        });
    }
    Ok(events)
}

#[cfg(not(target_os = "uefi"))]
fn digests(banks: &[crate::tcg::HashAlg], data: &[u8]) -> Result<BankDigests, PredictError> {
    let mut h = crate::digest::MultiHasher::new(banks).map_err(PredictError::Unsupported)?;
    h.update(data);
    Ok(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcg::{HashAlg, pcr};

    #[test]
    fn plan_follows_the_tables() {
        let s: &[(&str, &[u8])] = &[
            (".svc10", b"s10"),
            (".vmseal", b"p"),
            (".svc2", b"s2"),
            (".text", b"code"),
            (".cmdline", b""),
            (".guest", b"elf"),
        ];
        let steps = plan(s).unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
        assert_eq!(names, [".guest", ".vmseal", ".svc2", ".svc10"]);
        let pcrs: Vec<u32> = steps.iter().map(|s| s.pcr).collect();
        assert_eq!(pcrs, [pcr::KERNEL_BOOT, pcr::KERNEL_CONFIG, pcr::SYSEXTS, pcr::SYSEXTS]);
        assert_eq!(
            plan(&[(".guest", b"a"), (".guest", b"b")]),
            Err(PredictError::DuplicateSection(".guest".into()))
        );
    }

    /// The services come in ascending index whatever the section order (the sort the
    /// selection replaced is the oracle), empty ones skipped, gaps kept.
    #[test]
    fn services_in_ascending_index() {
        let names: Vec<String> = (0..40).map(|i| alloc::format!(".svc{i}")).collect();
        for seed in 0..20usize {
            // A different permutation (7 is coprime to 40) and empty set per seed.
            let s: Vec<(&str, &[u8])> = (0..40)
                .map(|k| (k * 7 + seed * 3) % 40)
                .filter(|i| (i + seed) % 5 != 0)
                .map(|i| (names[i].as_str(), if (i * seed) % 3 == 1 { &b""[..] } else { b"x" }))
                .collect();
            let mut want: Vec<(usize, &str)> = s
                .iter()
                .filter(|(_, c)| !c.is_empty())
                .map(|(n, _)| (sections::service_index(n).unwrap(), *n))
                .collect();
            want.sort_unstable();
            let got: Vec<&str> = plan(&s).unwrap().iter().map(|st| st.name).collect();
            assert_eq!(got, want.iter().map(|(_, n)| *n).collect::<Vec<_>>(), "seed {seed}");
        }
    }

    #[test]
    fn two_events_per_section() {
        let ev = stub_events(&[(".vmseal", b"policy")], &[HashAlg::SHA256]).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(
            ev[0].digest(HashAlg::SHA256),
            Some(&crate::digest::hash(HashAlg::SHA256, b".vmseal\0").unwrap()[..])
        );
        assert_eq!(
            ev[1].digest(HashAlg::SHA256),
            Some(&crate::digest::hash(HashAlg::SHA256, b"policy").unwrap()[..])
        );
        assert_eq!(ev[1].pcr, pcr::KERNEL_CONFIG);
        assert!(stub_events(&[(".vmseal", b"p")], &[HashAlg::SM3_256]).is_err());
    }
}
