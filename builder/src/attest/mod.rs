//! `vmseal attest verify`: does what an appliance sent — a TPM2 quote, its signature, the
//! attestation key (AK), the binary event log and the nonce — prove that it booted exactly as
//! predicted (`NAME.pcrs.json`)?
//!
//! Four checks, in this order ([`verify::verify`], a pure function the key-release server
//! and the in-appliance agent of issue 14 reuse):
//! 1. **signature** — the `TPMS_ATTEST` is signed by the AK (ECDSA P-256 / SHA-256, RSASSA or
//!    RSAPSS / SHA-256), starts with `TPM_GENERATED_VALUE` and is a `TPM_ST_ATTEST_QUOTE`
//!    (so the TPM made it), and a TPM-format AK is a restricted signing key ([`quote`]);
//! 2. **nonce** — the quote's `extraData` is the verifier's nonce, or for a hypervisor-mode
//!    quote `policies::attest::qualifying_data(caller, nonce)` (fresh, and for that caller);
//! 3. **pcr-digest** — the event log, replayed, gives the quoted PCRs whose hash is the
//!    quote's `pcrDigest` (so the log is the one the TPM measured);
//! 4. **events** — the quoted PCRs of the log equal the prediction's; the first event that
//!    differs is named as `vmseal pcr diff` names it ([`crate::run::diff`]).
//!
//! The evidence comes as separate files (what tpm2-tools write) or as one JSON bundle
//! ([`evidence`], `docs/attestation.md`). Bad input of any shape is an [`InputError`] naming
//! the file, the field and the fix (exit 2); a check that fails is a [`verify::Verdict`] that
//! did not match (exit 1). Byte parsing is `policies::quote` (no allocation, fuzzed).
//!
//! `vmseal attest serve` ([`serve`]) is the key-release server over the same check: nonces,
//! the evidence against the policy the appliance names, credential activation binding the AK
//! to the EK's TPM ([`credential`], `TPM2_MakeCredential` in software), and the secret sealed
//! under the credential.
//!
//! What `verify` does not do: decide which AK to trust (that is the credential activation of
//! the key-release server), check `qualifiedSigner` against an EK, or judge clock/reset counts
//! (they are reported).

pub mod credential;
pub mod evidence;
pub mod quote;
pub mod serve;
pub mod verify;

pub use evidence::Evidence;
pub use verify::{Expected, Verdict, verify};

/// Input that cannot be verified at all: `FILE: FIELD: PROBLEM — FIX` on one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {problem} — {fix}")]
pub struct InputError {
    /// The file (or bundle) the bad bytes came from.
    pub file: String,
    /// The field inside it (`TPMS_ATTEST.magic`, `quote`, …).
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

/// Where one piece of evidence came from: a file of its own, or a field of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The file.
    pub file: String,
    /// The bundle field (`quote`, `signature`, …), for a bundle.
    pub field: Option<String>,
}

impl Source {
    /// A file of its own.
    pub fn file(path: &std::path::Path) -> Self {
        Self {
            file: path.display().to_string(),
            field: None,
        }
    }

    /// A field of a bundle.
    pub fn bundle(path: &str, field: &str) -> Self {
        Self {
            file: path.to_string(),
            field: Some(field.to_string()),
        }
    }

    /// An [`InputError`] about `field` of this source.
    pub fn error(
        &self,
        field: impl std::fmt::Display,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> InputError {
        InputError {
            file: self.file.clone(),
            field: match &self.field {
                Some(f) => format!("{f}: {field}"),
                None => field.to_string(),
            },
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// How to name these bytes in a message (`FILE` or `FILE: FIELD`).
    pub fn label(&self) -> String {
        match &self.field {
            Some(f) => format!("{}: {f}", self.file),
            None => self.file.clone(),
        }
    }
}
