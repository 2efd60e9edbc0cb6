//! Many hashes over parts of one file, computed while the file is read once, on every core.
//!
//! A prediction hashes the appliance PE in every bank twice (Authenticode for PCR 4, each
//! section's contents for PCR 11–13): with a 512 MiB payload and four banks, eight chains over
//! the same bytes. Loading the file into memory first costs more than hashing it (fresh pages
//! for 512 MiB), and hashing it once per bank reads it four times. Here the caller describes each
//! hash as a [`Chain`] — optional leading bytes, ascending file ranges, then zero bytes — and
//! [`hash_chains`] reads the file front to back in [`CHUNK`]-sized pieces, handing each piece to
//! worker threads that own the chains ([`Workers`]). A caller that produces the bytes itself
//! feeds the workers directly: `vmseal build` hands them the PE as it writes it, so nothing is
//! read back. SHA-384/SHA-512 chains go four at a time through [`Sha512x4`]; SHA-1 and
//! SHA-256 (SHA-NI on current CPUs) run one per chain; identical chains run once. Units are
//! spread over the workers by their estimated cost, largest first.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::mpsc;

use policies::digest::Hasher;
use policies::tcg::HashAlg;

use crate::measure::sha512x4::{Sha512x4, is_sha512_family};

/// Bytes read per piece.
pub const CHUNK: usize = 4 << 20;
/// Pieces in flight (read ahead of the slowest worker).
const IN_FLIGHT: usize = 4;

/// One hash: `alg` over `prefix`, then the bytes of `ranges` (`[start, end)` file offsets,
/// ascending and not overlapping) in order, then `zeros` zero bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The algorithm.
    pub alg: HashAlg,
    /// File ranges, in file order.
    pub ranges: Vec<(u64, u64)>,
    /// Zero bytes hashed after the ranges (a section's `VirtualSize` past its raw data).
    pub zeros: u64,
    /// Bytes hashed before the ranges (other headers than the file's: the unsigned PE that
    /// `vmseal build` streamed signed).
    pub prefix: Vec<u8>,
}

impl Chain {
    /// Whether the ranges are well-formed, in file order and inside `len` bytes.
    pub fn is_sequential(&self, len: u64) -> bool {
        let mut at = 0;
        self.ranges.iter().all(|&(s, e)| {
            let ok = s >= at && s <= e && e <= len;
            at = e;
            ok
        })
    }

    fn bytes(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum::<u64>() + self.zeros + self.prefix.len() as u64
    }

    /// A fresh hasher that has hashed the prefix.
    fn hasher(&self) -> Result<Hasher, StreamError> {
        let mut h = Hasher::new(self.alg)?;
        h.update(&self.prefix);
        Ok(h)
    }

    /// The parts of `[at, at + piece.len())` this chain hashes, as slices of `piece`.
    fn parts<'p>(&self, at: u64, piece: &'p [u8]) -> impl Iterator<Item = (u64, &'p [u8])> {
        let end = at + piece.len() as u64;
        self.ranges
            .iter()
            .filter(move |&&(s, e)| s < end && e > at)
            .filter_map(move |&(s, e)| {
                let (from, to) = (s.max(at), e.min(end));
                let slice = piece.get((from - at) as usize..(to - at) as usize)?;
                Some((from, slice))
            })
    }

    fn covers(&self, from: u64, to: u64) -> bool {
        self.ranges.iter().any(|&(s, e)| s <= from && to <= e)
    }
}

/// Why [`hash_chains`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading the file failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A chain's ranges are out of order or outside the file (hash it another way).
    #[error("chain {0} does not read the file front to back")]
    NotSequential(usize),
    /// The algorithm cannot be computed.
    #[error("{0}")]
    Unsupported(#[from] policies::digest::UnsupportedAlgorithm),
}

/// What one worker owns.
enum Unit {
    One(usize, Hasher),
    Four([usize; 4], Box<Sha512x4>),
}

