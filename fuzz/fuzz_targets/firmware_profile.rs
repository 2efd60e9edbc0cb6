//! `vmseal firmware learn --from-log` and `Profile::parse` on arbitrary bytes: a log that
//! parses is cut into a profile template without panicking, and whatever profile comes out
//! parses back and resolves to steps; arbitrary text given as a profile file is refused or
//! resolves to steps, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::tcg::HashAlg;
use vmseal::measure::firmware::{FirmwareId, Profile};

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = policies::eventlog::parse(data) {
        let id = FirmwareId {
            file: String::new(),
            sha256: String::new(),
            package: String::new(),
        };
        if let Ok(p) = Profile::from_log(&log, id, String::new(), "fuzz".into()) {
            let again =
                Profile::parse(&p.to_text(), "fuzz.json").expect("a learned profile parses");
            let banks: Vec<HashAlg> = log.spec_id.algorithms.iter().map(|(a, _)| *a).collect();
            let _ = again.steps(&banks);
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(p) = Profile::parse(text, "fuzz.json")
    {
        let _ = p.steps(&HashAlg::COMPUTED);
    }
});
