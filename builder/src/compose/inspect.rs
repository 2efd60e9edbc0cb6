//! `vmseal inspect`: what is in an image (`.img`) or an appliance PE (`.efi`).
//!
//! For a disk: the GPT partitions, the files of the ESP (size, SHA-256), then the PE at
//! `\EFI\BOOT\BOOTX64.EFI`. For a PE: its sections (addresses, sizes, SHA-256 of the
//! `VirtualSize` bytes each measurement covers), its Authenticode SHA-256 (what PCR 4 gets),
//! the certificate table, and the decoded `.vmseal` launch policy. Bad input gives an error,
//! never a panic.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::disk::{self, ReadOnly, Window};

/// Why an inspection failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Reading failed.
    #[error("{0}: {1}")]
    Io(String, io::Error),
    /// The file is neither a GPT disk nor a PE.
    #[error(
        "{0}: not a vmseal image (no GPT at LBA 1) nor a PE (no MZ) — give NAME.img or NAME.efi"
    )]
    Unknown(String),
    /// The PE is malformed.
    #[error("{0}: {1}")]
    Pe(String, String),
}

/// Inspect `path`; returns the JSON report.
pub fn inspect(path: &Path) -> Result<Value, InspectError> {
    let name = path.display().to_string();
    let ioe = |e| InspectError::Io(name.clone(), e);
    let mut f = File::open(path).map_err(ioe)?;
    let mut head = [0u8; 1024];
    let n = read_up_to(&mut f, &mut head).map_err(|e| InspectError::Io(name.clone(), e))?;
    let head = &head[..n];
    if head.starts_with(b"MZ") {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| InspectError::Io(name.clone(), e))?;
        let pe = inspect_pe(&bytes).map_err(|e| InspectError::Pe(name.clone(), e))?;
        return Ok(json!({ "file": name, "kind": "pe", "pe": pe }));
    }
    if head.get(512..520) != Some(b"EFI PART") {
        return Err(InspectError::Unknown(name));
    }
    let gpt = disk::read_gpt(&mut f).map_err(|e| InspectError::Io(name.clone(), e))?;
    let size = f
        .metadata()
        .map_err(|e| InspectError::Io(name.clone(), e))?
        .len();
    let mut esp_json = Value::Null;
    let mut pe_json = Value::Null;
    if let Some(p) = gpt
        .partitions
        .iter()
        .find(|p| p.type_guid == disk::ESP_TYPE)
    {
        let start = p.first_lba * disk::SECTOR;
        let len = (p.last_lba + 1 - p.first_lba) * disk::SECTOR;
        let file = File::open(path).map_err(|e| InspectError::Io(name.clone(), e))?;
        let fs = fatfs::FileSystem::new(
            Window::new(ReadOnly::new(file), start, len),
            fatfs::FsOptions::new().update_accessed_date(false),
        )
        .map_err(|e| InspectError::Io(format!("{name}: ESP"), e))?;
        let mut files = Vec::new();
        walk(&fs.root_dir(), "", &mut files)
            .map_err(|e| InspectError::Io(format!("{name}: ESP"), e))?;
        esp_json = json!({
            "fat": format!("{:?}", fs.fat_type()).to_lowercase(),
            "volume_id": format!("{:08x}", fs.volume_id()),
            "volume_label": fs.volume_label().trim_end(),
            "files": files.iter().map(|(p, s, h)| json!({"path": p, "size": s, "sha256": h})).collect::<Vec<_>>(),
        });
        let boot = fs.root_dir().open_file(crate::disk::BOOT_PATH);
        if let Ok(mut b) = boot {
            let mut bytes = Vec::new();
            b.read_to_end(&mut bytes)
                .map_err(|e| InspectError::Io(format!("{name}: BOOTX64.EFI"), e))?;
            pe_json = inspect_pe(&bytes)
                .map_err(|e| InspectError::Pe(format!("{name}: BOOTX64.EFI"), e))?;
        }
    }
    Ok(
        json!({ "file": name, "kind": "disk", "size": size, "gpt": gpt, "esp": esp_json, "pe": pe_json }),
    )
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

