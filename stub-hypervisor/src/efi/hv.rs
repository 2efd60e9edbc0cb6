//! Hypervisor mode: launch every ELF partition of the launch policy in its own SVM guest.
//!
//! Before ExitBootServices (everything that allocates): check SVM + nested paging (refuse
//! otherwise — never run a `.guest` unisolated), load each partition's ELF into its grant
//! (`AllocateAddress` at the policy's base: guest-physical = host-physical), write its
//! hypervisor area (`policies::bootinfo`), build its nested page tables, I/O and MSR maps and
//! VMCB, build the `stub::hv::Hypervisor`. After: report the event log and PCRs, enable SVM,
//! run the partitions, power off.
//!
//! Fail closed: any failure before the first VMRUN stops the boot with `error
//! stage=hypervisor status=<why>`.

use super::{LogCopy, St, fail, power_off};
use alloc::vec::Vec;
use core::arch::x86_64::_rdtsc;
use policies::launch::{Devices, LaunchPolicy, Partition};
use stub::elf::{self, Guest};
use stub::hv::{GuestMemory, Host, Hypervisor, Regs};
use stub::record::line;
use stub::serial::Uart;
use stub::svm::vmcb::{Setup, Vmcb};
use stub::svm::{self, Tables, hw, pte, timer};

/// The longest a partition runs before the hypervisor's timer preempts it.
const SLICE_MS: u64 = 10;
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::MemoryMap;

/// Page size.
const PAGE: u64 = 4096;
/// Pages of nested page tables per partition: PML4, PDPT, up to four PDs (grants lie below
/// 4 GiB), two PTs for unaligned edges, a PD and a PT for the TPM page — 10 at most; the
/// rest is slack. Running out is an error (`npt-pages`), never a partial map.
const NPT_PAGES: u64 = 16;
/// Pages per partition: nested page tables, IOPM (12 KiB), MSRPM (8 KiB), VMCB.
const PER_PARTITION: u64 = NPT_PAGES + 3 + 2 + 1;
/// Pages shared by all partitions: the processor's host save area (VM_HSAVE_PA) and the
/// host's VMSAVE state.
const SHARED: u64 = 2;

fn tsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { _rdtsc() }
}

/// Zeroed pages from the firmware (EfiLoaderData: they survive ExitBootServices); their
/// physical address (identity-mapped).
fn pages(rec: &mut Uart, n: u64) -> u64 {
    let Ok(count) = usize::try_from(n) else {
        fail(rec, "hypervisor", "pages")
    };
    match boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, count) {
        Ok(p) => {
            // SAFETY: `count` pages just allocated for us and used by nobody else.
            unsafe { core::ptr::write_bytes(p.as_ptr(), 0, count * PAGE as usize) };
            p.as_ptr() as u64
        }
        Err(e) => fail(rec, "hypervisor", St(e.status())),
    }
}

/// A bump arena over zeroed pages the stub allocated, for nested page tables.
struct Arena {
    next: u64,
    end: u64,
}

impl Tables for Arena {
    fn alloc(&mut self) -> Option<u64> {
        (self.next < self.end).then(|| {
            let p = self.next;
            self.next += PAGE;
            p
        })
    }
    fn entry(&self, table: u64, index: usize) -> u64 {
        // SAFETY: `table` is a page of this arena (allocated by `alloc`) and index < 512 (the
        // svm module masks every index to 9 bits).
        unsafe { ((table as *const u64).add(index % 512)).read_volatile() }
    }
    fn set_entry(&mut self, table: u64, index: usize, value: u64) {
        // SAFETY: as in `entry`; no partition runs while the tables are built.
        unsafe { ((table as *mut u64).add(index % 512)).write_volatile(value) }
    }
}

/// Partitions' memory, identity-mapped (the hv logic checked every range against a grant).
struct PhysMemory;

