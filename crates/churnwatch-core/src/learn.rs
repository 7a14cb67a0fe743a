//! Learning the risk's coefficients from outcomes: L2-regularised logistic
//! regression, fitted by Newton's method (IRLS), with the coefficients of
//! the model's log-odds and of every signal kept at or above zero.
//!
//! Why Newton and not L-BFGS: there are 8 coefficients, so the Hessian is an
//! 8 x 8 matrix that costs no more per row than the gradient (36 products),
//! and Newton converges in 5-8 passes where L-BFGS takes dozens; the Cholesky
//! solve of an 8 x 8 system is a dozen lines (no linear-algebra crate is
//! among the dependencies for it). Why regularise towards the prior, not
//! towards zero: a signal that never fires in the training data (no surveys
//! in a purchase log) then keeps its prior weight instead of making the
//! system singular, and a small training set moves the prior only as far
//! as its evidence goes. Why non-negative: the silence timer relies on the
//! risk never falling while a customer stays silent (between breakpoints),
//! and a reason is something that raises the risk.

// Index loops read as the formulas do in the small dense algebra below.
#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::{
    config::Weights,
    time::Timestamp,
    vocabulary::{Signals, SIGNALS},
};

/// Number of coefficients: the intercept, the model's log-odds and six signals.
pub const K: usize = 1 + SIGNALS;

/// Coefficient names, in the order of a feature row (`/metrics` labels):
/// `bias`, then [`Signals::NAMES`].
pub const NAMES: [&str; K] = {
    let mut names = ["bias"; K];
    let mut i = 0;
    while i < SIGNALS {
        names[i + 1] = Signals::<f64>::NAMES[i];
        i += 1;
    }
    names
};

/// Coefficients learned at one refit, with what they were learned from.
/// They travel with the population model (changelog, `--model-out`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnedRisk {
    pub bias: f64,
    #[serde(deserialize_with = "crate::config::weights_over_prior")]
    pub weights: Weights,
    /// Labelled customers in the training set.
    pub labelled: u64,
    /// Of those, how many churned (no activity in the horizon).
    pub churned: u64,
    /// Ranking quality on the training set: P(a churned customer gets a
    /// higher risk than one who stayed), ties counting half.
    pub auc: f64,
    /// Mean squared error of the risk against the 0/1 outcome on the training set.
    pub brier: f64,
    pub iterations: u32,
    /// Stream time of the fit (unix seconds).
    pub fitted_at: Timestamp,
}

/// The coefficient vector of an intercept and weights (in [`NAMES`] order).
pub fn to_vector(bias: f64, w: &Weights) -> [f64; K] {
    let w = w.into_array();
    std::array::from_fn(|i| if i == 0 { bias } else { w[i - 1] })
}

/// The intercept and weights of a coefficient vector.
pub fn from_vector(c: &[f64; K]) -> (f64, Weights) {
    (c[0], Signals::from_array(std::array::from_fn(|i| c[i + 1])))
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LearnError {
    #[error("{rows} labelled customers; score.learning.min_labelled is {min}, so the prior stays")]
    TooFew { rows: u64, min: u64 },
    #[error("all {rows} labelled customers had the same outcome; nothing to learn from")]
    OneOutcome { rows: u64 },
    #[error("the fit did not converge (non-finite values)")]
    NotFinite,
    #[error("score.learning.mode is fixed")]
    Fixed,
}

/// The result of [`fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub coefficients: [f64; K],
    pub iterations: u32,
    pub auc: f64,
    pub brier: f64,
    pub churned: u64,
}

