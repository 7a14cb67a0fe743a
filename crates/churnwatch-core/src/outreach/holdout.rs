//! The randomised control group: which decisions are held out.
//!
//! A decision is held out when `u < share(playbook)`, where `u` in [0, 1) is
//! read from a keyed hash of the customer and the episode:
//! SHA-256("<outreach.holdout.key>\n<customer_id>\n<episode>"), its first 8
//! bytes as a big-endian integer, top 53 bits divided by 2^53. The episode
//! is the customer's decision sequence number (decisions so far, sent or
//! held out: 0 for the first). So the assignment is uniform, independent of
//! risk, playbook and time, and depends on nothing but the customer's state
//! and the configuration: the same in `replay`, after a restart or a
//! rebalance, and recomputable by anyone who knows the key.

use sha2::{Digest, Sha256};

use crate::{config::HoldoutConfig, pb::Playbook};

/// The uniform draw in [0, 1) of this customer's `episode`.
pub fn draw(key: &str, customer_id: &str, episode: u32) -> f64 {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update(b"\n");
    h.update(customer_id.as_bytes());
    h.update(b"\n");
    h.update(episode.to_string().as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether this decision goes to the control group.
pub fn is_held_out(
    cfg: &HoldoutConfig,
    customer_id: &str,
    episode: u32,
    playbook: Playbook,
) -> bool {
    let share = cfg.share(playbook);
    share > 0.0 && draw(&cfg.key, customer_id, episode) < share
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held out in a large population within a binomial bound: with
    /// n = 100 000 and p = 0.15 the standard deviation is 113, so 5 s.d.
    /// (a false alarm about once in 3.5 million) allows +/- 565.
    #[test]
    fn the_share_is_respected_within_a_binomial_bound() {
        let cfg = HoldoutConfig {
            default: 0.15,
            win_back: Some(0.4),
            ..HoldoutConfig::default()
        };
        let n = 100_000u32;
        for (playbook, p) in [(Playbook::CheckIn, 0.15), (Playbook::WinBack, 0.4)] {
            let held = (0..n)
                .filter(|i| is_held_out(&cfg, &format!("c-{i:06}"), 0, playbook))
                .count() as f64;
            let mean = f64::from(n) * p;
            let sd = (f64::from(n) * p * (1.0 - p)).sqrt();
            assert!(
                (held - mean).abs() < 5.0 * sd,
                "{playbook:?}: {held} vs {mean} +/- {sd}"
            );
        }
    }

    /// Episodes of one customer are independent draws: over 20 000
    /// customers' first and second episodes at 50%, both held out about a
    /// quarter of the time (5 s.d. = 306).
    #[test]
    fn episodes_are_independent_draws() {
        let cfg = HoldoutConfig {
            default: 0.5,
            ..HoldoutConfig::default()
        };
        let n = 20_000u32;
        let both = (0..n)
            .filter(|i| {
                let c = format!("cust-{i}");
                is_held_out(&cfg, &c, 0, Playbook::CheckIn)
                    && is_held_out(&cfg, &c, 1, Playbook::CheckIn)
            })
            .count() as f64;
        let sd = (f64::from(n) * 0.25 * 0.75).sqrt();
        assert!((both - f64::from(n) / 4.0).abs() < 5.0 * sd, "{both}");
    }

    #[test]
    fn zero_disables_and_the_key_draws_a_new_group() {
        let off = HoldoutConfig::default();
        assert!((0..1000).all(|i| !is_held_out(&off, &format!("c{i}"), 0, Playbook::CheckIn)));
        let a: Vec<bool> = (0..200)
            .map(|i| draw("k1", &format!("c{i}"), 0) < 0.5)
            .collect();
        let b: Vec<bool> = (0..200)
            .map(|i| draw("k2", &format!("c{i}"), 0) < 0.5)
            .collect();
        assert_eq!(
            a,
            (0..200)
                .map(|i| draw("k1", &format!("c{i}"), 0) < 0.5)
                .collect::<Vec<_>>()
        );
        assert_ne!(a, b);
    }
}
