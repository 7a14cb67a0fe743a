//! The end-to-end load harness: one broker, one pre-filled topic, one run.
//!
//!   bash scripts/perf.sh                        # the sizes (5M events, 1M customers)
//!   EVENTS=200000 CUSTOMERS=40000 LATENCY_SECS=20 bash scripts/perf.sh   # a smoke run
//!   cargo build --release -p churnwatch --bin churnwatch
//!   cargo run --release -p churnwatch-loadtest  # same harness, smaller defaults, peer if its venv exists
//!
//! What it runs, each as its own OS process so CPU (utime + stime from
//! /proc/PID/stat) and memory (VmRSS, VmHWM from /proc/PID/status) are per
//! contender, and the broker's CPU is shown apart:
//!
//! 1. prefill: `churnwatch generate` writes the population (protobuf) into a
//!    topic created first with PARTITIONS partitions and `retention.ms`;
//! 2. ceiling: a bare rdkafka consumer (this binary, re-executed as a child)
//!    in a consumer group that only reads and counts the topic;
//! 3. churnwatch: the real binary, `churnwatch run --config FILE`,
//!    at-least-once, changelog and outreach on, `idle_advance = "0s"`; done
//!    when consumed + rejected + dropped (from /metrics) reach the topic's
//!    message count; memory = VmRSS / `churnwatch_customers_tracked`, settled
//!    (10 s after the last event) and at the last event, next to an idle
//!    instance's VmRSS (0 customers) for the marginal figure;
//! 4. restore: SIGTERM, then a fresh instance with the same application id
//!    restores every partition from `<application_id>-changelog`; next to a
//!    bare consumer (a child) reading that whole changelog;
//! 5. peer: benches/peer/quix_peer.py (Quix Streams) over the same topic;
//! 6. latency: a fresh topic and instance, a history (LATENCY_HISTORY_DAYS
//!    of the population, ending now) prefilled and processed, then live
//!    events of the same customers, stamped with their send time (event time
//!    = wall time), at half of churnwatch's measured rate for LATENCY_SECS;
//!    latency = outreach record's Kafka timestamp minus its
//!    `churnwatch.trigger.timestamp` header (the input message's CreateTime);
//!    then the broker path alone: the same live events at the same rate into
//!    a fresh topic, read by a bare consumer (receipt minus CreateTime).
//!
//! Wall times run from process start to done (group join included). The
//! table (markdown) goes to stdout and to PERF_TABLE (default
//! `<target dir>/perf-table.md`); progress and notes to stderr. Knobs
//! (environment): EVENTS, CUSTOMERS, PARTITIONS, SPAN_DAYS, KAFKA_BOOTSTRAP,
//! PEER (0 skips), PEER_PYTHON, LATENCY_SECS (0 skips), LATENCY_CUSTOMERS,
//! LATENCY_HISTORY_DAYS (30),
//! LATENCY_RATE (default: half of churnwatch's rate here), LATENCY_SILENT_SHARE,
//! LATENCY_LINGER_MS (the live producer's linger.ms, 5), LATENCY_SAMPLES (a
//! CSV of every decision-latency sample: ms since the live window started,
//! latency), FETCH_WAIT_MS (churnwatch's fetch.wait.max.ms; the bare
//! readers take churnwatch's consumer defaults under the same overrides),
//! CW_PROPERTIES (`key=value,...`: librdkafka properties for every churnwatch
//! instance), CW_BIN (another churnwatch build to measure), SKIP (phases to
//! leave out: ceiling, churnwatch, peer, latency),
//! PERF_TABLE, KEEP (1 keeps the logs and configs after a successful run).
//!
//! The broker is testkit's own Apache Kafka ([`Broker::own_with`], with
//! KAFKA_EXTRA_PROPERTIES and KAFKA_FORMAT_ARGS passed on), whose JVM's
//! pid gives its CPU and memory, or the Kafka of KAFKA_BOOTSTRAP. The
//! binary measured is CW_BIN, else the `churnwatch` cargo built beside this
//! one (testkit's `churnwatch_bin`: CHURNWATCH_BIN, else
//! `target/<profile>/churnwatch`).
//!
//! One module per phase: [`prefill`], [`ceiling`], [`churnwatch`] (with the
//! idle instance), [`restore`], [`peer`], [`latency`]; [`child`] has the
//! re-executed children and the measuring of a child, [`knobs`] the
//! environment, [`report`] the rows, verdicts and table.

mod ceiling;
mod child;
mod churnwatch;
mod knobs;
mod latency;
mod peer;
mod prefill;
mod report;
mod restore;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use churnwatch_testkit::{kafka_version, proc_cpu, proc_mem, unique, Broker};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    ClientConfig,
};

