//! The sealed launch policy: the contents of the `.vmseal` section.
//!
//! The builder encodes the manifest's partitions, memory grants, device capabilities and console
//! policy into this canonical byte string; the stub measures it into PCR 12
//! ([`crate::sections::VMSEAL`]) and decodes it to know what to enforce. Because it is measured,
//! the encoding is **canonical**: one policy has exactly one encoding, and
//! `encode(decode(b)) == b` for every `b` that decodes.
//!
//! # Encoding, version 3
//!
//! All integers little-endian, no padding, no alignment; fields in this fixed order:
//!
//! | field | encoding |
//! | --- | --- |
//! | magic | 8 bytes `b"VMSEALPL"` ([`MAGIC`]) |
//! | version | u32 = 3 ([`VERSION`]) |
//! | name | string |
//! | version string | string |
//! | guest | partition |
//! | service count | u32, at most [`MAX_SERVICES`] |
//! | services | partition × count, `.svc0` first |
//! | console | u32: 0 = off, 1 = on ([`Console`]) |
//! | channel count | u32, at most [`MAX_CHANNELS`] |
//! | channels | channel × count |
//!
//! A *string* is a u32 byte length (at most [`MAX_STRING_LEN`]) followed by that many bytes of
//! UTF-8 (no NUL). A *partition* is: name (string), kind (u32, [`PayloadKind`]: 1 = ELF,
//! 2 = Linux; 0 is never valid so zeroed memory does not decode), section (string),
//! memory (u64, bytes), base (u64, the guest-physical = host-physical address of the memory
//! grant; 0 for a Linux guest, whose memory the firmware manages), devices (u32, [`Devices`]
//! bits; unknown bits are rejected), CPU budget (u64, milliseconds of processor time the
//! hypervisor lets the partition use in all before it stops it with a `cpu-budget`
//! violation; 0 = no budget, always 0 for a Linux guest). A *channel* is: name, client, server (three strings; the
//! ends are partition names; see `policies::hypercall`).
//!
//! Nothing may follow the last field. Versions 1 (no base, no channels) and 2 (no CPU budget)
//! are not read: a decoder rejects a version it does not know instead of ignoring what it
//! cannot enforce.
//!
//! Decoding untrusted bytes returns a [`PolicyError`] and never panics. Decoding checks the
//! *format*; [`LaunchPolicy::validate`] checks the *rules* (memory sizes, names, section
//! names); the builder calls it before encoding and the stub after decoding.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::reader::Reader;
use crate::record::Token;
use crate::sections;

/// `b"VMSEALPL"`, the first eight bytes of every encoded policy.
pub const MAGIC: [u8; 8] = *b"VMSEALPL";
/// The encoding version this module writes and reads.
pub const VERSION: u32 = 3;
/// Longest string field accepted by the decoder, in bytes.
pub const MAX_STRING_LEN: u32 = 4096;
/// At most this many services (one PE section each, see [`sections::MAX_SERVICES`]).
pub const MAX_SERVICES: usize = sections::MAX_SERVICES;
/// Smallest memory grant of a partition: 4 MiB.
pub const MIN_MEMORY: u64 = 4 << 20;
/// Largest memory grant of a partition: 64 GiB.
pub const MAX_MEMORY: u64 = 64 << 30;
/// Memory grants are whole 4 KiB pages (the nested page size).
pub const PAGE_SIZE: u64 = 4096;
/// ELF partitions live below 4 GiB (the hypervisor's identity page tables for a partition
/// cover guest-physical 0 ..= 4 GiB).
pub const ELF_MEMORY_LIMIT: u64 = 4 << 30;
/// At most this many channels.
pub const MAX_CHANNELS: usize = 16;

/// What a partition runs. vmseal's own encoding (u32 on disk), so a closed enum: the decoder
/// rejects values it does not know with [`PolicyError::UnknownKind`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum PayloadKind {
    /// An ELF64 x86_64 executable (`.guest` or `.svcN`). Encoded as 1.
    Elf,
    /// An EFI-stub Linux kernel (`.linux`). Encoded as 2.
    Linux,
}

impl PayloadKind {
    /// The on-disk value.
    pub const fn to_u32(self) -> u32 {
        match self {
            Self::Elf => 1,
            Self::Linux => 2,
        }
    }

    /// The kind for an on-disk value, `None` if unknown.
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Elf),
            2 => Some(Self::Linux),
            _ => None,
        }
    }
}

/// Whether the guest's console reaches the serial port. Encoded as u32 0 (off) / 1 (on).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Console {
    /// The guest's console output is dropped.
    Off,
    /// The guest's console output reaches COM1.
    On,
}

impl Console {
    /// The on-disk value.
    pub const fn to_u32(self) -> u32 {
        match self {
            Self::Off => 0,
            Self::On => 1,
        }
    }

    /// The console policy for an on-disk value, `None` if unknown.
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Off),
            1 => Some(Self::On),
            _ => None,
        }
    }
}

