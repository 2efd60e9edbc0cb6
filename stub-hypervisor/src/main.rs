//! vmseal's sealed UEFI stub: `\EFI\BOOT\BOOTX64.EFI` of every appliance image.
//!
//! Wiring only (the logic is in the `stub` library): find the stub's own PE sections, measure
//! them with EFI_TCG2_PROTOCOL in the order `policies::sections` states, copy the event log,
//! and launch exactly one payload — `.linux` through LoadImage/StartImage, or `.guest` as an
//! isolated partition of the stub-hypervisor (AMD SVM + nested paging, with its `.svcN`
//! services) after ExitBootServices. Progress goes to the record channel (COM2, see
//! `policies::record`). Any failure is reported there and the machine powers off: nothing
//! unmeasured ever runs, and there is no fallback.
//!
//! The firmware's LoadOptions are never read: the appliance is sealed, its command line is the
//! measured `.cmdline` section.
#![no_std]
#![no_main]

extern crate alloc;

mod efi;

use stub::serial::Uart;
use uefi::prelude::*;

#[entry]
fn main() -> Status {
    let rec = Uart::init(policies::record::RECORD_PORT);
    efi::run(rec)
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // No input is meant to reach a panic; if one does, fail closed like any other error.
    let mut rec = Uart::init(policies::record::RECORD_PORT);
    stub::record::line(&mut rec, "error")
        .kv("stage", "panic")
        .kv("status", "panic")
        .end();
    stub::record::line(&mut rec, "end").end();
    efi::power_off(Status::ABORTED)
}
