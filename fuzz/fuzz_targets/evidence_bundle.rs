//! `Evidence::parse_bundle` (the JSON an appliance sends `vmseal attest`) on arbitrary bytes:
//! refused with an error or parsed, never a panic; a parsed bundle writes back to a bundle that
//! parses to the same evidence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmseal::attest::evidence::Evidence;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Evidence::parse_bundle(data, "fuzz.json") {
        let text = e.to_bundle().to_string();
        let again =
            Evidence::parse_bundle(text.as_bytes(), "fuzz.json").expect("a written bundle parses");
        assert_eq!(again.to_bundle(), e.to_bundle());
    }
});
