//! Maximum-likelihood fitting with Nelder–Mead, and standard errors.
//!
//! The search runs over log-parameters so all four stay positive without
//! constraints. Nelder–Mead is derivative-free and robust, but it is slow on
//! badly scaled, correlated problems — and this one is both (`r` and `α`
//! are strongly correlated, `b` is often poorly determined). So the fit has
//! two stages:
//!
//! 1. **Locate.** Pick the best of the configured prior and a few
//!    data-scaled candidates, then run Nelder–Mead in log-coordinates. For
//!    large inputs this runs on a deterministic ~25k-customer subsample
//!    (`Prepared::thinned`), which is as good as the full data for finding
//!    the neighbourhood of the optimum and many times cheaper.
//! 2. **Polish.** Take the numerical Hessian there, and restart Nelder–Mead
//!    on the full data in coordinates whitened by its Cholesky factor, where
//!    the likelihood surface is close to a round bowl. This needs few
//!    iterations and also acts as the classic "restart to confirm
//!    convergence". If the Hessian is not positive definite the polish runs
//!    in plain log-coordinates.
//!
//! Stopping rule: Nelder–Mead stops when the standard deviation of the
//! negative log-likelihood across the simplex is below
//! [`FitOptions::tolerance`], in *total* log-likelihood units. A change of
//! ΔLL in the total corresponds to about `sqrt(2·ΔLL)` standard errors, so
//! the default 1e-3 means the answer is within a few hundredths of a
//! standard error of the optimum regardless of population size.

use super::linalg::{cholesky, hessian, inverse_diagonal, lower_inverse, Mat4, Vec4, DIM};
use super::objective::Prepared;
use super::{Family, ModelError, Params, Triple, TripleCounts};
use argmin::core::{CostFunction, Executor, State, TerminationReason};
use argmin::solver::neldermead::NelderMead;
use serde::{Deserialize, Serialize};

/// Target number of customers in the locate-stage subsample.
const THIN_CUSTOMERS: f64 = 25_000.0;
/// Subsample only when it cuts the customers at least this many times and
/// there are enough distinct triples for evaluation cost to matter.
const THIN_MIN_FACTOR: f64 = 2.0;
const THIN_MIN_DISTINCT: usize = 20_000;
/// Finite-difference step (log-parameter units) for Hessians.
const HESSIAN_STEP: f64 = 1e-3;
/// Initial simplex edge in log-coordinates (locate stage, and polish fallback).
const LOG_STEP: f64 = 0.5;
/// Initial simplex edge in whitened coordinates: one standard error of the
/// locate-stage data, about the distance to the full-data optimum.
const WHITE_STEP: f64 = 1.0;
/// The locate stage only needs to land near the optimum.
const LOCATE_TOLERANCE: f64 = 1e-2;

/// Options for [`fit`] and [`fit_grouped`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// Prior guess. Used as the starting point unless one of a few
    /// data-scaled candidates has a higher likelihood (so a prior in the
    /// wrong time unit costs nothing).
    pub initial: Params,
    /// Maximum Nelder–Mead iterations per stage.
    pub max_iters: u64,
    /// Stopping tolerance on the spread of total negative log-likelihood
    /// across the simplex (see module docs).
    pub tolerance: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            initial: Params {
                r: 1.0,
                alpha: 1.0,
                a: 1.0,
                b: 1.0,
            },
            max_iters: 2_000,
            tolerance: 1e-3,
        }
    }
}

/// Outcome of a fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitResult {
    /// Model family fitted.
    pub family: Family,
    /// Maximum-likelihood estimates.
    pub params: Params,
    /// Total log-likelihood over all customers at `params`.
    pub log_likelihood: f64,
    /// Customers in the data.
    pub customers: u64,
    /// Distinct `(x, t_x, T)` triples in the data.
    pub distinct_triples: u64,
    /// Nelder–Mead iterations over both stages.
    pub iterations: u64,
    /// Whether the final stage met the tolerance before `max_iters`.
    pub converged: bool,
}

/// Fits `family` to per-customer triples (grouped internally).
pub fn fit(family: Family, data: &[Triple], opts: &FitOptions) -> Result<FitResult, ModelError> {
    if data.is_empty() {
        return Err(ModelError::NoData);
    }
    fit_grouped(family, &data.iter().copied().collect(), opts)
}

