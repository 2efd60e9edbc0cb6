//! EFI_TCG2_PROTOCOL: extend + read back (the [`Tpm`] of the measurement loop), and the
//! event-log copy handed to the payload. See `shared/reference/tpm-tis-and-commands.md` §C.

use super::LogCopy;
use stub::eventlog::{self, DigestSizes, Event2, LogError};
use stub::measure::{Failure, Tpm};
use uefi::boot::{self, ScopedProtocol};
use uefi::proto::tcg::PcrIndex;
use uefi::proto::tcg::v2::{HashLogExtendEventFlags, PcrEventInputs, Tcg};
use uefi::{Guid, Status, guid};
use uefi_raw::Boolean;
use uefi_raw::protocol::tcg::v2::{Tcg2EventLogFormat, Tcg2Protocol};

/// `EFI_TCG2_FINAL_EVENTS_TABLE_GUID`.
const FINAL_EVENTS_TABLE: Guid = guid!("1e2ed096-30e2-4254-bd89-863bbef82325");

/// The opened protocol and the log's digest sizes (read once from the Spec ID event).
pub struct Tcg2 {
    proto: ScopedProtocol<Tcg>,
    sizes: Option<DigestSizes>,
}

/// The raw result of GetEventLog(TCG_2).
struct RawLog {
    location: u64,
    last_entry: u64,
    truncated: bool,
}

/// A view of `n` bytes of firmware log memory at `addr`.
///
/// # Safety
/// `addr..addr + n` must be readable memory that stays unmodified while the slice lives.
unsafe fn log_bytes<'a>(addr: u64, n: usize) -> Option<&'a [u8]> {
    let p = usize::try_from(addr).ok()?;
    p.checked_add(n)?;
    // SAFETY: the caller guarantees the range is readable; `p` is non-zero (checked by callers).
    Some(unsafe { core::slice::from_raw_parts(p as *const u8, n) })
}

impl Tcg2 {
    /// Open EFI_TCG2_PROTOCOL; the error is the EFI status.
    pub fn open() -> Result<Self, Status> {
        let h = boot::get_handle_for_protocol::<Tcg>().map_err(|e| e.status())?;
        let proto = boot::open_protocol_exclusive::<Tcg>(h).map_err(|e| e.status())?;
        Ok(Self { proto, sizes: None })
    }

    fn get_event_log(&mut self) -> Result<RawLog, Failure> {
        let tcg: &mut Tcg = &mut self.proto;
        // `Tcg` is `#[repr(transparent)]` over `Tcg2Protocol` (uefi-rs `proto/tcg/v2.rs`); its
        // high-level `EventLog` keeps the raw location/last entry private, so call the raw
        // function pointer.
        let raw: *mut Tcg2Protocol = core::ptr::from_mut(tcg).cast();
        let (mut location, mut last_entry, mut truncated) = (0u64, 0u64, Boolean::FALSE);
        // SAFETY: `raw` is the live protocol instance we hold open; the out-pointers are
        // valid locals. GetEventLog only writes them.
        let status = unsafe {
            ((*raw).get_event_log)(
                raw,
                Tcg2EventLogFormat::TCG_2,
                &mut location,
                &mut last_entry,
                &mut truncated,
            )
        };
        if status.is_error() {
            return Err(Failure::Status(status.0 as u64));
        }
        if location == 0 {
            return Err(Failure::Log(LogError::NotSpecId));
        }
        Ok(RawLog {
            location,
            last_entry,
            truncated: truncated.into(),
        })
    }

    fn sizes(&mut self, log: &RawLog) -> Result<DigestSizes, Failure> {
        if let Some(s) = self.sizes {
            return Ok(s);
        }
        let (s, _) = eventlog::read_entry(
            // SAFETY: the log area starts at `location` and holds at least the complete first
            // entry; `read_entry` only asks for as many bytes as that entry's header declares
            // (bounded by MAX_ENTRY).
            |n| unsafe { log_bytes(log.location, n) },
            eventlog::parse_spec_id,
        )
        .map_err(Failure::Log)?;
        self.sizes = Some(s);
        Ok(s)
    }

