//! `vmseal pcr predict`: the expected TCG event log and PCR values of an image, per bank.
//!
//! Computed from the image and the variable store alone (`shared/reference/measured-boot.md`
//! §B, §E), plus a firmware profile for what cannot be computed ([`crate::measure::firmware`]). The
//! profile gives the skeleton ([`firmware::Profile::steps`]): the firmware's events in log
//! order with two slots this module fills, the Secure Boot policy variables and the appliance
//! ([`firmware::template`]). The table is the skeleton of the shipped (format 1) profiles; a
//! format 2 profile learned from another boot keeps that boot's PCR 4/5/7 firmware events
//! (other boot attempts, no GPT, other variables) in place of the fixed ones:
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
//! `SecureBootEnable` missing or 1, [`crate::measure::vars::secure_boot_value`]); `--secure-boot`
//! chooses the firmware build (and so the profile), as `vmseal boot --secure-boot` does, and
//! defaults to on when the store enables Secure Boot. Which db entry verifies an image is
//! decided without cryptography: the first X.509 db entry whose certificate is embedded in the
//! image's signature, or whose subject is the issuer of a certificate embedded there
//! (a CA one level up); a SHA-256 db entry equal to the image's Authenticode hash otherwise.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use policies::eventlog::Event;
use policies::replay::Pcrs;
use policies::sections;
use policies::tcg::{EventType, HashAlg, pcr};
use signing::authenticode::{self, DigestAlgorithm};

use crate::disk::ReadOnly;
use crate::disk::{self, Window};
use crate::measure::describe::{
    self, CERT_SHA256, CERT_X509, TAG_LINUX_INITRD, TAG_LINUX_LOAD_OPTIONS,
};
use crate::measure::firmware::template::{self, Step};
use crate::measure::firmware::{self, FIRMWARE_PCRS, ProfileError};
use crate::measure::hashstream::{self, Chain};
use crate::measure::pcrs_json::{LoggedEvent, PcrsFile, bank_name};
use crate::measure::vars::{self, GLOBAL_VARIABLE, IMAGE_SECURITY_DATABASE, Variable, VarsError};

pub use crate::measure::firmware::template::{
    CALLING_BOOT_OPTION, EXIT_BOOT_SERVICES, EXIT_BOOT_SERVICES_OK, RETURNING_BOOT_OPTION,
};
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
    /// Also compute the SEV-SNP launch digest (the `snp` object).
    pub snp: Option<crate::confidential::SnpOptions>,
    /// `--ovmf-code` / `--ovmf-vars`: the firmware the image will boot with (its code file
    /// picks the profile; see [`crate::measure::ovmf::locate`]).
    pub firmware: crate::measure::ovmf::FirmwareFlags,
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
            snp: None,
            firmware: crate::measure::ovmf::FirmwareFlags::default(),
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
    /// The SEV-SNP launch digest cannot be computed.
    #[error(transparent)]
    Snp(#[from] crate::confidential::ConfidentialError),
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
    /// The SEV-SNP launch digest, when asked for.
    pub snp: Option<crate::confidential::SnpPrediction>,
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
        let mut f = PcrsFile::new(
            &self.banks,
            &self.events,
            &self.pcrs,
            Some(&predicted_pcrs()),
            self.sources.clone(),
        );
        f.snp.clone_from(&self.snp);
        f
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
    Ok(tagged_with(id, text, digests(banks, hashed)?))
}

/// [`tagged`] with the digests already computed.
fn tagged_with(id: u32, text: &[u8], digests: Vec<(HashAlg, Vec<u8>)>) -> LoggedEvent {
    let mut data = id.to_le_bytes().to_vec();
    data.extend_from_slice(&(text.len() as u32).to_le_bytes());
    data.extend_from_slice(text);
    LoggedEvent::new(Event {
        pcr: pcr::KERNEL_INITRD,
        event_type: EventType::EVENT_TAG,
        digests,
        data,
    })
}

