//! The OVMF variable store (`OVMF_VARS*.fd`): read a template, enroll Secure Boot keys, write
//! a new store (`shared/reference/measured-boot.md` §D.2–§D.7).
//!
//! Layout: `EFI_FIRMWARE_VOLUME_HEADER` (0x48 bytes, FileSystemGuid gEfiSystemNvDataFvGuid,
//! `_FVH`, 16-bit checksum) ‖ `VARIABLE_STORE_HEADER` (gEfiAuthenticatedVariableGuid, Size,
//! Format 0x5A, State 0xFE) ‖ `AUTHENTICATED_VARIABLE_HEADER` + name + data, each at a 4-byte
//! boundary ‖ 0xFF up to the end of the store; then the event-log, FTW working and FTW spare
//! regions, which are copied from the template unchanged. Both the 4 MiB (540672-byte) and the
//! 2 MiB (131072-byte) layouts are read from their headers, not assumed.
//!
//! Writing directly into the store bypasses authentication (the variable driver does not
//! re-verify stored data), which is how virt-fw-vars enrolls keys too. The output is
//! deterministic: live variables only (State 0x3F), sorted by name then GUID like
//! virt-firmware, fixed timestamps, free space 0xFF.
//!
//! Bad input gives a [`VarStoreError`], never a panic. Not done: the FTW spare/working
//! contents are never interpreted (a store with a pending fault-tolerant write is read as is).

use crate::efivar::{
    self, ATTR_BOOTSERVICE_ACCESS, ATTR_NON_VOLATILE, ATTRS_SECURE_BOOT_DB, CUSTOM_MODE_GUID,
    EFI_CERT_X509, EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, EfiTime, Guid,
    MICROSOFT_OWNER, SECURE_BOOT_ENABLE_GUID,
};
use crate::keys::Certificate;

/// gEfiSystemNvDataFvGuid FFF12B8D-7696-4C8B-A985-2747075B4F50.
pub const SYSTEM_NV_DATA_FV_GUID: Guid = Guid::from_fields(
    0xfff12b8d,
    0x7696,
    0x4c8b,
    [0xa9, 0x85, 0x27, 0x47, 0x07, 0x5b, 0x4f, 0x50],
);
/// gEfiAuthenticatedVariableGuid AAF32C78-947B-439A-A180-2E144EC37792.
pub const AUTHENTICATED_VARIABLE_GUID: Guid = Guid::from_fields(
    0xaaf32c78,
    0x947b,
    0x439a,
    [0xa1, 0x80, 0x2e, 0x14, 0x4e, 0xc3, 0x77, 0x92],
);

const FV_HEADER_LEN: usize = 0x48;
const STORE_HEADER_LEN: usize = 0x1c;
const FIRST_VAR: usize = FV_HEADER_LEN + STORE_HEADER_LEN;
const VAR_HEADER_LEN: usize = 60;
const START_ID: u16 = 0x55aa;
/// `VAR_ADDED`: a live variable.
pub const VAR_ADDED: u8 = 0x3f;

/// Why a variable store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum VarStoreError {
    /// A header field is wrong.
    #[error("not an OVMF variable store: {0}")]
    BadHeader(String),
    /// A variable is malformed.
    #[error("variable at byte {offset:#x}: {what}")]
    BadVariable {
        /// Offset of its header.
        offset: usize,
        /// What is wrong.
        what: String,
    },
    /// The variables do not fit.
    #[error("the variables need {need} bytes but the store holds {have}; use the 4 MiB layout")]
    Full {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A signature list in the Microsoft source store is malformed.
    #[error("{0}")]
    EfiVar(#[from] efivar::EfiVarError),
}

/// One variable (the fields of `AUTHENTICATED_VARIABLE_HEADER` vmseal keeps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// Name, without the terminating NUL.
    pub name: String,
    /// VendorGuid.
    pub guid: Guid,
    /// Attributes.
    pub attributes: u32,
    /// MonotonicCount.
    pub monotonic_count: u64,
    /// TimeStamp (`EFI_TIME`).
    pub timestamp: [u8; 16],
    /// PubKeyIndex.
    pub pubkey_index: u32,
    /// Data.
    pub data: Vec<u8>,
}

