//! The log template of a firmware profile (format 2): a real event log of one boot with the
//! events that depend on the appliance replaced by *slots* that `vmseal pcr predict` fills
//! from the image and the variable store.
//!
//! A log is cut as follows (`shared/reference/measured-boot.md` §B; the PCR 4/5/7 rules are
//! EDK2's `Tcg2Dxe.c`, `DxeImageVerificationLib.c`, `DxeTpm2MeasureBootLib.c`):
//!
//! | events | entry |
//! | --- | --- |
//! | PCR 0, 1, 2, 3, 6 (all) | [`Entry::Firmware`]: the next event of the profile's `events` |
//! | PCR 7 `EV_EFI_VARIABLE_DRIVER_CONFIG` of `SecureBoot`, `PK`, `KEK`, `db`, `dbx` (EFI global / image-security GUID) | one [`Entry::SecureBootPolicy`] per run, naming them in log order; `dbt` is not listed: it is measured when the store has it |
//! | after the last "Calling EFI Application from Boot Option": PCR 7 `EV_EFI_VARIABLE_AUTHORITY`, PCR 5 `EV_EFI_GPT_EVENT`, PCR 4 `EV_EFI_BOOT_SERVICES_APPLICATION`, and every event of PCR 8–23 | one [`Entry::Appliance`] where the first of them was; the others are dropped |
//! | PCR 8–23 before that | dropped (an OS measured them; nothing the firmware does) |
//! | anything else in PCR 4, 5, 7 (boot-attempt actions, separators, ExitBootServices actions, other variables, authorities of firmware drivers or of an earlier boot option) | [`Entry::Recorded`], as measured |
//!
//! So a boot order that tries another option first keeps its "Calling…/Returning from…" pair,
//! a firmware that measures no GPT has `gpt: false`, and PCR 7 variables a cloud firmware adds
//! stay as it measured them — while the appliance's own events are recomputed.

use policies::eventlog::{Event, Payload};
use policies::tcg::{EventType, pcr};
use serde::{Deserialize, Serialize};

use crate::measure::pcrs_json::{JsonEvent, LoggedEvent};

/// `EV_EFI_ACTION` at each ReadyToBoot (`Tcg2Dxe.c → OnReadyToBoot`).
pub const CALLING_BOOT_OPTION: &str = "Calling EFI Application from Boot Option";
/// `EV_EFI_ACTION` when an earlier boot option returned (`Tcg2Dxe.c → OnReadyToBoot`).
pub const RETURNING_BOOT_OPTION: &str = "Returning from EFI Application from Boot Option";
/// `EV_EFI_ACTION` at ExitBootServices (`Tcg2Dxe.c → OnExitBootServices`).
pub const EXIT_BOOT_SERVICES: &str = "Exit Boot Services Invocation";
/// `EV_EFI_ACTION` after a successful ExitBootServices.
pub const EXIT_BOOT_SERVICES_OK: &str = "Exit Boot Services Returned with Success";

/// `EFI_GLOBAL_VARIABLE` as it appears in a log (`SecureBoot`, `PK`, `KEK`).
const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// `EFI_IMAGE_SECURITY_DATABASE_GUID` as it appears in a log (`db`, `dbx`).
const IMAGE_SECURITY: &str = "d719b2cb-3d3a-4596-a3bc-dad00e67656f";

/// The Secure Boot policy variables a slot may name, with their vendor GUID.
pub const POLICY_VARIABLES: [(&str, &str); 5] = [
    ("SecureBoot", GLOBAL),
    ("PK", GLOBAL),
    ("KEK", GLOBAL),
    ("db", IMAGE_SECURITY),
    ("dbx", IMAGE_SECURITY),
];

/// One entry of a template (JSON: `"firmware"`, `{"recorded": EVENT}`,
/// `{"secure_boot_policy": ["SecureBoot", …]}`, `{"appliance": {"gpt": true}}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// The next event of the profile's `events` (PCR 0, 1, 2, 3, 6).
    Firmware,
    /// A PCR 4, 5 or 7 event the firmware measures whatever the appliance is.
    Recorded(JsonEvent),
    /// The named Secure Boot policy variables ([`POLICY_VARIABLES`]), in this order, measured
    /// from the appliance's variable store, then `dbt` if the store has it.
    SecureBootPolicy(Vec<String>),
    /// The appliance's events: the db authority of BOOTX64.EFI (Secure Boot on), the GPT
    /// (when `gpt`), BOOTX64.EFI, the stub's PCR 11/12/13 events, the kernel's authority and
    /// load, Linux PCR 9.
    Appliance {
        /// The firmware measured the boot disk's GPT (`EV_EFI_GPT_EVENT`).
        gpt: bool,
    },
}

/// A template resolved for some banks: events as they go into the prediction, and the slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// An event of the firmware, as recorded.
    Event(LoggedEvent),
    /// [`Entry::SecureBootPolicy`].
    SecureBootPolicy(Vec<String>),
    /// [`Entry::Appliance`].
    Appliance {
        /// The firmware measures the GPT.
        gpt: bool,
    },
}

/// The text of an `EV_EFI_ACTION`.
pub fn action_text(e: &Event) -> Option<String> {
    match e.describe() {
        Payload::Text { text, .. } if e.event_type == EventType::EFI_ACTION => Some(text),
        _ => None,
    }
}

