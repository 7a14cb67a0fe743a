//! Poison input against the service binary (`churnwatch run` as a child
//! process): a corpus of bad messages, each kind with the dead-letter reason
//! it must get, interleaved with good events. Every bad one lands in the
//! dead-letter topic with its reason and its original bytes, every good one
//! is folded, and the process never exits.

use crate::common;

use churnwatch::{
    codec::{self, Format},
    events,
    pb::{InteractionEvent, OutreachRequested},
    time::Span,
};
use common::{http_get, scraped, settings, unique, Broker, Service};
use prost::Message as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{BaseProducer, BaseRecord, Producer},
    ClientConfig,
};
use std::time::{Duration, Instant};

const T0: i64 = 1_767_225_600; // 2026-01-01

/// Key and value bytes a dead letter keeps (the service's `DEAD_LETTER_MAX_BYTES`).
const DEAD_LETTER_MAX_BYTES: usize = 900 * 1024;

/// One bad message: what it is, the reason it must be dead-lettered with,
/// its bytes, and whether it is sent as JSON (`content-type` header).
struct Poison {
    kind: &'static str,
    reason: &'static str,
    bytes: Vec<u8>,
    json: bool,
}

fn pb(e: &InteractionEvent) -> Vec<u8> {
    codec::encode(e, Format::Protobuf)
}

fn good(i: i64) -> InteractionEvent {
    events::purchase(&format!("g{i}"), "c-good", T0 + i * 86_400, 10.0)
}

/// A well-formed event of a customer who only ever sends bad ones.
fn base(i: i64) -> InteractionEvent {
    events::purchase(&format!("b{i}"), "c-bad", T0 + i * 86_400, 10.0)
}

