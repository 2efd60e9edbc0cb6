//! One-line, human-readable descriptions of TCG event-log entries, shared by
//! `vmseal eventlog show`, the `.pcrs.json` writer ([`crate::measure::pcrs_json`]) and
//! `vmseal pcr diff` ([`crate::run::diff`]).
//!
//! The payload is decoded by [`policies::eventlog::Event::describe`]; this module only adds
//! what a person needs to act on: the contents of Secure Boot signature lists
//! (`EFI_SIGNATURE_LIST`, UEFI 2.10 §32.4.1; `shared/reference/measured-boot.md` §D.7) with the
//! subject CN and SHA-256 of every X.509 certificate, the description of a `Boot####`
//! `EFI_LOAD_OPTION` (UEFI 2.10 §3.1.3), and the names of the Linux EFI stub's tagged events
//! (§E.5). Anything that does not decode is shown as hex. Never panics on any input.

use policies::eventlog::{Event, Guid, Payload};
use policies::tcg::EventType;
use sha2::Digest as _;

/// `EFI_CERT_X509_GUID` a5c059a1-94e4-4aa7-87b5-ab155c2bf072, as serialized.
pub const CERT_X509: [u8; 16] = [
    0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72,
];
/// `EFI_CERT_SHA256_GUID` c1c41626-504c-4092-aca9-41f936934328, as serialized.
pub const CERT_SHA256: [u8; 16] = [
    0x26, 0x16, 0xc4, 0xc1, 0x4c, 0x50, 0x92, 0x40, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28,
];
/// Linux EFI stub tag of the initrd event (`INITRD_EVENT_TAG_ID`, efistub.h).
pub const TAG_LINUX_INITRD: u32 = 0x8F3B_22EC;
/// Linux EFI stub tag of the LoadOptions event (`LOAD_OPTIONS_EVENT_TAG_ID`, efistub.h).
pub const TAG_LINUX_LOAD_OPTIONS: u32 = 0x8F3B_22ED;

/// The spec name of an event type (`EV_EFI_ACTION`), or `0x%08x` for an unknown one.
pub fn type_name(t: EventType) -> String {
    t.name()
        .map_or_else(|| format!("{:#010x}", t.0), str::to_string)
}

/// The inverse of [`type_name`]: a spec name or a hex/decimal number.
pub fn parse_type_name(s: &str) -> Option<EventType> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).ok().map(EventType);
    }
    if let Ok(n) = s.parse::<u32>() {
        return Some(EventType(n));
    }
    // Every named type lives in 0x00..=0x12, 0x80000000..=0x80000010 or 0x800000E0..=E4.
    (0..=0x12u32)
        .chain(0x8000_0000..=0x8000_0010)
        .chain(0x8000_00E0..=0x8000_00E4)
        .map(EventType)
        .find(|t| t.name() == Some(s))
}

/// One line describing `e`'s payload.
pub fn describe(e: &Event) -> String {
    match e.describe() {
        Payload::SpecId(s) => {
            let banks: Vec<String> = s
                .algorithms
                .iter()
                .map(|(a, _)| {
                    a.name()
                        .map_or_else(|| format!("{:#06x}", a.0), str::to_string)
                })
                .collect();
            format!("Spec ID Event03, banks {}", banks.join(", "))
        }
        Payload::Variable { guid, name, data } => {
            format!(
                "{name} ({guid}): {}",
                variable_summary(e.event_type, &name, data)
            )
        }
        Payload::ImageLoad {
            location,
            length,
            device_path,
            ..
        } => format!(
            "image at {location:#x}, {length} bytes, device path {} bytes",
            device_path.len()
        ),
        Payload::Gpt {
            disk_guid,
            partitions,
            ..
        } => {
            format!("GPT of disk {disk_guid}, {partitions} partition(s)")
        }
        Payload::FirmwareBlob { base, length } => {
            format!("firmware volume at {base:#x}, {length:#x} bytes")
        }
        Payload::Tagged { id, data } => match id {
            TAG_LINUX_INITRD => "Linux initrd".into(),
            TAG_LINUX_LOAD_OPTIONS => {
                "Linux LOADED_IMAGE::LoadOptions (kernel command line)".into()
            }
            _ => format!("tag {id:#010x}: {}", text_or_hex(data)),
        },
        Payload::Text { text, .. } => format!("{text:?}"),
        Payload::Separator(0) => "separator".into(),
        Payload::Separator(v) => format!("separator {v:#x} (error)"),
        Payload::Raw(b) => format!("raw {}", short_hex(b)),
    }
}

fn text_or_hex(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if s.trim_end_matches('\0').chars().all(|c| !c.is_control()) => {
            format!("{:?}", s.trim_end_matches('\0'))
        }
        _ => short_hex(b),
    }
}