    /// Copy the whole log (first entry to end of the last) into EfiLoaderData pages, and note
    /// the Final Events Table and its `NumberOfEvents`.
    pub fn copy_log(&mut self) -> Result<LogCopy, Failure> {
        let log = self.get_event_log()?;
        let sizes = self.sizes(&log)?;
        if log.truncated {
            // The firmware dropped events: a copy would not replay to the PCRs.
            return Err(Failure::LogTruncated);
        }
        if log.last_entry < log.location {
            return Err(Failure::Mismatch);
        }
        let last_len = if log.last_entry == log.location {
            // SAFETY: as in `sizes`: the first entry is complete in memory.
            eventlog::read_entry(
                |n| unsafe { log_bytes(log.location, n) },
                eventlog::parse_spec_id,
            )
            .map_err(Failure::Log)?
            .1
        } else {
            // SAFETY: `last_entry` is the start of the complete last entry the firmware wrote;
            // we read only as far as its own header says it extends.
            eventlog::read_entry(
                |n| unsafe { log_bytes(log.last_entry, n) },
                |b| eventlog::parse_event2(&sizes, b),
            )
            .map_err(Failure::Log)?
            .len
        };
        let len = usize::try_from(log.last_entry - log.location)
            .ok()
            .and_then(|d| d.checked_add(last_len))
            .ok_or(Failure::Log(LogError::TooLarge))?;
        let pages = len.div_ceil(0x1000).max(1);
        let dst = boot::allocate_pages(
            boot::AllocateType::AnyPages,
            boot::MemoryType::LOADER_DATA,
            pages,
        )
        .map_err(|e| Failure::Status(e.status().0 as u64))?;
        // SAFETY: the source is the firmware's log, `len` bytes from `location` (first entry
        // to the end of the last); the destination is `pages` fresh pages we own; they do
        // not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(log.location as usize as *const u8, dst.as_ptr(), len);
        }
        let final_events = uefi::system::with_config_table(|t| {
            t.iter()
                .find(|e| e.guid == FINAL_EVENTS_TABLE)
                .map(|e| e.address as u64)
        })
        .unwrap_or(0);
        let final_count = if final_events == 0 {
            0
        } else {
            // SAFETY: the config table entry points at EFI_TCG2_FINAL_EVENTS_TABLE
            // (`Version u64, NumberOfEvents u64, …`), mapped EfiACPIMemoryNVS.
            unsafe { core::ptr::read_unaligned((final_events as usize as *const u64).add(1)) }
        };
        Ok(LogCopy {
            addr: dst.as_ptr() as u64,
            len: len as u64,
            final_events,
            final_count,
            sizes,
        })
    }
}

impl Tpm for Tcg2 {
    fn extend(
        &mut self,
        pcr: u32,
        event_type: policies::tcg::EventType,
        event_data: &[u8],
        data: &[u8],
    ) -> Result<(), Failure> {
        let mut buf = alloc::vec![0u8; 4 + 14 + event_data.len()];
        let ev = PcrEventInputs::new_in_buffer(
            &mut buf,
            PcrIndex(pcr),
            uefi::proto::tcg::EventType(event_type.0),
            event_data,
        )
        .map_err(|e| Failure::Status(e.status().0 as u64))?;
        self.proto
            .hash_log_extend_event(HashLogExtendEventFlags::empty(), data, ev)
            .map_err(|e| Failure::Status(e.status().0 as u64))
    }

    fn last_entry(&mut self, f: &mut dyn FnMut(&Event2<'_>)) -> Result<(), Failure> {
        let log = self.get_event_log()?;
        let sizes = self.sizes(&log)?;
        if log.truncated {
            // Our extend reached the TPM but not the log: no verifier could replay it.
            return Err(Failure::LogTruncated);
        }
        if log.last_entry == 0 || log.last_entry == log.location {
            return Err(Failure::Mismatch);
        }
        let ev = eventlog::read_entry(
            // SAFETY: `last_entry` starts the complete entry the firmware just wrote; we read
            // only as far as its header declares.
            |n| unsafe { log_bytes(log.last_entry, n) },
            |b| eventlog::parse_event2(&sizes, b),
        )
        .map_err(Failure::Log)?;
        f(&ev);
        Ok(())
    }
}
