//! Labels from the stream, and the refit that learns from them.

use std::sync::Arc;

use super::*;
use crate::{
    config::{CoreConfig, FoldConfig},
    events,
    generate::{GenConfig, Generator},
    pb::InteractionEvent,
    processor::Processor,
    time::{start_of_day, Span, SECS_PER_DAY},
    validate::validate,
};

const D: i64 = SECS_PER_DAY;

fn at(day: i32) -> i64 {
    start_of_day(20_000 + day) + 12 * 3600
}

fn apply(s: &mut CustomerState, evs: &[InteractionEvent]) {
    let cfg = FoldConfig::default();
    for e in evs {
        if let Ok(v) = validate(e, None, &cfg) {
            s.apply(&v, &cfg);
        }
    }
}

/// Every customer in one group and sampled: each refit writes all down.
fn all_at_once() -> CoreConfig {
    let mut c = CoreConfig::default();
    c.model.refit_every = Span::days(30);
    c.score.learning.sample = 1.0;
    c
}

#[test]
fn customers_are_labelled_by_what_they_did_in_the_horizon() {
    let cfg = all_at_once();
    let model = PopulationModel::prior(&cfg.model);
    let ctx = Context::new(&cfg, &model);
    let ids = [
        "active",
        "silent",
        "late_return",
        "cancels",
        "lapses",
        "renews",
    ];
    let mut states: Vec<CustomerState> = ids.iter().map(|_| CustomerState::new(at(0))).collect();
    for (i, s) in states.iter_mut().enumerate() {
        let id = ids[i];
        apply(s, &[events::purchase(&format!("{id}-0"), id, at(0), 10.0)]);
    }
    for (i, renews) in [(3, at(60)), (4, at(20)), (5, at(20))] {
        let id = ids[i];
        apply(
            &mut states[i],
            &[events::subscription(
                &format!("{id}-s"),
                id,
                at(1),
                "pro",
                renews,
                false,
            )],
        );
    }
    let mut o = Outcomes::default();
    let t0 = at(10);
    let mut g = o.begin(t0, &cfg);
    for (id, s) in ids.iter().zip(&states) {
        g.visit(id, s, &ctx);
    }
    assert!(
        o.finish(g).is_empty(),
        "nothing is labelled before a horizon has passed"
    );
    assert_eq!(o.waiting(), 6);

    // What they did in (day 10, day 40]: "late_return" only on day 41.
    let more: [&[InteractionEvent]; 6] = [
        &[events::purchase("a1", "active", at(25), 10.0)],
        &[],
        &[events::purchase("l1", "late_return", at(41), 10.0)],
        &[
            events::purchase("c1", "cancels", at(15), 10.0),
            events::subscription("c2", "cancels", at(16), "pro", at(60), true),
        ],
        &[events::purchase("p1", "lapses", at(15), 10.0)],
        &[
            events::purchase("r1", "renews", at(15), 10.0),
            events::subscription("r2", "renews", at(20), "pro", at(50), false),
        ],
    ];
    for (s, evs) in states.iter_mut().zip(more) {
        apply(s, evs);
    }
    let mut g = o.begin(t0 + 30 * D + D, &cfg);
    for (id, s) in ids.iter().zip(&states) {
        g.visit(id, s, &ctx);
    }
    let training = o.finish(g);
    let labels: Vec<bool> = training
        .batches
        .iter()
        .flat_map(|b| b.iter().map(|l| l.churned))
        .collect();
    assert_eq!(labels, vec![false, true, true, true, true, false]);
}

#[test]
fn activity_in_a_past_range_is_read_from_the_day_bitmap() {
    let mut a = Activity::starting(100);
    for d in [110, 130, 150] {
        a.record(d);
    }
    assert_eq!(active_between(&a, 150, 160), Some(false));
    assert_eq!(active_between(&a, 140, 160), Some(true));
    assert_eq!(
        active_between(&a, 111, 129),
        Some(false),
        "between 110 and 130"
    );
    assert_eq!(
        active_between(&a, 109, 111),
        Some(true),
        "day 110 from the bitmap"
    );
    assert_eq!(active_between(&a, 95, 101), Some(true), "the first day");
    a.record(300);
    assert_eq!(active_between(&a, 105, 120), None, "out of the bitmap");
}

