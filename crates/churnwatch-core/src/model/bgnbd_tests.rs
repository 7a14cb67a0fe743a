//! Unit tests for the per-customer formulas. Reference values were computed
//! independently with mpmath at 40 digits from the published formulas.

// Reference values are quoted as mpmath printed them.
#![allow(clippy::excessive_precision)]

use super::{expected_activity, hyp2f1, log_likelihood, p_alive, Family, Params, Triple};

/// Fader, Hardie & Lee (2005) CDNOW estimates, weeks.
const PAPER: Params = Params {
    r: 0.243,
    alpha: 4.414,
    a: 0.793,
    b: 2.426,
};

fn close(got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want.abs().max(1e-300);
    assert!(err <= rel, "got {got}, want {want}, rel err {err:e}");
}

const CASES: [(f64, f64, f64); 3] = [(2.0, 30.43, 38.86), (0.0, 0.0, 38.86), (7.0, 35.5, 38.0)];

#[test]
fn log_likelihood_matches_reference() {
    let bg = [
        -9.458_606_307_066_271,
        -0.554_713_276_438_158_5,
        -22.025_036_079_608_6,
    ];
    let mbg = [
        -9.687_182_636_249_961,
        -0.386_952_220_570_853_5,
        -22.119_431_884_653_725,
    ];
    for (i, &(x, t_x, t)) in CASES.iter().enumerate() {
        let tr = Triple { x, t_x, t };
        close(log_likelihood(Family::BgNbd, &PAPER, &tr), bg[i], 1e-12);
        close(log_likelihood(Family::MbgNbd, &PAPER, &tr), mbg[i], 1e-12);
    }
}

#[test]
fn p_alive_matches_reference() {
    let bg = [0.726_578_570_080_673, 1.0, 0.872_498_426_294_100_2];
    let mbg = [
        0.774_419_242_623_646_1,
        0.637_253_337_964_895_4,
        0.884_462_177_569_665_7,
    ];
    for (i, &(x, t_x, t)) in CASES.iter().enumerate() {
        close(p_alive(Family::BgNbd, &PAPER, x, t_x, t), bg[i], 1e-12);
        close(p_alive(Family::MbgNbd, &PAPER, x, t_x, t), mbg[i], 1e-12);
    }
}

#[test]
fn expected_activity_matches_reference() {
    // The first BG/NBD value is the paper's worked example (1.226).
    let bg = [
        1.226_028_174_767_140_4,
        0.195_098_052_011_262_9,
        4.611_723_537_178_435,
    ];
    let mbg = [
        1.340_497_428_491_208,
        0.127_461_382_545_661_6,
        4.756_208_153_337_075,
    ];
    for (i, &(x, t_x, t)) in CASES.iter().enumerate() {
        close(
            expected_activity(Family::BgNbd, &PAPER, x, t_x, t, 39.0).unwrap(),
            bg[i],
            1e-11,
        );
        close(
            expected_activity(Family::MbgNbd, &PAPER, x, t_x, t, 39.0).unwrap(),
            mbg[i],
            1e-11,
        );
    }
}

#[test]
fn bgnbd_zero_repeaters_are_alive() {
    for &t in &[0.0, 1.0, 100.0, 1e6] {
        assert_eq!(p_alive(Family::BgNbd, &PAPER, 0.0, 0.0, t), 1.0);
    }
    // MBG/NBD lets one-time buyers drop out: below 1 and falling with age.
    let young = p_alive(Family::MbgNbd, &PAPER, 0.0, 0.0, 1.0);
    let old = p_alive(Family::MbgNbd, &PAPER, 0.0, 0.0, 100.0);
    assert!(young < 1.0 && old < young, "young {young}, old {old}");
}

