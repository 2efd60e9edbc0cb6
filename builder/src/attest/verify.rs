//! [`verify`]: evidence + prediction + the verifier's nonce → a [`Verdict`].
//!
//! A pure function (no files, no clock, no TPM): the CLI, the key-release server and tests
//! call it the same way. Every check runs, so a verdict shows all that is wrong; the first
//! failing check, in the order signature, ak, nonce, pcr-digest, events, is the
//! [`Verdict::reason`].

use std::collections::BTreeMap;

use policies::quote::{Attest, parse_attest, parse_signature};
use policies::replay::{NUM_PCRS, Pcrs};
use policies::tcg::HashAlg;
use serde::Serialize;

use super::evidence::Evidence;
use super::quote::{TpmKeyInfo, check_scheme, load_ak, verify_signature};
use super::{InputError, Source};
use crate::measure::pcrs_json::{LoggedEvent, PcrsFile, bank_name};
use crate::run::diff::{self, Side};

/// What the verifier expects, besides the prediction.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The nonce the verifier handed out (never the one the evidence claims, for freshness).
    pub nonce: &'a [u8],
    /// For a hypervisor-mode quote: the partition that must have asked for it. The quote's
    /// `extraData` is then `policies::attest::qualifying_data(caller, nonce)`.
    pub caller: Option<&'a str>,
    /// How to name the prediction in messages (its file).
    pub prediction: &'a str,
}

/// One check and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `signature`, `ak`, `nonce`, `pcr-digest` or `events`.
    pub check: &'static str,
    /// Whether it held.
    pub ok: bool,
    /// What was found, in words.
    pub detail: String,
    /// The PCR the failure is about (`events`: the first that differs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcr: Option<u32>,
}

/// One `TPMS_PCR_SELECTION` of the quote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// The bank.
    pub bank: String,
    /// The PCRs, ascending.
    pub pcrs: Vec<u32>,
}

/// What the quote says, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuoteFacts {
    /// `sigAlg/hash`, e.g. `ecdsa/sha256`.
    pub signature: String,
    /// `extraData`, hex.
    pub extra_data: String,
    /// `qualifiedSigner`, hex (not checked: it needs the AK's parent).
    pub qualified_signer: String,
    /// `clockInfo.clock`, ms.
    pub clock: u64,
    /// `clockInfo.resetCount`.
    pub reset_count: u32,
    /// `clockInfo.restartCount`.
    pub restart_count: u32,
    /// `clockInfo.safe`.
    pub safe: bool,
    /// `firmwareVersion`, hex.
    pub firmware_version: String,
    /// `pcrSelect`, in order.
    pub selection: Vec<Selection>,
    /// `pcrDigest`, hex.
    pub pcr_digest: String,
}

/// What the AK is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AkFacts {
    /// The form it came in: `TPM2B_PUBLIC`, `TPMT_PUBLIC`, `PEM`, `DER`.
    pub form: String,
    /// `ecc-p256` or `rsa-BITS`.
    pub kind: String,
    /// The TPM's attributes and Name, for a TPM form.
    pub tpm: Option<TpmKeyInfo>,
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// Every check held.
    pub matched: bool,
    /// The first failing check, `CHECK: DETAIL`.
    pub reason: Option<String>,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The prediction compared with.
    pub prediction: String,
    /// The verifier's nonce, hex.
    pub nonce: String,
    /// The partition the quote was expected for (hypervisor mode).
    pub caller: Option<String>,
    /// The quote.
    pub quote: QuoteFacts,
    /// The AK.
    pub ak: AkFacts,
    /// The quoted PCRs as the event log replays them, per bank.
    pub quoted_pcrs: BTreeMap<String, BTreeMap<u32, String>>,
    /// PCRs the prediction has (in a quoted bank) that the quote does not cover: not attested.
    pub unattested: Vec<u32>,
    /// Quoted PCRs the prediction does not have: not compared.
    pub unpredicted: Vec<u32>,
    /// The comparison of the quoted PCRs with the prediction, as `vmseal pcr diff` makes it.
    pub diff: diff::Report,
}

