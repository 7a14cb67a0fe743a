//! Why an outreach is held back. Each reason is counted
//! (`churnwatch_outreach_suppressed_total{reason}`).

use crate::{config::OutreachConfig, pb::Playbook, state::CustomerState, time::Timestamp};

pub use crate::vocabulary::{suppression_code, Suppression};

/// The first rule that holds the outreach back, if any. Consent per channel
/// is checked when the channel is chosen.
pub(super) fn check(
    s: &CustomerState,
    playbook: Playbook,
    now: Timestamp,
    cfg: &OutreachConfig,
) -> Option<Suppression> {
    if s.is_cancelled() {
        return Some(Suppression::Cancelled);
    }
    if !cfg
        .channels
        .iter()
        .any(|c| s.consent.allows(*c, cfg.assume_consent))
    {
        return Some(Suppression::NoConsent);
    }
    let worked = s
        .support
        .as_ref()
        .is_some_and(|x| x.open_tickets.iter().any(|t| t.first_response_at != 0));
    if worked && playbook != Playbook::EscalateToAgent {
        return Some(Suppression::TicketInProgress);
    }
    let h = s.outreach.as_deref()?;
    if h.last
        .as_ref()
        .is_some_and(|l| now < l.decided_at + cfg.cooldown.as_secs())
    {
        return Some(Suppression::Cooldown);
    }
    let window_start = now - cfg.cap_window.as_secs();
    if h.recent.iter().filter(|t| **t > window_start).count() as u32 >= cfg.cap {
        return Some(Suppression::FrequencyCap);
    }
    None
}
