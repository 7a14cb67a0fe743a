//! One consumer loop's working state: the processors of the partitions it
//! owns, the sink, the batch in progress. The rebalance callbacks and the
//! poll loop share it (behind a mutex; callbacks only run inside `poll`, when
//! the loop does not hold it).
//!
//! By role: this file decodes, processes and emits; `batch` ends batches
//! (transactions, or sealed batches written out in steps), `partitions`
//! restores, drops and rewinds them, `refits` keeps the population model
//! current, `gauges` reports.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use prometheus::{Gauge, IntCounter};
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext},
    message::{BorrowedMessage, Headers, Message},
    producer::Producer,
    Offset, TopicPartitionList,
};

use super::{
    restore,
    sink::{Sink, Trigger},
    PipelineError,
};
use crate::{
    channel,
    codec::{self, Format},
    config::CoreConfig,
    fold::Folded,
    kind::EventKind,
    metrics::{CommitResult, DropReason, Metrics, RefitResult},
    pb::{Channel, Playbook},
    population::{PopulationModel, RefitError},
    processor::{ChangelogRecord, Effect, Processed, Processor},
    score::{outcomes, Level},
    settings::{Guarantee, Settings},
    state::Activity,
    time::Timestamp,
};

mod batch;
mod gauges;
mod partitions;
mod refits;

use batch::Outgoing;
use gauges::set_model_metrics;
use refits::Refit;

const FLUSH_TIMEOUT: Duration = Duration::from_secs(300);
const TXN_TIMEOUT: Duration = Duration::from_secs(60);
/// Sealed batches that may wait for the broker before the loop waits too.
const MAX_OUTGOING: usize = 4;

/// What [`Engine::progress`] left to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Nothing is on its way out.
    Idle,
    /// Only the broker's acknowledgements are awaited.
    Waiting,
    /// Encoding or sending is left: call again soon.
    Busy,
}

pub struct PartitionTask {
    pub processor: Processor,
    /// This partition's metric handles, resolved once (a label lookup per
    /// event costs more than the fold).
    counters: PartitionCounters,
    /// Offset to commit (last processed + 1), if anything was processed since the last commit.
    pub next_offset: Option<i64>,
    /// Exactly-once: the first offset handled since the last committed
    /// transaction, where [`Engine::rewind`] reads again from.
    uncommitted_from: Option<i64>,
    pub last_message: Instant,
    /// Timer firings already counted in the metric.
    pub timers_seen: u64,
    /// Evictions already counted in the metric.
    pub evicted_seen: u64,
    /// Events refused by the customer cap so far.
    cap_refusals: u64,
    /// When the cap was last reported in the log.
    cap_logged_at: Option<Instant>,
}

impl PartitionTask {
    /// A flood of new ids: counted, and said in the log at most once a
    /// minute per partition (without ids).
    fn cap_refused(&mut self, partition: i32, now: Instant) {
        self.cap_refusals += 1;
        if self
            .cap_logged_at
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            return;
        }
        self.cap_logged_at = Some(now);
        tracing::warn!(
            partition,
            tracked = self.processor.len(),
            refused_so_far = self.cap_refusals,
            "customer cap reached: events of new customers go to the dead-letter topic (raise fold.max_customers_per_partition to accept them)"
        );
    }
}

pub struct Engine {
    pub settings: Arc<Settings>,
    pub core: Arc<CoreConfig>,
    pub metrics: Arc<Metrics>,
    pub sink: Sink,
    restorer: rdkafka::consumer::BaseConsumer<restore::RestoreContext>,
    pub partitions: BTreeMap<i32, PartitionTask>,
    /// Partitions assigned by the group (restored ones are in `partitions`).
    pub assigned: BTreeSet<i32>,
    pub model: Arc<PopulationModel>,
    next_refit: Option<Timestamp>,
    effects: Vec<Effect>,
    txn_open: bool,
    failed_seen: u64,
    /// What this loop last added to the shared gauges (customers, 4 levels, assigned).
    reported: [i64; 6],
    reported_queue: i64,
    /// Commit synchronously (revocation, shutdown) instead of asynchronously.
    pub sync_commit: bool,
    /// At-least-once: sealed batches on their way out, oldest first.
    outgoing: VecDeque<Outgoing>,
    /// The refit running, if one is.
    refit: Option<Refit>,
    /// The customers waiting for their label, and the labelled window.
    outcomes: outcomes::Outcomes,
    /// The clock read once per message: (monotonic, unix seconds).
    clock: (Instant, Timestamp),
    pub fatal: Option<PipelineError>,
    /// Exactly-once: a transaction was aborted, so the state of the
    /// partitions owned holds events whose effects the broker discarded;
    /// [`Engine::rewind`] restores them from the changelog and seeks back.
    pub rewind_pending: bool,
    /// This loop's number (its consumer's and producer's ids).
    pub thread: usize,
    /// What `/readyz` reads (never under this engine's lock).
    pub published: Arc<super::Published>,
}

