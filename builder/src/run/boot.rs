//! The boot runner behind `vmseal boot`: QEMU + OVMF + swtpm with a pinned command line.
//!
//! [`run`] starts a fresh software TPM (`swtpm socket --tpm2`, no `swtpm_setup`, so the four
//! banks sha1/sha256/sha384/sha512 are active), then QEMU with the command line of
//! [`qemu_args`] — it is part of the measured configuration (boot options reach PCR 1, see
//! `shared/reference/measured-boot.md` §B.5 and §G), so it is fixed here and nowhere else.
//! COM1 (the console) goes to `DIR/console.log`, COM2 (the stub's record channel,
//! [`policies::record`]) to `DIR/record.log`; QEMU's and swtpm's own messages to
//! `DIR/qemu.log` and `DIR/swtpm.log`. OVMF writes its console to both serial ports, so the
//! record reader skips every line that is not a record line.
//!
//! It waits until QEMU exits, the record says `end`, the firmware refuses the image or runs
//! out of boot options (its shell prompt), or the timeout passes, then stops everything it started (drop guards, so also on error and panic
//! paths) and writes `DIR/verdict.json`. The verdict is decided by [`decide`] from what was
//! printed — never from QEMU's exit status, which says nothing about the boot.
//!
//! For Linux guests the initrd of `images/linux` prints machine-readable lines
//! ([`LINUX_MARKER`], `vmseal-pcr <bank> <index> <hex>`, `vmseal-eventlog <base64>`); the runner
//! copies the PCRs to `DIR/pcrs.json` and the event log to `DIR/eventlog.bin` when present.
//!
//! What it does not do: predict or compare PCRs (that is `vmseal pcr`), use KVM (TCG only, so
//! every machine measures the same), or run more than one VM per call.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use policies::record::Line;
use policies::tcg::HashAlg;
use serde::Serialize;

/// Default timeout of a boot: generous for TCG on a 2-core machine (a Linux appliance takes
/// ~15 s, an OVMF boot to a UEFI app ~5 s).
pub const DEFAULT_TIMEOUT_SECS: u64 = 180;
/// The CPU model QEMU emulates unless [`BootOptions::cpu`] says otherwise: AMD, so the stub's
/// SVM backend runs under TCG (`shared/reference/svm-on-qemu-tcg.md`).
pub const DEFAULT_CPU: &str = "EPYC";
/// The line the `images/linux` initrd prints once it runs: a Linux boot is `booted` when the
/// console shows it (contract with `images/linux/init`).
pub const LINUX_MARKER: &str = "vmseal-linux: booted";
/// Console prefix of the initrd's PCR lines: `vmseal-pcr <bank> <index> <lowercase hex>`.
pub const LINUX_PCR_PREFIX: &str = "vmseal-pcr ";
/// Console prefix of the initrd's base64 event-log lines.
pub const LINUX_EVENTLOG_PREFIX: &str = "vmseal-eventlog ";

/// How long QEMU may take to power off after the record's `end` before it is killed.
const END_GRACE: Duration = Duration::from_secs(10);
/// How long the firmware's console may keep going after it refused the image or ran out of
/// boot options.
const REJECT_GRACE: Duration = Duration::from_secs(3);
/// How long swtpm may take to create its control socket.
const SWTPM_START: Duration = Duration::from_secs(10);
/// Polling interval of the logs.
const POLL: Duration = Duration::from_millis(200);

/// What to boot and where to record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootOptions {
    /// The raw disk image (`out/NAME.img`). QEMU gets a copy; the file is never written.
    pub image: PathBuf,
    /// The OVMF variable store (`out/NAME.vars.fd`); `None` = the pristine [`crate::measure::ovmf::OVMF_VARS`].
    /// QEMU gets a copy.
    pub vars: Option<PathBuf>,
    /// Use [`crate::measure::ovmf::OVMF_CODE_SECBOOT`] (Secure Boot is then enforced when `vars` enrolls keys).
    pub secure_boot: bool,
    /// The record directory (created): `console.log`, `record.log`, `verdict.json`,
    /// `qemu.log`, `swtpm.log`, and for the Linux appliance `pcrs.json` and `eventlog.bin`.
    pub record_dir: PathBuf,
    /// Give up after this many seconds ([`DEFAULT_TIMEOUT_SECS`] is a good value).
    pub timeout_secs: u64,
    /// QEMU `-cpu` model; `None` = [`DEFAULT_CPU`].
    pub cpu: Option<String>,
    /// The TPM's active PCR banks. `None` = a bare `swtpm` state, which comes up with sha1,
    /// sha256, sha384 and sha512; `Some` = the state is made first with `swtpm_setup
    /// --pcr-banks` (its default configuration activates only sha256).
    pub pcr_banks: Option<Vec<HashAlg>>,
    /// Deliberately misconfigure the VM: an empty CD-ROM drive first in the boot order
    /// (bootindex 0, the disk 1). OVMF tries it and fails before it boots the disk, which adds
    /// a "Returning from EFI Application from Boot Option" pair to PCR 4 and changes PCR 1 —
    /// the classic cause of a PCR 4 mismatch, for testing that `pcr diff` explains it. The
    /// prediction assumes `false`.
    pub failed_boot_option_first: bool,
    /// What the run prints on stderr.
    pub echo: Echo,
    /// `--ovmf-code` / `--ovmf-vars` (see [`crate::measure::ovmf::locate`]).
    pub firmware: crate::measure::ovmf::FirmwareFlags,
    /// A network for an attestation agent in the guest (`vmseal boot --attest-server`);
    /// `None`: no network device at all (the pinned command line).
    pub guest_net: Option<GuestNet>,
}

/// The guest's only way out: QEMU user networking with `restrict=on` (no route anywhere)
/// and one `guestfwd` — a TCP connection to [`GUEST_SERVER`] runs [`GuestNet::relay`],
/// whose stdin/stdout QEMU connects to it, and which connects to the attestation server.
///
/// The NIC is a `virtio-net-pci` without an option ROM (`romfile=`), so OVMF runs no code
/// from it. OVMF's own virtio-net driver still sees it; with PXE switched off through
/// `fw_cfg` (`opt/org.tianocore/IPv4PXESupport` and `IPv6PXESupport` = `n`) it creates no
/// network boot option, so the boot options and PCR 1 stay what the profile predicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestNet {
    /// The program and arguments that relay one connection (stdin/stdout) to the server,
    /// e.g. `vmseal attest relay HOST:PORT`.
    pub relay: Vec<String>,
}

/// Where the guest reaches the attestation server: QEMU's `guestfwd` address (inside the
/// user network 10.0.2.0/24, not a real host) and port.
pub const GUEST_SERVER: &str = "10.0.2.100:80";
/// The guest's address in QEMU's user network (its built-in DHCP gives the same).
pub const GUEST_ADDRESS: &str = "10.0.2.15/24";