type FatDir<'a> = fatfs::Dir<'a, Window<ReadOnly>>;

fn walk(dir: &FatDir<'_>, prefix: &str, out: &mut Vec<(String, u64, String)>) -> io::Result<()> {
    let mut entries: Vec<_> = dir.iter().collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let n = e.file_name();
        if n == "." || n == ".." {
            continue;
        }
        let path = format!("{prefix}\\{n}");
        if e.is_dir() {
            walk(&e.to_dir(), &path, out)?;
        } else {
            let mut h = sha2::Sha256::new();
            let mut f = e.to_file();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let k = f.read(&mut buf)?;
                if k == 0 {
                    break;
                }
                h.update(&buf[..k]);
            }
            out.push((path, e.len(), hex::encode(h.finalize())));
        }
    }
    Ok(())
}

/// Inspect PE bytes.
pub fn inspect_pe(bytes: &[u8]) -> Result<Value, String> {
    let pe = goblin::pe::PE::parse(bytes).map_err(|e| format!("not a valid PE: {e}"))?;
    let opt = pe.header.optional_header.ok_or("no optional header")?;
    let mut sections = Vec::new();
    let mut policy = Value::Null;
    for s in &pe.sections {
        let name = s.name().unwrap_or("?").to_string();
        let start = s.pointer_to_raw_data as usize;
        let n = s.virtual_size.min(s.size_of_raw_data) as usize;
        let content = bytes.get(start..start.saturating_add(n)).unwrap_or(&[]);
        if name == policies::sections::VMSEAL {
            policy = match policies::launch::LaunchPolicy::decode(content) {
                Ok(p) => crate::compose::policy::describe(&p),
                Err(e) => json!({ "error": e.to_string() }),
            };
        }
        sections.push(json!({
            "name": name,
            "virtual_address": s.virtual_address,
            "virtual_size": s.virtual_size,
            "pointer_to_raw_data": s.pointer_to_raw_data,
            "size_of_raw_data": s.size_of_raw_data,
            "characteristics": format!("{:#010x}", s.characteristics),
            "sha256": hex::encode(sha2::Sha256::digest(content)),
        }));
    }
    let cert = opt
        .data_directories
        .get_certificate_table()
        .map_or((0, 0), |d| (d.virtual_address, d.size));
    let authenticode =
        signing::authenticode::digest(bytes, signing::authenticode::DigestAlgorithm::Sha256)
            .map(hex::encode)
            .map_err(|e| e.to_string())?;
    Ok(json!({
        "size": bytes.len(),
        "sha256": hex::encode(sha2::Sha256::digest(bytes)),
        "authenticode_sha256": authenticode,
        "machine": format!("{:#06x}", pe.header.coff_header.machine),
        "subsystem": opt.windows_fields.subsystem,
        "time_date_stamp": pe.header.coff_header.time_date_stamp,
        "checksum": format!("{:#010x}", opt.windows_fields.check_sum),
        "size_of_headers": opt.windows_fields.size_of_headers,
        "size_of_image": opt.windows_fields.size_of_image,
        "certificate_table": { "offset": cert.0, "size": cert.1 },
        "sections": sections,
        "launch_policy": policy,
    }))
}

