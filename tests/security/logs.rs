//! Logs at info and above carry no customer data.

use super::support::*;
use crate::common::{settings_for_topic, unique, wait_for, Broker};
use std::time::Duration;

use churnwatch::{
    codec::{self, Format},
    events,
    generate::{GenConfig, Generator},
    pb::InteractionEvent,
    time::Span,
};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{BaseRecord, Producer},
};

/// Runs the service over a realistic population plus invalid, undecodable,
/// late, duplicate and erasure events, at `level` in `format`, and returns
/// its log and every customer id it saw.
fn run_and_log(
    broker: &Broker,
    input: &str,
    population: &[InteractionEvent],
    level: &str,
    format: &str,
) -> String {
    let app = unique("cw-logs");
    let mut s = settings_for_topic(broker, &app, input);
    s.log.level = level.into();
    s.log.format = if format == "json" {
        churnwatch::settings::LogFormat::Json
    } else {
        churnwatch::settings::LogFormat::Text
    };
    // Refits (logged at info) on this small population.
    s.model.min_customers = 20;
    let mut svc = Service::start(s, &[]);
    svc.wait_ready();
    let total = population.len() as u64 + EXTRA_MESSAGES;
    svc.wait_handled(total);
    // At least one refit (logged at info), then stop.
    let refit = wait_for(Duration::from_secs(30), || {
        (svc.metric("churnwatch_model_refits_total") >= 1.0).then_some(())
    });
    assert!(refit.is_some(), "no refit:\n{}", svc.stderr());
    // Every path was taken: dead letters, late, duplicate, forgotten, outreach.
    let text = svc.get("/metrics", None).unwrap_or_default().1;
    assert_eq!(
        crate::common::scraped(&text, "churnwatch_events_rejected_total"),
        6.0
    );
    for reason in ["late", "duplicate", "forgotten"] {
        assert!(
            text.contains(&format!(
                "churnwatch_events_dropped_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {text}"
        );
    }
    assert!(crate::common::scraped(&text, "churnwatch_outreach_emitted_total") >= 1.0);
    // The service saw the customers: there was something to leak.
    let seen = svc.get("/customers/cust-000001", None).map(|r| r.0);
    assert_eq!(seen, Some(200));
    let (code, log) = svc.stop();
    assert_eq!(code, Some(0), "{log}");
    log
}

/// Messages `bad_and_odd_input` adds to the population.
const EXTRA_MESSAGES: u64 = 11;

/// Input that takes every logging path a customer's message can: invalid
/// events (dead-lettered), undecodable bytes and JSON, a late event, a
/// duplicate, an erasure and an event for the erased customer.
fn bad_and_odd_input(broker: &Broker, input: &str, last: i64) {
    let p = broker.producer();
    let enc = |e: &InteractionEvent| codec::encode(e, Format::Protobuf);
    let send = |key: &str, value: Vec<u8>, json: bool| {
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some(if json {
                "application/json"
            } else {
                "application/x-protobuf"
            }),
        });
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(input)
            .partition(0)
            .key(key.as_bytes())
            .payload(value.as_slice())
            .headers(headers);
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    p.poll(Duration::from_millis(50));
                }
            }
        }
    };
    // Invalid: dead-lettered with a reason.
    send(
        "pii-bad-nps",
        enc(&events::nps("pii-bad-nps-e1", "pii-bad-nps", last, 11)),
        false,
    );
    send(
        "pii-bad-amount",
        enc(&events::purchase(
            "pii-bad-amount-e1",
            "pii-bad-amount",
            last,
            -5.0,
        )),
        false,
    );
    send(
        "pii-bad-future",
        enc(&events::purchase(
            "pii-bad-future-e1",
            "pii-bad-future",
            4_000_000_000,
            1.0,
        )),
        false,
    );
    send(
        "pii-bad-long",
        enc(&events::purchase(
            "e",
            &format!("pii-bad-long-{}", "x".repeat(300)),
            last,
            1.0,
        )),
        false,
    );
    // Undecodable: protobuf garbage, and JSON whose error quotes the input.
    send("pii-raw-key", b"pii-raw-payload \xff\xfe".to_vec(), false);
    send(
        "pii-json-key",
        br#"{"eventId":"pii-json-e1","customerId":"pii-json-customer","occurredAt":"pii-not-a-time"}"#.to_vec(),
        true,
    );
    // Late (beyond the allowed lateness) and a redelivered duplicate.
    send(
        "cust-000002",
        enc(&events::purchase(
            "pii-late-e1",
            "cust-000002",
            last - 30 * DAY,
            1.0,
        )),
        false,
    );
    send(
        "pii-dup",
        enc(&events::purchase("pii-dup-e1", "pii-dup", last, 3.0)),
        false,
    );
    send(
        "pii-dup",
        enc(&events::purchase("pii-dup-e1", "pii-dup", last, 3.0)),
        false,
    );
    // Erasure, then an older event for the erased customer (forgotten).
    send(
        "cust-000003",
        enc(&events::erasure("pii-erase-e1", "cust-000003", last + 60)),
        false,
    );
    send(
        "cust-000003",
        enc(&events::purchase(
            "pii-forgotten-e1",
            "cust-000003",
            last,
            2.0,
        )),
        false,
    );
    p.flush(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Logs at info and above carry no customer data: no customer id, event id
/// or payload text appears, in text at info or in JSON at warn, whatever the
/// input did (outreach, refits, dead letters, undecodable input, late,
/// duplicate, erasure).
#[test]
fn logs_at_info_and_above_carry_no_customer_data() {
    let broker = Broker::start();
    let input = unique("logs-in");
    broker.create_topic(&input, 1, false);
    let population: Vec<InteractionEvent> = Generator::new(GenConfig {
        customers: 120,
        span: Span::days(75),
        seed: 11,
        ..GenConfig::default()
    })
    .collect();
    let last = population
        .iter()
        .filter_map(|e| e.occurred_at.as_ref().map(|t| t.seconds))
        .max()
        .unwrap_or(T0);
    broker.produce(&input, &population, Format::Protobuf, |_| 0);
    bad_and_odd_input(&broker, &input, last);

    let ids: std::collections::BTreeSet<&str> =
        population.iter().map(|e| e.customer_id.as_str()).collect();
    for (level, format) in [("info", "text"), ("warn", "json")] {
        let log = run_and_log(&broker, &input, &population, level, format);
        if level == "info" {
            // The log is there, so its silence about customers means something.
            for line in ["restored partition state", "refit", "stopping: draining"] {
                assert!(log.contains(line), "`{line}` missing from:\n{log}");
            }
        }
        // Nothing went wrong in this run (bad input is a warning, and the end
        // of a changelog partition is how a restore ends): no ERROR line for
        // an ops team's alert to fire on.
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        assert!(
            errors.is_empty(),
            "ERROR lines in a healthy {level} {format} run:\n{}",
            errors.join("\n")
        );
        for id in &ids {
            assert!(
                !log.contains(id),
                "customer {id} appears in the {level} log:\n{log}"
            );
        }
        for needle in ["pii-", "cust-"] {
            assert!(
                !log.contains(needle),
                "`{needle}` (customer data) appears in the {level} {format} log:\n{log}"
            );
        }
    }
}
