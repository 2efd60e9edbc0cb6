//! `vmseal pcr diff`: expected (a `.pcrs.json` prediction) against actual (a boot record
//! directory, a `.pcrs.json`, or a binary event log), explained in words a person can act on.
//!
//! Compared: every bank present on both sides, every PCR with a value on both sides. The
//! actual side's values are the TPM's (the record's `pcrs.json`) when present — after checking
//! that its event log replays to them — else the replay of its log.
//!
//! **Alignment.** For each differing PCR, the two event lists of that PCR are aligned by a
//! longest common subsequence (LCS) on the event identity (type, digests of the common banks,
//! and the event data unless a side marks it `data_compared: false`). LCS rather than a
//! scored Needleman–Wunsch: the lists are short (< 50 events), and an LCS gives exactly the
//! minimal set of missing and extra events, which is what the explanation needs; there is no
//! meaningful substitution cost to tune. Within each run of unmatched events, a missing and an
//! extra event of the same kind (type plus variable name, section name or tag) are paired as
//! "changed"; the rest stay missing or extra. Each change, miss or extra becomes one sentence
//! ([`explain`]).

use std::collections::BTreeMap;
use std::path::Path;

use policies::eventlog::{Event, Payload};
use policies::replay::{NUM_PCRS, Pcrs};
use policies::tcg::{EventType, HashAlg, pcr};
use serde::Serialize;

use crate::measure::describe::{self, TAG_LINUX_INITRD, TAG_LINUX_LOAD_OPTIONS, variable_summary};
use crate::measure::pcrs_json::{LoggedEvent, PcrsFile, PcrsJsonError, bank_name};
use crate::measure::predict::{CALLING_BOOT_OPTION, EXIT_BOOT_SERVICES, RETURNING_BOOT_OPTION};

/// One side of a comparison.
#[derive(Clone, Debug)]
pub struct Side {
    /// What was read (for messages).
    pub origin: String,
    /// The events (empty if only values are known).
    pub events: Vec<LoggedEvent>,
    /// Whether `events` is a log at all.
    pub has_log: bool,
    /// PCR values.
    pub pcrs: Pcrs,
    /// Problems found while reading (e.g. a log that does not replay to the TPM's values).
    pub problems: Vec<String>,
    /// The OVMF code file: the prediction's `sources.firmware_code`, or the one a record
    /// was booted with (`verdict.json`), when known.
    pub firmware: Option<String>,
}

/// The firmware code file a record directory was booted with (`verdict.json`).
fn recorded_firmware(dir: &Path) -> Option<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("verdict.json")).ok()?).ok()?;
    v["firmware_code"].as_str().map(str::to_owned)
}