/// Device capabilities granted to a partition: a bit set (u32 on disk).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub struct Devices(pub u32);

impl Devices {
    /// No devices.
    pub const NONE: Self = Self(0);
    /// The TPM (TIS MMIO at 0xFED4_0000).
    pub const TPM: Self = Self(1);
    /// The serial port.
    pub const SERIAL: Self = Self(2);
    /// Every bit this version knows.
    pub const KNOWN: Self = Self(Self::TPM.0 | Self::SERIAL.0);

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Bits set that this version does not know.
    pub const fn unknown_bits(self) -> u32 {
        self.0 & !Self::KNOWN.0
    }
}

impl core::ops::BitOr for Devices {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// One partition: the guest or a root-partition service.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Partition {
    /// The manifest's name (the image name for the guest, the service name for a service).
    pub name: String,
    /// What it runs.
    pub kind: PayloadKind,
    /// The PE section holding its payload: `.guest`, `.linux`, `.svc0`, …
    pub section: String,
    /// Memory grant in bytes.
    pub memory: u64,
    /// Base address of the memory grant (guest-physical = host-physical, page aligned); 0 for
    /// a Linux guest.
    pub base: u64,
    /// Device capabilities.
    pub devices: Devices,
    /// Milliseconds of processor time the partition may use in all (0: no budget).
    pub cpu_budget_ms: u64,
}

/// A hypercall channel between two partitions (`policies::hypercall`).
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Channel {
    /// The name partitions look it up by (`CHANNEL_FIND`), unique in the policy.
    pub name: String,
    /// The partition that sends requests.
    pub client: String,
    /// The service partition that answers them.
    pub server: String,
}

/// The sealed launch policy (the `.vmseal` section).
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct LaunchPolicy {
    /// The image name.
    pub name: String,
    /// The image version (free text without whitespace).
    pub version: String,
    /// The guest partition.
    pub guest: Partition,
    /// Root-partition services, `.svc0` first.
    pub services: Vec<Partition>,
    /// Console policy of the guest.
    pub console: Console,
    /// Hypercall channels.
    pub channels: Vec<Channel>,
}

/// Why bytes are not a version-1 launch policy. Offsets are from the start of the input.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PolicyError {
    /// The input ends inside a field.
    Truncated {
        /// Offset of the field.
        offset: usize,
        /// What was being read.
        field: &'static str,
    },
    /// The first eight bytes are not [`MAGIC`].
    BadMagic([u8; 8]),
    /// A version this decoder does not read.
    UnsupportedVersion(u32),
    /// A string length over [`MAX_STRING_LEN`].
    StringTooLong {
        /// Offset of the length field.
        offset: usize,
        /// The length found.
        len: u32,
    },
    /// A string that is not UTF-8.
    NotUtf8 {
        /// Offset of the string bytes.
        offset: usize,
    },
    /// A payload kind that is not 1 or 2.
    UnknownKind {
        /// Offset of the field.
        offset: usize,
        /// The value found.
        value: u32,
    },
    /// Device bits this version does not know.
    UnknownDevices {
        /// Offset of the field.
        offset: usize,
        /// The full bit set found.
        bits: u32,
    },
    /// A console value that is not 0 or 1.
    UnknownConsole {
        /// Offset of the field.
        offset: usize,
        /// The value found.
        value: u32,
    },
    /// More than [`MAX_SERVICES`] services.
    TooManyServices {
        /// Offset of the count.
        offset: usize,
        /// The count found.
        count: u32,
    },
    /// More than [`MAX_CHANNELS`] channels.
    TooManyChannels {
        /// Offset of the count.
        offset: usize,
        /// The count found.
        count: u32,
    },
    /// Bytes after the last field.
    TrailingBytes {
        /// Offset of the first extra byte.
        offset: usize,
        /// How many extra bytes.
        count: usize,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { offset, field } => {
                write!(f, "launch policy ends inside {field} at offset {offset}")
            }
            Self::BadMagic(m) => {
                write!(f, "launch policy magic is {m:02x?}, expected \"VMSEALPL\"")
            }
            Self::UnsupportedVersion(v) => write!(
                f,
                "launch policy version {v} is not supported (this build reads version {VERSION}); rebuild the image with a matching vmseal"
            ),
            Self::StringTooLong { offset, len } => write!(
                f,
                "launch policy string at offset {offset} is {len} bytes, more than {MAX_STRING_LEN}"
            ),
            Self::NotUtf8 { offset } => {
                write!(f, "launch policy string at offset {offset} is not UTF-8")
            }
            Self::UnknownKind { offset, value } => write!(
                f,
                "launch policy payload kind {value} at offset {offset} is unknown (1 = elf, 2 = linux)"
            ),
            Self::UnknownDevices { offset, bits } => write!(
                f,
                "launch policy device bits {bits:#x} at offset {offset} include unknown bits {:#x}",
                Devices(*bits).unknown_bits()
            ),
            Self::UnknownConsole { offset, value } => write!(
                f,
                "launch policy console value {value} at offset {offset} is unknown (0 = off, 1 = on)"
            ),
            Self::TooManyServices { offset, count } => write!(
                f,
                "launch policy lists {count} services at offset {offset}, more than {MAX_SERVICES}"
            ),
            Self::TooManyChannels { offset, count } => write!(
                f,
                "launch policy lists {count} channels at offset {offset}, more than {MAX_CHANNELS}"
            ),
            Self::TrailingBytes { offset, count } => write!(
                f,
                "launch policy has {count} unexpected bytes after its end at offset {offset}"
            ),
        }
    }
}

