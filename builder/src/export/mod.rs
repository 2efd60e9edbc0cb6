//! `vmseal export`: a built image in the form each cloud imports, with the org's Secure Boot
//! keys in that cloud's own format — so the Trusted Launch / Shielded VM / NitroTPM instance
//! enrolls exactly the keys PCR 7 was predicted for.
//!
//! | cloud | disk | keys |
//! | --- | --- | --- |
//! | `azure` | `NAME.vhd`: fixed VHD, data padded to whole MiB ([`vhd`]) | `NAME.azure.json`: the image version's `uefiSettings` ([`azure`]) |
//! | `gcp` | `NAME.tar.gz` holding `disk.raw`, padded to whole GiB ([`gcp`]) | `PK-1.der`, `KEK-N.der`, `db-N.der`, `dbx-N.{der,sha256.bin}` and `gcloud.sh` |
//! | `aws` | `NAME.raw` (the image itself) | `NAME.uefi-data`: the `--uefi-data` blob ([`aws`]) and `aws.sh` |
//!
//! The keys come from the variable store the image boots with (`--vars`, default `NAME.vars.fd`
//! next to the image), read with `signing::varstore` ([`keys`]). Padding never touches the
//! primary GPT, so the image's PCR prediction holds for every export.
//!
//! All outputs are written into a staging directory inside `--out` and renamed into place only
//! when every one of them is complete: a failed export leaves nothing behind. The outputs are
//! reproducible (`SOURCE_DATE_EPOCH`, else 0, for every timestamp).

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod keys;
pub mod vhd;

use std::fs::File;
use std::io::{self, BufWriter, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use sha2::Digest as _;
use signing::varstore::VarStore;

use keys::SecureBootDbs;

/// A cloud vmseal exports to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    /// Microsoft Azure (Trusted Launch, confidential VMs).
    Azure,
    /// Google Compute Engine (Shielded VM).
    Gcp,
    /// Amazon EC2 (NitroTPM, UEFI Secure Boot).
    Aws,
}

impl Cloud {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Azure => "azure",
            Self::Gcp => "gcp",
            Self::Aws => "aws",
        }
    }
}

/// What to export.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The disk image (`NAME.img` from `vmseal build`).
    pub image: PathBuf,
    /// The cloud.
    pub to: Cloud,
    /// The output directory (created).
    pub out: PathBuf,
    /// The variable store holding the keys; `None` = `NAME.vars.fd` next to the image.
    pub vars: Option<PathBuf>,
    /// Export the keys (false: the disk alone, for Secure Boot off).
    pub keys: bool,
}

/// One file written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Written {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// What an export wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Exported {
    /// The cloud.
    pub cloud: &'static str,
    /// The files, in the order written.
    pub files: Vec<Written>,
    /// Things the user should know (padding, the variable store used).
    pub notes: Vec<String>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Bad input: the message names the file, the problem and the fix.
    #[error("{0}")]
    Input(String),
    /// Reading or writing failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        source: io::Error,
    },
}

impl ExportError {
    /// True when the input is at fault (exit status 2).
    pub fn is_input_error(&self) -> bool {
        matches!(self, Self::Input(_))
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        file: path.display().to_string(),
        source,
    }
}

/// `SOURCE_DATE_EPOCH`, else 0.
fn epoch() -> Result<u64, ExportError> {
    crate::compose::inputs::source_date_epoch().map_err(|e| ExportError::Input(e.to_string()))
}

/// The secure boot databases of the store `vars` (or `NAME.vars.fd` next to `image`).
fn load_keys(
    image: &Path,
    vars: Option<&Path>,
) -> Result<(PathBuf, VarStore, SecureBootDbs), ExportError> {
    let path = match vars {
        Some(p) => p.to_path_buf(),
        None => {
            let p = image.with_extension("vars.fd");
            if !p.is_file() {
                return Err(ExportError::Input(format!(
                    "{}: no variable store next to the image ({} does not exist) — pass --vars FILE (the NAME.vars.fd of a signed build, or `vmseal vars` output), or --no-keys to export the disk alone",
                    image.display(),
                    p.display()
                )));
            }
            p
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        ExportError::Input(format!(
            "{}: {e} — pass --vars with an existing OVMF variable store",
            path.display()
        ))
    })?;
    let store = VarStore::parse(&bytes).map_err(|e| {
        ExportError::Input(format!(
            "{}: {e} — give an OVMF_VARS*.fd file (e.g. NAME.vars.fd from vmseal build)",
            path.display()
        ))
    })?;
    let dbs = SecureBootDbs::from_store(&store)
        .map_err(|e| ExportError::Input(format!("{}: {e}", path.display())))?;
    Ok((path, store, dbs))
}

