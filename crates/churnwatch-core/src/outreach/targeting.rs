//! Targeting by expected saves (pure core): whom to contact first when not
//! everyone at risk can be contacted.
//!
//! With `outreach.targeting = "expected_saves"` a customer's rank key is the
//! expected value kept by contacting them:
//!
//! ```text
//! key = risk x uplift(playbook) x relative future value
//! ```
//!
//! - `risk`: the churn risk of the score (probability of no activity in
//!   `score.horizon`).
//! - `uplift(playbook)`: the playbook's measured uplift, the point estimate
//!   of the difference in churn rate held out minus contacted
//!   (docs/uplift.md), used only once *both* arms of that playbook
//!   have at least `outreach.saves_min_per_arm` closed trials. The point
//!   estimate rather than the interval's lower bound: the expected saves are
//!   linear in the uplift, so the unbiased estimate ranks by expected value;
//!   the lower bound would rank a well-measured small effect above a less
//!   measured large one, and the threshold already keeps the noise bounded
//!   (at 200 per arm the standard error of the difference is at most 0.05).
//!   A playbook measured as harmful (negative estimate) gets a negative key
//!   and goes last.
//! - relative future value: the customer's predicted future value (BG/NBD
//!   expected active days in `score.horizon` x Gamma-Gamma expected spend per
//!   purchase) divided by the mean over the candidates, so 1 = an average
//!   customer; 1 for everyone while there is no spend model.
//!
//! Fallback: a playbook below the threshold is ranked by risk alone, times
//! the pooled uplift of the playbooks that are measured (so the two kinds of
//! key compare on one scale). While no playbook is measured, every key is
//! the risk: the ranking is exactly the risk ranking.
//!
//! The backtest ranks its candidates by [`keys`]; the live policy cannot
//! wait for all candidates, so it weighs each decision by [`weight`]: the
//! key over the pooled uplift (the same order, on the risk's scale), with
//! the uplift record the last refit put in the model. The weighed risk
//! gates the send at the trigger level and sets the priority; a playbook
//! measured as harmful is not sent (`outreach::decide`).

use std::collections::BTreeMap;

use crate::{
    pb::Playbook,
    population::UpliftRecord,
    uplift::{ArmCounts, UpliftCounts},
};

pub use crate::vocabulary::Targeting;

/// The uplift in use per playbook, from the measured counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpliftInUse {
    /// Playbooks with enough data: their point estimate.
    pub measured: BTreeMap<Playbook, f64>,
    /// Pooled estimate over the measured playbooks (`None`: none measured).
    pub pooled: Option<f64>,
}

impl UpliftInUse {
    /// From the closed trials' counts per playbook (enum names as keys).
    pub fn from_counts<'a, K: AsRef<str> + 'a>(
        counts: impl IntoIterator<Item = (&'a K, &'a UpliftCounts)>,
        min_per_arm: u64,
    ) -> Self {
        let mut measured = BTreeMap::new();
        let (mut c, mut h) = (ArmCounts::default(), ArmCounts::default());
        for (name, u) in counts {
            let name = name.as_ref();
            let Some(pb) = Playbook::from_str_name(name) else {
                continue;
            };
            if u.contacted.decided >= min_per_arm.max(1) && u.held_out.decided >= min_per_arm.max(1)
            {
                if let Some(d) = difference(&u.contacted, &u.held_out) {
                    measured.insert(pb, d);
                    c.decided += u.contacted.decided;
                    c.retained += u.contacted.retained;
                    h.decided += u.held_out.decided;
                    h.retained += u.held_out.retained;
                }
            }
        }
        let pooled = (!measured.is_empty()).then(|| difference(&c, &h)).flatten();
        UpliftInUse { measured, pooled }
    }

    /// The uplift factor of `playbook`'s customers and whether it was
    /// measured (`false`: the fallback).
    pub fn factor(&self, playbook: Playbook) -> (f64, bool) {
        match self.measured.get(&playbook) {
            Some(u) => (*u, true),
            None => (self.pooled.unwrap_or(1.0), false),
        }
    }
}

/// Churn rate held out minus churn rate contacted.
fn difference(contacted: &ArmCounts, held_out: &ArmCounts) -> Option<f64> {
    Some(held_out.churn_rate()? - contacted.churn_rate()?)
}

