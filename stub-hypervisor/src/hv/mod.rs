//! The hypervisor's logic, independent of the virtualization backend and testable on the host.
//!
//! The stub-hypervisor runs every ELF partition (the `.guest` and each `.svcN` service) in its
//! own guest with nested paging. This module decides *what happens* on every exit — serving
//! hypercalls (`policies::hypercall`), stopping a partition on a violation and reporting it on
//! the record channel, scheduling the partitions (round robin; the backend's timer ends each
//! time slice with [`Exit::Interrupt`]) — while the backend (`crate::svm` now, a VMX backend
//! later) only enters the guest and decodes why it left, behind [`Vcpu`].
//! The host tests drive it with a test double of [`Vcpu`] and [`GuestMemory`].
//!
//! Contract with the backend (one vCPU per partition, all on the bootstrap processor):
//! - [`Vcpu::run`] enters the partition and returns one [`Exit`]; the general registers of the
//!   partition are in [`Vcpu::regs`] / [`Vcpu::regs_mut`] between runs (the backend saves and
//!   restores those VMRUN does not switch).
//! - `RIP` in [`Regs`] points *at* the exiting instruction (SVM under TCG has no next-RIP):
//!   the hypervisor advances it (VMMCALL is 3 bytes) when it resumes the partition after a
//!   hypercall.
//! - The nested page tables, I/O permission map and MSR map are built by the backend from
//!   the launch policy before the first run; the library never maps anything.
//!
//! Nothing here allocates once [`Hypervisor::run`] has started (the stub calls it after
//! ExitBootServices, when there is no allocator): every table has a fixed capacity.

mod run;
pub use run::{Console, Grant, HEALTH_NONCE, HvError, Hypervisor, STOPPED_STATUS};

/// The general registers of a partition's vCPU.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Regs {
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RBP.
    pub rbp: u64,
    /// RSP.
    pub rsp: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
    /// RIP.
    pub rip: u64,
}

/// The kind of a memory access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

impl Access {
    /// The record word (`read`, `write`, `exec`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Execute => "exec",
        }
    }
}

/// Why a vCPU left the partition. An open set: a backend reports what it cannot classify as
/// [`Exit::Unknown`] with its raw exit code, and the hypervisor stops that partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `VMMCALL`: a hypercall; the arguments are in [`Regs`].
    Hypercall,
    /// `IN`/`OUT` to `port` of `size` bytes (intercepted: no port is passed through unless
    /// the policy grants it).
    Io {
        /// The port.
        port: u16,
        /// 1, 2 or 4.
        size: u8,
        /// `OUT` (true) or `IN`.
        write: bool,
    },
    /// A nested page fault: the partition touched guest-physical memory its nested page
    /// tables do not map (or map without the needed right).
    NestedPageFault {
        /// The faulting guest-physical address.
        gpa: u64,
        /// What kind of access.
        access: Access,
    },
    /// `RDMSR`/`WRMSR` (all intercepted).
    Msr {
        /// ECX.
        msr: u32,
        /// WRMSR (true) or RDMSR.
        write: bool,
    },
    /// `CPUID` (intercepted; the hypervisor answers with a filtered view).
    Cpuid,
    /// `HLT`.
    Hlt,
    /// A triple fault: the partition is dead.
    Shutdown,
    /// A physical interrupt or NMI arrived while the partition ran — normally the
    /// hypervisor's timer ending the time slice: the partition stays runnable, the next runs.
    Interrupt,
    /// An instruction the partition may not execute (VMRUN, VMLOAD, VMSAVE, STGI, CLGI,
    /// SKINIT, INVLPGA, …), with the backend's raw exit code.
    Instruction(u64),
    /// `VMRUN` itself failed (an invalid guest state): with the raw code.
    Invalid(u64),
    /// Anything else, with the backend's raw exit code.
    Unknown(u64),
}

/// A partition's virtual CPU, as the backend provides it.
pub trait Vcpu {
    /// Enter the partition and run it until the next exit.
    fn run(&mut self) -> Exit;
    /// The registers as of the last exit (or as set up before the first run).
    fn regs(&self) -> &Regs;
    /// The registers, to change before the next run (results of hypercalls, RIP).
    fn regs_mut(&mut self) -> &mut Regs;
}

/// Access to partitions' memory from the hypervisor (host-physical = guest-physical for
/// grants). The library checks every range against the partition's grant *before* calling
/// these; implementations may assume the range is inside some grant.
pub trait GuestMemory {
    /// Copy `buf.len()` bytes from guest-physical `gpa`.
    fn read(&self, gpa: u64, buf: &mut [u8]);
    /// Copy `data` to guest-physical `gpa`.
    fn write(&mut self, gpa: u64, data: &[u8]);
}

/// What the hypervisor needs from the machine besides the vCPUs: time (for the flood limit
/// and the statistics) and the real `CPUID` (filtered before a partition sees it).
pub trait Host {
    /// Nanoseconds since an arbitrary start, monotonic.
    fn now_ns(&self) -> u64;
    /// The processor's `CPUID` for `leaf`/`subleaf`: `[eax, ebx, ecx, edx]`.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// The running partition's time slice is over (it blocked, stopped or was preempted):
    /// the backend stops its timer, so the next partition starts a fresh slice. No timer, no
    /// work (the default).
    fn end_slice(&self) {}
}