#[inline]
fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[inline]
fn dot(a: &[f64; K], b: &[f64; K]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Penalised negative log-likelihood: Σ softplus(z) − y z + l2/2 |c − prior|².
fn objective(rows: &[[f64; K]], y: &[bool], c: &[f64; K], prior: &[f64; K], l2: f64) -> f64 {
    let mut nll = 0.0;
    for (x, &yi) in rows.iter().zip(y) {
        let z = dot(c, x);
        nll += z.max(0.0) + (-z.abs()).exp().ln_1p() - if yi { z } else { 0.0 };
    }
    let pen: f64 = c.iter().zip(prior).map(|(a, b)| (a - b) * (a - b)).sum();
    nll + 0.5 * l2 * pen
}

/// Gradient and Hessian (upper triangle filled, then mirrored).
fn derivatives(
    rows: &[[f64; K]],
    y: &[bool],
    c: &[f64; K],
    prior: &[f64; K],
    l2: f64,
) -> ([f64; K], [[f64; K]; K]) {
    let mut g = [0.0; K];
    let mut h = [[0.0; K]; K];
    for (x, &yi) in rows.iter().zip(y) {
        let p = sigmoid(dot(c, x));
        let r = p - f64::from(u8::from(yi));
        let w = p * (1.0 - p);
        for i in 0..K {
            g[i] += r * x[i];
            let wx = w * x[i];
            for j in i..K {
                h[i][j] += wx * x[j];
            }
        }
    }
    for i in 0..K {
        g[i] += l2 * (c[i] - prior[i]);
        h[i][i] += l2;
        for j in 0..i {
            h[i][j] = h[j][i];
        }
    }
    (g, h)
}

/// Solves `h[free, free] d = −g[free]` by Cholesky; fixed coordinates get 0.
fn newton_step(g: &[f64; K], h: &[[f64; K]; K], free: &[bool; K]) -> Option<[f64; K]> {
    let idx: Vec<usize> = (0..K).filter(|&i| free[i]).collect();
    let n = idx.len();
    let mut l = [[0.0; K]; K];
    for a in 0..n {
        for b in 0..=a {
            let mut s = h[idx[a]][idx[b]];
            for k in 0..b {
                s -= l[a][k] * l[b][k];
            }
            if a == b {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[a][a] = s.sqrt();
            } else {
                l[a][b] = s / l[b][b];
            }
        }
    }
    // L z = −g, then Lᵀ d = z.
    let mut z = [0.0; K];
    for a in 0..n {
        let mut s = -g[idx[a]];
        for k in 0..a {
            s -= l[a][k] * z[k];
        }
        z[a] = s / l[a][a];
    }
    let mut d = [0.0; K];
    for a in (0..n).rev() {
        let mut s = z[a];
        for k in a + 1..n {
            s -= l[k][a] * d[idx[k]];
        }
        d[idx[a]] = s / l[a][a];
    }
    Some(d)
}

/// Newton with step halving on the free coordinates, from `start`.
fn newton(
    rows: &[[f64; K]],
    y: &[bool],
    start: [f64; K],
    prior: &[f64; K],
    l2: f64,
    free: &[bool; K],
    iterations: &mut u32,
) -> Option<[f64; K]> {
    let mut c = start;
    let mut f = objective(rows, y, &c, prior, l2);
    for _ in 0..50 {
        *iterations += 1;
        let (g, h) = derivatives(rows, y, &c, prior, l2);
        let d = newton_step(&g, &h, free)?;
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..30 {
            let mut next = c;
            for i in 0..K {
                next[i] += t * d[i];
            }
            let fn_ = objective(rows, y, &next, prior, l2);
            if fn_.is_finite() && fn_ <= f + 1e-12 * f.abs() {
                c = next;
                f = fn_;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        let step = d.iter().map(|v| (t * v).abs()).fold(0.0, f64::max);
        if !accepted || step < 1e-9 {
            break;
        }
    }
    c.iter().all(|v| v.is_finite()).then_some(c)
}

/// Fits `P(churn | x) = sigmoid(c · x)` on feature rows (`x[0] = 1`, the
/// intercept) and outcomes, minimising the negative log-likelihood plus
/// `l2 / 2 · |c − prior|²`, with `c[1..]` ≥ 0 (an active-set loop: a
/// coefficient that wants to go below zero is held at zero and the rest
/// refitted; one held whose gradient says it would rise is released).
pub fn fit(
    rows: &[[f64; K]],
    y: &[bool],
    prior: &[f64; K],
    l2: f64,
    min_rows: u64,
) -> Result<Fitted, LearnError> {
    let n = rows.len().min(y.len()) as u64;
    if n < min_rows.max(1) {
        return Err(LearnError::TooFew {
            rows: n,
            min: min_rows,
        });
    }
    let (rows, y) = (&rows[..n as usize], &y[..n as usize]);
    let churned = y.iter().filter(|v| **v).count() as u64;
    if churned == 0 || churned == n {
        return Err(LearnError::OneOutcome { rows: n });
    }
    let mut free = [true; K];
    let mut start = *prior;
    for c in start.iter_mut().skip(1) {
        *c = c.max(0.0);
    }
    let mut iterations = 0;
    let mut c = start;
    for _ in 0..2 * K {
        c = newton(rows, y, start, prior, l2, &free, &mut iterations)
            .ok_or(LearnError::NotFinite)?;
        // Hold the most negative coefficient at zero, if any.
        let worst = (1..K)
            .filter(|&i| free[i] && c[i] < 0.0)
            .min_by(|&a, &b| c[a].total_cmp(&c[b]));
        if let Some(i) = worst {
            free[i] = false;
            c[i] = 0.0;
            for (j, v) in c.iter_mut().enumerate().skip(1) {
                *v = v.max(0.0);
                if !free[j] {
                    *v = 0.0;
                }
            }
            start = c;
            continue;
        }
        // Release a held coefficient whose gradient points upwards.
        let (g, _) = derivatives(rows, y, &c, prior, l2);
        match (1..K).find(|&i| !free[i] && g[i] < -1e-9 * n as f64) {
            Some(i) => {
                free[i] = true;
                start = c;
            }
            None => break,
        }
    }
    let p: Vec<f64> = rows.iter().map(|x| sigmoid(dot(&c, x))).collect();
    Ok(Fitted {
        coefficients: c,
        iterations,
        auc: auc(&p, y),
        brier: brier(&p, y),
        churned,
    })
}

/// Area under the ROC curve of `p` for the positives in `y` (ties count
/// half); NaN without both outcomes.
pub fn auc(p: &[f64], y: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..p.len().min(y.len())).collect();
    order.sort_unstable_by(|&a, &b| p[a].total_cmp(&p[b]));
    let (mut rank_sum, mut pos) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && p[order[j + 1]] == p[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if y[k] {
                rank_sum += mid;
                pos += 1.0;
            }
        }
        i = j + 1;
    }
    let neg = order.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Mean of (p − y)².
pub fn brier(p: &[f64], y: &[bool]) -> f64 {
    let n = p.len().min(y.len());
    if n == 0 {
        return f64::NAN;
    }
    p.iter()
        .zip(y)
        .map(|(p, &y)| (p - f64::from(u8::from(y))).powi(2))
        .sum::<f64>()
        / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Rows like the risk's: an intercept, a model log-odds spread over
    /// [-4, 4], and six signals that are off for most customers and in
    /// (0, 1] for some; outcomes drawn from the logistic model `truth`.
    fn draw(truth: &[f64; K], n: usize, seed: u64) -> (Vec<[f64; K]>, Vec<bool>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut rows, mut y, mut p) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let mut x = [0.0; K];
            x[0] = 1.0;
            x[1] = rng.gen_range(-4.0..4.0);
            for v in x.iter_mut().skip(2) {
                if rng.gen::<f64>() < 0.3 {
                    *v = rng.gen_range(0.0..=1.0);
                }
            }
            let pi = sigmoid(dot(truth, &x));
            rows.push(x);
            y.push(rng.gen::<f64>() < pi);
            p.push(pi);
        }
        (rows, y, p)
    }

    const TRUTH: [f64; K] = [-0.7, 0.8, 1.2, 0.6, 2.0, 1.5, 2.5, 0.9];

    #[test]
    fn recovers_known_coefficients_within_ten_percent() {
        let (rows, y, _) = draw(&TRUTH, 200_000, 1);
        // A prior far from the truth: the data, not the prior, must decide.
        let prior = [-3.0, 1.0, 2.0, 1.5, 3.5, 3.5, 4.0, 2.5];
        let f = fit(&rows, &y, &prior, 1.0, 1000).unwrap_or_else(|e| panic!("{e}"));
        for (i, (got, want)) in f.coefficients.iter().zip(TRUTH).enumerate() {
            assert!(
                (got - want).abs() <= 0.1 * want.abs(),
                "{}: got {got:.4}, want {want}",
                NAMES[i]
            );
        }
        assert!(f.iterations < 30, "{}", f.iterations);
    }

    /// Reliability: on fresh data from the same model, customers binned by
    /// fitted risk churn at the rate the bin predicts (10 bins, each within
    /// 0.02 or 3 standard errors), and the expected calibration error is
    /// below 0.01.
    #[test]
    fn fitted_risk_is_calibrated_on_data_with_known_probabilities() {
        let (rows, y, _) = draw(&TRUTH, 100_000, 2);
        let f = fit(&rows, &y, &to_vector(0.0, &Weights::prior()), 1.0, 1000)
            .unwrap_or_else(|e| panic!("{e}"));
        let (test, ty, _) = draw(&TRUTH, 100_000, 3);
        let mut bins = [(0.0, 0.0, 0.0); 10];
        for (x, yi) in test.iter().zip(&ty) {
            let p = sigmoid(dot(&f.coefficients, x));
            let b = &mut bins[((p * 10.0) as usize).min(9)];
            b.0 += p;
            b.1 += f64::from(u8::from(*yi));
            b.2 += 1.0;
        }
        let mut ece = 0.0;
        for (i, (sp, sy, n)) in bins.iter().enumerate() {
            if *n < 100.0 {
                continue;
            }
            let (mp, my) = (sp / n, sy / n);
            let se = (mp * (1.0 - mp) / n).sqrt();
            assert!(
                (mp - my).abs() <= (3.0 * se).max(0.02),
                "bin {i}: predicted {mp:.3}, observed {my:.3} of {n}"
            );
            ece += n / test.len() as f64 * (mp - my).abs();
        }
        assert!(ece < 0.01, "ECE {ece}");
    }

    #[test]
    fn a_signal_that_never_fires_keeps_its_prior_and_none_goes_negative() {
        let mut truth = TRUTH;
        truth[3] = -1.0; // the data says this signal lowers the risk
        let (mut rows, y, _) = draw(&truth, 50_000, 4);
        for r in &mut rows {
            r[5] = 0.0; // friction never fires
        }
        let prior = to_vector(-1.0, &Weights::prior());
        let f = fit(&rows, &y, &prior, 1.0, 1000).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            (f.coefficients[5] - prior[5]).abs() < 1e-6,
            "{:?}",
            f.coefficients
        );
        assert_eq!(f.coefficients[3], 0.0, "{:?}", f.coefficients);
        assert!(f.coefficients.iter().skip(1).all(|c| *c >= 0.0));
    }

    #[test]
    fn too_few_or_one_sided_labels_keep_the_prior() {
        let (rows, y, _) = draw(&TRUTH, 500, 5);
        let prior = to_vector(0.0, &Weights::prior());
        assert_eq!(
            fit(&rows, &y, &prior, 1.0, 1000),
            Err(LearnError::TooFew {
                rows: 500,
                min: 1000
            })
        );
        let all = vec![true; rows.len()];
        assert_eq!(
            fit(&rows, &all, &prior, 1.0, 100),
            Err(LearnError::OneOutcome { rows: 500 })
        );
    }

    #[test]
    fn auc_and_brier_by_hand() {
        // Positives at 0.9 and 0.4, negatives at 0.4 and 0.1: pairs
        // (0.9>0.4) 1, (0.9>0.1) 1, (0.4=0.4) 0.5, (0.4>0.1) 1 -> 3.5 / 4.
        let p = [0.9, 0.4, 0.4, 0.1];
        let y = [true, true, false, false];
        assert!((auc(&p, &y) - 0.875).abs() < 1e-12);
        let b = (0.01 + 0.36 + 0.16 + 0.01) / 4.0;
        assert!((brier(&p, &y) - b).abs() < 1e-12);
        assert!(auc(&p, &[true; 4]).is_nan());
    }
}