/// What `vmseal boot` prints on stderr while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Echo {
    /// Nothing (`-q`).
    Quiet,
    /// The guest's console as plain text (terminal escape sequences removed) and the verdict.
    #[default]
    Console,
    /// Also every command run (swtpm, QEMU) (`-v`).
    Verbose,
}

impl BootOptions {
    /// Options with the defaults: pristine variables, Secure Boot firmware off, default
    /// timeout and CPU.
    pub fn new(image: impl Into<PathBuf>, record_dir: impl Into<PathBuf>) -> Self {
        Self {
            image: image.into(),
            vars: None,
            secure_boot: false,
            record_dir: record_dir.into(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            cpu: None,
            pcr_banks: None,
            failed_boot_option_first: false,
            echo: Echo::Console,
            firmware: crate::measure::ovmf::FirmwareFlags::default(),
            guest_net: None,
        }
    }
}

/// The judgement of one boot, from what the firmware, the stub and the guest printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The guest ran: the guest partition exited 0 with no violation, or the Linux initrd printed
    /// [`LINUX_MARKER`].
    Booted,
    /// The firmware refused to start the image (Secure Boot: "Access Denied").
    FirmwareRejected,
    /// Nothing conclusive happened before the timeout.
    Timeout,
    /// The stub handed over, and the guest failed: non-zero exit status, a kernel panic, or
    /// the machine stopped without the guest's success line.
    GuestFault,
    /// The stub reported an `error`, wrote an unparsable record, or stopped before `launch`.
    StubError,
    /// The firmware never started the stub and did not say that it refused it (no bootable
    /// image found, or the machine stopped early).
    NoBoot,
    /// The guest booted, but the event log it reported does not replay to the PCR values it
    /// read from the TPM: the record cannot be trusted and is refused.
    RecordInconsistent,
}

impl Verdict {
    /// The word used in `verdict.json` and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booted => "booted",
            Self::FirmwareRejected => "firmware-rejected",
            Self::Timeout => "timeout",
            Self::GuestFault => "guest-fault",
            Self::StubError => "stub-error",
            Self::NoBoot => "no-boot",
            Self::RecordInconsistent => "record-inconsistent",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the runner stopped waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ended {
    /// QEMU exited by itself (power-off, `-no-reboot` on a reset, or a crash).
    QemuExited,
    /// The record said `end` (QEMU was given a grace period to power off).
    RecordEnd,
    /// The firmware printed a Secure Boot refusal.
    FirmwareRejected,
    /// The firmware ran out of boot options (its shell prompt or "No bootable option").
    FirmwareIdle,
    /// The timeout passed; QEMU was killed.
    Timeout,
}

/// A verdict and the one-line reason for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in one line (names the record line or console text that decided it).
    pub reason: String,
    /// The guest's exit status (`exit status=N`), if the record has one.
    pub guest_exit_status: Option<u64>,
}

/// One PCR value reported by the guest (the Linux initrd's `vmseal-pcr` lines).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PcrValue {
    /// The bank (`sha1`, `sha256`, `sha384`, `sha512`).
    pub bank: String,
    /// The PCR index.
    pub index: u32,
    /// The value, lowercase hex.
    pub value: String,
}

/// Everything a boot produced.
#[derive(Clone, Debug)]
pub struct BootOutcome {
    /// The verdict and its reason.
    pub decision: Decision,
    /// Why the runner stopped waiting.
    pub ended: Ended,
    /// Wall-clock time from QEMU's start to the end of the wait.
    pub elapsed: Duration,
    /// The record lines the stub wrote, in order.
    pub record: Vec<Line>,
    /// The console text (COM1), lossily decoded.
    pub console: String,
    /// PCR values the guest printed (Linux), in the order printed.
    pub pcrs: Vec<PcrValue>,
    /// The QEMU command line that ran (program first).
    pub qemu_command: Vec<String>,
    /// The record directory.
    pub record_dir: PathBuf,
}

impl BootOutcome {
    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        self.decision.verdict
    }
}

/// Why a boot could not be run (as opposed to a boot that ran and failed: that is a
/// [`Verdict`]).
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The requested PCR banks cannot be set up.
    #[error("PCR banks: {0} (vmseal knows sha1, sha256, sha384, sha512)")]
    Banks(String),
    /// A file could not be read, copied or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A program or firmware file the runner needs is not installed.
    #[error(
        "{what} not found ({path}); install it: bash scripts/setup.sh (Debian: apt-get install -y {package})"
    )]
    Missing {
        /// What is missing.
        what: &'static str,
        /// Where it was looked for.
        path: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A program could not be started.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// The program.
        program: &'static str,
        /// The error.
        source: io::Error,
    },
    /// swtpm did not create its control socket in time.
    #[error("swtpm did not create {socket} within {secs} s; see {log}")]
    SwtpmNotReady {
        /// The socket path.
        socket: PathBuf,
        /// Seconds waited.
        secs: u64,
        /// swtpm's log file.
        log: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BootError + '_ {
    move |source| BootError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A child process that is killed and reaped when dropped (normal return, `?`, or panic).
struct Guard {
    name: &'static str,
    child: Child,
}

impl Guard {
    fn spawn(name: &'static str, cmd: &mut Command) -> Result<Self, BootError> {
        let child = cmd.spawn().map_err(|source| BootError::Spawn {
            program: name,
            source,
        })?;
        Ok(Self { name, child })
    }

    /// Whether the process has exited (errors count as exited: nothing more to wait for).
    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Best effort: the process may exit between try_wait and kill.
            if self.child.kill().is_err() {
                eprintln!("vmseal boot: could not kill {}", self.name);
            }
        }
        // Reap it so no zombie outlives the runner; its status is not part of any verdict.
        let _reaped = self.child.wait();
    }
}

