//! `vmseal attest serve`: the key-release server. It hands out nonces, checks what an appliance
//! sends against the prediction (policy) it names, and releases that policy's secret only to
//! the TPM that quoted — wrapped under a credential that only that TPM can activate.
//!
//! The HTTP API (JSON bodies; `docs/attestation.md` has the full description):
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /v1/policies` | `{"policies": ["NAME", …]}` |
//! | `POST /v1/nonce` `{"policy": NAME}` | `{"policy", "nonce": b64 (32 bytes), "expires_in_seconds"}` |
//! | `POST /v1/attest` `{"policy", "evidence": BUNDLE, "ek": b64 TPM2B_PUBLIC}` | 200 `{"released": true, "credential": {…}, "secret": {…}}`, 403 `{"released": false, "reason"}`, 400 `{"error"}` |
//!
//! The order of the checks of `/v1/attest`: the policy exists; the bundle's nonce is one this
//! server issued for that policy, unused and unexpired (it is used up now, whatever follows);
//! the EK is an EK; the AK is a TPM key (`TPM2B_PUBLIC`, to compute its Name) that is
//! restricted, signing and `fixedTPM`; [`super::verify()`] against the policy's prediction
//! matches; every PCR the prediction has events in was quoted. Then a fresh 32-byte credential goes
//! through [`credential::make_credential`] to (EK, Name(AK)), and the secret is sealed under
//! it ([`credential::wrap_secret`]).
//!
//! State: the policies and secrets read at start, and the outstanding nonces **in memory**
//! (each with its expiry, at most [`MAX_OUTSTANDING`]). Nothing is written anywhere, so a crash
//! or `kill -9` loses only the nonces in flight (their appliances ask again) and the server
//! restarts as it started. Each decision is one line on stderr — the client's address, the
//! policy, the outcome and its reason (a refusal names the check, and for `events` the PCR and
//! the event as `vmseal pcr diff` does). The secret is never logged, and a refusal carries
//! nothing of it.

use axum::response::IntoResponse as _;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::credential::{self, Ek};
use super::evidence::Evidence;

use super::quote::load_ak;
use super::verify::{Expected, verify};
use crate::measure::pcrs_json::PcrsFile;

/// The bytes of a nonce the server hands out.
pub const NONCE_BYTES: usize = 32;
/// Nonces outstanding at once; beyond that, expired ones are dropped, then new requests wait
/// (503) — an attacker who floods `/v1/nonce` cannot evict a real appliance's nonce.
pub const MAX_OUTSTANDING: usize = 65_536;
/// The largest secret served.
pub const MAX_SECRET_BYTES: u64 = 64 << 10;
/// The largest request body read: an evidence bundle and an EK. Real event logs are tens of
/// KiB; `attest verify` reads bundles up to [`MAX_BUNDLE_BYTES`](super::evidence::MAX_BUNDLE_BYTES) from files, the server less,
/// so that a client cannot make it hold that much per request.
pub const MAX_BODY_BYTES: u64 = 4 << 20;

/// A secret's bytes; `Debug` does not show them.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// One appliance: its name, its prediction and its secret.
#[derive(Debug)]
pub struct Policy {
    /// What clients name it by.
    pub name: String,
    /// The prediction file.
    pub file: PathBuf,
    /// The prediction.
    pub prediction: PcrsFile,
    secret: Secret,
}

/// A policy's name from `NAME=PATH`, or from the file name (`app.pcrs.json` → `app`).
pub fn policy_name(spec: &str) -> (String, PathBuf) {
    if let Some((name, path)) = spec.split_once('=')
        && !name.is_empty()
        && !name.contains('/')
    {
        return (name.to_string(), PathBuf::from(path));
    }
    let path = PathBuf::from(spec);
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = file
        .strip_suffix(".pcrs.json")
        .or_else(|| file.strip_suffix(".json"))
        .unwrap_or(&file)
        .to_string();
    (name, path)
}

impl Policy {
    /// Read `--policy SPEC` (`NAME=PATH` or `PATH`) and its `--secret FILE`. The error is one
    /// line naming the file and the fix.
    pub fn load(spec: &str, secret: &Path) -> anyhow::Result<Self> {
        let (name, file) = policy_name(spec);
        if name.is_empty() {
            anyhow::bail!("--policy {spec}: no name — give NAME.pcrs.json or NAME=FILE");
        }
        let prediction = PcrsFile::load(&file).map_err(|e| {
            anyhow::anyhow!(
                "--policy {}: {e} — give the prediction NAME.pcrs.json that `vmseal build` wrote",
                file.display()
            )
        })?;
        let meta = std::fs::metadata(secret).map_err(|e| {
            anyhow::anyhow!(
                "--secret {}: cannot read: {e} — give the file of the secret to release",
                secret.display()
            )
        })?;
        if !meta.is_file() || meta.len() == 0 || meta.len() > MAX_SECRET_BYTES {
            anyhow::bail!(
                "--secret {}: {} bytes — give a file of 1 to {MAX_SECRET_BYTES} bytes",
                secret.display(),
                meta.len()
            );
        }
        let bytes = std::fs::read(secret).map_err(|e| {
            anyhow::anyhow!(
                "--secret {}: cannot read: {e} — give the file of the secret to release",
                secret.display()
            )
        })?;
        Ok(Self {
            name,
            file,
            prediction,
            secret: Secret(bytes),
        })
    }
}

struct Issued {
    policy: String,
    expires: Instant,
}

/// The server's state: policies (read-only) and the outstanding nonces.
pub struct Server {
    policies: BTreeMap<String, Policy>,
    nonces: Mutex<HashMap<[u8; NONCE_BYTES], Issued>>,
    ttl: Duration,
}

/// An answer: HTTP status, JSON body, and the decision's log line (without the client).
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
    /// What the log says about it.
    pub log: String,
}

impl Reply {
    fn error(status: u16, msg: impl Into<String>) -> Self {
        let msg = msg.into();
        Self {
            status,
            log: format!("bad request ({status}): {msg}"),
            body: json!({ "error": msg }),
        }
    }

    fn refused(policy: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            status: 403,
            log: format!("policy={policy} refused: {reason}"),
            body: json!({ "released": false, "reason": reason }),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Server {
    /// A server for `policies` (names unique), nonces valid for `ttl`.
    pub fn new(policies: Vec<Policy>, ttl: Duration) -> anyhow::Result<Self> {
        let mut map = BTreeMap::new();
        for p in policies {
            if let Some(old) = map.get(&p.name).map(|o: &Policy| o.file.clone()) {
                anyhow::bail!(
                    "--policy {}: the name {:?} is taken by {} — name one of them: --policy OTHER={}",
                    p.file.display(),
                    p.name,
                    old.display(),
                    p.file.display()
                );
            }
            map.insert(p.name.clone(), p);
        }
        if map.is_empty() {
            anyhow::bail!("attest serve: no --policy — give --policy NAME.pcrs.json --secret FILE");
        }
        Ok(Self {
            policies: map,
            nonces: Mutex::new(HashMap::new()),
            ttl,
        })
    }

    /// The policies' names.
    pub fn names(&self) -> Vec<String> {
        self.policies.keys().cloned().collect()
    }

    /// Answer one request. Never panics, whatever the bytes.
    pub fn handle(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let path = path.split('?').next().unwrap_or_default();
        match (method, path) {
            ("GET", "/v1/policies") => Reply {
                status: 200,
                body: json!({ "policies": self.names() }),
                log: "policies listed".into(),
            },
            ("POST", "/v1/nonce") => self.nonce(body),
            ("POST", "/v1/attest") => self.attest(body),
            (_, "/v1/policies" | "/v1/nonce" | "/v1/attest") => {
                Reply::error(405, format!("{method} {path}: not allowed"))
            }
            _ => Reply::error(
                404,
                format!(
                    "{method} {path}: no such endpoint (POST /v1/nonce, POST /v1/attest, GET /v1/policies)"
                ),
            ),
        }
    }

    fn body_json(body: &[u8]) -> Result<serde_json::Map<String, Value>, Reply> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => Ok(o),
            Ok(_) => Err(Reply::error(400, "the body is not a JSON object")),
            Err(e) => Err(Reply::error(400, format!("the body is not JSON: {e}"))),
        }
    }

    fn policy<'a>(
        &'a self,
        o: &serde_json::Map<String, Value>,
    ) -> Result<(&'a str, &'a Policy), Reply> {
        let Some(Value::String(name)) = o.get("policy") else {
            return Err(Reply::error(
                400,
                "\"policy\": missing or not a string — name the appliance's policy (GET /v1/policies)",
            ));
        };
        match self.policies.get_key_value(name) {
            Some((k, p)) => Ok((k.as_str(), p)),
            None => {
                let shown: String = name.chars().take(64).collect();
                Err(Reply::error(
                    404,
                    format!("\"policy\": no policy {shown:?} here (GET /v1/policies)"),
                ))
            }
        }
    }

    fn nonce(&self, body: &[u8]) -> Reply {
        let o = match Self::body_json(body) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let (name, _) = match self.policy(&o) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let nonce = match credential::random::<NONCE_BYTES>() {
            Ok(n) => n,
            Err(e) => return Reply::error(500, e),
        };
        let now = Instant::now();
        let mut nonces = self
            .nonces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if nonces.len() >= MAX_OUTSTANDING {
            nonces.retain(|_, v| v.expires > now);
        }
        if nonces.len() >= MAX_OUTSTANDING {
            return Reply::error(
                503,
                format!("{MAX_OUTSTANDING} nonces outstanding — try again later"),
            );
        }
        nonces.insert(
            nonce,
            Issued {
                policy: name.to_string(),
                expires: now + self.ttl,
            },
        );
        Reply {
            status: 200,
            body: json!({
                "policy": name,
                "nonce": b64(&nonce),
                "expires_in_seconds": self.ttl.as_secs(),
            }),
            log: format!("policy={name} nonce issued"),
        }
    }

    /// Take `nonce` out of the outstanding set: `Err` is why it is not usable.
    fn use_nonce(&self, nonce: &[u8], policy: &str) -> Result<(), String> {
        let key: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| {
            format!(
                "nonce: {} bytes, this server's nonces have {NONCE_BYTES} — quote a nonce from POST /v1/nonce",
                nonce.len()
            )
        })?;
        let issued = self
            .nonces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
        match issued {
            None => Err(
                "nonce: not issued by this server, or already used (a replay) — quote a fresh nonce from POST /v1/nonce"
                    .into(),
            ),
            Some(i) if i.expires <= Instant::now() => Err(format!(
                "nonce: expired (valid {} s) — quote a fresh nonce from POST /v1/nonce",
                self.ttl.as_secs()
            )),
            Some(i) if i.policy != policy => Err(format!(
                "nonce: issued for policy {:?}, not {policy:?} — ask for a nonce for the policy you attest to",
                i.policy
            )),
            Some(_) => Ok(()),
        }
    }

    fn attest(&self, body: &[u8]) -> Reply {
        let o = match Self::body_json(body) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let (name, policy) = match self.policy(&o) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let Some(bundle) = o.get("evidence") else {
            return Reply::error(
                400,
                "\"evidence\": missing — send the evidence bundle (quote, signature, ak, eventlog, nonce)",
            );
        };
        let evidence = match serde_json::to_vec(bundle)
            .map_err(|e| e.to_string())
            .and_then(|b| Evidence::parse_bundle(&b, "request").map_err(|e| e.to_string()))
        {
            Ok(e) => e,
            Err(e) => return Reply::error(400, format!("\"evidence\": {e}")),
        };
        // The nonce is used up here, whatever follows: a second try needs a new one.
        if let Err(why) = self.use_nonce(&evidence.nonce, name) {
            return Reply::refused(name, why);
        }
        let ek = match o.get("ek").and_then(Value::as_str).map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| format!("not base64: {e}"))
                .and_then(|b| Ek::parse(&b))
        }) {
            None => {
                return Reply::error(
                    400,
                    "\"ek\": missing — send the EK's TPM2B_PUBLIC in base64 (tpm2_createek -u)",
                );
            }
            Some(Err(e)) => {
                return Reply::error(
                    400,
                    format!("\"ek\": {e} — send the EK's TPM2B_PUBLIC (tpm2_createek -u)"),
                );
            }
            Some(Ok(ek)) => ek,
        };
        let ak = match load_ak(&evidence.ak, &evidence.sources.ak) {
            Ok(ak) => ak,
            Err(e) => return Reply::error(400, e.to_string()),
        };
        let ak_name = match &ak.tpm {
            Some(t) if !t.restricted_signing => {
                return Reply::refused(
                    name,
                    format!(
                        "ak: objectAttributes {} are not a restricted signing key — quote with an AK (tpm2_createak)",
                        t.attributes
                    ),
                );
            }
            Some(t) if !t.fixed_tpm => {
                return Reply::refused(
                    name,
                    format!(
                        "ak: objectAttributes {}: not fixedTPM, the key could live outside a TPM",
                        t.attributes
                    ),
                );
            }
            Some(t) => t.name.as_deref().and_then(|n| hex::decode(n).ok()),
            None => None,
        };
        let Some(ak_name) = ak_name else {
            return Reply::error(
                400,
                format!(
                    "request: evidence: ak: a {} key has no TPM Name to make a credential for — send the AK's TPM2B_PUBLIC (tpm2_createak -u)",
                    ak.form
                ),
            );
        };
        let verdict = match verify(
            &evidence,
            &policy.prediction,
            &Expected {
                nonce: &evidence.nonce,
                caller: evidence.caller.as_deref(),
                prediction: name,
            },
        ) {
            Ok(v) => v,
            Err(e) => return Reply::error(400, e.to_string()),
        };
        if let Some(reason) = verdict.reason {
            return Reply::refused(name, reason);
        }
        // Every PCR the prediction has events in must be quoted (a prediction from a whole
        // log lists the untouched PCRs too; their reset values prove nothing).
        let measured: std::collections::BTreeSet<u32> =
            policy.prediction.events.iter().map(|e| e.pcr).collect();
        let missing: Vec<String> = verdict
            .unattested
            .iter()
            .filter(|p| measured.contains(p))
            .map(u32::to_string)
            .collect();
        if !missing.is_empty() {
            let list = missing;
            return Reply::refused(
                name,
                format!(
                    "events: PCR {} predicted but not quoted — quote every PCR of the prediction",
                    list.join(",")
                ),
            );
        }
        let released = credential::random::<{ credential::CREDENTIAL_BYTES }>().and_then(|cred| {
            let c = credential::make_credential(&ek, &ak_name, &cred)?;
            let (iv, ct) = credential::wrap_secret(&cred, &evidence.nonce, &policy.secret.0)?;
            Ok((c, iv, ct))
        });
        match released {
            Ok((c, iv, ct)) => Reply {
                status: 200,
                log: format!(
                    "policy={name} released: the quote matches ({}), ek {} {}, ak {}",
                    policy.file.display(),
                    ek.kind(),
                    ek.name,
                    hex::encode(&ak_name)
                ),
                body: json!({
                    "released": true,
                    "policy": name,
                    "credential": {
                        "id_object": b64(&c.id_object),
                        "encrypted_secret": b64(&c.encrypted_secret),
                        "tpm2_tools_blob": b64(&c.tpm2_tools_blob()),
                    },
                    "secret": {
                        "alg": "A256GCM",
                        "iv": b64(&iv),
                        "ciphertext": b64(&ct),
                    },
                }),
            },
            Err(e) => Reply::error(500, e),
        }
    }
}

/// Serve `server` on `listen` until killed; `bound` is told the address (with the port the
/// OS chose for `:0`). `threads` worker threads answer requests.
///
/// HTTP/1 by axum (hyper + tokio). A body over [`MAX_BODY_BYTES`] is refused with 413 as it
/// streams in, whatever its `Content-Length` says; nothing is buffered beyond the limit.
pub fn run(
    server: Server,
    listen: &str,
    threads: usize,
    bound: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_io()
        .build()
        .map_err(|e| anyhow::anyhow!("attest serve: cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            anyhow::anyhow!("--listen {listen}: cannot listen: {e} — give a free HOST:PORT")
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| anyhow::anyhow!("--listen {listen}: {e} — give HOST:PORT"))?;
        bound(addr);
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(std::sync::Arc::new(server));
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("attest serve: {e}"))
    })
}

async fn answer(
    axum::extract::State(server): axum::extract::State<std::sync::Arc<Server>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> axum::response::Response {
    let limit = usize::try_from(MAX_BODY_BYTES).unwrap_or(usize::MAX);
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_big = || Reply::error(413, format!("a body over {MAX_BODY_BYTES} bytes"));
    let reply = if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        too_big()
    } else {
        match axum::body::to_bytes(body, limit).await {
            // Verification is CPU work (signature, replay): off the I/O threads. A panic in
            // it (there should be none) costs this request a 500, not the server.
            Ok(body) => {
                let (s, m, p) = (server.clone(), method.to_string(), uri.path().to_string());
                tokio::task::spawn_blocking(move || s.handle(&m, &p, &body))
                    .await
                    .unwrap_or_else(|e| Reply::error(500, format!("the request failed: {e}")))
            }
            // Cut short, or (chunked, without a length) over the limit.
            Err(e) => Reply::error(
                400,
                format!("cannot read the body (at most {MAX_BODY_BYTES} bytes): {e}"),
            ),
        }
    };
    // One line per decision; the path is the client's, so only its printable start.
    let shown: String = uri
        .path()
        .chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    eprintln!(
        "vmseal attest serve: {peer} {method} {shown} {}: {}",
        reply.status, reply.log
    );
    let status = axum::http::StatusCode::from_u16(reply.status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&reply.body).unwrap_or_default(),
    )
        .into_response()
}