/// A PCR 4 `EV_EFI_BOOT_SERVICES_APPLICATION` with the Authenticode hash of `pe` per bank and
/// placeholder (zero) `UEFI_IMAGE_LOAD_EVENT` data.
/// The banks are hashed on threads of their own (a kernel is ~15 MiB: ~50 ms for four banks
/// on one core).
pub fn image_event(banks: &[HashAlg], pe: &[u8], what: &str) -> Result<LoggedEvent, PredictError> {
    let algs = banks
        .iter()
        .map(|a| authenticode_alg(*a))
        .collect::<Result<Vec<_>, _>>()?;
    let digests = std::thread::scope(|s| {
        let jobs: Vec<_> = algs
            .iter()
            .map(|alg| s.spawn(move || authenticode::digest(pe, *alg)))
            .collect();
        jobs.into_iter()
            .map(|j| {
                j.join()
                    .map_err(|_| PredictError::Compute("a hashing thread panicked".into()))?
                    .map_err(|e| PredictError::Compute(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    Ok(image_event_with(
        banks.iter().copied().zip(digests).collect(),
        what,
    ))
}

/// The Authenticode algorithm of a bank.
fn authenticode_alg(bank: HashAlg) -> Result<DigestAlgorithm, PredictError> {
    Ok(match bank {
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
    })
}

/// [`image_event`] with the Authenticode digests already computed (`(bank, digest)`).
pub fn image_event_with(d: Vec<(HashAlg, Vec<u8>)>, what: &str) -> LoggedEvent {
    LoggedEvent {
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
    }
}

/// The PCR 7 policy block (before the separator) for a store: [`SECURE_BOOT_POLICY`], then
/// `dbt` if the store has it.
pub fn secure_boot_policy(
    banks: &[HashAlg],
    store: &[Variable],
) -> Result<Vec<LoggedEvent>, PredictError> {
    let names: Vec<&str> = SECURE_BOOT_POLICY.iter().map(|(n, _)| *n).collect();
    secure_boot_policy_of(banks, store, &names)
}

/// The PCR 7 policy variables `names` (each one of [`SECURE_BOOT_POLICY`], in the firmware's
/// order, from a profile's template) measured from `store` (`SecureBoot` as the firmware
/// computes it, an absent variable with no data), then `dbt` if the store has it.
pub fn secure_boot_policy_of(
    banks: &[HashAlg],
    store: &[Variable],
    names: &[&str],
) -> Result<Vec<LoggedEvent>, PredictError> {
    let mut out = Vec::new();
    for want in names {
        let Some((name, guid)) = SECURE_BOOT_POLICY.iter().find(|(n, _)| n == want) else {
            return Err(PredictError::Compute(format!(
                "the firmware profile names the Secure Boot variable {want:?}, which vmseal does not know"
            )));
        };
        let value: Vec<u8> = if *name == "SecureBoot" {
            vec![vars::secure_boot_value(store)]
        } else {
            vars::get(store, guid, name)
                .map(|v| v.data.clone())
                .unwrap_or_default()
        };
        let data = variable_data(guid, name, &value);
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
    let sha256 = authenticode::digest(pe, DigestAlgorithm::Sha256).ok();
    verifying_db_entry_with(db, cert_table(pe).unwrap_or_default(), sha256.as_deref())
}

/// [`verifying_db_entry`] from the image's certificate table and its SHA-256 Authenticode
/// digest.
pub fn verifying_db_entry_with(db: &[u8], certs: &[u8], sha256: Option<&[u8]>) -> Option<Vec<u8>> {
    let contains =
        |needle: &[u8]| !needle.is_empty() && certs.windows(needle.len()).any(|w| w == needle);
    let mut rest = db;
    let mut hash_match = None;
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
                && sha256 == Some(payload)
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
    let (at, len) = authenticode::layout(pe).ok()?.cert_table;
    pe.get(usize::try_from(at).ok()?..usize::try_from(at.checked_add(len)?).ok()?)
}

/// What prediction reads from a disk image before hashing anything.
#[derive(Clone, Debug)]
pub struct ImageFacts {
    /// `UEFI_GPT_DATA` as the firmware measures it.
    pub gpt_event: Vec<u8>,
    /// `\EFI\BOOT\BOOTX64.EFI`: its size, headers and sections.
    pub boot: BootFile,
    image: PathBuf,
    /// The ESP's byte range in the image.
    esp: (u64, u64),
}

/// The headers of `\EFI\BOOT\BOOTX64.EFI` (the file itself is read only by [`digest_boot`]).
#[derive(Clone, Debug)]
pub struct BootFile {
    /// The file size.
    pub size: u64,
    /// What the Authenticode walk needs.
    pub layout: authenticode::PeLayout,
    /// The section table, in its order.
    pub sections: Vec<SectionHeader>,
}

impl BootFile {
    /// The headers of a PE of `size` bytes whose first bytes (up to 64 KiB) are `head`.
    pub fn parse(head: &[u8], size: u64) -> Result<Self, String> {
        let layout = authenticode::layout(&Prefix { head, size })
            .map_err(|e| format!("not a valid PE: {e}"))?;
        let sections = section_headers(head)
            .ok_or_else(|| "not a valid PE: the section table is truncated".to_string())?;
        for s in &sections {
            // Loaded into memory: the kept sections, and a zero tail is hashed (never a
            // payload's size: a payload section's VirtualSize is its stored length).
            let (from, to) = s.stored();
            let loaded = if KEPT.contains(&s.name.as_str()) {
                s.virtual_size
            } else {
                s.virtual_size - (to - from)
            };
            if loaded > MAX_SECTION as u64 {
                return Err(format!(
                    "section {}: VirtualSize {:#x} is over {MAX_SECTION:#x} — not an appliance PE",
                    s.name, s.virtual_size
                ));
            }
            if s.stored().1 > size {
                return Err(format!("section {} runs past the end of the file", s.name));
            }
        }
        Ok(Self {
            size,
            layout,
            sections,
        })
    }
}

/// One entry of a PE section table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionHeader {
    /// The name (the 8-byte field up to its first NUL).
    pub name: String,
    /// `VirtualSize`: the bytes measured as the section's contents.
    pub virtual_size: u64,
    /// `SizeOfRawData`.
    pub raw_size: u64,
    /// `PointerToRawData`.
    pub raw_ptr: u64,
}

impl SectionHeader {
    /// The file range of the contents that is stored (`min(raw, VirtualSize)` bytes); the rest
    /// of `VirtualSize` is zeros.
    fn stored(&self) -> (u64, u64) {
        (
            self.raw_ptr,
            self.raw_ptr + self.raw_size.min(self.virtual_size),
        )
    }
}

/// How much of BOOTX64.EFI is read for its headers.
pub const HEADER_PREFIX: u64 = 64 << 10;

/// Sections whose contents a prediction needs as bytes, not only digests: the kernel (its own
/// Authenticode hash and signature) and the command line (PCR 9's LoadOptions).
const KEPT: [&str; 2] = [sections::LINUX, sections::CMDLINE];

/// The first bytes of a file standing in for all of it (headers only; reading past them fails).
struct Prefix<'a> {
    head: &'a [u8],
    size: u64,
}

impl authenticode::PeSource for Prefix<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn visit(&self, start: u64, end: u64, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let range = usize::try_from(start).ok().zip(usize::try_from(end).ok());
        match range.and_then(|(s, e)| self.head.get(s..e)) {
            Some(b) => {
                f(b);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("PE headers reach past the first {HEADER_PREFIX:#x} bytes"),
            )),
        }
    }
}

fn le(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(n)?)?;
    Some(bytes.iter().rev().fold(0, |v, x| (v << 8) | u64::from(*x)))
}

/// The section table of the PE whose first bytes are `head`.
fn section_headers(head: &[u8]) -> Option<Vec<SectionHeader>> {
    let pe = if head.starts_with(b"MZ") {
        usize::try_from(le(head, 0x3c, 4)?).ok()?
    } else {
        0
    };
    let coff = pe.checked_add(4)?;
    let n = le(head, coff + 2, 2)? as usize;
    let table = coff + 20 + le(head, coff + 16, 2)? as usize;
    (0..n)
        .map(|i| {
            let h = table + 40 * i;
            let name = head.get(h..h + 8)?;
            let name = name.split(|b| *b == 0).next().unwrap_or_default();
            Some(SectionHeader {
                name: String::from_utf8_lossy(name).into_owned(),
                virtual_size: le(head, h + 8, 4)?,
                raw_size: le(head, h + 16, 4)?,
                raw_ptr: le(head, h + 20, 4)?,
            })
        })
        .collect()
}

/// `problem` with `file` as a [`PredictError::Image`].
fn bad_image(file: &str) -> impl Fn(String) -> PredictError + Copy + '_ {
    move |problem| PredictError::Image {
        file: file.to_string(),
        problem,
    }
}

/// An I/O error on `file` as a [`PredictError::Io`].
fn io_error(file: &str) -> impl Fn(io::Error) -> PredictError + Copy + '_ {
    move |source| PredictError::Io {
        file: file.to_string(),
        source,
    }
}

