//! `vmseal eventlog show`, `vmseal pcr predict` and `vmseal pcr diff` against independent
//! sources only:
//! - the real-firmware logs and PCR dumps in `shared/fixtures/ovmf-debian-2022.11` (Debian
//!   OVMF 2022.11 + swtpm; none of it produced by vmseal), found at `<checkout>/../shared`;
//! - `tpm2_eventlog` (tpm2-tools) as a second event-log parser and replayer;
//! - `virt-fw-vars` (PyPI virt-firmware) to write Secure Boot variable stores;
//! - `sbsign` + `osslsigncode` for Authenticode digests;
//! - `openssl` to convert the fixture certificate.
//!
//! No expected value here was copied from vmseal's own output.

mod common;
use common::{sbsign_digest, tool};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use policies::eventlog::Event;
use policies::replay::Pcrs;
use policies::tcg::{EventType, HashAlg};
use serde_json::Value;
use vmseal::measure::pcrs_json::PcrsFile;

fn fixture_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/ovmf-debian-2022.11"
    ));
    assert!(
        dir.join("README.md").is_file(),
        "fixtures not found at {}: these tests need the `shared/` folder beside the repository \
         checkout (<checkout>/../shared/fixtures/ovmf-debian-2022.11)",
        dir.display()
    );
    dir
}

fn fixture(name: &str) -> PathBuf {
    fixture_dir().join(name)
}

const LOGS: [(&str, &str); 3] = [
    ("eventlog-sb-off.bin", "pcrs-sb-off.txt"),
    ("eventlog-sb-on.bin", "pcrs-sb-on.txt"),
    ("eventlog-uki-sb-off.bin", "pcrs-uki-sb-off.txt"),
];

fn vmseal(args: &[&std::ffi::OsStr], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal")
}

fn run(args: &[&str], cwd: &Path) -> Output {
    let a: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    vmseal(&a, cwd)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(o: &Output) {
    let (out, err) = text(o);
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {out}\nstderr: {err}",
        o.status
    );
}

/// What `tpm2_eventlog` says about a log: (pcr, type, [(bank, hex)]) per event after the Spec ID
/// header, and the final PCRs (bank, index, hex).
type Tpm2Events = Vec<(u32, String, Vec<(String, String)>)>;

