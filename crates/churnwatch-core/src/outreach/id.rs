//! Deterministic outreach ids: the same customer, playbook and episode give
//! the same id in a replay or after a redelivery, so downstream deduplicates.

use sha2::{Digest, Sha256};

use crate::{pb::Playbook, time::Timestamp};

/// Hex of the first 16 bytes of SHA-256("<customer_id>\n<PLAYBOOK>\n<episode start unix>").
/// Documented so downstream can recompute it.
pub fn outreach_id(customer_id: &str, playbook: Playbook, episode_start: Timestamp) -> String {
    let mut h = Sha256::new();
    h.update(customer_id.as_bytes());
    h.update(b"\n");
    h.update(playbook.as_str_name().as_bytes());
    h.update(b"\n");
    h.update(episode_start.to_string().as_bytes());
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinguish_episodes() {
        let a = outreach_id("c1", Playbook::WinBack, 1_700_000_000);
        assert_eq!(a, outreach_id("c1", Playbook::WinBack, 1_700_000_000));
        assert_eq!(a.len(), 32);
        assert_ne!(a, outreach_id("c1", Playbook::WinBack, 1_700_000_001));
        assert_ne!(a, outreach_id("c1", Playbook::CheckIn, 1_700_000_000));
        assert_ne!(a, outreach_id("c2", Playbook::WinBack, 1_700_000_000));
    }
}
