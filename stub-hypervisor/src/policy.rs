//! What the stub takes from the sealed launch policy (`.vmseal`, `policies::launch`) before
//! launching: the guest's memory grant size, after checking the policy names the payload
//! that is actually present.
//!
//! Decisions (fail closed, never guess): a `.guest` needs a policy (its memory grant is
//! defined there); a policy that is present must decode, pass `validate`, and name the
//! present payload section; a `.linux` appliance may have no policy.

use core::fmt;
use policies::launch::LaunchPolicy;
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

impl fmt::Display for PolicyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "policy-missing",
            Self::Decode => "policy-decode",
            Self::Invalid => "policy-invalid",
            Self::SectionMismatch => "policy-section-mismatch",
        })
    }
}

/// Check the policy against the present payload section (`.guest` or `.linux`); return the
/// guest's memory grant in bytes (`None` only for a Linux appliance without a policy).
pub fn guest_memory(policy: Option<&[u8]>, payload: &str) -> Result<Option<u64>, PolicyFailure> {
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
    Ok(Some(p.guest.memory))
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
        assert_eq!(guest_memory(Some(&g), ".guest"), Ok(Some(16 << 20)));
        assert_eq!(
            guest_memory(Some(&g), ".linux"),
            Err(PolicyFailure::SectionMismatch)
        );
        assert_eq!(guest_memory(None, ".guest"), Err(PolicyFailure::Missing));
        assert_eq!(guest_memory(None, ".linux"), Ok(None));
        assert_eq!(
            guest_memory(Some(b"junk"), ".guest"),
            Err(PolicyFailure::Decode)
        );
        for n in 0..g.len() {
            assert!(guest_memory(Some(&g[..n]), ".guest").is_err());
        }
    }
}
