//! What `/metrics` shows after a run over known input, metric by metric,
//! against a real broker (Apache Kafka on loopback, or `KAFKA_BOOTSTRAP`).
//!
//! The input is the March scenario (4 outreach, 1 held back for lack of
//! consent) over two partitions, plus an outcome answering one outreach, a
//! JSON event announced by its `content-type` header, a redelivery, a late
//! event and four messages that cannot be processed.

use crate::common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use churnwatch::{
    channel,
    codec::{self, Format},
    config::CoreConfig,
    events,
    kind::EventKind,
    metrics::Metrics,
    outreach::outreach_id,
    pb::{Channel, InteractionEvent, Outcome, OutreachRequested, Playbook},
    pipeline::Pipeline,
    population::PopulationModel,
    processor::{Effect, Processor},
    replay::{replay, ReplayOptions, ReplaySummary},
    score::Level,
};
use common::{
    month::{month, t},
    settings, unique, wait_for, Broker,
};
use prometheus::proto::MetricFamily;
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{BaseProducer, BaseRecord, Producer},
};

/// The partition of each scenario customer: each partition has traffic
/// until the end of the month, so stream time moves on in both.
fn partition_of(customer: &str) -> i32 {
    i32::from(!["steady", "silent-regular", "renewal"].contains(&customer))
}

/// One input message: its partition, bytes, `content-type` header, and the
/// event it decodes to (if it does).
struct Msg {
    partition: i32,
    value: Vec<u8>,
    content_type: Option<&'static str>,
    event: Option<InteractionEvent>,
}

impl Msg {
    fn protobuf(e: &InteractionEvent) -> Msg {
        Msg {
            partition: partition_of(&e.customer_id),
            value: codec::encode(e, Format::Protobuf),
            content_type: None,
            event: Some(e.clone()),
        }
    }
}

fn send(p: &BaseProducer, topic: &str, msgs: &[Msg]) {
    for m in msgs {
        let key = m.event.as_ref().map(|e| e.customer_id.clone());
        let headers = m.content_type.map(|ct| {
            OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some(ct),
            })
        });
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(m.partition)
            .payload(&m.value[..]);
        if let Some(k) = &key {
            r = r.key(k.as_bytes());
        }
        if let Some(h) = headers {
            r = r.headers(h);
        }
        p.send(r)
            .map_err(|(e, _)| e)
            .unwrap_or_else(|e| panic!("send: {e}"));
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("flush: {e}"));
}

/// The month through `replay`: the outreach it decides and its summary.
fn replay_month() -> (Vec<OutreachRequested>, ReplaySummary) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let input = dir.path().join("month.pb");
    common::month::write_events(&input, &month(), Format::Protobuf);
    let out = dir.path().join("outreach.jsonl");
    let opts = ReplayOptions {
        inputs: vec![input],
        format: Format::Protobuf,
        outreach_out: Some(out.clone()),
        ..ReplayOptions::default()
    };
    let summary = replay(CoreConfig::default(), &opts).unwrap_or_else(|e| panic!("{e}"));
    let sent = std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    (sent, summary)
}

/// What the pure core decides on the same streams.
struct Core {
    /// Customers per level at the end (low, medium, high, critical).
    levels: [u64; 4],
    timers_fired: u64,
    outreach: usize,
    /// Outreach decided by a customer's own event (not by a silence timer
    /// that the advance of stream time fired): `churnwatch.trigger: event`.
    outreach_by_event: usize,
    suppressed: BTreeMap<String, u64>,
}

