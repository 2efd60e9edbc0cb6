//! # vmseal — the builder library behind the CLI
//!
//! Manifest parsing ([`manifest`], [`inputs`]), composition of the appliance PE ([`pe`]), the
//! GPT + FAT disk writer ([`disk`]), the launch policy ([`policy`]), orchestration of
//! `vmseal build` ([`appliance`]), `vmseal inspect` ([`inspect`]), `vmseal init` ([`init`]),
//! the embedded stub ([`stub`]) and the QEMU + swtpm boot runner ([`boot`]).
//!
//! The file formats: the UEFI 2.10 GPT (§5.3), PE/COFF with Authenticode as EDK2 hashes it
//! (`shared/reference/measured-boot.md` §C.1), FAT via the `fatfs` crate. What it does not do
//! yet: sign images, write variable stores, predict PCRs.
#![forbid(unsafe_code)]
pub mod appliance;
pub mod boot;
pub mod disk;
pub mod init;
pub mod inputs;
pub mod inspect;
pub mod manifest;
pub mod pe;
pub mod policy;
pub mod progress;
pub mod stub;