/// The pinned QEMU arguments (without the program name `qemu-system-x86_64`).
///
/// Part of the measured configuration: change it and the firmware profile (PCR 0–3, 6 and
/// the PCR 1 boot options) must be learned again.
pub fn qemu_args(
    code: &Path,
    vars: &Path,
    tpm_socket: &Path,
    image: &Path,
    record_dir: &Path,
    cpu: &str,
    failed_boot_option_first: bool,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-machine",
        "q35,smm=on",
        "-accel",
        "tcg",
        "-nodefaults",
        "-m",
        "512M",
        "-cpu",
        cpu,
        "-global",
        "driver=cfi.pflash01,property=secure,value=on",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let mut push = |a: OsString| args.push(a);
    push("-drive".into());
    push(path_os(
        "if=pflash,format=raw,unit=0,readonly=on,file=",
        code,
    ));
    push("-drive".into());
    push(path_os("if=pflash,format=raw,unit=1,file=", vars));
    push("-chardev".into());
    push(path_os("socket,id=chrtpm,path=", tpm_socket));
    for a in [
        "-tpmdev",
        "emulator,id=tpm0,chardev=chrtpm",
        "-device",
        "tpm-tis,tpmdev=tpm0",
    ] {
        push(a.into());
    }
    push("-drive".into());
    push(path_os("if=none,id=disk,format=raw,file=", image));
    if failed_boot_option_first {
        // q35's built-in AHCI controller provides ide.0 even with -nodefaults.
        push("-drive".into());
        push("if=none,id=cd,media=cdrom".into());
        push("-device".into());
        push("ide-cd,drive=cd,bus=ide.0,bootindex=0".into());
        push("-device".into());
        push("virtio-blk-pci,drive=disk,bootindex=1".into());
    } else {
        push("-device".into());
        push("virtio-blk-pci,drive=disk,bootindex=0".into());
    }
    push("-serial".into());
    push(path_os("file:", &record_dir.join("console.log")));
    push("-serial".into());
    push(path_os("file:", &record_dir.join("record.log")));
    for a in ["-display", "none", "-no-reboot"] {
        push(a.into());
    }
    args
}

/// [`qemu_args`] and, for `net`, the NIC of [`GuestNet`] after them (so that without it the
/// command line is the pinned one, byte for byte).
pub fn qemu_args_with_net(base: Vec<OsString>, net: Option<&GuestNet>) -> Vec<OsString> {
    let mut args = base;
    if let Some(net) = net {
        // QEMU option values escape a comma by doubling it.
        let relay: Vec<String> = net
            .relay
            .iter()
            .map(|a| shell_quote(a).replace(',', ",,"))
            .collect();
        let (host, port) = GUEST_SERVER.split_once(':').unwrap_or((GUEST_SERVER, "80"));
        for a in [
            "-netdev".to_string(),
            format!(
                "user,id=net0,restrict=on,guestfwd=tcp:{host}:{port}-cmd:{}",
                relay.join(" ")
            ),
            "-device".to_string(),
            "virtio-net-pci,netdev=net0,romfile=,mac=52:54:00:12:34:56".to_string(),
            "-fw_cfg".to_string(),
            "name=opt/org.tianocore/IPv4PXESupport,string=n".to_string(),
            "-fw_cfg".to_string(),
            "name=opt/org.tianocore/IPv6PXESupport,string=n".to_string(),
        ] {
            args.push(a.into());
        }
    }
    args
}

/// Quote one argument for an echoed shell command line.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=,./:+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn find_program(name: &'static str, package: &'static str) -> Result<PathBuf, BootError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or(BootError::Missing {
            what: name,
            path: "$PATH".into(),
            package,
        })
}

