//! Firmware profiles learned from an event log alone (`vmseal firmware learn --from-log`,
//! format 2), against the real firmware logs and PCR dumps in
//! `shared/fixtures/ovmf-debian-2022.11` (Debian OVMF 2022.11 + swtpm; none of it produced by
//! vmseal). The images those logs booted are not held, so the proof is: the profile's
//! template, with its Secure Boot slot recomputed by vmseal from the variables the log shows
//! and its appliance slot filled with the log's own appliance events, replays to the PCR values
//! the guest read from the TPM (`pcrs-*.txt`), every bank; and PCR 0–3, 6 are the log's events
//! unchanged. Full predictions from profile + image are proved by boots in
//! `tests/tests/firmware_profile.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use policies::eventlog::{Event, Payload};
use policies::tcg::{EventType, HashAlg};
use vmseal::measure::firmware::Profile;
use vmseal::measure::firmware::template::{self, Step};
use vmseal::measure::pcrs_json::{LoggedEvent, PcrsFile};
use vmseal::measure::vars::Variable;

fn fixture(name: &str) -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/ovmf-debian-2022.11"
    ));
    assert!(
        dir.join("README.md").is_file(),
        "fixtures not found at {}: these tests need the `shared/` folder beside the repository \
         checkout",
        dir.display()
    );
    dir.join(name)
}

const LOGS: [(&str, &str); 3] = [
    ("eventlog-sb-off.bin", "pcrs-sb-off.txt"),
    ("eventlog-sb-on.bin", "pcrs-sb-on.txt"),
    ("eventlog-uki-sb-off.bin", "pcrs-uki-sb-off.txt"),
];

/// PCR 10 is Linux IMA's: extended after the firmware log ends (as in `policies/tests`).
const IMA: u32 = 10;

fn vmseal(args: &[&std::ffi::OsStr], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run vmseal")
}

/// `vmseal firmware learn --from-log LOG --out DIR/p.json`, no `--code`.
fn learn(log: &Path, dir: &Path) -> Profile {
    let out = dir.join("p.json");
    let o = vmseal(
        &[
            "firmware".as_ref(),
            "learn".as_ref(),
            "--from-log".as_ref(),
            log.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Profile::load(&out).unwrap()
}

/// `PCR <bank> <index> <HEX>` lines.
fn dump(name: &str) -> Vec<(String, u32, String)> {
    std::fs::read_to_string(fixture(name))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["PCR", bank, i, v] => Some((bank.to_string(), i.parse().ok()?, v.to_lowercase())),
                _ => None,
            }
        })
        .collect()
}

fn log_events(name: &str) -> (Vec<HashAlg>, Vec<Event>) {
    let log = policies::eventlog::parse(&std::fs::read(fixture(name)).unwrap()).unwrap();
    let banks = log.spec_id.algorithms.iter().map(|(a, _)| *a).collect();
    (banks, log.events)
}

/// The variable store the log shows (its PCR 7 variable events' names, GUIDs and data).
fn store_of(events: &[Event]) -> Vec<Variable> {
    events
        .iter()
        .filter(|e| e.pcr == 7 && e.event_type == EventType::EFI_VARIABLE_DRIVER_CONFIG)
        .filter_map(|e| match e.describe() {
            Payload::Variable { guid, name, data } if name != "SecureBoot" && !data.is_empty() => {
                Some(Variable {
                    guid: guid.0,
                    name,
                    attributes: 0,
                    data: data.to_vec(),
                })
            }
            _ => None,
        })
        .collect()
}

/// The profile of `log` filled with the log's own appliance events, the Secure Boot policy
/// recomputed by vmseal from the store the log shows.
fn refill(p: &Profile, banks: &[HashAlg], events: &[Event]) -> Vec<LoggedEvent> {
    let appliance = template::cut(events).unwrap().appliance;
    let store = store_of(events);
    let steps = p.steps(banks).unwrap();
    template::fill(&steps, |slot| match slot {
        Step::SecureBootPolicy(names) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            vmseal::measure::predict::secure_boot_policy_of(banks, &store, &names)
        }
        Step::Appliance { .. } => Ok(appliance
            .iter()
            .cloned()
            .map(|mut e| {
                e.digests.retain(|(a, _)| banks.contains(a));
                LoggedEvent::new(e)
            })
            .collect()),
        Step::Event(_) => unreachable!(),
    })
    .unwrap()
}

