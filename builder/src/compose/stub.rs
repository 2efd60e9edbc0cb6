//! The stub-hypervisor PE: embedded at build time (`build.rs` builds `stub-hypervisor/` for
//! `x86_64-unknown-uefi`), or a prebuilt file from `--stub` / `VMSEAL_STUB_EFI`.

use std::borrow::Cow;
use std::path::Path;

/// The embedded stub, or `None` when this vmseal was built without one (`build.rs` could not
/// build it and `VMSEAL_STUB_EFI` was not set at build time).
pub fn embedded() -> Option<&'static [u8]> {
    let s: &'static [u8] = include_bytes!(concat!(env!("OUT_DIR"), "/stub-hypervisor.efi"));
    if s.is_empty() { None } else { Some(s) }
}

/// Why no stub could be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StubError {
    /// The file given could not be read.
    #[error("stub {path}: {source} — fix the path given by --stub or VMSEAL_STUB_EFI")]
    Read {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// No stub is embedded and none was given.
    #[error(
        "this vmseal was built without an embedded stub ({reason}) — pass --stub PATH or set VMSEAL_STUB_EFI, or rebuild vmseal after `rustup target add x86_64-unknown-uefi`"
    )]
    Missing {
        /// What build.rs reported.
        reason: &'static str,
    },
}

/// The stub to use: `path` if given, else `$VMSEAL_STUB_EFI` at run time, else the embedded one.
pub fn load(path: Option<&Path>) -> Result<Cow<'static, [u8]>, StubError> {
    let env = std::env::var_os("VMSEAL_STUB_EFI").filter(|v| !v.is_empty());
    let path = path.map(Path::to_path_buf).or_else(|| env.map(Into::into));
    if let Some(p) = path {
        return std::fs::read(&p)
            .map(Cow::Owned)
            .map_err(|source| StubError::Read {
                path: p.display().to_string(),
                source,
            });
    }
    embedded().map(Cow::Borrowed).ok_or(StubError::Missing {
        reason: env!("VMSEAL_STUB_STATUS"),
    })
}
