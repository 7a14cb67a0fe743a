//! Playbook from the dominant reason and the customer's value.

use crate::{config::OutreachConfig, pb::Playbook, score::Score};

/// The mapping in `outreach.playbooks` applied to the largest reason;
/// `CHECK_IN` when there is no reason at all.
pub fn choose_playbook(score: &Score, lifetime_value: f64, cfg: &OutreachConfig) -> Playbook {
    let high_value = lifetime_value >= cfg.high_value;
    let m = &cfg.playbooks;
    match score.reasons.first().map(|r| r.code) {
        Some("silence") if high_value => m.silence_high_value,
        Some("silence") => m.silence,
        Some("rate_drop") if high_value => m.rate_drop_high_value,
        Some("rate_drop") => m.rate_drop,
        Some("satisfaction_drop") => m.satisfaction_drop,
        Some("friction") => m.friction,
        Some("escalation") => m.escalation,
        Some("renewal") => m.renewal,
        _ => Playbook::CheckIn,
    }
}
