//! Device paths the stub builds, as bytes (UEFI 2.10 §10.3: nodes `Type u8, SubType u8,
//! Length u16`, ending with End Entire `7f ff 04 00`).
//!
//! - the initrd path the Linux EFI stub looks up with `LocateDevicePath(LoadFile2)`:
//!   exactly `VenMedia(LINUX_EFI_INITRD_MEDIA_GUID)/End` ([`initrd_media`]);
//! - the kernel's path for `LoadImage` from memory: the stub's own full device path
//!   (`LoadedImageDevicePath`) with a `VenMedia(`[`VMSEAL_LINUX_GUID`]`)` node appended
//!   ([`append_vendor_media`]); it is logged (not hashed) in the firmware's PCR 4 event.

use crate::bytes::u16_at;
use alloc::vec::Vec;

/// `LINUX_EFI_INITRD_MEDIA_GUID` 5568e427-68fc-4f3d-ac74-ca555231cc68, in EFI byte order.
pub const LINUX_EFI_INITRD_MEDIA_GUID: [u8; 16] = guid_bytes(
    0x5568e427,
    0x68fc,
    0x4f3d,
    [0xac, 0x74, 0xca, 0x55, 0x52, 0x31, 0xcc, 0x68],
);

/// vmseal's vendor media GUID naming the embedded `.linux` section,
/// `1b8b2d4e-0a6f-4c53-8f2e-766d7365616c` (the last 6 bytes spell "vmseal").
pub const VMSEAL_LINUX_GUID: [u8; 16] = guid_bytes(
    0x1b8b2d4e,
    0x0a6f,
    0x4c53,
    [0x8f, 0x2e, b'v', b'm', b's', b'e', b'a', b'l'],
);

/// A GUID in EFI mixed-endian byte order.
pub const fn guid_bytes(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

const END: [u8; 4] = [0x7f, 0xff, 0x04, 0x00];

fn vendor_media(out: &mut Vec<u8>, guid: &[u8; 16]) {
    out.extend_from_slice(&[0x04, 0x03, 20, 0]); // MEDIA_DEVICE_PATH, MEDIA_VENDOR_DP, 20 bytes
    out.extend_from_slice(guid);
}

/// `VenMedia(LINUX_EFI_INITRD_MEDIA_GUID)/End` (24 bytes).
pub fn initrd_media() -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    vendor_media(&mut v, &LINUX_EFI_INITRD_MEDIA_GUID);
    v.extend_from_slice(&END);
    v
}

/// `path` (up to its first End node) + `VenMedia(guid)` + End. A malformed `path` (a node
/// length under 4 or past the end, no End node) is dropped and only `VenMedia(guid)/End`
/// is returned: the path is informational, never trusted.
pub fn append_vendor_media(path: &[u8], guid: &[u8; 16]) -> Vec<u8> {
    let mut off = 0usize;
    let prefix_len = loop {
        let (Some(&ty), Some(len)) = (path.get(off), u16_at(path, off + 2)) else {
            break 0;
        };
        let len = usize::from(len);
        if ty == 0x7f {
            break off;
        }
        if len < 4 || off + len > path.len() {
            break 0;
        }
        off += len;
    };
    let mut v = Vec::with_capacity(prefix_len + 24);
    v.extend_from_slice(path.get(..prefix_len).unwrap_or(&[]));
    vendor_media(&mut v, guid);
    v.extend_from_slice(&END);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initrd_path_bytes() {
        assert_eq!(
            initrd_media(),
            [
                0x04, 0x03, 0x14, 0x00, 0x27, 0xe4, 0x68, 0x55, 0xfc, 0x68, 0x3d, 0x4f, 0xac, 0x74,
                0xca, 0x55, 0x52, 0x31, 0xcc, 0x68, 0x7f, 0xff, 0x04, 0x00
            ]
        );
    }

    #[test]
    fn appends_to_a_path() {
        let hd = [0x04u8, 0x01, 6, 0, 0xAA, 0xBB];
        let mut p = hd.to_vec();
        p.extend_from_slice(&END);
        let v = append_vendor_media(&p, &VMSEAL_LINUX_GUID);
        assert_eq!(&v[..6], &hd);
        assert_eq!(&v[6..10], &[4, 3, 20, 0]);
        assert_eq!(v.len(), 6 + 24);
        assert_eq!(
            append_vendor_media(&[1, 2, 3], &VMSEAL_LINUX_GUID).len(),
            24
        );
        assert_eq!(
            append_vendor_media(&[4, 1, 0, 0, 0x7f, 0xff, 4, 0], &VMSEAL_LINUX_GUID).len(),
            24
        );
    }
}
