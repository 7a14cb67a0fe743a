//! The Kafka service (`churnwatch run`): consumer groups, changelog-backed
//! state, silence timers, the outreach topic and dead letters, around the
//! pure core ([`crate::processor`]).
//!
//! Each loop owns a consumer, a producer and the processors of its
//! partitions. It processes messages in offset order per partition and, every
//! `processing.commit_interval_ms`, writes the changed customers to the
//! changelog, waits until the broker has acknowledged everything the batch
//! caused, and only then commits the input offsets (at-least-once), or does
//! all of that in one Kafka transaction (exactly-once).

mod client;
#[cfg(test)]
mod contract_tests;
mod engine;
mod group;
mod memory;
pub(crate) mod restore;
mod sink;
mod topics;
mod trouble;

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance},
    error::KafkaError,
    producer::Producer,
    types::RDKafkaErrorCode,
    ClientContext, Statistics,
};

pub use engine::Engine;
pub use restore::Restored;
/// The header names of the records churnwatch writes (docs/contract.md).
pub use sink::header;
pub use topics::CHANGELOG_CONFIG;

use crate::{
    metrics::{Metrics, RebalanceKind},
    pb,
    readiness::{LoopStatus, Readiness},
    settings::{GroupProtocol, Guarantee, Settings},
};

/// What stopped the service, by operation; the error underneath is kept
/// as the source where there is one.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("topics: {0}")]
    Topology(String),
    /// A Kafka client call failed; `op` says which, in words.
    #[error("kafka: {op}: {source}")]
    Kafka {
        op: String,
        #[source]
        source: KafkaError,
    },
    /// A topic's metadata or creation answered with an error code.
    #[error("kafka: {op}: {source:?}")]
    Admin {
        op: String,
        #[source]
        source: RDKafkaErrorCode,
    },
    /// No broker answered, or the brokers refused this client.
    #[error("kafka: {0}")]
    Connect(String),
    /// Records no retry could deliver (their input offsets not committed).
    #[error("kafka: {0}")]
    Undelivered(String),
    /// A transaction that failed with a fatal producer error.
    #[error("kafka: transaction {op} failed, fatally (the batch will be reprocessed after a restart): {source}")]
    TransactionFatal {
        op: &'static str,
        #[source]
        source: KafkaError,
    },
    /// A transaction that failed and whose abort failed too.
    #[error("kafka: transaction {op} failed ({failed}) and could not be aborted: {source}")]
    AbortFailed {
        op: &'static str,
        /// Boxed: the rare variant keeps every `Result` small.
        failed: Box<KafkaError>,
        #[source]
        source: KafkaError,
    },
    /// The consumer's fatal error: it can do nothing more.
    #[error("kafka: {0}")]
    ConsumerFatal(String),
    /// The changelog was not read to its end in time.
    #[error("kafka: {0}")]
    RestoreTimeout(String),
    #[error("spawning {what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding the population model: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("did not stop within shutdown.timeout ({0:?})")]
    ShutdownTimeout(Duration),
    #[error("{0}")]
    Unsupported(String),
    #[error("a processing thread panicked")]
    Panicked,
}

/// `map_err` for a Kafka client call: `.map_err(kafka("creating the consumer"))`.
pub(crate) fn kafka(op: impl Into<String>) -> impl FnOnce(KafkaError) -> PipelineError {
    move |source| PipelineError::Kafka {
        op: op.into(),
        source,
    }
}

fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Rebalance and statistics hooks, on one context (as rdkafka intends).
pub struct LoopContext {
    engine: Arc<Mutex<Engine>>,
    metrics: Arc<Metrics>,
    input_topic: String,
}

impl ClientContext for LoopContext {
    trouble::throttled_client_context!();

    fn stats(&self, stats: Statistics) {
        if let Some(t) = stats.topics.get(&self.input_topic) {
            for (p, ps) in &t.partitions {
                if *p >= 0 && ps.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[&p.to_string()])
                        .set(ps.consumer_lag);
                }
            }
        }
    }
}