#[test]
fn mbgnbd_differs_where_it_should() {
    // One-time buyers: BG/NBD says certainly alive, MBG/NBD does not.
    assert!(p_alive(Family::MbgNbd, &PAPER, 0.0, 0.0, 10.0) < 1.0);
    // Repeat buyers: MBG/NBD's odds of death are a/(b+x) instead of
    // a/(b+x-1), i.e. one extra survived purchase, so it is *more* confident.
    let bg = p_alive(Family::BgNbd, &PAPER, 3.0, 20.0, 20.0);
    let mbg = p_alive(Family::MbgNbd, &PAPER, 3.0, 20.0, 20.0);
    close(bg, 1.0 / (1.0 + PAPER.a / (PAPER.b + 2.0)), 1e-14);
    close(mbg, 1.0 / (1.0 + PAPER.a / (PAPER.b + 3.0)), 1e-14);
    let tr = Triple {
        x: 0.0,
        t_x: 0.0,
        t: 10.0,
    };
    let d =
        log_likelihood(Family::BgNbd, &PAPER, &tr) - log_likelihood(Family::MbgNbd, &PAPER, &tr);
    assert!(d.abs() > 1e-3);
}

#[test]
fn long_silence_means_dead_without_overflow() {
    let pa = p_alive(Family::BgNbd, &PAPER, 500.0, 1.0, 1e6);
    assert!((0.0..1e-100).contains(&pa), "{pa}");
    let e = expected_activity(Family::BgNbd, &PAPER, 500.0, 1.0, 1e6, 52.0).unwrap();
    assert!((0.0..1e-100).contains(&e), "{e}");
}

#[test]
fn expected_activity_zero_horizon_and_monotone() {
    for fam in [Family::BgNbd, Family::MbgNbd] {
        for &(x, t_x, t) in &CASES {
            assert_eq!(expected_activity(fam, &PAPER, x, t_x, t, 0.0).unwrap(), 0.0);
            let tiny = expected_activity(fam, &PAPER, x, t_x, t, 1e-9).unwrap();
            assert!((0.0..1e-8).contains(&tiny), "{tiny}");
            let mut prev = 0.0;
            for h in [0.5, 1.0, 5.0, 26.0, 52.0, 104.0, 520.0] {
                let e = expected_activity(fam, &PAPER, x, t_x, t, h).unwrap();
                assert!(e > prev, "{fam:?} {x} h={h}: {e} <= {prev}");
                prev = e;
            }
        }
    }
}

#[test]
fn expected_activity_is_continuous_through_a_equal_one() {
    for fam in [Family::BgNbd, Family::MbgNbd] {
        let at = |a: f64| {
            let p = Params { a, ..PAPER };
            expected_activity(fam, &p, 2.0, 30.43, 38.86, 39.0).unwrap()
        };
        let (lo, mid, hi) = (at(1.0 - 1e-3), at(1.0), at(1.0 + 1e-3));
        assert!(lo > mid && mid > hi, "{lo} {mid} {hi}");
        close(mid, 0.5 * (lo + hi), 1e-6);
        // No special-casing near 1: tiny offsets stay continuous.
        close(at(1.0 + 1e-12), mid, 1e-9);
        close(at(1.0 - 1e-12), mid, 1e-9);
    }
}

#[test]
fn expected_activity_at_a_one_matches_the_limit_series() {
    // At a = 1 (BG/NBD) the limit is (b+x)·K·Σ_k (r+x)_k z^k/k! · H_k · P(alive)
    // with H_k = Σ_{j<k} 1/(b+x+j), from differentiating ₂F₁ in c.
    let p = Params { a: 1.0, ..PAPER };
    let (x, t_x, t, h) = (2.0, 30.43, 38.86, 39.0);
    let (rx, c) = (p.r + x, p.b + x);
    let z = h / (p.alpha + t + h);
    let k = ((p.alpha + t) / (p.alpha + t + h)).powf(rx);
    let (mut term, mut harm, mut sum) = (1.0, 0.0, 0.0);
    for j in 0..2000 {
        let jf = j as f64;
        harm += 1.0 / (c + jf);
        term *= (rx + jf) / (jf + 1.0) * z;
        sum += term * harm;
    }
    let want = c * k * sum * p_alive(Family::BgNbd, &p, x, t_x, t);
    let got = expected_activity(Family::BgNbd, &p, x, t_x, t, h).unwrap();
    close(got, want, 1e-7);
}