/// The `TPMS_ATTEST` bytes of `bytes`: as they are, or inside a `TPM2B_ATTEST` (size prefix).
fn attest_bytes(bytes: &[u8]) -> &[u8] {
    let magic = policies::quote::TPM_GENERATED_VALUE.to_be_bytes();
    match (bytes.get(..2), bytes.get(2..)) {
        (Some(size), Some(rest))
            if usize::from(u16::from_be_bytes([size[0], size[1]])) == rest.len()
                && rest.starts_with(&magic) =>
        {
            rest
        }
        _ => bytes,
    }
}

fn hexs(b: &[u8]) -> String {
    hex::encode(b)
}

/// Verify `evidence` against `prediction` for the verifier's `expected` nonce (and caller).
/// `Err` is input that cannot be verified (exit 2); a verdict that did not match is `Ok`.
pub fn verify(
    evidence: &Evidence,
    prediction: &PcrsFile,
    expected: &Expected<'_>,
) -> Result<Verdict, InputError> {
    let src = &evidence.sources;
    let quote_fix =
        "give the TPMS_ATTEST that `tpm2_quote -m` writes (the quoted bytes, unchanged)";
    let msg = attest_bytes(&evidence.quote);
    let attest =
        parse_attest(msg).map_err(|e| src.quote.error("TPMS_ATTEST", e.to_string(), quote_fix))?;
    let sig = parse_signature(&evidence.signature).map_err(|e| {
        src.signature.error(
            "TPMT_SIGNATURE",
            e.to_string(),
            "give the TPMT_SIGNATURE that `tpm2_quote -s` writes (its default tss format)",
        )
    })?;
    let ak = load_ak(&evidence.ak, &src.ak)?;
    check_scheme(&ak, &sig, &src.signature, &src.ak)?;
    let shown = crate::measure::eventlog::parse(&evidence.eventlog, &src.eventlog.label()).map_err(
        |e| {
            let problem = match &e {
                crate::measure::eventlog::EventlogError::Parse { source, .. } => source.to_string(),
                crate::measure::eventlog::EventlogError::Replay { source, .. } => {
                    format!("cannot replay: {source}")
                }
                other => other.to_string(),
            };
            src.eventlog.error(
                "event log",
                problem,
                "give the binary TCG2 event log of this boot (securityfs binary_bios_measurements, OVMF's log, a record's eventlog.bin)",
            )
        },
    )?;
    let quoted = quoted_values(&attest, &shown.pcrs, &src.quote, &src.eventlog)?;

    let mut checks = Vec::new();
    // 1. The signature over the TPMS_ATTEST (magic and type were checked by the parser).
    let signature = verify_signature(&ak, msg, &sig);
    checks.push(Check {
        check: "signature",
        ok: signature.is_ok(),
        detail: match &signature {
            Ok(()) => format!(
                "TPM_ST_ATTEST_QUOTE signed by the AK ({} {}, {})",
                ak.kind(),
                sig.alg.name().unwrap_or("?"),
                ak.form
            ),
            Err(why) => {
                format!("{why}: the quote was changed, or made by another key (another TPM)")
            }
        },
        pcr: None,
    });
    // 2. The AK: only a restricted signing key proves that the TPM made what it signed.
    checks.push(match &ak.tpm {
        Some(t) if !t.restricted_signing => Check {
            check: "ak",
            ok: false,
            detail: format!(
                "objectAttributes {} are not those of a restricted signing key: such a key signs any digest (TPM2_Sign), so its signature does not prove the TPM made the quote",
                t.attributes
            ),
            pcr: None,
        },
        Some(t) => Check {
            check: "ak",
            ok: true,
            detail: format!(
                "restricted signing key{}, Name {}",
                if t.fixed_tpm { ", fixedTPM" } else { "" },
                t.name.as_deref().unwrap_or("-")
            ),
            pcr: None,
        },
        None => Check {
            check: "ak",
            ok: true,
            detail: format!(
                "a {} public key: its TPM attributes are unknown — trusted as a restricted TPM key",
                ak.form
            ),
            pcr: None,
        },
    });
    // 3. The nonce (or what binds the caller to it).
    let want = match expected.caller {
        Some(c) => policies::attest::qualifying_data(c.as_bytes(), expected.nonce).to_vec(),
        None => expected.nonce.to_vec(),
    };
    let nonce_ok = attest.extra_data == want.as_slice();
    checks.push(Check {
        check: "nonce",
        ok: nonce_ok,
        detail: match (nonce_ok, expected.caller) {
            (true, None) => format!("extraData is the nonce {}", hexs(expected.nonce)),
            (true, Some(c)) => format!(
                "extraData binds caller {c:?} to the nonce {} (qualifying data {})",
                hexs(expected.nonce),
                hexs(&want)
            ),
            (false, None) => format!(
                "extraData {} is not the nonce {}: a replayed quote, one made for another verifier{}",
                hexs(attest.extra_data),
                hexs(expected.nonce),
                if attest.extra_data.len() == 32 {
                    ", or a hypervisor-mode quote (give --caller)"
                } else {
                    ""
                }
            ),
            (false, Some(c)) => format!(
                "extraData {} is not caller {c:?}'s qualifying data {} for the nonce {}: {}",
                hexs(attest.extra_data),
                hexs(&want),
                hexs(expected.nonce),
                if attest.extra_data == expected.nonce {
                    "it is the bare nonce (not a hypervisor-mode quote: leave out --caller)"
                } else {
                    "another caller asked for it, or another nonce (a replay)"
                }
            ),
        },
        pcr: None,
    });
    // 4. The log replays to the quoted PCR digest.
    let mut concat = Vec::new();
    for (_, _, v) in &quoted {
        concat.extend_from_slice(v);
    }
    let digest = policies::digest::hash(sig.hash, &concat).unwrap_or_default();
    let digest_ok = digest == attest.pcr_digest;
    let selection_text = selection_text(&attest);
    checks.push(Check {
        check: "pcr-digest",
        ok: digest_ok,
        detail: if digest_ok {
            format!("the event log replays to the quoted pcrDigest ({selection_text})")
        } else {
            format!(
                "the event log replays {selection_text} to digest {}, the quote's pcrDigest is {}: the log is not this TPM's boot, or is incomplete (quote only PCRs the firmware log covers; PCR 10 is IMA's)",
                hexs(&digest),
                hexs(attest.pcr_digest)
            )
        },
        pcr: None,
    });
    // 5. The quoted PCRs and their events against the prediction.
    let mut actual_pcrs = Pcrs::new();
    for (alg, i, v) in &quoted {
        let _ = actual_pcrs.set(*alg, *i, v.clone());
    }
    let expected_side = Side {
        origin: expected.prediction.to_string(),
        events: prediction.logged_events(),
        has_log: true,
        pcrs: prediction.pcr_values(),
        problems: Vec::new(),
        firmware: prediction
            .sources
            .get("firmware_code")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    };
    let quoted_banks: Vec<HashAlg> = {
        let mut b: Vec<HashAlg> = attest.pcr_select.iter().map(|(a, _)| a).collect();
        b.dedup();
        b
    };
    if !quoted_banks
        .iter()
        .any(|b| expected_side.pcrs.bank(*b).is_some())
    {
        return Err(InputError {
            file: expected.prediction.to_string(),
            field: "pcrs".into(),
            problem: format!(
                "no bank the quote selects ({}) is predicted (it has {})",
                quoted_banks
                    .iter()
                    .map(|b| bank_name(*b))
                    .collect::<Vec<_>>()
                    .join(", "),
                prediction.banks.join(", ")
            ),
            fix: "predict the quoted bank (`vmseal pcr predict --bank sha256`), or quote a predicted one".into(),
        });
    }
    let actual_side = Side {
        origin: src.eventlog.label(),
        events: shown
            .log
            .events
            .iter()
            .cloned()
            .map(LoggedEvent::new)
            .collect(),
        has_log: true,
        pcrs: actual_pcrs,
        problems: Vec::new(),
        firmware: None,
    };
    let report = diff::diff(&expected_side, &actual_side);
    let mut unattested = Vec::new();
    let mut unpredicted = Vec::new();
    for i in 0..NUM_PCRS as u32 {
        let predicted = quoted_banks
            .iter()
            .any(|b| expected_side.pcrs.get(*b, i).is_some());
        let is_quoted = quoted.iter().any(|(_, q, _)| *q == i);
        if predicted && !is_quoted {
            unattested.push(i);
        }
        if is_quoted && !predicted {
            unpredicted.push(i);
        }
    }
    checks.push(if report.pcrs_compared.is_empty() {
        Check {
            check: "events",
            ok: false,
            detail: format!(
                "none of the quoted PCRs ({selection_text}) is predicted: nothing was compared — quote the predicted PCRs"
            ),
            pcr: None,
        }
    } else if let Some(first) = report.differences.first() {
        // The first event that differs in each differing PCR: a changed section changes the
        // PE (PCR 4) and the GPT (PCR 5) too, and the later PCR says why.
        let detail: Vec<String> = report
            .differences
            .iter()
            .map(|d| {
                d.explanations
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("PCR {} differs from the prediction", d.pcr))
            })
            .collect();
        Check {
            check: "events",
            ok: false,
            detail: detail.join("; "),
            pcr: Some(first.pcr),
        }
    } else if let Some(p) = report.problems.first() {
        Check {
            check: "events",
            ok: false,
            detail: p.clone(),
            pcr: None,
        }
    } else {
        Check {
            check: "events",
            ok: true,
            detail: format!(
                "PCR {} ({}) equal the prediction, event for event",
                pcr_list(&report.pcrs_compared),
                report.banks.join(", ")
            ),
            pcr: None,
        }
    });

    let reason = checks
        .iter()
        .find(|c| !c.ok)
        .map(|c| format!("{}: {}", c.check, c.detail));
    let mut quoted_pcrs: BTreeMap<String, BTreeMap<u32, String>> = BTreeMap::new();
    for (alg, i, v) in &quoted {
        quoted_pcrs
            .entry(bank_name(*alg))
            .or_default()
            .insert(*i, hexs(v));
    }
    Ok(Verdict {
        matched: reason.is_none(),
        reason,
        checks,
        prediction: expected.prediction.to_string(),
        nonce: hexs(expected.nonce),
        caller: expected.caller.map(str::to_owned),
        quote: QuoteFacts {
            signature: format!("{}/{}", sig.alg.name().unwrap_or("?"), bank_name(sig.hash)),
            extra_data: hexs(attest.extra_data),
            qualified_signer: hexs(attest.qualified_signer),
            clock: attest.clock_info.clock,
            reset_count: attest.clock_info.reset_count,
            restart_count: attest.clock_info.restart_count,
            safe: attest.clock_info.safe,
            firmware_version: format!("{:#018x}", attest.firmware_version),
            selection: attest
                .pcr_select
                .iter()
                .map(|(a, s)| Selection {
                    bank: bank_name(a),
                    pcrs: s.iter().collect(),
                })
                .collect(),
            pcr_digest: hexs(attest.pcr_digest),
        },
        ak: AkFacts {
            form: ak.form.to_string(),
            kind: ak.kind(),
            tpm: ak.tpm.clone(),
        },
        quoted_pcrs,
        unattested,
        unpredicted,
        diff: report,
    })
}

