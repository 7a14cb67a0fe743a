//! Test support: a real broker per test binary (Apache Kafka 4.x in KRaft
//! mode on a free loopback port, run by scripts/kafka.sh, or the Kafka named
//! by `KAFKA_BOOTSTRAP`), brokers of a test's own to stop and restart, unique
//! topic names, and helpers to produce events and read topics back.
#![allow(dead_code)]

pub mod cluster;
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

/// A Kafka broker for tests: Apache Kafka (scripts/kafka.sh, KRaft, one
/// node on loopback) unless `KAFKA_BOOTSTRAP` names another.
pub struct Broker {
    pub bootstrap: String,
    /// The broker process this handle runs, if any (see [`Broker::own`]).
    node: Option<Node>,
}

/// One Apache Kafka node run by `scripts/kafka.sh run DIR`: the process is
/// `java` itself (the script execs it), so its pid is the broker's.
struct Node {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `KAFKA_EXTRA_PROPERTIES` and `KAFKA_FORMAT_ARGS` for the script.
    env: Vec<(String, String)>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(19092)
}

fn kafka_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh")
}

/// Starts `kafka.sh run DIR` from a thread that lives as long as the test
/// process, with the parent-death signal set: when the test binary exits (or
/// is killed), the broker is killed too, even the shared one nothing drops.
/// (The signal follows the spawning thread, hence the one long-lived thread.)
fn spawn_node(dir: &std::path::Path, env: &[(String, String)]) -> Child {
    use std::sync::{mpsc, Mutex, OnceLock};
    type Job = (
        PathBuf,
        Vec<(String, String)>,
        mpsc::Sender<std::io::Result<Child>>,
    );
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for (dir, env, back) in rx {
                let _ = back.send(node_command(&dir).envs(env).spawn());
            }
            // The senders live in a static: never reached, so this thread
            // (the parent the death signal watches) lives until exit.
            loop {
                std::thread::park();
            }
        });
        Mutex::new(tx)
    });
    let (back, got) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((dir.to_owned(), env.to_vec(), back))
        .unwrap_or_else(|e| panic!("the broker spawner is gone: {e}"));
    got.recv()
        .unwrap_or_else(|e| panic!("the broker spawner is gone: {e}"))
        .unwrap_or_else(|e| panic!("starting {}: {e}", kafka_script().display()))
}

fn node_command(dir: &std::path::Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("bash");
    c.arg(kafka_script())
        .arg("run")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("run.log"))
                .unwrap_or_else(|e| panic!("{e}")),
        ));
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

impl Node {
    fn start(env: Vec<(String, String)>) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("churnwatch-kafka-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let child = Some(spawn_node(dir.path(), &env));
        Node { dir, child, env }
    }

    fn bootstrap(&mut self) -> String {
        let file = self.dir.path().join("bootstrap");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(b) = std::fs::read_to_string(&file) {
                if !b.trim().is_empty() {
                    return b.trim().to_owned();
                }
            }
            self.assert_running(deadline);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics with the broker's logs if it exited or the deadline passed.
    fn assert_running(&mut self, deadline: Instant) {
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if exited.is_some() || Instant::now() > deadline {
            panic!(
                "Apache Kafka in {} {}; its logs:\n{}",
                self.dir.path().display(),
                match exited {
                    Some(s) => format!("exited ({s})"),
                    None => "did not come up in time".to_owned(),
                },
                self.log_tail(40)
            );
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for f in [
            "run.log",
            "node1/log/format.log",
            "node1/log/stdout.log",
            "node1/log/server.log",
        ] {
            let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            if !all.is_empty() {
                out += &format!(
                    "== {f}\n{}\n",
                    all[all.len().saturating_sub(lines)..].join("\n")
                );
            }
        }
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() || std::env::var_os("CW_KEEP_BROKER_LOGS").is_some() {
            // Keep the logs of a failed test.
            let dir = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
            );
            eprintln!("broker logs kept in {}", dir.keep().display());
        }
    }
}

impl Broker {
    /// The broker for a test: `KAFKA_BOOTSTRAP` if set, else this test
    /// binary's Apache Kafka (started on first use, shared by its tests:
    /// topics and groups are unique per test; killed when the binary exits).
    pub fn start() -> Broker {
        use std::sync::OnceLock;
        static SHARED: OnceLock<String> = OnceLock::new();
        if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
            return Broker::external(&b);
        }
        let bootstrap = SHARED.get_or_init(|| {
            let t0 = Instant::now();
            let mut node = Node::start(Vec::new());
            let b = Broker {
                bootstrap: node.bootstrap(),
                node: None,
            };
            b.wait_ready_or(|| node.assert_running(t0 + Duration::from_secs(120)));
            eprintln!(
                "Apache Kafka (this test binary's) at {} ready in {:.1} s",
                b.bootstrap,
                t0.elapsed().as_secs_f64()
            );
            // Lives as long as the process (the death signal stops it).
            std::mem::forget(node);
            b.bootstrap
        });
        Broker::external(bootstrap)
    }

    /// A broker of this test's own, to stop and restart (its log directory
    /// survives): None with `KAFKA_BOOTSTRAP` set (a broker the test cannot
    /// restart).
    pub fn own() -> Option<Broker> {
        Broker::own_with("", "")
    }