/// Why a side cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A `.pcrs.json` problem.
    #[error(transparent)]
    Json(#[from] PcrsJsonError),
    /// An event-log problem.
    #[error(transparent)]
    Log(#[from] crate::measure::eventlog::EventlogError),
    /// Something else.
    #[error("{file}: {problem}")]
    Other {
        /// The file.
        file: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// PCR 10 belongs to Linux IMA: the kernel extends it after ExitBootServices and logs that in
/// the IMA log, not in the firmware log, so a record's firmware log cannot replay it (the
/// same exception as `policies/tests/fixtures.rs`). It is not predicted either.
pub const IMA_PCR: u32 = 10;

/// `pcrs.json` as `vmseal boot` writes it for a Linux guest: `[{"bank","index","value"}]`.
#[derive(serde::Deserialize)]
struct BootPcr {
    bank: String,
    index: u32,
    value: String,
}

fn read_values(path: &Path) -> Result<(Pcrs, Option<PcrsFile>), DiffError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PcrsJsonError::Io {
        file: file.clone(),
        source,
    })?;
    if text.trim_start().starts_with('[') {
        let list: Vec<BootPcr> =
            serde_json::from_str(&text).map_err(|source| PcrsJsonError::Json {
                file: file.clone(),
                source,
            })?;
        let mut p = Pcrs::new();
        for (i, v) in list.iter().enumerate() {
            let alg = HashAlg::from_name(&v.bank);
            let value = hex::decode(&v.value).ok();
            match (alg, value) {
                (Some(a), Some(d))
                    if Some(d.len()) == a.digest_size() && v.index < NUM_PCRS as u32 =>
                {
                    let _ = p.set(a, v.index, d);
                }
                _ => {
                    return Err(DiffError::Other {
                        file,
                        problem: format!(
                            "[{i}]: {}/{}/{:?} is not a PCR value",
                            v.bank, v.index, v.value
                        ),
                    });
                }
            }
        }
        return Ok((p, None));
    }
    let f = PcrsFile::parse(&text, &file)?;
    Ok((f.pcr_values(), Some(f)))
}

/// Read the expected side: a `.pcrs.json`.
pub fn load_expected(path: &Path) -> Result<Side, DiffError> {
    let f = PcrsFile::load(path)?;
    Ok(Side {
        origin: path.display().to_string(),
        events: f.logged_events(),
        has_log: true,
        pcrs: f.pcr_values(),
        problems: Vec::new(),
        firmware: f
            .sources
            .get("firmware_code")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    })
}

/// Read the actual side: a record directory (`eventlog.bin` and/or `pcrs.json`), a
/// `.pcrs.json`, or a binary event log.
pub fn load_actual(path: &Path) -> Result<Side, DiffError> {
    let origin = path.display().to_string();
    let (log_path, values_path) = if path.is_dir() {
        let l = path.join("eventlog.bin");
        let v = path.join("pcrs.json");
        if !l.is_file() && !v.is_file() && path.join("record.log").is_file() {
            let mut side = from_record_log(&path.join("record.log"))?;
            side.firmware = recorded_firmware(path);
            return Ok(side);
        }
        (l.is_file().then_some(l), v.is_file().then_some(v))
    } else if std::fs::read(path)
        .map(|b| b.first() == Some(&b'{') || b.first() == Some(&b'['))
        .unwrap_or(false)
    {
        (None, Some(path.to_path_buf()))
    } else {
        (Some(path.to_path_buf()), None)
    };
    if log_path.is_none() && values_path.is_none() {
        return Err(DiffError::Other {
            file: origin,
            problem: "neither eventlog.bin, pcrs.json nor record.log is in the record — give the directory of `vmseal boot --record` after a boot that reported its PCRs".into(),
        });
    }
    let mut side = Side {
        origin,
        events: Vec::new(),
        has_log: false,
        pcrs: Pcrs::new(),
        problems: Vec::new(),
        firmware: path.is_dir().then(|| recorded_firmware(path)).flatten(),
    };
    let mut replayed = None;
    if let Some(l) = &log_path {
        let shown = crate::measure::eventlog::load(l)?;
        side.events = shown
            .log
            .events
            .iter()
            .cloned()
            .map(LoggedEvent::new)
            .collect();
        side.has_log = true;
        replayed = Some(shown.pcrs);
    }
    match values_path {
        Some(v) => {
            let (values, file) = read_values(&v)?;
            if let (Some(f), None) = (&file, &log_path)
                && !f.events.is_empty()
            {
                side.events = f.logged_events();
                side.has_log = true;
                replayed = policies::replay::replay_events(
                    side.events.iter().map(|e| &e.event),
                    &values.banks().collect::<Vec<_>>(),
                )
                .ok();
            }
            if let Some(r) = &replayed {
                for alg in values.banks() {
                    for i in (0..NUM_PCRS as u32).filter(|i| *i != IMA_PCR) {
                        if let (Some(tpm), Some(log)) = (values.get(alg, i), r.get(alg, i))
                            && tpm != log
                        {
                            side.problems.push(format!(
                                "{}: PCR {i} {}: the event log replays to {}, the TPM reported {} — the log is incomplete or does not belong to this boot",
                                side.origin,
                                bank_name(alg),
                                hex::encode(log),
                                hex::encode(tpm)
                            ));
                        }
                    }
                }
            }
            side.pcrs = values;
        }
        None => side.pcrs = replayed.unwrap_or_default(),
    }
    Ok(side)
}

/// The actual side from the stub's record channel (`record.log`: `VMSEAL1 eventlog …` and
/// `VMSEAL1 pcr …` lines, [`policies::record::collect_eventlog`] and
/// [`policies::record::collect_pcrs`]), for a record directory without `eventlog.bin`.
fn from_record_log(path: &Path) -> Result<Side, DiffError> {
    let file = path.display().to_string();
    let other = |problem: String| DiffError::Other {
        file: file.clone(),
        problem,
    };
    let text = std::fs::read(path).map_err(|e| other(e.to_string()))?;
    let lines = policies::record::Line::parse_all(&String::from_utf8_lossy(&text))
        .map_err(|e| other(e.to_string()))?;
    let log = policies::record::collect_eventlog(&lines).map_err(|e| {
        other(format!(
            "no complete event log on the record channel: {e} — boot with a stub that sends it (VMSEAL1 eventlog lines)"
        ))
    })?;
    let shown = crate::measure::eventlog::parse(&log, &format!("{file} (event log)"))?;
    let mut side = Side {
        origin: file.clone(),
        events: shown
            .log
            .events
            .iter()
            .cloned()
            .map(LoggedEvent::new)
            .collect(),
        has_log: true,
        pcrs: shown.pcrs.clone(),
        problems: Vec::new(),
        firmware: None,
    };
    if let Ok(values) = policies::record::collect_pcrs(&lines) {
        let mut tpm = Pcrs::new();
        for (alg, i, v) in values {
            if alg.digest_size() == Some(v.len()) {
                let _ = tpm.set(alg, i, v);
            }
        }
        for alg in tpm.banks() {
            for i in (0..NUM_PCRS as u32).filter(|i| *i != IMA_PCR) {
                if let (Some(t), Some(l)) = (tpm.get(alg, i), shown.pcrs.get(alg, i))
                    && t != l
                {
                    side.problems.push(format!(
                        "{file}: PCR {i} {}: the event log replays to {}, the TPM reported {} — the log is incomplete or does not belong to this boot",
                        bank_name(alg),
                        hex::encode(l),
                        hex::encode(t)
                    ));
                }
            }
        }
        side.pcrs = tpm;
    }
    Ok(side)
}

/// Most events per PCR and side that [`diff`] aligns (the LCS table is quadratic); a real
/// firmware log has a few dozen.
pub const MAX_ALIGN: usize = 4096;

/// How two event lists of one PCR line up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Step {
    /// The same event on both sides.
    Same {
        /// Index in the expected list.
        expected: usize,
        /// Index in the actual list.
        actual: usize,
    },
    /// An expected event of the same kind as an actual one, with different contents.
    Changed {
        /// Index in the expected list.
        expected: usize,
        /// Index in the actual list.
        actual: usize,
    },
    /// Expected, not measured.
    Missing {
        /// Index in the expected list.
        expected: usize,
    },
    /// Measured, not expected.
    Extra {
        /// Index in the actual list.
        actual: usize,
    },
}

