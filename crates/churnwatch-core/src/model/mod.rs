//! Buy-till-you-die population model: BG/NBD and MBG/NBD.
//!
//! Churn in a non-contractual business is never observed: a customer who
//! stops buying looks exactly like one who is merely between purchases. The
//! BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy
//! way") explains a customer's history with two latent traits — a Poisson
//! purchase rate λ ~ Gamma(r, α) and a per-purchase dropout probability
//! p ~ Beta(a, b) — and needs only three numbers per customer, the
//! [`Triple`] (repeat count `x`, recency `t_x`, age `T`). The MBG/NBD variant
//! (Batislam, Denizel & Filiztekin 2007) also lets a customer drop out right
//! after the first purchase, which stops the model from declaring every
//! one-time buyer certainly alive.
//!
//! This module is pure math: no I/O, no clock, no global state. It provides
//! - the per-customer [`log_likelihood`], [`p_alive`],
//!   [`expected_activity`] (conditional expected purchases over a horizon)
//!   and [`p_no_activity`] (probability of none in a horizon, the risk's base),
//! - maximum-likelihood [`fit`] / [`fit_grouped`] with Nelder–Mead over
//!   log-parameters, plus [`standard_errors`] from the observed information,
//! - [`hyp2f1`], the Gauss hypergeometric function the expectations need,
//! - [`simulate`], the generative process, used to test all of the above,
//! - [`gamma_gamma`], the spend model fitted beside it (average purchase
//!   value per customer, independent of the purchase process).
//!
//! All times (`t_x`, `T`, horizons, and the scale parameter `α`) share one
//! unit chosen by the caller (days, weeks); `r`, `a` and `b` are unitless.

mod bgnbd;
#[cfg(test)]
mod bgnbd_tests;
mod counts;
mod fit;
pub mod gamma_gamma;
mod hyp2f1;
mod linalg;
mod objective;
pub mod simulate;

pub use bgnbd::{
    expected_activity, ln_odds_no_activity, log_likelihood, no_activity_parts, p_alive,
    p_no_activity,
};
pub use counts::TripleCounts;
pub use fit::{fit, fit_grouped, standard_errors, FitOptions, FitResult};
pub use gamma_gamma::{expected_spend, Spend, SpendFit, SpendParams};
pub use hyp2f1::hyp2f1;
pub use simulate::SimCustomer;

use serde::{Deserialize, Serialize};

/// Which member of the model family to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Fader–Hardie–Lee BG/NBD: dropout only after repeat purchases.
    #[default]
    BgNbd,
    /// Batislam et al. MBG/NBD: dropout may also follow the first purchase.
    MbgNbd,
}

/// Population parameters: λ ~ Gamma(shape `r`, rate `alpha`),
/// p ~ Beta(`a`, `b`). All four must be finite and strictly positive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Gamma shape of the purchase rate (heterogeneity of λ; unitless).
    pub r: f64,
    /// Gamma rate of the purchase rate, in the caller's time unit.
    pub alpha: f64,
    /// First Beta shape of the dropout probability.
    pub a: f64,
    /// Second Beta shape of the dropout probability.
    pub b: f64,
}

impl Params {
    /// Checks that all four parameters are finite and strictly positive,
    /// the region where the model is defined.
    pub fn validate(&self) -> Result<(), ModelError> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if ok(self.r) && ok(self.alpha) && ok(self.a) && ok(self.b) {
            Ok(())
        } else {
            Err(ModelError::InvalidParams {
                reason: format!("all of r, alpha, a, b must be finite and > 0, got {self:?}"),
            })
        }
    }
}

/// One customer's sufficient statistics, all times in one unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Triple {
    /// Number of repeat purchases (the first purchase is not counted).
    pub x: f64,
    /// Recency: time of the last repeat purchase since the first purchase
    /// (0 when `x == 0`).
    pub t_x: f64,
    /// Age `T`: time from the first purchase to the end of observation.
    pub t: f64,
}

impl Triple {
    /// Checks `x ≥ 0`, `0 ≤ t_x ≤ T`, all finite — what every formula here
    /// assumes. (`x` need not be an integer, the formulas do not require it.)
    pub fn validate(&self) -> Result<(), ModelError> {
        let Triple { x, t_x, t } = *self;
        let finite = x.is_finite() && t_x.is_finite() && t.is_finite();
        if finite && x >= 0.0 && t_x >= 0.0 && t_x <= t {
            Ok(())
        } else {
            Err(ModelError::InvalidData {
                reason: format!("need finite x >= 0 and 0 <= t_x <= T, got {self:?}"),
            })
        }
    }
}

/// Everything that can go wrong in the model.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum ModelError {
    /// `fit` was given no customers.
    #[error("no data to fit")]
    NoData,
    /// An iterative computation ran out of iterations.
    #[error("{what} did not converge after {iterations} iterations")]
    NonConvergence {
        /// Which computation.
        what: &'static str,
        /// Iterations spent.
        iterations: u64,
    },
    /// Parameters outside the model's domain.
    #[error("invalid parameters: {reason}")]
    InvalidParams {
        /// Details.
        reason: String,
    },
    /// A customer triple or horizon outside the model's domain.
    #[error("invalid data: {reason}")]
    InvalidData {
        /// Details.
        reason: String,
    },
    /// A special function was asked for a value outside its domain.
    #[error("domain error: {reason}")]
    Domain {
        /// Details.
        reason: String,
    },
    /// The observed information matrix could not be inverted (flat or
    /// non-concave likelihood at the given point).
    #[error("observed information is not positive definite")]
    SingularInformation,
    /// The optimizer itself failed.
    #[error("optimizer error: {0}")]
    Optimizer(String),
}
