//! `vmseal build`: manifest → `NAME.efi` (the appliance PE), `NAME.img` (GPT + FAT ESP),
//! `NAME.lock.json`, and for a signed build `NAME.vars.fd`, with the prediction
//! `NAME.pcrs.json`.
//!
//! One pass over the inputs, signed or not, with memory that does not grow with the payload:
//!
//! 1. **Lay out.** The PE is never assembled in memory: it is a list of borrowed pieces
//!    ([`crate::compose::pe::Composed`]). A signed build knows its certificate table's size
//!    before hashing anything (a PKCS#7 signature's length does not depend on the digest it
//!    signs: [`crate::sign::image::table_size`]), so the headers already point data directory
//!    4 at the table after the sections, and the ESP is allocated for the signed size.
//!    `.pcrsig` (the signed PCR 11 policy, [`add_pcrsig`]) needs only the measured sections'
//!    digests, hashed from the inputs before the stream; a `.linux` kernel is signed in memory
//!    before it becomes a section (a kernel, ~10–20 MiB, not the payload).
//! 2. **Stream.** The main thread reads the pieces once, in 1 MiB chunks, writes `NAME.efi`
//!    (summing the PE checksum) and shares each chunk, never copied, with the image writer —
//!    which formats the ESP, lets `fatfs` allocate `\EFI\BOOT\BOOTX64.EFI` without writing
//!    its data ([`disk::Reservation`]), then writes each chunk straight into the clusters
//!    `fatfs` chose — and with the hashing workers ([`Workers`], one per core), which take
//!    from the same chunks every digest the build needs: each input's SHA-256 (lock file, GPT
//!    GUIDs), the SHA-256 Authenticode digest (it skips the CheckSum and the certificate-table
//!    entry by definition, so the final headers stream), and for the prediction the
//!    Authenticode digest and every section's contents in each bank
//!    ([`crate::measure::predict::PeChains`]). Every queue is bounded.
//! 3. **Sign and patch.** The signature over the streamed digest is appended to `NAME.efi`
//!    and written to the clusters reserved for it; then the CheckSum, the one header field
//!    that depends on every byte, is patched in both. The result is byte for byte what
//!    `signing::authenticode::sign` makes of the unsigned PE (so `vmseal sign` of an unsigned
//!    build gives the same image).
//! 4. **Hash the outputs.** `NAME.efi` (read once for its SHA-256 and, signed, the unsigned
//!    PE's: other headers, the same bytes after them) and `NAME.img` are hashed for the lock
//!    file from the page cache, on threads of their own: their first bytes (the CheckSum; the
//!    GPT, whose GUIDs derive from the inputs' digests) are known only now.
//! 5. **Predict**, meanwhile, from the streamed digests: of the image only the GPT and the
//!    PE's headers are read back ([`crate::measure::predict::predict_with`]).
//!
//! Outputs go to temporary files in the output directory and are renamed into place only when
//! everything succeeded; on any error the temporaries are removed (no partial output).
//! Validation happens before the output directory is touched.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use sha2::Digest as _;

use crate::compose::inputs::{self, Planned, Source, Stamp};
use crate::compose::manifest::{ErrorKind, Manifest, ManifestError};
use crate::compose::pe::{self, Composed, PeChecksum, PeError, Piece};
use crate::compose::stub::{self, StubError};
use crate::disk::{self, BOOT_PATH, FixedTime, Layout};
use crate::measure::hashstream::{self, Chain, Recycled, Workers};
use crate::measure::predict::{BootFile, HEADER_PREFIX, PeChains};
use crate::progress::Progress;
use policies::tcg::HashAlg;
use signing::authenticode;

/// Inputs are streamed in chunks of this size, with at most [`DEPTH`] queued for the image
/// writer and for each hashing worker: a few MiB in flight, so they find their bytes still in
/// cache (4 MiB chunks eight deep went to DRAM and back).
const CHUNK: usize = 1 << 20;
/// Chunks queued for the image writer once it is writing.
const DEPTH: usize = 4;
/// Extra room in the image writer's queue for the chunks read while it formats the ESP and
/// allocates BOOTX64.EFI (~20 ms for 256 MiB, 65536 clusters; ~160 ms for 2 GiB): the other
/// consumers go on meanwhile. Eight: the stream, as fast as the hashing, waits a little at
/// 2 GiB rather than holding 32 MiB more.
const ALLOCATING: usize = 8;

/// A file range of the PE the prediction needs as bytes, and its bytes as they stream by.
type Kept = ((u64, u64), Vec<u8>);

/// The lock file format version.
pub const LOCK_FORMAT: u32 = 1;

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The manifest.
    pub manifest: PathBuf,
    /// The output directory (created).
    pub out: PathBuf,
    /// A prebuilt stub instead of the embedded one.
    pub stub: Option<PathBuf>,
    /// Progress bars.
    pub progress: Progress,
    /// Write `NAME.pcrs.json` (the default). Predicting hashes the payload once more per PCR
    /// bank; a pipeline that predicts elsewhere (`vmseal pcr predict`, e.g. with the variable
    /// store of a signing host) can skip it.
    pub predict: bool,
    /// The PKCS#11 module and PIN file when the manifest's key is a `pkcs11:` URI.
    pub pkcs11: signing::pkcs11::TokenFlags,
}

