//! EFI signature lists and time-based authenticated variable payloads (`.auth` files).
//!
//! * `EFI_SIGNATURE_LIST` (UEFI 2.10 §32.4.1, `shared/reference/measured-boot.md` §D.7): one
//!   list per X.509 certificate (`EFI_CERT_X509_GUID`, SignatureSize = 16 + DER length) and one
//!   list for any number of SHA-256 hashes (`EFI_CERT_SHA256_GUID`, SignatureSize = 48).
//! * `EFI_VARIABLE_AUTHENTICATION_2` (UEFI 2.10 §8.2.2): `EFI_TIME` ‖
//!   `WIN_CERTIFICATE_UEFI_GUID { dwLength, 0x0200, 0x0EF1, EFI_CERT_TYPE_PKCS7_GUID, CertData }`
//!   followed by the variable data. CertData is a detached PKCS#7 `SignedData` (no
//!   `ContentInfo` wrapper, no authenticated attributes, SHA-256, the signer's certificate),
//!   as efitools' `sign-efi-sig-list` writes it, over
//!   `VariableName (UTF-16LE, no NUL) ‖ VendorGuid ‖ Attributes (u32) ‖ TimeStamp ‖ Data`.
//!
//! The timestamp is a parameter (vmseal passes `SOURCE_DATE_EPOCH`, else 0), so the payloads
//! are deterministic. Parsing ([`parse_lists`]) gives an error on bad input, never a panic.

use std::fmt;

use crate::keys::{Hierarchy, KeyError, Signer};

/// A GUID in its on-disk (mixed-endian, `EFI_GUID`) byte order.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// From the textual fields `d1-d2-d3-d4[0..2]-d4[2..8]`.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Self {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Self([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub fn parse(s: &str) -> Result<Self, EfiVarError> {
        let bad = || EfiVarError::BadGuid(s.to_owned());
        let parts: Vec<&str> = s.split('-').collect();
        let [p1, p2, p3, p4, p5] = parts.as_slice() else {
            return Err(bad());
        };
        if (p1.len(), p2.len(), p3.len(), p4.len(), p5.len()) != (8, 4, 4, 4, 12) {
            return Err(bad());
        }
        let d1 = u32::from_str_radix(p1, 16).map_err(|_| bad())?;
        let d2 = u16::from_str_radix(p2, 16).map_err(|_| bad())?;
        let d3 = u16::from_str_radix(p3, 16).map_err(|_| bad())?;
        let tail = format!("{p4}{p5}");
        let mut d4 = [0u8; 8];
        for (i, b) in d4.iter_mut().enumerate() {
            let hex = tail.get(2 * i..2 * i + 2).ok_or_else(bad)?;
            *b = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
        }
        Ok(Self::from_fields(d1, d2, d3, d4))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// EFI_GLOBAL_VARIABLE 8be4df61-93ca-11d2-aa0d-00e098032b8c (PK, KEK, SecureBoot).
