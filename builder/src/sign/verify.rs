//! `vmseal verify`: do an image's signatures and digests hold?
//!
//! Checks, each reported by name: the appliance PE's Authenticode signature (against
//! `--cert` and/or the X.509 entries of db in `--vars`, EDK2's rule: any one signature
//! trusted is enough), the same for the PE in `.linux` when there is one, that neither the
//! image's Authenticode SHA-256 nor a signer certificate is in dbx (with `--vars`), and every
//! PE section's SHA-256 against `NAME.lock.json` next to the image (when present). Bad input
//! gives an error (exit 2), a failed check a report with `ok: false` (exit 1).

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::Digest as _;
use signing::authenticode;
use signing::efivar::{self, EFI_CERT_SHA256, EFI_CERT_X509, EFI_IMAGE_SECURITY_DATABASE};
use signing::keys::{self, Certificate};

use crate::sign::image::{SignCmdError, lock_path, read_boot_file};

/// `vmseal verify` options.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// NAME.img or NAME.efi.
    pub image: PathBuf,
    /// Trusted certificates.
    pub certs: Vec<PathBuf>,
    /// A variable store whose db (and dbx) to use.
    pub vars: Option<PathBuf>,
}

/// One check.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked (`signature: appliance PE`, `section .guest`, …).
    pub check: String,
    /// Whether it holds.
    pub ok: bool,
    /// Details.
    pub detail: String,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The image.
    pub image: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// All checks hold.
    pub ok: bool,
}

/// Why verification could not run (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file is unreadable or malformed.
    #[error("{file}: {why} — {fix}")]
    Input {
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
        /// The fix.
        fix: &'static str,
    },
    /// Reading the image failed.
    #[error(transparent)]
    Image(#[from] SignCmdError),
}

fn input(file: &Path, why: impl ToString, fix: &'static str) -> VerifyError {
    VerifyError::Input {
        file: file.display().to_string(),
        why: why.to_string(),
        fix,
    }
}

fn sections(pe: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let p = goblin::pe::PE::parse(pe).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for s in &p.sections {
        let name = String::from_utf8_lossy(&s.name)
            .trim_end_matches('\0')
            .to_string();
        let start = s.pointer_to_raw_data as usize;
        let len = s.virtual_size.min(s.size_of_raw_data) as usize;
        let bytes = pe
            .get(start..start.saturating_add(len))
            .ok_or_else(|| format!("section {name} runs past the end of the file"))?;
        out.push((name, bytes.to_vec()));
    }
    Ok(out)
}

