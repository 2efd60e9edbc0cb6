//! Shared helpers for vmseal's end-to-end tests (QEMU + OVMF + swtpm).
//!
//! The tests build the example appliances of `images/` with the real `vmseal` binary, boot
//! them through [`vmseal::run::boot::run`], and check what the stub reported on its record channel
//! against digests computed here, independently of vmseal: the section bytes are cut out of
//! the built `.efi` by `objcopy -O binary --only-section` (GNU binutils), their `VirtualSize`
//! is read from the PE section table by the small reader in this file, and the digests are
//! plain SHA-256 over those bytes. Which section goes to which PCR comes from
//! [`policies::sections`], the one place that states it.
//!
//! At most one VM runs at a time from these tests ([`vm_lock`]): the CI machine has two cores
//! and boots with TCG.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use policies::record::Line;
use policies::sections::{self, MEASURED};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Serialises VM boots across the tests of one process: hold the guard while a VM runs.
pub fn vm_lock() -> MutexGuard<'static, ()> {
    static VM: Mutex<()> = Mutex::new(());
    // A test that panicked while holding the lock has already stopped its VM (drop guards).
    VM.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Run a command, echoing it; panic with its output when it fails. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    eprintln!("+ {cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprint!("{stderr}");
    stdout
}

/// The `vmseal` CLI binary of this workspace, built once per test process with the same
/// cargo and target directory as the tests (`cargo build -p vmseal --bin vmseal`).
pub fn vmseal_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run(Command::new(cargo)
            .current_dir(repo_root())
            .args(["build", "-p", "vmseal", "--bin", "vmseal"]));
        // The test binary is target/<profile>/deps/e2e-…; the CLI is target/<profile>/vmseal.
        let exe = std::env::current_exe().expect("path of the test binary");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let candidates = [
            profile_dir.join("vmseal"),
            repo_root().join("target/debug/vmseal"),
        ];
        candidates
            .into_iter()
            .find(|p| p.is_file())
            .expect("target/<profile>/vmseal after cargo build -p vmseal")
    })
}

/// `images/hello/out/hello.elf`, built once per test process by `images/hello/build.sh`.
pub fn hello_elf() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        run(Command::new("bash").arg(repo_root().join("images/hello/build.sh")));
        repo_root().join("images/hello/out/hello.elf")
    })
}

/// `images/redteam/out/redteam.elf` (and the attestation service it runs beside), built once
/// per test process by `images/redteam/build.sh`.
pub fn redteam_elf() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        run(Command::new("bash").arg(repo_root().join("images/redteam/build.sh")));
        repo_root().join("images/redteam/out/redteam.elf")
    })
}

/// `images/linux/out/{vmlinuz,initrd.img}`, built once per test process by
/// `images/linux/build.sh` (downloads Debian packages into `images/linux/cache/`).
pub fn linux_inputs() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        run(Command::new("bash").arg(repo_root().join("images/linux/build.sh")));
        repo_root().join("images/linux/out")
    })
}

/// Outputs of one `vmseal build`.
#[derive(Clone, Debug)]
pub struct Built {
    /// `NAME.img`, the raw disk.
    pub image: PathBuf,
    /// `NAME.efi`, the appliance PE.
    pub efi: PathBuf,
}

/// Run `vmseal build MANIFEST --out OUT` and return the image and PE it wrote.
pub fn vmseal_build(manifest: &Path, out: &Path, name: &str) -> Built {
    run(Command::new(vmseal_bin())
        .arg("build")
        .arg(manifest)
        .arg("--out")
        .arg(out));
    let built = Built {
        image: out.join(format!("{name}.img")),
        efi: out.join(format!("{name}.efi")),
    };
    assert!(
        built.image.is_file(),
        "vmseal build wrote no {}",
        built.image.display()
    );
    assert!(
        built.efi.is_file(),
        "vmseal build wrote no {}",
        built.efi.display()
    );
    built
}

/// One PE section header, as far as the tests need it (PE/COFF spec, "Section Table").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeSection {
    /// The name (NUL padding removed).
    pub name: String,
    /// `VirtualSize`: how many bytes the loaded section has (and the stub measures).
    pub virtual_size: u32,
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The section table of a PE image: `e_lfanew` at 0x3C, "PE\0\0", the COFF header
/// (NumberOfSections at +6, SizeOfOptionalHeader at +20), then 40-byte section headers.
pub fn pe_sections(pe: &[u8]) -> Option<Vec<PeSection>> {
    let nt = le_u32(pe, 0x3C)? as usize;
    if pe.get(nt..nt + 4)? != b"PE\0\0" {
        return None;
    }
    let coff = nt + 4;
    let count = le_u16(pe, coff + 2)? as usize;
    let opt_size = le_u16(pe, coff + 16)? as usize;
    let table = coff + 20 + opt_size;
    (0..count)
        .map(|i| {
            let h = table + i * 40;
            let raw_name = pe.get(h..h + 8)?;
            let name = String::from_utf8_lossy(raw_name)
                .trim_end_matches('\0')
                .to_string();
            Some(PeSection {
                name,
                virtual_size: le_u32(pe, h + 8)?,
            })
        })
        .collect()
}

