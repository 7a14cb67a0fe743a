//! Signals and the risk score, against hand-computed expectations.

use super::*;
use crate::{
    config::{CoreConfig, FoldConfig},
    events,
    pb::{Channel, InteractionEvent},
    population::PopulationModel,
    signals::{self, Context},
    state::CustomerState,
    time::{start_of_day, SECS_PER_DAY},
    validate::validate,
};

const DAY0: i32 = 20_000; // 2024-10-04
const D: i64 = SECS_PER_DAY;

fn at(day: i32) -> i64 {
    start_of_day(DAY0 + day) + 12 * 3600
}

fn fold(evs: &[InteractionEvent]) -> CustomerState {
    let cfg = FoldConfig::default();
    let mut s = CustomerState::new(
        evs.first()
            .and_then(|e| e.occurred_at)
            .map_or(0, |t| t.seconds),
    );
    for e in evs {
        if let Ok(v) = validate(e, None, &cfg) {
            s.apply(&v, &cfg);
        }
    }
    s
}

fn with_ctx<R>(f: impl FnOnce(&Context<'_>) -> R) -> R {
    let cfg = CoreConfig::default();
    let model = PopulationModel::prior(&cfg.model);
    f(&Context::new(&cfg, &model))
}

fn purchases_on(days: impl IntoIterator<Item = i32>) -> Vec<InteractionEvent> {
    days.into_iter()
        .map(|d| events::purchase(&format!("p{d}"), "c", at(d), 20.0))
        .collect()
}

#[test]
fn overdue_measures_silence_against_the_customers_own_gap() {
    let s = fold(&purchases_on([0, 7, 14, 21, 28]));
    with_ctx(|ctx| {
        // gap 28 / 4 = 7 days; silent 21 days = 3 gaps: (3 - 1.5) / (4 - 1.5) = 0.6
        assert!((signals::overdue::strength(&s, at(49), ctx) - 0.6).abs() < 1e-12);
        assert_eq!(
            signals::overdue::strength(&s, at(35), ctx),
            0.0,
            "1 gap late is normal"
        );
        assert_eq!(signals::overdue::strength(&s, at(69), ctx), 1.0);
        assert_eq!(
            signals::overdue::evidence(&s, at(69), ctx),
            "no activity for 41 days; usually every 7 days"
        );
    });
}

#[test]
fn rate_drop_is_a_one_sided_poisson_test_against_the_own_baseline() {
    // Active every 2nd day for 120 days: x = 60, t_x = 120, rate 0.5/day, 14 expected in 28 days.
    let s = fold(&purchases_on((0..=120).step_by(2)));
    with_ctx(|ctx| {
        // 14 days later: active days in (134-28, 134] = 108, 110, ..., 120 = 7.
        let Some((observed, expected, p)) = signals::rate_drop::test(&s, at(134), ctx) else {
            panic!("baseline")
        };
        assert_eq!(observed, 7);
        assert!((expected - 14.0).abs() < 1e-12);
        // P(X <= 7 | 14) by hand: e^-14 * sum_{k<=7} 14^k / k!
        let mut term = (-14f64).exp();
        let mut hand = term;
        for k in 1..=7 {
            term *= 14.0 / f64::from(k);
            hand += term;
        }
        assert!((p - hand).abs() < 1e-9, "{p} vs {hand}");
        let strength = signals::rate_drop::strength(&s, at(134), ctx);
        assert!((strength - (1.0 - hand / signals::rate_drop::SIGNIFICANCE)).abs() < 1e-9);
        assert_eq!(
            signals::rate_drop::strength(&s, at(121), ctx),
            0.0,
            "still at the usual rate"
        );
        // Silent longer: fewer active days in the window, stronger signal.
        assert!(signals::rate_drop::strength(&s, at(140), ctx) > strength);
    });
    // A short history has no baseline yet.
    let young = fold(&purchases_on([0, 2, 4, 6, 8]));
    with_ctx(|ctx| assert_eq!(signals::rate_drop::strength(&young, at(40), ctx), 0.0));
}

#[test]
fn p_dead_rises_with_silence() {
    let s = fold(&purchases_on([0, 7, 14, 21, 28]));
    with_ctx(|ctx| {
        let early = signals::p_alive::strength(&s, at(30), ctx);
        let late = signals::p_alive::strength(&s, at(120), ctx);
        assert!(early < late, "{early} < {late}");
        // Closed form by hand with the prior (r .243, alpha 30.9 days, a .793, b 2.426), x = 4, t_x = 28, T = 120.
        let (r, alpha, a, b): (f64, f64, f64, f64) = (0.243, 4.414 * 7.0, 0.793, 2.426);
        let odds = a / (b + 3.0) * ((alpha + 120.0) / (alpha + 28.0)).powf(r + 4.0);
        assert!((late - (1.0 - 1.0 / (1.0 + odds))).abs() < 1e-9);
    });
}

#[test]
fn satisfaction_drop_counts_detractors_and_low_csat_for_a_while() {
    let s = fold(&[
        events::nps("n1", "c", at(0), 9),
        events::nps("n2", "c", at(10), 3),
    ]);
    with_ctx(|ctx| {
        assert_eq!(
            signals::satisfaction::strength(&s, at(11), ctx),
            1.0,
            "new detractor"
        );
        // After 30 days only the drift remains: baseline .84, ewma .6 -> .24 / .3 = .8
        let drift = signals::satisfaction::strength(&s, at(41), ctx);
        assert!((drift - 0.8).abs() < 1e-6, "{drift}");
        let mut bps = Vec::new();
        signals::satisfaction::breakpoints(&s, at(11), ctx, &mut bps);
        assert_eq!(bps, vec![at(10) + 30 * D]);
        assert!(signals::satisfaction::evidence(&s, at(11), ctx).starts_with("NPS 3 (detractor)"));
    });
}

#[test]
fn friction_combines_ticket_age_missed_sla_and_complaints() {
    let s = fold(&[events::ticket_opened(
        "t",
        "c",
        at(0),
        Channel::Phone,
        "T-1",
    )]);
    with_ctx(|ctx| {
        // 7 days open (full age 0.5) and no first response in 24 h (+0.3) = 0.8
        assert!((signals::friction::strength(&s, at(7), ctx) - 0.8).abs() < 1e-12);
        // half a day: age 1/14 -> 0.5/14, within SLA
        assert!((signals::friction::strength(&s, at(0) + D / 2, ctx) - 0.5 / 14.0).abs() < 1e-12);
    });
    let s = fold(&[
        events::ticket_opened("t", "c", at(0), Channel::Phone, "T-1"),
        events::complaint("k", "c", at(1), Channel::Phone, "billing"),
    ]);
    with_ctx(|ctx| {
        // 1 - (1 - 0.8)(1 - 0.6) = 0.92
        assert!((signals::friction::strength(&s, at(7), ctx) - 0.92).abs() < 1e-12);
        let e = signals::friction::evidence(&s, at(7), ctx);
        assert!(
            e.contains("1 open ticket, oldest 7 days") && e.contains("complaint on"),
            "{e}"
        );
    });
}

#[test]
fn escalation_needs_three_contacts_over_two_channels_in_seven_days() {
    let two = fold(&[
        events::contact("a", "c", at(0), Channel::Phone),
        events::contact("b", "c", at(1), Channel::Email),
    ]);
    let three_one_channel = fold(&[
        events::contact("a", "c", at(0), Channel::Phone),
        events::contact("b", "c", at(1), Channel::Phone),
        events::contact("d", "c", at(2), Channel::Phone),
    ]);
    let three = fold(&[
        events::contact("a", "c", at(0), Channel::Phone),
        events::contact("b", "c", at(1), Channel::Email),
        events::contact("d", "c", at(2), Channel::Chat),
    ]);
    with_ctx(|ctx| {
        assert_eq!(signals::escalation::strength(&two, at(2), ctx), 0.0);
        assert_eq!(
            signals::escalation::strength(&three_one_channel, at(2), ctx),
            0.0
        );
        assert_eq!(signals::escalation::strength(&three, at(2), ctx), 1.0);
        assert_eq!(
            signals::escalation::strength(&three, at(7), ctx),
            0.0,
            "first contact left the window"
        );
        assert_eq!(
            signals::escalation::evidence(&three, at(2), ctx),
            "3 contacts in 7 days over email, phone, chat"
        );
    });
}

#[test]
fn renewal_counts_only_near_the_date_with_another_signal_and_not_when_cancelled() {
    let mut evs = purchases_on([0, 7, 14, 21, 28]);
    evs.push(events::subscription("s", "c", at(1), "pro", at(80), false));
    let s = fold(&evs);
    with_ctx(|ctx| {
        assert_eq!(
            score(&s, at(40), ctx).strengths.signals.renewal,
            0.0,
            "40 days ahead"
        );
        assert_eq!(
            score(&s, at(70), ctx).strengths.signals.renewal,
            1.0,
            "10 days ahead, overdue"
        );
        assert_eq!(
            score(&s, at(81), ctx).strengths.signals.renewal,
            0.0,
            "date passed"
        );
    });
    evs.push(events::subscription("s2", "c", at(2), "pro", at(80), true));
    let cancelled = fold(&evs);
    with_ctx(|ctx| {
        assert_eq!(
            score(&cancelled, at(70), ctx).strengths.signals.renewal,
            0.0
        )
    });
    // Without a companion signal the renewal alone is no risk.
    let quiet = fold(&[
        events::purchase("p", "c", at(0), 5.0),
        events::subscription("s", "c", at(0), "pro", at(10), false),
    ]);
    with_ctx(|ctx| assert_eq!(score(&quiet, at(1), ctx).strengths.signals.renewal, 0.0));
}

#[test]
fn risk_is_the_logistic_of_the_models_log_odds_plus_weighted_strengths_with_reasons() {
    let s = fold(&purchases_on([0, 7, 14, 21, 28]));
    with_ctx(|ctx| {
        let sc = score(&s, at(69), ctx);
        let w = &ctx.cfg.weights;
        let st = sc.strengths;
        // The model's P(no activity in 30 days) by hand: prior r .243,
        // alpha 30.898 days, a .793, b 2.426; x = 4, t_x = 28, T = 69.
        let (r, alpha, a, b): (f64, f64, f64, f64) = (0.243, 4.414 * 7.0, 0.793, 2.426);
        let odds = a / (b + 3.0) * ((alpha + 69.0) / (alpha + 28.0)).powf(r + 4.0);
        let alive = 1.0 / (1.0 + odds);
        let q = ((alpha + 69.0) / (alpha + 99.0)).powf(r + 4.0);
        let none = 1.0 - alive * (1.0 - q);
        assert!((st.signals.base - none).abs() < 1e-9);
        let logit = ctx.cfg.bias
            + w.base * (none / (1.0 - none)).ln()
            + w.overdue * st.signals.overdue
            + w.rate_drop * st.signals.rate_drop
            + w.satisfaction_drop * st.signals.satisfaction_drop
            + w.friction * st.signals.friction
            + w.escalation * st.signals.escalation
            + w.renewal * st.signals.renewal;
        assert!((sc.risk - 1.0 / (1.0 + (-logit).exp())).abs() < 1e-9);
        // The contributions are the terms of that sum.
        let total: f64 = sc.contributions.iter().map(|c| c.log_odds).sum();
        assert!((total - logit).abs() < 1e-9);
        assert_eq!(sc.contributions[1].name, "base");
        assert_eq!(sc.coefficients, "prior");
        assert_eq!(sc.reasons[0].code.as_str(), "silence");
        assert!(
            sc.reasons[0].evidence.contains("usually every 7 days"),
            "{}",
            sc.reasons[0].evidence
        );
        assert_eq!(sc.level, Level::of(sc.risk, &ctx.cfg.thresholds));
        assert!(sc.level >= Level::High, "{:?} {}", sc.level, sc.risk);
        let fresh = score(&s, at(29), ctx);
        assert_eq!(fresh.level, Level::Low, "{}", fresh.risk);
    });
}

/// No customer is certainly alive because they bought once: under either
/// family a one-time buyer's risk rises day by day with the time since
/// that purchase, and with learned coefficients too.
#[test]
fn a_one_time_buyers_risk_rises_with_time_since_the_purchase() {
    use crate::{model::Family, score::learn::LearnedRisk};
    let s = fold(&purchases_on([0]));
    for family in [Family::BgNbd, Family::MbgNbd] {
        let mut cfg = CoreConfig::default();
        cfg.model.family = family;
        let prior = PopulationModel::prior(&cfg.model);
        let mut learned = prior.clone();
        learned.risk = Some(LearnedRisk {
            bias: -0.4,
            weights: crate::config::Weights {
                base: 1.3,
                ..crate::config::Weights::prior()
            },
            labelled: 5000,
            churned: 4000,
            auc: 0.8,
            brier: 0.1,
            iterations: 6,
            fitted_at: at(0),
        });
        for model in [&prior, &learned] {
            let ctx = Context::new(&cfg, model);
            let risks: Vec<f64> = (1..=120).map(|d| risk(&s, at(d), &ctx)).collect();
            for w in risks.windows(2) {
                assert!(w[1] > w[0], "{family:?}: {} then {}", w[0], w[1]);
            }
            assert!(risks[119] - risks[0] > 0.01, "{family:?}: {risks:?}");
        }
    }
}

#[test]
fn next_change_finds_the_exact_second_the_level_moves() {
    let s = fold(&purchases_on([0, 7, 14, 21, 28]));
    with_ctx(|ctx| {
        let now = at(29);
        let start = level(&s, now, ctx);
        let Some(t) = schedule::next_change(&s, now, now + 365 * D, ctx) else {
            panic!("silence must move the level")
        };
        assert_ne!(level(&s, t, ctx), start);
        assert_eq!(level(&s, t - 1, ctx), start);
        for probe in (now..t).step_by(3600) {
            assert_eq!(
                level(&s, probe, ctx),
                start,
                "changed before the scheduled time at {probe}"
            );
        }
    });
}

#[test]
fn next_change_sees_a_level_fall_at_a_breakpoint() {
    let s = fold(&[
        events::contact("a", "c", at(0), Channel::Phone),
        events::contact("b", "c", at(1), Channel::Email),
        events::contact("d", "c", at(2), Channel::Chat),
    ]);
    with_ctx(|ctx| {
        let now = at(2);
        assert!(level(&s, now, ctx) >= Level::High);
        assert_eq!(
            schedule::next_change(&s, now, now + 30 * D, ctx),
            Some(at(0) + 7 * D)
        );
    });
}

/// The schedule against brute force, on a generated population: no level
/// change is missed between now and the scheduled time (checked hourly and
/// at every day boundary), and the level does change exactly there.
#[test]
fn next_change_agrees_with_a_brute_force_scan_on_a_generated_population() {
    use crate::generate::{GenConfig, Generator};
    let cfg = CoreConfig::default();
    let model = PopulationModel::prior(&cfg.model);
    let ctx = Context::new(&cfg, &model);
    let evs: Vec<InteractionEvent> = Generator::new(GenConfig {
        customers: 150,
        span: crate::time::Span::days(60),
        ..GenConfig::default()
    })
    .collect();
    let mut states: std::collections::BTreeMap<String, CustomerState> = Default::default();
    let fold_cfg = FoldConfig::default();
    for e in &evs {
        if let Ok(v) = validate(e, None, &fold_cfg) {
            states
                .entry(e.customer_id.clone())
                .or_insert_with(|| CustomerState::new(v.at))
                .apply(&v, &fold_cfg);
        }
    }
    let now = evs
        .last()
        .and_then(|e| e.occurred_at)
        .map_or(0, |t| t.seconds);
    let mut changes = 0;
    for (id, s) in &states {
        let start = level(s, now, &ctx);
        let until = now + 90 * D;
        let next = schedule::next_change(s, now, until, &ctx);
        let end = next.unwrap_or(until);
        let mut t = now;
        while t < end {
            assert_eq!(
                level(s, t, &ctx),
                start,
                "{id}: changed at {t}, before the scheduled {next:?}"
            );
            t += 3600;
        }
        let mut d = crate::time::day_of(now) + 1;
        while start_of_day(d) < end {
            assert_eq!(
                level(s, start_of_day(d), &ctx),
                start,
                "{id}: changed at day {d}"
            );
            d += 1;
        }
        if let Some(t) = next {
            changes += 1;
            assert_ne!(
                level(s, t, &ctx),
                start,
                "{id}: no change at the scheduled {t}"
            );
        }
    }
    assert!(
        changes > 20,
        "the population has silence to schedule: {changes}"
    );
}

/// `[score.weights]` keys left out keep the prior's value; an unknown key is
/// refused with the known ones named, as before the seven terms were one
/// generic record.
#[test]
fn weights_left_out_of_the_configuration_are_the_prior() {
    let cfg: CoreConfig = toml::from_str("[score.weights]\nfriction = 7.5\n").unwrap();
    let prior = crate::config::Weights::prior();
    assert_eq!(
        cfg.score.weights,
        crate::config::Weights {
            friction: 7.5,
            ..prior
        }
    );
    assert_eq!(prior.into_array(), [1.0, 2.0, 1.5, 4.0, 4.0, 4.0, 2.5]);
    let empty: CoreConfig = toml::from_str("[score]\nbias = 0.5\n").unwrap();
    assert_eq!(empty.score.weights, prior);
    let e = toml::from_str::<CoreConfig>("[score.weights]\nfrictoin = 1.0\n").unwrap_err();
    assert!(
        e.to_string().contains("unknown field `frictoin`")
            && e.to_string().contains("`satisfaction_drop`"),
        "{e}"
    );
}

/// A score's strengths serialise with the names `/customers/{id}` has
/// always shown, in the same order.
#[test]
fn the_strengths_view_keeps_its_json_names_and_order() {
    let v = StrengthsView {
        signals: Signals::from_array([0.25, 0.5, 0.0, 1.0, 0.125, 0.0, 0.75]),
        p_dead: 0.375,
    };
    assert_eq!(
        serde_json::to_string(&v).unwrap(),
        r#"{"model_p_no_activity":0.25,"p_dead":0.375,"overdue":0.5,"rate_drop":0.0,"satisfaction_drop":1.0,"friction":0.125,"escalation":0.0,"renewal":0.75}"#
    );
}