pub const EFI_GLOBAL_VARIABLE: Guid = Guid::from_fields(
    0x8be4df61,
    0x93ca,
    0x11d2,
    [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
);
/// EFI_IMAGE_SECURITY_DATABASE d719b2cb-3d3a-4596-a3bc-dad00e67656f (db, dbx, dbt).
pub const EFI_IMAGE_SECURITY_DATABASE: Guid = Guid::from_fields(
    0xd719b2cb,
    0x3d3a,
    0x4596,
    [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
);
/// EFI_CERT_X509_GUID a5c059a1-94e4-4aa7-87b5-ab155c2bf072.
pub const EFI_CERT_X509: Guid = Guid::from_fields(
    0xa5c059a1,
    0x94e4,
    0x4aa7,
    [0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72],
);
/// EFI_CERT_SHA256_GUID c1c41626-504c-4092-aca9-41f936934328.
pub const EFI_CERT_SHA256: Guid = Guid::from_fields(
    0xc1c41626,
    0x504c,
    0x4092,
    [0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28],
);
/// EFI_CERT_TYPE_PKCS7_GUID 4aafd29d-68df-49ee-8aa9-347d375665a7.
pub const EFI_CERT_TYPE_PKCS7: Guid = Guid::from_fields(
    0x4aafd29d,
    0x68df,
    0x49ee,
    [0x8a, 0xa9, 0x34, 0x7d, 0x37, 0x56, 0x65, 0xa7],
);
/// SecureBootEnable's vendor GUID f0a30bc7-af08-4556-99c4-001009c93a44.
pub const SECURE_BOOT_ENABLE_GUID: Guid = Guid::from_fields(
    0xf0a30bc7,
    0xaf08,
    0x4556,
    [0x99, 0xc4, 0x00, 0x10, 0x09, 0xc9, 0x3a, 0x44],
);
/// CustomMode's vendor GUID c076ec0c-7028-4399-a072-71ee5c448b9f.
pub const CUSTOM_MODE_GUID: Guid = Guid::from_fields(
    0xc076ec0c,
    0x7028,
    0x4399,
    [0xa0, 0x72, 0x71, 0xee, 0x5c, 0x44, 0x8b, 0x9f],
);
/// Owner of the default dummy dbx entry (EnrollDefaultKeys' FILE_GUID, used by virt-fw-vars):
/// a0baa8a3-041d-48a8-bc87-c36d121b5e3d.
pub const DEFAULT_DBX_OWNER: Guid = Guid::from_fields(
    0xa0baa8a3,
    0x041d,
    0x48a8,
    [0xbc, 0x87, 0xc3, 0x6d, 0x12, 0x1b, 0x5e, 0x3d],
);
/// gMicrosoftVendorGuid 77fa9abd-0359-4d32-bd60-28f4e78f784b.
pub const MICROSOFT_OWNER: Guid = Guid::from_fields(
    0x77fa9abd,
    0x0359,
    0x4d32,
    [0xbd, 0x60, 0x28, 0xf4, 0xe7, 0x8f, 0x78, 0x4b],
);

/// `EFI_VARIABLE_NON_VOLATILE`.
pub const ATTR_NON_VOLATILE: u32 = 0x01;
/// `EFI_VARIABLE_BOOTSERVICE_ACCESS`.
pub const ATTR_BOOTSERVICE_ACCESS: u32 = 0x02;
/// `EFI_VARIABLE_RUNTIME_ACCESS`.
pub const ATTR_RUNTIME_ACCESS: u32 = 0x04;
/// `EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS`.
pub const ATTR_TIME_BASED_AUTHENTICATED_WRITE_ACCESS: u32 = 0x20;
/// `EFI_VARIABLE_APPEND_WRITE`: `SetVariable` appends to db/dbx/KEK instead of replacing it.
pub const ATTR_APPEND_WRITE: u32 = 0x40;
/// NV | BS | RT | time-based authenticated write: the attributes of PK, KEK, db, dbx (§D.7).
pub const ATTRS_SECURE_BOOT_DB: u32 = ATTR_NON_VOLATILE
    | ATTR_BOOTSERVICE_ACCESS
    | ATTR_RUNTIME_ACCESS
    | ATTR_TIME_BASED_AUTHENTICATED_WRITE_ACCESS;

/// Why a signature list or variable could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum EfiVarError {
    /// Not a GUID.
    #[error("{0:?} is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
    BadGuid(String),
    /// A signature list is malformed.
    #[error("EFI_SIGNATURE_LIST at byte {offset}: {what}")]
    BadList {
        /// Offset of the list in the variable data.
        offset: usize,
        /// What is wrong.
        what: String,
    },
    /// The time is outside what `EFI_TIME` can hold.
    #[error("timestamp {0} is out of range for EFI_TIME (years 1970..=9999)")]
    BadTime(u64),
    /// Signing failed.
    #[error("{0}")]
    Key(#[from] KeyError),
}

/// One `EFI_SIGNATURE_DATA`: owner GUID and payload (DER certificate or hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureData {
    /// SignatureOwner.
    pub owner: Guid,
    /// The certificate or hash bytes.
    pub data: Vec<u8>,
}

/// One parsed `EFI_SIGNATURE_LIST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureList {
    /// SignatureType (e.g. [`EFI_CERT_X509`]).
    pub sig_type: Guid,
    /// The SignatureHeader bytes (empty for every type vmseal uses).
    pub header: Vec<u8>,
    /// The entries.
    pub entries: Vec<SignatureData>,
}

