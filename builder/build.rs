//! Builds `stub-hypervisor` for `x86_64-unknown-uefi` and puts it at
//! `$OUT_DIR/stub-hypervisor.efi` for `include_bytes!` (see `src/stub.rs`).
//!
//! - `VMSEAL_STUB_EFI=/path` at build time: copy that file instead of building.
//! - The nested `cargo build --release` runs with its own `CARGO_TARGET_DIR` under `OUT_DIR`
//!   and without the variables the outer cargo sets for build scripts (rustflags, target,
//!   wrappers, profile and feature variables), so host settings never leak into the firmware
//!   build; `--remap-path-prefix` for the repository, `CARGO_HOME` and the target directory
//!   makes the stub's bytes independent of where the checkout lives.
//! - A missing `x86_64-unknown-uefi` target fails with the `rustup target add` command.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("builder/ has a parent")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dest = out.join("stub-hypervisor.efi");
    println!("cargo:rerun-if-env-changed=VMSEAL_STUB_EFI");

    if let Some(prebuilt) = std::env::var_os("VMSEAL_STUB_EFI").filter(|v| !v.is_empty()) {
        let prebuilt = PathBuf::from(prebuilt);
        println!("cargo:rerun-if-changed={}", prebuilt.display());
        std::fs::copy(&prebuilt, &dest)
            .unwrap_or_else(|e| panic!("VMSEAL_STUB_EFI={}: {e}", prebuilt.display()));
        println!("cargo:rustc-env=VMSEAL_STUB_STATUS=prebuilt from VMSEAL_STUB_EFI");
        return;
    }

    let stub = root.join("stub-hypervisor");
    for p in ["src", "Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", stub.join(p).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("policies/src").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join("policies/Cargo.toml").display()
    );

    let target_dir = out.join("stub-target");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_default();
    let remap = |from: &Path, to: &str| format!("--remap-path-prefix={}={to}", from.display());
    let flags = [
        remap(&target_dir, "/vmseal/target"),
        remap(&root, "/vmseal"),
        remap(&cargo_home, "/cargo"),
    ]
    .join("\x1f");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&stub)
        .args(["build", "--release", "--target", "x86_64-unknown-uefi"]);
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        let drop = matches!(
            k,
            "RUSTFLAGS"
                | "CARGO_BUILD_TARGET"
                | "CARGO_BUILD_RUSTFLAGS"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "CARGO_MAKEFLAGS"
                | "CARGO_TARGET_DIR"
                | "CARGO_BUILD_TARGET_DIR"
                | "PROFILE"
                | "OPT_LEVEL"
                | "DEBUG"
                | "TARGET"
                | "HOST"
                | "NUM_JOBS"
                | "RUSTDOC"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
        ) || k.starts_with("CARGO_FEATURE_")
            || k.starts_with("CARGO_CFG_")
            || k.starts_with("CARGO_PROFILE_")
            || k.starts_with("CARGO_PKG_");
        if drop {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", flags);
    eprintln!(
        "+ (cd {}; cargo build --release --target x86_64-unknown-uefi)",
        stub.display()
    );
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running cargo for the stub: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stderr.contains("x86_64-unknown-uefi")
            && (stderr.contains("may not be installed")
                || stderr.contains("can't find crate for `core`"))
        {
            panic!(
                "the Rust target x86_64-unknown-uefi is not installed: run `rustup target add x86_64-unknown-uefi` (scripts/setup.sh does)\n{stderr}"
            );
        }
        panic!(
            "building stub-hypervisor failed (set VMSEAL_STUB_EFI=/path/to/stub.efi to use a prebuilt stub):\n{stderr}"
        );
    }
    let built = target_dir.join("x86_64-unknown-uefi/release/stub-hypervisor.efi");
    std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("{}: {e}", built.display()));
    println!("cargo:rustc-env=VMSEAL_STUB_STATUS=built from stub-hypervisor/");
}
