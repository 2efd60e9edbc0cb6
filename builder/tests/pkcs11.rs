//! Keys in a PKCS#11 token (SoftHSM2), through the real `vmseal` binary: a build signed
//! through the token equals the same build signed with the same key as a file; keys that
//! `keys new --pkcs11` creates never leave the token (`pkcs11-tool` from OpenSC shows them
//! sensitive and never extractable, and no output holds a private key); the token's
//! signatures verify with `sbverify`, `osslsigncode` and `openssl cms`; the image signed by
//! token keys boots with Secure Boot on (OVMF enforces it) exactly as predicted; bad PINs,
//! missing objects and tokens without the key are one line, exit 2, naming the URI and never
//! the PIN. Needs softhsm2, opensc, sbsigntool, osslsigncode, qemu, ovmf, swtpm
//! (`scripts/setup.sh` installs them).

mod common;
use common::{ok, text, tool};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "5318008";
const WRONG_PIN: &str = "7777777";
const EPOCH: &str = "1700000000";

/// A SoftHSM2 configuration of its own (tokens in a temporary directory) with three tokens:
/// `imported` (gets a file key imported), `generated` (for `keys new --pkcs11`) and `empty`.
struct Hsm {
    _dir: tempfile::TempDir,
    root: PathBuf,
    conf: PathBuf,
}

fn hsm() -> &'static Hsm {
    static H: OnceLock<Hsm> = OnceLock::new();
    H.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("tokens")).unwrap();
        let conf = root.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                root.join("tokens").display()
            ),
        )
        .unwrap();
        for label in ["imported", "generated", "empty"] {
            let o = tool(
                Command::new("softhsm2-util")
                    .env("SOFTHSM2_CONF", &conf)
                    .args(["--init-token", "--free", "--label", label])
                    .args(["--pin", PIN, "--so-pin", "12345678"]),
            );
            assert!(o.status.success(), "softhsm2-util: {}", text(&o));
        }
        std::fs::write(root.join("pin"), format!("{PIN}\n")).unwrap();
        std::fs::write(root.join("wrong-pin"), format!("{WRONG_PIN}\n")).unwrap();
        Hsm {
            _dir: dir,
            root,
            conf,
        }
    })
}

/// `vmseal ARGS` in `cwd` with the token's configuration, the module and the PIN file in the
/// environment (as a CI job would set them).
fn vmseal_with(args: &[&str], cwd: &Path, pin_file: &str) -> Output {
    let h = hsm();
    Command::new(env!("CARGO_BIN_EXE_vmseal"))
        .args(args)
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("SOFTHSM2_CONF", &h.conf)
        .env("VMSEAL_PKCS11_MODULE", MODULE)
        .env("VMSEAL_PKCS11_PIN_FILE", h.root.join(pin_file))
        .env_remove("VMSEAL_PKCS11_PIN")
        .env_remove("VMSEAL_STUB_EFI")
        .output()
        .expect("run vmseal")
}

fn vmseal(args: &[&str], cwd: &Path) -> Output {
    vmseal_with(args, cwd, "pin")
}

/// A hello appliance in `dir` whose `[signing]` table is `signing`.
fn appliance(dir: &Path, signing: &str) {
    common::sample_appliance(dir, "hello from a token-signed appliance", signing);
}

fn pkcs11_tool(args: &[&str]) -> Output {
    tool(
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &hsm().conf)
            .args(["--module", MODULE])
            .args(args),
    )
}