impl Variable {
    /// A variable with zero count, timestamp and key index.
    pub fn new(name: &str, guid: Guid, attributes: u32, data: Vec<u8>) -> Self {
        Self {
            name: name.to_owned(),
            guid,
            attributes,
            monotonic_count: 0,
            timestamp: [0; 16],
            pubkey_index: 0,
            data,
        }
    }
}

/// A parsed variable store: the template bytes and its live variables.
#[derive(Clone, Debug)]
pub struct VarStore {
    template: Vec<u8>,
    store_end: usize,
    /// Live variables (State 0x3F), in store order.
    pub variables: Vec<Variable>,
}

fn rd16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
}
fn rd32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}
fn rd64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}
fn guid_at(b: &[u8], at: usize) -> Option<Guid> {
    b.get(at..at + 16).and_then(|s| s.try_into().ok()).map(Guid)
}

impl VarStore {
    /// Parse and validate a store (see the module docs).
    pub fn parse(bytes: &[u8]) -> Result<Self, VarStoreError> {
        let bad = |s: String| VarStoreError::BadHeader(s);
        let fv = bytes
            .get(..FIRST_VAR)
            .ok_or_else(|| bad(format!("{} bytes is too short", bytes.len())))?;
        if guid_at(fv, 0x10) != Some(SYSTEM_NV_DATA_FV_GUID) {
            return Err(bad("FileSystemGuid is not gEfiSystemNvDataFvGuid".into()));
        }
        if fv.get(0x28..0x2c) != Some(b"_FVH") {
            return Err(bad("no _FVH signature at 0x28".into()));
        }
        let fv_len = rd64(fv, 0x20).unwrap_or(0);
        if fv_len != bytes.len() as u64 {
            return Err(bad(format!(
                "FvLength {fv_len:#x} differs from the file size {:#x}",
                bytes.len()
            )));
        }
        if rd16(fv, 0x30) != Some(FV_HEADER_LEN as u16) {
            return Err(bad("HeaderLength is not 0x48".into()));
        }
        let sum = (0..FV_HEADER_LEN / 2)
            .filter_map(|i| rd16(fv, 2 * i))
            .fold(0u16, u16::wrapping_add);
        if sum != 0 {
            return Err(bad(format!("FV header checksum is wrong (sum {sum:#06x})")));
        }
        if guid_at(fv, FV_HEADER_LEN) != Some(AUTHENTICATED_VARIABLE_GUID) {
            return Err(bad(
                "the variable store is not an authenticated store (gEfiAuthenticatedVariableGuid)"
                    .into(),
            ));
        }
        let size = rd32(fv, FV_HEADER_LEN + 16).unwrap_or(0) as usize;
        let store_end = FV_HEADER_LEN
            .checked_add(size)
            .filter(|&e| e <= bytes.len() && e >= FIRST_VAR)
            .ok_or_else(|| bad(format!("store Size {size:#x} does not fit the file")))?;
        if fv.get(FV_HEADER_LEN + 20..FV_HEADER_LEN + 22) != Some(&[0x5a, 0xfe]) {
            return Err(bad("store Format/State is not 0x5A/0xFE (healthy)".into()));
        }
        let mut variables = Vec::new();
        let mut off = FIRST_VAR;
        while off + VAR_HEADER_LEN <= store_end && rd16(bytes, off) == Some(START_ID) {
            let badv = |what: String| VarStoreError::BadVariable { offset: off, what };
            let h = bytes
                .get(off..off + VAR_HEADER_LEN)
                .ok_or_else(|| badv("truncated header".into()))?;
            let state = h.get(2).copied().unwrap_or(0);
            let (Some(attributes), Some(monotonic_count), Some(pubkey_index), Some(ns), Some(ds)) = (
                rd32(h, 4),
                rd64(h, 8),
                rd32(h, 32),
                rd32(h, 36),
                rd32(h, 40),
            ) else {
                return Err(badv("truncated header".into()));
            };
            let guid = guid_at(h, 44).ok_or_else(|| badv("truncated header".into()))?;
            let (ns, ds) = (ns as usize, ds as usize);
            let end = (off + VAR_HEADER_LEN)
                .checked_add(ns)
                .and_then(|e| e.checked_add(ds))
                .filter(|&e| e <= store_end)
                .ok_or_else(|| badv(format!("NameSize {ns} + DataSize {ds} overrun the store")))?;
            if ns < 2 || ns % 2 != 0 {
                return Err(badv(format!(
                    "NameSize {ns} is not a UTF-16 string with NUL"
                )));
            }
            let name_bytes = bytes
                .get(off + VAR_HEADER_LEN..off + VAR_HEADER_LEN + ns - 2)
                .ok_or_else(|| badv("truncated name".into()))?;
            let units: Vec<u16> = name_bytes
                .chunks_exact(2)
                .filter_map(|c| c.try_into().ok().map(u16::from_le_bytes))
                .collect();
            let name =
                String::from_utf16(&units).map_err(|_| badv("name is not valid UTF-16".into()))?;
            let data = bytes
                .get(off + VAR_HEADER_LEN + ns..end)
                .ok_or_else(|| badv("truncated data".into()))?
                .to_vec();
            let mut timestamp = [0u8; 16];
            timestamp.copy_from_slice(h.get(16..32).unwrap_or(&[0; 16]));
            if state == VAR_ADDED {
                variables.push(Variable {
                    name,
                    guid,
                    attributes,
                    monotonic_count,
                    timestamp,
                    pubkey_index,
                    data,
                });
            }
            off = end.div_ceil(4) * 4;
        }
        Ok(Self {
            template: bytes.to_vec(),
            store_end,
            variables,
        })
    }

