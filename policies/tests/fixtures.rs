//! The event-log parser, serializer, replay and PCR 11 scheme against real firmware logs:
//! `shared/fixtures/ovmf-debian-2022.11` (Debian OVMF 2022.11 + swtpm 0.7.1; none of it was
//! produced by vmseal), plus `tpm2_eventlog` (tpm2-tools) as an independent parser.
//!
//! The fixtures live in `shared/` beside the repository checkout (`<checkout>/../shared`).

use std::path::PathBuf;
use std::process::Command;

use policies::digest::hash;
use policies::eventlog::{self, Event, EventLog, Payload};
use policies::replay::{Pcrs, replay};
use policies::sections;
use policies::tcg::{EventType, HashAlg, pcr};

/// (log, PCR dump, number of TCG_PCR_EVENT2 entries, banks in the log).
const FIXTURES: &[(&str, &str, usize, &[HashAlg])] = &[
    ("eventlog-sb-off.bin", "pcrs-sb-off.txt", 29, &HashAlg::COMPUTED),
    ("eventlog-sb-on.bin", "pcrs-sb-on.txt", 30, &HashAlg::COMPUTED),
    (
        "eventlog-uki-sb-off.bin",
        "pcrs-uki-sb-off.txt",
        39,
        &[HashAlg::SHA1, HashAlg::SHA256, HashAlg::SHA384],
    ),
];

