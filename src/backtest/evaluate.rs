//! From one row per customer (what was predicted at the cutoff, what
//! happened in the horizon) to the backtest's figures. Pure: no I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use super::measure::{self, Bin, TopShare};

/// What the backtest knows of one customer.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: String,
    /// `risk` at the cutoff.
    pub risk: f64,
    /// Level at the cutoff at or above `outreach.trigger_level`.
    pub flagged: bool,
    pub p_alive: f64,
    /// Expected active days in the horizon (population model).
    pub expected: f64,
    /// Days since the last active day, at the cutoff.
    pub recency_days: f64,
    /// Each signal's part of the logit of `risk` (reason code, log-odds).
    pub parts: Vec<(&'static str, f64)>,
    /// Calibration-period frequency: repeat active days before the cutoff.
    pub x: u32,
    /// Distinct active days in the horizon.
    pub actual: u32,
    /// The outcome: churned in the horizon.
    pub churned: bool,
    /// Sent at least one outreach in the horizon.
    pub contacted: bool,
    pub truth: Option<Truth>,
}

/// Ground truth of a synthetic customer (`generate --truth-out`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, Serialize)]
pub struct Truth {
    pub customer_id: String,
    pub left: bool,
    /// When they left (unix seconds), if they did.
    pub left_at: Option<i64>,
    /// Why: `none` for those who stay.
    pub cause: String,
}

/// The ranking and calibration figures of one predictor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figures {
    pub auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub brier: Option<f64>,
    pub brier_skill: Option<f64>,
    pub log_loss: Option<f64>,
    pub ece: Option<f64>,
    pub reliability: Vec<Bin>,
    /// Top 1%, 5% and 10%.
    pub top: Vec<TopShare>,
}

pub const TOP_SHARES: [f64; 3] = [0.01, 0.05, 0.10];
pub const RELIABILITY_BINS: usize = 10;

