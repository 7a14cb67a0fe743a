//! The population model in use: the configured prior until the first fit,
//! then the latest maximum-likelihood fit over the customers' (x, t_x, T).
//! Bridges customer state (UTC days) and the model's time unit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    config::{ModelConfig, TimeUnit},
    learn::LearnedRisk,
    model::{self, Family, FitOptions, ModelError, Params, Spend, SpendFit, Triple, TripleCounts},
    pb::Playbook,
    state::Activity,
    time::{day_of, Day, Span, Timestamp},
    uplift::UpliftCounts,
};

/// What one fit produced (exported as metrics and `--model-out`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitRecord {
    pub params: Params,
    pub log_likelihood: f64,
    pub customers: u64,
    pub distinct_triples: u64,
    pub iterations: u64,
    pub converged: bool,
    /// Stream time the fit was made at (unix seconds).
    pub fitted_at: Timestamp,
}

/// Why a refit did not replace the model.
#[derive(Debug, thiserror::Error)]
pub enum RefitError {
    #[error("only {customers} customers with activity; model.min_customers is {min}, so the current model stays")]
    TooFew { customers: u64, min: u64 },
    #[error("the longest customer history is {days:.0} days; model.min_history is {min_days} days, so the current model stays")]
    TooShort { days: f64, min_days: i64 },
    #[error(transparent)]
    Model(#[from] ModelError),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopulationModel {
    pub family: Family,
    pub time_unit: TimeUnit,
    pub params: Params,
    /// `None` while the prior is in use.
    pub fit: Option<FitRecord>,
    /// The risk's coefficients learned from outcomes; `None` until the first
    /// successful learning (records written before there was learning have
    /// none and read as `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<LearnedRisk>,
    /// The Gamma-Gamma spend model fitted beside the activity model at each
    /// refit; `None` until the first successful spend fit (older records
    /// have none and read as `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<SpendRecord>,
    /// The measured uplift and the population's mean predicted future
    /// value, summed at each refit while `outreach.targeting =
    /// "expected_saves"` (`None` otherwise, and in older records): what
    /// that targeting weighs decisions with until the next refit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplift: Option<UpliftRecord>,
}

/// The uplift measured over the customers at a refit (docs/uplift.md
/// "Targeting by expected saves").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpliftRecord {
    /// Closed trials per playbook (enum name) and arm, summed over the
    /// customers' states (so a restore, a rebalance or a replay sums the
    /// same counts; an erased customer's trials leave with them).
    pub counts: BTreeMap<String, UpliftCounts>,
    /// Mean predicted future value ([`PopulationModel::future_value`] over
    /// `score.horizon`) of the customers with activity; `None` without a
    /// spend model. A customer's value relative to it weighs their
    /// expected saves (1 = an average customer).
    pub mean_future_value: Option<f64>,
    /// Stream time of the refit (unix seconds).
    pub measured_at: Timestamp,
}

/// What one spend fit produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpendRecord {
    pub fit: SpendFit,
    /// Stream time the fit was made at (unix seconds).
    pub fitted_at: Timestamp,
}

impl PopulationModel {
    pub fn prior(cfg: &ModelConfig) -> Self {
        PopulationModel {
            family: cfg.family,
            time_unit: cfg.time_unit,
            params: cfg.prior_params(),
            fit: None,
            risk: None,
            spend: None,
            uplift: None,
        }
    }

    /// (x, t_x, T) of a customer as of `now_day`, in the model's time unit.
    pub fn triple(&self, a: &Activity, now_day: Day) -> Triple {
        let unit = self.time_unit.days();
        let age = (now_day.max(a.last_day) - a.first_day) as f64;
        Triple {
            x: f64::from(a.repeat_days),
            t_x: f64::from(a.span_days()) / unit,
            t: age / unit,
        }
    }

    pub fn p_alive(&self, a: &Activity, now_day: Day) -> f64 {
        let t = self.triple(a, now_day);
        model::p_alive(self.family, &self.params, t.x, t.t_x, t.t)
    }

    /// `(P(alive), log-odds of no activity in the horizon after now_day)`.
    /// A customer with no activity yet is taken as one whose first activity
    /// is today (x = 0, T = 0): the population's answer for a newcomer.
    pub fn no_activity(&self, a: Option<&Activity>, now_day: Day, horizon: Span) -> (f64, f64) {
        let t = match a {
            Some(a) => self.triple(a, now_day),
            None => Triple {
                x: 0.0,
                t_x: 0.0,
                t: 0.0,
            },
        };
        let h = horizon.as_days_f64() / self.time_unit.days();
        let (ln_alive, lo) =
            model::no_activity_parts(self.family, &self.params, t.x, t.t_x, t.t, h);
        (ln_alive.exp(), lo)
    }

    /// Expected active days in the `horizon` after `now_day`.
    pub fn expected_activity(
        &self,
        a: &Activity,
        now_day: Day,
        horizon: Span,
    ) -> Result<f64, ModelError> {
        let t = self.triple(a, now_day);
        let h = horizon.as_days_f64() / self.time_unit.days();
        model::expected_activity(self.family, &self.params, t.x, t.t_x, t.t, h)
    }

