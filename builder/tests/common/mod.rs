//! Helpers shared by the builder's integration tests.
#![allow(dead_code, reason = "each test crate uses a different subset")]

use std::path::Path;
use std::process::{Command, Output};

/// Standard output then standard error of `o`, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Assert that `o` succeeded, showing what it printed when it did not.
pub fn ok(o: &Output) {
    assert!(o.status.success(), "status {:?}\n{}", o.status, text(o));
}

/// `DIR/chain.pem`: the PK and KEK certificates of the keys directory `keys`, the CA file
/// osslsigncode needs to build a full chain to a db certificate.
pub fn ca_chain(keys: &Path, dir: &Path) -> std::path::PathBuf {
    let chain = dir.join("chain.pem");
    std::fs::write(
        &chain,
        [
            std::fs::read(keys.join("PK.crt")).unwrap(),
            std::fs::read(keys.join("KEK.crt")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    chain
}

/// A sample appliance in `dir`: `vmseal init`'s sample guest printing `greeting`, a 16 MiB
/// image named `app`, and `extra` appended to the manifest (e.g. a `[signing]` table).
pub fn sample_appliance(dir: &Path, greeting: &str, extra: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("guest.elf"),
        vmseal::compose::init::sample_guest_elf(&format!("{greeting}\r\n")),
    )
    .unwrap();
    std::fs::write(
        dir.join("vmseal.toml"),
        format!(
            "[image]\nname = \"app\"\nversion = \"1\"\nsize = \"16MiB\"\n[guest]\nelf = \"guest.elf\"\n\
             cmdline = \"x\"\nmemory = \"16MiB\"\nconsole = \"on\"\n{extra}"
        ),
    )
    .unwrap();
}

/// Run an external tool (an oracle vmseal did not write); a missing tool is a setup error.
pub fn tool(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/setup.sh installs it)"))
}

/// The Authenticode SHA-256 of `efi` as sbsign embeds it in its signature and osslsigncode
/// reads it back (an independent oracle for vmseal's Authenticode digest). Keys go in `dir`.
pub fn sbsign_digest(efi: &Path, dir: &Path) -> String {
    let key = dir.join("k.pem");
    let cert = dir.join("c.pem");
    if !key.exists() {
        let o = tool(
            Command::new("openssl")
                .args([
                    "req",
                    "-new",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=vmseal test",
                    "-days",
                    "1",
                    "-keyout",
                ])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let signed = dir.join("signed.efi");
    let o = tool(
        Command::new("sbsign")
            .arg("--key")
            .arg(&key)
            .arg("--cert")
            .arg(&cert)
            .arg("--output")
            .arg(&signed)
            .arg(efi),
    );
    assert!(
        o.status.success(),
        "sbsign: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = tool(
        Command::new("osslsigncode")
            .arg("verify")
            .arg("-in")
            .arg(&signed),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("Current message digest"))
        .unwrap_or_else(|| panic!("osslsigncode:\n{text}"));
    line.split(':').nth(1).unwrap().trim().to_lowercase()
}

/// Serialises VM boots across the tests of one process (the machine has two cores and boots
/// with TCG): hold the guard while a VM runs, and never while waiting for a `OnceLock` whose
/// initialiser boots.
pub fn vm_lock() -> std::sync::MutexGuard<'static, ()> {
    static VM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that panicked while holding the lock has already stopped its VM.
    VM.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `images/linux` with its inputs built (`images/linux/build.sh`: Debian's cloud kernel and a
/// busybox initrd in `images/linux/out/`), once per test process; returns the folder.
pub fn linux_example() -> &'static Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/linux");
        let o = tool(Command::new("bash").arg(dir.join("build.sh")));
        assert!(
            o.status.success(),
            "images/linux/build.sh failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        dir
    })
}

/// A swtpm with a TCP command server on a free port (its control channel on the next one),
/// killed on drop. `dir` holds its state (`dir/state`) and is free for the test's own files.
pub struct Swtpm {
    child: std::process::Child,
    /// The command port (`TPM2TOOLS_TCTI=swtpm:port=PORT`, `SYSTEMD_TPM2_DEVICE=swtpm:port=PORT`).
    pub port: u16,
    /// A scratch directory that lives as long as the TPM.
    pub dir: tempfile::TempDir,
}

impl Swtpm {
    /// Start one (manufactured and started up: `not-need-init,startup-clear`) and wait until
    /// its command port answers.
    pub fn start() -> Self {
        use std::net::{TcpListener, TcpStream};
        let port = loop {
            let p = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                break p;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--server"])
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .args(["--flags", "not-need-init,startup-clear", "--tpmstate"])
            .arg(format!("dir={}", dir.path().join("state").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("swtpm (scripts/setup.sh installs it)");
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Swtpm { child, port, dir }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vmseal ARGS` in `cwd`, with no `SOURCE_DATE_EPOCH` or `VMSEAL_STUB_EFI` from the
/// environment (the embedded stub, the clock a user would have).
pub fn vmseal(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal")
}
