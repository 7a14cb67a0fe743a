//! Per-customer formulas: log-likelihood, P(alive), conditional expectation.
//!
//! These are the reference implementations (straight from the papers, with
//! statrs' `ln_beta`/`ln_gamma`). The fitter uses a faster grouped evaluator
//! (`objective.rs`) that is tested against [`log_likelihood`].

use super::{hyp2f1::ratio_series, Family, ModelError, Params, Triple};
use statrs::function::{beta::ln_beta, gamma::ln_gamma};

/// `ln(1 + e^d)` without overflow or loss of precision for large `|d|`.
#[inline]
pub(crate) fn softplus(d: f64) -> f64 {
    d.max(0.0) + (-d.abs()).exp().ln_1p()
}

/// Log-odds of "dead" vs "alive": `ln[(a/(b+x−k))·((α+T)/(α+t_x))^(r+x)]`
/// with `k = 1` for BG/NBD and `k = 0` for MBG/NBD.
fn ln_dead_odds(family: Family, p: &Params, x: f64, t_x: f64, t: f64) -> f64 {
    let shift = match family {
        Family::BgNbd => x - 1.0,
        Family::MbgNbd => x,
    };
    p.a.ln() - (p.b + shift).ln() + (p.r + x) * ((p.alpha + t).ln() - (p.alpha + t_x).ln())
}

/// Log-likelihood of one customer's `(x, t_x, T)` under `family` and `p`.
///
/// Returns NaN when `p` or `tr` is outside the model's domain (see
/// [`Params::validate`], [`Triple::validate`]), since no likelihood exists
/// there; the fitter validates up front and never produces such points.
pub fn log_likelihood(family: Family, p: &Params, tr: &Triple) -> f64 {
    if p.validate().is_err() || tr.validate().is_err() {
        return f64::NAN;
    }
    let Params { r, alpha, a, b } = *p;
    let Triple { x, t_x, t } = *tr;
    let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
    let a3 = -(r + x) * (alpha + t).ln();
    match family {
        Family::BgNbd => {
            // ln B(a, b+x) − ln B(a, b) = lnΓ(a+b) + lnΓ(b+x) − lnΓ(b) − lnΓ(a+b+x)
            let a2 = ln_beta(a, b + x) - ln_beta(a, b);
            if x > 0.0 {
                let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x).ln();
                a1 + a2 + a3 + softplus(a4 - a3)
            } else {
                a1 + a2 + a3
            }
        }
        Family::MbgNbd => {
            let a2 = ln_beta(a, b + x + 1.0) - ln_beta(a, b);
            a1 + a2 + a3 + softplus(ln_dead_odds(family, p, x, t_x, t))
        }
    }
}

/// Probability that a customer with history `(x, t_x, T)` is still alive at
/// `T`. Computed from log-odds so that long-silent heavy buyers (huge odds)
/// give 0 rather than overflow. Returns NaN outside the domain.
pub fn p_alive(family: Family, p: &Params, x: f64, t_x: f64, t: f64) -> f64 {
    let tr = Triple { x, t_x, t };
    if p.validate().is_err() || tr.validate().is_err() {
        return f64::NAN;
    }
    if family == Family::BgNbd && x == 0.0 {
        // No repeat purchase, so no chance yet to drop out.
        return 1.0;
    }
    let lo = ln_dead_odds(family, p, x, t_x, t);
    if lo > 0.0 {
        let e = (-lo).exp();
        e / (1.0 + e)
    } else {
        1.0 / (1.0 + lo.exp())
    }
}

/// Log-odds that a customer with history `(x, t_x, T)` has no activity in
/// `(T, T + tau]`: `ln[P(none) / (1 − P(none))]`.
///
/// Derivation. The likelihood of the history splits into the branch where
/// the customer is still alive at `T`, `(1−p)^(x+m) λ^x e^(−λT)` (m = 0 for
/// BG/NBD, 1 for MBG/NBD), and the branch where they dropped out after
/// their last purchase. Alive at `T`, purchases go on at rate λ (dropout
/// follows a purchase, so none can happen before the next one), and "none
/// in τ" multiplies the alive branch by `e^(−λτ)`. Integrated over
/// λ ~ Gamma(r, α) that turns `(α+T)^−(r+x)` into `(α+T+τ)^−(r+x)`; the
/// p-integral is unchanged. Dividing by the whole likelihood:
///
/// `P(none in τ) = 1 − P(alive) · [1 − ((α+T)/(α+T+τ))^(r+x)]`
///
/// for both families (each with its own P(alive)). A BG/NBD one-time buyer
/// has P(alive) = 1, and still `P(none)` = `((α+T)/(α+T+τ))^r` rises with `T`:
/// the posterior rate falls as their silence grows.
///
/// Computed in logs (`expm1`, `ln_1p`), so it stays finite for customers
/// long silent (odds of 1e12) and for short horizons. NaN outside the
/// domain; `+∞` for `tau = 0` (nothing can happen in no time).
pub fn ln_odds_no_activity(family: Family, p: &Params, x: f64, t_x: f64, t: f64, tau: f64) -> f64 {
    no_activity_parts(family, p, x, t_x, t, tau).1
}

