//! A three-node Apache Kafka cluster of a test's own (KRaft, each node
//! broker and controller, its own process and log directory, replication
//! factor 3, `min.insync.replicas=2`), for the cluster fault trials.
//!
//! Where the test runs as root with iproute2 (`ip netns`), every node runs
//! in a network namespace of its own, and so does the service: veth pairs
//! to a bridge in a hub namespace, private addresses `10.A.B.0/24` (A, B
//! from the test's pid), and one more veth from the test's own namespace,
//! through which its producers, readers and admin calls go. A node's link
//! can then be cut (its hub-side veth down: packets dropped, no reset) and
//! restored. Without namespaces the nodes listen on loopback and the
//! network fault is not available ([`Cluster::net`] is None).
//!
//! The nodes are prepared by `scripts/kafka.sh prepare-cluster` and each
//! run by `kafka.sh run-node` (exec'd: the child's pid is the broker's), so
//! the test can SIGKILL, SIGTERM, SIGSTOP and restart each on the same
//! address and log directory.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    ClientConfig,
};

use crate::{
    churnwatch_bin, churnwatch_command, free_port, handled_scraped, http_request, kafka_script,
    spawn_owned, Running,
};

/// Broker settings of the trials: short timeouts, so that a dead or hung
/// node is noticed (and a test's outage lasts) seconds, not half a minute.
pub const TRIAL_BROKER_PROPERTIES: &str = "\
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=500
replica.lag.time.max.ms=4000
replica.socket.timeout.ms=5000
controller.quorum.fetch.timeout.ms=2000
controller.quorum.election.timeout.ms=1000
leader.imbalance.check.interval.seconds=5
unclean.leader.election.enable=false
transaction.abort.timed.out.transaction.cleanup.interval.ms=5000
group.min.session.timeout.ms=3000";

/// The network of a cluster in namespaces.
pub struct Net {
    /// Prefix of every namespace and interface name: `cw<pid>`.
    tag: String,
    /// `10.A.B`: the subnet's first three octets.
    pub subnet: String,
}

impl Net {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    /// The namespace the service runs in.
    pub fn service_ns(&self) -> String {
        self.ns("svc")
    }

    /// The service's address.
    pub fn service_addr(&self) -> String {
        format!("{}.100", self.subnet)
    }

    fn hub_side(&self, node: usize) -> String {
        format!("{}b{node}h", self.tag)
    }

