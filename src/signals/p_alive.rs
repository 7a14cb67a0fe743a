//! Silence by the population model: 1 - P(alive | x, t_x, T). It rises with
//! T while the customer is silent (closed form, no breakpoints).

use super::Context;
use crate::{state::CustomerState, time::day_of, time::Timestamp};

/// 1 - P(alive), or 0 for a customer with no activity yet.
pub fn strength(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> f64 {
    match &s.activity {
        Some(a) => (1.0 - ctx.model.p_alive(a, day_of(now))).clamp(0.0, 1.0),
        None => 0.0,
    }
}

pub fn evidence(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> String {
    match &s.activity {
        Some(a) => {
            let silent = i64::from(day_of(now) - a.last_day).max(0);
            let last = if silent == 0 {
                "today".to_owned()
            } else {
                format!("{} ago", super::days(silent))
            };
            format!(
                "P(alive) {:.2} ({} repeat active days, last active {last})",
                ctx.model.p_alive(a, day_of(now)),
                a.repeat_days,
            )
        }
        None => "no activity yet".to_owned(),
    }
}