impl SignatureList {
    /// Encode one list. All entries must have the same size (the list's SignatureSize).
    pub fn to_bytes(&self) -> Vec<u8> {
        let sig_size = self.entries.first().map_or(16, |e| 16 + e.data.len());
        let total = 28 + self.header.len() + sig_size * self.entries.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&self.sig_type.0);
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&(self.header.len() as u32).to_le_bytes());
        out.extend_from_slice(&(sig_size as u32).to_le_bytes());
        out.extend_from_slice(&self.header);
        for e in &self.entries {
            out.extend_from_slice(&e.owner.0);
            out.extend_from_slice(&e.data);
        }
        out
    }
}

/// An X.509 list holding one DER certificate (SignatureSize = 16 + DER length).
pub fn x509_list(owner: Guid, cert_der: &[u8]) -> Vec<u8> {
    SignatureList {
        sig_type: EFI_CERT_X509,
        header: Vec::new(),
        entries: vec![SignatureData {
            owner,
            data: cert_der.to_vec(),
        }],
    }
    .to_bytes()
}

/// One SHA-256 list holding `hashes` (SignatureSize = 48).
pub fn sha256_list(owner: Guid, hashes: &[[u8; 32]]) -> Vec<u8> {
    SignatureList {
        sig_type: EFI_CERT_SHA256,
        header: Vec::new(),
        entries: hashes
            .iter()
            .map(|h| SignatureData {
                owner,
                data: h.to_vec(),
            })
            .collect(),
    }
    .to_bytes()
}

/// The default dbx that virt-fw-vars and EnrollDefaultKeys enroll: one SHA-256 entry, the hash
/// of empty data, owner [`DEFAULT_DBX_OWNER`] (76 bytes).
pub fn default_dbx() -> Vec<u8> {
    use sha2::Digest as _;
    sha256_list(DEFAULT_DBX_OWNER, &[sha2::Sha256::digest([]).into()])
}

fn rd32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

/// Parse the concatenated signature lists of a variable's data.
pub fn parse_lists(data: &[u8]) -> Result<Vec<SignatureList>, EfiVarError> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < data.len() {
        let bad = |what: String| EfiVarError::BadList { offset: off, what };
        let sig_type = data
            .get(off..off + 16)
            .and_then(|s| s.try_into().ok())
            .map(Guid)
            .ok_or_else(|| bad("truncated header".into()))?;
        let (Some(list_size), Some(header_size), Some(sig_size)) = (
            rd32(data, off + 16),
            rd32(data, off + 20),
            rd32(data, off + 24),
        ) else {
            return Err(bad("truncated header".into()));
        };
        let (list_size, header_size, sig_size) =
            (list_size as usize, header_size as usize, sig_size as usize);
        let end = off
            .checked_add(list_size)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| bad(format!("SignatureListSize {list_size} runs past the data")))?;
        let body = list_size
            .checked_sub(28 + header_size)
            .ok_or_else(|| bad("SignatureListSize smaller than its header".into()))?;
        if sig_size < 16 || body % sig_size != 0 {
            return Err(bad(format!(
                "SignatureSize {sig_size} does not divide the list body ({body} bytes)"
            )));
        }
        let header = data
            .get(off + 28..off + 28 + header_size)
            .ok_or_else(|| bad("truncated signature header".into()))?
            .to_vec();
        let mut entries = Vec::new();
        let mut e = off + 28 + header_size;
        while e < end {
            let owner = data
                .get(e..e + 16)
                .and_then(|s| s.try_into().ok())
                .map(Guid)
                .ok_or_else(|| bad("truncated entry".into()))?;
            let payload = data
                .get(e + 16..e + sig_size)
                .ok_or_else(|| bad("truncated entry".into()))?;
            entries.push(SignatureData {
                owner,
                data: payload.to_vec(),
            });
            e += sig_size;
        }
        out.push(SignatureList {
            sig_type,
            header,
            entries,
        });
        off = end;
    }
    Ok(out)
}

