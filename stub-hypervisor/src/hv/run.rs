//! The hypervisor loop: scheduling, exit handling, hypercalls, channels, violations.
//!
//! Everything is allocated by [`Hypervisor::new`] (before ExitBootServices); [`Hypervisor::run`]
//! never allocates or frees. Decisions, in one place:
//! - a malformed hypercall, an access outside the grant, a forbidden instruction or exit, a
//!   flood, a triple fault: **stop that partition** (report `violation` + `stopped`), never the
//!   hypervisor;
//! - a well-formed call that cannot be served: an error code in `RAX`, the partition goes on;
//! - a slice ended by the hypervisor's timer ([`Exit::Interrupt`]): the partition stays
//!   runnable and the next one in turn runs (round robin), counted in `hv-stats preemptions`;
//! - nothing runnable while the guest is alive: a server waiting for requests is idle and
//!   stays so (it is never stopped for a client's wait); every client waiting for a reply gets
//!   its call failed — `NO_REPLY` when the servers it waits on end at an idle one, `DEADLOCK`
//!   when clients wait on each other in a cycle — reported as `wait-failed`, and goes on.
#![expect(
    clippy::indexing_slicing,
    reason = "partition and channel indices come from the tables built in `new` (channel ends are \
              resolved there); message lengths are checked against MAX_MESSAGE before slicing \
              the MAX_MESSAGE-byte buffers"
)]

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

use policies::attest::Request;
use policies::hypercall::{
    self, ABI_VERSION, ATTEST_CHANNEL, Call, Error, FLOOD_BURST, FLOOD_REFILL_PER_MS, MAX_MESSAGE,
    MAX_NONCE, Origin, STAMP_LEN, Stamp, Violation,
};
use policies::launch::LaunchPolicy;
use policies::record::Token;

use super::{Access, Exit, GuestMemory, Host, Vcpu};
use crate::record::line;

/// Length of `VMMCALL` (`0F 01 D9`).
const VMMCALL_LEN: u64 = 3;
/// Length of `CPUID` (`0F A2`).
const CPUID_LEN: u64 = 2;
/// The status reported for a guest that was stopped instead of exiting.
pub const STOPPED_STATUS: u64 = 255;
/// The nonce of the hypervisor's own health-check requests.
pub const HEALTH_NONCE: [u8; 8] = *b"vmsealhc";
/// [`MAX_MESSAGE`] as a buffer length.
const MESSAGE: usize = MAX_MESSAGE as usize;
/// The sender of the hypervisor's own messages (the health check), in [`Inbox::sender`].
const HYPERVISOR: usize = usize::MAX;
/// The name in the stamp of the hypervisor's own messages.
const HYPERVISOR_NAME: &[u8] = b"hypervisor";

/// Where a partition may touch memory: `base .. base + size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Grant {
    /// Whether `addr .. addr + len` lies inside the grant (checked arithmetic: a range that
    /// wraps is never inside). An empty range is inside if `addr` is within or at the end.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        let Some(limit) = self.base.checked_add(self.size) else {
            return false;
        };
        addr >= self.base && end <= limit
    }
}

/// Console output of partitions (COM1 in the stub).
pub trait Console {
    /// Write raw bytes.
    fn write_bytes(&mut self, bytes: &[u8]);
}

/// Why the hypervisor cannot be built from a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvError {
    /// The policy's guest is not an ELF partition (a Linux guest is not run by the hypervisor).
    NotElf,
    /// The number of vCPUs differs from the number of ELF partitions.
    VcpuCount,
}

/// The record word (`error … status=`); `Display` writes the same.
impl Token for HvError {
    fn write_token<W: core::fmt::Write + ?Sized>(&self, w: &mut W) -> core::fmt::Result {
        w.write_str(match self {
            Self::NotElf => "hv-guest-not-elf",
            Self::VcpuCount => "hv-vcpu-count",
        })
    }
}

impl core::fmt::Display for HvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.write_token(f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Runnable,
    /// Waiting in `RECV` (or `ATTEST`) on `channel` for a message into `buf`, `cap` bytes;
    /// `RECV` gets the sender's stamp before the message (`stamp`), `ATTEST` the reply only.
    Blocked {
        channel: usize,
        buf: u64,
        cap: u64,
        stamp: bool,
    },
    Stopped,
}

struct Part<V> {
    name: String,
    grant: Grant,
    vcpu: V,
    state: State,
    console: bool,
    dropped: u64,
    hypercalls: u64,
    tokens: u32,
    refilled_ns: u64,
    exit_status: Option<u64>,
    /// Scratch of [`Hypervisor::fail_waits`]: the wait to fail and how.
    wake: Option<(usize, Error)>,
    /// The policy's CPU budget in ns (0: none) and the time it has run.
    budget_ns: u64,
    used_ns: u64,
}

struct Chan {
    name: String,
    client: usize,
    server: usize,
    /// A request went to the server and it has not answered yet: the server may `SEND` (one
    /// reply), the client may not ask again.
    asked: bool,
}

/// A one-message inbox.
struct Inbox {
    len: Option<usize>,
    data: Box<[u8]>,
    /// Who put the message there (a partition index, or [`HYPERVISOR`]) and how.
    sender: usize,
    origin: Origin,
}

/// What happened to the running partition after one exit.
enum Next {
    /// Resume it.
    Resume,
    /// It blocked or stopped: schedule.
    Yield,
}

/// The hypervisor over one vCPU per ELF partition.
///
/// ```ignore
/// // Before ExitBootServices (allocates):
/// let mut hv = Hypervisor::new(&policy, vcpus, memory, host, ram_ranges)?;
/// // After (never allocates):
/// let guest_status = hv.run(&mut record_uart, &mut console_uart);
/// ```
pub struct Hypervisor<V, M, H> {
    parts: Vec<Part<V>>,
    guest: usize,
    chans: Vec<Chan>,
    /// `inbox[2 * channel]` is the client's, `inbox[2 * channel + 1]` the server's.
    inboxes: Vec<Inbox>,
    scratch: Box<[u8]>,
    mem: M,
    host: H,
    ram: Vec<(u64, u64)>,
    exits: u64,
    hypercalls: u64,
    preemptions: u64,
    /// The time slice ([`Hypervisor::set_time_slice`]), 0 for none.
    slice_ns: u64,
    guest_ns: u64,
    /// [`Host::now_ns`] just before the guest partition's first `VMRUN`.
    guest_started_ns: Option<u64>,
    next: usize,
    /// The channel of a running health check.
    health_channel: Option<usize>,
}

impl<V: Vcpu, M: GuestMemory, H: Host> Hypervisor<V, M, H> {
    /// Build the hypervisor for a validated `policy`. `vcpus` holds one vCPU per ELF
    /// partition: the services in policy order, then the guest. `ram` lists the RAM ranges
    /// (`(base, size)`) of the machine, to tell a stray RAM access (`memory`) from a device
    /// access (`mmio`).
    pub fn new(
        policy: &LaunchPolicy,
        vcpus: Vec<V>,
        mem: M,
        host: H,
        ram: Vec<(u64, u64)>,
    ) -> Result<Self, HvError> {
        if policy.guest.kind != policies::launch::PayloadKind::Elf {
            return Err(HvError::NotElf);
        }
        if vcpus.len() != policy.services.len() + 1 {
            return Err(HvError::VcpuCount);
        }
        let now = host.now_ns();
        let specs = policy
            .services
            .iter()
            .map(|s| (s, false))
            .chain([(&policy.guest, true)]);
        let parts: Vec<Part<V>> = specs
            .zip(vcpus)
            .map(|((p, is_guest), vcpu)| Part {
                name: p.name.clone(),
                grant: Grant {
                    base: p.base,
                    size: p.memory,
                },
                vcpu,
                state: State::Runnable,
                console: !is_guest || policy.console == policies::launch::Console::On,
                dropped: 0,
                hypercalls: 0,
                tokens: FLOOD_BURST,
                refilled_ns: now,
                exit_status: None,
                wake: None,
                budget_ns: p.cpu_budget_ms.saturating_mul(1_000_000),
                used_ns: 0,
            })
            .collect();
        let index = |name: &str| parts.iter().position(|p| p.name == name);
        let chans: Vec<Chan> = policy
            .channels
            .iter()
            .filter_map(|c| {
                Some(Chan {
                    name: c.name.clone(),
                    client: index(&c.client)?,
                    server: index(&c.server)?,
                    asked: false,
                })
            })
            .collect();
        let inboxes = (0..chans.len() * 2)
            .map(|_| Inbox {
                len: None,
                data: vec![0u8; MESSAGE].into_boxed_slice(),
                sender: HYPERVISOR,
                origin: Origin::HYPERVISOR,
            })
            .collect();
        Ok(Self {
            guest: parts.len() - 1,
            parts,
            chans,
            inboxes,
            scratch: vec![0u8; MESSAGE].into_boxed_slice(),
            mem,
            host,
            ram,
            exits: 0,
            hypercalls: 0,
            preemptions: 0,
            slice_ns: 0,
            guest_ns: 0,
            guest_started_ns: None,
            next: 0,
            health_channel: None,
        })
    }

