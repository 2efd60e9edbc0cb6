//! `policies::quote::parse_attest` on arbitrary bytes (a quote's `TPMS_ATTEST` as an appliance
//! sends it to a verifier): never panics; what parses has only PCR 0-23 selected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::quote;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = quote::parse_attest(data) {
        assert!(q.pcr_select.len() <= quote::MAX_SELECTIONS);
        for (_, set) in q.pcr_select.iter() {
            assert!(set.iter().all(|i| i < 24));
        }
    }
});
