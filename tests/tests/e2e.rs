//! End-to-end: build each example appliance with the real `vmseal` CLI, boot it in QEMU + OVMF
//! (Secure Boot off, pristine variables) + swtpm through `vmseal::run::boot::run`, and check what
//! the stub measured against digests computed here without vmseal (see `vmseal_tests`).
//!
//! The two boots are serialised by `vm_lock` (one VM at a time: two cores, TCG).

use std::path::Path;
use std::process::Command;

use policies::record::Line;
use policies::sections;
use sha2::{Digest, Sha256};
use vmseal::run::boot::{self, BootOptions, Verdict};
use vmseal_tests::{
    BANKS, Built, boot_image, check_measurements, expected_measurements, hello_elf, hex,
    linux_inputs, record_text, replay, repo_root, run, section, tpm2_eventlog, vmseal_build,
};

/// Build `images/NAME` (its payload first, then `vmseal build`) into `scratch/out`.
fn build_example(name: &str, scratch: &Path) -> Built {
    let payload_ready = match name {
        "hello" => hello_elf().is_file(),
        _ => {
            linux_inputs().join("vmlinuz").is_file() && linux_inputs().join("initrd.img").is_file()
        }
    };
    assert!(
        payload_ready,
        "images/{name}: the build script wrote no payload"
    );
    vmseal_build(
        &repo_root().join(format!("images/{name}/vmseal.toml")),
        &scratch.join("out"),
        name,
    )
}

fn find<'a>(record: &'a [Line], verb: &str) -> Option<&'a Line> {
    record.iter().find(|l| l.verb == verb)
}

#[test]
fn hello_guest_boots_and_its_measurements_match() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let built = build_example("hello", scratch.path());
    let expected = expected_measurements(&built.efi, scratch.path());
    assert!(
        expected.iter().any(|e| e.section == sections::GUEST),
        "the appliance PE has no {} section",
        sections::GUEST
    );

    let outcome = boot_image(BootOptions::new(&built.image, scratch.path().join("run")));
    let record = &outcome.record;
    let text = record_text(record);
    assert!(
        outcome.console.contains("hello from vmseal guest"),
        "the guest's greeting is not on the console:\n{}",
        outcome.console
    );
    assert_eq!(
        outcome.verdict(),
        Verdict::Booted,
        "{}\nrecord:\n{text}",
        outcome.decision.reason
    );
    if let Err(diff) = check_measurements(record, &expected) {
        panic!("the stub's measurements differ:\n{diff}\nrecord:\n{text}");
    }
    let launch = find(record, "launch").unwrap_or_else(|| panic!("no launch line:\n{text}"));
    assert_eq!(launch.get("kind"), Some("hypervisor"), "{launch}");
    assert_eq!(launch.get("section"), Some(sections::GUEST), "{launch}");
    // The guest partition starts at the ELF's e_entry (as readelf, not vmseal, reads it).
    let readelf = run(Command::new("readelf").arg("-h").arg(hello_elf()));
    let e_entry = readelf
        .lines()
        .find_map(|l| l.trim().strip_prefix("Entry point address:"))
        .map(|v| v.trim().to_string())
        .expect("readelf prints the entry point");
    let guest = record
        .iter()
        .find(|l| l.verb == "partition" && l.get("section") == Some(sections::GUEST))
        .unwrap_or_else(|| panic!("no partition line for {}:\n{text}", sections::GUEST));
    assert_eq!(
        guest
            .get("entry")
            .map(|e| u64::from_str_radix(e.trim_start_matches("0x"), 16)),
        Some(u64::from_str_radix(e_entry.trim_start_matches("0x"), 16)),
        "{guest} vs. e_entry {e_entry}"
    );
    let exit = find(record, "exit").unwrap_or_else(|| panic!("no exit line:\n{text}"));
    assert_eq!(exit.get("status"), Some("0"), "{exit}");
    assert!(find(record, "end").is_some(), "no end line:\n{text}");
}

