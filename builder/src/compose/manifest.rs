//! The manifest (`vmseal.toml`, schema in `docs/manifest.md`): parsing, validation and the
//! canonical form recorded in the lock file.
//!
//! Parsing is two steps: serde + `toml` into raw structs that mirror the file
//! (`deny_unknown_fields` everywhere), then [`Manifest::from_raw`] checks every value and
//! turns it into typed fields. Every problem is a [`ManifestError`] that names the file, the
//! field and the fix, on one line. Checks that need the input files (existence, magic, size
//! against the image) are in [`crate::compose::inputs`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The smallest guest or service memory size accepted.
pub const MIN_MEMORY: u64 = 4 << 20;
/// The largest guest memory size accepted.
pub const MAX_MEMORY: u64 = 64 << 30;
/// The largest image size accepted (a raw disk image larger than this is surely a typo).
pub const MAX_IMAGE_SIZE: u64 = 1 << 40;

/// What kind of problem a [`ManifestError`] reports (for tests and scripts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file is not valid TOML.
    Syntax,
    /// A key that the schema does not have.
    UnknownKey,
    /// A required key is missing, or a key has the wrong type.
    Invalid,
    /// A referenced file does not exist or cannot be read.
    NotFound,
    /// A referenced file is empty.
    Empty,
    /// A referenced file is not the kind of executable the field needs.
    WrongFormat,
    /// The inputs do not fit in the image.
    TooBig,
    /// The image is too small to hold a GPT and an EFI System Partition.
    TooSmall,
    /// A size is negative or outside the accepted range.
    OutOfRange,
    /// A PE section name collides with one vmseal or the stub uses.
    Collision,
    /// Two services have the same name.
    Duplicate,
}

/// A manifest problem: `FILE:LINE: FIELD: PROBLEM — FIX`, then every further problem found in
/// the same pass ([`ManifestError::more`]), one per line, in the order of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// What kind of problem.
    pub kind: ErrorKind,
    /// The manifest file, as given on the command line.
    pub file: String,
    /// The field (`guest.elf`, `service[1].name`, `line 3` for syntax errors).
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
    /// The line of the field in the manifest (1-based), where the manifest was read from text
    /// and the field (or its table) is in it.
    pub line: Option<std::num::NonZeroU32>,
    /// The other problems of the same manifest, found in the same pass (as a compiler reports
    /// every error of a file): each prints on a line of its own.
    pub more: Box<[ManifestError]>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}: {} — {}", self.field, self.problem, self.fix)?;
        for m in &self.more {
            write!(f, "\n{m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestError {}

impl ManifestError {
    /// This problem and the further ones, each alone (without `more`).
    pub fn all(&self) -> Vec<ManifestError> {
        let mut first = self.clone();
        let more = std::mem::take(&mut first.more);
        std::iter::once(first).chain(more.into_vec()).collect()
    }

    /// The first of `problems`, carrying the rest; `None` when there are none.
    pub fn collect(mut problems: Vec<ManifestError>) -> Option<ManifestError> {
        if problems.is_empty() {
            return None;
        }
        let mut first = problems.remove(0);
        first.more = problems.into_boxed_slice();
        Some(first)
    }
}

/// A size: an integer number of bytes or a string with a binary suffix (`"64MiB"`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    /// Bytes.
    Int(i64),
    /// `"64MiB"`, `"1GiB"`, `"512KiB"`, `"4096"`.
    Str(String),
}

/// The largest `cpu-budget-ms`: a day of processor time.
pub const MAX_CPU_BUDGET_MS: i64 = 24 * 60 * 60 * 1000;

/// `[image]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    name: String,
    version: String,
    #[serde(default)]
    size: Option<RawSize>,
}

/// `[guest]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuest {
    elf: Option<String>,
    kernel: Option<String>,
    initrd: Option<String>,
    #[serde(rename = "os-release")]
    os_release: Option<String>,
    cmdline: Option<String>,
    memory: RawSize,
    console: Console,
    #[serde(rename = "cpu-budget-ms")]
    cpu_budget_ms: Option<i64>,
}

/// `[[service]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    name: String,
    elf: String,
    memory: RawSize,
    #[serde(default)]
    devices: Vec<Device>,
    #[serde(rename = "cpu-budget-ms")]
    cpu_budget_ms: Option<i64>,
}

/// `[[channel]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    name: String,
    client: String,
    server: String,
}

/// `[signing]` as written (docs/manifest.md). Every path is optional on its own; `keys` names
/// the directory `vmseal keys new` wrote, and `key`/`cert`/`pk`/`kek`/`owner` override the
/// files in it. Without `keys`, `key` + `cert` are required.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    /// The keys directory (`PK.crt`, `KEK.crt`, `db.crt`, `db.key`, `owner.guid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<String>,
    /// The db private key (PEM); default `KEYS/db.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The db certificate (PEM or DER); default `KEYS/db.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The KEK certificate enrolled in NAME.vars.fd; default `KEYS/KEK.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek: Option<String>,
    /// The PK certificate enrolled in NAME.vars.fd; default `KEYS/PK.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pk: Option<String>,
    /// SignatureOwner GUID of the enrolled entries; default the contents of `KEYS/owner.guid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// OVMF variable-store template; default `/usr/share/OVMF/OVMF_VARS_4M.fd`
    /// (`/usr/share/OVMF/OVMF_VARS.fd` for the 2 MiB layout).
    #[serde(
        default,
        rename = "vars-template",
        skip_serializing_if = "Option::is_none"
    )]
    pub vars_template: Option<String>,
    /// Secure Boot template: `org-only` (default), `org+microsoft-uefi-ca`,
    /// `org+microsoft-windows` (`signing::varstore::Template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The store Microsoft's certificates and dbx come from; default
    /// `/usr/share/OVMF/OVMF_VARS_4M.ms.fd`.
    #[serde(
        default,
        rename = "microsoft-vars",
        skip_serializing_if = "Option::is_none"
    )]
    pub microsoft_vars: Option<String>,
    /// The key that signs PCR 11 policies (`.pcrsig`, with its public key as `.pcrpkey`): an
    /// RSA private key file, or a `pkcs11:` URI. Without it the appliance carries neither.
    #[serde(default, rename = "pcr-key", skip_serializing_if = "Option::is_none")]
    pub pcr_key: Option<String>,
    /// Banks to sign PCR 11 policies for; default `["sha256"]` (as systemd-measure).
    #[serde(default, rename = "pcr-banks", skip_serializing_if = "Option::is_none")]
    pub pcr_banks: Option<Vec<String>>,
}

