//! A minimal, read-only walk of an OVMF variable store (`OVMF_VARS*.fd`), for PCR 7
//! prediction.
//!
//! Interim: `signing::varstore` (the full parser/writer) is being written; until it lands,
//! this is the smallest reader the prediction needs. Layout (`shared/reference/measured-boot.md`
//! §D.3–D.5; EDK2 `MdeModulePkg/Include/Guid/VariableFormat.h`): `EFI_FIRMWARE_VOLUME_HEADER`
//! (`_FVH` at 0x28, HeaderLength u16 at 0x30), then `VARIABLE_STORE_HEADER` (the
//! authenticated-variable GUID, Size u32, Format 0x5A, State 0xFE), then
//! `AUTHENTICATED_VARIABLE_HEADER`s (60 bytes: StartId 0x55AA, State, Attributes, …,
//! NameSize, DataSize, VendorGuid) each followed by the UTF-16 name and the data, 4-byte
//! aligned. The walk stops at the first StartId ≠ 0x55AA. Only live variables (State 0x3F,
//! `VAR_ADDED`) are kept, later ones replacing earlier ones of the same name and GUID.
//! Bad input gives a [`VarsError`], never a panic.

use policies::eventlog::Guid;

/// `gEfiAuthenticatedVariableGuid` aaf32c78-947b-439a-a180-2e144ec37792, serialized.
const AUTH_VARIABLE_GUID: [u8; 16] = [
    0x78, 0x2c, 0xf3, 0xaa, 0x7b, 0x94, 0x9a, 0x43, 0xa1, 0x80, 0x2e, 0x14, 0x4e, 0xc3, 0x77, 0x92,
];
/// `EFI_GLOBAL_VARIABLE` 8be4df61-93ca-11d2-aa0d-00e098032b8c, serialized.
pub const GLOBAL_VARIABLE: [u8; 16] = [
    0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c,
];
/// `EFI_IMAGE_SECURITY_DATABASE_GUID` d719b2cb-3d3a-4596-a3bc-dad00e67656f, serialized.
pub const IMAGE_SECURITY_DATABASE: [u8; 16] = [
    0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f,
];
/// `SecureBootEnable`'s vendor GUID f0a30bc7-af08-4556-99c4-001009c93a44, serialized.
pub const SECURE_BOOT_ENABLE_GUID: [u8; 16] = [
    0xc7, 0x0b, 0xa3, 0xf0, 0x08, 0xaf, 0x56, 0x45, 0x99, 0xc4, 0x00, 0x10, 0x09, 0xc9, 0x3a, 0x44,
];

/// One live variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// VendorGuid.
    pub guid: [u8; 16],
    /// Name without the NUL.
    pub name: String,
    /// Attributes.
    pub attributes: u32,
    /// Data.
    pub data: Vec<u8>,
}

/// What is wrong with a variable store.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VarsError {
    /// No firmware-volume header.
    #[error("no firmware volume header (_FVH at offset 0x28) — give an OVMF_VARS*.fd file")]
    NoFvHeader,
    /// Not an authenticated variable store.
    #[error(
        "offset {0:#x}: variable store GUID is {1}, expected the authenticated-variable store aaf32c78-947b-439a-a180-2e144ec37792"
    )]
    NotAuthenticated(usize, Guid),
    /// A variable runs past the store.
    #[error("offset {0:#x}: variable header or contents run past the end of the store")]
    Truncated(usize),
    /// A name that is not UTF-16.
    #[error("offset {0:#x}: variable name is not valid UTF-16")]
    BadName(usize),
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// The live variables of a store image, in store order.
pub fn parse(b: &[u8]) -> Result<Vec<Variable>, VarsError> {
    if b.get(0x28..0x2C) != Some(b"_FVH") {
        return Err(VarsError::NoFvHeader);
    }
    let hdr = usize::from(u16_at(b, 0x30).ok_or(VarsError::NoFvHeader)?);
    let guid: [u8; 16] = b
        .get(hdr..hdr + 16)
        .and_then(|g| g.try_into().ok())
        .ok_or(VarsError::Truncated(hdr))?;
    if guid != AUTH_VARIABLE_GUID {
        return Err(VarsError::NotAuthenticated(hdr, Guid(guid)));
    }
    let size = u32_at(b, hdr + 16).ok_or(VarsError::Truncated(hdr))? as usize;
    let end = hdr
        .checked_add(size)
        .filter(|e| *e <= b.len())
        .unwrap_or(b.len());
    let mut at = hdr + 0x1C;
    let mut out: Vec<Variable> = Vec::new();
    while at + 60 <= end && u16_at(b, at) == Some(0x55AA) {
        let state = *b.get(at + 2).ok_or(VarsError::Truncated(at))?;
        let attributes = u32_at(b, at + 4).ok_or(VarsError::Truncated(at))?;
        let name_size = u32_at(b, at + 36).ok_or(VarsError::Truncated(at))? as usize;
        let data_size = u32_at(b, at + 40).ok_or(VarsError::Truncated(at))? as usize;
        let guid: [u8; 16] = b
            .get(at + 44..at + 60)
            .and_then(|g| g.try_into().ok())
            .ok_or(VarsError::Truncated(at))?;
        let name_end = (at + 60)
            .checked_add(name_size)
            .ok_or(VarsError::Truncated(at))?;
        let data_end = name_end
            .checked_add(data_size)
            .ok_or(VarsError::Truncated(at))?;
        if data_end > end {
            return Err(VarsError::Truncated(at));
        }
        let name_units: Vec<u16> = b
            .get(at + 60..name_end)
            .ok_or(VarsError::Truncated(at))?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|c| *c != 0)
            .collect();
        let name = String::from_utf16(&name_units).map_err(|_| VarsError::BadName(at))?;
        if state == 0x3F {
            let data = b
                .get(name_end..data_end)
                .ok_or(VarsError::Truncated(at))?
                .to_vec();
            out.retain(|v| !(v.guid == guid && v.name == name));
            out.push(Variable {
                guid,
                name,
                attributes,
                data,
            });
        }
        at = data_end.div_ceil(4) * 4;
    }
    Ok(out)
}

