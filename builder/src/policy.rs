//! The `.vmseal` launch policy of a manifest, encoded by [`policies::launch`] (the one
//! encoding the stub decodes and measures into PCR 12).

use policies::launch::{Console, Devices, LaunchPolicy, Partition, PayloadKind};
use policies::sections;

use crate::manifest::{self, Device, Manifest, Payload};

/// The launch policy a manifest describes, validated by [`LaunchPolicy::validate`].
pub fn from_manifest(m: &Manifest) -> Result<LaunchPolicy, String> {
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
    let p = LaunchPolicy {
        name: m.image.name.clone(),
        version: m.image.version.clone(),
        guest: Partition {
            name: m.image.name.clone(),
            kind,
            section: section.into(),
            memory: m.guest.memory,
            // Interim (replaced by the ELF-derived base in the hypervisor work).
            base: if kind == PayloadKind::Elf {
                0x400_0000
            } else {
                0
            },
            devices: Devices::NONE,
        },
        services: m
            .service
            .iter()
            .enumerate()
            .map(|(i, s)| Partition {
                name: s.name.clone(),
                kind: PayloadKind::Elf,
                section: format!("{}{i}", sections::SERVICE_PREFIX),
                memory: s.memory,
                base: 0x1000_0000 + (i as u64) * 0x100_0000,
                devices: devices(&s.devices),
            })
            .collect(),
        console: match m.guest.console {
            manifest::Console::On => Console::On,
            manifest::Console::Off => Console::Off,
        },
        channels: Vec::new(),
    };
    p.validate().map_err(|e| e.to_string())?;
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
            "devices": devices,
        })
    };
    serde_json::json!({
        "format": policies::launch::VERSION,
        "name": p.name,
        "version": p.version,
        "guest": part(&p.guest),
        "services": p.services.iter().map(part).collect::<Vec<_>>(),
        "console": match p.console { Console::On => "on", Console::Off => "off" },
    })
}