/// A number: an integer or a string in decimal or `0x` hex.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawNumber {
    /// As an integer.
    Int(i64),
    /// `"0x30000"`, `"196608"`.
    Str(String),
}

impl RawNumber {
    fn value(&self) -> Result<u64, String> {
        match self {
            Self::Int(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative")),
            Self::Str(s) => {
                let t = s.trim();
                match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => t.parse(),
                }
                .map_err(|_| format!("\"{s}\" is not a number"))
            }
        }
    }
}

/// `[snp]` as written (docs/manifest.md, docs/confidential.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSnp {
    firmware: String,
    vcpus: Option<i64>,
    #[serde(rename = "vcpu-type")]
    vcpu_type: Option<String>,
    #[serde(rename = "vcpu-sig")]
    vcpu_sig: Option<RawNumber>,
    #[serde(rename = "guest-features")]
    guest_features: Option<RawNumber>,
    policy: Option<RawNumber>,
    vmm: Option<String>,
    payload: Option<SnpPayload>,
}

/// What an SEV-SNP launch digest covers besides the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnpPayload {
    /// The appliance PE is the direct-boot kernel (its hash is in the digest).
    Appliance,
    /// The firmware alone.
    None,
}

/// `[snp]`, validated: the SEV-SNP launch digest `vmseal build` adds to `NAME.pcrs.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Snp {
    /// The SEV OVMF image, path as written.
    pub firmware: String,
    /// vCPUs (1..=512).
    pub vcpus: u32,
    /// QEMU CPU model, when the signature comes from one.
    #[serde(rename = "vcpu-type", skip_serializing_if = "Option::is_none")]
    pub vcpu_type: Option<String>,
    /// CPUID Fn0000_0001_EAX of the vCPUs.
    #[serde(rename = "vcpu-sig")]
    pub vcpu_sig: u32,
    /// `SEV_FEATURES` of the VMSAs.
    #[serde(rename = "guest-features")]
    pub guest_features: u64,
    /// The guest policy.
    pub policy: u64,
    /// `qemu`, `ec2` or `gce`.
    pub vmm: String,
    /// What the digest covers besides the firmware.
    pub payload: SnpPayload,
}

impl Snp {
    /// The launch configuration.
    pub fn config(&self) -> crate::confidential::snp::SnpConfig {
        use crate::confidential::snp::{SnpConfig, Vmm};
        SnpConfig {
            vcpus: self.vcpus,
            vcpu_type: self.vcpu_type.clone(),
            vcpu_signature: self.vcpu_sig,
            guest_features: self.guest_features,
            policy: self.policy,
            vmm: Vmm::from_name(&self.vmm).unwrap_or(Vmm::Qemu),
        }
    }
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    image: RawImage,
    guest: RawGuest,
    #[serde(default)]
    service: Vec<RawService>,
    #[serde(default)]
    channel: Vec<RawChannel>,
    #[serde(default)]
    sections: BTreeMap<String, String>,
    signing: Option<Signing>,
    snp: Option<RawSnp>,
}

/// Whether the guest's console reaches the serial port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Console {
    /// The guest writes to COM1.
    On,
    /// The guest has no console.
    Off,
}

/// A device capability a service may be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The TPM (TIS MMIO).
    Tpm,
    /// The serial port.
    Serial,
}

/// The guest payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// An ELF64 x86_64 unikernel → `.guest`.
    Elf(String),
    /// An EFI-stub Linux kernel → `.linux`.
    Kernel(String),
}

/// `[image]`, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Stem of every output file.
    pub name: String,
    /// Free text without whitespace.
    pub version: String,
    /// Total raw disk size in bytes. With `size_auto`, 0 until the build knows the
    /// appliance PE's size, then the smallest whole-MiB image whose ESP holds it.
    pub size: u64,
    /// `image.size` was not given: the build chooses it (recorded in the lock file).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub size_auto: bool,
}

/// `[guest]`, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Guest {
    /// The payload and its path as written.
    pub payload: Payload,
    /// Linux initrd path as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// os-release path as written.
    #[serde(rename = "os-release", skip_serializing_if = "Option::is_none")]
    pub os_release: Option<String>,
    /// The command line, exact bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Guest memory in bytes.
    pub memory: u64,
    /// Console policy.
    pub console: Console,
    /// Milliseconds of processor time the hypervisor lets the guest use (ELF guests only).
    #[serde(rename = "cpu-budget-ms", skip_serializing_if = "Option::is_none")]
    pub cpu_budget_ms: Option<u64>,
}

/// One `[[service]]`, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Unique name.
    pub name: String,
    /// ELF path as written.
    pub elf: String,
    /// Memory in bytes.
    pub memory: u64,
    /// Device capabilities, sorted, without duplicates.
    pub devices: Vec<Device>,
    /// Milliseconds of processor time the hypervisor lets the service use.
    #[serde(rename = "cpu-budget-ms", skip_serializing_if = "Option::is_none")]
    pub cpu_budget_ms: Option<u64>,
}

/// One `[[channel]]`, validated: a hypercall channel (`policies::hypercall`) between two
/// partitions, named by partition name (the guest is `[image].name`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Channel {
    /// Unique name the partitions look it up by.
    pub name: String,
    /// The partition that sends requests (the guest or a service).
    pub client: String,
    /// The service that answers.
    pub server: String,
}

