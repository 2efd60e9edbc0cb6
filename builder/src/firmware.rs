//! Firmware profiles: the firmware's own events (PCR 0, 1, 2, 3 and 6), recorded from one real
//! boot of one firmware build with vmseal's pinned QEMU command line, keyed by the SHA-256 of
//! the firmware code file.
//!
//! Why recorded, not computed: PCR 0 holds the digests of firmware volumes as they sit in
//! memory (not of the `.fd` file), PCR 1 the boot variables OVMF regenerates from QEMU's device
//! list each boot, and PCR 2/3/6 whatever option ROMs and platform code measure
//! (`shared/reference/measured-boot.md` §B.1, §B.5). A profile is therefore data: the events
//! of [`FIRMWARE_PCRS`] (including their `EV_SEPARATOR`s) in log order, every digest for every
//! bank the learning TPM had.
//!
//! Profile JSON (format 1): `{"format":1, "firmware":{"file","sha256","package"},
//! "qemu": "…", "learned_from": "…", "provisional": bool, "banks":[…], "events":[…]}` with
//! events in the `.pcrs.json` event shape ([`crate::pcrs_json::JsonEvent`]).
//!
//! Shipped (embedded with `include_str!`): Debian 12 `ovmf 2022.11-6+deb12u2`
//! `OVMF_CODE_4M.secboot.fd` and `OVMF_CODE_4M.fd`, learned from real `vmseal boot`s of
//! `images/linux` (see `builder/profiles/README.md`; the fixture logs of the same build were
//! recorded with another QEMU command line and differ in PCR 1 and, for the secboot build,
//! PCR 0). `vmseal firmware learn` records a new one.

use std::path::{Path, PathBuf};

use policies::eventlog::EventLog;
use policies::tcg::HashAlg;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::pcrs_json::{JsonEvent, LoggedEvent, bank_name};

/// The PCRs a firmware profile holds (everything the firmware measures that vmseal cannot
/// compute from the image and the variable store).
pub const FIRMWARE_PCRS: [u32; 5] = [0, 1, 2, 3, 6];

/// The profile format version.
pub const FORMAT: u32 = 1;

/// The firmware build a profile belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareId {
    /// The code file's name (`OVMF_CODE_4M.secboot.fd`).
    pub file: String,
    /// SHA-256 of the code file, lowercase hex: the key.
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
}

/// Profiles shipped with vmseal.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "debian-ovmf-2022.11-secboot",
        include_str!("../profiles/debian-ovmf-2022.11-secboot.json"),
    ),
    (
        "debian-ovmf-2022.11",
        include_str!("../profiles/debian-ovmf-2022.11.json"),
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
}

