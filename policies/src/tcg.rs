//! TCG PC Client Platform Firmware Profile constants.
//!
//! Values from the TCG PC Client PFP specification and EDK2
//! `MdePkg/Include/IndustryStandard/UefiTcgPlatform.h` (`EV_IPL` from systemd
//! `src/boot/proto/tcg.h`); see `shared/reference/measured-boot.md` §A.1–A.2. Values that come
//! from firmware or a file are integer newtypes so that an unknown value stays representable.

/// A TCG event type (`TCG_EVENTTYPE`, UINT32 little-endian on disk).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EventType(pub u32);

#[expect(missing_docs, reason = "names are the spec's own; see the module docs")]
impl EventType {
    pub const PREBOOT_CERT: Self = Self(0x0000_0000);
    pub const POST_CODE: Self = Self(0x0000_0001);
    pub const NO_ACTION: Self = Self(0x0000_0003);
    pub const SEPARATOR: Self = Self(0x0000_0004);
    pub const ACTION: Self = Self(0x0000_0005);
    pub const EVENT_TAG: Self = Self(0x0000_0006);
    pub const S_CRTM_CONTENTS: Self = Self(0x0000_0007);
    pub const S_CRTM_VERSION: Self = Self(0x0000_0008);
    pub const CPU_MICROCODE: Self = Self(0x0000_0009);
    pub const PLATFORM_CONFIG_FLAGS: Self = Self(0x0000_000A);
    pub const TABLE_OF_DEVICES: Self = Self(0x0000_000B);
    pub const COMPACT_HASH: Self = Self(0x0000_000C);
    pub const IPL: Self = Self(0x0000_000D);
    pub const IPL_PARTITION_DATA: Self = Self(0x0000_000E);
    pub const NONHOST_CODE: Self = Self(0x0000_000F);
    pub const NONHOST_CONFIG: Self = Self(0x0000_0010);
    pub const NONHOST_INFO: Self = Self(0x0000_0011);
    pub const OMIT_BOOT_DEVICE_EVENTS: Self = Self(0x0000_0012);
    pub const EFI_EVENT_BASE: Self = Self(0x8000_0000);
    pub const EFI_VARIABLE_DRIVER_CONFIG: Self = Self(0x8000_0001);
    pub const EFI_VARIABLE_BOOT: Self = Self(0x8000_0002);
    pub const EFI_BOOT_SERVICES_APPLICATION: Self = Self(0x8000_0003);
    pub const EFI_BOOT_SERVICES_DRIVER: Self = Self(0x8000_0004);
    pub const EFI_RUNTIME_SERVICES_DRIVER: Self = Self(0x8000_0005);
    pub const EFI_GPT_EVENT: Self = Self(0x8000_0006);
    pub const EFI_ACTION: Self = Self(0x8000_0007);
    pub const EFI_PLATFORM_FIRMWARE_BLOB: Self = Self(0x8000_0008);
    pub const EFI_HANDOFF_TABLES: Self = Self(0x8000_0009);
    pub const EFI_PLATFORM_FIRMWARE_BLOB2: Self = Self(0x8000_000A);
    pub const EFI_HANDOFF_TABLES2: Self = Self(0x8000_000B);
    pub const EFI_VARIABLE_BOOT2: Self = Self(0x8000_000C);
    pub const EFI_GPT_EVENT2: Self = Self(0x8000_000D);
    pub const EFI_HCRTM_EVENT: Self = Self(0x8000_0010);
    pub const EFI_VARIABLE_AUTHORITY: Self = Self(0x8000_00E0);
    pub const EFI_SPDM_FIRMWARE_BLOB: Self = Self(0x8000_00E1);
    pub const EFI_SPDM_FIRMWARE_CONFIG: Self = Self(0x8000_00E2);
    pub const EFI_SPDM_DEVICE_POLICY: Self = Self(0x8000_00E3);
    pub const EFI_SPDM_DEVICE_AUTHORITY: Self = Self(0x8000_00E4);
}