fn same(a: &LoggedEvent, b: &LoggedEvent, banks: &[HashAlg]) -> bool {
    a.event.pcr == b.event.pcr
        && a.event.event_type == b.event.event_type
        && banks
            .iter()
            .all(|alg| a.event.digest(*alg) == b.event.digest(*alg))
        && (!a.data_compared || !b.data_compared || a.event.data == b.event.data)
}

/// What kind of event this is, for pairing a missing with an extra event.
fn kind(e: &Event) -> (EventType, String) {
    let detail = match e.describe() {
        Payload::Variable { name, .. } => name,
        Payload::Tagged { id, .. } => format!("{id:#x}"),
        Payload::Text { text, .. } if e.event_type == EventType::IPL => text,
        _ => String::new(),
    };
    (e.event_type, detail)
}

/// Align `exp` and `act` (one PCR's events) by LCS, then pair changes (see the module docs).
pub fn align(exp: &[LoggedEvent], act: &[LoggedEvent], banks: &[HashAlg]) -> Vec<Step> {
    let (n, m) = (exp.len(), act.len());
    let mut t = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if same(&exp[i], &act[j], banks) {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut raw = Vec::new();
    while i < n || j < m {
        if i < n && j < m && same(&exp[i], &act[j], banks) {
            raw.push(Step::Same {
                expected: i,
                actual: j,
            });
            i += 1;
            j += 1;
        } else if j < m && (i == n || t[i][j + 1] >= t[i + 1][j]) {
            raw.push(Step::Extra { actual: j });
            j += 1;
        } else {
            raw.push(Step::Missing { expected: i });
            i += 1;
        }
    }
    // Pair missing/extra of the same kind within each run of unmatched steps.
    let mut out = Vec::new();
    let mut run: Vec<Step> = Vec::new();
    let flush = |run: &mut Vec<Step>, out: &mut Vec<Step>| {
        let mut missing: Vec<usize> = run
            .iter()
            .filter_map(|s| {
                if let Step::Missing { expected } = s {
                    Some(*expected)
                } else {
                    None
                }
            })
            .collect();
        for s in run.drain(..) {
            match s {
                Step::Extra { actual } => {
                    let k = kind(&act[actual].event);
                    if let Some(p) = missing.iter().position(|e| kind(&exp[*e].event) == k) {
                        let expected = missing.remove(p);
                        out.push(Step::Changed { expected, actual });
                    } else {
                        out.push(Step::Extra { actual });
                    }
                }
                Step::Missing { .. } => {}
                other => out.push(other),
            }
        }
        out.extend(
            missing
                .into_iter()
                .map(|expected| Step::Missing { expected }),
        );
    };
    for s in raw {
        if let Step::Same { .. } = s {
            flush(&mut run, &mut out);
            out.push(s);
        } else {
            run.push(s);
        }
    }
    flush(&mut run, &mut out);
    out
}

fn sha(e: &Event) -> String {
    e.digest(HashAlg::SHA256)
        .or_else(|| e.digests.first().map(|(_, d)| d.as_slice()))
        .map_or_else(|| "(no digest)".into(), hex::encode)
}

fn section_name(e: &Event) -> String {
    match e.describe() {
        Payload::Text { text, .. } => text,
        _ => "?".into(),
    }
}

fn var_parts(e: &Event) -> Option<(String, String)> {
    match e.describe() {
        Payload::Variable { name, data, .. } => {
            let s = variable_summary(e.event_type, &name, data);
            Some((name, s))
        }
        _ => None,
    }
}

/// The position of `e` among the PCR 4 image loads of `list` (0 = BOOTX64.EFI).
fn image_ordinal(list: &[LoggedEvent], idx: usize) -> usize {
    list.iter()
        .take(idx)
        .filter(|e| e.event.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .count()
}

fn image_name(ordinal: usize) -> &'static str {
    if ordinal == 0 {
        "BOOTX64.EFI (the appliance PE)"
    } else {
        "the kernel the stub passes to LoadImage (.linux)"
    }
}

/// One sentence per step that is not [`Step::Same`].
pub fn explain(p: u32, exp: &[LoggedEvent], act: &[LoggedEvent], steps: &[Step]) -> Vec<String> {
    let mut out = Vec::new();
    for s in steps {
        let line = match *s {
            Step::Same { .. } => continue,
            Step::Changed { expected, actual } => {
                let (x, y) = (&exp[expected].event, &act[actual].event);
                changed(p, x, y, image_ordinal(exp, expected))
            }
            Step::Missing { expected } => missing(p, &exp[expected].event),
            Step::Extra { actual } => extra(p, &act[actual].event, image_ordinal(act, actual)),
        };
        out.push(line);
    }
    out
}

fn changed(p: u32, x: &Event, y: &Event, ordinal: usize) -> String {
    let t = x.event_type;
    if t == EventType::EFI_VARIABLE_DRIVER_CONFIG
        && let (Some((name, a)), Some((_, b))) = (var_parts(x), var_parts(y))
    {
        let why = signature_db_cause(&name, x, y).unwrap_or_default();
        return format!("PCR {p}: {name} differs — expected {a}, the firmware measured {b}{why}");
    }
    if t == EventType::EFI_VARIABLE_AUTHORITY
        && let (Some((_, a)), Some((_, b))) = (var_parts(x), var_parts(y))
    {
        return format!(
            "PCR {p}: the db entry that verified an image differs — expected {a}, the firmware measured {b}"
        );
    }
    if t == EventType::EFI_VARIABLE_BOOT
        && let (Some((name, a)), Some((_, b))) = (var_parts(x), var_parts(y))
    {
        return format!(
            "PCR {p}: boot variable {name} differs — expected {a}, the firmware measured {b}: the QEMU devices or boot order differ from the firmware profile's (learn the profile with `vmseal firmware learn`)"
        );
    }
    if t == EventType::EFI_BOOT_SERVICES_APPLICATION {
        return format!(
            "PCR {p}: {} differs — expected Authenticode sha256 {}, the firmware measured {}: the disk holds a different PE than the one predicted (rebuilt or modified after the prediction?)",
            image_name(ordinal),
            sha(x),
            sha(y)
        );
    }
    if t == EventType::EFI_GPT_EVENT {
        let g = |e: &Event| match e.describe() {
            Payload::Gpt {
                disk_guid,
                partitions,
                ..
            } => format!("disk {disk_guid} with {partitions} partition(s)"),
            _ => "an undecodable GPT".into(),
        };
        return format!(
            "PCR {p}: the GPT differs — expected {}, the firmware measured {}: the disk was repartitioned or is not this image",
            g(x),
            g(y)
        );
    }
    if t == EventType::IPL {
        return format!(
            "PCR {p}: section {} differs — expected sha256 {}, measured {}",
            section_name(x),
            sha(x),
            sha(y)
        );
    }
    if t == EventType::EVENT_TAG {
        let what = match x.describe() {
            Payload::Tagged {
                id: TAG_LINUX_LOAD_OPTIONS,
                ..
            } => "the kernel command line (LoadOptions, from .cmdline)",
            Payload::Tagged {
                id: TAG_LINUX_INITRD,
                ..
            } => "the initrd (.initrd)",
            _ => "a tagged event",
        };
        return format!(
            "PCR {p}: {what} differs — expected sha256 {}, measured {}",
            sha(x),
            sha(y)
        );
    }
    if p == 0 || t == EventType::EFI_PLATFORM_FIRMWARE_BLOB || t == EventType::S_CRTM_VERSION {
        return format!(
            "PCR {p}: firmware event {} differs ({}): the firmware build is not the profile's — learn a profile for it with `vmseal firmware learn`",
            describe::describe(x),
            describe::type_name(t)
        );
    }
    format!(
        "PCR {p}: event {} {} differs — expected {} (sha256 {}), the firmware measured {} (sha256 {})",
        describe::type_name(t),
        kind(x).1,
        describe::describe(x),
        sha(x),
        describe::describe(y),
        sha(y)
    )
}

/// The Secure Boot databases (`EFI_SIGNATURE_LIST`s) whose change [`signature_db_cause`]
/// explains entry by entry.
const SIGNATURE_DBS: [&str; 6] = ["PK", "KEK", "db", "dbx", "dbt", "dbr"];

/// For a changed `PK`/`KEK`/`db`/`dbx`/… measurement: which certificates or hashes the
/// firmware's variable has that the prediction's has not, and the reverse, then the likely
/// cause. `None` for other variables or data that does not decode.
fn signature_db_cause(name: &str, x: &Event, y: &Event) -> Option<String> {
    if !SIGNATURE_DBS.contains(&name) {
        return None;
    }
    let data = |e: &Event| match e.describe() {
        Payload::Variable { data, .. } => Some(data.to_vec()),
        _ => None,
    };
    let d = describe::signature_lists_delta(&data(x)?, &data(y)?)?;
    let mut parts = Vec::new();
    if !d.added.is_empty() {
        parts.push(format!(
            "the firmware's {name} has {}, which the predicted {name} does not",
            d.added.join(" and ")
        ));
    }
    if !d.removed.is_empty() {
        parts.push(format!(
            "the firmware's {name} lacks {}, which the predicted {name} has",
            d.removed.join(" and ")
        ));
    }
    if parts.is_empty() {
        parts.push(
            "the same entries, in another order, list layout or with other owner GUIDs".to_string(),
        );
    }
    Some(format!(
        ": {} — the VM booted with another variable store than the prediction's (predict with `vmseal pcr predict --vars` of the store the VM boots with)",
        parts.join("; ")
    ))
}

fn action_text(e: &Event) -> Option<String> {
    match e.describe() {
        Payload::Text { text, .. } if e.event_type == EventType::EFI_ACTION => Some(text),
        _ => None,
    }
}

fn extra(p: u32, y: &Event, ordinal: usize) -> String {
    match action_text(y).as_deref() {
        Some(RETURNING_BOOT_OPTION) => {
            return format!(
                "PCR {p}: extra event '{RETURNING_BOOT_OPTION}' — a boot option before the disk failed: make the disk the first boot option (QEMU -nodefaults, bootindex=0, as `vmseal boot` does), or predict with a profile learned from a log of this boot order (`vmseal firmware learn --from-log`)"
            );
        }
        Some(CALLING_BOOT_OPTION) => {
            return format!(
                "PCR {p}: extra event '{CALLING_BOOT_OPTION}' — the firmware attempted more than one boot option"
            );
        }
        _ => {}
    }
    if p == 0 {
        return format!(
            "PCR {p}: extra firmware event {} ({}): the firmware build is not the profile's — learn a profile for it with `vmseal firmware learn`",
            describe::describe(y),
            describe::type_name(y.event_type)
        );
    }
    match y.event_type {
        EventType::EFI_VARIABLE_BOOT | EventType::EFI_VARIABLE_BOOT2 => format!(
            "PCR {p}: extra boot variable {} — the machine's devices or boot order differ from the firmware profile's: learn the profile from a log of this machine (`vmseal firmware learn --from-log`)",
            describe::describe(y)
        ),
        EventType::EFI_VARIABLE_AUTHORITY => format!(
            "PCR {p}: extra authority event — the firmware verified an image against {}: Secure Boot was enforced although the prediction expected no verification (predict with the same --vars/--secure-boot as the boot)",
            var_parts(y).map_or_else(String::new, |v| v.1)
        ),
        EventType::EFI_BOOT_SERVICES_APPLICATION => format!(
            "PCR {p}: extra image load (Authenticode sha256 {}) as {} — something the prediction did not expect was started",
            sha(y),
            if ordinal == 0 {
                "the first image"
            } else {
                "a later image"
            }
        ),
        EventType::IPL => format!(
            "PCR {p}: extra measurement of section {} — the stub measured a section the prediction did not see",
            section_name(y)
        ),
        _ => format!(
            "PCR {p}: extra event {} {}",
            describe::type_name(y.event_type),
            describe::describe(y)
        ),
    }
}

fn missing(p: u32, x: &Event) -> String {
    match action_text(x).as_deref() {
        Some(EXIT_BOOT_SERVICES) => {
            return format!(
                "PCR {p}: missing event '{EXIT_BOOT_SERVICES}' — the PCRs were read before ExitBootServices, or the boot stopped before it"
            );
        }
        Some(RETURNING_BOOT_OPTION) => {
            return format!(
                "PCR {p}: missing event '{RETURNING_BOOT_OPTION}' — the firmware profile's boot tried another boot option first and this boot did not: learn the profile from a log of this machine's boot order (`vmseal firmware learn --from-log`)"
            );
        }
        _ => {}
    }
    if p == 0 {
        return format!(
            "PCR {p}: missing firmware event {} ({}): the firmware build is not the profile's — learn a profile for it with `vmseal firmware learn`",
            describe::describe(x),
            describe::type_name(x.event_type)
        );
    }
    match x.event_type {
        EventType::EFI_VARIABLE_BOOT | EventType::EFI_VARIABLE_BOOT2 => format!(
            "PCR {p}: missing boot variable {} — the machine's devices or boot order differ from the firmware profile's: learn the profile from a log of this machine (`vmseal firmware learn --from-log`)",
            describe::describe(x)
        ),
        EventType::EFI_VARIABLE_AUTHORITY => format!(
            "PCR {p}: missing authority event for {} — the firmware did not verify the image against db: Secure Boot was not enforced (wrong OVMF build or variable store?)",
            var_parts(x).map_or_else(String::new, |v| v.1)
        ),
        EventType::IPL => format!(
            "PCR {p}: section {} was not measured — the stub stopped before it, or a different stub ran",
            section_name(x)
        ),
        EventType::EFI_BOOT_SERVICES_APPLICATION => format!(
            "PCR {p}: missing image load (Authenticode sha256 {}) — the image was never loaded",
            sha(x)
        ),
        _ => format!(
            "PCR {p}: missing event {} {}",
            describe::type_name(x.event_type),
            describe::describe(x)
        ),
    }
}

/// One differing PCR.
#[derive(Clone, Debug, Serialize)]
pub struct PcrDiff {
    /// The PCR.
    pub pcr: u32,
    /// Expected value per differing bank.
    pub expected: BTreeMap<String, String>,
    /// Actual value per differing bank.
    pub actual: BTreeMap<String, String>,
    /// The explanation, one sentence each.
    pub explanations: Vec<String>,
    /// The alignment (indices into each side's events of this PCR).
    pub alignment: Vec<Step>,
}

/// The result of a comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// True when every compared PCR matched and nothing else was wrong.
    pub identical: bool,
    /// The expected side.
    pub expected: String,
    /// The actual side.
    pub actual: String,
    /// Banks compared.
    pub banks: Vec<String>,
    /// PCRs compared (present on both sides).
    pub pcrs_compared: Vec<u32>,
    /// The PCRs that differ.
    pub differences: Vec<PcrDiff>,
    /// Problems outside a single PCR (an actual log that does not replay to its PCRs, no
    /// common bank).
    pub problems: Vec<String>,
}

