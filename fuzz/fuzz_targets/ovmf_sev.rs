//! `vmseal::confidential::ovmf::SevFirmware::parse` (the SEV footer GUID table and "ASEV"
//! metadata of an OVMF image, untrusted bytes given to `vmseal pcr predict --snp-firmware`)
//! and the SNP launch digest over what it parsed: never panic.
//!
//! The builder crate embeds the stub (its build script cross-builds it), so this target
//! compiles the two source files it needs directly instead of depending on `vmseal`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../builder/src/confidential/ovmf.rs"]
#[allow(dead_code, reason = "the CLI's helpers are not fuzzed")]
mod ovmf;
#[path = "../../builder/src/confidential/snp.rs"]
#[allow(dead_code, reason = "the CLI's helpers are not fuzzed")]
mod snp;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = ovmf::SevFirmware::parse(data) else {
        return;
    };
    let _ = (f.reset_eip(), f.hash_table_gpa());
    // Keep runs short: measure only firmware whose sections total at most 16 MiB.
    let total: u64 = f.sections.iter().map(|s| u64::from(s.size)).sum();
    if total > 16 << 20 {
        return;
    }
    let cfg = snp::SnpConfig {
        vcpus: 2,
        vcpu_type: None,
        vcpu_signature: 0x0080_0f12,
        guest_features: 1,
        policy: snp::DEFAULT_POLICY,
        vmm: snp::Vmm::Qemu,
    };
    let boot = snp::DirectBoot::new([0; 32], None, "");
    let _ = snp::launch_digest(data, &f, &cfg, Some(&boot));
    let _ = snp::launch_digest(data, &f, &cfg, None);
});
