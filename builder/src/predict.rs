//! `vmseal pcr predict`: the expected TCG event log and PCR values of an image, per bank.
//!
//! Computed from the image and the variable store alone (`shared/reference/measured-boot.md`
//! §B, §E), plus a firmware profile for what cannot be computed ([`crate::firmware`]):
//!
//! | PCR | events | from |
//! | --- | --- | --- |
//! | 0, 1, 2, 3, 6 | the firmware's own, incl. separators | the profile |
//! | 7 | `SecureBoot`, `PK`, `KEK`, `db`, `dbx` (`dbt` if present) as `UEFI_VARIABLE_DATA`, digest = H(event); separator; with Secure Boot on, one `EV_EFI_VARIABLE_AUTHORITY` per distinct db entry that verifies a loaded image (§B.2) | the variable store |
//! | 4 | "Calling EFI Application from Boot Option", separator, the Authenticode hash of `\EFI\BOOT\BOOTX64.EFI` read from the ESP, and for a Linux appliance the Authenticode hash of the `.linux` PE the stub passes to `LoadImage` (§B.3, §E.4) | the image |
//! | 5 | separator, `EV_EFI_GPT_EVENT` (primary header's 92 bytes ‖ count ‖ non-empty entries, §B.4), "Exit Boot Services Invocation", "… Returned with Success" | the image |
//! | 9 | Linux only, in the kernel EFI stub's order: LoadOptions (`.cmdline` as UTF-16LE with NUL, as the stub passes it), then the initrd (§E.5) | the image |
//! | 11, 12, 13 | [`policies::predict::stub_events`] over the PE's sections | the image |
//!
//! The `UEFI_IMAGE_LOAD_EVENT` data of the PCR 4 image events holds load addresses that differ
//! per boot and are not hashed: it is written as zeros and marked `data_compared: false`.
//!
//! Event order is the firmware's (PCR 0, PCR 7 policy, PCR 1, "Calling…", separators 0–6,
//! authority, GPT, BOOTX64.EFI, the stub's events, the kernel, PCR 9, ExitBootServices); only
//! the order *within* a PCR changes its value.
//!
//! Secure Boot: the `SecureBoot` value is what OVMF computes from the store (PK present and
//! `SecureBootEnable` missing or 1, [`crate::vars::secure_boot_value`]); `--secure-boot`
//! chooses the firmware build (and so the profile), as `vmseal boot --secure-boot` does, and
//! defaults to on when the store enables Secure Boot. Which db entry verifies an image is
//! decided without cryptography: the first X.509 db entry whose certificate is embedded in the
//! image's signature, or whose subject is the issuer of a certificate embedded there
//! (a CA one level up); a SHA-256 db entry equal to the image's Authenticode hash otherwise.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use policies::eventlog::Event;
use policies::replay::Pcrs;
use policies::sections;
use policies::tcg::{EventType, HashAlg, pcr};
use signing::authenticode::{self, DigestAlgorithm};

use crate::describe::{self, CERT_SHA256, CERT_X509, TAG_LINUX_INITRD, TAG_LINUX_LOAD_OPTIONS};
use crate::disk::{self, Window};
use crate::firmware::{self, FIRMWARE_PCRS, ProfileError};
use crate::inspect::ReadOnly;
use crate::pcrs_json::{LoggedEvent, PcrsFile, bank_name};
use crate::vars::{self, GLOBAL_VARIABLE, IMAGE_SECURITY_DATABASE, Variable, VarsError};

