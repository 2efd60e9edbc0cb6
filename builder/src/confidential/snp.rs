//! The AMD SEV-SNP launch digest (`MEASUREMENT` of the attestation report) of a guest that an
//! OVMF firmware boots, optionally with a direct-boot payload whose hashes the firmware's
//! `SNP_KERNEL_HASHES` page carries.
//!
//! The PSP folds every page the VMM hands it with `SNP_LAUNCH_UPDATE` into a SHA-384 chain:
//! `LD' = SHA-384(PAGE_INFO)`, `PAGE_INFO = LD ‖ CONTENTS ‖ u16 LENGTH=0x70 ‖ u8 PAGE_TYPE ‖
//! u8 IMI_PAGE ‖ u8 VMPL3_PERMS ‖ u8 VMPL2_PERMS ‖ u8 VMPL1_PERMS ‖ u8 0 ‖ u64 GPA`
//! (SEV Secure Nested Paging Firmware ABI Specification, §8.17 SNP_LAUNCH_UPDATE, Table
//! "Layout of the PAGE_INFO Structure"; `CONTENTS` is SHA-384 of the page for normal and VMSA
//! pages and zero for the others). The VMM's order, which this module follows (QEMU's
//! `sev_snp_launch_update` order as `sev-snp-measure` reproduces it):
//!
//! 1. the firmware image, page by page, at `4 GiB − size` (`PAGE_TYPE_NORMAL`);
//! 2. each SEV metadata section (see [`super::ovmf`]) in file order: `SNP_SEC_MEM` zero pages
//!    (GCE: unmeasured pages), the secrets page, the CPUID page (EC2: after all sections),
//!    `SNP_KERNEL_HASHES` as a normal page holding the SEV hash table (zero pages without a
//!    payload), `SVSM_CAA` zero pages;
//! 3. one VMSA page per vCPU (`PAGE_TYPE_VMSA`, GPA `0xFFFFFFFFF000`): the initial register
//!    state of the BSP at the reset vector, of each AP at the firmware's SEV-ES reset EIP, with
//!    `SEV_FEATURES` = the guest features and `RDX` = the vCPU signature (CPUID
//!    Fn0000_0001_EAX). Layout: AMD64 APM Vol. 2, Table B-4 "VMSA Layout, State Save Area
//!    for SEV-ES".
//!
//! The guest policy is *not* part of the digest (the PSP reports it beside it); it is checked
//! here and recorded with the digest because a verifier must compare both.
//!
//! Hand-written rather than the `sev` crate's `measurement` module (virtee, a Rust port of
//! `sev-snp-measure`), because: its released versions (7.1.0) compute SNP digests only with
//! the `openssl` feature (a vendored OpenSSL build; vmseal is RustCrypto-only — a RustCrypto
//! path exists only unreleased, on sha2 0.10); its OVMF parser subtracts and slices unchecked
//! (`len - 32 - 18`, `data[table_start..]`, `len - offset_from_end`), so a short or corrupt
//! firmware file panics instead of being a one-line error; and it hashes the kernel from a file
//! path, whereas vmseal hashes `BOOTX64.EFI` inside the image. The oracle the tests compare
//! with is `sev-snp-measure` itself (Python).

use sha2::{Digest as _, Sha256, Sha384};

use super::ovmf::{SectionKind, SevFirmware};

/// A launch digest (SHA-384).
pub type LaunchDigest = [u8; 48];

/// Page size of `SNP_LAUNCH_UPDATE`.
pub const PAGE: usize = 4096;
/// GPA the VMSA pages are recorded at (all ones, page-aligned, bits above 51 clear).
pub const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;
/// The BSP's reset vector.
pub const BSP_EIP: u32 = 0xFFFF_FFF0;
/// Highest GPA + 1 of the firmware image (it ends at 4 GiB).
pub const FIRMWARE_END: u64 = 1 << 32;

/// `PAGE_TYPE` of `PAGE_INFO` (SNP ABI, Table "Page Types").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum PageType {
    Normal = 1,
    Vmsa = 2,
    Zero = 3,
    Unmeasured = 4,
    Secrets = 5,
    Cpuid = 6,
}