fn require_file(path: &Path, what: &'static str, package: &'static str) -> Result<(), BootError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(BootError::Missing {
            what,
            path: path.display().to_string(),
            package,
        })
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Whether the store `vars` enrolls Secure Boot keys (the firmware computes `SecureBoot` = 1
/// from it): such a store is meant for [`crate::measure::ovmf::OVMF_CODE_SECBOOT`], and the prediction
/// (`vmseal pcr predict`) assumes that firmware for it. An unreadable store is `false` (the
/// boot itself reports it).
pub fn store_enables_secure_boot(vars: &Path) -> bool {
    fs::read(vars)
        .ok()
        .and_then(|b| crate::measure::vars::parse(&b).ok())
        .is_some_and(|v| crate::measure::vars::secure_boot_value(&v) == 1)
}

/// Boot `opts.image` and record it. Returns `Err` only when the boot could not be run; a
/// boot that ran and failed is an `Ok` with a non-`booted` [`Verdict`].
pub fn run(opts: &BootOptions) -> Result<BootOutcome, BootError> {
    let qemu = find_program("qemu-system-x86_64", "qemu-system-x86")?;
    let swtpm = find_program("swtpm", "swtpm")?;
    let firmware = crate::measure::ovmf::locate(opts.secure_boot, &opts.firmware);
    let code = firmware.code.as_path();
    require_file(code, "OVMF firmware code", "ovmf")?;
    let vars_src = opts.vars.clone().unwrap_or(firmware.vars.clone());
    require_file(&vars_src, "OVMF variable store", "ovmf")?;
    require_file(&opts.image, "disk image", "vmseal build")?;

    let dir = &opts.record_dir;
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    for stale in [
        "console.log",
        "record.log",
        "verdict.json",
        "pcrs.json",
        "eventlog.bin",
        "qemu.log",
        "swtpm.log",
    ] {
        let p = dir.join(stale);
        if p.exists() {
            fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    // Private copies: QEMU may write the variable store and the disk; the inputs stay as built.
    let work = tempfile::Builder::new()
        .prefix("vmseal-boot-")
        .tempdir()
        .map_err(io_err(Path::new("/tmp")))?;
    let vars = work.path().join("vars.fd");
    fs::copy(&vars_src, &vars).map_err(io_err(&vars_src))?;
    let image = work.path().join("disk.img");
    fs::copy(&opts.image, &image).map_err(io_err(&opts.image))?;
    let state = work.path().join("tpm");
    fs::create_dir(&state).map_err(io_err(&state))?;
    let socket = work.path().join("swtpm.sock");
    let swtpm_log = dir.join("swtpm.log");

    if let Some(banks) = &opts.pcr_banks {
        let names: Vec<&str> = banks.iter().filter_map(|a| a.name()).collect();
        if names.is_empty() || names.len() != banks.len() {
            return Err(BootError::Banks(format!("{banks:?}")));
        }
        let setup = find_program("swtpm_setup", "swtpm-tools")?;
        let args: Vec<OsString> = vec![
            "--tpm2".into(),
            "--tpmstate".into(),
            state.clone().into(),
            "--pcr-banks".into(),
            names.join(",").into(),
        ];
        if opts.echo == Echo::Verbose {
            echo(&setup, &args);
        }
        let out = Command::new(&setup)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(&setup))?;
        fs::write(
            dir.join("swtpm_setup.log"),
            [out.stdout, out.stderr].concat(),
        )
        .map_err(io_err(dir))?;
        if !out.status.success() {
            return Err(BootError::Banks(format!(
                "swtpm_setup --pcr-banks {} failed; see {}",
                names.join(","),
                dir.join("swtpm_setup.log").display()
            )));
        }
    }
    let swtpm_cmd: Vec<OsString> = vec![
        "socket".into(),
        "--tpm2".into(),
        "--tpmstate".into(),
        path_os("dir=", &state),
        "--ctrl".into(),
        path_os("type=unixio,path=", &socket),
        "--flags".into(),
        "startup-clear".into(),
        // Exit when QEMU closes the control channel, so swtpm does not outlive a runner
        // that was killed before its guards could run.
        "--terminate".into(),
        "--log".into(),
        path_os("file=", &swtpm_log),
    ];
    if opts.echo == Echo::Verbose {
        echo(&swtpm, &swtpm_cmd);
    }
    let mut tpm = Guard::spawn(
        "swtpm",
        Command::new(&swtpm)
            .args(&swtpm_cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    )?;
    let started = Instant::now();
    while !socket.exists() {
        if started.elapsed() > SWTPM_START || tpm.exited() {
            return Err(BootError::SwtpmNotReady {
                socket,
                secs: SWTPM_START.as_secs(),
                log: swtpm_log,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let cpu = opts.cpu.as_deref().unwrap_or(DEFAULT_CPU);
    let args = qemu_args_with_net(
        qemu_args(
            code,
            &vars,
            &socket,
            &image,
            dir,
            cpu,
            opts.failed_boot_option_first,
        ),
        opts.guest_net.as_ref(),
    );
    if opts.echo == Echo::Verbose {
        echo(&qemu, &args);
    }
    let qemu_command: Vec<String> = std::iter::once(qemu.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let qemu_log = dir.join("qemu.log");
    let qemu_stderr = fs::File::create(&qemu_log).map_err(io_err(&qemu_log))?;
    let mut vm = Guard::spawn(
        "qemu-system-x86_64",
        Command::new(&qemu)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(qemu_stderr),
    )?;

    let console_path = dir.join("console.log");
    let record_path = dir.join("record.log");
    let start = Instant::now();
    let timeout = Duration::from_secs(opts.timeout_secs);
    let mut streamed = 0usize;
    let mut rejected_at: Option<Instant> = None;
    let mut end_at: Option<Instant> = None;
    let mut idle_at: Option<Instant> = None;
    let ended = loop {
        let qemu_gone = vm.exited();
        let console = read_lossy(&console_path);
        streamed = stream_console(&console, streamed, opts.echo);
        if qemu_gone {
            break Ended::QemuExited;
        }
        let record = read_lossy(&record_path);
        if end_at.is_none() && record_has_end(&record) {
            end_at = Some(Instant::now());
        }
        if end_at.is_some_and(|t| t.elapsed() > END_GRACE) {
            break Ended::RecordEnd;
        }
        if rejected_at.is_none() && firmware_rejection(&console).is_some() {
            rejected_at = Some(Instant::now());
        }
        if rejected_at.is_some_and(|t| t.elapsed() > REJECT_GRACE) {
            break Ended::FirmwareRejected;
        }
        if idle_at.is_none() && firmware_idle(&console).is_some() {
            idle_at = Some(Instant::now());
        }
        if idle_at.is_some_and(|t| t.elapsed() > REJECT_GRACE) {
            break Ended::FirmwareIdle;
        }
        if start.elapsed() > timeout {
            break Ended::Timeout;
        }
        std::thread::sleep(POLL);
    };
    let elapsed = start.elapsed();
    // Stop QEMU first (it holds the TPM socket), then swtpm; the guards do it in this order.
    drop(vm);
    drop(tpm);
    let console = read_lossy(&console_path);
    stream_console(&console, streamed, opts.echo);
    let record_text = read_lossy(&record_path);
    let (mut decision, record) = decide(&console, &record_text, ended);
    let evidence = Evidence::collect(&console, &record);
    if let Err(problem) = evidence.check() {
        if decision.verdict == Verdict::Booted {
            decision.verdict = Verdict::RecordInconsistent;
        }
        decision.reason = format!("{}; {problem}", decision.reason);
    }
    let pcrs = evidence.pcrs.clone();
    if opts.echo != Echo::Quiet {
        eprintln!(
            "vmseal boot: {} ({}) after {:.1} s; record in {}",
            decision.verdict,
            decision.reason,
            elapsed.as_secs_f64(),
            dir.display()
        );
    }

    if let Some(log) = &evidence.log {
        let p = dir.join("eventlog.bin");
        fs::write(&p, log).map_err(io_err(&p))?;
    }
    if let Some(file) = evidence.pcrs_file() {
        let p = dir.join("pcrs.json");
        fs::write(&p, file.to_text()).map_err(io_err(&p))?;
    }
    let verdict_json = serde_json::json!({
        "verdict": decision.verdict,
        "reason": decision.reason,
        "guest_exit_status": decision.guest_exit_status,
        "ended": ended,
        "elapsed_secs": elapsed.as_secs_f64(),
        "secure_boot_firmware": opts.secure_boot,
        "firmware_code": code,
        "vars": vars_src,
        "image": opts.image,
        "record_lines": record.len(),
        "pcrs_reported": pcrs.len(),
        "hypervisor": hypervisor_summary(&record),
        "qemu_command": qemu_command,
    });
    write_json(&dir.join("verdict.json"), &verdict_json)?;
    Ok(BootOutcome {
        decision,
        ended,
        elapsed,
        record,
        console,
        pcrs,
        qemu_command,
        record_dir: dir.clone(),
    })
}

fn path_os(prefix: &str, p: &Path) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(p.as_os_str());
    s
}

fn echo(program: &Path, args: &[OsString]) {
    let line: Vec<String> = std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect();
    eprintln!("+ {}", line.join(" "));
}

fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), BootError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| BootError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    text.push('\n');
    fs::write(path, text).map_err(io_err(path))
}

/// Print the console's new complete lines (after byte `from`) to stderr; returns the new
/// offset. The initrd's PCR and base64 event-log lines are not echoed (they go to
/// `pcrs.json` and `eventlog.bin`).
fn stream_console(console: &str, from: usize, echo: Echo) -> usize {
    let Some(new) = console.get(from..) else {
        return from;
    };
    let Some(last_nl) = new.rfind('\n') else {
        return from;
    };
    for line in new[..last_nl].lines() {
        let line = line.trim_end_matches('\r');
        if echo != Echo::Quiet
            && !line.starts_with(LINUX_EVENTLOG_PREFIX)
            && !line.starts_with(LINUX_PCR_PREFIX)
        {
            eprintln!("console| {}", plain_text(line));
        }
    }
    from + last_nl + 1
}

/// `line` without terminal control: ANSI escape sequences (CSI `ESC [ … final`, and other
/// two-byte `ESC x` sequences the firmware's console driver sends) and control characters
/// other than tab are dropped.
pub fn plain_text(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // `ESC [`: parameters and intermediates, then one final byte in 0x40..=0x7e;
            // any other `ESC x` is two bytes.
            if chars.next() == Some('[') {
                for f in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&f) {
                        break;
                    }
                }
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

fn record_has_end(record: &str) -> bool {
    record
        .lines()
        .any(|l| matches!(Line::parse(l), Ok(Some(line)) if line.verb == "end"))
}

/// The OVMF console line saying that it refused to start a boot option, if any. EDK2's
/// `BdsDxe` prints `BdsDxe: failed to load Boot0001 "…" from …: Access Denied` when the
/// image fails Secure Boot verification (`Security Violation` when it is merely untrusted
/// and deferred).
pub fn firmware_rejection(console: &str) -> Option<&str> {
    console_line(console, |l| {
        (l.contains("BdsDxe: failed to load") || l.contains("BdsDxe: failed to start"))
            && (l.contains("Access Denied") || l.contains("Security Violation"))
    })
}

/// The OVMF console line saying that it has nothing left to boot, if any: BdsDxe's
/// "No bootable option or device was found", or the UEFI Shell (a boot option of the pristine
/// variable store) waiting at its prompt. Without this the runner would wait for the timeout.
pub fn firmware_idle(console: &str) -> Option<&str> {
    console_line(console, |l| {
        l.contains("BdsDxe: No bootable option or device was found") || l.contains("Shell> ")
    })
}

/// The first line of a Linux kernel panic on the console, if any.
fn kernel_panic(console: &str) -> Option<&str> {
    console_line(console, |l| l.contains("Kernel panic - not syncing"))
}

/// The first console line (without its `\r`) that satisfies `pred`.
fn console_line(console: &str, pred: impl Fn(&str) -> bool) -> Option<&str> {
    console
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| pred(l))
}

/// Decide the verdict of a boot from its console text, its record text and why the wait
/// ended. Returns the decision and the parsed record lines.
///
/// In order: an unparsable record or a record `error` line is a stub error; a firmware
/// refusal with no stub start is `firmware-rejected`; a guest `exit status=0` (no violation) or the
/// Linux [`LINUX_MARKER`] after `launch` is `booted`; a non-zero exit, a `fault` line or a
/// What the hypervisor reported (`verdict.json` key `hypervisor`): its start line, every
/// loaded partition, every violation and stopped partition with all their keys, the health
/// checks, dropped console output and the statistics. `null` for a run without a hypervisor.
pub fn hypervisor_summary(record: &[Line]) -> serde_json::Value {
    let fields = |l: &Line| {
        serde_json::Value::Object(
            l.fields
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    };
    let all = |verb: &str| -> Vec<serde_json::Value> {
        record
            .iter()
            .filter(|l| l.verb == verb)
            .map(fields)
            .collect()
    };
    let first = |verb: &str| record.iter().find(|l| l.verb == verb).map(fields);
    let Some(hv) = first("hv") else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "hv": hv,
        "partitions": all("partition"),
        "violations": all("violation"),
        "stopped": all("stopped"),
        "wait_failed": all("wait-failed"),
        "health": all("health"),
        "console": all("console"),
        "stats": first("hv-stats"),
        "startup": first("hv-startup"),
    })
}

/// kernel panic is a guest fault; then what is missing decides: no `start` → no boot (or
/// timeout), no `launch` → stub error (or timeout), a launch without success → guest fault
/// (or timeout).
pub fn decide(console: &str, record: &str, ended: Ended) -> (Decision, Vec<Line>) {
    let d = |verdict, reason: String| Decision {
        verdict,
        reason,
        guest_exit_status: None,
    };
    let lines = match Line::parse_all(record) {
        Ok(lines) => lines,
        Err(e) => {
            return (
                d(Verdict::StubError, format!("unparsable record: {e}")),
                Vec::new(),
            );
        }
    };
    let find = |verb: &str| lines.iter().find(|l| l.verb == verb);
    let timed_out = ended == Ended::Timeout;

    // Errors of the stages in NONFATAL_STAGES (reading the TPM after ExitBootServices) leave
    // the record incomplete but do not stop the boot; every other error stops the stub.
    let fatal = lines.iter().find(|l| {
        l.verb == "error"
            && !l
                .get("stage")
                .is_some_and(|s| policies::record::NONFATAL_STAGES.contains(&s))
    });
    if let Some(err) = fatal {
        let reason = format!("the stub stopped: {err}");
        return (d(Verdict::StubError, reason), lines);
    }
    let started = find("start").is_some();
    if !started && let Some(l) = firmware_rejection(console) {
        return (
            d(
                Verdict::FirmwareRejected,
                strip_escapes(l).trim().to_string(),
            ),
            lines,
        );
    }
    let launch = find("launch");
    if let Some(fault) = find("fault") {
        return (
            d(Verdict::GuestFault, format!("the stub reported {fault}")),
            lines,
        );
    }
    // Hypervisor mode: any partition that broke its policy makes the run a guest fault, even
    // when the guest itself exited 0 (a service was stopped, or the guest is the offender).
    let violations: Vec<&Line> = lines.iter().filter(|l| l.verb == "violation").collect();
    if let Some(first) = violations.first() {
        let status = find("exit")
            .and_then(|e| e.get("status"))
            .and_then(parse_status);
        let more = match violations.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return (
            Decision {
                verdict: Verdict::GuestFault,
                reason: format!("the hypervisor stopped a partition: {first}{more}"),
                guest_exit_status: status,
            },
            lines,
        );
    }
    if let Some(exit) = find("exit") {
        let status = exit.get("status").and_then(parse_status);
        let decision = match status {
            Some(0) => Decision {
                verdict: Verdict::Booted,
                reason: "the guest returned status 0".into(),
                guest_exit_status: Some(0),
            },
            Some(s) => Decision {
                verdict: Verdict::GuestFault,
                reason: format!("the guest returned status {s}"),
                guest_exit_status: Some(s),
            },
            None => d(
                Verdict::StubError,
                format!("exit line without a numeric status: {exit}"),
            ),
        };
        return (decision, lines);
    }
    if launch.is_some() && console.contains(LINUX_MARKER) {
        let mut reason = format!("the console shows {LINUX_MARKER:?}");
        if timed_out {
            reason.push_str(" (the guest did not power off before the timeout)");
        }
        return (d(Verdict::Booted, reason), lines);
    }
    if let Some(p) = kernel_panic(console) {
        return (
            d(Verdict::GuestFault, strip_escapes(p).trim().to_string()),
            lines,
        );
    }
    let (verdict, reason) = match (started, launch) {
        (false, _) if timed_out => (Verdict::Timeout, "no record line before the timeout"),
        (false, _) if ended == Ended::FirmwareIdle => {
            let why = console_line(console, |l| l.contains("BdsDxe: failed to"))
                .map_or_else(String::new, |l| format!(": {}", strip_escapes(l).trim()));
            return (
                d(
                    Verdict::NoBoot,
                    format!("the firmware found nothing to boot{why}"),
                ),
                lines,
            );
        }
        (false, _) => (
            Verdict::NoBoot,
            "the machine stopped and the stub never started",
        ),
        (true, None) if timed_out => (
            Verdict::Timeout,
            "the stub did not launch the guest before the timeout",
        ),
        (true, None) => (
            Verdict::StubError,
            "the stub stopped before launching the guest",
        ),
        (true, Some(_)) if timed_out => (
            Verdict::Timeout,
            "the guest did not finish before the timeout",
        ),
        (true, Some(_)) => (
            Verdict::GuestFault,
            "the guest was launched and the machine stopped without its success line",
        ),
    };
    (d(verdict, reason.into()), lines)
}

/// `line` without ANSI escape sequences (OVMF clears the screen before its first message).
fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters, ended by a byte in 0x40..=0x7E.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_status(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// What the guest reported of the TPM: the event log and the PCR values, from the stub's
/// record (direct mode: `eventlog`/`pcr` lines) or from the Linux initrd's console lines.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// The event log bytes (TCG2 crypto-agile), if reported completely.
    pub log: Option<Vec<u8>>,
    /// The PCR values read from the TPM.
    pub pcrs: Vec<PcrValue>,
    /// Why the stub's record lines could not be collected, if they could not.
    pub problem: Option<String>,
}

/// PCR 10 is Linux IMA's: extended after boot, logged in the IMA log, not the firmware's.
const IMA_PCR: u32 = 10;

impl Evidence {
    /// Collect from the record lines, falling back to the Linux console.
    pub fn collect(console: &str, record: &[Line]) -> Self {
        let mut ev = Self::default();
        if record.iter().any(|l| l.verb == "eventlog") {
            match policies::record::collect_eventlog(record) {
                Ok(log) => ev.log = Some(log),
                Err(e) => ev.problem = Some(format!("record event log: {e}")),
            }
        }
        if record.iter().any(|l| l.verb == "pcr") {
            match policies::record::collect_pcrs(record) {
                Ok(values) => {
                    ev.pcrs = values
                        .into_iter()
                        .map(|(alg, index, v)| PcrValue {
                            bank: crate::measure::pcrs_json::bank_name(alg),
                            index,
                            value: hex::encode(v),
                        })
                        .collect();
                }
                Err(e) => ev.problem = Some(format!("record PCR values: {e}")),
            }
        }
        if ev.log.is_none() {
            ev.log = linux_eventlog(console);
        }
        if ev.pcrs.is_empty() {
            ev.pcrs = linux_pcrs(console);
        }
        ev
    }

    /// The reported values as a replay state (banks vmseal knows).
    fn reported(&self) -> Result<policies::replay::Pcrs, String> {
        let mut pcrs = policies::replay::Pcrs::new();
        for v in &self.pcrs {
            let alg = HashAlg::from_name(&v.bank)
                .ok_or_else(|| format!("unknown bank {:?} in the reported PCRs", v.bank))?;
            let value = hex::decode(&v.value)
                .map_err(|_| format!("PCR {} ({}) is not hex", v.index, v.bank))?;
            pcrs.set(alg, v.index, value)
                .map_err(|e| format!("PCR {} ({}): {e}", v.index, v.bank))?;
        }
        Ok(pcrs)
    }

    /// Refuse a record whose event log does not replay to the PCR values the TPM reported
    /// (every reported PCR of every bank, except PCR 10, which Linux IMA extends without a firmware log entry).
    pub fn check(&self) -> Result<(), String> {
        if let Some(p) = &self.problem {
            return Err(p.clone());
        }
        let (Some(log), false) = (&self.log, self.pcrs.is_empty()) else {
            return Ok(());
        };
        let parsed = policies::eventlog::parse(log)
            .map_err(|e| format!("the reported event log does not parse: {e}"))?;
        let replayed = policies::replay::replay(&parsed)
            .map_err(|e| format!("the reported event log does not replay: {e}"))?;
        for v in self.pcrs.iter().filter(|v| v.index != IMA_PCR) {
            let Some(alg) = HashAlg::from_name(&v.bank) else {
                continue;
            };
            let want = replayed.get(alg, v.index).map(hex::encode);
            if want.as_deref() != Some(v.value.as_str()) {
                return Err(format!(
                    "record refused: the event log replays PCR {} ({}) to {}, the TPM reported {}",
                    v.index,
                    v.bank,
                    want.as_deref().unwrap_or("nothing"),
                    v.value
                ));
            }
        }
        Ok(())
    }

    /// `pcrs.json` (docs/pcrs-json.md) of the actual boot: the reported log's events and the
    /// TPM's values; `None` when the guest reported no PCR values.
    pub fn pcrs_file(&self) -> Option<crate::measure::pcrs_json::PcrsFile> {
        let pcrs = self.reported().ok()?;
        if self.pcrs.is_empty() {
            return None;
        }
        let events: Vec<crate::measure::pcrs_json::LoggedEvent> = self
            .log
            .as_deref()
            .and_then(|l| policies::eventlog::parse(l).ok())
            .map(|l| {
                l.events
                    .into_iter()
                    .map(crate::measure::pcrs_json::LoggedEvent::new)
                    .collect()
            })
            .unwrap_or_default();
        let banks: Vec<HashAlg> = pcrs.banks().collect();
        let mut sources = serde_json::Map::new();
        sources.insert("kind".into(), "boot-record".into());
        Some(crate::measure::pcrs_json::PcrsFile::new(
            &banks, &events, &pcrs, None, sources,
        ))
    }
}

/// The initrd's `vmseal-pcr <bank> <index> <hex>` lines.
pub fn linux_pcrs(console: &str) -> Vec<PcrValue> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l.trim_end_matches('\r').split(LINUX_PCR_PREFIX).nth(1)?;
            let mut it = rest.split_ascii_whitespace();
            let bank = it.next()?.to_string();
            let index = it.next()?.parse().ok()?;
            let value = it.next()?.to_ascii_lowercase();
            if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            Some(PcrValue { bank, index, value })
        })
        .collect()
}

