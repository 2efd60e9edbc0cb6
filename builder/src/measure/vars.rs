//! The OVMF variable store as PCR 7 prediction needs it: the live variables, and the
//! `SecureBoot` value the firmware computes from them.
//!
//! Parsing is `signing::varstore` (the store reader/writer, checked against `virt-fw-vars`);
//! this module only adapts its variables and names the GUIDs of the Secure Boot policy
//! (`shared/reference/measured-boot.md` §B.2, §D.7). Bad input gives a [`VarsError`], never a
//! panic.

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
#[derive(Debug, thiserror::Error)]
#[error("{0} — give an OVMF_VARS*.fd file (e.g. NAME.vars.fd from vmseal build)")]
pub struct VarsError(#[from] signing::varstore::VarStoreError);

/// The live variables of a store image, in store order.
pub fn parse(b: &[u8]) -> Result<Vec<Variable>, VarsError> {
    let store = signing::varstore::VarStore::parse(b)?;
    Ok(store
        .variables
        .into_iter()
        .map(|v| Variable {
            guid: v.guid.0,
            name: v.name,
            attributes: v.attributes,
            data: v.data,
        })
        .collect())
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

    fn var(guid: [u8; 16], name: &str, data: &[u8]) -> Variable {
        Variable {
            guid,
            name: name.into(),
            attributes: 0x27,
            data: data.to_vec(),
        }
    }

    #[test]
    fn secure_boot_follows_pk_and_secure_boot_enable() {
        let pk = var(GLOBAL_VARIABLE, "PK", b"pk");
        assert_eq!(secure_boot_value(&[]), 0);
        assert_eq!(secure_boot_value(std::slice::from_ref(&pk)), 1);
        let off = var(SECURE_BOOT_ENABLE_GUID, "SecureBootEnable", &[0]);
        assert_eq!(secure_boot_value(&[pk.clone(), off]), 0);
        let on = var(SECURE_BOOT_ENABLE_GUID, "SecureBootEnable", &[1]);
        assert_eq!(secure_boot_value(&[pk, on]), 1);
        assert!(parse(&[0u8; 0x100]).is_err());
    }

    #[test]
    fn pristine_debian_store_has_no_keys() {
        let Ok(b) = std::fs::read(crate::measure::ovmf::OVMF_VARS) else {
            eprintln!("skipped: {} not installed", crate::measure::ovmf::OVMF_VARS);
            return;
        };
        let v = parse(&b).unwrap();
        assert!(get(&v, &GLOBAL_VARIABLE, "PK").is_none());
        assert_eq!(secure_boot_value(&v), 0);
    }
}
