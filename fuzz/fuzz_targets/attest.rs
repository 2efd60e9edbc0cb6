//! `policies::attest` request and report decoders, the hypervisor's sender stamp
//! (`policies::hypercall::Stamp`), and the TPM quote/create-primary response parsers, on
//! arbitrary bytes: never panic; whatever decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::attest::{Report, Request};

fuzz_target!(|data: &[u8]| {
    let mut out = vec![0u8; 6 * 4096 + 64]; // every blob at its 4096-byte limit fits
    if let Ok(r) = Request::decode(data) {
        let n = r.encode(&mut out).expect("a decoded request encodes");
        assert_eq!(&out[..n], data, "canonical request");
    }
    if let Ok(r) = Report::decode(data) {
        let n = r.encode(&mut out).expect("a decoded report encodes");
        assert_eq!(&out[..n], data, "canonical report");
        for pcr in 0..40 {
            let _ = r.pcr(pcr);
        }
    }
    if let Some((stamp, message)) = policies::hypercall::Stamp::split(data) {
        let head = stamp.encode().expect("a split stamp encodes");
        assert_eq!(&head[..], &data[..head.len()], "canonical stamp");
        assert_eq!(message, &data[head.len()..]);
    }
    let _ = policies::tpm2::parse_quote(data);
    let _ = policies::tpm2::parse_create_primary(data);
});