/// Fits `family` to already grouped triples. Cost per iteration grows with
/// the number of distinct triples, not customers.
pub fn fit_grouped(
    family: Family,
    data: &TripleCounts,
    opts: &FitOptions,
) -> Result<FitResult, ModelError> {
    if data.is_empty() {
        return Err(ModelError::NoData);
    }
    data.validate()?;
    if data.entries().iter().all(|(tr, _)| tr.x == 0.0) {
        // Without a single repeat purchase the likelihood has no maximum
        // (it keeps rising as the purchase rate goes to zero) and says
        // nothing about dropout.
        return Err(ModelError::InvalidData {
            reason: "no repeat purchases: parameters are not identifiable".into(),
        });
    }
    opts.initial.validate()?;
    if !(opts.tolerance.is_finite() && opts.tolerance > 0.0) || opts.max_iters == 0 {
        return Err(ModelError::InvalidParams {
            reason: "tolerance must be finite and > 0, max_iters > 0".into(),
        });
    }
    let full = Prepared::new(family, data);
    let factor = data.customers_u64() as f64 / THIN_CUSTOMERS;
    let thinned = (factor >= THIN_MIN_FACTOR && data.distinct() >= THIN_MIN_DISTINCT)
        .then(|| Prepared::thinned(family, data, factor));
    let locate_data = thinned.as_ref().unwrap_or(&full);

    // Stage 1: locate.
    let start = starting_point(locate_data, data, &opts.initial);
    let log_coords = Coords::log(start);
    let tol = opts.tolerance.max(LOCATE_TOLERANCE);
    let located = minimize(locate_data, &log_coords, LOG_STEP, tol, opts.max_iters)?;

    // Stage 2: polish on the full data in whitened coordinates.
    let neg_ll = |u: &Vec4| neg_log_likelihood(locate_data, u);
    let coords = hessian(&neg_ll, &located.u, HESSIAN_STEP)
        .and_then(|h| cholesky(&h))
        .map(|l| Coords::whitened(located.u, &l));
    let (coords, step) = match coords {
        Some(c) => (c, WHITE_STEP),
        None => (Coords::log(located.u), LOG_STEP),
    };
    let polished = minimize(&full, &coords, step, opts.tolerance, opts.max_iters)?;
    Ok(FitResult {
        family,
        params: from_log(&polished.u),
        log_likelihood: -polished.cost,
        customers: data.customers_u64(),
        distinct_triples: data.distinct() as u64,
        iterations: located.iterations + polished.iterations,
        converged: polished.converged,
    })
}

/// Standard errors of `p` from the observed information: the numerical
/// Hessian of the total negative log-likelihood in log-parameters,
/// inverted, mapped back by the delta method (`se(θ) = θ·se(ln θ)`). Only
/// meaningful at (or very near) the maximum-likelihood estimate.
pub fn standard_errors(
    family: Family,
    data: &TripleCounts,
    p: &Params,
) -> Result<Params, ModelError> {
    if data.is_empty() {
        return Err(ModelError::NoData);
    }
    data.validate()?;
    p.validate()?;
    let prep = Prepared::new(family, data);
    let u = to_log(p);
    let neg_ll = |u: &Vec4| neg_log_likelihood(&prep, u);
    let h = hessian(&neg_ll, &u, HESSIAN_STEP).ok_or(ModelError::SingularInformation)?;
    let var = inverse_diagonal(&h).ok_or(ModelError::SingularInformation)?;
    let se = |i: usize| u[i].exp() * var[i].sqrt();
    Ok(Params {
        r: se(0),
        alpha: se(1),
        a: se(2),
        b: se(3),
    })
}

fn to_log(p: &Params) -> Vec4 {
    [p.r.ln(), p.alpha.ln(), p.a.ln(), p.b.ln()]
}

fn from_log(u: &Vec4) -> Params {
    Params {
        r: u[0].exp(),
        alpha: u[1].exp(),
        a: u[2].exp(),
        b: u[3].exp(),
    }
}

/// ln(1e-4) and ln(1e5): bounds of every log-parameter during the fit.
const LOG_MIN: f64 = -9.210_340_371_976_182;
const LOG_MAX: f64 = 11.512_925_464_970_229;