impl Unit {
    fn feed(&mut self, chains: &[Chain], at: u64, piece: &[u8]) {
        match self {
            Self::One(i, h) => chains[*i].parts(at, piece).for_each(|(_, p)| h.update(p)),
            Self::Four(ids, h) => {
                // Cut the piece wherever a lane's coverage starts or ends, then hand every
                // lane the cut if it covers it: where all four read the same bytes (the
                // payload), they advance together.
                let end = at + piece.len() as u64;
                let mut cuts = vec![at, end];
                for &i in ids.iter() {
                    for &(s, e) in &chains[i].ranges {
                        cuts.extend([s, e].into_iter().filter(|c| (at..end).contains(c)));
                    }
                }
                cuts.sort_unstable();
                cuts.dedup();
                for w in cuts.windows(2) {
                    let (from, to) = (w[0], w[1]);
                    let Some(bytes) = piece.get((from - at) as usize..(to - at) as usize) else {
                        continue;
                    };
                    let lane = |k: usize| {
                        if chains[ids[k]].covers(from, to) {
                            bytes
                        } else {
                            &[][..]
                        }
                    };
                    if (0..4).any(|k| !lane(k).is_empty()) {
                        h.update([lane(0), lane(1), lane(2), lane(3)]);
                    }
                }
            }
        }
    }

    fn finish(self, chains: &[Chain], out: &mut [Option<Vec<u8>>]) {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        match self {
            Self::One(i, mut h) => {
                let mut left = chains[i].zeros;
                while left > 0 {
                    let n = left.min(ZEROS.len() as u64) as usize;
                    h.update(&ZEROS[..n]);
                    left -= n as u64;
                }
                out[i] = Some(h.finalize());
            }
            Self::Four(ids, mut h) => {
                let mut left = ids.map(|i| chains[i].zeros);
                while left.iter().any(|&z| z > 0) {
                    let n = left.map(|z| z.min(ZEROS.len() as u64) as usize);
                    h.update(n.map(|n| &ZEROS[..n]));
                    for (l, n) in left.iter_mut().zip(n) {
                        *l -= n as u64;
                    }
                }
                for (i, d) in ids.into_iter().zip(h.finalize()) {
                    out[i] = Some(d);
                }
            }
        }
    }

    /// Relative cost per byte (SHA-1 = 1), measured on the development machine.
    fn cost(&self, chains: &[Chain]) -> u64 {
        match self {
            Self::One(i, h) => {
                let per_byte = if is_sha512_family(h.alg()) { 4 } else { 1 };
                chains[*i].bytes() * per_byte
            }
            Self::Four(ids, h) => {
                let most = ids.iter().map(|&i| chains[i].bytes()).max().unwrap_or(0);
                most * if h.vectorized() { 5 } else { 16 }
            }
        }
    }
}

/// A buffer lent to the [`Workers`] (and any other reader of the stream): when the last
/// holder drops it, the buffer goes back to its pool, so a long stream reuses a few buffers
/// instead of faulting in fresh pages for every piece.
#[derive(Debug)]
pub struct Recycled(Vec<u8>, mpsc::Sender<Vec<u8>>);

impl Recycled {
    /// `bytes`, returned to `pool` once dropped.
    pub fn new(bytes: Vec<u8>, pool: mpsc::Sender<Vec<u8>>) -> Self {
        Self(bytes, pool)
    }
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let _ = self.1.send(std::mem::take(&mut self.0));
    }
}

/// A piece of the stream: its offset and bytes, shared by every worker.
type Fed = (u64, Arc<Recycled>);

/// Threads that own the [`Chain`]s of one stream: the caller pushes the stream's pieces in
/// order ([`Workers::feed`]), each worker hashes the parts its chains cover, and
/// [`Workers::finish`] returns the digests. A piece is shared, never copied; each worker
/// holds at most `depth` pieces queued, so a caller faster than the hashing waits and the
/// memory in flight stays a few pieces whatever the stream's length. Identical chains (a
/// section's contents and the same bytes as a lock-file input) are hashed once.
pub struct Workers<'scope> {
    feeds: Vec<mpsc::SyncSender<Fed>>,
    handles: Vec<std::thread::ScopedJoinHandle<'scope, Vec<Unit>>>,
    /// For each chain of the caller, the index of the unique chain that computes it.
    map: Vec<usize>,
    chains: Vec<Chain>,
    len: u64,
    at: u64,
}