/// Read the GPT event data and BOOTX64.EFI's headers from `image`.
pub fn read_image(image: &Path) -> Result<ImageFacts, PredictError> {
    let file = image.display().to_string();
    let (bad, ioe) = (bad_image(&file), io_error(&file));
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
    let (size, head) = with_boot_file(image, (start, len), |boot| {
        let size = boot.seek(SeekFrom::End(0))?;
        boot.seek(SeekFrom::Start(0))?;
        let mut head = Vec::new();
        boot.take(HEADER_PREFIX).read_to_end(&mut head)?;
        Ok((size, head))
    })?;
    let boot = BootFile::parse(&head, size).map_err(bad_image(&format!("{file}: BOOTX64.EFI")))?;
    Ok(ImageFacts {
        gpt_event,
        boot,
        image: image.to_path_buf(),
        esp: (start, len),
    })
}

/// Run `f` on `\EFI\BOOT\BOOTX64.EFI` of the ESP at `esp` (byte offset, length) in `image`.
fn with_boot_file<T>(
    image: &Path,
    esp: (u64, u64),
    f: impl FnOnce(&mut fatfs::File<'_, Window<ReadOnly>>) -> io::Result<T>,
) -> Result<T, PredictError> {
    let file = image.display().to_string();
    let (bad, ioe) = (bad_image(&file), io_error(&file));
    let fs = fatfs::FileSystem::new(
        Window::new(ReadOnly::open(image).map_err(ioe)?, esp.0, esp.1),
        fatfs::FsOptions::new().update_accessed_date(false),
    )
    .map_err(|e| bad(format!("ESP is not a FAT file system: {e}")))?;
    let mut boot = fs
        .root_dir()
        .open_file(crate::disk::BOOT_PATH)
        .map_err(|e| bad(format!("ESP has no {}: {e}", crate::disk::BOOT_PATH)))?;
    f(&mut boot).map_err(ioe)
}

/// Largest section a prediction loads (`VirtualSize` of `.linux` and `.cmdline`), and largest
/// zero tail it hashes (`VirtualSize` past the stored bytes): 1 GiB; a larger value is a
/// malformed PE, refused rather than allocated. Other sections (a multi-GiB initrd or guest)
/// are only hashed, as they stream by.
pub const MAX_SECTION: usize = 1 << 30;

/// The digests of BOOTX64.EFI a prediction needs, and the few parts it needs as bytes.
#[derive(Clone, Debug)]
pub struct BootDigests {
    /// The Authenticode digest per bank (`banks` order).
    pub authenticode: Vec<(HashAlg, Vec<u8>)>,
    /// The SHA-256 Authenticode digest (for a db entry that is an image hash).
    pub sha256_authenticode: Option<Vec<u8>>,
    /// Per section (section-table order): the digest of its `VirtualSize` bytes per bank.
    pub contents: Vec<Vec<(HashAlg, Vec<u8>)>>,
    /// The contents of the `.linux` and `.cmdline` sections present (`VirtualSize` bytes).
    pub kept: Vec<(String, Vec<u8>)>,
    /// The certificate table (empty when unsigned).
    pub cert_table: Vec<u8>,
}

/// A reader that copies the bytes of some ranges aside as they go by.
struct Capture<R> {
    inner: R,
    at: u64,
    wants: Vec<((u64, u64), Vec<u8>)>,
}

impl<R: Read> Read for Capture<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let end = self.at + n as u64;
        for ((s, e), into) in &mut self.wants {
            let (from, to) = ((*s).max(self.at), (*e).min(end));
            if from < to
                && let Some(b) = buf.get((from - self.at) as usize..(to - self.at) as usize)
            {
                into.extend_from_slice(b);
            }
        }
        self.at = end;
        Ok(n)
    }
}

