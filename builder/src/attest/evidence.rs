//! The evidence an appliance sends, as separate files or as one **evidence bundle**.
//!
//! Separate files are what tpm2-tools and the kernel write: `tpm2_quote -m` (the
//! `TPMS_ATTEST`), `tpm2_quote -s` (the `TPMT_SIGNATURE`), `tpm2_createak -u` (the AK's
//! `TPM2B_PUBLIC`; a PEM or DER SubjectPublicKeyInfo is accepted too),
//! `/sys/kernel/security/tpm0/binary_bios_measurements` (the event log), and the nonce in hex.
//!
//! The bundle is one JSON object, the format the key-release server and the in-appliance
//! agent exchange (`docs/attestation.md`):
//!
//! ```json
//! {"format": 1, "quote": "<base64>", "signature": "<base64>", "ak": "<base64>",
//!  "eventlog": "<base64>", "nonce": "<base64>", "caller": "hello"}
//! ```
//!
//! `format` is optional (1); `caller` is optional (the partition name of a hypervisor-mode
//! quote); other keys are ignored, so later versions can add optional ones. Base64 is the
//! standard alphabet with padding (RFC 4648 §4).

use std::path::Path;

use base64::Engine as _;

use super::{InputError, Source};

/// The largest quote, signature or AK file read (real ones are a few hundred bytes).
pub const MAX_PART_BYTES: u64 = 64 << 10;
/// The largest bundle read: a maximal event log in base64, and room for the rest.
pub const MAX_BUNDLE_BYTES: u64 = crate::measure::eventlog::MAX_LOG_BYTES / 3 * 4 + (1 << 20);
/// The most bytes of a nonce: a `TPM2B_DATA` holds at most the largest digest (SHA-512).
pub const MAX_NONCE: usize = 64;
/// The bundle format this version writes and reads.
pub const BUNDLE_FORMAT: u64 = 1;

/// What an appliance sends, as bytes, with where each part came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The `TPMS_ATTEST` (a `TPM2B_ATTEST` with its size prefix is accepted too).
    pub quote: Vec<u8>,
    /// The `TPMT_SIGNATURE`.
    pub signature: Vec<u8>,
    /// The AK: `TPM2B_PUBLIC`, `TPMT_PUBLIC`, or a PEM/DER SubjectPublicKeyInfo.
    pub ak: Vec<u8>,
    /// The binary TCG2 event log.
    pub eventlog: Vec<u8>,
    /// The nonce the appliance says it quoted (a verifier compares the quote with its own).
    pub nonce: Vec<u8>,
    /// The partition that asked for a hypervisor-mode quote, if the appliance says so.
    pub caller: Option<String>,
    /// Where each part came from, for messages.
    pub sources: Sources,
}

/// Where each part of an [`Evidence`] came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sources {
    /// Of [`Evidence::quote`].
    pub quote: Source,
    /// Of [`Evidence::signature`].
    pub signature: Source,
    /// Of [`Evidence::ak`].
    pub ak: Source,
    /// Of [`Evidence::eventlog`].
    pub eventlog: Source,
    /// Of [`Evidence::nonce`].
    pub nonce: Source,
}

/// The separate files of [`Evidence::from_files`].
#[derive(Clone, Copy, Debug)]
pub struct Files<'a> {
    /// `tpm2_quote -m`.
    pub quote: &'a Path,
    /// `tpm2_quote -s`.
    pub signature: &'a Path,
    /// `tpm2_createak -u` (or PEM/DER).
    pub ak: &'a Path,
    /// The binary event log.
    pub eventlog: &'a Path,
}

