//! One-line, human-readable descriptions of TCG event-log entries, shared by
//! `vmseal eventlog show`, the `.pcrs.json` writer ([`crate::pcrs_json`]) and
//! `vmseal pcr diff` ([`crate::diff`]).
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
            let _ = x509_subject_cn(&data);
        }
    }
}
