//! Bad input never stops the pipeline: arbitrary bytes and arbitrary (often
//! absurd) events go through decode, validation, the fold, scoring and the
//! outreach policy without a panic, and whatever is folded survives a
//! snapshot round trip.

use std::sync::Arc;

use churnwatch::{
    codec::{self, Format},
    config::CoreConfig,
    pb::{
        interaction_event::Kind, survey::Score, Complaint, Consent, Contact, Erasure,
        InteractionEvent, OutreachOutcome, Purchase, Session, Subscription, Survey, TicketOpened,
        TicketUpdated,
    },
    population::PopulationModel,
    processor::Processor,
    state::CustomerState,
};
use proptest::prelude::*;

fn processor() -> Processor {
    let cfg = Arc::new(CoreConfig::default());
    let model = Arc::new(PopulationModel::prior(&cfg.model));
    Processor::new(cfg, model)
}

fn ts(seconds: i64, nanos: i32) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp { seconds, nanos }
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.0),
        0.0..1e6f64,
    ]
}

fn any_time() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(-62_135_596_800i64),
        Just(253_402_300_799i64),
        1_600_000_000i64..1_800_000_000,
        any::<i64>(),
    ]
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9-]{1,12}",
        ".{0,40}",
        "x{250,300}"
    ]
}

fn any_kind() -> impl Strategy<Value = Option<Kind>> {
    prop_oneof![
        Just(None),
        (any_string(), any_f64(), any_string()).prop_map(|(order_id, amount, currency)| Some(
            Kind::Purchase(Purchase {
                order_id,
                amount,
                currency
            })
        )),
        any::<Option<u32>>().prop_map(|d| Some(Kind::Session(Session {
            duration_seconds: d
        }))),
        (any_string(), any::<i32>()).prop_map(|(t, s)| Some(Kind::TicketOpened(TicketOpened {
            ticket_id: t,
            severity: s
        }))),
        (any_string(), -1i32..5, any::<Option<u32>>()).prop_map(|(t, s, r)| {
            Some(Kind::TicketUpdated(TicketUpdated {
                ticket_id: t,
                status: s,
                response_seconds: r,
            }))
        }),
        any_string().prop_map(|r| Some(Kind::Contact(Contact { reason: r }))),
        prop_oneof![
            any::<i32>().prop_map(Score::Nps),
            any::<i32>().prop_map(Score::Csat),
            (-2i32..12i32).prop_map(Score::Nps)
        ]
        .prop_map(|s| Some(Kind::Survey(Survey { score: Some(s) }))),
        any_string().prop_map(|r| Some(Kind::Complaint(Complaint { reason: r }))),
        (any_string(), any_time(), any::<bool>()).prop_map(|(plan, r, c)| {
            Some(Kind::Subscription(Subscription {
                plan,
                renews_at: Some(ts(r, 0)),
                cancelled: c,
            }))
        }),
        (any::<bool>(), -1i32..10).prop_map(|(a, c)| Some(Kind::Consent(Consent {
            contact_allowed: a,
            channel: c
        }))),
        (any_string(), -1i32..8).prop_map(|(o, c)| Some(Kind::OutreachOutcome(OutreachOutcome {
            outreach_id: o,
            outcome: c
        }))),
        Just(Some(Kind::Erasure(Erasure {}))),
    ]
}