/// A validated manifest. Serializing it gives the canonical form (sizes in bytes, sorted
/// devices and sections, paths as written).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// Schema version (always 1).
    pub schema: u32,
    /// `[image]`.
    pub image: Image,
    /// `[guest]`.
    pub guest: Guest,
    /// `[[service]]`, in file order (`.svc0`, `.svc1`, …).
    pub service: Vec<Service>,
    /// `[[channel]]`, in file order (the channel id is the index).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channel: Vec<Channel>,
    /// Extra sections: name → path as written.
    pub sections: BTreeMap<String, String>,
    /// `[signing]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
    /// `[snp]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snp: Option<Snp>,
    /// The manifest's directory (paths are relative to it). Not part of the canonical form.
    #[serde(skip)]
    pub dir: PathBuf,
    /// The manifest path as given. Not part of the canonical form.
    #[serde(skip)]
    pub file: String,
    /// The line of every field path of the text (`guest.elf`, `service[1].name`), for errors
    /// found after parsing. Not part of the canonical form.
    #[serde(skip)]
    pub lines: BTreeMap<String, u32>,
}

/// Parse a size value: bytes, or a string `N`, `NKiB`, `NMiB`, `NGiB`, `NTiB`.
pub fn parse_size(v: &RawSize) -> Result<u64, String> {
    match v {
        RawSize::Int(n) if *n < 0 => Err(format!("{n} is negative")),
        RawSize::Int(n) => Ok(n.unsigned_abs()),
        RawSize::Str(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (digits, suffix) = t.split_at(split);
            if t.starts_with('-') {
                return Err(format!("\"{s}\" is negative"));
            }
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("\"{s}\" is not a size"))?;
            let shift = match suffix.trim() {
                "" | "B" => 0,
                "KiB" => 10,
                "MiB" => 20,
                "GiB" => 30,
                "TiB" => 40,
                other => return Err(format!("unknown suffix \"{other}\" in \"{s}\"")),
            };
            n.checked_mul(1 << shift)
                .ok_or_else(|| format!("\"{s}\" is too large"))
        }
    }
}

/// Format bytes for a human (`64MiB`, `1536KiB`, `123B`).
pub fn human_size(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

fn line_of(src: &str, offset: usize) -> u32 {
    let n = src.get(..offset).map_or(1, |s| s.matches('\n').count() + 1);
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The dotted table name in effect at `offset` (`guest`, `service[1]`), for errors about keys.
fn table_at(src: &str, offset: usize) -> String {
    let before = src.get(..offset).unwrap_or("");
    let mut table = String::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in before.lines() {
        let l = line.trim();
        if let Some(inner) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = inner.trim().to_string();
            let c = counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{c}]");
            *c += 1;
        } else if let Some(inner) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = inner.trim().to_string();
        }
    }
    table
}

/// Most problems reported at once (the rest would scroll the first ones away).
pub const MAX_PROBLEMS: usize = 32;

/// Stands in for "no problem" where one was just reported (never reached: `collect` of a
/// non-empty list is `Some`).
fn unreachable_err(file: &str) -> ManifestError {
    ManifestError {
        kind: ErrorKind::Invalid,
        file: file.to_string(),
        field: "(manifest)".into(),
        problem: "invalid".into(),
        fix: "see docs/manifest.md".into(),
        line: None,
        more: Box::default(),
    }
}

/// A key as it appears in a field path: bare, or quoted when it is not a bare TOML key
/// (`sections.".sbat"`, `""`).
fn path_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !bare {
        format!("\"{k}\"")
    } else {
        k.to_string()
    }
}

