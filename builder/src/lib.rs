//! # vmseal — the builder library behind the CLI
//!
//! Manifest parsing ([`manifest`], [`inputs`]), composition of the appliance PE ([`pe`]), the
//! GPT + FAT disk writer ([`disk`]), the launch policy ([`policy`]), orchestration of
//! `vmseal build` ([`appliance`]), `vmseal inspect` ([`inspect`]), `vmseal init` ([`init`]),
//! the embedded stub ([`stub`]) and the QEMU + swtpm boot runner ([`boot`]).
//!
//! Measured boot: [`predict`] (the expected event log and PCRs of an image, `vmseal pcr
//! predict`), [`firmware`] (firmware profiles for PCR 0–3 and 6, `vmseal firmware learn`),
//! [`pcrs_json`] (the `NAME.pcrs.json` format), [`diff`] (`vmseal pcr diff`),
//! [`eventlog_cmd`] (`vmseal eventlog show`), [`describe`] (events in words) and [`vars`] (an
//! interim read-only OVMF variable-store walk).
//!
//! The file formats: the UEFI 2.10 GPT (§5.3), PE/COFF with Authenticode as EDK2 hashes it
//! (`shared/reference/measured-boot.md` §C.1), FAT via the `fatfs` crate.
//!
//! Attestation: [`attest`] (`vmseal attest verify`: a TPM2 quote and event log against a
//! prediction).
//!
//! Deploying: [`export`] (`vmseal export`: the image and the org's keys in Azure's, GCP's and
//! AWS's formats).
//!
//! Confidential VMs: [`confidential`] (the AMD SEV-SNP launch digest of the appliance booted
//! by an SEV OVMF, the `snp` object of `NAME.pcrs.json`).
//!
//! Secure Boot, over the `signing` crate: [`keys_cmd`] (`vmseal keys new`, `vmseal vars`),
//! [`key_update`] (`vmseal keys rotate`, `vmseal keys append`: signed db/dbx updates),
//! [`sign_cmd`] (`vmseal sign` and the signing step of `vmseal build`), [`verify`]
//! (`vmseal verify`).
#![forbid(unsafe_code)]
pub mod appliance;
pub mod attest;
pub mod boot;
pub mod confidential;
pub mod describe;
pub mod diff;
pub mod disk;
pub mod elf;
pub mod eventlog_cmd;
pub mod export;
pub mod firmware;
pub mod hashstream;
pub mod init;
pub mod inputs;
pub mod inspect;
pub mod key_update;
pub mod keys_cmd;
pub mod manifest;
pub mod ovmf;
pub mod pcr_sign;
pub mod pcrs_json;
pub mod pe;
pub mod policy;
pub mod predict;
pub mod progress;
pub mod sha512x4;
pub mod sign_cmd;
pub mod stub;
pub mod vars;
pub mod verify;
