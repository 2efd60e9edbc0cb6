//! `policies::tpm2` response parsers on arbitrary bytes (what a TPM, or anything at the TIS
//! window, answers): never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::tpm2;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, params)) = tpm2::parse_header(data) {
        let _ = tpm2::parse_pcr_banks(params);
        let _ = tpm2::parse_pcr_read(params);
    }
    let _ = tpm2::parse_pcr_banks(data);
    let _ = tpm2::parse_pcr_read(data);
});