/// What a build wrote.
#[derive(Clone, Debug)]
pub struct Built {
    /// `NAME.img`.
    pub img: PathBuf,
    /// `NAME.efi`.
    pub efi: PathBuf,
    /// `NAME.lock.json`.
    pub lock: PathBuf,
    /// `NAME.pcrs.json`: the predicted event log and PCRs (pristine variables and Secure Boot
    /// off, or for a signed build `NAME.vars.fd` and Secure Boot on; the four banks of a fresh
    /// swtpm, the shipped firmware profile); `None` when the build was asked not to predict.
    pub pcrs: Option<PathBuf>,
    /// `NAME.vars.fd`: an OVMF variable store with the manifest's PK/KEK/db enrolled; `None`
    /// when the build was not signed or `[signing]` names no PK/KEK.
    pub vars: Option<PathBuf>,
    /// The lock file's contents.
    pub lock_json: serde_json::Value,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The manifest or an input is wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// No usable stub.
    #[error(transparent)]
    Stub(#[from] StubError),
    /// The stub cannot be extended, or the sections do not fit a PE.
    #[error(transparent)]
    Pe(#[from] PeError),
    /// `SOURCE_DATE_EPOCH` is not a number.
    #[error(transparent)]
    Epoch(#[from] inputs::EpochError),
    /// Signing with the manifest's keys failed.
    #[error(transparent)]
    Sign(#[from] crate::sign::image::SignCmdError),
    /// The `[snp]` firmware cannot give a launch digest.
    #[error("snp.firmware: {0}")]
    Snp(#[from] crate::confidential::ConfidentialError),
    /// The PCR prediction failed.
    #[error("predicting NAME.pcrs.json: {0}")]
    Predict(#[from] crate::measure::predict::PredictError),
    /// Signing the PCR 11 policies (`.pcrsig`) failed (the key refused to sign).
    #[error("signing the PCR 11 policies (signing.pcr-key): {0}")]
    Pcr(String),
    /// Reading or writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

impl BuildError {
    /// Whether the error is about the user's input (exit status 2) rather than a failure of
    /// the build itself (exit status 1).
    pub fn is_input_error(&self) -> bool {
        match self {
            Self::Io { .. } => false,
            Self::Sign(e) => e.is_input_error(),
            _ => true,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// Add `.pcrsig` after `.pcrpkey`: the PCR 11 policies of the planned sections, signed (see
/// [`crate::sign::pcr_policy`]). The measured sections are hashed from their sources (files streamed).
pub fn add_pcrsig(
    plan: &mut Vec<Planned>,
    pcr: &crate::sign::image::PcrPlan,
) -> Result<(), BuildError> {
    use policies::sections::{MEASURED, PCRPKEY, PCRSIG};
    let measured_11 = |name: &str| {
        MEASURED
            .iter()
            .any(|r| r.name == name && r.pcr == crate::sign::pcr_policy::PCR)
    };
    // (name, VirtualSize, digest per bank) of every section measured into PCR 11.
    let mut measured: Vec<(String, u64, policies::predict::BankDigests)> = Vec::new();
    for p in plan.iter().filter(|p| measured_11(&p.name)) {
        let mut h = policies::digest::MultiHasher::new(&pcr.banks)
            .map_err(|e| BuildError::Pcr(e.to_string()))?;
        match &p.source {
            Source::Inline(b) => h.update(b),
            Source::File { abs, .. } => {
                let mut f = File::open(abs).map_err(io_err("reading a section for .pcrsig"))?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f
                        .read(&mut buf)
                        .map_err(io_err("reading a section for .pcrsig"))?;
                    if n == 0 {
                        break;
                    }
                    h.update(buf.get(..n).unwrap_or_default());
                }
            }
        }
        measured.push((p.name.clone(), p.len(), h.finalize()));
    }
    let mut base = Vec::new();
    for bank in &pcr.banks {
        let view: Vec<(&str, u64, Vec<u8>)> = measured
            .iter()
            .map(|(n, size, d)| {
                let digest = d
                    .iter()
                    .find(|(b, _)| b == bank)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                (n.as_str(), *size, digest)
            })
            .collect();
        base.push((
            *bank,
            crate::sign::pcr_policy::stub_pcr11_from(&view, *bank)
                .map_err(|e| BuildError::Pcr(e.to_string()))?,
        ));
    }
    let json = crate::sign::pcr_policy::sign_values(
        &base,
        &crate::sign::pcr_policy::DEFAULT_PHASES,
        pcr.key.as_ref(),
    )
    .map_err(|e| BuildError::Pcr(e.to_string()))?;
    let at = plan
        .iter()
        .position(|p| p.name == PCRPKEY)
        .map_or(plan.len(), |i| i + 1);
    plan.insert(
        at,
        Planned {
            name: PCRSIG.into(),
            source: Source::Inline(serde_json::to_vec(&json).unwrap_or_default()),
        },
    );
    Ok(())
}

/// SHA-256 of a file. Its holes (`SEEK_HOLE`: ranges the file system guarantees read as
/// zeros, such as an image's free space) are hashed from a buffer of zeros rather than read:
/// reading a hole makes the kernel allocate, zero and copy page-cache pages for it. Where the
/// file system cannot tell, the whole file is read.
fn hash_file(path: &Path, progress: &Progress) -> io::Result<(u64, [u8; 32])> {
    use rustix::fs::{SeekFrom as At, seek};
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let bar = progress.bar("hashing", len);
    let mut h = sha2::Sha256::new();
    let zeros = vec![0u8; PIECE];
    let mut pos = 0;
    while pos < len {
        let data = match seek(&f, At::Data(pos)) {
            Ok(d) => d.clamp(pos, len),
            Err(rustix::io::Errno::NXIO) => len, // a hole to the end
            Err(_) => pos,                       // no SEEK_DATA here: read it all
        };
        let mut hole = data - pos;
        while hole > 0 {
            let n = usize::try_from(hole.min(PIECE as u64)).unwrap_or(PIECE);
            h.update(&zeros[..n]);
            bar.inc(n as u64);
            hole -= n as u64;
        }
        if data == len {
            break;
        }
        let end = seek(&f, At::Hole(data)).map_or(len, |e| e.clamp(data + 1, len));
        hash_range(&mut f, (data, end), &mut h, &bar)?;
        pos = end;
    }
    bar.finish_and_clear();
    Ok((len, h.finalize().into()))
}

/// Output files are hashed in pieces of this size (each is hashed while still in L2; 4 MiB
/// pieces were ~5% slower).
const PIECE: usize = 256 << 10;

/// Feed `[start, end)` of `f` to `h`, in [`PIECE`]s.
fn hash_range(
    f: &mut File,
    (start, end): (u64, u64),
    h: &mut sha2::Sha256,
    bar: &indicatif::ProgressBar,
) -> io::Result<()> {
    f.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; PIECE];
    let mut left = end.saturating_sub(start);
    while left > 0 {
        let n = usize::try_from(left.min(PIECE as u64)).unwrap_or(PIECE);
        f.read_exact(&mut buf[..n])?;
        h.update(&buf[..n]);
        bar.inc(n as u64);
        left -= n as u64;
    }
    Ok(())
}

/// Format the ESP inside `img` and allocate `\EFI\BOOT\BOOTX64.EFI` for a file of `len`
/// bytes: fatfs writes the file through a [`disk::Reservation`], so it picks the clusters and
/// fills in the FATs and the directory entry, but writes no data. Returns the FAT type and
/// where the file's bytes go (partition offsets); the caller writes them there.
fn prepare_esp(
    img: &File,
    layout: &Layout,
    time: &'static FixedTime,
    len: u64,
    m: &Manifest,
) -> Result<(fatfs::FatType, disk::Extents), BuildError> {
    let mut esp = disk::BlockCache::new(disk::Window::new(img, layout.start, layout.len));
    let reservation = esp.reservation();
    let fs = disk::format_esp(&mut esp, layout, time).map_err(io_err("formatting the ESP"))?;
    let fat_type = fs.fat_type();
    let boot = fs
        .root_dir()
        .create_dir("EFI")
        .and_then(|d| d.create_dir("BOOT"))
        .map_err(io_err("creating \\EFI\\BOOT in the ESP"))?;
    let mut f = boot
        .create_file("BOOTX64.EFI")
        .map_err(io_err("creating BOOTX64.EFI"))?;
    let allocating = |source| BuildError::Io {
        what: "allocating BOOTX64.EFI".into(),
        source,
    };
    reservation.begin().map_err(allocating)?;
    let zeros = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        f.write_all(&zeros[..n]).map_err(|e| {
            if e.kind() == io::ErrorKind::WriteZero || e.to_string().contains("No space") {
                BuildError::Manifest(m.error(
                    ErrorKind::TooBig,
                    "image.size",
                    format!("the appliance PE ({len} bytes) does not fit the ESP"),
                    "raise image.size".into(),
                ))
            } else {
                allocating(e)
            }
        })?;
        left -= n as u64;
    }
    let extents = reservation.end().map_err(allocating)?;
    // The image writer trusts these runs: exactly the file, inside the partition.
    let inside = extents
        .runs()
        .iter()
        .all(|&(at, n)| at.checked_add(n).is_some_and(|end| end <= layout.len));
    if extents.len() != len || !inside {
        return Err(allocating(io::Error::other(format!(
            "fatfs placed {} bytes for a {len}-byte file{}",
            extents.len(),
            if inside {
                ""
            } else {
                ", past the end of the ESP"
            }
        ))));
    }
    // The directory entry (size, first cluster) is written now, outside the reservation.
    f.flush().map_err(io_err("writing BOOTX64.EFI"))?;
    drop(f);
    drop(boot);
    // Counting the free clusters makes fatfs write them to the FAT32 FSInfo sector.
    fs.stats()
        .map_err(io_err("counting free clusters in the ESP"))?;
    fs.unmount().map_err(io_err("closing the ESP"))?;
    disk::fix_dot_entries(&mut esp).map_err(io_err("fixing the ESP's directory entries"))?;
    esp.flush().map_err(io_err("writing the ESP"))?;
    Ok((fat_type, extents))
}

/// Build the appliance described by `opts.manifest`, signed when its `[signing]` table names
/// keys.
pub fn build(opts: &BuildOptions) -> Result<Built, BuildError> {
    build_with(opts, true)
}

/// [`build`], with signing skipped when `sign` is false (`vmseal build --unsigned`).
pub fn build_with(opts: &BuildOptions, sign: bool) -> Result<Built, BuildError> {
    let mut m = Manifest::load(&opts.manifest)?;
    // `[snp]`: check the firmware now, before anything is written.
    let snp = m.snp.as_ref().map(|s| crate::confidential::SnpOptions {
        firmware: m.dir.join(&s.firmware),
        config: s.config(),
        payload: s.payload == crate::compose::manifest::SnpPayload::Appliance,
    });
    if let (Some(o), true) = (&snp, opts.predict) {
        crate::confidential::check(o)?;
    }
    let sign_plan = if sign {
        crate::sign::image::resolve(&m, &opts.pkcs11)?
    } else {
        None
    };
    let epoch = inputs::source_date_epoch()?;
    let timestamp = u32::try_from(epoch).unwrap_or(u32::MAX);
    let stub = stub::load(opts.stub.as_deref())?;
    let stub_sections = pe::stub_section_names(&stub)?;
    let policy = crate::compose::policy::from_manifest(&m)?;
    let pcr_plan = sign_plan.as_ref().and_then(|sp| sp.pcr.as_ref());
    let mut plan = inputs::plan(
        &m,
        &stub_sections,
        stub.len() as u64,
        policy.encode(),
        pcr_plan.map(|p| p.pem.clone()),
    )?;
    let kernel_signed = match &sign_plan {
        Some(sp) => crate::sign::image::sign_kernel(&m, &mut plan, sp.signer.as_ref())?,
        None => None,
    };
    if let Some(p) = pcr_plan {
        add_pcrsig(&mut plan, p)?;
    }
    // No `image.size`: the smallest whole-MiB image that holds the PE (in the lock file's
    // manifest, with `size_auto`).
    if m.image.size_auto {
        m.image.size = inputs::smallest_image(inputs::pe_size(stub.len() as u64, &plan));
    }
    let vars_bytes = match sign_plan.as_ref().and_then(|sp| sp.vars.as_ref()) {
        Some(v) => Some(crate::sign::image::vars_bytes(v)?),
        None => None,
    };

    // Validation is done: from here on, only I/O can fail (and the PE composition, which
    // re-validates its own output).
    let timings = Timings::new();
    let lens: Vec<(String, u64)> = plan.iter().map(|p| (p.name.clone(), p.len())).collect();
    let mut composed = Composed::new(&stub, &lens, timestamp)?;
    let unsigned_headers = composed.headers().to_vec();
    // A signed build lays out the signed PE now: the certificate table's size does not
    // depend on the digest it signs, so the headers say where it goes and how long it is
    // before a byte is hashed (the Authenticode digest skips that entry and the checksum).
    let table = match &sign_plan {
        Some(sp) => {
            let size = crate::sign::image::table_size(sp.signer.as_ref())?;
            Some((composed.reserve_certificate_table(size)?, size))
        }
        None => None,
    };
    // What streams: the unsigned PE and the padding to the table (hashed as trailing data).
    let streamed_len = table.map_or(composed.len, |(at, _)| at);
    let final_len = table.map_or(composed.len, |(at, size)| at + u64::from(size));
    std::fs::create_dir_all(&opts.out)
        .map_err(io_err(format!("creating {}", opts.out.display())))?;
    let name = &m.image.name;
    let layout = Layout::new(m.image.size);
    let tmp = |what: &str| {
        tempfile::Builder::new()
            .prefix(&format!(".{name}.{what}."))
            .tempfile_in(&opts.out)
            .map_err(io_err(format!(
                "creating a temporary file in {}",
                opts.out.display()
            )))
    };
    let efi_tmp = tmp("efi")?;
    let img_tmp = tmp("img")?;
    let mut lock_tmp = tmp("lock")?;
    // The store first: the prediction reads it while NAME.efi and NAME.img are hashed.
    let vars_tmp = match vars_bytes.as_ref().map(|(b, _)| b) {
        Some(b) => {
            let mut t = tmp("vars")?;
            t.write_all(b)
                .map_err(io_err("writing the variable store"))?;
            Some(t)
        }
        None => None,
    };
    // fatfs wants a `&'static` time provider: one small value leaked per build.
    let time: &'static FixedTime = Box::leak(Box::new(FixedTime::from_epoch(epoch)));

    // Every hash of the PE's bytes, taken while it streams: each input's SHA-256 (lock file,
    // GPT GUIDs), the SHA-256 Authenticode digest the signature signs, and for the prediction
    // the Authenticode digest and every section's contents in each bank.
    let efi_name = format!("{name}.efi");
    let boot = {
        let mut head = composed.headers().to_vec();
        if let Some(Piece::Bytes(body)) = composed.pieces().get(1) {
            head.extend_from_slice(body);
        }
        // What the prediction reads of BOOTX64.EFI for its headers (zeros past the stub).
        head.resize(
            usize::try_from(final_len.min(HEADER_PREFIX)).unwrap_or(0),
            0,
        );
        BootFile::parse(&head, final_len)
            .map_err(|e| BuildError::Pe(PeError::Validate(format!("{efi_name}: {e}"))))?
    };
    let mut chains: Vec<Chain> = composed
        .sections
        .iter()
        .filter(|s| s.added)
        .zip(&plan)
        .map(|(s, p)| {
            let at = u64::from(s.pointer_to_raw_data);
            Chain {
                alg: HashAlg::SHA256,
                ranges: vec![(at, at + p.len())],
                zeros: 0,
                prefix: Vec::new(),
            }
        })
        .collect();
    let authenticode_at = chains.len();
    if table.is_some() {
        chains.push(Chain {
            alg: HashAlg::SHA256,
            ranges: authenticode::hashed_ranges(&boot.layout)
                .map_err(|e| BuildError::Pe(PeError::Validate(format!("{efi_name}: {e}"))))?,
            zeros: 0,
            prefix: Vec::new(),
        });
    }
    let pe_chains = if opts.predict {
        Some(PeChains::new(&boot, &HashAlg::COMPUTED, true, &efi_name)?)
    } else {
        None
    };
    let predict_at = chains.len();
    if let Some(p) = &pe_chains {
        chains.extend(p.chains.iter().cloned());
    }
    // The bytes the prediction needs as bytes (`.linux`, `.cmdline`; the certificate table
    // is made below): copied aside as they stream by, unless vmseal holds them already (a
    // signed kernel: taken from the plan afterwards, `from_plan`; its range here is empty).
    let added_at = |at: u64| {
        composed
            .sections
            .iter()
            .filter(|s| s.added)
            .position(|s| u64::from(s.pointer_to_raw_data) == at)
            .filter(|&i| matches!(plan.get(i).map(|p| &p.source), Some(Source::Inline(_))))
    };
    let (mut kept, from_plan): (Vec<Kept>, Vec<Option<usize>>) = pe_chains
        .as_ref()
        .map(|p| {
            let n = p.wants.len().saturating_sub(1);
            p.wants
                .iter()
                .take(n)
                .map(|&r| match added_at(r.0) {
                    Some(i) => (((0, 0), Vec::new()), Some(i)),
                    None => ((r, Vec::new()), None),
                })
                .unzip()
        })
        .unwrap_or_default();
    timings.mark("check inputs, lay out the PE");

    // The main thread streams the PE once, in chunks: it writes NAME.efi (summing the PE
    // checksum) and shares each chunk with the image writer, which first formats the ESP and
    // allocates BOOTX64.EFI for the final (signed) size ([`prepare_esp`]; its queue holds the
    // chunks that arrive meanwhile), then writes them into the file's clusters, and with the
    // hashing workers ([`Workers`], one per core), each owning some of the chains. A chunk is
    // never copied, and every queue is bounded: the memory in flight is a few MiB whatever
    // the payload. Then the signature is made from the streamed digest, appended to both
    // copies of the PE, and the checksum patched in both; NAME.efi and NAME.img are hashed
    // (from the page cache) for the lock file.
    let img = img_tmp.as_file();
    img.set_len(m.image.size)
        .map_err(io_err("sizing the image"))?;
    // Write `bytes` (at `at` in the PE) into the image's reserved clusters.
    let write_boot = |extents: &disk::Extents, at: u64, bytes: &[u8]| -> io::Result<()> {
        for (to, r) in extents.map(at, bytes.len()) {
            std::os::unix::fs::FileExt::write_all_at(img, &bytes[r], layout.start + to)?;
        }
        Ok(())
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The outer scope holds the threads that hash NAME.efi and NAME.img: they outlive the
    // stream's scope and run while the prediction is made.
    let file_name = |ext: &str| format!("{name}.{ext}");
    let (input_digests, fat_type, signed, efi_hashes, img_hash, prediction) = std::thread::scope(
        |o| -> Result<_, BuildError> {
            let (input_digests, fat_type, digests, signed, efi_job, img_job) = std::thread::scope(
                |s| -> Result<_, BuildError> {
                    let mut workers = Workers::spawn(s, &chains, streamed_len, cores, DEPTH)
                        .map_err(|e| io_err("hashing the appliance PE")(io::Error::other(e)))?;
                    let mut efi_out = efi_tmp.as_file();
                    let mut head_sum = PeChecksum::default();
                    head_sum.update(composed.headers());
                    let mut unsigned_head_sum = PeChecksum::default();
                    unsigned_head_sum.update(&unsigned_headers);
                    let mut body_sum = PeChecksum::default();
                    let mut efi_failed: Option<io::Error> = None;
                    let mut hash_failed: Option<hashstream::StreamError> = None;
                    let mut stamps: Vec<Option<[Stamp; 2]>> = vec![None; plan.len()];
                    let (img_tx, img_rx) =
                        mpsc::sync_channel::<(u64, Arc<Recycled>)>(DEPTH + ALLOCATING);
                    let manifest = &m;
                    let img_job = s.spawn(move || -> Result<_, BuildError> {
                        let (fat_type, extents) =
                            prepare_esp(img, &layout, time, final_len, manifest)?;
                        for (at, chunk) in img_rx {
                            write_boot(&extents, at, chunk.as_ref().as_ref())
                                .map_err(io_err("writing BOOTX64.EFI"))?;
                        }
                        Ok((fat_type, extents))
                    });

                    let bar = opts.progress.bar("building", streamed_len);
                    let (pool_tx, pool_rx) = mpsc::channel::<Vec<u8>>();
                    let buffer = |n: usize| {
                        let mut b = pool_rx.try_recv().unwrap_or_default();
                        // A recycled buffer keeps its old bytes: `read_exact` overwrites all `n`
                        // of them, so only a grown tail needs zeroing.
                        b.truncate(n);
                        b.resize(n, 0);
                        b
                    };
                    let mut at = 0u64;
                    let mut emit = |bytes: Vec<u8>, summed: bool| {
                        let len = bytes.len() as u64;
                        bar.inc(len);
                        if summed {
                            body_sum.update(&bytes);
                        }
                        for ((s, e), into) in &mut kept {
                            let (from, to) = ((*s).max(at), (*e).min(at + len));
                            if let Some(b) = bytes.get(
                                usize::try_from(from.saturating_sub(at)).unwrap_or(usize::MAX)
                                    ..usize::try_from(to.saturating_sub(at)).unwrap_or(0),
                            ) {
                                into.extend_from_slice(b);
                            }
                        }
                        if let Err(e) = efi_out.write_all(&bytes) {
                            efi_failed = Some(e);
                            return false;
                        }
                        let chunk = Arc::new(Recycled::new(bytes, pool_tx.clone()));
                        if let Err(e) = workers.feed(&chunk) {
                            hash_failed = Some(e);
                            return false;
                        }
                        // The image writer only stops early on an error, reported at its join:
                        // then the stream stops too.
                        let sent = img_tx.send((at, chunk)).is_ok();
                        at += len;
                        sent
                    };
                    let padding = usize::try_from(streamed_len - composed.len).unwrap_or(0);
                    let mut pieces = composed.pieces();
                    let last_section = pieces.len().saturating_sub(1);
                    if padding > 0 {
                        pieces.push(Piece::Zeros(padding));
                    }
                    'stream: for (k, piece) in pieces.into_iter().enumerate() {
                        let more = match piece {
                            // The headers are summed apart: signed and unsigned differ there.
                            Piece::Bytes(b) => emit(b.to_vec(), k != 0),
                            // The padding to the certificate table (the last piece) is not part of
                            // the unsigned PE: summed apart.
                            Piece::Zeros(n) => emit(pe::zeros(n).to_vec(), k <= last_section),
                            Piece::Section(i) => match plan.get(i).map(|p| &p.source) {
                                Some(Source::Inline(b)) => emit(b.clone(), true),
                                Some(Source::File {
                                    abs, path, size, ..
                                }) => {
                                    let what = || format!("reading {path}");
                                    let mut file = File::open(abs).map_err(io_err(what()))?;
                                    let before = Stamp::of(&file).map_err(io_err(what()))?;
                                    let mut left = *size;
                                    while left > 0 {
                                        let n = usize::try_from(left.min(CHUNK as u64))
                                            .unwrap_or(CHUNK);
                                        let mut buf = buffer(n);
                                        file.read_exact(&mut buf).map_err(io_err(format!(
                                            "reading {path} (did it change during the build?)"
                                        )))?;
                                        left -= n as u64;
                                        if !emit(buf, true) {
                                            break 'stream;
                                        }
                                    }
                                    let mut extra = [0u8; 1];
                                    if file.read(&mut extra).map_err(io_err(what()))? != 0 {
                                        return Err(io_err(what())(io::Error::other(
                                            "the file grew during the build",
                                        )));
                                    }
                                    let after = Stamp::of(&file).map_err(io_err(what()))?;
                                    if let Some(slot) = stamps.get_mut(i) {
                                        *slot = Some([before, after]);
                                    }
                                    true
                                }
                                None => {
                                    return Err(io_err("composing")(io::Error::other(
                                        "no such section",
                                    )));
                                }
                            },
                        };
                        if !more {
                            break;
                        }
                    }
                    bar.finish_and_clear();
                    drop(img_tx);
                    let (fat_type, extents) = img_job.join().map_err(|_| {
                        io_err("writing BOOTX64.EFI")(io::Error::other("thread panicked"))
                    })??;
                    if let Some(e) = efi_failed {
                        return Err(io_err("writing the appliance PE")(e));
                    }
                    let hashing = |e: hashstream::StreamError| {
                        io_err("hashing the appliance PE")(io::Error::other(e))
                    };
                    if let Some(e) = hash_failed {
                        return Err(hashing(e));
                    }
                    let digests = workers.finish().map_err(hashing)?;
                    // The input was read once, and did not change while it was.
                    for (p, st) in plan.iter().zip(&stamps) {
                        if let (Source::File { path, .. }, Some(st)) = (&p.source, st)
                            && st[0] != st[1]
                        {
                            return Err(io_err(format!("reading {path}"))(io::Error::other(
                                "the file changed during the build (build again once nothing writes it)",
                            )));
                        }
                    }
                    timings.mark("stream the PE into .efi and the ESP, hashing it");

                    // The signature, from the digest that streamed by, then the header fields after
                    // it: the certificate-table entry is already in place, the CheckSum is not.
                    let odd = || io_err("summing the PE")(io::Error::other("odd header length"));
                    let mut signed = None;
                    let full_sum = match (&sign_plan, table) {
                        (Some(sp), Some((table_at, size))) => {
                            let auth = digests.get(authenticode_at).cloned().unwrap_or_default();
                            let bytes = crate::sign::image::certificate_table(
                                &auth,
                                sp.signer.as_ref(),
                                size,
                            )?;
                            write_boot(&extents, table_at, &bytes)
                                .map_err(io_err("writing BOOTX64.EFI"))?;
                            efi_out
                                .write_all(&bytes)
                                .map_err(io_err("writing the appliance PE"))?;
                            let mut tail = PeChecksum::default();
                            tail.update(pe::zeros(padding));
                            tail.update(&bytes);
                            let sum = head_sum
                                .followed_by(&body_sum)
                                .and_then(|s| s.followed_by(&tail))
                                .ok_or_else(odd)?;
                            signed = Some((auth, bytes));
                            sum
                        }
                        _ => head_sum.followed_by(&body_sum).ok_or_else(odd)?,
                    };
                    let sum = full_sum.finish().to_le_bytes();
                    write_boot(&extents, composed.checksum_offset(), &sum)
                        .map_err(io_err("writing BOOTX64.EFI"))?;
                    let mut efi = efi_tmp.as_file();
                    efi.seek(SeekFrom::Start(composed.checksum_offset()))
                        .and_then(|_| efi.write_all(&sum))
                        .map_err(io_err("writing the appliance PE"))?;
                    timings.mark("sign, patch the headers");

                    // NAME.efi is final: hash it (and, signed, the unsigned PE it was: other headers,
                    // the same bytes after them), reading it once, while the GPT is written.
                    let mut efi_chains = vec![Chain {
                        alg: HashAlg::SHA256,
                        ranges: vec![(0, final_len)],
                        zeros: 0,
                        prefix: Vec::new(),
                    }];
                    if signed.is_some() {
                        let mut head = unsigned_headers.clone();
                        let sum = unsigned_head_sum
                            .followed_by(&body_sum)
                            .ok_or_else(odd)?
                            .finish()
                            .to_le_bytes();
                        let at = usize::try_from(composed.checksum_offset()).unwrap_or(usize::MAX);
                        head.get_mut(at..at + 4)
                            .ok_or_else(odd)?
                            .copy_from_slice(&sum);
                        efi_chains.push(Chain {
                            alg: HashAlg::SHA256,
                            ranges: vec![(head.len() as u64, composed.len)],
                            zeros: 0,
                            prefix: head,
                        });
                    }
                    let efi_path = efi_tmp.path();
                    let efi_job = o.spawn(move || -> io::Result<Vec<Vec<u8>>> {
                        let f = File::open(efi_path)?;
                        hashstream::hash_chains_in(f, final_len, &efi_chains, PIECE, |_| ())
                            .map_err(io::Error::other)
                    });
                    let input_digests: Vec<[u8; 32]> = digests
                        .iter()
                        .take(plan.len())
                        .map(|d| d.as_slice().try_into().unwrap_or([0; 32]))
                        .collect();
                    // GPT with GUIDs derived from the content: the image name and every byte that went
                    // into the PE (the stub and the section digests determine it).
                    let mut guid_parts: Vec<Vec<u8>> = vec![
                        name.as_bytes().to_vec(),
                        sha2::Sha256::digest(&*stub).to_vec(),
                    ];
                    guid_parts.extend(
                        plan.iter()
                            .zip(&input_digests)
                            .map(|(p, d)| [p.name.as_bytes(), d].concat()),
                    );
                    let parts = |tag: &'static [u8]| {
                        let mut v: Vec<&[u8]> = vec![tag];
                        v.extend(guid_parts.iter().map(Vec::as_slice));
                        v
                    };
                    let disk_guid = disk::guid_from(&parts(b"vmseal disk"));
                    let part_guid = disk::guid_from(&parts(b"vmseal esp"));
                    let mut img = img_tmp.as_file();
                    disk::write_gpt(&mut img, &layout, disk_guid, part_guid)
                        .map_err(io_err("writing the GPT"))?;
                    img.flush().map_err(io_err("writing the image"))?;

                    let img_path = img_tmp.path();
                    let progress = &opts.progress;
                    let img_job = o.spawn(move || hash_file(img_path, progress));
                    Ok((
                        (input_digests, (disk_guid, part_guid)),
                        fat_type,
                        digests,
                        signed,
                        efi_job,
                        img_job,
                    ))
                },
            )?;
            // What the prediction would read from BOOTX64.EFI, from the stream.
            let boot_digests = match &pe_chains {
                Some(p) => {
                    let mut wants: Vec<Vec<u8>> = kept
                        .into_iter()
                        .zip(&from_plan)
                        .map(|((_, b), i)| match i.and_then(|i| plan.get_mut(i)) {
                            Some(Planned {
                                source: Source::Inline(held),
                                ..
                            }) => std::mem::take(held),
                            _ => b,
                        })
                        .collect();
                    wants.push(
                        signed
                            .as_ref()
                            .map(|(_, table)| table.clone())
                            .unwrap_or_default(),
                    );
                    Some(p.assemble(&boot, digests[predict_at..].to_vec(), wants)?)
                }
                None => None,
            };
            // The prediction, from the image's GPT and PE headers and the streamed digests
            // (docs/pcrs-json.md), while NAME.efi and NAME.img are hashed.
            let prediction = if opts.predict {
                let mut popts = crate::measure::predict::PredictOptions::new(img_tmp.path());
                // A signed build predicts the boot with its own store: Secure Boot on, the org's db.
                popts.vars = vars_tmp.as_ref().map(|t| t.path().to_path_buf());
                popts.snp.clone_from(&snp);
                // BOOTX64.EFI's digests were taken as it streamed: the image is not read again
                // (only its GPT and the PE's headers, to check they are what streamed).
                let mut prediction =
                    crate::measure::predict::predict_with(&popts, &mut |facts, banks, want| {
                        match &boot_digests {
                            Some(d)
                                if facts.boot.size == boot.size
                                    && facts.boot.sections == boot.sections =>
                            {
                                d.select(banks, want).ok_or_else(|| {
                                    crate::measure::predict::PredictError::Compute(
                                        "a bank was not hashed while the PE streamed".into(),
                                    )
                                })
                            }
                            _ => crate::measure::predict::digest_boot(facts, banks, want),
                        }
                    })?;
                prediction
                    .sources
                    .insert("image".into(), file_name("img").into());
                if vars_tmp.is_some() {
                    prediction
                        .sources
                        .insert("vars".into(), file_name("vars.fd").into());
                }
                timings.mark("predict PCRs");
                Some(prediction)
            } else {
                None
            };
            let efi_hashes = efi_job
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a hashing thread panicked")));
            let img_hash = img_job
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a hashing thread panicked")));
            Ok((
                input_digests,
                fat_type,
                signed,
                efi_hashes,
                img_hash,
                prediction,
            ))
        },
    )?;
    let (input_digests, (disk_guid, part_guid)) = input_digests;
    let efi_hashes = efi_hashes.map_err(io_err("hashing the appliance PE"))?;
    let sha_of = |i: usize| -> [u8; 32] {
        efi_hashes
            .get(i)
            .and_then(|d| d.as_slice().try_into().ok())
            .unwrap_or([0; 32])
    };
    let (efi_len, efi_sha) = (final_len, sha_of(0));
    let (img_len, img_sha) = img_hash.map_err(io_err("hashing the image"))?;
    let signed_record = match (&signed, &sign_plan) {
        (Some((auth, _)), Some(sp)) => Some(crate::sign::image::record_digests(
            &sha_of(1),
            &efi_sha,
            auth,
            sp.signer.certificate(),
        )),
        _ => None,
    };
    timings.mark("GPT, hash .efi and .img");

    // The lock file.
    let stub_desc = match (
        &opts.stub,
        std::env::var_os("VMSEAL_STUB_EFI").filter(|v| !v.is_empty()),
    ) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(p)) => PathBuf::from(p).display().to_string(),
        (None, None) => "(embedded)".into(),
    };
    let mut inputs_json = vec![serde_json::json!({
        "field": "stub",
        "path": stub_desc,
        "size": stub.len(),
        "sha256": hex::encode(sha2::Sha256::digest(&*stub)),
    })];
    for (p, d) in plan.iter().zip(&input_digests) {
        if let Source::File {
            field, path, size, ..
        } = &p.source
        {
            inputs_json.push(serde_json::json!({ "field": field, "path": path, "size": size, "sha256": hex::encode(d) }));
        }
    }
    let mut sections_json = Vec::new();
    let mut added_digests = input_digests.iter();
    let stub_pe = goblin::pe::PE::parse(&stub).map_err(|e| PeError::Parse(e.to_string()))?;
    for (i, s) in composed.sections.iter().enumerate() {
        let sha = if s.added {
            added_digests.next().map(hex::encode).unwrap_or_default()
        } else {
            let content = stub_pe.sections.get(i).and_then(|o| {
                let start = o.pointer_to_raw_data as usize;
                stub.get(start..start + o.virtual_size.min(o.size_of_raw_data) as usize)
            });
            hex::encode(sha2::Sha256::digest(content.unwrap_or(&[])))
        };
        sections_json.push(serde_json::json!({
            "name": s.name,
            "added": s.added,
            "virtual_address": s.virtual_address,
            "virtual_size": s.virtual_size,
            "pointer_to_raw_data": s.pointer_to_raw_data,
            "size_of_raw_data": s.size_of_raw_data,
            "sha256": sha,
        }));
    }
    let mut lock = serde_json::json!({
        "format": LOCK_FORMAT,
        "vmseal": env!("CARGO_PKG_VERSION"),
        "source_date_epoch": epoch,
        "manifest": m.canonical(),
        "inputs": inputs_json,
        "sections": sections_json,
        "outputs": [
            { "file": file_name("efi"), "size": efi_len, "sha256": hex::encode(efi_sha) },
            { "file": file_name("img"), "size": img_len, "sha256": hex::encode(img_sha) },
        ],
        "disk": {
            "disk_guid": disk_guid.to_text(),
            "esp_guid": part_guid.to_text(),
            "esp_first_lba": layout.start / disk::SECTOR,
            "esp_last_lba": (layout.start + layout.len) / disk::SECTOR - 1,
            "fat": format!("{fat_type:?}").to_lowercase(),
            "boot_file": BOOT_PATH,
        },
    });
    if let Some(mut s) = signed_record {
        if let Some(k) = kernel_signed {
            s["kernel"] = k;
        }
        if let Some((b, template)) = &vars_bytes {
            s["vars"] = serde_json::json!({
                "file": file_name("vars.fd"),
                "size": b.len(),
                "sha256": hex::encode(sha2::Sha256::digest(b)),
            });
            if let Some(t) = template {
                s["vars"]["template"] = t.clone();
            }
        }
        lock["signing"] = s;
    }
    let mut text = serde_json::to_string_pretty(&lock)
        .map_err(|e| io_err("encoding the lock file")(io::Error::other(e)))?;
    text.push('\n');
    lock_tmp
        .write_all(text.as_bytes())
        .map_err(io_err("writing the lock file"))?;

    let efi_path = opts.out.join(file_name("efi"));
    let img_path = opts.out.join(file_name("img"));
    let lock_path = opts.out.join(file_name("lock.json"));
    let pcrs_path = opts.out.join(file_name("pcrs.json"));
    let pcrs_tmp = match prediction {
        Some(p) => {
            let mut t = tmp("pcrs")?;
            t.write_all(p.to_file().to_text().as_bytes())
                .map_err(io_err("writing the PCR prediction"))?;
            Some(t)
        }
        None => None,
    };

    // Rename into place.
    let mut outputs = vec![
        (efi_tmp, &efi_path),
        (img_tmp, &img_path),
        (lock_tmp, &lock_path),
    ];
    let pcrs_made = pcrs_tmp.is_some();
    if let Some(t) = pcrs_tmp {
        outputs.push((t, &pcrs_path));
    }
    let vars_path = opts.out.join(file_name("vars.fd"));
    let vars_made = vars_tmp.is_some();
    if let Some(t) = vars_tmp {
        outputs.push((t, &vars_path));
    }
    for (t, dest) in outputs {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            t.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(io_err(format!("setting permissions of {}", dest.display())))?;
        }
        t.persist(dest).map_err(|e| BuildError::Io {
            what: format!("renaming to {}", dest.display()),
            source: e.error,
        })?;
    }
    // A previous build's outputs that this one does not produce (an `--unsigned` rebuild's
    // NAME.vars.fd, a `--no-predict` rebuild's NAME.pcrs.json) would describe another image:
    // removed, once everything new is in place.
    for (stale, made) in [(&pcrs_path, pcrs_made), (&vars_path, vars_made)] {
        if !made {
            match std::fs::remove_file(stale) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(BuildError::Io {
                        what: format!("removing the stale {}", stale.display()),
                        source: e,
                    });
                }
            }
        }
    }
    timings.mark("lock file + rename");
    Ok(Built {
        img: img_path,
        efi: efi_path,
        lock: lock_path,
        pcrs: opts.predict.then_some(pcrs_path),
        vars: vars_bytes.is_some().then_some(vars_path),
        lock_json: lock,
    })
}

/// Phase timings on stderr when `VMSEAL_TIMINGS` is set (for `scripts/bench-build.sh`).
struct Timings(Option<std::cell::Cell<std::time::Instant>>);

impl Timings {
    fn new() -> Self {
        Self(
            std::env::var_os("VMSEAL_TIMINGS")
                .map(|_| std::cell::Cell::new(std::time::Instant::now())),
        )
    }

