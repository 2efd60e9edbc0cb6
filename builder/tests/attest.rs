//! `vmseal attest verify` on real quotes: swtpm (a TCP server) + tpm2-tools make an EK, ECC
//! and RSA attestation keys, extend the PCRs with every event of a real event log (OVMF's,
//! from `shared/fixtures`, or a `vmseal build` prediction's), and quote them. The oracles:
//! the TPM's own PCR values (read back with `tpm2_pcrread`, and the fixture's values read in
//! the booted guest), `tpm2_checkquote` (the signature, the nonce, the PCR digest) and
//! `tpm2_eventlog` (the replay) — none of them vmseal. Valid quotes must match and tampered
//! ones fail as `tpm2_checkquote` fails; a log of another build is refused naming the PCR and
//! the event as `pcr diff` does; 30 malformed inputs are exit 2 with one line.

mod common;
use common::{Swtpm, ok, text, tool, vmseal};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::Value;

const NONCE: &str = "5ea1ed0a7e57ab1e00112233445566778899aabbccddeeff";
const OTHER_NONCE: &str = "5ea1ed0a7e57ab1e00112233445566778899aabbccddee00";

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/ovmf-debian-2022.11"
    ))
}

impl Swtpm {
    /// A tpm2-tools command against this TPM (in `dir`).
    fn cmd(&self, tool_name: &str, dir: &Path) -> Command {
        let mut c = Command::new(tool_name);
        c.current_dir(dir)
            .env("TPM2TOOLS_TCTI", format!("swtpm:port={}", self.port));
        c
    }

    /// Run a tpm2-tools command that must succeed, then flush its transient objects (swtpm
    /// has no resource manager: three loaded keys fill it).
    fn run(&self, dir: &Path, tool_name: &str, args: &[&str]) -> Output {
        let o = tool(self.cmd(tool_name, dir).args(args));
        assert!(o.status.success(), "{tool_name} {args:?}: {}", text(&o));
        for kind in ["-t", "-s"] {
            let _ = self.cmd("tpm2_flushcontext", dir).arg(kind).output();
        }
        o
    }

    /// Extend the PCRs with the sha256 digest of every event of the binary log `log`.
    fn extend_log(&self, dir: &Path, log: &[u8]) {
        let parsed = policies::eventlog::parse(log).expect("a valid log");
        for e in parsed.extended() {
            let d = e
                .digest(policies::tcg::HashAlg::SHA256)
                .expect("a sha256 digest");
            let spec = format!("{}:sha256={}", e.pcr, hex::encode(d));
            self.run(dir, "tpm2_pcrextend", &[&spec]);
        }
    }

    /// An EK (RSA) in `dir/ek.ctx`.
    fn ek(&self, dir: &Path) {
        self.run(
            dir,
            "tpm2_createek",
            &["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"],
        );
    }

    /// An AK under the EK: `dir/NAME.ctx` and its TPM2B_PUBLIC `dir/NAME.pub`.
    fn ak(&self, dir: &Path, name: &str, alg: &str, scheme: &str) {
        let ctx = format!("{name}.ctx");
        let public = format!("{name}.pub");
        self.run(
            dir,
            "tpm2_createak",
            &[
                "-C", "ek.ctx", "-c", &ctx, "-G", alg, "-g", "sha256", "-s", scheme, "-u", &public,
            ],
        );
    }

    /// `tpm2_quote` with AK `name` over `pcrs` (sha256) for `nonce`: `dir/PREFIX.msg`,
    /// `.sig`, `.pcrs`.
    fn quote(&self, dir: &Path, name: &str, pcrs: &str, nonce: &str, prefix: &str) {
        let ctx = format!("{name}.ctx");
        // An RSA key whose scheme is RSAPSS is named by its key name `pss` here.
        let scheme: &[&str] = if name == "pss" {
            &["--scheme", "rsapss"]
        } else {
            &[]
        };
        let (m, s, p) = (
            format!("{prefix}.msg"),
            format!("{prefix}.sig"),
            format!("{prefix}.pcrs"),
        );
        self.run(
            dir,
            "tpm2_quote",
            &[
                "-c",
                &ctx,
                "-l",
                &format!("sha256:{pcrs}"),
                "-q",
                nonce,
                "-m",
                &m,
                "-s",
                &s,
                "-o",
                &p,
                "-g",
                "sha256",
            ]
            .iter()
            .chain(scheme)
            .copied()
            .collect::<Vec<_>>(),
        );
    }
}

