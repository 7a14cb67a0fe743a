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