/// `scores` rank (higher = more likely to churn); `p` are the probabilities.
pub fn figures(scores: &[f64], p: &[f64], y: &[bool]) -> Figures {
    let base = measure::base_rate(y).unwrap_or(0.0);
    let brier = measure::brier(p, y);
    let reliability = measure::reliability(p, y, RELIABILITY_BINS);
    Figures {
        auc: measure::auc(scores, y),
        pr_auc: measure::pr_auc(scores, y),
        brier,
        brier_skill: brier.and_then(|b| measure::brier_skill(b, base)),
        log_loss: measure::log_loss(p, y),
        ece: measure::ece(&reliability),
        reliability,
        top: TOP_SHARES
            .iter()
            .filter_map(|s| measure::top_share(scores, y, *s))
            .collect(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Baseline {
    pub name: &'static str,
    /// What ranks the customers.
    pub meaning: &'static str,
    pub figures: Figures,
    /// sigmoid(a + b s) of the ranking score s: the in-sample fit that
    /// turns it into the probabilities the calibration figures use.
    pub platt: (f64, f64),
    pub gains: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ablation {
    /// The reason code whose part of the logit was taken out.
    pub signal: &'static str,
    /// Customers for whom that part was not zero.
    pub customers_with_signal: u64,
    pub auc: Option<f64>,
    pub brier: Option<f64>,
    /// Change against the full risk (negative AUC: the signal helps rank).
    pub auc_change: Option<f64>,
    pub brier_change: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrequencyBucket {
    /// Repeat active days before the cutoff, e.g. `0`, `7-13`, `28+`.
    pub x: String,
    pub customers: u64,
    pub mean_actual: f64,
    pub mean_predicted: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutreachFigures {
    /// Outreach sent in the horizon (after suppression).
    pub sent: u64,
    pub customers_contacted: u64,
    /// Share of contacted customers who churned.
    pub precision: Option<f64>,
    /// Share of churners who were contacted.
    pub recall: Option<f64>,
    pub per_week_mean: f64,
    /// Outreach sent per week of the horizon, from the cutoff.
    pub per_week: Vec<u64>,
    /// Outreach the policy held back in the horizon, by reason.
    pub suppressed_by_reason: BTreeMap<&'static str, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TruthGroup {
    pub group: String,
    pub customers: u64,
    /// Share at or above the trigger level at the cutoff.
    pub recall_flagged: Option<f64>,
    /// Share sent an outreach in the horizon.
    pub recall_contacted: Option<f64>,
    pub mean_risk: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TruthFigures {
    /// Customers scored with a ground-truth row.
    pub matched: u64,
    /// AUC of risk for "really left by the end of the horizon".
    pub auc_left: Option<f64>,
    /// Left before the cutoff, left in the horizon, stayed; then per cause
    /// of those who left by the end of the horizon.
    pub groups: Vec<TruthGroup>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Histograms {
    /// Risk of the churners, 20 bins over [0, 1].
    pub churned: Vec<u64>,
    pub stayed: Vec<u64>,
}

/// The whole report (JSON as is; the terminal and HTML views read it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub cutoff: String,
    pub horizon_days: f64,
    pub customers: u64,
    /// Customers known at the cutoff with no activity yet (not scored).
    pub without_activity: u64,
    pub churned: u64,
    pub base_rate: Option<f64>,
    pub risk: Figures,
    pub risk_gains: Vec<(f64, f64)>,
    pub risk_histograms: Histograms,
    pub baselines: Vec<Baseline>,
    pub ablation: Vec<Ablation>,
    pub frequency: Vec<FrequencyBucket>,
    pub outreach: OutreachFigures,
    pub truth: Option<TruthFigures>,
    /// Measured uplift per playbook (`outreach.holdout`), over every
    /// decision of the run whose horizon closed before the window's end.
    pub uplift: Vec<PlaybookUplift>,
    /// Risk ranking against expected-saves ranking at the same volume
    /// (docs/uplift.md, "Targeting by expected saves"), by the uplift measured
    /// before the cutoff.
    pub targeting: Option<super::saves::SavesComparison>,
}

/// One playbook's measured uplift (docs/uplift.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlaybookUplift {
    pub playbook: String,
    pub contacted: crate::uplift::ArmCounts,
    pub held_out: crate::uplift::ArmCounts,
    pub churn_contacted: Option<f64>,
    pub churn_held_out: Option<f64>,
    /// Churn rate held out minus contacted, with its Newcombe 95% interval.
    pub difference: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Contacts needed to keep one customer, in words ("not significant").
    pub nnt: String,
}

/// The report's uplift rows from the run's counts, by playbook.
pub fn uplift_rows(
    counts: &BTreeMap<&'static str, crate::uplift::UpliftCounts>,
) -> Vec<PlaybookUplift> {
    counts
        .iter()
        .map(|(playbook, c)| {
            let u = crate::uplift::Uplift::measure(c.contacted, c.held_out);
            PlaybookUplift {
                playbook: (*playbook).to_owned(),
                contacted: c.contacted,
                held_out: c.held_out,
                churn_contacted: c.contacted.churn_rate(),
                churn_held_out: c.held_out.churn_rate(),
                difference: u.map(|u| u.difference),
                low: u.map(|u| u.low),
                high: u.map(|u| u.high),
                nnt: u.map_or("an arm is empty".to_owned(), |u| u.nnt_text()),
            }
        })
        .collect()
}

/// Outreach sent in the horizon, as the evaluation needs it.
pub struct Sent {
    /// Days after the cutoff each outreach was decided.
    pub days_after_cutoff: Vec<f64>,
    pub suppressed_by_reason: BTreeMap<&'static str, u64>,
}

pub const GAINS_POINTS: usize = 20;
pub const HISTOGRAM_BINS: usize = 20;

pub struct Window {
    pub cutoff: String,
    pub horizon_days: f64,
    pub cutoff_at: i64,
    pub without_activity: u64,
}

pub fn evaluate(rows: &[Row], window: Window, sent: Sent) -> Report {
    let y: Vec<bool> = rows.iter().map(|r| r.churned).collect();
    let risk: Vec<f64> = rows.iter().map(|r| r.risk).collect();
    let risk_figures = figures(&risk, &risk, &y);

    let baselines = vec![
        baseline(
            "p_alive",
            "1 - P(alive) of the population model",
            rows.iter().map(|r| 1.0 - r.p_alive).collect(),
            &y,
        ),
        baseline(
            "expected_activity",
            "fewest expected active days in the horizon (ranked by -ln(E + 0.001))",
            rows.iter().map(|r| -(r.expected + 1e-3).ln()).collect(),
            &y,
        ),
        baseline(
            "recency",
            "most days since the last active day (ranked by ln(1 + days))",
            rows.iter().map(|r| r.recency_days.ln_1p()).collect(),
            &y,
        ),
    ];

    let mut codes: Vec<&'static str> = Vec::new();
    for r in rows {
        for (c, _) in &r.parts {
            if !codes.contains(c) {
                codes.push(c);
            }
        }
    }
    let ablation = codes
        .into_iter()
        .map(|code| {
            let without: Vec<f64> = rows
                .iter()
                .map(|r| {
                    let part: f64 = r
                        .parts
                        .iter()
                        .filter(|(c, _)| *c == code)
                        .map(|p| p.1)
                        .sum();
                    measure::sigmoid(logit(r.risk) - part)
                })
                .collect();
            let auc = measure::auc(&without, &y);
            let brier = measure::brier(&without, &y);
            Ablation {
                signal: code,
                customers_with_signal: rows
                    .iter()
                    .filter(|r| r.parts.iter().any(|(c, v)| *c == code && *v != 0.0))
                    .count() as u64,
                auc,
                brier,
                auc_change: auc.zip(risk_figures.auc).map(|(a, b)| a - b),
                brier_change: brier.zip(risk_figures.brier).map(|(a, b)| a - b),
            }
        })
        .collect();

    let churned = y.iter().filter(|v| **v).count() as u64;
    Report {
        cutoff: window.cutoff,
        horizon_days: window.horizon_days,
        customers: rows.len() as u64,
        without_activity: window.without_activity,
        churned,
        base_rate: measure::base_rate(&y),
        risk_gains: measure::gains(&risk, &y, GAINS_POINTS),
        risk_histograms: Histograms {
            churned: measure::histogram(
                rows.iter().filter(|r| r.churned).map(|r| r.risk),
                HISTOGRAM_BINS,
            ),
            stayed: measure::histogram(
                rows.iter().filter(|r| !r.churned).map(|r| r.risk),
                HISTOGRAM_BINS,
            ),
        },
        risk: risk_figures,
        baselines,
        ablation,
        frequency: frequency(rows),
        outreach: outreach(rows, window.horizon_days, sent, churned),
        truth: truth(rows, window.cutoff_at, window.horizon_days),
        uplift: Vec::new(),
        targeting: None,
    }
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}

fn baseline(name: &'static str, meaning: &'static str, s: Vec<f64>, y: &[bool]) -> Baseline {
    let platt = measure::platt(&s, y);
    let p: Vec<f64> = s
        .iter()
        .map(|v| measure::sigmoid(platt.0 + platt.1 * v))
        .collect();
    Baseline {
        name,
        meaning,
        figures: figures(&s, &p, y),
        platt,
        gains: measure::gains(&s, y, GAINS_POINTS),
    }
}

/// The buy-till-you-die frequency buckets: 0 to 6 one by one, then wider.
const BUCKETS: [(u32, u32); 10] = [
    (0, 0),
    (1, 1),
    (2, 2),
    (3, 3),
    (4, 4),
    (5, 5),
    (6, 6),
    (7, 13),
    (14, 27),
    (28, u32::MAX),
];

fn frequency(rows: &[Row]) -> Vec<FrequencyBucket> {
    BUCKETS
        .iter()
        .filter_map(|(lo, hi)| {
            let inside: Vec<&Row> = rows.iter().filter(|r| r.x >= *lo && r.x <= *hi).collect();
            if inside.is_empty() {
                return None;
            }
            let n = inside.len() as f64;
            Some(FrequencyBucket {
                x: match (*lo, *hi) {
                    (l, h) if l == h => l.to_string(),
                    (l, u32::MAX) => format!("{l}+"),
                    (l, h) => format!("{l}-{h}"),
                },
                customers: inside.len() as u64,
                mean_actual: inside.iter().map(|r| f64::from(r.actual)).sum::<f64>() / n,
                mean_predicted: inside.iter().map(|r| r.expected).sum::<f64>() / n,
            })
        })
        .collect()
}

fn outreach(rows: &[Row], horizon_days: f64, sent: Sent, churned: u64) -> OutreachFigures {
    let contacted = rows.iter().filter(|r| r.contacted).count() as u64;
    let hits = rows.iter().filter(|r| r.contacted && r.churned).count() as u64;
    let weeks = (horizon_days / 7.0).ceil().max(1.0) as usize;
    let mut per_week = vec![0u64; weeks];
    for d in &sent.days_after_cutoff {
        per_week[((d / 7.0).floor().max(0.0) as usize).min(weeks - 1)] += 1;
    }
    let n = sent.days_after_cutoff.len() as u64;
    OutreachFigures {
        sent: n,
        customers_contacted: contacted,
        precision: (contacted > 0).then(|| hits as f64 / contacted as f64),
        recall: (churned > 0).then(|| hits as f64 / churned as f64),
        per_week_mean: n as f64 / (horizon_days / 7.0).max(1e-9),
        per_week,
        suppressed_by_reason: sent.suppressed_by_reason,
    }
}

fn truth(rows: &[Row], cutoff: i64, horizon_days: f64) -> Option<TruthFigures> {
    let with: Vec<(&Row, &Truth)> = rows
        .iter()
        .filter_map(|r| r.truth.as_ref().map(|t| (r, t)))
        .collect();
    if with.is_empty() {
        return None;
    }
    let end = cutoff + (horizon_days * 86_400.0) as i64;
    let left_by = |t: &Truth, at: i64| t.left && t.left_at.is_some_and(|l| l < at);
    let group = |name: String, members: Vec<&Row>| {
        let n = members.len();
        let share = |f: &dyn Fn(&Row) -> bool| {
            (n > 0).then(|| members.iter().filter(|r| f(r)).count() as f64 / n as f64)
        };
        TruthGroup {
            group: name,
            customers: n as u64,
            recall_flagged: share(&|r| r.flagged),
            recall_contacted: share(&|r| r.contacted),
            mean_risk: (n > 0).then(|| members.iter().map(|r| r.risk).sum::<f64>() / n as f64),
        }
    };
    let mut groups = vec![
        group(
            "left before the cutoff".into(),
            with.iter()
                .filter(|(_, t)| left_by(t, cutoff))
                .map(|p| p.0)
                .collect(),
        ),
        group(
            "left in the horizon".into(),
            with.iter()
                .filter(|(_, t)| left_by(t, end) && !left_by(t, cutoff))
                .map(|p| p.0)
                .collect(),
        ),
        group(
            "stayed to the end of the horizon".into(),
            with.iter()
                .filter(|(_, t)| !left_by(t, end))
                .map(|p| p.0)
                .collect(),
        ),
    ];
    let mut causes: Vec<&str> = with
        .iter()
        .filter(|(_, t)| left_by(t, end))
        .map(|(_, t)| t.cause.as_str())
        .collect();
    causes.sort_unstable();
    causes.dedup();
    for c in causes {
        groups.push(group(
            format!("left by the end of the horizon, cause {c}"),
            with.iter()
                .filter(|(_, t)| left_by(t, end) && t.cause == c)
                .map(|p| p.0)
                .collect(),
        ));
    }
    let risk: Vec<f64> = with.iter().map(|(r, _)| r.risk).collect();
    let left: Vec<bool> = with.iter().map(|(_, t)| left_by(t, end)).collect();
    Some(TruthFigures {
        matched: with.len() as u64,
        auc_left: measure::auc(&risk, &left),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, risk: f64, churned: bool, x: u32, actual: u32, expected: f64) -> Row {
        Row {
            id: id.into(),
            risk,
            flagged: risk >= 0.6,
            p_alive: 1.0 - risk,
            expected,
            recency_days: risk * 100.0,
            parts: vec![("silence", 1.0)],
            x,
            actual,
            churned,
            contacted: risk >= 0.6,
            truth: None,
        }
    }

    #[test]
    fn outreach_precision_recall_and_weeks() {
        let rows = vec![
            row("a", 0.9, true, 0, 0, 0.1),
            row("b", 0.7, false, 1, 2, 1.0),
            row("c", 0.2, true, 1, 0, 0.5),
            row("d", 0.1, false, 3, 4, 3.0),
        ];
        let r = evaluate(
            &rows,
            Window {
                cutoff: "c".into(),
                horizon_days: 14.0,
                cutoff_at: 0,
                without_activity: 0,
            },
            Sent {
                days_after_cutoff: vec![0.5, 6.9, 7.0],
                suppressed_by_reason: BTreeMap::new(),
            },
        );
        // Contacted a (churned) and b (stayed): precision 1/2; churners a, c: recall 1/2.
        assert_eq!(r.outreach.precision, Some(0.5));
        assert_eq!(r.outreach.recall, Some(0.5));
        assert_eq!(r.outreach.per_week, vec![2, 1]);
        assert_eq!(r.outreach.per_week_mean, 1.5);
        // Frequency buckets: x 1 holds b and c: actual (2 + 0) / 2, predicted (1 + 0.5) / 2.
        let b1 = r.frequency.iter().find(|b| b.x == "1");
        assert_eq!(b1.map(|b| (b.customers, b.mean_actual)), Some((2, 1.0)));
        assert_eq!(b1.map(|b| b.mean_predicted), Some(0.75));
        // Taking out a part that every customer has alike changes no ranking.
        assert_eq!(r.ablation[0].auc, r.risk.auc);
        assert_eq!(r.risk.auc, Some(0.75));
    }
}