fn tpm2_eventlog(log: &Path) -> (Tpm2Events, Vec<(String, u32, String)>) {
    let o = tool(Command::new("tpm2_eventlog").arg(log));
    assert!(
        o.status.success(),
        "tpm2_eventlog: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let yaml = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut events: Tpm2Events = Vec::new();
    let mut pcrs = Vec::new();
    let mut bank = String::new();
    let mut in_pcrs = false;
    let mut pending_alg: Option<String> = None;
    for line in yaml.lines() {
        let t = line.trim();
        if line.starts_with("pcrs:") {
            in_pcrs = true;
            continue;
        }
        if in_pcrs {
            if let Some(b) = t.strip_suffix(':') {
                bank = b.to_string();
            } else if let Some((i, v)) = t.split_once(':') {
                let v = v.trim().trim_start_matches("0x").to_lowercase();
                pcrs.push((bank.clone(), i.trim().parse().unwrap(), v));
            }
            continue;
        }
        if t.starts_with("- EventNum:") {
            events.push((0, String::new(), Vec::new()));
        } else if let Some(p) = t.strip_prefix("PCRIndex:") {
            events.last_mut().unwrap().0 = p.trim().parse().unwrap();
        } else if let Some(ty) = t.strip_prefix("EventType:") {
            events.last_mut().unwrap().1 = ty.trim().to_string();
        } else if let Some(a) = t.strip_prefix("- AlgorithmId:") {
            pending_alg = Some(a.trim().to_string());
        } else if let Some(d) = t.strip_prefix("Digest:")
            && let Some(a) = pending_alg.take()
        {
            events
                .last_mut()
                .unwrap()
                .2
                .push((a, d.trim().trim_matches('"').to_lowercase()));
        }
    }
    // EventNum 0 is the Spec ID header, which vmseal keeps apart from the events.
    events.remove(0);
    (events, pcrs)
}

fn show_json(log: &Path) -> PcrsFile {
    let o = vmseal(
        &[
            "eventlog".as_ref(),
            "show".as_ref(),
            "--json".as_ref(),
            log.as_os_str(),
        ],
        Path::new("."),
    );
    ok(&o);
    PcrsFile::parse(&text(&o).0, "stdout").unwrap()
}

#[test]
fn eventlog_show_agrees_with_tpm2_eventlog_and_the_pcr_dumps() {
    for (log, dump) in LOGS {
        let ours = show_json(&fixture(log));
        let (theirs, their_pcrs) = tpm2_eventlog(&fixture(log));
        assert_eq!(ours.events.len(), theirs.len(), "{log}: event count");
        for (i, (e, (pcr, ty, digests))) in ours.events.iter().zip(&theirs).enumerate() {
            assert_eq!(e.pcr, *pcr, "{log} event {i}: PCR");
            assert_eq!(&e.event_type, ty, "{log} event {i}: type");
            let mine: Vec<(String, String)> = e
                .digests
                .iter()
                .map(|(b, d)| (b.clone(), d.clone()))
                .collect();
            let mut t = digests.clone();
            t.sort();
            assert_eq!(mine, t, "{log} event {i}: digests");
        }
        assert!(!their_pcrs.is_empty());
        for (bank, i, v) in &their_pcrs {
            assert_eq!(
                ours.pcrs[bank].get(i),
                Some(v),
                "{log}: PCR {bank} {i} vs tpm2_eventlog"
            );
        }
        // The values read inside the booted guest (PCR 10 is IMA's, not in the firmware log).
        let dump = Pcrs::from_text(&std::fs::read_to_string(fixture(dump)).unwrap()).unwrap();
        let mut checked = 0;
        for alg in dump.banks() {
            for i in (0..24).filter(|i| *i != 10) {
                if let Some(want) = dump.get(alg, i) {
                    let bank = alg.name().unwrap();
                    assert_eq!(
                        ours.pcrs[bank][&i],
                        hex::encode(want),
                        "{log}: {bank} PCR {i} vs {dump:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 20, "{log}: only {checked} PCR values checked");
    }
}

#[test]
fn eventlog_show_text_names_every_event_and_unknown_types_in_hex() {
    let o = vmseal(
        &[
            "eventlog".as_ref(),
            "show".as_ref(),
            fixture("eventlog-sb-on.bin").as_os_str(),
        ],
        Path::new("."),
    );
    ok(&o);
    let out = text(&o).0;
    assert_eq!(out.lines().filter(|l| l.starts_with('#')).count(), 30);
    assert!(out.contains("EV_EFI_VARIABLE_AUTHORITY"));
    assert!(
        out.contains("db (d719b2cb-3d3a-4596-a3bc-dad00e67656f): certificate CN=vmseal test db")
    );
    assert!(out.contains("\"Calling EFI Application from Boot Option\""));
    // An unknown event type: append one to a real log.
    let t = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(fixture("eventlog-uki-sb-off.bin")).unwrap();
    // Replay needs a digest for every bank of the log.
    let mut ev = Vec::new();
    let digests = [HashAlg::SHA1, HashAlg::SHA256, HashAlg::SHA384]
        .map(|a| (a, vec![0x11; a.digest_size().unwrap()]))
        .to_vec();
    Event {
        pcr: 16,
        event_type: EventType(0x1234),
        digests,
        data: vec![0xde, 0xad],
    }
    .serialize_into(&mut ev);
    bytes.extend_from_slice(&ev);
    let p = t.path().join("x.bin");
    std::fs::write(&p, &bytes).unwrap();
    let o = vmseal(
        &["eventlog".as_ref(), "show".as_ref(), p.as_os_str()],
        t.path(),
    );
    ok(&o);
    assert!(
        text(&o)
            .0
            .contains("PCR 16 0x00001234                         raw dead"),
        "{}",
        text(&o).0
    );
}

#[test]
fn corrupt_logs_exit_2_with_one_line_naming_the_offset() {
    let t = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("eventlog-sb-off.bin")).unwrap();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        (
            "garbage".into(),
            b"this is not an event log at all".to_vec(),
        ),
        ("truncated header".into(), good[..40].to_vec()),
        ("truncated event".into(), good[..good.len() - 7].to_vec()),
    ];
    let mut b = good.clone();
    b[69] = 99; // the first event's PCR index
    cases.push(("pcr 99".into(), b));
    let mut b = good.clone();
    b[69 + 8..69 + 12].copy_from_slice(&1000u32.to_le_bytes()); // digest count
    cases.push(("1000 digests".into(), b));
    for (name, bytes) in cases {
        let p = t.path().join("bad.bin");
        std::fs::write(&p, &bytes).unwrap();
        let o = vmseal(
            &["eventlog".as_ref(), "show".as_ref(), p.as_os_str()],
            t.path(),
        );
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(err.contains("offset") || name == "empty", "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    // Any single-byte corruption: exit 0 or 2, never a crash.
    for at in (0..good.len()).step_by(37) {
        let mut b = good.clone();
        b[at] ^= 0xA5;
        let p = t.path().join("flip.bin");
        std::fs::write(&p, &b).unwrap();
        let o = vmseal(
            &["eventlog".as_ref(), "show".as_ref(), p.as_os_str()],
            t.path(),
        );
        assert!(
            matches!(o.status.code(), Some(0 | 2)),
            "flip at {at}: {:?} {}",
            o.status,
            text(&o).1
        );
    }
}

fn fixture_events(log: &str, pcr: u32) -> Vec<Event> {
    let l = policies::eventlog::parse(&std::fs::read(fixture(log)).unwrap()).unwrap();
    l.events.into_iter().filter(|e| e.pcr == pcr).collect()
}

#[test]
fn pristine_vars_give_the_real_firmwares_pcr7() {
    // measured-boot.md §B.2: absent PK/KEK/db/dbx are still measured with no data;
    // the fixture is a real Debian OVMF boot with pristine OVMF_VARS_4M.fd.
    let want = fixture_events("eventlog-sb-off.bin", 7);
    let mut got = vmseal::measure::predict::secure_boot_policy(&HashAlg::COMPUTED, &[]).unwrap();
    got.push(vmseal::measure::predict::separator(&HashAlg::COMPUTED, 7).unwrap());
    let got: Vec<Event> = got.into_iter().map(|e| e.event).collect();
    assert_eq!(got, want);
    // The installed pristine store, read by the interim walker, gives the same.
    if let Ok(b) = std::fs::read("/usr/share/OVMF/OVMF_VARS_4M.fd") {
        let store = vmseal::measure::vars::parse(&b).unwrap();
        let mut got =
            vmseal::measure::predict::secure_boot_policy(&HashAlg::COMPUTED, &store).unwrap();
        got.push(vmseal::measure::predict::separator(&HashAlg::COMPUTED, 7).unwrap());
        assert_eq!(got.into_iter().map(|e| e.event).collect::<Vec<_>>(), want);
    }
}

/// A store enrolled by virt-fw-vars as the fixture README describes: test-db.crt as PK, KEK
/// and db (owner GUID as in the fixture log's lists), `--secure-boot` (dummy dbx).
fn virt_fw_vars_store(dir: &Path) -> Option<PathBuf> {
    let out = dir.join("sb.fd");
    let g = "0d1b0a5e-1111-2222-3333-444455556666";
    let crt = fixture("test-db.crt");
    let o = Command::new("virt-fw-vars")
        .args(["-i", "/usr/share/OVMF/OVMF_VARS_4M.fd", "-o"])
        .arg(&out)
        .args(["--set-pk", g])
        .arg(&crt)
        .args(["--add-kek", g])
        .arg(&crt)
        .args(["--add-db", g])
        .arg(&crt)
        .arg("--secure-boot")
        .output()
        .ok()?;
    assert!(
        o.status.success(),
        "virt-fw-vars: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some(out)
}

#[test]
fn enrolled_vars_give_the_real_firmwares_pcr7_policy_and_authority_format() {
    let t = tempfile::tempdir().unwrap();
    let Some(store) = virt_fw_vars_store(t.path()) else {
        eprintln!("skipped: virt-fw-vars not installed");
        return;
    };
    let store = vmseal::measure::vars::parse(&std::fs::read(store).unwrap()).unwrap();
    assert_eq!(vmseal::measure::vars::secure_boot_value(&store), 1);
    let want = fixture_events("eventlog-sb-on.bin", 7);
    let mut got = vmseal::measure::predict::secure_boot_policy(&HashAlg::COMPUTED, &store).unwrap();
    got.push(vmseal::measure::predict::separator(&HashAlg::COMPUTED, 7).unwrap());
    let got: Vec<Event> = got.into_iter().map(|e| e.event).collect();
    assert_eq!(
        got[..],
        want[..6],
        "SecureBoot, PK, KEK, db, dbx, separator"
    );
    // The authority event: UEFI_VARIABLE_DATA "db" holding the one EFI_SIGNATURE_DATA
    // (owner ‖ DER) of the db list — the fixture's real one, rebuilt from test-db.crt.
    let der = tool(
        Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(fixture("test-db.crt")),
    )
    .stdout;
    let db = vmseal::measure::vars::get(
        &store,
        &vmseal::measure::vars::IMAGE_SECURITY_DATABASE,
        "db",
    )
    .unwrap();
    let list = vmseal::measure::describe::parse_list(&db.data).unwrap();
    assert_eq!(&list.entries[0][16..], &der[..]);
    let data = vmseal::measure::predict::variable_data(
        &vmseal::measure::vars::IMAGE_SECURITY_DATABASE,
        "db",
        list.entries[0],
    );
    assert_eq!(want[6].event_type, EventType::EFI_VARIABLE_AUTHORITY);
    assert_eq!(want[6].data, data);
}

#[test]
fn secure_boot_authority_is_predicted_for_an_image_signed_by_db() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // A throwaway db key; the appliance PE signed with it by sbsign; the cert enrolled by
    // virt-fw-vars.
    let (key, crt) = (dir.join("k.pem"), dir.join("c.pem"));
    let o = tool(
        Command::new("openssl")
            .args([
                "req",
                "-new",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=vmseal pcr test db",
                "-days",
                "1",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&crt),
    );
    assert!(o.status.success());
    let g = "11111111-2222-3333-4444-555555555555";
    let fd = dir.join("vars.fd");
    let Ok(o) = Command::new("virt-fw-vars")
        .args(["-i", "/usr/share/OVMF/OVMF_VARS_4M.fd", "-o"])
        .arg(&fd)
        .args(["--set-pk", g])
        .arg(&crt)
        .args(["--add-kek", g])
        .arg(&crt)
        .args(["--add-db", g])
        .arg(&crt)
        .arg("--secure-boot")
        .output()
    else {
        eprintln!("skipped: virt-fw-vars not installed");
        return;
    };
    assert!(o.status.success());
    // Any PE works for the selection: sign the embedded stub.
    let stub = vmseal::compose::stub::load(None).unwrap();
    let unsigned = dir.join("u.efi");
    std::fs::write(&unsigned, &*stub).unwrap();
    let signed = dir.join("s.efi");
    let o = tool(
        Command::new("sbsign")
            .arg("--key")
            .arg(&key)
            .arg("--cert")
            .arg(&crt)
            .arg("--output")
            .arg(&signed)
            .arg(&unsigned),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let store = vmseal::measure::vars::parse(&std::fs::read(&fd).unwrap()).unwrap();
    let db = vmseal::measure::vars::get(
        &store,
        &vmseal::measure::vars::IMAGE_SECURITY_DATABASE,
        "db",
    )
    .unwrap();
    let der = tool(
        Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&crt),
    )
    .stdout;
    let entry =
        vmseal::measure::predict::verifying_db_entry(&db.data, &std::fs::read(&signed).unwrap())
            .unwrap();
    assert_eq!(&entry[16..], &der[..]);
    assert_eq!(
        vmseal::measure::predict::verifying_db_entry(&db.data, &stub),
        None,
        "unsigned image"
    );
}

#[test]
fn pcr9_load_options_match_the_uki_fixture() {
    // systemd-stub passes `.cmdline` as UTF-16LE with NUL, as vmseal's stub does; the kernel
    // EFI stub measures it first, then the initrd (fixture order).
    let want = fixture_events("eventlog-uki-sb-off.bin", 9);
    assert_eq!(want.len(), 2);
    let banks = [HashAlg::SHA1, HashAlg::SHA256, HashAlg::SHA384];
    let cmdline = std::fs::read(fixture("uki-cmdline")).unwrap();
    let got = vmseal::measure::predict::load_options_event(&banks, &cmdline).unwrap();
    assert_eq!(got.event, want[0]);
    let initrd = vmseal::measure::predict::initrd_event(&banks, b"x").unwrap();
    assert_eq!(initrd.event.data, want[1].data, "initrd tag data");
    assert_eq!(initrd.event.event_type, want[1].event_type);
}

fn diff(exp: &Path, act: &Path, json: bool) -> (Option<i32>, String, String) {
    let mut a: Vec<&std::ffi::OsStr> = vec![
        "pcr".as_ref(),
        "diff".as_ref(),
        exp.as_os_str(),
        act.as_os_str(),
    ];
    if json {
        a.push("--json".as_ref());
    }
    let o = vmseal(&a, Path::new("."));
    let (out, err) = text(&o);
    (o.status.code(), out, err)
}

#[test]
fn diff_of_the_sb_on_and_sb_off_fixtures_names_the_secure_boot_variables() {
    let t = tempfile::tempdir().unwrap();
    let exp = t.path().join("sb-on.pcrs.json");
    std::fs::write(&exp, show_json(&fixture("eventlog-sb-on.bin")).to_text()).unwrap();
    let (code, out, err) = diff(&exp, &fixture("eventlog-sb-off.bin"), false);
    assert_eq!(code, Some(1), "{out}{err}");
    for want in [
        "PCR 7: SecureBoot differs — expected 1 (enabled), the firmware measured 0 (disabled)",
        "PCR 7: PK differs — expected certificate CN=vmseal test db",
        "the firmware measured absent (measured with no data)",
        "PCR 7: KEK differs",
        "PCR 7: db differs",
        "PCR 7: dbx differs",
        "PCR 7: missing authority event for certificate CN=vmseal test db",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (code, out, _) = diff(&exp, &fixture("eventlog-sb-off.bin"), true);
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&out).unwrap();
    let pcrs: Vec<u64> = v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pcr"].as_u64().unwrap())
        .collect();
    assert_eq!(
        pcrs,
        [7],
        "only PCR 7 differs between the two real boots of the same disk"
    );
    // A log against itself, and its JSON against the binary: identical.
    let (code, out, _) = diff(&exp, &fixture("eventlog-sb-on.bin"), false);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("identical: 24 PCR(s) × 4 bank(s)"), "{out}");
}

#[test]
fn diff_explains_a_failed_boot_option_between_real_logs() {
    // The UKI fixture ran with QEMU defaults: the empty DVD was tried first (README).
    let t = tempfile::tempdir().unwrap();
    let exp = t.path().join("uki.pcrs.json");
    let mut f = show_json(&fixture("eventlog-uki-sb-off.bin"));
    // Remove the failed attempt from the "expected" side: the first Returning/Calling pair.
    let i = f
        .events
        .iter()
        .position(|e| e.description.contains("Returning from EFI"))
        .unwrap();
    f.events.drain(i..i + 2);
    let banks: Vec<HashAlg> = f
        .banks
        .iter()
        .map(|b| HashAlg::from_name(b).unwrap())
        .collect();
    let events = f.logged_events();
    let replayed =
        policies::replay::replay_events(events.iter().map(|e| &e.event), &banks).unwrap();
    let f = PcrsFile::new(&banks, &events, &replayed, None, Default::default());
    std::fs::write(&exp, f.to_text()).unwrap();
    let (code, out, _) = diff(&exp, &fixture("eventlog-uki-sb-off.bin"), false);
    assert_eq!(code, Some(1));
    assert!(out.contains("PCR 4: extra event 'Returning from EFI Application from Boot Option' — a boot option before the disk failed"), "{out}");
    assert_eq!(out.matches("  - ").count(), 2, "{out}");
}

#[test]
fn diff_of_unreadable_inputs_exits_2() {
    let t = tempfile::tempdir().unwrap();
    let bad = t.path().join("bad.json");
    std::fs::write(&bad, "{\"format\": 1}").unwrap();
    let (code, _, err) = diff(&bad, &fixture("eventlog-sb-on.bin"), false);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let (code, _, err) = diff(
        &t.path().join("missing.json"),
        &fixture("eventlog-sb-on.bin"),
        false,
    );
    assert_eq!(code, Some(2), "{err}");
    let empty = t.path().join("emptydir");
    std::fs::create_dir(&empty).unwrap();
    let good = t.path().join("g.json");
    std::fs::write(&good, show_json(&fixture("eventlog-sb-on.bin")).to_text()).unwrap();
    let (code, _, err) = diff(&good, &empty, false);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("eventlog.bin"), "{err}");
}

#[test]
fn build_writes_a_prediction_whose_pcr4_and_pcr5_come_from_the_image() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    ok(&run(&["init", "app"], dir));
    ok(&run(
        &[
            "-q",
            "build",
            "app/vmseal.toml",
            "--out",
            "out",
            "--unsigned",
        ],
        dir,
    ));
    let name = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".pcrs.json"))
        .unwrap();
    let stem = name.trim_end_matches(".pcrs.json");
    let f = PcrsFile::load(&dir.join("out").join(&name)).unwrap();
    assert_eq!(f.format, 1);
    assert_eq!(f.banks, ["sha1", "sha256", "sha384", "sha512"]);
    // The values are the replay of the events (policies::replay checked against the fixtures).
    let banks: Vec<HashAlg> = f
        .banks
        .iter()
        .map(|b| HashAlg::from_name(b).unwrap())
        .collect();
    let replayed =
        policies::replay::replay_events(f.logged_events().iter().map(|e| &e.event), &banks)
            .unwrap();
    for (bank, values) in &f.pcrs {
        for (i, v) in values {
            assert_eq!(
                hex::encode(replayed.get(HashAlg::from_name(bank).unwrap(), *i).unwrap()),
                *v
            );
        }
    }
    let keys: Vec<u32> = f.pcrs["sha256"].keys().copied().collect();
    assert_eq!(keys, [0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 13]);
    // PCR 4: the Authenticode hash sbsign/osslsigncode compute for NAME.efi (= BOOTX64.EFI).
    let app: Vec<_> = f
        .events
        .iter()
        .filter(|e| e.event_type == "EV_EFI_BOOT_SERVICES_APPLICATION")
        .collect();
    assert_eq!(app.len(), 1, "a .guest appliance loads one image");
    assert!(!app[0].data_compared);
    assert_eq!(
        app[0].digests["sha256"],
        sbsign_digest(&dir.join("out").join(format!("{stem}.efi")), dir)
    );
    // PCR 5: header bytes as at LBA 1, one partition entry, 228 bytes (measured-boot.md §B.4).
    let gpt: Vec<_> = f
        .events
        .iter()
        .filter(|e| e.event_type == "EV_EFI_GPT_EVENT")
        .collect();
    let data = hex::decode(&gpt[0].data).unwrap();
    assert_eq!(data.len(), 228);
    let img = std::fs::read(dir.join("out").join(format!("{stem}.img"))).unwrap();
    assert_eq!(&data[..92], &img[512..604]);
    assert_eq!(&data[100..], &img[1024..1152]);
    // PCR 5 ends with the two ExitBootServices actions; PCR 4 starts with "Calling…".
    let pcr5: Vec<&str> = f
        .events
        .iter()
        .filter(|e| e.pcr == 5)
        .map(|e| e.description.as_str())
        .collect();
    assert_eq!(
        pcr5[2..],
        [
            "\"Exit Boot Services Invocation\"",
            "\"Exit Boot Services Returned with Success\""
        ]
    );
    // `pcr predict --json` on the image gives the same file (up to sources.image).
    let o = run(
        &["pcr", "predict", "--json", &format!("out/{stem}.img")],
        dir,
    );
    ok(&o);
    let p = PcrsFile::parse(&text(&o).0, "stdout").unwrap();
    assert_eq!(p.events, f.events);
    assert_eq!(p.pcrs, f.pcrs);
    // One bank on request; an unknown bank is a usage error.
    let o = run(
        &[
            "pcr",
            "predict",
            "--bank",
            "sha256",
            &format!("out/{stem}.img"),
        ],
        dir,
    );
    ok(&o);
    assert_eq!(
        run(
            &[
                "pcr",
                "predict",
                "--bank",
                "md5",
                &format!("out/{stem}.img")
            ],
            dir
        )
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        run(&["pcr", "predict", "app/vmseal.toml"], dir)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn firmware_learn_from_a_log_keeps_the_firmware_pcrs_in_log_order() {
    let t = tempfile::tempdir().unwrap();
    let code = t.path().join("OVMF_CODE_TEST.fd");
    std::fs::write(&code, b"not really firmware").unwrap();
    let out = t.path().join("p.json");
    let o = vmseal(
        &[
            "firmware".as_ref(),
            "learn".as_ref(),
            "--code".as_ref(),
            code.as_os_str(),
            "--from-log".as_ref(),
            fixture("eventlog-sb-on.bin").as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        t.path(),
    );
    ok(&o);
    let p = vmseal::measure::firmware::Profile::load(&out).unwrap();
    // sha256("not really firmware"), by the independent sha256sum.
    let sum = tool(Command::new("sha256sum").arg(&code)).stdout;
    assert_eq!(
        p.firmware.sha256,
        String::from_utf8_lossy(&sum)
            .split_whitespace()
            .next()
            .unwrap()
    );
    let want: Vec<Event> =
        policies::eventlog::parse(&std::fs::read(fixture("eventlog-sb-on.bin")).unwrap())
            .unwrap()
            .events
            .into_iter()
            .filter(|e| [0, 1, 2, 3, 6].contains(&e.pcr))
            .collect();
    let got: Vec<Event> = p
        .events_for(&HashAlg::COMPUTED)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(got, want);
    // A prediction with this profile for an unknown firmware: it is used as given.
    let bad = t.path().join("bad.json");
    std::fs::write(&bad, "{}").unwrap();
    let o = run(
        &[
            "pcr",
            "predict",
            "--firmware-profile",
            bad.to_str().unwrap(),
            "x.img",
        ],
        t.path(),
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn predict_refuses_bad_images_and_stores_with_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    ok(&run(&["init", "app"], dir));
    ok(&run(
        &[
            "-q",
            "build",
            "app/vmseal.toml",
            "--out",
            "out",
            "--unsigned",
        ],
        dir,
    ));
    let img = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "img"))
        .unwrap();
    let bytes = std::fs::read(&img).unwrap();
    let lock: Value =
        serde_json::from_slice(&std::fs::read(img.with_extension("lock.json")).unwrap()).unwrap();
    let esp = lock["disk"]["esp_first_lba"].as_u64().unwrap() as usize * 512;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..4096].to_vec()),
        ("no GPT", vec![0; 8192]),
    ];
    let mut b = bytes.clone();
    b[esp..esp + 512].fill(0); // the FAT boot sector
    cases.push(("ESP wiped", b));
    let mut b = bytes.clone();
    b[512 + 16] ^= 1; // GPT header CRC
    cases.push(("GPT CRC", b));
    for (name, b) in cases {
        let p = dir.join("bad.img");
        std::fs::write(&p, b).unwrap();
        let o = run(&["pcr", "predict", "bad.img"], dir);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(
            err.contains("bad.img") && !err.contains("panicked"),
            "{name}: {err}"
        );
    }
    std::fs::write(dir.join("vars.fd"), vec![0xFFu8; 540_672]).unwrap();
    let name = img.file_name().unwrap().to_str().unwrap().to_string();
    let o = run(
        &[
            "pcr",
            "predict",
            &format!("out/{name}"),
            "--vars",
            "vars.fd",
        ],
        dir,
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("vars.fd") && err.contains("OVMF_VARS"),
        "{err}"
    );
}

