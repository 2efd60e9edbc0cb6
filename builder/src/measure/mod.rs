//! The measure stage: what the image will measure when it boots, before it boots.
//!
//! [`predict`] computes the expected event log and PCR values of an image in every bank, from
//! the image and its variable store ([`vars`]) plus a firmware profile ([`firmware`]) for
//! what only the firmware knows, hashing the PE once for all banks ([`hashstream`],
//! [`sha512x4`]). [`pcrs_json`] is the `NAME.pcrs.json` format, [`eventlog`] reads any binary
//! TCG log, [`describe`] puts an event in words, and [`ovmf`] says which firmware files a
//! prediction (and a boot) is for.
//!
//! Depends on [`crate::compose`], [`crate::disk`] and [`crate::confidential`]; never on
//! signing or running.

pub mod describe;
pub mod eventlog;
pub mod firmware;
pub mod hashstream;
pub mod ovmf;
pub mod pcrs_json;
pub mod predict;
pub mod sha512x4;
pub mod vars;
