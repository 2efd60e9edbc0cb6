//! `vmseal init DIR`: a starter that builds and boots as it is — a manifest, a tiny sample guest ELF
//! and a README explaining how to replace it with a real guest (`images/hello`).

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

const MANIFEST: &str = r#"# A vmseal appliance (schema: docs/manifest.md in the vmseal repository).
# Build it:  vmseal build vmseal.toml --out out/
[image]
name = "hello"
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
"#;

const README: &str = "This directory is a vmseal appliance starter.

  vmseal.toml   the manifest: image name and size, the guest, its memory and console
  guest.elf     a tiny sample guest: an x86_64 ELF that prints a line through the console
                hypercall and exits 0 (it runs isolated under vmseal's hypervisor)

Build the appliance (writes out/hello.img, out/hello.efi, out/hello.lock.json):

  vmseal build vmseal.toml --out out/
  vmseal inspect out/hello.img

Boot it in QEMU with OVMF and a software TPM:

  vmseal boot out/hello.img --record run/

A real guest: the vmseal repository's images/hello is a no_std Rust unikernel. Build it with
images/hello/build.sh (it writes images/hello/out/hello.elf), copy that file here as
guest.elf (or point `elf` at it), and build again. A Linux appliance uses `kernel`,
`initrd` and `os-release` instead of `elf` (see images/linux/vmseal.toml).
";

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
    let files: [(&str, Vec<u8>); 3] = [
        ("vmseal.toml", MANIFEST.as_bytes().to_vec()),
        (
            "guest.elf",
            sample_guest_elf("vmseal: hello from the sample guest\r\n"),
        ),
        ("README.txt", README.as_bytes().to_vec()),
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
