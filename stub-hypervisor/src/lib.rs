//! # stub — the logic of vmseal's sealed UEFI stub, testable on the host
//!
//! The binary (`src/main.rs`, target `x86_64-unknown-uefi`) only wires firmware calls to the
//! modules here; everything that parses bytes or decides an order lives in this library and
//! runs under `cargo test --target x86_64-unknown-linux-gnu --lib`.
//!
//! - [`pe`]: the stub's own PE headers and section table, read from the loaded image.
//! - [`elf`]: an ELF partition, the plan to load it into its memory grant, its hypervisor area.
//! - [`eventlog`]: just enough of the TCG crypto-agile event log to read back one entry, to
//!   size the log and to find the Final Events Table entries after the copy — alloc-free.
//! - [`measure`]: the measurement loop over `policies::sections::MEASURED`, against a [`measure::Tpm`].
//! - [`policy`]: the decisions the stub takes from the `.vmseal` launch policy.
//! - [`record`]: the writer for the record channel (`policies::record` is the format and parser).
//! - [`report`]: the after-ExitBootServices record: the complete event log and the PCRs.
//! - [`hv`]: the hypervisor's logic (hypercalls, violations, scheduling) behind a `Vcpu` trait.
//! - [`devpath`]: the device paths the stub builds (initrd media, the kernel's own path).
//! - [`serial`]: the polled 16550 UART (COM1 console, COM2 record channel).
//! - [`svm`]: the AMD SVM backend (VMCB, exit decoding, nested page tables, VMRUN).
//!
//! What it does not do: talk to firmware (the binary does), allocate after ExitBootServices
//! ([`record`] and [`serial`] never allocate). Every parser returns an error on bad input and
//! never panics.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

extern crate alloc;

pub mod bytes;
pub mod devpath;
pub mod elf;
pub mod eventlog;
pub mod hv;
pub mod measure;
pub mod pe;
pub mod policy;
pub mod record;
pub mod report;
pub mod serial;
pub mod svm;