    /// [`Host::now_ns`] just before the guest partition's first instruction, once it has run
    /// (the start-up figure: the caller knows when ExitBootServices returned).
    pub fn guest_started_ns(&self) -> Option<u64> {
        self.guest_started_ns
    }

    /// The memory access of the vCPUs (for the caller's inspection after `run`).
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Run every partition until the guest has ended, check the guest's servers still answer,
    /// report the statistics; returns the guest's exit status ([`STOPPED_STATUS`] if it was
    /// stopped). Writes `violation`, `stopped`, `health`, `console`, `hv-stats` and `exit`
    /// record lines to `record`; partitions' console output goes to `console`.
    pub fn run(&mut self, record: &mut impl Write, console: &mut impl Console) -> u64 {
        while self
            .parts
            .get(self.guest)
            .is_some_and(|g| g.state != State::Stopped)
        {
            let Some(i) = self.pick() else {
                // Nothing can run and the guest is alive: nobody will ever wake anybody.
                if self.fail_waits(record) {
                    continue;
                }
                // Unreachable while the guest lives (it can only wait as a client, and every
                // client wait fails above); kept so that a bug cannot spin here forever.
                break;
            };
            self.run_partition(i, record, console);
        }
        self.health(record, console);
        for p in &self.parts {
            if p.dropped > 0 {
                line(record, "console")
                    .kv("partition", &p.name)
                    .kv("dropped", p.dropped)
                    .end();
            }
        }
        let mean = self.guest_ns.checked_div(self.exits).unwrap_or(0);
        line(record, "hv-stats")
            .kv("hypercalls", self.hypercalls)
            .kv("exits", self.exits)
            .kv("preemptions", self.preemptions)
            .kv("guest_ns", self.guest_ns)
            .kv("mean_run_ns", mean)
            .end();
        let status = self
            .parts
            .get(self.guest)
            .and_then(|g| g.exit_status)
            .unwrap_or(STOPPED_STATUS);
        line(record, "exit").kv("status", status).end();
        status
    }

    fn part(&self, i: usize) -> &Part<V> {
        // `i` always comes from iterating `parts` or from a validated channel end.
        &self.parts[i]
    }

    fn part_mut(&mut self, i: usize) -> &mut Part<V> {
        &mut self.parts[i]
    }

    /// The next runnable partition, round robin.
    fn pick(&mut self) -> Option<usize> {
        let n = self.parts.len();
        let i = (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| self.part(i).state == State::Runnable)?;
        self.next = (i + 1) % n;
        Some(i)
    }

    /// Nothing can run: fail the wait of every client waiting for a reply and leave the
    /// servers waiting for requests alone (idle). Follows who waits for whom from each
    /// waiting client: a chain that ends at a partition not waiting as a client (an idle or
    /// stopped server) fails the wait with `NO_REPLY`, one that loops with `DEADLOCK`. The
    /// client's unanswered request (if still queued) is withdrawn. Returns whether any
    /// partition became runnable.
    fn fail_waits(&mut self, record: &mut impl Write) -> bool {
        let n = self.parts.len();
        // Decide for everybody first (waking one changes the chains of the others).
        for p in 0..n {
            self.parts[p].wake = None;
            let Some(c) = self.waiting_client(p) else {
                continue;
            };
            let mut at = self.chans[c].server;
            let mut error = Error::DEADLOCK;
            for _ in 0..n {
                match self.waiting_client(at) {
                    Some(next) if at != p => at = self.chans[next].server,
                    Some(_) => break,
                    None => {
                        error = Error::NO_REPLY;
                        break;
                    }
                }
            }
            self.parts[p].wake = Some((c, error));
        }
        let mut woke = false;
        for p in 0..n {
            let Some((c, error)) = self.parts[p].wake.take() else {
                continue;
            };
            self.fail_wait(p, c, error, record);
            woke = true;
        }
        woke
    }

    /// Fail client `p`'s wait for a reply on `c` with `error` (withdrawing its request) and
    /// record it.
    fn fail_wait(&mut self, p: usize, c: usize, error: Error, record: &mut impl Write) {
        let server = self.chans[c].server;
        let k = self.inbox_index(c, server);
        self.inboxes[k].len = None;
        self.chans[c].asked = false;
        self.complete(p, error.0);
        line(record, "wait-failed")
            .kv("partition", &self.part(p).name)
            .kv("channel", &self.chans[c].name)
            .kv("error", error.name())
            .end();
    }

    /// The channel `p` waits on for a reply, if it is blocked as that channel's client.
    fn waiting_client(&self, p: usize) -> Option<usize> {
        match self.part(p).state {
            State::Blocked { channel, .. } if self.chans[channel].client == p => Some(channel),
            _ => None,
        }
    }

    /// Run partition `i` for one time slice: until it blocks, stops or is preempted.
    fn run_partition(&mut self, i: usize, record: &mut impl Write, console: &mut impl Console) {
        self.run_slice(i, record, console);
        self.host.end_slice();
    }

    fn run_slice(&mut self, i: usize, record: &mut impl Write, console: &mut impl Console) {
        let slice_started = self.host.now_ns();
        loop {
            let t0 = self.host.now_ns();
            if i == self.guest && self.guest_started_ns.is_none() {
                self.guest_started_ns = Some(t0);
            }
            let exit = self.part_mut(i).vcpu.run();
            let ran = self.host.now_ns().saturating_sub(t0);
            self.guest_ns = self.guest_ns.saturating_add(ran);
            self.exits += 1;
            let p = self.part_mut(i);
            p.used_ns = p.used_ns.saturating_add(ran);
            if p.budget_ns != 0 && p.used_ns > p.budget_ns {
                // Whatever it exited for: its time is up (the timer bounds the overrun to a
                // slice).
                let (budget, used) = (p.budget_ns / 1_000_000, p.used_ns / 1_000_000);
                let keys = [("budget_ms", budget), ("used_ms", used)];
                self.violate(i, record, Violation::CPU_BUDGET, &keys);
                return;
            }
            match self.handle(i, exit, record, console) {
                // The slice is over in the hypervisor's own clock too (the timer keeps running
                // across exits, but this needs no interrupt and is tested on the host).
                Next::Resume
                    if self.slice_ns != 0
                        && self.host.now_ns().saturating_sub(slice_started) >= self.slice_ns =>
                {
                    self.preemptions += 1;
                    return;
                }
                Next::Resume => {}
                Next::Yield => return,
            }
        }
    }

    /// Preempt every partition after `ns` of running (its time slice, across exits; 0: never).
    /// The backend's timer ends the slice with [`Exit::Interrupt`]; this check on the
    /// hypervisor's clock at every exit gives the same bound without relying on the
    /// interrupt (and is what the host tests see).
    pub fn set_time_slice(&mut self, ns: u64) {
        self.slice_ns = ns;
    }

    fn rip(&self, i: usize) -> u64 {
        self.part(i).vcpu.regs().rip
    }

    fn violate(
        &mut self,
        i: usize,
        record: &mut impl Write,
        kind: Violation,
        keys: &[(&str, u64)],
    ) {
        let rip = self.rip(i);
        let mut l = line(record, "violation")
            .kv("partition", &self.part(i).name)
            .kv("kind", kind);
        for (k, v) in keys {
            l = l.hex(k, *v);
        }
        l.hex("rip", rip).end();
        self.stop(i, record, "violation");
    }

    fn violate_words(
        &mut self,
        i: usize,
        record: &mut impl Write,
        kind: Violation,
        hex_keys: &[(&str, u64)],
        word_keys: &[(&str, &str)],
    ) {
        let rip = self.rip(i);
        let mut l = line(record, "violation")
            .kv("partition", &self.part(i).name)
            .kv("kind", kind);
        for (k, v) in hex_keys {
            l = l.hex(k, *v);
        }
        for (k, v) in word_keys {
            l = l.kv(k, v);
        }
        l.hex("rip", rip).end();
        self.stop(i, record, "violation");
    }

