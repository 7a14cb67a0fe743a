//! Support friction: open tickets and their age, a first response slower than
//! the SLA, reopened tickets, recent complaints. Combined as a noisy-or, so
//! each adds without any one exceeding full strength.

use super::Context;
use crate::{
    state::CustomerState,
    time::{date, Timestamp, SECS_PER_DAY},
};

/// Weight of one open ticket at full age, of a reopened ticket, of a missed
/// first-response SLA and of a recent complaint, in the noisy-or.
const OPEN_TICKET: f64 = 0.5;
const REOPENED: f64 = 0.3;
const SLA_MISSED: f64 = 0.3;
const COMPLAINT: f64 = 0.6;

fn complaint_recent(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Option<Timestamp> {
    let at = s.support.as_ref()?.last_complaint_at?;
    (at <= now && now < at + ctx.cfg.signals.complaint_memory.as_secs()).then_some(at)
}

fn sla_missed(
    opened_at: Timestamp,
    first_response_at: Timestamp,
    now: Timestamp,
    sla: i64,
) -> bool {
    if first_response_at != 0 {
        first_response_at - opened_at > sla
    } else {
        now - opened_at > sla
    }
}

pub fn strength(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> f64 {
    let Some(support) = &s.support else {
        return 0.0;
    };
    let full_age = ctx.cfg.signals.ticket_full_age.as_secs().max(1) as f64;
    let sla = ctx.fold.first_response_sla.as_secs();
    let mut calm = 1.0;
    for t in &support.open_tickets {
        let age = ((now - t.opened_at).max(0) as f64 / full_age).min(1.0);
        let mut c = OPEN_TICKET * age;
        if t.reopened {
            c += REOPENED;
        }
        if sla_missed(t.opened_at, t.first_response_at, now, sla) {
            c += SLA_MISSED;
        }
        calm *= 1.0 - c.min(1.0);
    }
    if complaint_recent(s, now, ctx).is_some() {
        calm *= 1.0 - COMPLAINT;
    }
    1.0 - calm
}

pub fn evidence(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> String {
    let Some(support) = &s.support else {
        return "no support history".to_owned();
    };
    let sla = ctx.fold.first_response_sla.as_secs();
    let mut parts = Vec::new();
    if let Some(oldest) = support.open_tickets.first() {
        parts.push(format!(
            "{} open ticket{}, oldest {}",
            support.open_tickets.len(),
            if support.open_tickets.len() == 1 {
                ""
            } else {
                "s"
            },
            super::days((now - oldest.opened_at).max(0) / SECS_PER_DAY)
        ));
    }
    let reopened = support.open_tickets.iter().filter(|t| t.reopened).count();
    if reopened > 0 {
        parts.push(format!("{reopened} reopened"));
    }
    let missed = support
        .open_tickets
        .iter()
        .filter(|t| sla_missed(t.opened_at, t.first_response_at, now, sla))
        .count();
    if missed > 0 {
        parts.push(format!(
            "{missed} past the {} h first-response target",
            sla / 3600
        ));
    }
    if let Some(at) = complaint_recent(s, now, ctx) {
        parts.push(format!(
            "complaint on {} ({} in total)",
            date(at),
            support.complaints
        ));
    }
    if parts.is_empty() {
        "no open friction".to_owned()
    } else {
        parts.join("; ")
    }
}

/// A complaint stops counting after the complaint memory (tickets only close by events).
pub fn breakpoints(s: &CustomerState, now: Timestamp, ctx: &Context<'_>, out: &mut Vec<Timestamp>) {
    if let Some(at) = s.support.as_ref().and_then(|x| x.last_complaint_at) {
        super::push_after(out, now, at + ctx.cfg.signals.complaint_memory.as_secs());
    }
}