impl LoopContext {
    fn partitions(&self, tpl: &rdkafka::TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.input_topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ConsumerContext for LoopContext {
    /// Revoke: finish the batch in progress (changelog, acknowledgements,
    /// commit) while the partitions are still ours, then drop their state.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.metrics.rebalance(RebalanceKind::Revoke);
            let parts = self.partitions(tpl);
            let mut e = lock(&self.engine);
            e.sync_commit = true;
            let ended = e.end_batch(consumer);
            e.sync_commit = false;
            if let Err(err) = ended {
                tracing::error!(error = %err, "could not commit before revocation");
                e.fatal = Some(err);
            }
            e.revoke(&parts);
            // An aborted batch's partitions that stay ours are rewound by
            // the loop once the callback returns (seeking is its job).
            e.rewind_pending &= !e.partitions.is_empty();
        }
    }

    /// Assign: restore each new partition from the changelog before any of
    /// its input is returned by `poll`.
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.metrics.rebalance(RebalanceKind::Assign);
            let parts = self.partitions(tpl);
            let mut e = lock(&self.engine);
            if let Err(err) = e.assign(&parts) {
                tracing::error!(error = %err, "restore failed");
                e.fatal = Some(err);
            }
        }
    }
}

/// One loop's status as `/readyz` reads it: a mutex of its own, held only
/// to copy or change a few fields, and the time of the last poll in an
/// atomic (written on every poll).
pub struct Published {
    status: Mutex<LoopStatus>,
    /// Milliseconds from `base` to the last poll.
    last_poll_ms: AtomicU64,
    base: Instant,
}

