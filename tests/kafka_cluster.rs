//! Faults on a three-node Apache Kafka cluster (churnwatch-testkit's
//! `cluster`: KRaft, every node broker and controller in a process and, where the
//! test runs as root, a network namespace of its own; replication factor 3,
//! `min.insync.replicas=2`, short broker session and replica lag timeouts:
//! [`TRIAL_BROKER_PROPERTIES`]), each injected mid-stream while one service
//! process (`churnwatch run`, in a namespace of its own) runs:
//!
//! 1. SIGKILL of the node that leads every partition of the input,
//!    changelog, outreach and dead-letter topics (not the controller), then
//!    its restart;
//! 2. SIGKILL of the active KRaft controller (the quorum's leader, from the
//!    Admin API's DescribeQuorum), then its restart;
//! 3. a rolling restart of all three (SIGTERM, restart, wait until every
//!    replica is back in sync, next);
//! 4. SIGSTOP of the leading node, chosen to be the group's coordinator
//!    too, for longer than the broker session timeout (a hung broker, not a
//!    dead one), then SIGCONT;
//! 5. the leading node cut off the network (its veth down in the hub) for
//!    longer than the session timeouts, then back.
//!
//! In each, the service rides it out: the same process throughout, never
//! exiting, and it stops with status 0 on SIGTERM at the end. Nothing is
//! lost: at-least-once gives the clean run's outreach id set and final
//! customer states (repeats allowed and counted); exactly-once gives, to a
//! read-committed reader, the clean run's ids with no repeats and its final
//! states. The clean run of each mode is the same input on the same
//! cluster without a fault. Every fault runs in both modes.
//!
//! The trials share one cluster (started on first use) and run one at a
//! time. `KAFKA_BOOTSTRAP` does not apply: the trials kill, stop and cut
//! the nodes of a cluster they run themselves.

use churnwatch_testkit as common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Mutex, MutexGuard, OnceLock},
    time::{Duration, Instant},
};

use churnwatch::{
    codec::Format,
    generate::{GenConfig, Generator},
    pb::InteractionEvent,
    settings::{AssignmentStrategy, Guarantee, Settings},
    time::Span,
};
use common::{
    cluster::{Cluster, ClusterService, TRIAL_BROKER_PROPERTIES},
    final_states, outreach_ids, unique, Broker,
};

const PARTITIONS: i32 = 4;

fn population() -> Vec<InteractionEvent> {
    Generator::new(GenConfig {
        customers: 150,
        span: Span::days(45),
        seed: 31,
        ..GenConfig::default()
    })
    .collect()
}

fn partition_of(id: &str) -> i32 {
    (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % PARTITIONS as u64) as i32
}