impl core::error::Error for PolicyError {}

/// Which partition a validation error is about.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Which {
    /// The policy itself (image name / version).
    Image,
    /// The guest partition.
    Guest,
    /// Service number `n` (section `.svc<n>`).
    Service(usize),
}

impl fmt::Display for Which {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Image => f.write_str("image"),
            Self::Guest => f.write_str("guest"),
            Self::Service(i) => write!(f, "service {i}"),
        }
    }
}

/// Why a decoded (or about-to-be-encoded) policy breaks vmseal's rules.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum InvalidPolicy {
    /// A name or version string is empty.
    EmptyName(Which),
    /// A string is longer than [`MAX_STRING_LEN`] (it could not be decoded again).
    StringTooLong(Which, usize),
    /// An ELF partition's name is longer than
    /// [`crate::hypercall::MAX_PARTITION_NAME`] (the hypervisor stamps every message with the
    /// sender's name).
    NameTooLong(Which, usize),
    /// A Linux guest with a CPU budget (only the hypervisor, which runs ELF partitions, can
    /// enforce one).
    LinuxCpuBudget(u64),
    /// Memory not a multiple of [`PAGE_SIZE`].
    MemoryNotPageAligned(Which, u64),
    /// Memory outside [`MIN_MEMORY`]`..=`[`MAX_MEMORY`].
    MemoryOutOfRange(Which, u64),
    /// More than [`MAX_SERVICES`] services.
    TooManyServices(usize),
    /// Two services share a name.
    DuplicateService(String),
    /// A partition's section does not match its kind / position.
    WrongSection {
        /// The partition.
        which: Which,
        /// The section named in the policy.
        found: String,
        /// The section it must be.
        expected: String,
    },
    /// A service that is not an ELF.
    ServiceNotElf(usize),
    /// Device bits this version does not know.
    UnknownDevices(Which, u32),
    /// The guest partition is granted devices (it never is: devices belong to services).
    GuestDevices(u32),
    /// An ELF partition's base is 0, not page aligned, or its grant ends above
    /// [`ELF_MEMORY_LIMIT`]; or a Linux guest's base is not 0.
    BadBase(Which, u64),
    /// Two partitions' memory grants overlap.
    Overlap(Which, Which),
    /// A service has the guest's name (channel ends are named by partition).
    NameClash(String),
    /// More than [`MAX_CHANNELS`] channels.
    TooManyChannels(usize),
    /// A channel name is empty, too long or used twice.
    BadChannelName(String),
    /// A channel end names no partition, both ends are the same, or the server is not a
    /// service.
    BadChannelEnd {
        /// The channel.
        channel: String,
        /// The offending end.
        end: String,
    },
}

impl fmt::Display for InvalidPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyName(w) => write!(f, "{w}: name is empty"),
            Self::StringTooLong(w, n) => {
                write!(f, "{w}: a string is {n} bytes, more than {MAX_STRING_LEN}")
            }
            Self::NameTooLong(w, n) => write!(
                f,
                "{w}: the name is {n} bytes; an ELF partition's name is at most {} bytes",
                crate::hypercall::MAX_PARTITION_NAME
            ),
            Self::LinuxCpuBudget(ms) => write!(
                f,
                "guest: a CPU budget of {ms} ms for a Linux guest; only ELF partitions have one"
            ),
            Self::MemoryNotPageAligned(w, m) => {
                write!(f, "{w}: memory {m:#x} is not a multiple of 4 KiB")
            }
            Self::MemoryOutOfRange(w, m) => {
                write!(f, "{w}: memory {m:#x} is outside 4 MiB ..= 64 GiB")
            }
            Self::TooManyServices(n) => write!(f, "{n} services, at most {MAX_SERVICES} allowed"),
            Self::DuplicateService(n) => write!(f, "two services are named {n:?}"),
            Self::WrongSection { which, found, expected } => {
                write!(f, "{which}: section is {found:?}, expected {expected:?}")
            }
            Self::ServiceNotElf(i) => write!(f, "service {i}: must be an ELF payload"),
            Self::UnknownDevices(w, b) => write!(f, "{w}: unknown device bits {b:#x}"),
            Self::GuestDevices(b) => {
                write!(f, "guest: devices {b:#x} granted; only services may have devices")
            }
            Self::BadBase(w, b) => write!(
                f,
                "{w}: memory base {b:#x} must be a non-zero multiple of 4 KiB with the grant below 4 GiB (0 for a Linux guest)"
            ),
            Self::Overlap(a, b) => write!(f, "{a} and {b}: memory grants overlap"),
            Self::NameClash(n) => write!(f, "a service is named {n:?} like the guest"),
            Self::TooManyChannels(n) => write!(f, "{n} channels, at most {MAX_CHANNELS} allowed"),
            Self::BadChannelName(n) => write!(
                f,
                "channel name {n:?} is empty, longer than {} bytes or not unique",
                crate::hypercall::MAX_CHANNEL_NAME
            ),
            Self::BadChannelEnd { channel, end } => write!(
                f,
                "channel {channel:?}: end {end:?} is not a partition, is both ends, or (as server) not a service"
            ),
        }
    }
}

