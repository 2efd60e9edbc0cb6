//! # signing — keys, Authenticode, EFI signature lists, variable stores
//!
//! Issue-by-issue: this crate starts with the Authenticode image digest (the hash that both a
//! signature and the firmware's PCR 4 measurement contain); keys, signing and the variable
//! store come with the Secure Boot work.
#![forbid(unsafe_code)]