    /// The live variable `name` of `guid`.
    pub fn get(&self, name: &str, guid: Guid) -> Option<&Variable> {
        self.variables
            .iter()
            .find(|v| v.name == name && v.guid == guid)
    }

    /// Add or replace a variable.
    pub fn set(&mut self, var: Variable) {
        self.variables
            .retain(|v| !(v.name == var.name && v.guid == var.guid));
        self.variables.push(var);
    }

    /// The store bytes: the template with the variable region rewritten (sorted, 0xFF free
    /// space) and everything else copied unchanged.
    pub fn to_bytes(&self) -> Result<Vec<u8>, VarStoreError> {
        let mut vars: Vec<&Variable> = self.variables.iter().collect();
        vars.sort_by(|a, b| (&a.name, a.guid).cmp(&(&b.name, b.guid)));
        let mut region = Vec::new();
        for v in vars {
            let name: Vec<u8> = v
                .name
                .encode_utf16()
                .chain([0])
                .flat_map(u16::to_le_bytes)
                .collect();
            region.extend_from_slice(&START_ID.to_le_bytes());
            region.push(VAR_ADDED);
            region.push(0);
            region.extend_from_slice(&v.attributes.to_le_bytes());
            region.extend_from_slice(&v.monotonic_count.to_le_bytes());
            region.extend_from_slice(&v.timestamp);
            region.extend_from_slice(&v.pubkey_index.to_le_bytes());
            region.extend_from_slice(&(name.len() as u32).to_le_bytes());
            region.extend_from_slice(&(v.data.len() as u32).to_le_bytes());
            region.extend_from_slice(&v.guid.0);
            region.extend_from_slice(&name);
            region.extend_from_slice(&v.data);
            region.resize(region.len().div_ceil(4) * 4, 0xff);
        }
        let have = self.store_end - FIRST_VAR;
        if region.len() > have {
            return Err(VarStoreError::Full {
                need: region.len(),
                have,
            });
        }
        let mut out = self.template.clone();
        let dst = out
            .get_mut(FIRST_VAR..self.store_end)
            .ok_or_else(|| VarStoreError::BadHeader("store outside the file".into()))?;
        dst.fill(0xff);
        if let Some(d) = dst.get_mut(..region.len()) {
            d.copy_from_slice(&region);
        }
        Ok(out)
    }
}