    /// Stop partition `i` and wake the clients waiting for its replies with `PEER_GONE`.
    /// (A server waiting for requests keeps waiting: the hypervisor's health check may
    /// still ask it, and a server has nothing to do about one client's end.)
    fn stop(&mut self, i: usize, record: &mut impl Write, reason: &str) {
        let p = self.part_mut(i);
        p.state = State::Stopped;
        let (hypercalls, status) = (p.hypercalls, p.exit_status);
        let mut l = line(record, "stopped")
            .kv("partition", &self.part(i).name)
            .kv("reason", reason);
        if let Some(s) = status {
            l = l.kv("status", s);
        }
        l.kv("hypercalls", hypercalls).end();
        for c in 0..self.chans.len() {
            let (client, server) = (self.chans[c].client, self.chans[c].server);
            if server != i {
                continue;
            }
            let peer = client;
            if let State::Blocked { channel, .. } = self.part(peer).state
                && channel == c
                && self.inbox_of(c, peer).len.is_none()
            {
                self.complete(peer, Error::PEER_GONE.0);
            }
        }
    }

    /// Resume `i` after its VMMCALL with `rax`.
    fn complete(&mut self, i: usize, rax: u64) {
        let p = self.part_mut(i);
        let regs = p.vcpu.regs_mut();
        regs.rax = rax;
        regs.rip = regs.rip.wrapping_add(VMMCALL_LEN);
        p.state = State::Runnable;
    }

    fn inbox_index(&self, c: usize, owner: usize) -> usize {
        2 * c + usize::from(self.chans[c].server == owner)
    }

    fn inbox_of(&self, c: usize, owner: usize) -> &Inbox {
        &self.inboxes[self.inbox_index(c, owner)]
    }

    /// Deliver the message waiting in `i`'s inbox on `c` into its `buf` (it is blocked in
    /// `RECV` on `c`, or in `ATTEST` for the reply): resume it with the length or `TOO_SMALL`.
    /// `RECV` (`stamp`) gets the sender's [`Stamp`] first.
    fn deliver(&mut self, i: usize, c: usize, buf: u64, cap: u64, stamp: bool) {
        let k = self.inbox_index(c, i);
        let Some(len) = self.inboxes[k].len else {
            return;
        };
        let head = if stamp { STAMP_LEN } else { 0 };
        if (len as u64) + head > cap {
            self.complete(i, Error::TOO_SMALL.0);
            return;
        }
        if stamp {
            let sender = self.inboxes[k].sender;
            let name = if sender == HYPERVISOR {
                HYPERVISOR_NAME
            } else {
                self.part(sender).name.as_bytes()
            };
            let bytes = Stamp {
                origin: self.inboxes[k].origin,
                name,
            }
            .encode()
            // Names are at most MAX_PARTITION_NAME bytes (the policy was validated).
            .unwrap_or([0; STAMP_LEN as usize]);
            self.mem.write(buf, &bytes);
        }
        self.mem.write(buf + head, &self.inboxes[k].data[..len]);
        self.inboxes[k].len = None;
        self.complete(i, len as u64 + head);
    }

    /// Put `len` bytes of the scratch buffer into `to`'s inbox on `c`, stamped as from
    /// `sender` (`origin`), waking `to` if it waits. A message to the server is a request.
    fn post(
        &mut self,
        c: usize,
        to: usize,
        len: usize,
        sender: usize,
        origin: Origin,
    ) -> Result<(), Error> {
        // During the health check the hypervisor stands in for the stopped guest as client.
        if self.part(to).state == State::Stopped && self.health_channel != Some(c) {
            return Err(Error::PEER_GONE);
        }
        let k = self.inbox_index(c, to);
        if self.inboxes[k].len.is_some() {
            return Err(Error::BUSY);
        }
        self.inboxes[k].data[..len].copy_from_slice(&self.scratch[..len]);
        self.inboxes[k].len = Some(len);
        self.inboxes[k].sender = sender;
        self.inboxes[k].origin = origin;
        self.chans[c].asked = to == self.chans[c].server;
        if let State::Blocked {
            channel,
            buf,
            cap,
            stamp,
        } = self.part(to).state
            && channel == c
        {
            self.deliver(to, c, buf, cap, stamp);
        }
        Ok(())
    }

    /// Block `i` in `RECV` (`stamp`) or `ATTEST` on `c` (or complete it at once if a message
    /// or a gone peer waits, or it is the client and asked nothing).
    fn receive(
        &mut self,
        i: usize,
        c: usize,
        buf: u64,
        cap: u64,
        stamp: bool,
        record: &mut impl Write,
    ) -> Next {
        if self.inbox_of(c, i).len.is_some() {
            self.deliver(i, c, buf, cap, stamp);
            return Next::Resume;
        }
        // A client whose server is gone gets PEER_GONE; a server keeps waiting (see `stop`).
        let server = self.chans[c].server;
        if server != i && self.part(server).state == State::Stopped {
            self.complete(i, Error::PEER_GONE.0);
            return Next::Resume;
        }
        // A client that asked nothing would wait for nothing.
        if server != i && !self.chans[c].asked {
            self.fail_wait(i, c, Error::NO_REPLY, record);
            return Next::Resume;
        }
        self.part_mut(i).state = State::Blocked {
            channel: c,
            buf,
            cap,
            stamp,
        };
        Next::Yield
    }

    fn handle(
        &mut self,
        i: usize,
        exit: Exit,
        record: &mut impl Write,
        console: &mut impl Console,
    ) -> Next {
        match exit {
            Exit::Hypercall => return self.hypercall(i, record, console),
            Exit::Interrupt => {
                // The hypervisor's timer ended the slice (or another interrupt came): the
                // partition stays runnable, the next one in turn runs.
                self.preemptions += 1;
                return Next::Yield;
            }
            Exit::Cpuid => {
                let regs = *self.part(i).vcpu.regs();
                let (leaf, sub) = (regs.rax as u32, regs.rcx as u32);
                let mut r = self.host.cpuid(leaf, sub);
                match leaf {
                    1 => r[2] |= 1 << 31,             // hypervisor present
                    0x8000_0001 => r[2] &= !(1 << 2), // no SVM for partitions
                    0x8000_000A => r = [0; 4],        // no SVM features either
                    _ => {}
                }
                let regs = self.part_mut(i).vcpu.regs_mut();
                regs.rax = u64::from(r[0]);
                regs.rbx = u64::from(r[1]);
                regs.rcx = u64::from(r[2]);
                regs.rdx = u64::from(r[3]);
                regs.rip = regs.rip.wrapping_add(CPUID_LEN);
                return Next::Resume;
            }
            Exit::NestedPageFault { gpa, access } => {
                let ram = self.ram.iter().any(|&(b, s)| gpa >= b && gpa - b < s);
                let kind = if ram {
                    Violation::MEMORY
                } else {
                    Violation::MMIO
                };
                let access = match access {
                    Access::Read => "read",
                    Access::Write => "write",
                    Access::Execute => "exec",
                };
                self.violate_words(i, record, kind, &[("gpa", gpa)], &[("access", access)]);
            }
            Exit::Io { port, size, write } => self.violate_words(
                i,
                record,
                Violation::PORT_IO,
                &[("port", u64::from(port))],
                &[
                    (
                        "size",
                        if size == 1 {
                            "1"
                        } else if size == 2 {
                            "2"
                        } else {
                            "4"
                        },
                    ),
                    ("dir", if write { "out" } else { "in" }),
                ],
            ),
            Exit::Msr { msr, write } => self.violate_words(
                i,
                record,
                Violation::MSR,
                &[("msr", u64::from(msr))],
                &[("dir", if write { "write" } else { "read" })],
            ),
            Exit::Hlt => {
                self.violate_words(i, record, Violation::INSTRUCTION, &[], &[("exit", "hlt")])
            }
            Exit::Shutdown => self.violate(i, record, Violation::TRIPLE_FAULT, &[]),
            Exit::Instruction(code) => {
                self.violate(i, record, Violation::INSTRUCTION, &[("exit", code)])
            }
            Exit::Invalid(code) | Exit::Unknown(code) => {
                self.violate(i, record, Violation::UNKNOWN_EXIT, &[("exit", code)]);
            }
        }
        Next::Yield
    }