impl Published {
    fn new() -> Self {
        Published {
            status: Mutex::new(LoopStatus::default()),
            last_poll_ms: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut LoopStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn polled(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.base).as_millis() as u64;
        self.last_poll_ms.store(ms, Ordering::Relaxed);
    }

    /// The status and how long ago the loop last polled.
    fn read(&self) -> (LoopStatus, Duration) {
        let status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let at = self.base + Duration::from_millis(self.last_poll_ms.load(Ordering::Relaxed));
        (status, at.elapsed())
    }
}

/// A running service: its loops and a way to stop them.
pub struct Pipeline {
    stop: Arc<AtomicBool>,
    engines: Vec<Arc<Mutex<Engine>>>,
    published: Vec<Arc<Published>>,
    /// Partitions of the input topic, at start.
    input_partitions: usize,
    threads: Mutex<Vec<JoinHandle<Result<(), PipelineError>>>>,
}

impl Pipeline {
    /// Checks the topics and starts `processing.threads` loops.
    pub async fn start(
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Result<Pipeline, PipelineError> {
        let settings = Arc::new(settings);
        let input_partitions = topics::prepare(&settings).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut engines = Vec::new();
        let mut published = Vec::new();
        let mut threads = Vec::new();
        for thread in 0..settings.processing.threads {
            let engine = Arc::new(Mutex::new(Engine::new(
                settings.clone(),
                metrics.clone(),
                thread,
            )?));
            if settings.processing.guarantee == Guarantee::ExactlyOnce {
                probe_transactions(&lock(&engine), &settings)?;
            }
            let consumer = consumer(&settings, engine.clone(), metrics.clone(), thread)?;
            let status = lock(&engine).published.clone();
            status.polled(Instant::now());
            published.push(status.clone());
            let (e, s) = (engine.clone(), stop.clone());
            let group = settings.group_id().to_owned();
            let handle = std::thread::Builder::new()
                .name(format!("churnwatch-loop-{thread}"))
                .spawn(move || run_loop(consumer, e, s, status, group))
                .map_err(|source| PipelineError::Spawn {
                    what: "a processing loop",
                    source,
                })?;
            engines.push(engine);
            threads.push(handle);
        }
        Ok(Pipeline {
            stop,
            engines,
            published,
            input_partitions,
            threads: Mutex::new(threads),
        })
    }

    /// Asks every loop to finish its batch, commit and leave the group.
    pub fn stop(&self) {
        for p in &self.published {
            p.update(|s| s.draining = true);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn is_finished(&self) -> bool {
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .all(|t| t.is_finished())
    }

    /// Waits for the loops; the first error wins.
    pub fn join(&self) -> Result<(), PipelineError> {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let mut result = Ok(());
        for t in threads {
            let r = t.join().unwrap_or(Err(PipelineError::Panicked));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// What `/readyz` says ([`Readiness`]); reads only the published
    /// status, so it answers at once whatever the loops are doing.
    pub fn readiness(&self) -> Readiness {
        let loops: Vec<(LoopStatus, Duration)> = self.published.iter().map(|p| p.read()).collect();
        Readiness::of(&loops, self.input_partitions)
    }

    /// Partitions owned, over all loops.
    pub fn assigned(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .engines
            .iter()
            .flat_map(|e| lock(e).partitions.keys().copied().collect::<Vec<_>>())
            .collect();
        v.sort_unstable();
        v
    }

    /// A customer's state snapshot, if this instance owns them.
    pub fn customer(&self, id: &str) -> Option<pb::CustomerState> {
        self.engines.iter().find_map(|e| {
            let e = lock(e);
            e.partitions
                .values()
                .find_map(|t| t.processor.get(id).map(|s| s.to_snapshot(id)))
        })
    }

    /// What `/customers/{id}` shows: the owned customer's state scored now.
    pub fn customer_view(&self, id: &str) -> Option<crate::http::CustomerView> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.engines.iter().find_map(|e| {
            let e = lock(e);
            let snap = e
                .partitions
                .values()
                .find_map(|t| t.processor.get(id).map(|s| s.to_snapshot(id)))?;
            crate::http::customer_view(id, &snap, &e.core, &e.model, now)
        })
    }

    /// The population model the first loop scores with.
    pub fn model(&self) -> Option<Arc<crate::population::PopulationModel>> {
        self.engines.first().map(|e| lock(e).model.clone())
    }

    /// Every owned customer's encoded snapshot, sorted by id.
    pub fn snapshots(&self) -> Vec<(String, Vec<u8>)> {
        let mut v = Vec::new();
        for e in &self.engines {
            let e = lock(e);
            for t in e.partitions.values() {
                for (id, s) in t.processor.iter() {
                    v.push((id.to_owned(), s.encode_snapshot(id)));
                }
            }
        }
        v.sort();
        v
    }
}

/// The input consumer's librdkafka settings where `kafka.properties` does
/// not set them (docs/configuration.md):
///
/// - `queued.max.messages.kbytes` 16384: librdkafka prefetches up to 64 MB
///   by default; 16 MB (about 100k events) keeps the loop fed and resident
///   memory for customer state.
/// - `fetch.min.bytes` 65536 and `fetch.wait.max.ms` 20: a fetch is
///   answered once 64 KB are there or 20 ms have passed. librdkafka's
///   defaults (1 byte, 500 ms) have the broker answer a live stream with a
///   fetch per few records: at 64k events/s on 2 cores, with 64 KB / 5 ms
///   (and the live producer's `linger.ms` at librdkafka's 5 ms instead of
///   1), the broker used 14.5 instead of 23.9 CPU s in 30 s and churnwatch
///   7.9 instead of 9.1 CPU s per million events (docs/performance.md).
///   20 ms rather than 5 keeps an idle consumer at 50 fetches a second per
///   broker, with a p99 still well inside 50 ms (31 ms at 64k events/s,
///   28 at 2k).
///   A caught-up input waits at most 20 ms longer; a backlog is fetched as
///   before.
pub const CONSUMER_DEFAULTS: [(&str, &str); 3] = [
    ("queued.max.messages.kbytes", "16384"),
    ("fetch.min.bytes", "65536"),
    ("fetch.wait.max.ms", "20"),
];

fn consumer(
    settings: &Settings,
    engine: Arc<Mutex<Engine>>,
    metrics: Arc<Metrics>,
    thread: usize,
) -> Result<BaseConsumer<LoopContext>, PipelineError> {
    let k = &settings.kafka;
    let mut cfg = client::base(settings)?;
    cfg.set("group.id", settings.group_id())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("group.protocol", k.group_protocol.librdkafka_name())
        .set("statistics.interval.ms", "5000");
    if k.group_protocol == GroupProtocol::Classic {
        // With the consumer protocol the broker assigns, and librdkafka
        // refuses the setting (the settings check says so first).
        cfg.set(
            "partition.assignment.strategy",
            k.assignment_strategy.librdkafka_name(),
        );
    }
    for (key, value) in CONSUMER_DEFAULTS {
        if !k.properties.contains_key(key) {
            cfg.set(key, value);
        }
    }
    if let Some(id) = &k.group_instance_id {
        cfg.set(
            "group.instance.id",
            if settings.processing.threads > 1 {
                format!("{id}-{thread}")
            } else {
                id.clone()
            },
        );
    }
    let ctx = LoopContext {
        engine,
        metrics,
        input_topic: k.input_topic.clone(),
    };
    let consumer: BaseConsumer<LoopContext> = cfg
        .create_with_context(ctx)
        .map_err(kafka("creating the consumer"))?;
    consumer
        .subscribe(&[&k.input_topic])
        .map_err(kafka(format!("subscribing to `{}`", k.input_topic)))?;
    Ok(consumer)
}

/// Exactly-once needs broker transactions. Initialise them and commit one
/// transaction holding a tombstone for a reserved changelog key; a broker
/// without transactions (tansu 0.6 has no EndTxn) fails here, before any
/// input is read, with a clear message.
fn probe_transactions(engine: &Engine, settings: &Settings) -> Result<(), PipelineError> {
    let unsupported = |what: &str, e: rdkafka::error::KafkaError| {
        PipelineError::Unsupported(format!(
            "processing.guarantee = \"exactly_once\" needs Kafka transactions, and the broker at {} failed to {what}: {e}. \
             Use a broker with transaction support, or at_least_once (outreach ids are deterministic, so downstream \
             deduplication by outreach_id gives effectively-once).",
            settings.kafka.bootstrap_servers
        ))
    };
    let p = &engine.sink.producer;
    p.init_transactions(Duration::from_secs(30))
        .map_err(|e| unsupported("initialise transactions", e))?;
    p.begin_transaction()
        .map_err(|e| unsupported("begin a transaction", e))?;
    engine.sink.changelog(0, restore::PROBE_KEY, None)?;
    p.commit_transaction(Duration::from_secs(30))
        .map_err(|e| unsupported("commit a transaction", e))?;
    Ok(())
}

/// Changelog records encoded, and sent, per step: about 0.25 ms each way at
/// a million customers, so a batch end never holds an event back for long,
/// while a batch of 50,000 changed customers is out within 200 steps.
const PROGRESS_BUDGET: usize = 256;

/// How often the loop takes a step of its background work (writing sealed
/// batches out, gathering for a refit) while there is some: 2,000 steps a
/// second, each of at most 256 changelog records and 2,048 slots.
const STEP_EVERY: Duration = Duration::from_micros(500);

/// While input flows, the next step of background work starts no sooner
/// than this many times the last step's duration after it (the steps take
/// at most a quarter of the loop): a batch of 50,000
/// changed customers (about 100 ms of encoding and sending) goes out over
/// about 400 ms instead of taking half the loop for 200 ms, during which
/// the loop fell behind a live input of 64k events/s (docs/performance.md).
const STEP_SPACING: u32 = 4;

/// Customer slots a refit gathers per step (about 0.1 ms).
const REFIT_GATHER_BUDGET: u32 = 2048;

/// While a loop owns nothing, how often it asks the broker how many
/// members the group has (the standby case of readiness).
const GROUP_SIZE_EVERY: Duration = Duration::from_secs(5);

/// While a consumer-protocol loop is not yet known to be a member (no
/// callback comes for an empty first assignment), it asks this often.
const JOIN_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A fatal consumer error (the consumer can do nothing more): the loop
/// stops and the service exits with status 2, so that its supervisor
/// restarts it. The one that a restart meets is said in full.
fn fatal(
    code: rdkafka::types::RDKafkaErrorCode,
    reason: &str,
    settings: &Settings,
) -> PipelineError {
    let k = &settings.kafka;
    if code == rdkafka::types::RDKafkaErrorCode::UnreleasedInstanceId {
        return PipelineError::ConsumerFatal(format!(
            "the consumer group `{}` still holds kafka.group_instance_id `{}` for a member that did not leave \
             (killed, or another instance with the same id is running). Under kafka.group_protocol = \"consumer\" the broker \
             refuses the new member until the old one's session expires (broker setting group.consumer.session.timeout.ms, \
             45 s by default); a restart after that takes its partitions over ({reason})",
            settings.group_id(),
            k.group_instance_id.as_deref().unwrap_or_default(),
        ));
    }
    PipelineError::ConsumerFatal(format!("fatal consumer error: {reason}"))
}

/// How often a loop may replace a consumer whose static membership the
/// group fenced (`FencedInstanceId`). A group coordinator that fails over
/// while a member rejoins can fence the member's own older join; that is
/// ridden out with a new consumer. Fenced again and again means another
/// running instance holds the same `kafka.group_instance_id`: the loop then
/// stops with the error, rather than fence it back forever.
struct Rejoins {
    at: VecDeque<Instant>,
}

const REJOINS_MAX: usize = 3;
const REJOINS_WINDOW: Duration = Duration::from_secs(600);

impl Rejoins {
    fn new() -> Self {
        Rejoins {
            at: VecDeque::new(),
        }
    }

    /// Whether the fatal error `code` is a fenced membership to rejoin.
    fn fenced(&mut self, code: rdkafka::types::RDKafkaErrorCode, reason: &str) -> bool {
        if code != rdkafka::types::RDKafkaErrorCode::FencedInstanceId {
            return false;
        }
        let now = Instant::now();
        while self
            .at
            .front()
            .is_some_and(|t| now.duration_since(*t) > REJOINS_WINDOW)
        {
            self.at.pop_front();
        }
        if self.at.len() >= REJOINS_MAX {
            return false;
        }
        self.at.push_back(now);
        tracing::warn!(
            reason,
            "the group fenced this member's static membership; rejoining with a new consumer (partitions restored from the changelog)"
        );
        true
    }
}

fn run_loop(
    consumer: BaseConsumer<LoopContext>,
    engine: Arc<Mutex<Engine>>,
    stop: Arc<AtomicBool>,
    published: Arc<Published>,
    group: String,
) -> Result<(), PipelineError> {
    let mut consumer = consumer;
    let mut rejoins = Rejoins::new();
    let mut group_asked: Option<Instant> = None;
    let (interval, protocol) = {
        let e = lock(&engine);
        (
            Duration::from_millis(e.settings.processing.commit_interval_ms),
            e.settings.kafka.group_protocol,
        )
    };
    let mut member = false;
    let mut batch_started = Instant::now();
    // After a burst of 100k messages, once the input has caught up; at most
    // every 5 s (a trim mid-burst must not push the one after it far out:
    // with 30 s, an instance that caught up kept 75 MB of freed fetch
    // buffers, 80 bytes per customer at a million, for up to 30 s).
    let mut trimmer = memory::Trimmer::new(100_000, Duration::from_secs(5));
    let result = (|| {
        let mut work = engine::Work::Idle;
        let mut next_step = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            // Sealed batches on their way out want the loop back soon.
            let wait = match work {
                // librdkafka waits in whole milliseconds: less is a spin.
                engine::Work::Busy => Duration::from_millis(1),
                // Acknowledgements only: a commit can wait a little while
                // no input comes (under load, every message is a turn).
                engine::Work::Waiting => Duration::from_millis(10),
                engine::Work::Idle => Duration::from_millis(50),
            };
            let polled = consumer.poll(wait);
            let input = matches!(polled, Some(Ok(_)));
            // One clock read per message.
            let now = Instant::now();
            published.polled(now);
            let mut e = lock(&engine);
            if let Some(err) = e.fatal.take() {
                return Err(err);
            }
            if e.rewind_pending {
                // Set during this poll (a revocation's commit aborted): the
                // message in hand is read again from the committed offset.
                e.rewind(&consumer)?;
                continue;
            }
            match polled {
                Some(Ok(msg)) => {
                    e.handle(&msg, now)?;
                    trimmer.handled();
                }
                Some(Err(err)) => {
                    if let Some((code, reason)) = consumer.client().fatal_error() {
                        if !rejoins.fenced(code, &reason) {
                            return Err(fatal(code, &reason, &e.settings));
                        }
                        // A membership fenced by the group coordinator
                        // after it failed over, not by another instance:
                        // a new consumer with the same id takes it back.
                        e.drop_all();
                        let (settings, metrics, thread) =
                            (e.settings.clone(), e.metrics.clone(), e.thread);
                        drop(e);
                        consumer = self::consumer(&settings, engine.clone(), metrics, thread)?;
                        member = false;
                        group_asked = None;
                        continue;
                    }
                    trouble::report(&format!("consumer: {err}"));
                }
                // Once the last batches are out too (their buffers freed).
                None if work == engine::Work::Idle && trimmer.idle(now) => {
                    tracing::debug!("input caught up: freed memory returned");
                }
                None => {}
            }
            // A step of the background work at most every STEP_EVERY, not
            // per message (serving delivery reports costs a queue poll);
            // while input flows, spaced so that the steps take at most
            // 1/STEP_SPACING of the loop's time, and the input that arrives
            // meanwhile is not kept waiting behind a batch on its way out.
            if work != engine::Work::Idle && now >= next_step {
                let started = Instant::now();
                work = e.progress(&consumer, PROGRESS_BUDGET)?;
                if e.gather_for_refit(REFIT_GATHER_BUDGET) {
                    work = engine::Work::Busy;
                }
                let spent = started.elapsed();
                next_step = now
                    + if input {
                        STEP_EVERY.max(spent * STEP_SPACING)
                    } else {
                        STEP_EVERY
                    };
            }
            let every = if protocol == GroupProtocol::Consumer && !member {
                JOIN_CHECK_EVERY
            } else {
                GROUP_SIZE_EVERY
            };
            if e.assigned.is_empty() && group_asked.is_none_or(|t| now.duration_since(t) >= every) {
                // Outside the engine lock: it may wait for the broker.
                drop(e);
                let view = match protocol {
                    GroupProtocol::Classic => group::classic(&consumer, &group),
                    GroupProtocol::Consumer => {
                        group::describe(&consumer, &group, Duration::from_millis(500))
                    }
                };
                // The consumer protocol calls back only when the assignment
                // changes: a member given nothing learns it joined from the
                // broker's description (see group.rs).
                member |= view.is_some_and(|v| v.member);
                published.update(|s| {
                    s.group_members = view.map(|v| v.members);
                    s.joined |= member;
                });
                group_asked = Some(now);
                e = lock(&engine);
            }
            if now.saturating_duration_since(batch_started) >= interval {
                trouble::tick();
                e.idle_advance()?;
                e.sample_queue();
                e.end_batch(&consumer)?;
                if e.rewind_pending {
                    e.rewind(&consumer)?;
                }
                e.maybe_refit();
                batch_started = Instant::now();
                // A sealed batch or a refit to start on: a step at once.
                work = engine::Work::Busy;
                next_step = now;
            }
        }
        let mut e = lock(&engine);
        e.sync_commit = true;
        e.end_batch(&consumer)
    })();
    if result.is_ok() {
        consumer.unsubscribe();
        // Serve the revocation callback, then close.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !lock(&engine).assigned.is_empty() && Instant::now() < deadline {
            let _ = consumer.poll(Duration::from_millis(50));
        }
    }
    let e = lock(&engine);
    let _ = e.sink.producer.flush(Duration::from_secs(10));
    drop(e);
    drop(consumer);
    result
}