/// The human-readable form of an [`inspect`] report.
pub fn render(v: &Value) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} ({})",
        v["file"].as_str().unwrap_or("?"),
        v["kind"].as_str().unwrap_or("?")
    );
    if v["kind"] == "disk" {
        let _ = writeln!(
            s,
            "disk: {} bytes, GPT disk GUID {}",
            v["size"],
            v["gpt"]["disk_guid"].as_str().unwrap_or("")
        );
        for p in v["gpt"]["partitions"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "  partition {}: \"{}\" type {} guid {} LBA {}..={}",
                p["index"],
                p["name"].as_str().unwrap_or(""),
                p["type_guid"].as_str().unwrap_or(""),
                p["guid"].as_str().unwrap_or(""),
                p["first_lba"],
                p["last_lba"]
            );
        }
        let esp = &v["esp"];
        if !esp.is_null() {
            let _ = writeln!(
                s,
                "ESP: {} volume {} label {}",
                esp["fat"].as_str().unwrap_or(""),
                esp["volume_id"].as_str().unwrap_or(""),
                esp["volume_label"]
            );
            for f in esp["files"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    s,
                    "  {:<28} {:>12}  sha256 {}",
                    f["path"].as_str().unwrap_or(""),
                    f["size"],
                    f["sha256"].as_str().unwrap_or("")
                );
            }
        }
    }
    let pe = &v["pe"];
    if !pe.is_null() {
        let _ = writeln!(
            s,
            "PE: {} bytes, sha256 {}",
            pe["size"],
            pe["sha256"].as_str().unwrap_or("")
        );
        let _ = writeln!(
            s,
            "  Authenticode sha256: {}",
            pe["authenticode_sha256"].as_str().unwrap_or("")
        );
        let _ = writeln!(
            s,
            "  certificate table: offset {} size {}",
            pe["certificate_table"]["offset"], pe["certificate_table"]["size"]
        );
        let _ = writeln!(
            s,
            "  {:<8} {:>10} {:>10} {:>10} {:>10}  sha256 (VirtualSize bytes)",
            "section", "vaddr", "vsize", "rawptr", "rawsize"
        );
        for x in pe["sections"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "  {:<8} {:>#10x} {:>10} {:>#10x} {:>10}  {}",
                x["name"].as_str().unwrap_or(""),
                x["virtual_address"].as_u64().unwrap_or(0),
                x["virtual_size"],
                x["pointer_to_raw_data"].as_u64().unwrap_or(0),
                x["size_of_raw_data"],
                x["sha256"].as_str().unwrap_or("")
            );
        }
        let p = &pe["launch_policy"];
        if p.is_null() {
            let _ = writeln!(s, "  launch policy: none (no .vmseal section)");
        } else if p.get("error").is_some() || p.get("guest").is_none() {
            let _ = writeln!(s, "  launch policy: {p}");
        } else {
            let _ = writeln!(
                s,
                "  launch policy (format {}): {} {}, console {}",
                p["format"],
                p["name"].as_str().unwrap_or(""),
                p["version"].as_str().unwrap_or(""),
                p["console"].as_str().unwrap_or("")
            );
            let parts =
                std::iter::once(&p["guest"]).chain(p["services"].as_array().into_iter().flatten());
            for q in parts {
                let devices: Vec<&str> = q["devices"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let _ = writeln!(
                    s,
                    "    partition {:<12} {:<7} {} base {:#x} memory {} devices {}{}",
                    q["name"].as_str().unwrap_or(""),
                    q["section"].as_str().unwrap_or(""),
                    q["kind"].as_str().unwrap_or(""),
                    q["base"].as_u64().unwrap_or(0),
                    crate::compose::manifest::human_size(q["memory"].as_u64().unwrap_or(0)),
                    if devices.is_empty() {
                        "none".to_string()
                    } else {
                        devices.join(",")
                    },
                    match q["cpu_budget_ms"].as_u64() {
                        Some(ms) if ms > 0 => format!(" cpu-budget {ms}ms"),
                        _ => String::new(),
                    }
                );
            }
            for c in p["channels"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    s,
                    "    channel   {:<12} {} -> {}",
                    c["name"].as_str().unwrap_or(""),
                    c["client"].as_str().unwrap_or(""),
                    c["server"].as_str().unwrap_or("")
                );
            }
        }
    }
    s
}