impl GuestMemory for PhysMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) {
        // SAFETY: the hv logic checked `gpa .. gpa + len` lies in a partition's grant, which
        // the stub allocated and the firmware's page tables map 1:1.
        unsafe { core::ptr::copy_nonoverlapping(gpa as *const u8, buf.as_mut_ptr(), buf.len()) }
    }
    fn write(&mut self, gpa: u64, data: &[u8]) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), gpa as *mut u8, data.len()) }
    }
}

/// Time from the TSC, CPUID from the processor.
struct Machine {
    tsc_per_ms: u64,
}

impl Host for Machine {
    fn now_ns(&self) -> u64 {
        ((u128::from(tsc()) * 1_000_000) / u128::from(self.tsc_per_ms.max(1))) as u64
    }
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        hw::cpuid(leaf, subleaf)
    }
    fn end_slice(&self) {
        timer::end_slice();
    }
}

/// Load one partition into its grant, write its hypervisor area, build its nested page
/// tables, permission maps and VMCB in `own` (its [`PER_PARTITION`] pages), record it, and
/// return its vCPU.
#[expect(
    clippy::too_many_arguments,
    reason = "wiring of one partition's inputs"
)]
fn partition(
    rec: &mut Uart,
    p: &Partition,
    index: usize,
    elf_bytes: &[u8],
    cmdline: &[u8],
    tsc_per_ms: u64,
    own: u64,
    host_state: u64,
) -> hw::SvmVcpu {
    let g = match Guest::parse(elf_bytes) {
        Ok(g) => g,
        Err(e) => fail(rec, "hypervisor", e),
    };
    // The grant is the policy's (base, memory); the ELF must agree with it and leave the
    // hypervisor area free. `vmseal build` checked the same; the stub checks again because
    // the image is input.
    let grant = match g.grant(Some(p.memory)) {
        Ok(gr) if gr.base == p.base && gr.size == p.memory => gr,
        Ok(_) => fail(rec, "hypervisor", "grant-base-differs-from-policy"),
        Err(e) => fail(rec, "hypervisor", e),
    };
    if !g.fits_below_area(grant) {
        fail(rec, "hypervisor", elf::ElfError::AreaOverlap);
    }
    let Ok(len) = usize::try_from(grant.size) else {
        fail(rec, "hypervisor", "grant-size")
    };
    let mem = match boot::allocate_pages(
        AllocateType::Address(grant.base),
        MemoryType::LOADER_DATA,
        len / PAGE as usize,
    ) {
        Ok(m) => m,
        // Someone else (firmware) owns part of the grant: the partition cannot get its
        // identity-mapped memory, so it does not run.
        Err(e) => fail(rec, "hypervisor", St(e.status())),
    };
    // SAFETY: the grant was just allocated for this partition at its base, `len` bytes, and
    // nothing else refers to it.
    let mem = unsafe { core::slice::from_raw_parts_mut(mem.as_ptr(), len) };
    mem.fill(0);
    if let Err(e) = elf::load(elf_bytes, &g, grant, mem) {
        fail(rec, "hypervisor", e);
    }
    let start = match elf::write_area(mem, grant, cmdline, tsc_per_ms) {
        Ok(s) => s,
        Err(e) => fail(rec, "hypervisor", e),
    };

    // Nested page tables: the grant (RWX, write-back), and the TPM page (UC) for a service
    // granted it. Nothing else.
    let mut arena = Arena {
        next: own,
        end: own + NPT_PAGES * PAGE,
    };
    let Some(root) = arena.alloc() else {
        fail(rec, "hypervisor", "npt-pages")
    };
    let rwx = pte::P | pte::RW | pte::US;
    let mut npt = svm::map_identity(&mut arena, root, grant.base, grant.size, rwx);
    if npt.is_ok() && p.devices.contains(Devices::TPM) {
        npt = svm::map_identity(
            &mut arena,
            root,
            svm::TPM_PAGE,
            PAGE,
            rwx | pte::PCD | pte::PWT,
        );
    }
    match npt {
        Ok(()) => {}
        Err(svm::NptError::OutOfPages) => fail(rec, "hypervisor", "npt-pages"),
        Err(svm::NptError::BadRange) => fail(rec, "hypervisor", "npt-range"),
    }
    let iopm = own + NPT_PAGES * PAGE;
    let msrpm = iopm + svm::IOPM_SIZE as u64;
    let vmcb = msrpm + svm::MSRPM_SIZE as u64;
    // SAFETY: the IOPM's three pages are part of `own`, which belongs to this partition.
    let map = unsafe { core::slice::from_raw_parts_mut(iopm as *mut u8, svm::IOPM_SIZE) };
    let serial: &[(u16, u16)] = if p.devices.contains(Devices::SERIAL) {
        &[svm::COM1_PORTS]
    } else {
        &[]
    };
    svm::fill_iopm(map, serial);
    // SAFETY: the MSRPM's two pages are part of `own`.
    let map = unsafe { core::slice::from_raw_parts_mut(msrpm as *mut u8, svm::MSRPM_SIZE) };
    svm::fill_msrpm(map);

    let Ok(asid) = u32::try_from(index + 1) else {
        fail(rec, "hypervisor", "asid")
    };
    let v = Vmcb::partition(&Setup {
        asid,
        n_cr3: root,
        iopm,
        msrpm,
        cr3: start.cr3,
        gdt: start.gdt,
        rip: g.entry,
        rsp: start.rsp,
    });
    if let Err(e) = v.check() {
        fail(rec, "hypervisor", e);
    }
    // SAFETY: `vmcb` is the last page of `own` (4 KiB aligned, this partition's alone).
    unsafe { (vmcb as *mut Vmcb).write(v) };
    let devices = match (
        p.devices.contains(Devices::TPM),
        p.devices.contains(Devices::SERIAL),
    ) {
        (true, true) => "tpm,serial",
        (true, false) => "tpm",
        (false, true) => "serial",
        (false, false) => "none",
    };
    line(rec, "partition")
        .kv("name", &p.name)
        .kv("section", &p.section)
        .hex("base", p.base)
        .hex("size", p.memory)
        .hex("entry", g.entry)
        .kv("devices", devices)
        .end();
    let regs = Regs {
        rip: g.entry,
        rsp: start.rsp,
        rdi: start.boot_info,
        ..Regs::default()
    };
    // SAFETY: `vmcb` is this partition's own VMCB page, fully set up and checked above
    // (VMRUN intercepted, ASID non-zero, EFER.SVME, nested paging over tables that map only
    // its grant and granted device page); `host_state` is the shared host VMSAVE page.
    unsafe { hw::SvmVcpu::new(vmcb, host_state, regs) }
}

