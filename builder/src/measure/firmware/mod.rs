//! Firmware profiles: what the firmware measures that vmseal cannot compute from the image
//! and the variable store.
//!
//! Why recorded, not computed: PCR 0 holds the digests of firmware volumes as they sit in
//! memory (not of the `.fd` file), PCR 1 the boot variables OVMF regenerates from QEMU's device
//! list each boot, and PCR 2/3/6 whatever option ROMs and platform code measure
//! (`shared/reference/measured-boot.md` §B.1, §B.5). A profile is therefore data: the events
//! of [`FIRMWARE_PCRS`] (including their `EV_SEPARATOR`s) in log order, every digest for every
//! bank the learning TPM had.
//!
//! Two formats, both read:
//! - **Format 1** (the shipped profiles): `{"format":1, "firmware":{"file","sha256","package"},
//!   "qemu", "learned_from", "provisional", "banks":[…], "events":[…]}`, keyed by the SHA-256
//!   of the OVMF code file. PCR 4, 5 and 7 follow OVMF's fixed skeleton under `vmseal boot`
//!   (one boot option, the disk first), see [`Profile::steps`].
//! - **Format 2** (`vmseal firmware learn` writes it): format 1 plus `"identity"` (what the log
//!   itself says about the firmware and platform: [`LogIdentity`]) and `"template"`: the whole
//!   log with the appliance's events replaced by slots ([`template`]), so a boot order that
//!   tries another option first, a firmware that measures other PCR 7 variables or no GPT, is
//!   predicted as that firmware does it. `firmware.file`/`sha256` are empty when the log came
//!   from a machine whose code file is not at hand (a cloud VM).
//!
//! Events are in the `.pcrs.json` event shape ([`crate::measure::pcrs_json::JsonEvent`]).
//!
//! Shipped (embedded with `include_str!`): Debian 12 `ovmf 2022.11-6+deb12u2`
//! `OVMF_CODE_4M.secboot.fd` and `OVMF_CODE_4M.fd`, learned from real `vmseal boot`s of
//! `images/linux` (see `builder/profiles/README.md`; the fixture logs of the same build were
//! recorded with another QEMU command line and differ in PCR 1 and, for the secboot build,
//! PCR 0). `vmseal firmware learn` records a new one.

pub mod template;

use std::path::Path;

use std::collections::BTreeMap;

use policies::eventlog::{Event, EventLog};
use policies::tcg::{EventType, HashAlg, pcr};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::measure::pcrs_json::{JsonEvent, LoggedEvent, bank_name};
use template::{
    CALLING_BOOT_OPTION, EXIT_BOOT_SERVICES, EXIT_BOOT_SERVICES_OK, Entry, POLICY_VARIABLES, Step,
};

/// The PCRs a firmware profile holds (everything the firmware measures that vmseal cannot
/// compute from the image and the variable store).
pub const FIRMWARE_PCRS: [u32; 5] = [0, 1, 2, 3, 6];

/// The profile format version `vmseal firmware learn` writes.
pub const FORMAT: u32 = 2;

/// The formats this vmseal reads.
pub const FORMATS: [u32; 2] = [1, FORMAT];

/// The firmware build a profile belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareId {
    /// The code file's name (`OVMF_CODE_4M.secboot.fd`); empty when learned from a log alone.
    #[serde(default)]
    pub file: String,
    /// SHA-256 of the code file, lowercase hex: the key; empty when learned from a log alone
    /// (then [`Profile::identity`] identifies the firmware).
    #[serde(default)]
    pub sha256: String,
    /// Where it comes from (`ovmf 2022.11-6+deb12u2 (Debian 12)`).
    #[serde(default)]
    pub package: String,
}

/// A firmware profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// [`FORMAT`].
    pub format: u32,
    /// The firmware.
    pub firmware: FirmwareId,
    /// The QEMU configuration the events were recorded with.
    pub qemu: String,
    /// How the events were obtained.
    pub learned_from: String,
    /// True when the events did not come from a `vmseal boot` of this firmware (PCR 1 may
    /// differ); the prediction says so in its `sources`.
    #[serde(default)]
    pub provisional: bool,
    /// Banks present in every event.
    pub banks: Vec<String>,
    /// The events of [`FIRMWARE_PCRS`], in log order.
    pub events: Vec<JsonEvent>,
    /// Format 2: what the log says about the firmware and the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<LogIdentity>,
    /// Format 2: the log with the appliance's events as slots ([`template`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template: Vec<Entry>,
}

