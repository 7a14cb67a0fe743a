//! End-to-end statistical tests of the population model: simulate customers
//! from known parameters, then check that
//! - the fit recovers the parameters within 4 standard errors,
//! - P(alive) under the true parameters is calibrated against who really is
//!   alive (overall and per decile of the prediction),
//! - expected_activity under the true parameters matches the purchases that
//!   really happen after T (overall and per bucket).
//!
//! Given the true parameters, each simulated customer's alive flag is an
//! exact Bernoulli(P(alive)) draw, and the future count has exactly the
//! predicted mean, so these are sharp tests of the formulas, not just of
//! "roughly right". Seeds are fixed, so runs are reproducible. Sizes are
//! kept modest (15k customers per set) so the suite also runs in debug.

use churnwatch::model::{
    expected_activity, fit_grouped, log_likelihood, p_alive, simulate, standard_errors, Family,
    FitOptions, Params, SimCustomer, TripleCounts,
};

const N: usize = 15_000;

struct Case {
    name: &'static str,
    p: Params,
    t_max: f64,
    horizon: f64,
    seed: u64,
}

const CASES: [Case; 4] = [
    // Fader, Hardie & Lee (2005) CDNOW estimates, in weeks.
    Case {
        name: "cdnow-weeks",
        p: Params {
            r: 0.24,
            alpha: 4.41,
            a: 0.79,
            b: 2.43,
        },
        t_max: 52.0,
        horizon: 39.0,
        seed: 11,
    },
    // Frequent buyers with sticky loyalty, in days.
    Case {
        name: "frequent-days",
        p: Params {
            r: 0.8,
            alpha: 12.0,
            a: 1.5,
            b: 4.0,
        },
        t_max: 365.0,
        horizon: 90.0,
        seed: 22,
    },
    // Homogeneous rates, fickle customers (a < 1, mean dropout 0.25).
    Case {
        name: "fickle-weeks",
        p: Params {
            r: 2.0,
            alpha: 8.0,
            a: 0.4,
            b: 1.2,
        },
        t_max: 52.0,
        horizon: 26.0,
        seed: 33,
    },
    // a = 1 exactly: expected_activity's removable singularity.
    Case {
        name: "a-equals-one",
        p: Params {
            r: 0.5,
            alpha: 3.0,
            a: 1.0,
            b: 3.0,
        },
        t_max: 40.0,
        horizon: 20.0,
        seed: 44,
    },
];

fn simulate_case(family: Family, c: &Case) -> Vec<SimCustomer> {
    simulate::population(family, &c.p, N, c.t_max, c.horizon, c.seed)
}

fn params_vec(p: &Params) -> [f64; 4] {
    [p.r, p.alpha, p.a, p.b]
}

fn check_recovery(family: Family) {
    for c in &CASES {
        let sims = simulate_case(family, c);
        let data: TripleCounts = sims.iter().map(|s| s.triple).collect();
        let fit = fit_grouped(family, &data, &FitOptions::default()).unwrap();
        assert!(fit.converged, "{}: {fit:?}", c.name);
        assert_eq!(fit.customers, N as u64);
        assert_at_least_truth(family, &data, &c.p, fit.log_likelihood);
        let se = standard_errors(family, &data, &fit.params).unwrap();
        let names = ["r", "alpha", "a", "b"];
        let (est, truth, err) = (params_vec(&fit.params), params_vec(&c.p), params_vec(&se));
        for i in 0..4 {
            let z = (est[i] - truth[i]) / err[i];
            eprintln!(
                "{family:?} {} {}: est {:.4} true {:.4} se {:.4} z {z:+.2}",
                c.name, names[i], est[i], truth[i], err[i]
            );
            assert!(
                z.abs() < 4.0,
                "{family:?} {}: {} off by {z:.2} SE",
                c.name,
                names[i]
            );
            // A standard error larger than the value would make this vacuous.
            assert!(
                err[i] < 0.5 * truth[i],
                "{}: se of {} too large",
                c.name,
                names[i]
            );
        }
    }
}

#[test]
fn bgnbd_fit_recovers_parameters() {
    check_recovery(Family::BgNbd);
}

#[test]
fn mbgnbd_fit_recovers_parameters() {
    check_recovery(Family::MbgNbd);
}

#[test]
fn mbgnbd_data_prefers_mbgnbd_fit() {
    // One-time buyers who silently left are what MBG/NBD adds; where buyers
    // are frequent enough that a silent one-timer stands out, the BG/NBD fit
    // must be clearly worse. (With rare buyers, e.g. CDNOW, the two fit
    // almost equally well: silence is explained by a low rate.)
    let c = &CASES[1];
    let data: TripleCounts = simulate_case(Family::MbgNbd, c)
        .iter()
        .map(|s| s.triple)
        .collect();
    let opts = FitOptions::default();
    let mbg = fit_grouped(Family::MbgNbd, &data, &opts).unwrap();
    let bg = fit_grouped(Family::BgNbd, &data, &opts).unwrap();
    eprintln!(
        "MBG/NBD data: mbg ll {} bg ll {}",
        mbg.log_likelihood, bg.log_likelihood
    );
    assert!(
        mbg.log_likelihood > bg.log_likelihood + 10.0,
        "mbg {} bg {}",
        mbg.log_likelihood,
        bg.log_likelihood
    );
}

/// Asserts `observed` total agrees with `expected` total within 4 sd
/// (plus half a count, so all-certain buckets don't need exact equality).
fn assert_within(what: &str, observed: f64, expected: f64, var: f64) {
    let tol = 4.0 * var.sqrt() + 0.5;
    eprintln!(
        "{what}: observed {observed:.1} expected {expected:.1} sd {:.1}",
        var.sqrt()
    );
    assert!(
        (observed - expected).abs() <= tol,
        "{what}: observed {observed}, expected {expected}, tol {tol}"
    );
}

