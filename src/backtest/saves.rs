//! Risk ranking against expected-saves ranking at the same outreach volume
//! (docs/uplift.md, "Targeting by expected saves"): pure, from the customers scored
//! at the cutoff and the uplift measured on the holdout before it.
//!
//! The volume `k` is the number of customers the risk ranking would contact
//! at the cutoff (risk at or above `outreach.trigger_level`). Each ranking
//! takes its top `k`. A selection's *expected customers kept per contact* is
//! the mean, over the customers it takes, of the uplift in use for their
//! playbook (the measured point estimate, or the pooled one for a playbook
//! below `outreach.saves_min_per_arm`): how many of them contact keeps,
//! by the holdout's measurement. The gain is the difference of the two
//! selections, with a 95% interval from the playbooks' binomial variances
//! (Wald; the selections differ only in their mix of playbooks, so the gain
//! is a linear combination of the playbooks' estimates). A gain is claimed
//! only when the interval excludes 0. The selections' counts per playbook are
//! reported too, so that with a population's true effects (the generator's
//! `--treatment`) the true customers kept per contact can be computed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    outreach::targeting::{self, Candidate, Targeting, UpliftInUse},
    pb::Playbook,
    uplift::{interval::Z95, ArmCounts, UpliftCounts},
};

/// One ranking's selection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Selection {
    pub targeting: Targeting,
    pub contacts: u64,
    /// Expected customers kept per contact (see the module docs).
    pub kept_per_contact: f64,
    /// Expected value kept per contact: the same with each customer's
    /// predicted future value (0 without a spend model).
    pub value_kept_per_contact: f64,
    /// Customers taken, by playbook (enum name).
    pub by_playbook: BTreeMap<&'static str, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SavesComparison {
    pub min_per_arm: u64,
    /// Playbooks whose measured uplift is used, with it.
    pub measured: BTreeMap<&'static str, f64>,
    pub pooled: Option<f64>,
    pub risk: Selection,
    pub expected_saves: Selection,
    /// Expected-saves minus risk kept per contact, and its 95% interval.
    pub gain: f64,
    pub gain_low: f64,
    pub gain_high: f64,
    /// Whether the interval excludes 0 (a gain, or a loss, is claimed).
    pub significant: bool,
}

/// Wald variance of held out minus contacted churn rate.
fn variance(c: &ArmCounts, h: &ArmCounts) -> Option<f64> {
    let v = |a: &ArmCounts| {
        let p = a.churn_rate()?;
        Some(p * (1.0 - p) / a.decided as f64)
    };
    Some(v(c)? + v(h)?)
}