/// The initrd's event log (base64 lines), decoded, if it printed one completely.
pub fn linux_eventlog(console: &str) -> Option<Vec<u8>> {
    let mut text = String::new();
    let mut complete = false;
    for l in console.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(b64) = l.strip_prefix(LINUX_EVENTLOG_PREFIX) {
            text.push_str(b64.trim());
        } else if l.starts_with("vmseal-eventlog-end") {
            complete = true;
        }
    }
    if !complete || text.is_empty() {
        return None;
    }
    base64_decode(&text)
}

/// Standard base64 (RFC 4648 §4) with padding; `None` on any invalid character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for b in text.bytes().filter(|&b| b != b'=') {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_RECORD: &str = "\
VMSEAL1 start stub=0.1.0 mode=guest\r
VMSEAL1 measure pcr=11 type=0x0000000d section=.guest part=name size=7 sha256=aa\r
VMSEAL1 measure pcr=11 type=0x0000000d section=.guest part=data size=8680 sha256=bb\r
VMSEAL1 launch kind=guest section=.guest entry=0x4000000\r
VMSEAL1 exit status=0\r
VMSEAL1 end\r
";

    const OVMF_REJECT: &str = "\
BdsDxe: loading Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x3,0x0)\r
\u{1b}[2J\u{1b}[01;01HBdsDxe: failed to load Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x3,0x0): Access Denied\r
BdsDxe: No bootable option or device was found.\r
BdsDxe: Press any key to enter the Boot Manager Menu.\r
";

    #[test]
    fn direct_guest_returning_zero_booted() {
        let (d, lines) = decide(
            "hello from vmseal guest\r\n",
            HELLO_RECORD,
            Ended::QemuExited,
        );
        assert_eq!(d.verdict, Verdict::Booted, "{d:?}");
        assert_eq!(d.guest_exit_status, Some(0));
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn hypervisor_runs() {
        let head = "VMSEAL1 start stub=0.1.0 mode=guest\r\nVMSEAL1 launch kind=hypervisor section=.guest\r\nVMSEAL1 hv backend=svm asids=16 partitions=2\r\nVMSEAL1 partition name=attest section=.svc0 base=0x6000000 size=0x400000 entry=0x6000000 devices=tpm\r\n";
        let clean = format!(
            "{head}VMSEAL1 stopped partition=hello reason=exit status=0 hypercalls=12\r\nVMSEAL1 health channel=attest server=attest status=answered\r\nVMSEAL1 hv-stats hypercalls=14 exits=20 guest_ns=420000 mean_run_ns=21000\r\nVMSEAL1 exit status=0\r\nVMSEAL1 hv-startup record_us=61000 ebs_to_guest_us=84000\r\nVMSEAL1 end\r\n"
        );
        let (d, lines) = decide("", &clean, Ended::RecordEnd);
        assert_eq!(d.verdict, Verdict::Booted, "{d:?}");
        let h = hypervisor_summary(&lines);
        assert_eq!(h["hv"]["backend"], "svm");
        assert_eq!(h["partitions"][0]["devices"], "tpm");
        assert_eq!(h["health"][0]["status"], "answered");
        assert_eq!(h["stats"]["mean_run_ns"], "21000");
        assert_eq!(h["startup"]["ebs_to_guest_us"], "84000");
        assert_eq!(h["violations"].as_array().map(Vec::len), Some(0));

        let attack = format!(
            "{head}VMSEAL1 violation partition=redteam kind=port-io port=0xcf8 size=4 dir=out rip=0x4000123\r\nVMSEAL1 stopped partition=redteam reason=violation hypercalls=3\r\nVMSEAL1 health channel=attest server=attest status=answered\r\nVMSEAL1 hv-stats hypercalls=3 exits=9 guest_ns=0 mean_run_ns=0\r\nVMSEAL1 exit status=255\r\nVMSEAL1 end\r\n"
        );
        let (d, lines) = decide("", &attack, Ended::RecordEnd);
        assert_eq!(d.verdict, Verdict::GuestFault, "{d:?}");
        assert!(d.reason.contains("kind=port-io"), "{d:?}");
        assert_eq!(d.guest_exit_status, Some(255));
        let h = hypervisor_summary(&lines);
        assert_eq!(h["violations"][0]["port"], "0xcf8");
        assert_eq!(h["stopped"][0]["reason"], "violation");
        // A service's violation spoils a run even when the guest exits 0.
        let svc = clean.replace(
            "VMSEAL1 stopped partition=hello",
            "VMSEAL1 violation partition=attest kind=memory gpa=0x0 access=read rip=0x6000010\r\nVMSEAL1 stopped partition=hello",
        );
        assert_eq!(
            decide("", &svc, Ended::RecordEnd).0.verdict,
            Verdict::GuestFault
        );
        // No SVM with nested paging: the stub refuses, it is a stub error.
        let no_npt = "VMSEAL1 start stub=0.1.0 mode=guest\r\nVMSEAL1 error stage=hypervisor status=no-svm-npt\r\nVMSEAL1 end\r\n";
        assert_eq!(
            decide("", no_npt, Ended::RecordEnd).0.verdict,
            Verdict::StubError
        );
        assert!(hypervisor_summary(&decide("", no_npt, Ended::RecordEnd).1).is_null());
    }

    #[test]
    fn nonzero_exit_is_a_guest_fault() {
        let record = HELLO_RECORD.replace("status=0", "status=3");
        let (d, _) = decide("", &record, Ended::RecordEnd);
        assert_eq!(d.verdict, Verdict::GuestFault);
        assert_eq!(d.guest_exit_status, Some(3));
    }

    #[test]
    fn console_echo_is_plain_text() {
        assert_eq!(
            plain_text(
                "\u{1b}[0m\u{1b}[37m\u{1b}[40mBdsDxe: loading\u{1b}[2J\u{1b}[01;01H ok\u{7}"
            ),
            "BdsDxe: loading ok"
        );
        assert_eq!(plain_text("a\tb\u{1b}cdef"), "a\tbdef");
        assert_eq!(plain_text("\u{1b}["), "");
    }

    #[test]
    fn secure_boot_refusal() {
        let (d, _) = decide(OVMF_REJECT, "", Ended::FirmwareRejected);
        assert_eq!(d.verdict, Verdict::FirmwareRejected);
        assert!(
            d.reason.starts_with("BdsDxe: failed to load"),
            "{}",
            d.reason
        );
        assert!(d.reason.ends_with("Access Denied"), "{}", d.reason);
    }

    #[test]
    fn firmware_with_nothing_to_boot() {
        let console = "\u{1b}[2J\u{1b}[01;01HBdsDxe: failed to load Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x1,0x0): Not Found\r\n\
BdsDxe: starting Boot0002 \"EFI Internal Shell\" from Fv(7CB8BDC9)\r\nShell> ";
        assert!(firmware_idle(console).is_some());
        let (d, _) = decide(console, console, Ended::FirmwareIdle);
        assert_eq!(d.verdict, Verdict::NoBoot);
        assert!(
            d.reason
                .starts_with("the firmware found nothing to boot: BdsDxe: failed to load"),
            "{}",
            d.reason
        );
        assert!(d.reason.ends_with("Not Found"), "{}", d.reason);
    }

    #[test]
    fn stub_error_wins() {
        let record = "VMSEAL1 start stub=0.1.0 mode=linux\r\nVMSEAL1 error stage=measure status=0x800000000000000e\r\nVMSEAL1 end\r\n";
        let (d, _) = decide("", record, Ended::RecordEnd);
        assert_eq!(d.verdict, Verdict::StubError);
        assert!(d.reason.contains("stage=measure"), "{}", d.reason);
    }

    #[test]
    fn unparsable_record_is_a_stub_error() {
        let (d, _) = decide("", "VMSEAL1 measure pcr\r\n", Ended::QemuExited);
        assert_eq!(d.verdict, Verdict::StubError);
    }

    #[test]
    fn linux_marker_after_launch_booted_even_on_timeout() {
        let record =
            "VMSEAL1 start stub=0.1.0 mode=linux\r\nVMSEAL1 launch kind=linux section=.linux\r\n";
        let console = "[    1.0] Run /init as init process\r\nvmseal-linux: booted\r\n";
        assert_eq!(
            decide(console, record, Ended::QemuExited).0.verdict,
            Verdict::Booted
        );
        let (d, _) = decide(console, record, Ended::Timeout);
        assert_eq!(d.verdict, Verdict::Booted);
        assert!(d.reason.contains("did not power off"));
    }

    #[test]
    fn marker_without_launch_does_not_count() {
        let (d, _) = decide("vmseal-linux: booted\r\n", "", Ended::QemuExited);
        assert_eq!(d.verdict, Verdict::NoBoot);
    }

    #[test]
    fn kernel_panic_is_a_guest_fault() {
        let record =
            "VMSEAL1 start stub=0.1.0 mode=linux\r\nVMSEAL1 launch kind=linux section=.linux\r\n";
        let console = "[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n";
        let (d, _) = decide(console, record, Ended::QemuExited);
        assert_eq!(d.verdict, Verdict::GuestFault);
        assert!(d.reason.contains("Kernel panic"));
    }

    #[test]
    fn what_is_missing_decides() {
        let started = "VMSEAL1 start stub=0.1.0 mode=guest\r\n";
        let launched = "VMSEAL1 start stub=0.1.0 mode=guest\r\nVMSEAL1 launch kind=guest section=.guest entry=0x4000000\r\n";
        let cases = [
            ("", Ended::Timeout, Verdict::Timeout),
            ("", Ended::QemuExited, Verdict::NoBoot),
            (started, Ended::Timeout, Verdict::Timeout),
            (started, Ended::QemuExited, Verdict::StubError),
            (launched, Ended::Timeout, Verdict::Timeout),
            (launched, Ended::QemuExited, Verdict::GuestFault),
        ];
        for (record, ended, want) in cases {
            assert_eq!(
                decide("noise\r\n", record, ended).0.verdict,
                want,
                "{record:?} {ended:?}"
            );
        }
    }

    #[test]
    fn pcr_lines_and_eventlog() {
        let console = "vmseal-pcr sha256 11 AbCd\r\nvmseal-pcr sha1 0 zz\r\njunk\r\n\
vmseal-eventlog aGVsbG8g\r\nvmseal-eventlog d29ybGQ=\r\nvmseal-eventlog-end bytes=11\r\n";
        assert_eq!(
            linux_pcrs(console),
            vec![PcrValue {
                bank: "sha256".into(),
                index: 11,
                value: "abcd".into()
            }]
        );
        assert_eq!(
            linux_eventlog(console).as_deref(),
            Some(&b"hello world"[..])
        );
        assert_eq!(
            linux_eventlog("vmseal-eventlog aGVsbG8g\r\n"),
            None,
            "incomplete"
        );
    }

    #[test]
    fn the_command_line_is_pinned() {
        let args = qemu_args(
            Path::new("/c.fd"),
            Path::new("/v.fd"),
            Path::new("/s.sock"),
            Path::new("/d.img"),
            Path::new("/r"),
            DEFAULT_CPU,
            false,
        );
        let line: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            line.join(" "),
            "-machine q35,smm=on -accel tcg -nodefaults -m 512M -cpu EPYC \
-global driver=cfi.pflash01,property=secure,value=on \
-drive if=pflash,format=raw,unit=0,readonly=on,file=/c.fd \
-drive if=pflash,format=raw,unit=1,file=/v.fd \
-chardev socket,id=chrtpm,path=/s.sock -tpmdev emulator,id=tpm0,chardev=chrtpm \
-device tpm-tis,tpmdev=tpm0 -drive if=none,id=disk,format=raw,file=/d.img \
-device virtio-blk-pci,drive=disk,bootindex=0 -serial file:/r/console.log \
-serial file:/r/record.log -display none -no-reboot"
        );
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
    }

    /// Without a guest network the pinned command line is untouched; with one, a NIC without
    /// an option ROM on a restricted user network with one guestfwd is appended.
    #[test]
    fn the_guest_network_only_appends() {
        let base = qemu_args(
            Path::new("/c.fd"),
            Path::new("/v.fd"),
            Path::new("/s.sock"),
            Path::new("/d.img"),
            Path::new("/r"),
            DEFAULT_CPU,
            false,
        );
        assert_eq!(qemu_args_with_net(base.clone(), None), base);
        let net = GuestNet {
            relay: vec![
                "/opt/vm seal,x/vmseal".into(),
                "attest".into(),
                "relay".into(),
                "127.0.0.1:8443".into(),
            ],
        };
        let with = qemu_args_with_net(base.clone(), Some(&net));
        assert_eq!(with[..base.len()], base[..]);
        let tail: Vec<String> = with[base.len()..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            tail,
            [
                "-netdev",
                "user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:'/opt/vm seal,,x/vmseal' attest relay 127.0.0.1:8443",
                "-device",
                "virtio-net-pci,netdev=net0,romfile=,mac=52:54:00:12:34:56",
                "-fw_cfg",
                "name=opt/org.tianocore/IPv4PXESupport,string=n",
                "-fw_cfg",
                "name=opt/org.tianocore/IPv6PXESupport,string=n",
            ]
        );
    }

    /// The real-firmware fixture (Debian OVMF 2022.11): its log replays to its PCR dump, and a
    /// record whose values disagree with its log is refused.
    #[test]
    fn evidence_is_checked_against_the_replay() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/ovmf-debian-2022.11"
        );
        let log = fs::read(format!("{dir}/eventlog-sb-off.bin"))
            .expect("fixture log (shared/ beside the checkout)");
        let dump = fs::read_to_string(format!("{dir}/pcrs-sb-off.txt")).expect("fixture PCR dump");
        let pcrs: Vec<PcrValue> = dump
            .lines()
            .filter_map(|l| {
                let mut it = l.split_ascii_whitespace();
                (it.next()? == "PCR").then_some(())?;
                let bank = it.next()?.to_ascii_lowercase();
                let index: u32 = it.next()?.parse().ok()?;
                let value = it.next()?.to_ascii_lowercase();
                Some(PcrValue { bank, index, value })
            })
            .collect();
        assert!(pcrs.len() > 20);
        let mut ev = Evidence {
            log: Some(log),
            pcrs,
            problem: None,
        };
        assert_eq!(ev.check(), Ok(()));
        let v = ev
            .pcrs
            .iter_mut()
            .find(|v| v.index == 7 && v.bank == "sha256")
            .expect("PCR 7");
        v.value = "00".repeat(32);
        let err = ev.check().expect_err("a value the log does not replay to");
        assert!(err.contains("PCR 7 (sha256)"), "{err}");
    }
}
