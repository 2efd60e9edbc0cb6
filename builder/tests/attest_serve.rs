//! `vmseal attest serve`, the key-release server, against appliances played by swtpm +
//! tpm2-tools: `tpm2_createek`, `tpm2_createak`, the PCRs extended with a real prediction's
//! events (or a real OVMF log), `tpm2_quote`, and `tpm2_activatecredential` of what the server
//! sent. HTTP through `curl`. Oracles that are not vmseal: `tpm2_makecredential --tcti none`
//! (software) and `tpm2_activatecredential` (swtpm) for the credential scheme; the TPM itself
//! for every quote.

mod common;
use common::{Swtpm, ok, text, tool, vmseal};

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const PCRS: &str = "0,1,2,3,4,5,6,7,9,11,12,13";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .unwrap()
}

impl Swtpm {
    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn cmd(&self, tool_name: &str) -> Command {
        let mut c = Command::new(tool_name);
        c.current_dir(self.dir.path())
            .env("TPM2TOOLS_TCTI", format!("swtpm:port={}", self.port));
        c
    }

    /// Flush transient objects and sessions (swtpm has no resource manager).
    fn flush(&self) {
        for kind in ["-t", "-s"] {
            let _ = self.cmd("tpm2_flushcontext").arg(kind).output();
        }
    }

    fn run(&self, tool_name: &str, args: &[&str]) -> Output {
        let o = tool(self.cmd(tool_name).args(args));
        assert!(o.status.success(), "{tool_name} {args:?}: {}", text(&o));
        self.flush();
        o
    }

    /// An EK (`ek.ctx`, `ek.pub`) of `alg` (rsa, ecc) and an ECDSA AK under it (`ak.ctx`,
    /// `ak.pub`, `ak.name`).
    fn keys(&self, alg: &str) {
        self.run(
            "tpm2_createek",
            &["-c", "ek.ctx", "-G", alg, "-u", "ek.pub"],
        );
        self.run(
            "tpm2_createak",
            &[
                "-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u",
                "ak.pub", "-n", "ak.name",
            ],
        );
    }

    fn extend_log(&self, log: &[u8]) {
        let parsed = policies::eventlog::parse(log).expect("a valid log");
        for e in parsed.extended() {
            let d = e.digest(policies::tcg::HashAlg::SHA256).unwrap();
            self.run(
                "tpm2_pcrextend",
                &[&format!("{}:sha256={}", e.pcr, hex::encode(d))],
            );
        }
    }

    /// Quote `pcrs` for `nonce`; the evidence bundle with `log`.
    fn evidence(&self, pcrs: &str, nonce: &[u8], log: &[u8]) -> Value {
        self.run(
            "tpm2_quote",
            &[
                "-c",
                "ak.ctx",
                "-l",
                &format!("sha256:{pcrs}"),
                "-q",
                &hex::encode(nonce),
                "-m",
                "q.msg",
                "-s",
                "q.sig",
                "-g",
                "sha256",
            ],
        );
        let r = |f: &str| b64(&std::fs::read(self.path(f)).unwrap());
        json!({
            "format": 1,
            "quote": r("q.msg"),
            "signature": r("q.sig"),
            "ak": r("ak.pub"),
            "eventlog": b64(log),
            "nonce": b64(nonce),
        })
    }

    /// `tpm2_activatecredential` of the tpm2-tools blob `blob` with this TPM's AK and EK
    /// (the EK's policy: PolicySecret(TPM_RH_ENDORSEMENT)); the credential, or the error.
    fn activate(&self, blob: &[u8]) -> Result<Vec<u8>, String> {
        std::fs::write(self.path("cred.blob"), blob).unwrap();
        let _ = std::fs::remove_file(self.path("cred.out"));
        let steps = || -> Output {
            // No flush between these: the session must live until the activation.
            let o =
                tool(
                    self.cmd("tpm2_startauthsession")
                        .args(["--policy-session", "-S", "s.ctx"]),
                );
            if !o.status.success() {
                return o;
            }
            let o = tool(
                self.cmd("tpm2_policysecret")
                    .args(["-S", "s.ctx", "-c", "e"]),
            );
            if !o.status.success() {
                return o;
            }
            tool(self.cmd("tpm2_activatecredential").args([
                "-c",
                "ak.ctx",
                "-C",
                "ek.ctx",
                "-i",
                "cred.blob",
                "-o",
                "cred.out",
                "-P",
                "session:s.ctx",
            ]))
        };
        let o = steps();
        let _ = self.cmd("tpm2_flushcontext").arg("s.ctx").output();
        self.flush();
        if o.status.success() {
            Ok(std::fs::read(self.path("cred.out")).unwrap())
        } else {
            Err(text(&o))
        }
    }
}