fn fixture_dir() -> PathBuf {
    // CARGO_MANIFEST_DIR is <checkout>/policies, so shared/ is two levels up.
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

fn read(name: &str) -> Vec<u8> {
    let p = fixture_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", p.display()))
}

fn load(name: &str) -> EventLog {
    eventlog::parse(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_fixture_parses_and_round_trips() {
    for (log, _, count, banks) in FIXTURES {
        let bytes = read(log);
        let parsed = load(log);
        assert_eq!(parsed.events.len(), *count, "{log}: number of events");
        let algs: Vec<HashAlg> = parsed.spec_id.algorithms.iter().map(|(a, _)| *a).collect();
        assert_eq!(&algs, banks, "{log}: Spec ID banks");
        assert_eq!(parsed.serialize(), bytes, "{log}: serialize is not byte-identical");
        for (i, e) in parsed.events.iter().enumerate() {
            assert_eq!(e.digests.len(), banks.len(), "{log} event {i}");
            // Every event type on the boot path decodes as its structure.
            let decodes = !matches!(e.describe(), Payload::Raw(_));
            let structured = [
                EventType::EFI_VARIABLE_DRIVER_CONFIG,
                EventType::EFI_VARIABLE_BOOT,
                EventType::EFI_VARIABLE_AUTHORITY,
                EventType::EFI_BOOT_SERVICES_APPLICATION,
                EventType::EFI_GPT_EVENT,
                EventType::EFI_PLATFORM_FIRMWARE_BLOB,
                EventType::EVENT_TAG,
                EventType::EFI_ACTION,
                EventType::IPL,
                EventType::SEPARATOR,
                EventType::S_CRTM_VERSION,
            ];
            if structured.contains(&e.event_type) {
                assert!(
                    decodes,
                    "{log} event {i} ({:?}) did not decode: {:02x?}",
                    e.event_type, e.data
                );
            }
        }
        let names: Vec<&str> = algs.iter().filter_map(|a| a.name()).collect();
        println!("{log}: {count} events, banks {names:?}, {} bytes round-trip", bytes.len());
    }
}

/// PCR 10 is Linux IMA's: the kernel extends its `boot_aggregate` (and any policy
/// measurements) after ExitBootServices, and those events are in the IMA log
/// (`/sys/kernel/security/ima/*_runtime_measurements`), not in the firmware log the fixtures
/// hold. The dumps were read after Linux booted, so PCR 10 cannot be replayed from these logs;
/// every other listed PCR must match exactly.
const IMA_PCR: u32 = 10;

fn parsed_has_no_event_in(log: &str, pcr: u32) -> bool {
    load(log).events.iter().all(|e| e.pcr != pcr)
}

#[test]
fn replay_reproduces_every_pcr_dump() {
    for (log, dump, _, banks) in FIXTURES {
        let replayed = replay(&load(log)).unwrap_or_else(|e| panic!("{log}: {e}"));
        let text = String::from_utf8(read(dump)).expect("PCR dump is text");
        let expected = Pcrs::from_text(&text).unwrap_or_else(|e| panic!("{dump}: {e}"));
        let mut checked = 0;
        let mut skipped = 0;
        assert!(parsed_has_no_event_in(log, IMA_PCR), "{log} has a PCR 10 event");
        for alg in expected.banks() {
            assert!(banks.contains(&alg), "{dump} lists bank {alg:?} the log does not have");
            for i in 0..24u32 {
                if let Some(want) = expected.get(alg, i) {
                    if i == IMA_PCR {
                        // Not a firmware measurement: see IMA_PCR.
                        assert_ne!(
                            Some(want),
                            replayed.get(alg, i),
                            "{dump}: PCR 10 unexpectedly at its start value"
                        );
                        skipped += 1;
                        continue;
                    }
                    assert_eq!(
                        replayed.get(alg, i),
                        Some(want),
                        "{log}: PCR {i} bank {} differs from {dump}",
                        alg.name().unwrap_or("?")
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 0, "{dump} has no values");
        println!(
            "{log}: {checked} PCR values match {dump} (banks {:?}); {skipped} PCR 10 values skipped (IMA)",
            expected.banks().filter_map(|a| a.name()).collect::<Vec<_>>()
        );
    }
}

/// The UKI boot's PCR 11 comes from systemd-stub measuring `.linux`, `.osrel`, `.cmdline`,
/// `.initrd`: vmseal's `sections` rules (name digest, then contents digest, both EV_IPL with
/// the UTF-16 name as data, in `MEASURED` order) must reproduce it.
#[test]
fn uki_pcr11_follows_the_section_rules() {
    let log = load("eventlog-uki-sb-off.bin");
    let banks = [HashAlg::SHA1, HashAlg::SHA256, HashAlg::SHA384];
    let pcr11: Vec<&Event> = log.events.iter().filter(|e| e.pcr == pcr::KERNEL_BOOT).collect();
    let present = [sections::LINUX, sections::OSREL, sections::CMDLINE, sections::INITRD];
    let order: Vec<&str> = sections::MEASURED
        .iter()
        .filter(|r| r.pcr == pcr::KERNEL_BOOT && present.contains(&r.name))
        .map(|r| r.name)
        .collect();
    assert_eq!(order, present, "MEASURED order of the UKI sections");
    assert_eq!(pcr11.len(), 2 * order.len());
    let osrel = read("uki-os-release");
    let cmdline = read("uki-cmdline");

    let mut pcrs = Pcrs::initial(&banks).unwrap();
    for (k, name) in order.iter().enumerate() {
        let rule = sections::MEASURED.iter().find(|r| r.name == *name).unwrap();
        let (name_ev, data_ev) = (pcr11[2 * k], pcr11[2 * k + 1]);
        for ev in [name_ev, data_ev] {
            assert_eq!(ev.event_type, rule.event_type, "{name}");
            assert_eq!(ev.pcr, rule.pcr, "{name}");
            assert_eq!(ev.data, sections::event_data(name), "{name}: event data");
        }
        let contents: Option<&[u8]> = match *name {
            sections::OSREL => Some(&osrel),
            sections::CMDLINE => Some(&cmdline),
            _ => None, // kernel and initrd are not in the fixtures
        };
        for alg in banks {
            let name_digest = hash(alg, &sections::name_digest_input(name)).unwrap();
            assert_eq!(name_ev.digest(alg), Some(&name_digest[..]), "{name} name digest {alg:?}");
            let data_digest = match contents {
                Some(c) => {
                    let d = hash(alg, c).unwrap();
                    assert_eq!(data_ev.digest(alg), Some(&d[..]), "{name} contents digest {alg:?}");
                    d
                }
                None => data_ev.digest(alg).unwrap().to_vec(),
            };
            pcrs.extend(alg, rule.pcr, &name_digest).unwrap();
            pcrs.extend(alg, rule.pcr, &data_digest).unwrap();
        }
    }
    let expected =
        Pcrs::from_text(&String::from_utf8(read("pcrs-uki-sb-off.txt")).unwrap()).unwrap();
    for alg in banks {
        assert_eq!(pcrs.get(alg, 11), expected.get(alg, 11), "PCR 11 {alg:?}");
    }
}

/// `stub_events` must produce, for the sections whose contents the fixtures have, exactly the
/// events systemd-stub logged.
#[test]
fn stub_events_match_systemd_stub() {
    let log = load("eventlog-uki-sb-off.bin");
    let banks = [HashAlg::SHA1, HashAlg::SHA256, HashAlg::SHA384];
    let pcr11: Vec<&Event> = log.events.iter().filter(|e| e.pcr == 11).collect();
    let osrel = read("uki-os-release");
    let cmdline = read("uki-cmdline");
    // Deliberately out of order: stub_events sorts by the MEASURED table.
    let events = policies::predict::stub_events(
        &[(sections::CMDLINE, &cmdline), (sections::OSREL, &osrel)],
        &banks,
    )
    .unwrap();
    let want: Vec<Event> = pcr11[2..6].iter().map(|e| (*e).clone()).collect();
    assert_eq!(events, want);
}

// ---- tpm2_eventlog cross-check ----

#[derive(Debug, Default, PartialEq)]
struct ToolEvent {
    pcr: u32,
    event_type: String,
    digests: Vec<(String, String)>,
}

/// Parse the YAML-ish output of `tpm2_eventlog` (tpm2-tools 5.x): for each `- EventNum:` item,
/// `PCRIndex`, `EventType`, and the `- AlgorithmId:` / `Digest:` pairs of `Digests:`.
fn parse_tool_output(text: &str) -> Vec<ToolEvent> {
    let mut out: Vec<ToolEvent> = Vec::new();
    let mut in_digests = false;
    let mut pending_alg: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if line.starts_with("- EventNum:") {
            out.push(ToolEvent::default());
            in_digests = false;
            continue;
        }
        // Only top-level keys of an event (two-space indent) end the digest list.
        let top = line.starts_with("  ") && !line.starts_with("   ") && !t.starts_with('-');
        let Some(cur) = out.last_mut() else { continue };
        if top {
            in_digests = t == "Digests:";
            if let Some(v) = t.strip_prefix("PCRIndex: ") {
                cur.pcr = v.parse().expect("PCRIndex");
            } else if let Some(v) = t.strip_prefix("EventType: ") {
                cur.event_type = v.into();
            }
            continue;
        }
        if in_digests {
            if let Some(v) = t.strip_prefix("- AlgorithmId: ") {
                pending_alg = Some(v.into());
            } else if let Some(v) = t.strip_prefix("Digest: ") {
                let alg = pending_alg.take().expect("Digest without AlgorithmId");
                cur.digests.push((alg, v.trim_matches('"').to_lowercase()));
            }
        }
    }
    out
}

#[test]
fn tpm2_eventlog_agrees_on_every_event() {
    let tool = ["/usr/bin/tpm2_eventlog", "tpm2_eventlog"]
        .into_iter()
        .find(|t| Command::new(t).arg("--version").output().is_ok());
    let Some(tool) = tool else {
        println!("NOTICE: tpm2_eventlog (tpm2-tools) not installed; cross-check skipped");
        return;
    };
    for (log, _, count, _) in FIXTURES {
        let path = fixture_dir().join(log);
        let out = Command::new(tool).arg(&path).output().expect("run tpm2_eventlog");
        assert!(
            out.status.success(),
            "{tool} {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = parse_tool_output(&String::from_utf8_lossy(&out.stdout));
        let ours = load(log);
        // EventNum 0 is the Spec ID header.
        assert_eq!(theirs.len(), count + 1, "{log}: tpm2_eventlog event count");
        assert_eq!(theirs[0].pcr, 0);
        assert_eq!(theirs[0].event_type, "EV_NO_ACTION");
        for (i, (t, o)) in theirs[1..].iter().zip(&ours.events).enumerate() {
            assert_eq!(t.pcr, o.pcr, "{log} event {i}: PCRIndex");
            assert_eq!(
                Some(t.event_type.as_str()),
                o.event_type.name(),
                "{log} event {i}: EventType"
            );
            let mine: Vec<(String, String)> = o
                .digests
                .iter()
                .map(|(a, d)| {
                    (a.name().unwrap().into(), d.iter().map(|b| format!("{b:02x}")).collect())
                })
                .collect();
            assert_eq!(t.digests, mine, "{log} event {i}: digests");
        }
        println!("{log}: tpm2_eventlog agrees on {} events", theirs.len() - 1);
    }
}