impl<'scope> Workers<'scope> {
    /// Start up to `threads` workers (at least one) for `chains` over a stream of `len` bytes.
    pub fn spawn(
        s: &'scope std::thread::Scope<'scope, '_>,
        chains: &[Chain],
        len: u64,
        threads: usize,
        depth: usize,
    ) -> Result<Self, StreamError> {
        if let Some(i) = chains.iter().position(|c| !c.is_sequential(len)) {
            return Err(StreamError::NotSequential(i));
        }
        let mut unique: Vec<Chain> = Vec::new();
        let map = chains
            .iter()
            .map(|c| match unique.iter().position(|u| u == c) {
                Some(i) => i,
                None => {
                    unique.push(c.clone());
                    unique.len() - 1
                }
            })
            .collect();
        let chains = unique;
        let mut units = Vec::new();
        // Four SHA-384/512 chains without a prefix go through one `Sha512x4`.
        let four_lanes = |c: &Chain| is_sha512_family(c.alg) && c.prefix.is_empty();
        let mut wide: Vec<usize> = (0..chains.len())
            .filter(|&i| four_lanes(&chains[i]))
            .collect();
        wide.sort_by_key(|&i| std::cmp::Reverse(chains[i].bytes()));
        for four in wide.chunks(4) {
            let lanes = match four {
                &[a, b, c, d] => Sha512x4::new([a, b, c, d].map(|i| chains[i].alg))
                    .map(|h| Unit::Four([a, b, c, d], Box::new(h))),
                _ => None,
            };
            match lanes {
                Some(u) => units.push(u),
                None => {
                    for &i in four {
                        units.push(Unit::One(i, chains[i].hasher()?));
                    }
                }
            }
        }
        for (i, c) in chains.iter().enumerate() {
            if !four_lanes(c) {
                units.push(Unit::One(i, c.hasher()?));
            }
        }
        // Longest processing time first, onto `threads` workers.
        let mut workers: Vec<(u64, Vec<Unit>)> = Vec::new();
        workers.resize_with(threads.min(units.len()).max(1), || (0, Vec::new()));
        units.sort_by_key(|u| std::cmp::Reverse(u.cost(&chains)));
        for u in units {
            let cost = u.cost(&chains);
            if let Some(w) = workers.iter_mut().min_by_key(|w| w.0) {
                w.0 += cost;
                w.1.push(u);
            }
        }
        let mut feeds = Vec::new();
        let mut handles = Vec::new();
        for (_, mut owned) in workers {
            let (tx, rx) = mpsc::sync_channel::<Fed>(depth.max(1));
            let mine = chains.clone();
            feeds.push(tx);
            handles.push(s.spawn(move || {
                while let Ok((at, piece)) = rx.recv() {
                    let bytes = piece.as_ref().as_ref();
                    owned.iter_mut().for_each(|u| u.feed(&mine, at, bytes));
                }
                owned
            }));
        }
        Ok(Self {
            feeds,
            handles,
            map,
            chains,
            len,
            at: 0,
        })
    }

    /// Hand every worker the next piece of the stream. Fails when a worker is gone (it
    /// panicked: [`Workers::finish`] says so).
    pub fn feed(&mut self, piece: &Arc<Recycled>) -> Result<(), StreamError> {
        let at = self.at;
        self.at += piece.as_ref().as_ref().len() as u64;
        for f in &self.feeds {
            f.send((at, Arc::clone(piece)))
                .map_err(|_| StreamError::Io(io::Error::other("a hashing thread stopped")))?;
        }
        Ok(())
    }

    /// Wait for the workers and return the digests, in the order of the chains given to
    /// [`Workers::spawn`]. Fails if the stream was shorter than its announced length.
    pub fn finish(self) -> Result<Vec<Vec<u8>>, StreamError> {
        drop(self.feeds);
        let mut out: Vec<Option<Vec<u8>>> = vec![None; self.chains.len()];
        let mut panicked = false;
        for h in self.handles {
            match h.join() {
                Ok(owned) => owned
                    .into_iter()
                    .for_each(|u| u.finish(&self.chains, &mut out)),
                Err(_) => panicked = true,
            }
        }
        if panicked {
            return Err(StreamError::Io(io::Error::other(
                "a hashing thread panicked",
            )));
        }
        if self.at != self.len {
            return Err(StreamError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the stream ended at {} of {} bytes", self.at, self.len),
            )));
        }
        self.map
            .iter()
            .map(|&i| {
                out.get(i)
                    .cloned()
                    .flatten()
                    .ok_or_else(|| StreamError::Io(io::Error::other("a chain was not hashed")))
            })
            .collect()
    }
}

