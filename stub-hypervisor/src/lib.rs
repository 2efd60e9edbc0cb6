//! # stub — the logic of vmseal's sealed UEFI stub
#![no_std]

pub mod serial;