/// The VMM that launches the guest: it decides some initial register values and the order
/// and kind of a few pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vmm {
    /// QEMU/KVM.
    Qemu,
    /// AWS EC2.
    Ec2,
    /// Google Compute Engine.
    Gce,
}

impl Vmm {
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qemu => "qemu",
            Self::Ec2 => "ec2",
            Self::Gce => "gce",
        }
    }

    /// The VMM named `s` (case-insensitive).
    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "qemu" => Some(Self::Qemu),
            "ec2" => Some(Self::Ec2),
            "gce" => Some(Self::Gce),
            _ => None,
        }
    }
}

/// CPUID Fn0000_0001_EAX of a family/model/stepping (AMD CPUID Specification #25481,
/// "CPUID Fn0000_0001_EAX Family, Model, Stepping Identifiers": family above 0xF is split
/// into BaseFamily 0xF + ExtFamily).
pub const fn cpu_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (base, ext) = if family > 0xf {
        (0xf, (family - 0xf) & 0xff)
    } else {
        (family, 0)
    };
    (ext << 20)
        | (((model >> 4) & 0xf) << 16)
        | (base << 8)
        | ((model & 0xf) << 4)
        | (stepping & 0xf)
}

/// QEMU's AMD EPYC CPU models (`target/i386/cpu.c`, `builtin_x86_defs`) with their family,
/// model and stepping.
pub const VCPU_TYPES: &[(&str, u32, u32, u32)] = &[
    ("EPYC", 23, 1, 2),
    ("EPYC-v1", 23, 1, 2),
    ("EPYC-v2", 23, 1, 2),
    ("EPYC-IBPB", 23, 1, 2),
    ("EPYC-v3", 23, 1, 2),
    ("EPYC-v4", 23, 1, 2),
    ("EPYC-Rome", 23, 49, 0),
    ("EPYC-Rome-v1", 23, 49, 0),
    ("EPYC-Rome-v2", 23, 49, 0),
    ("EPYC-Rome-v3", 23, 49, 0),
    ("EPYC-Milan", 25, 1, 1),
    ("EPYC-Milan-v1", 25, 1, 1),
    ("EPYC-Milan-v2", 25, 1, 1),
    ("EPYC-Genoa", 25, 17, 0),
    ("EPYC-Genoa-v1", 25, 17, 0),
    ("EPYC-Turin", 26, 0, 0),
];

/// The signature of QEMU CPU model `name`.
pub fn vcpu_signature(name: &str) -> Option<u32> {
    VCPU_TYPES
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, f, m, s)| cpu_signature(*f, *m, *s))
}

/// Guest policy bit 17: reserved, must be one (SNP ABI, Table "Guest Policy Structure").
pub const POLICY_RESERVED_ONE: u64 = 1 << 17;
/// Guest policy bits 63:26: reserved, must be zero (SNP ABI 1.55, Table "Guest Policy
/// Structure"; 25:16 are SMT, reserved-1, MIGRATE_MA, DEBUG, SINGLE_SOCKET, CXL_ALLOW,
/// MEM_AES_256_XTS, RAPL_DIS, CIPHERTEXT_HIDING, PAGE_SWAP_DISABLE).
pub const POLICY_RESERVED_ZERO: u64 = !((1 << 26) - 1);
/// QEMU's default `sev-snp-guest` policy: SMT allowed, reserved bit 17.
pub const DEFAULT_POLICY: u64 = 0x30000;
/// `SEV_FEATURES` bit 0, SNPActive: set in every SNP guest's VMSA.
pub const SNP_ACTIVE: u64 = 1;

/// What the guest is launched with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpConfig {
    /// Number of vCPUs (one VMSA each).
    pub vcpus: u32,
    /// The vCPU model's name, when given by name.
    pub vcpu_type: Option<String>,
    /// CPUID Fn0000_0001_EAX of the vCPUs (the VMSA's RDX under QEMU).
    pub vcpu_signature: u32,
    /// `SEV_FEATURES` of every VMSA.
    pub guest_features: u64,
    /// The guest policy (recorded, not measured).
    pub policy: u64,
    /// The VMM.
    pub vmm: Vmm,
}

