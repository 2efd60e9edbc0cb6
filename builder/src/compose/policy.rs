//! The `.vmseal` launch policy of a manifest, encoded by [`policies::launch`] (the one
//! encoding the stub decodes and measures into PCR 12).

use policies::launch::{
    Channel, Console, Devices, InvalidPolicy, LaunchPolicy, Partition, PayloadKind, Which,
};
use policies::sections;

use crate::compose::inputs::{Expect, Source};
use crate::compose::manifest::{self, Device, ErrorKind, Manifest, ManifestError, Payload};

/// The launch policy a manifest describes, validated by [`LaunchPolicy::validate`].
///
/// Reads the program headers of every ELF partition (the guest's `elf` and each service's):
/// a partition's grant starts at its lowest `PT_LOAD` page (the stub loads segments at their
/// physical addresses, identity-mapped) and must hold its segments plus the 64 KiB
/// hypervisor area (`policies::bootinfo::HV_AREA_SIZE`); grants must not overlap. Every
/// problem is a [`ManifestError`] naming the field and the fix.
pub fn from_manifest(m: &Manifest) -> Result<LaunchPolicy, ManifestError> {
    let (kind, section) = match m.guest.payload {
        Payload::Elf(_) => (PayloadKind::Elf, sections::GUEST),
        Payload::Kernel(_) => (PayloadKind::Linux, sections::LINUX),
    };
    let devices = |d: &[Device]| {
        Devices(d.iter().fold(0, |acc, d| {
            acc | match d {
                Device::Tpm => Devices::TPM.0,
                Device::Serial => Devices::SERIAL.0,
            }
        }))
    };
    // The grant base of an ELF partition, after checking it fits its memory.
    let base = |field: &str, path: &str, memory: u64, memory_field: &str| {
        let Source::File { abs, .. } =
            crate::compose::inputs::file(m, field, path, Expect::ElfExec)?
        else {
            return Ok(0);
        };
        let layout = crate::compose::elf::layout(&abs).map_err(|p| {
            m.error(
                ErrorKind::WrongFormat,
                field,
                format!("'{path}' {p}"),
                "link the partition as a static ELF64 executable (see docs/hypercalls.md)".into(),
            )
        })?;
        if memory < layout.min_memory() {
            return Err(m.error(
                ErrorKind::TooBig,
                memory_field,
                format!(
                    "{} does not hold '{path}' (segments {:#x}..{:#x}) plus the 64KiB hypervisor area",
                    manifest::human_size(memory),
                    layout.base,
                    layout.end
                ),
                format!(
                    "give it at least \"{}\"",
                    manifest::human_size(layout.min_memory().div_ceil(1 << 20) << 20)
                ),
            ));
        }
        if layout.base == 0
            || layout.base.saturating_add(memory) > policies::launch::ELF_MEMORY_LIMIT
        {
            return Err(m.error(
                ErrorKind::OutOfRange,
                field,
                format!(
                    "'{path}' is linked at {:#x}; with {} its grant is not inside 4KiB..4GiB",
                    layout.base,
                    manifest::human_size(memory)
                ),
                "link the partition between 1MiB and 4GiB (e.g. at 0x4000000)".into(),
            ));
        }
        Ok(layout.base)
    };
    let guest_base = match &m.guest.payload {
        Payload::Elf(p) => base("guest.elf", p, m.guest.memory, "guest.memory")?,
        Payload::Kernel(_) => 0,
    };
    if let Some(c) = m.guest.cmdline.as_deref()
        && kind == PayloadKind::Elf
        && c.len() as u64 > policies::bootinfo::MAX_CMDLINE
    {
        return Err(m.error(
            ErrorKind::TooBig,
            "guest.cmdline",
            format!("{} bytes", c.len()),
            format!(
                "shorten it to at most {} bytes (the hypervisor area holds the command line)",
                policies::bootinfo::MAX_CMDLINE
            ),
        ));
    }
    let mut services = Vec::with_capacity(m.service.len());
    for (i, s) in m.service.iter().enumerate() {
        let field = format!("service[{i}].elf");
        services.push(Partition {
            name: s.name.clone(),
            kind: PayloadKind::Elf,
            section: format!("{}{i}", sections::SERVICE_PREFIX),
            memory: s.memory,
            base: base(&field, &s.elf, s.memory, &format!("service[{i}].memory"))?,
            devices: devices(&s.devices),
            cpu_budget_ms: s.cpu_budget_ms.unwrap_or(0),
        });
    }
    let p = LaunchPolicy {
        name: m.image.name.clone(),
        version: m.image.version.clone(),
        guest: Partition {
            name: m.image.name.clone(),
            kind,
            section: section.into(),
            memory: m.guest.memory,
            base: guest_base,
            devices: Devices::NONE,
            cpu_budget_ms: m.guest.cpu_budget_ms.unwrap_or(0),
        },
        services,
        console: match m.guest.console {
            manifest::Console::On => Console::On,
            manifest::Console::Off => Console::Off,
        },
        channels: m
            .channel
            .iter()
            .map(|c| Channel {
                name: c.name.clone(),
                client: c.client.clone(),
                server: c.server.clone(),
            })
            .collect(),
    };
    p.validate().map_err(|e| match e {
        InvalidPolicy::Overlap(a, b) => {
            let field = |w: &Which| match w {
                Which::Service(i) => format!("service[{i}].elf"),
                _ => "guest.elf".into(),
            };
            m.error(
                ErrorKind::Collision,
                &field(&b),
                format!("its memory grant overlaps the one of {}", field(&a)),
                "link the partitions at addresses whose grants (base + memory) do not overlap"
                    .into(),
            )
        }
        other => m.error(
            ErrorKind::Invalid,
            "guest",
            format!("the launch policy is invalid: {other}"),
            "see docs/manifest.md".into(),
        ),
    })?;
    Ok(p)
}

/// A JSON description of a decoded policy (for `vmseal inspect`).
pub fn describe(p: &LaunchPolicy) -> serde_json::Value {
    let part = |q: &Partition| {
        let mut devices = Vec::new();
        if q.devices.contains(Devices::TPM) {
            devices.push("tpm");
        }
        if q.devices.contains(Devices::SERIAL) {
            devices.push("serial");
        }
        serde_json::json!({
            "name": q.name,
            "kind": match q.kind { PayloadKind::Elf => "elf", PayloadKind::Linux => "linux" },
            "section": q.section,
            "memory": q.memory,
            "base": q.base,
            "devices": devices,
            "cpu_budget_ms": q.cpu_budget_ms,
        })
    };
    serde_json::json!({
        "format": policies::launch::VERSION,
        "name": p.name,
        "version": p.version,
        "guest": part(&p.guest),
        "services": p.services.iter().map(part).collect::<Vec<_>>(),
        "console": match p.console { Console::On => "on", Console::Off => "off" },
        "channels": p.channels.iter().map(|c| serde_json::json!({
            "name": c.name, "client": c.client, "server": c.server,
        })).collect::<Vec<_>>(),
    })
}