fn now_unix() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Engine {
    pub fn new(
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        thread: usize,
    ) -> Result<Engine, PipelineError> {
        let core = Arc::new(settings.core());
        let sink = Sink::new(&settings, metrics.clone(), thread)?;
        let restorer = restore::restore_consumer(&settings)?;
        let model = Arc::new(PopulationModel::prior(&core.model));
        set_model_metrics(&metrics, &core, &model);
        Ok(Engine {
            settings,
            core,
            metrics,
            sink,
            restorer,
            partitions: BTreeMap::new(),
            assigned: BTreeSet::new(),
            model,
            next_refit: None,
            effects: Vec::new(),
            txn_open: false,
            failed_seen: 0,
            reported: [0; 6],
            reported_queue: 0,
            sync_commit: false,
            outgoing: VecDeque::new(),
            refit: None,
            outcomes: outcomes::Outcomes::default(),
            clock: (Instant::now(), now_unix()),
            fatal: None,
            rewind_pending: false,
            thread,
            published: Arc::new(super::Published::new()),
        })
    }

    fn begin(&mut self) -> Result<(), PipelineError> {
        if self.sink.transactional && !self.txn_open {
            self.sink
                .producer
                .begin_transaction()
                .map_err(super::kafka("begin transaction"))?;
            self.txn_open = true;
        }
        Ok(())
    }

    /// Decodes, validates and processes one input message.
    /// `now` is when the loop polled it.
    pub fn handle(&mut self, msg: &BorrowedMessage<'_>, now: Instant) -> Result<(), PipelineError> {
        self.begin()?;
        // Unix seconds from the monotonic clock: one clock read per message.
        let wall = self.clock.1 + now.saturating_duration_since(self.clock.0).as_secs() as i64;
        let p = msg.partition();
        let Some(task) = self.partitions.get_mut(&p) else {
            tracing::warn!(
                partition = p,
                offset = msg.offset(),
                "message for a partition not owned; skipped"
            );
            return Ok(());
        };
        task.last_message = now;
        task.next_offset = Some(msg.offset() + 1);
        task.uncommitted_from.get_or_insert(msg.offset());
        let format = content_format(msg).unwrap_or(self.settings.kafka.input_format);
        let payload = msg.payload().unwrap_or(&[]);
        let outcome = codec::decode(payload, format)
            .map_err(|e| (e.reason(), e.to_string()))
            .and_then(|ev| {
                let kind = ev.kind.as_ref().map(EventKind::of);
                let at = ev.occurred_at.as_ref().map(|t| t.seconds);
                task.processor
                    .process(&ev, Some(wall), &mut self.effects)
                    .map(|r| (r, kind, at))
                    .map_err(|r| (r.reason(), r.to_string()))
            });
        match outcome {
            Err((reason, detail)) => {
                if reason == "customer_cap" {
                    task.cap_refused(p, now);
                }
                self.metrics
                    .events_rejected
                    .with_label_values(&[reason])
                    .inc();
                tracing::debug!(
                    partition = p,
                    offset = msg.offset(),
                    reason,
                    "dead-lettered"
                );
                self.sink.dead_letter(msg, reason, &detail)?;
            }
            Ok((processed, kind, at)) => {
                match processed {
                    Processed::Folded(Folded::Duplicate) => {
                        self.metrics.dropped(DropReason::Duplicate)
                    }
                    Processed::Folded(Folded::Late) | Processed::Late => {
                        // Not folded, and not lost: the dead-letter topic
                        // keeps it (reason `late`), to be replayed if wanted.
                        self.metrics.dropped(DropReason::Late);
                        let detail = match (processed, task.processor.stream_time()) {
                            (Processed::Late, Some(st)) => format!(
                                "occurred_at is {} s before the partition's stream time (fold.lateness {} s)",
                                at.map_or(0, |a| st - a),
                                self.core.fold.lateness.as_secs()
                            ),
                            _ => "activity more than 63 days before the customer's last active day".to_owned(),
                        };
                        self.sink
                            .dead_letter(msg, DropReason::Late.as_str(), &detail)?;
                    }
                    Processed::Forgotten => self.metrics.dropped(DropReason::Forgotten),
                    Processed::Folded(_) => task.counters.consumed(&self.metrics, p, kind),
                }
                if let Some(at) = at {
                    task.counters.event_time_lag.set((wall - at) as f64);
                }
            }
        }
        // Decisions so far came from this customer's own record; the ones
        // the advance of stream time makes are other customers' timers.
        let own = self.effects.len();
        if let Some(st) = task.processor.stream_time() {
            task.processor.advance_to(st, &mut self.effects);
        }
        let event = Trigger::Event {
            partition: p,
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
        };
        self.emit(event, own, Trigger::Timer)
    }

    /// Sends what processing decided: the first `first` effects were
    /// caused by `trigger`, the rest by `then`.
    fn emit(&mut self, trigger: Trigger, first: usize, then: Trigger) -> Result<(), PipelineError> {
        for (i, e) in std::mem::take(&mut self.effects).into_iter().enumerate() {
            let trigger = if i < first { trigger } else { then };
            match e {
                Effect::Outreach(o) if o.held_out => {
                    self.sink.outreach(&o, trigger)?;
                    self.metrics
                        .outreach_held_out
                        .with_label_values(&[o.playbook().as_str_name()])
                        .inc();
                }
                Effect::Outreach(o) => {
                    self.sink.outreach(&o, trigger)?;
                    let playbook = o.playbook().as_str_name();
                    let ch =
                        channel::name(Channel::try_from(o.channel).unwrap_or(Channel::Unspecified));
                    let level = Level::from_number(u32::try_from(o.level).unwrap_or(0)).as_str();
                    self.metrics
                        .outreach_emitted
                        .with_label_values(&[playbook, ch, level])
                        .inc();
                    if let Trigger::Event {
                        timestamp_ms: Some(ms),
                        ..
                    } = trigger
                    {
                        self.metrics
                            .processing_latency
                            .observe(((now_millis() - ms).max(0) as f64) / 1000.0);
                    }
                }
                Effect::Suppressed { reason, .. } => {
                    self.metrics
                        .outreach_suppressed
                        .with_label_values(&[reason.code()])
                        .inc();
                }
                Effect::Measured(m) => {
                    let labels = [
                        m.playbook.as_str_name(),
                        crate::metrics::arm_label(m.held_out),
                    ];
                    self.metrics.uplift_decided.with_label_values(&labels).inc();
                    if m.retained {
                        self.metrics
                            .uplift_retained
                            .with_label_values(&labels)
                            .inc();
                    }
                }
                Effect::Outcome { playbook, outcome } => {
                    let pb = if playbook == Playbook::Unspecified {
                        "unknown"
                    } else {
                        playbook.as_str_name()
                    };
                    let oc = crate::metrics::outcome_label(outcome);
                    self.metrics
                        .outreach_outcomes
                        .with_label_values(&[pb, oc])
                        .inc();
                }
            }
        }
        Ok(())
    }

    /// Moves idle partitions' stream time with the wall clock (live mode).
    pub fn idle_advance(&mut self) -> Result<(), PipelineError> {
        let Some(idle) = self
            .settings
            .processing
            .idle_advance
            .filter(|s| s.as_secs() > 0)
        else {
            return Ok(());
        };
        let now = now_unix() - self.core.fold.lateness.as_secs();
        let mut fired = false;
        for task in self.partitions.values_mut() {
            if task.last_message.elapsed() >= idle.as_std() {
                let before = self.effects.len();
                task.processor.advance_to(now, &mut self.effects);
                fired |= self.effects.len() > before;
            }
        }
        if fired {
            self.begin()?;
        }
        self.emit(Trigger::Idle, 0, Trigger::Idle)
    }
}