/// What an event log itself identifies about the firmware that wrote it: the PCR 0
/// measurements (S-CRTM version, firmware volumes) and the platform's informational events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogIdentity {
    /// PCR 0 as the log replays it, per bank (lowercase hex): equal values mean the same
    /// firmware code measured the same way.
    pub pcr0: BTreeMap<String, String>,
    /// The `EV_S_CRTM_VERSION` events, described (`""` for OVMF: an empty version string).
    pub crtm_version: Vec<String>,
    /// The `EV_EFI_PLATFORM_FIRMWARE_BLOB(2)` events: where, how large, sha256 (or the first
    /// bank's digest).
    pub firmware_blobs: Vec<String>,
    /// `EV_NO_ACTION` events of PCR 0 (StartupLocality, SP800-155 platform ids), described.
    #[serde(default)]
    pub platform: Vec<String>,
}

impl LogIdentity {
    /// The identity of the firmware that wrote `log`.
    pub fn of(log: &EventLog) -> Self {
        let banks: Vec<HashAlg> = log.spec_id.algorithms.iter().map(|(a, _)| *a).collect();
        let pcr0 =
            policies::replay::replay_events(log.events.iter().filter(|e| e.pcr == 0), &banks)
                .map(|p| {
                    banks
                        .iter()
                        .filter_map(|b| Some((bank_name(*b), hex::encode(p.get(*b, 0)?))))
                        .collect()
                })
                .unwrap_or_default();
        let pcr0_events = || log.events.iter().filter(|e| e.pcr == 0);
        let digest = |e: &policies::eventlog::Event| {
            e.digest(HashAlg::SHA256)
                .map(|d| format!("sha256 {}", hex::encode(d)))
                .or_else(|| {
                    e.digests
                        .first()
                        .map(|(a, d)| format!("{} {}", bank_name(*a), hex::encode(d)))
                })
                .unwrap_or_default()
        };
        Self {
            pcr0,
            crtm_version: pcr0_events()
                .filter(|e| e.event_type == EventType::S_CRTM_VERSION)
                .map(crate::measure::describe::describe)
                .collect(),
            firmware_blobs: pcr0_events()
                .filter(|e| {
                    [
                        EventType::EFI_PLATFORM_FIRMWARE_BLOB,
                        EventType::EFI_PLATFORM_FIRMWARE_BLOB2,
                    ]
                    .contains(&e.event_type)
                })
                .map(|e| format!("{}, {}", crate::measure::describe::describe(e), digest(e)))
                .collect(),
            platform: pcr0_events()
                .filter(|e| e.event_type == EventType::NO_ACTION)
                .map(crate::measure::describe::describe)
                .collect(),
        }
    }
}

/// Profiles shipped with vmseal.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "debian-ovmf-2022.11-secboot",
        include_str!("../../../profiles/debian-ovmf-2022.11-secboot.json"),
    ),
    (
        "debian-ovmf-2022.11",
        include_str!("../../../profiles/debian-ovmf-2022.11.json"),
    ),
];

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Reading failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not a profile.
    #[error(
        "{file}: not a vmseal firmware profile: {problem} — give a file written by `vmseal firmware learn`"
    )]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// No profile matches the firmware.
    #[error(
        "no firmware profile for {code} (sha256 {sha256}) — record one with `vmseal firmware learn --code {code} --out PROFILE.json` and pass --firmware-profile PROFILE.json"
    )]
    NoMatch {
        /// The firmware code file.
        code: String,
        /// Its SHA-256.
        sha256: String,
    },
    /// The profile lacks a requested bank.
    #[error(
        "{profile}: has no {bank} digests (learned with banks {have}) — learn it again with a TPM that has that bank, or leave out --bank {bank}"
    )]
    MissingBank {
        /// The profile's name.
        profile: String,
        /// The bank.
        bank: String,
        /// The banks it has.
        have: String,
    },
    /// Learning failed.
    #[error("firmware learn: {0}")]
    Learn(String),
    /// A bank whose digests vmseal cannot compute (for the fixed skeleton of a format 1
    /// profile).
    #[error("{profile}: {problem} — leave out that --bank")]
    Compute {
        /// The profile's name.
        profile: String,
        /// What is wrong.
        problem: String,
    },
}

