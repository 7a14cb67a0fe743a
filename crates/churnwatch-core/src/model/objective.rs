//! Fast total log-likelihood over grouped data.
//!
//! Nelder–Mead calls the objective a few hundred times, so one evaluation
//! must be cheap. Both families share the per-customer form
//!
//! `LL = S(x) + n·[−(r+x)·ln(α+T) + softplus(δ(x) + (r+x)·(ln(α+T) − ln(α+t_x)))]`
//!
//! where `S(x)` holds the Gamma/Beta-function terms and `δ(x)` the log dropout
//! odds (BG/NBD customers with `x = 0` have no softplus term). So per
//! evaluation we compute
//! - `S(x)` once per distinct `x`; for integer `x` by cumulative sums of
//!   `ln(r+k)`, `ln(b+k)`, `ln(a+b+k)` instead of `lnΓ` calls,
//! - `ln(α+τ)` once per distinct time value `τ` (ages and recencies share
//!   one table),
//! - and then one `exp` + one `ln_1p` per distinct triple.

use super::{bgnbd::softplus, Family, Params, TripleCounts};
use statrs::function::beta::ln_beta;
use statrs::function::gamma::ln_gamma;

/// Above this many repeat purchases the cumulative-sum shortcut would cost
/// more than it saves; use `ln_gamma` per distinct `x` instead.
const MAX_CUMULATIVE_X: f64 = 100_000.0;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Index of `T` in `times`.
    t: u32,
    /// Index of `t_x` in `times`.
    t_x: u32,
    /// Customers with this triple (a weight: thinned data uses fractions).
    weight: f64,
}

#[derive(Debug, Clone)]
struct XGroup {
    x: f64,
    weight: f64,
    start: usize,
    end: usize,
}

/// Grouped data laid out for fast repeated evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    family: Family,
    times: Vec<f64>,
    groups: Vec<XGroup>,
    entries: Vec<Entry>,
    cumulative: bool,
    #[cfg(test)]
    total_weight: f64,
}

impl Prepared {
    /// Lays out validated `data` for `family`.
    pub(crate) fn new(family: Family, data: &TripleCounts) -> Self {
        Self::build(
            family,
            data.entries()
                .iter()
                .map(|(tr, c)| (tr.x, tr.t_x, tr.t, *c as f64)),
        )
    }

    /// A deterministic pseudo-random subsample with about `1/factor` of the
    /// customers, each kept triple weighted so that the total log-likelihood
    /// is an unbiased estimate of the full one divided by `factor`. Used to
    /// find a good starting point cheaply before polishing on all the data.
    pub(crate) fn thinned(family: Family, data: &TripleCounts, factor: f64) -> Self {
        let kept = data.entries().iter().filter_map(|(tr, c)| {
            let expected = *c as f64 / factor;
            if expected >= 1.0 {
                return Some((tr.x, tr.t_x, tr.t, expected));
            }
            let h = splitmix64(
                tr.x.to_bits() ^ splitmix64(tr.t.to_bits() ^ splitmix64(tr.t_x.to_bits())),
            );
            let u = (h >> 11) as f64 / (1u64 << 53) as f64;
            (u < expected).then_some((tr.x, tr.t_x, tr.t, 1.0))
        });
        Self::build(family, kept)
    }

    fn build(family: Family, rows: impl Iterator<Item = (f64, f64, f64, f64)>) -> Self {
        let rows: Vec<(f64, f64, f64, f64)> = rows.collect();
        let mut times: Vec<f64> = rows.iter().flat_map(|r| [r.1, r.2]).collect();
        times.sort_unstable_by(f64::total_cmp);
        times.dedup();
        let index = |v: f64| times.partition_point(|&s| s < v) as u32;
        let mut groups: Vec<XGroup> = Vec::new();
        let mut entries = Vec::with_capacity(rows.len());
        // Rows arrive sorted by x (TripleCounts order), so groups are runs.
        for &(x, t_x, t, weight) in &rows {
            match groups.last_mut() {
                Some(g) if g.x == x => {
                    g.weight += weight;
                    g.end += 1;
                }
                _ => groups.push(XGroup {
                    x,
                    weight,
                    start: entries.len(),
                    end: entries.len() + 1,
                }),
            }
            entries.push(Entry {
                t: index(t),
                t_x: index(t_x),
                weight,
            });
        }
        let cumulative = groups
            .iter()
            .all(|g| g.x.fract() == 0.0 && g.x <= MAX_CUMULATIVE_X);
        Self {
            family,
            #[cfg(test)]
            total_weight: groups.iter().map(|g| g.weight).sum(),
            times,
            groups,
            entries,
            cumulative,
        }
    }