fn check_p_alive(family: Family) {
    for c in &CASES {
        let sims = simulate_case(family, c);
        let mut rows: Vec<(f64, bool)> = sims
            .iter()
            .map(|s| {
                (
                    p_alive(family, &c.p, s.triple.x, s.triple.t_x, s.triple.t),
                    s.alive_at_t,
                )
            })
            .collect();
        assert!(rows.iter().all(|(p, _)| (0.0..=1.0).contains(p)));
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let tally = |rows: &[(f64, bool)]| {
            rows.iter()
                .fold((0.0, 0.0, 0.0), |(obs, exp, var), (p, alive)| {
                    (
                        obs + f64::from(u8::from(*alive)),
                        exp + p,
                        var + p * (1.0 - p),
                    )
                })
        };
        let (obs, exp, var) = tally(&rows);
        assert_within(&format!("{family:?} {} alive", c.name), obs, exp, var);
        // Deciles of predicted P(alive): catches errors that cancel overall.
        for (d, chunk) in rows.chunks(rows.len().div_ceil(10)).enumerate() {
            let (obs, exp, var) = tally(chunk);
            assert_within(
                &format!("{family:?} {} alive decile {d}", c.name),
                obs,
                exp,
                var,
            );
        }
    }
}

#[test]
fn bgnbd_p_alive_is_calibrated() {
    check_p_alive(Family::BgNbd);
}

#[test]
fn mbgnbd_p_alive_is_calibrated() {
    check_p_alive(Family::MbgNbd);
}

fn check_expected_activity(family: Family) {
    for c in &CASES {
        let sims = simulate_case(family, c);
        let mut rows: Vec<(f64, f64)> = sims
            .iter()
            .map(|s| {
                let t = s.triple;
                let e = expected_activity(family, &c.p, t.x, t.t_x, t.t, c.horizon).unwrap();
                (e, f64::from(s.future_count))
            })
            .collect();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Residual sum vs its sample standard deviation.
        let check = |what: String, rows: &[(f64, f64)]| {
            let n = rows.len() as f64;
            let (obs, exp) = rows.iter().fold((0.0, 0.0), |(o, e), r| (o + r.1, e + r.0));
            let mean_resid = (obs - exp) / n;
            let var: f64 = rows
                .iter()
                .map(|r| (r.1 - r.0 - mean_resid).powi(2))
                .sum::<f64>()
                * n
                / (n - 1.0);
            assert_within(&what, obs, exp, var);
        };
        check(format!("{family:?} {} future", c.name), &rows);
        // Quintiles of the prediction.
        for (q, chunk) in rows.chunks(rows.len().div_ceil(5)).enumerate() {
            check(format!("{family:?} {} future quintile {q}", c.name), chunk);
        }
    }
}

#[test]
fn bgnbd_expected_activity_is_calibrated() {
    check_expected_activity(Family::BgNbd);
}

#[test]
fn mbgnbd_expected_activity_is_calibrated() {
    check_expected_activity(Family::MbgNbd);
}

#[test]
fn fits_whole_day_data_with_few_distinct_triples() {
    // Integer-day data as a real system records it: many customers share a
    // triple, and the fit works on the counts. 60k customers also takes the
    // fitter's subsample-then-polish path.
    let p = Params {
        r: 0.24,
        alpha: 30.9,
        a: 0.79,
        b: 2.43,
    };
    let sims = simulate::bgnbd(&p, 60_000, 730.0, 0.0, 5);
    let data: TripleCounts = sims
        .iter()
        .map(|s| simulate::whole_units(&s.triple))
        .collect();
    eprintln!(
        "whole days: {} customers, {} distinct",
        data.customers(),
        data.distinct()
    );
    assert!(
        data.distinct() < 40_000 && data.distinct() > 20_000,
        "{}",
        data.distinct()
    );
    let fit = fit_grouped(Family::BgNbd, &data, &FitOptions::default()).unwrap();
    assert!(fit.converged);
    assert_eq!(fit.distinct_triples, data.distinct() as u64);
    assert_eq!(fit.customers, 60_000);
    assert_at_least_truth(Family::BgNbd, &data, &p, fit.log_likelihood);
    let se = standard_errors(Family::BgNbd, &data, &fit.params).unwrap();
    eprintln!("whole days: {:?} se {:?}", fit.params, se);
    // Flooring to whole days biases α slightly (a known discretisation
    // effect, visible at millions of customers); r, a, b are unaffected.
    assert!(((fit.params.r - p.r) / se.r).abs() < 4.0, "{fit:?} {se:?}");
    assert!(((fit.params.a - p.a) / se.a).abs() < 4.0, "{fit:?} {se:?}");
    assert!(((fit.params.b - p.b) / se.b).abs() < 4.0, "{fit:?} {se:?}");
}

/// The maximum-likelihood fit can never be worse than the truth: a sharp
/// check that the optimizer actually found the maximum.
fn assert_at_least_truth(family: Family, data: &TripleCounts, truth: &Params, fitted_ll: f64) {
    let at_truth: f64 = data
        .entries()
        .iter()
        .map(|(tr, c)| *c as f64 * log_likelihood(family, truth, tr))
        .sum();
    eprintln!("{family:?}: LL at fit {fitted_ll:.3}, at truth {at_truth:.3}");
    assert!(
        fitted_ll >= at_truth - 1e-6,
        "fit LL {fitted_ll} < truth LL {at_truth}"
    );
}
