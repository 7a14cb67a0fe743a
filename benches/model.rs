//! Benchmarks for the population model on realistic input: simulated
//! BG/NBD customers in day units (CDNOW-like parameters converted from
//! weeks), ages up to two years, triples floored to whole days as a real
//! event store would record them.
//!
//! Speed bar (one core): fit of 1M customers including grouping < 2 s;
//! P(alive) + expected activity for 1M customers < 0.5 s.
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

criterion_group!(benches, bench_fit, bench_score);
criterion_main!(benches);