/// `EFI_TIME` as used by time-based authenticated variables: Pad1, Nanosecond, TimeZone,
/// Daylight and Pad2 are zero (UEFI 2.10 §8.2.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EfiTime {
    /// Year (1900–9999).
    pub year: u16,
    /// Month 1–12.
    pub month: u8,
    /// Day 1–31.
    pub day: u8,
    /// Hour 0–23.
    pub hour: u8,
    /// Minute 0–59.
    pub minute: u8,
    /// Second 0–59.
    pub second: u8,
}

impl EfiTime {
    /// UTC time from seconds since the Unix epoch.
    pub fn from_unix(secs: u64) -> Result<Self, EfiVarError> {
        let days = secs / 86400;
        let rem = secs % 86400;
        // Howard Hinnant's civil_from_days.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let year = u16::try_from(year)
            .ok()
            .filter(|y| *y <= 9999)
            .ok_or(EfiVarError::BadTime(secs))?;
        Ok(Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        })
    }

    /// The 16-byte `EFI_TIME`.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..2].copy_from_slice(&self.year.to_le_bytes());
        b[2] = self.month;
        b[3] = self.day;
        b[4] = self.hour;
        b[5] = self.minute;
        b[6] = self.second;
        b
    }
}

fn utf16le(name: &str) -> Vec<u8> {
    name.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// What an `APPEND_WRITE` of `new` adds to a signature database holding `existing`, as EDK2
/// computes it (`AuthService.c → FilterSignatureList`): every entry of `new` that is not
/// already in a list of `existing` with the same SignatureType and SignatureSize (compared
/// whole: owner GUID and data) is kept; a list left empty is dropped; the kept lists follow in
/// order. The variable's new data is `existing ‖ result`.
pub fn filter_new_entries(existing: &[u8], new: &[u8]) -> Result<Vec<u8>, EfiVarError> {
    let old = parse_lists(existing)?;
    let size = |l: &SignatureList| l.entries.first().map(|e| 16 + e.data.len());
    let mut out = Vec::new();
    for list in parse_lists(new)? {
        let kept: Vec<SignatureData> = list
            .entries
            .iter()
            .filter(|e| {
                !old.iter().any(|o| {
                    o.sig_type == list.sig_type
                        && size(o) == Some(16 + e.data.len())
                        && o.entries.contains(e)
                })
            })
            .cloned()
            .collect();
        if !kept.is_empty() {
            out.extend(
                SignatureList {
                    sig_type: list.sig_type,
                    header: list.header.clone(),
                    entries: kept,
                }
                .to_bytes(),
            );
        }
    }
    Ok(out)
}

/// The bytes an authenticated variable write signs:
/// `name (UTF-16LE, no NUL) ‖ vendor ‖ attributes ‖ timestamp ‖ data`.
pub fn auth2_signed_bytes(
    name: &str,
    vendor: Guid,
    attributes: u32,
    time: EfiTime,
    data: &[u8],
) -> Vec<u8> {
    let mut m = utf16le(name);
    m.extend_from_slice(&vendor.0);
    m.extend_from_slice(&attributes.to_le_bytes());
    m.extend_from_slice(&time.to_bytes());
    m.extend_from_slice(data);
    m
}

/// A complete `.auth` payload for `SetVariable(name, vendor, attributes, ...)`:
/// `EFI_VARIABLE_AUTHENTICATION_2` followed by `data`, signed by `signer`.
pub fn auth2_payload(
    name: &str,
    vendor: Guid,
    attributes: u32,
    time: EfiTime,
    data: &[u8],
    signer: &dyn Signer,
) -> Result<Vec<u8>, EfiVarError> {
    let msg = auth2_signed_bytes(name, vendor, attributes, time, data);
    let p7 = crate::pkcs7::detached(&msg, signer)?;
    let dw_length = (8 + 16 + p7.len()) as u32;
    let mut out = Vec::with_capacity(16 + dw_length as usize + data.len());
    out.extend_from_slice(&time.to_bytes());
    out.extend_from_slice(&dw_length.to_le_bytes());
    out.extend_from_slice(&crate::authenticode::WIN_CERT_REVISION_2_0.to_le_bytes());
    out.extend_from_slice(&crate::authenticode::WIN_CERT_TYPE_EFI_GUID.to_le_bytes());
    out.extend_from_slice(&EFI_CERT_TYPE_PKCS7.0);
    out.extend_from_slice(&p7);
    out.extend_from_slice(data);
    Ok(out)
}

/// The enrollment payloads of an org hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFiles {
    /// PK's signature list (`PK.esl`).
    pub pk_esl: Vec<u8>,
    /// KEK's signature list.
    pub kek_esl: Vec<u8>,
    /// db's signature list.
    pub db_esl: Vec<u8>,
    /// `PK.auth`: PK signed by PK.
    pub pk_auth: Vec<u8>,
    /// `KEK.auth`: KEK signed by PK.
    pub kek_auth: Vec<u8>,
    /// `db.auth`: db signed by KEK.
    pub db_auth: Vec<u8>,
}

