//! The check step of `scripts/demo.sh` until `vmseal pcr diff` exists, built on the same code
//! as the end-to-end tests.
//!
//! ```text
//! cargo run -p vmseal-tests --example demo -- check APPLIANCE.efi RECORD_DIR [NAME.lock.json]
//!     compare every digest the stub reported (RECORD_DIR/record.log) with the section
//!     digests of the built PE, computed independently (objcopy + SHA-256), and, when a lock
//!     file is given, with the section digests `vmseal build` recorded in it; exit 0 when all
//!     match, 1 otherwise; with RECORD_DIR/pcrs.json (Linux) also the sha256 PCRs the guest
//!     read vs. the replay of those digests
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use policies::record::Line;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["check", efi, dir] => check(Path::new(efi), Path::new(dir), None),
        ["check", efi, dir, lock] => check(Path::new(efi), Path::new(dir), Some(Path::new(lock))),
        _ => {
            eprintln!("usage: demo check APPLIANCE.efi RECORD_DIR [NAME.lock.json]");
            ExitCode::from(2)
        }
    }
}

/// `sections[].name` → `sections[].sha256` of a `vmseal build` lock file.
fn lock_digests(lock: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", lock.display()))?;
    let sections = json["sections"]
        .as_array()
        .ok_or_else(|| format!("{}: no \"sections\" array", lock.display()))?;
    Ok(sections
        .iter()
        .filter_map(|s| {
            Some((
                s["name"].as_str()?.to_string(),
                s["sha256"].as_str()?.to_string(),
            ))
        })
        .collect())
}

/// When the guest reported PCR values (`RECORD_DIR/pcrs.json`, written by the boot runner for
/// the Linux appliance), compare each sha256 PCR the stub extends with the replay of the
/// digests computed from the built PE. Returns false on a difference.
fn compare_guest_pcrs(dir: &Path, expected: &[vmseal_tests::Expected]) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("pcrs.json")) else {
        return true;
    };
    let Ok(serde_json::Value::Array(pcrs)) = serde_json::from_str(&text) else {
        println!(
            "{}: not a JSON array of PCR values",
            dir.join("pcrs.json").display()
        );
        return false;
    };
    let mut indices: Vec<u32> = expected.iter().map(|e| e.pcr).collect();
    indices.dedup();
    let mut ok = true;
    for pcr in indices {
        let replay = vmseal_tests::hex(&vmseal_tests::replay("sha256", pcr, expected));
        let read = pcrs
            .iter()
            .find(|p| p["bank"] == "sha256" && p["index"].as_u64() == Some(u64::from(pcr)));
        let read = read
            .and_then(|p| p["value"].as_str())
            .unwrap_or("(not reported)");
        let verdict = if read == replay { "match" } else { "DIFFERS" };
        ok &= read == replay;
        println!(
            "PCR {pcr} sha256 read by the guest {read}, replay of the built image {replay}: {verdict}"
        );
    }
    ok
}

fn check(efi: &Path, dir: &Path, lock: Option<&Path>) -> ExitCode {
    let locked = match lock.map(lock_digests).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    let mut lock_mismatch = false;
    let record_path: PathBuf = dir.join("record.log");
    let text = match std::fs::read(&record_path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            eprintln!("demo: {}: {e}", record_path.display());
            return ExitCode::from(2);
        }
    };
    let record = match Line::parse_all(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: {}: {e}", record_path.display());
            return ExitCode::from(1);
        }
    };
    let scratch = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("demo: temporary directory: {e}");
            return ExitCode::from(2);
        }
    };
    let expected = vmseal_tests::expected_measurements(efi, scratch.path());
    let measured: Vec<&Line> = record.iter().filter(|l| l.verb == "measure").collect();
    println!(
        "{:<4} {:<9} {:<5} {:<64}  result",
        "PCR", "section", "part", "sha256 (built PE)"
    );
    for (i, e) in expected.iter().enumerate() {
        let want = vmseal_tests::hex(e.digest("sha256"));
        let got = measured.get(i);
        let result = match got {
            Some(l)
                if l.get("sha256") == Some(want.as_str())
                    && l.get("pcr") == Some(e.pcr.to_string().as_str())
                    && l.get("section") == Some(e.section.as_str()) =>
            {
                "match".to_string()
            }
            Some(l) => format!("DIFFERS: stub reported {l}"),
            None => "MISSING from the record".to_string(),
        };
        let lock_note = match (&locked, e.part) {
            (Some(sections), "data") => match sections.iter().find(|(n, _)| *n == e.section) {
                Some((_, d)) if *d == want => ", lock file agrees",
                Some(_) => {
                    lock_mismatch = true;
                    ", LOCK FILE DIFFERS"
                }
                None => ", not in the lock file",
            },
            _ => "",
        };
        println!(
            "{:<4} {:<9} {:<5} {want}  {result}{lock_note}",
            e.pcr, e.section, e.part
        );
    }
    let pcr_mismatch = !compare_guest_pcrs(dir, &expected);
    match vmseal_tests::check_measurements(&record, &expected) {
        Ok(()) if pcr_mismatch => {
            println!("MISMATCH: a PCR the guest read differs from the replay of the built image");
            ExitCode::from(1)
        }
        Ok(()) if !lock_mismatch => {
            println!(
                "all {} measurements the stub reported match the built image",
                expected.len()
            );
            ExitCode::SUCCESS
        }
        Ok(()) => {
            println!("MISMATCH: the lock file's section digests differ from the built PE");
            ExitCode::from(1)
        }
        Err(diff) => {
            println!("MISMATCH:\n{diff}");
            ExitCode::from(1)
        }
    }
}
