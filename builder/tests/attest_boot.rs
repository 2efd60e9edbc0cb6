//! The whole chain in real boots (issue 14): `vmseal build` (signed, with the org's keys) →
//! `vmseal attest serve` with the build's prediction → `vmseal boot --attest-server` (QEMU +
//! OVMF + swtpm; the guest reaches only the server) → the agent in the initrd
//! (`images/agent`) quotes, activates the credential in the (virtual) TPM and decrypts.
//!
//! Three boots, one VM at a time ([`common::vm_lock`]), each earning its place:
//! - the appliance as built, Secure Boot on with the org's store: the secret is released (the
//!   sha256 the agent prints is the secret file's);
//! - one built with another command line, for the server that holds the first's policy:
//!   refused, the reason naming PCR 11 and the `.cmdline` event;
//! - the first appliance with a foreign variable store (the org's plus another org's db
//!   certificate, written by `virt-fw-vars`; the image still boots): refused naming PCR 7.
//!
//! Replays and another TPM's evidence are covered without a VM (`attest_serve.rs`).

mod common;
use common::{linux_example, tool, vm_lock};

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use sha2::{Digest as _, Sha256};

const CMDLINE: &str = "console=ttyS0 quiet panic=-1 vmseal.attest=10.0.2.100:80";

fn vmseal(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal")
}

fn vmseal_ok(dir: &Path, args: &[&str]) {
    let o = vmseal(dir, args);
    assert!(
        o.status.success(),
        "vmseal {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Two signed builds of the Linux appliance with the same org keys: `a/` with [`CMDLINE`],
/// `b/` with one more word; the server holding a's prediction as policy `linux`.
struct Chain {
    _dir: tempfile::TempDir,
    root: PathBuf,
    secret: Vec<u8>,
    server: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Chain {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn chain() -> Chain {
    {
        let linux = linux_example();
        let dir = tempfile::tempdir().expect("scratch dir");
        let root = dir.path().to_path_buf();
        vmseal_ok(
            &root,
            &["keys", "new", "--out", "keys", "--org", "vmseal attest org"],
        );
        vmseal_ok(
            &root,
            &["keys", "new", "--out", "other", "--org", "Another Org"],
        );
        for (name, cmdline) in [
            ("a", CMDLINE.to_string()),
            ("b", format!("{CMDLINE} mode=b")),
        ] {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("vmseal.toml"),
                format!(
                    "[image]\nname = \"linux\"\nversion = \"0.1.0\"\nsize = \"64MiB\"\n[guest]\n\
                     kernel = \"{}\"\ninitrd = \"{}\"\nos-release = \"{}\"\n\
                     cmdline = \"{cmdline}\"\nmemory = \"256MiB\"\n\
                     console = \"on\"\n[signing]\nkeys = \"../keys\"\n",
                    linux.join("out/vmlinuz").display(),
                    linux.join("out/initrd.img").display(),
                    linux.join("os-release").display()
                ),
            )
            .unwrap();
            vmseal_ok(&d, &["-q", "build", "vmseal.toml", "--out", "out"]);
        }
        let secret = b"disk key of the sealed linux appliance: 9f1e27c4".to_vec();
        std::fs::write(root.join("linux.secret"), &secret).unwrap();
        let log = root.join("serve.log");
        let mut server = Command::new(env!("CARGO_BIN_EXE_vmseal"))
            .args(["attest", "serve", "--listen", "127.0.0.1:0"])
            .args([
                "--policy",
                "a/out/linux.pcrs.json",
                "--secret",
                "linux.secret",
            ])
            .current_dir(&root)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{line:?}"))
            .to_string();
        eprintln!("vmseal attest serve bound {addr}");
        Chain {
            _dir: dir,
            root,
            secret,
            server,
            addr,
            log,
        }
    }
}

/// Boot `image` (in `c.root`) with `vars`, Secure Boot on, networking to the server; the
/// agent's line of the console.
fn boot(c: &Chain, image: &str, vars: &str, record: &str) -> String {
    let args = [
        "-q",
        "boot",
        image,
        "--vars",
        vars,
        "--secure-boot",
        "--record",
        record,
        "--timeout",
        "240",
        "--attest-server",
        &c.addr,
    ];
    let started = std::time::Instant::now();
    let o = {
        let _vm = vm_lock();
        vmseal(&c.root, &args)
    };
    eprintln!(
        "boot {image} {vars}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let console =
        std::fs::read_to_string(c.root.join(record).join("console.log")).unwrap_or_default();
    assert!(o.status.success(), "not booted:\n{console}");
    assert!(
        console.contains("vmseal-secureboot enabled"),
        "Secure Boot is not on in the guest:\n{console}"
    );
    console
        .lines()
        .find(|l| l.starts_with("vmseal-agent: "))
        .unwrap_or_else(|| panic!("the agent printed nothing:\n{console}"))
        .to_string()
}

/// One server for the three boots (killed when the test ends, pass or fail).
#[test]
fn the_secret_reaches_only_the_appliance_that_booted_as_built() {
    let c = &chain();

    // The appliance as built, Secure Boot on with the org's store: released.
    let line = boot(c, "a/out/linux.img", "a/out/linux.vars.fd", "run-a");
    let want = hex::encode(Sha256::digest(&c.secret));
    assert_eq!(line, format!("vmseal-agent: secret released sha256={want}"));
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(log.contains("policy=linux released"), "{log}");

    // Built with another command line, for the first's policy: refused naming PCR 11.
    let line = boot(c, "b/out/linux.img", "b/out/linux.vars.fd", "run-b");
    eprintln!("{line}");
    assert!(
        line.starts_with("vmseal-agent: refused: events: "),
        "{line}"
    );
    assert!(line.contains("PCR 11: section .cmdline differs"), "{line}");

    // A foreign variable store (another org's db certificate besides the org's; the image
    // still boots): refused naming PCR 7.
    let owner = std::fs::read_to_string(c.root.join("other/owner.guid")).expect("owner.guid");
    let o = tool(
        Command::new("virt-fw-vars")
            .current_dir(&c.root)
            .args([
                "-i",
                "a/out/linux.vars.fd",
                "-o",
                "foreign.vars.fd",
                "--add-db",
            ])
            .arg(owner.trim())
            .arg("other/db.crt"),
    );
    assert!(
        o.status.success(),
        "virt-fw-vars: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = boot(c, "a/out/linux.img", "foreign.vars.fd", "run-foreign");
    eprintln!("{line}");
    assert!(
        line.starts_with("vmseal-agent: refused: events: PCR 7: "),
        "{line}"
    );

    // The server's log: each decision, never the secret.
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(
        log.contains("policy=linux refused: events: PCR 7: "),
        "{log}"
    );
    assert!(log.contains("PCR 11: section .cmdline differs"), "{log}");
    assert!(!log.contains("9f1e27c4"), "the secret is never logged");
}