/// The SHA-256 digests QEMU puts into the SEV hash table for a direct boot (`-kernel`,
/// `-initrd`, `-append`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectBoot {
    /// SHA-256 of the kernel file.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd (of nothing when there is none).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line with its NUL (`"\0"` when empty).
    pub cmdline: [u8; 32],
}

impl DirectBoot {
    /// The hashes of `kernel`'s SHA-256, an initrd and a command line.
    pub fn new(kernel_sha256: [u8; 32], initrd: Option<&[u8]>, cmdline: &str) -> Self {
        let mut c = cmdline.as_bytes().to_vec();
        c.push(0);
        Self {
            kernel: kernel_sha256,
            initrd: Sha256::digest(initrd.unwrap_or_default()).into(),
            cmdline: Sha256::digest(&c).into(),
        }
    }
}

/// Why a launch digest cannot be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnpError {
    /// The firmware's size is not whole pages below 4 GiB.
    #[error("size {0} is not a non-zero multiple of 4096 up to 4 GiB")]
    FirmwareSize(usize),
    /// No SEV-ES reset block: the APs have no start address.
    #[error("no SEV-ES reset block (GUID 00f771de-…) in the footer table: not an SEV-capable OVMF")]
    NoResetBlock,
    /// A payload was given but the firmware does not measure one.
    #[error(
        "its SEV metadata has no SNP_KERNEL_HASHES section, so the launch digest cannot cover a direct-boot payload"
    )]
    NoKernelHashes,
    /// A metadata section that cannot be launched as declared.
    #[error("SEV metadata section {index} ({kind}): {problem}")]
    Section {
        /// Its index.
        index: usize,
        /// Its type name.
        kind: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A configuration value out of range.
    #[error("{field}: {problem}")]
    Config {
        /// The option.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// The SHA-384 chain of `SNP_LAUNCH_UPDATE` (the guest context's launch digest).
struct Chain(LaunchDigest);

impl Chain {
    /// Fold one `PAGE_INFO` (SNP ABI, Table "Layout of the PAGE_INFO Structure").
    fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; 48]) {
        let mut info = [0u8; 0x70];
        info[..48].copy_from_slice(&self.0);
        info[48..96].copy_from_slice(contents);
        info[96..98].copy_from_slice(&0x70u16.to_le_bytes());
        info[98] = page_type as u8;
        // IMI_PAGE 0, VMPL3/2/1_PERMS 0, reserved 0.
        info[104..112].copy_from_slice(&gpa.to_le_bytes());
        self.0 = Sha384::digest(info).into();
    }

    fn normal(&mut self, gpa: u64, data: &[u8]) {
        for (i, page) in data.chunks(PAGE).enumerate() {
            let h: [u8; 48] = Sha384::digest(page).into();
            self.update(PageType::Normal, gpa + (i * PAGE) as u64, &h);
        }
    }

    fn empty(&mut self, t: PageType, gpa: u64, len: u64) {
        for off in (0..len).step_by(PAGE) {
            self.update(t, gpa + off, &[0; 48]);
        }
    }
}

/// The SEV hash table QEMU writes for a direct boot, padded to 16 bytes (QEMU
/// `target/i386/sev.c`, `SevHashTable`/`PaddedSevHashTable`): header GUID
/// `9438d606-4f22-4cc9-b479-a793d411fd21`, `u16` length, then the cmdline, initrd and kernel
/// entries `{ GUID; u16 length = 50; SHA-256 }`.
pub fn hash_table(d: &DirectBoot) -> Vec<u8> {
    use super::ovmf::guid;
    const HEADER: [u8; 16] = guid(
        0x9438_d606,
        0x4f22,
        0x4cc9,
        [0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21],
    );
    const CMDLINE: [u8; 16] = guid(
        0x97d0_2dd8,
        0xbd20,
        0x4c94,
        [0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a],
    );
    const INITRD: [u8; 16] = guid(
        0x44ba_f731,
        0x3a2f,
        0x4bd7,
        [0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d],
    );
    const KERNEL: [u8; 16] = guid(
        0x4de7_9437,
        0xabd2,
        0x427f,
        [0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b],
    );
    const ENTRY: usize = 16 + 2 + 32;
    const TABLE: usize = 16 + 2 + 3 * ENTRY;
    let mut t = Vec::with_capacity(TABLE.next_multiple_of(16));
    t.extend_from_slice(&HEADER);
    t.extend_from_slice(&(TABLE as u16).to_le_bytes());
    for (g, h) in [
        (CMDLINE, &d.cmdline),
        (INITRD, &d.initrd),
        (KERNEL, &d.kernel),
    ] {
        t.extend_from_slice(&g);
        t.extend_from_slice(&(ENTRY as u16).to_le_bytes());
        t.extend_from_slice(h);
    }
    t.resize(TABLE.next_multiple_of(16), 0);
    t
}

