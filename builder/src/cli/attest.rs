//! `vmseal attest verify`: evidence from an appliance against its prediction
//! ([`vmseal::attest`]). Exit status: 0 match, 1 mismatch, 2 bad input (one line: file, field,
//! fix).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use vmseal::attest::evidence::{Evidence, Files, parse_nonce_hex};
use vmseal::attest::verify::{Expected, render, verify};

use super::{Failure, input as bad, print};

/// `vmseal attest …`.
#[derive(Subcommand, Debug)]
pub(crate) enum AttestVerb {
    /// Check what an appliance sent — a TPM2 quote, its signature, the attestation key, the
    /// event log and the nonce — against a prediction (NAME.pcrs.json): the quote's
    /// signature, the nonce, the log replayed to the quoted PCR digest, and each event
    /// against the predicted one (the first that differs named as `pcr diff` names it).
    /// Exit 0 match, 1 mismatch, 2 bad input. See docs/attestation.md.
    Verify(VerifyArgs),
    /// The key-release server: hands out nonces, checks an appliance's evidence against the
    /// prediction (policy) it names, and releases that policy's secret only to the TPM that
    /// quoted — sealed under a credential made to its EK for its AK (TPM2_MakeCredential),
    /// which only that TPM can activate. Serves until killed; one line per decision on
    /// stderr. See docs/attestation.md for the HTTP API.
    Serve(ServeArgs),
    /// Relay stdin/stdout to a TCP server at HOST:PORT, for one connection: what `vmseal boot
    /// --attest-server` has QEMU run for each connection of the guest to 10.0.2.100:80.
    #[command(hide = true)]
    Relay {
        /// The attestation server, HOST:PORT.
        server: String,
    },
}

/// `vmseal attest serve`.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Where to listen, HOST:PORT (port 0: the OS chooses; the address is printed on
    /// stdout as `listening on ADDR`).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// A policy: the prediction NAME.pcrs.json (clients name it NAME), or NAME=FILE.
    /// Repeat for several appliances; each takes the --secret given in the same position.
    #[arg(long, value_name = "NAME.pcrs.json", required = true)]
    pub policy: Vec<String>,
    /// The secret released for the policy in the same position (1 byte to 64 KiB). It is
    /// only ever sent encrypted, and never logged.
    #[arg(long, value_name = "FILE", required = true)]
    pub secret: Vec<PathBuf>,
    /// How long a nonce is valid, in seconds. Nonces live in memory only.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub nonce_ttl: u64,
    /// Requests answered at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub threads: usize,
}

/// `vmseal attest verify`.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The prediction: NAME.pcrs.json (`vmseal build`, `vmseal pcr predict --json`).
    pub prediction: PathBuf,
    /// The evidence as one bundle (JSON: quote, signature, ak, eventlog, nonce in base64,
    /// optional caller), instead of the separate files.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["quote", "signature", "ak", "eventlog"])]
    pub evidence: Option<PathBuf>,
    /// The quote: the TPMS_ATTEST that `tpm2_quote -m` writes.
    #[arg(long, value_name = "FILE", required_unless_present = "evidence")]
    pub quote: Option<PathBuf>,
    /// The quote's TPMT_SIGNATURE, as `tpm2_quote -s` writes it.
    #[arg(long, value_name = "FILE", required_unless_present = "evidence")]
    pub signature: Option<PathBuf>,
    /// The attestation key: its TPM2B_PUBLIC (`tpm2_createak -u`), or a PEM/DER public key.
    #[arg(long, value_name = "FILE", required_unless_present = "evidence")]
    pub ak: Option<PathBuf>,
    /// The binary TCG2 event log (securityfs binary_bios_measurements, a record's
    /// eventlog.bin).
    #[arg(long, value_name = "FILE", required_unless_present = "evidence")]
    pub eventlog: Option<PathBuf>,
    /// The nonce you handed the appliance, in hex. Required with separate files; with
    /// --evidence it defaults to the bundle's own nonce, which proves no freshness.
    #[arg(long, value_name = "HEX", required_unless_present = "evidence")]
    pub nonce: Option<String>,
    /// A hypervisor-mode quote made for this partition: its extraData must be
    /// SHA-256("VMSATQD1", caller, nonce) (docs/hypercalls.md). Default: the bundle's caller.
    #[arg(long, value_name = "NAME")]
    pub caller: Option<String>,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run a `vmseal attest` verb.
