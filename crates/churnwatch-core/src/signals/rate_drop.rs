//! Activity-rate drop: active days in the recent window against the count the
//! customer's own rate predicts, as a one-sided Poisson test.
//!
//! The baseline rate is the customer's rate over their active life, x / t_x
//! (repeat active days per day between first and last activity). It is fixed
//! between events, so while the customer is silent only the observed count
//! moves (down, as active days leave the window) and the signal only rises.
//! Including the recent window in the baseline makes the test conservative.

use statrs::distribution::{DiscreteCDF, Poisson};

use super::Context;
use crate::{
    state::CustomerState,
    time::{day_of, Timestamp},
};

/// (observed active days in the window, expected at the baseline rate), once
/// enough baseline exists.
fn counts(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Option<(u32, f64)> {
    let g = &ctx.cfg.signals;
    let a = s.activity.as_ref()?;
    let span = a.span_days();
    if i64::from(span) < g.rate_min_baseline.whole_days()
        || a.repeat_days < g.rate_min_repeats
        || span <= 0
    {
        return None;
    }
    let window = g.rate_window.whole_days().max(1) as i32;
    let expected = f64::from(a.repeat_days) / f64::from(span) * f64::from(window);
    Some((a.active_days_from(day_of(now) - window + 1), expected))
}

fn p_value(observed: u32, expected: f64) -> Option<f64> {
    Some(Poisson::new(expected).ok()?.cdf(u64::from(observed)))
}

/// Test inputs: (observed active days in window, expected, p-value).
pub fn test(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Option<(u32, f64, f64)> {
    let (observed, expected) = counts(s, now, ctx)?;
    Some((observed, expected, p_value(observed, expected)?))
}

/// p-value to strength: 0 from `SIGNIFICANCE` up, rising linearly to 1 at p = 0.
pub const SIGNIFICANCE: f64 = 0.2;

pub fn strength(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> f64 {
    // Hot path (the silence timer evaluates this often): the CDF only when
    // the count is below expectation; otherwise the strength is 0 anyway.
    match counts(s, now, ctx) {
        Some((observed, expected)) if f64::from(observed) < expected => {
            p_value(observed, expected).map_or(0.0, |p| (1.0 - p / SIGNIFICANCE).clamp(0.0, 1.0))
        }
        _ => 0.0,
    }
}

pub fn evidence(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> String {
    let window = ctx.cfg.signals.rate_window.whole_days();
    match test(s, now, ctx) {
        Some((observed, expected, p)) => format!(
            "{observed} active days in the last {window}, {expected:.1} expected at their usual rate (Poisson p = {p:.3})"
        ),
        None => "not enough history for a baseline".to_owned(),
    }
}
