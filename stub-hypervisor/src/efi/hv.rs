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
use policies::bootinfo::{self, BootInfo, HV_AREA_SIZE};
use policies::launch::{Devices, LaunchPolicy, Partition};
use stub::elf::{self, Guest};
use stub::hv::{GuestMemory, Host, Hypervisor, Regs};
use stub::record::line;
use stub::serial::Uart;
use stub::svm::{self, Tables, hw, misc1, misc2, pte, vmcb};
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::MemoryMap;

/// Pages of nested page tables per partition (PML4, PDPT, up to four PDs, PTs for unaligned
/// edges and the TPM page).
const NPT_PAGES: usize = 24;

fn tsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { _rdtsc() }
}

/// Zeroed pages from the firmware (EfiLoaderData: they survive ExitBootServices); their
/// physical address (identity-mapped).
fn pages(rec: &mut Uart, n: usize) -> u64 {
    match boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, n) {
        Ok(p) => {
            // SAFETY: `n` pages just allocated for us and used by nobody else.
            unsafe { core::ptr::write_bytes(p.as_ptr(), 0, n * 4096) };
            p.as_ptr() as u64
        }
        Err(e) => fail(rec, "hypervisor", St(e.status())),
    }
}

/// Write `v` at physical `addr` (identity-mapped memory the stub allocated).
fn put<T: Copy>(addr: u64, v: T) {
    // SAFETY: every caller passes an address inside pages this module allocated (VMCB, page
    // tables, a partition's hypervisor area), which nothing else uses.
    unsafe { (addr as *mut T).write_unaligned(v) }
}

fn get64(addr: u64) -> u64 {
    // SAFETY: as in `put`: page-table pages of the arena.
    unsafe { (addr as *const u64).read_unaligned() }
}

/// A bump arena of zeroed pages for nested page tables.
struct Arena {
    next: u64,
    end: u64,
}