/// Hash BOOTX64.EFI of `facts` for `banks` (see [`digest_pe`]).
pub fn digest_boot(
    facts: &ImageFacts,
    banks: &[HashAlg],
    want_sha256: bool,
) -> Result<BootDigests, PredictError> {
    let file = format!("{}: BOOTX64.EFI", facts.image.display());
    digest_pe(&facts.boot, banks, want_sha256, &file, &mut |f| {
        with_boot_file(&facts.image, facts.esp, |boot| f(boot))
    })
}

/// Calls its argument with a reader positioned at the start of the PE.
pub type OpenPe<'a> =
    dyn FnMut(&mut dyn FnMut(&mut dyn Read) -> io::Result<()>) -> Result<(), PredictError> + 'a;

/// The hashes a prediction needs of one PE, as [`Chain`]s over its bytes (front to back),
/// and the byte ranges it needs as bytes (the `.linux` and `.cmdline` sections, then the
/// certificate table). [`digest_pe`] reads the PE for them; `vmseal build` feeds them the
/// PE while it streams it out ([`hashstream::Workers`]), so the image is not read again.
#[derive(Clone, Debug)]
pub struct PeChains {
    /// Authenticode per bank of `auth_banks`, then each section's contents per bank of
    /// `banks`.
    pub chains: Vec<Chain>,
    /// The ranges to keep as bytes: each kept section's stored bytes, then the certificate
    /// table.
    pub wants: Vec<(u64, u64)>,
    auth_banks: Vec<HashAlg>,
    banks: Vec<HashAlg>,
}