/// `EV_EFI_ACTION` at each ReadyToBoot (`Tcg2Dxe.c → OnReadyToBoot`).
pub const CALLING_BOOT_OPTION: &str = "Calling EFI Application from Boot Option";
/// `EV_EFI_ACTION` when an earlier boot option returned (`Tcg2Dxe.c → OnReadyToBoot`).
pub const RETURNING_BOOT_OPTION: &str = "Returning from EFI Application from Boot Option";
/// `EV_EFI_ACTION` at ExitBootServices (`Tcg2Dxe.c → OnExitBootServices`).
pub const EXIT_BOOT_SERVICES: &str = "Exit Boot Services Invocation";
/// `EV_EFI_ACTION` after a successful ExitBootServices.
pub const EXIT_BOOT_SERVICES_OK: &str = "Exit Boot Services Returned with Success";
/// `EV_EFI_ACTION` after a failed ExitBootServices (`OnExitBootServicesFailed`).
pub const EXIT_BOOT_SERVICES_FAILED: &str = "Exit Boot Services Returned with Failure";
/// Event data of the Linux stub's LoadOptions event tag.
pub const LOAD_OPTIONS_TAG_TEXT: &[u8] = b"LOADED_IMAGE::LoadOptions\0";
/// Event data of the Linux stub's initrd event tag.
pub const INITRD_TAG_TEXT: &[u8] = b"Linux initrd\0";
/// The PCR 7 policy variables in measurement order (`Tcg2Dxe.c → mVariableType`; do not
/// reorder). `dbt` follows only when present.
pub const SECURE_BOOT_POLICY: [(&str, [u8; 16]); 5] = [
    ("SecureBoot", GLOBAL_VARIABLE),
    ("PK", GLOBAL_VARIABLE),
    ("KEK", GLOBAL_VARIABLE),
    ("db", IMAGE_SECURITY_DATABASE),
    ("dbx", IMAGE_SECURITY_DATABASE),
];

/// What to predict.
#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// The disk image (`NAME.img`).
    pub image: PathBuf,
    /// The variable store; `None` = Debian's pristine `OVMF_VARS_4M.fd` (no keys).
    pub vars: Option<PathBuf>,
    /// The Secure Boot firmware build; `None` = on iff the store enables Secure Boot.
    pub secure_boot: Option<bool>,
    /// Banks, in TPM bank order; `None` = the four banks of a fresh swtpm, less any the
    /// firmware profile lacks (the omission is noted in `sources`).
    pub banks: Option<Vec<HashAlg>>,
    /// An explicit firmware profile.
    pub profile: Option<PathBuf>,
}

impl PredictOptions {
    /// Defaults: pristine variables, the four banks of a fresh swtpm, the embedded profile.
    pub fn new(image: impl Into<PathBuf>) -> Self {
        Self {
            image: image.into(),
            vars: None,
            secure_boot: None,
            banks: None,
            profile: None,
        }
    }
}

/// Why a prediction failed.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// Reading failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        source: io::Error,
    },
    /// The image is not a vmseal disk.
    #[error("{file}: {problem} — give the NAME.img written by `vmseal build`")]
    Image {
        /// The file.
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// The variable store is unreadable.
    #[error("{file}: {source}")]
    Vars {
        /// The file.
        file: String,
        /// What is wrong.
        #[source]
        source: VarsError,
    },
    /// No usable profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A bank vmseal cannot compute, or a duplicate section.
    #[error("{0}")]
    Compute(String),
}

/// A prediction.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// The banks.
    pub banks: Vec<HashAlg>,
    /// The expected events in firmware order.
    pub events: Vec<LoggedEvent>,
    /// Their replay.
    pub pcrs: Pcrs,
    /// Where everything came from.
    pub sources: serde_json::Map<String, serde_json::Value>,
}

/// The PCRs a prediction covers (the firmware's, then the ones computed from the image).
pub fn predicted_pcrs() -> Vec<u32> {
    let mut v: Vec<u32> = FIRMWARE_PCRS.to_vec();
    v.extend([
        pcr::BOOT_LOADER_CODE,
        pcr::BOOT_LOADER_CONFIG,
        pcr::SECURE_BOOT_POLICY,
        pcr::KERNEL_INITRD,
    ]);
    v.extend(sections::MEASURED.iter().map(|r| r.pcr));
    v.push(sections::service_rule().0);
    v.sort_unstable();
    v.dedup();
    v
}

impl Prediction {
    /// The `.pcrs.json` form.
    pub fn to_file(&self) -> PcrsFile {
        PcrsFile::new(
            &self.banks,
            &self.events,
            &self.pcrs,
            Some(&predicted_pcrs()),
            self.sources.clone(),
        )
    }
}

fn digests(banks: &[HashAlg], data: &[u8]) -> Result<Vec<(HashAlg, Vec<u8>)>, PredictError> {
    banks
        .iter()
        .map(|a| {
            policies::digest::hash(*a, data)
                .map(|d| (*a, d))
                .map_err(|e| PredictError::Compute(e.to_string()))
        })
        .collect()
}

