//! Authenticode over arbitrary bytes as a PE: the digest walk, the certificate table and the
//! PKCS#7 parser behind `verify` never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signing::authenticode::{self, DigestAlgorithm};

fuzz_target!(|data: &[u8]| {
    let _ = authenticode::digest(data, DigestAlgorithm::Sha256);
    let _ = authenticode::certificates(data);
    let _ = authenticode::verify(data, &[]);
});
