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
    time::Timestamp,
};

/// All breakpoints after `now`, sorted, without duplicates.
pub fn breakpoints(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Vec<Timestamp> {
    let mut out = Vec::new();
    signals::satisfaction::breakpoints(s, now, ctx, &mut out);
    signals::friction::breakpoints(s, now, ctx, &mut out);
    signals::escalation::breakpoints(s, now, ctx, &mut out);
    signals::renewal::breakpoints(s, now, &mut out);
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
fn first_change(
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
