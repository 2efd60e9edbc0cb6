//! `policies::quote::parse_public2b` and `parse_public` on arbitrary bytes (an attestation
//! key's `TPM2B_PUBLIC` / `TPMT_PUBLIC`): never panic; what parses keeps its own bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::quote;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = quote::parse_public2b(data) {
        assert_eq!(p.bytes, &data[2..]);
    }
    let _ = quote::parse_public(data);
});