impl Profile {
    /// Parse and check a profile; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ProfileError> {
        let invalid = |problem: String| ProfileError::Invalid {
            file: file.into(),
            problem,
        };
        let p: Self = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if p.format != FORMAT {
            return Err(invalid(format!(
                "format {} (this vmseal reads {FORMAT})",
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

    /// A profile from a real log: keeps the events of [`FIRMWARE_PCRS`].
    pub fn from_log(
        log: &EventLog,
        firmware: FirmwareId,
        qemu: String,
        learned_from: String,
    ) -> Self {
        let banks = log
            .spec_id
            .algorithms
            .iter()
            .map(|(a, _)| bank_name(*a))
            .collect();
        let events = log
            .events
            .iter()
            .filter(|e| FIRMWARE_PCRS.contains(&e.pcr))
            .map(|e| JsonEvent::from_event(&LoggedEvent::new(e.clone())))
            .collect();
        Self {
            format: FORMAT,
            firmware,
            qemu,
            learned_from,
            provisional: false,
            banks,
            events,
        }
    }

    /// The events restricted to `banks` (in that order); an error names a missing bank.
    pub fn events_for(&self, banks: &[HashAlg]) -> Result<Vec<LoggedEvent>, ProfileError> {
        for b in banks {
            if !self.banks.iter().any(|x| HashAlg::from_name(x) == Some(*b)) {
                return Err(ProfileError::MissingBank {
                    profile: self.firmware.file.clone(),
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
                e.digests.retain(|(a, _)| banks.contains(a));
                e.digests
                    .sort_by_key(|(a, _)| banks.iter().position(|b| b == a));
                LoggedEvent::new(e)
            })
            .collect())
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
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

/// What `vmseal firmware learn` needs.
#[derive(Clone, Debug)]
pub struct LearnOptions {
    /// The firmware code file.
    pub code: PathBuf,
    /// A variable store to boot with (default: pristine).
    pub vars: Option<PathBuf>,
    /// An existing event log of this firmware (skips the boot).
    pub from_log: Option<PathBuf>,
    /// Scratch/record directory for the probe boot.
    pub work: PathBuf,
}

/// Learn a profile: from `from_log` if given, else by building the `vmseal init` starter and
/// booting it with [`crate::boot::run`], taking the event log from the record directory
/// (`eventlog.bin`, or the stub's `VMSEAL1 eventlog` lines in `record.log`, then saved as
/// `eventlog.bin`).
pub fn learn(opts: &LearnOptions) -> Result<Profile, ProfileError> {
    let sha256 = sha256_file(&opts.code)?;
    let firmware = FirmwareId {
        file: opts
            .code
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256,
        package: String::new(),
    };
    let qemu = "vmseal boot (builder/src/boot.rs qemu_args: q35,smm=on, TCG, -nodefaults, 512M, virtio-blk bootindex=0, tpm-tis, swtpm without swtpm_setup)".to_string();
    let (log_path, learned_from) = match &opts.from_log {
        Some(p) => (p.clone(), format!("event log {}", p.display())),
        None => {
            let probe = opts.work.join("probe");
            crate::init::init(&probe, true).map_err(|e| ProfileError::Learn(e.to_string()))?;
            let built = crate::appliance::build(&crate::appliance::BuildOptions {
                manifest: probe.join("vmseal.toml"),
                out: probe.join("out"),
                stub: None,
                progress: crate::progress::Progress::new(true),
                // Learning is how a profile comes to exist: the probe needs no prediction.
                predict: false,
                pkcs11: Default::default(),
            })
            .map_err(|e| ProfileError::Learn(format!("building the probe: {e}")))?;
            let record = opts.work.join("record");
            let mut b = crate::boot::BootOptions::new(&built.img, &record);
            b.vars.clone_from(&opts.vars);
            b.secure_boot = opts.code == Path::new(crate::boot::OVMF_CODE_SECBOOT);
            if opts.code != Path::new(crate::boot::OVMF_CODE_SECBOOT)
                && opts.code != Path::new(crate::boot::OVMF_CODE)
            {
                return Err(ProfileError::Learn(format!(
                    "vmseal boot only runs {} or {}; give one of them (or --from-log with a log of {})",
                    crate::boot::OVMF_CODE,
                    crate::boot::OVMF_CODE_SECBOOT,
                    opts.code.display()
                )));
            }
            let outcome = crate::boot::run(&b)
                .map_err(|e| ProfileError::Learn(format!("probe boot: {e}")))?;
            let log = record.join("eventlog.bin");
            if !log.is_file() {
                // Direct mode: the stub sends the log over the record channel.
                let text = std::fs::read_to_string(record.join("record.log")).unwrap_or_default();
                let lines = policies::record::Line::parse_all(&text)
                    .map_err(|e| ProfileError::Learn(format!("record.log: {e}")))?;
                let bytes = policies::record::collect_eventlog(&lines).map_err(|e| {
                    ProfileError::Learn(format!(
                        "the probe boot ({}) left no event log in {}: {e}",
                        outcome.verdict(),
                        record.display()
                    ))
                })?;
                std::fs::write(&log, bytes)
                    .map_err(|e| ProfileError::Learn(format!("{}: {e}", log.display())))?;
            }
            (
                log,
                format!(
                    "probe boot of the vmseal init starter, record {}",
                    record.display()
                ),
            )
        }
    };
    let shown =
        crate::eventlog_cmd::load(&log_path).map_err(|e| ProfileError::Learn(e.to_string()))?;
    Ok(Profile::from_log(&shown.log, firmware, qemu, learned_from))
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