/// One customer who could be contacted.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub risk: f64,
    pub playbook: Playbook,
    /// Predicted future value (`None` without a spend model).
    pub future_value: Option<f64>,
}

/// The rank keys of `candidates` under `targeting` (higher = first).
pub fn keys(candidates: &[Candidate], targeting: Targeting, uplift: &UpliftInUse) -> Vec<f64> {
    match targeting {
        Targeting::Risk => candidates.iter().map(|c| c.risk).collect(),
        Targeting::ExpectedSaves => {
            let values: Vec<f64> = candidates.iter().filter_map(|c| c.future_value).collect();
            let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
            candidates
                .iter()
                .map(|c| {
                    let (u, measured) = uplift.factor(c.playbook);
                    if !measured {
                        return c.risk * u;
                    }
                    let rel = match c.future_value {
                        Some(v) if mean > 0.0 => v / mean,
                        _ => 1.0,
                    };
                    c.risk * u * rel
                })
                .collect()
        }
    }
}

/// How expected-saves targeting weighs one decision in the live policy
/// (and in `replay`): the model's uplift record, from the last refit, in
/// place of the backtest's candidates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Weight {
    /// The playbook's uplift is not measured yet (or there is no record):
    /// the decision goes by risk, as under `risk` targeting.
    Unmeasured,
    /// The playbook's measured uplift is zero or below: contacting does
    /// not keep these customers (or drives them away). Not sent.
    Harmful { uplift: f64 },
    /// The expected-saves risk is `risk x factor`, factor = (the
    /// playbook's uplift / the pooled uplift of the measured playbooks) x
    /// (the customer's predicted future value / the population's mean), so
    /// an average customer of an average playbook keeps their risk.
    Measured { uplift: f64, factor: f64 },
}

/// The weight of a decision for `playbook` on a customer of predicted
/// future value `future_value`, by the uplift record of the model in use.
pub fn weight(
    record: Option<&UpliftRecord>,
    playbook: Playbook,
    future_value: Option<f64>,
    min_per_arm: u64,
) -> Weight {
    let Some(record) = record else {
        return Weight::Unmeasured;
    };
    let inuse = UpliftInUse::from_counts(&record.counts, min_per_arm);
    let (uplift, measured) = inuse.factor(playbook);
    if !measured {
        return Weight::Unmeasured;
    }
    if uplift <= 0.0 {
        return Weight::Harmful { uplift };
    }
    let relative = match inuse.pooled {
        Some(p) if p > 0.0 => uplift / p,
        _ => 1.0,
    };
    let value = match (future_value, record.mean_future_value) {
        (Some(v), Some(mean)) if mean > 0.0 => v / mean,
        _ => 1.0,
    };
    Weight::Measured {
        uplift,
        factor: relative * value,
    }
}