/// The name of a Secure Boot policy variable measured by `e`, if it is one.
fn policy_variable(e: &Event) -> Option<String> {
    if e.pcr != pcr::SECURE_BOOT_POLICY || e.event_type != EventType::EFI_VARIABLE_DRIVER_CONFIG {
        return None;
    }
    match e.describe() {
        Payload::Variable { guid, name, .. } => POLICY_VARIABLES
            .iter()
            .any(|(n, g)| *n == name && *g == guid.to_string())
            .then_some(name),
        _ => None,
    }
}

/// Whether `e` (after the last "Calling…") is one of the appliance's events.
fn is_appliance(e: &Event) -> bool {
    e.pcr >= 8
        || (e.pcr == pcr::SECURE_BOOT_POLICY && e.event_type == EventType::EFI_VARIABLE_AUTHORITY)
        || (e.pcr == pcr::BOOT_LOADER_CONFIG
            && [EventType::EFI_GPT_EVENT, EventType::EFI_GPT_EVENT2].contains(&e.event_type))
        || (e.pcr == pcr::BOOT_LOADER_CODE
            && e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
}

/// What a log gives a profile: the firmware's events (PCR 0, 1, 2, 3, 6, log order) and the
/// template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The events of PCR 0, 1, 2, 3, 6.
    pub firmware: Vec<Event>,
    /// The template.
    pub entries: Vec<Entry>,
    /// The appliance's events that were cut out, in log order (what the slot stands for).
    pub appliance: Vec<Event>,
}

/// Cut a log's events into a template (see the module docs). `None` when the log shows no
/// appliance boot (no image load after the last "Calling EFI Application from Boot Option").
pub fn cut(events: &[Event]) -> Option<Cut> {
    let last_call = events
        .iter()
        .rposition(|e| {
            e.pcr == pcr::BOOT_LOADER_CODE && action_text(e).as_deref() == Some(CALLING_BOOT_OPTION)
        })
        .map_or(0, |i| i + 1);
    let booted = events.iter().skip(last_call).any(|e| {
        e.pcr == pcr::BOOT_LOADER_CODE && e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION
    });
    if !booted {
        return None;
    }
    let mut out = Cut {
        firmware: Vec::new(),
        entries: Vec::new(),
        appliance: Vec::new(),
    };
    let mut slot_at = None;
    for (i, e) in events.iter().enumerate() {
        if super::FIRMWARE_PCRS.contains(&e.pcr) {
            out.firmware.push(e.clone());
            out.entries.push(Entry::Firmware);
        } else if let Some(name) = policy_variable(e) {
            match out.entries.last_mut() {
                Some(Entry::SecureBootPolicy(v)) => v.push(name),
                _ => out.entries.push(Entry::SecureBootPolicy(vec![name])),
            }
        } else if i >= last_call && is_appliance(e) {
            out.appliance.push(e.clone());
            if slot_at.is_none() {
                slot_at = Some(out.entries.len());
                out.entries.push(Entry::Appliance { gpt: false });
            }
        } else if e.pcr >= 8 {
            // Measured by an OS before the last boot attempt: not the firmware's.
        } else {
            out.entries
                .push(Entry::Recorded(JsonEvent::from_event(&LoggedEvent::new(
                    e.clone(),
                ))));
        }
    }
    let gpt = out.appliance.iter().any(|e| {
        e.pcr == pcr::BOOT_LOADER_CONFIG
            && [EventType::EFI_GPT_EVENT, EventType::EFI_GPT_EVENT2].contains(&e.event_type)
    });
    if let Some(Entry::Appliance { gpt: g }) = slot_at.and_then(|i| out.entries.get_mut(i)) {
        *g = gpt;
    }
    Some(out)
}

/// Fill resolved steps: events as they are, each slot by `fill`. The result is in log order.
pub fn fill<E>(
    steps: &[Step],
    mut fill: impl FnMut(&Step) -> Result<Vec<LoggedEvent>, E>,
) -> Result<Vec<LoggedEvent>, E> {
    let mut out = Vec::new();
    for s in steps {
        match s {
            Step::Event(e) => out.push(e.clone()),
            slot => out.extend(fill(slot)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use policies::tcg::HashAlg;

    fn ev(pcr: u32, t: EventType, data: &[u8]) -> Event {
        Event {
            pcr,
            event_type: t,
            digests: vec![(
                HashAlg::SHA256,
                policies::digest::hash(HashAlg::SHA256, data).unwrap(),
            )],
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_log_without_an_image_after_the_last_boot_attempt_has_no_template() {
        let call = ev(4, EventType::EFI_ACTION, CALLING_BOOT_OPTION.as_bytes());
        let img = ev(4, EventType::EFI_BOOT_SERVICES_APPLICATION, &[0; 32]);
        assert!(cut(&[img.clone(), call.clone()]).is_none());
        assert!(cut(&[]).is_none());
        let c = cut(&[call, img.clone(), ev(12, EventType::IPL, b"x")]).unwrap();
        assert_eq!(c.appliance.len(), 2);
        assert_eq!(
            c.entries,
            vec![
                Entry::Recorded(JsonEvent::from_event(&LoggedEvent::new(ev(
                    4,
                    EventType::EFI_ACTION,
                    CALLING_BOOT_OPTION.as_bytes()
                )))),
                Entry::Appliance { gpt: false }
            ]
        );
    }

    #[test]
    fn entries_have_a_readable_json_form() {
        let e = vec![
            Entry::Firmware,
            Entry::SecureBootPolicy(vec!["SecureBoot".into()]),
            Entry::Appliance { gpt: true },
        ];
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"["firmware",{"secure_boot_policy":["SecureBoot"]},{"appliance":{"gpt":true}}]"#
        );
        assert_eq!(serde_json::from_str::<Vec<Entry>>(&s).unwrap(), e);
    }
}