/// Credential activation both ways: tpm2-tools' software MakeCredential and vmseal's are
/// accepted by swtpm's ActivateCredential, for an RSA and an ECC EK; vmseal's blob for
/// another AK, or activated in another TPM, is not.
#[test]
fn make_credential_is_accepted_by_tpm2_activatecredential_for_rsa_and_ecc_eks() {
    let other = Swtpm::start();
    other.keys("rsa");
    for alg in ["rsa", "ecc"] {
        let tpm = Swtpm::start();
        tpm.keys(alg);
        let ek_pub = std::fs::read(tpm.path("ek.pub")).unwrap();
        let ak_name = std::fs::read(tpm.path("ak.name")).unwrap();
        assert_eq!(ak_name.len(), 34, "{alg}: a SHA-256 Name");
        // The oracle's blob works on this TPM …
        let cred = [0x5au8; 32];
        std::fs::write(tpm.path("oracle.in"), cred).unwrap();
        let o = tool(tpm.cmd("tpm2_makecredential").args([
            "--tcti",
            "none",
            "-e",
            "ek.pub",
            "-s",
            "oracle.in",
            "-n",
            &hex::encode(&ak_name),
            "-o",
            "oracle.blob",
        ]));
        ok(&o);
        let oracle = std::fs::read(tpm.path("oracle.blob")).unwrap();
        assert_eq!(tpm.activate(&oracle).unwrap(), cred, "{alg}: oracle");
        // … and so does vmseal's, with the same layout.
        let ek = vmseal::attest::credential::Ek::parse(&ek_pub).unwrap();
        assert_eq!(
            ek.kind(),
            if alg == "rsa" { "rsa-2048" } else { "ecc-p256" }
        );
        let cred: [u8; 32] = std::array::from_fn(|i| i as u8);
        let mine = vmseal::attest::credential::make_credential(&ek, &ak_name, &cred).unwrap();
        let blob = mine.tpm2_tools_blob();
        assert_eq!(
            blob.len(),
            oracle.len(),
            "{alg}: same sizes as tpm2_makecredential"
        );
        assert_eq!(blob[..8], oracle[..8]);
        assert_eq!(
            tpm.activate(&blob).unwrap(),
            cred,
            "{alg}: vmseal's credential"
        );
        // For another AK's Name: the TPM refuses (the outer HMAC binds the Name).
        let mut wrong = ak_name.clone();
        wrong[5] ^= 1;
        let bad = vmseal::attest::credential::make_credential(&ek, &wrong, &cred).unwrap();
        let e = tpm.activate(&bad.tpm2_tools_blob()).unwrap_err();
        assert!(e.contains("integrity") || e.contains("0x"), "{alg}: {e}");
        // A changed byte of the identity object: refused.
        let mut flipped = blob.clone();
        let at = blob.len() / 3;
        flipped[at] ^= 0x80;
        assert!(tpm.activate(&flipped).is_err(), "{alg}: flipped byte");
        // Another TPM (its own EK and AK) cannot activate it.
        if alg == "rsa" {
            assert!(other.activate(&blob).is_err(), "another TPM");
        }
    }
}

/// `vmseal attest serve` as a child process; killed on drop.
struct Serve {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Serve {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let log = dir.join(format!("serve-{}.log", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmseal"))
            .args(["attest", "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "{line:?}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        eprintln!("vmseal attest serve bound {addr}");
        Serve { child, addr, log }
    }

    /// `curl` a request; (status, JSON body).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
        if body.is_some() {
            c.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
            ]);
            c.stdin(Stdio::piped());
        }
        c.arg(format!("http://{}{path}", self.addr));
        c.stdout(Stdio::piped());
        let mut child = c.spawn().expect("curl (scripts/setup.sh installs it)");
        if let Some(b) = body {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b.to_string().as_bytes())
                .unwrap();
        }
        let o = child.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let (json_text, code) = out.rsplit_once('\n').unwrap();
        (
            code.parse().unwrap_or(0),
            serde_json::from_str(json_text).unwrap_or(Value::Null),
        )
    }