/// The RAM ranges of the memory map (for telling `memory` from `mmio` violations): the types
/// the firmware or the OS use as memory. Taken after every allocation of the stub but the
/// hypervisor's own tables; later allocations only turn conventional memory into loader
/// data, and ExitBootServices changes no type, so the final map classifies every address the
/// same way.
fn ram_ranges(rec: &mut Uart) -> Vec<(u64, u64)> {
    let map = match boot::memory_map(MemoryType::LOADER_DATA) {
        Ok(m) => m,
        Err(e) => fail(rec, "hypervisor", St(e.status())),
    };
    let mut ram: Vec<(u64, u64)> = Vec::with_capacity(map.len());
    for d in map.entries() {
        let is_ram = matches!(
            d.ty,
            MemoryType::CONVENTIONAL
                | MemoryType::LOADER_CODE
                | MemoryType::LOADER_DATA
                | MemoryType::BOOT_SERVICES_CODE
                | MemoryType::BOOT_SERVICES_DATA
                | MemoryType::RUNTIME_SERVICES_CODE
                | MemoryType::RUNTIME_SERVICES_DATA
                | MemoryType::ACPI_RECLAIM
                | MemoryType::ACPI_NON_VOLATILE
        );
        if !is_ram {
            continue;
        }
        let size = d.page_count.saturating_mul(PAGE);
        match ram.last_mut() {
            Some((b, s)) if b.checked_add(*s) == Some(d.phys_start) => *s += size,
            _ => ram.push((d.phys_start, size)),
        }
    }
    ram
}