/// The shared cluster, locked for one trial at a time; None with
/// `KAFKA_BOOTSTRAP` set.
fn cluster() -> Option<MutexGuard<'static, Cluster>> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    if std::env::var_os("KAFKA_BOOTSTRAP").is_some() {
        eprintln!(
            "skipped: KAFKA_BOOTSTRAP names a cluster these trials cannot kill, stop or cut off (they run their own three nodes)"
        );
        return None;
    }
    let m = CLUSTER.get_or_init(|| Mutex::new(Cluster::start(TRIAL_BROKER_PROPERTIES)));
    Some(m.lock().unwrap_or_else(|e| e.into_inner()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    AtLeastOnce,
    ExactlyOnce,
}

fn settings(c: &Cluster, app: &str, mode: Mode) -> Settings {
    let mut s = Settings {
        application_id: app.to_owned(),
        ..Settings::default()
    };
    s.kafka.bootstrap_servers = c.bootstrap.clone();
    s.kafka.input_topic = format!("{app}-in");
    s.kafka.outreach_topic = format!("{app}-outreach");
    s.kafka.dead_letter_topic = format!("{app}-dlq");
    // The test creates all four (replication 3, min ISR 2, a chosen leader).
    s.kafka.create_topics = false;
    s.kafka.replication_factor = 3;
    s.processing.commit_interval_ms = 200;
    // Event time only: the outcome is a function of the input.
    s.processing.idle_advance = Some(Span::seconds(0));
    s.model.min_customers = i64::MAX as u64;
    s.shutdown.timeout = Span::seconds(30);
    for (k, v) in [
        ("topic.metadata.refresh.interval.ms", "1000"),
        ("heartbeat.interval.ms", "500"),
        ("session.timeout.ms", "6000"),
    ] {
        s.kafka.properties.insert(k.into(), v.into());
    }
    if mode == Mode::ExactlyOnce {
        s.processing.guarantee = Guarantee::ExactlyOnce;
        s.kafka.group_instance_id = Some("cluster-1".into());
        s.kafka.assignment_strategy = AssignmentStrategy::Range;
    }
    s
}

/// The four topics of `s`, node `leader` the preferred leader of each
/// partition; checks replication 3 and `min.insync.replicas=2` as the
/// brokers describe them.
fn create_topics(c: &Cluster, s: &Settings, leader: i32) -> Vec<String> {
    let changelog = s.changelog_topic();
    let names = [
        s.kafka.input_topic.clone(),
        changelog.clone(),
        s.kafka.outreach_topic.clone(),
        s.kafka.dead_letter_topic.clone(),
    ];
    let specs: Vec<(&str, bool)> = names
        .iter()
        .map(|n| (n.as_str(), *n == changelog))
        .collect();
    c.create_topics(&specs, PARTITIONS, leader);
    let b = Broker::external(&c.bootstrap);
    for n in &names {
        // Retried: a broker that has not yet applied the new topic's
        // metadata describes no configs for it.
        let min_isr = common::wait_for(Duration::from_secs(20), || {
            b.topic_config(n)
                .into_iter()
                .find(|(k, _)| k == "min.insync.replicas")
                .map(|(_, v)| v)
        });
        assert_eq!(min_isr.as_deref(), Some("2"), "{n}: min.insync.replicas");
    }
    names.to_vec()
}

/// Produces `evs` keyed by customer with an idempotent, acks=all producer
/// (a retry after a broker fault neither reorders nor repeats the input),
/// `chunk` at a time with `pause` between; waits out outages.
fn stream(bootstrap: &str, topic: &str, evs: &[InteractionEvent], chunk: usize, pause: Duration) {
    use rdkafka::{
        config::ClientConfig,
        producer::{BaseProducer, BaseRecord, Producer},
    };
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .set("log_level", "0")
        .create()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    for (i, e) in evs.iter().enumerate() {
        if i > 0 && i % chunk == 0 && !pause.is_zero() {
            let end = Instant::now() + pause;
            while Instant::now() < end {
                p.poll(Duration::from_millis(10));
            }
        }
        let bytes = churnwatch::codec::encode(e, Format::Protobuf);
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(partition_of(&e.customer_id))
            .key(e.customer_id.as_bytes())
            .payload(&bytes[..]);
        while let Err((_, back)) = p.send(r) {
            r = back;
            p.poll(Duration::from_millis(50));
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("flush: {e}"));
}

/// What a run left: outreach ids in topic order and final states, as a
/// read-committed reader sees them in exactly-once mode.
struct Outcome {
    ids: Vec<String>,
    states: BTreeMap<String, Vec<u8>>,
}

impl Outcome {
    fn read(c: &Cluster, s: &Settings, mode: Mode) -> Outcome {
        let b = Broker::external(&c.bootstrap);
        let (out, changelog) = match mode {
            Mode::AtLeastOnce => (
                b.read_all(&s.kafka.outreach_topic, Duration::from_secs(60)),
                b.read_all(&s.changelog_topic(), Duration::from_secs(60)),
            ),
            Mode::ExactlyOnce => (
                b.read_to_end(&s.kafka.outreach_topic, true, Duration::from_secs(60)),
                b.read_to_end(&s.changelog_topic(), true, Duration::from_secs(60)),
            ),
        };
        Outcome {
            ids: outreach_ids(&out),
            states: final_states(&changelog),
        }
    }

    fn distinct(&self) -> BTreeSet<String> {
        self.ids.iter().cloned().collect()
    }

    fn repeats(&self) -> usize {
        self.ids.len() - self.distinct().len()
    }

    /// Nothing lost, nothing foreign, the same final state per customer;
    /// in exactly-once mode, nothing repeated either.
    fn assert_matches(&self, clean: &Outcome, mode: Mode, what: &str) {
        let (got, want) = (self.distinct(), clean.distinct());
        let lost: Vec<&String> = want.difference(&got).collect();
        let foreign: Vec<&String> = got.difference(&want).collect();
        assert!(
            lost.is_empty() && foreign.is_empty(),
            "{what}: {} outreach ids lost {lost:?}, {} foreign {foreign:?}",
            lost.len(),
            foreign.len()
        );
        if mode == Mode::ExactlyOnce {
            assert_eq!(
                self.repeats(),
                0,
                "{what}: exactly-once: no outreach id twice for a read-committed reader"
            );
        }
        let differing: Vec<&String> = clean
            .states
            .iter()
            .filter(|(k, v)| self.states.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        assert!(
            differing.is_empty() && self.states.len() == clean.states.len(),
            "{what}: {} customers' final state differs from the clean run's (customers {} vs {}), e.g. {:?}",
            differing.len(),
            self.states.len(),
            clean.states.len(),
            differing.iter().take(5).collect::<Vec<_>>()
        );
    }
}

/// Waits until the group committed the end of the input; fails if the
/// service exits meanwhile.
fn wait_to_end(c: &Cluster, s: &Settings, svc: &mut ClusterService, what: &str) {
    let b = Broker::external(&c.bootstrap);
    let end = b.end_offsets(&s.kafka.input_topic);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(status) = svc.exited() {
            panic!("{what}: the service exited ({status}) before the end of the input");
        }
        if b.committed(s.group_id(), &s.kafka.input_topic, end.len())
            .as_ref()
            == Some(&end)
        {
            return;
        }
        if Instant::now() > deadline {
            let m = svc.metrics_text().unwrap_or_default();
            let ready = common::http_request(svc.addr(), "/readyz", None).map(|r| r.1);
            panic!(
                "{what}: the input was not committed to its end ({end:?}) within 240 s: committed {:?}; \
                 the service: /readyz {ready:?}, assigned partitions {}, rebalances {}, commits ok {}",
                b.committed(s.group_id(), &s.kafka.input_topic, end.len()),
                common::scraped(&m, "churnwatch_assigned_partitions"),
                common::scraped(&m, "churnwatch_rebalances_total"),
                common::scraped(&m, "churnwatch_commits_total{result=\"ok\"}"),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The clean run of `mode` (computed once): the whole input first, then one
/// instance to the end, no fault.
fn clean(c: &Cluster, mode: Mode, evs: &[InteractionEvent]) -> &'static Outcome {
    static ALO: OnceLock<Outcome> = OnceLock::new();
    static EOS: OnceLock<Outcome> = OnceLock::new();
    let cell = match mode {
        Mode::AtLeastOnce => &ALO,
        Mode::ExactlyOnce => &EOS,
    };
    cell.get_or_init(|| {
        let t0 = Instant::now();
        let app = unique("cw-cl-clean");
        let s = settings(c, &app, mode);
        create_topics(c, &s, 1);
        stream(
            &c.bootstrap,
            &s.kafka.input_topic,
            evs,
            evs.len(),
            Duration::ZERO,
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut svc = ClusterService::spawn(&s, c.net.as_ref(), dir.path(), "clean");
        wait_to_end(c, &s, &mut svc, "clean run");
        let status = svc.terminate(Duration::from_secs(40));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "clean run: exit 0");
        let o = Outcome::read(c, &s, mode);
        assert_eq!(o.repeats(), 0, "the clean run sends each outreach once");
        assert!(!o.ids.is_empty() && !o.states.is_empty());
        eprintln!(
            "clean run ({mode:?}): {} events, {} outreach, {} customers ({:.1} s)",
            evs.len(),
            o.ids.len(),
            o.states.len(),
            t0.elapsed().as_secs_f64()
        );
        o
    })
}

/// One trial: the service on its own topics (node `pick_leader` leading
/// every partition), the input streamed in over ~20 s, `fault` injected
/// once a quarter of it is handled, then to the end; compared with the
/// clean run. `fault` returns what it did, in words, with its figures.
fn trial(
    name: &str,
    mode: Mode,
    pick_leader: impl FnOnce(&mut Cluster, &str) -> i32,
    fault: impl FnOnce(&mut Cluster, &[String], i32) -> String,
) {
    trial_with_group_on(name, mode, |_| None, pick_leader, fault);
}

/// As [`trial`], with the service's group coordinated by the node
/// `group_on` names (if any): its application id is drawn until the
/// group's `__consumer_offsets` partition is led by that node.
fn trial_with_group_on(
    name: &str,
    mode: Mode,
    group_on: impl FnOnce(&mut Cluster) -> Option<i32>,
    pick_leader: impl FnOnce(&mut Cluster, &str) -> i32,
    fault: impl FnOnce(&mut Cluster, &[String], i32) -> String,
) {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    let Some(mut c) = cluster() else { return };
    let _logs = common::cluster::KeepLogsOnPanic;
    let t0 = Instant::now();
    c.heal();
    let evs = population();
    let total = evs.len() as u64;
    let clean = clean(&c, mode, &evs);
    let app = match group_on(&mut c) {
        None => unique(&format!("cw-cl-{name}")),
        Some(node) => (0..1000)
            .map(|_| unique(&format!("cw-cl-{name}")))
            .find(|app| group_coordinator(&mut c, app) == node)
            .unwrap_or_else(|| panic!("{name}: no group id of 1000 is coordinated by node {node}")),
    };
    let s = settings(&c, &app, mode);
    let leader = pick_leader(&mut c, s.group_id());
    let topics = create_topics(&c, &s, leader);
    for t in &topics {
        let l = c.leaders(t);
        assert!(
            l.iter().all(|x| *x == leader),
            "{name}: node {leader} leads every partition of {t}: {l:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut svc = ClusterService::spawn(&s, c.net.as_ref(), dir.path(), name);
    let pid = svc.pid();

    let producer = {
        let (bootstrap, input, evs) = (
            c.bootstrap.clone(),
            s.kafka.input_topic.clone(),
            evs.clone(),
        );
        std::thread::spawn(move || stream(&bootstrap, &input, &evs, 40, Duration::from_millis(500)))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut at = 0;
    while at < total / 4 {
        if let Some(st) = svc.exited() {
            panic!("{name}: the service exited ({st}) before the fault");
        }
        assert!(
            Instant::now() < deadline,
            "{name}: only {at} of {total} events handled in 120 s"
        );
        at = svc.handled().unwrap_or(at);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Progress from /metrics every 100 ms, from the fault to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, addr) = (stop.clone(), svc.addr().to_owned());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Some(h) = common::cluster::handled_at(&addr) {
                    samples.push((Instant::now(), h));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };
    let fault_start = Instant::now();
    let what = fault(&mut c, &topics, leader);
    assert!(
        svc.exited().is_none(),
        "{name}: the service exited during the fault"
    );
    producer
        .join()
        .unwrap_or_else(|_| panic!("{name}: the producer thread panicked"));
    wait_to_end(&c, &s, &mut svc, name);
    let caught_up = fault_start.elapsed();
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.join().unwrap_or_default();
    assert_eq!(svc.pid(), pid, "{name}: one service process throughout");
    let metrics = svc.metrics_text().unwrap_or_default();
    let handled = svc.handled().unwrap_or(0);
    let status = svc.terminate(Duration::from_secs(40));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{name}: the service ran throughout and exits 0 on SIGTERM"
    );
    let got = Outcome::read(&c, &s, mode);
    got.assert_matches(clean, mode, &format!("{name} ({mode:?})"));
    assert!(
        handled >= total,
        "{name}: {handled} of {total} events handled"
    );
    eprintln!(
        "{name} ({mode:?}): {what}; fault after {at} of {total} events handled; longest pause in handling {:.1} s; end of input committed {:.1} s after the fault; one service process (pid {pid}), exit 0; \
         {} outreach records, {} distinct (= clean), {} repeats; {} customer states = clean; rebalances {}, producer send errors {}, \
         commits failed {}, transactions aborted {}, rewinds in process {}; trial {:.1} s",
        longest_pause(&samples, total).as_secs_f64(),
        caught_up.as_secs_f64(),
        got.ids.len(),
        got.distinct().len(),
        got.repeats(),
        got.states.len(),
        common::scraped(&metrics, "churnwatch_rebalances_total"),
        common::scraped(&metrics, "churnwatch_producer_send_errors_total"),
        common::scraped(&metrics, "churnwatch_commits_total{result=\"error\"}"),
        common::scraped(&metrics, "churnwatch_commits_total{result=\"aborted\"}"),
        common::scraped(&metrics, "churnwatch_rewinds_total"),
        t0.elapsed().as_secs_f64()
    );
}

/// The longest time between two increases of the handled count, up to the
/// sample where all `total` were handled.
fn longest_pause(samples: &[(Instant, u64)], total: u64) -> Duration {
    let mut longest = Duration::ZERO;
    let mut last: Option<(Instant, u64)> = None;
    for &(t, h) in samples {
        match last {
            None => last = Some((t, h)),
            Some((lt, lh)) if h > lh => {
                longest = longest.max(t - lt);
                last = Some((t, h));
            }
            Some(_) => {}
        }
        if h >= total {
            break;
        }
    }
    longest
}

/// The node coordinating `group`: the leader of its `__consumer_offsets`
/// partition (Kafka's `abs(groupId.hashCode()) % partitions`, 8 partitions
/// as kafka.sh configures them). A fault on the node that leads the topics
/// and coordinates the group is the worst case for the service: data,
/// offsets and membership all move at once.
fn group_coordinator(c: &mut Cluster, group: &str) -> i32 {
    let h = group
        .encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
    let p = if h == i32::MIN { 0 } else { h.abs() } % 8;
    let leaders = c.leaders("__consumer_offsets");
    let l = leaders.get(p as usize).copied().unwrap_or(-1);
    assert!(
        (1..=3).contains(&l),
        "the leader of __consumer_offsets/{p}: {leaders:?}"
    );
    l
}

/// A node other than the active controller, to lead the trial's topics
/// (so that a fault on the controller is not also one on the leader).
fn not_the_controller(c: &mut Cluster, _group: &str) -> i32 {
    let ctl = c.active_controller();
    (1..=3).find(|n| *n != ctl).unwrap_or(1) as i32
}

/// Polls until no partition of `topics` is led by `node`; how long it took.
fn wait_leadership_moved(c: &Cluster, topics: &[String], node: i32, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let moved = topics
            .iter()
            .all(|t| c.leaders(t).iter().all(|l| *l != node && *l >= 0));
        if moved {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < timeout,
            "leadership did not move off node {node} in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn names(topics: &[String]) -> Vec<&str> {
    topics.iter().map(String::as_str).collect()
}

/// Fault 1: SIGKILL of the node leading every partition; restart after
/// leadership moved and the broker session expired.
fn kill_leader(c: &mut Cluster, topics: &[String], leader: i32) -> String {
    let t0 = Instant::now();
    c.signal(leader as usize, "-KILL");
    let moved = wait_leadership_moved(c, topics, leader, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(5).saturating_sub(t0.elapsed()));
    c.restart(leader as usize);
    let down = t0.elapsed();
    c.wait_in_sync(&names(topics), Duration::from_secs(180));
    format!(
        "SIGKILL of node {leader} (leader of all {PARTITIONS} partitions of the input, changelog, outreach and dead-letter topics); \
         leaders elsewhere after {:.1} s; restarted and started after {:.1} s, all replicas in sync after {:.1} s",
        moved.as_secs_f64(),
        down.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    )
}

/// Fault 2: SIGKILL of the active controller; restart once another node
/// leads the quorum.
fn kill_controller(c: &mut Cluster, topics: &[String], _leader: i32) -> String {
    let ctl = c.active_controller();
    let t0 = Instant::now();
    c.signal(ctl, "-KILL");
    let new = loop {
        let now = c.active_controller();
        if now != ctl {
            break now;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no new controller in 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let elected = t0.elapsed();
    std::thread::sleep(Duration::from_secs(5).saturating_sub(t0.elapsed()));
    c.restart(ctl);
    let started = t0.elapsed();
    c.wait_in_sync(&names(topics), Duration::from_secs(180));
    format!(
        "SIGKILL of node {ctl}, the active KRaft controller (DescribeQuorum); node {new} leads the quorum {:.1} s later; \
         restarted and started after {:.1} s, all replicas in sync after {:.1} s",
        elected.as_secs_f64(),
        started.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    )
}

/// Fault 3: SIGTERM, restart and wait in sync, node by node.
fn rolling_restart(c: &mut Cluster, topics: &[String], _leader: i32) -> String {
    let mut steps = Vec::new();
    for n in 1..=3 {
        let t0 = Instant::now();
        c.signal(n, "-TERM");
        let stopped = t0.elapsed();
        c.restart(n);
        let started = t0.elapsed();
        c.wait_in_sync(&names(topics), Duration::from_secs(180));
        steps.push(format!(
            "node {n} stopped in {:.1} s, started {:.1} s and in sync {:.1} s after its SIGTERM",
            stopped.as_secs_f64(),
            started.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        ));
    }
    format!("rolling restart: {}", steps.join(", "))
}

/// Fault 4: SIGSTOP of the leading node for 12 s (broker session timeout
/// 4 s, consumer session 6 s), then SIGCONT.
fn hang_leader(c: &mut Cluster, topics: &[String], leader: i32) -> String {
    let t0 = Instant::now();
    c.signal(leader as usize, "-STOP");
    let moved = wait_leadership_moved(c, topics, leader, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(12).saturating_sub(t0.elapsed()));
    c.signal(leader as usize, "-CONT");
    let stopped = t0.elapsed();
    c.wait_in_sync(&names(topics), Duration::from_secs(180));
    format!(
        "SIGSTOP of node {leader} (leader of every partition) for {:.1} s, then SIGCONT; leaders elsewhere after {:.1} s; \
         all replicas in sync after {:.1} s",
        stopped.as_secs_f64(),
        moved.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    )
}

/// Fault 5: the leading node's link down for 15 s (`CW_CUT_SECS`), then up.
fn cut_leader(c: &mut Cluster, topics: &[String], leader: i32) -> String {
    let secs: u64 = std::env::var("CW_CUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let t0 = Instant::now();
    {
        let net = c.net.as_ref().unwrap_or_else(|| panic!("no namespaces"));
        net.set_link(leader as usize, false);
    }
    let moved = wait_leadership_moved(c, topics, leader, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(secs).saturating_sub(t0.elapsed()));
    if let Some(net) = c.net.as_ref() {
        net.set_link(leader as usize, true);
    }
    let cut = t0.elapsed();
    c.wait_in_sync(&names(topics), Duration::from_secs(180));
    format!(
        "node {leader} (leader of every partition) cut off the network (its veth down) for {:.1} s; leaders elsewhere after {:.1} s; \
         all replicas in sync {:.1} s after the cut",
        cut.as_secs_f64(),
        moved.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    )
}

/// Fault 5 needs the namespaces; says why it skips without them.
fn with_net(name: &str, mode: Mode) {
    {
        let Some(c) = cluster() else { return };
        if c.net.is_none() {
            eprintln!(
                "skipped: {name}: the cluster runs on loopback (network namespaces could not be made: see the cluster's start line)"
            );
            return;
        }
    }
    trial(name, mode, not_the_controller, cut_leader);
}

#[test]
fn leader_sigkill_at_least_once() {
    trial(
        "leader-kill",
        Mode::AtLeastOnce,
        not_the_controller,
        kill_leader,
    );
}

#[test]
fn leader_sigkill_exactly_once() {
    trial(
        "leader-kill",
        Mode::ExactlyOnce,
        not_the_controller,
        kill_leader,
    );
}

/// The active controller also coordinates the service's group, so its
/// SIGKILL moves the group coordinator too, mid-transaction in
/// exactly-once: the case in which librdkafka's `send_offsets_to_transaction`
/// hung past its timeout (confluentinc/librdkafka#5456, #5511) and held the
/// loop for 255 s on 2026-12-01, until the sink bounded the call and
/// replaced a wedged producer (`Sink::send_offsets`).
///
/// The controller must lead a `__consumer_offsets` partition for that: after
/// an earlier trial's restart it may lead none, so leaders go back to their
/// preferred replicas first, for up to 60 s. If it still leads none, the
/// trial runs with any group (said on stderr) rather than fail on placement.
fn the_controller(c: &mut Cluster) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        c.elect_preferred();
        let ctl = c.active_controller() as i32;
        if c.leaders("__consumer_offsets").contains(&ctl) {
            return Some(ctl);
        }
        if Instant::now() > deadline {
            eprintln!(
                "controller-kill: node {ctl} (the controller) leads no __consumer_offsets partition after 60 s \
                 of preferred elections; the trial runs with any group"
            );
            return None;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn controller_sigkill_at_least_once() {
    trial_with_group_on(
        "controller-kill",
        Mode::AtLeastOnce,
        the_controller,
        not_the_controller,
        kill_controller,
    );
}

#[test]
fn controller_sigkill_exactly_once() {
    trial_with_group_on(
        "controller-kill",
        Mode::ExactlyOnce,
        the_controller,
        not_the_controller,
        kill_controller,
    );
}

#[test]
fn rolling_restart_at_least_once() {
    trial("rolling", Mode::AtLeastOnce, |_, _| 1, rolling_restart);
}

#[test]
fn rolling_restart_exactly_once() {
    trial("rolling", Mode::ExactlyOnce, |_, _| 1, rolling_restart);
}

#[test]
fn hung_leader_at_least_once() {
    trial("hung", Mode::AtLeastOnce, group_coordinator, hang_leader);
}

/// The consumer's session expires while its coordinator is stopped, and
/// the transaction's offsets are refused (`Unknown member`): the service
/// aborts, restores its partitions from the changelog, reads their input
/// again from the committed offsets and rejoins, in the same process.
#[test]
fn hung_leader_exactly_once() {
    trial("hung", Mode::ExactlyOnce, group_coordinator, hang_leader);
}

#[test]
fn network_cut_at_least_once() {
    with_net("net-cut", Mode::AtLeastOnce);
}

#[test]
fn network_cut_exactly_once() {
    with_net("net-cut", Mode::ExactlyOnce);
}
