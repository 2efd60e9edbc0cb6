//! `NAME.pcrs.json`: an event log and the PCR values it gives, as versioned JSON (format 1).
//!
//! Written by `vmseal build` and `vmseal pcr predict` (the expected log), by
//! `vmseal eventlog show --json` (a decoded real log), and read by `vmseal pcr diff`. The
//! format is documented in `docs/pcrs-json.md`; in short:
//!
//! ```json
//! { "format": 1, "banks": ["sha1", "sha256"],
//!   "events": [ { "pcr": 4, "type": "EV_EFI_ACTION", "digests": { "sha256": "3d67…" },
//!                 "data": "43616c6c…", "description": "\"Calling EFI Application…\"" } ],
//!   "pcrs": { "sha256": { "4": "…" } },
//!   "sources": { … } }
//! ```
//!
//! An event with `"data_compared": false` has event data that the firmware does not hash and
//! that differs per boot (`UEFI_IMAGE_LOAD_EVENT` addresses): its `data` is a placeholder and a
//! diff ignores it. Reading checks every field (hex, sizes, bank names) and reports the first
//! bad one by its JSON path; it never panics.

use std::collections::BTreeMap;
use std::path::Path;

use policies::eventlog::{Event, EventLog};
use policies::replay::{NUM_PCRS, Pcrs};
use policies::tcg::{EventType, HashAlg};
use serde::{Deserialize, Serialize};

use crate::measure::describe;

/// The format version written in `"format"`.
pub const FORMAT: u32 = 1;

/// One event of a `.pcrs.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonEvent {
    /// PCR index.
    pub pcr: u32,
    /// Event type: the spec name (`EV_EFI_ACTION`) or `0x%08x` when unknown.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Digest per bank name, lowercase hex.
    pub digests: BTreeMap<String, String>,
    /// Event data, lowercase hex.
    pub data: String,
    /// What the event is, in words (informative; never compared).
    pub description: String,
    /// `false` when `data` is a placeholder that a comparison must ignore.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub data_compared: bool,
}

fn yes() -> bool {
    true
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if signature"
)]
fn is_true(b: &bool) -> bool {
    *b
}

/// A whole `.pcrs.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PcrsFile {
    /// [`FORMAT`].
    pub format: u32,
    /// The banks of every event digest and of `pcrs`, in TPM bank order.
    pub banks: Vec<String>,
    /// The events, in log order.
    pub events: Vec<JsonEvent>,
    /// PCR values per bank, per index (keys are decimal strings in JSON).
    pub pcrs: BTreeMap<String, BTreeMap<u32, String>>,
    /// Where the events came from (informative, free-form).
    #[serde(default)]
    pub sources: serde_json::Map<String, serde_json::Value>,
    /// The AMD SEV-SNP launch digest of the appliance and what it assumes (optional; absent
    /// unless asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<crate::confidential::SnpPrediction>,
}

/// An event with its comparison flag, in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    /// The event.
    pub event: Event,
    /// Whether the event data is meaningful for comparison (see the module docs).
    pub data_compared: bool,
    /// A description that replaces the decoded one (a prediction knows what the event is,
    /// e.g. which file an image event hashes).
    pub label: Option<String>,
}

impl LoggedEvent {
    /// An event whose data is compared.
    pub fn new(event: Event) -> Self {
        Self {
            event,
            data_compared: true,
            label: None,
        }
    }
}