#[test]
fn a_build_signed_through_the_token_equals_the_file_key_build() {
    let h = hsm();
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    ok(&vmseal(
        &["keys", "new", "--out", "keys", "--org", "File Org"],
        d,
    ));
    // The same db key, imported into the token (PKCS#8 PEM, as `keys new` writes it).
    let o = tool(
        Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &h.conf)
            .args(["--import"])
            .arg(d.join("keys/db.key"))
            .args([
                "--token", "imported", "--label", "db", "--id", "01", "--pin", PIN,
            ]),
    );
    assert!(o.status.success(), "softhsm2-util --import: {}", text(&o));

    appliance(&d.join("file"), "[signing]\nkeys = \"../keys\"\n");
    ok(&vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out"],
        &d.join("file"),
    ));
    appliance(
        &d.join("token"),
        "[signing]\nkeys = \"../keys\"\nkey = \"pkcs11:token=imported;object=db\"\n",
    );
    ok(&vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out"],
        &d.join("token"),
    ));
    for f in ["app.efi", "app.img", "app.vars.fd", "app.pcrs.json"] {
        assert!(
            std::fs::read(d.join("file/out").join(f)).unwrap()
                == std::fs::read(d.join("token/out").join(f)).unwrap(),
            "{f} differs between the file-key and the token build"
        );
    }
    let efi = d.join("token/out/app.efi");
    // osslsigncode builds a full chain: its CA file is PK + KEK.
    let chain = common::ca_chain(&d.join("keys"), d);
    let o = tool(
        Command::new("sbverify")
            .arg("--cert")
            .arg(d.join("keys/db.crt"))
            .arg(&efi),
    );
    assert!(o.status.success(), "sbverify: {}", text(&o));
    let o = tool(
        Command::new("osslsigncode")
            .args(["verify", "-CAfile"])
            .arg(&chain)
            .arg("-in")
            .arg(&efi),
    );
    assert!(
        text(&o).contains("Signature verification: ok"),
        "osslsigncode: {}",
        text(&o)
    );

    // `vmseal sign` through the token: an unsigned build signed afterwards equals the build.
    ok(&vmseal(
        &[
            "-q",
            "build",
            "vmseal.toml",
            "--out",
            "unsigned",
            "--unsigned",
        ],
        &d.join("token"),
    ));
    let o = vmseal(
        &[
            "sign",
            "unsigned/app.img",
            "--key",
            "pkcs11:token=imported;object=db;type=private",
            "--cert",
            "../keys/db.crt",
            "--pkcs11-module",
            MODULE,
        ],
        &d.join("token"),
    );
    ok(&o);
    assert!(
        std::fs::read(d.join("token/unsigned/app.img")).unwrap()
            == std::fs::read(d.join("token/out/app.img")).unwrap(),
        "vmseal sign through the token != the signed build"
    );
    // The PIN never appears in the output.
    assert!(!text(&o).contains(PIN));

    // PCR 11 policies signed through the token equal those signed with the key file, in every
    // bank (CKM_SHA{1,256,384,512}_RSA_PKCS against the rsa crate).
    let sign = |key: &str| {
        let mut args = vec!["pcr", "sign", "out/app.efi", "--key", key];
        for b in ["sha1", "sha256", "sha384", "sha512"] {
            args.extend(["--bank", b]);
        }
        let o = vmseal(&args, &d.join("token"));
        ok(&o);
        o.stdout
    };
    assert_eq!(
        sign("pkcs11:token=imported;object=db"),
        sign("../keys/db.key")
    );
}

/// The `EFI_VARIABLE_AUTHENTICATION_2` of `auth` as openssl reads it: its PKCS#7 SignedData
/// wrapped in a ContentInfo (UEFI 2.10 §8.2.2 carries the bare SignedData), and the bytes
/// it signs: name (UTF-16LE) ‖ vendor GUID ‖ attributes ‖ timestamp ‖ data.
fn auth_for_openssl(auth: &[u8], name: &str, vendor: [u8; 16], dir: &Path) -> (PathBuf, PathBuf) {
    let len = u32::from_le_bytes(auth[16..20].try_into().unwrap()) as usize;
    let p7 = &auth[40..16 + len];
    let tl = |tag: u8, b: &[u8]| {
        let mut v = vec![tag, 0x82, (b.len() >> 8) as u8, b.len() as u8];
        v.extend_from_slice(b);
        v
    };
    let mut body = vec![
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
    ];
    body.extend(tl(0xa0, p7));
    let ci = tl(0x30, &body);
    let mut msg: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    msg.extend_from_slice(&vendor);
    msg.extend_from_slice(&0x27u32.to_le_bytes());
    msg.extend_from_slice(&auth[..16]);
    msg.extend_from_slice(&auth[16 + len..]);
    let (p, m) = (
        dir.join(format!("{name}.p7")),
        dir.join(format!("{name}.msg")),
    );
    std::fs::write(&p, ci).unwrap();
    std::fs::write(&m, msg).unwrap();
    (p, m)
}

