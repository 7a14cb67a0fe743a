//! Silence against the customer's own rhythm: "usually every 7 days, silent
//! for 41". Full strength at `overdue_full` times the typical gap.

use super::Context;
use crate::{state::CustomerState, time::day_of, time::Timestamp};

fn gap_and_silence(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Option<(f64, i64)> {
    let a = s.activity.as_ref()?;
    if a.repeat_days < ctx.cfg.signals.overdue_min_repeats {
        return None;
    }
    let gap = a.typical_gap_days()?.max(1.0);
    Some((gap, i64::from(day_of(now) - a.last_day).max(0)))
}

pub fn strength(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> f64 {
    let Some((gap, silent)) = gap_and_silence(s, now, ctx) else {
        return 0.0;
    };
    let g = &ctx.cfg.signals;
    ((silent as f64 / gap - g.overdue_start) / (g.overdue_full - g.overdue_start)).clamp(0.0, 1.0)
}

pub fn evidence(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> String {
    match gap_and_silence(s, now, ctx) {
        Some((gap, silent)) => format!(
            "no activity for {}; usually every {}",
            super::days(silent),
            super::days(gap.round() as i64)
        ),
        None => "no rhythm known yet".to_owned(),
    }
}
