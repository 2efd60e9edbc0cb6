//! What the stub takes from the sealed launch policy (`.vmseal`, `policies::launch`) before
//! launching: the decoded, validated policy, after checking it names the payload that is
//! actually present.
//!
//! Decisions (fail closed, never guess): a `.guest` needs a policy (its memory grant is
//! defined there); a policy that is present must decode, pass `validate`, and name the
//! present payload section; a `.linux` appliance may have no policy.

use core::fmt;
use policies::launch::LaunchPolicy;
use policies::record::Token;
use policies::sections;

/// Why the policy cannot be used (record words, no whitespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyFailure {
    /// A `.guest` appliance without `.vmseal`.
    Missing,
    /// `.vmseal` does not decode as a version-1 policy.
    Decode,
    /// `.vmseal` decodes but breaks vmseal's rules.
    Invalid,
    /// The policy's guest section is not the payload present in the image.
    SectionMismatch,
}

/// The record word (`error … status=`); `Display` writes the same.
impl Token for PolicyFailure {
    fn write_token<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        w.write_str(match self {
            Self::Missing => "policy-missing",
            Self::Decode => "policy-decode",
            Self::Invalid => "policy-invalid",
            Self::SectionMismatch => "policy-section-mismatch",
        })
    }
}

impl fmt::Display for PolicyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_token(f)
    }
}

/// Decode and check the policy against the present payload section (`.guest` or `.linux`);
/// `None` only for a Linux appliance without a policy.
pub fn sealed(policy: Option<&[u8]>, payload: &str) -> Result<Option<LaunchPolicy>, PolicyFailure> {
    let Some(bytes) = policy else {
        return if payload == sections::GUEST {
            Err(PolicyFailure::Missing)
        } else {
            Ok(None)
        };
    };
    let p = LaunchPolicy::decode(bytes).map_err(|_| PolicyFailure::Decode)?;
    p.validate().map_err(|_| PolicyFailure::Invalid)?;
    if p.guest.section != payload {
        return Err(PolicyFailure::SectionMismatch);
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use policies::launch::{Console, Devices, Partition, PayloadKind};

    fn policy(section: &str, kind: PayloadKind) -> Vec<u8> {
        LaunchPolicy {
            name: "t".into(),
            version: "1".into(),
            guest: Partition {
                name: "t".into(),
                kind,
                section: section.into(),
                memory: 16 << 20,
                base: if kind == PayloadKind::Elf {
                    0x400_0000
                } else {
                    0
                },
                devices: Devices::NONE,
                cpu_budget_ms: 0,
            },
            services: vec![],
            console: Console::On,
            channels: vec![],
        }
        .encode()
    }

    #[test]
    fn decisions() {
        let g = policy(".guest", PayloadKind::Elf);
        assert_eq!(
            sealed(Some(&g), ".guest").map(|p| p.map(|p| p.guest.memory)),
            Ok(Some(16 << 20))
        );
        assert_eq!(
            sealed(Some(&g), ".linux"),
            Err(PolicyFailure::SectionMismatch)
        );
        assert_eq!(sealed(None, ".guest"), Err(PolicyFailure::Missing));
        assert_eq!(sealed(None, ".linux"), Ok(None));
        assert_eq!(sealed(Some(b"junk"), ".guest"), Err(PolicyFailure::Decode));
        for n in 0..g.len() {
            assert!(sealed(Some(&g[..n]), ".guest").is_err());
        }
    }
}