    /// A short, stable name of the model in use (goes into every outreach).
    pub fn version(&self) -> String {
        let p = &self.params;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for v in [p.r, p.alpha, p.a, p.b] {
            h.update(&v.to_bits().to_le_bytes());
        }
        // Learned coefficients change the risk as much as the parameters do.
        if let Some(r) = &self.risk {
            for v in crate::learn::to_vector(r.bias, &r.weights) {
                h.update(&v.to_bits().to_le_bytes());
            }
        }
        // The measured uplift changes expected-saves targeting's decisions
        // (present only under that targeting: risk targeting's versions are
        // as before).
        if let Some(u) = &self.uplift {
            for (name, c) in &u.counts {
                h.update(name.as_bytes());
                for n in [
                    c.contacted.decided,
                    c.contacted.retained,
                    c.held_out.decided,
                    c.held_out.retained,
                ] {
                    h.update(&n.to_le_bytes());
                }
            }
            h.update(&u.mean_future_value.unwrap_or(-1.0).to_bits().to_le_bytes());
        }
        let family = match self.family {
            Family::BgNbd => "bgnbd",
            Family::MbgNbd => "mbgnbd",
        };
        let source = if self.fit.is_some() { "fit" } else { "prior" };
        format!(
            "{family}-{}-{source}-{:08x}",
            self.time_unit.as_str(),
            h.digest() as u32
        )
    }

    /// Fits the model on the customers' activity as of `now`; the result
    /// replaces this model. Fewer customers than `cfg.min_customers` is an
    /// error and the caller keeps the current model.
    pub fn refit<'a>(
        &self,
        cfg: &ModelConfig,
        activities: impl Iterator<Item = &'a Activity>,
        now: Timestamp,
    ) -> Result<PopulationModel, RefitError> {
        let now_day = day_of(now);
        let counts: TripleCounts = activities.map(|a| self.triple(a, now_day)).collect();
        let customers = counts.customers() as u64;
        if customers < cfg.min_customers.max(1) {
            return Err(RefitError::TooFew {
                customers,
                min: cfg.min_customers.max(1),
            });
        }
        let opts = FitOptions {
            initial: self.params,
            ..FitOptions::default()
        };
        let r = model::fit_grouped(self.family, &counts, &opts)?;
        Ok(PopulationModel {
            family: self.family,
            time_unit: self.time_unit,
            params: r.params,
            fit: Some(FitRecord {
                params: r.params,
                log_likelihood: r.log_likelihood,
                customers: r.customers,
                distinct_triples: r.distinct_triples,
                iterations: r.iterations,
                converged: r.converged,
                fitted_at: now,
            }),
            risk: self.risk.clone(),
            spend: self.spend.clone(),
            uplift: self.uplift.clone(),
        })
    }

    /// This model with the spend model refitted on `spend` at `now`; the
    /// previous spend model stays when the fit fails (too few customers with
    /// purchases, no spread of means).
    pub fn with_spend(mut self, spend: &[Spend], now: Timestamp) -> Self {
        if let Ok(fit) = model::gamma_gamma::fit(spend) {
            self.spend = Some(SpendRecord {
                fit,
                fitted_at: now,
            });
        }
        self
    }

    /// Predicted future value of a customer over `horizon` after `now_day`:
    /// the BG/NBD expected active days times the Gamma-Gamma conditional
    /// expected spend per purchase (spend and activity independent, as
    /// the spend model assumes). `None` without a spend model or activity.
    /// (Active days stand in for purchases: the activity model counts days.)
    pub fn future_value(
        &self,
        a: Option<&Activity>,
        purchases: u32,
        amount: f64,
        now_day: Day,
        horizon: Span,
    ) -> Option<f64> {
        let sp = &self.spend.as_ref()?.fit.params;
        let mean = if purchases > 0 {
            amount / f64::from(purchases)
        } else {
            0.0
        };
        let per = model::expected_spend(sp, purchases, mean);
        let n = self.expected_activity(a?, now_day, horizon).ok()?;
        let v = n * per;
        v.is_finite().then_some(v.max(0.0))
    }

    /// This model with the uplift record of a refit at `at`: the counts
    /// summed from the customers, and the mean predicted future value of
    /// `values` ((activity, purchases, amount) of the customers with
    /// activity) under this model.
    pub fn with_uplift(
        mut self,
        counts: &BTreeMap<Playbook, UpliftCounts>,
        values: &[(Activity, u32, f64)],
        at: Timestamp,
        horizon: Span,
    ) -> Self {
        let now_day = day_of(at);
        // Summed in millionths as integers, so the mean does not depend on
        // the order the customers were gathered in (partitions, slots).
        let (mut micros, mut n) = (0u128, 0u64);
        for (a, purchases, amount) in values {
            if let Some(v) = self.future_value(Some(a), *purchases, *amount, now_day, horizon) {
                micros += (v * 1e6).round().clamp(0.0, 1e30) as u128;
                n += 1;
            }
        }
        let sum = micros as f64 / 1e6;
        self.uplift = Some(UpliftRecord {
            counts: counts
                .iter()
                .map(|(p, c)| (p.as_str_name().to_owned(), *c))
                .collect(),
            mean_future_value: (n > 0).then(|| sum / n as f64),
            measured_at: at,
        });
        self
    }
}
