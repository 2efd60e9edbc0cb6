//! `policies::eventlog::parse_final_events` on arbitrary bytes with EDK2's four-bank Spec ID:
//! never panics; what parses re-serializes exactly (minus the unused tail) and merges.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::eventlog::{self, EventLog, SpecId};
use policies::tcg::HashAlg;

fuzz_target!(|data: &[u8]| {
    let spec_id = SpecId::edk2(&HashAlg::COMPUTED);
    if let Ok(fe) = eventlog::parse_final_events(data, &spec_id) {
        let bytes = fe.serialize();
        assert!(
            data.starts_with(&bytes),
            "serialize must reproduce the parsed prefix"
        );
        let log = EventLog {
            spec_id,
            events: Vec::new(),
        };
        let merged = eventlog::merge(&log, &fe, 1);
        assert_eq!(merged.events.len(), fe.events.len().saturating_sub(1));
    }
});
