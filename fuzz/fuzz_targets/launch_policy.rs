//! `policies::launch::LaunchPolicy::decode` on arbitrary bytes: never panics, and the encoding
//! is canonical (whatever decodes encodes back to the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::launch::LaunchPolicy;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = LaunchPolicy::decode(data) {
        assert_eq!(p.encode(), data, "canonical encoding");
        let _ = p.validate();
    }
});
