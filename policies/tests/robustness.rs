//! Stable-toolchain stand-in for the cargo-fuzz targets in `fuzz/`: mutate the real fixture
//! logs, a Final Events Table and an encoded launch policy (bit flips, truncations, length
//! fields overwritten with absurd values, spliced bytes) with a deterministic xorshift PRNG,
//! and check every parser returns — `Ok` or `Err`, never a panic — and that what parses
//! round-trips.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use policies::eventlog::{self, EventLog, FinalEvents};
use policies::launch::{Channel, Console, Devices, LaunchPolicy, Partition, PayloadKind};
use policies::record::Line;

const ITERATIONS: usize = 20_000;
/// Stop early rather than make CI slow on a loaded machine.
const TIME_LIMIT: Duration = Duration::from_secs(60);

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        // xorshift64 (Marsaglia 2003).
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const ABSURD: [u32; 8] = [u32::MAX, 0x7FFF_FFFF, 0x8000_0000, 0x0001_0000, 0xFFFF, 6, 0, 1001];

fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..=rng.below(3) {
        match rng.below(5) {
            0 => {
                // bit flips
                for _ in 0..=rng.below(8) {
                    let i = rng.below(b.len());
                    if let Some(x) = b.get_mut(i) {
                        *x ^= 1 << rng.below(8);
                    }
                }
            }
            1 => {
                // truncation
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            2 => {
                // a length/count field overwritten with an absurd value
                let v = ABSURD[rng.below(ABSURD.len())].to_le_bytes();
                let i = rng.below(b.len().saturating_sub(3));
                if let Some(s) = b.get_mut(i..i + 4) {
                    s.copy_from_slice(&v);
                }
            }
            3 => {
                // random bytes inserted
                let i = rng.below(b.len() + 1);
                let extra: Vec<u8> = (0..=rng.below(16)).map(|_| rng.next() as u8).collect();
                b.splice(i..i, extra);
            }
            _ => {
                // a chunk duplicated (repeated events)
                let start = rng.below(b.len());
                let end = (start + rng.below(256)).min(b.len());
                let chunk = b[start..end].to_vec();
                b.splice(start..start, chunk);
            }
        }
    }
    b
}

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/ovmf-debian-2022.11"
    ))
    .join(name);
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!("fixture {} missing ({e}): `shared/` must sit beside the checkout", p.display())
    })
}

fn policy() -> Vec<u8> {
    let part = |name: &str, section: &str, base: u64, devices| Partition {
        name: name.into(),
        kind: PayloadKind::Elf,
        section: section.into(),
        memory: 8 << 20,
        base,
        devices,
        cpu_budget_ms: 0,
    };
    LaunchPolicy {
        name: "hello".into(),
        version: "0.1.0".into(),
        guest: part("hello", ".guest", 0x400_0000, Devices::NONE),
        services: vec![
            part("attest", ".svc0", 0x600_0000, Devices::TPM),
            part("log", ".svc1", 0x700_0000, Devices::SERIAL),
        ],
        console: Console::On,
        channels: vec![Channel {
            name: "attest".into(),
            client: "hello".into(),
            server: "attest".into(),
        }],
    }
    .encode()
}

#[test]
fn mutated_inputs_never_panic() {
    let logs: Vec<Vec<u8>> =
        ["eventlog-sb-off.bin", "eventlog-sb-on.bin", "eventlog-uki-sb-off.bin"]
            .into_iter()
            .map(fixture)
            .collect();
    let uki = eventlog::parse(&logs[2]).expect("fixture parses");
    let final_table =
        FinalEvents { version: 1, events: uki.events[uki.events.len() - 3..].to_vec() }.serialize();
    let policy = policy();
    let record = b"noise\r\nVMSEAL1 measure pcr=11 type=0x0000000d section=.linux part=name size=7 sha256=ab\r\nVMSEAL1 end\r\n".to_vec();

    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let (mut ok, mut err) = (0usize, 0usize);
    let mut done = 0;
    for i in 0..ITERATIONS {
        if started.elapsed() > TIME_LIMIT {
            break;
        }
        done = i + 1;
        match i % 4 {
            0 | 1 => {
                let which = rng.below(logs.len());
                let input = mutate(&mut rng, &logs[which]);
                match eventlog::parse(&input) {
                    Ok(log) => {
                        ok += 1;
                        let again =
                            eventlog::parse(&log.serialize()).expect("serialized log parses");
                        assert_eq!(again, log);
                        for e in &log.events {
                            let _ = e.describe();
                        }
                        if i % 64 == 0 {
                            let _ = policies::replay::replay(&log);
                        }
                    }
                    Err(e) => {
                        err += 1;
                        assert!(!e.to_string().is_empty());
                    }
                }
            }
            2 => {
                let input = mutate(&mut rng, &final_table);
                match eventlog::parse_final_events(&input, &uki.spec_id) {
                    Ok(fe) => {
                        ok += 1;
                        let merged = eventlog::merge(
                            &EventLog { spec_id: uki.spec_id.clone(), events: vec![] },
                            &fe,
                            1,
                        );
                        assert_eq!(merged.events.len(), fe.events.len().saturating_sub(1));
                    }
                    Err(_) => err += 1,
                }
            }
            _ => {
                let input = mutate(&mut rng, &policy);
                match LaunchPolicy::decode(&input) {
                    Ok(p) => {
                        ok += 1;
                        assert_eq!(p.encode(), input, "canonical encoding");
                        let _ = p.validate();
                    }
                    Err(e) => {
                        err += 1;
                        assert!(!e.to_string().is_empty());
                    }
                }
                let text = mutate(&mut rng, &record);
                let _ = Line::parse_all(&String::from_utf8_lossy(&text));
            }
        }
    }
    println!("{done} mutated inputs in {:?}: {ok} parsed, {err} rejected", started.elapsed());
    assert!(done >= 1000, "too few iterations ran ({done})");
    assert!(err > 0 && ok > 0, "mutations should both keep and break inputs");
}
