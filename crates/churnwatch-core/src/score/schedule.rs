//! When will this customer's level next change if nothing arrives?
//!
//! Every signal is non-decreasing in time between its breakpoints (the times
//! at which something stops counting: a complaint ages out, a renewal date
//! passes). So within each stretch between breakpoints the level can only
//! rise, and the first rise is found by bisection; at each breakpoint the
//! level is checked once more. A few dozen risk evaluations per customer,
//! never a scan of every customer.

use super::{level, Level};
use crate::{
    signals::{self, Context},
    state::CustomerState,
    time::{day_of, start_of_day, Timestamp},
};

/// All breakpoints after `now`, sorted, without duplicates.
pub fn breakpoints(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Vec<Timestamp> {
    let mut out = Vec::new();
    signals::satisfaction::breakpoints(s, now, ctx, &mut out);
    signals::friction::breakpoints(s, now, ctx, &mut out);
    signals::escalation::breakpoints(s, now, ctx, &mut out);
    signals::renewal::breakpoints(s, now, &mut out);
    // Step-ups at an exact second (not at a day boundary): the renewal
    // window opening, and a first-response SLA running out.
    if let Some(sub) = &s.subscription {
        if sub.renews_at != 0 {
            signals::push_after(
                &mut out,
                now,
                sub.renews_at - ctx.cfg.signals.renewal_window.as_secs(),
            );
        }
    }
    if let Some(sup) = &s.support {
        for t in sup.open_tickets.iter().filter(|t| t.first_response_at == 0) {
            signals::push_after(
                &mut out,
                now,
                t.opened_at + ctx.fold.first_response_sla.as_secs() + 1,
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The first time after `now` (to the second) at which the level differs
/// from the level at `now`, or `None` if it stays the same until `until`.
pub fn next_change(
    s: &CustomerState,
    now: Timestamp,
    until: Timestamp,
    ctx: &Context<'_>,
) -> Option<Timestamp> {
    let start = level(s, now, ctx);
    let mut from = now;
    let ends = breakpoints(s, now, ctx)
        .into_iter()
        .filter(|t| *t <= until)
        .chain(std::iter::once(until));
    for end in ends {
        if end <= from {
            continue;
        }
        // Within (from, end) the level can only rise: look just before `end`.
        if end - 1 > from && level(s, end - 1, ctx) != start {
            return Some(first_change(s, from, end - 1, start, ctx));
        }
        if level(s, end, ctx) != start {
            return Some(end);
        }
        from = end;
    }
    None
}

/// Smallest t in (lo, hi] with level(t) != `start`, given level(hi) != start
/// and a level that only rises on (lo, hi].
///
/// Without open tickets every signal moves only at UTC day boundaries
/// between breakpoints (activity is counted in days), so the search runs over
/// days first: a handful of evaluations instead of ~25 over seconds.
fn first_change(
    s: &CustomerState,
    lo: Timestamp,
    hi: Timestamp,
    start: Level,
    ctx: &Context<'_>,
) -> Timestamp {
    let day_granular = s.support.as_ref().is_none_or(|x| x.open_tickets.is_empty());
    if day_granular {
        let (mut lo_d, mut hi_d) = (day_of(lo), day_of(hi));
        if hi_d > lo_d && level(s, start_of_day(hi_d), ctx) != start {
            while hi_d - lo_d > 1 {
                let mid = lo_d + (hi_d - lo_d) / 2;
                if level(s, start_of_day(mid), ctx) != start {
                    hi_d = mid;
                } else {
                    lo_d = mid;
                }
            }
            return start_of_day(hi_d);
        }
    }
    first_change_in_seconds(s, lo, hi, start, ctx)
}

fn first_change_in_seconds(
    s: &CustomerState,
    mut lo: Timestamp,
    mut hi: Timestamp,
    start: Level,
    ctx: &Context<'_>,
) -> Timestamp {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if level(s, mid, ctx) != start {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}