/// Export `opts.image` for `opts.to` into `opts.out`.
pub fn export(opts: &ExportOptions) -> Result<Exported, ExportError> {
    let image = &opts.image;
    // A vmseal disk: a valid GPT with an ESP holding \EFI\BOOT\BOOTX64.EFI.
    let facts = crate::measure::predict::read_image(image).map_err(|e| {
        ExportError::Input(match e {
            crate::measure::predict::PredictError::Io { file, source } => {
                format!("{file}: {source} — give the NAME.img written by `vmseal build`")
            }
            other => other.to_string(),
        })
    })?;
    let size = std::fs::metadata(image).map_err(io_at(image))?.len();
    if size == 0 || size % 512 != 0 {
        return Err(ExportError::Input(format!(
            "{}: {size} bytes is not a whole number of 512-byte sectors — give the NAME.img written by `vmseal build`",
            image.display()
        )));
    }
    let keys = if opts.keys {
        Some(load_keys(image, opts.vars.as_deref())?)
    } else {
        None
    };
    let stamp = epoch()?;
    let name = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "image".into());

    std::fs::create_dir_all(&opts.out).map_err(io_at(&opts.out))?;
    let stage = tempfile::Builder::new()
        .prefix(".vmseal-export.")
        .tempdir_in(&opts.out)
        .map_err(io_at(&opts.out))?;
    let mut staged: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    if let Some((p, _, _)) = &keys {
        notes.push(format!("keys from {}", p.display()));
    }
    let put = |file: &str, bytes: &[u8], staged: &mut Vec<String>| {
        let p = stage.path().join(file);
        std::fs::write(&p, bytes).map_err(io_at(&p))?;
        staged.push(file.to_string());
        Ok::<(), ExportError>(())
    };

    match opts.to {
        Cloud::Azure => {
            let padded = size.div_ceil(vhd::AZURE_ALIGN) * vhd::AZURE_ALIGN;
            if padded != size {
                notes.push(format!(
                    "the disk was padded from {size} to {padded} bytes (Azure takes whole MiB); the primary GPT and so the PCR prediction are unchanged"
                ));
            }
            let file = format!("{name}.vhd");
            let p = stage.path().join(&file);
            write_vhd(
                image,
                size,
                padded,
                stamp,
                vhd_unique_id(&facts.gpt_event, padded),
                &p,
            )?;
            staged.push(file);
            if let Some((_, _, dbs)) = &keys {
                let json = serde_json::to_string_pretty(&azure::image_version_settings(dbs))
                    .unwrap_or_default()
                    + "\n";
                put(&format!("{name}.azure.json"), json.as_bytes(), &mut staged)?;
            }
        }
        Cloud::Gcp => {
            let padded = size.div_ceil(gcp::GCP_ALIGN) * gcp::GCP_ALIGN;
            if padded != size {
                notes.push(format!(
                    "disk.raw is the image padded from {size} to {padded} bytes (Compute Engine takes whole GiB); the primary GPT and so the PCR prediction are unchanged"
                ));
            }
            let file = format!("{name}.tar.gz");
            let p = stage.path().join(&file);
            let input = File::open(image).map_err(io_at(image))?;
            let out = File::create(&p).map_err(io_at(&p))?;
            gcp::write_tar_gz(
                input,
                size,
                padded,
                stamp,
                BufWriter::with_capacity(1 << 20, out),
            )
            .map_err(io_at(&p))?;
            staged.push(file.clone());
            let mut cmd = format!(
                "#!/bin/sh\n# Upload {file} to a bucket, then create the image (not run by vmseal):\n#   gcloud storage cp {file} gs://BUCKET/{file}\ngcloud compute images create {name} \\\n  --source-uri=gs://BUCKET/{file} \\\n  --guest-os-features=UEFI_COMPATIBLE"
            );
            if let Some((_, _, dbs)) = &keys {
                let (files, flags) = gcp::key_files(dbs);
                for (f, bytes) in &files {
                    put(f, bytes, &mut staged)?;
                }
                for f in flags {
                    cmd.push_str(&format!(" \\\n  {f}"));
                }
            }
            cmd.push('\n');
            put("gcloud.sh", cmd.as_bytes(), &mut staged)?;
        }
        Cloud::Aws => {
            let file = format!("{name}.raw");
            let p = stage.path().join(&file);
            let mut input = File::open(image).map_err(io_at(image))?;
            let mut out = File::create(&p).map_err(io_at(&p))?;
            let copied = io::copy(&mut input, &mut out).map_err(io_at(&p))?;
            if copied != size {
                return Err(ExportError::Io {
                    file: image.display().to_string(),
                    source: io::Error::other("the image changed size while it was copied"),
                });
            }
            staged.push(file.clone());
            let mut cmd = format!(
                "#!/bin/sh\n# Import {file} as an EBS snapshot (aws ec2 import-snapshot, format RAW), then\n# register it (not run by vmseal):\naws ec2 register-image --name {name} \\\n  --architecture x86_64 --boot-mode uefi --tpm-support v2.0 \\\n  --ena-support --root-device-name /dev/xvda \\\n  --block-device-mappings 'DeviceName=/dev/xvda,Ebs={{SnapshotId=SNAPSHOT_ID}}'"
            );
            if let Some((_, store, _)) = &keys {
                let vars: Vec<&signing::varstore::Variable> = keys::VARIABLES
                    .iter()
                    .filter_map(|(n, g)| store.get(n, *g))
                    .collect();
                let blob = aws::uefi_data(&vars).map_err(io_at(&p))?;
                let f = format!("{name}.uefi-data");
                put(&f, blob.as_bytes(), &mut staged)?;
                cmd.push_str(&format!(" \\\n  --uefi-data \"$(cat {f})\""));
            }
            cmd.push('\n');
            put("aws.sh", cmd.as_bytes(), &mut staged)?;
        }
    }

    // Everything is complete: move it into place.
    let mut files = Vec::new();
    for f in staged {
        let from = stage.path().join(&f);
        let to = opts.out.join(&f);
        let size = std::fs::metadata(&from).map_err(io_at(&from))?.len();
        std::fs::rename(&from, &to).map_err(io_at(&to))?;
        files.push(Written { path: to, size });
    }
    Ok(Exported {
        cloud: opts.to.name(),
        files,
        notes,
    })
}