#[test]
fn linux_appliance_boots_and_its_pcrs_match_the_record() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let built = build_example("linux", scratch.path());
    let expected = expected_measurements(&built.efi, scratch.path());
    for s in [
        sections::LINUX,
        sections::OSREL,
        sections::CMDLINE,
        sections::INITRD,
    ] {
        assert!(
            expected.iter().any(|e| e.section == s),
            "the appliance PE has no {s} section"
        );
    }

    let outcome = boot_image(BootOptions::new(&built.image, scratch.path().join("run")));
    let record = &outcome.record;
    let text = record_text(record);
    assert_eq!(
        outcome.verdict(),
        Verdict::Booted,
        "{}\nrecord:\n{text}",
        outcome.decision.reason
    );
    assert!(outcome.console.contains(boot::LINUX_MARKER));
    if let Err(diff) = check_measurements(record, &expected) {
        panic!("the stub's measurements differ:\n{diff}\nrecord:\n{text}");
    }
    let launch = find(record, "launch").unwrap_or_else(|| panic!("no launch line:\n{text}"));
    assert_eq!(launch.get("kind"), Some("linux"), "{launch}");
    assert_eq!(launch.get("section"), Some(sections::LINUX), "{launch}");

    // The guest read the TPM itself: the PCRs the stub extends must hold exactly the replay of
    // the digests computed here, in every bank (nothing else extends PCR 11 or 12 here).
    for pcr in [11u32, 12] {
        for bank in BANKS {
            let want = hex(&replay(bank, pcr, &expected));
            let got = outcome
                .pcrs
                .iter()
                .find(|p| p.bank == bank && p.index == pcr)
                .unwrap_or_else(|| panic!("the guest printed no {bank} PCR {pcr}"));
            assert_eq!(
                got.value, want,
                "{bank} PCR {pcr} as read by the guest vs the replay"
            );
        }
    }

    // The event log the guest read from securityfs, replayed by tpm2_eventlog (tpm2-tools),
    // reproduces every PCR the guest read from the TPM, in every bank.
    let log = outcome.record_dir.join("eventlog.bin");
    assert!(log.is_file(), "the guest printed no event log");
    let parsed = tpm2_eventlog(&log);
    assert!(
        parsed.pcrs.len() >= 4 * 10,
        "tpm2_eventlog computed only {:?}",
        parsed.pcrs
    );
    for (bank, index, value) in &parsed.pcrs {
        let read = outcome
            .pcrs
            .iter()
            .find(|p| p.bank == *bank && p.index == *index);
        assert_eq!(
            read.map(|p| p.value.as_str()),
            Some(value.as_str()),
            "{bank} PCR {index}: TPM vs. replay of the event log"
        );
    }
    // PCR 9, by the kernel's EFI stub: the LoadOptions the stub passed (the `.cmdline` bytes
    // as UTF-16LE with a NUL) and the initrd it served (the `.initrd` section).
    let cmdline = section(&built.efi, sections::CMDLINE, scratch.path()).expect(".cmdline");
    let load_options: Vec<u8> = String::from_utf8(cmdline)
        .expect(".cmdline is UTF-8")
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect();
    let initrd = expected
        .iter()
        .find(|e| e.section == sections::INITRD && e.part == "data")
        .expect(".initrd measured");
    let mut pcr9: Vec<String> = parsed
        .events
        .iter()
        .filter(|e| e.pcr == 9 && e.event_type == "EV_EVENT_TAG")
        .filter_map(|e| {
            e.digests
                .iter()
                .find(|(a, _)| a == "sha256")
                .map(|(_, d)| d.clone())
        })
        .collect();
    pcr9.sort();
    let mut want9 = vec![
        hex(Sha256::digest(&load_options).as_slice()),
        hex(initrd.digest("sha256")),
    ];
    want9.sort();
    assert_eq!(pcr9, want9, "PCR 9 events (sha256): LoadOptions and initrd");

    assert!(
        outcome.console.contains("vmseal-secureboot disabled"),
        "Secure Boot should be off with the pristine variable store"
    );
}

#[test]
fn secure_boot_refuses_an_image_signed_by_no_enrolled_key() {
    // OVMF_VARS_4M.ms.fd enrolls Microsoft's keys (Secure Boot on); the unsigned appliance
    // must be refused by the firmware before the stub runs.
    let ms_vars = Path::new("/usr/share/OVMF/OVMF_VARS_4M.ms.fd");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let built = build_example("hello", scratch.path());
    let outcome = boot_image(BootOptions {
        vars: Some(ms_vars.to_path_buf()),
        secure_boot: true,
        ..BootOptions::new(&built.image, scratch.path().join("run"))
    });
    assert_eq!(
        outcome.verdict(),
        Verdict::FirmwareRejected,
        "{}",
        outcome.decision.reason
    );
    assert!(
        outcome.record.is_empty(),
        "the stub must not have run: {:?}",
        outcome.record
    );
    assert!(!outcome.console.contains("hello from vmseal guest"));
}