/// The certificates an org enrolls.
#[derive(Clone, Copy, Debug)]
pub struct OrgCerts<'a> {
    /// PK.
    pub pk: &'a Certificate,
    /// KEK.
    pub kek: &'a Certificate,
    /// db.
    pub db: &'a Certificate,
}

/// A Secure Boot template (after Hyper-V's): which Microsoft entries are trusted next to the
/// org's keys.
///
/// | template | KEK | db | dbx |
/// | --- | --- | --- | --- |
/// | `org-only` | org | org | [`efivar::default_dbx`] |
/// | `org+microsoft-uefi-ca` | org + Microsoft KEK CAs | org + every Microsoft db CA (Windows Production PCA and the third-party UEFI CAs: shim, option ROMs) | the Microsoft store's |
/// | `org+microsoft-windows` | org + Microsoft KEK CAs | org + the Windows CAs only (subject names "Windows") | the Microsoft store's |
///
/// The Microsoft entries are the `MICROSOFT_OWNER`-owned X.509 certificates of a store that
/// ships them (Debian's `OVMF_VARS_4M.ms.fd`), in that store's order, each as its own list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Template {
    /// Only the org's keys.
    #[default]
    OrgOnly,
    /// The org's keys and Microsoft's UEFI CA template (Windows and third-party CAs).
    OrgMicrosoftUefiCa,
    /// The org's keys and Microsoft's Windows template.
    OrgMicrosoftWindows,
}

impl Template {
    /// Every template, by name.
    pub const ALL: [(&'static str, Template); 3] = [
        ("org-only", Template::OrgOnly),
        ("org+microsoft-uefi-ca", Template::OrgMicrosoftUefiCa),
        ("org+microsoft-windows", Template::OrgMicrosoftWindows),
    ];

    /// The template called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("org-only", |(n, _)| n)
    }

    /// Whether it takes entries from a Microsoft store.
    pub fn needs_microsoft(self) -> bool {
        self != Self::OrgOnly
    }
}

/// What a template takes from the Microsoft store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateEntries {
    /// KEK certificates (DER), in store order.
    pub kek: Vec<Vec<u8>>,
    /// db certificates (DER), in store order.
    pub db: Vec<Vec<u8>>,
    /// The store's dbx data, if it has one.
    pub dbx: Option<Vec<u8>>,
}

/// The entries `template` takes from the store `ms` (see [`Template`]).
pub fn template_entries(ms: &[u8], template: Template) -> Result<TemplateEntries, VarStoreError> {
    if !template.needs_microsoft() {
        return Ok(TemplateEntries::default());
    }
    let ms = VarStore::parse(ms)?;
    let certs = |name: &str, guid: Guid| -> Result<Vec<Vec<u8>>, VarStoreError> {
        let mut out = Vec::new();
        if let Some(v) = ms.get(name, guid) {
            for list in efivar::parse_lists(&v.data)? {
                if list.sig_type != EFI_CERT_X509 {
                    continue;
                }
                out.extend(
                    list.entries
                        .into_iter()
                        .filter(|e| e.owner == MICROSOFT_OWNER)
                        .map(|e| e.data),
                );
            }
        }
        Ok(out)
    };
    let mut db = certs("db", EFI_IMAGE_SECURITY_DATABASE)?;
    if template == Template::OrgMicrosoftWindows {
        db.retain(|der| Certificate::from_der(der).is_ok_and(|c| c.subject().contains("Windows")));
    }
    let dbx = ms
        .get("dbx", EFI_IMAGE_SECURITY_DATABASE)
        .map(|v| v.data.clone());
    if let Some(d) = &dbx {
        efivar::parse_lists(d)?;
    }
    Ok(TemplateEntries {
        kek: certs("KEK", EFI_GLOBAL_VARIABLE)?,
        db,
        dbx,
    })
}

