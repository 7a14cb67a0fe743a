//! Why an outreach is held back. Each reason is counted
//! (`churnwatch_outreach_suppressed_total{reason}`).

use crate::{config::OutreachConfig, pb::Playbook, state::CustomerState, time::Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suppression {
    /// The customer withdrew consent (on every channel outreach could use).
    NoConsent,
    /// Too soon after the last outreach.
    Cooldown,
    /// The per-window cap is reached.
    FrequencyCap,
    /// An open ticket is being worked: support is already talking to them.
    TicketInProgress,
    /// The subscription is cancelled: churn has happened, it is not a risk.
    Cancelled,
    /// The customer asked to be forgotten.
    Erased,
}

impl Suppression {
    pub const ALL: [Suppression; 6] = [
        Suppression::NoConsent,
        Suppression::Cooldown,
        Suppression::FrequencyCap,
        Suppression::TicketInProgress,
        Suppression::Cancelled,
        Suppression::Erased,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Suppression::NoConsent => "no_consent",
            Suppression::Cooldown => "cooldown",
            Suppression::FrequencyCap => "frequency_cap",
            Suppression::TicketInProgress => "ticket_in_progress",
            Suppression::Cancelled => "cancelled",
            Suppression::Erased => "erased",
        }
    }
}

/// The interned code for a stored suppression reason.
pub fn suppression_code(text: &str) -> Option<&'static str> {
    Suppression::ALL
        .iter()
        .map(|s| s.code())
        .find(|c| *c == text)
}

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