/// The quoted `(bank, PCR, value)` triples, in the order the TPM hashed them, from the log's
/// replay. A bank vmseal cannot replay, or one the log lacks, is bad input.
fn quoted_values(
    attest: &Attest<'_>,
    replayed: &Pcrs,
    quote_src: &Source,
    log_src: &Source,
) -> Result<Vec<(HashAlg, u32, Vec<u8>)>, InputError> {
    let mut out = Vec::new();
    for (alg, set) in attest.pcr_select.iter() {
        if alg.digest_size().is_none() {
            return Err(quote_src.error(
                "TPMS_ATTEST.pcrSelect.hash",
                format!(
                    "bank {:#06x} is not one vmseal replays (sha1, sha256, sha384, sha512)",
                    alg.0
                ),
                "quote the sha256 bank (`tpm2_quote -l sha256:…`)",
            ));
        }
        if replayed.bank(alg).is_none() {
            return Err(log_src.error(
                "event log",
                format!(
                    "the quote selects {}, the log has no {} digests",
                    bank_name(alg),
                    bank_name(alg)
                ),
                "quote a bank the event log records (`tpm2_quote -l sha256:…`)",
            ));
        }
        for i in set.iter() {
            let v = replayed.get(alg, i).unwrap_or_default().to_vec();
            out.push((alg, i, v));
        }
    }
    if out.is_empty() {
        return Err(quote_src.error(
            "TPMS_ATTEST.pcrSelect",
            "selects no PCR: the quote attests nothing",
            "quote the predicted PCRs (`tpm2_quote -l sha256:0,1,2,3,4,5,6,7,…`)",
        ));
    }
    Ok(out)
}

