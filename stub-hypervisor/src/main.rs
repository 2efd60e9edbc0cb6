//! vmseal's sealed UEFI stub (`\EFI\BOOT\BOOTX64.EFI`).
#![no_std]
#![no_main]

use core::fmt::Write as _;
use uefi::prelude::*;

#[entry]
fn main() -> Status {
    let mut com1 = stub::serial::Uart::init(policies::record::CONSOLE_PORT);
    let _ = com1.write_str("vmseal stub: hello\r\n");
    let mut com2 = stub::serial::Uart::init(policies::record::RECORD_PORT);
    let _ = write!(com2, "{}start stub={}\r\n", policies::record::PREFIX, env!("CARGO_PKG_VERSION"));
    let _ = write!(com2, "{}end\r\n", policies::record::PREFIX);
    uefi::runtime::reset(uefi::runtime::ResetType::SHUTDOWN, Status::SUCCESS, None)
}
