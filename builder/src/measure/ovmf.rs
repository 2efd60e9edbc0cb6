//! Where the OVMF firmware is: the code file (`-drive if=pflash,readonly`) and the variable
//! store template that `vmseal boot` runs and `vmseal pcr predict` predicts for.
//!
//! First of: the command's `--ovmf-code` / `--ovmf-vars`; the environment (`VMSEAL_OVMF_CODE`,
//! `VMSEAL_OVMF_VARS`); QEMU's firmware descriptors (the `docs/interop/firmware.json` schema:
//! `/etc/qemu/firmware/*.json`, then `/usr/share/qemu/firmware/*.json`, in file-name order,
//! the first `uefi` flash firmware for x86_64 `pc-q35-*` whose features say `secure-boot` —
//! without `enrolled-keys` — exactly when a Secure Boot build is wanted); the fixed Debian
//! paths ([`OVMF_CODE`], [`OVMF_CODE_SECBOOT`], [`OVMF_VARS`]). Debian's descriptors name the
//! same files as the fixed paths.

use std::path::{Path, PathBuf};

/// OVMF code with Secure Boot (and SMM) built in: used when `vmseal boot --secure-boot`.
pub const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// OVMF code without Secure Boot.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The pristine variable store (no keys enrolled: Secure Boot off) used without `--vars`.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The code file's environment variable.
pub const CODE_ENV: &str = "VMSEAL_OVMF_CODE";
/// The variable store template's environment variable.
pub const VARS_ENV: &str = "VMSEAL_OVMF_VARS";
/// Where QEMU's firmware descriptors are, in priority order.
pub const DESCRIPTOR_DIRS: [&str; 2] = ["/etc/qemu/firmware", "/usr/share/qemu/firmware"];

/// The firmware to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firmware {
    /// The code file.
    pub code: PathBuf,
    /// The pristine variable store (used when no `--vars` is given).
    pub vars: PathBuf,
}

/// The command's own `--ovmf-code` / `--ovmf-vars`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirmwareFlags {
    /// `--ovmf-code`.
    pub code: Option<PathBuf>,
    /// `--ovmf-vars`.
    pub vars: Option<PathBuf>,
}

/// `(code, nvram template)` of the first descriptor in `dirs` that fits `secure_boot`.
pub fn from_descriptors(dirs: &[&Path], secure_boot: bool) -> Option<(PathBuf, PathBuf)> {
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let Some(v) = std::fs::read(&f)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            else {
                continue;
            };
            let has = |key: &str, want: &str| {
                v[key]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(want)))
            };
            let q35 = v["targets"].as_array().is_some_and(|t| {
                t.iter().any(|t| {
                    t["architecture"] == "x86_64"
                        && t["machines"]
                            .as_array()
                            .is_some_and(|m| m.iter().any(|m| m == "pc-q35-*"))
                })
            });
            if !has("interface-types", "uefi")
                || v["mapping"]["device"] != "flash"
                || !q35
                || has("features", "secure-boot") != secure_boot
                || has("features", "enrolled-keys")
            {
                continue;
            }
            let code = v["mapping"]["executable"]["filename"].as_str();
            let vars = v["mapping"]["nvram-template"]["filename"].as_str();
            if let (Some(c), Some(t)) = (code, vars) {
                return Some((PathBuf::from(c), PathBuf::from(t)));
            }
        }
    }
    None
}

/// The firmware for a boot with (`secure_boot`) or without Secure Boot (see the module docs).
pub fn locate(secure_boot: bool, flags: &FirmwareFlags) -> Firmware {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dirs: Vec<&Path> = DESCRIPTOR_DIRS.iter().map(Path::new).collect();
    let described = from_descriptors(&dirs, secure_boot);
    let fixed_code = if secure_boot {
        OVMF_CODE_SECBOOT
    } else {
        OVMF_CODE
    };
    Firmware {
        code: flags
            .code
            .clone()
            .or_else(|| env(CODE_ENV))
            .or_else(|| described.as_ref().map(|(c, _)| c.clone()))
            .unwrap_or_else(|| PathBuf::from(fixed_code)),
        vars: flags
            .vars
            .clone()
            .or_else(|| env(VARS_ENV))
            .or_else(|| described.map(|(_, v)| v))
            .unwrap_or_else(|| PathBuf::from(OVMF_VARS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_pick_by_secure_boot_and_skip_enrolled_keys() {
        let d = tempfile::tempdir().unwrap();
        let desc = |name: &str, code: &str, features: &str| {
            std::fs::write(
                d.path().join(name),
                format!(
                    r#"{{"interface-types":["uefi"],"mapping":{{"device":"flash","executable":{{"filename":"{code}"}},"nvram-template":{{"filename":"/v.fd"}}}},"targets":[{{"architecture":"x86_64","machines":["pc-q35-*"]}}],"features":[{features}]}}"#
                ),
            )
            .unwrap();
        };
        desc(
            "10-enrolled.json",
            "/enrolled.fd",
            r#""secure-boot","enrolled-keys""#,
        );
        desc("20-sb.json", "/sb.fd", r#""secure-boot","requires-smm""#);
        desc("30-plain.json", "/plain.fd", r#""acpi-s3""#);
        std::fs::write(d.path().join("05-broken.json"), "{").unwrap();
        let dirs = [d.path()];
        assert_eq!(
            from_descriptors(&dirs, true),
            Some((PathBuf::from("/sb.fd"), PathBuf::from("/v.fd")))
        );
        assert_eq!(
            from_descriptors(&dirs, false),
            Some((PathBuf::from("/plain.fd"), PathBuf::from("/v.fd")))
        );
    }

    #[test]
    fn debians_descriptors_name_the_fixed_paths() {
        // Where Debian's qemu ships them, they agree with the paths the profiles were learned
        // with (so predictions do not change with the lookup).
        let dirs = [Path::new("/usr/share/qemu/firmware")];
        if let Some((code, vars)) = from_descriptors(&dirs, true) {
            assert_eq!(code, Path::new(OVMF_CODE_SECBOOT));
            assert_eq!(vars, Path::new(OVMF_VARS));
        }
        if let Some((code, _)) = from_descriptors(&dirs, false) {
            assert_eq!(code, Path::new(OVMF_CODE));
        }
    }
}