/// Compare.
pub fn diff(exp: &Side, act: &Side) -> Report {
    let banks: Vec<HashAlg> = exp
        .pcrs
        .banks()
        .filter(|b| act.pcrs.bank(*b).is_some())
        .collect();
    let mut problems = act.problems.clone();
    if let (Some(e), Some(a)) = (&exp.firmware, &act.firmware)
        && e != a
    {
        problems.push(format!(
            "the boot ran firmware {a}, the prediction is for {e}: PCR 0 and 7 cannot match — boot with the prediction's firmware (`vmseal boot` takes the Secure Boot build when --vars enrolls keys), or predict for this one (`vmseal pcr predict --secure-boot on|off`)"
        ));
    }
    if banks.is_empty() {
        problems.push(format!(
            "no bank in common: expected has {:?}, actual has {:?}",
            exp.pcrs.banks().map(bank_name).collect::<Vec<_>>(),
            act.pcrs.banks().map(bank_name).collect::<Vec<_>>()
        ));
    }
    let mut compared = Vec::new();
    let mut differences = Vec::new();
    for i in 0..NUM_PCRS as u32 {
        let both: Vec<HashAlg> = banks
            .iter()
            .copied()
            .filter(|b| exp.pcrs.get(*b, i).is_some() && act.pcrs.get(*b, i).is_some())
            .collect();
        if both.is_empty() {
            continue;
        }
        compared.push(i);
        let differing: Vec<HashAlg> = both
            .iter()
            .copied()
            .filter(|b| exp.pcrs.get(*b, i) != act.pcrs.get(*b, i))
            .collect();
        if differing.is_empty() {
            continue;
        }
        let e: Vec<LoggedEvent> = exp
            .events
            .iter()
            .filter(|x| x.event.pcr == i)
            .cloned()
            .collect();
        let a: Vec<LoggedEvent> = act
            .events
            .iter()
            .filter(|x| x.event.pcr == i)
            .cloned()
            .collect();
        let (alignment, mut explanations) = if e.len() > MAX_ALIGN || a.len() > MAX_ALIGN {
            (
                Vec::new(),
                vec![format!(
                    "PCR {i}: {} expected and {} measured events — too many to align (at most {MAX_ALIGN})",
                    e.len(),
                    a.len()
                )],
            )
        } else if act.has_log {
            let steps = align(&e, &a, &both);
            let ex = explain(i, &e, &a, &steps);
            (steps, ex)
        } else {
            (
                Vec::new(),
                vec![format!(
                    "PCR {i} differs; the actual side has no event log, so the difference cannot be explained"
                )],
            )
        };
        if explanations.is_empty() {
            explanations.push(format!("PCR {i}: the events agree but the values differ — an event log that does not match its PCR values"));
        }
        let vals = |p: &Pcrs| {
            differing
                .iter()
                .map(|b| {
                    (
                        bank_name(*b),
                        p.get(*b, i).map(hex::encode).unwrap_or_default(),
                    )
                })
                .collect()
        };
        differences.push(PcrDiff {
            pcr: i,
            expected: vals(&exp.pcrs),
            actual: vals(&act.pcrs),
            explanations,
            alignment,
        });
    }
    Report {
        identical: differences.is_empty() && problems.is_empty(),
        expected: exp.origin.clone(),
        actual: act.origin.clone(),
        banks: banks.iter().map(|b| bank_name(*b)).collect(),
        pcrs_compared: compared,
        differences,
        problems,
    }
}