fn sig_check(what: &str, pe: &[u8], trusted: &[Certificate], checks: &mut Vec<Check>) -> Vec<u8> {
    match authenticode::verify(pe, trusted) {
        Ok(r) => {
            let detail = if r.signatures.is_empty() {
                "not signed".to_string()
            } else {
                r.signatures
                    .iter()
                    .map(|s| {
                        format!(
                            "#{}: signer {}, {}",
                            s.index,
                            s.signer.as_deref().unwrap_or("?"),
                            match (&s.trusted_by, &s.problem) {
                                (Some(t), None) if s.ok() => format!("trusted by {t}"),
                                (_, Some(p)) => p.clone(),
                                _ if !s.digest_matches =>
                                    "image digest does not match (modified after signing)".into(),
                                _ if !s.signature_valid => "RSA signature invalid".into(),
                                _ => "signer not trusted".into(),
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            checks.push(Check {
                check: format!("signature: {what}"),
                ok: r.ok(),
                detail,
            });
            r.sha256
        }
        Err(e) => {
            checks.push(Check {
                check: format!("signature: {what}"),
                ok: false,
                detail: e.to_string(),
            });
            Vec::new()
        }
    }
}

/// Run every check.
pub fn verify(opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let name = opts.image.display().to_string();
    let bytes = std::fs::read(&opts.image)
        .map_err(|e| input(&opts.image, e, "give NAME.img or NAME.efi"))?;
    let pe = if bytes.starts_with(b"MZ") {
        bytes
    } else {
        read_boot_file(&opts.image)?
    };
    let mut trusted = Vec::new();
    for c in &opts.certs {
        trusted.push(
            keys::load_cert(c)
                .map_err(|e| input(c, e, "give a PEM or DER certificate (db.crt)"))?,
        );
    }
    let mut dbx_hashes = Vec::new();
    let mut dbx_certs = Vec::new();
    if let Some(v) = &opts.vars {
        let b = std::fs::read(v).map_err(|e| input(v, e, "give an OVMF_VARS*.fd file"))?;
        let store = signing::varstore::VarStore::parse(&b)
            .map_err(|e| input(v, e, "give an OVMF_VARS*.fd file (NAME.vars.fd)"))?;
        for (var, out_x509, out_hash) in [
            ("db", Some(&mut trusted), None),
            ("dbx", Some(&mut dbx_certs), Some(&mut dbx_hashes)),
        ] {
            let Some(x) = store.get(var, EFI_IMAGE_SECURITY_DATABASE) else {
                continue;
            };
            let lists = efivar::parse_lists(&x.data)
                .map_err(|e| input(v, format!("{var}: {e}"), "regenerate the store"))?;
            let mut out_x509 = out_x509;
            let mut out_hash = out_hash;
            for l in lists {
                for e in l.entries {
                    if l.sig_type == EFI_CERT_X509 {
                        if let (Some(o), Ok(c)) =
                            (out_x509.as_deref_mut(), Certificate::from_der(&e.data))
                        {
                            o.push(c);
                        }
                    } else if l.sig_type == EFI_CERT_SHA256
                        && let Some(h) = out_hash.as_deref_mut()
                    {
                        h.push(e.data);
                    }
                }
            }
        }
    }
    if trusted.is_empty() {
        return Err(input(
            &opts.image,
            "nothing to verify against",
            "give --cert db.crt or --vars NAME.vars.fd (with db enrolled)",
        ));
    }
    let mut checks = Vec::new();
    let auth = sig_check("appliance PE", &pe, &trusted, &mut checks);
    let secs = sections(&pe).map_err(|e| input(&opts.image, e, "give a vmseal image"))?;
    let mut linux_auth = None;
    if let Some((_, linux)) = secs.iter().find(|(n, _)| n == policies::sections::LINUX) {
        linux_auth = Some(sig_check(".linux kernel", linux, &trusted, &mut checks));
    }
    if opts.vars.is_some() {
        let mut hit = Vec::new();
        for (what, a) in
            std::iter::once(("appliance PE", &auth)).chain(linux_auth.iter().map(|a| (".linux", a)))
        {
            if dbx_hashes.iter().any(|h| h == a) {
                hit.push(format!("{what} hash {}", hex::encode(a)));
            }
        }
        for c in &dbx_certs {
            if trusted.iter().any(|t| t.der() == c.der()) {
                hit.push(format!("certificate {}", c.subject()));
            }
        }
        checks.push(Check {
            check: "dbx".into(),
            ok: hit.is_empty(),
            detail: if hit.is_empty() {
                "no image hash or trusted certificate is revoked".into()
            } else {
                format!("revoked: {}", hit.join(", "))
            },
        });
    }
    let lock = lock_path(&opts.image);
    if let Ok(text) = std::fs::read(&lock) {
        let l: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| input(&lock, e, "rebuild the image or move the lock file away"))?;
        let empty = Vec::new();
        let want = l["sections"].as_array().unwrap_or(&empty);
        for w in want {
            let n = w["name"].as_str().unwrap_or("?");
            let exp = w["sha256"].as_str().unwrap_or("");
            let got = secs
                .iter()
                .find(|(sn, _)| sn == n)
                .map(|(_, b)| hex::encode(sha2::Sha256::digest(b)));
            checks.push(Check {
                check: format!("section {n}"),
                ok: got.as_deref() == Some(exp),
                detail: match got {
                    Some(g) if g == exp => format!("sha256 {g} as in {}", lock.display()),
                    Some(g) => format!("sha256 {g}, lock file says {exp}"),
                    None => "missing from the PE".into(),
                },
            });
        }
        if want.len() != secs.len() {
            checks.push(Check {
                check: "section count".into(),
                ok: false,
                detail: format!(
                    "the PE has {} sections, the lock file {}",
                    secs.len(),
                    want.len()
                ),
            });
        }
    }
    let ok = checks.iter().all(|c| c.ok);
    Ok(Report {
        image: name,
        checks,
        ok,
    })
}

/// The report as text, one line per check.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    for c in &r.checks {
        s.push_str(&format!(
            "{} {}: {}\n",
            if c.ok { "ok  " } else { "FAIL" },
            c.check,
            c.detail
        ));
    }
    s.push_str(if r.ok { "valid\n" } else { "INVALID\n" });
    s
}
