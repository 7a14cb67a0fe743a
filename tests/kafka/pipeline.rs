//! The service against a real broker (Apache Kafka on loopback, or `KAFKA_BOOTSTRAP`):
//! events in, outreach out, idle advance, dead letters, restore, sharing.

use crate::common;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use churnwatch::{
    codec::Format,
    config::CoreConfig,
    events,
    metrics::Metrics,
    pb::{Channel, InteractionEvent, OutreachRequested},
    pipeline::Pipeline,
};
use common::{metric, month::month, settings, unique, wait_for, Broker};
use prost::Message;

fn decode_outreach(r: &common::Record) -> OutreachRequested {
    OutreachRequested::decode(r.value.as_deref().unwrap_or_default())
        .unwrap_or_else(|e| panic!("outreach decodes: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_month_over_kafka_gives_the_replay_outreach() {
    let broker = Broker::start();
    let app = unique("cw-month");
    let s = settings(&broker, &app, 2);
    let evs = month();
    // Each partition keeps traffic until the end of the month, so stream time moves on in both.
    let busy_first = ["steady", "silent-regular", "renewal"];
    broker.produce(&s.kafka.input_topic, &evs, Format::Protobuf, |c| {
        i32::from(!busy_first.contains(&c))
    });
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let p = Pipeline::start(s.clone(), metrics.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let expected = common::replay_ids(&evs, CoreConfig::default());
    assert_eq!(expected.len(), 4);
    let got = broker.read_topic(
        &s.kafka.outreach_topic,
        expected.len(),
        Duration::from_secs(60),
        false,
    );
    let ids: BTreeSet<String> = got.iter().map(|r| decode_outreach(r).outreach_id).collect();
    assert_eq!(ids, expected, "the same outreach ids as replay");
    for r in &got {
        let o = decode_outreach(r);
        assert_eq!(
            r.key.as_deref(),
            Some(o.customer_id.as_str()),
            "keyed by customer"
        );
        assert_eq!(r.header("outreach_id"), Some(o.outreach_id.as_str()));
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    }
    // docs/contract.md: an `event` decision points at this customer's own
    // input record; a `timer` one points at none.
    let input = broker.read_topic(
        &s.kafka.input_topic,
        evs.len(),
        Duration::from_secs(30),
        false,
    );
    for r in &got {
        let o = decode_outreach(r);
        match r.header("churnwatch.trigger") {
            Some("event") => {
                assert_eq!(
                    r.header("churnwatch.trigger.topic"),
                    Some(s.kafka.input_topic.as_str())
                );
                let at = |k| r.header(k).and_then(|v| v.parse::<i64>().ok());
                let (p, off) = (
                    at("churnwatch.trigger.partition"),
                    at("churnwatch.trigger.offset"),
                );
                let cause = input
                    .iter()
                    .find(|i| Some(i64::from(i.partition)) == p && Some(i.offset) == off);
                assert_eq!(
                    cause.and_then(|c| c.key.as_deref()),
                    Some(o.customer_id.as_str())
                );
            }
            Some("timer") => {
                assert_eq!(r.header("churnwatch.trigger.offset"), None);
                assert_eq!(r.header("churnwatch.trigger.partition"), None);
            }
            other => panic!("churnwatch.trigger {other:?}"),
        }
    }
    let consumed = wait_for(Duration::from_secs(30), || {
        let n = metric(&metrics, "churnwatch_events_consumed_total");
        (n as usize == evs.len()).then_some(n)
    });
    assert_eq!(consumed, Some(evs.len() as f64));
    p.stop();
    p.join().unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_customer_gets_outreach_while_nothing_arrives() {
    let broker = Broker::start();
    let app = unique("cw-idle");
    let mut s = settings(&broker, &app, 1);
    s.processing.idle_advance = Some(churnwatch::time::Span::seconds(1));
    // A weekly buyer whose last purchase was 40 days ago (wall clock).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let evs: Vec<InteractionEvent> = (0..12)
        .map(|w| {
            events::purchase(
                &format!("q{w}"),
                "quiet",
                now - (40 + 7 * (11 - w)) * 86_400,
                30.0,
            )
        })
        .collect();
    broker.produce(&s.kafka.input_topic, &evs, Format::Protobuf, |_| 0);
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let p = Pipeline::start(s.clone(), metrics.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = broker.read_topic(&s.kafka.outreach_topic, 1, Duration::from_secs(60), false);
    assert_eq!(
        got.len(),
        1,
        "the silence timer fired with no event arriving"
    );
    let o = decode_outreach(&got[0]);
    assert_eq!(o.customer_id, "quiet");
    assert_eq!(o.reasons[0].code, "silence");
    assert_eq!(got[0].header("churnwatch.trigger"), Some("idle"));
    assert_eq!(got[0].header("churnwatch.trigger.offset"), None);
    let decided = o.decided_at.map_or(0, |t| t.seconds);
    let last_purchase = now - 40 * 86_400;
    assert!(
        decided > last_purchase && decided <= now,
        "decided between the last purchase and now"
    );
    p.stop();
    p.join().unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_dead_lettered_with_its_reason_and_good_input_goes_on() {
    let broker = Broker::start();
    let app = unique("cw-dlq");
    let s = settings(&broker, &app, 1);
    let t0 = 1_767_225_600; // 2026-01-01
    let good = |i: i64| events::purchase(&format!("g{i}"), "c-good", t0 + i * 86_400, 10.0);
    let mut bad: Vec<(&str, Vec<u8>)> = Vec::new();
    let enc = |e: &InteractionEvent| churnwatch::codec::encode(e, Format::Protobuf);
    let mut e = good(100);
    e.customer_id.clear();
    bad.push(("missing_customer_id", enc(&e)));
    let mut e = good(101);
    e.event_id.clear();
    bad.push(("missing_event_id", enc(&e)));
    let mut e = good(102);
    e.occurred_at = None;
    bad.push(("missing_timestamp", enc(&e)));
    let mut e = good(103);
    e.occurred_at = Some(events::ts(-86_400));
    bad.push(("timestamp_before_epoch", enc(&e)));
    let mut e = good(104);
    e.occurred_at = Some(events::ts(253_402_300_799));
    bad.push(("timestamp_out_of_range", enc(&e)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    bad.push((
        "timestamp_in_future",
        enc(&events::purchase("f", "c-bad", now + 30 * 86_400, 1.0)),
    ));
    bad.push(("nps_out_of_range", enc(&events::nps("n", "c-bad", t0, 11))));
    bad.push(("csat_out_of_range", enc(&events::csat("s", "c-bad", t0, 0))));
    bad.push((
        "negative_amount",
        enc(&events::purchase("a", "c-bad", t0, -5.0)),
    ));
    bad.push((
        "non_finite_amount",
        enc(&events::purchase("a2", "c-bad", t0, f64::NAN)),
    ));
    let mut e = good(105);
    e.kind = None;
    bad.push(("missing_kind", enc(&e)));
    bad.push((
        "oversize_string",
        enc(&events::purchase("o", &"x".repeat(300), t0, 1.0)),
    ));
    let mut e = good(106);
    e.channel = 77;
    bad.push(("unknown_enum", enc(&e)));
    bad.push((
        "undecodable_protobuf",
        vec![0xff, 0xfe, 0x00, 0x13, 0x37, 0x99, 0x42],
    ));
    bad.push(("empty", Vec::new()));

    let producer = broker.producer();
    let mut n_good = 0;
    for (i, (_, bytes)) in bad.iter().enumerate() {
        let g = enc(&good(i as i64));
        broker.send_raw(
            &producer,
            &s.kafka.input_topic,
            Some(b"c-good"),
            Some(&g),
            0,
        );
        n_good += 1;
        broker.send_raw(
            &producer,
            &s.kafka.input_topic,
            Some(b"c-bad"),
            Some(bytes),
            0,
        );
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));

    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let p = Pipeline::start(s.clone(), metrics.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dlq = broker.read_topic(
        &s.kafka.dead_letter_topic,
        bad.len(),
        Duration::from_secs(60),
        false,
    );
    let reasons: Vec<&str> = dlq
        .iter()
        .filter_map(|r| r.header("churnwatch.reason"))
        .collect();
    let expected: Vec<&str> = bad.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        reasons, expected,
        "every bad message, in order, with its reason"
    );
    for (r, (_, bytes)) in dlq.iter().zip(&bad) {
        assert_eq!(
            r.header("churnwatch.source.topic"),
            Some(s.kafka.input_topic.as_str())
        );
        assert_eq!(r.header("churnwatch.source.partition"), Some("0"));
        assert!(r
            .header("churnwatch.source.offset")
            .is_some_and(|o| o.parse::<i64>().is_ok()));
        assert!(r.header("churnwatch.error").is_some_and(|e| !e.is_empty()));
        assert_eq!(
            r.value.clone().unwrap_or_default(),
            *bytes,
            "the original bytes are kept"
        );
    }
    let consumed = wait_for(Duration::from_secs(30), || {
        let n = metric(&metrics, "churnwatch_events_consumed_total");
        (n as usize >= n_good).then_some(n)
    });
    assert_eq!(
        consumed,
        Some(n_good as f64),
        "every good event around them was processed"
    );
    assert_eq!(
        metric(&metrics, "churnwatch_events_rejected_total") as usize,
        bad.len()
    );
    assert!(!p.is_finished(), "the service keeps running");
    let c = p.customer("c-good").unwrap_or_default();
    assert_eq!(c.value.map(|v| v.purchases), Some(n_good as u32));
    p.stop();
    p.join().unwrap_or_else(|e| panic!("{e}"));
    let _ = Channel::Web;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_values_are_read_when_configured_or_when_the_content_type_says_so() {
    use rdkafka::{
        message::{Header, OwnedHeaders},
        producer::{BaseRecord, Producer},
    };
    let broker = Broker::start();
    let app = unique("cw-json");
    let s = settings(&broker, &app, 1);
    let t0 = 1_767_225_600;
    let producer = broker.producer();
    // Protobuf by default (no header) ...
    let pb =
        churnwatch::codec::encode(&events::purchase("p1", "mixed", t0, 10.0), Format::Protobuf);
    broker.send_raw(
        &producer,
        &s.kafka.input_topic,
        Some(b"mixed"),
        Some(&pb),
        0,
    );
    // ... proto3 JSON when the header says so.
    let json = churnwatch::codec::encode(
        &events::purchase("j1", "mixed", t0 + 86_400, 15.0),
        Format::Json,
    );
    let headers = OwnedHeaders::new().insert(Header {
        key: "content-type",
        value: Some("application/json"),
    });
    let r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&s.kafka.input_topic)
        .partition(0)
        .key(&b"mixed"[..])
        .payload(&json[..])
        .headers(headers);
    producer
        .send(r)
        .map_err(|e| e.0)
        .unwrap_or_else(|e| panic!("{e}"));
    producer
        .flush(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let p = Pipeline::start(s.clone(), metrics.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let both = wait_for(Duration::from_secs(30), || {
        p.customer("mixed")
            .and_then(|c| c.value)
            .filter(|v| v.purchases == 2)
            .map(|v| v.amount)
    });
    assert_eq!(
        both,
        Some(25.0),
        "one protobuf and one JSON purchase folded"
    );
    assert_eq!(metric(&metrics, "churnwatch_events_rejected_total"), 0.0);
    p.stop();
    p.join().unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_with_another_partition_count_is_refused_with_a_clear_message() {
    let broker = Broker::start();
    let app = unique("cw-copart");
    let s = settings(&broker, &app, 4);
    broker.create_topic(&s.changelog_topic(), 2, true);
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    match Pipeline::start(s.clone(), metrics).await {
        Err(churnwatch::pipeline::PipelineError::Topology(msg)) => {
            assert!(
                msg.contains("2 partitions")
                    && msg.contains("has 4")
                    && msg.contains("co-partitioned"),
                "{msg}"
            );
        }
        Err(e) => panic!("expected a topology error, got {e}"),
        Ok(p) => {
            p.stop();
            panic!("must refuse to run");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_keeps_the_original_headers() {
    use rdkafka::{
        message::{Header, OwnedHeaders},
        producer::{BaseRecord, Producer},
    };
    let broker = Broker::start();
    let s = settings(&broker, &unique("cw-dlqh"), 1);
    let producer = broker.producer();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
        .insert(Header {
            key: "x-trace-id",
            value: Some("abc-123"),
        });
    let r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&s.kafka.input_topic)
        .partition(0)
        .key(&b"k"[..])
        .payload(&b"{not json"[..])
        .headers(headers);
    producer
        .send(r)
        .map_err(|e| e.0)
        .unwrap_or_else(|e| panic!("{e}"));
    producer
        .flush(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    let p = Pipeline::start(
        s.clone(),
        Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}"))),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let dlq = broker.read_topic(
        &s.kafka.dead_letter_topic,
        1,
        Duration::from_secs(30),
        false,
    );
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert_eq!(
        d.header("churnwatch.reason"),
        Some("undecodable_json"),
        "decoded as JSON, as the header said"
    );
    assert_eq!(d.header("content-type"), Some("application/json"));
    assert_eq!(d.header("x-trace-id"), Some("abc-123"));
    assert_eq!(d.key.as_deref(), Some("k"));
    p.stop();
    p.join().unwrap_or_else(|e| panic!("{e}"));
}
