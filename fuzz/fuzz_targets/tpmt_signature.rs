//! `policies::quote::parse_signature` on arbitrary bytes (a quote's `TPMT_SIGNATURE`): never
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::quote;

fuzz_target!(|data: &[u8]| {
    let _ = quote::parse_signature(data);
});