/// The variable `name` of vendor `guid`.
pub fn get<'a>(vars: &'a [Variable], guid: &[u8; 16], name: &str) -> Option<&'a Variable> {
    vars.iter().find(|v| &v.guid == guid && v.name == name)
}

/// The `SecureBoot` value the firmware computes at boot (`AuthVariableLib.c →
/// AuthVariableLibInitialize`, measured-boot.md §B.2): 1 iff PK is present and
/// `SecureBootEnable` is missing or 1.
pub fn secure_boot_value(vars: &[Variable]) -> u8 {
    let pk = get(vars, &GLOBAL_VARIABLE, "PK").is_some_and(|v| !v.data.is_empty());
    let enable = get(vars, &SECURE_BOOT_ENABLE_GUID, "SecureBootEnable")
        .is_none_or(|v| v.data.first() == Some(&1));
    u8::from(pk && enable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(vars: &[(&[u8; 16], &str, &[u8], u8)]) -> Vec<u8> {
        let mut b = vec![0u8; 0x48];
        b[0x28..0x2C].copy_from_slice(b"_FVH");
        b[0x30..0x32].copy_from_slice(&0x48u16.to_le_bytes());
        b.extend_from_slice(&AUTH_VARIABLE_GUID);
        b.extend_from_slice(&0x1000u32.to_le_bytes());
        b.extend_from_slice(&[0x5A, 0xFE, 0, 0, 0, 0, 0, 0]);
        for (guid, name, data, state) in vars {
            let name: Vec<u8> = name
                .encode_utf16()
                .chain([0])
                .flat_map(u16::to_le_bytes)
                .collect();
            let mut h = vec![0u8; 60];
            h[0..2].copy_from_slice(&0x55AAu16.to_le_bytes());
            h[2] = *state;
            h[4..8].copy_from_slice(&0x27u32.to_le_bytes());
            h[36..40].copy_from_slice(&(name.len() as u32).to_le_bytes());
            h[40..44].copy_from_slice(&(data.len() as u32).to_le_bytes());
            h[44..60].copy_from_slice(*guid);
            b.extend_from_slice(&h);
            b.extend_from_slice(&name);
            b.extend_from_slice(data);
            while !b.len().is_multiple_of(4) {
                b.push(0xFF);
            }
        }
        b.resize(0x48 + 0x1000, 0xFF);
        b
    }

    #[test]
    fn walks_live_variables() {
        let b = store(&[
            (&GLOBAL_VARIABLE, "PK", b"old", 0x3C),
            (&GLOBAL_VARIABLE, "PK", b"pk!", 0x3F),
            (&IMAGE_SECURITY_DATABASE, "db", b"dbdata", 0x3F),
        ]);
        let v = parse(&b).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(get(&v, &GLOBAL_VARIABLE, "PK").unwrap().data, b"pk!");
        assert_eq!(secure_boot_value(&v), 1);
        let off = store(&[
            (&GLOBAL_VARIABLE, "PK", b"pk", 0x3F),
            (&SECURE_BOOT_ENABLE_GUID, "SecureBootEnable", &[0], 0x3F),
        ]);
        assert_eq!(secure_boot_value(&parse(&off).unwrap()), 0);
        assert_eq!(parse(&b[..0x20]), Err(VarsError::NoFvHeader));
        for n in 0..b.len().min(0x100) {
            let _ = parse(&b[..n]);
        }
    }

    #[test]
    fn pristine_debian_store_has_no_keys() {
        let Ok(b) = std::fs::read(crate::boot::OVMF_VARS) else {
            eprintln!("skipped: {} not installed", crate::boot::OVMF_VARS);
            return;
        };
        let v = parse(&b).unwrap();
        assert!(get(&v, &GLOBAL_VARIABLE, "PK").is_none());
        assert_eq!(secure_boot_value(&v), 0);
    }
}
