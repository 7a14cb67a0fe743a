//! Apache Kafka for tests and the load harness: the shared broker of a test
//! binary ([`Broker::start`]), brokers of a test's own to stop and restart
//! ([`Broker::own`], [`Broker::own_with`]), each one KRaft node on a free
//! loopback port run by `scripts/kafka.sh run DIR`, or the Kafka named by
//! `KAFKA_BOOTSTRAP`.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    ClientConfig,
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

/// scripts/kafka.sh, the one launcher of every Apache Kafka here.
pub fn kafka_script() -> PathBuf {
    crate::repo_root().join("scripts/kafka.sh")
}

/// The Apache Kafka version scripts/kafka.sh runs: `KAFKA_VERSION`, else
/// the one pinned in the script.
pub fn kafka_version() -> String {
    if let Ok(v) = std::env::var("KAFKA_VERSION") {
        return v;
    }
    let script = std::fs::read_to_string(kafka_script()).unwrap_or_default();
    script
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_VERSION=\"${KAFKA_VERSION:-"))
        .and_then(|r| r.split('}').next())
        .unwrap_or("(version unknown)")
        .to_owned()
}

/// Starts `kafka.sh run DIR` (see [`crate::process::spawn_owned`]: the
/// broker dies with the test binary).
fn spawn_node(dir: &std::path::Path, env: &[(String, String)]) -> Child {
    let mut c = node_command(dir);
    c.envs(env.iter().map(|(k, v)| (k, v)));
    crate::process::spawn_owned(c)
}

fn node_command(dir: &std::path::Path) -> Command {
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

    /// The pid of the broker process this handle runs (the JVM: the script
    /// execs `java`), for its CPU and memory; None for a shared or external
    /// broker, or one stopped.
    pub fn pid(&self) -> Option<u32> {
        self.node.as_ref()?.child.as_ref().map(Child::id)
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
}