/// `over_limit`: include a message over the 1 MiB event limit (Kafka
/// refuses it at its default 1 MB record limit: the test raises the input
/// topic's `max.message.bytes`).
fn corpus(over_limit: bool) -> Vec<Poison> {
    let mut rng = ChaCha8Rng::seed_from_u64(90_151);
    let mut v = Vec::new();
    let mut add = |kind, reason, bytes: Vec<u8>, json| {
        v.push(Poison {
            kind,
            reason,
            bytes,
            json,
        })
    };

    // Framing and encoding.
    let whole = pb(&base(1));
    add(
        "truncated protobuf",
        "undecodable_protobuf",
        whole[..whole.len() - 3].to_vec(),
        false,
    );
    let other = OutreachRequested {
        outreach_id: "o-1".into(),
        customer_id: "c-bad".into(),
        ..Default::default()
    };
    add(
        "wrong message type (an OutreachRequested)",
        "missing_timestamp",
        other.encode_to_vec(),
        false,
    );
    add(
        "wrong JSON type (customerId is a number)",
        "undecodable_json",
        br#"{"eventId":"x","customerId":42,"occurredAt":"2026-01-02T00:00:00Z","session":{}}"#
            .to_vec(),
        true,
    );
    let random = loop {
        let n = rng.gen_range(16..256);
        let b: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
        if codec::decode(&b, Format::Protobuf).is_err() {
            break b;
        }
    };
    add("random bytes", "undecodable_protobuf", random, false);
    add("empty value", "empty", Vec::new(), false);
    let mut e = base(2);
    if let Some(churnwatch::pb::interaction_event::Kind::Purchase(p)) = e.kind.as_mut() {
        p.order_id = "o".repeat(900_000);
    }
    add("huge (900 KB order id)", "oversize_string", pb(&e), false);
    if over_limit {
        add(
            "too large (1.1 MB, over the 1 MiB event limit)",
            "too_large",
            vec![b' '; 1_100_000],
            true,
        );
    }
    add(
        "deep JSON nesting (10,000 levels)",
        "json_too_deep",
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        true,
    );
    // Groups nested 1,000 deep in an unknown field: prost's recursion limit.
    let mut nested = Vec::new();
    for _ in 0..1000 {
        nested.extend_from_slice(&[0xa3, 0x06]); // field 100, start group
    }
    for _ in 0..1000 {
        nested.extend_from_slice(&[0xa4, 0x06]); // field 100, end group
    }
    add(
        "deep protobuf nesting (1,000 groups)",
        "undecodable_protobuf",
        nested,
        false,
    );
    add(
        "invalid UTF-8 in JSON",
        "invalid_utf8",
        b"{\"eventId\":\"\xff\xfe\",\"customerId\":\"c-bad\"}".to_vec(),
        true,
    );
    let mut e = base(3);
    e.customer_id = "c-zzzz".into();
    let mut bytes = pb(&e);
    let at = bytes
        .windows(6)
        .position(|w| w == b"c-zzzz")
        .unwrap_or_else(|| panic!("customer id in the encoding"));
    bytes[at + 2] = 0xff;
    add(
        "invalid UTF-8 in a protobuf string",
        "undecodable_protobuf",
        bytes,
        false,
    );
    add(
        "JSON with an unknown field",
        "undecodable_json",
        br#"{"eventId":"x","customerId":"c-bad","occurredAt":"2026-01-02T00:00:00Z","session":{},"surprise":1}"#
            .to_vec(),
        true,
    );
    add(
        "JSON that is not an object",
        "undecodable_json",
        b"[1, 2, 3]".to_vec(),
        true,
    );

    // Well-formed, but invalid.
    let mut e = base(4);
    e.channel = 77;
    add("unknown channel enum value", "unknown_enum", pb(&e), false);
    let mut e = events::ticket_opened("b5", "c-bad", T0, churnwatch::pb::Channel::Web, "t-1");
    if let Some(churnwatch::pb::interaction_event::Kind::TicketOpened(t)) = e.kind.as_mut() {
        t.severity = 99;
    }
    add("unknown ticket severity", "unknown_enum", pb(&e), false);
    add(
        "NaN amount",
        "non_finite_amount",
        pb(&events::purchase("b6", "c-bad", T0, f64::NAN)),
        false,
    );
    add(
        "NaN amount in JSON",
        "non_finite_amount",
        br#"{"eventId":"b7","customerId":"c-bad","occurredAt":"2026-01-02T00:00:00Z","purchase":{"amount":"NaN"}}"#
            .to_vec(),
        true,
    );
    add(
        "infinite amount",
        "non_finite_amount",
        pb(&events::purchase("b8", "c-bad", T0, f64::INFINITY)),
        false,
    );
    add(
        "negative amount",
        "negative_amount",
        pb(&events::purchase("b9", "c-bad", T0, -5.0)),
        false,
    );
    let mut e = base(10);
    e.occurred_at = Some(events::ts(-62_135_596_800)); // 0001-01-01
    add(
        "timestamp in year 1",
        "timestamp_before_epoch",
        pb(&e),
        false,
    );
    let mut e = base(11);
    e.occurred_at = Some(events::ts(253_402_300_799)); // 9999-12-31T23:59:59
    add(
        "timestamp in year 9999",
        "timestamp_out_of_range",
        pb(&e),
        false,
    );
    add(
        "timestamp in year 9999 in JSON",
        "timestamp_out_of_range",
        br#"{"eventId":"b12","customerId":"c-bad","occurredAt":"9999-12-31T23:59:59Z","session":{}}"#
            .to_vec(),
        true,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    add(
        "timestamp a month ahead of the clock",
        "timestamp_in_future",
        pb(&events::purchase("b13", "c-bad", now + 30 * 86_400, 1.0)),
        false,
    );
    let mut e = base(14);
    if let Some(t) = e.occurred_at.as_mut() {
        t.nanos = -1;
    }
    add("negative nanos", "invalid_timestamp_nanos", pb(&e), false);
    let mut e = base(15);
    e.occurred_at = None;
    add("missing timestamp", "missing_timestamp", pb(&e), false);
    let mut e = base(16);
    e.customer_id.clear();
    add("missing customer id", "missing_customer_id", pb(&e), false);
    let mut e = base(17);
    e.event_id = "   ".into();
    add("blank event id", "missing_event_id", pb(&e), false);
    let mut e = base(18);
    e.customer_id = "c".repeat(10_000);
    add(
        "oversize customer id (10 KB)",
        "oversize_string",
        pb(&e),
        false,
    );
    let mut e = base(19);
    e.event_id = "e".repeat(300);
    add("oversize event id", "oversize_string", pb(&e), false);
    let mut e = base(20);
    e.kind = None;
    add("missing kind", "missing_kind", pb(&e), false);
    add(
        "NPS out of range",
        "nps_out_of_range",
        pb(&events::nps("b21", "c-bad", T0, 11)),
        false,
    );
    // Issue 20's classes: reserved keys, huge amounts, misleading times,
    // clock drift.
    let mut e = base(22);
    e.customer_id = "\u{0}churnwatch/model".into();
    add(
        "customer id equal to the model's changelog key",
        "control_character",
        pb(&e),
        false,
    );
    let mut e = base(23);
    e.customer_id = "c-\u{1b}[31mred".into();
    add(
        "customer id with a terminal escape",
        "control_character",
        pb(&e),
        false,
    );
    add(
        "amount 1.797e308",
        "amount_too_large",
        pb(&events::purchase("b24", "c-bad", T0, 1.797e308)),
        false,
    );
    add(
        "renewal in 1969",
        "timestamp_before_epoch",
        pb(&events::subscription(
            "b25",
            "c-bad",
            T0,
            "pro",
            -86_400 * 200,
            false,
        )),
        false,
    );
    let mut e = base(26);
    if let Some(t) = e.occurred_at.as_mut() {
        t.nanos = 1_000_000_000;
    }
    add(
        "leap second (nanos 10^9)",
        "invalid_timestamp_nanos",
        pb(&e),
        false,
    );
    add(
        "clock drift: two hours ahead of the wall clock",
        "timestamp_in_future",
        pb(&events::purchase("b27", "c-bad", now + 2 * 3600, 1.0)),
        false,
    );
    v
}

fn send(p: &BaseProducer, topic: &str, key: &[u8], value: &[u8], json: bool) {
    let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(0).key(key);
    if !value.is_empty() {
        r = r.payload(value);
    }
    if json {
        r = r.headers(OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some("application/json"),
        }));
    }
    while let Err((e, back)) = p.send(r) {
        assert!(
            matches!(
                e,
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull
                )
            ),
            "producing {} bytes: {e}",
            value.len()
        );
        r = back;
        p.poll(Duration::from_millis(50));
    }
    p.poll(Duration::ZERO);
}

