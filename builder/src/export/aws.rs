//! AWS: the `--uefi-data` blob of `aws ec2 register-image` — a UEFI variable store in the format
//! AWS publishes with `python-uefivars` (its `aws` output), base64 text.
//!
//! Layout (little-endian): `u64` magic `"AMZNUEFI"` ‖ `u32` CRC-32C of everything after it ‖
//! `u32` version 0 ‖ a zlib stream of: `u64` variable count, then per variable `u64` length +
//! UTF-8 name, `u64` length + data, 16-byte vendor GUID, `u32` attributes and, when the
//! attributes say time-based authenticated write access, the 16-byte `EFI_TIME` timestamp and
//! `u64` length + a 32-byte digest (zeros: PK/KEK/db/dbx carry none). `python-uefivars` writes
//! its zlib stream with a preset dictionary; vmseal writes one without (any zlib reader,
//! `python-uefivars` included, inflates it; the dictionary only makes the blob smaller).
//!
//! Written by hand: no crate writes this format.

use std::io::Write as _;

use base64::Engine as _;
use signing::efivar::ATTR_TIME_BASED_AUTHENTICATED_WRITE_ACCESS;
use signing::varstore::Variable;

/// `"AMZNUEFI"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"AMZNUEFI");
/// The format version.
pub const VERSION: u32 = 0;

/// CRC-32C (Castagnoli), the blob's checksum.
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

fn put_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(data);
}

/// The uncompressed variable list.
pub fn raw_store(vars: &[&Variable]) -> Vec<u8> {
    let mut raw = Vec::new();
    raw.extend_from_slice(&(vars.len() as u64).to_le_bytes());
    for v in vars {
        put_data(&mut raw, v.name.as_bytes());
        put_data(&mut raw, &v.data);
        raw.extend_from_slice(&v.guid.0);
        raw.extend_from_slice(&v.attributes.to_le_bytes());
        if v.attributes & ATTR_TIME_BASED_AUTHENTICATED_WRITE_ACCESS != 0 {
            raw.extend_from_slice(&v.timestamp);
            put_data(&mut raw, &[0u8; 32]);
        }
    }
    raw
}

/// The blob (binary, before base64).
pub fn blob(vars: &[&Variable]) -> std::io::Result<Vec<u8>> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&raw_store(vars))?;
    let zdata = z.finish()?;
    let mut body = VERSION.to_le_bytes().to_vec();
    body.extend_from_slice(&zdata);
    let mut out = MAGIC.to_le_bytes().to_vec();
    out.extend_from_slice(&CRC32C.checksum(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The blob as `--uefi-data` takes it: standard base64, no line breaks.
pub fn uefi_data(vars: &[&Variable]) -> std::io::Result<String> {
    Ok(base64::engine::general_purpose::STANDARD.encode(blob(vars)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use signing::efivar::{ATTRS_SECURE_BOOT_DB, EFI_GLOBAL_VARIABLE};

    #[test]
    fn crc32c_check_value() {
        // The catalogue's check value for CRC-32/ISCSI over "123456789".
        assert_eq!(CRC32C.checksum(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn header_and_inflated_body() {
        let v = Variable::new(
            "PK",
            EFI_GLOBAL_VARIABLE,
            ATTRS_SECURE_BOOT_DB,
            vec![1, 2, 3],
        );
        let b = blob(&[&v]).unwrap();
        assert_eq!(&b[..8], b"AMZNUEFI");
        assert_eq!(&b[12..16], &[0; 4]);
        let crc = u32::from_le_bytes(b[8..12].try_into().unwrap());
        assert_eq!(crc, CRC32C.checksum(&b[12..]));
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&b[16..]), &mut raw)
            .unwrap();
        // count 1 | "PK" | data | guid | attrs 0x27 | timestamp | 32-byte digest
        let mut want = 1u64.to_le_bytes().to_vec();
        want.extend_from_slice(&2u64.to_le_bytes());
        want.extend_from_slice(b"PK");
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(&[1, 2, 3]);
        want.extend_from_slice(&EFI_GLOBAL_VARIABLE.0);
        want.extend_from_slice(&0x27u32.to_le_bytes());
        want.extend_from_slice(&[0; 16]);
        want.extend_from_slice(&32u64.to_le_bytes());
        want.extend_from_slice(&[0; 32]);
        assert_eq!(raw, want);
    }
}
