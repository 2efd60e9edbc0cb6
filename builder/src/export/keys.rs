//! The org's Secure Boot databases as the clouds take them: read from the variable store the
//! appliance boots with (`NAME.vars.fd`), so every cloud gets exactly the PK, KEK, db and dbx
//! that PCR 7 was predicted for.
//!
//! Each variable is a list of `EFI_SIGNATURE_LIST`s (UEFI 2.10 §32.4.1). The clouds take
//! X.509 certificates (DER) and SHA-256 hashes; any other signature type (e.g. an
//! `EFI_CERT_X509_SHA256` revocation) cannot be expressed and is refused, never dropped.

use signing::efivar::{
    self, EFI_CERT_SHA256, EFI_CERT_X509, EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, Guid,
};
use signing::varstore::VarStore;

/// One database entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A DER X.509 certificate.
    X509(Vec<u8>),
    /// A SHA-256 hash (an image's Authenticode digest, or the empty-data hash of a default dbx).
    Sha256([u8; 32]),
}

/// The four Secure Boot databases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecureBootDbs {
    /// PK (exactly one X.509 certificate).
    pub pk: Vec<Entry>,
    /// KEK.
    pub kek: Vec<Entry>,
    /// db.
    pub db: Vec<Entry>,
    /// dbx (may be empty).
    pub dbx: Vec<Entry>,
}

/// The variables in the order the clouds list them, with their vendor GUIDs.
pub const VARIABLES: [(&str, Guid); 4] = [
    ("PK", EFI_GLOBAL_VARIABLE),
    ("KEK", EFI_GLOBAL_VARIABLE),
    ("db", EFI_IMAGE_SECURITY_DATABASE),
    ("dbx", EFI_IMAGE_SECURITY_DATABASE),
];

impl SecureBootDbs {
    /// The databases of a parsed store. An error is a one-line reason (the caller names the
    /// file): no PK, a PK that is not one certificate, an empty KEK or db, a signature type
    /// the clouds cannot take.
    pub fn from_store(store: &VarStore) -> Result<Self, String> {
        let mut dbs = Self::default();
        for (name, guid) in VARIABLES {
            let data = store
                .get(name, guid)
                .map(|v| v.data.as_slice())
                .unwrap_or(&[]);
            let lists = efivar::parse_lists(data).map_err(|e| format!("{name}: {e}"))?;
            let mut entries = Vec::new();
            for l in lists {
                for e in l.entries {
                    entries.push(if l.sig_type == EFI_CERT_X509 {
                        Entry::X509(e.data)
                    } else if l.sig_type == EFI_CERT_SHA256 {
                        Entry::Sha256(e.data.as_slice().try_into().map_err(|_| {
                            format!("{name}: an EFI_CERT_SHA256 entry of {} bytes", e.data.len())
                        })?)
                    } else {
                        return Err(format!(
                            "{name}: signature type {} cannot be exported (the clouds take X.509 certificates and SHA-256 hashes)",
                            l.sig_type
                        ));
                    });
                }
            }
            match name {
                "PK" => dbs.pk = entries,
                "KEK" => dbs.kek = entries,
                "db" => dbs.db = entries,
                _ => dbs.dbx = entries,
            }
        }
        match dbs.pk.as_slice() {
            [] => {
                return Err("the store has no PK (Secure Boot keys are not enrolled) — give the NAME.vars.fd of a signed build (`vmseal vars --keys DIR`), or export without keys (--no-keys)".into());
            }
            [Entry::X509(_)] => {}
            _ => return Err("PK must be exactly one X.509 certificate".into()),
        }
        if dbs.kek.is_empty() || dbs.db.is_empty() {
            return Err("the store has an empty KEK or db — enroll the org keys with `vmseal vars --keys DIR`".into());
        }
        Ok(dbs)
    }

    /// `(variable name, its entries)` in [`VARIABLES`] order.
    pub fn each(&self) -> [(&'static str, &[Entry]); 4] {
        [
            ("PK", &self.pk),
            ("KEK", &self.kek),
            ("db", &self.db),
            ("dbx", &self.dbx),
        ]
    }
}