    fn mark(&self, what: &str) {
        if let Some(t) = &self.0 {
            let now = std::time::Instant::now();
            eprintln!("vmseal: {:>7.3}s {what}", (now - t.get()).as_secs_f64());
            t.set(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse file (holes at the start, between writes and at the end, and a write that is
    /// not page-aligned) hashes to the SHA-256 of its bytes, with holes skipped or not.
    #[test]
    fn hash_file_over_holes_equals_hashing_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for (len, writes) in [
            (0u64, vec![]),
            (3 << 20, vec![]),
            (
                9 << 20,
                vec![
                    (1u64 << 20, 5000usize),
                    ((4 << 20) + 123, 700_000),
                    ((9 << 20) - 10, 10),
                ],
            ),
            (1000, vec![(0, 1000)]),
        ] {
            let path = dir.path().join("sparse");
            let f = File::create(&path).unwrap();
            f.set_len(len).unwrap();
            for (at, n) in &writes {
                let bytes: Vec<u8> = (0..*n).map(|i| (i % 251) as u8 + 1).collect();
                std::os::unix::fs::FileExt::write_all_at(&f, &bytes, *at).unwrap();
            }
            drop(f);
            let bytes = std::fs::read(&path).unwrap();
            let want: [u8; 32] = sha2::Sha256::digest(&bytes).into();
            assert_eq!(
                hash_file(&path, &Progress::hidden()).unwrap(),
                (len, want),
                "{len} bytes, writes {writes:?}"
            );
        }
    }
}