/// The line of every key, table and array-of-tables element of `table`, by field path
/// (`image`, `guest.elf`, `service[1]`, `service[1].name`).
fn field_lines(
    text: &str,
    prefix: &str,
    table: &toml::de::DeTable<'_>,
    out: &mut BTreeMap<String, u32>,
) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            path_key(k.get_ref())
        } else {
            format!("{prefix}.{}", path_key(k.get_ref()))
        };
        out.insert(path.clone(), line_of(text, k.span().start));
        match v.get_ref() {
            toml::de::DeValue::Table(t) => field_lines(text, &path, t, out),
            toml::de::DeValue::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    if let toml::de::DeValue::Table(t) = e.get_ref() {
                        let p = format!("{path}[{i}]");
                        out.insert(p.clone(), line_of(text, e.span().start));
                        field_lines(text, &p, t, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The line of `field`, else of the nearest enclosing table that has one (a missing key is
/// reported at its table).
fn line_of_field(lines: &BTreeMap<String, u32>, field: &str) -> Option<std::num::NonZeroU32> {
    let mut f = field;
    loop {
        if let Some(l) = lines.get(f) {
            return std::num::NonZeroU32::new(*l);
        }
        let cut = f.rfind(['.', '['])?;
        f = f.get(..cut)?;
    }
}

/// Remove the innermost key whose key or value holds byte `at`; whether there was one.
fn remove_key_at(table: &mut toml::de::DeTable<'_>, at: usize) -> bool {
    for (_, v) in table.iter_mut() {
        let inner = match v.get_mut() {
            toml::de::DeValue::Table(t) => remove_key_at(t, at),
            toml::de::DeValue::Array(a) => a.iter_mut().any(|e| match e.get_mut() {
                toml::de::DeValue::Table(t) => remove_key_at(t, at),
                _ => false,
            }),
            _ => false,
        };
        if inner {
            return true;
        }
    }
    let hit = table
        .iter()
        .find(|(k, v)| k.span().contains(&at) || v.span().contains(&at))
        .map(|(k, _)| k.clone());
    hit.is_some_and(|k| table.remove(&k).is_some())
}

impl Manifest {
    /// Read and validate `path` (file access is limited to reading the manifest itself).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            kind: ErrorKind::NotFound,
            file: file.clone(),
            field: "(file)".into(),
            problem: format!("cannot read the manifest: {e}"),
            fix: "check the path (`vmseal init DIR` writes a starter manifest)".into(),
            line: None,
            more: Box::default(),
        })?;
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        Self::parse(&text, &file, dir)
    }

    /// Parse and validate manifest text. Every syntax error, every unknown key and every bad
    /// value is reported at once ([`ManifestError::more`]), each with its line; a key of the
    /// wrong type or a missing required key stops the schema step (what follows would only
    /// repeat it).
    pub fn parse(text: &str, file: &str, dir: PathBuf) -> Result<Self, ManifestError> {
        let err = |kind, field: String, problem: String, fix: &str, line: u32| ManifestError {
            kind,
            file: file.to_string(),
            field,
            problem,
            fix: fix.to_string(),
            line: std::num::NonZeroU32::new(line),
            more: Box::default(),
        };
        // Step 1: syntax only, so that syntax errors are told apart from schema errors.
        let (mut doc, syntax) = toml::de::DeTable::parse_recoverable(text);
        let syntax: Vec<ManifestError> = syntax
            .iter()
            .map(|e| {
                let line = e.span().map_or(1, |s| line_of(text, s.start));
                err(
                    ErrorKind::Syntax,
                    "syntax".into(),
                    e.message().trim().replace('\n', " "),
                    "fix the TOML syntax (see docs/manifest.md)",
                    line,
                )
            })
            .collect();
        if let Some(first) = ManifestError::collect(syntax) {
            return Err(first);
        }
        let mut lines = BTreeMap::new();
        field_lines(text, "", doc.get_ref(), &mut lines);
        // Step 2: the schema. An unknown key is reported, taken out, and the rest read again.
        let mut problems = Vec::new();
        let raw = loop {
            let de = toml::de::Deserializer::from(doc.clone());
            let e = match RawManifest::deserialize(de) {
                Ok(raw) => break Some(raw),
                Err(e) => e,
            };
            let msg = e.message().trim().replace('\n', " ");
            let at = e.span().map_or(0, |s| s.start);
            let table = table_at(text, at);
            if let Some(rest) = msg.strip_prefix("unknown field `") {
                let key = path_key(rest.split('`').next().unwrap_or("?"));
                let expected = rest.split_once(", expected ").map_or("", |x| x.1);
                let field = if table.is_empty() {
                    key.to_string()
                } else {
                    format!("{table}.{key}")
                };
                problems.push(err(
                    ErrorKind::UnknownKey,
                    field,
                    "unknown key".into(),
                    &format!("remove it or correct the spelling (allowed here: {expected})"),
                    line_of(text, at),
                ));
                if remove_key_at(doc.get_mut(), at) && problems.len() < MAX_PROBLEMS {
                    continue;
                }
                break None;
            }
            // A missing key: named under the table whose header is at the span (which the
            // text before the span does not reach).
            if let Some(rest) = msg.strip_prefix("missing field `") {
                let key = rest.split('`').next().unwrap_or("?");
                let eol = text
                    .get(at..)
                    .and_then(|t| t.find('\n'))
                    .map_or(text.len(), |n| at + n);
                let table = table_at(text, eol);
                let (field, fix) = if table.is_empty() {
                    (
                        key.to_string(),
                        format!("add an [{key}] table (see docs/manifest.md)"),
                    )
                } else {
                    (
                        format!("{table}.{key}"),
                        format!("add `{key} = …` to [{table}] (see docs/manifest.md)"),
                    )
                };
                problems.push(err(
                    ErrorKind::Invalid,
                    field,
                    "missing".into(),
                    &fix,
                    line_of(text, at),
                ));
                break None;
            }
            let msg = if msg.contains("untagged enum RawSize") {
                "not a size".to_string()
            } else {
                msg
            };
            // Name the key on the offending line when there is one.
            let key = text
                .get(..at)
                .and_then(|b| b.rsplit('\n').next())
                .and_then(|l| l.split('=').next())
                .map(|k| k.trim().trim_matches('"').to_string())
                .filter(|k| !k.is_empty() && !k.starts_with('['));
            let field = match (table.is_empty(), key) {
                (_, Some(k)) if !table.is_empty() => format!("{table}.{k}"),
                (_, Some(k)) => k,
                (false, None) => table,
                (true, None) => format!("line {}", line_of(text, at)),
            };
            let fix = if msg == "not a size" {
                "write bytes as an integer or a string with a suffix, e.g. \"64MiB\""
            } else {
                "see docs/manifest.md for the schema"
            };
            problems.push(err(ErrorKind::Invalid, field, msg, fix, line_of(text, at)));
            break None;
        };
        let Some(raw) = raw else {
            problems.sort_by_key(|p| p.line.map_or(u32::MAX, std::num::NonZeroU32::get));
            return Err(ManifestError::collect(problems).unwrap_or_else(|| unreachable_err(file)));
        };
        // Step 3: the values, with the unknown keys already reported.
        let checked = Self::from_raw(raw, file, dir);
        if let Err(e) = &checked {
            for mut p in e.all() {
                p.line = line_of_field(&lines, &p.field);
                problems.push(p);
            }
        }
        // In the order of the file; problems without a line (none in practice) last.
        problems.sort_by_key(|p| p.line.map_or(u32::MAX, std::num::NonZeroU32::get));
        if let Some(first) = ManifestError::collect(problems) {
            return Err(first);
        }
        let mut m = checked.map_err(|e| e.all().remove(0))?;
        m.lines = lines;
        Ok(m)
    }

    /// Validate the raw structs.
    pub fn from_raw(raw: RawManifest, file: &str, dir: PathBuf) -> Result<Self, ManifestError> {
        let err = |kind, field: &str, problem: String, fix: String| ManifestError {
            kind,
            file: file.to_string(),
            field: field.to_string(),
            problem,
            fix,
            line: None,
            more: Box::default(),
        };
        // Every problem is collected (a placeholder value stands in for a bad one, so that the
        // checks after it still run); the first carries the rest.
        let problems = std::cell::RefCell::new(Vec::<ManifestError>::new());
        let report = |e: ManifestError| problems.borrow_mut().push(e);
        fn or<T>(report: &impl Fn(ManifestError), r: Result<T, ManifestError>, d: T) -> T {
            r.unwrap_or_else(|e| {
                report(e);
                d
            })
        }
        let size = |field: &str, v: &RawSize| {
            parse_size(v).map_err(|p| {
                err(
                    ErrorKind::OutOfRange,
                    field,
                    p,
                    "write a positive size in bytes or with a suffix, e.g. \"64MiB\"".into(),
                )
            })
        };
        let memory = |field: &str, v: &RawSize| {
            let m = size(field, v)?;
            if !(MIN_MEMORY..=MAX_MEMORY).contains(&m) {
                return Err(err(
                    ErrorKind::OutOfRange,
                    field,
                    format!("{} is outside 4MiB..=64GiB", human_size(m)),
                    "give the partition between \"4MiB\" and \"64GiB\"".into(),
                ));
            }
            if m % 4096 != 0 {
                return Err(err(
                    ErrorKind::OutOfRange,
                    field,
                    format!("{m} is not a multiple of 4KiB"),
                    "round it to whole 4KiB pages".into(),
                ));
            }
            Ok(m)
        };
        // A CPU budget: 1 ms ..= 24 h of processor time, absent for none.
        let cpu_budget = |field: &str, v: Option<i64>| match v {
            None => Ok(None),
            Some(ms @ 1..=MAX_CPU_BUDGET_MS) => Ok(Some(ms as u64)),
            Some(ms) => Err(err(
                ErrorKind::OutOfRange,
                field,
                format!("{ms} is outside 1..={MAX_CPU_BUDGET_MS}"),
                "give the milliseconds of processor time the partition may use, or remove the \
                 key for no budget"
                    .into(),
            )),
        };
        let path = |field: &str, p: &str| {
            if p.is_empty() {
                Err(err(
                    ErrorKind::Invalid,
                    field,
                    "empty path".into(),
                    "name a file".into(),
                ))
            } else {
                Ok(p.to_string())
            }
        };

        let name = raw.image.name;
        let name_ok = name.len() <= 63
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            report(err(
                ErrorKind::Invalid,
                "image.name",
                format!("\"{name}\" is not a valid name"),
                "use 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit".into(),
            ));
        }
        let version = raw.image.version;
        if version.is_empty() || version.chars().any(char::is_whitespace) {
            report(err(
                ErrorKind::Invalid,
                "image.version",
                format!("\"{version}\" is empty or has whitespace"),
                "write a version without spaces, e.g. \"0.1.0\"".into(),
            ));
        }
        let size_auto = raw.image.size.is_none();
        let image_size = match &raw.image.size {
            None => 0,
            Some(raw_size) => {
                let image_size = or(&report, size("image.size", raw_size), 0);
                if image_size == 0 {
                    // Reported by `size`.
                } else if image_size > MAX_IMAGE_SIZE {
                    report(err(
                        ErrorKind::OutOfRange,
                        "image.size",
                        format!("{} is absurdly large", human_size(image_size)),
                        "give a size up to 1TiB".into(),
                    ));
                } else if image_size % (1 << 20) != 0 {
                    report(err(
                        ErrorKind::Invalid,
                        "image.size",
                        format!("{image_size} is not a whole number of MiB"),
                        "round it to MiB, e.g. \"64MiB\"".into(),
                    ));
                } else if image_size < crate::disk::MIN_IMAGE_SIZE {
                    report(err(
                        ErrorKind::TooSmall,
                        "image.size",
                        format!(
                            "{} leaves no room for the GPT and an EFI System Partition",
                            human_size(image_size)
                        ),
                        format!(
                            "make it at least \"{}\"",
                            human_size(crate::disk::MIN_IMAGE_SIZE)
                        ),
                    ));
                }
                image_size
            }
        };

        let g = raw.guest;
        let payload = match (g.elf, g.kernel) {
            (Some(e), None) => Payload::Elf(or(&report, path("guest.elf", &e), e)),
            (None, Some(k)) => Payload::Kernel(or(&report, path("guest.kernel", &k), k)),
            (Some(e), Some(_)) => {
                report(err(
                    ErrorKind::Invalid,
                    "guest",
                    "both `elf` and `kernel` are set".into(),
                    "keep exactly one: `elf` for a unikernel, `kernel` for Linux".into(),
                ));
                Payload::Elf(e)
            }
            (None, None) => {
                report(err(
                    ErrorKind::Invalid,
                    "guest",
                    "neither `elf` nor `kernel` is set".into(),
                    "add `elf = \"guest.elf\"` (unikernel) or `kernel = \"vmlinuz\"` (Linux)"
                        .into(),
                ));
                Payload::Elf(String::new())
            }
        };
        if g.initrd.is_some() && matches!(payload, Payload::Elf(_)) {
            report(err(
                ErrorKind::Invalid,
                "guest.initrd",
                "an initrd needs a Linux `kernel`".into(),
                "remove `initrd` or use `kernel` instead of `elf`".into(),
            ));
        }
        if g.cmdline.as_deref() == Some("") {
            report(err(
                ErrorKind::Invalid,
                "guest.cmdline",
                "the command line is empty".into(),
                "remove the key or write a command line".into(),
            ));
        }
        let guest = Guest {
            payload,
            initrd: or(
                &report,
                g.initrd.map(|p| path("guest.initrd", &p)).transpose(),
                None,
            ),
            os_release: or(
                &report,
                g.os_release
                    .map(|p| path("guest.os-release", &p))
                    .transpose(),
                None,
            ),
            cmdline: g.cmdline,
            memory: or(&report, memory("guest.memory", &g.memory), 0),
            console: g.console,
            cpu_budget_ms: or(
                &report,
                cpu_budget("guest.cpu-budget-ms", g.cpu_budget_ms),
                None,
            ),
        };
        if guest.cpu_budget_ms.is_some() && matches!(guest.payload, Payload::Kernel(_)) {
            report(err(
                ErrorKind::Invalid,
                "guest.cpu-budget-ms",
                "a CPU budget for a Linux guest".into(),
                "remove it: only ELF partitions run under the hypervisor, which enforces it".into(),
            ));
        }

        // A `[[table]]` with more entries than vmseal encodes.
        let at_most = |table: &str, n: usize, max: usize| {
            if n > max {
                Err(err(
                    ErrorKind::Invalid,
                    table,
                    format!("{n} {table}s"),
                    format!("keep at most {max}"),
                ))
            } else {
                Ok(())
            }
        };
        // Service and channel names: 1..=max characters of a-z, 0-9 and '-'.
        let name_ok = |name: &str, max: usize| {
            (1..=max).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        or(
            &report,
            at_most(
                "service",
                raw.service.len(),
                policies::sections::MAX_SERVICES,
            ),
            (),
        );
        let mut services: Vec<Service> = Vec::with_capacity(raw.service.len());
        for (i, s) in raw.service.into_iter().enumerate() {
            let field = |f: &str| format!("service[{i}].{f}");
            if !name_ok(&s.name, 32) {
                report(err(
                    ErrorKind::Invalid,
                    &field("name"),
                    format!("\"{}\" is not a valid service name", s.name),
                    "use 1-32 characters of a-z, 0-9 and '-'".into(),
                ));
            }
            if let Some(j) = services.iter().position(|o| o.name == s.name) {
                report(err(
                    ErrorKind::Duplicate,
                    &field("name"),
                    format!("\"{}\" is already the name of service[{j}]", s.name),
                    "give every service a unique name".into(),
                ));
            }
            let mut devices = s.devices;
            devices.sort();
            devices.dedup();
            services.push(Service {
                elf: or(&report, path(&field("elf"), &s.elf), String::new()),
                memory: or(&report, memory(&field("memory"), &s.memory), 0),
                cpu_budget_ms: or(
                    &report,
                    cpu_budget(&field("cpu-budget-ms"), s.cpu_budget_ms),
                    None,
                ),
                name: s.name,
                devices,
            });
        }

        if !services.is_empty() && matches!(guest.payload, Payload::Kernel(_)) {
            report(err(
                ErrorKind::Invalid,
                "service[0]",
                "services run as partitions of the hypervisor, which only runs an ELF guest".into(),
                "remove the services, or use `elf` (a unikernel) instead of a Linux `kernel`"
                    .into(),
            ));
        }
        or(
            &report,
            at_most("channel", raw.channel.len(), policies::launch::MAX_CHANNELS),
            (),
        );
        let mut channels: Vec<Channel> = Vec::with_capacity(raw.channel.len());
        for (i, c) in raw.channel.into_iter().enumerate() {
            let field = |f: &str| format!("channel[{i}].{f}");
            let max = policies::hypercall::MAX_CHANNEL_NAME as usize;
            if !name_ok(&c.name, max) {
                report(err(
                    ErrorKind::Invalid,
                    &field("name"),
                    format!("\"{}\" is not a valid channel name", c.name),
                    format!("use 1-{max} characters of a-z, 0-9 and '-'"),
                ));
            }
            if let Some(j) = channels.iter().position(|o| o.name == c.name) {
                report(err(
                    ErrorKind::Duplicate,
                    &field("name"),
                    format!("\"{}\" is already the name of channel[{j}]", c.name),
                    "give every channel a unique name".into(),
                ));
            }
            let is_service = |n: &str| services.iter().any(|s| s.name == n);
            let partitions = || {
                std::iter::once(format!("\"{name}\" (the guest)"))
                    .chain(services.iter().map(|s| format!("\"{}\"", s.name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !(c.client == name || is_service(&c.client)) {
                report(err(
                    ErrorKind::Invalid,
                    &field("client"),
                    format!("\"{}\" is not a partition", c.client),
                    format!("name one of {}", partitions()),
                ));
            }
            if !is_service(&c.server) {
                report(err(
                    ErrorKind::Invalid,
                    &field("server"),
                    format!("\"{}\" is not a service", c.server),
                    "name a [[service]]: only services answer on channels".into(),
                ));
            }
            if c.client == c.server {
                report(err(
                    ErrorKind::Invalid,
                    &field("client"),
                    format!("\"{}\" is both ends", c.client),
                    "connect two different partitions".into(),
                ));
            }
            channels.push(Channel {
                name: c.name,
                client: c.client,
                server: c.server,
            });
        }
        if let Some(i) = services.iter().position(|s| s.name == name) {
            report(err(
                ErrorKind::Duplicate,
                &format!("service[{i}].name"),
                format!("\"{name}\" is the image's name, which names the guest partition"),
                "rename the service".into(),
            ));
        }

        for name in raw.sections.keys() {
            let field = format!("sections.\"{name}\"");
            if !name.starts_with('.') || name.len() < 2 || name.len() > 8 || !name.is_ascii() {
                report(err(
                    ErrorKind::Invalid,
                    &field,
                    "a PE section name must start with '.' and be 2-8 ASCII bytes".into(),
                    "rename the section".into(),
                ));
            } else if policies::sections::is_reserved(name) {
                report(err(
                    ErrorKind::Collision,
                    &field,
                    format!("{name} is one of vmseal's own sections"),
                    "rename the extra section (vmseal writes .linux/.guest/.osrel/.cmdline/.initrd/.vmseal/.svcN itself)".into(),
                ));
            }
        }
        for (field, p) in &raw.sections {
            or(
                &report,
                path(&format!("sections.\"{field}\""), p).map(drop),
                (),
            );
        }

        let snp = raw
            .snp
            .map(|r| {
                let number = |field: &str, v: &Option<RawNumber>, default: u64| {
                    v.as_ref().map_or(Ok(default), |n| {
                        n.value().map_err(|p| {
                            err(
                                ErrorKind::Invalid,
                                field,
                                p,
                                "write an integer or a \"0x…\" hex string".into(),
                            )
                        })
                    })
                };
                let firmware = path("snp.firmware", &r.firmware)?;
                let vcpus = r.vcpus.unwrap_or(1);
                let vcpus = u32::try_from(vcpus)
                    .ok()
                    .filter(|v| (1..=512).contains(v))
                    .ok_or_else(|| {
                        err(
                            ErrorKind::OutOfRange,
                            "snp.vcpus",
                            format!("{vcpus} is outside 1..=512"),
                            "give the number of vCPUs the VM is launched with".into(),
                        )
                    })?;
                use crate::confidential::snp;
                let (vcpu_type, vcpu_sig) = match (&r.vcpu_type, &r.vcpu_sig) {
                    (Some(_), Some(_)) => {
                        return Err(err(
                            ErrorKind::Invalid,
                            "snp.vcpu-sig",
                            "both `vcpu-type` and `vcpu-sig` are set".into(),
                            "keep one".into(),
                        ));
                    }
                    (_, Some(n)) => {
                        let v = number("snp.vcpu-sig", &Some(n.clone()), 0)?;
                        let v = u32::try_from(v).map_err(|_| {
                            err(
                                ErrorKind::OutOfRange,
                                "snp.vcpu-sig",
                                format!("{v:#x} is wider than 32 bits"),
                                "give CPUID Fn0000_0001_EAX, e.g. \"0x800f12\"".into(),
                            )
                        })?;
                        (None, v)
                    }
                    (t, None) => {
                        let t = t.clone().unwrap_or_else(|| "EPYC".into());
                        let sig = snp::vcpu_signature(&t).ok_or_else(|| {
                            let names: Vec<&str> =
                                snp::VCPU_TYPES.iter().map(|(n, ..)| *n).collect();
                            err(
                                ErrorKind::Invalid,
                                "snp.vcpu-type",
                                format!("unknown CPU model \"{t}\""),
                                format!("use one of {} or set `vcpu-sig`", names.join(", ")),
                            )
                        })?;
                        (Some(t), sig)
                    }
                };
                let vmm = r.vmm.clone().unwrap_or_else(|| "qemu".into());
                let vmm_kind = snp::Vmm::from_name(&vmm).ok_or_else(|| {
                    err(
                        ErrorKind::Invalid,
                        "snp.vmm",
                        format!("unknown VMM \"{vmm}\""),
                        "use \"qemu\", \"ec2\" or \"gce\"".into(),
                    )
                })?;
                let out = Snp {
                    firmware,
                    vcpus,
                    vcpu_type,
                    vcpu_sig,
                    guest_features: number("snp.guest-features", &r.guest_features, 1)?,
                    policy: number("snp.policy", &r.policy, snp::DEFAULT_POLICY)?,
                    vmm: vmm_kind.name().into(),
                    payload: r.payload.unwrap_or(SnpPayload::Appliance),
                };
                snp::check_config(&out.config()).map_err(|e| {
                    let field = match &e {
                        snp::SnpError::Config { field, .. } => {
                            format!("snp.{}", field.replace('_', "-"))
                        }
                        _ => "snp".into(),
                    };
                    let problem = match e {
                        snp::SnpError::Config { problem, .. } => problem,
                        other => other.to_string(),
                    };
                    err(
                        ErrorKind::Invalid,
                        &field,
                        problem,
                        "see docs/confidential.md".into(),
                    )
                })?;
                Ok(out)
            })
            .transpose();
        // Within `[snp]`, the first problem stops the table's checks (its fields depend on
        // each other: the signature on the model, the policy check on all of them).
        let snp = or(&report, snp, None);

        if let Some(first) = ManifestError::collect(problems.into_inner()) {
            return Err(first);
        }
        Ok(Manifest {
            schema: 1,
            image: Image {
                name,
                version,
                size: image_size,
                size_auto,
            },
            guest,
            service: services,
            channel: channels,
            sections: raw.sections,
            signing: raw.signing,
            snp,
            dir,
            file: file.to_string(),
            lines: BTreeMap::new(),
        })
    }

    /// An error about this manifest.
    pub fn error(
        &self,
        kind: ErrorKind,
        field: &str,
        problem: String,
        fix: String,
    ) -> ManifestError {
        ManifestError {
            kind,
            file: self.file.clone(),
            field: field.to_string(),
            problem,
            fix,
            line: line_of_field(&self.lines, field),
            more: Box::default(),
        }
    }

    /// A path as written, resolved against the manifest's directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    /// The canonical form: a normalized re-serialization (sizes in bytes, sorted sets, paths
    /// as written) as a JSON value with sorted keys.
    pub fn canonical(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elf(p) | Self::Kernel(p) => f.write_str(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[image]
name = "hello"
version = "0.1.0"
size = "64MiB"

[guest]
elf = "hello.elf"
cmdline = "console=ttyS0"
memory = "64MiB"
console = "on"

[[service]]
name = "attest"
elf = "attest.elf"
memory = 8388608
devices = ["tpm", "serial", "tpm"]
"#;

    fn parse(s: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(s, "vmseal.toml", PathBuf::from("."))
    }

    #[test]
    fn parses_the_documented_example() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.image.size, 64 << 20);
        assert_eq!(m.service[0].memory, 8 << 20);
        assert_eq!(m.service[0].devices, vec![Device::Tpm, Device::Serial]);
        assert_eq!(m.canonical()["guest"]["payload"]["elf"], "hello.elf");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&RawSize::Str("512KiB".into())), Ok(512 << 10));
        assert_eq!(parse_size(&RawSize::Str("1GiB".into())), Ok(1 << 30));
        assert!(parse_size(&RawSize::Str("-1MiB".into())).is_err());
        assert!(parse_size(&RawSize::Int(-5)).is_err());
        assert!(parse_size(&RawSize::Str("12XB".into())).is_err());
        assert!(parse_size(&RawSize::Str("99999999999TiB".into())).is_err());
        assert_eq!(human_size(64 << 20), "64MiB");
    }

    #[test]
    fn cpu_budgets() {
        let m = parse(
            &GOOD
                .replace("console = \"on\"", "console = \"on\"\ncpu-budget-ms = 3000")
                .replace("devices = [", "cpu-budget-ms = 1\ndevices = ["),
        )
        .unwrap();
        assert_eq!(m.guest.cpu_budget_ms, Some(3000));
        assert_eq!(m.service[0].cpu_budget_ms, Some(1));
        assert_eq!(m.canonical()["guest"]["cpu-budget-ms"], 3000);
        assert_eq!(parse(GOOD).unwrap().guest.cpu_budget_ms, None);
        assert!(
            parse(GOOD).unwrap().canonical()["guest"]
                .get("cpu-budget-ms")
                .is_none()
        );
        for bad in ["0", "-5", "86400001"] {
            let e = parse(&GOOD.replace(
                "console = \"on\"",
                &format!("console = \"on\"\ncpu-budget-ms = {bad}"),
            ))
            .unwrap_err();
            assert_eq!(
                (e.kind, e.field.as_str()),
                (ErrorKind::OutOfRange, "guest.cpu-budget-ms"),
                "{bad}"
            );
        }
        let e = parse(&GOOD.replace("devices = [", "cpu-budget-ms = 0\ndevices = [")).unwrap_err();
        assert_eq!(e.field, "service[0].cpu-budget-ms");
    }

    #[test]
    fn errors_name_the_field() {
        let e =
            parse(&GOOD.replace("console = \"on\"", "console = \"on\"\ncolour = 1")).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_str()),
            (ErrorKind::UnknownKey, "guest.colour")
        );
        let e = parse(&GOOD.replace("memory = \"64MiB\"", "memory = -1")).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_str()),
            (ErrorKind::OutOfRange, "guest.memory")
        );
        let e = parse(&GOOD.replace("memory = \"64MiB\"", "memory = \"1TiB\"")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutOfRange);
        let e = parse(&GOOD.replace("[guest]", "[guest")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax);
        assert_eq!(e.field, "syntax");
        let header = GOOD.lines().position(|l| l == "[guest]").unwrap() + 1;
        assert_eq!(e.line.map(|l| l.get()), Some(header as u32), "{e}");
        let e = parse(&format!(
            "{GOOD}\n[[service]]\nname = \"attest\"\nelf = \"b\"\nmemory = \"4MiB\"\n"
        ))
        .unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_str()),
            (ErrorKind::Duplicate, "service[1].name")
        );
        let e = parse(&format!("{GOOD}\n[sections]\n\".vmseal\" = \"x\"\n")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Collision);
        let e = parse(&GOOD.replace("\"64MiB\"\n\n[guest]", "\"1MiB\"\n\n[guest]")).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_str()),
            (ErrorKind::TooSmall, "image.size")
        );
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn every_problem_at_once_in_file_order_with_its_line() {
        // Two unknown keys, a bad version, a bad size, two bad service fields: six lines,
        // each at its own line of the text.
        let text = format!(
            "{}\n[[service]]\nname = \"Bad_Name\"\nelf = \"\"\nmemory = \"8MiB\"\nhue = 3\n",
            GOOD.replace(
                "version = \"0.1.0\"",
                "version = \"1 .0\"\ncolour = \"blue\""
            )
            .replace("memory = \"64MiB\"", "memory = \"64.5MiB\"")
        );
        let e = parse(&text).unwrap_err();
        let all = e.all();
        let got: Vec<(&str, ErrorKind)> = all.iter().map(|p| (p.field.as_str(), p.kind)).collect();
        assert_eq!(
            got,
            [
                ("image.version", ErrorKind::Invalid),
                ("image.colour", ErrorKind::UnknownKey),
                ("guest.memory", ErrorKind::OutOfRange),
                ("service[1].name", ErrorKind::Invalid),
                ("service[1].elf", ErrorKind::Invalid),
                ("service[1].hue", ErrorKind::UnknownKey),
            ],
            "{e}"
        );
        // Each line number is the line that names the field in the text.
        for p in &all {
            let key = p.field.rsplit('.').next().unwrap();
            let line = text
                .lines()
                .nth(p.line.unwrap().get() as usize - 1)
                .unwrap();
            assert!(line.trim_start().starts_with(key), "{p}: line {line:?}");
        }
        // Displayed: one line per problem.
        assert_eq!(e.to_string().lines().count(), 6);
    }

    #[test]
    fn snp_table() {
        assert!(parse(GOOD).unwrap().snp.is_none());
        assert!(parse(GOOD).unwrap().canonical().get("snp").is_none());
        let with = |t: &str| parse(&format!("{GOOD}\n[snp]\nfirmware = \"OVMF.fd\"\n{t}"));
        let m = with("").unwrap();
        let s = m.snp.unwrap();
        // Defaults: one EPYC vCPU (signature 0x800f12), SNPActive, QEMU's default policy.
        assert_eq!(
            (s.vcpus, s.vcpu_sig, s.guest_features, s.policy),
            (1, 0x0080_0f12, 1, 0x30000)
        );
        assert_eq!(s.payload, SnpPayload::Appliance);
        let s = with("vcpus = 4\nvcpu-sig = \"0xa00f11\"\npolicy = 0xb0000\nvmm = \"GCE\"\npayload = \"none\"")
            .unwrap()
            .snp
            .unwrap();
        assert_eq!((s.vcpus, s.vcpu_sig, s.policy), (4, 0x00a0_0f11, 0xb0000));
        assert_eq!((s.vmm.as_str(), s.vcpu_type), ("gce", None));
        for (t, field) in [
            ("vcpus = 0", "snp.vcpus"),
            ("vcpu-type = \"Skylake\"", "snp.vcpu-type"),
            ("vcpu-type = \"EPYC\"\nvcpu-sig = 1", "snp.vcpu-sig"),
            ("policy = \"0x10000\"", "snp.policy"),
            ("guest-features = 0", "snp.guest-features"),
            ("policy = \"lots\"", "snp.policy"),
            ("vmm = \"xen\"", "snp.vmm"),
            ("colour = 1", "snp.colour"),
        ] {
            let e = with(t).unwrap_err();
            assert_eq!(e.field, field, "{t}: {e}");
        }
    }
}
