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
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_owned(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
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
