//! Section names of the appliance PE and the canonical measurement scheme.
//!
//! The stub measures by iterating [`MEASURED`]; the builder predicts by iterating the same
//! table. Each present section is measured with **two** extends into its PCR, both
//! `EV_IPL` events whose event data is the section name as UTF-16LE including the NUL:
//! 1. digest = H(ASCII name including the trailing NUL), e.g. H(".linux\0");
//! 2. digest = H(section contents), `VirtualSize` bytes.
//!
//! This is exactly systemd-stub's PCR 11 scheme (`src/boot/stub.c → measure_sections`,
//! `src/boot/measure.c → tpm_log_ipl_event_ascii`; `shared/reference/measured-boot.md` §E.1),
//! so `systemd-measure calculate` predicts PCR 11 of a Linux appliance. vmseal applies the same
//! two-step scheme to `.vmseal` (PCR 12) and to each `.svcN` (PCR 13).

use crate::tcg::{EventType, pcr};

/// Where a section's measurement goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rule {
    /// Section name as it appears in the PE section table (at most 8 bytes).
    pub name: &'static str,
    /// PCR the two events are extended into.
    pub pcr: u32,
    /// Event type of both events.
    pub event_type: EventType,
}

/// `.linux`: an EFI-stub Linux kernel (guest payload, started by LoadImage/StartImage).
pub const LINUX: &str = ".linux";
/// `.guest`: an ELF unikernel (guest payload). Takes the place of `.linux` in the order.
pub const GUEST: &str = ".guest";
/// `.osrel`: os-release of the appliance.
pub const OSREL: &str = ".osrel";
/// `.cmdline`: the kernel / guest command line (no trailing NUL, no newline).
pub const CMDLINE: &str = ".cmdline";
/// `.initrd`: the Linux initrd, served to the kernel through LoadFile2.
pub const INITRD: &str = ".initrd";
/// `.pcrpkey`: the public key (PEM) that signs PCR 11 policies (`.pcrsig`); measured, as
/// systemd-stub measures it, so the key is part of PCR 11.
pub const PCRPKEY: &str = ".pcrpkey";
/// `.pcrsig`: signed PCR 11 policies (the JSON of `systemd-measure sign`); **not** measured
/// (it holds signatures over PCR 11, which cannot cover themselves), as systemd-stub skips it.
pub const PCRSIG: &str = ".pcrsig";
/// `.vmseal`: the sealed launch policy (see the builder's policy encoder).
pub const VMSEAL: &str = ".vmseal";
/// Prefix of root-partition service sections: `.svc0`, `.svc1`, … `.svc999`.
pub const SERVICE_PREFIX: &str = ".svc";
/// At most this many services (`.svc0`…`.svc999` fit in 8 bytes).
pub const MAX_SERVICES: usize = 1000;

/// The canonical measurement order. **Do not reorder**: the order of extends is part of every
/// PCR value. PCR 11 follows systemd's `UnifiedSection` enum order (`src/fundamental/uki.h`:
/// `.linux`, `.osrel`, `.cmdline`, `.initrd`, …) with `.guest` in the `.linux` slot; then the
/// launch policy (PCR 12); services follow in index order (PCR 13, see [`service_rule`]).
/// systemd 252's order has `.splash` and `.dtb` between `.initrd` and `.pcrpkey`; vmseal adds
/// neither, so `.pcrpkey` follows `.initrd` here.
pub const MEASURED: &[Rule] = &[
    Rule { name: LINUX, pcr: pcr::KERNEL_BOOT, event_type: EventType::IPL },
    Rule { name: GUEST, pcr: pcr::KERNEL_BOOT, event_type: EventType::IPL },
    Rule { name: OSREL, pcr: pcr::KERNEL_BOOT, event_type: EventType::IPL },
    Rule { name: CMDLINE, pcr: pcr::KERNEL_BOOT, event_type: EventType::IPL },
    Rule { name: INITRD, pcr: pcr::KERNEL_BOOT, event_type: EventType::IPL },
    Rule { name: PCRPKEY, pcr: pcr::KERNEL_BOOT, event_type: EventType::IPL },
    Rule { name: VMSEAL, pcr: pcr::KERNEL_CONFIG, event_type: EventType::IPL },
];

/// The rule for service section `.svc<index>` (measured after every entry of [`MEASURED`],
/// in ascending index order).
pub const fn service_rule() -> (u32, EventType) {
    (pcr::SYSEXTS, EventType::IPL)
}

/// Whether `name` is a service section name `.svcN` with `N` in `0..MAX_SERVICES` written
/// without leading zeros; returns `N`.
pub fn service_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix(SERVICE_PREFIX)?;
    if digits.is_empty() || digits.len() > 3 || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every section name vmseal itself adds to the stub (for collision checks).
pub fn is_reserved(name: &str) -> bool {
    MEASURED.iter().any(|r| r.name == name) || name == PCRSIG || service_index(name).is_some()
}

/// Maximum length of a PE section name.
pub const MAX_NAME_LEN: usize = 8;

/// The first event's data for a measured section: the name as UTF-16LE with a NUL, as
/// systemd-stub logs it (`tpm_log_ipl_event_ascii`). Both events of a section carry it.
pub fn event_data(name: &str) -> alloc::vec::Vec<u8> {
    utf16le_with_nul(name)
}

/// `s` as UTF-16LE with a NUL (2 zero bytes): measured section names' event data, and the
/// Linux command line as LoadOptions.
pub fn utf16le_with_nul(s: &str) -> alloc::vec::Vec<u8> {
    // A loop rather than `encode_utf16().chain(once(0)).flat_map(..).collect()`: the same
    // bytes, without the iterator adapters' code in the stub (issue 17).
    let mut out = alloc::vec::Vec::with_capacity(2 * s.len() + 2);
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// The bytes hashed for the first event: the ASCII name with its trailing NUL.
pub fn name_digest_input(name: &str) -> alloc::vec::Vec<u8> {
    let mut v = alloc::vec::Vec::with_capacity(name.len() + 1);
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert_eq!(service_index(".svc0"), Some(0));
        assert_eq!(service_index(".svc999"), Some(999));
        assert_eq!(service_index(".svc01"), None);
        assert_eq!(service_index(".svc1000"), None);
        assert_eq!(service_index(".svc"), None);
        assert_eq!(service_index(".svcx"), None);
    }

    #[test]
    fn names_fit_a_pe_section_header() {
        for r in MEASURED {
            assert!(r.name.len() <= MAX_NAME_LEN, "{}", r.name);
        }
    }

    #[test]
    fn event_data_is_utf16_with_nul() {
        assert_eq!(event_data(".linux"), b".\0l\0i\0n\0u\0x\0\0\0");
        for s in ["", "console=ttyS0 quiet", "ä€𝄞", ".svc12"] {
            let want: alloc::vec::Vec<u8> =
                s.encode_utf16().chain(Some(0)).flat_map(u16::to_le_bytes).collect();
            assert_eq!(utf16le_with_nul(s), want);
        }
    }
}
