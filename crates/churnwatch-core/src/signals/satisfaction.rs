//! Satisfaction drift: the fast average of normalised NPS/CSAT below the
//! customer's own slow baseline, a new detractor (NPS 0-6), a CSAT of 1-2.
//! "When satisfaction drops, act at once."

use super::Context;
use crate::{
    state::CustomerState,
    time::{date, Timestamp},
};

fn recent(at: Option<Timestamp>, now: Timestamp, memory: i64) -> bool {
    at.is_some_and(|t| t <= now && now < t + memory)
}

pub fn strength(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> f64 {
    let Some(sat) = &s.satisfaction else {
        return 0.0;
    };
    let g = &ctx.cfg.signals;
    let memory = g.satisfaction_memory.as_secs();
    let drift = (f64::from(sat.baseline - sat.ewma) / g.satisfaction_full_drop).clamp(0.0, 1.0);
    let detractor = if recent(sat.last_detractor_at, now, memory) {
        1.0
    } else {
        0.0
    };
    let low_csat = if recent(sat.last_low_csat_at, now, memory) {
        1.0
    } else {
        0.0
    };
    drift.max(detractor).max(low_csat)
}

pub fn evidence(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> String {
    let Some(sat) = &s.satisfaction else {
        return "no survey answers".to_owned();
    };
    let memory = ctx.cfg.signals.satisfaction_memory.as_secs();
    let mut parts = Vec::new();
    if let (true, Some(at)) = (
        recent(sat.last_detractor_at, now, memory),
        sat.last_detractor_at,
    ) {
        match sat.last_nps {
            Some(n) => parts.push(format!("NPS {n} (detractor), answered {}", date(at))),
            None => parts.push(format!("detractor NPS answered {}", date(at))),
        }
    }
    if let (true, Some(at)) = (
        recent(sat.last_low_csat_at, now, memory),
        sat.last_low_csat_at,
    ) {
        parts.push(format!(
            "CSAT {} of 5 on {}",
            sat.last_csat.unwrap_or(1),
            date(at)
        ));
    }
    if sat.baseline > sat.ewma {
        parts.push(format!(
            "satisfaction down from {:.0}% to {:.0}% over {} answers",
            sat.baseline * 100.0,
            sat.ewma * 100.0,
            sat.answers
        ));
    }
    if parts.is_empty() {
        "satisfaction steady".to_owned()
    } else {
        parts.join("; ")
    }
}

/// A detractor or low CSAT stops counting after the satisfaction memory.
pub fn breakpoints(s: &CustomerState, now: Timestamp, ctx: &Context<'_>, out: &mut Vec<Timestamp>) {
    let Some(sat) = &s.satisfaction else { return };
    let memory = ctx.cfg.signals.satisfaction_memory.as_secs();
    for t in [sat.last_detractor_at, sat.last_low_csat_at]
        .into_iter()
        .flatten()
    {
        super::push_after(out, now, t + memory);
    }
}
