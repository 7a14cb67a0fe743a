//! Test support: a real broker per test binary (tansu on a free loopback
//! port, or the Kafka named by `KAFKA_BOOTSTRAP`), unique topic names, and
//! helpers to produce events and read topics back.
#![allow(dead_code)]

pub mod month;

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use churnwatch::{
    codec::{self, Format},
    pb::InteractionEvent,
    settings::Settings,
};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    message::{Headers, Message},
    producer::{BaseProducer, BaseRecord, Producer},
    ClientConfig, Offset, TopicPartitionList,
};

pub struct Broker {
    pub bootstrap: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
    pub storage: Storage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Fast; fetches that resume inside a record batch may skip it (tansu 0.6).
    Memory,
    /// Durable across broker restarts; use when resuming from committed offsets.
    Sqlite,
}

fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return PathBuf::from(p);
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/churnwatch/tools/bin/tansu");
    if cached.exists() {
        return cached;
    }
    PathBuf::from("tansu")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(19092)
}

impl Broker {
    /// The broker for one test: `KAFKA_BOOTSTRAP` if set, else a new tansu.
    pub fn start(storage: Storage) -> Broker {
        if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
            return Broker {
                bootstrap: b,
                child: None,
                _dir: None,
                storage,
            };
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let engine = match storage {
            Storage::Memory => "memory://tansu/".to_owned(),
            // tansu resolves the file relative to its working directory (the temp dir).
            Storage::Sqlite => "sqlite://tansu.db".to_owned(),
        };
        let mut b = Broker {
            bootstrap: format!("127.0.0.1:{port}"),
            child: None,
            _dir: None,
            storage,
        };
        b.child = Some(spawn_tansu(&dir, &url, &engine));
        b._dir = Some(dir);
        b.wait_ready();
        b
    }

    /// A broker that something else runs (e.g. librdkafka's mock cluster).
    pub fn external(bootstrap: &str) -> Broker {
        Broker {
            bootstrap: bootstrap.to_owned(),
            child: None,
            _dir: None,
            storage: Storage::Memory,
        }
    }

    pub fn is_tansu(&self) -> bool {
        self._dir.is_some()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c: Result<BaseConsumer, _> = ClientConfig::new()
                .set("bootstrap.servers", &self.bootstrap)
                .set("group.id", "probe")
                .create();
            if let Ok(c) = c {
                if c.fetch_metadata(None, Duration::from_secs(2)).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "broker at {} did not come up",
                self.bootstrap
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the broker process (durable storage survives).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts a stopped tansu on the same port and storage.
    pub fn restart(&mut self) {
        let Some(dir) = &self._dir else { return };
        let url = format!("tcp://{}", self.bootstrap);
        let engine = match self.storage {
            Storage::Memory => "memory://tansu/".to_owned(),
            Storage::Sqlite => "sqlite://tansu.db".to_owned(),
        };
        self.child = Some(spawn_tansu(dir, &url, &engine));
        self.wait_ready();
    }

    pub fn create_topic(&self, name: &str, partitions: i32, compact: bool) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap_or_else(|e| panic!("admin: {e}"));
        let mut t =
            NewTopic::new(name, partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1");
        if compact {
            t = t.set("cleanup.policy", "compact");
        }
        // A runtime of its own, on a thread of its own: callers may be inside one.
        let r = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap_or_else(|e| panic!("{e}"));
                    rt.block_on(admin.create_topics(&[t], &AdminOptions::new()))
                })
                .join()
                .unwrap_or_else(|_| panic!("admin thread panicked"))
        });
        let r = r.unwrap_or_else(|e| panic!("create {name}: {e}"));
        for x in r {
            if let Err((n, e)) = x {
                panic!("create {n}: {e:?}");
            }
        }
        // wait for metadata
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "probe")
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..100 {
            if let Ok(md) = c.fetch_metadata(Some(name), Duration::from_secs(2)) {
                if md
                    .topics()
                    .iter()
                    .any(|t| t.name() == name && t.partitions().len() == partitions as usize)
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("topic {name} did not appear");
    }

    pub fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap_or_else(|e| panic!("producer: {e}"))
    }

    /// Produces events keyed by customer id; `partition_of` picks the partition.
    pub fn produce(
        &self,
        topic: &str,
        events: &[InteractionEvent],
        format: Format,
        partition_of: impl Fn(&str) -> i32,
    ) {
        let p = self.producer();
        for e in events {
            let bytes = codec::encode(e, format);
            self.send_raw(
                &p,
                topic,
                Some(e.customer_id.as_bytes()),
                Some(&bytes),
                partition_of(&e.customer_id),
            );
        }
        p.flush(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("flush: {e}"));
    }

    pub fn send_raw(
        &self,
        p: &BaseProducer,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partition: i32,
    ) {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(partition);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(v) = value {
            r = r.payload(v);
        }
        let mut r = r;
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    p.poll(Duration::from_millis(50));
                }
            }
        }
        p.poll(Duration::ZERO);
    }

    /// Reads every message of a topic (all partitions) until `want` are read
    /// or `timeout` passes; `read_committed` as a transactional consumer would.
    pub fn read_topic(
        &self,
        topic: &str,
        want: usize,
        timeout: Duration,
        read_committed: bool,
    ) -> Vec<Record> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", format!("reader-{}", unique("g")))
            .set("enable.auto.commit", "false")
            .set(
                "isolation.level",
                if read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .create()
            .unwrap_or_else(|e| panic!("reader: {e}"));
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
        let parts = md.topics().first().map_or(0, |t| t.partitions().len());
        let mut tpl = TopicPartitionList::new();
        for p in 0..parts {
            let _ = tpl.add_partition_offset(topic, p as i32, Offset::Beginning);
        }
        c.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        while out.len() < want && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                out.push(Record::of(&m));
            }
        }
        out
    }
}