/// What is wrong with a `.pcrs.json`.
#[derive(Debug, thiserror::Error)]
pub enum PcrsJsonError {
    /// Not JSON of this shape.
    #[error(
        "{file}: not a vmseal pcrs.json: {source} — give a file written by `vmseal pcr predict`, `vmseal build` or `vmseal eventlog show --json`"
    )]
    Json {
        /// The file.
        file: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A field with a bad value.
    #[error("{file}: {field}: {problem}")]
    Field {
        /// The file.
        file: String,
        /// JSON path of the field.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The file cannot be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The bank name of `alg` (`sha256`).
pub fn bank_name(alg: HashAlg) -> String {
    alg.name()
        .map_or_else(|| format!("{:#06x}", alg.0), str::to_string)
}

impl JsonEvent {
    /// The JSON form of `e`.
    pub fn from_event(e: &LoggedEvent) -> Self {
        Self {
            pcr: e.event.pcr,
            event_type: describe::type_name(e.event.event_type),
            digests: e
                .event
                .digests
                .iter()
                .map(|(a, d)| (bank_name(*a), hex::encode(d)))
                .collect(),
            data: hex::encode(&e.event.data),
            description: e
                .label
                .clone()
                .unwrap_or_else(|| describe::describe(&e.event)),
            data_compared: e.data_compared,
        }
    }
}

impl PcrsFile {
    /// The file for `events` replayed in `banks` (which must be computable); `pcrs_listed` are
    /// the PCR indices to write values for (`None` = all 24).
    pub fn new(
        banks: &[HashAlg],
        events: &[LoggedEvent],
        pcrs: &Pcrs,
        pcrs_listed: Option<&[u32]>,
        sources: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        let all: Vec<u32> = (0..NUM_PCRS as u32).collect();
        let listed = pcrs_listed.unwrap_or(&all);
        let mut values = BTreeMap::new();
        for alg in banks {
            let bank: BTreeMap<u32, String> = listed
                .iter()
                .filter_map(|i| Some((*i, hex::encode(pcrs.get(*alg, *i)?))))
                .collect();
            values.insert(bank_name(*alg), bank);
        }
        Self {
            format: FORMAT,
            banks: banks.iter().map(|a| bank_name(*a)).collect(),
            events: events.iter().map(JsonEvent::from_event).collect(),
            pcrs: values,
            sources,
            snp: None,
        }
    }

    /// The file for a parsed real log (every event compared, every PCR listed).
    pub fn from_log(
        log: &EventLog,
        pcrs: &Pcrs,
        sources: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        let banks: Vec<HashAlg> = pcrs.banks().collect();
        let events: Vec<LoggedEvent> = log.events.iter().cloned().map(LoggedEvent::new).collect();
        Self::new(&banks, &events, pcrs, None, sources)
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parse and check a file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, PcrsJsonError> {
        let f: Self = serde_json::from_str(text).map_err(|source| PcrsJsonError::Json {
            file: file.into(),
            source,
        })?;
        let bad = |field: String, problem: String| PcrsJsonError::Field {
            file: file.into(),
            field,
            problem,
        };
        if f.format != FORMAT {
            return Err(bad(
                "format".into(),
                format!(
                    "version {} is not supported (this vmseal reads {FORMAT}) — regenerate it with this vmseal",
                    f.format
                ),
            ));
        }
        for b in &f.banks {
            HashAlg::from_name(b)
                .ok_or_else(|| bad("banks".into(), format!("unknown bank {b:?}")))?;
        }
        for (i, e) in f.events.iter().enumerate() {
            e.to_event()
                .map_err(|(field, problem)| bad(format!("events[{i}].{field}"), problem))?;
        }
        for (bank, values) in &f.pcrs {
            let alg = HashAlg::from_name(bank)
                .ok_or_else(|| bad(format!("pcrs.{bank}"), "unknown bank".into()))?;
            for (i, v) in values {
                let ok = *i < NUM_PCRS as u32
                    && hex::decode(v).is_ok_and(|d| Some(d.len()) == alg.digest_size());
                if !ok {
                    return Err(bad(
                        format!("pcrs.{bank}.{i}"),
                        format!("{v:?} is not a {bank} digest of PCR 0..23"),
                    ));
                }
            }
        }
        if let Some(snp) = &f.snp {
            let ok = hex::decode(&snp.launch_digest).is_ok_and(|d| d.len() == 48);
            if !ok {
                return Err(bad(
                    "snp.launch_digest".into(),
                    format!("{:?} is not a SHA-384 digest", snp.launch_digest),
                ));
            }
        }
        Ok(f)
    }

    /// Read and check a file.
    pub fn load(path: &Path) -> Result<Self, PcrsJsonError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PcrsJsonError::Io {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
    }

    /// The events in memory (checked by [`PcrsFile::parse`]; a bad event is skipped).
    pub fn logged_events(&self) -> Vec<LoggedEvent> {
        self.events
            .iter()
            .filter_map(|e| {
                Some(LoggedEvent {
                    event: e.to_event().ok()?,
                    data_compared: e.data_compared,
                    label: None,
                })
            })
            .collect()
    }

    /// The PCR values in memory.
    pub fn pcr_values(&self) -> Pcrs {
        let mut p = Pcrs::new();
        for (bank, values) in &self.pcrs {
            let Some(alg) = HashAlg::from_name(bank) else {
                continue;
            };
            for (i, v) in values {
                if let Ok(d) = hex::decode(v) {
                    let _ = p.set(alg, *i, d);
                }
            }
        }
        p
    }
}

impl JsonEvent {
    /// The event; on error the field name and the problem.
    pub fn to_event(&self) -> Result<Event, (String, String)> {
        let event_type = describe::parse_type_name(&self.event_type).ok_or_else(|| {
            (
                "type".to_string(),
                format!("unknown event type {:?}", self.event_type),
            )
        })?;
        if self.pcr >= NUM_PCRS as u32 {
            return Err(("pcr".into(), format!("{} is over 23", self.pcr)));
        }
        let mut digests = Vec::new();
        for (bank, d) in &self.digests {
            let alg = HashAlg::from_name(bank)
                .ok_or_else(|| (format!("digests.{bank}"), "unknown bank".to_string()))?;
            let bytes = hex::decode(d)
                .ok()
                .filter(|b| Some(b.len()) == alg.digest_size())
                .ok_or_else(|| (format!("digests.{bank}"), format!("not a {bank} digest")))?;
            digests.push((alg, bytes));
        }
        // TPM bank order, as EDK2 writes the digests.
        digests.sort_by_key(|(a, _)| *a);
        let data = hex::decode(&self.data).map_err(|e| ("data".to_string(), e.to_string()))?;
        Ok(Event {
            pcr: self.pcr,
            event_type,
            digests,
            data,
        })
    }
}

/// `EventType` of a JSON event (for callers that only need the type).
pub fn event_type_of(e: &JsonEvent) -> Option<EventType> {
    describe::parse_type_name(&e.event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_fields() {
        let ev = Event {
            pcr: 4,
            event_type: EventType::EFI_ACTION,
            digests: vec![(HashAlg::SHA256, vec![7; 32])],
            data: b"Calling".to_vec(),
        };
        let events = vec![LoggedEvent::new(ev.clone())];
        let pcrs = policies::replay::replay_events([&ev], &[HashAlg::SHA256]).unwrap();
        let f = PcrsFile::new(
            &[HashAlg::SHA256],
            &events,
            &pcrs,
            Some(&[4]),
            Default::default(),
        );
        let text = f.to_text();
        let back = PcrsFile::parse(&text, "x").unwrap();
        assert_eq!(back, f);
        assert_eq!(back.logged_events(), events);
        assert_eq!(
            back.pcr_values().get(HashAlg::SHA256, 4),
            pcrs.get(HashAlg::SHA256, 4)
        );
        assert!(!text.contains("data_compared"));
        let bad = text.replace("\"EV_EFI_ACTION\"", "\"EV_NOPE\"");
        let e = PcrsFile::parse(&bad, "x").unwrap_err().to_string();
        assert!(e.contains("events[0].type"), "{e}");
        // The optional snp object: absent unless set, round-trips, its digest is checked.
        let mut with_snp = f.clone();
        with_snp.snp = Some(crate::confidential::SnpPrediction {
            launch_digest: "ab".repeat(48),
            firmware: "OVMF.fd".into(),
            firmware_sha256: "cd".repeat(32),
            vcpus: 2,
            vcpu_type: Some("EPYC".into()),
            vcpu_signature: "0x800f12".into(),
            guest_features: "0x1".into(),
            policy: "0x30000".into(),
            vmm: "qemu".into(),
            payload: None,
            covers: "firmware".into(),
            verified: "no".into(),
        });
        let snp_text = with_snp.to_text();
        assert_eq!(PcrsFile::parse(&snp_text, "x").unwrap(), with_snp);
        let e = PcrsFile::parse(&snp_text.replace(&"ab".repeat(48), "ab"), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("snp.launch_digest"), "{e}");
        let bad = text.replace("\"format\": 1", "\"format\": 9");
        assert!(
            PcrsFile::parse(&bad, "x")
                .unwrap_err()
                .to_string()
                .contains("format")
        );
    }
}