impl Profile {
    /// Parse and check a profile; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ProfileError> {
        let invalid = |problem: String| ProfileError::Invalid {
            file: file.into(),
            problem,
        };
        let p: Self = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if !FORMATS.contains(&p.format) {
            return Err(invalid(format!(
                "format {} (this vmseal reads {FORMATS:?})",
                p.format
            )));
        }
        for (i, e) in p.events.iter().enumerate() {
            let ev = e
                .to_event()
                .map_err(|(f, m)| invalid(format!("events[{i}].{f}: {m}")))?;
            if !FIRMWARE_PCRS.contains(&ev.pcr) {
                return Err(invalid(format!(
                    "events[{i}]: PCR {} is not a firmware PCR",
                    ev.pcr
                )));
            }
        }
        if p.format == 1 {
            if !p.template.is_empty() {
                return Err(invalid(
                    "template: a format 1 profile has none (format 2 for a template)".into(),
                ));
            }
            return Ok(p);
        }
        let (mut firmware, mut slots) = (0usize, 0usize);
        for (i, entry) in p.template.iter().enumerate() {
            match entry {
                Entry::Firmware => firmware += 1,
                Entry::Recorded(e) => {
                    let ev = e
                        .to_event()
                        .map_err(|(f, m)| invalid(format!("template[{i}].recorded.{f}: {m}")))?;
                    if FIRMWARE_PCRS.contains(&ev.pcr) || ev.pcr >= 8 {
                        return Err(invalid(format!(
                            "template[{i}].recorded: PCR {} (only PCR 4, 5 and 7 are recorded in the template)",
                            ev.pcr
                        )));
                    }
                    if let Some(b) = p.banks.iter().find(|b| !e.digests.contains_key(*b)) {
                        return Err(invalid(format!(
                            "template[{i}].recorded.digests: no {b} digest"
                        )));
                    }
                }
                Entry::SecureBootPolicy(names) => {
                    if let Some(n) = names
                        .iter()
                        .find(|n| !POLICY_VARIABLES.iter().any(|(v, _)| v == n))
                    {
                        return Err(invalid(format!(
                            "template[{i}].secure_boot_policy: {n:?} is not one of SecureBoot, PK, KEK, db, dbx"
                        )));
                    }
                }
                Entry::Appliance { .. } => slots += 1,
            }
        }
        if firmware != p.events.len() {
            return Err(invalid(format!(
                "template: {firmware} \"firmware\" entries for {} events",
                p.events.len()
            )));
        }
        if slots != 1 {
            return Err(invalid(format!(
                "template: {slots} \"appliance\" entries (exactly one)"
            )));
        }
        Ok(p)
    }

    /// Read a profile file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
    }

    /// The embedded profiles.
    pub fn embedded() -> Vec<(&'static str, Self)> {
        EMBEDDED
            .iter()
            .filter_map(|(name, text)| Some((*name, Self::parse(text, name).ok()?)))
            .collect()
    }

    /// A format 2 profile from a real log: the events of [`FIRMWARE_PCRS`], the template
    /// ([`template::cut`]) and the log's [`LogIdentity`]. An error when the log shows no boot
    /// of an image after its last boot attempt (nothing to put the appliance in place of).
    pub fn from_log(
        log: &EventLog,
        firmware: FirmwareId,
        qemu: String,
        learned_from: String,
    ) -> Result<Self, ProfileError> {
        let banks = log
            .spec_id
            .algorithms
            .iter()
            .map(|(a, _)| bank_name(*a))
            .collect();
        let cut = template::cut(&log.events).ok_or_else(|| {
            ProfileError::Learn(format!(
                "{learned_from}: no EV_EFI_BOOT_SERVICES_APPLICATION in PCR 4 after the last '{CALLING_BOOT_OPTION}' — give the log of a boot that started an image (binary_bios_measurements read after boot)"
            ))
        })?;
        let events = cut
            .firmware
            .into_iter()
            .map(|e| JsonEvent::from_event(&LoggedEvent::new(e)))
            .collect();
        let p = Self {
            format: FORMAT,
            firmware,
            qemu,
            learned_from,
            provisional: false,
            banks,
            events,
            identity: Some(LogIdentity::of(log)),
            template: cut.entries,
        };
        // What is written must read back (e.g. every recorded event has every bank).
        Self::parse(&p.to_text(), &p.learned_from)
            .map_err(|e| ProfileError::Learn(format!("the log cannot make a profile: {e}")))
    }

    /// The prediction's skeleton for `banks`: the firmware's events (restricted to `banks`, in
    /// that order) in log order, with the slots the image and the store fill.
    ///
    /// Format 1 has no template: its skeleton is OVMF's under `vmseal boot` (one boot option,
    /// the disk): PCR 0's events, the Secure Boot policy, PCR 7's separator, the other
    /// firmware events, "Calling EFI Application from Boot Option", the separators of PCR 0–6,
    /// the appliance (with the GPT), the two ExitBootServices actions.
    pub fn steps(&self, banks: &[HashAlg]) -> Result<Vec<Step>, ProfileError> {
        let fw = self.events_for(banks)?;
        if self.format == 1 {
            return self.ovmf_skeleton(fw, banks);
        }
        let mut fw = fw.into_iter();
        let mut out = Vec::new();
        for entry in &self.template {
            out.push(match entry {
                Entry::Firmware => Step::Event(fw.next().ok_or_else(|| ProfileError::Invalid {
                    file: self.firmware_name(),
                    problem: "template: more \"firmware\" entries than events".into(),
                })?),
                Entry::Recorded(e) => {
                    let mut ev = e.to_event().map_err(|(f, m)| ProfileError::Invalid {
                        file: self.firmware_name(),
                        problem: format!("template: recorded.{f}: {m}"),
                    })?;
                    restrict(&mut ev, banks);
                    Step::Event(LoggedEvent::new(ev))
                }
                Entry::SecureBootPolicy(v) => Step::SecureBootPolicy(v.clone()),
                Entry::Appliance { gpt } => Step::Appliance { gpt: *gpt },
            });
        }
        Ok(out)
    }

    /// [`Profile::steps`] of a format 1 profile.
    fn ovmf_skeleton(
        &self,
        fw: Vec<LoggedEvent>,
        banks: &[HashAlg],
    ) -> Result<Vec<Step>, ProfileError> {
        let computed = |pcr: u32, t: EventType, data: &[u8]| -> Result<Step, ProfileError> {
            let digests = banks
                .iter()
                .map(|a| {
                    policies::digest::hash(*a, data)
                        .map(|d| (*a, d))
                        .map_err(|e| ProfileError::Compute {
                            profile: self.firmware_name(),
                            problem: e.to_string(),
                        })
                })
                .collect::<Result<_, _>>()?;
            Ok(Step::Event(LoggedEvent::new(Event {
                pcr,
                event_type: t,
                digests,
                data: data.to_vec(),
            })))
        };
        let action = |pcr: u32, text: &str| computed(pcr, EventType::EFI_ACTION, text.as_bytes());
        let separator = |pcr: u32| computed(pcr, EventType::SEPARATOR, &[0; 4]);
        let (seps, pre): (Vec<LoggedEvent>, Vec<LoggedEvent>) = fw
            .into_iter()
            .partition(|e| e.event.event_type == EventType::SEPARATOR);
        let mut out: Vec<Step> = Vec::new();
        out.extend(
            pre.iter()
                .filter(|e| e.event.pcr == 0)
                .cloned()
                .map(Step::Event),
        );
        out.push(Step::SecureBootPolicy(
            POLICY_VARIABLES
                .iter()
                .map(|(n, _)| n.to_string())
                .collect(),
        ));
        out.push(separator(pcr::SECURE_BOOT_POLICY)?);
        out.extend(
            pre.iter()
                .filter(|e| e.event.pcr != 0)
                .cloned()
                .map(Step::Event),
        );
        out.push(action(pcr::BOOT_LOADER_CODE, CALLING_BOOT_OPTION)?);
        for i in 0..pcr::SECURE_BOOT_POLICY {
            if FIRMWARE_PCRS.contains(&i) {
                out.extend(
                    seps.iter()
                        .filter(|e| e.event.pcr == i)
                        .cloned()
                        .map(Step::Event),
                );
            } else {
                out.push(separator(i)?);
            }
        }
        out.push(Step::Appliance { gpt: true });
        out.push(action(pcr::BOOT_LOADER_CONFIG, EXIT_BOOT_SERVICES)?);
        out.push(action(pcr::BOOT_LOADER_CONFIG, EXIT_BOOT_SERVICES_OK)?);
        Ok(out)
    }

    /// How the profile names its firmware in messages: the code file, else the log's PCR 0.
    pub fn firmware_name(&self) -> String {
        if !self.firmware.file.is_empty() {
            return self.firmware.file.clone();
        }
        match self.identity.as_ref().and_then(|i| i.pcr0.get("sha256")) {
            Some(p) => format!("the firmware of {} (PCR 0 sha256 {p})", self.learned_from),
            None => format!("the firmware of {}", self.learned_from),
        }
    }

    /// The events restricted to `banks` (in that order); an error names a missing bank.
    pub fn events_for(&self, banks: &[HashAlg]) -> Result<Vec<LoggedEvent>, ProfileError> {
        for b in banks {
            if !self.banks.iter().any(|x| HashAlg::from_name(x) == Some(*b)) {
                return Err(ProfileError::MissingBank {
                    profile: self.firmware_name(),
                    bank: bank_name(*b),
                    have: self.banks.join(","),
                });
            }
        }
        Ok(self
            .events
            .iter()
            .filter_map(|e| e.to_event().ok())
            .map(|mut e| {
                restrict(&mut e, banks);
                LoggedEvent::new(e)
            })
            .collect())
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// Keep only the digests of `banks`, in that order.
fn restrict(e: &mut Event, banks: &[HashAlg]) {
    e.digests.retain(|(a, _)| banks.contains(a));
    e.digests
        .sort_by_key(|(a, _)| banks.iter().position(|b| b == a));
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, ProfileError> {
    let bytes = std::fs::read(path).map_err(|source| ProfileError::Io {
        file: path.display().to_string(),
        source,
    })?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// Which profile a prediction uses, and why.
#[derive(Clone, Debug)]
pub struct Selected {
    /// The profile.
    pub profile: Profile,
    /// Where it came from (a file path or `embedded:NAME`).
    pub origin: String,
    /// A caveat to report (provisional profile, firmware file not installed, …).
    pub note: Option<String>,
}

/// The profile for `code` (the firmware `vmseal boot` would use): `explicit` if given; else
/// the embedded profile whose firmware SHA-256 matches the installed file; if the file is not
/// installed, the embedded profile for that file name.
pub fn select(explicit: Option<&Path>, code: &Path) -> Result<Selected, ProfileError> {
    if let Some(p) = explicit {
        let profile = Profile::load(p)?;
        let note = match sha256_file(code) {
            _ if profile.firmware.sha256.is_empty() => Some(format!(
                "profile learned from an event log alone ({}): the firmware is identified by what the log measured (PCR 0), not by the code file; `pcr diff` names PCR 0 if the booting firmware is another",
                profile.firmware_name()
            )),
            Ok(h) if h != profile.firmware.sha256 => Some(format!(
                "profile is for firmware sha256 {}, {} has {h}",
                profile.firmware.sha256,
                code.display()
            )),
            _ => None,
        };
        return Ok(Selected {
            profile,
            origin: p.display().to_string(),
            note,
        });
    }
    let file_name = code
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let embedded = Profile::embedded();
    match sha256_file(code) {
        Ok(sha) => embedded
            .into_iter()
            .find(|(_, p)| p.firmware.sha256 == sha)
            .map(|(name, profile)| Selected {
                note: profile.provisional.then(|| {
                    "provisional profile (derived from fixture logs, not from a vmseal boot): PCR 1 may differ".into()
                }),
                profile,
                origin: format!("embedded:{name}"),
            })
            .ok_or(ProfileError::NoMatch { code: code.display().to_string(), sha256: sha }),
        Err(_) => embedded
            .into_iter()
            .find(|(_, p)| p.firmware.file == file_name)
            .map(|(name, profile)| Selected {
                profile,
                origin: format!("embedded:{name}"),
                note: Some(format!(
                    "{} is not installed: profile chosen by file name, not by hash",
                    code.display()
                )),
            })
            .ok_or(ProfileError::NoMatch { code: code.display().to_string(), sha256: "?".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_profiles_parse_and_hold_only_firmware_pcrs() {
        let e = Profile::embedded();
        assert_eq!(e.len(), EMBEDDED.len());
        for (name, p) in e {
            assert!(!p.events.is_empty(), "{name}");
            assert!(
                p.events.iter().all(|x| FIRMWARE_PCRS.contains(&x.pcr)),
                "{name}"
            );
        }
    }
}
