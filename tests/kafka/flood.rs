//! A flood of new customer ids: the hard cap per partition holds (refused
//! events go to the dead-letter topic, counted and logged, never a crash),
//! memory stays bounded, and the retention later forgets the long-silent
//! customers with changelog tombstones, making room again.

use crate::common;

use std::{process::Stdio, time::Duration};

use churnwatch::{codec::Format, events, pb::InteractionEvent};
use common::{free_port, scraped, settings, unique, wait_for, Broker, Running};

const PARTITIONS: i32 = 4;
const CAP: u64 = 25_000;
const FLOOD: usize = 1_000_000;
/// 2025-01-01: a year and more before the wall clock, so later events stay
/// in the past (validation refuses events from the future).
const T0: i64 = 1_735_689_600;
const DAY: i64 = 86_400;

fn id(i: usize) -> String {
    format!("flood-{i:07}")
}

/// Customer i goes to partition i % PARTITIONS.
fn partition_of(id: &str) -> i32 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(0, |n| (n % PARTITIONS as usize) as i32)
}

fn vm_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn metrics(port: u16) -> String {
    common::http_get(port, "/metrics", None)
        .filter(|r| r.0 == 200)
        .map(|r| r.1)
        .unwrap_or_default()
}

fn rejected_for_cap(text: &str) -> f64 {
    scraped(
        text,
        "churnwatch_events_rejected_total{reason=\"customer_cap\"}",
    )
}

#[test]
fn a_flood_of_new_ids_is_capped_and_silent_customers_are_later_forgotten() {
    let broker = Broker::start();
    // No "flood-" in the topic names: the log check below looks for ids.
    let app = unique("cw-capped");
    let mut s = settings(&broker, &app, PARTITIONS);
    s.fold.max_customers_per_partition = CAP;
    s.fold.retention = churnwatch::time::Span::days(400);
    // The prior model throughout: a refit's timing would not change what is
    // asserted here, but keeps the run cheap.
    s.model.refit_every = churnwatch::time::Span::days(3650);

    let flood: Vec<InteractionEvent> = (0..FLOOD)
        .map(|i| events::purchase(&format!("e{i}"), &id(i), T0 + (i as i64 % 1000), 5.0))
        .collect();
    broker.produce(&s.kafka.input_topic, &flood, Format::Protobuf, partition_of);
    drop(flood);

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    s.http.listen = format!("127.0.0.1:{port}");
    let config = dir.path().join("flood.toml");
    std::fs::write(&config, toml::to_string(&s).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let mut child = Running(
        churnwatch_testkit::churnwatch_command()
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let pid = child.0.id();

    // The whole flood is accounted for: CAP customers per partition kept,
    // every other event dead-lettered for the cap.
    let mut peak_rss_kb = 0;
    let refused = wait_for(Duration::from_secs(600), || {
        assert!(
            child.0.try_wait().ok().flatten().is_none(),
            "the service must not exit during the flood"
        );
        peak_rss_kb = peak_rss_kb.max(vm_rss_kb(pid));
        let t = metrics(port);
        let handled = scraped(&t, "churnwatch_events_consumed_total")
            + scraped(&t, "churnwatch_events_rejected_total");
        (handled as usize >= FLOOD).then(|| rejected_for_cap(&t))
    });
    let kept = CAP as usize * PARTITIONS as usize;
    assert_eq!(
        refused,
        Some((FLOOD - kept) as f64),
        "every event of a customer beyond the cap is refused, and only those"
    );
    let t = metrics(port);
    assert_eq!(scraped(&t, "churnwatch_customers_tracked") as usize, kept);
    let dead = broker.read_topic(
        &s.kafka.dead_letter_topic,
        FLOOD - kept,
        Duration::from_secs(180),
        false,
    );
    assert_eq!(dead.len(), FLOOD - kept, "nothing refused is lost");
    assert!(dead
        .iter()
        .all(|r| r.header("churnwatch.reason") == Some("customer_cap")));
    drop(dead);
    let rss_mb = peak_rss_kb / 1024;
    println!(
        "flood: {FLOOD} new ids, {kept} tracked, {} refused, peak RSS {rss_mb} MB",
        FLOOD - kept
    );
    // A million customers would take ~400 MB; the capped service holds 100k.
    assert!(
        rss_mb < 300,
        "peak resident memory {rss_mb} MB: the cap must bound memory"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("customer cap reached"),
        "the cap is reported in the log:\n{text}"
    );
    assert!(
        !text.contains("flood-"),
        "the log line names no customer:\n{text}"
    );

    // 401 days later one kept customer per partition comes back: stream
    // time passes everyone's retention, so all are forgotten; the four who
    // came back start afresh as new customers.
    let back: Vec<InteractionEvent> = (0..PARTITIONS as usize)
        .map(|i| events::purchase(&format!("back{i}"), &id(i), T0 + 401 * DAY, 5.0))
        .collect();
    broker.produce(&s.kafka.input_topic, &back, Format::Protobuf, partition_of);
    let evicted = wait_for(Duration::from_secs(120), || {
        let t = metrics(port);
        let n = scraped(&t, "churnwatch_customers_evicted_total");
        (n as usize >= kept).then_some(n)
    });
    assert_eq!(evicted, Some(kept as f64));
    let t = metrics(port);
    assert_eq!(
        scraped(&t, "churnwatch_customers_tracked") as usize,
        back.len(),
        "only the returning customers remain, as new ones"
    );

    // Room again: new customers are accepted.
    let fresh: Vec<InteractionEvent> = (0..8)
        .map(|i| {
            let n = FLOOD + i;
            events::purchase(&format!("new{i}"), &id(n), T0 + 402 * DAY, 5.0)
        })
        .collect();
    broker.produce(&s.kafka.input_topic, &fresh, Format::Protobuf, partition_of);
    let tracked = wait_for(Duration::from_secs(60), || {
        let n = scraped(&metrics(port), "churnwatch_customers_tracked") as usize;
        (n == back.len() + fresh.len()).then_some(n)
    });
    assert_eq!(tracked, Some(back.len() + fresh.len()));

    // The changelog says so too: a tombstone for every forgotten customer,
    // and no forgotten customer left in the final states (a restore would
    // bring back none of them).
    let expected: std::collections::BTreeSet<&str> = back
        .iter()
        .chain(&fresh)
        .map(|e| e.customer_id.as_str())
        .collect();
    let mut last = (Vec::new(), 0);
    let settled = wait_for(Duration::from_secs(120), || {
        let changelog = broker.read_all(&s.changelog_topic(), Duration::from_secs(120));
        let states = common::final_states(&changelog);
        let tombstones = changelog.iter().filter(|r| r.value.is_none()).count();
        let foreign: Vec<String> = states
            .keys()
            .filter(|k| !expected.contains(k.as_str()))
            .cloned()
            .collect();
        last = (foreign, tombstones);
        (last.0.is_empty() && tombstones >= kept).then_some(())
    });
    assert!(
        settled.is_some(),
        "forgotten customers still in the changelog: {:?}; tombstones {} (want >= {kept})",
        last.0,
        last.1
    );
    assert!(child.0.try_wait().ok().flatten().is_none(), "still running");
}