impl core::error::Error for InvalidPolicy {}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Lengths over u32::MAX cannot be produced by a valid policy; saturate so encode never
    // panics (validate rejects such strings, and decode would reject the result).
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Partition {
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_str(out, &self.name);
        out.extend_from_slice(&self.kind.to_u32().to_le_bytes());
        put_str(out, &self.section);
        out.extend_from_slice(&self.memory.to_le_bytes());
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&self.devices.0.to_le_bytes());
        out.extend_from_slice(&self.cpu_budget_ms.to_le_bytes());
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, PolicyError> {
        let name = read_str(r, "partition name")?;
        let offset = r.offset();
        let kind = r.u32().ok_or(PolicyError::Truncated { offset, field: "payload kind" })?;
        let kind =
            PayloadKind::from_u32(kind).ok_or(PolicyError::UnknownKind { offset, value: kind })?;
        let section = read_str(r, "section name")?;
        let offset = r.offset();
        let memory = r.u64().ok_or(PolicyError::Truncated { offset, field: "memory" })?;
        let offset = r.offset();
        let base = r.u64().ok_or(PolicyError::Truncated { offset, field: "base" })?;
        let offset = r.offset();
        let bits = r.u32().ok_or(PolicyError::Truncated { offset, field: "devices" })?;
        if Devices(bits).unknown_bits() != 0 {
            return Err(PolicyError::UnknownDevices { offset, bits });
        }
        let offset = r.offset();
        let cpu_budget_ms =
            r.u64().ok_or(PolicyError::Truncated { offset, field: "cpu budget" })?;
        Ok(Self { name, kind, section, memory, base, devices: Devices(bits), cpu_budget_ms })
    }

    fn validate(&self, which: Which) -> Result<(), InvalidPolicy> {
        if self.name.is_empty() {
            return Err(InvalidPolicy::EmptyName(which));
        }
        for s in [&self.name, &self.section] {
            if s.len() > MAX_STRING_LEN as usize {
                return Err(InvalidPolicy::StringTooLong(which, s.len()));
            }
        }
        if self.kind == PayloadKind::Elf && self.name.len() > crate::hypercall::MAX_PARTITION_NAME {
            return Err(InvalidPolicy::NameTooLong(which, self.name.len()));
        }
        if self.kind == PayloadKind::Linux && self.cpu_budget_ms != 0 {
            return Err(InvalidPolicy::LinuxCpuBudget(self.cpu_budget_ms));
        }
        if !self.memory.is_multiple_of(PAGE_SIZE) {
            return Err(InvalidPolicy::MemoryNotPageAligned(which, self.memory));
        }
        if !(MIN_MEMORY..=MAX_MEMORY).contains(&self.memory) {
            return Err(InvalidPolicy::MemoryOutOfRange(which, self.memory));
        }
        if self.devices.unknown_bits() != 0 {
            return Err(InvalidPolicy::UnknownDevices(which, self.devices.0));
        }
        let base_ok = match self.kind {
            PayloadKind::Linux => self.base == 0,
            PayloadKind::Elf => {
                self.base != 0
                    && self.base.is_multiple_of(PAGE_SIZE)
                    && self.base.checked_add(self.memory).is_some_and(|e| e <= ELF_MEMORY_LIMIT)
            }
        };
        if !base_ok {
            return Err(InvalidPolicy::BadBase(which, self.base));
        }
        Ok(())
    }

    /// The grant as a half-open range, for ELF partitions.
    fn grant(&self) -> Option<core::ops::Range<u64>> {
        (self.kind == PayloadKind::Elf).then(|| self.base..self.base.saturating_add(self.memory))
    }
}

impl Channel {
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_str(out, &self.name);
        put_str(out, &self.client);
        put_str(out, &self.server);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, PolicyError> {
        Ok(Self {
            name: read_str(r, "channel name")?,
            client: read_str(r, "channel client")?,
            server: read_str(r, "channel server")?,
        })
    }
}