/// An event whose digest is H(`hashed`) in every bank.
fn event(
    banks: &[HashAlg],
    pcr: u32,
    t: EventType,
    data: Vec<u8>,
    hashed: &[u8],
) -> Result<LoggedEvent, PredictError> {
    Ok(LoggedEvent::new(Event {
        pcr,
        event_type: t,
        digests: digests(banks, hashed)?,
        data,
    }))
}

/// `EV_EFI_ACTION` with the ASCII text (no NUL), digest over the text.
pub fn action(banks: &[HashAlg], pcr: u32, text: &str) -> Result<LoggedEvent, PredictError> {
    event(
        banks,
        pcr,
        EventType::EFI_ACTION,
        text.as_bytes().to_vec(),
        text.as_bytes(),
    )
}

/// `EV_SEPARATOR` (4 zero bytes, digest over them).
pub fn separator(banks: &[HashAlg], pcr: u32) -> Result<LoggedEvent, PredictError> {
    event(banks, pcr, EventType::SEPARATOR, vec![0; 4], &[0; 4])
}

/// `UEFI_VARIABLE_DATA` (measured-boot.md §A.5).
pub fn variable_data(guid: &[u8; 16], name: &str, data: &[u8]) -> Vec<u8> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut v = guid.to_vec();
    v.extend_from_slice(&(units.len() as u64).to_le_bytes());
    v.extend_from_slice(&(data.len() as u64).to_le_bytes());
    v.extend(units.iter().flat_map(|u| u.to_le_bytes()));
    v.extend_from_slice(data);
    v
}

/// The Linux EFI stub's LoadOptions event (PCR 9) for a `.cmdline`.
pub fn load_options_event(banks: &[HashAlg], cmdline: &[u8]) -> Result<LoggedEvent, PredictError> {
    tagged(
        banks,
        TAG_LINUX_LOAD_OPTIONS,
        LOAD_OPTIONS_TAG_TEXT,
        &load_options(cmdline),
    )
}

/// The Linux EFI stub's initrd event (PCR 9).
pub fn initrd_event(banks: &[HashAlg], initrd: &[u8]) -> Result<LoggedEvent, PredictError> {
    tagged(banks, TAG_LINUX_INITRD, INITRD_TAG_TEXT, initrd)
}

/// A Linux EFI stub `EV_EVENT_TAG` (PCR 9): digest over `hashed`.
fn tagged(
    banks: &[HashAlg],
    id: u32,
    text: &[u8],
    hashed: &[u8],
) -> Result<LoggedEvent, PredictError> {
    let mut data = id.to_le_bytes().to_vec();
    data.extend_from_slice(&(text.len() as u32).to_le_bytes());
    data.extend_from_slice(text);
    event(
        banks,
        pcr::KERNEL_INITRD,
        EventType::EVENT_TAG,
        data,
        hashed,
    )
}

/// A PCR 4 `EV_EFI_BOOT_SERVICES_APPLICATION` with the Authenticode hash of `pe` per bank and
/// placeholder (zero) `UEFI_IMAGE_LOAD_EVENT` data.
pub fn image_event(banks: &[HashAlg], pe: &[u8], what: &str) -> Result<LoggedEvent, PredictError> {
    let mut d = Vec::new();
    for a in banks {
        let alg = match *a {
            HashAlg::SHA1 => DigestAlgorithm::Sha1,
            HashAlg::SHA256 => DigestAlgorithm::Sha256,
            HashAlg::SHA384 => DigestAlgorithm::Sha384,
            HashAlg::SHA512 => DigestAlgorithm::Sha512,
            other => {
                return Err(PredictError::Compute(format!(
                    "bank {} has no Authenticode digest",
                    bank_name(other)
                )));
            }
        };
        let h = authenticode::digest(pe, alg).map_err(|e| PredictError::Compute(e.to_string()))?;
        d.push((*a, h));
    }
    Ok(LoggedEvent {
        event: Event {
            pcr: pcr::BOOT_LOADER_CODE,
            event_type: EventType::EFI_BOOT_SERVICES_APPLICATION,
            digests: d,
            data: vec![0; 32],
        },
        data_compared: false,
        label: Some(format!(
            "{what}: Authenticode hash (UEFI_IMAGE_LOAD_EVENT data not compared: load addresses differ per boot)"
        )),
    })
}

