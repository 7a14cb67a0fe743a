use super::Folded;
use crate::{
    pb::{Outcome, OutreachOutcome, Playbook},
    state::CustomerState,
};

/// Closes the loop: the outcome is recorded against the outreach it answers.
/// A reply or a conversion ends the risk episode (the customer is talking to
/// us again); the customer re-arms once their risk falls back.
pub(super) fn apply(s: &mut CustomerState, o: &OutreachOutcome) -> Folded {
    let outcome = Outcome::try_from(o.outcome).unwrap_or(Outcome::Unspecified);
    let h = s.outreach_mut();
    if let Some(slot) = usize::try_from(o.outcome)
        .ok()
        .and_then(|i| h.outcomes.get_mut(i))
    {
        *slot = slot.saturating_add(1);
    }
    let mut playbook = Playbook::Unspecified;
    if let Some(last) = h.last.as_mut().filter(|l| l.outreach_id == o.outreach_id) {
        last.outcome = o.outcome;
        playbook = last.playbook;
        if matches!(outcome, Outcome::Replied | Outcome::Converted)
            && h.episode_started_at == Some(last.episode_started_at)
        {
            h.episode_started_at = None;
            h.episode_done = false;
            h.suppressed = None;
            h.armed = false;
        }
    }
    Folded::Outcome { playbook, outcome }
}
