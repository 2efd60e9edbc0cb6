//! `vmseal-agent`: the attestation agent inside vmseal's Linux appliance (`images/linux`).
//!
//! Run by the initrd's `/init` when the kernel command line has `vmseal.attest=IP:PORT`, it
//! gets the appliance's secret from `vmseal attest serve` (`docs/attestation.md`):
//! 1. creates the default ECC endorsement key (EK, template L-2) and an ECC P-256 restricted
//!    signing key (AK) as primaries in the endorsement hierarchy (`TPM2_CreatePrimary`);
//! 2. `POST /v1/nonce {"policy"}`, then `TPM2_Quote` of the SHA-256 PCRs 0-7, 9, 11, 12, 13
//!    with that nonce;
//! 3. `POST /v1/attest` with the evidence bundle (quote, signature, the AK's `TPM2B_PUBLIC`,
//!    the event log from securityfs, the nonce) and the EK's `TPM2B_PUBLIC`;
//! 4. if released: `TPM2_ActivateCredential` (the EK authorised by a policy session with
//!    `PolicySecret(TPM_RH_ENDORSEMENT)`) gives the credential, an AES-256 key; the secret is
//!    AES-256-GCM under it with associated data `"vmseal-secret-v1" || nonce`.
//!
//! Prints `vmseal-agent: secret released sha256=<hex>` (the secret itself never leaves the
//! process), or `vmseal-agent: refused: <the server's reason>`, or `vmseal-agent: error: …`;
//! exit 0, 1, 2. The TPM is `/dev/tpmrm0` (else `/dev/tpm0`) with raw TPM2 commands from
//! `policies::tpm2`; `--tpm tcp:HOST:PORT` talks to a swtpm's command port instead (tests).
//! HTTP/1.1 over one TCP connection per request, numeric addresses only (no DNS, no NSS).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use base64::Engine as _;
use policies::tpm2::{self, PcrSet};
use serde_json::{Value, json};
use sha2::Digest as _;

/// The PCRs a vmseal appliance's prediction covers (`docs/attestation.md`).
const PCRS: [u32; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 13];
/// securityfs's copy of the firmware's TCG2 event log.
const EVENTLOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";
/// The associated data of the secret's AES-256-GCM, before the nonce.
const WRAP_AAD_PREFIX: &[u8] = b"vmseal-secret-v1";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value, what: &str) -> Result<Vec<u8>, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("the server's answer has no {what}"))?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("the server's {what} is not base64: {e}"))
}

/// A TPM: the kernel's character device, or a swtpm command port.
enum Tpm {
    Device(std::fs::File),
    Tcp(TcpStream),
}

impl Tpm {
    fn open(spec: Option<&str>) -> Result<Self, String> {
        if let Some(addr) = spec.and_then(|s| s.strip_prefix("tcp:")) {
            return TcpStream::connect(addr)
                .map(Tpm::Tcp)
                .map_err(|e| format!("TPM at {addr}: {e}"));
        }
        let paths: Vec<&str> = match spec {
            Some(p) => vec![p],
            None => vec!["/dev/tpmrm0", "/dev/tpm0"],
        };
        let mut last = String::new();
        for p in paths {
            match std::fs::OpenOptions::new().read(true).write(true).open(p) {
                Ok(f) => return Ok(Tpm::Device(f)),
                Err(e) => last = format!("{p}: {e}"),
            }
        }
        Err(format!("no TPM: {last}"))
    }

    /// Send one command, return the whole response (retrying `TPM_RC_RETRY` and friends).
    fn execute(&mut self, cmd: &[u8]) -> Result<Vec<u8>, String> {
        for attempt in 0..tpm2::MAX_RETRIES {
            let resp = self.transceive(cmd)?;
            let (rc, _) = tpm2::parse_header(&resp).map_err(|e| format!("TPM response: {e}"))?;
            if rc.is_retry() {
                std::thread::sleep(Duration::from_millis(20 << attempt.min(6)));
                continue;
            }
            if rc != tpm2::ResponseCode::SUCCESS {
                let code = cmd
                    .get(6..10)
                    .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                return Err(format!(
                    "TPM command {code:#x} failed: response code {:#x}",
                    rc.0
                ));
            }
            return Ok(resp);
        }
        Err("the TPM kept asking to retry".into())
    }

