//! Azure: the `uefiSettings` of a Compute Gallery image version (Trusted Launch and
//! confidential VMs with custom Secure Boot keys). Schema: the Compute REST API's
//! `GalleryImageVersionUefiSettings` — `signatureTemplateNames` (vmseal: `NoSignatureTemplate`,
//! so only the org's keys are trusted) and `additionalSignatures` (`UefiKeySignatures`: `pk` one
//! `UefiKey`, `kek`/`db`/`dbx` lists of `UefiKey`), each `UefiKey` a `type` (`x509` or
//! `sha256`) and a `value` list of base64 strings (DER certificates, raw SHA-256 digests).

use base64::Engine as _;
use serde_json::{Value, json};

use super::keys::{Entry, SecureBootDbs};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The entries of one database as `UefiKey`s: one per type, certificates first, in store order.
fn uefi_keys(entries: &[Entry]) -> Vec<Value> {
    let certs: Vec<String> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::X509(d) => Some(b64(d)),
            Entry::Sha256(_) => None,
        })
        .collect();
    let hashes: Vec<String> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Sha256(h) => Some(b64(h)),
            Entry::X509(_) => None,
        })
        .collect();
    let mut keys = Vec::new();
    if !certs.is_empty() {
        keys.push(json!({ "type": "x509", "value": certs }));
    }
    if !hashes.is_empty() {
        keys.push(json!({ "type": "sha256", "value": hashes }));
    }
    keys
}

/// The image version body fragment: `{"properties": {"securityProfile": {"uefiSettings": …}}}`.
pub fn image_version_settings(dbs: &SecureBootDbs) -> Value {
    let pk = uefi_keys(&dbs.pk).into_iter().next().unwrap_or(Value::Null);
    let mut additional = json!({
        "pk": pk,
        "kek": uefi_keys(&dbs.kek),
        "db": uefi_keys(&dbs.db),
    });
    let dbx = uefi_keys(&dbs.dbx);
    if !dbx.is_empty() {
        additional["dbx"] = Value::Array(dbx);
    }
    json!({
        "properties": {
            "securityProfile": {
                "uefiSettings": {
                    "signatureTemplateNames": ["NoSignatureTemplate"],
                    "additionalSignatures": additional,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_by_type_certificates_first() {
        let dbs = SecureBootDbs {
            pk: vec![Entry::X509(vec![1])],
            kek: vec![Entry::X509(vec![2])],
            db: vec![
                Entry::Sha256([0; 32]),
                Entry::X509(vec![3]),
                Entry::X509(vec![4]),
            ],
            dbx: vec![],
        };
        let v = image_version_settings(&dbs);
        let a = &v["properties"]["securityProfile"]["uefiSettings"]["additionalSignatures"];
        assert_eq!(a["pk"], json!({"type": "x509", "value": ["AQ=="]}));
        assert_eq!(
            a["db"],
            json!([
                {"type": "x509", "value": ["Aw==", "BA=="]},
                {"type": "sha256", "value": ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}
            ])
        );
        assert!(a.get("dbx").is_none());
    }
}