/// One VMSA page: the initial state of a vCPU starting at `eip` (AMD64 APM Vol. 2, Table B-4;
/// the values are those QEMU/KVM, EC2 and GCE load, as sev-snp-measure models them).
pub fn vmsa_page(eip: u32, cfg: &SnpConfig) -> [u8; PAGE] {
    let mut p = [0u8; PAGE];
    let (cs_attr, ss_attr, tr_attr, rdx, mxcsr, fcw, g_pat) = match cfg.vmm {
        Vmm::Qemu => (
            0x9bu16,
            0x93u16,
            0x8bu16,
            u64::from(cfg.vcpu_signature),
            0x1f80u32,
            0x37fu16,
            0x0007_0406_0007_0406u64,
        ),
        Vmm::Ec2 => (
            if eip == BSP_EIP { 0x9a } else { 0x9b },
            0x92,
            0x83,
            0x600,
            0,
            0,
            0x0007_0406_0007_0406,
        ),
        Vmm::Gce => (0x9b, 0x93, 0x8b, 0x600, 0, 0, 0x0007_0106),
    };
    // Segment registers: { u16 selector; u16 attrib; u32 limit; u64 base } at 0x00..0xA0 in
    // the order ES CS SS DS FS GS GDTR LDTR IDTR TR.
    let segs: [(u16, u16, u32, u64); 10] = [
        (0, 0x93, 0xffff, 0),
        (0xf000, cs_attr, 0xffff, u64::from(eip & 0xffff_0000)),
        (0, ss_attr, 0xffff, 0),
        (0, 0x93, 0xffff, 0),
        (0, 0x93, 0xffff, 0),
        (0, 0x93, 0xffff, 0),
        (0, 0, 0xffff, 0),
        (0, 0x82, 0xffff, 0),
        (0, 0, 0xffff, 0),
        (0, tr_attr, 0xffff, 0),
    ];
    for (i, (sel, attr, limit, base)) in segs.into_iter().enumerate() {
        let o = i * 16;
        p[o..o + 2].copy_from_slice(&sel.to_le_bytes());
        p[o + 2..o + 4].copy_from_slice(&attr.to_le_bytes());
        p[o + 4..o + 8].copy_from_slice(&limit.to_le_bytes());
        p[o + 8..o + 16].copy_from_slice(&base.to_le_bytes());
    }
    let mut q = |o: usize, v: u64| p[o..o + 8].copy_from_slice(&v.to_le_bytes());
    q(0xd0, 0x1000); // EFER.SVME (KVM sets it)
    q(0x148, 0x40); // CR4.MCE
    q(0x158, 0x10); // CR0.ET
    q(0x160, 0x400); // DR7
    q(0x168, 0xffff_0ff0); // DR6
    q(0x170, 0x2); // RFLAGS
    q(0x178, u64::from(eip & 0xffff)); // RIP
    q(0x268, g_pat); // G_PAT
    q(0x310, rdx); // RDX
    q(0x3b0, cfg.guest_features); // SEV_FEATURES
    q(0x3e8, 0x1); // XCR0
    p[0x408..0x40c].copy_from_slice(&mxcsr.to_le_bytes()); // MXCSR
    p[0x410..0x412].copy_from_slice(&fcw.to_le_bytes()); // x87 FCW
    p
}