#[test]
fn keys_made_in_the_token_stay_there_and_sign_an_image_that_boots_with_secure_boot() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let o = vmseal(
        &[
            "keys",
            "new",
            "--pkcs11",
            "pkcs11:token=generated",
            "--out",
            "tk",
            "--org",
            "Token Org",
        ],
        d,
    );
    ok(&o);
    // The token holds three private keys, sensitive and never extractable, and their
    // certificates.
    let o = pkcs11_tool(&[
        "--token-label",
        "generated",
        "--login",
        "--pin",
        PIN,
        "--list-objects",
    ]);
    assert!(o.status.success(), "pkcs11-tool: {}", text(&o));
    let listing = String::from_utf8_lossy(&o.stdout);
    // One block per object: a header line, then indented attribute lines.
    let mut blocks: Vec<String> = Vec::new();
    for line in listing.lines() {
        match blocks.last_mut() {
            Some(b) if line.starts_with(' ') => {
                b.push_str(line);
                b.push('\n');
            }
            _ => blocks.push(format!("{line}\n")),
        }
    }
    for label in ["PK", "KEK", "db"] {
        let block = blocks
            .iter()
            .find(|b| {
                b.starts_with("Private Key Object") && b.contains(&format!("label:      {label}\n"))
            })
            .unwrap_or_else(|| panic!("no private key {label}: {listing}"));
        assert!(
            block.contains("sensitive") && block.contains("never extractable"),
            "{label}: {block}"
        );
    }
    assert_eq!(
        listing.matches("Certificate Object").count(),
        3,
        "{listing}"
    );
    // Nothing written outside the token is a private key.
    let mut names = Vec::new();
    for e in std::fs::read_dir(d.join("tk")).unwrap() {
        let p = e.unwrap().path();
        let b = std::fs::read(&p).unwrap();
        let s = String::from_utf8_lossy(&b);
        assert!(!s.contains("PRIVATE KEY"), "{}", p.display());
        // PKCS#8 RSA PrivateKeyInfo: SEQUENCE { INTEGER 0, rsaEncryption … }.
        let pkcs8 = [0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48];
        assert!(
            !b.windows(pkcs8.len()).any(|w| w == pkcs8),
            "{}",
            p.display()
        );
        names.push(p.file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    assert!(!names.iter().any(|n| n.ends_with(".key")), "{names:?}");
    assert!(!text(&o).contains(PIN));
    // The chain, and the .auth files signed in the token, verify with openssl.
    let o = tool(
        Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                "tk/PK.crt",
                "-untrusted",
                "tk/KEK.crt",
                "tk/db.crt",
            ])
            .current_dir(d),
    );
    assert!(o.status.success(), "openssl verify: {}", text(&o));
    let global = [
        0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b,
        0x8c,
    ];
    let db_guid = [
        0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65,
        0x6f,
    ];
    for (name, vendor, signer_chain) in [
        ("PK", global, &["tk/PK.crt"][..]),
        ("KEK", global, &["tk/PK.crt"][..]),
        ("db", db_guid, &["tk/KEK.crt"][..]),
    ] {
        let auth = std::fs::read(d.join(format!("tk/{name}.auth"))).unwrap();
        let (p7, msg) = auth_for_openssl(&auth, name, vendor, d);
        let o = tool(
            Command::new("openssl")
                .args([
                    "cms", "-verify", "-inform", "DER", "-binary", "-purpose", "any",
                ])
                .arg("-in")
                .arg(&p7)
                .arg("-content")
                .arg(&msg)
                .args(["-CAfile", "tk/PK.crt", "-certfile", signer_chain[0]])
                .args(["-out", "/dev/null"])
                .current_dir(d),
        );
        assert!(o.status.success(), "{name}.auth: {}", text(&o));
    }

    // Rotation with the KEK in the token: a new db certificate the token's KEK issued, and a
    // db-append.auth the token signed.
    ok(&vmseal(
        &["keys", "rotate", "--keys", "tk", "--out", "tk2"],
        d,
    ));
    let o = tool(
        Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                "tk/PK.crt",
                "-untrusted",
                "tk/KEK.crt",
                "tk2/db.crt",
            ])
            .current_dir(d),
    );
    assert!(
        o.status.success(),
        "openssl verify (rotated db): {}",
        text(&o)
    );
    let auth = std::fs::read(d.join("tk2/db-append.auth")).unwrap();
    let len = u32::from_le_bytes(auth[16..20].try_into().unwrap()) as usize;
    assert_eq!(
        &auth[16 + len..],
        std::fs::read(d.join("tk2/db.esl")).unwrap()
    );

    // An appliance signed by the token's db key boots with those keys enrolled and Secure
    // Boot on, and measures exactly what its build predicted.
    appliance(&d.join("app"), "[signing]\nkeys = \"../tk\"\n");
    ok(&vmseal(
        &["-q", "build", "vmseal.toml", "--out", "out"],
        &d.join("app"),
    ));
    let o = tool(
        Command::new("sbverify")
            .args(["--cert", "tk/db.crt", "app/out/app.efi"])
            .current_dir(d),
    );
    assert!(o.status.success(), "sbverify: {}", text(&o));
    let o = vmseal(
        &[
            "boot",
            "out/app.img",
            "--vars",
            "out/app.vars.fd",
            "--secure-boot",
            "--record",
            "run",
            "--timeout",
            "240",
        ],
        &d.join("app"),
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).trim() == "booted",
        "boot: {}",
        text(&o)
    );
    let o = vmseal(&["pcr", "diff", "out/app.pcrs.json", "run"], &d.join("app"));
    assert!(o.status.success(), "pcr diff: {}", text(&o));
}