impl PeChains {
    /// The chains of the PE `boot` describes for `banks` (Authenticode, every section's
    /// contents, and the SHA-256 Authenticode digest when `want_sha256`). `file` names it in
    /// errors.
    pub fn new(
        boot: &BootFile,
        banks: &[HashAlg],
        want_sha256: bool,
        file: &str,
    ) -> Result<Self, PredictError> {
        let auth = authenticode::hashed_ranges(&boot.layout)
            .map_err(|e| bad_image(file)(format!("not a valid PE: {e}")))?;
        let mut chains = Vec::new();
        let mut auth_banks: Vec<HashAlg> = banks.to_vec();
        if want_sha256 && !auth_banks.contains(&HashAlg::SHA256) {
            auth_banks.push(HashAlg::SHA256);
        }
        for b in &auth_banks {
            authenticode_alg(*b)?;
            chains.push(Chain {
                alg: *b,
                ranges: auth.clone(),
                zeros: 0,
                prefix: Vec::new(),
            });
        }
        for s in &boot.sections {
            let (from, to) = s.stored();
            for b in banks {
                chains.push(Chain {
                    alg: *b,
                    ranges: vec![(from, to)],
                    zeros: s.virtual_size - (to - from),
                    prefix: Vec::new(),
                });
            }
        }
        let mut wants: Vec<(u64, u64)> = boot
            .sections
            .iter()
            .filter(|s| KEPT.contains(&s.name.as_str()))
            .map(SectionHeader::stored)
            .collect();
        let (cert_at, cert_len) = boot.layout.cert_table;
        wants.push((cert_at, cert_at.saturating_add(cert_len).min(boot.size)));
        Ok(Self {
            chains,
            wants,
            auth_banks,
            banks: banks.to_vec(),
        })
    }

    /// The [`BootDigests`] from the digests of [`PeChains::chains`] (in order) and the bytes
    /// of [`PeChains::wants`] (in order).
    pub fn assemble(
        &self,
        boot: &BootFile,
        digests: Vec<Vec<u8>>,
        wants: Vec<Vec<u8>>,
    ) -> Result<BootDigests, PredictError> {
        let missing = || PredictError::Compute("a digest is missing".into());
        let mut digests = digests.into_iter();
        let mut next = |b: HashAlg| digests.next().map(|d| (b, d));
        let mut authenticode = Vec::new();
        let mut sha256_authenticode = None;
        for b in &self.auth_banks {
            let d = next(*b).ok_or_else(missing)?;
            if *b == HashAlg::SHA256 {
                sha256_authenticode = Some(d.1.clone());
            }
            if self.banks.contains(b) {
                authenticode.push(d);
            }
        }
        let mut contents = Vec::new();
        for _ in &boot.sections {
            contents.push(
                self.banks
                    .iter()
                    .map(|b| next(*b))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(missing)?,
            );
        }
        let mut wants = wants.into_iter();
        let cert_table = wants.next_back().unwrap_or_default();
        let kept = boot
            .sections
            .iter()
            .filter(|s| KEPT.contains(&s.name.as_str()))
            .zip(wants)
            .map(|(s, mut bytes)| {
                bytes.resize(s.virtual_size as usize, 0);
                (s.name.clone(), bytes)
            })
            .collect();
        Ok(BootDigests {
            authenticode,
            sha256_authenticode,
            contents,
            kept,
            cert_table,
        })
    }
}

impl BootDigests {
    /// These digests for `banks` only (a subset of the banks they were computed for, in
    /// any order), with the SHA-256 Authenticode digest when `want_sha256`; `None` when a
    /// bank or that digest was not computed.
    pub fn select(&self, banks: &[HashAlg], want_sha256: bool) -> Option<Self> {
        let pick = |have: &[(HashAlg, Vec<u8>)]| -> Option<Vec<(HashAlg, Vec<u8>)>> {
            banks
                .iter()
                .map(|b| have.iter().find(|(a, _)| a == b).cloned())
                .collect()
        };
        let sha256_authenticode = if want_sha256 {
            Some(self.sha256_authenticode.clone()?)
        } else {
            None
        };
        Some(Self {
            authenticode: pick(&self.authenticode)?,
            sha256_authenticode,
            contents: self
                .contents
                .iter()
                .map(|c| pick(c))
                .collect::<Option<_>>()?,
            kept: self.kept.clone(),
            cert_table: self.cert_table.clone(),
        })
    }
}