fn read_str(r: &mut Reader<'_>, field: &'static str) -> Result<String, PolicyError> {
    let offset = r.offset();
    let len = r.u32().ok_or(PolicyError::Truncated { offset, field })?;
    if len > MAX_STRING_LEN {
        return Err(PolicyError::StringTooLong { offset, len });
    }
    let at = r.offset();
    let bytes = r.bytes(len as usize).ok_or(PolicyError::Truncated { offset: at, field })?;
    let s = core::str::from_utf8(bytes).map_err(|_| PolicyError::NotUtf8 { offset: at })?;
    Ok(s.into())
}

impl LaunchPolicy {
    /// The canonical version-1 encoding (the exact bytes of the `.vmseal` section).
    ///
    /// Call [`LaunchPolicy::validate`] first: an invalid policy still encodes, but may not
    /// decode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        put_str(&mut out, &self.name);
        put_str(&mut out, &self.version);
        self.guest.encode_into(&mut out);
        let count = u32::try_from(self.services.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for s in &self.services {
            s.encode_into(&mut out);
        }
        out.extend_from_slice(&self.console.to_u32().to_le_bytes());
        let count = u32::try_from(self.channels.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for c in &self.channels {
            c.encode_into(&mut out);
        }
        out
    }

    /// Decode a version-1 policy. Rejects bad magic, other versions, over-long or non-UTF-8
    /// strings, unknown kinds / devices / console values, too many services and trailing
    /// bytes. Never panics. Does not apply [`LaunchPolicy::validate`].
    pub fn decode(bytes: &[u8]) -> Result<Self, PolicyError> {
        let mut r = Reader::new(bytes);
        let magic: [u8; 8] =
            r.array().ok_or(PolicyError::Truncated { offset: 0, field: "magic" })?;
        if magic != MAGIC {
            return Err(PolicyError::BadMagic(magic));
        }
        let version = r.u32().ok_or(PolicyError::Truncated { offset: 8, field: "version" })?;
        if version != VERSION {
            return Err(PolicyError::UnsupportedVersion(version));
        }
        let name = read_str(&mut r, "image name")?;
        let version = read_str(&mut r, "image version")?;
        let guest = Partition::decode_from(&mut r)?;
        let offset = r.offset();
        let count = r.u32().ok_or(PolicyError::Truncated { offset, field: "service count" })?;
        if count as usize > MAX_SERVICES {
            return Err(PolicyError::TooManyServices { offset, count });
        }
        let mut services = Vec::new();
        for _ in 0..count {
            services.push(Partition::decode_from(&mut r)?);
        }
        let offset = r.offset();
        let value = r.u32().ok_or(PolicyError::Truncated { offset, field: "console" })?;
        let console =
            Console::from_u32(value).ok_or(PolicyError::UnknownConsole { offset, value })?;
        let offset = r.offset();
        let count = r.u32().ok_or(PolicyError::Truncated { offset, field: "channel count" })?;
        if count as usize > MAX_CHANNELS {
            return Err(PolicyError::TooManyChannels { offset, count });
        }
        let mut channels = Vec::new();
        for _ in 0..count {
            channels.push(Channel::decode_from(&mut r)?);
        }
        if r.remaining() != 0 {
            return Err(PolicyError::TrailingBytes { offset: r.offset(), count: r.remaining() });
        }
        Ok(Self { name, version, guest, services, console, channels })
    }

    /// Check vmseal's rules: non-empty names and version; every memory grant a multiple of
    /// 4 KiB within 4 MiB ..= 64 GiB; the guest's section is `.guest` for an ELF and `.linux`
    /// for Linux; at most [`MAX_SERVICES`] services, each an ELF in section `.svc<index>`, with
    /// unique names different from the guest's; no unknown device bits and no devices for the
    /// guest; ELF grants at a non-zero page-aligned base, below [`ELF_MEMORY_LIMIT`], pairwise
    /// disjoint; at most [`MAX_CHANNELS`] channels with unique names of 1 ..=
    /// `MAX_CHANNEL_NAME` bytes, each between two different partitions with a service as
    /// server.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        if self.name.is_empty() || self.version.is_empty() {
            return Err(InvalidPolicy::EmptyName(Which::Image));
        }
        for s in [&self.name, &self.version] {
            if s.len() > MAX_STRING_LEN as usize {
                return Err(InvalidPolicy::StringTooLong(Which::Image, s.len()));
            }
        }
        self.guest.validate(Which::Guest)?;
        let expected = match self.guest.kind {
            PayloadKind::Elf => sections::GUEST,
            PayloadKind::Linux => sections::LINUX,
        };
        if self.guest.section != expected {
            return Err(InvalidPolicy::WrongSection {
                which: Which::Guest,
                found: self.guest.section.clone(),
                expected: expected.into(),
            });
        }
        if self.services.len() > MAX_SERVICES {
            return Err(InvalidPolicy::TooManyServices(self.services.len()));
        }
        for (i, s) in self.services.iter().enumerate() {
            s.validate(Which::Service(i))?;
            if s.kind != PayloadKind::Elf {
                return Err(InvalidPolicy::ServiceNotElf(i));
            }
            if sections::service_index(&s.section) != Some(i) {
                // `.svc<i>` without `format!`: the stub runs this check and links no
                // `core::fmt` (its size, issue 17); writing to a `String` cannot fail.
                let mut expected = String::from(sections::SERVICE_PREFIX);
                let _ = i.write_token(&mut expected);
                return Err(InvalidPolicy::WrongSection {
                    which: Which::Service(i),
                    found: s.section.clone(),
                    expected,
                });
            }
            if self.services.iter().take(i).any(|o| o.name == s.name) {
                return Err(InvalidPolicy::DuplicateService(s.name.clone()));
            }
            if s.name == self.guest.name {
                return Err(InvalidPolicy::NameClash(s.name.clone()));
            }
        }
        if self.guest.devices != Devices::NONE {
            return Err(InvalidPolicy::GuestDevices(self.guest.devices.0));
        }
        let parts = core::iter::once((Which::Guest, &self.guest))
            .chain(self.services.iter().enumerate().map(|(i, s)| (Which::Service(i), s)));
        for (i, (wa, a)) in parts.clone().enumerate() {
            for (wb, b) in parts.clone().skip(i + 1) {
                if let (Some(x), Some(y)) = (a.grant(), b.grant())
                    && x.start < y.end
                    && y.start < x.end
                {
                    return Err(InvalidPolicy::Overlap(wa, wb));
                }
            }
        }
        if self.channels.len() > MAX_CHANNELS {
            return Err(InvalidPolicy::TooManyChannels(self.channels.len()));
        }
        let max_name = crate::hypercall::MAX_CHANNEL_NAME as usize;
        for (i, c) in self.channels.iter().enumerate() {
            if c.name.is_empty()
                || c.name.len() > max_name
                || self.channels.iter().take(i).any(|o| o.name == c.name)
            {
                return Err(InvalidPolicy::BadChannelName(c.name.clone()));
            }
            let bad_end = |end: &String| InvalidPolicy::BadChannelEnd {
                channel: c.name.clone(),
                end: end.clone(),
            };
            let is_service = |n: &String| self.services.iter().any(|s| &s.name == n);
            if !(is_service(&c.client) || c.client == self.guest.name) || c.client == c.server {
                return Err(bad_end(&c.client));
            }
            if !is_service(&c.server) {
                return Err(bad_end(&c.server));
            }
        }
        Ok(())
    }

    /// The channel ids (indices) of which `partition` is an end.
    pub fn channels_of<'a>(&'a self, partition: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.channels
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.client == partition || c.server == partition)
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> LaunchPolicy {
        LaunchPolicy {
            name: "hello".into(),
            version: "0.1.0".into(),
            guest: Partition {
                name: "hello".into(),
                kind: PayloadKind::Elf,
                section: ".guest".into(),
                memory: 64 << 20,
                base: 0x400_0000,
                devices: Devices::NONE,
                cpu_budget_ms: 0,
            },
            services: vec![Partition {
                name: "attest".into(),
                kind: PayloadKind::Elf,
                section: ".svc0".into(),
                memory: 8 << 20,
                base: 0x800_0000,
                devices: Devices::TPM | Devices::SERIAL,
                cpu_budget_ms: 1500,
            }],
            console: Console::On,
            channels: vec![Channel {
                name: "attest".into(),
                client: "hello".into(),
                server: "attest".into(),
            }],
        }
    }

    #[test]
    fn byte_layout() {
        #[rustfmt::skip]
        let expected: &[u8] = &[
            b'V', b'M', b'S', b'E', b'A', b'L', b'P', b'L', // magic
            3, 0, 0, 0,                                     // version 3
            5, 0, 0, 0, b'h', b'e', b'l', b'l', b'o',       // name "hello"
            5, 0, 0, 0, b'0', b'.', b'1', b'.', b'0',       // version "0.1.0"
            // guest partition
            5, 0, 0, 0, b'h', b'e', b'l', b'l', b'o',       //   name
            1, 0, 0, 0,                                     //   kind = elf
            6, 0, 0, 0, b'.', b'g', b'u', b'e', b's', b't', //   section ".guest"
            0, 0, 0, 4, 0, 0, 0, 0,                         //   memory 64 MiB
            0, 0, 0, 4, 0, 0, 0, 0,                         //   base 0x400_0000
            0, 0, 0, 0,                                     //   devices none
            0, 0, 0, 0, 0, 0, 0, 0,                         //   no cpu budget
            1, 0, 0, 0,                                     // one service
            6, 0, 0, 0, b'a', b't', b't', b'e', b's', b't', //   name "attest"
            1, 0, 0, 0,                                     //   kind = elf
            5, 0, 0, 0, b'.', b's', b'v', b'c', b'0',       //   section ".svc0"
            0, 0, 0x80, 0, 0, 0, 0, 0,                      //   memory 8 MiB
            0, 0, 0, 8, 0, 0, 0, 0,                         //   base 0x800_0000
            3, 0, 0, 0,                                     //   devices tpm|serial
            0xDC, 0x05, 0, 0, 0, 0, 0, 0,                   //   cpu budget 1500 ms
            1, 0, 0, 0,                                     // console on
            1, 0, 0, 0,                                     // one channel
            6, 0, 0, 0, b'a', b't', b't', b'e', b's', b't', //   name "attest"
            5, 0, 0, 0, b'h', b'e', b'l', b'l', b'o',       //   client "hello"
            6, 0, 0, 0, b'a', b't', b't', b'e', b's', b't', //   server "attest"
        ];
        assert_eq!(sample().encode(), expected);
        assert_eq!(LaunchPolicy::decode(expected), Ok(sample()));
    }

    #[test]
    fn round_trips() {
        let mut p = sample();
        assert_eq!(LaunchPolicy::decode(&p.encode()), Ok(p.clone()));
        p.services.clear();
        p.channels.clear();
        p.console = Console::Off;
        p.guest.kind = PayloadKind::Linux;
        p.guest.section = ".linux".into();
        p.guest.base = 0;
        p.name = "ünïcode".into();
        let bytes = p.encode();
        assert_eq!(LaunchPolicy::decode(&bytes), Ok(p.clone()));
        assert_eq!(LaunchPolicy::decode(&bytes).map(|d| d.encode()), Ok(bytes));
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_input() {
        let good = sample().encode();
        let mut b = good.clone();
        b.push(0);
        assert_eq!(
            LaunchPolicy::decode(&b),
            Err(PolicyError::TrailingBytes { offset: good.len(), count: 1 })
        );
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(LaunchPolicy::decode(&b), Err(PolicyError::BadMagic(_))));
        let mut b = good.clone();
        b[8] = 1;
        assert_eq!(LaunchPolicy::decode(&b), Err(PolicyError::UnsupportedVersion(1)));
        let mut b = good.clone();
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            LaunchPolicy::decode(&b),
            Err(PolicyError::StringTooLong { offset: 12, len: u32::MAX })
        );
        let mut b = good.clone();
        b[16] = 0xFF;
        assert_eq!(LaunchPolicy::decode(&b), Err(PolicyError::NotUtf8 { offset: 16 }));
        let mut b = good.clone();
        b[39] = 0;
        assert_eq!(
            LaunchPolicy::decode(&b),
            Err(PolicyError::UnknownKind { offset: 39, value: 0 })
        );
        let mut b = good.clone();
        b[69] = 4;
        assert_eq!(
            LaunchPolicy::decode(&b),
            Err(PolicyError::UnknownDevices { offset: 69, bits: 4 })
        );
        // the guest's 8-byte CPU budget (73..81) precedes the service count
        let mut b = good.clone();
        b[81..85].copy_from_slice(&1001u32.to_le_bytes());
        assert_eq!(
            LaunchPolicy::decode(&b),
            Err(PolicyError::TooManyServices { offset: 81, count: 1001 })
        );
        // console is followed by the channel count and one 29-byte channel
        let console = good.len() - 4 - 4 - 29;
        let mut b = good.clone();
        b[console] = 2;
        assert_eq!(
            LaunchPolicy::decode(&b),
            Err(PolicyError::UnknownConsole { offset: console, value: 2 })
        );
        let mut b = good.clone();
        b[console + 4] = 17;
        assert_eq!(
            LaunchPolicy::decode(&b),
            Err(PolicyError::TooManyChannels { offset: console + 4, count: 17 })
        );
        for len in 0..good.len() {
            assert!(
                matches!(LaunchPolicy::decode(&good[..len]), Err(PolicyError::Truncated { .. })),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn validation_rules() {
        assert_eq!(sample().validate(), Ok(()));
        let mut p = sample();
        p.guest.memory = (64 << 20) + 1;
        assert_eq!(
            p.validate(),
            Err(InvalidPolicy::MemoryNotPageAligned(Which::Guest, p.guest.memory))
        );
        p.guest.memory = 2 << 20;
        assert_eq!(p.validate(), Err(InvalidPolicy::MemoryOutOfRange(Which::Guest, 2 << 20)));
        p.guest.memory = 128 << 30;
        assert!(p.validate().is_err());
        p.guest.memory = MAX_MEMORY;
        assert_eq!(p.validate(), Err(InvalidPolicy::BadBase(Which::Guest, 0x400_0000)));
        p.guest.memory = ELF_MEMORY_LIMIT - 0x400_0000 - (8 << 20);
        p.services[0].base = ELF_MEMORY_LIMIT - (8 << 20);
        assert_eq!(p.validate(), Ok(()));
        p.services[0].base = 0x800_0000;
        p.guest.memory = MIN_MEMORY;
        assert_eq!(p.validate(), Ok(()));
        let mut p = sample();
        p.name.clear();
        assert_eq!(p.validate(), Err(InvalidPolicy::EmptyName(Which::Image)));
        let mut p = sample();
        p.services.clear();
        p.channels.clear();
        (p.guest.kind, p.guest.section, p.guest.base) = (PayloadKind::Linux, ".linux".into(), 0);
        assert_eq!(p.validate(), Ok(()));
        p.guest.cpu_budget_ms = 10;
        assert_eq!(p.validate(), Err(InvalidPolicy::LinuxCpuBudget(10)));
        let mut p = sample();
        p.services[0].name.clear();
        assert_eq!(p.validate(), Err(InvalidPolicy::EmptyName(Which::Service(0))));
        // ELF partition names fit the hypervisor's sender stamp.
        let mut p = sample();
        p.services[0].name = "s".repeat(crate::hypercall::MAX_PARTITION_NAME + 1);
        p.channels[0].server = p.services[0].name.clone();
        assert_eq!(p.validate(), Err(InvalidPolicy::NameTooLong(Which::Service(0), 65)));
        p.services[0].name.pop();
        p.channels[0].server.pop();
        assert_eq!(p.validate(), Ok(()));
        let mut p = sample();
        let mut dup = p.services[0].clone();
        dup.section = ".svc1".into();
        dup.base = 0x900_0000;
        p.services.push(dup);
        assert_eq!(p.validate(), Err(InvalidPolicy::DuplicateService("attest".into())));
        p.services[1].name = "other".into();
        assert_eq!(p.validate(), Ok(()));
        p.services[1].section = ".svc2".into();
        assert_eq!(
            p.validate(),
            Err(InvalidPolicy::WrongSection {
                which: Which::Service(1),
                found: ".svc2".into(),
                expected: ".svc1".into(),
            })
        );
        let mut p = sample();
        p.guest.section = ".linux".into();
        assert!(matches!(p.validate(), Err(InvalidPolicy::WrongSection { .. })));
        let mut p = sample();
        let svc = Partition { memory: MIN_MEMORY, ..p.services[0].clone() };
        p.guest.memory = MIN_MEMORY;
        p.services = (0..=MAX_SERVICES)
            .map(|i| Partition {
                name: alloc::format!("s{i}"),
                section: alloc::format!(".svc{i}"),
                base: (72 << 20) + i as u64 * MIN_MEMORY,
                ..svc.clone()
            })
            .collect();
        assert_eq!(p.validate(), Err(InvalidPolicy::TooManyServices(MAX_SERVICES + 1)));
        p.services.pop();
        p.channels[0].server = "s0".into();
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(LaunchPolicy::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn isolation_rules() {
        let mut p = sample();
        p.guest.devices = Devices::TPM;
        assert_eq!(p.validate(), Err(InvalidPolicy::GuestDevices(1)));
        let mut p = sample();
        p.services[0].base = 0x400_0000 + (32 << 20);
        assert_eq!(p.validate(), Err(InvalidPolicy::Overlap(Which::Guest, Which::Service(0))));
        p.services[0].base = 0x400_0000 + (64 << 20);
        assert_eq!(p.validate(), Ok(()));
        for base in [0, 0x123, (4 << 30) - (4 << 20)] {
            p.services[0].base = base;
            assert!(matches!(p.validate(), Err(InvalidPolicy::BadBase(..))), "{base:#x}");
        }
        let mut p = sample();
        p.services[0].name = "hello".into();
        assert_eq!(p.validate(), Err(InvalidPolicy::NameClash("hello".into())));
        let mut p = sample();
        p.channels[0].server = "hello".into();
        assert!(matches!(p.validate(), Err(InvalidPolicy::BadChannelEnd { .. })));
        let mut p = sample();
        p.channels[0].client = "nobody".into();
        assert!(matches!(p.validate(), Err(InvalidPolicy::BadChannelEnd { .. })));
        let mut p = sample();
        p.channels.push(p.channels[0].clone());
        assert!(matches!(p.validate(), Err(InvalidPolicy::BadChannelName(_))));
        let p = sample();
        assert_eq!(p.channels_of("hello").collect::<Vec<_>>(), [0]);
        assert_eq!(p.channels_of("attest").collect::<Vec<_>>(), [0]);
        assert_eq!(p.channels_of("other").count(), 0);
        let mut p = sample();
        p.guest.kind = PayloadKind::Linux;
        p.guest.section = ".linux".into();
        assert!(matches!(p.validate(), Err(InvalidPolicy::BadBase(Which::Guest, _))));
        p.guest.base = 0;
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = LaunchPolicy::decode(b"VMSEALPL\x01\0\0\0").unwrap_err();
        assert!(alloc::format!("{e}").contains("version 1"));
    }
}