    /// Take one hypercall token; `false` when the partition floods.
    fn take_token(&mut self, i: usize) -> bool {
        let now = self.host.now_ns();
        let p = self.part_mut(i);
        let ms = now.saturating_sub(p.refilled_ns) / 1_000_000;
        if ms > 0 {
            let add = ms.saturating_mul(u64::from(FLOOD_REFILL_PER_MS));
            p.tokens = u64::from(p.tokens)
                .saturating_add(add)
                .min(u64::from(FLOOD_BURST)) as u32;
            p.refilled_ns = now;
        }
        if p.tokens == 0 {
            return false;
        }
        p.tokens -= 1;
        true
    }

    /// The channel `id` if `i` is one of its ends.
    fn channel_of(&self, i: usize, id: u64) -> Option<usize> {
        let c = usize::try_from(id).ok()?;
        let ch = self.chans.get(c)?;
        (ch.client == i || ch.server == i).then_some(c)
    }

    fn hypercall(&mut self, i: usize, record: &mut impl Write, console: &mut impl Console) -> Next {
        self.hypercalls += 1;
        self.part_mut(i).hypercalls += 1;
        let regs = *self.part(i).vcpu.regs();
        let nr = Call(regs.rax);
        if !self.take_token(i) {
            let count = self.part(i).hypercalls;
            self.violate(i, record, Violation::HYPERCALL_FLOOD, &[("count", count)]);
            return Next::Yield;
        }
        let grant = self.part(i).grant;
        // A pointer range outside the caller's grant is malformed: stop the caller.
        macro_rules! check {
            ($addr:expr, $len:expr) => {
                if !grant.contains($addr, $len) {
                    self.violate(
                        i,
                        record,
                        Violation::HYPERCALL_BAD_POINTER,
                        &[("nr", nr.0), ("addr", $addr), ("len", $len)],
                    );
                    return Next::Yield;
                }
            };
        }
        // A buffer given by its capacity: the hypervisor uses at most `$max` bytes of it (that
        // much must be in the grant), but `ptr + cap` must not wrap either — a wrapping range
        // is malformed whatever part of it is used (docs/hypercalls.md).
        macro_rules! check_cap {
            ($addr:expr, $cap:expr, $max:expr) => {{
                // The whole range if it wraps (so it fails, and is reported as given).
                let checked = if $addr.checked_add($cap).is_none() {
                    $cap
                } else {
                    $cap.min($max)
                };
                check!($addr, checked);
                checked
            }};
        }
        let result: Result<u64, Error> = match nr {
            Call::VERSION => Ok(ABI_VERSION),
            Call::CONSOLE_WRITE => {
                let (ptr, len) = (regs.rdi, regs.rsi);
                if len > MAX_MESSAGE {
                    Err(Error::INVALID)
                } else {
                    check!(ptr, len);
                    let n = len as usize;
                    self.mem.read(ptr, &mut self.scratch[..n]);
                    if self.parts[i].console {
                        console.write_bytes(&self.scratch[..n]);
                    } else {
                        self.parts[i].dropped = self.parts[i].dropped.saturating_add(len);
                    }
                    Ok(len)
                }
            }
            Call::CHANNEL_FIND => {
                let (ptr, len) = (regs.rdi, regs.rsi);
                if len == 0 || len > hypercall::MAX_CHANNEL_NAME {
                    Err(Error::INVALID)
                } else {
                    check!(ptr, len);
                    let n = len as usize;
                    self.mem.read(ptr, &mut self.scratch[..n]);
                    let name = &self.scratch[..n];
                    (0..self.chans.len())
                        .find(|&c| {
                            self.chans[c].name.as_bytes() == name
                                && (self.chans[c].client == i || self.chans[c].server == i)
                        })
                        .map(|c| c as u64)
                        .ok_or(Error::NO_CHANNEL)
                }
            }
            Call::SEND => {
                let (id, ptr, len) = (regs.rdi, regs.rsi, regs.rdx);
                match self.channel_of(i, id) {
                    None => Err(Error::NO_CHANNEL),
                    Some(_) if len > MAX_MESSAGE => Err(Error::INVALID),
                    Some(c) => {
                        check!(ptr, len);
                        let n = len as usize;
                        self.mem.read(ptr, &mut self.scratch[..n]);
                        let (client, server) = (self.chans[c].client, self.chans[c].server);
                        let asked = self.chans[c].asked;
                        if i == client && asked {
                            // One request at a time: the last one is not answered yet.
                            Err(Error::BUSY)
                        } else if i == server && !asked {
                            // A server only answers; it never speaks first.
                            Err(Error::INVALID)
                        } else {
                            let to = if i == client { server } else { client };
                            self.post(c, to, n, i, Origin::SEND).map(|()| 0)
                        }
                    }
                }
            }
            Call::RECV => {
                let (id, ptr, cap) = (regs.rdi, regs.rsi, regs.rdx);
                match self.channel_of(i, id) {
                    None => Err(Error::NO_CHANNEL),
                    Some(c) => {
                        let cap = check_cap!(ptr, cap, MAX_MESSAGE + STAMP_LEN);
                        return self.receive(i, c, ptr, cap, true, record);
                    }
                }
            }
            Call::ATTEST => {
                let (nonce, nonce_len, out, cap) = (regs.rdi, regs.rsi, regs.rdx, regs.r10);
                let chan = (0..self.chans.len())
                    .find(|&c| self.chans[c].client == i && self.chans[c].name == ATTEST_CHANNEL);
                match chan {
                    None => Err(Error::NO_ATTESTATION),
                    Some(_) if nonce_len == 0 || nonce_len > MAX_NONCE => Err(Error::INVALID),
                    Some(c) => {
                        check!(nonce, nonce_len);
                        let cap = check_cap!(out, cap, MAX_MESSAGE);
                        let mut n = [0u8; MAX_NONCE as usize];
                        let nonce_bytes = &mut n[..nonce_len as usize];
                        self.mem.read(nonce, nonce_bytes);
                        let req = Request {
                            caller: self.parts[i].name.as_bytes(),
                            nonce: nonce_bytes,
                        };
                        match req.encode(&mut self.scratch) {
                            Err(_) => Err(Error::INVALID),
                            Ok(_) if self.chans[c].asked => Err(Error::BUSY),
                            Ok(len) => {
                                let server = self.chans[c].server;
                                match self.post(c, server, len, i, Origin::ATTEST) {
                                    Err(e) => Err(e),
                                    Ok(()) => {
                                        return self.receive(i, c, out, cap, false, record);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Call::EXIT => {
                self.part_mut(i).exit_status = Some(regs.rdi);
                self.stop(i, record, "exit");
                return Next::Yield;
            }
            _ => {
                self.violate(i, record, Violation::HYPERCALL_UNKNOWN, &[("nr", nr.0)]);
                return Next::Yield;
            }
        };
        self.complete(i, result.unwrap_or_else(|e| e.0));
        Next::Resume
    }

    /// After the guest ended: does each server of the guest's channels still answer? The
    /// hypervisor takes the guest's place as client and sends an attestation request with
    /// [`HEALTH_NONCE`], then runs the server until it replies or stops running.
    fn health(&mut self, record: &mut impl Write, console: &mut impl Console) {
        for c in 0..self.chans.len() {
            if self.chans[c].client != self.guest {
                continue;
            }
            let server = self.chans[c].server;
            let status = if self.part(server).state == State::Stopped {
                "gone"
            } else {
                let req = Request {
                    caller: HYPERVISOR_NAME,
                    nonce: &HEALTH_NONCE,
                };
                let k_server = self.inbox_index(c, server);
                let k_client = 2 * c;
                self.inboxes[k_client].len = None;
                match req.encode(&mut self.scratch) {
                    Ok(len) if self.inboxes[k_server].len.is_none() => {
                        self.inboxes[k_server].data[..len].copy_from_slice(&self.scratch[..len]);
                        self.inboxes[k_server].len = Some(len);
                        self.inboxes[k_server].sender = HYPERVISOR;
                        self.inboxes[k_server].origin = Origin::HYPERVISOR;
                        self.chans[c].asked = true;
                        if let State::Blocked {
                            channel,
                            buf,
                            cap,
                            stamp,
                        } = self.part(server).state
                            && channel == c
                        {
                            self.deliver(server, c, buf, cap, stamp);
                        }
                        // Run the server until it waits again or stops; its reply lands in
                        // the (stopped) guest's inbox.
                        self.health_channel = Some(c);
                        while self.part(server).state == State::Runnable
                            && self.inboxes[k_client].len.is_none()
                        {
                            self.run_partition(server, record, console);
                        }
                        self.health_channel = None;
                        if self.inboxes[k_client].len.is_some() {
                            "answered"
                        } else {
                            "silent"
                        }
                    }
                    _ => "silent",
                }
            };
            line(record, "health")
                .kv("channel", &self.chans[c].name)
                .kv("server", &self.part(server).name)
                .kv("status", status)
                .end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::Regs;
    use alloc::collections::{BTreeMap, VecDeque};
    use alloc::rc::Rc;
    use core::cell::{Cell, RefCell};
    use policies::attest::Report;
    use policies::launch::{Channel, Console as Con, Devices, Partition, PayloadKind};

    type Step = Box<dyn FnMut(&mut Regs) -> Exit>;

    /// A vCPU that plays a script: each `run` takes the next step, which may read and set
    /// registers (as the partition's code would) and says how it exits. An exhausted script
    /// halts (a violation), so a test that forgets an exit does not hang.
    struct Script {
        regs: Regs,
        steps: VecDeque<Step>,
    }

    impl Vcpu for Script {
        fn run(&mut self) -> Exit {
            match self.steps.pop_front() {
                Some(mut s) => s(&mut self.regs),
                None => Exit::Hlt,
            }
        }
        fn regs(&self) -> &Regs {
            &self.regs
        }
        fn regs_mut(&mut self) -> &mut Regs {
            &mut self.regs
        }
    }

    fn script(rip: u64, steps: Vec<Step>) -> Script {
        Script {
            regs: Regs {
                rip,
                ..Regs::default()
            },
            steps: steps.into(),
        }
    }

    /// `VMMCALL` with `nr` and arguments in RDI, RSI, RDX, R10.
    fn call(nr: Call, args: [u64; 4]) -> Step {
        Box::new(move |r: &mut Regs| {
            r.rax = nr.0;
            (r.rdi, r.rsi, r.rdx, r.r10) = (args[0], args[1], args[2], args[3]);
            Exit::Hypercall
        })
    }

    fn exit_with(e: Exit) -> Step {
        Box::new(move |_| e)
    }

    /// Sparse byte-addressed memory shared with the test's scripts.
    #[derive(Clone, Default)]
    struct Mem(Rc<RefCell<BTreeMap<u64, u8>>>);

    impl Mem {
        fn put(&self, at: u64, bytes: &[u8]) {
            let mut m = self.0.borrow_mut();
            for (k, b) in bytes.iter().enumerate() {
                m.insert(at + k as u64, *b);
            }
        }
        fn get(&self, at: u64, len: usize) -> Vec<u8> {
            let m = self.0.borrow();
            (0..len as u64)
                .map(|k| m.get(&(at + k)).copied().unwrap_or(0))
                .collect()
        }
    }

    impl GuestMemory for Mem {
        fn read(&self, gpa: u64, buf: &mut [u8]) {
            buf.copy_from_slice(&self.get(gpa, buf.len()));
        }
        fn write(&mut self, gpa: u64, data: &[u8]) {
            self.put(gpa, data);
        }
    }

    /// A clock the test moves, and a CPUID that reports SVM.
    #[derive(Clone, Default)]
    struct FakeHost(Rc<Cell<u64>>);

    impl Host for FakeHost {
        fn now_ns(&self) -> u64 {
            self.0.get()
        }
        fn cpuid(&self, leaf: u32, _: u32) -> [u32; 4] {
            match leaf {
                1 => [0x00a2_0f12, 0, 0, 0],
                0x8000_0001 => [0, 0, 0b100, 0],
                _ => [1, 2, 3, 4],
            }
        }
    }

    #[derive(Default)]
    struct Out(Vec<u8>);
    impl Console for Out {
        fn write_bytes(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }

    const GUEST: u64 = 0x400_0000;
    const SVC: u64 = 0x600_0000;
    const MIB4: u64 = 4 << 20;

    fn policy(services: bool, console: Con) -> LaunchPolicy {
        let part = |name: &str, section: &str, base, devices| Partition {
            name: name.into(),
            kind: PayloadKind::Elf,
            section: section.into(),
            memory: MIB4,
            base,
            devices,
            cpu_budget_ms: 0,
        };
        LaunchPolicy {
            name: "g".into(),
            version: "1".into(),
            guest: part("g", ".guest", GUEST, Devices::NONE),
            services: if services {
                vec![part("attest", ".svc0", SVC, Devices::TPM)]
            } else {
                vec![]
            },
            console,
            channels: if services {
                vec![Channel {
                    name: "attest".into(),
                    client: "g".into(),
                    server: "attest".into(),
                }]
            } else {
                vec![]
            },
        }
    }

    /// Run `guest` (and optionally `service`), return (status, record, console).
    fn run(
        console: Con,
        service: Option<Vec<Step>>,
        guest: Vec<Step>,
        mem: &Mem,
    ) -> (u64, String, Vec<u8>) {
        let p = policy(service.is_some(), console);
        let mut vcpus = Vec::new();
        if let Some(s) = service {
            vcpus.push(script(SVC, s));
        }
        vcpus.push(script(GUEST, guest));
        let host = FakeHost::default();
        let mut hv = Hypervisor::new(&p, vcpus, mem.clone(), host, vec![(0, 0x8000_0000)]).unwrap();
        let (mut rec, mut out) = (String::new(), Out::default());
        let status = hv.run(&mut rec, &mut out);
        (status, rec, out.0)
    }

    fn has(rec: &str, needle: &str) -> bool {
        rec.lines().any(|l| l.contains(needle))
    }

    #[test]
    fn console_write_and_exit() {
        let mem = Mem::default();
        mem.put(GUEST + 0x100, b"hello\r\n");
        let (status, rec, out) = run(
            Con::On,
            None,
            vec![
                call(Call::VERSION, [0; 4]),
                Box::new(|r: &mut Regs| {
                    assert_eq!(r.rax, ABI_VERSION, "VERSION result");
                    assert_eq!(r.rip, GUEST + 3, "RIP moved past VMMCALL");
                    Exit::Cpuid
                }),
                Box::new(|r: &mut Regs| {
                    assert_eq!(r.rip, GUEST + 5, "CPUID is 2 bytes");
                    r.rax = 0x8000_0001;
                    Exit::Cpuid
                }),
                Box::new(|r: &mut Regs| {
                    assert_eq!(r.rcx & 0b100, 0, "SVM is hidden from partitions");
                    r.rax = 1;
                    Exit::Cpuid
                }),
                Box::new(|r: &mut Regs| {
                    assert_ne!(r.rcx & (1 << 31), 0, "the hypervisor bit is set");
                    r.rax = Call::EXIT.0;
                    r.rdi = 0;
                    Exit::Hypercall
                }),
            ],
            &mem,
        );
        assert_eq!(status, 0, "{rec}");
        assert!(out.is_empty());

        let (status, rec, out) = run(
            Con::On,
            None,
            vec![
                call(Call::CONSOLE_WRITE, [GUEST + 0x100, 7, 0, 0]),
                call(Call::EXIT, [7, 0, 0, 0]),
            ],
            &mem,
        );
        assert_eq!(status, 7);
        assert_eq!(out, b"hello\r\n");
        assert!(
            has(
                &rec,
                "VMSEAL1 stopped partition=g reason=exit status=7 hypercalls=2"
            ),
            "{rec}"
        );
        assert!(has(&rec, "VMSEAL1 exit status=7"), "{rec}");
        assert!(!has(&rec, "violation"), "{rec}");
    }

    #[test]
    fn console_off_drops_and_counts() {
        let mem = Mem::default();
        mem.put(GUEST, b"secret");
        let (status, rec, out) = run(
            Con::Off,
            None,
            vec![
                call(Call::CONSOLE_WRITE, [GUEST, 6, 0, 0]),
                call(Call::EXIT, [0; 4]),
            ],
            &mem,
        );
        assert_eq!(status, 0);
        assert!(out.is_empty());
        assert!(has(&rec, "VMSEAL1 console partition=g dropped=6"), "{rec}");
    }

    #[test]
    fn bad_pointers_stop_the_caller() {
        for (ptr, len) in [
            (GUEST - 1, 4),        // starts before the grant
            (GUEST + MIB4 - 2, 4), // straddles the end
            (SVC, 4),              // another partition's memory
            (u64::MAX - 1, 4),     // wraps around
            (0, 1),                // the firmware's memory
        ] {
            let (status, rec, _) = run(
                Con::On,
                None,
                vec![call(Call::CONSOLE_WRITE, [ptr, len, 0, 0])],
                &Mem::default(),
            );
            assert_eq!(status, STOPPED_STATUS);
            let want = alloc::format!(
                "kind=hypercall-bad-pointer nr=0x1 addr={ptr:#x} len={len:#x} rip={GUEST:#x}"
            );
            assert!(has(&rec, &want), "{want}\n{rec}");
            assert!(has(&rec, "stopped partition=g reason=violation"), "{rec}");
        }
        // A capacity is clamped to what the call uses, but a wrapping range is still malformed
        // (RECV and ATTEST's out), and a huge capacity that does not wrap is fine.
        for (nr, args, addr, len) in [
            (Call::RECV, [0, GUEST, u64::MAX, 0], GUEST, u64::MAX),
            (Call::RECV, [0, u64::MAX - 8, 16, 0], u64::MAX - 8, 16),
            (
                Call::ATTEST,
                [GUEST, 8, GUEST + 0x100, u64::MAX - GUEST],
                GUEST + 0x100,
                u64::MAX - GUEST,
            ),
        ] {
            let (status, rec, _) = run(
                Con::On,
                Some(service(&Mem::default(), 0)),
                vec![call(nr, args)],
                &Mem::default(),
            );
            assert_eq!(status, STOPPED_STATUS, "{rec}");
            let want = alloc::format!(
                "kind=hypercall-bad-pointer nr={:#x} addr={addr:#x} len={len:#x} rip={GUEST:#x}",
                nr.0
            );
            assert!(has(&rec, &want), "{want}\n{rec}");
        }
        let (status, rec, _) = run(
            Con::On,
            Some(service(&Mem::default(), 0)),
            vec![
                call(Call::RECV, [0, GUEST, 1 << 40, 0]),
                Box::new(|r: &mut Regs| {
                    assert_eq!(
                        r.rax,
                        Error::NO_REPLY.0,
                        "nothing asked; the capacity is fine"
                    );
                    r.rax = Call::EXIT.0;
                    r.rdi = 0;
                    Exit::Hypercall
                }),
            ],
            &Mem::default(),
        );
        assert_eq!(status, 0, "{rec}");
        // Over-long is well formed but out of range: an error code, the guest goes on.
        let (status, rec, _) = run(
            Con::On,
            None,
            vec![
                call(Call::CONSOLE_WRITE, [GUEST, MAX_MESSAGE + 1, 0, 0]),
                Box::new(|r: &mut Regs| {
                    assert_eq!(r.rax, Error::INVALID.0);
                    Exit::Hypercall
                }),
            ],
            &Mem::default(),
        );
        // (the second step's RAX was the error value: an unknown call number)
        assert_eq!(status, STOPPED_STATUS);
        assert!(has(&rec, "kind=hypercall-unknown"), "{rec}");
    }

    #[test]
    fn exits_are_classified() {
        let cases: [(Exit, &str); 8] = [
            (
                Exit::NestedPageFault {
                    gpa: 0x10_0000,
                    access: Access::Read,
                },
                "kind=memory gpa=0x100000 access=read",
            ),
            (
                Exit::NestedPageFault {
                    gpa: 0xFED4_0000,
                    access: Access::Write,
                },
                "kind=mmio gpa=0xfed40000 access=write",
            ),
            (
                Exit::Io {
                    port: 0x3F8,
                    size: 1,
                    write: true,
                },
                "kind=port-io port=0x3f8 size=1 dir=out",
            ),
            (
                Exit::Io {
                    port: 0xCF8,
                    size: 4,
                    write: false,
                },
                "kind=port-io port=0xcf8 size=4 dir=in",
            ),
            (
                Exit::Msr {
                    msr: 0xC000_0080,
                    write: true,
                },
                "kind=msr msr=0xc0000080 dir=write",
            ),
            (Exit::Shutdown, "kind=triple-fault"),
            (Exit::Hlt, "kind=instruction exit=hlt"),
            (Exit::Unknown(0x1234), "kind=unknown-exit exit=0x1234"),
        ];
        for (e, want) in cases {
            let (status, rec, _) = run(Con::On, None, vec![exit_with(e)], &Mem::default());
            assert_eq!(status, STOPPED_STATUS);
            assert!(has(&rec, want), "{want}\n{rec}");
            assert!(has(&rec, "VMSEAL1 exit status=255"), "{rec}");
        }
        // An interrupt is not the partition's doing: it resumes.
        let (status, _, _) = run(
            Con::On,
            None,
            vec![exit_with(Exit::Interrupt), call(Call::EXIT, [0; 4])],
            &Mem::default(),
        );
        assert_eq!(status, 0);
    }

    #[test]
    fn a_flood_is_stopped_and_normal_use_is_not() {
        let calls = |n: usize| -> Vec<Step> {
            let mut v: Vec<Step> = (0..n).map(|_| call(Call::VERSION, [0; 4])).collect();
            v.push(call(Call::EXIT, [0; 4]));
            v
        };
        let (status, rec, _) = run(Con::On, None, calls(300), &Mem::default());
        assert_eq!(status, 0, "{rec}");
        let (status, rec, _) = run(Con::On, None, calls(5000), &Mem::default());
        assert_eq!(status, STOPPED_STATUS);
        // The clock never moves in this test: the bucket empties after FLOOD_BURST calls.
        let want = alloc::format!("kind=hypercall-flood count={:#x}", FLOOD_BURST + 1);
        assert!(has(&rec, &want), "{rec}");
    }

    /// The attestation service of the tests: wait for a request, answer with a report
    /// echoing caller and nonce, wait again — forever (as images/attest does).
    fn service(mem: &Mem, answers: usize) -> Vec<Step> {
        const BUF: u64 = SVC + 0x1000;
        const REPLY: u64 = SVC + 0x3000;
        let mut steps: Vec<Step> = vec![call(Call::RECV, [0, BUF, MAX_MESSAGE, 0])];
        for _ in 0..answers {
            let m = mem.clone();
            steps.push(Box::new(move |r: &mut Regs| {
                let received = m.get(BUF, r.rax as usize);
                let (stamp, req_bytes) = Stamp::split(&received).expect("a stamped message");
                let req = Request::decode(req_bytes).expect("a request");
                // As images/attest: the caller is who the hypervisor says sent it.
                let ok = stamp.name == req.caller;
                match stamp.origin {
                    Origin::HYPERVISOR => assert_eq!(stamp.name, b"hypervisor"),
                    Origin::ATTEST => assert!(ok, "the hypervisor's requests name the caller"),
                    o => assert_eq!(o, Origin::SEND),
                }
                let rep = Report {
                    status: if ok { 0 } else { 1 },
                    caller: stamp.name,
                    nonce: req.nonce,
                    bank: 0x000B,
                    pcr_mask: 1,
                    digests: &[0xAB; 32],
                    quote: b"q",
                    signature: b"s",
                    key: b"k",
                };
                let mut out = [0u8; 256];
                let n = rep.encode(&mut out).unwrap();
                m.put(REPLY, &out[..n]);
                r.rax = Call::SEND.0;
                (r.rdi, r.rsi, r.rdx) = (0, REPLY, n as u64);
                Exit::Hypercall
            }));
            steps.push(call(Call::RECV, [0, BUF, MAX_MESSAGE, 0]));
        }
        steps
    }

    #[test]
    fn attestation_round_trip_and_health_check() {
        let mem = Mem::default();
        mem.put(GUEST + 0x10, &[7u8; 32]);
        let m = mem.clone();
        let guest: Vec<Step> = vec![
            call(Call::CHANNEL_FIND, [GUEST + 0x40, 6, 0, 0]),
            Box::new(|r: &mut Regs| {
                assert_eq!(r.rax, 0, "channel id of \"attest\"");
                r.rax = Call::ATTEST.0;
                (r.rdi, r.rsi, r.rdx, r.r10) = (GUEST + 0x10, 32, GUEST + 0x1000, 4096);
                Exit::Hypercall
            }),
            Box::new(move |r: &mut Regs| {
                let rep_bytes = m.get(GUEST + 0x1000, r.rax as usize);
                let rep = Report::decode(&rep_bytes).expect("a report");
                assert_eq!(rep.caller, b"g", "the hypervisor names the caller");
                assert_eq!(rep.nonce, [7u8; 32], "the nonce round-trips");
                r.rax = Call::EXIT.0;
                r.rdi = 0;
                Exit::Hypercall
            }),
        ];
        mem.put(GUEST + 0x40, b"attest");
        let (status, rec, _) = run(Con::On, Some(service(&mem, 2)), guest, &mem);
        assert_eq!(status, 0, "{rec}");
        assert!(
            has(
                &rec,
                "VMSEAL1 health channel=attest server=attest status=answered"
            ),
            "{rec}"
        );
        assert!(!has(&rec, "violation"), "{rec}");
    }

    #[test]
    fn health_check_silent_and_gone() {
        // The service answers once (the guest's request), then halts: at the health check it
        // is gone (stopped for the HLT).
        let mem = Mem::default();
        mem.put(GUEST, &[1u8; 8]);
        let guest = || -> Vec<Step> {
            vec![
                call(Call::ATTEST, [GUEST, 8, GUEST + 0x1000, 4096]),
                call(Call::EXIT, [0; 4]),
            ]
        };
        let mut svc = service(&mem, 1);
        svc.pop(); // instead of waiting again: run off the end of the script (HLT)
        let (status, rec, _) = run(Con::On, Some(svc), guest(), &mem);
        assert_eq!(status, 0, "{rec}");
        assert!(has(&rec, "status=gone"), "{rec}");
        // A service that takes the request and waits again without answering: the guest's
        // ATTEST fails with NO_REPLY (the service is idle, not stopped), the guest goes on;
        // at the health check it takes the request and waits again: silent.
        let silent: Vec<Step> = (0..3)
            .map(|_| call(Call::RECV, [0, SVC + 0x1000, 4096, 0]))
            .collect();
        let guest: Vec<Step> = vec![
            call(Call::ATTEST, [GUEST, 8, GUEST + 0x1000, 4096]),
            Box::new(|r: &mut Regs| {
                assert_eq!(r.rax, Error::NO_REPLY.0, "ATTEST to an idle server");
                r.rax = Call::EXIT.0;
                r.rdi = 0;
                Exit::Hypercall
            }),
        ];
        let (status, rec, _) = run(Con::On, Some(silent), guest, &mem);
        assert_eq!(status, 0, "{rec}");
        assert!(
            has(
                &rec,
                "VMSEAL1 wait-failed partition=g channel=attest error=no-reply"
            ),
            "{rec}"
        );
        assert!(!has(&rec, "stopped partition=attest"), "{rec}");
        assert!(!has(&rec, "deadlock"), "{rec}");
        assert!(has(&rec, "status=silent"), "{rec}");
    }

    /// The issue's first attack: a client `RECV`s on its `attest` channel with nothing
    /// pending. The idle service must not be stopped: the wait fails with `NO_REPLY`, and the
    /// same client's `ATTEST` afterwards is answered, as is the health check.
    #[test]
    fn an_idle_server_is_never_stopped_for_a_clients_wait() {
        let mem = Mem::default();
        mem.put(GUEST, &[3u8; 8]);
        let m = mem.clone();
        let guest: Vec<Step> = vec![
            call(Call::RECV, [0, GUEST + 0x1000, 4096, 0]),
            Box::new(|r: &mut Regs| {
                assert_eq!(r.rax, Error::NO_REPLY.0, "RECV with nothing asked");
                assert_eq!(r.rip, GUEST + 3, "resumed after the VMMCALL");
                r.rax = Call::ATTEST.0;
                (r.rdi, r.rsi, r.rdx, r.r10) = (GUEST, 8, GUEST + 0x1000, 4096);
                Exit::Hypercall
            }),
            Box::new(move |r: &mut Regs| {
                let rep_bytes = m.get(GUEST + 0x1000, r.rax as usize);
                let rep = Report::decode(&rep_bytes).expect("the service still answers");
                assert_eq!(rep.nonce, [3u8; 8]);
                r.rax = Call::EXIT.0;
                r.rdi = 0;
                Exit::Hypercall
            }),
        ];
        let (status, rec, _) = run(Con::On, Some(service(&mem, 2)), guest, &mem);
        assert_eq!(status, 0, "{rec}");
        let waits: Vec<&str> = rec.lines().filter(|l| l.contains("wait-failed")).collect();
        assert_eq!(
            waits,
            ["VMSEAL1 wait-failed partition=g channel=attest error=no-reply"],
            "{rec}"
        );
        assert!(!has(&rec, "stopped partition=attest"), "{rec}");
        assert!(
            has(
                &rec,
                "VMSEAL1 health channel=attest server=attest status=answered"
            ),
            "{rec}"
        );
    }

    /// The issue's second attack: the guest `SEND`s its own request claiming another caller.
    /// The service sees the real sender in the stamp (origin `SEND`, name `g`) and the report
    /// names `g`; the guest's `RECV` gets the service's stamp before the report. Direction:
    /// a second request before the answer is `BUSY`; a server speaking first is `INVALID`.
    #[test]
    fn the_sender_is_stamped_by_the_hypervisor_not_the_message() {
        let mem = Mem::default();
        let mut forged = [0u8; 128];
        let n = Request {
            caller: b"hello",
            nonce: &[9u8; 4],
        }
        .encode(&mut forged)
        .unwrap();
        mem.put(GUEST, &forged[..n]);
        let m = mem.clone();
        let guest: Vec<Step> = vec![
            call(Call::SEND, [0, GUEST, n as u64, 0]),
            Box::new(move |r: &mut Regs| {
                assert_eq!(r.rax, 0);
                r.rax = Call::SEND.0; // again, before the answer
                (r.rdi, r.rsi, r.rdx) = (0, GUEST, n as u64);
                Exit::Hypercall
            }),
            Box::new(move |r: &mut Regs| {
                assert_eq!(r.rax, Error::BUSY.0, "one request at a time");
                r.rax = Call::RECV.0;
                (r.rdi, r.rsi, r.rdx) = (0, GUEST + 0x1000, 8192);
                Exit::Hypercall
            }),
            Box::new(move |r: &mut Regs| {
                let received = m.get(GUEST + 0x1000, r.rax as usize);
                let (stamp, body) = Stamp::split(&received).expect("stamped");
                assert_eq!((stamp.origin, stamp.name), (Origin::SEND, &b"attest"[..]));
                let rep = Report::decode(body).expect("a report");
                assert_eq!(rep.caller, b"g", "the real sender, not the claimed one");
                assert_ne!(rep.status, 0, "a claim that is not the sender is refused");
                r.rax = Call::EXIT.0;
                r.rdi = 0;
                Exit::Hypercall
            }),
        ];
        // The service first tries to speak without being asked.
        let mut svc: Vec<Step> = vec![
            call(Call::SEND, [0, SVC, 8, 0]),
            Box::new(|r: &mut Regs| {
                assert_eq!(r.rax, Error::INVALID.0, "a server only answers");
                r.rax = Call::RECV.0;
                (r.rdi, r.rsi, r.rdx) = (0, SVC + 0x1000, MAX_MESSAGE);
                Exit::Hypercall
            }),
        ];
        let mut answering = service(&mem, 2);
        drop(answering.remove(0)); // the RECV above instead
        svc.extend(answering);
        let (status, rec, _) = run(Con::On, Some(svc), guest, &mem);
        assert_eq!(status, 0, "{rec}");
        assert!(
            has(&rec, "health channel=attest server=attest status=answered"),
            "{rec}"
        );
        assert!(!has(&rec, "violation"), "{rec}");
        assert!(!has(&rec, "wait-failed"), "{rec}");
    }

    /// Preemption: a partition whose slice ended (`Exit::Interrupt`, the hypervisor's timer)
    /// stays runnable but the next partition in turn runs — a spinning guest cannot keep the
    /// service from running; every preemption is counted in `hv-stats`.
    #[test]
    fn a_preempted_partition_lets_the_others_run() {
        let order = Rc::new(RefCell::new(Vec::new()));
        let tick = |who: &'static str, order: &Rc<RefCell<Vec<&'static str>>>| -> Step {
            let order = order.clone();
            Box::new(move |_: &mut Regs| {
                order.borrow_mut().push(who);
                Exit::Interrupt
            })
        };
        let mut svc = vec![tick("svc", &order), tick("svc", &order)];
        svc.extend((0..2).map(|_| call(Call::RECV, [0, SVC + 0x1000, 8192, 0])));
        let guest = vec![
            tick("g", &order),
            tick("g", &order),
            tick("g", &order),
            call(Call::EXIT, [0; 4]),
        ];
        let (status, rec, _) = run(Con::On, Some(svc), guest, &Mem::default());
        assert_eq!(status, 0, "{rec}");
        assert_eq!(*order.borrow(), ["svc", "g", "svc", "g", "g"]);
        assert!(has(&rec, " preemptions=5 "), "{rec}");
    }

    /// The slice is counted across exits: a guest that makes a hypercall every 3 ms (so the
    /// timer, re-armed at every VMRUN, never fires) still yields after 10 ms.
    #[test]
    fn a_partition_that_keeps_exiting_is_preempted_too() {
        let p = policy(true, Con::On);
        let host = FakeHost::default();
        let order = Rc::new(RefCell::new(Vec::new()));
        let step = |who: &'static str, exit: Exit| -> Step {
            let (clock, order) = (host.0.clone(), order.clone());
            Box::new(move |r: &mut Regs| {
                clock.set(clock.get() + 3_000_000);
                order.borrow_mut().push(who);
                r.rax = Call::VERSION.0;
                exit
            })
        };
        let mut guest: Vec<Step> = (0..5).map(|_| step("g", Exit::Hypercall)).collect();
        guest.push(call(Call::EXIT, [0; 4]));
        let mut svc: Vec<Step> = (0..2).map(|_| step("svc", Exit::Hypercall)).collect();
        svc.extend((0..2).map(|_| call(Call::RECV, [0, SVC + 0x1000, 8192, 0])));
        let mem = Mem::default();
        let vcpus = vec![script(SVC, svc), script(GUEST, guest)];
        let mut hv = Hypervisor::new(&p, vcpus, mem, host, vec![(0, 1 << 31)]).unwrap();
        hv.set_time_slice(10_000_000);
        let (mut rec, mut out) = (String::new(), Out::default());
        assert_eq!(hv.run(&mut rec, &mut out), 0, "{rec}");
        // 3 ms per step: the 4th step of a slice passes 10 ms and ends it.
        assert_eq!(
            *order.borrow(),
            ["svc", "svc", "g", "g", "g", "g", "g"],
            "{rec}"
        );
        assert!(has(&rec, " preemptions=1 "), "{rec}");
    }

    /// A CPU budget: the partition is stopped with a `cpu-budget` violation the first time
    /// its accumulated run time exceeds it (here 5 ms: three 2 ms slices), whatever it exited
    /// for; the service keeps answering the health check.
    #[test]
    fn a_spent_cpu_budget_is_a_violation() {
        let mut p = policy(true, Con::On);
        p.guest.cpu_budget_ms = 5;
        let host = FakeHost::default();
        let slice = |clock: Rc<Cell<u64>>| -> Step {
            Box::new(move |_: &mut Regs| {
                clock.set(clock.get() + 2_000_000);
                Exit::Interrupt
            })
        };
        let guest = (0..10).map(|_| slice(host.0.clone())).collect();
        let mem = Mem::default();
        let vcpus = vec![script(SVC, service(&mem, 1)), script(GUEST, guest)];
        let mut hv = Hypervisor::new(&p, vcpus, mem, host, vec![(0, 1 << 31)]).unwrap();
        let (mut rec, mut out) = (String::new(), Out::default());
        assert_eq!(hv.run(&mut rec, &mut out), STOPPED_STATUS, "{rec}");
        let violations: Vec<&str> = rec.lines().filter(|l| l.contains(" violation ")).collect();
        assert_eq!(
            violations,
            [alloc::format!(
                "VMSEAL1 violation partition=g kind=cpu-budget budget_ms=0x5 used_ms=0x6 \
                 rip={GUEST:#x}"
            )],
            "{rec}"
        );
        assert!(
            has(&rec, "health channel=attest server=attest status=answered"),
            "{rec}"
        );
        assert!(has(&rec, " preemptions=2 "), "{rec}");
    }

    /// Two services waiting on each other (a true deadlock among clients) and the guest waiting
    /// on one of them: every wait fails with `DEADLOCK`, nobody is stopped, everybody goes on.
    #[test]
    fn a_deadlock_among_clients_fails_the_waits_and_stops_nobody() {
        const SVC_B: u64 = 0x700_0000;
        let part = |name: &str, section: &str, base| Partition {
            name: name.into(),
            kind: PayloadKind::Elf,
            section: section.into(),
            memory: MIB4,
            base,
            devices: Devices::NONE,
            cpu_budget_ms: 0,
        };
        let chan = |name: &str, client: &str, server: &str| Channel {
            name: name.into(),
            client: client.into(),
            server: server.into(),
        };
        let p = LaunchPolicy {
            name: "g".into(),
            version: "1".into(),
            guest: part("g", ".guest", GUEST),
            services: vec![part("a", ".svc0", SVC), part("b", ".svc1", SVC_B)],
            console: Con::On,
            // channel ids: x = 0 (g -> a), y = 1 (a -> b), z = 2 (b -> a)
            channels: vec![
                chan("x", "g", "a"),
                chan("y", "a", "b"),
                chan("z", "b", "a"),
            ],
        };
        p.validate().unwrap();
        let waits_then_exits = |base: u64, channel: u64, status: u64| -> Vec<Step> {
            vec![
                call(Call::SEND, [channel, base, 16, 0]),
                Box::new(move |r: &mut Regs| {
                    assert_eq!(r.rax, 0, "the request is queued");
                    r.rax = Call::RECV.0;
                    (r.rdi, r.rsi, r.rdx) = (channel, base + 0x1000, 4096);
                    Exit::Hypercall
                }),
                Box::new(move |r: &mut Regs| {
                    assert_eq!(r.rax, Error::DEADLOCK.0);
                    r.rax = Call::EXIT.0;
                    r.rdi = status;
                    Exit::Hypercall
                }),
            ]
        };
        let vcpus = vec![
            script(SVC, waits_then_exits(SVC, 1, 1)),
            script(SVC_B, waits_then_exits(SVC_B, 2, 2)),
            script(GUEST, waits_then_exits(GUEST, 0, 0)),
        ];
        let mut hv = Hypervisor::new(
            &p,
            vcpus,
            Mem::default(),
            FakeHost::default(),
            vec![(0, 0x8000_0000)],
        )
        .unwrap();
        let (mut rec, mut out) = (String::new(), Out::default());
        assert_eq!(hv.run(&mut rec, &mut out), 0, "{rec}");
        for (who, chan) in [("a", "y"), ("b", "z"), ("g", "x")] {
            let want =
                alloc::format!("VMSEAL1 wait-failed partition={who} channel={chan} error=deadlock");
            assert!(has(&rec, &want), "{want}\n{rec}");
        }
        assert!(!has(&rec, "reason=deadlock"), "{rec}");
        assert!(!has(&rec, "violation"), "{rec}");
    }

    #[test]
    fn channel_errors_are_codes() {
        let mem = Mem::default();
        mem.put(GUEST, b"nope");
        let (status, rec, _) = run(
            Con::On,
            None,
            vec![
                call(Call::CHANNEL_FIND, [GUEST, 4, 0, 0]),
                Box::new(|r: &mut Regs| {
                    assert_eq!(r.rax, Error::NO_CHANNEL.0);
                    r.rax = Call::SEND.0;
                    (r.rdi, r.rsi, r.rdx) = (9, GUEST, 4);
                    Exit::Hypercall
                }),
                Box::new(|r: &mut Regs| {
                    assert_eq!(r.rax, Error::NO_CHANNEL.0);
                    r.rax = Call::ATTEST.0;
                    (r.rdi, r.rsi, r.rdx, r.r10) = (GUEST, 4, GUEST, 64);
                    Exit::Hypercall
                }),
                Box::new(|r: &mut Regs| {
                    assert_eq!(r.rax, Error::NO_ATTESTATION.0);
                    r.rax = Call::EXIT.0;
                    r.rdi = 3;
                    Exit::Hypercall
                }),
            ],
            &mem,
        );
        assert_eq!(status, 3, "{rec}");
    }

    #[test]
    fn new_checks_the_vcpus() {
        let p = policy(true, Con::On);
        let one = vec![script(GUEST, vec![])];
        let r = Hypervisor::new(&p, one, Mem::default(), FakeHost::default(), vec![]);
        assert!(matches!(r, Err(HvError::VcpuCount)));
        assert!(Grant { base: 10, size: 10 }.contains(10, 10));
        assert!(!Grant { base: 10, size: 10 }.contains(10, 11));
        assert!(!Grant { base: 10, size: 10 }.contains(u64::MAX, 2));
        assert!(
            !Grant {
                base: u64::MAX,
                size: 10
            }
            .contains(u64::MAX, 0)
        );
    }
}