/// Hash the PE `boot` describes for `banks` (Authenticode, every section's contents, and the
/// SHA-256 Authenticode digest when `want_sha256`), reading it once, front to back, with
/// [`hashstream`]; a PE whose Authenticode ranges are not in file order (gaps between
/// sections) is read whole and hashed chain by chain. `file` names it in errors.
pub fn digest_pe(
    boot: &BootFile,
    banks: &[HashAlg],
    want_sha256: bool,
    file: &str,
    open: &mut OpenPe<'_>,
) -> Result<BootDigests, PredictError> {
    let plan = PeChains::new(boot, banks, want_sha256, file)?;
    let chains = &plan.chains;
    let wants: Vec<((u64, u64), Vec<u8>)> = plan.wants.iter().map(|&r| (r, Vec::new())).collect();

    let unsupported =
        |e: policies::digest::UnsupportedAlgorithm| PredictError::Compute(e.to_string());
    let mut streamed = None;
    let mut whole = Vec::new();
    if chains.iter().all(|c| c.is_sequential(boot.size)) {
        let mut once = Some(wants.clone());
        open(&mut |f| {
            let mut r = Capture {
                inner: f,
                at: 0,
                wants: once.take().unwrap_or_default(),
            };
            let d = hashstream::hash_chains(&mut r, boot.size, chains, |_| ());
            streamed = Some((d, r.wants));
            Ok(())
        })?;
    } else {
        open(&mut |f| f.read_to_end(&mut whole).map(drop))?;
    }
    let (digests, wants) = match streamed {
        Some(s) => s,
        None => {
            // A PE with gaps between its sections (EDK2's trailing-data range then goes
            // back into them): hash each chain on its own over the whole file.
            let bytes = &whole;
            let d = chains
                .iter()
                .map(|c| {
                    let mut h = policies::digest::Hasher::new(c.alg)?;
                    for &(s, e) in &c.ranges {
                        h.update(bytes.get(s as usize..e as usize).unwrap_or_default());
                    }
                    h.update(&vec![0; c.zeros as usize]);
                    Ok(h.finalize())
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(hashstream::StreamError::Unsupported);
            let wants = wants
                .into_iter()
                .map(|((s, e), _)| {
                    let b = bytes.get(s as usize..e as usize).unwrap_or_default();
                    ((s, e), b.to_vec())
                })
                .collect();
            (d, wants)
        }
    };
    let digests = digests.map_err(|e| match e {
        hashstream::StreamError::Io(source) => io_error(file)(source),
        hashstream::StreamError::Unsupported(u) => unsupported(u),
        other => PredictError::Compute(other.to_string()),
    })?;
    plan.assemble(boot, digests, wants.into_iter().map(|w| w.1).collect())
}

/// How a prediction gets the digests of BOOTX64.EFI: [`digest_boot`] reads it from the image;
/// `vmseal build` hands over the digests it took while writing it.
pub type DigestBoot<'a> =
    dyn FnMut(&ImageFacts, &[HashAlg], bool) -> Result<BootDigests, PredictError> + 'a;

/// Predict.
pub fn predict(opts: &PredictOptions) -> Result<Prediction, PredictError> {
    predict_with(opts, &mut digest_boot)
}

/// [`predict`], with the digests of BOOTX64.EFI from `digest` (called with the facts read
/// from the image, the banks and whether the SHA-256 Authenticode digest is needed).
pub fn predict_with(
    opts: &PredictOptions,
    digest: &mut DigestBoot<'_>,
) -> Result<Prediction, PredictError> {
    let t0 = std::time::Instant::now();
    let facts = read_image(&opts.image)?;
    if std::env::var_os("VMSEAL_TIMINGS").is_some() {
        eprintln!(
            "vmseal: {:7.3}s read the GPT and the PE headers",
            t0.elapsed().as_secs_f64()
        );
    }
    // The SEV-SNP launch digest first: a firmware that cannot give it fails before the
    // payload is hashed for the PCRs.
    let snp = match &opts.snp {
        None => None,
        Some(o) => {
            let kernel = if o.payload {
                Some((crate::disk::BOOT_PATH, boot_file_sha256(&facts)?))
            } else {
                None
            };
            Some(crate::confidential::measure(o, kernel)?)
        }
    };
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
    let located = crate::measure::ovmf::locate(secure_boot, &opts.firmware);
    let code = located.code.as_path();
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
    // Read BOOTX64.EFI once, hashing it in every bank on the way (all cores; the payload is
    // hashed per bank twice: Authenticode for PCR 4, section contents for PCR 11).
    let t1 = std::time::Instant::now();
    let boot = digest(&facts, banks, sb_value == 1)?;
    if std::env::var_os("VMSEAL_TIMINGS").is_some() {
        eprintln!(
            "vmseal: {:7.3}s hash BOOTX64.EFI",
            t1.elapsed().as_secs_f64()
        );
    }
    let ev = expected_events(
        &facts,
        &boot,
        &store,
        sb_value,
        &selected.profile,
        banks,
        &file,
    )?;

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
    sources.insert("boot_file".into(), crate::disk::BOOT_PATH.into());
    sources.insert("vmseal".into(), env!("CARGO_PKG_VERSION").into());
    Ok(Prediction {
        banks: banks.clone(),
        events: ev,
        pcrs,
        sources,
        snp,
    })
}

/// SHA-256 of the whole `\EFI\BOOT\BOOTX64.EFI` of `facts` (what QEMU hashes into the SEV
/// hash table when it is the `-kernel`).
pub fn boot_file_sha256(facts: &ImageFacts) -> Result<[u8; 32], PredictError> {
    with_boot_file(&facts.image, facts.esp, |boot| {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = boot.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(buf.get(..n).unwrap_or_default());
        }
        Ok(h.finalize().into())
    })
}

/// The expected events for `banks`, in firmware order (see [`predict`]).
fn expected_events(
    facts: &ImageFacts,
    boot: &BootDigests,
    store: &[Variable],
    sb_value: u8,
    profile: &firmware::Profile,
    banks: &[HashAlg],
    file: &str,
) -> Result<Vec<LoggedEvent>, PredictError> {
    let steps = profile.steps(banks)?;

    let sizes: Vec<(&str, u64)> = facts
        .boot
        .sections
        .iter()
        .map(|s| (s.name.as_str(), s.virtual_size))
        .collect();
    let contents = |name: &str| {
        facts
            .boot
            .sections
            .iter()
            .position(|s| s.name == name)
            .and_then(|i| boot.contents.get(i))
    };
    let stub = policies::predict::stub_events_from(&sizes, banks, &mut |name| {
        Ok(contents(name).cloned().unwrap_or_default())
    })
    .map_err(|e| PredictError::Compute(format!("{file}: BOOTX64.EFI: {e}")))?;
    let kept = |name: &str| {
        boot.kept
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.as_slice())
            .filter(|c| !c.is_empty())
    };
    let kernel = kept(sections::LINUX);

    let mut authorities: Vec<Vec<u8>> = Vec::new();
    let mut authority = |certs: &[u8],
                         sha256: Option<&[u8]>,
                         ev: &mut Vec<LoggedEvent>|
     -> Result<(), PredictError> {
        if sb_value != 1 {
            return Ok(());
        }
        let db = vars::get(store, &IMAGE_SECURITY_DATABASE, "db")
            .map(|v| v.data.as_slice())
            .unwrap_or(&[]);
        if let Some(entry) = verifying_db_entry_with(db, certs, sha256)
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
    let stub = &stub;
    template::fill(&steps, |slot| match slot {
        Step::SecureBootPolicy(names) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            secure_boot_policy_of(banks, store, &names)
        }
        Step::Appliance { gpt } => {
            let gpt = *gpt;
            let mut ev: Vec<LoggedEvent> = Vec::new();
            authority(
                &boot.cert_table,
                boot.sha256_authenticode.as_deref(),
                &mut ev,
            )?;
            if gpt {
                ev.push(event(
                    banks,
                    pcr::BOOT_LOADER_CONFIG,
                    EventType::EFI_GPT_EVENT,
                    facts.gpt_event.clone(),
                    &facts.gpt_event,
                )?);
            }
            ev.push(image_event_with(
                boot.authenticode.clone(),
                crate::disk::BOOT_PATH,
            ));
            ev.extend(stub.iter().cloned().map(LoggedEvent::new));
            if let Some(k) = kernel {
                let kernel_event =
                    image_event(banks, k, "the .linux kernel the stub passes to LoadImage")?;
                // The SHA-256 Authenticode digest for a db hash entry: the bank's, when it has one.
                let sha256 = match kernel_event.event.digest(HashAlg::SHA256) {
                    Some(d) => Some(d.to_vec()),
                    None if sb_value == 1 => authenticode::digest(k, DigestAlgorithm::Sha256).ok(),
                    None => None,
                };
                authority(
                    cert_table(k).unwrap_or_default(),
                    sha256.as_deref(),
                    &mut ev,
                )?;
                ev.push(kernel_event);
                // The kernel EFI stub's order: LoadOptions, then the initrd (the UKI fixture's log).
                if let Some(c) = kept(sections::CMDLINE) {
                    ev.push(load_options_event(banks, c)?);
                }
                let initrd = facts
                    .boot
                    .sections
                    .iter()
                    .any(|s| s.name == sections::INITRD && s.virtual_size > 0);
                if let (true, Some(d)) = (initrd, contents(sections::INITRD)) {
                    ev.push(tagged_with(TAG_LINUX_INITRD, INITRD_TAG_TEXT, d.clone()));
                }
            }
            Ok(ev)
        }
        Step::Event(e) => Ok(vec![e.clone()]),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Stream `pe` through [`digest_pe`] and compare every digest with the in-memory
    /// computation (Authenticode over the slice, each section's `VirtualSize` bytes).
    fn check(pe: &[u8]) {
        let head = &pe[..pe.len().min(HEADER_PREFIX as usize)];
        let boot = BootFile::parse(head, pe.len() as u64).unwrap();
        let banks = HashAlg::COMPUTED;
        let d = digest_pe(&boot, &banks, true, "test.efi", &mut |f| {
            f(&mut &pe[..]).map_err(|source| PredictError::Io {
                file: "test.efi".into(),
                source,
            })
        })
        .unwrap();
        assert_eq!(d.authenticode.len(), banks.len());
        for (b, got) in &d.authenticode {
            let want = authenticode::digest(pe, authenticode_alg(*b).unwrap()).unwrap();
            assert_eq!(*got, want, "Authenticode {b:?}");
        }
        assert_eq!(
            d.sha256_authenticode,
            authenticode::digest(pe, DigestAlgorithm::Sha256).ok()
        );
        assert_eq!(d.contents.len(), boot.sections.len());
        for (s, digests) in boot.sections.iter().zip(&d.contents) {
            let (from, to) = s.stored();
            let mut c = pe[from as usize..to as usize].to_vec();
            c.resize(s.virtual_size as usize, 0);
            for (b, got) in digests {
                assert_eq!(
                    *got,
                    policies::digest::hash(*b, &c).unwrap(),
                    "{} {b:?}",
                    s.name
                );
            }
        }
        assert_eq!(d.cert_table, cert_table(pe).unwrap_or_default());
    }

    #[test]
    fn streamed_digests_equal_in_memory_ones() {
        let stub = crate::compose::stub::load(None).unwrap();
        // `.data` has VirtualSize > SizeOfRawData (a zero tail).
        check(&stub);
        // A gap after the first section: EDK2's trailing-data range then goes back into the
        // sections, so the whole-file path is taken; it must give the same digests.
        let mut gap = stub.to_vec();
        let pe = u32::from_le_bytes(gap[0x3c..0x40].try_into().unwrap()) as usize;
        let opt_size = u16::from_le_bytes(gap[pe + 20..pe + 22].try_into().unwrap()) as usize;
        let raw = pe + 24 + opt_size + 16;
        let size = u32::from_le_bytes(gap[raw..raw + 4].try_into().unwrap());
        gap[raw..raw + 4].copy_from_slice(&(size - 0x200).to_le_bytes());
        let boot = BootFile::parse(&gap, gap.len() as u64).unwrap();
        let ranges = authenticode::hashed_ranges(&boot.layout).unwrap();
        let seq = Chain {
            alg: HashAlg::SHA256,
            ranges,
            zeros: 0,
            prefix: Vec::new(),
        };
        assert!(
            !seq.is_sequential(gap.len() as u64),
            "the gap must force the fallback"
        );
        check(&gap);
    }

    /// Corrupted headers (deterministic byte changes over the headers and section table, and
    /// truncations): parsing and streaming never panic, and whenever both succeed the streamed
    /// Authenticode digest is the in-memory one.
    #[test]
    fn corrupt_headers_never_panic() {
        let stub = crate::compose::stub::load(None).unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..120 {
            let mut pe = stub.to_vec();
            for _ in 0..1 + round % 4 {
                let at = (rand() % 0x400) as usize;
                pe[at] = rand() as u8;
            }
            if round % 7 == 0 {
                pe.truncate((rand() % pe.len() as u64) as usize);
            }
            let head = &pe[..pe.len().min(HEADER_PREFIX as usize)];
            let Ok(boot) = BootFile::parse(head, pe.len() as u64) else {
                continue;
            };
            let streamed = digest_pe(&boot, &[HashAlg::SHA256], false, "fuzz.efi", &mut |f| {
                f(&mut &pe[..]).map_err(|source| PredictError::Io {
                    file: "fuzz.efi".into(),
                    source,
                })
            });
            if let (Ok(d), Ok(want)) = (
                streamed,
                authenticode::digest(&pe[..], DigestAlgorithm::Sha256),
            ) {
                assert_eq!(d.authenticode[0].1, want, "round {round}");
            }
        }
    }

    #[test]
    fn truncated_headers_are_an_error() {
        let stub = crate::compose::stub::load(None).unwrap();
        assert!(BootFile::parse(&stub[..0x100], stub.len() as u64).is_err());
        assert!(
            BootFile::parse(&stub, 0x400).is_err(),
            "sections past the end"
        );
    }
}
