//! `vmseal init DIR`: a starter — a manifest named after `DIR` whose `[signing]` table uses the
//! keys `vmseal keys new --out DIR/keys` writes, a tiny sample guest ELF and a README that walks
//! keys → build → boot → diff and explains how to replace the guest (`images/hello`).

use std::path::{Path, PathBuf};

/// Physical load address of the sample guest (the same as `images/hello/linker.ld`).
pub const SAMPLE_BASE: u64 = 0x400_0000;

/// A minimal ELF64 x86_64 `ET_EXEC` partition linked at [`SAMPLE_BASE`]: see
/// [`sample_elf_at`].
pub fn sample_guest_elf(text: &str) -> Vec<u8> {
    sample_elf_at(SAMPLE_BASE, text)
}

/// A minimal ELF64 x86_64 `ET_EXEC` partition: one `PT_LOAD` segment at `base` that writes
/// `text` through the `CONSOLE_WRITE` hypercall and ends with `EXIT(0)`
/// (`policies::hypercall`). Deterministic bytes.
pub fn sample_elf_at(base: u64, text: &str) -> Vec<u8> {
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    let mut code = Vec::new();
    // Code before the message: 32 bytes; `lea` ends at 7, so the message is at rip + 25.
    code.extend_from_slice(&[0x48, 0x8d, 0x3d, 25, 0, 0, 0]); // lea rdi, [rip + 25]
    code.push(0xbe); // mov esi, len
    code.extend_from_slice(&len.to_le_bytes());
    code.extend_from_slice(&[0xb8, 1, 0, 0, 0]); // mov eax, 1 (CONSOLE_WRITE)
    code.extend_from_slice(&[0x0f, 0x01, 0xd9]); // vmmcall
    code.extend_from_slice(&[0x31, 0xff]); // xor edi, edi (status 0)
    code.extend_from_slice(&[0xb8, 6, 0, 0, 0]); // mov eax, 6 (EXIT)
    code.extend_from_slice(&[0x0f, 0x01, 0xd9]); // vmmcall
    code.extend_from_slice(&[0x0f, 0x0b]); // ud2 (EXIT does not return)
    debug_assert_eq!(code.len(), 32);
    code.extend_from_slice(text.as_bytes());
    let (ehsize, phsize) = (64u64, 56u64);
    let entry = base + ehsize + phsize;
    let filesz = ehsize + phsize + code.len() as u64;
    let mut f = Vec::with_capacity(filesz as usize);
    f.extend_from_slice(b"\x7fELF");
    f.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&0x3eu16.to_le_bytes()); // x86_64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&entry.to_le_bytes());
    f.extend_from_slice(&ehsize.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&(ehsize as u16).to_le_bytes());
    f.extend_from_slice(&(phsize as u16).to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    // PT_LOAD, R+X, the whole file at `base`.
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&5u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    f.extend_from_slice(&base.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&base.to_le_bytes()); // p_paddr
    f.extend_from_slice(&filesz.to_le_bytes());
    f.extend_from_slice(&filesz.to_le_bytes());
    f.extend_from_slice(&0x1000u64.to_le_bytes());
    f.extend_from_slice(&code);
    f
}

/// The starter manifest; `NAME` is the image name (from the directory's name).
const MANIFEST: &str = r#"# A vmseal appliance (schema: docs/manifest.md in the vmseal repository).
# Make the org's Secure Boot keys once, then build:
#   vmseal keys new --out keys --org "My Org"
#   vmseal build vmseal.toml --out out/
# (`vmseal build --unsigned` builds without keys: no signature, no NAME.vars.fd.)
[image]
name = "NAME"
version = "0.1.0"
size = "16MiB"

[guest]
elf = "guest.elf"            # the sample guest `vmseal init` wrote; see README.txt
cmdline = "greeting=hello"
memory = "16MiB"
console = "on"

# Root-partition services: one [[service]] table each (ELF64 x86_64 executables).
# [[service]]
# name = "attest"
# elf = "attest.elf"
# memory = "8MiB"
# devices = ["tpm"]

[signing]
keys = "keys"                # written by `vmseal keys new --out keys`: PK, KEK, db, owner.guid
"#;

const README: &str = "This directory is a vmseal appliance starter.

  vmseal.toml   the manifest: image name and size, the guest, its memory and console, and
                [signing]: the org keys in keys/ (Secure Boot)
  guest.elf     a tiny sample guest: an x86_64 ELF that prints a line through the console
                hypercall and exits 0 (it runs isolated under vmseal's hypervisor)

Make the org's Secure Boot keys (once), then build the appliance (writes out/NAME.img,
out/NAME.efi signed by the db key, out/NAME.vars.fd with the keys enrolled,
out/NAME.pcrs.json, out/NAME.lock.json):

  vmseal keys new --out keys --org \"My Org\"
  vmseal build vmseal.toml --out out/
  vmseal inspect out/NAME.img

Boot it in QEMU with OVMF (Secure Boot on, the store enrolls the keys) and a software TPM,
then compare what it measured with the prediction:

  vmseal boot out/NAME.img --vars out/NAME.vars.fd --record run/
  vmseal pcr diff out/NAME.pcrs.json run/

A real guest: the vmseal repository's images/hello is a no_std Rust unikernel. Build it with
images/hello/build.sh (it writes images/hello/out/hello.elf), copy that file here as
guest.elf (or point `elf` at it), and build again. A Linux appliance uses `kernel`,
`initrd` and `os-release` instead of `elf` (see images/linux/vmseal.toml).
";

/// The image name for a starter in `dir`: the directory's name made a valid `image.name`
/// (lowercase a-z, 0-9 and '-', at most 63 characters), else `app`.
pub fn image_name(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').chars().take(63).collect();
    if name.is_empty() { "app".into() } else { name }
}

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A file exists and `--force` was not given.
    #[error("{0}: already exists — choose an empty directory or pass --force to overwrite")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Write the starter into `dir` (created). Returns the files written.
pub fn init(dir: &Path, force: bool) -> Result<Vec<PathBuf>, InitError> {
    let name = image_name(dir);
    let files: [(&str, Vec<u8>); 3] = [
        ("vmseal.toml", MANIFEST.replace("NAME", &name).into_bytes()),
        (
            "guest.elf",
            sample_guest_elf("vmseal: hello from the sample guest\r\n"),
        ),
        ("README.txt", README.replace("NAME", &name).into_bytes()),
    ];
    if !force {
        for (name, _) in &files {
            let p = dir.join(name);
            if p.exists() {
                return Err(InitError::Exists(p));
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| InitError::Io(dir.to_path_buf(), e))?;
    let mut written = Vec::new();
    for (name, bytes) in files {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| InitError::Io(p.clone(), e))?;
        written.push(p);
    }
    Ok(written)
}
