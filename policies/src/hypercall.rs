//! The hypercall ABI between a partition and the stub-hypervisor (version [`ABI_VERSION`]).
//!
//! Defined once here and used by the stub (which validates and serves the calls), the guest
//! SDK (`images/sdk`, which makes them) and the host tests (which check what the record says).
//!
//! # Calling convention
//!
//! A partition executes `VMMCALL` (`0F 01 D9`) with
//!
//! | register | meaning |
//! | --- | --- |
//! | `RAX` | call number ([`Call`]) |
//! | `RDI`, `RSI`, `RDX`, `R10`, `R8` | arguments 1–5 (unused ones are ignored) |
//!
//! and gets the result in `RAX`: a value below [`ERROR_BASE`] is success, a value at or above
//! it is an [`Error`] (read as `i64`, errors are small negative numbers, like Linux syscalls).
//! Every other register is preserved; `RIP` moves past the 3-byte `VMMCALL`.
//!
//! Pointers are guest-physical addresses in the caller's own memory grant (the partition runs
//! on identity page tables over its grant, so they are also its virtual addresses).
//!
//! # Errors and violations
//!
//! A call that is *well formed* but cannot be served returns an [`Error`] and the partition
//! continues (an undeclared channel, a message that is too big, a full mailbox). A call that is
//! *not* well formed is a [`Violation`]: the partition is stopped and the stub reports it on
//! the record channel (`VMSEAL1 violation partition=… kind=…`); the hypervisor and every other
//! partition keep running. The violations are: an unknown call number
//! ([`Violation::HYPERCALL_UNKNOWN`]), a pointer/length range not entirely inside the caller's
//! grant or overflowing ([`Violation::HYPERCALL_BAD_POINTER`]; for a capacity — `RECV`'s
//! `cap`, `ATTEST`'s `out_cap` — only the part the hypervisor may write must be inside the
//! grant, but `ptr + cap` must not overflow either), and a flood
//! ([`Violation::HYPERCALL_FLOOD`]: more than [`FLOOD_BURST`] calls beyond the refill rate of
//! [`FLOOD_REFILL_PER_MS`] per millisecond, a token bucket per partition).
//!
//! # Channels
//!
//! The launch policy (`policies::launch`) declares channels: a name, a *client* partition
//! and a *server* partition. A partition finds a channel id with [`Call::CHANNEL_FIND`]; only
//! the two ends may use it. Each end has a one-message inbox per channel of at most
//! [`MAX_MESSAGE`] bytes: [`Call::SEND`] copies into the peer's inbox (or returns
//! [`Error::BUSY`] if it is full), [`Call::RECV`] takes from one's own inbox — the message
//! behind a [`Stamp`] the hypervisor writes: who sent it, as the hypervisor saw it, never as
//! the message claims — and *blocks* the
//! partition while it is empty (the hypervisor runs another partition meanwhile). Scheduling is
//! round robin: a partition runs until it blocks, exits, is stopped or the hypervisor's timer
//! ends its time slice.
//!
//! Direction: requests go from the client to the server, replies back. A server may `SEND`
//! only to answer a request it was sent and not yet answered (else [`Error::INVALID`]); a
//! client that `RECV`s with no request outstanding and nothing queued gets
//! [`Error::NO_REPLY`] at once instead of waiting for nothing. When nothing can run, a
//! server waiting for requests is idle, never stopped; a client waiting for a reply gets
//! [`Error::NO_REPLY`] (its server is idle) or [`Error::DEADLOCK`] (clients waiting on each
//! other in a cycle), reported on the record as `VMSEAL1 wait-failed`.
//!
//! # Attestation
//!
//! [`Call::ATTEST`] is served through the caller's channel named [`ATTEST_CHANNEL`]: the
//! hypervisor sends the server an [`crate::attest`] request carrying the caller's nonce *and
//! the caller's partition name as the hypervisor knows it* (the caller cannot claim another
//! identity), blocks the caller until the server replies, and copies the reply (an
//! [`crate::attest`] report) into the caller's buffer.

use core::fmt;

/// The ABI version returned by [`Call::VERSION`] (2: `RECV` delivers a [`Stamp`] before the
/// message; servers answer only requests).
pub const ABI_VERSION: u64 = 2;

/// Largest message on a channel and largest console write, in bytes.
pub const MAX_MESSAGE: u64 = 4096;