pub(crate) fn run(verb: AttestVerb) -> Result<(), Failure> {
    match verb {
        AttestVerb::Verify(a) => run_verify(a),
        AttestVerb::Serve(a) => run_serve(a),
        AttestVerb::Relay { server } => run_relay(&server),
    }
}

fn run_relay(server: &str) -> Result<(), Failure> {
    let stream = std::net::TcpStream::connect(server).map_err(|e| {
        bad(anyhow::anyhow!(
            "attest relay: {server}: cannot connect: {e}"
        ))
    })?;
    let mut to_server = stream
        .try_clone()
        .map_err(|e| bad(anyhow::anyhow!("attest relay: {e}")))?;
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_server);
        let _ = to_server.shutdown(std::net::Shutdown::Write);
    });
    let mut from_server = stream;
    let _ = std::io::copy(&mut from_server, &mut std::io::stdout().lock());
    drop(up);
    Ok(())
}

fn run_serve(a: ServeArgs) -> Result<(), Failure> {
    use vmseal::attest::serve::{Policy, Server, run};
    if a.policy.len() != a.secret.len() {
        return Err(bad(anyhow::anyhow!(
            "attest serve: {} --policy but {} --secret — give one --secret after each --policy",
            a.policy.len(),
            a.secret.len()
        )));
    }
    if a.nonce_ttl == 0 {
        return Err(bad(anyhow::anyhow!(
            "attest serve: --nonce-ttl 0 — give the seconds a nonce stays valid (e.g. 120)"
        )));
    }
    let policies = a
        .policy
        .iter()
        .zip(&a.secret)
        .map(|(p, s)| Policy::load(p, s))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(bad)?;
    let server = Server::new(policies, std::time::Duration::from_secs(a.nonce_ttl)).map_err(bad)?;
    let names = server.names().join(", ");
    run(server, &a.listen, a.threads, |addr| {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
        eprintln!("vmseal attest serve: listening on {addr}, policies {names}");
    })
    .map_err(bad)
}

fn run_verify(a: VerifyArgs) -> Result<(), Failure> {
    let evidence = match &a.evidence {
        Some(path) => Evidence::from_bundle(path).map_err(bad)?,
        None => {
            let (Some(quote), Some(signature), Some(ak), Some(eventlog), Some(nonce)) =
                (&a.quote, &a.signature, &a.ak, &a.eventlog, &a.nonce)
            else {
                return Err(bad(anyhow::anyhow!(
                    "attest verify: give --evidence FILE, or --quote, --signature, --ak, --eventlog and --nonce"
                )));
            };
            Evidence::from_files(
                Files {
                    quote,
                    signature,
                    ak,
                    eventlog,
                },
                nonce,
                a.caller.clone(),
            )
            .map_err(bad)?
        }
    };
    let nonce = match &a.nonce {
        Some(hex) => parse_nonce_hex(hex).map_err(bad)?,
        None => evidence.nonce.clone(),
    };
    let prediction = vmseal::measure::pcrs_json::PcrsFile::load(&a.prediction).map_err(|e| {
        use vmseal::measure::pcrs_json::PcrsJsonError;
        match e {
            // Already says how to fix it.
            PcrsJsonError::Json { .. } => bad(e),
            other => bad(anyhow::anyhow!(
                "{other} — give the prediction NAME.pcrs.json that `vmseal build` or `vmseal pcr predict --json` wrote"
            )),
        }
    })?;
    let caller = a.caller.as_deref().or(evidence.caller.as_deref());
    let label = a.prediction.display().to_string();
    let verdict = verify(
        &evidence,
        &prediction,
        &Expected {
            nonce: &nonce,
            caller,
            prediction: &label,
        },
    )
    .map_err(bad)?;
    let text = if a.json {
        serde_json::to_string_pretty(&verdict).unwrap_or_default() + "\n"
    } else if a.evidence.is_some() && a.nonce.is_none() {
        "note: the nonce is the bundle's own: this shows the quote is consistent, not that it is fresh — give --nonce HEX\n".to_string()
            + &render(&verdict)
    } else {
        render(&verdict)
    };
    print(&text);
    match verdict.reason {
        None => Ok(()),
        Some(reason) => Err(Failure {
            code: 1,
            error: anyhow::anyhow!("attest verify: mismatch: {reason}"),
        }),
    }
}