/// The UKI fixture's `.linux` is Debian's `linux-image-6.1.0-56-cloud-amd64` vmlinuz, as shipped
/// (fixture README). Its bytes come from the Debian mirror, never from vmseal: the package's
/// `.deb` in `images/linux/cache` (where `images/linux/build.sh` keeps its downloads), fetched
/// with `apt-get download` when absent. `None` once the mirror no longer carries that ABI.
fn uki_fixture_kernel() -> Option<Vec<u8>> {
    const PACKAGE: &str = "linux-image-6.1.0-56-cloud-amd64";
    let cache = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../images/linux/cache"
    ));
    std::fs::create_dir_all(&cache).unwrap();
    let find = || {
        let mut debs: Vec<PathBuf> = std::fs::read_dir(&cache)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{PACKAGE}_")) && n.ends_with(".deb"))
            })
            .collect();
        debs.sort();
        debs.pop()
    };
    let deb = match find() {
        Some(d) => d,
        None => {
            let o = Command::new("apt-get")
                .args(["download", "-q", PACKAGE])
                .current_dir(&cache)
                .output()
                .ok()?;
            if !o.status.success() {
                eprintln!(
                    "apt-get download {PACKAGE} failed ({}): the mirror no longer has that kernel",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return None;
            }
            find()?
        }
    };
    let t = tempfile::tempdir().unwrap();
    let o = tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(t.path()));
    assert!(o.status.success(), "dpkg-deb -x {}", deb.display());
    Some(std::fs::read(t.path().join("boot/vmlinuz-6.1.0-56-cloud-amd64")).unwrap())
}