/// Largest nonce accepted by [`Call::ATTEST`], in bytes (the TPM's qualifyingData limit for a
/// SHA-256 AK is 64 bytes including the hash; vmseal takes at most 32 from the caller).
pub const MAX_NONCE: u64 = 32;

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_NAME: u64 = 32;

/// The channel [`Call::ATTEST`] goes through.
pub const ATTEST_CHANNEL: &str = "attest";

/// Hypercalls a partition may make in a burst before the refill rate applies.
pub const FLOOD_BURST: u32 = 2048;
/// Hypercall tokens refilled per millisecond (10 000 per second, far above any legitimate use
/// and below what a tight loop reaches even under QEMU TCG, ~50 000 per second).
pub const FLOOD_REFILL_PER_MS: u32 = 10;

/// A hypercall number (`RAX`). A newtype, not an enum: an unknown number must be
/// representable (it is a [`Violation::HYPERCALL_UNKNOWN`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(transparent)]
pub struct Call(pub u64);

impl Call {
    /// `VERSION() -> ABI_VERSION`.
    pub const VERSION: Self = Self(0);
    /// `CONSOLE_WRITE(ptr, len) -> len`: write `len` ≤ [`MAX_MESSAGE`] bytes to the console.
    /// With the launch policy's `console = off` the bytes are dropped (the call still
    /// succeeds: a sealed appliance behaves the same with and without a console).
    pub const CONSOLE_WRITE: Self = Self(1);
    /// `CHANNEL_FIND(name_ptr, name_len) -> id`: the id of a channel the caller is an end of;
    /// [`Error::NO_CHANNEL`] otherwise. `name_len` ≤ [`MAX_CHANNEL_NAME`].
    pub const CHANNEL_FIND: Self = Self(2);
    /// `SEND(id, ptr, len) -> 0`: copy `len` ≤ [`MAX_MESSAGE`] bytes into the peer's inbox.
    /// [`Error::BUSY`] if it holds a message, [`Error::PEER_GONE`] if the peer stopped.
    pub const SEND: Self = Self(3);
    /// `RECV(id, ptr, cap) -> len`: take the message from the caller's inbox, blocking while
    /// it is empty; `ptr` gets the [`Stamp`] ([`STAMP_LEN`] bytes) then the message, `len`
    /// counts both. [`Error::TOO_SMALL`] (message kept) if `cap` is less than that;
    /// [`Error::PEER_GONE`] if empty and the peer stopped; [`Error::NO_REPLY`] for a client
    /// with no request outstanding. The hypervisor uses at most [`MAX_MESSAGE`] +
    /// [`STAMP_LEN`] bytes of `cap`.
    pub const RECV: Self = Self(4);
    /// `ATTEST(nonce_ptr, nonce_len, out_ptr, out_cap) -> len`: an attestation report from
    /// the server of the caller's [`ATTEST_CHANNEL`]; see the module docs.
    pub const ATTEST: Self = Self(5);
    /// `EXIT(status)`: stop the calling partition with `status`. Does not return.
    pub const EXIT: Self = Self(6);

    /// The name used in records and docs, `None` for unknown numbers.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "version",
            1 => "console-write",
            2 => "channel-find",
            3 => "send",
            4 => "recv",
            5 => "attest",
            6 => "exit",
            _ => return None,
        })
    }
}

/// Length of the [`Stamp`] before every message [`Call::RECV`] delivers.
pub const STAMP_LEN: u64 = 72;

/// Longest partition name (it must fit a [`Stamp`] and an attestation request's caller).
pub const MAX_PARTITION_NAME: usize = 64;

/// Who made a message, as the hypervisor saw it ([`Stamp::origin`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(transparent)]
pub struct Origin(pub u8);

impl Origin {
    /// The partition [`Stamp::name`] sent it with [`Call::SEND`].
    pub const SEND: Self = Self(0);
    /// The hypervisor built it for partition [`Stamp::name`]'s [`Call::ATTEST`] (an
    /// attestation request whose caller the hypervisor filled in).
    pub const ATTEST: Self = Self(1);
    /// The hypervisor's own request (the health check after the guest ended); the name is
    /// `hypervisor`.
    pub const HYPERVISOR: Self = Self(2);
}