impl Tables for Arena {
    fn alloc(&mut self) -> Option<u64> {
        (self.next < self.end).then(|| {
            let p = self.next;
            self.next += 4096;
            p
        })
    }
    fn entry(&self, table: u64, index: usize) -> u64 {
        get64(table + 8 * index as u64)
    }
    fn set_entry(&mut self, table: u64, index: usize, value: u64) {
        put(table + 8 * index as u64, value);
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
}

/// Load one partition and set up its VMCB; returns the vCPU.
fn partition(
    rec: &mut Uart,
    p: &Partition,
    index: usize,
    elf_bytes: &[u8],
    cmdline: &[u8],
    tsc_per_ms: u64,
) -> hw::SvmVcpu {
    let g = match Guest::parse(elf_bytes) {
        Ok(g) => g,
        Err(e) => fail(rec, "hypervisor", e),
    };
    let grant = match g.grant(Some(p.memory)) {
        Ok(gr) if gr.base == p.base => gr,
        Ok(_) => fail(rec, "hypervisor", "grant-base-differs-from-policy"),
        Err(e) => fail(rec, "hypervisor", e),
    };
    let area = p.base + p.memory - HV_AREA_SIZE;
    let (_, seg_end) = g.span();
    if seg_end > area {
        fail(rec, "hypervisor", "segments-overlap-hypervisor-area");
    }
    let n = (p.memory / 4096) as usize;
    let mem = match boot::allocate_pages(AllocateType::Address(p.base), MemoryType::LOADER_DATA, n)
    {
        Ok(m) => m,
        Err(e) => fail(rec, "hypervisor", St(e.status())),
    };
    // SAFETY: the grant was just allocated for this partition at `p.base`, `p.memory` bytes.
    let mem = unsafe { core::slice::from_raw_parts_mut(mem.as_ptr(), p.memory as usize) };
    mem.fill(0);
    if let Err(e) = elf::load(elf_bytes, &g, grant, mem) {
        fail(rec, "hypervisor", e);
    }
    // The hypervisor area: boot info, exit trampoline, GDT, command line, page tables, stack.
    let cmd = &cmdline[..cmdline.len().min(bootinfo::MAX_CMDLINE as usize)];
    let info = BootInfo {
        magic: bootinfo::MAGIC,
        version: bootinfo::VERSION,
        size: size_of::<BootInfo>() as u32,
        cmdline: if cmd.is_empty() {
            0
        } else {
            area + bootinfo::CMDLINE_OFFSET
        },
        cmdline_len: cmd.len() as u64,
        guest_memory_base: p.base,
        guest_memory_size: p.memory,
        tsc_per_ms,
        ..BootInfo::default()
    };
    put(area + bootinfo::BOOT_INFO_OFFSET, info);
    put(area + bootinfo::TRAMPOLINE_OFFSET, bootinfo::TRAMPOLINE);
    put(
        area + bootinfo::GDT_OFFSET,
        [0u64, 0x00AF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF],
    );
    for (k, b) in cmd.iter().enumerate() {
        put(area + bootinfo::CMDLINE_OFFSET + k as u64, *b);
    }
    let pml4 = area + bootinfo::PAGE_TABLES_OFFSET;
    let pdpt = pml4 + 0x1000;
    put(pml4, pdpt | 3);
    for gib in 0..4u64 {
        let pd = pdpt + 0x1000 * (gib + 1);
        put(pdpt + 8 * gib, pd | 3);
        for j in 0..512u64 {
            put(pd + 8 * j, ((gib << 30) + (j << 21)) | 0x83);
        }
    }
    let top = area + bootinfo::STACK_TOP;
    put(top - 8, area + bootinfo::TRAMPOLINE_OFFSET);

    // Nested page tables: the grant, and the TPM page for a service granted it.
    let arena_base = pages(rec, NPT_PAGES);
    let mut arena = Arena {
        next: arena_base,
        end: arena_base + NPT_PAGES as u64 * 4096,
    };
    let root = arena.alloc().unwrap_or(arena_base);
    let rwx = pte::P | pte::RW | pte::US;
    if let Err(e) = svm::map_identity(&mut arena, root, p.base, p.memory, rwx) {
        fail(
            rec,
            "hypervisor",
            if e == svm::NptError::OutOfPages {
                "npt-pages"
            } else {
                "npt-range"
            },
        );
    }
    if p.devices.contains(Devices::TPM)
        && svm::map_identity(
            &mut arena,
            root,
            svm::TPM_PAGE,
            4096,
            rwx | pte::PCD | pte::PWT,
        )
        .is_err()
    {
        fail(rec, "hypervisor", "npt-pages");
    }
    let iopm = pages(rec, 3);
    // SAFETY: three pages just allocated for this map.
    let map = unsafe { core::slice::from_raw_parts_mut(iopm as *mut u8, svm::IOPM_SIZE) };
    let serial: &[(u16, u16)] = if p.devices.contains(Devices::SERIAL) {
        &[svm::COM1_PORTS]
    } else {
        &[]
    };
    svm::fill_iopm(map, serial);
    let msrpm = pages(rec, 2);
    // SAFETY: two pages just allocated for this map: all ones = every MSR intercepted.
    unsafe { core::ptr::write_bytes(msrpm as *mut u8, 0xFF, svm::MSRPM_SIZE) };

    let v = pages(rec, 1);
    put(
        v + vmcb::INTERCEPT_MISC1 as u64,
        misc1::INTR
            | misc1::NMI
            | misc1::CPUID
            | misc1::HLT
            | misc1::INVLPGA
            | misc1::IOIO_PROT
            | misc1::MSR_PROT
            | misc1::SHUTDOWN,
    );
    put(
        v + vmcb::INTERCEPT_MISC2 as u64,
        misc2::VMRUN | misc2::VMMCALL | misc2::SVM_INSTRUCTIONS,
    );
    put(v + vmcb::IOPM_BASE_PA as u64, iopm);
    put(v + vmcb::MSRPM_BASE_PA as u64, msrpm);
    put(v + vmcb::GUEST_ASID as u64, index as u32 + 1);
    put(v + vmcb::TLB_CONTROL as u64, 1u8);
    put(v + vmcb::V_INTR as u64, 1u64 << 24);
    put(v + vmcb::NP_ENABLE as u64, 1u64);
    put(v + vmcb::N_CR3 as u64, root);
    let seg = |off: usize, sel: u16, attr: u16, limit: u32, base: u64| {
        put(v + off as u64, sel);
        put(v + off as u64 + 2, attr);
        put(v + off as u64 + 4, limit);
        put(v + off as u64 + 8, base);
    };
    seg(vmcb::CS, 0x08, 0xA9B, 0xFFFF_FFFF, 0);
    for s in [vmcb::SS, vmcb::DS, vmcb::ES, vmcb::FS, vmcb::GS] {
        seg(s, 0x10, 0xC93, 0xFFFF_FFFF, 0);
    }
    seg(vmcb::GDTR, 0, 0, 23, area + bootinfo::GDT_OFFSET);
    seg(vmcb::IDTR, 0, 0, 0, 0);
    seg(vmcb::TR, 0, 0x8B, 0x67, 0);
    seg(vmcb::LDTR, 0, 0x82, 0, 0);
    put(v + vmcb::CPL as u64, 0u8);
    put(v + vmcb::EFER as u64, 0x1500u64);
    put(v + vmcb::CR0 as u64, 0x8001_0033u64);
    put(v + vmcb::CR3 as u64, pml4);
    put(v + vmcb::CR4 as u64, 0x20u64);
    put(v + vmcb::DR7 as u64, 0x400u64);
    put(v + vmcb::DR6 as u64, 0xFFFF_0FF0u64);
    put(v + vmcb::RFLAGS as u64, 2u64);
    put(v + vmcb::G_PAT as u64, 0x0007_0406_0007_0406u64);
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
        rsp: top - 8,
        rdi: area + bootinfo::BOOT_INFO_OFFSET,
        ..Regs::default()
    };
    // SAFETY: `v` is this partition's own VMCB page, fully set up above (VMRUN intercepted,
    // ASID non-zero, EFER.SVME, nested paging over the tables that map only its grant).
    unsafe { hw::SvmVcpu::new(v, regs) }
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
    let support = hw::support();
    if !support.svm || !support.nested_paging {
        // Never run the guest unisolated.
        fail(rec, "hypervisor", "no-svm-npt");
    }
    let tsc_per_ms = super::report::calibrate_tsc();
    let mut vcpus = Vec::with_capacity(policy.services.len() + 1);
    let parts = policy
        .services
        .iter()
        .chain(core::iter::once(&policy.guest));
    for (i, p) in parts.enumerate() {
        let Some(bytes) = section(&p.section) else {
            fail(rec, "hypervisor", "partition-section-missing")
        };
        let is_guest = i == policy.services.len();
        vcpus.push(partition(
            rec,
            p,
            i,
            bytes,
            if is_guest { cmdline } else { &[] },
            tsc_per_ms,
        ));
    }
    // RAM ranges (for memory-vs-mmio violations), from the map before ExitBootServices.
    let mut ram = Vec::with_capacity(256);
    if let Ok(map) = boot::memory_map(MemoryType::LOADER_DATA) {
        for d in map.entries() {
            let is_ram = !matches!(
                d.ty,
                MemoryType::MMIO
                    | MemoryType::MMIO_PORT_SPACE
                    | MemoryType::RESERVED
                    | MemoryType::UNUSABLE
            );
            if is_ram && ram.len() < ram.capacity() {
                ram.push((d.phys_start, d.page_count * 4096));
            }
        }
    }
    let hsave = pages(rec, 1);
    let mut hv = match Hypervisor::new(policy, vcpus, PhysMemory, Machine { tsc_per_ms }, ram) {
        Ok(h) => h,
        Err(e) => fail(rec, "hypervisor", e),
    };
    let mut console = Uart::init(policies::record::CONSOLE_PORT);

    // SAFETY: nothing below uses boot services or the allocator (the hv logic never
    // allocates; the record and console writers are port I/O only).
    let mmap = unsafe { boot::exit_boot_services(None) };
    let t_ebs = tsc();
    core::mem::forget(mmap);
    super::report::after_exit(rec, log, tsc_per_ms);
    // SAFETY: CPUID said SVM is there; `hsave` is a page reserved for the host save area.
    unsafe { hw::enable(hsave) };
    line(rec, "launch")
        .kv("kind", "hypervisor")
        .kv("section", policies::sections::GUEST)
        .end();
    let startup_us = tsc().wrapping_sub(t_ebs) * 1000 / tsc_per_ms.max(1);
    line(rec, "hv")
        .kv("backend", "svm")
        .kv("asids", support.asids)
        .kv("partitions", policy.services.len() + 1)
        .kv("startup_us", startup_us)
        .end();
    let _status = hv.run(rec, &mut console);
    line(rec, "end").end();
    power_off(uefi::Status::SUCCESS)
}