/// The bytes of section `name` as loaded: extracted with `objcopy -O binary --only-section`,
/// then zero-filled or cut to `virtual_size`.
pub fn section_bytes(efi: &Path, name: &str, virtual_size: u32, scratch: &Path) -> Vec<u8> {
    let out = scratch.join(format!("section{name}.bin"));
    run(Command::new("objcopy")
        .arg("-O")
        .arg("binary")
        .arg(format!("--only-section={name}"))
        .arg(efi)
        .arg(&out));
    let mut bytes = std::fs::read(&out).expect("objcopy output");
    bytes.resize(virtual_size as usize, 0);
    bytes
}

/// The loaded bytes of section `name` of the PE `efi` (see [`section_bytes`]), if present.
pub fn section(efi: &Path, name: &str, scratch: &Path) -> Option<Vec<u8>> {
    let pe = std::fs::read(efi).expect("read the appliance PE");
    let header = pe_sections(&pe)?.into_iter().find(|s| s.name == name)?;
    Some(section_bytes(efi, name, header.virtual_size, scratch))
}

/// The PCR banks swtpm has active without `swtpm_setup`, as the record names them.
pub const BANKS: [&str; 4] = ["sha1", "sha256", "sha384", "sha512"];

/// `bank`'s hash of `bytes` (`bank` one of [`BANKS`]).
pub fn hash(bank: &str, bytes: &[u8]) -> Vec<u8> {
    match bank {
        "sha1" => sha1::Sha1::digest(bytes).to_vec(),
        "sha256" => Sha256::digest(bytes).to_vec(),
        "sha384" => Sha384::digest(bytes).to_vec(),
        "sha512" => Sha512::digest(bytes).to_vec(),
        other => panic!("unknown bank {other}"),
    }
}

/// One measurement the stub must report:
/// `measure pcr=P type=T section=S part=… sha1=… sha256=… sha384=… sha512=…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The section.
    pub section: String,
    /// `name` or `data`.
    pub part: &'static str,
    /// The PCR.
    pub pcr: u32,
    /// The event type.
    pub event_type: u32,
    /// The digest in each of [`BANKS`], in that order.
    pub digests: [Vec<u8>; 4],
}

impl Expected {
    /// The digest in `bank` (one of [`BANKS`]).
    pub fn digest(&self, bank: &str) -> &[u8] {
        let i = BANKS
            .iter()
            .position(|b| *b == bank)
            .expect("a bank of BANKS");
        &self.digests[i]
    }
}

/// The measurements the stub must make for `efi`, in order, computed independently: for every
/// section of [`MEASURED`] (then `.svcN` in index order) present in the PE, H(name + NUL) and
/// H(contents).
pub fn expected_measurements(efi: &Path, scratch: &Path) -> Vec<Expected> {
    let pe = std::fs::read(efi).expect("read the appliance PE");
    let table = pe_sections(&pe).expect("a PE section table");
    let mut rules: Vec<(String, u32, u32)> = MEASURED
        .iter()
        .map(|r| (r.name.to_string(), r.pcr, r.event_type.0))
        .collect();
    let mut services: Vec<(usize, String)> = table
        .iter()
        .filter_map(|s| sections::service_index(&s.name).map(|i| (i, s.name.clone())))
        .collect();
    services.sort();
    let (svc_pcr, svc_type) = sections::service_rule();
    rules.extend(services.into_iter().map(|(_, n)| (n, svc_pcr, svc_type.0)));

    let mut out = Vec::new();
    for (name, pcr, event_type) in rules {
        let Some(sec) = table.iter().find(|s| s.name == name) else {
            continue;
        };
        if sec.virtual_size == 0 {
            continue; // systemd-stub skips empty sections
        }
        let contents = section_bytes(efi, &name, sec.virtual_size, scratch);
        let name_input = sections::name_digest_input(&name);
        for (part, bytes) in [("name", &name_input[..]), ("data", &contents[..])] {
            out.push(Expected {
                section: name.clone(),
                part,
                pcr,
                event_type,
                digests: BANKS.map(|bank| hash(bank, bytes)),
            });
        }
    }
    out
}

