//! The compose stage: from a manifest to the pieces of the appliance PE.
//!
//! [`manifest`] parses and validates `vmseal.toml`; [`inputs`] plans which file goes into which
//! section and checks the files; [`policy`] encodes the `.vmseal` launch policy from the
//! partitions' ELF spans ([`elf`]); [`pe`] appends the sections to the stub ([`stub`]) as a
//! list of borrowed pieces, never one buffer. [`inspect`] reads the result back, and [`init`]
//! writes a starter project.
//!
//! Depends on [`crate::disk`] (sizes) and [`crate::confidential`] (the `[snp]` table) only.

pub mod elf;
pub mod init;
pub mod inputs;
pub mod inspect;
pub mod manifest;
pub mod pe;
pub mod policy;
pub mod stub;
