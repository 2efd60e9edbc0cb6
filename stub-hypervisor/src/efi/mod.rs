//! Firmware glue: the steps of `efi_main`, each calling into the `stub` library.
#![expect(
    unsafe_code,
    reason = "raw UEFI calls: the loaded image view, event log memory, the guest's entry"
)]

mod hv;
mod linux;
mod report;
mod tcg2;

use policies::record::{Token, write_hex_0x};
use policies::sections;
use stub::measure;
use stub::pe::Image;
use stub::record::line;
use stub::serial::Uart;
use uefi::boot;
use uefi::prelude::*;
use uefi::proto::loaded_image::LoadedImage;
use uefi::runtime::ResetType;

/// The version written in `VMSEAL1 start stub=`.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Report `error stage=<stage> status=<status>`, `end`, and power off. Every failure path of
/// the stub ends here: the stub never falls back to anything.
pub fn fail(rec: &mut Uart, stage: &str, status: impl Token) -> ! {
    line(rec, "error")
        .kv("stage", stage)
        .kv("status", status)
        .end();
    line(rec, "end").end();
    power_off(Status::ABORTED)
}

/// Runtime `ResetSystem(EfiResetShutdown)`; works before and after ExitBootServices.
pub fn power_off(status: Status) -> ! {
    uefi::runtime::reset(ResetType::SHUTDOWN, status, None)
}

/// A UEFI status as the record writes it (`0x…`).
pub struct St(pub Status);

impl Token for St {
    fn write_token<W: core::fmt::Write + ?Sized>(&self, w: &mut W) -> core::fmt::Result {
        write_hex_0x(w, self.0.0 as u64, 1)
    }
}

/// The stub's own loaded image as bytes (`ImageBase`, `ImageSize`). Returned with a `'static`
/// lifetime: the image stays mapped (EfiLoaderCode) until the machine powers off.
fn own_image(rec: &mut Uart) -> &'static [u8] {
    let li = match boot::open_protocol_exclusive::<LoadedImage>(boot::image_handle()) {
        Ok(li) => li,
        // Without our own image we cannot find, hence not measure, the payload: stop.
        Err(e) => fail(rec, "sections", St(e.status())),
    };
    let (base, size) = li.info();
    let Ok(size) = usize::try_from(size) else {
        fail(rec, "sections", "image-size")
    };
    if base.is_null() {
        fail(rec, "sections", "image-base");
    }
    // SAFETY: the firmware mapped our image at `base` for `size` bytes (LoadedImage
    // ImageBase/ImageSize) and it stays mapped and unmodified while the stub runs; we only
    // read it.
    unsafe { core::slice::from_raw_parts(base.cast::<u8>(), size) }
}

/// Which payload the image carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Payload {
    Linux,
    Guest,
}

/// `efi_main`: never returns (launches, or powers off).
pub fn run(mut rec: Uart) -> Status {
    // LoadOptions from the firmware are deliberately never read (sealed: no override).
    let bytes = own_image(&mut rec);
    let img = match Image::parse(bytes) {
        Ok(i) => i,
        Err(e) => {
            line(&mut rec, "start").kv("stub", VERSION).end();
            // Our own headers are unreadable: nothing can be located or measured.
            fail(&mut rec, "sections", e)
        }
    };
    let find = |name| img.find(name);
    let payload = match (find(sections::LINUX), find(sections::GUEST)) {
        (Ok(Some(_)), Ok(None)) => Some(Payload::Linux),
        (Ok(None), Ok(Some(_))) => Some(Payload::Guest),
        _ => None,
    };
    let mode = match payload {
        Some(Payload::Linux) => "linux",
        Some(Payload::Guest) => "guest",
        None => "none",
    };
    line(&mut rec, "start")
        .kv("stub", VERSION)
        .kv("mode", mode)
        .end();
    let Some(payload) = payload else {
        // Exactly one payload or nothing: with none or two we would have to guess.
        fail(&mut rec, "payload", "need-exactly-one-of-linux-guest")
    };
    let plan = match measure::plan(&img) {
        Ok(p) => p,
        // A duplicate measured section: refuse rather than pick one.
        Err(e) => fail(&mut rec, "sections", e),
    };

    let mut tpm = match tcg2::Tcg2::open() {
        Ok(t) => t,
        // No TCG2 protocol: measured boot is impossible, and sealing means never running
        // unmeasured code. Fail closed.
        Err(e) => fail(&mut rec, "measure", St(e)),
    };
    if let Err(e) = measure::measure_all(&mut tpm, &plan, &mut rec) {
        // An extend failed or cannot be shown in the log: the PCRs no longer prove what will
        // run. Fail closed.
        fail(&mut rec, "measure", e);
    }
    let log = match tpm.copy_log() {
        Ok(l) => l,
        // Without the log copy a guest cannot attest, and a Linux guest's log would be
        // incomplete after ExitBootServices; we stop rather than launch unattestable.
        Err(e) => fail(&mut rec, "eventlog", e),
    };
    drop(tpm);
    let present = |name: &str| img.find(name).ok().flatten().map(|s| img.contents(s));
    let section = |name| present(name).unwrap_or(&[]);
    let cmdline = present(sections::CMDLINE);
    let payload_section = match payload {
        Payload::Linux => sections::LINUX,
        Payload::Guest => sections::GUEST,
    };
    let policy = match stub::policy::sealed(present(sections::VMSEAL), payload_section) {
        Ok(p) => p,
        // The (measured) policy does not describe this payload, or cannot be read: launching
        // anyway would run the guest under rules nobody sealed.
        Err(e) => fail(&mut rec, "policy", e),
    };
    match (payload, policy) {
        (Payload::Linux, _) => linux::launch(
            &mut rec,
            section(sections::LINUX),
            cmdline,
            section(sections::INITRD),
            &log,
        ),
        (Payload::Guest, Some(policy)) => hv::launch(
            &mut rec,
            &policy,
            cmdline.unwrap_or(&[]),
            &|name: &str| present(name),
            &log,
        ),
        // `sealed` never returns None for a `.guest`; stop rather than run without rules.
        (Payload::Guest, None) => fail(&mut rec, "policy", "policy-missing"),
    }
}

/// A copy of the firmware event log, in EfiLoaderData pages the stub allocated.
pub struct LogCopy {
    /// Physical address of the copy.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Address of the Final Events Table, or 0.
    pub final_events: u64,
    /// Its `NumberOfEvents` at copy time.
    pub final_count: u64,
    /// The log's algorithms and digest sizes (its Spec ID event).
    pub sizes: stub::eventlog::DigestSizes,
}