impl EventType {
    /// The spec name (`EV_EFI_ACTION`), as `tpm2_eventlog` prints it; `None` if unknown.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::PREBOOT_CERT => "EV_PREBOOT_CERT",
            Self::POST_CODE => "EV_POST_CODE",
            Self::NO_ACTION => "EV_NO_ACTION",
            Self::SEPARATOR => "EV_SEPARATOR",
            Self::ACTION => "EV_ACTION",
            Self::EVENT_TAG => "EV_EVENT_TAG",
            Self::S_CRTM_CONTENTS => "EV_S_CRTM_CONTENTS",
            Self::S_CRTM_VERSION => "EV_S_CRTM_VERSION",
            Self::CPU_MICROCODE => "EV_CPU_MICROCODE",
            Self::PLATFORM_CONFIG_FLAGS => "EV_PLATFORM_CONFIG_FLAGS",
            Self::TABLE_OF_DEVICES => "EV_TABLE_OF_DEVICES",
            Self::COMPACT_HASH => "EV_COMPACT_HASH",
            Self::IPL => "EV_IPL",
            Self::IPL_PARTITION_DATA => "EV_IPL_PARTITION_DATA",
            Self::NONHOST_CODE => "EV_NONHOST_CODE",
            Self::NONHOST_CONFIG => "EV_NONHOST_CONFIG",
            Self::NONHOST_INFO => "EV_NONHOST_INFO",
            Self::OMIT_BOOT_DEVICE_EVENTS => "EV_OMIT_BOOT_DEVICE_EVENTS",
            Self::EFI_EVENT_BASE => "EV_EFI_EVENT_BASE",
            Self::EFI_VARIABLE_DRIVER_CONFIG => "EV_EFI_VARIABLE_DRIVER_CONFIG",
            Self::EFI_VARIABLE_BOOT => "EV_EFI_VARIABLE_BOOT",
            Self::EFI_BOOT_SERVICES_APPLICATION => "EV_EFI_BOOT_SERVICES_APPLICATION",
            Self::EFI_BOOT_SERVICES_DRIVER => "EV_EFI_BOOT_SERVICES_DRIVER",
            Self::EFI_RUNTIME_SERVICES_DRIVER => "EV_EFI_RUNTIME_SERVICES_DRIVER",
            Self::EFI_GPT_EVENT => "EV_EFI_GPT_EVENT",
            Self::EFI_ACTION => "EV_EFI_ACTION",
            Self::EFI_PLATFORM_FIRMWARE_BLOB => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
            Self::EFI_HANDOFF_TABLES => "EV_EFI_HANDOFF_TABLES",
            Self::EFI_PLATFORM_FIRMWARE_BLOB2 => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
            Self::EFI_HANDOFF_TABLES2 => "EV_EFI_HANDOFF_TABLES2",
            Self::EFI_VARIABLE_BOOT2 => "EV_EFI_VARIABLE_BOOT2",
            Self::EFI_GPT_EVENT2 => "EV_EFI_GPT_EVENT2",
            Self::EFI_HCRTM_EVENT => "EV_EFI_HCRTM_EVENT",
            Self::EFI_VARIABLE_AUTHORITY => "EV_EFI_VARIABLE_AUTHORITY",
            Self::EFI_SPDM_FIRMWARE_BLOB => "EV_EFI_SPDM_FIRMWARE_BLOB",
            Self::EFI_SPDM_FIRMWARE_CONFIG => "EV_EFI_SPDM_FIRMWARE_CONFIG",
            Self::EFI_SPDM_DEVICE_POLICY => "EV_EFI_SPDM_DEVICE_POLICY",
            Self::EFI_SPDM_DEVICE_AUTHORITY => "EV_EFI_SPDM_DEVICE_AUTHORITY",
            _ => return None,
        })
    }
}

/// A TPM 2.0 hash algorithm identifier (`TPM_ALG_ID`, UINT16).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct HashAlg(pub u16);

impl HashAlg {
    /// SHA-1, 20-byte digests.
    pub const SHA1: Self = Self(0x0004);
    /// SHA-256, 32-byte digests.
    pub const SHA256: Self = Self(0x000B);
    /// SHA-384, 48-byte digests.
    pub const SHA384: Self = Self(0x000C);
    /// SHA-512, 64-byte digests.
    pub const SHA512: Self = Self(0x000D);
    /// SM3-256, 32-byte digests (recognised in logs; vmseal does not compute it).
    pub const SM3_256: Self = Self(0x0012);

    /// The banks vmseal computes, in the order EDK2 lists them in a log (do not reorder:
    /// `Tcg2Dxe.c → SetupEventLog` writes SHA1, SHA256, SHA384, SHA512, SM3).
    pub const COMPUTED: [Self; 4] = [Self::SHA1, Self::SHA256, Self::SHA384, Self::SHA512];

    /// Digest size in bytes, or `None` for an algorithm vmseal does not know.
    pub const fn digest_size(self) -> Option<usize> {
        match self {
            Self::SHA1 => Some(20),
            Self::SHA256 | Self::SM3_256 => Some(32),
            Self::SHA384 => Some(48),
            Self::SHA512 => Some(64),
            _ => None,
        }
    }

    /// The lower-case name used in files and on the command line (`sha256`).
    pub const fn name(self) -> Option<&'static str> {
        match self {
            Self::SHA1 => Some("sha1"),
            Self::SHA256 => Some("sha256"),
            Self::SHA384 => Some("sha384"),
            Self::SHA512 => Some("sha512"),
            Self::SM3_256 => Some("sm3_256"),
            _ => None,
        }
    }

    /// Parse a bank name as written by [`HashAlg::name`], ignoring ASCII case (`SHA256`, and
    /// the `shA256` of a fixture dump, are accepted).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::SHA1, Self::SHA256, Self::SHA384, Self::SHA512, Self::SM3_256]
            .into_iter()
            .find(|a| a.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }
}

/// PCR indices that vmseal and the firmware use (UAPI PCR registry).
pub mod pcr {
    /// Boot loader code: the appliance PE and any PE passed to `LoadImage` (firmware-measured).
    pub const BOOT_LOADER_CODE: u32 = 4;
    /// GPT and ExitBootServices actions (firmware-measured).
    pub const BOOT_LOADER_CONFIG: u32 = 5;
    /// Secure Boot policy and authorities (firmware-measured).
    pub const SECURE_BOOT_POLICY: u32 = 7;
    /// The Linux EFI stub's initrd and LoadOptions.
    pub const KERNEL_INITRD: u32 = 9;
    /// The appliance's boot components (systemd-stub compatible UKI sections).
    pub const KERNEL_BOOT: u32 = 11;
    /// Configuration: vmseal's sealed launch policy.
    pub const KERNEL_CONFIG: u32 = 12;
    /// Root-partition services (system extensions in the UAPI registry).
    pub const SYSEXTS: u32 = 13;
}