#[test]
fn invalid_inputs_are_errors_or_nan() {
    let bad = Params { r: -1.0, ..PAPER };
    assert!(expected_activity(Family::BgNbd, &bad, 1.0, 1.0, 2.0, 1.0).is_err());
    assert!(expected_activity(Family::BgNbd, &PAPER, 1.0, 3.0, 2.0, 1.0).is_err());
    assert!(expected_activity(Family::BgNbd, &PAPER, 1.0, 1.0, 2.0, -1.0).is_err());
    assert!(p_alive(Family::BgNbd, &bad, 1.0, 1.0, 2.0).is_nan());
    let tr = Triple {
        x: 1.0,
        t_x: 5.0,
        t: 2.0,
    };
    assert!(log_likelihood(Family::BgNbd, &PAPER, &tr).is_nan());
}

/// The published closed form, evaluated literally with `hyp2f1`.
fn literal_expectation(fam: Family, p: &Params, x: f64, t_x: f64, t: f64, h: f64) -> f64 {
    let Params { r, alpha, a, b } = *p;
    let z = h / (alpha + t + h);
    let k = ((alpha + t) / (alpha + t + h)).powf(r + x);
    let m = if fam == Family::MbgNbd { 1.0 } else { 0.0 };
    let c = a + b + x - 1.0 + m;
    let f = hyp2f1(r + x, b + x + m, c, z).unwrap();
    c / (a - 1.0) * (1.0 - k * f) * p_alive(fam, p, x, t_x, t)
}

