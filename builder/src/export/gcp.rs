//! Google Compute Engine: `disk.raw` in a gzip-compressed GNU tar archive (what `gcloud compute
//! images create --source-uri gs://…/NAME.tar.gz` imports), and the Shielded VM key files of
//! `--platform-key-file`, `--key-exchange-key-file`, `--signature-database-file` and
//! `--forbidden-database-file` (DER X.509 certificates; raw 32-byte SHA-256 digests for hash
//! entries).
//!
//! The archive is reproducible: one GNU header (`tar --format=gnu`), owner 0:0, mode 0644,
//! mtime `SOURCE_DATE_EPOCH` (else 0), gzip header mtime 0. Compute Engine takes disks in whole
//! GiB, so `disk.raw` is the image padded with zeros to the next GiB (the primary GPT, hence the
//! PCR 5 prediction, is unchanged; firmware finds the backup GPT where the build put it).

use std::io::{self, Read, Write};

use super::keys::{Entry, SecureBootDbs};

/// Compute Engine's disk granularity.
pub const GCP_ALIGN: u64 = 1 << 30;

/// Write `disk.raw` (`data` then zeros up to `size` bytes) as a `.tar.gz` to `out`.
pub fn write_tar_gz(
    data: impl Read,
    data_len: u64,
    size: u64,
    mtime: u64,
    out: impl Write,
) -> io::Result<()> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut h = tar::Header::new_gnu();
    h.set_path("disk.raw")?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let body = data
        .take(data_len)
        .chain(io::repeat(0).take(size.saturating_sub(data_len)));
    tar.append(&h, body)?;
    tar.into_inner()?.finish()?.flush()
}

/// The key files: `(file name, bytes)` for each entry, and the `gcloud` flags that take them.
pub fn key_files(dbs: &SecureBootDbs) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut files = Vec::new();
    let mut flags = Vec::new();
    for (var, entries) in dbs.each() {
        let flag = match var {
            "PK" => "--platform-key-file",
            "KEK" => "--key-exchange-key-file",
            "db" => "--signature-database-file",
            _ => "--forbidden-database-file",
        };
        let mut names = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let (name, bytes) = match e {
                Entry::X509(der) => (format!("{var}-{}.der", i + 1), der.clone()),
                Entry::Sha256(h) => (format!("{var}-{}.sha256.bin", i + 1), h.to_vec()),
            };
            names.push(name.clone());
            files.push((name, bytes));
        }
        if !names.is_empty() {
            flags.push(format!("{flag}={}", names.join(",")));
        }
    }
    (files, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_is_reproducible_and_padded() {
        let data = vec![0xabu8; 3000];
        let mut a = Vec::new();
        write_tar_gz(&data[..], 3000, 8192, 0, &mut a).unwrap();
        let mut b = Vec::new();
        write_tar_gz(&data[..], 3000, 8192, 0, &mut b).unwrap();
        assert_eq!(a, b);
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&a[..]));
        let mut entries = ar.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some("disk.raw"));
        let mut got = Vec::new();
        e.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 8192);
        assert_eq!(&got[..3000], &data[..]);
        assert!(got[3000..].iter().all(|b| *b == 0));
        drop(e);
        assert!(entries.next().is_none());
    }
}
