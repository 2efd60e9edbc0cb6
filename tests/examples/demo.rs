//! Helpers for `scripts/demo.sh`, built on the same code as the end-to-end tests.
//!
//! ```text
//! cargo run -p vmseal-tests --example demo -- boot IMAGE RECORD_DIR
//!     boot through vmseal::boot::run (for when the `vmseal boot` verb is not available);
//!     exit 0 when the verdict is `booted`, 1 otherwise
//! cargo run -p vmseal-tests --example demo -- check APPLIANCE.efi RECORD_DIR
//!     compare every digest the stub reported (RECORD_DIR/record.log) with the section
//!     digests of the built PE, computed independently (objcopy + SHA-256); exit 0 when all
//!     match, 1 otherwise
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use policies::record::Line;
use vmseal::boot::{BootOptions, Verdict};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["boot", image, dir] => boot(Path::new(image), Path::new(dir)),
        ["check", efi, dir] => check(Path::new(efi), Path::new(dir)),
        _ => {
            eprintln!("usage: demo boot IMAGE RECORD_DIR | demo check APPLIANCE.efi RECORD_DIR");
            ExitCode::from(2)
        }
    }
}

fn boot(image: &Path, dir: &Path) -> ExitCode {
    match vmseal::boot::run(&BootOptions::new(image, dir)) {
        Ok(outcome) if outcome.verdict() == Verdict::Booted => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::from(2)
        }
    }
}

fn check(efi: &Path, dir: &Path) -> ExitCode {
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
        let want = vmseal_tests::hex(&e.sha256);
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
        println!(
            "{:<4} {:<9} {:<5} {want}  {result}",
            e.pcr, e.section, e.part
        );
    }
    match vmseal_tests::check_measurements(&record, &expected) {
        Ok(()) => {
            println!(
                "all {} measurements the stub reported match the built image",
                expected.len()
            );
            ExitCode::SUCCESS
        }
        Err(diff) => {
            println!("MISMATCH:\n{diff}");
            ExitCode::from(1)
        }
    }
}
