//! # signing — keys, Authenticode, EFI signature lists, variable stores
//!
//! The Secure Boot half of vmseal (`shared/reference/measured-boot.md` §C, §D, §B.2):
//!
//! * [`keys`] — an org hierarchy (PK, KEK, db: RSA keys + X.509 v3 certificates), key files
//!   written 0600 and never overwritten, and the [`keys::Signer`] trait every signature goes
//!   through: a key file ([`keys::KeyPair`]) or a key that never leaves a PKCS#11 token.
//! * [`pkcs11`] — RFC 7512 `pkcs11:` URIs, token sessions (SoftHSM2, HSMs, smart cards) and
//!   [`pkcs11::Pkcs11Signer`].
//! * [`authenticode`] — the EDK2 Authenticode digest, [`authenticode::sign`] (PKCS#7 laid out
//!   for EDK2's fixed-offset parser, deterministic) and [`authenticode::verify`].
//! * [`efivar`] — EFI signature lists and `EFI_VARIABLE_AUTHENTICATION_2` (`.auth`) payloads.
//! * [`varstore`] — read an OVMF `VARS` template and write one with the org keys enrolled.
//!
//! Parsers of untrusted bytes (PE, PKCS#7, signature lists, variable stores) return errors,
//! never panic. Not done here: timestamping (countersignatures), dbx updates from the UEFI
//! revocation list, RSA-PSS or ECDSA keys, encrypted private keys.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod asn1;
pub mod authenticode;
pub mod efivar;
pub mod keys;
pub mod pkcs11;
mod pkcs7;
pub mod varstore;
