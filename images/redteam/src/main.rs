//! # redteam — a partition written to escape
//!
//! Every attack must be stopped by the hypervisor, reported as a violation of the right kind
//! at the right address, while the attestation service keeps answering and the hypervisor
//! shuts down cleanly (`tests/tests/hypervisor.rs`). The attack is chosen by the measured
//! command line, `attack=<name>`:
//!
//! | attack | what it does | expected violation |
//! | --- | --- | --- |
//! | `read-hypervisor` | reads physical 0x100000 (firmware / hypervisor memory) | `memory` |
//! | `write-service` | writes the attestation service's memory at 0x6000000 | `memory` |
//! | `tpm-mmio` | reads the TPM's TIS registers at 0xFED40000 | `mmio` |
//! | `port-serial` | `out` to COM1 (0x3F8) | `port-io` |
//! | `port-pci` | `out` to the PCI config address port 0xCF8 | `port-io` |
//! | `hypercall-unknown` | hypercall number 0x99 | `hypercall-unknown` |
//! | `hypercall-bad-pointer` | `CONSOLE_WRITE` of memory outside its grant | `hypercall-bad-pointer` |
//! | `hypercall-flood` | a million `VERSION` calls in a tight loop | `hypercall-flood` |
//! | `triple-fault` | `ud2` with no IDT | `triple-fault` |
//! | `apic-timer` | writes the local APIC timer's initial count (0xFEE00380) to silence the hypervisor's timer | `mmio` |
//! | `x2apic-timer` | the same through the x2APIC MSR 0x838 | `msr` |
//! | `spin-forever` | spins without a single exit, forever | `cpu-budget` (its manifest gives it 3 s; the timer preempts it every slice meanwhile) |
//!
//! Before attacking it proves the service answers (one `ATTEST`). If an attack above comes
//! back, it prints `redteam: ESCAPED <attack>` and exits 99.
//!
//! Attacks on the *service* rather than on the isolation are well-formed calls: they are
//! refused with an error, not stopped. The guest then proves the service still answers (a
//! second `ATTEST`, `redteam: the service answers after the attack`) and exits 0; if the attack
//! worked it prints `ESCAPED` and exits 99:
//!
//! | attack | what it does | expected |
//! | --- | --- | --- |
//! | `recv-idle` | `RECV` on its `attest` channel without asking anything (the idle service used to be stopped for the "deadlock") | `RECV` fails with `no-reply`; record `wait-failed partition=redteam channel=attest error=no-reply` |
//! | `spin` | spins for a second without a single exit | the hypervisor's timer preempts it every slice (`hv-stats preemptions=` ≥ 50); the service answers afterwards |
//! | `spoof-caller` | `SEND`s its own attestation request with `caller="hello"` on the `attest` channel and `RECV`s the report | the service sees the hypervisor's stamp (`redteam`): the report says `caller=redteam` with status `STATUS_WRONG_CALLER`, never `hello` |
#![no_std]
#![no_main]

use core::fmt::Write;
use policies::attest::{Report, Request, STATUS_WRONG_CALLER};
use policies::bootinfo::BootInfo;
use policies::hypercall::Call;
use vmseal_guest::{self as sdk, Console};

/// How long the `spin` attack holds the processor.
const SPIN_MS: u64 = 1000;