/// Hash every chain over the `len` bytes that `reader` yields, reading them once, front to back,
/// in [`CHUNK`]s, on every core ([`Workers`]); `on_piece` is told how many bytes were read (a
/// progress bar). Digests in the order of `chains`.
pub fn hash_chains(
    reader: impl Read,
    len: u64,
    chains: &[Chain],
    on_piece: impl FnMut(u64),
) -> Result<Vec<Vec<u8>>, StreamError> {
    hash_chains_in(reader, len, chains, CHUNK, on_piece)
}

/// [`hash_chains`] in pieces of `piece` bytes (at most a few in memory at once).
pub fn hash_chains_in(
    mut reader: impl Read,
    len: u64,
    chains: &[Chain],
    piece: usize,
    mut on_piece: impl FnMut(u64),
) -> Result<Vec<Vec<u8>>, StreamError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let piece = piece.max(1);
    std::thread::scope(|s| {
        let mut workers = Workers::spawn(s, chains, len, cores, IN_FLIGHT)?;
        // At most IN_FLIGHT buffers: a new piece waits for one the workers are done with.
        let (pool_tx, pool_rx) = mpsc::channel::<Vec<u8>>();
        let mut made = 0;
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(piece as u64) as usize;
            let mut buf = match pool_rx.try_recv() {
                Ok(b) => b,
                Err(_) if made < IN_FLIGHT => {
                    made += 1;
                    Vec::new()
                }
                Err(_) => pool_rx
                    .recv()
                    .map_err(|_| io::Error::other("a hashing thread stopped"))?,
            };
            buf.resize(n, 0);
            reader.read_exact(&mut buf)?;
            workers.feed(&Arc::new(Recycled::new(buf, pool_tx.clone())))?;
            on_piece(n as u64);
            at += n as u64;
        }
        workers.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 131 + i / 977) as u8).collect()
    }

    fn direct(c: &Chain, file: &[u8]) -> Vec<u8> {
        let mut h = Hasher::new(c.alg).unwrap();
        h.update(&c.prefix);
        for &(s, e) in &c.ranges {
            h.update(&file[s as usize..e as usize]);
        }
        h.update(&vec![0; c.zeros as usize]);
        h.finalize()
    }

    #[test]
    fn every_chain_equals_hashing_its_bytes_directly() {
        // Ranges across piece boundaries, an Authenticode-like chain with holes, contents
        // chains with a prefix and zero tails, and SHA-384/512 chains in a group of four and
        // on their own.
        let len = 2 * CHUNK + 12345;
        let file = bytes(len);
        let l = len as u64;
        let auth = vec![(0, 0xd8), (0xdc, 0x128), (0x130, 0x400), (0x400, l - 100)];
        let payload = vec![(0x600, l - 100)];
        let mut chains = Vec::new();
        for alg in HashAlg::COMPUTED {
            chains.push(Chain {
                alg,
                ranges: auth.clone(),
                zeros: 0,
                prefix: Vec::new(),
            });
            chains.push(Chain {
                alg,
                ranges: payload.clone(),
                zeros: 77,
                prefix: vec![0xa5; 100],
            });
            chains.push(Chain {
                alg,
                ranges: vec![(0x400, 0x600)],
                zeros: 0,
                prefix: Vec::new(),
            });
        }
        chains.push(Chain {
            alg: HashAlg::SHA512,
            ranges: vec![],
            zeros: 200_000,
            prefix: Vec::new(),
        });
        let mut seen = 0;
        let got = hash_chains(&file[..], l, &chains, |n| seen += n).unwrap();
        assert_eq!(seen, l);
        for (c, d) in chains.iter().zip(&got) {
            assert_eq!(*d, direct(c, &file), "{c:?}");
        }
    }

    #[test]
    fn out_of_order_or_short_input_is_an_error() {
        let c = Chain {
            alg: HashAlg::SHA256,
            ranges: vec![(10, 20), (5, 8)],
            zeros: 0,
            prefix: Vec::new(),
        };
        assert!(matches!(
            hash_chains(&[0u8; 32][..], 32, &[c], |_| ()),
            Err(StreamError::NotSequential(0))
        ));
        let c = Chain {
            alg: HashAlg::SHA256,
            ranges: vec![(0, 64)],
            zeros: 0,
            prefix: Vec::new(),
        };
        assert!(matches!(
            hash_chains(&[0u8; 32][..], 64, &[c], |_| ()),
            Err(StreamError::Io(_))
        ));
    }
}
