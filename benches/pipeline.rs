//! The end-to-end load harness: one broker, one pre-filled topic, one run.
//!
//!   bash scripts/perf.sh                        # the sizes (5M events, 1M customers)
//!   EVENTS=200000 CUSTOMERS=40000 LATENCY_SECS=20 bash scripts/perf.sh   # a smoke run
//!   cargo bench --bench pipeline                # same harness, smaller defaults, peer if its venv exists
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
//! LATENCY_LINGER_MS, FETCH_WAIT_MS (churnwatch's fetch.wait.max.ms),
//! CW_PROPERTIES (`key=value,...`: librdkafka properties for every churnwatch
//! instance), CW_BIN (another churnwatch build to measure), SKIP (phases to
//! leave out: ceiling, churnwatch, peer, latency),
//! PERF_TABLE, KEEP (1 keeps the logs and configs after a successful run).

use churnwatch_testkit as common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use churnwatch::{
    codec::{self, Format},
    generate::{GenConfig, Generator},
    time::Span,
};
use common::Broker;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{Headers, Message},
    producer::{BaseProducer, Producer},
    ClientConfig, Offset, TopicPartitionList,
};

const CHURNWATCH: &str = env!("CARGO_BIN_EXE_churnwatch");
/// How long after its last event a processing instance's memory is read.
const SETTLE_SECS: u64 = 10;

