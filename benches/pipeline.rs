//! End to end through a real broker: the ceiling (a bare rdkafka consumer
//! that only reads and counts the topic) next to churnwatch (at-least-once,
//! changelog and outreach on), on the same pre-filled topic, in one run.
//!
//!   cargo bench --bench pipeline
//!   EVENTS=1000000 CUSTOMERS=200000 PARTITIONS=8 cargo bench --bench pipeline
//!   KAFKA_BOOTSTRAP=host:9092 cargo bench --bench pipeline   # any Kafka
//!
//! CPU is the process's user + system time (both runs are in this process;
//! the broker's own CPU is not counted in either).

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use churnwatch::{
    codec::{self, Format},
    generate::{GenConfig, Generator},
    metrics::Metrics,
    pipeline::Pipeline,
    time::Span,
};
use common::{Broker, Storage};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    producer::Producer,
    ClientConfig,
};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

struct Row {
    name: &'static str,
    events: u64,
    secs: f64,
    cpu: f64,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list
    }
    let events = env("EVENTS", 1_000_000);
    let customers = env("CUSTOMERS", 200_000);
    let partitions = env("PARTITIONS", 8) as i32;
    let broker = Broker::start(Storage::Memory);
    let app = common::unique("bench");
    let topic = format!("{app}-in");
    broker.create_topic(&topic, partitions, false);

    eprintln!(
        "prefill: {events} events, {customers} customers, {partitions} partitions at {}",
        broker.bootstrap
    );
    let started = Instant::now();
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let gen = Generator::new(GenConfig {
        customers,
        span: Span::days(120),
        max_events: events,
        ..GenConfig::default()
    });
    let mut n = 0u64;
    for ev in gen {
        let bytes = codec::encode(&ev, Format::Protobuf);
        let p = (xxhash_rust::xxh3::xxh3_64(ev.customer_id.as_bytes()) % partitions as u64) as i32;
        broker.send_raw(
            &producer,
            &topic,
            Some(ev.customer_id.as_bytes()),
            Some(&bytes),
            p,
        );
        n += 1;
    }
    producer
        .flush(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("prefill done in {:.1} s", started.elapsed().as_secs_f64());

    // 1. The ceiling: read and count.
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", format!("{app}-ceiling"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    c.subscribe(&[&topic]).unwrap_or_else(|e| panic!("{e}"));
    let mut read = 0u64;
    while read < n && t0.elapsed() < Duration::from_secs(1800) {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
            read += 1;
        }
    }
    drop(c);
    let ceiling = Row {
        name: "bare rdkafka consumer (ceiling)",
        events: read,
        secs: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu0,
    };

    // 2. churnwatch, at-least-once, changelog and outreach on.
    let mut s = common::settings_for_topic(&broker, &app, &topic);
    s.processing.commit_interval_ms = 1000;
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let p = rt
        .block_on(Pipeline::start(s, metrics.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    while common::handled(&metrics) < n && t0.elapsed() < Duration::from_secs(3600) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let outreach = common::metric(&metrics, "churnwatch_outreach_emitted_total") as u64;
    let changelog = common::metric(&metrics, "churnwatch_changelog_records_written_total") as u64;
    p.stop();
    let _ = p.join();
    let cw = Row {
        name: "churnwatch (at-least-once, changelog + outreach)",
        events: common::handled(&metrics),
        secs,
        cpu,
    };

    println!();
    println!("| run | events | seconds | events/s | CPU s per 1M events |");
    println!("|---|---:|---:|---:|---:|");
    for r in [&ceiling, &cw] {
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.2} |",
            r.name,
            r.events,
            r.secs,
            r.events as f64 / r.secs,
            r.cpu / (r.events as f64 / 1e6)
        );
    }
    println!(
        "\nchurnwatch / ceiling: {:.2} of the rate; {outreach} outreach, {changelog} changelog records; broker {} ({})",
        (cw.events as f64 / cw.secs) / (ceiling.events as f64 / ceiling.secs),
        broker.bootstrap,
        if broker.is_tansu() { "tansu 0.6 memory://" } else { "KAFKA_BOOTSTRAP" }
    );
}