    /// As [`Broker::own`], with lines added to the broker's
    /// server.properties (`@PORT@`, `@CONTROLLER_PORT@`: its ports) and
    /// arguments to its storage format (e.g. `--add-scram ...`).
    pub fn own_with(properties: &str, format_args: &str) -> Option<Broker> {
        if std::env::var_os("KAFKA_BOOTSTRAP").is_some() {
            return None;
        }
        let t0 = Instant::now();
        let mut node = Node::start(vec![
            ("KAFKA_EXTRA_PROPERTIES".to_owned(), properties.to_owned()),
            ("KAFKA_FORMAT_ARGS".to_owned(), format_args.to_owned()),
        ]);
        let bootstrap = node.bootstrap();
        let b = Broker {
            bootstrap,
            node: Some(node),
        };
        b.wait_until_ready(t0);
        Some(b)
    }

    /// A broker that something else runs (e.g. librdkafka's mock cluster).
    pub fn external(bootstrap: &str) -> Broker {
        Broker {
            bootstrap: bootstrap.to_owned(),
            node: None,
        }
    }

    /// True when the broker is the Apache Kafka these tests run themselves.
    pub fn is_own_kafka(&self) -> bool {
        std::env::var_os("KAFKA_BOOTSTRAP").is_none()
    }

    fn wait_until_ready(&self, t0: Instant) {
        let deadline = t0 + Duration::from_secs(120);
        self.wait_ready_or(|| {
            if Instant::now() > deadline {
                panic!(
                    "Apache Kafka at {} did not come up in 120 s; its logs:\n{}",
                    self.bootstrap,
                    self.log_tail(40)
                );
            }
        });
    }

    /// Polls metadata until the broker answers, calling `check` between tries.
    fn wait_ready_or(&self, mut check: impl FnMut()) {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "probe")
            .set("log_level", "0")
            .create()
            .unwrap_or_else(|e| panic!("probe: {e}"));
        loop {
            if let Ok(md) = c.fetch_metadata(None, Duration::from_secs(2)) {
                if !md.brokers().is_empty() {
                    return;
                }
            }
            check();
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the broker process (SIGKILL; the log directory survives).
    pub fn stop(&mut self) {
        self.stop_with("-KILL");
    }

    /// Stops this test's own broker with a signal (`-TERM`, `-KILL`),
    /// waiting up to 30 s for it to exit (then SIGKILL). The log directory
    /// survives; [`Broker::restart`] brings it back on the same port.
    pub fn stop_with(&mut self, sig: &str) {
        let Some(mut c) = self.node.as_mut().and_then(|n| n.child.take()) else {
            return;
        };
        let _ = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Restarts this test's own stopped broker on the same port and log directory.
    pub fn restart(&mut self) {
        let Some(node) = self.node.as_mut() else {
            return;
        };
        assert!(node.child.is_none(), "restart: the broker is still running");
        let t0 = Instant::now();
        node.child = Some(spawn_node(node.dir.path(), &node.env));
        self.wait_until_ready(t0);
    }

    /// The last `lines` lines of each of the broker's logs (empty for a
    /// broker these tests do not run).
    pub fn log_tail(&self, lines: usize) -> String {
        self.node
            .as_ref()
            .map(|n| n.log_tail(lines))
            .unwrap_or_default()
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

    /// Sets topic configs (e.g. `max.message.bytes`) through the admin API.
    pub fn alter_topic(&self, topic: &str, configs: &[(&str, &str)]) {
        use rdkafka::admin::{AlterConfig, ResourceSpecifier};
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap_or_else(|e| panic!("admin: {e}"));
        let mut c = AlterConfig::new(ResourceSpecifier::Topic(topic));
        for (k, v) in configs {
            c = c.set(k, v);
        }
        let r = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap_or_else(|e| panic!("{e}"));
                    rt.block_on(admin.alter_configs(&[c], &AdminOptions::new()))
                })
                .join()
                .unwrap_or_else(|_| panic!("admin thread panicked"))
        });
        for x in r.unwrap_or_else(|e| panic!("alter {topic}: {e}")) {
            if let Err((_, e)) = x {
                panic!("alter {topic} {configs:?}: {e:?}");
            }
        }
    }

    /// Every config of a topic as the broker describes it (name, value).
    pub fn topic_config(&self, topic: &str) -> Vec<(String, String)> {
        use rdkafka::admin::{ConfigResourceResult, ResourceSpecifier};
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap_or_else(|e| panic!("admin: {e}"));
        let r =
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap_or_else(|e| panic!("{e}"));
                        rt.block_on(admin.describe_configs(
                            &[ResourceSpecifier::Topic(topic)],
                            &AdminOptions::new(),
                        ))
                    })
                    .join()
                    .unwrap_or_else(|_| panic!("admin thread panicked"))
            });
        match r.as_deref() {
            Ok([ConfigResourceResult::Ok(c)]) => c
                .entries
                .iter()
                .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
                .collect(),
            other => panic!("describe {topic}: {other:?}"),
        }
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