use crate::{knobs::Knobs, report::Report};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(child::CHILD) {
        child::main(&args[2..]);
        return;
    }
    if let Err(e) = run() {
        eprintln!("pipeline harness failed: {e}");
        std::process::exit(1);
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("[pipeline] {}", msg.as_ref());
}

type Res<T> = Result<T, String>;

/// What every phase works with.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    k: &'a Knobs,
    b: &'a Broker,
    /// The prefix of every topic and group of this run.
    run_id: &'a str,
    /// The run's logs and configs.
    dir: &'a Path,
}

/// The broker's CPU and memory, for one the harness runs itself.
trait BrokerCpu {
    /// The broker's CPU seconds so far (None for an external broker).
    fn cpu(&self) -> Option<f64>;
    /// (VmRSS, VmHWM) of the broker (None for an external broker).
    fn mem(&self) -> Option<(u64, u64)>;
}

impl BrokerCpu for Broker {
    fn cpu(&self) -> Option<f64> {
        self.pid().map(proc_cpu)
    }

    fn mem(&self) -> Option<(u64, u64)> {
        self.pid().map(proc_mem)
    }
}

/// The broker: Apache Kafka of the harness's own (`scripts/kafka.sh run
/// DIR`, one KRaft node on a free loopback port; its CPU is reported per
/// phase), or the Kafka of `KAFKA_BOOTSTRAP`.
fn start_broker() -> Broker {
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let t0 = Instant::now();
    match Broker::own_with(&env("KAFKA_EXTRA_PROPERTIES"), &env("KAFKA_FORMAT_ARGS")) {
        Some(b) => {
            progress(format!(
                "broker: Apache Kafka at {} ready in {:.1} s",
                b.bootstrap,
                t0.elapsed().as_secs_f64()
            ));
            b
        }
        None => Broker::start(),
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// (low, high) watermarks of every partition of a topic.
fn watermarks(c: &BaseConsumer, topic: &str) -> Vec<(i64, i64)> {
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let parts = md.topics().first().map_or(0, |t| t.partitions().len());
    (0..parts as i32)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"))
        })
        .collect()
}

fn topic_messages(bootstrap: &str, topic: &str) -> u64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    watermarks(&c, topic)
        .iter()
        .map(|(l, h)| (h - l).max(0) as u64)
        .sum()
}

fn run() -> Res<()> {
    let k = Knobs::from_env();
    let mut work = WorkDir::new()?;
    let dir = work.path.clone();
    let dir = dir.as_path();
    let b = start_broker();
    let run_id = unique("perf");
    let mut rep = Report::default();
    rep.setup.push(format!(
        "broker: {} at {}; {} partitions; logs and configs in {} (kept on failure)",
        if b.pid().is_some() {
            format!(
                "Apache Kafka {} (scripts/kafka.sh, one KRaft node, this machine)",
                kafka_version()
            )
        } else {
            "KAFKA_BOOTSTRAP".to_owned()
        },
        b.bootstrap,
        k.partitions,
        dir.display()
    ));
    let cx = Ctx {
        k: &k,
        b: &b,
        run_id: &run_id,
        dir,
    };

    // 1. Prefill with `churnwatch generate`.
    let (topic, n) = prefill::run(&cx, &mut rep)?;
    // 2. Ceiling.
    ceiling::run(&cx, &topic, n, &mut rep)?;
    if k.runs("churnwatch") {
        // 3. churnwatch at full speed (an idle instance first).
        let measured = churnwatch::run(&cx, &topic, n, &mut rep)?;
        // 4. Restore on a fresh instance, and the bare read of the changelog.
        restore::run(&cx, &topic, measured, &mut rep)?;
    }
    // 5. The peer.
    peer::run(&cx, &topic, n, &mut rep)?;
    // 6. Latency at half of churnwatch's rate.
    latency::run(&cx, &mut rep)?;

    let table = report::render(&k, &rep, &b);
    println!("{table}");
    if let Some(parent) = k.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&k.out, &table).map_err(|e| format!("writing {}: {e}", k.out.display()))?;
    progress(format!("table written to {}", k.out.display()));
    work.succeeded = true;
    Ok(())
}

/// The run's logs and configs: removed after a successful run unless KEEP=1,
/// kept after a failed one (the error names it).
struct WorkDir {
    path: PathBuf,
    succeeded: bool,
}

impl WorkDir {
    fn new() -> Res<WorkDir> {
        let dir = tempfile::Builder::new()
            .prefix("churnwatch-perf-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        Ok(WorkDir {
            path: dir.keep(),
            succeeded: false,
        })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.succeeded && std::env::var("KEEP").map_or(true, |v| v != "1") {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            progress(format!("logs and configs kept in {}", self.path.display()));
        }
    }
}
