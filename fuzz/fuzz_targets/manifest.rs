//! `Manifest::parse` on arbitrary text: every manifest is accepted or refused with problems
//! that each name a field, never a panic; a problem's line, when given, is a line of the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmseal::compose::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Manifest::parse(text, "fuzz.toml", ".".into()) {
        let lines = text.split('\n').count();
        for p in e.all() {
            assert!(!p.field.is_empty(), "{p}");
            if let Some(l) = p.line {
                assert!(l.get() as usize <= lines, "{p}: line past the end");
            }
        }
    }
});