fn population(customers: u64, days: i64) -> Vec<InteractionEvent> {
    Generator::new(GenConfig {
        customers,
        span: Span::days(days),
        ..GenConfig::default()
    })
    .collect()
}

/// A replay-style run: fold every event, refit at each multiple of
/// `refit_every` with the learning pass.
fn run(cfg: &Arc<CoreConfig>, evs: &[InteractionEvent]) -> (Processor, u64) {
    let mut p = Processor::new(cfg.clone(), Arc::new(PopulationModel::prior(&cfg.model)));
    let mut o = Outcomes::default();
    let every = cfg.model.refit_every.as_secs();
    let (mut next, mut learned) = (None, 0);
    let mut out = Vec::new();
    for e in evs {
        let _ = p.process(e, None, &mut out);
        out.clear();
        let Some(st) = p.stream_time() else { continue };
        p.advance_to(st, &mut out);
        out.clear();
        if next.is_none_or(|t| st >= t) {
            if next.is_some() {
                if let Ok(r) = p.refit_learning(&mut o, st) {
                    if let Err(e) = &r.learning {
                        eprintln!("{st}: {e} (waiting {})", o.waiting());
                    }
                    learned += u64::from(r.learning.is_ok());
                    p.set_model(Arc::new(r.model));
                }
            }
            next = Some((st.div_euclid(every) + 1) * every);
        }
    }
    (p, learned)
}

#[test]
fn the_stream_learns_its_coefficients_and_does_so_deterministically() {
    let mut cfg = CoreConfig::default();
    cfg.score.learning.min_labelled = 200;
    cfg.score.learning.sample = 1.0;
    let cfg = Arc::new(cfg);
    let evs = population(3000, 100);
    let (p, learned) = run(&cfg, &evs);
    let Some(r) = p.model().risk.clone() else {
        panic!("nothing learned in 100 days of 3000 customers")
    };
    assert!(learned > 30, "learned at {learned} refits");
    assert!(r.labelled >= 2000, "{r:?}");
    assert!(r.churned > 0 && r.churned < r.labelled, "{r:?}");
    // The generated silent share is foreseeable from the silence: the
    // training set ranks well, and better than chance by far.
    assert!(r.auc > 0.7, "{r:?}");
    assert!(r.brier < 0.2, "{r:?}");
    let (q, _) = run(&cfg, &evs);
    let bytes = |p: &Processor| serde_json::to_vec(&**p.model()).unwrap_or_default();
    assert_eq!(
        bytes(&p),
        bytes(&q),
        "same events, same model and coefficients"
    );
}

#[test]
fn fixed_mode_learns_nothing_and_keeps_no_snapshots() {
    let mut cfg = CoreConfig::default();
    cfg.score.learning.mode = LearningMode::Fixed;
    cfg.score.learning.min_labelled = 200;
    let cfg = Arc::new(cfg);
    let (p, learned) = run(&cfg, &population(500, 70));
    assert_eq!(learned, 0);
    assert!(p.model().risk.is_none());
    assert!(
        p.model().fit.is_some(),
        "the population model is still fitted"
    );
}

#[test]
fn learned_coefficients_survive_the_changelog_record_and_old_records_still_read() {
    let mut cfg = CoreConfig::default();
    cfg.score.learning.min_labelled = 200;
    cfg.score.learning.sample = 1.0;
    let cfg = Arc::new(cfg);
    let (p, _) = run(&cfg, &population(2000, 90));
    let m = (**p.model()).clone();
    assert!(m.risk.is_some());
    // The record the service writes (restore::MODEL_KEY) is this JSON.
    let bytes = serde_json::to_vec(&m).unwrap_or_default();
    let back: PopulationModel = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, m);
    assert_eq!(back.version(), m.version());
    // A record from before learning existed: no "risk" key.
    let mut old: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if let Some(o) = old.as_object_mut() {
        o.remove("risk");
    }
    let old: PopulationModel = serde_json::from_value(old).unwrap_or_else(|e| panic!("{e}"));
    assert!(old.risk.is_none());
    assert_eq!(old.params, m.params);
    assert_ne!(
        old.version(),
        m.version(),
        "the version names the coefficients"
    );
}