    fn nonce(&self, policy: &str) -> Vec<u8> {
        let (s, v) = self.call("POST", "/v1/nonce", Some(&json!({ "policy": policy })));
        assert_eq!(s, 200, "{v}");
        unb64(&v["nonce"])
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The released secret, opened as the appliance does: activate, then AES-256-GCM.
fn open_secret(tpm: &Swtpm, reply: &Value, nonce: &[u8]) -> Result<Vec<u8>, String> {
    let cred = tpm.activate(&unb64(&reply["credential"]["tpm2_tools_blob"]))?;
    vmseal::attest::credential::unwrap_secret(
        &cred,
        nonce,
        &unb64(&reply["secret"]["iv"]),
        &unb64(&reply["secret"]["ciphertext"]),
    )
}

/// `dir/NAME/out/app.pcrs.json` of the sample appliance with `cmdline`.
fn build(dir: &Path, name: &str, cmdline: &str) -> PathBuf {
    let d = dir.join(name);
    common::sample_appliance(&d, "hello serve", "");
    let m = d.join("vmseal.toml");
    let t = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        t.replace("cmdline = \"x\"", &format!("cmdline = \"{cmdline}\"")),
    )
    .unwrap();
    ok(&vmseal(
        &["build", "vmseal.toml", "--out", "out", "--unsigned"],
        &d,
    ));
    d.join("out/app.pcrs.json")
}

/// The binary log of a prediction's events (what the firmware and the stub will log).
fn predicted_log(pred: &Path) -> Vec<u8> {
    let file = vmseal::measure::pcrs_json::PcrsFile::load(pred).unwrap();
    let banks: Vec<_> = file
        .banks
        .iter()
        .filter_map(|b| policies::tcg::HashAlg::from_name(b))
        .collect();
    policies::eventlog::EventLog {
        spec_id: policies::eventlog::SpecId::edk2(&banks),
        events: file.logged_events().into_iter().map(|e| e.event).collect(),
    }
    .serialize()
}

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/ovmf-debian-2022.11"
    ))
}

/// Write `fw.pcrs.json` into `dir`: the firmware-only policy of a real OVMF boot with Secure
/// Boot off (`vmseal eventlog show --json` of its log). Returns that log's path.
fn firmware_policy(dir: &Path) -> PathBuf {
    let sb_off = fixtures().join("eventlog-sb-off.bin");
    let o = vmseal(
        &["eventlog", "show", &sb_off.display().to_string(), "--json"],
        dir,
    );
    ok(&o);
    std::fs::write(dir.join("fw.pcrs.json"), &o.stdout).unwrap();
    sb_off
}

