//! The risk: the probability that a customer has no activity (per
//! `fold.activity_kinds`) within `score.horizon` after the scoring time. Its
//! log-odds are the population model's own log-odds of that (closed form,
//! [`crate::model::p_no_activity`]) times a coefficient, plus an intercept,
//! plus each signal's strength times its coefficient; the coefficients are
//! learned from outcomes ([`learn`], [`outcomes`]) or fixed. Cut into
//! levels, with one reason per signal (stable code, contribution to the
//! log-odds, evidence in words) — and, for silence, when the level will next
//! change if nothing arrives ([`schedule::next_change`]).

pub mod outcomes;
pub mod schedule;

pub use crate::{
    learn,
    vocabulary::{reason_mask, Level, ReasonCode, Signals, REASON_CODES, SIGNALS},
};

use serde::Serialize;

use crate::{
    config::LearningMode,
    signals::{self, Context, Strengths},
    state::CustomerState,
    time::{start_of_day, Timestamp},
};

/// One signal's part in a score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reason {
    pub code: ReasonCode,
    /// This reason's additive part of the log-odds.
    pub contribution: f64,
    pub evidence: String,
}

/// One term of the risk's log-odds: coefficient x value. Serialised with
/// proto3 JSON's camelCase names, as `/customers/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Contribution {
    /// `bias`, `base` (the model's log-odds) or a signal's name.
    pub name: &'static str,
    pub coefficient: f64,
    /// 1 for the bias, the model's log-odds for `base`, else the strength.
    pub value: f64,
    /// coefficient x value.
    pub log_odds: f64,
}

/// A customer's risk at one time, with its reasons (largest first).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Score {
    pub at: Timestamp,
    /// P(no activity in `score.horizon` after `at`).
    pub risk: f64,
    pub level: Level,
    pub strengths: StrengthsView,
    /// Every term of the log-odds, in [`learn::NAMES`] order; they sum to
    /// logit(risk).
    pub contributions: Vec<Contribution>,
    /// Where the coefficients came from: `learned`, `prior` or `fixed`.
    pub coefficients: &'static str,
    pub reasons: Vec<Reason>,
}

/// The strengths as a score shows them: `base` is the population model's
/// own P(no activity in the horizon) (serialised as `model_p_no_activity`),
/// the others each signal's strength; and 1 − P(alive).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StrengthsView {
    pub signals: Signals<f64>,
    pub p_dead: f64,
}

impl Serialize for StrengthsView {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut m = ser.serialize_struct("StrengthsView", 1 + SIGNALS)?;
        m.serialize_field("model_p_no_activity", &self.signals.base)?;
        m.serialize_field("p_dead", &self.p_dead)?;
        for (name, v) in self.signals.iter().skip(1) {
            m.serialize_field(name, v)?;
        }
        m.end()
    }
}

impl From<Strengths> for StrengthsView {
    fn from(s: Strengths) -> Self {
        StrengthsView {
            signals: Signals {
                base: sigmoid(s.signals.base),
                ..s.signals
            },
            p_dead: s.p_dead,
        }
    }
}