/// The indices of the `k` highest keys; ties keep input order.
pub fn top(keys: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|a, b| keys[*b].total_cmp(&keys[*a]));
    order.truncate(k);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(c: (u64, u64), h: (u64, u64)) -> UpliftCounts {
        UpliftCounts {
            contacted: ArmCounts {
                decided: c.0,
                retained: c.1,
            },
            held_out: ArmCounts {
                decided: h.0,
                retained: h.1,
            },
        }
    }

    #[test]
    fn uplift_is_used_only_with_enough_data_per_arm() {
        let mut m = BTreeMap::new();
        // check-in: contacted 20% churn, held out 50%: +0.3, 300 / 100.
        m.insert("CHECK_IN", counts((300, 240), (100, 50)));
        // win-back: 99 held out, below the threshold.
        m.insert("WIN_BACK", counts((300, 150), (99, 10)));
        let u = UpliftInUse::from_counts(&m, 100);
        assert_eq!(u.measured.len(), 1);
        assert!((u.factor(Playbook::CheckIn).0 - 0.3).abs() < 1e-12);
        assert_eq!(
            u.factor(Playbook::WinBack),
            (u.pooled.unwrap_or(0.0), false)
        );
        assert!((u.pooled.unwrap_or(0.0) - 0.3).abs() < 1e-12);
        // Nothing measured: the fallback factor is 1 (pure risk).
        let none = UpliftInUse::from_counts(&m, 1000);
        assert_eq!(none.factor(Playbook::CheckIn), (1.0, false));
    }

    #[test]
    fn risk_targeting_and_unmeasured_playbooks_rank_by_risk() {
        let c = |risk, playbook| Candidate {
            risk,
            playbook,
            future_value: Some(100.0 * risk),
        };
        let cands = [
            c(0.9, Playbook::WinBack),
            c(0.5, Playbook::CheckIn),
            c(0.7, Playbook::CheckIn),
        ];
        let none = UpliftInUse::default();
        let by_risk = keys(&cands, Targeting::Risk, &none);
        assert_eq!(keys(&cands, Targeting::ExpectedSaves, &none), by_risk);
        assert_eq!(top(&by_risk, 2), vec![0, 2]);
    }

    #[test]
    fn measured_uplift_and_value_reorder() {
        let mut measured = BTreeMap::new();
        measured.insert(Playbook::CheckIn, 0.3);
        measured.insert(Playbook::WinBack, -0.05);
        let u = UpliftInUse {
            measured,
            pooled: Some(0.2),
        };
        let cands = [
            Candidate {
                risk: 0.9,
                playbook: Playbook::WinBack,
                future_value: Some(100.0),
            },
            Candidate {
                risk: 0.5,
                playbook: Playbook::CheckIn,
                future_value: Some(100.0),
            },
            Candidate {
                risk: 0.5,
                playbook: Playbook::CheckIn,
                future_value: Some(300.0),
            },
            Candidate {
                risk: 0.8,
                playbook: Playbook::RenewalSave,
                future_value: Some(100.0),
            },
        ];
        let k = keys(&cands, Targeting::ExpectedSaves, &u);
        // Mean value 150: keys 0.9 x -0.05 x 2/3, 0.5 x 0.3 x 2/3,
        // 0.5 x 0.3 x 2, and the fallback 0.8 x 0.2.
        let want = [-0.03, 0.1, 0.3, 0.16];
        for (g, w) in k.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{k:?}");
        }
        assert_eq!(top(&k, 4), vec![2, 3, 1, 0]);
    }

    /// The live weight: unmeasured without a record or below the threshold,
    /// harmful at a zero or negative measured uplift, and otherwise the
    /// uplift relative to the pooled one times the value relative to the
    /// mean (the backtest's key over the pooled uplift, so both rank alike).
    #[test]
    fn live_weight_is_the_key_over_the_pooled_uplift() {
        let mut m = BTreeMap::new();
        // check-in +0.3 (300 / 100), win-back -0.1 (200 / 200), renewal
        // save below the threshold.
        m.insert("CHECK_IN".to_owned(), counts((300, 240), (100, 50)));
        m.insert("WIN_BACK".to_owned(), counts((200, 100), (200, 120)));
        m.insert("RENEWAL_SAVE".to_owned(), counts((50, 40), (50, 10)));
        let record = UpliftRecord {
            counts: m,
            mean_future_value: Some(200.0),
            measured_at: 0,
        };
        assert_eq!(
            weight(None, Playbook::CheckIn, Some(1.0), 100),
            Weight::Unmeasured
        );
        assert_eq!(
            weight(Some(&record), Playbook::RenewalSave, Some(1.0), 100),
            Weight::Unmeasured
        );
        let Weight::Harmful { uplift } = weight(Some(&record), Playbook::WinBack, None, 100) else {
            panic!("win-back is measured harmful")
        };
        assert!((uplift + 0.1).abs() < 1e-12);
        // Pooled over check-in and win-back: contacted 500 / 340 retained
        // (churn 0.32), held out 300 / 170 (0.4333...): +0.11333...
        let pooled = 130.0 / 300.0 - 160.0 / 500.0;
        let Weight::Measured { uplift, factor } =
            weight(Some(&record), Playbook::CheckIn, Some(300.0), 100)
        else {
            panic!("check-in is measured")
        };
        assert!((uplift - 0.3).abs() < 1e-12);
        assert!((factor - 0.3 / pooled * 1.5).abs() < 1e-12, "{factor}");
    }
}