/// One partition's metric handles.
struct PartitionCounters {
    /// Events folded, by kind (index in [`EventKind::ALL`]; the last slot is "unknown").
    consumed: [Option<IntCounter>; EventKind::ALL.len() + 1],
    event_time_lag: Gauge,
}

impl PartitionCounters {
    fn new(m: &Metrics, partition: i32) -> Self {
        PartitionCounters {
            consumed: Default::default(),
            event_time_lag: m
                .event_time_lag
                .with_label_values(&[&partition.to_string()]),
        }
    }

    fn consumed(&mut self, m: &Metrics, partition: i32, kind: Option<EventKind>) {
        let i = kind.map_or(EventKind::ALL.len(), |k| k as usize);
        self.consumed[i]
            .get_or_insert_with(|| {
                let k = kind.map_or("unknown", EventKind::as_str);
                m.events_consumed
                    .with_label_values(&[k, &partition.to_string()])
            })
            .inc();
    }
}

/// The encoding a `content-type` header names, if any.
fn content_format(msg: &BorrowedMessage<'_>) -> Option<Format> {
    let headers = msg.headers()?;
    for h in headers.iter() {
        if h.key.eq_ignore_ascii_case("content-type") {
            let v = std::str::from_utf8(h.value?).ok()?.to_ascii_lowercase();
            if v.contains("json") {
                return Some(Format::Json);
            }
            if v.contains("protobuf") {
                return Some(Format::Protobuf);
            }
        }
    }
    None
}

impl Engine {
    pub fn guarantee(&self) -> Guarantee {
        self.settings.processing.guarantee
    }
}