/// `tpm2_checkquote`'s exit status on the files of `prefix` with AK `ak` and `nonce`.
fn checkquote(dir: &Path, ak: &str, prefix: &str, nonce: &str) -> bool {
    tool(
        Command::new("tpm2_checkquote")
            .current_dir(dir)
            .args(["-u", ak])
            .args(["-m", &format!("{prefix}.msg")])
            .args(["-s", &format!("{prefix}.sig")])
            .args(["-f", &format!("{prefix}.pcrs")])
            .args(["-g", "sha256", "-q", nonce]),
    )
    .status
    .success()
}

/// `vmseal attest verify` on separate files.
fn verify(dir: &Path, pred: &str, ak: &str, prefix: &str, log: &Path, extra: &[&str]) -> Output {
    let msg = format!("{prefix}.msg");
    let sig = format!("{prefix}.sig");
    let log = log.display().to_string();
    let mut args = vec![
        "attest",
        "verify",
        pred,
        "--quote",
        &msg,
        "--signature",
        &sig,
        "--ak",
        ak,
        "--eventlog",
        &log,
    ];
    if !extra.contains(&"--nonce") {
        args.extend(["--nonce", NONCE]);
    }
    args.extend(extra);
    vmseal(&args, dir)
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn bundle(dir: &Path, ak: &str, prefix: &str, log: &Path, nonce: &str) -> Value {
    let b = |p: &Path| base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap());
    serde_json::json!({
        "quote": b(&dir.join(format!("{prefix}.msg"))),
        "signature": b(&dir.join(format!("{prefix}.sig"))),
        "ak": b(&dir.join(ak)),
        "eventlog": b(log),
        "nonce": base64::engine::general_purpose::STANDARD.encode(hex::decode(nonce).unwrap()),
    })
}

/// The sha256 PCR values `tpm2_pcrread` reports.
fn pcrread(tpm: &Swtpm, dir: &Path, pcrs: &str) -> Vec<(u32, String)> {
    let o = tpm.run(dir, "tpm2_pcrread", &[&format!("sha256:{pcrs}")]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let (i, v) = l.trim().split_once(':')?;
            let v = v.trim().strip_prefix("0x")?;
            Some((i.trim().parse().ok()?, v.to_lowercase()))
        })
        .collect()
}

/// The fixture's sha256 PCRs (`PCR sha256 N HEX`, read in the booted guest).
fn fixture_pcrs(file: &str) -> Vec<(u32, String)> {
    std::fs::read_to_string(fixtures().join(file))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "PCR" && w.next()? == "sha256")
                .then_some(())
                .and_then(|()| Some((w.next()?.parse().ok()?, w.next()?.to_lowercase())))
        })
        .collect()
}

/// The sha256 PCRs `tpm2_eventlog` computes from `log`.
fn tpm2_eventlog_pcrs(log: &Path) -> Vec<(u32, String)> {
    let o = tool(Command::new("tpm2_eventlog").arg(log));
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let mut in_sha256 = false;
    let mut values = Vec::new();
    for l in out.lines().skip_while(|l| !l.starts_with("pcrs:")) {
        let t = l.trim();
        if t.ends_with(':') && !t.contains(' ') {
            in_sha256 = t == "sha256:";
            continue;
        }
        if in_sha256 && let Some((i, v)) = t.split_once(':') {
            values.push((
                i.trim().parse().unwrap(),
                v.trim().trim_start_matches("0x").to_lowercase(),
            ));
        }
    }
    values
}