fn spawn_tansu(dir: &tempfile::TempDir, url: &str, engine: &str) -> Child {
    let log = std::fs::File::create(dir.path().join("tansu.log")).unwrap_or_else(|e| panic!("{e}"));
    Command::new(tansu_bin())
        .current_dir(dir.path())
        .args([
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            engine,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "starting tansu ({}): {e}; run scripts/install-tansu.sh",
                tansu_bin().display()
            )
        })
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// A consumed message, with its key and header values as text.
    pub fn of(m: &impl Message) -> Record {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_owned(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{n}-{}", std::process::id(), t % 1_000_000_007)
}

/// Service settings for a test: its own application id, topics and group.
pub fn settings(broker: &Broker, app: &str, partitions: i32) -> Settings {
    let mut s = Settings {
        application_id: app.to_owned(),
        ..Settings::default()
    };
    s.kafka.bootstrap_servers = broker.bootstrap.clone();
    s.kafka.input_topic = format!("{app}-in");
    s.kafka.outreach_topic = format!("{app}-outreach");
    s.kafka.dead_letter_topic = format!("{app}-dlq");
    s.processing.commit_interval_ms = 200;
    s.processing.idle_advance = None;
    if broker.is_tansu() {
        // tansu 0.6 does not complete cooperative (incremental) rebalances:
        // when a member leaves, the remaining member never receives the freed
        // partitions (kafka_state::two_instances... stays at [0, 1] for 60 s
        // with cooperative-sticky, and passes in 16 s with range). Eager it is.
        s.kafka.assignment_strategy = churnwatch::settings::AssignmentStrategy::Range;
    }
    s.kafka
        .properties
        .insert("topic.metadata.refresh.interval.ms".into(), "1000".into());
    broker.create_topic(&s.kafka.input_topic, partitions, false);
    s
}

/// Service settings over an existing input topic.
pub fn settings_for_topic(broker: &Broker, app: &str, input: &str) -> Settings {
    let mut s = Settings {
        application_id: app.to_owned(),
        ..Settings::default()
    };
    s.kafka.bootstrap_servers = broker.bootstrap.clone();
    s.kafka.input_topic = input.to_owned();
    s.kafka.outreach_topic = format!("{app}-outreach");
    s.kafka.dead_letter_topic = format!("{app}-dlq");
    s.processing.idle_advance = None;
    if broker.is_tansu() {
        s.kafka.assignment_strategy = churnwatch::settings::AssignmentStrategy::Range;
    }
    s
}

/// Polls `f` until it returns Some or the timeout passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when dropped (a failing test leaves nothing running).
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sum of a metric family's values (counters and gauges) over its labels.
pub fn metric(m: &churnwatch::metrics::Metrics, name: &str) -> f64 {
    m.registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| {
            f.get_metric()
                .iter()
                .map(|x| x.get_counter().get_value() + x.get_gauge().get_value())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Every input message accounted for: folded, dropped or dead-lettered.
pub fn handled(m: &churnwatch::metrics::Metrics) -> u64 {
    (metric(m, "churnwatch_events_consumed_total")
        + metric(m, "churnwatch_events_dropped_total")
        + metric(m, "churnwatch_events_rejected_total")) as u64
}

/// The outreach ids of outreach records read from a topic.
pub fn outreach_ids(records: &[Record]) -> Vec<String> {
    use prost::Message as _;
    records
        .iter()
        .map(|r| {
            churnwatch::pb::OutreachRequested::decode(r.value.as_deref().unwrap_or_default())
                .map(|o| o.outreach_id)
                .unwrap_or_default()
        })
        .collect()
}

/// The outreach ids `churnwatch replay` gives on the same events.
pub fn replay_ids(
    evs: &[InteractionEvent],
    core: churnwatch::config::CoreConfig,
) -> std::collections::BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let input = dir.path().join("in.pb");
    month::write_events(&input, evs, Format::Protobuf);
    let out = dir.path().join("out.jsonl");
    let opts = churnwatch::replay::ReplayOptions {
        inputs: vec![input],
        format: Format::Protobuf,
        outreach_out: Some(out.clone()),
        ..Default::default()
    };
    churnwatch::replay::replay(core, &opts).unwrap_or_else(|e| panic!("{e}"));
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<churnwatch::pb::OutreachRequested>(l)
                .map(|o| o.outreach_id)
                .unwrap_or_default()
        })
        .collect()
}