#[test]
fn expected_activity_matches_the_literal_hyp2f1_formula() {
    let mut checked = 0;
    for fam in [Family::BgNbd, Family::MbgNbd] {
        for &(r, alpha, a, b) in &[
            (0.243, 4.414, 0.793, 2.426),
            (2.0, 30.0, 1.7, 9.0),
            (0.6, 1.0, 0.3, 0.4),
            (5.0, 2.0, 3.5, 1.1),
        ] {
            let p = Params { r, alpha, a, b };
            for &(x, t_x, t) in &[
                (0.0, 0.0, 5.0),
                (1.0, 2.0, 3.0),
                (4.0, 10.0, 40.0),
                (12.0, 39.0, 40.0),
            ] {
                for &h in &[0.1, 7.0, 52.0, 200.0] {
                    let want = literal_expectation(fam, &p, x, t_x, t, h);
                    let got = expected_activity(fam, &p, x, t_x, t, h).unwrap();
                    close(got, want, 1e-9);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 128);
}

#[test]
fn heavy_new_buyer_over_a_long_horizon_is_finite() {
    // z = h/(α+T+h) ≈ 0.9995 and x = 50: the literal ₂F₁ would need millions
    // of terms and overflow; the transformed series converges at once.
    let p = Params {
        alpha: 0.1,
        ..PAPER
    };
    for fam in [Family::BgNbd, Family::MbgNbd] {
        let e = expected_activity(fam, &p, 50.0, 0.01, 0.01, 200.0).unwrap();
        assert!(e.is_finite() && e > 1.0, "{fam:?}: {e}");
    }
}

use super::{ln_odds_no_activity, p_no_activity, simulate};

/// `1 − P(alive)·(1 − ((α+T)/(α+T+τ))^(r+x))`, written literally.
fn literal_no_activity(fam: Family, p: &Params, x: f64, t_x: f64, t: f64, tau: f64) -> f64 {
    let q = ((p.alpha + t) / (p.alpha + t + tau)).powf(p.r + x);
    1.0 - p_alive(fam, p, x, t_x, t) * (1.0 - q)
}

#[test]
fn no_activity_matches_the_literal_formula() {
    for fam in [Family::BgNbd, Family::MbgNbd] {
        for &(x, t_x, t) in &CASES {
            for tau in [0.5, 4.0, 13.0, 52.0] {
                close(
                    p_no_activity(fam, &PAPER, x, t_x, t, tau),
                    literal_no_activity(fam, &PAPER, x, t_x, t, tau),
                    1e-12,
                );
            }
        }
    }
    // Nothing can happen in no time; outside the domain there is no answer.
    assert_eq!(
        ln_odds_no_activity(Family::BgNbd, &PAPER, 2.0, 3.0, 5.0, 0.0),
        f64::INFINITY
    );
    assert!(p_no_activity(Family::BgNbd, &PAPER, 2.0, 6.0, 5.0, 1.0).is_nan());
    assert!(p_no_activity(Family::BgNbd, &PAPER, 2.0, 3.0, 5.0, -1.0).is_nan());
}

#[test]
fn no_activity_stays_finite_for_long_silent_heavy_buyers() {
    // Odds of no activity around e^60: P(none) is 1 to machine precision,
    // but the log-odds are still finite and ordered.
    let lo1 = ln_odds_no_activity(Family::BgNbd, &PAPER, 60.0, 10.0, 300.0, 13.0);
    let lo2 = ln_odds_no_activity(Family::BgNbd, &PAPER, 60.0, 10.0, 400.0, 13.0);
    assert!(
        lo1.is_finite() && lo2.is_finite() && lo2 > lo1 && lo1 > 20.0,
        "{lo1} {lo2}"
    );
}

/// The closed form against the model's own generative process: customers
/// binned by predicted P(none in τ); in each bin the share with no purchase
/// in (T, T+τ] must match the mean prediction within sampling error.
#[test]
fn no_activity_matches_simulation() {
    let tau = 13.0;
    for fam in [Family::BgNbd, Family::MbgNbd] {
        let sims = simulate::population(fam, &PAPER, 200_000, 78.0, tau, 11);
        let mut bins = [(0.0f64, 0.0f64, 0u32); 10];
        for c in &sims {
            let tr = c.triple;
            let p = p_no_activity(fam, &PAPER, tr.x, tr.t_x, tr.t, tau);
            let b = ((p * 10.0) as usize).min(9);
            bins[b].0 += p;
            bins[b].1 += f64::from(u8::from(c.future_count == 0));
            bins[b].2 += 1;
        }
        let mut checked = 0;
        for (i, &(pred, seen, n)) in bins.iter().enumerate() {
            if n < 500 {
                continue;
            }
            let (pred, seen) = (pred / f64::from(n), seen / f64::from(n));
            let se = (pred * (1.0 - pred) / f64::from(n)).sqrt();
            assert!(
                (pred - seen).abs() <= 4.0 * se + 0.003,
                "{fam:?} bin {i}: predicted {pred:.4}, simulated {seen:.4}, n {n}"
            );
            checked += 1;
        }
        assert!(checked >= 4, "{fam:?}: only {checked} bins populated");
    }
}

#[test]
fn a_one_time_buyer_grows_likelier_to_stay_silent_under_both_families() {
    for fam in [Family::BgNbd, Family::MbgNbd] {
        let mut last = 0.0;
        for t in [0.0, 1.0, 4.0, 13.0, 26.0, 52.0] {
            let p = p_no_activity(fam, &PAPER, 0.0, 0.0, t, 4.0);
            assert!(p > last, "{fam:?} T={t}: {p} <= {last}");
            last = p;
        }
    }
    // BG/NBD: P(alive) = 1, so all of it is the posterior rate falling.
    close(
        p_no_activity(Family::BgNbd, &PAPER, 0.0, 0.0, 26.0, 4.0),
        ((PAPER.alpha + 26.0) / (PAPER.alpha + 30.0)).powf(PAPER.r),
        1e-12,
    );
}
