//! Hashing per PCR bank: a streaming [`Hasher`] over the [`HashAlg`]s vmseal computes.
//!
//! SHA-1 / SHA-256 / SHA-384 / SHA-512 (FIPS 180-4) via the RustCrypto `sha1` / `sha2` crates
//! (no default features). The builder hashes payloads of hundreds of MiB, so everything is
//! incremental: [`Hasher::new`], [`Hasher::update`] as often as needed, [`Hasher::finalize`].
//! SM3-256 is recognised in logs ([`HashAlg::SM3_256`]) but not computed: asking for it is an
//! [`UnsupportedAlgorithm`] error.
//!
//! Host-only: not compiled for `x86_64-unknown-uefi` (see `policies/Cargo.toml`); the stub
//! lets the firmware hash.

use alloc::vec::Vec;
use core::fmt;

use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::tcg::HashAlg;

/// A bank vmseal cannot compute.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UnsupportedAlgorithm(pub HashAlg);

impl fmt::Display for UnsupportedAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hash algorithm {:#06x} ({}) is not supported: vmseal computes sha1, sha256, sha384, sha512",
            self.0.0,
            self.0.name().unwrap_or("unknown")
        )
    }
}

impl core::error::Error for UnsupportedAlgorithm {}

/// An incremental hash in one bank's algorithm.
#[derive(Clone, Debug)]
pub enum Hasher {
    /// SHA-1.
    Sha1(Sha1),
    /// SHA-256.
    Sha256(Sha256),
    /// SHA-384.
    Sha384(Sha384),
    /// SHA-512.
    Sha512(Sha512),
}

impl Hasher {
    /// A fresh hasher for `alg`.
    pub fn new(alg: HashAlg) -> Result<Self, UnsupportedAlgorithm> {
        Ok(match alg {
            HashAlg::SHA1 => Self::Sha1(Sha1::new()),
            HashAlg::SHA256 => Self::Sha256(Sha256::new()),
            HashAlg::SHA384 => Self::Sha384(Sha384::new()),
            HashAlg::SHA512 => Self::Sha512(Sha512::new()),
            other => return Err(UnsupportedAlgorithm(other)),
        })
    }

    /// The algorithm.
    pub const fn alg(&self) -> HashAlg {
        match self {
            Self::Sha1(_) => HashAlg::SHA1,
            Self::Sha256(_) => HashAlg::SHA256,
            Self::Sha384(_) => HashAlg::SHA384,
            Self::Sha512(_) => HashAlg::SHA512,
        }
    }

    /// Feed more bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// The digest ([`HashAlg::digest_size`] bytes).
    pub fn finalize(self) -> Vec<u8> {
        match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Sha384(h) => h.finalize().to_vec(),
            Self::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// One-shot: `H_alg(data)`.
pub fn hash(alg: HashAlg, data: &[u8]) -> Result<Vec<u8>, UnsupportedAlgorithm> {
    let mut h = Hasher::new(alg)?;
    h.update(data);
    Ok(h.finalize())
}

/// Several banks at once over the same stream (one pass over a large payload).
#[derive(Clone, Debug)]
pub struct MultiHasher(Vec<Hasher>);

impl MultiHasher {
    /// Hashers for every bank in `banks`, in that order.
    pub fn new(banks: &[HashAlg]) -> Result<Self, UnsupportedAlgorithm> {
        banks.iter().map(|a| Hasher::new(*a)).collect::<Result<_, _>>().map(Self)
    }

    /// Feed more bytes to every bank.
    pub fn update(&mut self, data: &[u8]) {
        self.0.iter_mut().for_each(|h| h.update(data));
    }

    /// `(bank, digest)` in the order of `banks`.
    pub fn finalize(self) -> Vec<(HashAlg, Vec<u8>)> {
        self.0.into_iter().map(|h| (h.alg(), h.finalize())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> alloc::string::String {
        b.iter().map(|x| alloc::format!("{x:02x}")).collect()
    }

    #[test]
    fn known_answers_for_abc() {
        // FIPS 180-4 example vectors ("abc").
        let v = [
            (HashAlg::SHA1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (HashAlg::SHA256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                HashAlg::SHA384,
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                HashAlg::SHA512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
        ];
        for (alg, want) in v {
            assert_eq!(hex(&hash(alg, b"abc").unwrap()), want);
            let mut h = Hasher::new(alg).unwrap();
            h.update(b"a");
            h.update(b"bc");
            assert_eq!(hex(&h.finalize()), want);
            assert_eq!(hash(alg, b"").unwrap().len(), alg.digest_size().unwrap());
        }
        let mut m = MultiHasher::new(&HashAlg::COMPUTED).unwrap();
        m.update(b"abc");
        assert_eq!(m.finalize().len(), 4);
        assert_eq!(
            Hasher::new(HashAlg::SM3_256).unwrap_err(),
            UnsupportedAlgorithm(HashAlg::SM3_256)
        );
    }
}