#[test]
fn token_problems_exit_2_with_one_line_naming_the_uri_never_the_pin() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    ok(&vmseal(
        &["keys", "new", "--out", "keys", "--org", "Err Org"],
        d,
    ));
    appliance(d, "[signing]\nkeys = \"keys\"\nkey = \"KEY\"\n");
    let manifest = std::fs::read_to_string(d.join("vmseal.toml")).unwrap();
    let case = |key: &str, pin_file: &str, words: &[&str]| {
        std::fs::write(d.join("vmseal.toml"), manifest.replace("KEY", key)).unwrap();
        let _ = std::fs::remove_dir_all(d.join("out"));
        let o = vmseal_with(&["-q", "build", "vmseal.toml", "--out", "out"], d, pin_file);
        assert_eq!(o.status.code(), Some(2), "{key}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{key}: {err}");
        for w in words {
            assert!(err.contains(w), "{key}: {w:?} not in {err}");
        }
        assert!(!err.contains(PIN) && !err.contains(WRONG_PIN), "{err}");
        assert!(!d.join("out").exists(), "{key}: partial output");
    };
    case(
        "pkcs11:token=generated;object=db",
        "wrong-pin",
        &["signing.key", "pkcs11:token=generated;object=db", "PIN"],
    );
    case(
        "pkcs11:token=imported;object=no-such-key",
        "pin",
        &["pkcs11:token=imported;object=no-such-key", "no private key"],
    );
    case(
        "pkcs11:token=empty;object=db",
        "pin",
        &["pkcs11:token=empty;object=db", "no private key"],
    );
    case(
        "pkcs11:token=no-such-token;object=db",
        "pin",
        &["pkcs11:token=no-such-token;object=db", "no token matches"],
    );
    // A token key that is not the certificate's key.
    case(
        "pkcs11:token=generated;object=KEK",
        "pin",
        &[
            "pkcs11:token=generated;object=KEK",
            "does not match the certificate",
        ],
    );
    // A PIN in the URI is refused without being echoed.
    case(
        &format!("pkcs11:token=generated;object=db?pin-value={PIN}"),
        "pin",
        &["pin-value", "VMSEAL_PKCS11_PIN"],
    );
}
