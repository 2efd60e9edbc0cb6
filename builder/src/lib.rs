//! # vmseal — the builder library behind the CLI
//!
//! The folders are the pipeline, in the order a build runs:
//!
//! | stage | what it does | verbs |
//! | --- | --- | --- |
//! | [`compose`] | manifest → the appliance PE's pieces: inputs, launch policy, stub, sections | `init`, `inspect` |
//! | [`disk`] | the GPT + FAT image the PE is written into, and read back through | — |
//! | [`sign`] | Authenticode with the org's keys, variable stores, db/dbx updates, signed PCR policies | `sign`, `keys`, `vars`, `verify`, `pcr sign` |
//! | [`measure`] | the exact event log and PCRs the image will produce, in every bank | `pcr predict`, `eventlog show` |
//! | [`pipeline`] | `vmseal build`: compose → disk → sign → measure in one pass | `build` |
//! | [`run`] | QEMU + OVMF + swtpm boots, the diff of record against prediction, firmware profiles learned | `boot`, `pcr diff`, `firmware learn` |
//! | [`export`] | the image and the org's keys in Azure's, GCP's and AWS's formats | `export` |
//! | [`confidential`] | the AMD SEV-SNP launch digest of the appliance | `pcr predict --snp-*` |
//! | [`attest`] | what a booted appliance sends (TPM2 quote, AK, event log) checked against its prediction; the key-release server | `attest verify`, `attest serve` |
//!
//! Dependencies point one way: `disk` and `confidential` need no other stage; `compose` needs
//! those two; `measure` needs `compose`; `sign` needs `measure` (a signed image is
//! re-predicted); `pipeline` needs all four; `run`, `export` and `attest` come last. The CLI
//! (`src/cli/`, one file per verb) is wiring over these.
//!
//! The file formats: the UEFI 2.10 GPT (§5.3), PE/COFF with Authenticode as EDK2 hashes it
//! (`shared/reference/measured-boot.md` §C.1), FAT via the `fatfs` crate.
#![forbid(unsafe_code)]
pub mod attest;
pub mod compose;
pub mod confidential;
pub mod disk;
pub mod export;
pub mod measure;
pub mod pipeline;
pub mod progress;
pub mod run;
pub mod sign;
