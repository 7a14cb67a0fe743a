//! Support history: tickets, inbound contacts, complaints.

use super::Folded;
use crate::{
    config::FoldConfig,
    pb::{TicketOpened, TicketStatus, TicketUpdated},
    state::{ContactMark, CustomerState, OpenTicket, Support},
    time::Timestamp,
    validate::Valid,
};

fn ticket_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// Keeps the contacts of the last `window` (as of the newest), oldest first.
fn note_contact(support: &mut Support, mark: ContactMark, window: i64) {
    let pos = support
        .recent_contacts
        .partition_point(|c| (c.at, c.channel as i32) <= (mark.at, mark.channel as i32));
    support.recent_contacts.insert(pos, mark);
    let newest = support.recent_contacts.last().map_or(mark.at, |c| c.at);
    support.recent_contacts.retain(|c| c.at > newest - window);
    let excess = support
        .recent_contacts
        .len()
        .saturating_sub(Support::MAX_CONTACTS);
    support.recent_contacts.drain(..excess);
}

fn note_negative(support: &mut Support, mark: ContactMark) {
    support.negative_experiences = support.negative_experiences.saturating_add(1);
    if support.last_negative.is_none_or(|n| n.at <= mark.at) {
        support.last_negative = Some(mark);
    }
}

pub(super) fn ticket_opened(
    s: &mut CustomerState,
    ev: &Valid<'_>,
    t: &TicketOpened,
    cfg: &FoldConfig,
) -> Folded {
    s.note_channel(ev, cfg);
    let mark = ContactMark {
        at: ev.at,
        channel: ev.channel,
    };
    let support = s.support_mut();
    let ticket = ticket_hash(&t.ticket_id);
    if support.open_tickets.iter().any(|o| o.ticket == ticket) {
        return Folded::Applied;
    }
    support.tickets_opened = support.tickets_opened.saturating_add(1);
    let severity = u8::try_from(t.severity).unwrap_or(0);
    let pos = support
        .open_tickets
        .partition_point(|o| o.opened_at <= ev.at);
    support.open_tickets.insert(
        pos,
        OpenTicket {
            ticket,
            opened_at: ev.at,
            severity,
            first_response_at: 0,
            reopened: false,
            channel: ev.channel,
        },
    );
    if support.open_tickets.len() > Support::MAX_OPEN {
        support.open_tickets.remove(0);
    }
    note_contact(support, mark, cfg.contact_window.as_secs());
    Folded::Applied
}

pub(super) fn ticket_updated(
    s: &mut CustomerState,
    ev: &Valid<'_>,
    t: &TicketUpdated,
    cfg: &FoldConfig,
) -> Folded {
    let ticket = ticket_hash(&t.ticket_id);
    let sla = cfg.first_response_sla.as_secs();
    let support = s.support_mut();
    let open = support.open_tickets.iter().position(|o| o.ticket == ticket);
    match TicketStatus::try_from(t.status).unwrap_or(TicketStatus::Unspecified) {
        TicketStatus::FirstResponse => {
            let Some(i) = open else {
                return Folded::Applied;
            };
            let tk = &mut support.open_tickets[i];
            if tk.first_response_at != 0 {
                return Folded::Applied;
            }
            tk.first_response_at = ev.at;
            let secs: Timestamp = t
                .response_seconds
                .map_or((ev.at - tk.opened_at).max(0), i64::from);
            let channel = tk.channel;
            support.first_responses = support.first_responses.saturating_add(1);
            support.first_response_secs_total = support
                .first_response_secs_total
                .saturating_add(secs.max(0) as u64);
            if secs > sla {
                support.slow_first_responses = support.slow_first_responses.saturating_add(1);
                note_negative(support, ContactMark { at: ev.at, channel });
            }
        }
        TicketStatus::Resolved => {
            if let Some(i) = open {
                support.open_tickets.remove(i);
                support.resolved = support.resolved.saturating_add(1);
            }
        }
        TicketStatus::Reopened => {
            support.reopened = support.reopened.saturating_add(1);
            let channel = ev.channel;
            note_negative(support, ContactMark { at: ev.at, channel });
            match open {
                Some(i) => support.open_tickets[i].reopened = true,
                None => {
                    let pos = support
                        .open_tickets
                        .partition_point(|o| o.opened_at <= ev.at);
                    support.open_tickets.insert(
                        pos,
                        OpenTicket {
                            ticket,
                            opened_at: ev.at,
                            severity: 0,
                            first_response_at: ev.at,
                            reopened: true,
                            channel,
                        },
                    );
                    if support.open_tickets.len() > Support::MAX_OPEN {
                        support.open_tickets.remove(0);
                    }
                }
            }
        }
        TicketStatus::Unspecified => {}
    }
    Folded::Applied
}

/// An inbound call, email or chat that is not tied to a ticket.
pub(super) fn contact(s: &mut CustomerState, ev: &Valid<'_>, cfg: &FoldConfig) -> Folded {
    s.note_channel(ev, cfg);
    let mark = ContactMark {
        at: ev.at,
        channel: ev.channel,
    };
    note_contact(s.support_mut(), mark, cfg.contact_window.as_secs());
    Folded::Applied
}

pub(super) fn complaint(s: &mut CustomerState, ev: &Valid<'_>, cfg: &FoldConfig) -> Folded {
    s.note_channel(ev, cfg);
    let mark = ContactMark {
        at: ev.at,
        channel: ev.channel,
    };
    let support = s.support_mut();
    support.complaints = support.complaints.saturating_add(1);
    if support.last_complaint_at.is_none_or(|t| t <= ev.at) {
        support.last_complaint_at = Some(ev.at);
    }
    note_negative(support, mark);
    note_contact(support, mark, cfg.contact_window.as_secs());
    Folded::Applied
}