/// What an attack on the service got.
enum Refused {
    /// The hypervisor (or the service) refused it: how, for the console.
    Yes(&'static str),
    /// It worked.
    No,
}

/// The attacks on the service; `None` for a name that is not one of them.
fn attack_service(name: &[u8], con: &mut Console, tsc_per_ms: u64) -> Option<Refused> {
    let channel = sdk::channel_find(policies::hypercall::ATTEST_CHANNEL).ok();
    let mut buf = [0u8; 4096];
    Some(match name {
        b"spoof-caller" => {
            let mut forged = [0u8; 256];
            let n = Request {
                caller: b"hello",
                nonce: b"spoofed-nonce",
            }
            .encode(&mut forged)
            .unwrap_or(0);
            let id = channel.unwrap_or(u64::MAX);
            if let Err(e) = sdk::send(id, forged.get(..n).unwrap_or(&[])) {
                let _ = writeln!(con, "redteam: SEND refused: {e}\r");
                return Some(Refused::Yes("send-refused"));
            }
            match sdk::recv(id, &mut buf) {
                Ok((_, body)) => match Report::decode(body) {
                    Ok(r) => {
                        let _ = write!(
                            con,
                            "redteam: spoofed report status={:#x} caller=",
                            r.status
                        );
                        con.write_bytes(r.caller);
                        let _ = writeln!(con, "\r");
                        if r.caller == b"hello" {
                            Refused::No
                        } else if r.caller == b"redteam" && r.status == STATUS_WRONG_CALLER {
                            Refused::Yes("wrong-caller")
                        } else {
                            Refused::No
                        }
                    }
                    Err(_) => Refused::Yes("no-report"),
                },
                Err(e) => {
                    let _ = writeln!(con, "redteam: RECV refused: {e}\r");
                    Refused::Yes("recv-refused")
                }
            }
        }
        b"spin" => {
            // Hold the processor without a single exit for SPIN_MS; the hypervisor's timer must
            // take it away every slice (the record's `hv-stats preemptions=`).
            // It counts its loops: the busy guest's throughput, with and without the timer.
            let t0 = sdk::rdtsc();
            let mut loops = 0u64;
            while sdk::rdtsc().wrapping_sub(t0) < SPIN_MS.saturating_mul(tsc_per_ms.max(1)) {
                loops += 1;
                core::hint::spin_loop();
            }
            let _ = writeln!(con, "redteam: spin loops_per_ms={}\r", loops / SPIN_MS);
            Refused::Yes("preempted")
        }
        b"recv-idle" => match sdk::recv(channel.unwrap_or(u64::MAX), &mut buf) {
            Err(e) if e == policies::hypercall::Error::NO_REPLY => Refused::Yes("no-reply"),
            Err(e) => {
                let _ = writeln!(con, "redteam: RECV failed otherwise: {e}\r");
                Refused::No
            }
            Ok(_) => Refused::No,
        },
        _ => return None,
    })
}

/// Prove the service answers an honest request after an attack.
fn service_answers(con: &mut Console) -> bool {
    let mut report = [0u8; 4096];
    let nonce = b"redteam-after-attack";
    match sdk::attest(nonce, &mut report) {
        Ok(n) => match report.get(..n).map(Report::decode) {
            Some(Ok(r)) if r.nonce == nonce && r.status == 0 && r.caller == b"redteam" => {
                let _ = writeln!(
                    con,
                    "redteam: the service answers after the attack status=0\r"
                );
                true
            }
            _ => {
                let _ = writeln!(
                    con,
                    "redteam: the service's report after the attack is wrong\r"
                );
                false
            }
        },
        Err(e) => {
            let _ = writeln!(con, "redteam: ATTEST failed after the attack: {e}\r");
            false
        }
    }
}

fn attack(name: &[u8]) -> bool {
    // Each `unsafe` below is the attack itself: the hypervisor must stop it before it has any
    // effect; none touches memory this partition relies on.
    match name {
        b"read-hypervisor" => {
            // SAFETY: the attack (a read outside our grant); the hypervisor stops it.
            let _ = unsafe { core::ptr::read_volatile(0x10_0000 as *const u8) };
        }
        b"write-service" => {
            // SAFETY: the attack (a write into the service's grant); the hypervisor stops it.
            unsafe { core::ptr::write_volatile(0x600_0000 as *mut u8, 0xCC) };
        }
        b"tpm-mmio" => {
            // SAFETY: the attack (the TPM, not granted to the guest); the hypervisor stops it.
            let _ = unsafe { core::ptr::read_volatile(0xFED4_0000u64 as *const u8) };
        }
        b"port-serial" => {
            // SAFETY: the attack (port I/O, not granted); the hypervisor stops it.
            unsafe {
                core::arch::asm!("out dx, al", in("dx") 0x3F8u16, in("al") b'!', options(nomem, nostack));
            }
        }
        b"port-pci" => {
            // SAFETY: the attack (PCI config space); the hypervisor stops it.
            unsafe {
                core::arch::asm!("out dx, eax", in("dx") 0xCF8u16, in("eax") 0x8000_0000u32, options(nomem, nostack));
            }
        }
        b"hypercall-unknown" => {
            sdk::call(Call(0x99), 0, 0, 0, 0);
        }
        b"hypercall-bad-pointer" => {
            sdk::call(Call::CONSOLE_WRITE, 0x10_0000, 16, 0, 0);
        }
        b"hypercall-flood" => {
            for _ in 0..1_000_000 {
                sdk::call(Call::VERSION, 0, 0, 0, 0);
            }
        }
        b"apic-timer" => {
            // SAFETY: the attack (the APIC page is in no nested page table); stopped.
            unsafe { core::ptr::write_volatile(0xFEE0_0380u64 as *mut u32, 0) };
        }
        b"x2apic-timer" => {
            // SAFETY: the attack (every MSR is intercepted); the hypervisor stops it.
            unsafe {
                core::arch::asm!("wrmsr", in("ecx") 0x838u32, in("eax") 0u32, in("edx") 0u32, options(nomem, nostack));
            }
        }
        b"spin-forever" => loop {
            core::hint::spin_loop();
        },
        b"triple-fault" => {
            // SAFETY: the attack (#UD with no IDT = triple fault); the hypervisor stops it.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
        }
        _ => return false,
    }
    true
}

/// The entry point.
///
/// # Safety
///
/// As `vmseal_guest::boot_info` requires.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
pub unsafe extern "sysv64" fn _start(boot_info: *const BootInfo) -> u64 {
    let mut con = Console::new();
    // SAFETY: RDI as the hypervisor entered us.
    let Some(info) = (unsafe { sdk::boot_info(boot_info) }) else {
        return 1;
    };
    // SAFETY: `info` came from `boot_info`.
    let cmdline = unsafe { sdk::cmdline(&info) };
    let name = cmdline.strip_prefix(b"attack=").unwrap_or(b"");
    let _ = write!(con, "redteam: attack=");
    con.write_bytes(name);
    let _ = writeln!(con, "\r");
    let mut report = [0u8; 4096];
    let nonce = b"redteam-before-attack";
    match sdk::attest(nonce, &mut report) {
        Ok(n) => match report.get(..n).map(Report::decode) {
            Some(Ok(r)) if r.nonce == nonce => {
                let _ = writeln!(
                    con,
                    "redteam: the service answers status={} ({n} bytes)\r",
                    r.status
                );
            }
            _ => {
                let _ = writeln!(con, "redteam: the service's report is not for us\r");
            }
        },
        Err(e) => {
            let _ = writeln!(con, "redteam: ATTEST failed before the attack: {e}\r");
        }
    }
    con.flush();
    if let Some(outcome) = attack_service(name, &mut con, info.tsc_per_ms) {
        let refused = match outcome {
            Refused::Yes(how) => {
                let _ = write!(con, "redteam: refused ");
                con.write_bytes(name);
                let _ = writeln!(con, " ({how})\r");
                true
            }
            Refused::No => {
                let _ = write!(con, "redteam: ESCAPED ");
                con.write_bytes(name);
                let _ = writeln!(con, "\r");
                false
            }
        };
        let answers = service_answers(&mut con);
        con.flush();
        return if refused && answers { 0 } else { 99 };
    }
    if !attack(name) {
        let _ = writeln!(con, "redteam: unknown attack\r");
        con.flush();
        return 2;
    }
    let _ = write!(con, "redteam: ESCAPED ");
    con.write_bytes(name);
    let _ = writeln!(con, "\r");
    con.flush();
    99
}
