//! `policies::eventlog::parse` on arbitrary bytes: never panics; what parses re-serializes to
//! bytes that parse to the same log; payload decoding and replay never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::eventlog;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = eventlog::parse(data) {
        let bytes = log.serialize();
        assert_eq!(
            eventlog::parse(&bytes).as_ref(),
            Ok(&log),
            "serialize/parse round trip"
        );
        for e in &log.events {
            let _ = e.describe();
        }
        let _ = policies::replay::replay(&log);
    }
});
