//! # vmseal — the builder library behind the CLI
//!
//! Manifest parsing, composition of the appliance PE, the GPT + FAT disk writer, the QEMU +
//! swtpm boot runner and the orchestration of `vmseal build`.
#![forbid(unsafe_code)]
pub mod boot;