#[test]
fn real_quotes_match_and_tampered_ones_fail_as_tpm2_checkquote_says() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = fixtures().join("eventlog-sb-off.bin");
    let tpm = Swtpm::start();
    tpm.ek(dir);
    tpm.ak(dir, "ecc", "ecc", "ecdsa");
    tpm.ak(dir, "rsa", "rsa", "rsassa");
    tpm.ak(dir, "pss", "rsa", "rsapss");
    tpm.ak(dir, "other", "ecc", "ecdsa");
    tpm.extend_log(dir, &std::fs::read(&log).unwrap());

    // The TPM now holds the real boot's PCRs (as the guest read them).
    let want = fixture_pcrs("pcrs-sb-off.txt");
    let tpm_values = pcrread(&tpm, dir, "0,1,2,3,4,5,6,7");
    assert_eq!(tpm_values.len(), 8, "{tpm_values:?}");
    for (i, v) in &tpm_values {
        assert!(
            want.contains(&(*i, v.clone())),
            "PCR {i}: TPM {v}, fixture {want:?}"
        );
    }
    // The prediction: the log itself, as vmseal eventlog show --json writes it.
    let o = vmseal(
        &["eventlog", "show", &log.display().to_string(), "--json"],
        dir,
    );
    ok(&o);
    std::fs::write(dir.join("pred.json"), &o.stdout).unwrap();

    for (ak, prefix) in [("ecc", "q-ecc"), ("rsa", "q-rsa"), ("pss", "q-pss")] {
        tpm.quote(dir, ak, "0,1,2,3,4,5,6,7", NONCE, prefix);
        let public = format!("{ak}.pub");
        if ak == "pss" {
            // tpm2_checkquote 5.4 rejects swtpm's RSAPSS quotes (it expects another salt
            // length than the hash size swtpm uses); openssl checks them with the salt
            // length recovered from the signature.
            tpm.run(
                dir,
                "tpm2_readpublic",
                &["-c", "pss.ctx", "-f", "pem", "-o", "pss.pem"],
            );
            let sig = std::fs::read(dir.join("q-pss.sig")).unwrap();
            std::fs::write(dir.join("q-pss.raw"), &sig[6..]).unwrap();
            let o = tool(
                Command::new("openssl")
                    .current_dir(dir)
                    .args(["dgst", "-sha256", "-verify", "pss.pem"])
                    .args([
                        "-sigopt",
                        "rsa_padding_mode:pss",
                        "-sigopt",
                        "rsa_pss_saltlen:-2",
                    ])
                    .args(["-signature", "q-pss.raw", "q-pss.msg"]),
            );
            ok(&o);
            eprintln!(
                "RSAPSS: openssl verifies, tpm2_checkquote says {}",
                checkquote(dir, &public, prefix, NONCE)
            );
        } else {
            assert!(checkquote(dir, &public, prefix, NONCE), "{prefix}: oracle");
        }
        let o = verify(dir, "pred.json", &public, prefix, &log, &["--json"]);
        assert_eq!(o.status.code(), Some(0), "{prefix}: {}", text(&o));
        let v = json(&o);
        assert_eq!(v["matched"], true, "{v}");
        assert_eq!(
            v["quote"]["selection"][0]["pcrs"].as_array().unwrap().len(),
            8
        );
        assert!(
            v["ak"]["tpm"]["restricted_signing"].as_bool().unwrap(),
            "{v}"
        );
        // vmseal's replay of the quoted PCRs = tpm2_eventlog's = the TPM's.
        let oracle = tpm2_eventlog_pcrs(&log);
        for (i, value) in &tpm_values {
            assert_eq!(
                v["quoted_pcrs"]["sha256"][i.to_string()],
                value.as_str(),
                "PCR {i}"
            );
            assert!(
                oracle.contains(&(*i, value.clone())),
                "tpm2_eventlog PCR {i}"
            );
        }
        // The same evidence as one bundle.
        let b = bundle(dir, &public, prefix, &log, NONCE);
        std::fs::write(dir.join("bundle.json"), b.to_string()).unwrap();
        let o = vmseal(
            &[
                "attest",
                "verify",
                "pred.json",
                "--evidence",
                "bundle.json",
                "--nonce",
                NONCE,
            ],
            dir,
        );
        assert_eq!(o.status.code(), Some(0), "{prefix} bundle: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("match: "),
            "{}",
            text(&o)
        );
    }
    // The AK as PEM and DER public keys.
    for (flag, file) in [("pem", "ecc.pem"), ("der", "ecc.der")] {
        tpm.run(
            dir,
            "tpm2_readpublic",
            &["-c", "ecc.ctx", "-f", flag, "-o", file],
        );
        let o = verify(dir, "pred.json", file, "q-ecc", &log, &[]);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", text(&o));
    }

    // Tampering: both vmseal (exit 1, naming the check) and tpm2_checkquote reject.
    let msg = std::fs::read(dir.join("q-ecc.msg")).unwrap();
    let sig = std::fs::read(dir.join("q-ecc.sig")).unwrap();
    let copy = |prefix: &str, m: &[u8], s: &[u8]| {
        std::fs::write(dir.join(format!("{prefix}.msg")), m).unwrap();
        std::fs::write(dir.join(format!("{prefix}.sig")), s).unwrap();
        std::fs::copy(dir.join("q-ecc.pcrs"), dir.join(format!("{prefix}.pcrs"))).unwrap();
    };
    let mut m = msg.clone();
    let at = m.len() - 1; // the last byte of pcrDigest: still a well-formed quote
    m[at] ^= 1;
    copy("t-msg", &m, &sig);
    let mut s = sig.clone();
    let last = s.len() - 1; // the last byte of the ECDSA s
    s[last] ^= 0x80;
    copy("t-sig", &msg, &s);
    let rsa_msg = std::fs::read(dir.join("q-rsa.msg")).unwrap();
    let mut rsa_sig = std::fs::read(dir.join("q-rsa.sig")).unwrap();
    let mid = rsa_sig.len() / 2;
    rsa_sig[mid] ^= 4;
    std::fs::write(dir.join("t-rsa.msg"), &rsa_msg).unwrap();
    std::fs::write(dir.join("t-rsa.sig"), &rsa_sig).unwrap();
    std::fs::copy(dir.join("q-rsa.pcrs"), dir.join("t-rsa.pcrs")).unwrap();
    let cases: [(&str, &str, &str, &str, &str); 5] = [
        ("flipped quote byte", "ecc.pub", "t-msg", NONCE, "signature"),
        (
            "flipped signature byte",
            "ecc.pub",
            "t-sig",
            NONCE,
            "signature",
        ),
        (
            "flipped RSA signature byte",
            "rsa.pub",
            "t-rsa",
            NONCE,
            "signature",
        ),
        ("wrong nonce", "ecc.pub", "q-ecc", OTHER_NONCE, "nonce"),
        (
            "another AK of the same TPM",
            "other.pub",
            "q-ecc",
            NONCE,
            "signature",
        ),
    ];
    for (what, ak, prefix, nonce, check) in cases {
        assert!(
            !checkquote(dir, ak, prefix, nonce),
            "{what}: tpm2_checkquote accepted it"
        );
        let o = verify(
            dir,
            "pred.json",
            ak,
            prefix,
            &log,
            &["--nonce", nonce, "--json"],
        );
        assert_eq!(o.status.code(), Some(1), "{what}: {}", text(&o));
        let v = json(&o);
        assert_eq!(v["matched"], false);
        let reason = v["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("{check}: ")),
            "{what}: {reason}"
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
    }
    // A direct quote checked as a hypervisor-mode one: the nonce does not bind the caller.
    let o = verify(
        dir,
        "pred.json",
        "ecc.pub",
        "q-ecc",
        &log,
        &["--caller", "hello"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("it is the bare nonce"), "{}", text(&o));
    // A log of another boot (Secure Boot on) does not replay to the quoted digest.
    let sb_on = fixtures().join("eventlog-sb-on.bin");
    let o = verify(dir, "pred.json", "ecc.pub", "q-ecc", &sb_on, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        json(&o)["reason"]
            .as_str()
            .unwrap()
            .starts_with("pcr-digest: "),
        "{}",
        text(&o)
    );
}

/// `dir/vmseal.toml`: the sample appliance with the guest command line `cmdline`.
fn appliance(dir: &Path, cmdline: &str) {
    common::sample_appliance(dir, "hello attest", "");
    let m = dir.join("vmseal.toml");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        text.replace("cmdline = \"x\"", &format!("cmdline = \"{cmdline}\"")),
    )
    .unwrap();
}