pub fn compare(
    candidates: &[Candidate],
    k: usize,
    counts: &BTreeMap<&'static str, UpliftCounts>,
    min_per_arm: u64,
) -> SavesComparison {
    let uplift = UpliftInUse::from_counts(counts, min_per_arm);
    let k = k.min(candidates.len());
    let select = |t: Targeting| {
        let keys = targeting::keys(candidates, t, &uplift);
        let picked = targeting::top(&keys, k);
        let mut by_playbook: BTreeMap<&'static str, u64> = BTreeMap::new();
        let (mut kept, mut value) = (0.0, 0.0);
        for i in &picked {
            let c = &candidates[*i];
            let (u, _) = uplift.factor(c.playbook);
            kept += u;
            value += u * c.future_value.unwrap_or(0.0);
            *by_playbook.entry(c.playbook.as_str_name()).or_default() += 1;
        }
        let n = picked.len().max(1) as f64;
        Selection {
            targeting: t,
            contacts: picked.len() as u64,
            kept_per_contact: kept / n,
            value_kept_per_contact: value / n,
            by_playbook,
        }
    };
    let risk = select(Targeting::Risk);
    let saves = select(Targeting::ExpectedSaves);
    // Variance of the gain: per playbook, (share difference)^2 x variance
    // of the estimate in use (the pooled one for the fallback playbooks).
    let pooled_var = {
        let (mut c, mut h) = (ArmCounts::default(), ArmCounts::default());
        for (name, u) in counts {
            if Playbook::from_str_name(name).is_some_and(|p| uplift.measured.contains_key(&p)) {
                c.decided += u.contacted.decided;
                c.retained += u.contacted.retained;
                h.decided += u.held_out.decided;
                h.retained += u.held_out.retained;
            }
        }
        variance(&c, &h).unwrap_or(0.0)
    };
    let n = k.max(1) as f64;
    let mut names: Vec<&'static str> = risk.by_playbook.keys().copied().collect();
    names.extend(saves.by_playbook.keys().copied());
    names.sort_unstable();
    names.dedup();
    let (mut var, mut fallback_share) = (0.0, 0.0);
    for name in names {
        let d = (saves.by_playbook.get(name).copied().unwrap_or(0) as f64
            - risk.by_playbook.get(name).copied().unwrap_or(0) as f64)
            / n;
        let measured =
            Playbook::from_str_name(name).is_some_and(|p| uplift.measured.contains_key(&p));
        match counts.get(name).filter(|_| measured) {
            Some(u) => var += d * d * variance(&u.contacted, &u.held_out).unwrap_or(0.0),
            None => fallback_share += d,
        }
    }
    var += fallback_share * fallback_share * pooled_var;
    let gain = saves.kept_per_contact - risk.kept_per_contact;
    let half = Z95 * var.sqrt();
    SavesComparison {
        min_per_arm,
        measured: uplift
            .measured
            .iter()
            .map(|(p, u)| (p.as_str_name(), *u))
            .collect(),
        pooled: uplift.pooled,
        risk,
        expected_saves: saves,
        gain,
        gain_low: gain - half,
        gain_high: gain + half,
        significant: gain - half > 0.0 || gain + half < 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(decided: u64, retained: u64) -> ArmCounts {
        ArmCounts { decided, retained }
    }

    /// Two playbooks, 500 per arm: check-in keeps 30% (churn 50% held out,
    /// 20% contacted), win-back nothing. Four candidates, two contacts: risk
    /// takes the two win-back customers (risk 0.9, 0.8), expected saves the
    /// two check-in ones (0.3 x 0.6 > 0 x 0.9). Gain 0.3; its variance is
    /// the check-in and win-back variances (share difference 1 each):
    /// 0.5^2/500 + 0.2 x 0.8/500 + 2 x 0.25/500 = 0.00182, half-width 0.0836.
    #[test]
    fn expected_saves_takes_the_playbook_that_keeps_customers() {
        let mut counts = BTreeMap::new();
        counts.insert(
            "CHECK_IN",
            UpliftCounts {
                contacted: arm(500, 400),
                held_out: arm(500, 250),
            },
        );
        counts.insert(
            "WIN_BACK",
            UpliftCounts {
                contacted: arm(500, 250),
                held_out: arm(500, 250),
            },
        );
        let c = |risk, playbook| Candidate {
            risk,
            playbook,
            future_value: None,
        };
        let cands = [
            c(0.9, Playbook::WinBack),
            c(0.8, Playbook::WinBack),
            c(0.6, Playbook::CheckIn),
            c(0.5, Playbook::CheckIn),
        ];
        let r = compare(&cands, 2, &counts, 200);
        assert_eq!(r.risk.by_playbook.get("WIN_BACK"), Some(&2));
        assert_eq!(r.expected_saves.by_playbook.get("CHECK_IN"), Some(&2));
        assert!((r.gain - 0.3).abs() < 1e-12);
        let half = Z95 * (0.25f64 / 500.0 + 0.16 / 500.0 + 0.5 / 500.0).sqrt();
        assert!((r.gain_low - (0.3 - half)).abs() < 1e-12, "{r:?}");
        assert!(r.significant);
        // Below the threshold: both rankings are the risk ranking, no gain.
        let r = compare(&cands, 2, &counts, 501);
        assert_eq!(r.risk.by_playbook, r.expected_saves.by_playbook);
        assert_eq!(r.gain, 0.0);
        assert!(!r.significant);
    }
}
