//! The run stage: boot an image and compare what it measured with what was predicted.
//!
//! [`boot`] runs QEMU + OVMF + swtpm with a pinned command line and keeps a record directory;
//! [`diff`] explains a prediction against a record; [`learn`] records a firmware profile from
//! a log or a probe boot.
//!
//! Depends on every stage before it.

pub mod boot;
pub mod diff;
pub mod learn;
