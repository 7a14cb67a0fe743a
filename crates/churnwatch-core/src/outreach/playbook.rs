//! Playbook from the dominant reason and the customer's value.

use crate::{config::OutreachConfig, pb::Playbook, score::Score, vocabulary::ReasonCode};

/// The mapping in `outreach.playbooks` applied to the largest reason;
/// `CHECK_IN` when there is no reason at all.
pub fn choose_playbook(score: &Score, lifetime_value: f64, cfg: &OutreachConfig) -> Playbook {
    let high_value = lifetime_value >= cfg.high_value;
    let m = &cfg.playbooks;
    match score.reasons.first().map(|r| r.code) {
        Some(ReasonCode::Silence) if high_value => m.silence_high_value,
        Some(ReasonCode::Silence) => m.silence,
        Some(ReasonCode::RateDrop) if high_value => m.rate_drop_high_value,
        Some(ReasonCode::RateDrop) => m.rate_drop,
        Some(ReasonCode::SatisfactionDrop) => m.satisfaction_drop,
        Some(ReasonCode::Friction) => m.friction,
        Some(ReasonCode::Escalation) => m.escalation,
        Some(ReasonCode::Renewal) => m.renewal,
        None => Playbook::CheckIn,
    }
}