/// Negative total log-likelihood at log-parameters `u`; +∞ where the model
/// is undefined or the value overflows, which Nelder–Mead treats as "worse
/// than anything" and backs away from.
fn neg_log_likelihood(prep: &Prepared, u: &Vec4) -> f64 {
    // The search box: every parameter in [1e-4, 1e5]. A population with
    // (almost) no dropout has its likelihood maximum at a, b -> infinity;
    // without a box the simplex runs off to 1e200 and every downstream
    // formula overflows. At the box edge P(alive) is already ~1 for all.
    if u.iter().any(|v| !(LOG_MIN..=LOG_MAX).contains(v)) {
        return f64::INFINITY;
    }
    let p = from_log(u);
    if p.validate().is_err() {
        return f64::INFINITY;
    }
    let ll = prep.log_likelihood(&p);
    if ll.is_finite() {
        -ll
    } else {
        f64::INFINITY
    }
}

/// Best of the prior and a small grid scaled to the data's purchase rate.
fn starting_point(prep: &Prepared, data: &TripleCounts, prior: &Params) -> Vec4 {
    let (sx, st) = data.entries().iter().fold((0.0, 0.0), |(sx, st), (tr, c)| {
        (sx + tr.x * *c as f64, st + tr.t * *c as f64)
    });
    let mut best = (neg_log_likelihood(prep, &to_log(prior)), to_log(prior));
    if sx > 0.0 && st > 0.0 {
        let rate = sx / st;
        for r in [0.25, 1.0, 4.0] {
            for (a, b) in [(0.5, 2.0), (1.0, 5.0), (2.0, 20.0)] {
                let u = to_log(&Params {
                    r,
                    alpha: r / rate,
                    a,
                    b,
                });
                let c = neg_log_likelihood(prep, &u);
                if c < best.0 {
                    best = (c, u);
                }
            }
        }
    }
    best.1
}

/// Affine map from optimizer coordinates `v` to log-parameters:
/// `u = origin + basis·v`.
struct Coords {
    origin: Vec4,
    basis: Mat4,
}

impl Coords {
    fn log(origin: Vec4) -> Self {
        let mut basis = [[0.0; DIM]; DIM];
        for (i, row) in basis.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        Self { origin, basis }
    }

    /// `basis = L⁻ᵀ` so that `½ vᵀv ≈` the quadratic model `½ Δuᵀ H Δu`.
    fn whitened(origin: Vec4, l: &Mat4) -> Self {
        let li = lower_inverse(l);
        let mut basis = [[0.0; DIM]; DIM];
        for (i, row) in basis.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = li[j][i];
            }
        }
        Self { origin, basis }
    }

    fn to_u(&self, v: &[f64]) -> Vec4 {
        let mut u = self.origin;
        for (i, ui) in u.iter_mut().enumerate() {
            *ui += (0..DIM).map(|j| self.basis[i][j] * v[j]).sum::<f64>();
        }
        u
    }
}

struct Problem<'a> {
    prep: &'a Prepared,
    coords: &'a Coords,
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, v: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(neg_log_likelihood(self.prep, &self.coords.to_u(v)))
    }
}

struct Minimum {
    u: Vec4,
    cost: f64,
    iterations: u64,
    converged: bool,
}