/// The PCR 7 policy block (before the separator) for a store.
pub fn secure_boot_policy(
    banks: &[HashAlg],
    store: &[Variable],
) -> Result<Vec<LoggedEvent>, PredictError> {
    let mut out = Vec::new();
    for (name, guid) in SECURE_BOOT_POLICY {
        let value: Vec<u8> = if name == "SecureBoot" {
            vec![vars::secure_boot_value(store)]
        } else {
            vars::get(store, &guid, name)
                .map(|v| v.data.clone())
                .unwrap_or_default()
        };
        let data = variable_data(&guid, name, &value);
        out.push(event(
            banks,
            pcr::SECURE_BOOT_POLICY,
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            data.clone(),
            &data,
        )?);
    }
    if let Some(dbt) = vars::get(store, &IMAGE_SECURITY_DATABASE, "dbt") {
        let data = variable_data(&IMAGE_SECURITY_DATABASE, "dbt", &dbt.data);
        out.push(event(
            banks,
            pcr::SECURE_BOOT_POLICY,
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            data.clone(),
            &data,
        )?);
    }
    Ok(out)
}

/// The db entry (`EFI_SIGNATURE_DATA`: owner ‖ payload) that verifies `pe`, and the list's
/// SignatureSize (see the module docs for how it is chosen).
pub fn verifying_db_entry(db: &[u8], pe: &[u8]) -> Option<Vec<u8>> {
    let certs = cert_table(pe).unwrap_or_default();
    let contains =
        |needle: &[u8]| !needle.is_empty() && certs.windows(needle.len()).any(|w| w == needle);
    let mut rest = db;
    let mut hash_match = None;
    let sha256 = authenticode::digest(pe, DigestAlgorithm::Sha256).ok();
    while let Some(list) = describe::parse_list(rest) {
        for e in &list.entries {
            let payload = e.get(16..).unwrap_or(&[]);
            if list.sig_type == CERT_X509 {
                let subject = describe::x509_subject(payload).unwrap_or(&[]);
                if contains(payload) || contains(subject) {
                    return Some(e.to_vec());
                }
            } else if list.sig_type == CERT_SHA256
                && hash_match.is_none()
                && sha256.as_deref() == Some(payload)
            {
                hash_match = Some(e.to_vec());
            }
        }
        rest = rest.get(list.size..).unwrap_or(&[]);
    }
    hash_match
}

/// The bytes of a PE's certificate table (empty when unsigned).
fn cert_table(pe: &[u8]) -> Option<&[u8]> {
    let p = goblin::pe::PE::parse(pe).ok()?;
    let d = p
        .header
        .optional_header?
        .data_directories
        .get_certificate_table()
        .copied()?;
    let start = d.virtual_address as usize;
    pe.get(start..start.checked_add(d.size as usize)?)
}

/// What prediction reads from a disk image.
#[derive(Clone, Debug)]
pub struct ImageFacts {
    /// `UEFI_GPT_DATA` as the firmware measures it.
    pub gpt_event: Vec<u8>,
    /// The bytes of `\EFI\BOOT\BOOTX64.EFI`.
    pub boot_efi: Vec<u8>,
}