    fn transceive(&mut self, cmd: &[u8]) -> Result<Vec<u8>, String> {
        let io = |e: std::io::Error| format!("TPM I/O: {e}");
        match self {
            Tpm::Device(f) => {
                f.write_all(cmd).map_err(io)?;
                let mut buf = vec![0u8; tpm2::MAX_RESPONSE];
                let n = f.read(&mut buf).map_err(io)?;
                buf.truncate(n);
                Ok(buf)
            }
            Tpm::Tcp(s) => {
                s.write_all(cmd).map_err(io)?;
                let mut head = [0u8; tpm2::HEADER_SIZE];
                s.read_exact(&mut head).map_err(io)?;
                let size = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
                if !(tpm2::HEADER_SIZE..=tpm2::MAX_RESPONSE).contains(&size) {
                    return Err(format!("TPM response of {size} bytes"));
                }
                let mut resp = head.to_vec();
                resp.resize(size, 0);
                s.read_exact(&mut resp[tpm2::HEADER_SIZE..]).map_err(io)?;
                Ok(resp)
            }
        }
    }

    fn flush(&mut self, handle: u32) {
        let _ = self.transceive(&tpm2::flush_context(handle));
    }
}

/// The parameters after the response header.
fn params(resp: &[u8]) -> &[u8] {
    resp.get(tpm2::HEADER_SIZE..).unwrap_or_default()
}

/// `(handle, TPM2B_PUBLIC)` of a `TPM2_CreatePrimary`.
fn create_primary(tpm: &mut Tpm, cmd: &[u8], what: &str) -> Result<(u32, Vec<u8>), String> {
    let resp = tpm.execute(cmd).map_err(|e| format!("{what}: {e}"))?;
    let p = tpm2::parse_create_primary(params(&resp)).map_err(|e| format!("{what}: {e}"))?;
    let size = u16::try_from(p.public.len()).map_err(|_| format!("{what}: outPublic too big"))?;
    let mut public = size.to_be_bytes().to_vec();
    public.extend(p.public);
    Ok((p.handle, public))
}

