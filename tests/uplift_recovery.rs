//! The measured uplift recovers the true effect of outreach on synthetic
//! populations that react to it (the generator's treatment model), with
//! churnwatch's own holdout, trials and interval. Pure: no broker.
//!
//! Over 50 seeded populations per effect, the 95% interval (Newcombe) of
//! the pooled difference in churn rate (held out minus contacted) must
//! cover the true effect in at least 45 (90%). For a zero effect that is
//! also "significant at most about 5% of the time": at most 5 of 50 (if the
//! interval's coverage is 95%, more than 5 happens with chance 0.04; the
//! spec's 90% floor allows 5).

use churnwatch::{
    config::CoreConfig,
    generate::{GenConfig, GenModel, Generator, Treatment},
    time::Span,
    uplift::{ArmCounts, Uplift},
};

const RUNS: u64 = 50;

fn core() -> CoreConfig {
    let mut c = CoreConfig::default();
    c.fold.lateness = Span::seconds(0);
    c.outreach.holdout.default = 0.5;
    c
}

/// One population: the pooled uplift over every playbook.
fn run(seed: u64, effect: f64) -> (Uplift, u64) {
    let effects = [effect; 7];
    let cfg = GenConfig {
        customers: 1500,
        seed,
        span: Span::days(120),
        model: GenModel::Experience,
        treatment: Some(Treatment {
            core: core(),
            effects,
        }),
        ..GenConfig::default()
    };
    let mut g = Generator::new(cfg);
    let events = g.by_ref().count() as u64;
    let (mut contacted, mut held_out) = (ArmCounts::default(), ArmCounts::default());
    for counts in g.measured().into_iter().flat_map(|m| m.values()) {
        contacted.decided += counts.contacted.decided;
        contacted.retained += counts.contacted.retained;
        held_out.decided += counts.held_out.decided;
        held_out.retained += counts.held_out.retained;
    }
    let u = Uplift::measure(contacted, held_out)
        .unwrap_or_else(|| panic!("seed {seed}: an arm is empty: {contacted:?} {held_out:?}"));
    (u, events)
}

fn g_strata(seed: u64) -> std::collections::BTreeMap<(&'static str, &'static str), u64> {
    let mut g = Generator::new(GenConfig {
        customers: 1500,
        seed,
        span: Span::days(120),
        model: GenModel::Experience,
        treatment: Some(Treatment {
            core: core(),
            effects: [0.3; 7],
        }),
        ..GenConfig::default()
    });
    g.by_ref().for_each(drop);
    g.strata().cloned().unwrap_or_default()
}

fn coverage(effect: f64) -> (u64, u64) {
    let mut covered = 0;
    let mut significant = 0;
    let mut trials = 0;
    for seed in 0..RUNS {
        let (u, _) = run(1000 + seed, effect);
        trials += u.contacted.decided + u.held_out.decided;
        covered += u64::from(u.low <= effect && effect <= u.high);
        significant += u64::from(u.significant());
    }
    println!(
        "effect {effect:+.2}: interval covers it in {covered}/{RUNS} runs, significant in {significant}/{RUNS}, {:.0} trials per run",
        trials as f64 / RUNS as f64
    );
    (covered, significant)
}

#[test]
fn one_run_is_deterministic_and_measures_both_arms() {
    let (a, events) = run(7, 0.3);
    let (b, _) = run(7, 0.3);
    assert_eq!(a, b);
    assert!(a.held_out.decided > 50 && a.contacted.decided > 50, "{a:?}");
    println!("{events} events; {a:?}");
    // The true strata: about 30% of the trials were persuadable.
    let strata = g_strata(7);
    let persuadable: u64 = strata
        .iter()
        .filter(|(k, _)| k.1 == "persuadable")
        .map(|(_, v)| v)
        .sum();
    let all: u64 = strata.values().sum();
    assert!(
        (persuadable as f64 / all as f64 - 0.3).abs() < 0.06,
        "{strata:?}"
    );
}

#[test]
fn a_helpful_effect_is_recovered() {
    let (covered, significant) = coverage(0.25);
    assert!(covered >= 45, "{covered}");
    assert!(significant >= 45, "power: {significant}");
}

#[test]
fn no_effect_is_rarely_significant() {
    let (covered, significant) = coverage(0.0);
    assert!(covered >= 45, "{covered}");
    assert!(significant <= 5, "{significant}");
}

#[test]
fn a_harmful_effect_is_recovered() {
    let (covered, _) = coverage(-0.15);
    assert!(covered >= 45, "{covered}");
}