/// A VHD Unique Id that changes with the disk: SHA-256 over the primary GPT header (its disk
/// GUID and partition-array CRC come from the image's contents) and the VHD size.
fn vhd_unique_id(gpt_event: &[u8], size: u64) -> [u8; 16] {
    let mut h = sha2::Sha256::new();
    h.update(b"vmseal vhd unique id\0");
    h.update(gpt_event.get(..92).unwrap_or(gpt_event));
    h.update(size.to_le_bytes());
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// `image` (`size` bytes), zeros up to `padded`, then the footer.
fn write_vhd(
    image: &Path,
    size: u64,
    padded: u64,
    stamp: u64,
    unique_id: [u8; 16],
    out: &Path,
) -> Result<(), ExportError> {
    let mut input = File::open(image).map_err(io_at(image))?;
    let mut f = File::create(out).map_err(io_at(out))?;
    // copy_file_range where the file system has it (the holes of the image stay holes).
    let copied = io::copy(&mut (&mut input).take(size), &mut f).map_err(io_at(out))?;
    if copied != size {
        return Err(ExportError::Io {
            file: image.display().to_string(),
            source: io::Error::other("the image changed size while it was copied"),
        });
    }
    // The padding as a hole, then the footer.
    f.set_len(padded).map_err(io_at(out))?;
    f.seek(SeekFrom::Start(padded)).map_err(io_at(out))?;
    f.write_all(&vhd::footer(padded, stamp, unique_id))
        .map_err(io_at(out))?;
    f.sync_all().map_err(io_at(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhd_pads_to_whole_mib_and_ends_with_the_footer() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.img");
        let data: Vec<u8> = (0..(3 << 20) + 512).map(|i| (i % 251) as u8).collect();
        std::fs::write(&img, &data).unwrap();
        let vhd_path = dir.path().join("a.vhd");
        let padded = (data.len() as u64).div_ceil(vhd::AZURE_ALIGN) * vhd::AZURE_ALIGN;
        assert_eq!(padded, 4 << 20);
        write_vhd(&img, data.len() as u64, padded, 0, [1; 16], &vhd_path).unwrap();
        let out = std::fs::read(&vhd_path).unwrap();
        assert_eq!(out.len() as u64, padded + 512);
        assert_eq!(&out[..data.len()], &data[..]);
        assert!(out[data.len()..padded as usize].iter().all(|b| *b == 0));
        assert_eq!(
            &out[padded as usize..],
            &vhd::footer(padded, 0, [1; 16])[..]
        );
    }
}
