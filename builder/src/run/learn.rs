//! `vmseal firmware learn`: a firmware profile ([`crate::measure::firmware`]) from an event
//! log, or from the log of a probe boot: the `vmseal init` starter built unsigned
//! ([`crate::pipeline`]) and booted ([`crate::run::boot`]) with the firmware to learn.

use std::path::{Path, PathBuf};

use crate::compose::init;
use crate::measure::eventlog;
use crate::measure::firmware::{FirmwareId, Profile, ProfileError, sha256_file};
use crate::measure::ovmf::{OVMF_CODE, OVMF_CODE_SECBOOT};
use crate::pipeline;
use crate::progress::Progress;
use crate::run::boot;

/// What `vmseal firmware learn` needs.
#[derive(Clone, Debug)]
pub struct LearnOptions {
    /// The firmware code file: required to boot a probe; with `from_log` optional (its
    /// SHA-256 then keys the profile too).
    pub code: Option<PathBuf>,
    /// A variable store to boot with (default: pristine).
    pub vars: Option<PathBuf>,
    /// An existing event log of this firmware (skips the boot).
    pub from_log: Option<PathBuf>,
    /// Scratch/record directory for the probe boot.
    pub work: PathBuf,
}

/// Learn a profile: from `from_log` if given, else by building the `vmseal init` starter and
/// booting it with [`boot::run`], taking the event log from the record directory
/// (`eventlog.bin`, or the stub's `VMSEAL1 eventlog` lines in `record.log`, then saved as
/// `eventlog.bin`).
pub fn learn(opts: &LearnOptions) -> Result<Profile, ProfileError> {
    let firmware = match &opts.code {
        Some(code) => FirmwareId {
            file: code
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: sha256_file(code)?,
            package: String::new(),
        },
        None => FirmwareId {
            file: String::new(),
            sha256: String::new(),
            package: String::new(),
        },
    };
    let (log_path, learned_from, qemu) = match (&opts.from_log, &opts.code) {
        (Some(p), _) => (
            p.clone(),
            format!("event log {}", p.display()),
            "as in the log's boot (unknown to vmseal: the same machine configuration and boot order must boot the appliance)".to_string(),
        ),
        (None, None) => {
            return Err(ProfileError::Learn(
                "give --code OVMF_CODE.fd (to boot a probe) or --from-log LOG".into(),
            ));
        }
        (None, Some(code)) => {
            if code != Path::new(OVMF_CODE_SECBOOT)
                && code != Path::new(OVMF_CODE)
            {
                return Err(ProfileError::Learn(format!(
                    "vmseal boot only runs {} or {}; give one of them (or --from-log with a log of {})",
                    OVMF_CODE,
                    OVMF_CODE_SECBOOT,
                    code.display()
                )));
            }
            let probe = opts.work.join("probe");
            init::init(&probe, true).map_err(|e| ProfileError::Learn(e.to_string()))?;
            // Unsigned: the probe needs no keys (its [signing] table names keys it has none of).
            let built = pipeline::build_with(&pipeline::BuildOptions {
                manifest: probe.join("vmseal.toml"),
                out: probe.join("out"),
                stub: None,
                progress: Progress::new(true),
                // Learning is how a profile comes to exist: the probe needs no prediction.
                predict: false,
                pkcs11: Default::default(),
            }, false)
            .map_err(|e| ProfileError::Learn(format!("building the probe: {e}")))?;
            let record = opts.work.join("record");
            let mut b = boot::BootOptions::new(&built.img, &record);
            b.vars.clone_from(&opts.vars);
            b.secure_boot = code == Path::new(OVMF_CODE_SECBOOT);
            let outcome = boot::run(&b)
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
                "vmseal boot (builder/src/run/boot.rs qemu_args: q35,smm=on, TCG, -nodefaults, 512M, virtio-blk bootindex=0, tpm-tis, swtpm without swtpm_setup)".to_string(),
            )
        }
    };
    let shown = eventlog::load(&log_path).map_err(|e| ProfileError::Learn(e.to_string()))?;
    Profile::from_log(&shown.log, firmware, qemu, learned_from)
}