/// The sender stamp: [`STAMP_LEN`] bytes the hypervisor writes before every message a
/// partition receives with [`Call::RECV`]. Filled in from the launch policy — a partition
/// cannot choose what it says. Layout (vmseal's own):
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 1 | origin ([`Origin`]) |
/// | 1 | 1 | name length, 1 ..= [`MAX_PARTITION_NAME`] |
/// | 2 | 6 | zero |
/// | 8 | 64 | the sender's partition name (as the policy names it), zero-padded |
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamp<'a> {
    /// How the message was made.
    pub origin: Origin,
    /// The sending partition's name (`hypervisor` for [`Origin::HYPERVISOR`]).
    pub name: &'a [u8],
}

/// Offset of the name in a [`Stamp`].
const STAMP_NAME: usize = 8;

impl<'a> Stamp<'a> {
    /// The stamp's bytes; `None` if the name is empty or longer than [`MAX_PARTITION_NAME`].
    pub fn encode(&self) -> Option<[u8; STAMP_LEN as usize]> {
        let mut out = [0u8; STAMP_LEN as usize];
        let len = u8::try_from(self.name.len()).ok()?;
        if self.name.is_empty() || self.name.len() > MAX_PARTITION_NAME {
            return None;
        }
        out[0] = self.origin.0;
        out[1] = len;
        out.get_mut(STAMP_NAME..STAMP_NAME + self.name.len())?.copy_from_slice(self.name);
        Some(out)
    }

    /// Split what `RECV` delivered into the stamp and the message; `None` if it is shorter
    /// than a stamp or the stamp is malformed (a bad length, non-zero padding).
    pub fn split(received: &'a [u8]) -> Option<(Self, &'a [u8])> {
        let (stamp, message) = received.split_at_checked(STAMP_LEN as usize)?;
        let len = usize::from(*stamp.get(1)?);
        if len == 0 || len > MAX_PARTITION_NAME {
            return None;
        }
        let name = stamp.get(STAMP_NAME..STAMP_NAME + len)?;
        let padding_zero = stamp.get(2..STAMP_NAME)?.iter().all(|&b| b == 0)
            && stamp.get(STAMP_NAME + len..)?.iter().all(|&b| b == 0);
        padding_zero.then_some((Self { origin: Origin(*stamp.first()?), name }, message))
    }
}

/// Results at or above this value (as `u64`) are errors.
pub const ERROR_BASE: u64 = (-4095i64) as u64;

/// An error result of a well-formed hypercall (`RAX`, a small negative number as `i64`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(transparent)]
pub struct Error(pub u64);

impl Error {
    /// An argument value is out of range (a length over its limit, a zero-length nonce).
    pub const INVALID: Self = Self(-1i64 as u64);
    /// No such channel, or the caller is not one of its ends.
    pub const NO_CHANNEL: Self = Self(-2i64 as u64);
    /// The buffer is smaller than the message (it stays queued).
    pub const TOO_SMALL: Self = Self(-3i64 as u64);
    /// The peer's inbox already holds a message.
    pub const BUSY: Self = Self(-4i64 as u64);
    /// The peer partition has stopped.
    pub const PEER_GONE: Self = Self(-5i64 as u64);
    /// The caller has no [`ATTEST_CHANNEL`].
    pub const NO_ATTESTATION: Self = Self(-6i64 as u64);
    /// The caller waited for a reply (`RECV` as a channel's client, or `ATTEST`) while nothing
    /// could run and the server was idle, waiting for requests: no reply will ever come (the
    /// request was never sent, or the server dropped it). The server is not stopped.
    pub const NO_REPLY: Self = Self(-7i64 as u64);
    /// The caller waited for a reply in a cycle of clients each waiting for the next (a true
    /// deadlock): every wait in the cycle fails with this; nobody is stopped.
    pub const DEADLOCK: Self = Self(-8i64 as u64);

    /// Whether a raw `RAX` result is an error.
    pub const fn is_error(rax: u64) -> bool {
        rax >= ERROR_BASE
    }

    /// The name used in records and docs.
    pub const fn name(self) -> &'static str {
        match self.0 as i64 {
            -1 => "invalid",
            -2 => "no-channel",
            -3 => "too-small",
            -4 => "busy",
            -5 => "peer-gone",
            -6 => "no-attestation",
            -7 => "no-reply",
            -8 => "deadlock",
            _ => "unknown-error",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0 as i64)
    }
}