    /// Builds the hub, the bridge, a namespace per node and the service's,
    /// and the test's own link. None (with the reason on stderr) where
    /// namespaces cannot be made.
    fn build(nodes: usize) -> Option<Net> {
        if std::env::var_os("CW_NO_NETNS").is_some() {
            eprintln!("network namespaces: off (CW_NO_NETNS)");
            return None;
        }
        remove_stale();
        let pid = std::process::id();
        let net = Net {
            tag: format!("cw{pid}"),
            subnet: format!("10.{}.{}", 100 + (pid >> 8) % 100, pid & 255),
        };
        let hub = net.ns("hub");
        let mut steps: Vec<Vec<String>> = vec![
            cmd(&["netns", "add", &hub]),
            cmd(&["-n", &hub, "link", "set", "lo", "up"]),
            cmd(&["-n", &hub, "link", "add", "br0", "type", "bridge"]),
            cmd(&["-n", &hub, "link", "set", "br0", "up"]),
        ];
        let mut ends: Vec<(String, String)> = (1..=nodes)
            .map(|n| (format!("b{n}"), format!("{}.{}", net.subnet, 10 + n)))
            .collect();
        ends.push(("svc".into(), net.service_addr()));
        for (name, addr) in &ends {
            let (ns, inner, outer) = (
                net.ns(name),
                format!("{}{name}", net.tag),
                format!("{}{name}h", net.tag),
            );
            steps.extend([
                cmd(&["netns", "add", &ns]),
                cmd(&["-n", &ns, "link", "set", "lo", "up"]),
                cmd(&[
                    "link", "add", &inner, "type", "veth", "peer", "name", &outer,
                ]),
                cmd(&["link", "set", &inner, "netns", &ns]),
                cmd(&["link", "set", &outer, "netns", &hub]),
                cmd(&["-n", &hub, "link", "set", &outer, "master", "br0", "up"]),
                cmd(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    &inner,
                ]),
                cmd(&["-n", &ns, "link", "set", &inner, "up"]),
            ]);
        }
        // The test's own end, in its namespace.
        let (root, root_h) = (format!("{}r", net.tag), format!("{}rh", net.tag));
        steps.extend([
            cmd(&[
                "link", "add", &root, "type", "veth", "peer", "name", &root_h,
            ]),
            cmd(&["link", "set", &root_h, "netns", &hub]),
            cmd(&["-n", &hub, "link", "set", &root_h, "master", "br0", "up"]),
            cmd(&[
                "addr",
                "add",
                &format!("{}.254/24", net.subnet),
                "dev",
                &root,
            ]),
            cmd(&["link", "set", &root, "up"]),
        ]);
        for step in &steps {
            if let Err(e) = ip(step) {
                eprintln!(
                    "network namespaces: not available here ({e}); the cluster runs on loopback and the network fault is skipped"
                );
                net.remove();
                return None;
            }
        }
        // Removed when the test binary exits (the cluster lives in a static).
        let _ = NET_TAG.set(net.tag.clone());
        register_exit_cleanup();
        Some(net)
    }

    /// Takes node `node`'s link down (`up` false) or up again.
    pub fn set_link(&self, node: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&cmd(&[
            "-n",
            &self.ns("hub"),
            "link",
            "set",
            &self.hub_side(node),
            state,
        ]))
        .unwrap_or_else(|e| panic!("link of node {node} {state}: {e}"));
    }

    fn remove(&self) {
        remove_tag(&self.tag);
    }
}

fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn ip(args: &[String]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes every namespace and the root-side link of `tag` (errors ignored:
/// some may not exist).
fn remove_tag(tag: &str) {
    let _ = ip(&cmd(&["link", "del", &format!("{tag}r")]));
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name.starts_with(&format!("{tag}-")) {
            let _ = ip(&cmd(&["netns", "del", name]));
        }
    }
}

/// Namespaces left by test binaries that were killed (their pid is gone).
fn remove_stale() {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix("cw") else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tag(&format!("cw{pid}"));
        }
    }
}

