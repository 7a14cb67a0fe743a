//! The channel to reach the customer on.

use crate::{config::OutreachConfig, pb::Channel, state::CustomerState};

/// The customer's preferred channel by recency-weighted use, among the
/// outreach channels they consent to; never the channel of their last
/// negative experience when another is possible; else the configured
/// fallback (if consented), else the first consented outreach channel.
/// `None` when no outreach channel is consented.
pub fn choose_channel(s: &CustomerState, cfg: &OutreachConfig) -> Option<Channel> {
    let consented: Vec<Channel> = cfg
        .channels
        .iter()
        .copied()
        .filter(|c| s.consent.allows(*c, cfg.assume_consent))
        .collect();
    if consented.is_empty() {
        return None;
    }
    let negative = s
        .support
        .as_ref()
        .and_then(|x| x.last_negative)
        .map(|n| n.channel);
    let allowed: Vec<Channel> = if consented.len() > 1 {
        consented
            .iter()
            .copied()
            .filter(|c| Some(*c) != negative)
            .collect()
    } else {
        consented.clone()
    };
    s.channels
        .preferred_among(allowed.iter().copied())
        .or_else(|| {
            allowed
                .contains(&cfg.fallback_channel)
                .then_some(cfg.fallback_channel)
        })
        .or_else(|| allowed.first().copied())
}