    /// Number of distinct triples laid out.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Sum of weights (customers, or customers/factor when thinned).
    #[cfg(test)]
    pub(crate) fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// Total log-likelihood at `p` (assumed valid: positive and finite).
    pub(crate) fn log_likelihood(&self, p: &Params) -> f64 {
        let Params { r, alpha, a, b } = *p;
        let ln_t: Vec<f64> = self.times.iter().map(|&t| (alpha + t).ln()).collect();
        let (ln_a, ln_alpha) = (a.ln(), alpha.ln());
        // Beta part runs over x terms (BG/NBD) or x+1 terms (MBG/NBD).
        let beta_extra = match self.family {
            Family::BgNbd => 0.0,
            Family::MbgNbd => 1.0,
        };
        // Running sums Σ_{k<kr} ln(r+k) and Σ_{k<kb} [ln(b+k) − ln(a+b+k)].
        let (mut kr, mut sum_r) = (0.0_f64, 0.0_f64);
        let (mut kb, mut sum_beta) = (0.0_f64, 0.0_f64);
        let mut total = 0.0;
        for g in &self.groups {
            let x = g.x;
            // S(x) = lnΓ(r+x) − lnΓ(r) + r ln α + ln B(a, b+x+e) − ln B(a, b)
            let s = if self.cumulative {
                while kr < x {
                    sum_r += (r + kr).ln();
                    kr += 1.0;
                }
                while kb < x + beta_extra {
                    sum_beta += (b + kb).ln() - (a + b + kb).ln();
                    kb += 1.0;
                }
                sum_r + sum_beta
            } else {
                ln_gamma(r + x) - ln_gamma(r) + ln_beta(a, b + x + beta_extra) - ln_beta(a, b)
            };
            total += g.weight * (s + r * ln_alpha);
            let rx = r + x;
            let entries = &self.entries[g.start..g.end];
            if self.family == Family::BgNbd && x == 0.0 {
                let sum_ln_t: f64 = entries.iter().map(|e| e.weight * ln_t[e.t as usize]).sum();
                total -= r * sum_ln_t;
                continue;
            }
            let shift = match self.family {
                Family::BgNbd => x - 1.0,
                Family::MbgNbd => x,
            };
            let delta = ln_a - (b + shift).ln();
            let mut acc = 0.0;
            for e in entries {
                let lt = ln_t[e.t as usize];
                let ltx = ln_t[e.t_x as usize];
                acc += e.weight * (softplus(delta + rx * (lt - ltx)) - rx * lt);
            }
            total += acc;
        }
        total
    }
}

/// SplitMix64 finalizer: a cheap, well-mixed deterministic hash.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{log_likelihood, Triple};

    fn sample() -> TripleCounts {
        let mut v = Vec::new();
        for i in 0..200u32 {
            let t = 1.0 + (i % 37) as f64;
            let x = (i % 7) as f64;
            let t_x = if x == 0.0 {
                0.0
            } else {
                t * ((i % 5) as f64) / 4.0
            };
            v.push(Triple { x, t_x, t });
        }
        v.push(Triple {
            x: 2.5,
            t_x: 1.5,
            t: 3.0,
        });
        v.into_iter().collect()
    }

    #[test]
    fn grouped_matches_per_customer_sum() {
        let data = sample();
        let p = Params {
            r: 0.7,
            alpha: 3.1,
            a: 0.6,
            b: 2.2,
        };
        for fam in [Family::BgNbd, Family::MbgNbd] {
            let want: f64 = data
                .entries()
                .iter()
                .map(|(tr, c)| *c as f64 * log_likelihood(fam, &p, tr))
                .sum();
            // Non-integer x present: exercises the ln_gamma path.
            let got = Prepared::new(fam, &data).log_likelihood(&p);
            assert!(
                (got - want).abs() < 1e-9 * want.abs(),
                "{fam:?}: {got} vs {want}"
            );
            // Integer-only data: exercises the cumulative-sum path.
            let ints = TripleCounts::from_counts(
                data.entries()
                    .iter()
                    .filter(|(tr, _)| tr.x.fract() == 0.0)
                    .copied(),
            );
            let want: f64 = ints
                .entries()
                .iter()
                .map(|(tr, c)| *c as f64 * log_likelihood(fam, &p, tr))
                .sum();
            let prep = Prepared::new(fam, &ints);
            assert!(prep.cumulative);
            let got = prep.log_likelihood(&p);
            assert!(
                (got - want).abs() < 1e-9 * want.abs(),
                "{fam:?}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn thinning_keeps_about_the_right_weight() {
        let data = sample();
        let thin = Prepared::thinned(Family::BgNbd, &data, 4.0);
        let w = thin.total_weight();
        let want = data.customers() as f64 / 4.0;
        assert!((w - want).abs() < 0.3 * want, "{w} vs {want}");
        assert!(thin.len() < data.distinct());
    }
}
