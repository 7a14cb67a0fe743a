//! The churn signals. Each is a pure function of one customer's state and
//! "now" (stream time), in its own file, returning a strength in [0, 1], the
//! evidence in words, and the future times at which it may fall without a new
//! event (its breakpoints). Between breakpoints a signal never falls while
//! the customer stays silent: that is what lets the silence timer find the
//! next level change by bisection instead of scanning.

pub mod escalation;
pub mod friction;
pub mod overdue;
pub mod p_alive;
pub mod rate_drop;
pub mod renewal;
pub mod satisfaction;

use crate::{
    config::{CoreConfig, FoldConfig, ScoreConfig},
    population::PopulationModel,
    time::Timestamp,
    vocabulary::Signals,
};

/// What the signals need besides the state.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub cfg: &'a ScoreConfig,
    pub fold: &'a FoldConfig,
    pub model: &'a PopulationModel,
}

impl<'a> Context<'a> {
    /// The scoring and fold sections of `core`, with `model`.
    pub fn new(core: &'a CoreConfig, model: &'a PopulationModel) -> Self {
        Context {
            cfg: &core.score,
            fold: &core.fold,
            model,
        }
    }
}

/// The strengths of all signals for one customer at one time, and the
/// population model's log-odds of no activity in the horizon (the risk's base).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Strengths {
    /// `base`: ln[P(none) / (1 − P(none))], P(none) = P(no activity in
    /// `score.horizon`), clamped to ±30; the others each signal's strength.
    pub signals: Signals<f64>,
    /// 1 − P(alive).
    pub p_dead: f64,
}

/// Formats a count of days the way a person says it.
pub(crate) fn days(n: i64) -> String {
    if n == 1 {
        "1 day".to_owned()
    } else {
        format!("{n} days")
    }
}

/// Pushes `t` if it lies after `now`.
pub(crate) fn push_after(out: &mut Vec<Timestamp>, now: Timestamp, t: Timestamp) {
    if t > now {
        out.push(t);
    }
}