#[test]
fn a_build_prediction_matches_its_boot_and_another_cmdline_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (name, cmdline) in [("a", "console=on mode=a"), ("b", "console=on mode=b")] {
        appliance(&dir.join(name), cmdline);
        let o = vmseal(
            &["build", "vmseal.toml", "--out", "out", "--unsigned"],
            &dir.join(name),
        );
        ok(&o);
    }
    let pred_a = dir.join("a/out/app.pcrs.json");
    let pred_b = dir.join("b/out/app.pcrs.json");
    // The boot log of build b: its predicted events as a binary TCG2 log (what the firmware
    // and the stub will log), extended into a fresh TPM that then quotes them.
    let file = vmseal::measure::pcrs_json::PcrsFile::load(&pred_b).unwrap();
    let banks: Vec<_> = file
        .banks
        .iter()
        .filter_map(|b| policies::tcg::HashAlg::from_name(b))
        .collect();
    let log = policies::eventlog::EventLog {
        spec_id: policies::eventlog::SpecId::edk2(&banks),
        events: file.logged_events().into_iter().map(|e| e.event).collect(),
    }
    .serialize();
    let log_path = dir.join("boot-b.bin");
    std::fs::write(&log_path, &log).unwrap();
    let tpm = Swtpm::start();
    tpm.ek(dir);
    tpm.ak(dir, "ak", "ecc", "ecdsa");
    tpm.extend_log(dir, &log);
    let pcrs = "0,1,2,3,4,5,6,7,9,11,12,13";
    tpm.quote(dir, "ak", pcrs, NONCE, "q");
    assert!(checkquote(dir, "ak.pub", "q", NONCE), "oracle");
    // The TPM's values are the prediction's (the quote is of what b predicts) …
    let predicted: Value = serde_json::from_slice(&std::fs::read(&pred_b).unwrap()).unwrap();
    for (i, v) in pcrread(&tpm, dir, pcrs) {
        assert_eq!(
            predicted["pcrs"]["sha256"][i.to_string()],
            v.as_str(),
            "PCR {i}"
        );
    }
    // … so b's prediction matches, every predicted PCR attested …
    let b = pred_b.display().to_string();
    let o = verify(dir, &b, "ak.pub", "q", &log_path, &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["unattested"], serde_json::json!([]), "{v}");
    // … and a's does not: PCR 11, the .cmdline section, as `pcr diff` names it.
    let a = pred_a.display().to_string();
    let o = verify(dir, &a, "ak.pub", "q", &log_path, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = json(&o);
    let events = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "events")
        .unwrap();
    assert_eq!(events["ok"], false);
    // The PE and the GPT change with the command line (PCR 4 and 5); PCR 11 says why.
    assert_eq!(events["pcr"], 4, "{v}");
    let differing: Vec<_> = v["diff"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pcr"].as_u64().unwrap())
        .collect();
    assert_eq!(differing, [4, 5, 11], "{v}");
    let diff = vmseal(&["pcr", "diff", &a, &log_path.display().to_string()], dir);
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
    let detail = events["detail"].as_str().unwrap();
    let cmdline = v["diff"]["differences"][2]["explanations"][0]
        .as_str()
        .unwrap();
    assert!(
        cmdline.starts_with("PCR 11: section .cmdline differs"),
        "{cmdline}"
    );
    assert!(detail.contains(cmdline), "{detail}");
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains(cmdline),
        "pcr diff names it the same way:\n{cmdline}\n{}",
        text(&diff)
    );
    for check in ["signature", "nonce", "pcr-digest"] {
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == check)
            .unwrap();
        assert_eq!(c["ok"], true, "{check}: {v}");
    }
    let text_out = verify(dir, &a, "ak.pub", "q", &log_path, &[]);
    let stderr = String::from_utf8_lossy(&text_out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("events: PCR 4") && stderr.contains("PCR 11: section .cmdline"),
        "{stderr}"
    );
}

