//! The generative process behind the models, for testing and benchmarking.
//!
//! Each customer draws a purchase rate λ ~ Gamma(shape r, rate α) and a
//! dropout probability p ~ Beta(a, b). Purchases follow a Poisson process
//! with rate λ starting with a first purchase at time 0 (not counted in `x`);
//! right after each repeat purchase the customer drops out with probability
//! p. Under MBG/NBD the customer may also drop out right after the first
//! purchase, at time 0. The customer is observed on `(0, T]` with `T`
//! uniform on `(0, t_max]`; we also record the ground truth the scoring
//! functions predict: whether the customer is alive at `T`, and how many
//! purchases fall in `(T, T + horizon]`.
//!
//! Everything is driven by a seeded `ChaCha8Rng`, so results are
//! reproducible across platforms and runs.

use super::{Family, Params, Triple};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp1, Gamma};

/// One simulated customer and the ground truth after `T`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimCustomer {
    /// What is observed on `(0, T]`.
    pub triple: Triple,
    /// True if the customer has not dropped out by time `T`.
    pub alive_at_t: bool,
    /// Purchases in `(T, T + horizon]`.
    pub future_count: u32,
}

/// Simulates `n` BG/NBD customers.
pub fn bgnbd(p: &Params, n: usize, t_max: f64, horizon: f64, seed: u64) -> Vec<SimCustomer> {
    population(Family::BgNbd, p, n, t_max, horizon, seed)
}

/// Simulates `n` MBG/NBD customers.
pub fn mbgnbd(p: &Params, n: usize, t_max: f64, horizon: f64, seed: u64) -> Vec<SimCustomer> {
    population(Family::MbgNbd, p, n, t_max, horizon, seed)
}

/// Simulates `n` customers of `family`. Returns an empty vector if `p`,
/// `t_max` or `horizon` is invalid (non-positive / non-finite), since there
/// is no process to simulate.
pub fn population(
    family: Family,
    p: &Params,
    n: usize,
    t_max: f64,
    horizon: f64,
    seed: u64,
) -> Vec<SimCustomer> {
    if p.validate().is_err()
        || !(t_max.is_finite() && t_max > 0.0)
        || !(horizon.is_finite() && horizon >= 0.0)
    {
        return Vec::new();
    }
    let (Ok(rate), Ok(drop)) = (Gamma::new(p.r, 1.0 / p.alpha), Beta::new(p.a, p.b)) else {
        return Vec::new();
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            // (0, t_max]: 1 − U with U in [0, 1).
            let t = t_max * (1.0 - rng.gen::<f64>());
            let lambda: f64 = rate.sample(&mut rng);
            let dropout: f64 = drop.sample(&mut rng);
            customer(family, lambda, dropout, t, horizon, &mut rng)
        })
        .collect()
}

/// One customer's history given its latent traits.
fn customer(
    family: Family,
    lambda: f64,
    dropout: f64,
    t: f64,
    horizon: f64,
    rng: &mut ChaCha8Rng,
) -> SimCustomer {
    let end = t + horizon;
    let (mut x, mut t_x, mut future) = (0u32, 0.0, 0u32);
    let mut alive_at_t = true;
    let mut dead = family == Family::MbgNbd && rng.gen::<f64>() < dropout;
    if dead {
        alive_at_t = false;
    }
    let mut now = 0.0;
    while !dead {
        // Exp(λ) as Exp(1)/λ so that λ = 0 (underflow) means "never again".
        let gap: f64 = Exp1.sample(rng);
        now += gap / lambda;
        if now.is_nan() || now > end {
            break;
        }
        if now <= t {
            x += 1;
            t_x = now;
        } else {
            future += 1;
        }
        if rng.gen::<f64>() < dropout {
            dead = true;
            alive_at_t = now > t;
        }
    }
    SimCustomer {
        triple: Triple {
            x: f64::from(x),
            t_x,
            t,
        },
        alive_at_t,
        future_count: future,
    }
}

/// Rounds a continuous-time triple down to whole time units, as a system
/// that records purchase *days* would see it (both recency and age floored,
/// so `t_x ≤ T` still holds).
pub fn whole_units(tr: &Triple) -> Triple {
    Triple {
        x: tr.x,
        t_x: tr.t_x.floor(),
        t: tr.t.floor(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Params = Params {
        r: 0.5,
        alpha: 5.0,
        a: 0.8,
        b: 2.5,
    };

    #[test]
    fn reproducible_and_consistent() {
        let a = bgnbd(&P, 2000, 50.0, 20.0, 7);
        let b = bgnbd(&P, 2000, 50.0, 20.0, 7);
        assert_eq!(a, b);
        assert_ne!(a, bgnbd(&P, 2000, 50.0, 20.0, 8));
        for c in &a {
            c.triple.validate().unwrap();
            assert!(c.triple.t > 0.0 && c.triple.t <= 50.0);
            if c.triple.x == 0.0 {
                assert_eq!(c.triple.t_x, 0.0);
                // BG/NBD cannot die without a repeat purchase.
                assert!(c.alive_at_t);
            }
            if !c.alive_at_t {
                // Dead by T means no purchases after T.
                assert_eq!(c.future_count, 0);
            }
        }
    }

    #[test]
    fn mbgnbd_kills_some_one_time_buyers() {
        let sims = mbgnbd(&P, 5000, 50.0, 20.0, 3);
        let dead0 = sims
            .iter()
            .filter(|c| c.triple.x == 0.0 && !c.alive_at_t)
            .count();
        // P(die at 0) = E[p] = a/(a+b) ≈ 0.24.
        let frac = dead0 as f64 / sims.len() as f64;
        assert!((0.2..0.28).contains(&frac), "{frac}");
    }

    #[test]
    fn invalid_inputs_give_nothing() {
        assert!(bgnbd(&Params { r: 0.0, ..P }, 10, 5.0, 1.0, 1).is_empty());
        assert!(bgnbd(&P, 10, 0.0, 1.0, 1).is_empty());
    }

    #[test]
    fn whole_units_keeps_order() {
        let t = whole_units(&Triple {
            x: 2.0,
            t_x: 3.7,
            t: 3.9,
        });
        assert_eq!(
            t,
            Triple {
                x: 2.0,
                t_x: 3.0,
                t: 3.0
            }
        );
    }
}
