//! Silence by the population model: 1 - P(alive | x, t_x, T), and the
//! model's log-odds of no activity in the risk's horizon, the risk's base.
//! Both rise with T while the customer is silent (closed form, no
//! breakpoints).

use super::Context;
use crate::{state::CustomerState, time::day_of, time::Timestamp};

/// Bound on the model's log-odds (probabilities within e^-30 of 0 or 1 say
/// nothing more, and a bound keeps a learned coefficient finite).
pub const LOG_ODDS_LIMIT: f64 = 30.0;

/// `(1 - P(alive), log-odds of no activity in score.horizon)`. 1 - P(alive)
/// is 0 for a customer with no activity yet.
pub fn strength_and_log_odds(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> (f64, f64) {
    let (alive, lo) = ctx
        .model
        .no_activity(s.activity.as_ref(), day_of(now), ctx.cfg.horizon);
    let dead = if s.activity.is_some() {
        (1.0 - alive).clamp(0.0, 1.0)
    } else {
        0.0
    };
    // NaN only for an invalid model, which the restore refuses: treat as even odds.
    let lo = if lo.is_nan() { 0.0 } else { lo };
    (dead, lo.clamp(-LOG_ODDS_LIMIT, LOG_ODDS_LIMIT))
}

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