/// The text form of a report.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for d in &r.differences {
        let banks: Vec<&str> = d.expected.keys().map(String::as_str).collect();
        let _ = writeln!(s, "PCR {} differs ({}):", d.pcr, banks.join(", "));
        for (b, v) in &d.expected {
            let _ = writeln!(s, "  expected {b:<7} {v}");
            let _ = writeln!(
                s,
                "  actual   {b:<7} {}",
                d.actual.get(b).map_or("", String::as_str)
            );
        }
        for e in &d.explanations {
            let _ = writeln!(s, "  - {e}");
        }
    }
    for p in &r.problems {
        let _ = writeln!(s, "problem: {p}");
    }
    let _ = writeln!(
        s,
        "{}: {} PCR(s) × {} bank(s) compared ({}), {} differ",
        if r.identical {
            "identical"
        } else {
            "different"
        },
        r.pcrs_compared.len(),
        r.banks.len(),
        r.banks.join(","),
        r.differences.len()
    );
    s
}

/// PCR 7's index, re-exported for tests.
pub const SECURE_BOOT_PCR: u32 = pcr::SECURE_BOOT_POLICY;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::predict::{action, image_event, separator, variable_data};
    use crate::measure::vars::{GLOBAL_VARIABLE, IMAGE_SECURITY_DATABASE};

    const B: &[HashAlg] = &[HashAlg::SHA256];

    fn var(t: EventType, guid: &[u8; 16], name: &str, data: &[u8]) -> LoggedEvent {
        let d = variable_data(guid, name, data);
        LoggedEvent::new(Event {
            pcr: 7,
            event_type: t,
            digests: vec![(
                HashAlg::SHA256,
                policies::digest::hash(HashAlg::SHA256, &d).unwrap(),
            )],
            data: d,
        })
    }

    fn x509_list(der: &[u8]) -> Vec<u8> {
        let mut v = describe::CERT_X509.to_vec();
        v.extend_from_slice(&((28 + 16 + der.len()) as u32).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&((16 + der.len()) as u32).to_le_bytes());
        v.extend_from_slice(&[0x11; 16]);
        v.extend_from_slice(der);
        v
    }

    /// A minimal DER "certificate" with just enough structure for the subject CN.
    fn cert(cn: &str) -> Vec<u8> {
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![tag, body.len() as u8];
            v.extend_from_slice(body);
            v
        }
        let name = tlv(
            0x30,
            &tlv(
                0x31,
                &tlv(
                    0x30,
                    &[tlv(0x06, &[0x55, 4, 3]), tlv(0x0c, cn.as_bytes())].concat(),
                ),
            ),
        );
        let tbs = [
            tlv(0xA0, &tlv(2, &[2])),
            tlv(2, &[1]),
            tlv(0x30, &[]),
            name.clone(),
            tlv(0x30, &[]),
            name,
        ]
        .concat();
        tlv(0x30, &tlv(0x30, &tbs))
    }

    fn run(p: u32, e: &[LoggedEvent], a: &[LoggedEvent]) -> Vec<String> {
        let steps = align(e, a, B);
        explain(p, e, a, &steps)
    }

    #[test]
    fn db_certificate_change_names_both_cns() {
        let e = [var(
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            &IMAGE_SECURITY_DATABASE,
            "db",
            &x509_list(&cert("Org DB")),
        )];
        let a = [var(
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            &IMAGE_SECURITY_DATABASE,
            "db",
            &x509_list(&cert("Other CA")),
        )];
        let x = run(7, &e, &a);
        assert_eq!(x.len(), 1, "{x:?}");
        assert!(
            x[0].starts_with("PCR 7: db differs — expected certificate CN=Org DB (sha256 "),
            "{x:?}"
        );
        assert!(
            x[0].contains("the firmware measured certificate CN=Other CA"),
            "{x:?}"
        );
        assert!(
            x[0].contains(": the firmware's db has certificate CN=Other CA (sha256 "),
            "{x:?}"
        );
        assert!(
            x[0].contains("; the firmware's db lacks certificate CN=Org DB (sha256 "),
            "{x:?}"
        );
        assert!(
            x[0].ends_with(
                "(predict with `vmseal pcr predict --vars` of the store the VM boots with)"
            ),
            "{x:?}"
        );
    }

    #[test]
    fn an_extra_db_certificate_is_named_with_its_digest() {
        use sha2::Digest as _;
        let db = |lists: &[Vec<u8>]| {
            var(
                EventType::EFI_VARIABLE_DRIVER_CONFIG,
                &IMAGE_SECURITY_DATABASE,
                "db",
                &lists.concat(),
            )
        };
        let (org, other) = (cert("Org DB"), cert("Other Org DB"));
        let e = [db(&[x509_list(&org)])];
        let a = [db(&[x509_list(&other), x509_list(&org)])];
        let x = run(7, &e, &a);
        assert_eq!(x.len(), 1, "{x:?}");
        let sha = |c: &[u8]| hex::encode(sha2::Sha256::digest(c));
        let want = format!(
            "PCR 7: db differs — expected certificate CN=Org DB (sha256 {org_sha}), owner 11111111-1111-1111-1111-111111111111, \
             the firmware measured certificate CN=Other Org DB (sha256 {other_sha}), owner 11111111-1111-1111-1111-111111111111; \
             certificate CN=Org DB (sha256 {org_sha}), owner 11111111-1111-1111-1111-111111111111: \
             the firmware's db has certificate CN=Other Org DB (sha256 {other_sha}), owner 11111111-1111-1111-1111-111111111111, \
             which the predicted db does not — the VM booted with another variable store than the prediction's \
             (predict with `vmseal pcr predict --vars` of the store the VM boots with)",
            org_sha = sha(&org),
            other_sha = sha(&other)
        );
        assert_eq!(x[0], want);
        // Another variable keeps the plain sentence; an undecodable db gives no cause.
        let plain = run(
            7,
            &[var(
                EventType::EFI_VARIABLE_DRIVER_CONFIG,
                &GLOBAL_VARIABLE,
                "SetupMode",
                &[1],
            )],
            &[var(
                EventType::EFI_VARIABLE_DRIVER_CONFIG,
                &GLOBAL_VARIABLE,
                "SetupMode",
                &[0],
            )],
        );
        assert_eq!(
            plain,
            ["PCR 7: SetupMode differs — expected 1 (enabled), the firmware measured 0 (disabled)"]
        );
        let x = run(7, &e, &[db(&[vec![1, 2, 3]])]);
        assert!(
            x[0].ends_with("the firmware measured undecodable signature list 010203"),
            "{x:?}"
        );
    }

    #[test]
    fn secure_boot_value_change() {
        let e = [var(
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            &GLOBAL_VARIABLE,
            "SecureBoot",
            &[1],
        )];
        let a = [var(
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            &GLOBAL_VARIABLE,
            "SecureBoot",
            &[0],
        )];
        assert_eq!(
            run(7, &e, &a),
            [
                "PCR 7: SecureBoot differs — expected 1 (enabled), the firmware measured 0 (disabled)"
            ]
        );
    }

    #[test]
    fn failed_boot_option_is_named() {
        let e = vec![
            action(B, 4, CALLING_BOOT_OPTION).unwrap(),
            separator(B, 4).unwrap(),
        ];
        let a = vec![
            action(B, 4, CALLING_BOOT_OPTION).unwrap(),
            separator(B, 4).unwrap(),
            action(B, 4, RETURNING_BOOT_OPTION).unwrap(),
            action(B, 4, CALLING_BOOT_OPTION).unwrap(),
        ];
        let x = run(4, &e, &a);
        assert_eq!(x.len(), 2, "{x:?}");
        assert!(x[0].starts_with("PCR 4: extra event 'Returning from EFI Application from Boot Option' — a boot option before the disk failed"), "{x:?}");
        assert!(x[1].contains("extra event 'Calling EFI Application from Boot Option'"));
        // The other way round: a profile learned from a boot with a failed option.
        let x = run(4, &a, &e);
        assert!(x[0].starts_with("PCR 4: missing event 'Returning from EFI Application from Boot Option' — the firmware profile's boot tried another boot option first"), "{x:?}");
    }

    #[test]
    fn an_extra_or_missing_pcr0_event_names_the_firmware() {
        let blob = |d: &[u8]| {
            let mut data = 0x80_0000u64.to_le_bytes().to_vec();
            data.extend_from_slice(&0x1000u64.to_le_bytes());
            LoggedEvent::new(Event {
                pcr: 0,
                event_type: EventType::EFI_PLATFORM_FIRMWARE_BLOB,
                digests: vec![(
                    HashAlg::SHA256,
                    policies::digest::hash(HashAlg::SHA256, d).unwrap(),
                )],
                data,
            })
        };
        let e = vec![blob(b"one")];
        let a = vec![blob(b"one"), blob(b"two")];
        let x = run(0, &e, &a);
        assert!(
            x[0].starts_with("PCR 0: extra firmware event firmware volume at 0x800000"),
            "{x:?}"
        );
        let x = run(0, &a, &e);
        assert!(
            x[0].starts_with("PCR 0: missing firmware event firmware volume at 0x800000"),
            "{x:?}"
        );
        assert!(x[0].contains("not the profile's"), "{x:?}");
        // A boot option the profile's machine did not have (PCR 1).
        let boot = var(
            EventType::EFI_VARIABLE_BOOT,
            &GLOBAL_VARIABLE,
            "Boot0003",
            &[],
        );
        let x = run(1, &[], &[boot]);
        assert!(
            x[0].starts_with("PCR 1: extra boot variable Boot0003"),
            "{x:?}"
        );
        assert!(x[0].contains("firmware learn --from-log"), "{x:?}");
    }

    #[test]
    fn section_change_is_named_by_section() {
        let ev = |c: &[u8]| policies::predict::stub_events(&[(".guest", c)], B).unwrap();
        let e: Vec<LoggedEvent> = ev(b"one").into_iter().map(LoggedEvent::new).collect();
        let a: Vec<LoggedEvent> = ev(b"two").into_iter().map(LoggedEvent::new).collect();
        let x = run(11, &e, &a);
        assert_eq!(x.len(), 1, "{x:?}");
        assert!(
            x[0].starts_with("PCR 11: section .guest differs — expected sha256 "),
            "{x:?}"
        );
    }

    #[test]
    fn image_change_ignores_load_addresses() {
        let stub = crate::compose::stub::load(None).unwrap();
        let a = image_event(B, &stub, "x").unwrap();
        let mut real = a.clone();
        real.event.data = vec![0xAB; 40];
        real.data_compared = true;
        assert!(run(4, std::slice::from_ref(&a), &[real]).is_empty());
        let mut other = a.clone();
        other.event.digests[0].1 = vec![9; 32];
        let x = run(4, &[a], &[other]);
        assert!(
            x[0].starts_with(
                "PCR 4: BOOTX64.EFI (the appliance PE) differs — expected Authenticode sha256"
            ),
            "{x:?}"
        );
    }

    #[test]
    fn missing_exit_boot_services_and_authority() {
        let e = vec![action(B, 5, EXIT_BOOT_SERVICES).unwrap()];
        let x = run(5, &e, &[]);
        assert!(
            x[0].contains("missing event 'Exit Boot Services Invocation'"),
            "{x:?}"
        );
        let auth = var(
            EventType::EFI_VARIABLE_AUTHORITY,
            &IMAGE_SECURITY_DATABASE,
            "db",
            &[[0x22; 16].as_slice(), &cert("Org DB")].concat(),
        );
        let x = run(7, &[], std::slice::from_ref(&auth));
        assert!(x[0].starts_with("PCR 7: extra authority event — the firmware verified an image against certificate CN=Org DB"), "{x:?}");
        let x = run(7, &[auth], &[]);
        assert!(
            x[0].starts_with("PCR 7: missing authority event for certificate CN=Org DB"),
            "{x:?}"
        );
    }

    #[test]
    fn boot_variable_change_points_at_the_qemu_configuration() {
        let boot = |desc: &str| {
            let mut opt = vec![1, 0, 0, 0, 0, 0];
            opt.extend(desc.encode_utf16().chain([0]).flat_map(u16::to_le_bytes));
            let d = variable_data(&GLOBAL_VARIABLE, "Boot0001", &opt);
            LoggedEvent::new(Event {
                pcr: 1,
                event_type: EventType::EFI_VARIABLE_BOOT,
                digests: vec![(
                    HashAlg::SHA256,
                    policies::digest::hash(HashAlg::SHA256, &opt).unwrap(),
                )],
                data: d,
            })
        };
        let x = run(1, &[boot("UEFI Misc Device")], &[boot("UEFI QEMU DVD-ROM")]);
        assert_eq!(x.len(), 1, "{x:?}");
        assert!(x[0].starts_with("PCR 1: boot variable Boot0001 differs — expected load option \"UEFI Misc Device\", the firmware measured load option \"UEFI QEMU DVD-ROM\": the QEMU devices or boot order differ"), "{x:?}");
    }

    #[test]
    fn lcs_keeps_common_events_in_order() {
        let ev = |t: &str| action(B, 4, t).unwrap();
        let e = vec![ev("a"), ev("b"), ev("c")];
        let a = vec![ev("a"), ev("x"), ev("c"), ev("d")];
        let steps = align(&e, &a, B);
        assert_eq!(
            steps,
            vec![
                Step::Same {
                    expected: 0,
                    actual: 0
                },
                Step::Changed {
                    expected: 1,
                    actual: 1
                },
                Step::Same {
                    expected: 2,
                    actual: 2
                },
                Step::Extra { actual: 3 },
            ]
        );
    }
}