/// Every PCR 11 event of the real systemd-stub boot, predicted from its inputs: the kernel
/// (Debian's package), `.osrel` and `.cmdline` (shipped beside the log) give the name and
/// contents events of those three sections, byte for byte, in all three of the boot's banks;
/// `.initrd` (not shipped) gives its name event. Then the fixture's PCR 11 value follows.
#[test]
fn uki_fixture_pcr11_events_are_reproduced_from_its_inputs() {
    use policies::sections;
    let want = fixture_events("eventlog-uki-sb-off.bin", 11);
    assert_eq!(want.len(), 8, "four sections, two events each");
    let banks = [HashAlg::SHA1, HashAlg::SHA256, HashAlg::SHA384];
    let osrel = std::fs::read(fixture("uki-os-release")).unwrap();
    let cmdline = std::fs::read(fixture("uki-cmdline")).unwrap();
    let Some(kernel) = uki_fixture_kernel() else {
        // `.osrel` and `.cmdline` alone stay checked by policies' `stub_events_match_systemd_stub`.
        eprintln!("the .linux contents event was not checked: kernel package unavailable");
        return;
    };
    // The initrd's contents are not shipped; a stand-in gives its name event.
    let got = policies::predict::stub_events(
        &[
            (sections::INITRD, b"stand-in"),
            (sections::CMDLINE, &cmdline),
            (sections::LINUX, &kernel),
            (sections::OSREL, &osrel),
        ],
        &banks,
    )
    .unwrap();
    assert_eq!(got.len(), 8);
    assert_eq!(
        got[..7],
        want[..7],
        "PCR 11 events #1-#7 of the UKI fixture"
    );
    assert_eq!(
        (got[7].pcr, got[7].event_type, &got[7].data),
        (want[7].pcr, want[7].event_type, &want[7].data)
    );
    // With the logged initrd digest as the last step, the replay is the fixture's PCR 11.
    let mut pcrs = Pcrs::initial(&banks).unwrap();
    for ev in got[..7].iter().chain(&want[7..]) {
        for alg in banks {
            pcrs.extend(alg, 11, ev.digest(alg).unwrap()).unwrap();
        }
    }
    let dump = std::fs::read_to_string(fixture("pcrs-uki-sb-off.txt")).unwrap();
    let expected = Pcrs::from_text(&dump).unwrap();
    for alg in banks {
        assert_eq!(pcrs.get(alg, 11), expected.get(alg, 11), "PCR 11 {alg:?}");
    }
}