#[test]
fn a_profile_from_each_real_log_reproduces_that_logs_pcrs() {
    let t = tempfile::tempdir().unwrap();
    for (log, pcrs) in LOGS {
        let p = learn(&fixture(log), t.path());
        assert_eq!(p.format, 2, "{log}");
        assert!(
            p.firmware.sha256.is_empty(),
            "{log}: learned without --code"
        );
        let (banks, events) = log_events(log);
        // PCR 0-3 and 6: the log's events, unchanged and in order.
        let fw: Vec<Event> = events
            .iter()
            .filter(|e| [0, 1, 2, 3, 6].contains(&e.pcr))
            .cloned()
            .collect();
        let got: Vec<Event> = p
            .events_for(&banks)
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(got, fw, "{log}: PCR 0-3, 6");
        let filled = refill(&p, &banks, &events);
        let replay =
            policies::replay::replay_events(filled.iter().map(|e| &e.event), &banks).unwrap();
        let want = dump(pcrs);
        let mut compared = 0;
        for (bank, i, value) in &want {
            let alg = HashAlg::from_name(bank).unwrap();
            if *i == IMA || !banks.contains(&alg) {
                continue;
            }
            let got = replay.get(alg, *i).map(hex::encode);
            assert_eq!(
                got.as_deref(),
                Some(value.as_str()),
                "{log}: {bank} PCR {i}"
            );
            compared += 1;
        }
        // 3 banks × PCR 0-9 at least.
        assert!(compared >= 30, "{log}: only {compared} values compared");
    }
}

#[test]
fn the_uki_logs_failed_boot_option_is_kept_in_the_template() {
    let t = tempfile::tempdir().unwrap();
    let p = learn(&fixture("eventlog-uki-sb-off.bin"), t.path());
    let actions: Vec<String> = p
        .steps(&[HashAlg::SHA256])
        .unwrap()
        .iter()
        .filter_map(|s| match s {
            Step::Event(e) if e.event.pcr == 4 => template::action_text(&e.event),
            Step::Appliance { gpt } => Some(format!("appliance gpt={gpt}")),
            _ => None,
        })
        .collect();
    // The fixture README: "the empty DVD option was tried first, so PCR 4 has a
    // 'Returning from…/Calling…' pair".
    assert_eq!(
        actions,
        [
            "Calling EFI Application from Boot Option",
            "Returning from EFI Application from Boot Option",
            "Calling EFI Application from Boot Option",
            "appliance gpt=true",
        ]
    );
    // The identity is what the log measured into PCR 0: the S-CRTM version and two firmware
    // volumes (`tpm2_eventlog` shows the same in the fixture).
    let id = p.identity.as_ref().unwrap();
    assert_eq!(id.firmware_blobs.len(), 2);
    assert!(id.firmware_blobs[0].contains("0x820000"));
    assert!(id.pcr0.contains_key("sha256"));
}

