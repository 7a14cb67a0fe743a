//! The fold: one event applied to one customer's state. Pure and
//! deterministic: no clock, no I/O; time is the event's own `occurred_at`.
//!
//! Each event kind's rule lives in its own file; [`CustomerState::apply`]
//! dispatches to them and does what is common to all (redelivery guard,
//! first/last seen).

mod consent;
mod outcome;
mod purchase;
mod satisfaction;
mod session;
mod subscription;
mod support;

use crate::{
    config::FoldConfig,
    kind::EventKind,
    pb::{interaction_event::Kind, Outcome, Playbook},
    state::{CustomerState, DayRecord, RecentEvents},
    time::{day_of, Timestamp},
    validate::Valid,
};

/// What folding one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Folded {
    /// The state changed.
    Applied,
    /// An outreach outcome was recorded (for per-playbook outcome counts).
    Outcome {
        playbook: Playbook,
        outcome: Outcome,
    },
    /// The event id was seen recently: a redelivery, ignored.
    Duplicate,
    /// Too old to fold without breaking order-independence; counted, dropped.
    Late,
    /// The customer asked to be forgotten: the caller removes the state.
    Erased,
}

impl CustomerState {
    /// A fresh state for a customer's first event.
    pub fn new(first_seen_at: Timestamp) -> Self {
        CustomerState {
            first_seen_at,
            last_event_at: first_seen_at,
            ..Default::default()
        }
    }

    /// Applies one validated event.
    pub fn apply(&mut self, ev: &Valid<'_>, cfg: &FoldConfig) -> Folded {
        let id = RecentEvents::hash(&ev.event.event_id);
        if self.recent_events.contains(id) {
            return Folded::Duplicate;
        }
        let kind = EventKind::of(ev.kind);
        if cfg.activity_kinds.contains(kind)
            && self.record_activity(ev.at) == DayRecord::OutOfWindow
        {
            return Folded::Late;
        }
        let folded = match ev.kind {
            Kind::Purchase(p) => purchase::apply(self, ev, p, cfg),
            Kind::Session(_) => session::apply(self, ev, cfg),
            Kind::TicketOpened(t) => support::ticket_opened(self, ev, t, cfg),
            Kind::TicketUpdated(t) => support::ticket_updated(self, ev, t, cfg),
            Kind::Contact(_) => support::contact(self, ev, cfg),
            Kind::Complaint(_) => support::complaint(self, ev, cfg),
            Kind::Survey(s) => satisfaction::apply(self, ev, s, cfg),
            Kind::Subscription(s) => subscription::apply(self, ev, s),
            Kind::Consent(c) => consent::apply(self, ev, c),
            Kind::OutreachOutcome(o) => outcome::apply(self, o),
            Kind::Erasure(_) => {
                // Everything about the customer goes; the score mark stays
                // until the caller removes the state, which uncounts the
                // customer from the level the mark says they are counted at.
                *self = CustomerState {
                    score: self.score,
                    ..CustomerState::default()
                };
                return Folded::Erased;
            }
        };
        self.first_seen_at = self.first_seen_at.min(ev.at);
        self.last_event_at = self.last_event_at.max(ev.at);
        self.recent_events.insert(id);
        folded
    }

    fn record_activity(&mut self, at: Timestamp) -> DayRecord {
        let day = day_of(at);
        match &mut self.activity {
            Some(a) => a.record(day),
            None => {
                self.activity = Some(crate::state::Activity::starting(day));
                DayRecord::New
            }
        }
    }

    /// Notes a use of the event's channel (the customer reached out there).
    fn note_channel(&mut self, ev: &Valid<'_>, cfg: &FoldConfig) {
        self.channels.record(
            ev.channel,
            day_of(ev.at),
            cfg.channel_half_life.as_days_f64(),
        );
    }
}

#[cfg(test)]
mod tests;