/// Check the parts of `cfg` the PSP or the VMM would refuse.
pub fn check_config(cfg: &SnpConfig) -> Result<(), SnpError> {
    if cfg.vcpus == 0 {
        return Err(SnpError::Config {
            field: "vcpus",
            problem: "must be at least 1".into(),
        });
    }
    if cfg.guest_features & SNP_ACTIVE == 0 {
        return Err(SnpError::Config {
            field: "guest_features",
            problem: format!(
                "{:#x} lacks bit 0 (SNPActive), which every SNP guest's VMSA has",
                cfg.guest_features
            ),
        });
    }
    if cfg.policy & POLICY_RESERVED_ONE == 0 || cfg.policy & POLICY_RESERVED_ZERO != 0 {
        return Err(SnpError::Config {
            field: "policy",
            problem: format!(
                "{:#x}: bit 17 must be 1 and bits 63:26 must be 0 (SNP ABI guest policy), e.g. {DEFAULT_POLICY:#x}",
                cfg.policy
            ),
        });
    }
    Ok(())
}

/// The launch digest of `firmware` (its bytes, parsed as `sev`) launched with `cfg`, with the
/// direct-boot payload `boot` in its hash table when given.
pub fn launch_digest(
    firmware: &[u8],
    sev: &SevFirmware,
    cfg: &SnpConfig,
    boot: Option<&DirectBoot>,
) -> Result<LaunchDigest, SnpError> {
    check_config(cfg)?;
    let len = firmware.len();
    if len == 0 || !len.is_multiple_of(PAGE) || len as u64 > FIRMWARE_END {
        return Err(SnpError::FirmwareSize(len));
    }
    let ap_eip = sev.reset_eip().ok_or(SnpError::NoResetBlock)?;
    if boot.is_some() && !sev.has_section(SectionKind::KernelHashes) {
        return Err(SnpError::NoKernelHashes);
    }
    let mut ld = Chain([0; 48]);
    ld.normal(FIRMWARE_END - len as u64, firmware);
    for (index, s) in sev.sections.iter().enumerate() {
        let bad = |problem: String| SnpError::Section {
            index,
            kind: s.kind.name(),
            problem,
        };
        let (gpa, size) = (u64::from(s.gpa), u64::from(s.size));
        if !gpa.is_multiple_of(PAGE as u64) || !size.is_multiple_of(PAGE as u64) {
            return Err(bad(format!(
                "GPA {gpa:#x} or size {size:#x} is not page-aligned"
            )));
        }
        match s.kind {
            SectionKind::SecMem if cfg.vmm == Vmm::Gce => {
                ld.empty(PageType::Unmeasured, gpa, size);
            }
            SectionKind::SecMem | SectionKind::SvsmCaa => ld.empty(PageType::Zero, gpa, size),
            SectionKind::Secrets => ld.update(PageType::Secrets, gpa, &[0; 48]),
            SectionKind::Cpuid if cfg.vmm == Vmm::Ec2 => {}
            SectionKind::Cpuid => ld.update(PageType::Cpuid, gpa, &[0; 48]),
            SectionKind::KernelHashes => match boot {
                None => ld.empty(PageType::Zero, gpa, size),
                Some(b) => {
                    if size != PAGE as u64 {
                        return Err(bad(format!("size {size:#x} is not one page")));
                    }
                    let table = hash_table(b);
                    // QEMU writes the table at the GPA of the footer table's hash-table entry.
                    let table_gpa = sev
                        .table
                        .get(&super::ovmf::SEV_HASH_TABLE_RV_GUID)
                        .and_then(|d| d.get(..4))
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(u32::from_le_bytes)
                        .ok_or_else(|| {
                            bad("the footer table has no SEV hash table entry (7255371f-…) to say where in the page the hashes go".into())
                        })?;
                    let offset = table_gpa as usize % PAGE;
                    let mut page = vec![0u8; PAGE];
                    page.get_mut(offset..offset + table.len())
                        .ok_or_else(|| {
                            bad(format!(
                                "the hash table at page offset {offset:#x} does not fit in the page"
                            ))
                        })?
                        .copy_from_slice(&table);
                    ld.normal(gpa, &page);
                }
            },
        }
    }
    if cfg.vmm == Vmm::Ec2 {
        for s in sev.sections.iter().filter(|s| s.kind == SectionKind::Cpuid) {
            ld.update(PageType::Cpuid, u64::from(s.gpa), &[0; 48]);
        }
    }
    let bsp: [u8; 48] = Sha384::digest(vmsa_page(BSP_EIP, cfg)).into();
    let ap: [u8; 48] = Sha384::digest(vmsa_page(ap_eip, cfg)).into();
    for i in 0..cfg.vcpus {
        ld.update(PageType::Vmsa, VMSA_GPA, if i == 0 { &bsp } else { &ap });
    }
    Ok(ld.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SnpConfig {
        SnpConfig {
            vcpus: 1,
            vcpu_type: Some("EPYC-v4".into()),
            vcpu_signature: vcpu_signature("EPYC-v4").unwrap(),
            guest_features: 1,
            policy: DEFAULT_POLICY,
            vmm: Vmm::Qemu,
        }
    }

    #[test]
    fn cpu_signatures_match_real_cpus() {
        // CPUID Fn0000_0001_EAX as the processors report it (AMD revision guides: Naples
        // B2 0x00800F12, Rome B0 0x00830F10, Milan B1 0x00A00F11, Genoa B0 0x00A10F10).
        assert_eq!(vcpu_signature("EPYC"), Some(0x0080_0f12));
        assert_eq!(vcpu_signature("EPYC-Rome"), Some(0x0083_0f10));
        assert_eq!(vcpu_signature("EPYC-Milan"), Some(0x00a0_0f11));
        assert_eq!(vcpu_signature("EPYC-Genoa"), Some(0x00a1_0f10));
        assert_eq!(vcpu_signature("Skylake"), None);
    }

    #[test]
    fn hash_table_layout() {
        let t = hash_table(&DirectBoot::new([7; 32], None, ""));
        // 16 + 2 + 3 × 50 = 168 bytes, padded to 176.
        assert_eq!(t.len(), 176);
        assert_eq!(u16::from_le_bytes([t[16], t[17]]), 168);
        assert_eq!(&t[18..22], &[0xd8, 0x2d, 0xd0, 0x97]);
        // SHA-256("\0") (the empty command line) and SHA-256("") (no initrd).
        assert_eq!(
            hex::encode(&t[36..68]),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex::encode(&t[86..118]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(&t[136..168], &[7; 32]);
    }

    #[test]
    fn vmsa_fields_sit_at_the_apm_offsets() {
        let p = vmsa_page(0x80_b004, &cfg());
        // CS selector 0xF000, base = EIP & 0xFFFF0000, RIP = EIP & 0xFFFF.
        assert_eq!(&p[0x10..0x12], &0xf000u16.to_le_bytes());
        assert_eq!(&p[0x18..0x20], &0x80_0000u64.to_le_bytes());
        assert_eq!(&p[0x178..0x180], &0xb004u64.to_le_bytes());
        assert_eq!(&p[0x310..0x314], &0x0080_0f12u32.to_le_bytes());
        assert_eq!(p[0x3b0], 1);
    }

    #[test]
    fn bad_configs_are_refused() {
        let sev = SevFirmware::default();
        let fw = vec![0u8; PAGE];
        let mut c = cfg();
        c.policy = 0x10000;
        assert!(matches!(
            launch_digest(&fw, &sev, &c, None),
            Err(SnpError::Config {
                field: "policy",
                ..
            })
        ));
        let mut c = cfg();
        c.guest_features = 0;
        assert!(launch_digest(&fw, &sev, &c, None).is_err());
        let mut c = cfg();
        c.vcpus = 0;
        assert!(launch_digest(&fw, &sev, &c, None).is_err());
        assert_eq!(
            launch_digest(&fw[..100], &sev, &cfg(), None),
            Err(SnpError::FirmwareSize(100))
        );
        assert_eq!(
            launch_digest(&fw, &sev, &cfg(), None),
            Err(SnpError::NoResetBlock)
        );
    }
}