/// Each partition's messages, in order, through the pure core as the
/// service drives it: process, then fire the timers up to stream time.
fn core_model(msgs: &[&Msg]) -> Core {
    let cfg = Arc::new(CoreConfig::default());
    let model = Arc::new(PopulationModel::prior(&cfg.model));
    let mut core = Core {
        levels: [0; 4],
        timers_fired: 0,
        outreach: 0,
        outreach_by_event: 0,
        suppressed: BTreeMap::new(),
    };
    for p in 0..2 {
        let mut proc = Processor::new(cfg.clone(), model.clone());
        let mut effects = Vec::new();
        for e in msgs
            .iter()
            .filter(|m| m.partition == p)
            .filter_map(|m| m.event.as_ref())
        {
            let before = effects.len();
            let _ = proc.process(e, None, &mut effects);
            core.outreach_by_event += effects[before..]
                .iter()
                .filter(|e| matches!(e, Effect::Outreach(_)))
                .count();
            if let Some(st) = proc.stream_time() {
                proc.advance_to(st, &mut effects);
            }
        }
        for (l, n) in core.levels.iter_mut().zip(proc.level_counts()) {
            *l += n;
        }
        core.timers_fired += proc.timers_fired();
        for e in &effects {
            match e {
                Effect::Outreach(_) => core.outreach += 1,
                Effect::Suppressed { reason, .. } => {
                    *core
                        .suppressed
                        .entry(format!("reason={}", reason.code()))
                        .or_insert(0) += 1
                }
                Effect::Outcome { .. } | Effect::Measured(_) => {}
            }
        }
    }
    core
}

/// A metric family; empty when it has no sample yet (a vector without
/// children is left out of the exposition).
fn family(m: &Metrics, name: &str) -> MetricFamily {
    m.registry
        .gather()
        .into_iter()
        .find(|f| f.name() == name)
        .unwrap_or_default()
}

/// Every sample of a counter or gauge family: its labels and value.
fn samples(m: &Metrics, name: &str) -> BTreeMap<Vec<(String, String)>, f64> {
    family(m, name)
        .get_metric()
        .iter()
        .map(|x| {
            let labels = x
                .get_label()
                .iter()
                .map(|l| (l.name().to_owned(), l.value().to_owned()))
                .collect();
            (
                labels,
                x.get_counter().get_value() + x.get_gauge().get_value(),
            )
        })
        .collect()
}

/// One sample by its labels (`&["reason=late"]`); 0 if absent.
fn value(m: &Metrics, name: &str, labels: &[&str]) -> f64 {
    let want: BTreeSet<&str> = labels.iter().copied().collect();
    samples(m, name)
        .into_iter()
        .find(|(l, _)| {
            let have: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
            have.len() == want.len() && have.iter().all(|x| want.contains(x.as_str()))
        })
        .map_or(0.0, |(_, v)| v)
}

fn total(m: &Metrics, name: &str) -> f64 {
    samples(m, name).values().sum()
}

/// `a=1,b=2`: labels as a key, in label-name order.
fn key(labels: &[(String, String)]) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(",")
}

/// The non-zero samples, keyed by their labels (`kind=purchase,partition=0`).
fn nonzero(m: &Metrics, name: &str) -> BTreeMap<String, u64> {
    samples(m, name)
        .into_iter()
        .filter(|(_, v)| *v != 0.0)
        .map(|(labels, v)| (key(&labels), v as u64))
        .collect()
}