/// Hex of at most 64 bytes, with the total length when longer.
pub fn short_hex(b: &[u8]) -> String {
    if b.len() <= 64 {
        hex::encode(b)
    } else {
        format!("{}… ({} bytes)", hex::encode(&b[..64]), b.len())
    }
}

/// What a variable event holds, in words.
pub fn variable_summary(t: EventType, name: &str, data: &[u8]) -> String {
    if data.is_empty() {
        return "absent (measured with no data)".into();
    }
    if t == EventType::EFI_VARIABLE_AUTHORITY {
        return signature_data_summary(data, true);
    }
    match name {
        "SecureBoot" | "SetupMode" | "AuditMode" | "DeployedMode" if data.len() == 1 => {
            let v = data.first().copied().unwrap_or(0);
            format!("{v} ({})", if v == 1 { "enabled" } else { "disabled" })
        }
        "PK" | "KEK" | "db" | "dbx" | "dbt" | "dbr" => signature_lists_summary(data),
        "BootOrder" => data
            .chunks_exact(2)
            .map(|c| format!("Boot{:04X}", u16::from_le_bytes([c[0], c[1]])))
            .collect::<Vec<_>>()
            .join(","),
        n if n.starts_with("Boot") => load_option_summary(data),
        _ => short_hex(data),
    }
}

/// `EFI_LOAD_OPTION`: Attributes u32, FilePathListLength u16, Description (UTF-16, NUL).
fn load_option_summary(data: &[u8]) -> String {
    let desc: Vec<u16> = data
        .get(6..)
        .unwrap_or(&[])
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|c| *c != 0)
        .collect();
    format!("load option {:?}", String::from_utf16_lossy(&desc))
}

/// The entries of concatenated `EFI_SIGNATURE_LIST`s: certificates by CN and SHA-256,
/// hashes by count.
pub fn signature_lists_summary(data: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(list) = parse_list(rest) else {
            parts.push(format!("undecodable signature list {}", short_hex(rest)));
            break;
        };
        if list.sig_type == CERT_X509 {
            for e in &list.entries {
                parts.push(signature_data_summary(e, true));
            }
        } else if list.sig_type == CERT_SHA256 {
            parts.push(format!("{} SHA-256 hash(es)", list.entries.len()));
        } else {
            parts.push(format!(
                "{} entr(ies) of type {}",
                list.entries.len(),
                Guid(list.sig_type)
            ));
        }
        rest = rest.get(list.size..).unwrap_or(&[]);
    }
    parts.join("; ")
}

/// Most entries [`signature_lists_delta`] names one by one per direction; the rest are counted.
pub const DELTA_NAMED: usize = 8;

/// How one signature database (concatenated `EFI_SIGNATURE_LIST`s, e.g. `db`) differs from
/// another, entry by entry. Entries are compared by signature type and payload (the
/// certificate or hash), not by owner GUID or by how they are grouped into lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureDelta {
    /// Entries of `actual` that `expected` does not have, described as
    /// [`signature_data_summary`] does (at most [`DELTA_NAMED`], then "N more …").
    pub added: Vec<String>,
    /// Entries of `expected` that `actual` does not have, described the same way.
    pub removed: Vec<String>,
}

/// The entries of concatenated `EFI_SIGNATURE_LIST`s as (SignatureType, `EFI_SIGNATURE_DATA`),
/// or `None` when the data does not decode.
pub fn signature_entries(data: &[u8]) -> Option<Vec<([u8; 16], &[u8])>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let list = parse_list(rest)?;
        out.extend(list.entries.iter().map(|e| (list.sig_type, *e)));
        rest = rest.get(list.size..)?;
    }
    Some(out)
}

/// Which entries `actual` has that `expected` has not, and the reverse (see [`SignatureDelta`]);
/// `None` when either side does not decode. An absent variable (empty data) has no entries.
pub fn signature_lists_delta(expected: &[u8], actual: &[u8]) -> Option<SignatureDelta> {
    let exp = signature_entries(expected)?;
    let act = signature_entries(actual)?;
    // The payload after the 16-byte owner GUID identifies an entry.
    let key = |(t, e): &([u8; 16], &[u8])| (*t, e.get(16..).unwrap_or(&[]).to_vec());
    let exp_keys: Vec<_> = exp.iter().map(key).collect();
    let act_keys: Vec<_> = act.iter().map(key).collect();
    let only = |from: &[([u8; 16], &[u8])], other: &[([u8; 16], Vec<u8>)]| {
        let mut named = Vec::new();
        let mut more = 0usize;
        for entry in from {
            if other.contains(&key(entry)) {
                continue;
            }
            if named.len() < DELTA_NAMED {
                named.push(signature_data_summary(entry.1, entry.0 == CERT_X509));
            } else {
                more += 1;
            }
        }
        if more > 0 {
            named.push(format!("{more} more entr(ies)"));
        }
        named
    };
    Some(SignatureDelta {
        added: only(&act, &exp_keys),
        removed: only(&exp, &act_keys),
    })
}

