//! `signing::pkcs11::Pkcs11Uri::parse` (RFC 7512 URIs from manifests and the command line):
//! never panics; a parsed URI re-encodes to text that parses to the same URI and never carries
//! a `pin-value` attribute.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signing::pkcs11::Pkcs11Uri;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(u) = Pkcs11Uri::parse(text) {
        let again = u.to_string();
        // No attribute named pin-value (an attribute's value may spell it: it is text).
        let mut keys = again
            .strip_prefix("pkcs11:")
            .unwrap_or(&again)
            .split(['?', ';', '&'])
            .map(|a| a.split('=').next().unwrap_or_default());
        assert!(keys.all(|k| k != "pin-value"), "{again}");
        assert_eq!(Pkcs11Uri::parse(&again).ok(), Some(u));
    }
});