#[test]
fn malformed_evidence_is_exit_2_with_one_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = fixtures().join("eventlog-sb-off.bin");
    let tpm = Swtpm::start();
    tpm.ek(dir);
    tpm.ak(dir, "ecc", "ecc", "ecdsa");
    tpm.ak(dir, "rsa", "rsa", "rsassa");
    tpm.extend_log(dir, &std::fs::read(&log).unwrap());
    tpm.quote(dir, "ecc", "0,1,2,3,4,5,6,7", NONCE, "q");
    tpm.quote(dir, "rsa", "0,1,2,3,4,5,6,7", NONCE, "r");
    let o = vmseal(
        &["eventlog", "show", &log.display().to_string(), "--json"],
        dir,
    );
    ok(&o);
    std::fs::write(dir.join("pred.json"), &o.stdout).unwrap();
    std::fs::copy(&log, dir.join("log.bin")).unwrap();
    assert_eq!(
        verify(dir, "pred.json", "ecc.pub", "q", Path::new("log.bin"), &[])
            .status
            .code(),
        Some(0)
    );
    let msg = std::fs::read(dir.join("q.msg")).unwrap();
    let sig = std::fs::read(dir.join("q.sig")).unwrap();
    let ak = std::fs::read(dir.join("ecc.pub")).unwrap();
    let logb = std::fs::read(&log).unwrap();

    // (name, file to write, its bytes, the argument it replaces, the text the message names)
    let mut shapes: Vec<(&str, &str, Vec<u8>, &str, &str)> = Vec::new();
    for (n, cut) in [(1, 3usize), (2, 50), (3, 100), (4, msg.len() - 1)] {
        let name = [
            "",
            "quote cut at 3",
            "quote cut at 50",
            "quote cut at 100",
            "quote cut by 1",
        ][n];
        shapes.push((name, "bad.msg", msg[..cut].to_vec(), "--quote", "bad.msg"));
    }
    let mut m = msg.clone();
    m[0] = 0xfe;
    shapes.push(("wrong magic", "bad.msg", m, "--quote", "magic"));
    let mut m = msg.clone();
    m[5] = 0x17;
    shapes.push(("wrong type (certify)", "bad.msg", m, "--quote", "type"));
    // The selection is right after firmwareVersion: count, hash, sizeofSelect, 3 bytes.
    let sel = msg.len() - 34 - 10;
    let mut m = msg.clone();
    m[sel + 6] = 4;
    m.insert(sel + 10, 1);
    shapes.push((
        "selection beyond PCR 23",
        "bad.msg",
        m,
        "--quote",
        "beyond 23",
    ));
    let mut m = msg.clone();
    m[sel + 4] = 0x12;
    m[sel + 5] = 0x34;
    shapes.push(("unknown hash alg", "bad.msg", m, "--quote", "0x1234"));
    let mut m = msg.clone();
    m[sel + 3] = 9;
    shapes.push(("nine selections", "bad.msg", m, "--quote", "count"));
    let mut m = msg.clone();
    m.push(0);
    shapes.push((
        "trailing byte",
        "bad.msg",
        m,
        "--quote",
        "after the last field",
    ));
    shapes.push(("empty quote", "bad.msg", Vec::new(), "--quote", "empty"));
    shapes.push((
        "truncated signature",
        "bad.sig",
        sig[..sig.len() - 5].to_vec(),
        "--signature",
        "bad.sig",
    ));
    let mut s = sig.clone();
    s[1] = 0x05;
    shapes.push(("HMAC signature", "bad.sig", s, "--signature", "sigAlg"));
    let mut s = sig.clone();
    s[3] = 0x04;
    shapes.push(("sha1 signature", "bad.sig", s, "--signature", "SHA-256"));
    shapes.push((
        "RSA signature for the ECC key",
        "bad.sig",
        std::fs::read(dir.join("r.sig")).unwrap(),
        "--signature",
        "ecc-p256 key",
    ));
    shapes.push((
        "AK garbage",
        "bad.pub",
        b"hello, world\n".to_vec(),
        "--ak",
        "bad.pub",
    ));
    shapes.push((
        "AK: PEM of nothing",
        "bad.pub",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec(),
        "--ak",
        "bad.pub",
    ));
    shapes.push((
        "AK: a certificate, not a key",
        "bad.pub",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
        "--ak",
        "bad.pub",
    ));
    shapes.push((
        "AK TPM2B cut",
        "bad.pub",
        ak[..ak.len() - 1].to_vec(),
        "--ak",
        "bad.pub",
    ));
    let mut a = ak.clone();
    a[2 + 17] = 0x04; // curveID (TPMT_PUBLIC offset 16): P-384
    shapes.push(("AK on P-384", "bad.pub", a, "--ak", "curve"));
    shapes.push((
        "RSA AK where ECC expected",
        "bad.pub",
        std::fs::read(dir.join("rsa.pub")).unwrap(),
        "--ak",
        "rsa-2048 key",
    ));
    shapes.push((
        "AK DER garbage",
        "bad.pub",
        vec![0x30, 0x03, 1, 2],
        "--ak",
        "bad.pub",
    ));
    let mut l = logb.clone();
    l[32] ^= 0xff; // inside "Spec ID Event03"
    shapes.push((
        "corrupted log header",
        "bad.bin",
        l,
        "--eventlog",
        "bad.bin",
    ));
    shapes.push((
        "truncated log event",
        "bad.bin",
        logb[..logb.len() / 2 + 7].to_vec(),
        "--eventlog",
        "bad.bin",
    ));
    shapes.push((
        "log of zeros",
        "bad.bin",
        vec![0; 64],
        "--eventlog",
        "bad.bin",
    ));
    shapes.push((
        "corrupt prediction",
        "bad.json",
        b"{\"format\": 1, \"banks\": [".to_vec(),
        "prediction",
        "bad.json",
    ));
    shapes.push((
        "prediction of another format",
        "bad.json",
        b"{\"format\": 7}".to_vec(),
        "prediction",
        "bad.json",
    ));

    let base = |replace: &str, with: &str| -> Vec<String> {
        let mut args: Vec<String> = [
            "attest",
            "verify",
            "pred.json",
            "--quote",
            "q.msg",
            "--signature",
            "q.sig",
            "--ak",
            "ecc.pub",
            "--eventlog",
            "log.bin",
            "--nonce",
            NONCE,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if replace == "prediction" {
            args[2] = with.to_string();
        } else if let Some(i) = args.iter().position(|a| a == replace) {
            args[i + 1] = with.to_string();
        }
        args
    };
    let before: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut count = 0;
    let mut check = |name: &str, args: Vec<String>, needle: &str| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = vmseal(&refs, dir);
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{name}: {needle:?} not in {stderr}"
        );
        assert!(stderr.contains(" — "), "{name}: no fix in {stderr}");
        assert!(o.stdout.is_empty(), "{name}: {}", text(&o));
        count += 1;
    };
    for (name, file, bytes, arg, needle) in &shapes {
        std::fs::write(dir.join(file), bytes).unwrap();
        check(name, base(arg, file), needle);
        std::fs::remove_file(dir.join(file)).unwrap();
    }
    check("nonce not hex", base("--nonce", "xyz"), "--nonce");
    check(
        "nonce of 65 bytes",
        base("--nonce", &"ab".repeat(65)),
        "--nonce",
    );
    check(
        "quote file missing",
        base("--quote", "missing.msg"),
        "missing.msg",
    );
    check(
        "prediction missing",
        base("prediction", "missing.json"),
        "missing.json",
    );

    // The bundle: bad base64, a missing field, not JSON, a wrong type.
    let good = bundle(dir, "ecc.pub", "q", &log, NONCE);
    let mut bundles: Vec<(&str, String, &str)> = Vec::new();
    let mut b = good.clone();
    b["quote"] = "%%%not base64".into();
    bundles.push(("bundle: bad base64", b.to_string(), "quote"));
    let mut b = good.clone();
    b.as_object_mut().unwrap().remove("signature");
    bundles.push((
        "bundle: missing signature",
        b.to_string(),
        "signature: missing",
    ));
    bundles.push(("bundle: not JSON", "quote=1".into(), "not JSON"));
    let mut b = good.clone();
    b["nonce"] = 5.into();
    bundles.push(("bundle: nonce a number", b.to_string(), "nonce"));
    let mut b = good.clone();
    b["caller"] = "".into();
    bundles.push(("bundle: empty caller", b.to_string(), "caller"));
    let mut b = good.clone();
    b["eventlog"] = base64::engine::general_purpose::STANDARD
        .encode(&logb[..100])
        .into();
    bundles.push(("bundle: truncated log", b.to_string(), "eventlog"));
    for (name, body, needle) in bundles {
        std::fs::write(dir.join("bad-bundle.json"), body).unwrap();
        check(
            name,
            [
                "attest",
                "verify",
                "pred.json",
                "--evidence",
                "bad-bundle.json",
            ]
            .map(String::from)
            .to_vec(),
            needle,
        );
        std::fs::remove_file(dir.join("bad-bundle.json")).unwrap();
    }
    assert!(count >= 20, "{count} shapes");
    eprintln!("{count} malformed shapes: exit 2, one line each");
    // Nothing was written.
    let after: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn a_boot_with_other_secure_boot_variables_is_refused_naming_pcr_7() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sb_off = fixtures().join("eventlog-sb-off.bin");
    let sb_on = fixtures().join("eventlog-sb-on.bin");
    let o = vmseal(
        &["eventlog", "show", &sb_off.display().to_string(), "--json"],
        dir,
    );
    ok(&o);
    std::fs::write(dir.join("pred.json"), &o.stdout).unwrap();
    // The TPM of the Secure Boot boot (PK, KEK, db enrolled), quoted for the prediction of
    // the same firmware and disk without keys.
    let tpm = Swtpm::start();
    tpm.ek(dir);
    tpm.ak(dir, "ak", "ecc", "ecdsa");
    tpm.extend_log(dir, &std::fs::read(&sb_on).unwrap());
    let want = fixture_pcrs("pcrs-sb-on.txt");
    for (i, v) in pcrread(&tpm, dir, "0,1,2,3,4,5,6,7") {
        assert!(want.contains(&(i, v.clone())), "PCR {i}: TPM {v}");
    }
    tpm.quote(dir, "ak", "0,1,2,3,4,5,6,7", NONCE, "q");
    assert!(
        checkquote(dir, "ak.pub", "q", NONCE),
        "oracle: a valid quote"
    );
    let o = verify(dir, "pred.json", "ak.pub", "q", &sb_on, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = json(&o);
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("events: PCR 7: SecureBoot differs — expected 0 (disabled), the firmware measured 1 (enabled)"),
        "{reason}"
    );
    let differing: Vec<_> = v["diff"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pcr"].as_u64().unwrap())
        .collect();
    assert_eq!(differing, [7], "{v}");
    // Only the quoted bank is compared; the signature, nonce and digest all hold.
    assert_eq!(v["diff"]["banks"], serde_json::json!(["sha256"]));
    for c in v["checks"].as_array().unwrap() {
        assert_eq!(c["ok"], c["check"] != "events", "{c}");
    }
}
