//! `signing::varstore::VarStore::parse` (an OVMF variable store: a template or a store to
//! predict from) and the EFI signature lists inside it: never panic; a parsed store
//! re-serializes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signing::{efivar, varstore::VarStore};

fuzz_target!(|data: &[u8]| {
    let _ = efivar::parse_lists(data);
    if let Ok(store) = VarStore::parse(data) {
        for v in &store.variables {
            let _ = efivar::parse_lists(&v.data);
        }
        let _ = store.to_bytes();
    }
});
