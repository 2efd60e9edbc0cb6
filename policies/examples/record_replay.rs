//! Check a boot record: collect the event log and the PCRs the stub sent on its record
//! channel, replay the log, and compare the replay with the PCRs read over TIS, every bank.
//!
//! `cargo run -p policies --example record_replay -- RUN/record.log [eventlog.bin]`
//! Exit 0 when every PCR of every bank matches, 1 otherwise.

use std::process::ExitCode;

use policies::record::{Line, collect_eventlog, collect_pcrs};
use policies::{eventlog, replay};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: record_replay RECORD.LOG [EVENTLOG.BIN]");
        return ExitCode::from(2);
    };
    let text = std::fs::read(path).expect("read the record");
    let lines = Line::parse_all(&String::from_utf8_lossy(&text)).expect("parse the record");
    let log_bytes = collect_eventlog(&lines).expect("collect the event log");
    if let Some(out) = args.get(1) {
        std::fs::write(out, &log_bytes).expect("write the event log");
    }
    let log = eventlog::parse(&log_bytes).expect("parse the event log");
    let pcrs = collect_pcrs(&lines).expect("collect the PCRs");
    let replayed = replay::replay(&log).expect("replay");
    println!("event log: {} bytes, {} events", log_bytes.len(), log.events.len());
    let (mut same, mut differ) = (0, 0);
    for (alg, index, value) in &pcrs {
        if replayed.get(*alg, *index) == Some(value.as_slice()) {
            same += 1;
        } else {
            differ += 1;
            println!("DIFFERS {} {index}", alg.name().unwrap_or("?"));
        }
    }
    let banks: Vec<_> = replayed.banks().filter_map(|a| a.name()).collect();
    println!("replayed banks {banks:?}; TIS PCRs: {} equal to the replay, {differ} differ", same);
    if differ == 0 && same > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
