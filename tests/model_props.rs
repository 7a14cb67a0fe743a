//! Property tests for the model's special function and formulas: identities
//! that must hold for all valid inputs, not just hand-picked points.

use churnwatch::model::{
    expected_activity, hyp2f1, log_likelihood, p_alive, Family, Params, Triple,
};
use proptest::prelude::*;

fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn params() -> impl Strategy<Value = Params> {
    (0.05..5.0f64, 0.1..100.0f64, 0.1..5.0f64, 0.1..10.0f64).prop_map(|(r, alpha, a, b)| Params {
        r,
        alpha,
        a,
        b,
    })
}

/// (x, t_x, T) with t_x ≤ T and t_x = 0 when x = 0.
fn triple() -> impl Strategy<Value = Triple> {
    (0u32..40, 0.0..1.0f64, 0.01..400.0f64).prop_map(|(x, frac, t)| Triple {
        x: f64::from(x),
        t_x: if x == 0 { 0.0 } else { frac * t },
        t,
    })
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::BgNbd), Just(Family::MbgNbd)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Euler: ₂F₁(a,b;c;z) = (1−z)^(c−a−b) ₂F₁(c−a, c−b; c; z).
    #[test]
    fn hyp2f1_euler_transformation(a in 0.1..8.0f64, b in 0.1..8.0f64, c in 0.5..12.0f64, z in 0.0..0.9f64) {
        let lhs = hyp2f1(a, b, c, z).unwrap();
        if let Ok(f) = hyp2f1(c - a, c - b, c, z) {
            let rhs = (1.0 - z).powf(c - a - b) * f;
            prop_assert!(rel_err(lhs, rhs) < 1e-8, "{lhs} vs {rhs}");
        }
    }

    /// Negative z goes through the Pfaff transformation; compare with the
    /// plain series, which converges fine for |z| ≤ 1/2.
    #[test]
    fn hyp2f1_negative_argument_matches_plain_series(a in 0.1..6.0f64, b in 0.1..6.0f64, c in 0.5..10.0f64, z in -0.5..0.0f64) {
        let (mut term, mut sum) = (1.0, 1.0);
        for k in 0..400 {
            let k = f64::from(k);
            term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
            sum += term;
        }
        let got = hyp2f1(a, b, c, z).unwrap();
        prop_assert!((got - sum).abs() < 1e-12 * sum.abs().max(1.0), "{got} vs {sum}");
    }

    #[test]
    fn p_alive_is_a_probability(fam in family(), p in params(), tr in triple()) {
        let v = p_alive(fam, &p, tr.x, tr.t_x, tr.t);
        prop_assert!((0.0..=1.0).contains(&v), "{v}");
    }

    /// Expected activity is finite, non-negative and non-decreasing in the
    /// horizon, and below the no-dropout bound: given alive at T the rate's
    /// posterior is Gamma(r+x, α+T) and dropout only removes purchases, so
    /// E ≤ P(alive)·(r+x)/(α+T)·h.
    #[test]
    fn expected_activity_is_sane(fam in family(), p in params(), tr in triple(), h in 0.01..300.0f64) {
        let e1 = expected_activity(fam, &p, tr.x, tr.t_x, tr.t, h).unwrap();
        let e2 = expected_activity(fam, &p, tr.x, tr.t_x, tr.t, 2.0 * h).unwrap();
        prop_assert!(e1.is_finite() && e1 >= 0.0, "{e1}");
        prop_assert!(e2 >= e1 * (1.0 - 1e-12), "{e2} < {e1}");
        let bound = p_alive(fam, &p, tr.x, tr.t_x, tr.t) * (p.r + tr.x) / (p.alpha + tr.t) * h;
        prop_assert!(e1 <= bound * (1.0 + 1e-9), "{e1} > {bound}");
    }

    /// Changing the time unit (days → weeks) must not change P(alive) or
    /// expected activity, and shifts the log-likelihood by −x·ln(s) (it is
    /// a density over x purchase times).
    #[test]
    fn time_unit_invariance(fam in family(), p in params(), tr in triple(), s in 0.1..10.0f64, h in 0.1..100.0f64) {
        let ps = Params { alpha: p.alpha * s, ..p };
        let ts = Triple { x: tr.x, t_x: tr.t_x * s, t: tr.t * s };
        let (pa, pas) = (p_alive(fam, &p, tr.x, tr.t_x, tr.t), p_alive(fam, &ps, ts.x, ts.t_x, ts.t));
        prop_assert!((pa - pas).abs() < 1e-10, "{pa} vs {pas}");
        let e = expected_activity(fam, &p, tr.x, tr.t_x, tr.t, h).unwrap();
        let es = expected_activity(fam, &ps, ts.x, ts.t_x, ts.t, h * s).unwrap();
        prop_assert!((e - es).abs() < 1e-9 * e.max(1e-3), "{e} vs {es}");
        let ll = log_likelihood(fam, &p, &tr);
        let lls = log_likelihood(fam, &ps, &ts);
        prop_assert!((ll - tr.x * s.ln() - lls).abs() < 1e-8 * ll.abs().max(1.0), "{ll} vs {lls}");
    }
}
