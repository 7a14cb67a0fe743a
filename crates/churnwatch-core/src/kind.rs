//! The kinds of interaction event, as plain names for configuration, metrics
//! and dead-letter reasons.

use serde::{Deserialize, Serialize};

use crate::pb::interaction_event::Kind;

/// One `oneof kind` case of `InteractionEvent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Purchase,
    Session,
    TicketOpened,
    TicketUpdated,
    Contact,
    Survey,
    Complaint,
    Subscription,
    Consent,
    OutreachOutcome,
    Erasure,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        EventKind::Purchase,
        EventKind::Session,
        EventKind::TicketOpened,
        EventKind::TicketUpdated,
        EventKind::Contact,
        EventKind::Survey,
        EventKind::Complaint,
        EventKind::Subscription,
        EventKind::Consent,
        EventKind::OutreachOutcome,
        EventKind::Erasure,
    ];

    pub fn of(kind: &Kind) -> EventKind {
        match kind {
            Kind::Purchase(_) => EventKind::Purchase,
            Kind::Session(_) => EventKind::Session,
            Kind::TicketOpened(_) => EventKind::TicketOpened,
            Kind::TicketUpdated(_) => EventKind::TicketUpdated,
            Kind::Contact(_) => EventKind::Contact,
            Kind::Survey(_) => EventKind::Survey,
            Kind::Complaint(_) => EventKind::Complaint,
            Kind::Subscription(_) => EventKind::Subscription,
            Kind::Consent(_) => EventKind::Consent,
            Kind::OutreachOutcome(_) => EventKind::OutreachOutcome,
            Kind::Erasure(_) => EventKind::Erasure,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Purchase => "purchase",
            EventKind::Session => "session",
            EventKind::TicketOpened => "ticket_opened",
            EventKind::TicketUpdated => "ticket_updated",
            EventKind::Contact => "contact",
            EventKind::Survey => "survey",
            EventKind::Complaint => "complaint",
            EventKind::Subscription => "subscription",
            EventKind::Consent => "consent",
            EventKind::OutreachOutcome => "outreach_outcome",
            EventKind::Erasure => "erasure",
        }
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A small set of event kinds (e.g. which kinds count as activity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KindSet(u16);

impl KindSet {
    pub fn contains(self, k: EventKind) -> bool {
        self.0 & k.bit() != 0
    }
    pub fn insert(&mut self, k: EventKind) {
        self.0 |= k.bit();
    }
    pub fn iter(self) -> impl Iterator<Item = EventKind> {
        EventKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl FromIterator<EventKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = EventKind>>(iter: I) -> Self {
        let mut s = KindSet::default();
        for k in iter {
            s.insert(k);
        }
        s
    }
}

impl Serialize for KindSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for KindSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<EventKind>::deserialize(d)?.into_iter().collect())
    }
}