/// One HTTP/1.1 request with a JSON body; `(status, JSON)`.
fn post(server: &str, path: &str, body: &Value) -> Result<(u16, Value), String> {
    let mut s = TcpStream::connect(server).map_err(|e| format!("{server}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{server}{path}: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("{server}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    let (head, json_text) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{server}{path}: not an HTTP response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{server}{path}: no status"))?;
    let v = serde_json::from_str(json_text).unwrap_or(Value::Null);
    Ok((status, v))
}

enum Outcome {
    Released([u8; 32]),
    Refused(String),
}

fn attest(server: &str, policy: &str, tpm: &mut Tpm, eventlog: &[u8]) -> Result<Outcome, String> {
    let (ek, ek_pub) = create_primary(tpm, &tpm2::create_primary_ecc_ek(), "EK")?;
    let result = (|| {
        let (ak, ak_pub) = create_primary(tpm, &tpm2::create_primary_ecc_ak(), "AK")?;
        let r = attest_with(server, policy, tpm, eventlog, ek, &ek_pub, ak, &ak_pub);
        tpm.flush(ak);
        r
    })();
    tpm.flush(ek);
    result
}

#[expect(clippy::too_many_arguments, reason = "one call, every part named")]
fn attest_with(
    server: &str,
    policy: &str,
    tpm: &mut Tpm,
    eventlog: &[u8],
    ek: u32,
    ek_pub: &[u8],
    ak: u32,
    ak_pub: &[u8],
) -> Result<Outcome, String> {
    let (status, v) = post(server, "/v1/nonce", &json!({ "policy": policy }))?;
    if status != 200 {
        return Err(format!("POST /v1/nonce: {status} {v}"));
    }
    let nonce = unb64(&v["nonce"], "nonce")?;
    let select = PCRS
        .iter()
        .fold(PcrSet::EMPTY, |s, i| PcrSet(s.0 | (1 << i)));
    let mut cmd = [0u8; tpm2::QUOTE_MAX];
    let len = tpm2::quote(ak, &nonce, select, &mut cmd).ok_or("a nonce over 64 bytes")?;
    let resp = tpm.execute(cmd.get(..len).unwrap_or_default())?;
    let q = tpm2::parse_quote(params(&resp)).map_err(|e| format!("TPM2_Quote: {e}"))?;
    let request = json!({
        "policy": policy,
        "ek": b64(ek_pub),
        "evidence": {
            "format": 1,
            "quote": b64(q.attest),
            "signature": b64(q.signature),
            "ak": b64(ak_pub),
            "eventlog": b64(eventlog),
            "nonce": b64(&nonce),
        },
    });
    let (status, v) = post(server, "/v1/attest", &request)?;
    match status {
        200 => {}
        403 => {
            return Ok(Outcome::Refused(
                v["reason"].as_str().unwrap_or("(no reason)").to_string(),
            ));
        }
        _ => {
            return Err(format!(
                "POST /v1/attest: {status} {}",
                v["error"].as_str().unwrap_or("")
            ));
        }
    }
    let id_object = unb64(&v["credential"]["id_object"], "credential.id_object")?;
    let secret = unb64(
        &v["credential"]["encrypted_secret"],
        "credential.encrypted_secret",
    )?;
    // The EK's authPolicy: PolicySecret(TPM_RH_ENDORSEMENT) in a fresh policy session.
    let mut nonce_caller = [0u8; 16];
    for (d, s) in nonce_caller.iter_mut().zip(sha2::Sha256::digest(&nonce)) {
        *d = s;
    }
    let resp = tpm.execute(&tpm2::start_policy_session(&nonce_caller))?;
    let session =
        tpm2::parse_start_auth_session(params(&resp)).map_err(|e| format!("session: {e}"))?;
    if let Err(e) = tpm.execute(&tpm2::policy_secret_endorsement(session)) {
        tpm.flush(session);
        return Err(e);
    }
    let mut cmd = vec![0u8; 64 + id_object.len() + secret.len()];
    let len = tpm2::activate_credential(ak, ek, session, &id_object, &secret, &mut cmd)
        .ok_or("the credential does not fit a command")?;
    let resp = match tpm.execute(cmd.get(..len).unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => {
            tpm.flush(session);
            return Err(format!("TPM2_ActivateCredential: {e}"));
        }
    };
    let cred = tpm2::parse_activate_credential(params(&resp))
        .map_err(|e| format!("TPM2_ActivateCredential: {e}"))?;
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(cred)
        .map_err(|_| format!("a credential of {} bytes, not an AES-256 key", cred.len()))?;
    let iv = unb64(&v["secret"]["iv"], "secret.iv")?;
    let iv: [u8; 12] = iv
        .try_into()
        .map_err(|_| "an IV that is not 12 bytes".to_string())?;
    let ct = unb64(&v["secret"]["ciphertext"], "secret.ciphertext")?;
    let aad = [WRAP_AAD_PREFIX, &nonce].concat();
    let plain = cipher
        .decrypt(
            &iv.into(),
            Payload {
                msg: &ct,
                aad: &aad,
            },
        )
        .map_err(|_| "the secret does not decrypt under the activated credential".to_string())?;
    Ok(Outcome::Released(sha2::Sha256::digest(&plain).into()))
}

fn main() {
    let mut server = None;
    let mut policy = "linux".to_string();
    let mut tpm_spec = None;
    let mut eventlog_path = EVENTLOG.to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--server" => server = args.next(),
            "--policy" => policy = args.next().unwrap_or_default(),
            "--tpm" => tpm_spec = args.next(),
            "--eventlog" => eventlog_path = args.next().unwrap_or_default(),
            other => {
                println!(
                    "vmseal-agent: error: unknown argument {other:?} — usage: vmseal-agent --server IP:PORT [--policy NAME] [--tpm PATH|tcp:IP:PORT] [--eventlog FILE]"
                );
                std::process::exit(2);
            }
        }
    }
    let Some(server) = server else {
        println!("vmseal-agent: error: no --server IP:PORT");
        std::process::exit(2);
    };
    let run = || -> Result<Outcome, String> {
        let eventlog =
            std::fs::read(&eventlog_path).map_err(|e| format!("{eventlog_path}: {e}"))?;
        let mut tpm = Tpm::open(tpm_spec.as_deref())?;
        attest(&server, &policy, &mut tpm, &eventlog)
    };
    match run() {
        Ok(Outcome::Released(digest)) => {
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            println!("vmseal-agent: secret released sha256={hex}");
        }
        Ok(Outcome::Refused(reason)) => {
            println!("vmseal-agent: refused: {reason}");
            std::process::exit(1);
        }
        Err(e) => {
            println!("vmseal-agent: error: {e}");
            std::process::exit(2);
        }
    }
}
