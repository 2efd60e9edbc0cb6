//! Launch of a `.linux` EFI-stub kernel: LoadImage from memory, the initrd over LoadFile2,
//! `.cmdline` as the kernel's LoadOptions, StartImage.
//!
//! Device paths (bytes in `stub::devpath`):
//! - kernel: the stub's own `LoadedImageDevicePath`, then
//!   `VenMedia(1b8b2d4e-0a6f-4c53-8f2e-766d7365616c)/End` (only the vendor node and End if
//!   the stub's path is unavailable). The firmware logs it in the PCR 4
//!   EV_EFI_BOOT_SERVICES_APPLICATION event (log data only, not hashed); Secure Boot treats
//!   the image as not-from-firmware-volume, i.e. verifies it against db.
//! - initrd: a new handle with `VenMedia(LINUX_EFI_INITRD_MEDIA_GUID)/End` and a LoadFile2
//!   that serves the `.initrd` bytes. No `.initrd` section: no handle, the kernel boots without.

use super::{LogCopy, St, fail, power_off};
use alloc::boxed::Box;
use core::ffi::c_void;
use stub::devpath;
use stub::record::line;
use stub::serial::Uart;
use uefi::boot::{self, LoadImageSource};
use uefi::prelude::*;
use uefi::proto::device_path::{DevicePath, LoadedImageDevicePath};
use uefi::proto::loaded_image::LoadedImage;
use uefi_raw::Boolean;
use uefi_raw::protocol::device_path::DevicePathProtocol;
use uefi_raw::protocol::media::LoadFile2Protocol;

/// LoadFile2 instance serving the initrd; the protocol struct comes first so the `this`
/// pointer the firmware passes back is a pointer to the whole.
#[repr(C)]
struct InitrdLoader {
    proto: LoadFile2Protocol,
    data: &'static [u8],
}

/// `EFI_LOAD_FILE2_PROTOCOL.LoadFile` (UEFI 2.10 §13.2): BootPolicy must be FALSE; a null
/// buffer or one smaller than the initrd gets BUFFER_TOO_SMALL and the needed size.
unsafe extern "efiapi" fn load_initrd(
    this: *mut LoadFile2Protocol,
    _file_path: *const DevicePathProtocol,
    boot_policy: Boolean,
    buffer_size: *mut usize,
    buffer: *mut c_void,
) -> Status {
    if this.is_null() || buffer_size.is_null() {
        return Status::INVALID_PARAMETER;
    }
    if bool::from(boot_policy) {
        return Status::UNSUPPORTED;
    }
    // SAFETY: `this` is the `proto` field of a leaked `InitrdLoader` (repr(C), first field),
    // installed by `install_initrd`; the firmware passes it back unchanged.
    let data = unsafe { (*this.cast::<InitrdLoader>()).data };
    // SAFETY: the caller passes a valid `buffer_size` pointer (checked non-null).
    let size = unsafe { &mut *buffer_size };
    if buffer.is_null() || *size < data.len() {
        *size = data.len();
        return Status::BUFFER_TOO_SMALL;
    }
    // SAFETY: the caller's buffer holds at least `*size >= data.len()` bytes; our data is
    // in the stub's image, not in the caller's buffer.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), buffer.cast::<u8>(), data.len()) };
    *size = data.len();
    Status::SUCCESS
}

fn install_initrd(initrd: &'static [u8]) -> Result<(), Status> {
    let loader: &'static mut InitrdLoader = Box::leak(Box::new(InitrdLoader {
        proto: LoadFile2Protocol {
            load_file: load_initrd,
        },
        data: initrd,
    }));
    let dp: &'static mut [u8] = Box::leak(devpath::initrd_media().into_boxed_slice());
    // SAFETY: both interfaces are leaked, so they outlive the handle; the device path bytes
    // are a well-formed `VenMedia/End`; `loader` starts with a LoadFile2Protocol.
    unsafe {
        let h = boot::install_protocol_interface(
            None,
            &LoadFile2Protocol::GUID,
            core::ptr::from_mut(loader).cast::<c_void>(),
        )
        .map_err(|e| e.status())?;
        boot::install_protocol_interface(
            Some(h),
            &DevicePathProtocol::GUID,
            dp.as_ptr().cast::<c_void>(),
        )
        .map_err(|e| e.status())?;
    }
    Ok(())
}

/// Hand over to the kernel in `.linux`. Never returns.
pub fn launch(
    rec: &mut Uart,
    kernel: &'static [u8],
    cmdline: Option<&'static [u8]>,
    initrd: &'static [u8],
    _log: &LogCopy,
) -> ! {
    let own = boot::open_protocol_exclusive::<LoadedImageDevicePath>(boot::image_handle())
        .map(|p| devpath::append_vendor_media(p.as_bytes(), &devpath::VMSEAL_LINUX_GUID))
        .unwrap_or_else(|_| devpath::append_vendor_media(&[], &devpath::VMSEAL_LINUX_GUID));
    let Ok(path) = <&DevicePath>::try_from(own.as_slice()) else {
        fail(rec, "load-linux", "device-path")
    };
    let kernel_handle = match boot::load_image(
        boot::image_handle(),
        LoadImageSource::FromBuffer {
            buffer: kernel,
            file_path: Some(path),
        },
    ) {
        Ok(h) => h,
        // SECURITY_VIOLATION / ACCESS_DENIED: Secure Boot refused the kernel. Any other
        // error: it cannot be loaded. Either way there is nothing else we may run.
        Err(e) => fail(rec, "load-linux", St(e.status())),
    };
    if !initrd.is_empty()
        && let Err(s) = install_initrd(initrd)
    {
        // Booting without the measured initrd would run a different system: stop.
        fail(rec, "initrd", St(s));
    }
    if let Some(cmdline) = cmdline {
        let Ok(text) = core::str::from_utf8(cmdline) else {
            // The command line must be UTF-8 to become UTF-16 LoadOptions; never guess.
            fail(rec, "cmdline", "not-utf8")
        };
        let utf16 = policies::sections::utf16le_with_nul(text);
        let Ok(size) = u32::try_from(utf16.len()) else {
            fail(rec, "cmdline", "too-long")
        };
        let opts: &'static [u8] = Box::leak(utf16.into_boxed_slice());
        match boot::open_protocol_exclusive::<LoadedImage>(kernel_handle) {
            // SAFETY: `opts` is leaked, so it outlives the kernel's use of its LoadOptions.
            Ok(mut li) => unsafe { li.set_load_options(opts.as_ptr(), size) },
            // The measured command line must reach the kernel: stop.
            Err(e) => fail(rec, "cmdline", St(e.status())),
        }
    }
    line(rec, "launch")
        .kv("kind", "linux")
        .kv("section", policies::sections::LINUX)
        .end();
    let r = boot::start_image(kernel_handle);
    // A kernel that returns did not boot; report and power off, never fall back.
    let status = match r {
        Ok(()) => Status::SUCCESS,
        Err(e) => e.status(),
    };
    line(rec, "error")
        .kv("stage", "start-linux")
        .kv("status", St(status))
        .end();
    line(rec, "end").end();
    power_off(Status::ABORTED)
}
