//! The sign stage: the organisation's keys on the image and in the firmware, over the `signing`
//! crate.
//!
//! [`image`] signs the appliance PE (and its kernel) in `NAME.efi` and in the image, for
//! `vmseal build` and `vmseal sign`; [`keys`] creates an org hierarchy and the variable store
//! that enrolls it; [`update`] signs db/dbx updates and key rotations; [`pcr_policy`] signs
//! PCR 11 policies as `systemd-measure sign` does; [`verify`] checks all of it.
//!
//! Depends on [`crate::compose`], [`crate::disk`] and [`crate::measure`] (a signed image is
//! re-predicted).

pub mod image;
pub mod keys;
pub mod pcr_policy;
pub mod update;
pub mod verify;