/// Why a partition was stopped: the `kind=` word of a `VMSEAL1 violation` record line.
/// A newtype over the record word so the set can grow without breaking parsers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(transparent)]
pub struct Violation(pub &'static str);

impl Violation {
    /// A memory access to guest-physical RAM outside the grant (nested page fault).
    /// Record fields: `gpa=`, `access=read|write|exec`, `rip=`.
    pub const MEMORY: Self = Self("memory");
    /// A memory access to an MMIO window (a device) the policy does not grant.
    /// Record fields: `gpa=`, `access=`, `rip=`.
    pub const MMIO: Self = Self("mmio");
    /// An `IN`/`OUT` to a port the policy does not grant. Record fields: `port=`,
    /// `size=` (1, 2, 4), `dir=in|out`, `rip=`.
    pub const PORT_IO: Self = Self("port-io");
    /// A `RDMSR`/`WRMSR`. Record fields: `msr=`, `dir=read|write`, `rip=`.
    pub const MSR: Self = Self("msr");
    /// An unknown hypercall number. Record fields: `nr=`, `rip=`.
    pub const HYPERCALL_UNKNOWN: Self = Self("hypercall-unknown");
    /// A hypercall pointer range outside the caller's grant. Record fields: `nr=`, `addr=`,
    /// `len=`, `rip=`.
    pub const HYPERCALL_BAD_POINTER: Self = Self("hypercall-bad-pointer");
    /// Hypercalls beyond the flood limit. Record fields: `count=`, `rip=`.
    pub const HYPERCALL_FLOOD: Self = Self("hypercall-flood");
    /// A triple fault (shutdown) in the partition. Record fields: `rip=`.
    pub const TRIPLE_FAULT: Self = Self("triple-fault");
    /// An instruction the partition may not execute (SVM instructions, `HLT` with interrupts
    /// off, …). Record fields: `exit=`, `rip=`.
    pub const INSTRUCTION: Self = Self("instruction");
    /// An exit the hypervisor does not know. Record fields: `exit=` (the raw code), `rip=`.
    pub const UNKNOWN_EXIT: Self = Self("unknown-exit");
    /// The partition used up the CPU budget its launch policy gives it
    /// (`policies::launch::Partition::cpu_budget_ms`). Record fields: `budget_ms=`,
    /// `used_ms=` (hex, like every number of a violation), `rip=`.
    pub const CPU_BUDGET: Self = Self("cpu-budget");
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl crate::record::Token for Violation {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        w.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_small_negative_numbers() {
        for e in [
            Error::INVALID,
            Error::NO_CHANNEL,
            Error::TOO_SMALL,
            Error::BUSY,
            Error::PEER_GONE,
            Error::NO_ATTESTATION,
            Error::NO_REPLY,
            Error::DEADLOCK,
        ] {
            assert!(Error::is_error(e.0), "{e}");
            assert_ne!(e.name(), "unknown-error");
        }
        assert!(!Error::is_error(MAX_MESSAGE));
        assert!(!Error::is_error(ABI_VERSION));
        assert_eq!(Error::BUSY.0, 0xFFFF_FFFF_FFFF_FFFC);
    }

    #[test]
    fn stamps_round_trip_and_reject_garbage() {
        let s = Stamp { origin: Origin::ATTEST, name: b"hello" };
        let mut bytes = s.encode().unwrap().to_vec();
        assert_eq!(&bytes[..10], b"\x01\x05\0\0\0\0\0\0he");
        bytes.extend_from_slice(b"payload");
        assert_eq!(Stamp::split(&bytes), Some((s, &b"payload"[..])));
        assert_eq!(Stamp::split(&bytes[..71]), None, "shorter than a stamp");
        let mut bad = bytes.clone();
        bad[1] = 65;
        assert_eq!(Stamp::split(&bad), None, "name too long");
        let mut bad = bytes.clone();
        bad[20] = b'x';
        assert_eq!(Stamp::split(&bad), None, "junk after the name");
        assert_eq!(Stamp { origin: Origin::SEND, name: b"" }.encode(), None);
        assert_eq!(Stamp { origin: Origin::SEND, name: &[b'a'; 65] }.encode(), None);
        assert!(Stamp { origin: Origin::SEND, name: &[b'a'; 64] }.encode().is_some());
    }

    #[test]
    fn call_names() {
        assert_eq!(Call::ATTEST.name(), Some("attest"));
        assert_eq!(Call(7).name(), None);
        assert_eq!(Call(u64::MAX).name(), None);
    }
}