/// Read at most `max` bytes of `path`; larger files, missing files and empty files are
/// errors naming the file and the fix.
fn read_limited(path: &Path, max: u64, what: &str, fix: &str) -> Result<Vec<u8>, InputError> {
    let src = Source::file(path);
    let meta = std::fs::metadata(path)
        .map_err(|e| src.error(what, format!("cannot read: {e}"), fix.to_string()))?;
    if meta.is_dir() {
        return Err(src.error(what, "is a directory", fix.to_string()));
    }
    if meta.len() > max {
        return Err(src.error(
            what,
            format!("{} bytes, at most {max}", meta.len()),
            fix.to_string(),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| src.error(what, format!("cannot read: {e}"), fix.to_string()))?;
    if bytes.is_empty() {
        return Err(src.error(what, "the file is empty", fix.to_string()));
    }
    Ok(bytes)
}

/// A nonce given in hex (`--nonce`): 1 to [`MAX_NONCE`] bytes.
pub fn parse_nonce_hex(text: &str) -> Result<Vec<u8>, InputError> {
    let src = Source {
        file: "command line".into(),
        field: None,
    };
    let fix = "give the nonce the quote was made for, in hex (as tpm2_quote -q takes it)";
    let t = text.trim();
    let bytes = hex::decode(t.strip_prefix("0x").unwrap_or(t))
        .map_err(|e| src.error("--nonce", format!("{t:?} is not hex: {e}"), fix))?;
    if bytes.is_empty() || bytes.len() > MAX_NONCE {
        return Err(src.error(
            "--nonce",
            format!("{} bytes, a nonce has 1 to {MAX_NONCE}", bytes.len()),
            fix,
        ));
    }
    Ok(bytes)
}

impl Evidence {
    /// The parts from separate files, with the nonce the appliance was given (hex).
    pub fn from_files(
        files: Files<'_>,
        nonce_hex: &str,
        caller: Option<String>,
    ) -> Result<Self, InputError> {
        let quote = read_limited(
            files.quote,
            MAX_PART_BYTES,
            "quote",
            "give the TPMS_ATTEST that `tpm2_quote -m` writes",
        )?;
        let signature = read_limited(
            files.signature,
            MAX_PART_BYTES,
            "signature",
            "give the TPMT_SIGNATURE that `tpm2_quote -s` writes",
        )?;
        let ak = read_limited(
            files.ak,
            MAX_PART_BYTES,
            "ak",
            "give the AK's TPM2B_PUBLIC (`tpm2_createak -u`) or its PEM/DER public key",
        )?;
        let eventlog = read_limited(
            files.eventlog,
            crate::measure::eventlog::MAX_LOG_BYTES,
            "eventlog",
            "give the binary event log (binary_bios_measurements, a record's eventlog.bin)",
        )?;
        let nonce = parse_nonce_hex(nonce_hex)?;
        Ok(Self {
            quote,
            signature,
            ak,
            eventlog,
            nonce,
            caller,
            sources: Sources {
                quote: Source::file(files.quote),
                signature: Source::file(files.signature),
                ak: Source::file(files.ak),
                eventlog: Source::file(files.eventlog),
                nonce: Source {
                    file: "command line".into(),
                    field: Some("--nonce".into()),
                },
            },
        })
    }

    /// Read a bundle file.
    pub fn from_bundle(path: &Path) -> Result<Self, InputError> {
        let text = read_limited(
            path,
            MAX_BUNDLE_BYTES,
            "evidence",
            "give an evidence bundle (JSON: quote, signature, ak, eventlog, nonce in base64; docs/attestation.md)",
        )?;
        Self::parse_bundle(&text, &path.display().to_string())
    }

    /// Parse a bundle; `file` names it in errors.
    pub fn parse_bundle(text: &[u8], file: &str) -> Result<Self, InputError> {
        let top = Source {
            file: file.to_string(),
            field: None,
        };
        let fix = "give an evidence bundle: a JSON object with quote, signature, ak, eventlog and nonce in base64 (docs/attestation.md)";
        let v: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| top.error("(document)", format!("not JSON: {e}"), fix))?;
        let obj = v
            .as_object()
            .ok_or_else(|| top.error("(document)", "not a JSON object", fix))?;
        match obj.get("format") {
            None => {}
            Some(f) if f.as_u64() == Some(BUNDLE_FORMAT) => {}
            Some(f) => {
                return Err(top.error(
                    "format",
                    format!("{f} is not format {BUNDLE_FORMAT}"),
                    "give a bundle of format 1, or a vmseal that reads this format",
                ));
            }
        }
        let field = |name: &str, what: &str| -> Result<Vec<u8>, InputError> {
            let fix = format!("set \"{name}\" to {what}, in base64 (standard alphabet, padded)");
            let s = match obj.get(name) {
                None => return Err(top.error(name, "missing", fix)),
                Some(serde_json::Value::String(s)) => s,
                Some(other) => {
                    return Err(top.error(
                        name,
                        format!("a {}, not a base64 string", json_kind(other)),
                        fix,
                    ));
                }
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| top.error(name, format!("not base64: {e}"), fix.clone()))?;
            if bytes.is_empty() {
                return Err(top.error(name, "empty", fix));
            }
            Ok(bytes)
        };
        let quote = field("quote", "the TPMS_ATTEST of TPM2_Quote")?;
        let signature = field("signature", "the quote's TPMT_SIGNATURE")?;
        let ak = field("ak", "the AK's TPM2B_PUBLIC (or a DER/PEM public key)")?;
        let eventlog = field("eventlog", "the binary TCG2 event log")?;
        let nonce = field("nonce", "the nonce the quote was made for")?;
        if nonce.len() > MAX_NONCE {
            return Err(top.error(
                "nonce",
                format!("{} bytes, a nonce has 1 to {MAX_NONCE}", nonce.len()),
                "give the nonce the verifier handed out",
            ));
        }
        let caller = match obj.get("caller") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s))
                if !s.is_empty() && s.len() <= policies::attest::MAX_NAME =>
            {
                Some(s.clone())
            }
            Some(other) => {
                return Err(top.error(
                    "caller",
                    format!("{other} is not a partition name"),
                    format!(
                        "set \"caller\" to the partition name (1 to {} bytes) or leave it out",
                        policies::attest::MAX_NAME
                    ),
                ));
            }
        };
        Ok(Self {
            quote,
            signature,
            ak,
            eventlog,
            nonce,
            caller,
            sources: Sources {
                quote: Source::bundle(file, "quote"),
                signature: Source::bundle(file, "signature"),
                ak: Source::bundle(file, "ak"),
                eventlog: Source::bundle(file, "eventlog"),
                nonce: Source::bundle(file, "nonce"),
            },
        })
    }

    /// The bundle JSON of this evidence.
    pub fn to_bundle(&self) -> serde_json::Value {
        let b = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut v = serde_json::json!({
            "format": BUNDLE_FORMAT,
            "quote": b(&self.quote),
            "signature": b(&self.signature),
            "ak": b(&self.ak),
            "eventlog": b(&self.eventlog),
            "nonce": b(&self.nonce),
        });
        if let (Some(c), Some(o)) = (&self.caller, v.as_object_mut()) {
            o.insert("caller".into(), c.clone().into());
        }
        v
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Evidence {
        let file = "b.json";
        Evidence {
            quote: vec![1, 2],
            signature: vec![3],
            ak: vec![4],
            eventlog: vec![5, 6, 7],
            nonce: vec![8; 16],
            caller: Some("hello".into()),
            sources: Sources {
                quote: Source::bundle(file, "quote"),
                signature: Source::bundle(file, "signature"),
                ak: Source::bundle(file, "ak"),
                eventlog: Source::bundle(file, "eventlog"),
                nonce: Source::bundle(file, "nonce"),
            },
        }
    }

    #[test]
    fn a_bundle_round_trips() {
        let e = sample();
        let text = serde_json::to_vec(&e.to_bundle()).unwrap();
        assert_eq!(Evidence::parse_bundle(&text, "b.json").unwrap(), e);
    }

    #[test]
    fn bundle_errors_name_the_field_and_the_fix() {
        let mut v = sample().to_bundle();
        v["quote"] = "not*base64".into();
        let e = Evidence::parse_bundle(v.to_string().as_bytes(), "b.json").unwrap_err();
        assert_eq!((e.file.as_str(), e.field.as_str()), ("b.json", "quote"));
        assert!(e.fix.contains("base64"), "{e}");
        let mut v = sample().to_bundle();
        v.as_object_mut().unwrap().remove("eventlog");
        let e = Evidence::parse_bundle(v.to_string().as_bytes(), "b.json").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.problem.as_str()),
            ("eventlog", "missing")
        );
        let e = Evidence::parse_bundle(b"[1]", "b.json").unwrap_err();
        assert_eq!(e.problem, "not a JSON object");
        assert!(parse_nonce_hex("zz").is_err());
        assert!(parse_nonce_hex("").is_err());
        assert_eq!(parse_nonce_hex("0x0aff").unwrap(), [0x0a, 0xff]);
    }
}