#[test]
fn the_server_releases_the_secret_only_to_the_tpm_that_booted_as_predicted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pred_a = build(dir, "a", "console=on mode=a");
    let pred_b = build(dir, "b", "console=on mode=b");
    // The firmware-only policy of a Secure Boot off boot (a real OVMF log).
    let sb_off = firmware_policy(dir);
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("a", b"secret of appliance a: 4f1c9e".to_vec()),
        ("b", b"secret of appliance b: 77d0aa".to_vec()),
        ("fw", b"secret of the firmware policy: 0b0e".to_vec()),
    ];
    for (n, s) in &secrets {
        std::fs::write(dir.join(format!("{n}.secret")), s).unwrap();
    }
    let (pa, pb) = (
        format!("a={}", pred_a.display()),
        format!("b={}", pred_b.display()),
    );
    let server = Serve::start(
        dir,
        &[
            "--policy",
            &pa,
            "--secret",
            "a.secret",
            "--policy",
            &pb,
            "--secret",
            "b.secret",
            "--policy",
            "fw.pcrs.json",
            "--secret",
            "fw.secret",
        ],
    );
    let (s, v) = server.call("GET", "/v1/policies", None);
    assert_eq!((s, v), (200, json!({"policies": ["a", "b", "fw"]})));

    // Appliance B: its TPM holds what build b predicts.
    let log_b = predicted_log(&pred_b);
    let tpm = Swtpm::start();
    tpm.keys("rsa");
    tpm.extend_log(&log_b);
    let ek = b64(&std::fs::read(tpm.path("ek.pub")).unwrap());
    let nonce = server.nonce("b");
    assert_eq!(nonce.len(), 32);
    let request = json!({"policy": "b", "evidence": tpm.evidence(PCRS, &nonce, &log_b), "ek": ek});
    let (s, v) = server.call("POST", "/v1/attest", Some(&request));
    assert_eq!(s, 200, "{v}\n{}", server.log());
    assert_eq!(v["released"], true);
    let secret = open_secret(&tpm, &v, &nonce).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&secret)),
        hex::encode(Sha256::digest(&secrets[1].1)),
        "the secret of b"
    );
    assert!(!v.to_string().contains("77d0aa"), "never in clear");

    // The same evidence again: the nonce is used up.
    let (s, v) = server.call("POST", "/v1/attest", Some(&request));
    assert_eq!(s, 403, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("already used (a replay)"),
        "{v}"
    );
    assert!(v.get("secret").is_none());

    // Appliance B's evidence for policy a (built with another cmdline): refused, naming
    // PCR 11 and the .cmdline section.
    let nonce = server.nonce("a");
    let request = json!({"policy": "a", "evidence": tpm.evidence(PCRS, &nonce, &log_b), "ek": ek});
    let (s, v) = server.call("POST", "/v1/attest", Some(&request));
    assert_eq!(s, 403, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("PCR 11: section .cmdline differs"),
        "{reason}"
    );
    assert!(reason.starts_with("events: PCR 4"), "{reason}");
    // A nonce of policy a used for policy b: refused (and used up).
    let nonce = server.nonce("a");
    let request = json!({"policy": "b", "evidence": tpm.evidence(PCRS, &nonce, &log_b), "ek": ek});
    let (s, v) = server.call("POST", "/v1/attest", Some(&request));
    assert_eq!(s, 403, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("issued for policy \"a\""),
        "{v}"
    );
    // Quoting fewer PCRs than the policy predicts: refused.
    let nonce = server.nonce("b");
    let request = json!({"policy": "b", "evidence": tpm.evidence("0,1,2,3,4,5,6,7", &nonce, &log_b), "ek": ek});
    let (s, v) = server.call("POST", "/v1/attest", Some(&request));
    assert_eq!(s, 403, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("predicted but not quoted"),
        "{v}"
    );

    // A different TPM: TPM B booted the same and quotes with its AK, but the EK sent is TPM
    // A's. The quote matches, so the server answers — with a credential only TPM A's EK can
    // open, for TPM B's AK, which TPM A does not hold: neither TPM can activate it.
    let tpm_b = Swtpm::start();
    tpm_b.keys("ecc");
    tpm_b.extend_log(&log_b);
    let nonce = server.nonce("b");
    let request =
        json!({"policy": "b", "evidence": tpm_b.evidence(PCRS, &nonce, &log_b), "ek": ek});
    let (s, v) = server.call("POST", "/v1/attest", Some(&request));
    assert_eq!(s, 200, "{v}");
    let in_a = open_secret(&tpm, &v, &nonce).unwrap_err();
    let in_b = open_secret(&tpm_b, &v, &nonce).unwrap_err();
    eprintln!("TPM A: {in_a}\nTPM B: {in_b}");

    // A boot with a foreign Secure Boot store (keys enrolled) for the Secure Boot off
    // policy: refused naming PCR 7.
    let tpm_sb = Swtpm::start();
    tpm_sb.keys("rsa");
    let sb_on = std::fs::read(fixtures().join("eventlog-sb-on.bin")).unwrap();
    tpm_sb.extend_log(&sb_on);
    let ek_sb = b64(&std::fs::read(tpm_sb.path("ek.pub")).unwrap());
    let nonce = server.nonce("fw");
    let request =
        json!({"policy": "fw", "evidence": tpm_sb.evidence(PCRS, &nonce, &sb_on), "ek": ek_sb});
    let (s, v) = server.call("POST", "/v1/attest", Some(&request));
    assert_eq!(s, 403, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("events: PCR 7: SecureBoot differs"),
        "{reason}"
    );
    // … and the Secure Boot off log, in a TPM that measured it, gets the fw secret.
    let tpm_off = Swtpm::start();
    tpm_off.keys("ecc");
    let off = std::fs::read(&sb_off).unwrap();
    tpm_off.extend_log(&off);
    let nonce = server.nonce("fw");
    let request = json!({"policy": "fw", "evidence": tpm_off.evidence(PCRS, &nonce, &off), "ek": b64(&std::fs::read(tpm_off.path("ek.pub")).unwrap())});
    let (s, v) = server.call("POST", "/v1/attest", Some(&request));
    assert_eq!(s, 200, "{v}");
    assert_eq!(open_secret(&tpm_off, &v, &nonce).unwrap(), secrets[2].1);

    // The log: one line per decision, with the client, the policy and the reason; never a
    // secret.
    let log = server.log();
    for want in [
        "127.0.0.1:",
        "policy=b released",
        "policy=b refused: nonce: not issued by this server, or already used (a replay)",
        "policy=a refused: events: PCR 4",
        "PCR 11: section .cmdline differs",
        "policy=fw refused: events: PCR 7: SecureBoot differs",
    ] {
        assert!(log.contains(want), "{want:?} not in\n{log}");
    }
    for (_, s) in &secrets {
        assert!(
            !log.contains(&String::from_utf8_lossy(s).to_string()),
            "{log}"
        );
        assert!(!log.contains(&b64(s)));
    }
}