/// One `EFI_SIGNATURE_LIST` (header and its `EFI_SIGNATURE_DATA` entries).
pub struct SignatureList<'a> {
    /// SignatureType.
    pub sig_type: [u8; 16],
    /// SignatureListSize.
    pub size: usize,
    /// The `EFI_SIGNATURE_DATA` entries (owner GUID ‖ payload), SignatureSize bytes each.
    pub entries: Vec<&'a [u8]>,
}

/// Parse the first `EFI_SIGNATURE_LIST` of `b`.
pub fn parse_list(b: &[u8]) -> Option<SignatureList<'_>> {
    let sig_type: [u8; 16] = b.get(0..16)?.try_into().ok()?;
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?) as usize);
    let size = u32_at(16)?;
    let header = u32_at(20)?;
    let sig_size = u32_at(24)?;
    let body = b.get(28usize.checked_add(header)?..size)?;
    if sig_size < 16 || !body.len().is_multiple_of(sig_size) {
        return None;
    }
    Some(SignatureList {
        sig_type,
        size,
        entries: body.chunks_exact(sig_size).collect(),
    })
}

/// One `EFI_SIGNATURE_DATA` (owner ‖ payload): a certificate by CN and SHA-256, else the hash.
pub fn signature_data_summary(entry: &[u8], maybe_cert: bool) -> String {
    let owner = entry.get(..16).and_then(|g| g.try_into().ok()).map(Guid);
    let payload = entry.get(16..).unwrap_or(&[]);
    let owner = owner.map_or_else(String::new, |g| format!(", owner {g}"));
    if maybe_cert && payload.first() == Some(&0x30) {
        let cn = x509_subject_cn(payload).unwrap_or_else(|| "?".into());
        format!(
            "certificate CN={cn} (sha256 {}){owner}",
            hex::encode(sha2::Sha256::digest(payload))
        )
    } else {
        format!("hash {}{owner}", hex::encode(payload))
    }
}

/// A DER TLV: (tag, contents, total length).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], usize)> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    Some((tag, b.get(hdr..end)?, end))
}

/// The DER bytes of the subject `Name` of an X.509 certificate (RFC 5280 §4.1).
pub fn x509_subject(cert: &[u8]) -> Option<&[u8]> {
    let (_, c, _) = tlv(cert)?;
    let (_, tbs, _) = tlv(c)?;
    let mut rest = tbs;
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let (tag, _, n) = tlv(rest)?;
        fields.push((tag, rest.get(..n)?));
        rest = rest.get(n..)?;
    }
    // [0] version (optional), serial, signature, issuer, validity, subject.
    let skip = usize::from(fields.first()?.0 == 0xA0);
    fields.get(skip + 4).map(|(_, b)| *b)
}

/// The issuer `Name` DER of an X.509 certificate.
pub fn x509_issuer(cert: &[u8]) -> Option<&[u8]> {
    let (_, c, _) = tlv(cert)?;
    let (_, tbs, _) = tlv(c)?;
    let mut rest = tbs;
    let mut fields = Vec::new();
    while !rest.is_empty() && fields.len() < 6 {
        let (tag, _, n) = tlv(rest)?;
        fields.push((tag, rest.get(..n)?));
        rest = rest.get(n..)?;
    }
    let skip = usize::from(fields.first()?.0 == 0xA0);
    fields.get(skip + 2).map(|(_, b)| *b)
}

/// The first commonName (2.5.4.3) of an X.509 certificate's subject.
pub fn x509_subject_cn(cert: &[u8]) -> Option<String> {
    name_cn(x509_subject(cert)?)
}