/// The sample count of each series of a histogram, keyed by its labels.
fn histogram_counts(m: &Metrics, name: &str) -> BTreeMap<String, u64> {
    family(m, name)
        .get_metric()
        .iter()
        .map(|x| {
            let labels: Vec<(String, String)> = x
                .get_label()
                .iter()
                .map(|l| (l.name().to_owned(), l.value().to_owned()))
                .collect();
            (key(&labels), x.get_histogram().get_sample_count())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_known_input_exposes_each_metric_with_the_expected_values() {
    let broker = Broker::start();
    let app = unique("cw-metrics");
    let s = settings(&broker, &app, 2);
    let topic = s.kafka.input_topic.clone();

    // The input: January and February, then March and the extra messages.
    let (sent_by_replay, summary) = replay_month();
    assert_eq!(sent_by_replay.len(), 4);
    let march = t("2026-03-01T00:00:00Z");
    let (history, rest): (Vec<Msg>, Vec<Msg>) = month().iter().map(Msg::protobuf).partition(|m| {
        m.event
            .as_ref()
            .and_then(|e| e.occurred_at)
            .map_or(0, |x| x.seconds)
            < march
    });
    let detractor = sent_by_replay
        .iter()
        .find(|o| o.customer_id == "detractor")
        .unwrap_or_else(|| panic!("the detractor got outreach"));
    let episode = detractor.episode_started_at.map_or(0, |x| x.seconds);
    assert_eq!(
        detractor.outreach_id,
        outreach_id("detractor", Playbook::FeedbackFollowUp, episode),
        "outreach ids can be computed from customer, playbook and episode start"
    );
    let end_of_steady = month()
        .into_iter()
        .rfind(|e| e.customer_id == "steady")
        .unwrap_or_else(|| panic!("steady has events"));
    // Partition 1's last event of the month: its stream time reaches the
    // day the customer without consent crosses into high.
    let json_session = events::session(
        "json-1",
        "frustrated",
        t("2026-03-31T23:00:00Z"),
        Channel::Web,
    );
    // The customer answered the feedback follow-up.
    let outcome = events::outcome(
        "outcome-1",
        "detractor",
        t("2026-03-26T12:00:00Z"),
        &detractor.outreach_id,
        Outcome::Replied,
    );
    let mut extra = vec![
        Msg::protobuf(&outcome),
        // JSON, announced by its header (the configured input format is protobuf).
        Msg {
            partition: 1,
            value: codec::encode(&json_session, Format::Json),
            content_type: Some("application/json"),
            event: Some(json_session.clone()),
        },
        // A redelivery of steady's last event.
        Msg::protobuf(&end_of_steady),
        // Thirty days older than partition 0's stream time.
        Msg::protobuf(&events::purchase("late-1", "steady", march, 5.0)),
        // Four messages that cannot be processed.
        Msg::protobuf(&events::nps(
            "bad-nps",
            "steady",
            t("2026-03-31T12:00:00Z"),
            11,
        )),
        Msg {
            partition: 0,
            value: vec![0xff, 0xfe, 0x00, 0x13],
            content_type: None,
            event: None,
        },
        Msg {
            partition: 1,
            value: Vec::new(),
            content_type: None,
            event: None,
        },
        Msg {
            partition: 1,
            value: b"{\"eventId\": ".to_vec(),
            content_type: Some("application/json"),
            event: None,
        },
    ];
    let mut rest = rest;
    rest.append(&mut extra);
    let all: Vec<&Msg> = history.iter().chain(&rest).collect();

    // Phase 1 before the pipeline starts, phase 2 once phase 1 is in, so
    // that stream time crosses a refit time while the service runs.
    let producer = broker.producer();
    send(&producer, &topic, &history);
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let p = Pipeline::start(s.clone(), metrics.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let handled = |m: &Metrics| {
        total(m, "churnwatch_events_consumed_total")
            + total(m, "churnwatch_events_rejected_total")
            + total(m, "churnwatch_events_dropped_total")
    };
    let phase1 = wait_for(Duration::from_secs(60), || {
        (handled(&metrics) as usize == history.len()
            && value(&metrics, "churnwatch_commits_total", &["result=ok"]) > 0.0)
            .then_some(())
    });
    assert!(
        phase1.is_some(),
        "phase 1: handled {} of {}: {}",
        handled(&metrics),
        history.len(),
        metrics.render()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    send(&producer, &topic, &rest);
    let done = wait_for(Duration::from_secs(60), || {
        (handled(&metrics) as usize == all.len()).then_some(())
    });
    assert!(
        done.is_some(),
        "not every message was handled: {}",
        metrics.render()
    );
    // A few batch ends: the gauges are updated there.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m = &*metrics;
    let text = m.render();

    // Events consumed, by kind and partition: every decodable, valid, new
    // event (the month, the outcome and the JSON session).
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for e in month().iter().chain([&outcome, &json_session]) {
        let kind = e
            .kind
            .as_ref()
            .map_or("unknown", |k| EventKind::of(k).as_str());
        *want
            .entry(format!(
                "kind={kind},partition={}",
                partition_of(&e.customer_id)
            ))
            .or_insert(0) += 1;
    }
    assert_eq!(nonzero(m, "churnwatch_events_consumed_total"), want);

    // Rejected by reason, as the dead-letter topic tells; dropped by reason.
    let rejected = BTreeMap::from([
        ("reason=empty".to_owned(), 1),
        ("reason=nps_out_of_range".to_owned(), 1),
        ("reason=undecodable_json".to_owned(), 1),
        ("reason=undecodable_protobuf".to_owned(), 1),
    ]);
    assert_eq!(nonzero(m, "churnwatch_events_rejected_total"), rejected);
    // The late event is kept there too (reason `late`), counted as dropped.
    let dead = broker.read_topic(
        &s.kafka.dead_letter_topic,
        5,
        Duration::from_secs(30),
        false,
    );
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for r in &dead {
        let reason = r.header("churnwatch.reason").unwrap_or_default();
        *reasons.entry(format!("reason={reason}")).or_insert(0) += 1;
    }
    let mut dead_lettered = rejected.clone();
    dead_lettered.insert("reason=late".to_owned(), 1);
    assert_eq!(reasons, dead_lettered);
    assert!(text.contains("churnwatch_events_rejected_total{reason=\"too_large\"} 0"));
    for (reason, n) in [("late", 1.0), ("duplicate", 1.0), ("forgotten", 0.0)] {
        assert_eq!(
            value(
                m,
                "churnwatch_events_dropped_total",
                &[&format!("reason={reason}")]
            ),
            n,
            "{reason}"
        );
    }

    // Outreach: the same four decisions as replay, by playbook, channel and level.
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for o in &sent_by_replay {
        let ch = channel::name(Channel::try_from(o.channel).unwrap_or(Channel::Unspecified));
        let level = Level::from_number(u32::try_from(o.level).unwrap_or(0)).as_str();
        *want
            .entry(format!(
                "channel={ch},level={level},playbook={}",
                o.playbook().as_str_name()
            ))
            .or_insert(0) += 1;
    }
    assert_eq!(nonzero(m, "churnwatch_outreach_emitted_total"), want);
    let want_suppressed: BTreeMap<String, u64> = summary
        .suppressed_by_reason
        .iter()
        .map(|(k, v)| (format!("reason={k}"), *v))
        .collect();
    assert_eq!(
        want_suppressed,
        BTreeMap::from([("reason=no_consent".to_owned(), 1)])
    );
    assert_eq!(
        nonzero(m, "churnwatch_outreach_suppressed_total"),
        want_suppressed
    );
    assert!(text.contains("churnwatch_outreach_suppressed_total{reason=\"no_consent\"} 1"));
    assert_eq!(
        nonzero(m, "churnwatch_outreach_outcomes_total"),
        BTreeMap::from([("outcome=replied,playbook=FEEDBACK_FOLLOW_UP".to_owned(), 1)])
    );
    // Customers: six, by the level the pure core gives them on the same streams.
    let core = core_model(&all);
    assert_eq!(core.outreach, 4);
    // One latency sample per outreach a customer's own event decided (the
    // timer-decided ones carry `churnwatch.trigger: timer` and no latency).
    assert!(core.outreach_by_event > 0 && core.outreach_by_event < core.outreach);
    assert_eq!(
        histogram_counts(m, "churnwatch_processing_latency_seconds").get(""),
        Some(&(core.outreach_by_event as u64))
    );
    assert_eq!(core.suppressed, want_suppressed);
    assert_eq!(value(m, "churnwatch_customers_tracked", &[]), 6.0);
    for (l, n) in Level::ALL.iter().zip(core.levels) {
        let label = format!("level={}", l.as_str());
        assert_eq!(
            value(m, "churnwatch_customers_by_risk_level", &[&label]),
            n as f64,
            "{label}"
        );
    }
    assert_eq!(total(m, "churnwatch_customers_by_risk_level"), 6.0);
    assert!(
        core.timers_fired > 0,
        "silence timers decided two of the outreach"
    );
    assert_eq!(
        value(m, "churnwatch_timers_fired_total", &[]),
        core.timers_fired as f64
    );

    // Model: six customers are too few to fit, so the prior stays in use.
    for (param, v) in [("r", 0.243), ("alpha", 30.898), ("a", 0.793), ("b", 2.426)] {
        let got = value(
            m,
            "churnwatch_model_parameter",
            &[&format!("param={param}")],
        );
        assert!((got - v).abs() < 1e-9, "{param}: {got}");
    }
    assert!(value(m, "churnwatch_model_refits_total", &["result=skipped"]) >= 1.0);
    assert_eq!(
        value(m, "churnwatch_model_refits_total", &["result=ok"]),
        0.0
    );
    assert_eq!(
        value(m, "churnwatch_model_refits_total", &["result=error"]),
        0.0
    );
    assert_eq!(value(m, "churnwatch_model_customers", &[]), 0.0);

    // State, group and commits.
    assert!(value(m, "churnwatch_changelog_records_written_total", &[]) >= 6.0);
    assert!(value(m, "churnwatch_rebalances_total", &["kind=assign"]) >= 1.0);
    assert_eq!(
        value(m, "churnwatch_rebalances_total", &["kind=revoke"]),
        0.0
    );
    assert_eq!(value(m, "churnwatch_assigned_partitions", &[]), 2.0);
    assert!(value(m, "churnwatch_commits_total", &["result=ok"]) > 0.0);
    for result in ["error", "refused", "aborted"] {
        assert_eq!(
            value(
                m,
                "churnwatch_commits_total",
                &[&format!("result={result}")]
            ),
            0.0,
            "{result}"
        );
    }
    assert_eq!(value(m, "churnwatch_producer_send_errors_total", &[]), 0.0);
    assert!(text.contains("# TYPE churnwatch_producer_queue_messages gauge"));
    assert!(value(m, "churnwatch_producer_queue_messages", &[]) >= 0.0);
    // Restore: once per partition, from an empty changelog.
    assert_eq!(
        histogram_counts(m, "churnwatch_changelog_restore_seconds"),
        BTreeMap::from([("partition=0".to_owned(), 1), ("partition=1".to_owned(), 1)])
    );
    assert!(text.contains("churnwatch_changelog_restore_records_total{partition=\"0\"} 0"));
    assert!(text.contains("churnwatch_changelog_restore_records_total{partition=\"1\"} 0"));
    for part in ["partition=0", "partition=1"] {
        // Wall clock minus an event time in March 2026: months.
        let lag = value(m, "churnwatch_event_time_lag_seconds", &[part]);
        assert!(lag > 30.0 * 86_400.0, "{part}: {lag}");
    }
    // Consumer lag comes with librdkafka's statistics, every 5 s.
    let lag = wait_for(Duration::from_secs(20), || {
        let s = samples(m, "churnwatch_consumer_lag_messages");
        let parts: BTreeSet<String> = s
            .keys()
            .filter_map(|l| l.first().map(|(_, v)| v.clone()))
            .collect();
        let caught_up = s.values().all(|v| *v == 0.0);
        (parts == BTreeSet::from(["0".to_owned(), "1".to_owned()]) && caught_up).then_some(())
    });
    assert!(lag.is_some(), "{}", m.render());

    p.stop();
    p.join().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        value(m, "churnwatch_rebalances_total", &["kind=revoke"]),
        1.0
    );
    assert_eq!(value(m, "churnwatch_assigned_partitions", &[]), 0.0);
}