/// Read the GPT event data and BOOTX64.EFI from `image`.
pub fn read_image(image: &Path) -> Result<ImageFacts, PredictError> {
    let file = image.display().to_string();
    let bad = |problem: String| PredictError::Image {
        file: file.clone(),
        problem,
    };
    let ioe = |source| PredictError::Io {
        file: file.clone(),
        source,
    };
    let mut f = File::open(image).map_err(ioe)?;
    let gpt = disk::read_gpt(&mut f).map_err(|e| bad(format!("GPT: {e}")))?;
    let mut header = [0u8; 92];
    f.seek(SeekFrom::Start(disk::SECTOR))
        .and_then(|_| f.read_exact(&mut header))
        .map_err(ioe)?;
    let u32_at =
        |o: usize| u32::from_le_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
    let lba = u64::from_le_bytes(header[72..80].try_into().unwrap_or_default());
    let (n, esz) = (u32_at(80) as usize, u32_at(84) as usize);
    // read_gpt checked n ≤ 4096 and 128 ≤ esz ≤ 4096 and the CRCs.
    let mut entries = vec![0u8; n * esz];
    f.seek(SeekFrom::Start(lba * disk::SECTOR))
        .and_then(|_| f.read_exact(&mut entries))
        .map_err(ioe)?;
    let used: Vec<&[u8]> = entries
        .chunks_exact(esz)
        .filter(|e| e.iter().take(16).any(|b| *b != 0))
        .collect();
    let mut gpt_event = header.to_vec();
    gpt_event.extend_from_slice(&(used.len() as u64).to_le_bytes());
    used.iter().for_each(|e| gpt_event.extend_from_slice(e));

    let esp = gpt
        .partitions
        .iter()
        .find(|p| p.type_guid == disk::ESP_TYPE)
        .ok_or_else(|| bad("no EFI System Partition in the GPT".into()))?;
    let start = esp.first_lba * disk::SECTOR;
    let len = esp
        .last_lba
        .checked_add(1)
        .and_then(|end| end.checked_sub(esp.first_lba))
        .and_then(|n| n.checked_mul(disk::SECTOR))
        .ok_or_else(|| bad("the ESP's LBA range is empty or overflows".into()))?;
    let fs = fatfs::FileSystem::new(
        Window::new(ReadOnly::open(image).map_err(ioe)?, start, len),
        fatfs::FsOptions::new().update_accessed_date(false),
    )
    .map_err(|e| bad(format!("ESP is not a FAT file system: {e}")))?;
    let mut boot = fs
        .root_dir()
        .open_file(crate::appliance::BOOT_PATH)
        .map_err(|e| bad(format!("ESP has no {}: {e}", crate::appliance::BOOT_PATH)))?;
    let size = boot.seek(SeekFrom::End(0)).map_err(ioe)?;
    boot.seek(SeekFrom::Start(0)).map_err(ioe)?;
    let mut boot_efi = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    boot.read_to_end(&mut boot_efi).map_err(ioe)?;
    Ok(ImageFacts {
        gpt_event,
        boot_efi,
    })
}

/// Largest section a prediction loads (`VirtualSize`): 1 GiB, beyond any payload vmseal
/// builds; a larger value is a malformed PE, refused rather than allocated.
pub const MAX_SECTION: usize = 1 << 30;

/// One PE section: its name and its `VirtualSize` bytes.
pub type Section<'a> = (String, Cow<'a, [u8]>);

/// The sections of a PE as `(name, VirtualSize bytes)` (zero-filled past the raw data).
/// A section whose raw data covers its `VirtualSize` is borrowed, not copied: a prediction
/// hashes a 512 MiB payload in four banks at once without four copies of it.
pub fn pe_sections(pe: &[u8]) -> Result<Vec<Section<'_>>, String> {
    let p = goblin::pe::PE::parse(pe).map_err(|e| format!("not a valid PE: {e}"))?;
    let mut out = Vec::new();
    for s in &p.sections {
        let name = s
            .name()
            .map_err(|e| format!("section name: {e}"))?
            .to_string();
        let vs = s.virtual_size as usize;
        if vs > MAX_SECTION {
            return Err(format!(
                "section {name}: VirtualSize {vs:#x} is over {MAX_SECTION:#x} — not an appliance PE"
            ));
        }
        let raw = (s.size_of_raw_data as usize).min(vs);
        let start = s.pointer_to_raw_data as usize;
        let raw_bytes = pe
            .get(start..start.saturating_add(raw))
            .ok_or_else(|| format!("section {name} runs past the end of the file"))?;
        let c = if raw == vs {
            Cow::Borrowed(raw_bytes)
        } else {
            let mut c = raw_bytes.to_vec();
            c.resize(vs, 0);
            Cow::Owned(c)
        };
        out.push((name, c));
    }
    Ok(out)
}