/// The profile of one firmware build, used for a boot of another: `pcr diff` must name PCR 0
/// and the firmware volume first. `eventlog-uki-sb-off.bin` booted `OVMF_CODE_4M.fd`,
/// `eventlog-sb-off.bin` `OVMF_CODE_4M.secboot.fd` (fixture README).
#[test]
fn a_profile_of_another_firmware_is_named_at_pcr0_by_pcr_diff() {
    let t = tempfile::tempdir().unwrap();
    let p = learn(&fixture("eventlog-uki-sb-off.bin"), t.path());
    let (_, events) = log_events("eventlog-sb-off.bin");
    // The banks both have (the uki boot's TPM had no sha512).
    let banks = [HashAlg::SHA1, HashAlg::SHA256, HashAlg::SHA384];
    let filled = refill(&p, &banks, &events);
    let replay = policies::replay::replay_events(filled.iter().map(|e| &e.event), &banks).unwrap();
    let expected = t.path().join("expected.pcrs.json");
    std::fs::write(
        &expected,
        PcrsFile::new(&banks, &filled, &replay, None, serde_json::Map::new()).to_text(),
    )
    .unwrap();
    let o = vmseal(
        &[
            "pcr".as_ref(),
            "diff".as_ref(),
            "--json".as_ref(),
            expected.as_os_str(),
            fixture("eventlog-sb-off.bin").as_os_str(),
        ],
        t.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let first = &r["differences"][0];
    assert_eq!(first["pcr"], 0, "{r:#}");
    // Both firmware volumes have other digests in the two logs (`tpm2_eventlog` or
    // `vmseal eventlog show` of the fixtures: events 2 and 3); the first is named first.
    let why = first["explanations"][0].as_str().unwrap();
    assert!(
        why.contains("firmware event firmware volume at 0x820000")
            && why.contains("EV_EFI_PLATFORM_FIRMWARE_BLOB")
            && why.contains("not the profile's"),
        "{why}"
    );
    assert!(
        first["explanations"][1]
            .as_str()
            .unwrap()
            .contains("firmware volume at 0x900000"),
        "{first:#}"
    );
}

#[test]
fn learn_refuses_a_log_without_a_boot_and_needs_code_or_a_log() {
    let t = tempfile::tempdir().unwrap();
    // The sb-off log cut before the first image load: nothing for the appliance to replace.
    let bytes = std::fs::read(fixture("eventlog-sb-off.bin")).unwrap();
    let log = policies::eventlog::parse(&bytes).unwrap();
    let kept: Vec<Event> = log
        .events
        .iter()
        .take_while(|e| e.event_type != EventType::EFI_GPT_EVENT)
        .cloned()
        .collect();
    assert!(template::cut(&kept).is_none());
    let mut cut_log = log.clone();
    cut_log.events = kept;
    let cut_path = t.path().join("no-boot.bin");
    std::fs::write(&cut_path, cut_log.serialize()).unwrap();
    let out = t.path().join("p.json");
    let o = vmseal(
        &[
            "firmware".as_ref(),
            "learn".as_ref(),
            "--from-log".as_ref(),
            cut_path.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        t.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no-boot.bin") && err.contains("EV_EFI_BOOT_SERVICES_APPLICATION"),
        "{err}"
    );
    assert!(!out.exists());
    let out = t.path().join("p.json");
    let o = vmseal(
        &[
            "firmware".as_ref(),
            "learn".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        t.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(!out.exists());
    // A profile whose template lost its appliance slot is refused, naming the field.
    let p = learn(&fixture("eventlog-sb-on.bin"), t.path());
    let mut v: serde_json::Value = serde_json::to_value(&p).unwrap();
    let entries = v["template"].as_array_mut().unwrap();
    entries.retain(|e| e.get("appliance").is_none());
    let bad = t.path().join("bad.json");
    std::fs::write(&bad, v.to_string()).unwrap();
    let e = Profile::load(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.json") && e.contains("\"appliance\""), "{e}");
}

/// Every prefix of every fixture log, and every log with one event left out: learning either
/// refuses it (no image after the last boot attempt) or gives a profile that reads back and
/// resolves; never a panic (the fuzz target `firmware_profile` does the same on any bytes).
#[test]
fn learning_from_cut_logs_never_panics() {
    for (log, _) in LOGS {
        let full = policies::eventlog::parse(&std::fs::read(fixture(log)).unwrap()).unwrap();
        let n = full.events.len();
        let variants = (0..=n)
            .map(|k| full.events[..k].to_vec())
            .chain((0..n).map(|k| {
                let mut v = full.events.clone();
                v.remove(k);
                v
            }));
        let mut learned = 0;
        for events in variants {
            let mut l = full.clone();
            l.events = events;
            let id = vmseal::measure::firmware::FirmwareId {
                file: String::new(),
                sha256: String::new(),
                package: String::new(),
            };
            if let Ok(p) = Profile::from_log(&l, id, String::new(), "cut".into()) {
                let banks: Vec<HashAlg> = l.spec_id.algorithms.iter().map(|(a, _)| *a).collect();
                Profile::parse(&p.to_text(), "cut.json")
                    .unwrap()
                    .steps(&banks)
                    .unwrap();
                learned += 1;
            }
        }
        assert!(learned > n / 2, "{log}: {learned} of {} learned", 2 * n + 1);
    }
}
