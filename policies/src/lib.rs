//! # policies — the measurement facts of vmseal, stated once
//!
//! A `no_std` + `alloc` crate shared by the UEFI stub (`stub-hypervisor`, which *measures* by
//! iterating these tables) and the host builder (`vmseal`, which *predicts* by iterating the same
//! tables). Nothing about PCR numbers, event types, section names or measurement order is
//! written anywhere else.
//!
//! Modules:
//! - [`sections`]: PE section names of an appliance and the canonical measurement scheme
//!   (which section goes to which PCR, in which order, with which event). Follows the UAPI PCR
//!   registry and systemd-stub's `.linux`/`.osrel`/`.cmdline`/`.initrd` order for PCR 11.
//! - [`tcg`]: TCG PC Client constants (event types, hash algorithm ids, PCR indices).
//! - [`bootinfo`]: the boot-information block the hypervisor hands a partition, and the
//!   layout of the hypervisor-written area at the top of its memory grant.
//! - [`hypercall`]: the hypercall ABI (numbers, errors, violations, channels, attestation).
//! - [`attest`]: the attestation request and report exchanged on the `attest` channel.
//! - [`tis`]: a polled TPM TIS driver (locality 0) behind MMIO and clock traits, used by the
//!   stub after ExitBootServices and by the attestation service.
//! - [`digest`] (host only): streaming SHA-1/256/384/512 per PCR bank.
//! - [`eventlog`]: the TCG2 crypto-agile event log and the Final Events Table: parse,
//!   serialize, merge, and decode the payloads on the boot path.
//! - [`launch`]: the sealed launch policy (`.vmseal`), its canonical encoding and rules.
//! - [`predict`]: the stub's measurement plan (order of section extends) and, on the host,
//!   the exact events it logs.
//! - [`replay`] (host only): PCR replay of an event log, start values, PCR dumps.
//! - [`record`]: the line format the stub writes on its record channel (the second serial
//!   port), its parser, the collectors of the event log and PCR values it carries, and the
//!   `core::fmt`-free writers of its values ([`record::Token`]).
//! - [`quote`]: the structures a quote verifier reads — `TPMS_ATTEST` of a `TPM2_Quote`,
//!   `TPMT_SIGNATURE`, the attestation key's `TPMT_PUBLIC` / `TPM2B_PUBLIC` (no allocation).
//! - [`tpm2`]: TPM 2.0 command bytes and response parsers for bank discovery and PCR_Read
//!   (no allocation: the stub runs it after ExitBootServices over its TIS driver).
//!
//! What it does not do: talk to hardware or firmware, read files, or allocate beyond `alloc`.
//! Every parser here returns an error on bad input and never panics.
#![no_std]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

extern crate alloc;

pub mod attest;
pub mod bootinfo;
#[cfg(not(target_os = "uefi"))]
pub mod digest;
pub mod eventlog;
pub mod hypercall;
pub mod launch;
pub mod predict;
pub mod quote;
mod reader;
pub mod record;
#[cfg(not(target_os = "uefi"))]
pub mod replay;
pub mod sections;
pub mod tcg;
pub mod tis;
pub mod tpm2;
