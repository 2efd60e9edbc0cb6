//! # signing — keys, Authenticode, EFI signature lists, variable stores
//!
//! Issue-by-issue: this crate starts with the Authenticode image digest ([`authenticode`]),
//! the hash that both a signature and the firmware's PCR 4 measurement contain
//! (`shared/reference/measured-boot.md` §C.1). Keys, signing and the variable store come with
//! the Secure Boot work.
//!
//! What it does not do yet: sign, verify signatures, or write variable stores.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod asn1;
pub mod authenticode;
pub mod efivar;
pub mod keys;
mod pkcs7;
