//! Builds `stub-hypervisor` for `x86_64-unknown-uefi` and puts it at
//! `$OUT_DIR/stub-hypervisor.efi` for `include_bytes!` (see `src/stub.rs`).
//!
//! - `VMSEAL_STUB_EFI=/path` at build time: copy that file instead of building.
//! - **Path independence.** The stub depends on `../policies`, which lies outside the stub's own
//!   workspace; cargo then mixes the *absolute* path of `policies` into every crate's metadata
//!   hash, so symbol names, code layout and the PDB name would change with the checkout's
//!   location. So this script assembles a build workspace under `OUT_DIR` with both crates as
//!   members (the stub's manifest without its `[workspace]`, its `[profile]` moved to the root;
//!   the root `Cargo.toml`'s `[workspace.package]`, `[workspace.dependencies]` and lints that
//!   `policies` inherits; the stub's `Cargo.lock`), and builds it there. Inside one workspace
//!   cargo hashes relative paths only. `--remap-path-prefix` for that workspace, the target
//!   directory and `CARGO_HOME` keeps absolute paths out of panic locations, and linking with
//!   `/DEBUG:NONE` drops the CodeView entry whose PDB GUID hashes absolute object paths.
//! - The nested `cargo build --release` runs with its own `CARGO_TARGET_DIR` under `OUT_DIR`
//!   and without the variables the outer cargo sets for build scripts (rustflags, target,
//!   wrappers, profile and feature variables), so host settings never leak into the firmware
//!   build.
//! - A missing `x86_64-unknown-uefi` target fails with the `rustup target add` command.

use std::path::{Path, PathBuf};
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("{}: {e}", from.display()))
        .map(|e| e.expect("directory entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        }
    }
}

fn read_toml(p: &Path) -> toml::Table {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn write(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

/// The build workspace: `ws/Cargo.toml`, `ws/stub-hypervisor/`, `ws/policies/`.
fn assemble(root: &Path, ws: &Path) {
    let _ = std::fs::remove_dir_all(ws);
    let stub = root.join("stub-hypervisor");
    let mut stub_manifest = read_toml(&stub.join("Cargo.toml"));
    stub_manifest.remove("workspace");
    let profile = stub_manifest.remove("profile");
    let root_manifest = read_toml(&root.join("Cargo.toml"));
    let root_ws = root_manifest
        .get("workspace")
        .and_then(|w| w.as_table())
        .cloned()
        .unwrap_or_default();
    let mut workspace = toml::Table::new();
    workspace.insert("resolver".into(), "2".into());
    workspace.insert(
        "members".into(),
        toml::Value::Array(vec!["stub-hypervisor".into(), "policies".into()]),
    );
    for key in ["package", "dependencies", "lints"] {
        if let Some(v) = root_ws.get(key) {
            workspace.insert(key.into(), v.clone());
        }
    }
    let mut manifest = toml::Table::new();
    manifest.insert("workspace".into(), toml::Value::Table(workspace));
    if let Some(p) = profile {
        manifest.insert("profile".into(), p);
    }
    copy_dir(&stub.join("src"), &ws.join("stub-hypervisor/src"));
    copy_dir(&root.join("policies/src"), &ws.join("policies/src"));
    std::fs::copy(
        root.join("policies/Cargo.toml"),
        ws.join("policies/Cargo.toml"),
    )
    .expect("policies/Cargo.toml");
    write(
        &ws.join("stub-hypervisor/Cargo.toml"),
        &toml::to_string(&stub_manifest).expect("toml"),
    );
    write(
        &ws.join("Cargo.toml"),
        &toml::to_string(&manifest).expect("toml"),
    );
    if stub.join("Cargo.lock").exists() {
        std::fs::copy(stub.join("Cargo.lock"), ws.join("Cargo.lock")).expect("Cargo.lock");
    }
}

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
    for p in ["src", "Cargo.toml", "Cargo.lock"] {
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
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );

    let ws = out.join("stub-ws");
    assemble(&root, &ws);
    let target_dir = out.join("stub-target");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_default();
    let remap = |from: &Path, to: &str| format!("--remap-path-prefix={}={to}", from.display());
    let flags = [
        remap(&target_dir, "/vmseal/target"),
        remap(&ws, "/vmseal"),
        remap(&cargo_home, "/cargo"),
        // No CodeView debug directory: lld derives its PDB GUID from a PDB that holds
        // absolute object paths, so it would differ between checkouts.
        "-Clink-arg=/DEBUG:NONE".to_string(),
        // TimeDateStamp from a hash of the output, not the clock.
        "-Clink-arg=/Brepro".to_string(),
    ]
    .join("\x1f");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ws).args([
        "build",
        "--release",
        "--target",
        "x86_64-unknown-uefi",
        "-p",
        "stub-hypervisor",
    ]);
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        let drop = matches!(
            k,
            "RUSTFLAGS"
                | "CARGO_ENCODED_RUSTFLAGS"
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
        "+ (cd {}; cargo build --release --target x86_64-unknown-uefi -p stub-hypervisor)",
        ws.display()
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