#[test]
fn every_poison_message_is_dead_lettered_with_its_reason_and_the_service_keeps_running() {
    let broker = Broker::start();
    let app = unique("cw-poison");
    let mut s = settings(&broker, &app, 1);
    s.processing.idle_advance = Some(Span::seconds(0));
    // Kafka refuses records over 1 MB by default: the input topic takes
    // 2 MB here, so the 1.1 MB message reaches churnwatch's own limit.
    broker.alter_topic(&s.kafka.input_topic, &[("max.message.bytes", "2000000")]);
    let bad = corpus(true);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut svc = Service::spawn(&s, dir.path(), "poison");

    // A producer that may send the 1.1 MB message (the broker's limit permitting).
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("message.max.bytes", "2000000")
        .set("linger.ms", "5")
        .create()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let input = &s.kafka.input_topic;
    for (i, p) in bad.iter().enumerate() {
        send(&producer, input, b"c-good", &pb(&good(i as i64)), false);
        send(&producer, input, b"c-bad", &p.bytes, p.json);
    }
    send(
        &producer,
        input,
        b"c-good",
        &pb(&good(bad.len() as i64)),
        false,
    );
    producer
        .flush(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the broker refused part of the corpus: {e}"));
    let n_good = bad.len() + 1;

    // Everything handled, and the process still there.
    let total = (n_good + bad.len()) as u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = svc.exited() {
            panic!("the service exited ({status}) on poison input");
        }
        if svc.handled().unwrap_or(0) >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service handled {:?} of {total} messages in 90 s",
            svc.handled()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let dlq = broker.read_topic(
        &s.kafka.dead_letter_topic,
        bad.len(),
        Duration::from_secs(60),
        false,
    );
    let got: Vec<&str> = dlq
        .iter()
        .map(|r| r.header("churnwatch.reason").unwrap_or("(none)"))
        .collect();
    let wrong: Vec<String> = bad
        .iter()
        .zip(got.iter().chain(std::iter::repeat(&"(missing)")))
        .filter(|(p, g)| p.reason != **g)
        .map(|(p, g)| format!("{}: expected {}, got {g}", p.kind, p.reason))
        .collect();
    assert!(
        wrong.is_empty() && dlq.len() == bad.len(),
        "{} dead letters for {} bad messages; wrong reasons: {wrong:#?}",
        dlq.len(),
        bad.len()
    );
    for (r, p) in dlq.iter().zip(&bad) {
        assert_eq!(r.key.as_deref(), Some("c-bad"), "{}", p.kind);
        assert!(
            r.header("churnwatch.error").is_some_and(|e| !e.is_empty()),
            "{}: the error in words",
            p.kind
        );
        // The original bytes, cut to the dead-letter limit (key included).
        let kept = p.bytes.len().min(DEAD_LETTER_MAX_BYTES - b"c-bad".len());
        assert!(
            r.value.clone().unwrap_or_default() == p.bytes[..kept],
            "{}: the original bytes are kept ({} bytes dead-lettered of {})",
            p.kind,
            r.value.as_ref().map_or(0, Vec::len),
            p.bytes.len()
        );
        assert_eq!(
            r.header("churnwatch.truncated").is_some(),
            kept < p.bytes.len(),
            "{}: a cut is said so",
            p.kind
        );
        if p.json {
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
    }

    let metrics = svc.metrics_text().unwrap_or_default();
    assert_eq!(
        scraped(&metrics, "churnwatch_events_consumed_total") as usize,
        n_good,
        "every good event was folded"
    );
    assert_eq!(
        scraped(&metrics, "churnwatch_events_rejected_total") as usize,
        bad.len()
    );
    let customer = http_get(svc.port, "/customers/c-good", None).unwrap_or_default();
    assert!(
        customer.1.contains(&format!("\"purchases\":{n_good}")),
        "c-good has all {n_good} purchases: {customer:?}"
    );
    assert_eq!(
        http_get(svc.port, "/customers/c-bad", None).map(|r| r.0),
        Some(404),
        "no state for a customer who only sent poison"
    );
    assert!(svc.exited().is_none(), "the service is still running");
    assert_eq!(http_get(svc.port, "/healthz", None).map(|r| r.0), Some(200));
    let kinds: Vec<String> = bad
        .iter()
        .map(|p| format!("{} -> {}", p.kind, p.reason))
        .collect();
    let reasons: std::collections::BTreeSet<&str> = bad.iter().map(|p| p.reason).collect();
    eprintln!(
        "poison: {} kinds, {} distinct reasons, each dead-lettered with its reason and bytes; {n_good} good events folded; the service (pid {}) kept running:\n  {}",
        bad.len(),
        reasons.len(),
        svc.pid(),
        kinds.join("\n  ")
    );
    let status = svc.terminate(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "SIGTERM: exit 0");
}