static NET_TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static LOG_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
static FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// At exit (the cluster lives in a static, never dropped): the namespaces
/// are removed, and the nodes' logs too unless a trial failed or
/// `CW_KEEP_BROKER_LOGS` is set.
fn register_exit_cleanup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    extern "C" fn cleanup() {
        if let Some(t) = NET_TAG.get() {
            remove_tag(t);
        }
        if let Some(d) = LOG_DIR.get() {
            if FAILED.load(std::sync::atomic::Ordering::SeqCst)
                || std::env::var_os("CW_KEEP_BROKER_LOGS").is_some()
            {
                eprintln!("cluster logs kept in {}", d.display());
            } else {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    ONCE.call_once(|| {
        // SAFETY: registering a plain function; it runs at exit.
        unsafe {
            libc::atexit(cleanup);
        }
    });
}

/// Held by a trial: if it panics, the cluster's logs are kept at exit.
pub struct KeepLogsOnPanic;

impl Drop for KeepLogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            FAILED.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// One node: its process while it runs.
struct ClusterNode {
    child: Option<Child>,
    /// SIGSTOPped (a SIGCONT is due).
    stopped: bool,
}

pub struct Cluster {
    pub bootstrap: String,
    dir: PathBuf,
    nodes: Vec<ClusterNode>,
    pub net: Option<Net>,
}

impl Cluster {
    /// Prepares and starts three nodes (in namespaces where possible) and
    /// waits until all three are in the cluster's metadata.
    pub fn start(properties: &str) -> Cluster {
        let t0 = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("churnwatch-cluster-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"))
            .keep();
        let _ = LOG_DIR.set(dir.clone());
        register_exit_cleanup();
        let net = Net::build(3);
        let specs: Vec<String> = match &net {
            Some(n) => (1..=3)
                .map(|i| format!("{}.{}:9092:9093", n.subnet, 10 + i))
                .collect(),
            None => (1..=3)
                .map(|_| format!("127.0.0.1:{}:{}", free_port(), free_port()))
                .collect(),
        };
        let out = Command::new("bash")
            .arg(kafka_script())
            .arg("prepare-cluster")
            .arg(&dir)
            .args(&specs)
            .env("KAFKA_EXTRA_PROPERTIES", properties)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("kafka.sh prepare-cluster: {e}"));
        assert!(out.status.success(), "kafka.sh prepare-cluster failed");
        let bootstrap = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let mut c = Cluster {
            bootstrap,
            dir,
            nodes: (0..3)
                .map(|_| ClusterNode {
                    child: None,
                    stopped: false,
                })
                .collect(),
            net,
        };
        for n in 1..=3 {
            c.run_node(n);
        }
        c.wait_brokers(3, Duration::from_secs(180));
        eprintln!(
            "Apache Kafka three-node cluster ({}) at {} ready in {:.1} s (logs in {})",
            if c.net.is_some() {
                "one network namespace per node"
            } else {
                "loopback"
            },
            c.bootstrap,
            t0.elapsed().as_secs_f64(),
            c.dir.display()
        );
        c
    }

    fn run_node(&mut self, n: usize) {
        let mut c = match &self.net {
            Some(net) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &net.ns(&format!("b{n}")), "bash"]);
                c
            }
            None => Command::new("bash"),
        };
        c.arg(kafka_script())
            .arg("run-node")
            .arg(&self.dir)
            .arg(n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        self.nodes[n - 1].child = Some(spawn_owned(c));
        self.nodes[n - 1].stopped = false;
    }

    /// The pid of node `n`'s broker (1-based), if it runs.
    pub fn pid(&self, n: usize) -> Option<u32> {
        self.nodes[n - 1].child.as_ref().map(Child::id)
    }

    /// Sends `sig` (`-KILL`, `-TERM`, `-STOP`, `-CONT`) to node `n`; for
    /// KILL and TERM waits up to 60 s for it to exit (then SIGKILL).
    pub fn signal(&mut self, n: usize, sig: &str) {
        let node = &mut self.nodes[n - 1];
        let Some(child) = node.child.as_mut() else {
            return;
        };
        let _ = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status();
        match sig {
            "-STOP" => node.stopped = true,
            "-CONT" => node.stopped = false,
            _ => {
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        node.child = None;
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
                node.child = None;
            }
        }
    }

    /// Restarts node `n` (stopped by a signal) on its address and log
    /// directory, and waits until it says it has started (its broker
    /// registered and unfenced): a metadata check alone could pass on the
    /// controller's stale view of it.
    pub fn restart(&mut self, n: usize) {
        assert!(self.nodes[n - 1].child.is_none(), "node {n} still runs");
        let before = self.starts(n);
        self.run_node(n);
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.starts(n) <= before {
            let exited = self.nodes[n - 1]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "node {n} did not start again ({exited:?}); its log:\n{}",
                self.log_tail(n, 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// How many times node `n` has logged that it started.
    fn starts(&self, n: usize) -> usize {
        std::fs::read_to_string(self.dir.join(format!("node{n}/log/server.log")))
            .unwrap_or_default()
            .matches("Kafka Server started")
            .count()
    }

    /// Every node running, none stopped, every link up: the state each
    /// trial starts from, whatever the last one left.
    pub fn heal(&mut self) {
        for n in 1..=3 {
            let exited = match self.nodes[n - 1].child.as_mut() {
                Some(c) => c.try_wait().ok().flatten().is_some(),
                None => true,
            };
            if exited {
                self.nodes[n - 1].child = None;
                self.run_node(n);
            } else if self.nodes[n - 1].stopped {
                self.signal(n, "-CONT");
            }
            if let Some(net) = &self.net {
                net.set_link(n, true);
            }
        }
        self.wait_brokers(3, Duration::from_secs(120));
    }

    /// The active KRaft controller (the quorum's leader), from the Admin
    /// API's DescribeQuorum (`kafka.sh quorum`); retried for 60 s.
    /// Moves every partition's leadership back to its preferred replica
    /// (`kafka.sh quorum DIR elect-preferred`), as the brokers' own leader
    /// rebalance does only after `leader.imbalance.check.interval.seconds`
    /// (300 s): after an earlier trial restarted a node, it leads nothing.
    pub fn elect_preferred(&self) {
        let out = Command::new("bash")
            .arg(kafka_script())
            .arg("quorum")
            .arg(&self.dir)
            .arg("elect-preferred")
            .stderr(Stdio::null())
            .output();
        assert!(
            out.as_ref().is_ok_and(|o| o.status.success()),
            "kafka.sh quorum elect-preferred failed: {out:?}"
        );
    }

    pub fn active_controller(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("bash")
                .arg(kafka_script())
                .arg("quorum")
                .arg(&self.dir)
                .stderr(Stdio::null())
                .output();
            let text = out
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let leader = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("leader="))
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|v| (1..=3).contains(v));
            if let Some(l) = leader {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "the quorum's leader not known in 60 s (kafka.sh quorum said {text:?})"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn consumer(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "cluster-probe")
            .set("log_level", "0")
            .create()
            .unwrap_or_else(|e| panic!("probe: {e}"))
    }

    /// Waits until the metadata lists `n` brokers.
    pub fn wait_brokers(&self, n: usize, timeout: Duration) {
        let c = self.consumer();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(md) = c.fetch_metadata(None, Duration::from_secs(3)) {
                if md.brokers().len() == n {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not list {n} brokers in {timeout:?}; logs in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Leaders of each partition of `topic` (broker ids; -1: none).
    pub fn leaders(&self, topic: &str) -> Vec<i32> {
        let c = self.consumer();
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
        md.topics()
            .first()
            .map(|t| t.partitions().iter().map(|p| p.leader()).collect())
            .unwrap_or_default()
    }

    /// Waits until every partition of `topics` (and of the group and
    /// transaction state topics) has a leader and all its replicas in sync;
    /// returns how long it took.
    pub fn wait_in_sync(&self, topics: &[&str], timeout: Duration) -> Duration {
        let t0 = Instant::now();
        let c = self.consumer();
        let internal = ["__consumer_offsets", "__transaction_state"];
        loop {
            let mut behind = Vec::new();
            match c.fetch_metadata(None, Duration::from_secs(3)) {
                Ok(md) => {
                    for t in md.topics() {
                        if !topics.contains(&t.name()) && !internal.contains(&t.name()) {
                            continue;
                        }
                        for p in t.partitions() {
                            if p.leader() < 0 || p.isr().len() < p.replicas().len() {
                                behind.push(format!(
                                    "{}/{} leader {} isr {:?}",
                                    t.name(),
                                    p.id(),
                                    p.leader(),
                                    p.isr()
                                ));
                            }
                        }
                    }
                    if md.brokers().len() < 3 {
                        behind.push(format!("{} brokers", md.brokers().len()));
                    }
                }
                Err(e) => behind.push(format!("metadata: {e}")),
            }
            if behind.is_empty() {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < timeout,
                "not in sync after {timeout:?}: {}",
                behind
                    .iter()
                    .take(6)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Creates `topics` (name, compacted) with `partitions` partitions,
    /// replication factor 3 and `min.insync.replicas=2`, node `leader`
    /// first in every partition's replicas (its preferred, initial leader).
    pub fn create_topics(&self, topics: &[(&str, bool)], partitions: i32, leader: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap_or_else(|e| panic!("admin: {e}"));
        let others: Vec<i32> = (1..=3).filter(|b| *b != leader).collect();
        let assignment: Vec<Vec<i32>> = (0..partitions)
            .map(|p| {
                let mut r = vec![leader];
                if p % 2 == 0 {
                    r.extend(others.iter().copied());
                } else {
                    r.extend(others.iter().rev().copied());
                }
                r
            })
            .collect();
        let refs: Vec<&[i32]> = assignment.iter().map(Vec::as_slice).collect();
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, compact)| {
                let t = NewTopic::new(name, partitions, TopicReplication::Variable(&refs))
                    .set("min.insync.replicas", "2");
                if *compact {
                    churnwatch::pipeline::CHANGELOG_CONFIG
                        .iter()
                        .fold(t, |t, (k, v)| t.set(k, v))
                } else {
                    t.set("retention.ms", "-1")
                }
            })
            .collect();
        let r = crate::on_runtime(|rt| {
            rt.block_on(admin.create_topics(
                &new,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            ))
        });
        for x in r.unwrap_or_else(|e| panic!("create topics: {e}")) {
            if let Err((n, e)) = x {
                panic!("create {n}: {e:?}");
            }
        }
        let names: Vec<&str> = topics.iter().map(|(n, _)| *n).collect();
        self.wait_in_sync(&names, Duration::from_secs(60));
    }

    /// The last `lines` lines of node `n`'s server log.
    pub fn log_tail(&self, n: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("node{n}/log/server.log")))
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// `churnwatch run` as a child process, in the service's namespace when
/// the cluster has one, its admin HTTP on a free port there.
pub struct ClusterService {
    child: Running,
    addr: String,
}

impl ClusterService {
    pub fn spawn(
        settings: &churnwatch::settings::Settings,
        net: Option<&Net>,
        dir: &Path,
        name: &str,
    ) -> ClusterService {
        let (host, mut c) = match net {
            Some(n) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &n.service_ns()]);
                c.arg(churnwatch_bin());
                (n.service_addr(), c)
            }
            None => ("127.0.0.1".to_owned(), churnwatch_command()),
        };
        // The binary takes CHURNWATCH_* variables as settings.
        c.env_remove("CHURNWATCH_BIN");
        let addr = format!("{host}:{}", free_port());
        let mut s = settings.clone();
        s.http.listen = addr.clone();
        let config = dir.join(format!("{name}.toml"));
        let text = toml::to_string(&s).unwrap_or_else(|e| panic!("settings as TOML: {e}"));
        std::fs::write(&config, text).unwrap_or_else(|e| panic!("{e}"));
        c.args(["run", "--config"])
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("CW_CHILD_LOG").unwrap_or("warn,rdkafka::client=off".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        ClusterService {
            child: Running(spawn_owned(c)),
            addr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The admin HTTP address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// None while running; the exit status once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.0.try_wait().ok().flatten()
    }

    pub fn metrics_text(&self) -> Option<String> {
        metrics_at(&self.addr)
    }

    /// Input messages accounted for (folded, dropped or dead-lettered).
    pub fn handled(&self) -> Option<u64> {
        handled_at(&self.addr)
    }

    /// SIGTERM and the exit status (None: still running after `timeout`).
    pub fn terminate(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        crate::wait_for(timeout, || self.exited())
    }
}

/// The `/metrics` text of the service at `addr`, if it answers.
pub fn metrics_at(addr: &str) -> Option<String> {
    http_request(addr, "/metrics", None)
        .filter(|r| r.0 == 200)
        .map(|r| r.1)
}

/// Input messages the service at `addr` accounted for (folded, dropped or
/// dead-lettered), if it answers.
pub fn handled_at(addr: &str) -> Option<u64> {
    Some(handled_scraped(&metrics_at(addr)?))
}
