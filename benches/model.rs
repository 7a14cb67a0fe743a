//! Benchmarks for the population model on realistic input: simulated
//! BG/NBD customers in day units (CDNOW-like parameters converted from
//! weeks), ages up to two years, triples floored to whole days as a real
//! event store would record them.
//!
//! Speed bar (one core): fit of 1M customers including grouping < 2 s;
//! P(alive) + expected activity for 1M customers < 0.5 s; the risk's
//! logistic fit on 1M labelled customers < 2 s.
//!
//! Run: `cargo bench --bench model`

use churnwatch::model::{
    expected_activity, fit, p_alive, simulate, Family, FitOptions, Params, Triple,
};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

/// r = 0.24, α = 4.41/week = 30.87/day, a = 0.79, b = 2.43.
const TRUE: Params = Params {
    r: 0.24,
    alpha: 30.87,
    a: 0.79,
    b: 2.43,
};
const T_MAX_DAYS: f64 = 730.0;
const HORIZON_DAYS: f64 = 90.0;

fn population(n: usize) -> Vec<Triple> {
    simulate::bgnbd(&TRUE, n, T_MAX_DAYS, 0.0, 2024)
        .iter()
        .map(|c| simulate::whole_units(&c.triple))
        .collect()
}

fn bench_fit(c: &mut Criterion) {
    let mut group = c.benchmark_group("fit");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for (label, n) in [("100k", 100_000), ("1m", 1_000_000)] {
        let data = population(n);
        let opts = FitOptions::default();
        // One untimed fit to report what the timed ones do.
        if let Ok(r) = fit(Family::BgNbd, &data, &opts) {
            eprintln!(
                "fit/bgnbd/{label}: customers {} distinct triples {} iterations {} converged {} params {:?}",
                r.customers, r.distinct_triples, r.iterations, r.converged, r.params
            );
        }
        group.bench_function(format!("bgnbd/{label}"), |b| {
            b.iter(|| fit(Family::BgNbd, black_box(&data), &opts))
        });
    }
    group.finish();
}

fn bench_score(c: &mut Criterion) {
    let data = population(1_000_000);
    let mut group = c.benchmark_group("score");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("p_alive_expected/1m", |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for tr in black_box(&data) {
                acc += p_alive(Family::BgNbd, &TRUE, tr.x, tr.t_x, tr.t);
                acc += expected_activity(Family::BgNbd, &TRUE, tr.x, tr.t_x, tr.t, HORIZON_DAYS)
                    .unwrap_or(f64::NAN);
            }
            acc
        })
    });
    group.finish();
}

/// The risk's coefficients: 1M labelled customers (8 features each, drawn
/// like the risk's: a model log-odds over [-4, 4] and six signals on for 30%
/// of customers), outcomes from a known logistic model. Speed bar (one
/// core): under 2 s.
fn bench_risk_fit(c: &mut Criterion) {
    use churnwatch::{config::Weights, score::learn};
    use rand::{Rng, SeedableRng};
    let truth = [-0.7, 0.8, 1.2, 0.6, 2.0, 1.5, 2.5, 0.9];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let (mut rows, mut y) = (Vec::new(), Vec::new());
    for _ in 0..1_000_000 {
        let mut x = [0.0; learn::K];
        x[0] = 1.0;
        x[1] = rng.gen_range(-4.0..4.0);
        for v in x.iter_mut().skip(2) {
            if rng.gen::<f64>() < 0.3 {
                *v = rng.gen_range(0.0..=1.0);
            }
        }
        let z: f64 = x.iter().zip(&truth).map(|(a, b)| a * b).sum();
        rows.push(x);
        y.push(rng.gen::<f64>() < 1.0 / (1.0 + (-z).exp()));
    }
    let prior = learn::to_vector(0.0, &Weights::prior());
    if let Ok(f) = learn::fit(&rows, &y, &prior, 1.0, 1000) {
        eprintln!(
            "risk_fit/1m: iterations {} auc {:.4} brier {:.4} coefficients {:?}",
            f.iterations, f.auc, f.brier, f.coefficients
        );
    }
    let mut group = c.benchmark_group("risk_fit");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("logistic/1m", |b| {
        b.iter(|| learn::fit(black_box(&rows), &y, &prior, 1.0, 1000))
    });
    group.finish();
}

criterion_group!(benches, bench_fit, bench_score, bench_risk_fit);
criterion_main!(benches);