/// `(ln P(alive), log-odds of no activity in tau)`: the risk's hot path
/// needs both, and they share the dead-odds term.
pub fn no_activity_parts(
    family: Family,
    p: &Params,
    x: f64,
    t_x: f64,
    t: f64,
    tau: f64,
) -> (f64, f64) {
    let tr = Triple { x, t_x, t };
    if p.validate().is_err() || tr.validate().is_err() || !(tau.is_finite() && tau >= 0.0) {
        return (f64::NAN, f64::NAN);
    }
    // ln P(alive) = −ln(1 + e^lo), lo = log-odds of dead.
    let ln_alive = if family == Family::BgNbd && x == 0.0 {
        0.0
    } else {
        -softplus(ln_dead_odds(family, p, x, t_x, t))
    };
    if tau == 0.0 {
        return (ln_alive, f64::INFINITY);
    }
    // ln q = −(r+x)·ln(1 + τ/(α+T)); ln(1 − q) = ln(−expm1(ln q)).
    let ln_q = -(p.r + x) * (tau / (p.alpha + t)).ln_1p();
    let ln_active = ln_alive + (-ln_q.exp_m1()).ln();
    // ln(1 − P(active)) − ln P(active).
    (ln_alive, (-ln_active.exp_m1()).ln() - ln_active)
}

/// Probability of no activity in `(T, T + tau]` (see [`ln_odds_no_activity`]).
pub fn p_no_activity(family: Family, p: &Params, x: f64, t_x: f64, t: f64, tau: f64) -> f64 {
    let lo = ln_odds_no_activity(family, p, x, t_x, t, tau);
    if lo.is_nan() {
        return f64::NAN;
    }
    if lo > 0.0 {
        1.0 / (1.0 + (-lo).exp())
    } else {
        let e = lo.exp();
        e / (1.0 + e)
    }
}

/// Expected number of purchases in `(T, T + horizon]` for a customer with
/// history `(x, t_x, T)`.
///
/// The published closed forms are
/// `E = C/(a−1) · [1 − (1−z)^(r+x) · ₂F₁(r+x, b+x+m; C; z)] · P(alive)` with
/// `z = h/(α+T+h)`, `C = a+b+x−1+m`, and `m = 0` for BG/NBD, `1` for
/// MBG/NBD. Evaluated literally they have three problems: a 0/0 at `a = 1`,
/// a ₂F₁ whose series slows down as `x` grows (terms ~ `k^(r+x−a) zᵏ`), and
/// `(1−z)^(r+x)` underflowing while ₂F₁ overflows for heavy buyers. Euler's
/// transformation `₂F₁(α,β;γ;z) = (1−z)^(γ−α−β) ₂F₁(γ−α, γ−β; γ; z)` turns
/// the bracket into `1 − (1−z)^ε ₂F₁(A, ε; C; z)` with `ε = a − 1` and
/// `A = a+b−1−r+m`. Since `(ε)ₖ = ε·(1+ε)ₖ₋₁`, the `ε` cancels exactly:
///
/// `E = [C·(−expm1(ε·L)/ε) − e^(ε·L)·H] · P(alive)`, `L = ln(1−z)`,
/// `H = Σ_{k≥1} (A)ₖ (1+ε)ₖ₋₁ zᵏ / ((C+1)ₖ₋₁ k!)`,
///
/// which is smooth through `a = 1` (where `−expm1(εL)/ε = −L`), has no pole
/// (`C + 1 > 0` always), and whose terms decay like `k^(a−r−x−2) zᵏ`, i.e.
/// faster the more the customer bought. Tests check it against the literal
/// formula computed with [`hyp2f1`](fn@super::hyp2f1) and against independent references.
///
/// Errors if inputs are out of domain, or if the series cannot converge in
/// a million terms, which needs a horizon
/// about a million times longer than `α + T`.
pub fn expected_activity(
    family: Family,
    p: &Params,
    x: f64,
    t_x: f64,
    t: f64,
    horizon: f64,
) -> Result<f64, ModelError> {
    p.validate()?;
    Triple { x, t_x, t }.validate()?;
    if !(horizon.is_finite() && horizon >= 0.0) {
        return Err(ModelError::InvalidData {
            reason: format!("horizon must be finite and >= 0, got {horizon}"),
        });
    }
    if horizon == 0.0 {
        return Ok(0.0);
    }
    let Params { r, alpha, a, b } = *p;
    let m = match family {
        Family::BgNbd => 0.0,
        Family::MbgNbd => 1.0,
    };
    let eps = a - 1.0;
    let c = a + b + x - 1.0 + m;
    let big_a = a + b - 1.0 - r + m;
    let base = alpha + t;
    let z = horizon / (base + horizon);
    // ln(1 − z) = −ln(1 + h/(α+T)), exact for short horizons too.
    let ln_1mz = -(horizon / base).ln_1p();
    let lead = if eps == 0.0 {
        -ln_1mz
    } else {
        -(eps * ln_1mz).exp_m1() / eps
    };
    let h = ratio_series(big_a * z, 1.0, (big_a, eps), (c, 1.0), z)?;
    let first = c * lead;
    let v = (first - (eps * ln_1mz).exp() * h) * p_alive(family, p, x, t_x, t);
    // The difference is mathematically positive; allow only rounding-level
    // negatives (tiny horizons) and report anything else.
    if v.is_finite() && v >= -1e-12 * first.abs() {
        Ok(v.max(0.0))
    } else {
        Err(ModelError::Domain {
            reason: format!("expected_activity is not finite/positive ({v}) for {p:?}, x={x}, T={t}, horizon={horizon}"),
        })
    }
}