/// All signal strengths at `now`.
pub fn strengths(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Strengths {
    let (p_dead, model_log_odds) = signals::p_alive::strength_and_log_odds(s, now, ctx);
    let mut st = Strengths {
        signals: Signals {
            base: model_log_odds,
            overdue: signals::overdue::strength(s, now, ctx),
            rate_drop: signals::rate_drop::strength(s, now, ctx),
            satisfaction_drop: signals::satisfaction::strength(s, now, ctx),
            friction: signals::friction::strength(s, now, ctx),
            escalation: signals::escalation::strength(s, now, ctx),
            renewal: 0.0,
        },
        p_dead,
    };
    st.signals.renewal = signals::renewal::strength(s, now, ctx, &st);
    st
}

/// The feature row of the risk's logistic model ([`learn::NAMES`] order).
pub fn features(st: &Strengths) -> [f64; learn::K] {
    learn::to_vector(1.0, &st.signals)
}

/// The coefficients in use and where they came from: the learned ones (in
/// `learned` mode, once learned), else `score.bias` and `score.weights`.
pub fn coefficients(ctx: &Context<'_>) -> ([f64; learn::K], &'static str) {
    match (ctx.cfg.learning.mode, &ctx.model.risk) {
        (LearningMode::Learned, Some(r)) => (learn::to_vector(r.bias, &r.weights), "learned"),
        (LearningMode::Learned, None) => {
            (learn::to_vector(ctx.cfg.bias, &ctx.cfg.weights), "prior")
        }
        (LearningMode::Fixed, _) => (learn::to_vector(ctx.cfg.bias, &ctx.cfg.weights), "fixed"),
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn log_odds(st: &Strengths, c: &[f64; learn::K]) -> f64 {
    features(st).iter().zip(c).map(|(x, w)| x * w).sum()
}

/// Risk only (the timer's hot path: no strings).
pub fn risk(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> f64 {
    let st = strengths(s, now, ctx);
    sigmoid(log_odds(&st, &coefficients(ctx).0))
}

pub fn level(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Level {
    Level::of(risk(s, now, ctx), &ctx.cfg.thresholds)
}

/// The model's log-odds on the customer's last active day: what silence
/// since then has added is the model's part of the reason "silence".
fn log_odds_when_last_active(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Option<f64> {
    let a = s.activity.as_ref()?;
    let last = start_of_day(a.last_day).min(now);
    Some(signals::p_alive::strength_and_log_odds(s, last, ctx).1)
}

/// The full, explained score.
pub fn score(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> Score {
    let st = strengths(s, now, ctx);
    let (c, source) = coefficients(ctx);
    let x = features(&st);
    let contributions: Vec<Contribution> = learn::NAMES
        .iter()
        .zip(x.iter().zip(&c))
        .map(|(name, (v, w))| Contribution {
            name,
            coefficient: *w,
            value: *v,
            log_odds: v * w,
        })
        .collect();
    let risk = sigmoid(contributions.iter().map(|t| t.log_odds).sum());
    // Reasons: what raises the risk. The model's part of "silence" is how
    // far its log-odds now stand above the lower of their value on the last
    // active day and even odds: the rise since the customer went quiet, plus
    // whatever already made silence the likelier outcome.
    let silence_model = log_odds_when_last_active(s, now, ctx).map_or(0.0, |then| {
        (c[1] * (st.signals.base - then.min(0.0))).max(0.0)
    });
    let parts = [
        silence_model + c[2] * st.signals.overdue,
        c[3] * st.signals.rate_drop,
        c[4] * st.signals.satisfaction_drop,
        c[5] * st.signals.friction,
        c[6] * st.signals.escalation,
        c[7] * st.signals.renewal,
    ];
    let mut reasons: Vec<Reason> = ReasonCode::ALL
        .into_iter()
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
        contributions,
        coefficients: source,
        reasons,
    }
}

fn evidence(
    code: ReasonCode,
    s: &CustomerState,
    now: Timestamp,
    ctx: &Context<'_>,
    st: &Strengths,
) -> String {
    match code {
        ReasonCode::Silence => {
            let mut parts = Vec::new();
            if st.signals.overdue > 0.0 {
                parts.push(signals::overdue::evidence(s, now, ctx));
            }
            if s.activity.is_some() {
                parts.push(format!(
                    "{}; the model gives {:.0}% for no activity in the next {}",
                    signals::p_alive::evidence(s, now, ctx),
                    100.0 * sigmoid(st.signals.base),
                    signals::days(ctx.cfg.horizon.whole_days())
                ));
            }
            parts.join("; ")
        }
        ReasonCode::RateDrop => signals::rate_drop::evidence(s, now, ctx),
        ReasonCode::SatisfactionDrop => signals::satisfaction::evidence(s, now, ctx),
        ReasonCode::Friction => signals::friction::evidence(s, now, ctx),
        ReasonCode::Escalation => signals::escalation::evidence(s, now, ctx),
        ReasonCode::Renewal => signals::renewal::evidence(s, now, ctx),
    }
}

#[cfg(test)]
mod tests;