/// Launch the partitions of the (decoded, validated, measured) `policy`. `section` finds a PE
/// section's contents by name.
pub fn launch(
    rec: &mut Uart,
    policy: &LaunchPolicy,
    cmdline: &'static [u8],
    section: &dyn Fn(&str) -> Option<&'static [u8]>,
    log: &LogCopy,
) -> ! {
    let n = policy.services.len() + 1;
    let support = hw::support();
    if !support.svm || !support.nested_paging {
        // Never run the guest unisolated.
        fail(rec, "hypervisor", "no-svm-npt");
    }
    if !support.can_isolate(n) {
        // Each partition needs its own ASID.
        fail(rec, "hypervisor", "too-few-asids");
    }
    let tsc_per_ms = super::report::calibrate_tsc();
    // Every page the SVM backend needs, in one allocation: the shared pages, then each
    // partition's.
    let arena = pages(rec, SHARED + n as u64 * PER_PARTITION);
    let (hsave, host_state) = (arena, arena + PAGE);
    let mut vcpus = Vec::with_capacity(n);
    let parts = policy
        .services
        .iter()
        .chain(core::iter::once(&policy.guest));
    for (i, p) in parts.enumerate() {
        let Some(bytes) = section(&p.section) else {
            fail(rec, "hypervisor", "partition-section-missing")
        };
        let is_guest = i + 1 == n;
        let own = arena + (SHARED + i as u64 * PER_PARTITION) * PAGE;
        vcpus.push(partition(
            rec,
            p,
            i,
            bytes,
            if is_guest { cmdline } else { &[] },
            tsc_per_ms,
            own,
            host_state,
        ));
    }
    let ram = ram_ranges(rec);
    let mut hv = match Hypervisor::new(policy, vcpus, PhysMemory, Machine { tsc_per_ms }, ram) {
        Ok(h) => h,
        Err(e) => fail(rec, "hypervisor", e),
    };
    let mut console = Uart::init(policies::record::CONSOLE_PORT);

    // SAFETY: nothing below uses boot services or the allocator (the hv logic never
    // allocates; the record and console writers are port I/O only).
    let mmap = unsafe { boot::exit_boot_services(None) };
    // The start-up figures are on the hypervisor's own clock (`Host::now_ns`).
    let clock = Machine { tsc_per_ms };
    let ebs_ns = clock.now_ns();
    core::mem::forget(mmap);
    super::report::after_exit(rec, log, tsc_per_ms);
    let recorded_ns = clock.now_ns();
    // SAFETY: CPUID said SVM is there; `hsave` is a page reserved for the host save area; the
    // stub's code is soft-float (no AVX state to lose when XCR0 is pinned).
    unsafe { hw::enable(hsave) };
    // SAFETY: after ExitBootServices, interrupts off (ExitBootServices disabled them); the
    // firmware's identity map covers its IDT and the APIC page.
    let timer = unsafe { timer::install(tsc_per_ms) };
    if let Some(t) = timer {
        timer::activate(t, t.counts(SLICE_MS));
        hv.set_time_slice(SLICE_MS * 1_000_000);
    }
    line(rec, "launch")
        .kv("kind", "hypervisor")
        .kv("section", policies::sections::GUEST)
        .end();
    let l = line(rec, "hv")
        .kv("backend", "svm")
        .kv("asids", support.asids)
        .kv("partitions", n);
    match timer {
        Some(t) => l
            .kv("slice_ms", SLICE_MS)
            .kv("timer_per_ms", t.counts_per_ms()),
        None => l.kv("timer", "off"),
    }
    .end();
    let _status = hv.run(rec, &mut console);
    let mut l = line(rec, "hv-startup").kv("record_us", recorded_ns.saturating_sub(ebs_ns) / 1000);
    if let Some(started) = hv.guest_started_ns() {
        l = l.kv("ebs_to_guest_us", started.saturating_sub(ebs_ns) / 1000);
    }
    l.end();
    line(rec, "end").end();
    power_off(uefi::Status::SUCCESS)
}