/// (status, body) of a plain HTTP/1.1 GET on loopback, with a bearer token.
pub fn http_get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    http_request(("127.0.0.1", port), path, auth.as_deref())
}

/// (status, body) of a plain HTTP/1.1 GET, with `authorization` (the whole
/// header value) if given.
pub fn http_request(
    addr: impl std::net::ToSocketAddrs,
    path: &str,
    authorization: Option<&str>,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = authorization
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Some((status, body))
}

/// Sum of a metric family's samples in Prometheus text (all label sets).
pub fn scraped(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `churnwatch run` as a child process, with its admin HTTP on a free port.
pub struct Service {
    pub child: Running,
    pub port: u16,
    config: PathBuf,
}

impl Service {
    /// Writes `settings` (with a fresh `http.listen`) next to `dir` and starts the binary.
    pub fn spawn(settings: &Settings, dir: &std::path::Path, name: &str) -> Service {
        let port = free_port();
        let mut s = settings.clone();
        s.http.listen = format!("127.0.0.1:{port}");
        let config = dir.join(format!("{name}.toml"));
        let text = toml::to_string(&s).unwrap_or_else(|e| panic!("settings as TOML: {e}"));
        std::fs::write(&config, text).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(env!("CARGO_BIN_EXE_churnwatch"))
            .args(["run", "--config"])
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("CW_CHILD_LOG").unwrap_or("error,rdkafka::client=off".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting churnwatch: {e}"));
        Service {
            child: Running(child),
            port,
            config,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// None while running; the exit status once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.0.try_wait().ok().flatten()
    }

    /// The `/metrics` text, if the admin server answers.
    pub fn metrics_text(&self) -> Option<String> {
        http_get(self.port, "/metrics", None)
            .filter(|r| r.0 == 200)
            .map(|r| r.1)
    }

    /// Input messages accounted for (folded, dropped or dead-lettered), or
    /// None if `/metrics` does not answer.
    pub fn handled(&self) -> Option<u64> {
        let t = self.metrics_text()?;
        Some(
            (scraped(&t, "churnwatch_events_consumed_total")
                + scraped(&t, "churnwatch_events_dropped_total")
                + scraped(&t, "churnwatch_events_rejected_total")) as u64,
        )
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status();
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// SIGTERM and wait for the exit status (None: still running at the timeout,
    /// then killed).
    pub fn terminate(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.signal("-TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }
}

impl Broker {
    /// High watermark of every partition of `topic`.
    pub fn end_offsets(&self, topic: &str) -> Vec<i64> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "probe")
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        // Retried for a while: the broker may just be coming back.
        let mut last = String::new();
        for _ in 0..10 {
            let got = c
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .map_err(|e| format!("metadata of {topic}: {e}"))
                .and_then(|md| {
                    let parts = md.topics().first().map_or(0, |t| t.partitions().len());
                    (0..parts as i32)
                        .map(|p| {
                            c.fetch_watermarks(topic, p, Duration::from_secs(5))
                                .map(|w| w.1)
                                .map_err(|e| format!("watermarks of {topic}/{p}: {e}"))
                        })
                        .collect::<Result<Vec<i64>, String>>()
                });
            match got {
                Ok(v) if !v.is_empty() => return v,
                Ok(_) => last = format!("{topic} has no partitions"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{last}");
    }

    /// The offsets `group` committed on `topic` (-1 where none), or None if
    /// the broker does not answer.
    pub fn committed(&self, group: &str, topic: &str, partitions: usize) -> Option<Vec<i64>> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .ok()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition(topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(5)).ok()?;
        Some(
            (0..partitions as i32)
                .map(|p| {
                    got.find_partition(topic, p)
                        .and_then(|e| e.offset().to_raw())
                        .unwrap_or(-1)
                })
                .collect(),
        )
    }

    /// Waits until `group` has committed the end of every partition of `topic`.
    pub fn wait_committed_to_end(&self, group: &str, topic: &str, timeout: Duration) -> bool {
        let end = self.end_offsets(topic);
        wait_for(timeout, || {
            (self.committed(group, topic, end.len()).as_ref() == Some(&end)).then_some(())
        })
        .is_some()
    }

    /// Every record of `topic`, up to its end as of now.
    pub fn read_all(&self, topic: &str, timeout: Duration) -> Vec<Record> {
        let end = self.end_offsets(topic);
        let want = end.iter().map(|e| *e as usize).sum();
        let got = self.read_topic(topic, want, timeout, false);
        assert_eq!(
            got.len(),
            want,
            "read {} of the {want} records of {topic} in {timeout:?}",
            got.len()
        );
        got
    }
}

/// Final customer states from changelog records: the last value per key, a
/// tombstone deletes; churnwatch's own keys (leading NUL) are left out.
pub fn final_states(changelog: &[Record]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut by_partition: Vec<&Record> = changelog.iter().collect();
    by_partition.sort_by_key(|r| (r.partition, r.offset));
    let mut out = std::collections::BTreeMap::new();
    for r in by_partition {
        let Some(k) = r.key.clone() else { continue };
        if k.starts_with('\u{0}') {
            continue;
        }
        match &r.value {
            Some(v) => {
                out.insert(k, v.clone());
            }
            None => {
                out.remove(&k);
            }
        }
    }
    out
}

impl Broker {
    /// Stops a tansu broker with a signal (`-TERM`, `-KILL`), waiting up to
    /// 10 s for it to exit (then SIGKILL). Durable storage survives; use
    /// [`Broker::restart`] to bring it back on the same port and storage.
    pub fn stop_with(&mut self, sig: &str) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Broker {
    /// The last `lines` lines of tansu's log (empty for an external broker).
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(dir) = &self._dir else {
            return String::new();
        };
        let text = std::fs::read_to_string(dir.path().join("tansu.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Broker {
    /// Every record of `topic` up to its end as of now, as a read-committed
    /// (or uncommitted) reader sees them: reads until each partition's
    /// position reaches its high watermark, or nothing arrives for 2 s
    /// (transaction markers may hold a position just short of it).
    pub fn read_to_end(&self, topic: &str, read_committed: bool, timeout: Duration) -> Vec<Record> {
        let end = self.end_offsets(topic);
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", format!("reader-{}", unique("g")))
            .set("enable.auto.commit", "false")
            .set(
                "isolation.level",
                if read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .create()
            .unwrap_or_else(|e| panic!("reader: {e}"));
        let mut tpl = TopicPartitionList::new();
        for p in 0..end.len() as i32 {
            let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
        }
        c.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        let mut last = Instant::now();
        loop {
            let done = c.position().is_ok_and(|pos| {
                end.iter().enumerate().all(|(p, hw)| {
                    *hw == 0
                        || pos
                            .find_partition(topic, p as i32)
                            .and_then(|e| e.offset().to_raw())
                            .is_some_and(|o| o >= *hw)
                })
            });
            if done || last.elapsed() > Duration::from_secs(2) || Instant::now() > deadline {
                return out;
            }
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                last = Instant::now();
                out.push(Record::of(&m));
            }
        }
    }
}
