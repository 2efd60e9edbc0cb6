//! `policies::record::Line::parse_all` on arbitrary text: never panics; a parsed line printed
//! again parses to the same line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::record::Line;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(lines) = Line::parse_all(&text) {
        for l in lines {
            let again = Line::parse(&l.to_string());
            assert_eq!(again, Ok(Some(l)));
        }
    }
});