/// Predict.
pub fn predict(opts: &PredictOptions) -> Result<Prediction, PredictError> {
    let t0 = std::time::Instant::now();
    let facts = read_image(&opts.image)?;
    if std::env::var_os("VMSEAL_TIMINGS").is_some() {
        eprintln!("vmseal: {:7.3}s read the image", t0.elapsed().as_secs_f64());
    }
    let file = opts.image.display().to_string();
    let store: Vec<Variable> = match &opts.vars {
        Some(p) => {
            let b = std::fs::read(p).map_err(|source| PredictError::Io {
                file: p.display().to_string(),
                source,
            })?;
            vars::parse(&b).map_err(|source| PredictError::Vars {
                file: p.display().to_string(),
                source,
            })?
        }
        // Debian's pristine OVMF_VARS_4M.fd holds no Secure Boot variables.
        None => Vec::new(),
    };
    let sb_value = vars::secure_boot_value(&store);
    let secure_boot = opts.secure_boot.unwrap_or(sb_value == 1);
    let code = Path::new(if secure_boot {
        crate::boot::OVMF_CODE_SECBOOT
    } else {
        crate::boot::OVMF_CODE
    });
    let selected = firmware::select(opts.profile.as_deref(), code)?;
    let mut omitted = Vec::new();
    let banks: &Vec<HashAlg> = &match &opts.banks {
        Some(b) => b.clone(),
        None => {
            let (have, lack): (Vec<HashAlg>, Vec<HashAlg>) =
                HashAlg::COMPUTED.into_iter().partition(|a| {
                    selected
                        .profile
                        .banks
                        .iter()
                        .any(|b| HashAlg::from_name(b) == Some(*a))
                });
            omitted = lack;
            have
        }
    };
    // Hash every bank on its own thread over the image read once (the payload is hashed
    // per bank twice: section contents for PCR 11, Authenticode for PCR 4); then put the
    // banks' digests side by side.
    let per_bank: Vec<Result<Vec<LoggedEvent>, PredictError>> = std::thread::scope(|s| {
        let jobs: Vec<_> = banks
            .iter()
            .map(|b| {
                let (facts, store, profile, file) = (&facts, &store, &selected.profile, &file);
                s.spawn(move || expected_events(facts, store, sb_value, profile, &[*b], file))
            })
            .collect();
        jobs.into_iter()
            .map(|j| {
                j.join().unwrap_or_else(|_| {
                    Err(PredictError::Compute("a hashing thread panicked".into()))
                })
            })
            .collect()
    });
    let ev = merge_banks(per_bank)?;

    let pcrs = policies::replay::replay_events(ev.iter().map(|e| &e.event), banks)
        .map_err(|e| PredictError::Compute(e.to_string()))?;
    let mut sources = serde_json::Map::new();
    sources.insert("image".into(), file.into());
    sources.insert(
        "vars".into(),
        opts.vars
            .as_ref()
            .map_or_else(
                || "(pristine Debian OVMF_VARS_4M.fd: no Secure Boot variables)".to_string(),
                |p| p.display().to_string(),
            )
            .into(),
    );
    sources.insert("secure_boot_firmware".into(), secure_boot.into());
    sources.insert("secure_boot_variable".into(), sb_value.into());
    sources.insert("firmware_code".into(), code.display().to_string().into());
    sources.insert("firmware_profile".into(), selected.origin.into());
    sources.insert(
        "firmware_sha256".into(),
        selected.profile.firmware.sha256.clone().into(),
    );
    if let Some(n) = selected.note {
        sources.insert("firmware_profile_note".into(), n.into());
    }
    if !omitted.is_empty() {
        let names: Vec<String> = omitted.iter().map(|a| bank_name(*a)).collect();
        sources.insert(
            "banks_omitted".into(),
            format!(
                "{}: the firmware profile has no digests for them",
                names.join(",")
            )
            .into(),
        );
    }
    sources.insert("boot_file".into(), crate::appliance::BOOT_PATH.into());
    sources.insert("vmseal".into(), env!("CARGO_PKG_VERSION").into());
    Ok(Prediction {
        banks: banks.clone(),
        events: ev,
        pcrs,
        sources,
    })
}