fn name_cn(name: &[u8]) -> Option<String> {
    let (_, mut rdns, _) = tlv(name)?;
    while !rdns.is_empty() {
        let (_, set, n) = tlv(rdns)?;
        let (_, atv, _) = tlv(set)?;
        let (_, oid, k) = tlv(atv)?;
        if oid == [0x55, 0x04, 0x03] {
            let (_, v, _) = tlv(atv.get(k..)?)?;
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        rdns = rdns.get(n..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for t in [
            EventType::EFI_ACTION,
            EventType::IPL,
            EventType::EFI_VARIABLE_AUTHORITY,
        ] {
            assert_eq!(parse_type_name(&type_name(t)), Some(t));
        }
        assert_eq!(type_name(EventType(0x1234)), "0x00001234");
        assert_eq!(parse_type_name("0x00001234"), Some(EventType(0x1234)));
        assert_eq!(parse_type_name("EV_NOPE"), None);
    }

    /// One `EFI_SIGNATURE_LIST` of type `t` holding `entries` (owner ‖ payload, equal sizes).
    fn list(t: [u8; 16], entries: &[(&[u8; 16], &[u8])]) -> Vec<u8> {
        let size = 16 + entries.first().map_or(0, |e| e.1.len());
        let mut v = t.to_vec();
        v.extend_from_slice(&((28 + size * entries.len()) as u32).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&(size as u32).to_le_bytes());
        for (owner, payload) in entries {
            v.extend_from_slice(*owner);
            v.extend_from_slice(payload);
        }
        v
    }

    /// A minimal DER "certificate" with just enough structure for the subject CN.
    fn cert(cn: &str) -> Vec<u8> {
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![tag, body.len() as u8];
            v.extend_from_slice(body);
            v
        }
        let atv = [tlv(0x06, &[0x55, 4, 3]), tlv(0x0c, cn.as_bytes())].concat();
        let name = tlv(0x30, &tlv(0x31, &tlv(0x30, &atv)));
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

    #[test]
    fn delta_names_the_added_and_the_removed_certificate() {
        let (a, b, c) = (cert("Org A db"), cert("Org B db"), cert("Org C db"));
        let (oa, ob) = ([0xA1; 16], [0xB1; 16]);
        let expected = list(CERT_X509, &[(&oa, &a)]);
        // The firmware's db: B in its own list, then A — A is the same entry.
        let actual = [list(CERT_X509, &[(&ob, &b)]), list(CERT_X509, &[(&oa, &a)])].concat();
        let d = signature_lists_delta(&expected, &actual).unwrap();
        assert_eq!(d.removed, Vec::<String>::new());
        assert_eq!(d.added.len(), 1, "{d:?}");
        let sha_b = hex::encode(sha2::Sha256::digest(&b));
        assert_eq!(
            d.added[0],
            format!(
                "certificate CN=Org B db (sha256 {sha_b}), owner b1b1b1b1-b1b1-b1b1-b1b1-b1b1b1b1b1b1"
            )
        );
        // A replaced by C: one added, one removed; the owner GUID does not matter.
        let replaced = list(CERT_X509, &[(&ob, &c)]);
        let d = signature_lists_delta(&expected, &replaced).unwrap();
        assert!(
            d.added[0].starts_with("certificate CN=Org C db (sha256 "),
            "{d:?}"
        );
        assert!(
            d.removed[0].starts_with("certificate CN=Org A db (sha256 "),
            "{d:?}"
        );
        let reowned = list(CERT_X509, &[(&ob, &a)]);
        assert_eq!(
            signature_lists_delta(&expected, &reowned),
            Some(SignatureDelta::default())
        );
        // An absent variable has no entries; undecodable data gives no delta.
        let d = signature_lists_delta(&[], &expected).unwrap();
        assert_eq!((d.added.len(), d.removed.len()), (1, 0));
        assert_eq!(signature_lists_delta(&expected, &[1, 2, 3]), None);
    }

    #[test]
    fn delta_counts_entries_beyond_the_named_ones() {
        let owner = [0x33; 16];
        let hashes: Vec<[u8; 32]> = (0..DELTA_NAMED as u8 + 3).map(|i| [i; 32]).collect();
        let entries: Vec<(&[u8; 16], &[u8])> =
            hashes.iter().map(|h| (&owner, h.as_slice())).collect();
        let d = signature_lists_delta(&[], &list(CERT_SHA256, &entries)).unwrap();
        assert_eq!(d.added.len(), DELTA_NAMED + 1, "{d:?}");
        assert_eq!(
            d.added[0],
            format!(
                "hash {}, owner 33333333-3333-3333-3333-333333333333",
                "00".repeat(32)
            )
        );
        assert_eq!(d.added[DELTA_NAMED], "3 more entr(ies)");
    }

    #[test]
    fn undecodable_data_never_panics() {
        for n in 0..80 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            for t in [
                EventType::EFI_VARIABLE_DRIVER_CONFIG,
                EventType::EFI_VARIABLE_AUTHORITY,
                EventType::EVENT_TAG,
                EventType(7),
            ] {
                let _ = describe(&Event {
                    pcr: 7,
                    event_type: t,
                    digests: vec![],
                    data: data.clone(),
                });
            }
            let _ = signature_lists_summary(&data);
            let _ = signature_lists_delta(&data, &data[..n / 2]);
            let _ = x509_subject_cn(&data);
        }
    }
}