/// `0-7, 9, 11-13`.
fn pcr_list(pcrs: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(&start) = pcrs.get(i) {
        let mut end = start;
        while pcrs.get(i + 1) == Some(&(end + 1)) {
            end += 1;
            i += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

fn selection_text(a: &Attest<'_>) -> String {
    a.pcr_select
        .iter()
        .map(|(alg, s)| {
            format!(
                "{} PCR {}",
                bank_name(alg),
                pcr_list(&s.iter().collect::<Vec<_>>())
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The text form of a verdict.
pub fn render(v: &Verdict) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "quote: {} by the AK ({} {}), {}; clock {} ms, reset count {}, restart count {}",
        v.quote.signature,
        v.ak.kind,
        v.ak.form,
        v.quote
            .selection
            .iter()
            .map(|x| format!("{} PCR {}", x.bank, pcr_list(&x.pcrs)))
            .collect::<Vec<_>>()
            .join("; "),
        v.quote.clock,
        v.quote.reset_count,
        v.quote.restart_count
    );
    for c in &v.checks {
        let _ = writeln!(
            s,
            "{} {:<10} {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.check,
            c.detail
        );
    }
    if !v.diff.differences.is_empty() {
        s.push_str(&diff::render(&v.diff));
    }
    if !v.unattested.is_empty() {
        let _ = writeln!(
            s,
            "note: PCR {} predicted but not quoted: not attested",
            pcr_list(&v.unattested)
        );
    }
    if !v.unpredicted.is_empty() {
        let _ = writeln!(
            s,
            "note: PCR {} quoted but not predicted: not compared",
            pcr_list(&v.unpredicted)
        );
    }
    let _ = writeln!(
        s,
        "{}",
        match &v.reason {
            None => format!("match: the quote attests the prediction {}", v.prediction),
            Some(r) => format!("mismatch: {r}"),
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::evidence::Sources;
    use p256::ecdsa::signature::Signer as _;
    use policies::eventlog::{Event, EventLog, SpecId};
    use policies::tcg::EventType;
    use sha2::{Digest as _, Sha256};

    /// Evidence made in software, byte by byte from TPM 2.0 Part 2: a two-event log, a
    /// TPMS_ATTEST over its sha256 PCR 0 and 7, signed by a P-256 key whose TPM2B_PUBLIC has
    /// the attributes of `tpm2_createak`'s AK; and the log's own prediction.
    fn software_evidence() -> (Evidence, PcrsFile) {
        let event = |pcr: u32, data: &[u8]| Event {
            pcr,
            event_type: EventType::SEPARATOR,
            digests: vec![(HashAlg::SHA256, Sha256::digest(data).to_vec())],
            data: data.to_vec(),
        };
        let log = EventLog {
            spec_id: SpecId::edk2(&[HashAlg::SHA256]),
            events: vec![event(0, &[0; 4]), event(7, &[0; 4])],
        };
        let pcrs = policies::replay::replay(&log).unwrap();
        let mut concat = Vec::new();
        for i in [0, 7] {
            concat.extend(pcrs.get(HashAlg::SHA256, i).unwrap());
        }
        let nonce = [0x5a; 16];
        let mut attest = vec![0xff, 0x54, 0x43, 0x47, 0x80, 0x18]; // magic, TPM_ST_ATTEST_QUOTE
        attest.extend([0x00, 0x22, 0x00, 0x0b]); // qualifiedSigner: SHA-256 name …
        attest.extend([0x11; 32]); // … of some parent and key
        attest.extend([0x00, 0x10]); // extraData: 16 bytes
        attest.extend(nonce);
        attest.extend(1234u64.to_be_bytes()); // clock
        attest.extend([0, 0, 0, 1, 0, 0, 0, 0, 1]); // resetCount, restartCount, safe
        attest.extend([0x20, 0x19, 0x10, 0x23, 0x00, 0x16, 0x36, 0x36]); // firmwareVersion
        attest.extend([0, 0, 0, 1, 0x00, 0x0b, 3, 0x81, 0, 0]); // sha256, PCR 0 and 7
        attest.extend([0x00, 0x20]);
        attest.extend(Sha256::digest(&concat)); // pcrDigest
        let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let sig: p256::ecdsa::Signature = key.sign(&attest);
        let mut signature = vec![0x00, 0x18, 0x00, 0x0b, 0x00, 0x20];
        signature.extend(sig.r().to_bytes());
        signature.extend([0x00, 0x20]);
        signature.extend(sig.s().to_bytes());
        let point = key.verifying_key().to_sec1_point(false);
        let mut ak = vec![
            0x00, 0x58, 0x00, 0x23, 0x00, 0x0b, 0x00, 0x05, 0x00, 0x72, 0x00, 0x00,
        ];
        ak.extend([
            0x00, 0x10, 0x00, 0x18, 0x00, 0x0b, 0x00, 0x03, 0x00, 0x10, 0x00, 0x20,
        ]);
        ak.extend(point.x().unwrap());
        ak.extend([0x00, 0x20]);
        ak.extend(point.y().unwrap());
        let src = |f: &str| Source::bundle("e.json", f);
        let evidence = Evidence {
            quote: attest,
            signature,
            ak,
            eventlog: log.serialize(),
            nonce: nonce.to_vec(),
            caller: None,
            sources: Sources {
                quote: src("quote"),
                signature: src("signature"),
                ak: src("ak"),
                eventlog: src("eventlog"),
                nonce: src("nonce"),
            },
        };
        let prediction = PcrsFile::from_log(&log, &pcrs, serde_json::Map::new());
        (evidence, prediction)
    }

    fn expected(nonce: &[u8]) -> Expected<'_> {
        Expected {
            nonce,
            caller: None,
            prediction: "p.json",
        }
    }

    #[test]
    fn software_evidence_matches_and_every_mutation_is_refused_without_a_panic() {
        let (ev, pred) = software_evidence();
        let v = verify(&ev, &pred, &expected(&ev.nonce)).unwrap();
        assert!(v.matched, "{:?}", v.reason);
        assert_eq!(
            v.unattested,
            [
                1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23
            ]
        );
        let v = verify(&ev, &pred, &expected(&[0x5b; 16])).unwrap();
        assert_eq!(
            v.checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.check)
                .collect::<Vec<_>>(),
            ["nonce"]
        );
        // Every byte flipped and every truncation of every part: an error or a verdict,
        // never a panic; a changed quote or signature never matches.
        for part in 0..4 {
            let bytes = |e: &Evidence| match part {
                0 => e.quote.clone(),
                1 => e.signature.clone(),
                2 => e.ak.clone(),
                _ => e.eventlog.clone(),
            };
            let set = |e: &mut Evidence, b: Vec<u8>| match part {
                0 => e.quote = b,
                1 => e.signature = b,
                2 => e.ak = b,
                _ => e.eventlog = b,
            };
            let n = bytes(&ev).len();
            for i in 0..n {
                for variant in 0..2 {
                    let mut e = ev.clone();
                    let mut b = bytes(&e);
                    if variant == 0 {
                        b[i] ^= 0xff;
                    } else {
                        b.truncate(i);
                    }
                    set(&mut e, b);
                    if let Ok(v) = verify(&e, &pred, &expected(&ev.nonce))
                        && part < 2
                    {
                        assert!(!v.matched, "part {part} byte {i} variant {variant}");
                    }
                }
            }
        }
    }

    #[test]
    fn pcr_lists_read_as_ranges() {
        assert_eq!(
            pcr_list(&[0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 13]),
            "0-7, 9, 11-13"
        );
        assert_eq!(pcr_list(&[]), "");
        assert_eq!(pcr_list(&[23]), "23");
    }

    #[test]
    fn a_tpm2b_attest_is_unwrapped_and_anything_else_kept() {
        let mut b = vec![0, 6, 0xff, 0x54, 0x43, 0x47, 0x80, 0x18];
        assert_eq!(attest_bytes(&b), &b[2..]);
        b[1] = 7;
        assert_eq!(attest_bytes(&b), &b[..]);
        assert_eq!(attest_bytes(&[0]), &[0]);
    }
}