/// The expected events for `banks`, in firmware order (see [`predict`]).
fn expected_events(
    facts: &ImageFacts,
    store: &[Variable],
    sb_value: u8,
    profile: &firmware::Profile,
    banks: &[HashAlg],
    file: &str,
) -> Result<Vec<LoggedEvent>, PredictError> {
    let fw_events = profile.events_for(banks)?;

    let sections = pe_sections(&facts.boot_efi).map_err(|problem| PredictError::Image {
        file: format!("{file}: BOOTX64.EFI"),
        problem,
    })?;
    let section_refs: Vec<(&str, &[u8])> = sections
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_ref()))
        .collect();
    let stub = policies::predict::stub_events(&section_refs, banks)
        .map_err(|e| PredictError::Compute(format!("{file}: BOOTX64.EFI: {e}")))?;
    let section = |name: &str| {
        section_refs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
    };
    let kernel = section(sections::LINUX).filter(|c| !c.is_empty());

    let mut ev: Vec<LoggedEvent> = Vec::new();
    let (fw_seps, fw_pre): (Vec<LoggedEvent>, Vec<LoggedEvent>) = fw_events
        .into_iter()
        .partition(|e| e.event.event_type == EventType::SEPARATOR);
    ev.extend(fw_pre.iter().filter(|e| e.event.pcr == 0).cloned());
    ev.extend(secure_boot_policy(banks, store)?);
    ev.push(separator(banks, pcr::SECURE_BOOT_POLICY)?);
    ev.extend(fw_pre.iter().filter(|e| e.event.pcr != 0).cloned());
    ev.push(action(banks, pcr::BOOT_LOADER_CODE, CALLING_BOOT_OPTION)?);
    for i in 0..pcr::SECURE_BOOT_POLICY {
        if FIRMWARE_PCRS.contains(&i) {
            ev.extend(fw_seps.iter().filter(|e| e.event.pcr == i).cloned());
        } else {
            ev.push(separator(banks, i)?);
        }
    }
    let mut authorities: Vec<Vec<u8>> = Vec::new();
    let mut authority = |pe: &[u8], ev: &mut Vec<LoggedEvent>| -> Result<(), PredictError> {
        if sb_value != 1 {
            return Ok(());
        }
        let db = vars::get(store, &IMAGE_SECURITY_DATABASE, "db")
            .map(|v| v.data.as_slice())
            .unwrap_or(&[]);
        if let Some(entry) = verifying_db_entry(db, pe)
            && !authorities.contains(&entry)
        {
            let data = variable_data(&IMAGE_SECURITY_DATABASE, "db", &entry);
            ev.push(event(
                banks,
                pcr::SECURE_BOOT_POLICY,
                EventType::EFI_VARIABLE_AUTHORITY,
                data.clone(),
                &data,
            )?);
            authorities.push(entry);
        }
        Ok(())
    };
    authority(&facts.boot_efi, &mut ev)?;
    ev.push(event(
        banks,
        pcr::BOOT_LOADER_CONFIG,
        EventType::EFI_GPT_EVENT,
        facts.gpt_event.clone(),
        &facts.gpt_event,
    )?);
    ev.push(image_event(
        banks,
        &facts.boot_efi,
        crate::appliance::BOOT_PATH,
    )?);
    ev.extend(stub.into_iter().map(LoggedEvent::new));
    if let Some(k) = kernel {
        authority(k, &mut ev)?;
        ev.push(image_event(
            banks,
            k,
            "the .linux kernel the stub passes to LoadImage",
        )?);
        // The kernel EFI stub's order: LoadOptions, then the initrd (the UKI fixture's log).
        if let Some(c) = section(sections::CMDLINE).filter(|c| !c.is_empty()) {
            ev.push(load_options_event(banks, c)?);
        }
        if let Some(i) = section(sections::INITRD).filter(|c| !c.is_empty()) {
            ev.push(initrd_event(banks, i)?);
        }
    }
    ev.push(action(banks, pcr::BOOT_LOADER_CONFIG, EXIT_BOOT_SERVICES)?);
    ev.push(action(
        banks,
        pcr::BOOT_LOADER_CONFIG,
        EXIT_BOOT_SERVICES_OK,
    )?);

    Ok(ev)
}

/// One event list from per-bank lists of the same events (each with one bank's digests).
fn merge_banks(
    per_bank: Vec<Result<Vec<LoggedEvent>, PredictError>>,
) -> Result<Vec<LoggedEvent>, PredictError> {
    let mut lists = per_bank.into_iter();
    let mut merged = match lists.next() {
        Some(first) => first?,
        None => return Ok(Vec::new()),
    };
    for list in lists {
        let list = list?;
        if list.len() != merged.len() {
            return Err(PredictError::Compute(
                "the banks predicted different event lists".into(),
            ));
        }
        for (m, e) in merged.iter_mut().zip(list) {
            if (m.event.pcr, m.event.event_type, &m.event.data)
                != (e.event.pcr, e.event.event_type, &e.event.data)
            {
                return Err(PredictError::Compute(
                    "the banks predicted different events".into(),
                ));
            }
            m.event.digests.extend(e.event.digests);
        }
    }
    Ok(merged)
}

/// The LoadOptions the stub gives the kernel: the `.cmdline` bytes as UTF-16LE with a NUL
/// (`stub-hypervisor/src/efi/linux.rs → launch`; a non-UTF-8 command line stops the boot, so
/// it is converted lossily here only to have some prediction).
pub fn load_options(cmdline: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(cmdline)
        .encode_utf16()
        .chain(Some(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}