/// The `.esl` and `.auth` payloads to enroll `h` (owner GUID `owner`, timestamp `time`).
pub fn hierarchy_auth_files(
    h: &Hierarchy,
    owner: Guid,
    time: EfiTime,
) -> Result<AuthFiles, EfiVarError> {
    auth_files(&h.pk, &h.kek, &h.db.cert, owner, time)
}

/// The `.esl` and `.auth` payloads to enroll the certificates of `pk`, `kek` and `db`, signed
/// through `pk` (PK, KEK) and `kek` (db): file keys or token keys alike.
pub fn auth_files(
    pk: &dyn Signer,
    kek: &dyn Signer,
    db: &crate::keys::Certificate,
    owner: Guid,
    time: EfiTime,
) -> Result<AuthFiles, EfiVarError> {
    let pk_esl = x509_list(owner, pk.certificate().der());
    let kek_esl = x509_list(owner, kek.certificate().der());
    let db_esl = x509_list(owner, db.der());
    let a = ATTRS_SECURE_BOOT_DB;
    Ok(AuthFiles {
        pk_auth: auth2_payload("PK", EFI_GLOBAL_VARIABLE, a, time, &pk_esl, pk)?,
        kek_auth: auth2_payload("KEK", EFI_GLOBAL_VARIABLE, a, time, &kek_esl, pk)?,
        db_auth: auth2_payload("db", EFI_IMAGE_SECURITY_DATABASE, a, time, &db_esl, kek)?,
        pk_esl,
        kek_esl,
        db_esl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_filters_entries_already_present_as_edk2_does() {
        let owner = DEFAULT_DBX_OWNER;
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let existing = sha256_list(owner, &[a]);
        // Already present: nothing to append.
        assert!(
            filter_new_entries(&existing, &sha256_list(owner, &[a]))
                .unwrap()
                .is_empty()
        );
        // The same hash under another owner is another entry (compared whole).
        let other = sha256_list(MICROSOFT_OWNER, &[a]);
        assert_eq!(filter_new_entries(&existing, &other).unwrap(), other);
        // A list with one old and one new entry keeps only the new one.
        assert_eq!(
            filter_new_entries(&existing, &sha256_list(owner, &[a, b])).unwrap(),
            sha256_list(owner, &[b])
        );
        // A certificate list next to a hash list is new.
        let cert = x509_list(owner, &[0x30, 0x03, 0x02, 0x01, 0x01]);
        assert_eq!(filter_new_entries(&existing, &cert).unwrap(), cert);
        assert!(filter_new_entries(&existing, &[1, 2, 3]).is_err());
    }

    #[test]
    fn guid_text_and_bytes() {
        let g = Guid::parse("a5c059a1-94e4-4aa7-87b5-ab155c2bf072").unwrap();
        assert_eq!(g, EFI_CERT_X509);
        assert_eq!(
            g.0,
            [
                0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b,
                0xf0, 0x72
            ]
        );
        assert_eq!(g.to_string(), "a5c059a1-94e4-4aa7-87b5-ab155c2bf072");
        assert!(Guid::parse("a5c059a1-94e4-4aa7-87b5").is_err());
        assert!(Guid::parse("g5c059a1-94e4-4aa7-87b5-ab155c2bf072").is_err());
    }

    #[test]
    fn default_dbx_layout() {
        let dbx = default_dbx();
        #[rustfmt::skip]
        let head: [u8; 28] = [
            0x26, 0x16, 0xc4, 0xc1, 0x4c, 0x50, 0x92, 0x40, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28, // EFI_CERT_SHA256_GUID
            76, 0, 0, 0, // SignatureListSize = 28 + 48
            0, 0, 0, 0,  // SignatureHeaderSize
            48, 0, 0, 0, // SignatureSize = 16 + 32
        ];
        assert_eq!(dbx[..28], head);
        assert_eq!(dbx[28..44], DEFAULT_DBX_OWNER.0);
        assert_eq!(
            hex::encode(&dbx[44..]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let lists = parse_lists(&dbx).unwrap();
        assert_eq!(lists.len(), 1);
        assert_eq!(lists[0].entries[0].owner, DEFAULT_DBX_OWNER);
    }

    #[test]
    fn x509_list_layout_and_bad_lists() {
        let cert = [0x30, 0x03, 0x02, 0x01, 0x01];
        let esl = x509_list(MICROSOFT_OWNER, &cert);
        assert_eq!(esl.len(), 28 + 16 + 5);
        assert_eq!(esl[0..16], EFI_CERT_X509.0);
        assert_eq!(esl[16..20], 49u32.to_le_bytes()); // list size
        assert_eq!(esl[24..28], 21u32.to_le_bytes()); // SignatureSize = 16 + 5
        assert_eq!(esl[44..], cert);
        for n in 1..esl.len() {
            assert!(parse_lists(&esl[..n]).is_err(), "{n}");
        }
        let mut bad = esl.clone();
        bad[24] = 0;
        assert!(parse_lists(&bad).is_err());
    }

    #[test]
    fn efi_time_from_unix() {
        let t = EfiTime::from_unix(1_700_000_000).unwrap(); // 2023-11-14 22:13:20 UTC
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2023, 11, 14, 22, 13, 20)
        );
        assert_eq!(t.to_bytes()[..8], [0xe7, 0x07, 11, 14, 22, 13, 20, 0]);
        assert_eq!(EfiTime::from_unix(0).unwrap().year, 1970);
        let leap = EfiTime::from_unix(951_782_400).unwrap(); // 2000-02-29
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
    }

    #[test]
    fn auth2_header_layout_and_signature() {
        let h = crate::keys::tests::test_hierarchy();
        let time = EfiTime::from_unix(1_700_000_000).unwrap();
        let owner = Guid::parse("12345678-1234-1234-1234-123456789abc").unwrap();
        let files = hierarchy_auth_files(h, owner, time).unwrap();
        let a = &files.db_auth;
        assert_eq!(a[0..16], time.to_bytes());
        let dw = u32::from_le_bytes(a[16..20].try_into().unwrap()) as usize;
        assert_eq!(a[20..22], [0x00, 0x02]); // wRevision 0x0200
        assert_eq!(a[22..24], [0xf1, 0x0e]); // WIN_CERT_TYPE_EFI_GUID
        assert_eq!(a[24..40], EFI_CERT_TYPE_PKCS7.0);
        assert_eq!(&a[16 + dw..], files.db_esl.as_slice());
        let p7 = &a[40..16 + dw];
        let sd = crate::pkcs7::parse_signed_data(p7).unwrap();
        assert!(sd.content.is_none(), "detached");
        let signer = &sd.signers[0];
        let cert = crate::pkcs7::find_signer_cert(&sd.certificates, signer).unwrap();
        assert_eq!(cert, &h.kek.cert);
        let msg = auth2_signed_bytes(
            "db",
            EFI_IMAGE_SECURITY_DATABASE,
            ATTRS_SECURE_BOOT_DB,
            time,
            &files.db_esl,
        );
        assert!(crate::pkcs7::verify_rsa(
            cert,
            crate::asn1::oids::SHA256,
            &msg,
            signer.signature
        ));
        // Deterministic.
        assert_eq!(hierarchy_auth_files(h, owner, time).unwrap(), files);
    }
}