/// Compare the record's `measure` lines with `expected` (same order, same PCR, type and
/// digest in every bank of [`BANKS`]). Returns every difference, one per line.
pub fn check_measurements(record: &[Line], expected: &[Expected]) -> Result<(), String> {
    let measured: Vec<&Line> = record.iter().filter(|l| l.verb == "measure").collect();
    let mut errors = String::new();
    if measured.len() != expected.len() {
        let _ = writeln!(
            errors,
            "the stub reported {} measurements, expected {}",
            measured.len(),
            expected.len()
        );
    }
    for (i, e) in expected.iter().enumerate() {
        let Some(l) = measured.get(i) else {
            let _ = writeln!(errors, "missing: {} {} (PCR {})", e.section, e.part, e.pcr);
            continue;
        };
        let mut want = vec![
            ("section", e.section.clone()),
            ("part", e.part.to_string()),
            ("pcr", e.pcr.to_string()),
            ("type", format!("0x{:08x}", e.event_type)),
        ];
        want.extend(
            BANKS
                .iter()
                .zip(&e.digests)
                .map(|(bank, d)| (*bank, hex(d))),
        );
        for (key, value) in want {
            let got = l.get(key);
            if got.map(str::to_ascii_lowercase) != Some(value.to_ascii_lowercase()) {
                let _ = writeln!(
                    errors,
                    "measurement {i} ({l}): {key}={got:?}, expected {value}"
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The `bank` value of PCR `pcr` when it starts at zero and only the expected measurements
/// into it are extended, in order.
pub fn replay(bank: &str, pcr: u32, expected: &[Expected]) -> Vec<u8> {
    let size = hash(bank, b"").len();
    expected
        .iter()
        .filter(|e| e.pcr == pcr)
        .fold(vec![0u8; size], |value, e| {
            let mut input = value;
            input.extend_from_slice(e.digest(bank));
            hash(bank, &input)
        })
}

/// One event as `tpm2_eventlog` (tpm2-tools) prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogEvent {
    /// `PCRIndex`.
    pub pcr: u32,
    /// `EventType`, as tpm2-tools names it (`EV_EVENT_TAG`, …).
    pub event_type: String,
    /// `(AlgorithmId, Digest)` pairs, e.g. `("sha256", "ab…")`.
    pub digests: Vec<(String, String)>,
}

/// What `tpm2_eventlog` (tpm2-tools, an oracle vmseal did not write) makes of a binary TCG2
/// event log: the events, and the PCR values it computes by replaying them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tpm2Eventlog {
    /// The events in log order.
    pub events: Vec<LogEvent>,
    /// `(bank, index, lowercase hex)` for every PCR the log extends.
    pub pcrs: Vec<(String, u32, String)>,
}

/// Run `tpm2_eventlog` on `log` and parse its YAML output (the parts the tests need).
pub fn tpm2_eventlog(log: &Path) -> Tpm2Eventlog {
    let yaml = run(Command::new("tpm2_eventlog").arg(log));
    parse_tpm2_eventlog(&yaml)
}

/// Parse `tpm2_eventlog` output (tpm2-tools 5.x layout).
pub fn parse_tpm2_eventlog(yaml: &str) -> Tpm2Eventlog {
    let mut out = Tpm2Eventlog::default();
    let mut in_pcrs = false;
    let mut bank = String::new();
    let mut alg = String::new();
    for line in yaml.lines() {
        if line == "pcrs:" {
            in_pcrs = true;
            continue;
        }
        let t = line.trim();
        if in_pcrs {
            if let Some(b) = t.strip_suffix(':').filter(|_| !line.starts_with("    ")) {
                bank = b.to_string();
            } else if let Some((i, v)) = t.split_once(':') {
                let (Ok(i), Some(v)) = (i.trim().parse(), v.trim().strip_prefix("0x")) else {
                    continue;
                };
                out.pcrs.push((bank.clone(), i, v.to_ascii_lowercase()));
            }
        } else if t.starts_with("- EventNum:") {
            out.events.push(LogEvent::default());
        } else if let Some(e) = out.events.last_mut() {
            if let Some(v) = t.strip_prefix("PCRIndex:") {
                e.pcr = v.trim().parse().unwrap_or(u32::MAX);
            } else if let Some(v) = t.strip_prefix("EventType:") {
                e.event_type = v.trim().to_string();
            } else if let Some(v) = t.strip_prefix("- AlgorithmId:") {
                alg = v.trim().to_string();
            } else if let Some(v) = t.strip_prefix("Digest:") {
                e.digests
                    .push((alg.clone(), v.trim().trim_matches('"').to_ascii_lowercase()));
            }
        }
    }
    out
}

/// Boot with `opts` through `vmseal::run::boot::run` (timeout raised to 240 s), one VM at a time
/// ([`vm_lock`]); prints the verdict.
pub fn boot_image(opts: vmseal::run::boot::BootOptions) -> vmseal::run::boot::BootOutcome {
    let _vm = vm_lock();
    let opts = vmseal::run::boot::BootOptions {
        timeout_secs: 240,
        ..opts
    };
    let outcome = vmseal::run::boot::run(&opts).expect("the boot runner ran");
    eprintln!(
        "{}: {} ({}) in {:.1} s",
        opts.image.display(),
        outcome.verdict(),
        outcome.decision.reason,
        outcome.elapsed.as_secs_f64()
    );
    outcome
}

/// The record as text, one line each (for assertion messages).
pub fn record_text(record: &[Line]) -> String {
    record.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pe_section_table() {
        // e_lfanew = 0x40; COFF: 1 section, no optional header; one ".cmdline" header with
        // VirtualSize 28.
        let mut pe = vec![0u8; 0x40];
        pe[0x3C] = 0x40;
        pe.extend_from_slice(b"PE\0\0");
        pe.extend_from_slice(&[0x64, 0x86, 1, 0]); // Machine x86-64, NumberOfSections 1
        pe.extend_from_slice(&[0; 12]); // TimeDateStamp, PointerToSymbolTable, NumberOfSymbols
        pe.extend_from_slice(&[0, 0, 0x22, 0]); // SizeOfOptionalHeader 0, Characteristics
        pe.extend_from_slice(b".cmdline");
        pe.extend_from_slice(&28u32.to_le_bytes());
        pe.extend_from_slice(&[0; 28]);
        assert_eq!(
            pe_sections(&pe),
            Some(vec![PeSection {
                name: ".cmdline".into(),
                virtual_size: 28
            }])
        );
        assert_eq!(pe_sections(&pe[..0x50]), None, "truncated");
    }

    #[test]
    fn parses_tpm2_eventlog_output() {
        let yaml = r#"---
version: 1
events:
- EventNum: 0
  PCRIndex: 0
  EventType: EV_NO_ACTION
- EventNum: 36
  PCRIndex: 9
  EventType: EV_EVENT_TAG
  DigestCount: 2
  Digests:
  - AlgorithmId: sha1
    Digest: "789D"
  - AlgorithmId: sha256
    Digest: "f72f"
  EventSize: 21
pcrs:
  sha1:
    0  : 0x5CA4
    11 : 0x7cae
  sha256:
    9  : 0x9660
"#;
        let log = parse_tpm2_eventlog(yaml);
        assert_eq!(log.events.len(), 2);
        assert_eq!(log.events[1].pcr, 9);
        assert_eq!(log.events[1].event_type, "EV_EVENT_TAG");
        assert_eq!(
            log.events[1].digests,
            vec![
                ("sha1".into(), "789d".into()),
                ("sha256".into(), "f72f".into())
            ]
        );
        assert_eq!(
            log.pcrs,
            vec![
                ("sha1".into(), 0, "5ca4".into()),
                ("sha1".into(), 11, "7cae".into()),
                ("sha256".into(), 9, "9660".into())
            ]
        );
    }

    #[test]
    fn replay_matches_a_hand_computed_extend() {
        let e = |pcr, d: u8| Expected {
            section: ".x".into(),
            part: "data",
            pcr,
            event_type: 0xd,
            digests: BANKS.map(|b| vec![d; hash(b, b"").len()]),
        };
        let expected = [e(11, 1), e(12, 2)];
        let mut input = vec![0u8; 32];
        input.extend_from_slice(&[1u8; 32]);
        assert_eq!(
            replay("sha256", 11, &expected),
            Sha256::digest(&input).to_vec()
        );
        let mut input = vec![0u8; 20];
        input.extend_from_slice(&[2u8; 20]);
        assert_eq!(
            replay("sha1", 12, &expected),
            sha1::Sha1::digest(&input).to_vec()
        );
    }

    #[test]
    fn record_comparison_names_the_difference() {
        let e = Expected {
            section: ".guest".into(),
            part: "name",
            pcr: 11,
            event_type: 0xd,
            digests: BANKS.map(|b| vec![0xab; hash(b, b"").len()]),
        };
        let good = format!(
            "VMSEAL1 measure pcr=11 type=0x0000000d section=.guest part=name size=7 sha1={} sha256={} sha384={} sha512={}",
            hex(&[0xab; 20]),
            hex(&[0xab; 32]),
            hex(&[0xab; 48]),
            hex(&[0xab; 64])
        );
        let lines = Line::parse_all(&good).unwrap();
        assert_eq!(check_measurements(&lines, std::slice::from_ref(&e)), Ok(()));
        let bad = Line::parse_all(&good.replace("pcr=11", "pcr=12")).unwrap();
        let err = check_measurements(&bad, &[e]).unwrap_err();
        assert!(err.contains("pcr=Some(\"12\"), expected 11"), "{err}");
    }
}
