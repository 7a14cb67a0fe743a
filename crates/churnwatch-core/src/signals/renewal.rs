//! Renewal proximity: the subscription renews within the renewal window while
//! another signal is active. A cancelled subscription is churn already, not a
//! risk, and gets no renewal signal.

use super::{Context, Strengths};
use crate::{
    state::CustomerState,
    time::{date, Timestamp, SECS_PER_DAY},
};

/// Strength given the other signals' strengths at the same time.
pub fn strength(s: &CustomerState, now: Timestamp, ctx: &Context<'_>, others: &Strengths) -> f64 {
    let Some(sub) = &s.subscription else {
        return 0.0;
    };
    if sub.cancelled || sub.renews_at == 0 || now >= sub.renews_at {
        return 0.0;
    }
    let g = &ctx.cfg.signals;
    if sub.renews_at - now > g.renewal_window.as_secs() {
        return 0.0;
    }
    let o = &others.signals;
    let strongest = [
        others.p_dead,
        o.overdue,
        o.rate_drop,
        o.satisfaction_drop,
        o.friction,
        o.escalation,
    ]
    .into_iter()
    .fold(0.0, f64::max);
    if strongest >= g.renewal_companion_strength {
        1.0
    } else {
        0.0
    }
}

pub fn evidence(s: &CustomerState, now: Timestamp, _ctx: &Context<'_>) -> String {
    match &s.subscription {
        Some(sub) if sub.renews_at > now => format!(
            "plan '{}' renews on {} (in {})",
            sub.plan,
            date(sub.renews_at),
            super::days((sub.renews_at - now) / SECS_PER_DAY)
        ),
        _ => "no renewal ahead".to_owned(),
    }
}

/// The signal ends at the renewal date.
pub fn breakpoints(s: &CustomerState, now: Timestamp, out: &mut Vec<Timestamp>) {
    if let Some(sub) = &s.subscription {
        if !sub.cancelled && sub.renews_at != 0 {
            super::push_after(out, now, sub.renews_at);
        }
    }
}
