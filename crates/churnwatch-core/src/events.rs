//! Constructors for interaction events, for tests, benches, the generator
//! and anyone scripting churnwatch from Rust.

use crate::{
    pb::{
        interaction_event::Kind, survey::Score, Channel, Complaint, Consent, Contact, Erasure,
        InteractionEvent, Outcome, OutreachOutcome, Purchase, Session, Subscription, Survey,
        TicketOpened, TicketSeverity, TicketStatus, TicketUpdated,
    },
    time::Timestamp,
};

/// A timestamp for `seconds` past the epoch.
pub fn ts(seconds: Timestamp) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp { seconds, nanos: 0 }
}

/// An event of any kind.
pub fn event(
    event_id: &str,
    customer_id: &str,
    at: Timestamp,
    channel: Channel,
    kind: Kind,
) -> InteractionEvent {
    InteractionEvent {
        event_id: event_id.to_owned(),
        customer_id: customer_id.to_owned(),
        occurred_at: Some(ts(at)),
        channel: channel as i32,
        kind: Some(kind),
    }
}

pub fn purchase(event_id: &str, customer_id: &str, at: Timestamp, amount: f64) -> InteractionEvent {
    let p = Purchase {
        order_id: format!("o-{event_id}"),
        amount,
        currency: "EUR".into(),
    };
    event(event_id, customer_id, at, Channel::Web, Kind::Purchase(p))
}

pub fn session(
    event_id: &str,
    customer_id: &str,
    at: Timestamp,
    channel: Channel,
) -> InteractionEvent {
    event(
        event_id,
        customer_id,
        at,
        channel,
        Kind::Session(Session {
            duration_seconds: Some(300),
        }),
    )
}

pub fn ticket_opened(
    event_id: &str,
    customer_id: &str,
    at: Timestamp,
    channel: Channel,
    ticket: &str,
) -> InteractionEvent {
    let t = TicketOpened {
        ticket_id: ticket.into(),
        severity: TicketSeverity::Normal as i32,
    };
    event(event_id, customer_id, at, channel, Kind::TicketOpened(t))
}

pub fn ticket_updated(
    event_id: &str,
    customer_id: &str,
    at: Timestamp,
    ticket: &str,
    status: TicketStatus,
    response_seconds: Option<u32>,
) -> InteractionEvent {
    let t = TicketUpdated {
        ticket_id: ticket.into(),
        status: status as i32,
        response_seconds,
    };
    event(
        event_id,
        customer_id,
        at,
        Channel::Email,
        Kind::TicketUpdated(t),
    )
}

pub fn contact(
    event_id: &str,
    customer_id: &str,
    at: Timestamp,
    channel: Channel,
) -> InteractionEvent {
    event(
        event_id,
        customer_id,
        at,
        channel,
        Kind::Contact(Contact {
            reason: "question".into(),
        }),
    )
}

pub fn complaint(
    event_id: &str,
    customer_id: &str,
    at: Timestamp,
    channel: Channel,
    reason: &str,
) -> InteractionEvent {
    event(
        event_id,
        customer_id,
        at,
        channel,
        Kind::Complaint(Complaint {
            reason: reason.into(),
        }),
    )
}

pub fn nps(event_id: &str, customer_id: &str, at: Timestamp, score: i32) -> InteractionEvent {
    event(
        event_id,
        customer_id,
        at,
        Channel::Email,
        Kind::Survey(Survey {
            score: Some(Score::Nps(score)),
        }),
    )
}

pub fn csat(event_id: &str, customer_id: &str, at: Timestamp, score: i32) -> InteractionEvent {
    event(
        event_id,
        customer_id,
        at,
        Channel::Email,
        Kind::Survey(Survey {
            score: Some(Score::Csat(score)),
        }),
    )
}

pub fn subscription(
    event_id: &str,
    customer_id: &str,
    at: Timestamp,
    plan: &str,
    renews_at: Timestamp,
    cancelled: bool,
) -> InteractionEvent {
    let s = Subscription {
        plan: plan.into(),
        renews_at: Some(ts(renews_at)),
        cancelled,
    };
    event(
        event_id,
        customer_id,
        at,
        Channel::Web,
        Kind::Subscription(s),
    )
}

/// Consent for every channel (`channel` = unspecified) or one channel.
pub fn consent(
    event_id: &str,
    customer_id: &str,
    at: Timestamp,
    allowed: bool,
    channel: Channel,
) -> InteractionEvent {
    let c = Consent {
        contact_allowed: allowed,
        channel: channel as i32,
    };
    event(event_id, customer_id, at, Channel::Web, Kind::Consent(c))
}

pub fn outcome(
    event_id: &str,
    customer_id: &str,
    at: Timestamp,
    outreach_id: &str,
    outcome: Outcome,
) -> InteractionEvent {
    let o = OutreachOutcome {
        outreach_id: outreach_id.into(),
        outcome: outcome as i32,
    };
    event(
        event_id,
        customer_id,
        at,
        Channel::Email,
        Kind::OutreachOutcome(o),
    )
}

pub fn erasure(event_id: &str, customer_id: &str, at: Timestamp) -> InteractionEvent {
    event(
        event_id,
        customer_id,
        at,
        Channel::Web,
        Kind::Erasure(Erasure {}),
    )
}