/// Send raw bytes to the server; whatever comes back (possibly nothing).
fn raw(addr: &str, bytes: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(20)));
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn garbage_and_floods_leave_the_server_serving_and_kill_9_leaves_it_restartable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    firmware_policy(dir);
    std::fs::write(dir.join("fw.secret"), b"flood-proof secret").unwrap();
    let args = ["--policy", "fw.pcrs.json", "--secret", "fw.secret"];
    let server = Serve::start(dir, &args);

    // Bad requests: each a 4xx with a JSON error, never a secret.
    let cases: Vec<(&str, &str, Option<Value>, u16)> = vec![
        ("GET", "/", None, 404),
        ("GET", "/v1/nonce", None, 405),
        ("POST", "/v1/nonce", Some(json!("text")), 400),
        ("POST", "/v1/nonce", Some(json!({"policy": 7})), 400),
        ("POST", "/v1/nonce", Some(json!({"policy": "nope"})), 404),
        ("POST", "/v1/attest", Some(json!({"policy": "fw"})), 400),
        (
            "POST",
            "/v1/attest",
            Some(json!({"policy": "fw", "evidence": {}})),
            400,
        ),
        (
            "POST",
            "/v1/attest",
            Some(
                json!({"policy": "fw", "evidence": {"quote": "AAAA", "signature": "AAAA", "ak": "AAAA", "eventlog": "AAAA", "nonce": "AAAA"}}),
            ),
            403,
        ),
    ];
    for (method, path, body, want) in &cases {
        let (s, v) = server.call(method, path, body.as_ref());
        assert_eq!(s, *want, "{method} {path} {body:?}: {v}");
        assert!(v.get("secret").is_none());
    }
    for bytes in [
        &b"\x00\xff garbage\r\n\r\n"[..],
        b"POST /v1/attest HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{",
        b"POST /v1/attest HTTP/1.1\r\nContent-Length: 5\r\n\r\n{\"a\":",
        b"GET /v1/\xff\xfe HTTP/1.1\r\n\r\n",
    ] {
        let _ = raw(&server.addr, bytes);
    }
    // A body over the limit: 413.
    let big = format!(
        "POST /v1/attest HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        vmseal::attest::serve::MAX_BODY_BYTES + 1
    );
    let answer = raw(&server.addr, big.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    // A Content-Length larger than memory: refused, not allocated.
    let huge = "POST /v1/attest HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{";
    let answer = raw(&server.addr, huge.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");

    // 1000 bogus requests from 50 clients at once, while an appliance asks for a nonce.
    let addr = server.addr.clone();
    let flood: Vec<_> = (0..50)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let body = format!("{{\"policy\": \"fw\", \"evidence\": \"{t}-{i}\"}}");
                    let req = format!(
                        "POST /v1/attest HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = raw(&addr, req.as_bytes());
                }
            })
        })
        .collect();
    let (s, v) = server.call("POST", "/v1/nonce", Some(&json!({"policy": "fw"})));
    for f in flood {
        f.join().unwrap();
    }
    assert_eq!(s, 200, "{v}");
    let (s, _) = server.call("POST", "/v1/nonce", Some(&json!({"policy": "fw"})));
    assert_eq!(s, 200, "still serving after the flood");
    let log = server.log();
    assert!(!log.contains("flood-proof secret"));

    // kill -9 while requests are in flight: nothing was written next to the inputs; the
    // same command starts again.
    let before: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let busy: Vec<_> = (0..8)
        .map(|_| {
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                // Until the server is gone (an empty answer), so the kill lands mid-stream.
                for _ in 0..1_000_000 {
                    let body = "{\"policy\": \"fw\"}";
                    let req = format!(
                        "POST /v1/nonce HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    if raw(&addr, req.as_bytes()).is_empty() {
                        break;
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut server = server;
    let _ = Command::new("kill")
        .args(["-9", &server.child.id().to_string()])
        .status();
    for b in busy {
        b.join().unwrap();
    }
    let _ = server.child.wait();
    let again = Serve::start(dir, &args);
    let (s, _) = again.call("POST", "/v1/nonce", Some(&json!({"policy": "fw"})));
    assert_eq!(s, 200);
    let after: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // Only the test's own log files are new.
    for f in after.iter().filter(|f| !before.contains(f)) {
        assert!(f.to_string_lossy().starts_with("serve-"), "{f:?}");
    }
}

#[test]
fn bad_command_lines_are_exit_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("s"), b"x").unwrap();
    std::fs::write(dir.join("p.pcrs.json"), b"{not json").unwrap();
    for (args, want) in [
        (
            vec!["--policy", "missing.pcrs.json", "--secret", "s"],
            "missing.pcrs.json",
        ),
        (
            vec!["--policy", "p.pcrs.json", "--secret", "s"],
            "p.pcrs.json",
        ),
        (
            vec!["--policy", "p.pcrs.json", "--secret", "s", "--secret", "s"],
            "--secret",
        ),
    ] {
        let mut all = vec!["attest", "serve", "--listen", "127.0.0.1:0"];
        all.extend(args);
        let o = vmseal(&all, dir);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{err}");
    }
}

/// The appliance's agent (`images/agent`, built by `images/linux/build.sh`) on the host: raw
/// TPM2 commands to a swtpm's command port instead of `/dev/tpmrm0`. Its EK is the one
/// `tpm2_createek -G ecc` makes (same Name); it gets the secret for the log the TPM measured
/// and is refused for another policy.
#[test]
fn the_agent_gets_the_secret_with_raw_tpm_commands() {
    let agent = common::linux_example()
        .join("../agent/target/x86_64-unknown-linux-musl/release/vmseal-agent");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sb_off = firmware_policy(dir);
    let pred_a = build(dir, "a", "console=on mode=a");
    let secret = b"secret for the agent".to_vec();
    std::fs::write(dir.join("fw.secret"), &secret).unwrap();
    let pa = format!("a={}", pred_a.display());
    let server = Serve::start(
        dir,
        &[
            "--policy",
            "fw.pcrs.json",
            "--secret",
            "fw.secret",
            "--policy",
            &pa,
            "--secret",
            "fw.secret",
        ],
    );
    let tpm = Swtpm::start();
    tpm.extend_log(&std::fs::read(&sb_off).unwrap());
    let run = |policy: &str| {
        tool(
            Command::new(&agent)
                .args(["--server", &server.addr, "--policy", policy])
                .arg("--tpm")
                .arg(format!("tcp:127.0.0.1:{}", tpm.port))
                .arg("--eventlog")
                .arg(&sb_off),
        )
    };
    let o = run("fw");
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o), server.log());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!(
            "vmseal-agent: secret released sha256={}",
            hex::encode(Sha256::digest(&secret))
        )
    );
    let o = run("a");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("vmseal-agent: refused: events: PCR "),
        "{}",
        text(&o)
    );
    // The EK the agent created is tpm2_createek's ECC EK.
    tpm.run(
        "tpm2_createek",
        &["-c", "ek.ctx", "-G", "ecc", "-u", "ek.pub"],
    );
    let o = tpm.run("tpm2_readpublic", &["-c", "ek.ctx"]);
    let name = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("name: ").map(str::to_string))
        .unwrap();
    assert!(
        server.log().contains(&format!("ek ecc-p256 {name}")),
        "{name}\n{}",
        server.log()
    );
}
