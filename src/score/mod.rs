//! The explainable risk score: a logistic combination of the signals, cut
//! into levels, with one reason per signal (stable code, contribution to the
//! logit, evidence in words) — and, for silence, when the level will next
//! change if nothing arrives ([`schedule::next_change`]).

mod level;
pub mod schedule;

pub use level::Level;

use serde::Serialize;

use crate::{
    signals::{self, Context, Strengths},
    state::CustomerState,
    time::Timestamp,
};

/// Stable reason codes, in a fixed order (ties in contribution keep it).
pub const REASON_CODES: [&str; 6] = [
    "silence",
    "rate_drop",
    "satisfaction_drop",
    "friction",
    "escalation",
    "renewal",
];

/// A bit set of reason codes (bit i = `REASON_CODES[i]`).
pub fn reason_mask<'a>(codes: impl IntoIterator<Item = &'a str>) -> u8 {
    codes
        .into_iter()
        .filter_map(|c| REASON_CODES.iter().position(|k| *k == c))
        .fold(0, |m, i| m | (1 << i))
}

/// One signal's part in a score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reason {
    pub code: &'static str,
    /// Weight x strength: this reason's additive part of the logit.
    pub contribution: f64,
    pub evidence: String,
}

/// A customer's risk at one time, with its reasons (largest first).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Score {
    pub at: Timestamp,
    pub risk: f64,
    pub level: Level,
    pub strengths: StrengthsView,
    pub reasons: Vec<Reason>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StrengthsView {
    pub p_dead: f64,
    pub overdue: f64,
    pub rate_drop: f64,
    pub satisfaction_drop: f64,
    pub friction: f64,
    pub escalation: f64,
    pub renewal: f64,
}

impl From<Strengths> for StrengthsView {
    fn from(s: Strengths) -> Self {
        StrengthsView {
            p_dead: s.p_dead,
            overdue: s.overdue,
            rate_drop: s.rate_drop,
            satisfaction_drop: s.satisfaction_drop,
            friction: s.friction,
            escalation: s.escalation,
            renewal: s.renewal,
        }
    }
}

/// All signal strengths at `now`.
pub fn strengths(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Strengths {
    let mut st = Strengths {
        p_dead: signals::p_alive::strength(s, now, ctx),
        overdue: signals::overdue::strength(s, now, ctx),
        rate_drop: signals::rate_drop::strength(s, now, ctx),
        satisfaction_drop: signals::satisfaction::strength(s, now, ctx),
        friction: signals::friction::strength(s, now, ctx),
        escalation: signals::escalation::strength(s, now, ctx),
        renewal: 0.0,
    };
    st.renewal = signals::renewal::strength(s, now, ctx, &st);
    st
}

/// Contributions to the logit per reason code, in `REASON_CODES` order.
fn contributions(st: &Strengths, ctx: &Context<'_>) -> [f64; 6] {
    let w = &ctx.cfg.weights;
    [
        w.p_dead * st.p_dead + w.overdue * st.overdue,
        w.rate_drop * st.rate_drop,
        w.satisfaction_drop * st.satisfaction_drop,
        w.friction * st.friction,
        w.escalation * st.escalation,
        w.renewal * st.renewal,
    ]
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Risk only (the timer's hot path: no strings).
pub fn risk(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> f64 {
    let st = strengths(s, now, ctx);
    sigmoid(ctx.cfg.bias + contributions(&st, ctx).iter().sum::<f64>())
}

pub fn level(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Level {
    Level::of(risk(s, now, ctx), &ctx.cfg.thresholds)
}

/// The full, explained score.
pub fn score(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Score {
    let st = strengths(s, now, ctx);
    let parts = contributions(&st, ctx);
    let risk = sigmoid(ctx.cfg.bias + parts.iter().sum::<f64>());
    let mut reasons: Vec<Reason> = REASON_CODES
        .iter()
        .zip(parts)
        .filter(|(_, c)| *c > 1e-9)
        .map(|(code, contribution)| Reason {
            code,
            contribution,
            evidence: evidence(code, s, now, ctx, &st),
        })
        .collect();
    reasons.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
    Score {
        at: now,
        risk,
        level: Level::of(risk, &ctx.cfg.thresholds),
        strengths: st.into(),
        reasons,
    }
}

fn evidence(
    code: &str,
    s: &CustomerState,
    now: Timestamp,
    ctx: &Context<'_>,
    st: &Strengths,
) -> String {
    match code {
        "silence" => {
            let mut parts = Vec::new();
            if st.overdue > 0.0 {
                parts.push(signals::overdue::evidence(s, now, ctx));
            }
            if st.p_dead > 0.0 {
                parts.push(signals::p_alive::evidence(s, now, ctx));
            }
            parts.join("; ")
        }
        "rate_drop" => signals::rate_drop::evidence(s, now, ctx),
        "satisfaction_drop" => signals::satisfaction::evidence(s, now, ctx),
        "friction" => signals::friction::evidence(s, now, ctx),
        "escalation" => signals::escalation::evidence(s, now, ctx),
        "renewal" => signals::renewal::evidence(s, now, ctx),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