/// Runs argmin's Nelder–Mead from the coordinate origin with a right-angled
/// initial simplex of edge `step`.
fn minimize(
    prep: &Prepared,
    coords: &Coords,
    step: f64,
    tol: f64,
    max_iters: u64,
) -> Result<Minimum, ModelError> {
    let err = |e: argmin::core::Error| ModelError::Optimizer(e.to_string());
    let mut simplex = vec![vec![0.0; DIM]];
    for i in 0..DIM {
        let mut v = vec![0.0; DIM];
        v[i] = step;
        simplex.push(v);
    }
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(tol)
        .map_err(err)?;
    let problem = Problem { prep, coords };
    let res = Executor::new(problem, solver)
        .configure(|s| s.max_iters(max_iters))
        .timer(false)
        .run()
        .map_err(err)?;
    let state = res.state();
    let best = state
        .get_best_param()
        .ok_or_else(|| ModelError::Optimizer("no best parameter".into()))?;
    let cost = state.get_best_cost();
    if !cost.is_finite() {
        return Err(ModelError::NonConvergence {
            what: "Nelder-Mead (no finite likelihood found)",
            iterations: state.get_iter(),
        });
    }
    Ok(Minimum {
        u: coords.to_u(best),
        cost,
        iterations: state.get_iter(),
        converged: matches!(
            state.get_termination_reason(),
            Some(TerminationReason::SolverConverged)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::simulate;

    #[test]
    fn rejects_unusable_input() {
        let opts = FitOptions::default();
        assert_eq!(fit(Family::BgNbd, &[], &opts), Err(ModelError::NoData));
        let only_zero = [Triple {
            x: 0.0,
            t_x: 0.0,
            t: 3.0,
        }; 5];
        assert!(matches!(
            fit(Family::BgNbd, &only_zero, &opts),
            Err(ModelError::InvalidData { .. })
        ));
        let bad = [Triple {
            x: 1.0,
            t_x: 4.0,
            t: 3.0,
        }];
        assert!(matches!(
            fit(Family::BgNbd, &bad, &opts),
            Err(ModelError::InvalidData { .. })
        ));
        let ok = [Triple {
            x: 1.0,
            t_x: 1.0,
            t: 3.0,
        }];
        let neg = FitOptions {
            tolerance: -1.0,
            ..opts
        };
        assert!(matches!(
            fit(Family::BgNbd, &ok, &neg),
            Err(ModelError::InvalidParams { .. })
        ));
    }

    #[test]
    fn tiny_data_does_not_panic_or_hang() {
        let data = [
            Triple {
                x: 1.0,
                t_x: 1.0,
                t: 3.0,
            },
            Triple {
                x: 0.0,
                t_x: 0.0,
                t: 2.0,
            },
            Triple {
                x: 4.0,
                t_x: 2.5,
                t: 6.0,
            },
        ];
        for fam in [Family::BgNbd, Family::MbgNbd] {
            let opts = FitOptions {
                max_iters: 300,
                ..FitOptions::default()
            };
            // Three customers cannot pin down four parameters: any outcome
            // but a panic is acceptable, and a result must be finite.
            if let Ok(r) = fit(fam, &data, &opts) {
                assert!(r.log_likelihood.is_finite());
                assert!(r.iterations <= 600);
            }
        }
    }

    #[test]
    fn fit_result_reports_the_data_and_serializes() {
        let p = Params {
            r: 0.5,
            alpha: 4.0,
            a: 0.8,
            b: 2.5,
        };
        let sims = simulate::mbgnbd(&p, 3000, 40.0, 0.0, 9);
        let triples: Vec<Triple> = sims
            .iter()
            .map(|s| simulate::whole_units(&s.triple))
            .collect();
        let r = fit(Family::MbgNbd, &triples, &FitOptions::default()).unwrap();
        let grouped: TripleCounts = triples.iter().copied().collect();
        assert_eq!(r.customers, 3000);
        assert_eq!(r.distinct_triples, grouped.distinct() as u64);
        assert!(r.distinct_triples < 3000);
        assert!(r.converged && r.iterations > 0);
        // Same answer from the grouped entry point.
        let g = fit_grouped(Family::MbgNbd, &grouped, &FitOptions::default()).unwrap();
        assert_eq!(g.params, r.params);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"family\":\"mbgnbd\""), "{json}");
        assert_eq!(serde_json::to_string(&Family::BgNbd).unwrap(), "\"bgnbd\"");
    }

    #[test]
    fn standard_errors_shrink_with_more_data() {
        let p = Params {
            r: 0.5,
            alpha: 4.0,
            a: 0.8,
            b: 2.5,
        };
        let se_for = |n: usize| {
            let data: TripleCounts = simulate::bgnbd(&p, n, 40.0, 0.0, 1)
                .iter()
                .map(|s| s.triple)
                .collect();
            standard_errors(Family::BgNbd, &data, &p).unwrap()
        };
        let (small, large) = (se_for(2000), se_for(8000));
        // Quadrupling the data should roughly halve every standard error.
        for (s, l) in [
            (small.r, large.r),
            (small.alpha, large.alpha),
            (small.a, large.a),
            (small.b, large.b),
        ] {
            let ratio = s / l;
            assert!((1.6..2.5).contains(&ratio), "ratio {ratio}");
        }
    }
}