fn any_event() -> impl Strategy<Value = InteractionEvent> {
    (
        any_string(),
        prop_oneof![Just("c1".to_owned()), Just("c2".to_owned()), any_string()],
        proptest::option::of((any_time(), prop_oneof![Just(0i32), any::<i32>()])),
        -1i32..10,
        any_kind(),
    )
        .prop_map(
            |(event_id, customer_id, t, channel, kind)| InteractionEvent {
                event_id,
                customer_id,
                occurred_at: t.map(|(s, n)| ts(s, n)),
                channel,
                kind,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut p = processor();
        let mut out = Vec::new();
        for format in [Format::Protobuf, Format::Json] {
            if let Ok(ev) = codec::decode(&bytes, format) {
                let _ = p.process(&ev, Some(1_767_225_600), &mut out);
            }
        }
    }

    #[test]
    fn arbitrary_events_never_panic_and_states_round_trip(evs in prop::collection::vec(any_event(), 1..40)) {
        let mut p = processor();
        let mut out = Vec::new();
        for e in &evs {
            let _ = p.process(e, None, &mut out);
            if let Some(st) = p.stream_time() {
                p.advance_to(st.saturating_add(86_400 * 30), &mut out);
            }
        }
        for (id, s) in p.sorted() {
            let bytes = s.encode_snapshot(id);
            let back = CustomerState::decode_snapshot(&bytes);
            prop_assert!(back.is_ok());
            if let Ok((back_id, back)) = back {
                prop_assert_eq!(back_id, id);
                prop_assert_eq!(&back, s);
            }
        }
    }

    #[test]
    fn arbitrary_json_text_never_panics(text in ".{0,300}") {
        let _ = codec::decode(text.as_bytes(), Format::Json);
    }
}

#[test]
fn deep_json_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!(
        "{{\"survey\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let r = codec::decode(deep.as_bytes(), Format::Json);
    assert_eq!(r.err().map(|e| e.reason()), Some("json_too_deep"));
}

/// Every float in `v` (a struct as serde sees it), with its path, that is
/// NaN or infinite; proto3 JSON's spellings of them ("NaN", "Infinity")
/// count too.
fn non_finite(v: &serde_value::Value, path: &str, found: &mut Vec<String>) {
    use serde_value::Value;
    match v {
        Value::F64(x) if !x.is_finite() => found.push(format!("{path} = {x}")),
        Value::F32(x) if !x.is_finite() => found.push(format!("{path} = {x}")),
        // Also inside text: an evidence line reading "P(alive) NaN".
        Value::String(s)
            if s.split(|c: char| !c.is_alphanumeric())
                .any(|w| matches!(w, "NaN" | "inf" | "Infinity")) =>
        {
            found.push(format!("{path} = {s:?}"))
        }
        Value::Option(Some(x)) | Value::Newtype(x) => non_finite(x, path, found),
        Value::Seq(xs) => {
            for (i, x) in xs.iter().enumerate() {
                non_finite(x, &format!("{path}[{i}]"), found);
            }
        }
        Value::Map(m) => {
            for (k, x) in m {
                let k = match k {
                    Value::String(s) => s.clone(),
                    k => format!("{k:?}"),
                };
                non_finite(x, &format!("{path}.{k}"), found);
            }
        }
        _ => {}
    }
}

fn assert_finite(what: &str, v: &impl serde::Serialize) -> Result<(), TestCaseError> {
    let value = serde_value::to_value(v).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut found = Vec::new();
    non_finite(&value, what, &mut found);
    prop_assert!(found.is_empty(), "non-finite output: {found:?}");
    Ok(())
}

/// Events that pass validation more often than `any_event`'s, at the edges
/// of what validation allows: the largest amount, many purchases, any
/// survey score, renewals near the ends of the accepted range.
fn edge_event() -> impl Strategy<Value = InteractionEvent> {
    let amount = prop_oneof![
        Just(churnwatch::validate::MAX_AMOUNT),
        Just(0.0),
        Just(f64::MIN_POSITIVE),
        0.0..churnwatch::validate::MAX_AMOUNT,
    ];
    let kind = prop_oneof![
        4 => amount.prop_map(|amount| Some(Kind::Purchase(Purchase {
            order_id: "o".into(),
            amount,
            currency: "EUR".into(),
        }))),
        2 => any::<Option<u32>>().prop_map(|d| Some(Kind::Session(Session { duration_seconds: d }))),
        1 => (0i32..=10).prop_map(|s| Some(Kind::Survey(Survey { score: Some(Score::Nps(s)) }))),
        1 => (1i32..=5).prop_map(|s| Some(Kind::Survey(Survey { score: Some(Score::Csat(s)) }))),
        1 => (0i32..3).prop_map(|t| Some(Kind::TicketOpened(TicketOpened { ticket_id: format!("t{t}"), severity: t }))),
        1 => (0i32..3, 1i32..4, any::<Option<u32>>()).prop_map(|(t, s, r)| Some(Kind::TicketUpdated(TicketUpdated {
            ticket_id: format!("t{t}"),
            status: s,
            response_seconds: r,
        }))),
        1 => Just(Some(Kind::Contact(Contact { reason: "billing".into() }))),
        1 => Just(Some(Kind::Complaint(Complaint { reason: "slow".into() }))),
        1 => (prop_oneof![Just(0i64), Just(4_102_444_799i64), 1_700_000_000i64..1_900_000_000], any::<bool>())
            .prop_map(|(r, c)| Some(Kind::Subscription(Subscription { plan: "pro".into(), renews_at: Some(ts(r, 0)), cancelled: c }))),
        1 => (any::<bool>(), 0i32..6).prop_map(|(a, c)| Some(Kind::Consent(Consent { contact_allowed: a, channel: c }))),
    ];
    (0u8..3, 0i64..3 * 365 * 86_400, 1i32..6, kind).prop_map(|(c, dt, channel, kind)| {
        InteractionEvent {
            event_id: format!("e{c}-{dt}"),
            customer_id: format!("c{c}"),
            occurred_at: Some(ts(1_700_000_000 + dt, 0)),
            channel,
            kind,
        }
    })
}

/// Any model a fit or a restore could hand the scorer: parameters across
/// eight orders of magnitude, learned coefficients of either sign and up to
/// 50 in size.
fn any_model() -> impl Strategy<Value = PopulationModel> {
    let param = (-4.0f64..4.0).prop_map(|e| 10f64.powf(e));
    (
        any::<bool>(),
        (param.clone(), param.clone(), param.clone(), param),
        proptest::option::of(proptest::array::uniform8(-50.0f64..50.0)),
    )
        .prop_map(|(mbg, (r, alpha, a, b), coef)| {
            let cfg = CoreConfig::default();
            let mut m = PopulationModel::prior(&cfg.model);
            m.family = if mbg {
                churnwatch::model::Family::MbgNbd
            } else {
                churnwatch::model::Family::BgNbd
            };
            m.params = churnwatch::model::Params { r, alpha, a, b };
            m.risk = coef.map(|c| {
                let (bias, weights) = churnwatch::score::learn::from_vector(&c);
                churnwatch::score::learn::LearnedRisk {
                    bias,
                    weights,
                    labelled: 1000,
                    churned: 500,
                    auc: 0.7,
                    brier: 0.2,
                    iterations: 5,
                    fitted_at: 1_700_000_000,
                }
            });
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 20: no non-finite number reaches an output. Whatever the events
    /// (valid at the edges, or absurd and refused) and whatever the model,
    /// every outreach, every changelog snapshot and every `/customers` view
    /// holds finite numbers only, at the events' times and years later.
    #[test]
    fn no_non_finite_number_reaches_an_output(
        evs in prop::collection::vec(prop_oneof![4 => edge_event(), 1 => any_event()], 1..80),
        model in any_model(),
    ) {
        let cfg = Arc::new(CoreConfig::default());
        let model = Arc::new(model);
        let mut p = Processor::new(cfg.clone(), model.clone());
        let mut evs = evs;
        evs.sort_by_key(|e| e.occurred_at.as_ref().map_or(0, |t| t.seconds));
        let mut out = Vec::new();
        for e in &evs {
            let _ = p.process(e, None, &mut out);
            if let Some(st) = p.stream_time() {
                p.advance_to(st, &mut out);
            }
        }
        // Every customer as the changelog and `/customers` would show them:
        // now, and scored 20 years on.
        let mut customers = 0;
        let mut check_states = |p: &Processor| -> Result<(), TestCaseError> {
            let later = p.stream_time().unwrap_or(0).saturating_add(20 * 365 * 86_400);
            for (id, s) in p.sorted() {
                customers += 1;
                let snap = s.to_snapshot(id);
                assert_finite("snapshot", &snap)?;
                for now in [s.last_event_at, later] {
                    let view = churnwatch::http::customer_view(id, &snap, &cfg, &model, now);
                    prop_assert!(view.is_some());
                    assert_finite("customer view", &view)?;
                }
            }
            Ok(())
        };
        check_states(&p)?;
        // Then silence: every timer fires, for years.
        if let Some(st) = p.stream_time() {
            for day in 1..=5 * 365 {
                p.advance_to(st.saturating_add(day * 86_400), &mut out);
            }
        }
        check_states(&p)?;
        let mut sent = 0;
        for e in &out {
            if let churnwatch::processor::Effect::Outreach(o) = e {
                assert_finite("outreach", &**o)?;
                sent += 1;
            }
        }
        // `FINITE_TRACE=1 cargo test --test robustness finite -- --nocapture`
        // shows how much each case checked.
        if std::env::var_os("FINITE_TRACE").is_some() {
            eprintln!("checked: {sent} outreach, {customers} customer states");
        }
    }
}

#[test]
fn the_finiteness_check_sees_nan_in_numbers_and_in_text() {
    #[derive(serde::Serialize)]
    struct Out {
        risk: f64,
        reasons: Vec<String>,
        value: Option<f32>,
    }
    let check = |o: &Out| {
        let mut found = Vec::new();
        non_finite(
            &serde_value::to_value(o).unwrap_or(serde_value::Value::Unit),
            "o",
            &mut found,
        );
        found
    };
    let ok = Out {
        risk: 0.5,
        reasons: vec!["P(alive) 0.20 (Info desk)".into()],
        value: Some(1.0),
    };
    assert!(check(&ok).is_empty());
    assert_eq!(
        check(&Out {
            risk: f64::NAN,
            ..ok
        })
        .len(),
        1
    );
    let ok = Out {
        risk: 0.5,
        reasons: vec![],
        value: Some(f32::INFINITY),
    };
    assert_eq!(check(&ok), vec!["o.value = inf".to_owned()]);
    let ok = Out {
        risk: 0.5,
        reasons: vec!["P(alive) NaN".into()],
        value: None,
    };
    assert_eq!(check(&ok).len(), 1);
}