/// Options of [`enroll`].
#[derive(Clone, Debug, Default)]
pub struct EnrollOptions<'a> {
    /// SignatureOwner of the org's entries (measured into PCR 7).
    pub owner: Guid,
    /// The dbx data (concatenated signature lists); `None` = the template's (the Microsoft
    /// store's dbx), else [`efivar::default_dbx`].
    pub dbx: Option<Vec<u8>>,
    /// The template.
    pub template: Template,
    /// The store (such as `OVMF_VARS_4M.ms.fd`) the template's Microsoft entries come from;
    /// required by every template but `org-only`.
    pub microsoft_from: Option<&'a [u8]>,
    /// TimeStamp of PK, KEK, db, dbx; `None` = all zero.
    pub timestamp: Option<EfiTime>,
}

/// Enroll `certs` into `template` and return the new store: PK, KEK, db (one X.509 list per
/// certificate, owner `opts.owner`), dbx, SecureBootEnable = 1 and CustomMode = 0, with the
/// attributes of §D.7. Other variables of the template are kept.
pub fn enroll(
    template: &[u8],
    certs: OrgCerts<'_>,
    opts: &EnrollOptions<'_>,
) -> Result<Vec<u8>, VarStoreError> {
    let mut store = VarStore::parse(template)?;
    let ts = opts.timestamp.map(EfiTime::to_bytes).unwrap_or([0; 16]);
    let mut kek = efivar::x509_list(opts.owner, certs.kek.der());
    let mut db = efivar::x509_list(opts.owner, certs.db.der());
    let ms = match (opts.template.needs_microsoft(), opts.microsoft_from) {
        (false, _) => TemplateEntries::default(),
        (true, Some(ms)) => template_entries(ms, opts.template)?,
        (true, None) => {
            return Err(VarStoreError::BadHeader(format!(
                "template {} needs a store with Microsoft's certificates (OVMF_VARS_4M.ms.fd)",
                opts.template.name()
            )));
        }
    };
    for der in &ms.kek {
        kek.extend(efivar::x509_list(MICROSOFT_OWNER, der));
    }
    for der in &ms.db {
        db.extend(efivar::x509_list(MICROSOFT_OWNER, der));
    }
    let dbx = opts
        .dbx
        .clone()
        .or(ms.dbx)
        .unwrap_or_else(efivar::default_dbx);
    efivar::parse_lists(&dbx)?;
    let auth = |name: &str, guid, data| Variable {
        timestamp: ts,
        ..Variable::new(name, guid, ATTRS_SECURE_BOOT_DB, data)
    };
    store.set(auth(
        "PK",
        EFI_GLOBAL_VARIABLE,
        efivar::x509_list(opts.owner, certs.pk.der()),
    ));
    store.set(auth("KEK", EFI_GLOBAL_VARIABLE, kek));
    store.set(auth("db", EFI_IMAGE_SECURITY_DATABASE, db));
    store.set(auth("dbx", EFI_IMAGE_SECURITY_DATABASE, dbx));
    let nv_bs = ATTR_NON_VOLATILE | ATTR_BOOTSERVICE_ACCESS;
    store.set(Variable::new(
        "SecureBootEnable",
        SECURE_BOOT_ENABLE_GUID,
        nv_bs,
        vec![1],
    ));
    store.set(Variable::new(
        "CustomMode",
        CUSTOM_MODE_GUID,
        nv_bs,
        vec![0],
    ));
    store.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARS_4M: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
    const VARS_2M: &str = "/usr/share/OVMF/OVMF_VARS.fd";

    /// A synthetic empty 2M-layout store (so the tests run without OVMF installed).
    fn synthetic() -> Vec<u8> {
        let mut f = vec![0xffu8; 0x20000];
        f[..0x48].fill(0);
        f[0x10..0x20].copy_from_slice(&SYSTEM_NV_DATA_FV_GUID.0);
        f[0x20..0x28].copy_from_slice(&0x20000u64.to_le_bytes());
        f[0x28..0x2c].copy_from_slice(b"_FVH");
        f[0x2c..0x30].copy_from_slice(&0x0004feffu32.to_le_bytes());
        f[0x30..0x32].copy_from_slice(&0x48u16.to_le_bytes());
        f[0x37] = 2;
        f[0x38..0x3c].copy_from_slice(&0x20u32.to_le_bytes());
        f[0x3c..0x40].copy_from_slice(&0x1000u32.to_le_bytes());
        let sum = (0..0x24).fold(0u16, |s, i| {
            s.wrapping_add(u16::from_le_bytes([f[2 * i], f[2 * i + 1]]))
        });
        f[0x32..0x34].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
        f[0x48..0x58].copy_from_slice(&AUTHENTICATED_VARIABLE_GUID.0);
        f[0x58..0x5c].copy_from_slice(&0xdfb8u32.to_le_bytes());
        f[0x5c..0x64].copy_from_slice(&[0x5a, 0xfe, 0, 0, 0, 0, 0, 0]);
        f
    }

    #[test]
    fn synthetic_matches_the_reference_header_values() {
        let f = synthetic();
        assert_eq!(f[0x32..0x34], 0xf919u16.to_le_bytes(), "§D.3 2M checksum");
        if let Ok(real) = std::fs::read(VARS_2M) {
            assert_eq!(real[..0x64], f[..0x64]);
        }
    }

    #[test]
    fn enroll_round_trips_and_is_deterministic() {
        let h = crate::keys::tests::test_hierarchy();
        let certs = OrgCerts {
            pk: &h.pk.cert,
            kek: &h.kek.cert,
            db: &h.db.cert,
        };
        let opts = EnrollOptions {
            owner: Guid::parse("11111111-2222-3333-4444-555555555555").unwrap(),
            ..Default::default()
        };
        let t = synthetic();
        let out = enroll(&t, certs, &opts).unwrap();
        assert_eq!(out, enroll(&t, certs, &opts).unwrap());
        assert_eq!(out.len(), t.len());
        let s = VarStore::parse(&out).unwrap();
        let names: Vec<&str> = s.variables.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            ["CustomMode", "KEK", "PK", "SecureBootEnable", "db", "dbx"]
        );
        let pk = s.get("PK", EFI_GLOBAL_VARIABLE).unwrap();
        assert_eq!(pk.attributes, 0x27);
        assert_eq!(pk.data, efivar::x509_list(opts.owner, h.pk.cert.der()));
        assert_eq!(
            s.get("dbx", EFI_IMAGE_SECURITY_DATABASE)
                .unwrap()
                .data
                .len(),
            76
        );
        let sbe = s.get("SecureBootEnable", SECURE_BOOT_ENABLE_GUID).unwrap();
        assert_eq!((sbe.attributes, sbe.data.as_slice()), (3, &[1u8][..]));
        // Free space is 0xFF, everything after the store copied.
        let last = s.variables.len();
        assert!(last > 0);
        assert!(out[0xdf00..0xe000].iter().all(|&b| b == 0xff));
        assert_eq!(out[0xe000..], t[0xe000..]);
    }

    #[test]
    fn real_templates_parse_and_microsoft_entries_are_appended() {
        let (Ok(t4), Ok(ms)) = (
            std::fs::read(VARS_4M),
            std::fs::read("/usr/share/OVMF/OVMF_VARS_4M.ms.fd"),
        ) else {
            println!("NOTICE: OVMF templates not installed; skipping");
            return;
        };
        assert_eq!(t4.len(), 540672);
        assert!(VarStore::parse(&t4).unwrap().variables.is_empty());
        let h = crate::keys::tests::test_hierarchy();
        let certs = OrgCerts {
            pk: &h.pk.cert,
            kek: &h.kek.cert,
            db: &h.db.cert,
        };
        let opts = EnrollOptions {
            microsoft_from: Some(&ms),
            template: Template::OrgMicrosoftUefiCa,
            ..Default::default()
        };
        let out = enroll(&t4, certs, &opts).unwrap();
        assert_eq!(out[0x41000..], t4[0x41000..], "FTW regions copied");
        let s = VarStore::parse(&out).unwrap();
        let db =
            efivar::parse_lists(&s.get("db", EFI_IMAGE_SECURITY_DATABASE).unwrap().data).unwrap();
        assert!(db.len() >= 2, "org + Microsoft db certs");
        assert_eq!(db[0].entries[0].data, h.db.cert.der());
        assert!(
            db[1..]
                .iter()
                .all(|l| l.entries[0].owner == MICROSOFT_OWNER)
        );
        let kek = efivar::parse_lists(&s.get("KEK", EFI_GLOBAL_VARIABLE).unwrap().data).unwrap();
        assert!(kek.len() >= 2);
        // The Windows template keeps only the Windows CAs in db; org-only takes nothing.
        let windows = enroll(
            &t4,
            certs,
            &EnrollOptions {
                template: Template::OrgMicrosoftWindows,
                ..opts.clone()
            },
        )
        .unwrap();
        let s = VarStore::parse(&windows).unwrap();
        let db =
            efivar::parse_lists(&s.get("db", EFI_IMAGE_SECURITY_DATABASE).unwrap().data).unwrap();
        assert!(db.len() >= 2);
        for l in &db[1..] {
            let c = Certificate::from_der(&l.entries[0].data).unwrap();
            assert!(c.subject().contains("Windows"), "{}", c.subject());
        }
        let only = enroll(
            &t4,
            certs,
            &EnrollOptions {
                template: Template::OrgOnly,
                ..opts.clone()
            },
        )
        .unwrap();
        let s = VarStore::parse(&only).unwrap();
        assert_eq!(
            efivar::parse_lists(&s.get("db", EFI_IMAGE_SECURITY_DATABASE).unwrap().data)
                .unwrap()
                .len(),
            1
        );
        // A Microsoft template without the Microsoft store is an error.
        assert!(
            enroll(
                &t4,
                certs,
                &EnrollOptions {
                    microsoft_from: None,
                    ..opts
                }
            )
            .is_err()
        );
    }

    #[test]
    fn bad_stores_are_errors_not_panics() {
        let t = synthetic();
        for n in [0, 0x10, 0x47, 0x63] {
            assert!(VarStore::parse(&t[..n]).is_err());
        }
        assert!(VarStore::parse(&t[..0x1000]).is_err(), "FvLength mismatch");
        let mut bad = t.clone();
        bad[0x32] ^= 1;
        assert!(VarStore::parse(&bad).is_err(), "checksum");
        // A variable whose sizes overrun the store.
        let mut bad = t.clone();
        bad[0x64..0x66].copy_from_slice(&START_ID.to_le_bytes());
        bad[0x64 + 36..0x64 + 40].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(matches!(
            VarStore::parse(&bad),
            Err(VarStoreError::BadVariable { .. })
        ));
        // Every byte of a populated store flipped: no panic.
        let h = crate::keys::tests::test_hierarchy();
        let certs = OrgCerts {
            pk: &h.pk.cert,
            kek: &h.kek.cert,
            db: &h.db.cert,
        };
        let out = enroll(&t, certs, &EnrollOptions::default()).unwrap();
        for i in (0..0x1000).step_by(3) {
            let mut f = out.clone();
            f[i] ^= 0xa5;
            let _ = VarStore::parse(&f);
        }
    }
}