/// The churnwatch binary under test: CW_BIN (another build, for before and
/// after comparisons), else the one cargo built with this harness.
fn churnwatch_bin() -> String {
    std::env::var("CW_BIN").unwrap_or_else(|_| CHURNWATCH.to_owned())
}
const CHILD: &str = "__pipeline_child";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list
    }
    if args.get(1).map(String::as_str) == Some(CHILD) {
        child::main(&args[2..]);
        return;
    }
    if let Err(e) = run() {
        eprintln!("pipeline harness failed: {e}");
        std::process::exit(1);
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
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

// ---------------------------------------------------------------------------
// Processes: CPU, memory, signals.

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a live process.
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// (VmRSS, VmHWM) of a live process, in bytes.
fn proc_mem(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// Waits for a child to exit, up to `timeout`; kills it after that.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The broker: Apache Kafka of the harness's own (`scripts/kafka.sh run
/// DIR`, one KRaft node on a free loopback port; the script execs `java`, so
/// the child's pid is the broker's and its CPU is reported per phase), or
/// the Kafka of `KAFKA_BOOTSTRAP`.
struct BrokerProc {
    bootstrap: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

/// The Apache Kafka version scripts/kafka.sh runs: `KAFKA_VERSION`, else
/// the one pinned in the script.
fn kafka_version() -> String {
    if let Ok(v) = std::env::var("KAFKA_VERSION") {
        return v;
    }
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh"))
        .unwrap_or_default();
    script
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_VERSION=\"${KAFKA_VERSION:-"))
        .and_then(|r| r.split('}').next())
        .unwrap_or("(version unknown)")
        .to_owned()
}

impl BrokerProc {
    fn start() -> Res<BrokerProc> {
        if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
            return Ok(BrokerProc {
                bootstrap: b,
                child: None,
                _dir: None,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("churnwatch-perf-kafka-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
        let log = std::fs::File::create(dir.path().join("run.log")).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .arg("run")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // The broker dies with the harness, even a killed one.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", script.display()))?;
        let logs = |dir: &Path| {
            ["run.log", "node1/log/stdout.log", "node1/log/server.log"]
                .iter()
                .map(|f| format!("== {f}\n{}", log_tail(&dir.join(f))))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let deadline = t0 + Duration::from_secs(120);
        let bootstrap = loop {
            if let Ok(b) = std::fs::read_to_string(dir.path().join("bootstrap")) {
                if !b.trim().is_empty() {
                    break b.trim().to_owned();
                }
            }
            if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!(
                    "Apache Kafka (scripts/kafka.sh run) did not start:\n{}",
                    logs(dir.path())
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let b = BrokerProc {
            bootstrap,
            child: Some(child),
            _dir: Some(dir),
        };
        loop {
            let c: Result<BaseConsumer, _> = ClientConfig::new()
                .set("bootstrap.servers", &b.bootstrap)
                .set("log_level", "0")
                .create();
            if let Ok(c) = c {
                if c.fetch_metadata(None, Duration::from_secs(2))
                    .is_ok_and(|md| !md.brokers().is_empty())
                {
                    progress(format!(
                        "broker: Apache Kafka at {} ready in {:.1} s",
                        b.bootstrap,
                        t0.elapsed().as_secs_f64()
                    ));
                    return Ok(b);
                }
            }
            if Instant::now() > deadline {
                let dir = b
                    ._dir
                    .as_ref()
                    .map(|d| d.path().to_owned())
                    .unwrap_or_default();
                return Err(format!(
                    "Apache Kafka at {} did not answer in 120 s:\n{}",
                    b.bootstrap,
                    logs(&dir)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// True when the harness runs the broker itself.
    fn is_own(&self) -> bool {
        self.child.is_some()
    }

    /// The broker's CPU seconds so far (None for an external broker).
    fn cpu(&self) -> Option<f64> {
        self.child.as_ref().map(|c| proc_cpu(c.id()))
    }

    fn mem(&self) -> Option<(u64, u64)> {
        self.child.as_ref().map(|c| proc_mem(c.id()))
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Admin HTTP of churnwatch: a minimal GET, Prometheus text sums.

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let sock = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((code, body))
}

/// Sum of every sample of `name` (any labels) in Prometheus text.
/// The samples of one metric family (every label set).
fn metric_samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(move |l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

fn metric_sum(text: &str, name: &str) -> f64 {
    metric_samples(text, name).sum()
}

fn handled(text: &str) -> u64 {
    (metric_sum(text, "churnwatch_events_consumed_total")
        + metric_sum(text, "churnwatch_events_rejected_total")
        + metric_sum(text, "churnwatch_events_dropped_total")) as u64
}

// ---------------------------------------------------------------------------
// churnwatch as a process.

struct CwOptions<'a> {
    app: &'a str,
    input: &'a str,
    properties: Vec<(String, String)>,
}

struct Churnwatch {
    child: Child,
    http: String,
    started: Instant,
    log: PathBuf,
}

impl Churnwatch {
    fn spawn(b: &BrokerProc, o: &CwOptions<'_>, dir: &Path, tag: &str) -> Res<Churnwatch> {
        let http = format!("127.0.0.1:{}", common::free_port());
        let mut props = String::new();
        for (k, v) in &o.properties {
            props.push_str(&format!("{k:?} = {v:?}\n"));
        }
        let toml = format!(
            "application_id = {app:?}\n\n[kafka]\nbootstrap_servers = {bs:?}\ninput_topic = {input:?}\n\
             outreach_topic = \"{app}-outreach\"\ndead_letter_topic = \"{app}-dlq\"\n\n\
             [kafka.properties]\n{props}\n[processing]\nguarantee = \"at_least_once\"\n\
             idle_advance = \"0s\"\n\n[http]\nlisten = {http:?}\n\n[log]\nlevel = \"info\"\n",
            app = o.app,
            bs = b.bootstrap,
            input = o.input,
        );
        let cfg = dir.join(format!("{tag}.toml"));
        std::fs::write(&cfg, toml).map_err(|e| e.to_string())?;
        let log = dir.join(format!("{tag}.log"));
        let f = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(churnwatch_bin())
            .args(["run", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(f))
            .spawn()
            .map_err(|e| format!("starting churnwatch: {e}"))?;
        Ok(Churnwatch {
            child,
            http,
            started: Instant::now(),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn metrics(&self) -> String {
        http_get(&self.http, "/metrics").map_or_else(String::new, |(_, body)| body)
    }

    fn check_alive(&mut self) -> Res<()> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Err(format!(
                "churnwatch exited ({s}); log {}:\n{}",
                self.log.display(),
                log_tail(&self.log)
            ));
        }
        Ok(())
    }

    /// Waits until every one of `partitions` is assigned and restored.
    fn wait_ready(&mut self, partitions: i32, timeout: Duration) -> Res<f64> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let m = self.metrics();
            if metric_sum(&m, "churnwatch_assigned_partitions") as i32 == partitions
                && http_get(&self.http, "/readyz").is_some_and(|(c, _)| c == 200)
            {
                return Ok(self.started.elapsed().as_secs_f64());
            }
            if Instant::now() > deadline {
                return Err(format!("churnwatch not ready within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls /metrics until `n` input messages are handled. Returns (seconds
    /// from start to the first event consumed, seconds from start to done).
    fn wait_handled(&mut self, n: u64, timeout: Duration) -> Res<(Option<f64>, f64)> {
        let deadline = Instant::now() + timeout;
        let mut first = None;
        let mut last_note = Instant::now();
        loop {
            self.check_alive()?;
            let h = handled(&self.metrics());
            let t = self.started.elapsed().as_secs_f64();
            if h > 0 && first.is_none() {
                first = Some(t);
            }
            if h >= n {
                return Ok((first, t));
            }
            if last_note.elapsed() > Duration::from_secs(10) {
                progress(format!("  churnwatch: {h} of {n} handled at {t:.0} s"));
                last_note = Instant::now();
            }
            if Instant::now() > deadline {
                return Err(format!("churnwatch handled {h} of {n} within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM; (exit status, seconds to exit).
    fn stop(mut self) -> (String, f64) {
        let t = Instant::now();
        sigterm(self.pid());
        let s = wait_exit(&mut self.child, Duration::from_secs(90));
        (
            s.map_or("killed after 90 s".into(), |s| s.to_string()),
            t.elapsed().as_secs_f64(),
        )
    }
}

impl Drop for Churnwatch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Measured children (ceiling, bare changelog reader, peer): they print
// `first ...` and `done ...` on stdout, then wait for stdin to close.

#[derive(Default, Clone)]
struct Row {
    name: String,
    events: u64,
    wall: f64,
    first: Option<f64>,
    cpu: f64,
    rss: u64,
    hwm: u64,
    broker_cpu: Option<f64>,
    done: String,
}

impl Row {
    fn rate(&self) -> f64 {
        self.events as f64 / self.wall.max(1e-9)
    }
    fn cpu_per_m(&self) -> f64 {
        self.cpu / (self.events as f64 / 1e6).max(1e-9)
    }
}

fn measure_child(
    name: &str,
    mut cmd: Command,
    log: &Path,
    b: &BrokerProc,
    timeout: Duration,
) -> Res<Row> {
    let f = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let broker0 = b.cpu();
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(f))
        .spawn()
        .map_err(|e| format!("starting {name}: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send((started.elapsed().as_secs_f64(), line)).is_err() {
                break;
            }
        }
    });
    let mut row = Row {
        name: name.into(),
        ..Row::default()
    };
    let deadline = Instant::now() + timeout;
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok((t, line)) if line.starts_with("first") => row.first = Some(t),
            Ok((t, line)) if line.starts_with("done") => {
                row.wall = t;
                row.cpu = proc_cpu(child.id());
                (row.rss, row.hwm) = proc_mem(child.id());
                row.broker_cpu = b.cpu().zip(broker0).map(|(a, z)| a - z);
                row.done = line.trim_start_matches("done").trim().to_owned();
                break;
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{name} did not finish; log {}:\n{}",
                    log.display(),
                    log_tail(log)
                ));
            }
        }
    }
    drop(child.stdin.take());
    wait_exit(&mut child, Duration::from_secs(60));
    Ok(row)
}

fn child_cmd(args: &[&str]) -> Res<Command> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut c = Command::new(exe);
    c.arg(CHILD).args(args);
    Ok(c)
}

mod child {
    //! The bare consumers, run as children of the harness.
    use super::*;

    pub fn main(args: &[String]) {
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        let count = match arg(0).as_str() {
            "consume" => consume(&arg(1), &arg(2), &arg(3), arg(4).parse().unwrap_or(0)),
            "read" => read_all(&arg(1), &arg(2)),
            other => {
                eprintln!("unknown child role {other}");
                std::process::exit(2);
            }
        };
        println!("done {count}");
        let _ = std::io::stdout().flush();
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    }

    fn first_seen(seen: &mut bool) {
        if !*seen {
            *seen = true;
            println!("first {}", unix_ms());
            let _ = std::io::stdout().flush();
        }
    }

    /// The ceiling: a group member that reads and counts `want` messages.
    fn consume(bootstrap: &str, topic: &str, group: &str, want: u64) -> u64 {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", "range")
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        c.subscribe(&[topic]).unwrap_or_else(|e| panic!("{e}"));
        let (mut n, mut seen) = (0u64, false);
        while n < want {
            if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
                first_seen(&mut seen);
                n += 1;
            }
        }
        n
    }

    /// Every partition of `topic` from the beginning to its end as of now
    /// (read-committed, as churnwatch's restore reads the changelog).
    fn read_all(bootstrap: &str, topic: &str) -> u64 {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("{topic}-bare-reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        // To the end of each partition as the fetches see it (partition EOF),
        // not to the watermarks (a broker whose watermarks fall short of its
        // log, as tansu 0.6's did, is still read to the end).
        let parts = watermarks(&c, topic).len();
        let mut tpl = TopicPartitionList::new();
        for p in 0..parts as i32 {
            let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
        }
        c.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
        let (mut n, mut seen) = (0u64, false);
        let mut at_end = std::collections::BTreeSet::new();
        while at_end.len() < parts {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(_)) => {
                    first_seen(&mut seen);
                    n += 1;
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                _ => {}
            }
        }
        n
    }
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

// ---------------------------------------------------------------------------
// The run.

struct Knobs {
    events: u64,
    customers: u64,
    partitions: i32,
    span_days: i64,
    peer: bool,
    python: PathBuf,
    latency_secs: u64,
    latency_customers: u64,
    latency_history_days: u64,
    latency_silent_share: f64,
    linger_ms: u64,
    fetch_wait_ms: Option<u64>,
    /// CW_PROPERTIES: librdkafka properties given to every churnwatch instance.
    cw_properties: Vec<(String, String)>,
    out: PathBuf,
    /// SKIP: phases left out (comma-separated: ceiling, churnwatch, peer, latency).
    skip: String,
}

impl Knobs {
    fn runs(&self, phase: &str) -> bool {
        !self.skip.split(',').any(|s| s.trim() == phase)
    }

    fn from_env() -> Knobs {
        let events = env_u64("EVENTS", 1_000_000);
        let customers = env_u64("CUSTOMERS", 200_000).max(1);
        // About 0.35 preamble events per customer, then 0.27 per customer-day
        // (1M customers over 21 days give 6.04M events); the span is cut at EVENTS.
        let per_customer = events as f64 / customers as f64;
        let span = (((per_customer - 0.35) / 0.27).ceil() as i64 + 1).max(7);
        let target = std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.parent()?.to_path_buf()))
            .unwrap_or_else(std::env::temp_dir);
        Knobs {
            events,
            customers,
            partitions: env_u64("PARTITIONS", 8).max(1) as i32,
            span_days: env_u64("SPAN_DAYS", span as u64) as i64,
            peer: env_u64("PEER", 1) != 0,
            python: std::env::var("PEER_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_default())
                        .join(".cache/churnwatch/peer-venv/bin/python")
                }),
            latency_secs: env_u64("LATENCY_SECS", 60),
            latency_customers: env_u64("LATENCY_CUSTOMERS", customers),
            latency_history_days: env_u64("LATENCY_HISTORY_DAYS", 30),
            latency_silent_share: env_f64("LATENCY_SILENT_SHARE").unwrap_or(0.2),
            linger_ms: env_u64("LATENCY_LINGER_MS", 1),
            fetch_wait_ms: std::env::var("FETCH_WAIT_MS")
                .ok()
                .and_then(|v| v.parse().ok()),
            cw_properties: std::env::var("CW_PROPERTIES")
                .unwrap_or_default()
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim().to_owned(), v.trim().to_owned()))
                })
                .collect(),
            skip: std::env::var("SKIP").unwrap_or_default(),
            out: std::env::var("PERF_TABLE")
                .map(PathBuf::from)
                .unwrap_or_else(|_| target.join("perf-table.md")),
        }
    }
}

#[derive(Default)]
struct Report {
    setup: Vec<String>,
    rows: Vec<Row>,
    notes: Vec<String>,
    ceiling: Option<Row>,
    churnwatch: Option<Row>,
    peer: Option<Row>,
    latency: Option<Latency>,
    memory: Option<Memory>,
    restore: Option<Restore>,
}

struct Latency {
    samples: Vec<i64>,
    /// Arrival latency (ms) of a bare consumer at the same rate: what the
    /// broker alone costs, the floor under `samples`.
    floor: Vec<i64>,
    floor_note: String,
    /// The same, with churnwatch's write load on the broker beside it.
    loaded: Vec<i64>,
    loaded_note: String,
    backlog: String,
    rate: f64,
    target_rate: f64,
    cpu_per_m: f64,
    what: String,
}

struct Memory {
    /// Settled: SETTLE_SECS after the last event was handled.
    rss: u64,
    /// When the last event was handled.
    rss_at_done: u64,
    idle_rss: u64,
    customers: u64,
    restored_rss: u64,
    restored_customers: u64,
}

struct Restore {
    /// Customers the stopped instance had, and the fresh one restored.
    customers: u64,
    restored: u64,
    records: u64,
    restore_secs: f64,
    ready_secs: f64,
    bare: Row,
}

fn run() -> Res<()> {
    let k = Knobs::from_env();
    let mut work = WorkDir::new()?;
    let dir = work.path.clone();
    let dir = dir.as_path();
    let b = BrokerProc::start()?;
    let admin = Broker::external(&b.bootstrap);
    let run_id = common::unique("perf");
    let mut rep = Report::default();
    rep.setup.push(format!(
        "broker: {} at {}; {} partitions; logs and configs in {} (kept on failure)",
        if b.is_own() {
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

    // 1. Prefill with `churnwatch generate`.
    let topic = format!("{run_id}-in");
    admin.create_topic(&topic, k.partitions, false); // with retention.ms (Quix reads it)
    progress(format!(
        "prefill: {} customers, {} days, at most {} events into {topic}",
        k.customers, k.span_days, k.events
    ));
    let t = Instant::now();
    let gen = Command::new(churnwatch_bin())
        .args([
            "generate",
            "--format",
            "protobuf",
            "--bootstrap",
            &b.bootstrap,
            "--topic",
            &topic,
        ])
        .args(["--customers", &k.customers.to_string()])
        .args(["--span", &format!("{}d", k.span_days)])
        .args(["--max-events", &k.events.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("generate: {e}"))?;
    let said = String::from_utf8_lossy(&gen.stderr);
    if !gen.status.success() {
        return Err(format!("generate failed: {}: {said}", gen.status));
    }
    // generate's own count, every message acknowledged (acks=all), checked
    // against the watermarks (tansu 0.6, the former broker, reported high
    // watermarks short of the end of its log).
    let n: u64 = said
        .split_whitespace()
        .skip_while(|w| *w != "wrote")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("generate said: {said}"))?;
    let wm = topic_messages(&b.bootstrap, &topic);
    if wm != n {
        rep.notes.push(format!(
            "the broker's high watermarks of the input add up to {wm}, not the {n} messages written (and read)"
        ));
    }
    rep.setup.push(format!(
        "input: `churnwatch generate --customers {} --span {}d --max-events {} --format protobuf` \
         (seed 42, start 2026-01-01), {n} messages, prefilled in {:.1} s",
        k.customers,
        k.span_days,
        k.events,
        t.elapsed().as_secs_f64()
    ));
    progress(format!(
        "prefill: {n} messages in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    // 2. Ceiling.
    if k.runs("ceiling") {
        progress("ceiling: bare rdkafka consumer");
        let cmd = child_cmd(&[
            "consume",
            &b.bootstrap,
            &topic,
            &format!("{run_id}-ceiling"),
            &n.to_string(),
        ])?;
        let mut ceiling = measure_child(
            "bare rdkafka consumer (ceiling)",
            cmd,
            &dir.join("ceiling.log"),
            &b,
            Duration::from_secs(3600),
        )?;
        ceiling.events = n;
        progress(format!(
            "ceiling: {:.1} s, {:.0} events/s",
            ceiling.wall,
            ceiling.rate()
        ));
        rep.rows.push(ceiling.clone());
        rep.ceiling = Some(ceiling);
    }

    // Idle instance: resident memory with 0 customers.
    if k.runs("churnwatch") {
        let idle_topic = format!("{run_id}-idle-in");
        admin.create_topic(&idle_topic, k.partitions, false);
        let idle_app = format!("{run_id}-idle");
        let mut idle = Churnwatch::spawn(
            &b,
            &CwOptions {
                app: &idle_app,
                input: &idle_topic,
                properties: k.cw_properties.clone(),
            },
            dir,
            "idle",
        )?;
        idle.wait_ready(k.partitions, Duration::from_secs(120))?;
        std::thread::sleep(Duration::from_secs(2));
        let idle_rss = proc_mem(idle.pid()).0;
        idle.stop();
        progress(format!(
            "idle churnwatch: {:.1} MB resident",
            idle_rss as f64 / 1e6
        ));

        // 3. churnwatch at full speed.
        progress("churnwatch: at-least-once, changelog and outreach on");
        let app = format!("{run_id}-cw");
        let opts = CwOptions {
            app: &app,
            input: &topic,
            properties: k.cw_properties.clone(),
        };
        let broker0 = b.cpu();
        let mut cw = Churnwatch::spawn(&b, &opts, dir, "churnwatch")?;
        let (first, wall) = cw.wait_handled(n, Duration::from_secs(3 * 3600))?;
        let cpu = proc_cpu(cw.pid());
        let (rss_done, hwm_done) = proc_mem(cw.pid());
        let broker_cpu = b.cpu().zip(broker0).map(|(a, z)| a - z);
        // customers_tracked is updated at batch ends: let one pass.
        std::thread::sleep(Duration::from_millis(2500));
        let m = cw.metrics();
        let customers = metric_sum(&m, "churnwatch_customers_tracked") as u64;
        // Settled: the input caught up, the last batches written out, and
        // the freed memory returned (churnwatch trims once it is idle).
        std::thread::sleep(Duration::from_secs(SETTLE_SECS) - Duration::from_millis(2500));
        let (rss, hwm) = proc_mem(cw.pid());
        let row = Row {
            name: "churnwatch (at-least-once, changelog + outreach)".into(),
            events: handled(&m),
            wall,
            first,
            cpu,
            rss: rss_done,
            hwm: hwm_done.max(hwm),
            broker_cpu,
            done: String::new(),
        };
        rep.notes.push(format!(
        "churnwatch: {} consumed, {} rejected, {} dropped; {} outreach, {} suppressed; {} changelog records; \
         {} timer re-scores; {} refits ok; first event at {:.1} s",
        metric_sum(&m, "churnwatch_events_consumed_total"),
        metric_sum(&m, "churnwatch_events_rejected_total"),
        metric_sum(&m, "churnwatch_events_dropped_total"),
        metric_sum(&m, "churnwatch_outreach_emitted_total"),
        metric_sum(&m, "churnwatch_outreach_suppressed_total"),
        metric_sum(&m, "churnwatch_changelog_records_written_total"),
        metric_sum(&m, "churnwatch_timers_fired_total"),
        m.lines()
            .find(|l| l.starts_with("churnwatch_model_refits_total{result=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("?"),
        first.unwrap_or(0.0),
    ));
        progress(format!(
            "churnwatch: {:.1} s, {:.0} events/s, {customers} customers",
            row.wall,
            row.rate()
        ));
        let (status, stop_secs) = cw.stop();
        rep.notes.push(format!(
            "churnwatch stop (SIGTERM): {status} in {stop_secs:.1} s"
        ));
        rep.rows.push(row.clone());
        rep.churnwatch = Some(row);

        // 4. Restore on a fresh instance, and the bare read of the changelog.
        progress("restore: fresh instance, same application id");
        let mut re = Churnwatch::spawn(&b, &opts, dir, "restore")?;
        let ready_secs = re.wait_ready(k.partitions, Duration::from_secs(1800))?;
        std::thread::sleep(Duration::from_millis(1500));
        let m = re.metrics();
        let restored_rss = proc_mem(re.pid()).0;
        let restored_customers = metric_sum(&m, "churnwatch_customers_tracked") as u64;
        let records = metric_sum(&m, "churnwatch_changelog_restore_records_total") as u64;
        // Partitions are restored together: the restore took as long as the
        // slowest one (each partition's figure runs from the common start).
        let restore_secs =
            metric_samples(&m, "churnwatch_changelog_restore_seconds_sum").fold(0.0, f64::max);
        let (status, _) = re.stop();
        rep.notes
            .push(format!("restore instance stop (SIGTERM): {status}"));
        let changelog = format!("{app}-changelog");
        let cmd = child_cmd(&["read", &b.bootstrap, &changelog])?;
        let mut bare = measure_child(
            "bare read of the changelog",
            cmd,
            &dir.join("bare-changelog.log"),
            &b,
            Duration::from_secs(1800),
        )?;
        bare.events = bare.done.parse().unwrap_or(0);
        progress(format!(
        "restore: {records} records in {restore_secs:.1} s (ready at {ready_secs:.1} s); bare read {} in {:.1} s",
        bare.events, bare.wall
    ));
        rep.memory = Some(Memory {
            rss,
            rss_at_done: rss_done,
            idle_rss,
            customers,
            restored_rss,
            restored_customers,
        });
        rep.restore = Some(Restore {
            customers,
            restored: restored_customers,
            records,
            restore_secs,
            ready_secs,
            bare,
        });
    }

    // 5. The peer.
    if k.peer && k.runs("peer") {
        if k.python.exists() {
            progress("peer: Quix Streams");
            let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer/quix_peer.py");
            let state = dir.join("quix-state");
            let mut cmd = Command::new(&k.python);
            cmd.arg("-W").arg("ignore").arg(script);
            cmd.args(["--bootstrap", &b.bootstrap, "--topic", &topic]);
            cmd.args([
                "--output",
                &format!("{run_id}-peer-out"),
                "--group",
                &format!("{run_id}-peer"),
            ]);
            cmd.args(["--expected", &n.to_string()]);
            cmd.arg("--proto-dir")
                .arg(&proto)
                .arg("--state-dir")
                .arg(&state);
            let mut peer = measure_child(
                "peer: Quix Streams (Python)",
                cmd,
                &dir.join("peer.log"),
                &b,
                Duration::from_secs(6 * 3600),
            )?;
            let done: serde_json::Value = serde_json::from_str(&peer.done).unwrap_or_default();
            peer.events = done["processed"].as_u64().unwrap_or(0);
            rep.notes.push(format!(
                "peer: {} processed, {} outreach-like records; its own CPU count {} s",
                peer.events, done["outreach"], done["cpu_s"]
            ));
            progress(format!(
                "peer: {:.1} s, {:.0} events/s",
                peer.wall,
                peer.rate()
            ));
            rep.rows.push(peer.clone());
            rep.peer = Some(peer);
        } else {
            rep.notes.push(format!(
                "peer skipped: no {} (run scripts/perf.sh)",
                k.python.display()
            ));
        }
    }

    // 6. Latency at half of churnwatch's rate.
    if k.latency_secs > 0 && k.runs("latency") {
        let max_rate = rep.churnwatch.as_ref().map_or(0.0, Row::rate);
        let rate = env_f64("LATENCY_RATE").unwrap_or(max_rate / 2.0).max(1.0);
        rep.latency = Some(latency(&k, &b, &admin, &run_id, dir, rate)?);
    }

    let table = render(&k, &rep, &b);
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

/// A history for `latency_customers` customers, processed first, then live
/// events at `rate` for `latency_secs`; event times end at now.
fn latency(
    k: &Knobs,
    b: &BrokerProc,
    admin: &Broker,
    run_id: &str,
    dir: &Path,
    rate: f64,
) -> Res<Latency> {
    let live = (rate * k.latency_secs as f64) as u64;
    let customers = k.latency_customers.max(1);
    // History: `LATENCY_HISTORY_DAYS` of the population, ending now,
    // processed first. Live: the same customers' further activity (the
    // generator again, with other seeds), each event stamped with the time
    // it is sent: event time runs at wall time, as in production, so the
    // silence timers and daily refits run at their production pace (the
    // generator's own next days, compressed into the window, made a day of
    // event time pass every 0.7 s: every timer and a refit per day fired
    // inside one minute).
    let span_days = k.latency_history_days.max(1) as i64;
    let now = unix_ms() / 1000;
    let gen = |seed: u64| {
        Generator::new(GenConfig {
            customers,
            seed,
            start: now - Span::days(span_days).as_secs(),
            span: Span::days(span_days),
            silent_share: k.latency_silent_share,
            ..GenConfig::default()
        })
    };
    let base_seed = GenConfig::default().seed;
    let history = gen(base_seed).count() as u64;
    let live_events = || {
        (1u64..)
            .flat_map(move |round| {
                gen(base_seed + round).map(move |mut ev| {
                    ev.event_id = format!("live{round}-{}", ev.event_id);
                    ev
                })
            })
            .take(live as usize)
    };
    let stamped = |ev: &churnwatch::pb::InteractionEvent| {
        let mut ev = ev.clone();
        if let Some(t) = ev.occurred_at.as_mut() {
            t.seconds = unix_ms() / 1000;
            t.nanos = 0;
        }
        ev
    };
    let total = history + live;
    let what = format!(
        "`generate` population of {customers} customers (silent share {}) over the {span_days} days before now: \
         {history} history events produced and processed first, then {live} further events of the same customers \
         live at {rate:.0} events/s, each stamped with the time it was sent (event time = wall time)",
        k.latency_silent_share,
    );
    progress(format!("latency: {what}"));

    let topic = format!("{run_id}-live-in");
    admin.create_topic(&topic, k.partitions, false);
    let app = format!("{run_id}-live");
    let mut props = k.cw_properties.clone();
    if let Some(ms) = k.fetch_wait_ms {
        props.push(("fetch.wait.max.ms".to_owned(), ms.to_string()));
    }
    let mut cw = Churnwatch::spawn(
        b,
        &CwOptions {
            app: &app,
            input: &topic,
            properties: props.clone(),
        },
        dir,
        "latency",
    )?;
    cw.wait_ready(k.partitions, Duration::from_secs(120))?;

    let producer = |linger: u64| -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &b.bootstrap)
            .set("linger.ms", linger.to_string())
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .unwrap_or_else(|e| panic!("producer: {e}"))
    };
    let send_to = |p: &BaseProducer, topic: &str, ev: &churnwatch::pb::InteractionEvent| {
        let bytes = codec::encode(ev, Format::Protobuf);
        send_record(p, topic, ev.customer_id.as_bytes(), &bytes);
    };
    let send = |p: &BaseProducer, ev: &churnwatch::pb::InteractionEvent| send_to(p, &topic, ev);
    let p = producer(20);
    for ev in gen(base_seed) {
        send(&p, &ev);
    }
    p.flush(Duration::from_secs(300))
        .map_err(|e| e.to_string())?;
    cw.wait_handled(history, Duration::from_secs(3600))?;
    progress("latency: history processed; live now");

    let p = producer(k.linger_ms);
    let log_mark = std::fs::metadata(&cw.log).map_or(0, |m| m.len());
    let live_start = unix_ms();
    let writes = |m: &str| {
        metric_sum(m, "churnwatch_changelog_records_written_total")
            + metric_sum(m, "churnwatch_outreach_emitted_total")
    };
    let writes0 = writes(&cw.metrics());
    let cpu0 = proc_cpu(cw.pid());
    let broker0 = b.cpu();
    let own0 = proc_cpu(std::process::id());
    let t0 = Instant::now();
    // Backlog (messages sent but not yet handled by churnwatch), sampled
    // every 250 ms while the live events are sent.
    let sent = AtomicU64::new(0);
    let sending = AtomicBool::new(true);
    let http = cw.http.clone();
    let max_backlog = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut max = 0u64;
            while sending.load(Ordering::Relaxed) {
                let s = sent.load(Ordering::Relaxed);
                if let Some((_, m)) = http_get(&http, "/metrics") {
                    max = max.max(s.saturating_sub(handled(&m).saturating_sub(history)));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            max
        });
        paced(live_events(), rate, |i, ev| {
            send(&p, &stamped(ev));
            sent.store(i as u64 + 1, Ordering::Relaxed);
        });
        sending.store(false, Ordering::Relaxed);
        sampler.join().unwrap_or(0)
    });
    p.flush(Duration::from_secs(300))
        .map_err(|e| e.to_string())?;
    let sent_secs = t0.elapsed().as_secs_f64();
    let write_rate = (writes(&cw.metrics()) - writes0) / sent_secs;
    let own = proc_cpu(std::process::id()) - own0;
    let broker = b.cpu().zip(broker0).map(|(a, z)| a - z);
    let backlog_end = live.saturating_sub(handled(&cw.metrics()).saturating_sub(history));
    let drain = Instant::now();
    cw.wait_handled(total, Duration::from_secs(600))?;
    let drain_secs = drain.elapsed().as_secs_f64();
    let cpu = proc_cpu(cw.pid()) - cpu0;
    let (refits, refit_ms) = refits_logged(&cw.log, log_mark);
    std::thread::sleep(Duration::from_millis(1500));
    let emitted = metric_sum(&cw.metrics(), "churnwatch_outreach_emitted_total") as usize;
    cw.stop();

    let samples = outreach_latencies(
        &b.bootstrap,
        &format!("{app}-outreach"),
        emitted,
        live_start,
    );
    progress(format!(
        "latency: {} samples of {emitted} outreach",
        samples.len()
    ));

    // The broker path alone: the same live events at the same rate into a
    // fresh topic, read by a bare consumer with churnwatch's fetch settings;
    // then again with churnwatch's own writes (its changelog and outreach
    // records, at the rate it wrote them) going to the broker beside it.
    let floor_run = |tag: &str, load: f64| -> (Vec<i64>, f64, Option<f64>) {
        progress(format!("latency: the broker path, {tag}"));
        let topic = format!("{run_id}-floor-{tag}");
        admin.create_topic(&topic, k.partitions, false);
        let load_topic = format!("{run_id}-floor-{tag}-load");
        if load > 0.0 {
            admin.create_topic(&load_topic, k.partitions, false);
        }
        let reader = reader_from_start(&b.bootstrap, &topic, Some(k.partitions), &props);
        // Let the reader connect and start fetching before the first send.
        let warm = Instant::now() + Duration::from_secs(2);
        while Instant::now() < warm {
            let _ = reader.poll(Duration::from_millis(100));
        }
        let p = producer(k.linger_ms);
        let cpu0 = b.cpu();
        let f0 = Instant::now();
        let sending = AtomicBool::new(true);
        let mut got = std::thread::scope(|scope| {
            let read = scope.spawn(|| {
                let mut out = Vec::with_capacity(live as usize);
                let mut stop_at = None;
                while (out.len() as u64) < live {
                    if stop_at.is_none() && !sending.load(Ordering::Relaxed) {
                        stop_at = Some(Instant::now() + Duration::from_secs(30));
                    }
                    if stop_at.is_some_and(|t| Instant::now() > t) {
                        break;
                    }
                    if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
                        if let Some(ts) = m.timestamp().to_millis() {
                            out.push(unix_ms() - ts);
                        }
                    }
                }
                out
            });
            if load > 0.0 {
                // Records the size of a state snapshot, keyed by customer.
                scope.spawn(|| {
                    let lp = producer(5);
                    let value = [7u8; 170];
                    let until_done = (0u64..).take_while(|_| sending.load(Ordering::Relaxed));
                    paced(until_done, load, |_, i| {
                        let key = format!("c{}", i % customers);
                        send_record(&lp, &load_topic, key.as_bytes(), &value);
                    });
                    let _ = lp.flush(Duration::from_secs(60));
                });
            }
            paced(live_events(), rate, |_, ev| {
                send_to(&p, &topic, &stamped(ev))
            });
            let _ = p.flush(Duration::from_secs(300));
            sending.store(false, Ordering::Relaxed);
            read.join().unwrap_or_default()
        });
        got.sort_unstable();
        let secs = f0.elapsed().as_secs_f64();
        let broker = b.cpu().zip(cpu0).map(|(a, z)| a - z);
        progress(format!(
            "latency: broker path ({tag}), {} of {live} messages read",
            got.len()
        ));
        (got, secs, broker)
    };
    let (floor, floor_secs, floor_broker) = floor_run("alone", 0.0);
    let (loaded, loaded_secs, loaded_broker) = floor_run("loaded", write_rate);
    let floor_n = floor.len();
    let loaded_n = loaded.len();
    Ok(Latency {
        samples,
        floor,
        loaded,
        loaded_note: format!(
            "broker path with churnwatch's writes: as above, while another producer writes {write_rate:.0} records/s of 170 bytes \
             (churnwatch's changelog and outreach records per second in its live window) to a topic of its own; {loaded_n} read, \
             the broker used {} CPU s in {loaded_secs:.1} s",
            loaded_broker.map_or("?".into(), |c| format!("{c:.1}"))
        ),
        floor_note: format!(
            "broker path alone: the same {live} live events at the same rate into a fresh topic, read by a bare consumer \
             with churnwatch's fetch settings; latency = receipt time minus CreateTime; {floor_n} read, the broker used {} CPU s in {floor_secs:.1} s",
            floor_broker.map_or("?".into(), |c| format!("{c:.1}"))
        ),
        backlog: format!(
            "backlog (sent, not yet handled) at most {max_backlog} messages ({:.2} s of input) during the live window, \
             {backlog_end} when the last was sent, drained {drain_secs:.1} s later; over the {sent_secs:.1} s of sending \
             the broker used {} CPU s and the harness (producer, generator) {own:.1} CPU s; {refits} refits of the model \
             (one per day of event time), gathered in steps and fitted beside \
             the loop, {refit_ms} ms from start to use in all",
            max_backlog as f64 / rate,
            broker.map_or("?".into(), |c| format!("{c:.1}"))
        ),
        rate: (total - history) as f64 / sent_secs,
        target_rate: rate,
        cpu_per_m: cpu / ((total - history) as f64 / 1e6),
        what,
    })
}

/// Kafka timestamp minus `churnwatch.trigger.timestamp`, in ms, for every
/// outreach record triggered by an input message produced at or after
/// `since_ms`. Reads until `want` records are seen or 60 s pass.
fn outreach_latencies(bootstrap: &str, topic: &str, want: usize, since_ms: i64) -> Vec<i64> {
    let c = reader_from_start(bootstrap, topic, None, &[]);
    let (mut seen, mut out) = (0usize, vec![]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < want && Instant::now() < deadline {
        let Some(Ok(m)) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        seen += 1;
        let trigger = m.headers().and_then(|h| {
            h.iter()
                .find(|x| x.key == "churnwatch.trigger.timestamp")
                .and_then(|x| std::str::from_utf8(x.value?).ok()?.parse::<i64>().ok())
        });
        if let (Some(tr), Some(ts)) = (trigger, m.timestamp().to_millis()) {
            if tr >= since_ms {
                out.push(ts - tr);
            }
        }
    }
    out.sort_unstable();
    out
}

// ---------------------------------------------------------------------------
// The table.

/// A consumer (no group membership, no commits) assigned every partition
/// of `topic` from the beginning, with `props` on top of the defaults.
/// `partitions`: how many, or None to ask the broker.
fn reader_from_start(
    bootstrap: &str,
    topic: &str,
    partitions: Option<i32>,
    props: &[(String, String)],
) -> BaseConsumer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false");
    for (key, v) in props {
        cfg.set(key, v);
    }
    let c: BaseConsumer = cfg
        .create()
        .unwrap_or_else(|e| panic!("reader of {topic}: {e}"));
    let parts = partitions.unwrap_or_else(|| watermarks(&c, topic).len() as i32);
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts {
        let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
    }
    c.assign(&tpl)
        .unwrap_or_else(|e| panic!("assigning {topic}: {e}"));
    c
}

/// Refits the service logged after byte `from` of its log, and the time
/// they took (their `elapsed_ms`), summed.
fn refits_logged(log: &Path, from: u64) -> (usize, u64) {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let refits: Vec<u64> = tail
        .lines()
        .filter(|l| l.contains("population model refitted"))
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("elapsed_ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    (refits.len(), refits.iter().sum())
}

/// Hands `items` to `send` at `rate` per second from now (sleeping when
/// ahead, catching up without sleep when behind).
fn paced<T>(items: impl Iterator<Item = T>, rate: f64, mut send: impl FnMut(usize, &T)) {
    let t0 = Instant::now();
    for (i, item) in items.enumerate() {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now + Duration::from_millis(1) {
            std::thread::sleep(due - now);
        }
        send(i, &item);
    }
}

/// Sends one record, waiting while the producer's queue is full.
fn send_record(p: &BaseProducer, topic: &str, key: &[u8], value: &[u8]) {
    let mut r = rdkafka::producer::BaseRecord::<[u8], [u8]>::to(topic)
        .key(key)
        .payload(value);
    while let Err((_, back)) = p.send(r) {
        r = back;
        p.poll(Duration::from_millis(5));
    }
    p.poll(Duration::ZERO);
}

/// `p50 / p99 / p999 ms` of sorted milliseconds.
fn percentiles(sorted: &[i64]) -> String {
    format!(
        "{} / {} / {} ms",
        pct(sorted, 0.5),
        pct(sorted, 0.99),
        pct(sorted, 0.999)
    )
}

fn pct(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn render(k: &Knobs, rep: &Report, b: &BrokerProc) -> String {
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line("## churnwatch end to end (benches/pipeline.rs)".into());
    line(String::new());
    for x in &rep.setup {
        line(format!("- {x}"));
    }
    if !k.cw_properties.is_empty() {
        let props: Vec<String> = k
            .cw_properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line(format!(
            "- churnwatch kafka.properties (CW_PROPERTIES): {}",
            props.join(", ")
        ));
    }
    line(String::new());
    line("| contender | events | wall s | events/s | CPU s | CPU s per 1M events | RSS (peak) | first event at s | broker CPU s |".into());
    line("|---|---:|---:|---:|---:|---:|---:|---:|---:|".into());
    for r in &rep.rows {
        line(format!(
            "| {} | {} | {:.1} | {:.0} | {:.1} | {:.2} | {} ({}) | {} | {} |",
            r.name,
            r.events,
            r.wall,
            r.rate(),
            r.cpu,
            r.cpu_per_m(),
            mb(r.rss),
            mb(r.hwm),
            r.first.map_or("-".into(), |f| format!("{f:.1}")),
            r.broker_cpu.map_or("-".into(), |c| format!("{c:.1}")),
        ));
    }
    line(String::new());
    line("| measure | figure | target | verdict |".into());
    line("|---|---|---|---|".into());
    if let (Some(c), Some(w)) = (&rep.ceiling, &rep.churnwatch) {
        let r = w.rate() / c.rate();
        line(format!(
            "| churnwatch / ceiling, rate | {r:.2} ({:.0} / {:.0} events/s) | >= 0.80 | {} |",
            w.rate(),
            c.rate(),
            verdict(r >= 0.8)
        ));
        line(format!(
            "| churnwatch / ceiling, CPU per event | {:.1}x ({:.2} / {:.2} CPU s per 1M) | - | - |",
            w.cpu_per_m() / c.cpu_per_m(),
            w.cpu_per_m(),
            c.cpu_per_m()
        ));
    }
    if let (Some(p), Some(w)) = (&rep.peer, &rep.churnwatch) {
        let r = w.rate() / p.rate();
        line(format!(
            "| churnwatch / peer, rate | {r:.2} ({:.0} / {:.0} events/s) | > 1 | {} |",
            w.rate(),
            p.rate(),
            verdict(r > 1.0)
        ));
        let c = p.cpu_per_m() / w.cpu_per_m();
        line(format!(
            "| peer / churnwatch, CPU per event | {c:.1}x less for churnwatch ({:.2} vs {:.2} CPU s per 1M) | >= 10x | {} |",
            w.cpu_per_m(),
            p.cpu_per_m(),
            verdict(c >= 10.0)
        ));
    }
    if let Some(l) = &rep.latency {
        let p99 = pct(&l.samples, 0.99);
        line(format!(
            "| decision latency at half load, p50 / p99 / p999 | {} (n = {}, at {:.0} events/s, target {:.0}; churnwatch {:.2} CPU s per 1M events) | p99 < 50 ms | {} |",
            percentiles(&l.samples),
            l.samples.len(),
            l.rate,
            l.target_rate,
            l.cpu_per_m,
            verdict(!l.samples.is_empty() && p99 < 50)
        ));
        line(format!(
            "| the broker path alone (bare consumer, same events, rate and fetch settings), p50 / p99 / p999 | {} (n = {}) | - | - |",
            percentiles(&l.floor),
            l.floor.len()
        ));
        line(format!(
            "| the broker path with churnwatch's writes beside it (same, plus its changelog and outreach rate from another producer), p50 / p99 / p999 | {} (n = {}) | - | - |",
            percentiles(&l.loaded),
            l.loaded.len()
        ));
    }
    if let Some(m) = &rep.memory {
        let per = m.rss as f64 / m.customers.max(1) as f64;
        let marginal = m.rss.saturating_sub(m.idle_rss) as f64 / m.customers.max(1) as f64;
        line(format!(
            "| resident bytes per customer | {per:.0} B settled ({} / {} customers, {SETTLE_SECS} s after the last event); {:.0} B at the last event ({}: prefetched input, changelog on its way); marginal {marginal:.0} B (idle instance {}); after restore {:.0} B ({} / {}) | <= 400 B (settled) | {} |",
            mb(m.rss),
            m.customers,
            m.rss_at_done as f64 / m.customers.max(1) as f64,
            mb(m.rss_at_done),
            mb(m.idle_rss),
            m.restored_rss as f64 / m.restored_customers.max(1) as f64,
            mb(m.restored_rss),
            m.restored_customers,
            verdict(per <= 400.0)
        ));
    }
    if let Some(r) = &rep.restore {
        let rate = r.records as f64 / r.restore_secs.max(1e-9);
        let bare = r.bare.rate();
        let complete = r.restored >= r.customers && r.records >= r.bare.events;
        line(format!(
            "| restore from the changelog | {} of {} customers{}; {} records in {:.1} s = {rate:.0} rec/s (ready {:.1} s after start); bare read {} in {:.1} s = {bare:.0} rec/s; ratio {:.2} | >= 0.70, all customers | {} |",
            r.restored,
            r.customers,
            if complete { "" } else { " (INCOMPLETE)" },
            r.records,
            r.restore_secs,
            r.ready_secs,
            r.bare.events,
            r.bare.wall,
            rate / bare,
            verdict(complete && rate / bare >= 0.7)
        ));
    }
    line(String::new());
    for x in &rep.notes {
        line(format!("- {x}"));
    }
    if let Some(l) = &rep.latency {
        line(format!("- latency events: {}", l.what));
        line(format!("- latency run: {}", l.backlog));
        line(format!("- {}", l.floor_note));
        line(format!("- {}", l.loaded_note));
        line(format!(
            "- latency producer: linger.ms={}, CreateTime stamped by librdkafka at send; churnwatch fetch.wait.max.ms: {}",
            k.linger_ms,
            k.fetch_wait_ms.map_or("default".into(), |m| m.to_string())
        ));
    }
    if let Some((rss, hwm)) = b.mem() {
        line(format!(
            "- broker (Apache Kafka, the JVM) at the end: {} resident, {} peak",
            mb(rss),
            mb(hwm)
        ));
    }
    line("- CPU = utime + stime of the contender's process (/proc/PID/stat) from start to done; RSS = VmRSS at done (VmHWM in parentheses); wall from process start to done.".into());
    s
}
