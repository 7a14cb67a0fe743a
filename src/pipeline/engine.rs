//! One consumer loop's working state: the processors of the partitions it
//! owns, the sink, the batch in progress. The rebalance callbacks and the
//! poll loop share it (behind a mutex; callbacks only run inside `poll`, when
//! the loop does not hold it).

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

const FLUSH_TIMEOUT: Duration = Duration::from_secs(300);
const TXN_TIMEOUT: Duration = Duration::from_secs(60);
/// Sealed batches that may wait for the broker before the loop waits too.
const MAX_OUTGOING: usize = 4;

/// A sealed batch on its way out (at-least-once): its changelog goes once
/// the broker has acknowledged its outreach and dead letters, its offsets
/// are committed once the broker has acknowledged its changelog.
struct Outgoing {
    offsets: TopicPartitionList,
    /// The epoch that closed with the batch's outreach and dead letters.
    effects: u64,
    /// Changelog records encoded so far (partition, record).
    records: Vec<(i32, ChangelogRecord)>,
    /// How many of `records` are sent.
    sent: usize,
    /// Sealed customers still to encode.
    encoding: bool,
    /// The epoch that closed with the batch's changelog, once all sent.
    changelog: Option<u64>,
}

/// A refit under way: the customers' activity being gathered, then the fit
/// on its own thread.
enum Refit {
    Gathering {
        /// Stream time the fit is as of.
        at: Timestamp,
        started: Instant,
        /// Partitions still to gather (the last one is being gathered).
        partitions: Vec<i32>,
        /// Next slot of the partition being gathered.
        next: u32,
        activities: Vec<Activity>,
        /// The risk's labels and snapshot, gathered in the same pass.
        gather: outcomes::Gather,
    },
    Fitting {
        started: Instant,
        handle: JoinHandle<Result<outcomes::Refitted, RefitError>>,
    },
}

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
                        self.sink.dead_letter(msg, "late", &detail)?;
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

    /// Ends a batch. Exactly-once: the changelog, the offsets and the
    /// transaction's commit, at once. At-least-once: seals the batch (see
    /// [`Engine::progress`], which writes it out while processing goes on);
    /// on revocation and shutdown (`sync_commit`) writes every sealed batch
    /// out and commits, before returning.
    pub fn end_batch<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), PipelineError> {
        self.clock = (Instant::now(), now_unix());
        if self.sink.transactional {
            self.end_transaction(consumer)?;
        } else {
            self.seal_batch(consumer)?;
            if self.sync_commit {
                self.write_out(consumer)?;
            }
        }
        self.update_gauges();
        Ok(())
    }

    /// This batch's input offsets (last processed + 1 per partition).
    fn take_offsets(&mut self) -> Result<TopicPartitionList, PipelineError> {
        let mut tpl = TopicPartitionList::new();
        let topic = &self.settings.kafka.input_topic;
        for (p, task) in self.partitions.iter_mut() {
            if let Some(next) = task.next_offset.take() {
                tpl.add_partition_offset(topic, *p, Offset::Offset(next))
                    .map_err(super::kafka("listing the batch's offsets"))?;
            }
        }
        Ok(tpl)
    }

    fn end_transaction<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), PipelineError> {
        let tpl = self.take_offsets()?;
        let mut changed = Vec::new();
        for (p, task) in self.partitions.iter_mut() {
            task.processor.seal();
            task.processor.encode_sealed(usize::MAX);
            changed.extend(task.processor.take_encoded().map(|r| (*p, r)));
        }
        if !changed.is_empty() {
            self.begin()?;
        }
        for (p, r) in &changed {
            self.sink.changelog_record(*p, r)?;
        }
        if self.txn_open {
            let committed = self.send_offsets_and_commit(consumer, &tpl);
            self.txn_open = false;
            match committed {
                Ok(()) => {
                    for t in self.partitions.values_mut() {
                        t.uncommitted_from = None;
                    }
                    self.metrics.commit(CommitResult::Ok);
                }
                Err((what, e)) => self.txn_failed(what, e)?,
            }
        }
        Ok(())
    }

    fn send_offsets_and_commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
    ) -> Result<(), (&'static str, rdkafka::error::KafkaError)> {
        if tpl.count() > 0 {
            // Without group metadata (not a member just now) the offsets
            // cannot join the transaction: it is aborted like a refused one.
            let meta = consumer.group_metadata().ok_or((
                "send offsets",
                rdkafka::error::KafkaError::Global(
                    rdkafka::types::RDKafkaErrorCode::UnknownMemberId,
                ),
            ))?;
            self.sink
                .producer
                .send_offsets_to_transaction(tpl, &meta, TXN_TIMEOUT)
                .map_err(|e| ("send offsets", e))?;
        }
        self.sink
            .producer
            .commit_transaction(TXN_TIMEOUT)
            .map_err(|e| ("commit", e))
    }

    /// At-least-once batch end: the changed customers are sealed (encoded
    /// later, a few at a time), the outreach and dead letters sent so far
    /// close an epoch, and the batch joins the queue [`Engine::progress`]
    /// works through. At most [`MAX_OUTGOING`] batches wait: beyond, the loop
    /// waits for the broker (back-pressure instead of memory).
    fn seal_batch<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), PipelineError> {
        // The previous seal's customers not encoded yet: now (a seal
        // encodes them anyway), into the batch they belong to.
        self.collect_encoded(usize::MAX);
        while self.outgoing.len() >= MAX_OUTGOING {
            self.acknowledged("a backlog of batches")?;
            self.progress(consumer, usize::MAX)?;
        }
        let offsets = self.take_offsets()?;
        for task in self.partitions.values_mut() {
            task.processor.seal();
        }
        let encoding = self
            .partitions
            .values()
            .any(|t| t.processor.sealed_waiting() > 0);
        let effects = self.sink.seal_epoch();
        self.outgoing.push_back(Outgoing {
            offsets,
            effects,
            records: Vec::new(),
            sent: 0,
            encoding,
            changelog: None,
        });
        // The tombstones are ready at once, also in a batch with nothing to
        // encode (erasures alone): `collect_encoded` skips a batch that is
        // not encoding, which left such a batch's tombstones behind (sent
        // with a later batch, or never, while its offsets were committed).
        if let Some(batch) = self.outgoing.back_mut() {
            for (p, task) in self.partitions.iter_mut() {
                batch
                    .records
                    .extend(task.processor.take_encoded().map(|r| (*p, r)));
            }
        }
        Ok(())
    }

    /// Encodes up to `budget` sealed customers (over all partitions) into
    /// the newest outgoing batch.
    fn collect_encoded(&mut self, budget: usize) {
        let Some(batch) = self.outgoing.back_mut().filter(|b| b.encoding) else {
            return;
        };
        let mut left = budget;
        let mut waiting = 0;
        for (p, task) in self.partitions.iter_mut() {
            let before = task.processor.sealed_waiting();
            let after = task.processor.encode_sealed(left);
            left -= before - after;
            waiting += after;
            batch
                .records
                .extend(task.processor.take_encoded().map(|r| (*p, r)));
        }
        batch.encoding = waiting > 0;
    }

    /// Moves sealed batches out, a step at a time (at-least-once; the loop
    /// calls it every 0.5 ms while there is work): encodes up to `budget` sealed customers;
    /// once the broker has acknowledged a batch's outreach and dead letters,
    /// sends up to `budget` of its changelog records (an outreach must be
    /// stored before the changelog that records it as sent: a crash in
    /// between would lose it for good); once it has acknowledged the whole
    /// changelog, commits the batch's input offsets. Never waits for the
    /// broker, except to resend refused records.
    pub fn progress<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        budget: usize,
    ) -> Result<Work, PipelineError> {
        if self.outgoing.is_empty() {
            return Ok(Work::Idle);
        }
        self.sink.serve_deliveries();
        if self.sink.failed_deliveries() != self.failed_seen {
            self.acknowledged("records the broker refused")?;
        }
        self.collect_encoded(budget);
        let mut busy = self.outgoing.back().is_some_and(|b| b.encoding);
        while let Some(front) = self.outgoing.front_mut() {
            if front.changelog.is_none() {
                if !self.sink.acknowledged_through(front.effects) {
                    break;
                }
                let end = front.records.len().min(front.sent.saturating_add(budget));
                for (p, r) in &front.records[front.sent..end] {
                    self.sink.changelog_record(*p, r)?;
                }
                front.sent = end;
                if front.sent < front.records.len() || front.encoding {
                    busy = true;
                    break;
                }
                front.records = Vec::new();
                front.changelog = Some(self.sink.seal_epoch());
            }
            if !front
                .changelog
                .is_some_and(|e| self.sink.acknowledged_through(e))
            {
                break;
            }
            let offsets = std::mem::take(&mut front.offsets);
            self.outgoing.pop_front();
            self.commit(consumer, &offsets);
        }
        Ok(if busy {
            Work::Busy
        } else if self.outgoing.is_empty() {
            Work::Idle
        } else {
            Work::Waiting
        })
    }

    /// Writes every sealed batch out and commits its offsets, waiting for
    /// the broker (revocation, shutdown).
    fn write_out<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), PipelineError> {
        while !self.outgoing.is_empty() {
            self.acknowledged("outreach, dead letters and the changelog")?;
            self.progress(consumer, usize::MAX)?;
        }
        Ok(())
    }

    /// Commits input offsets: synchronously on revocation and shutdown,
    /// else asynchronously (a commit never blocks the loop; a lost one only
    /// means deterministic reprocessing).
    fn commit<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, offsets: &TopicPartitionList) {
        if offsets.count() == 0 {
            return;
        }
        let mode = if self.sync_commit {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        match consumer.commit(offsets, mode) {
            Ok(()) => self.metrics.commit(CommitResult::Ok),
            Err(e) => {
                // Not fatal: the events are reprocessed after a restart
                // and the deterministic core gives the same outreach ids.
                self.metrics.commit(CommitResult::Error);
                tracing::warn!(error = %e, "offset commit failed");
            }
        }
    }

    /// Waits until the broker acknowledged everything produced so far.
    /// Records it refused (a broker restarting can refuse what it was
    /// writing) are sent again, by a new producer, until delivered, for up
    /// to `FLUSH_TIMEOUT`;
    /// one that no retry can deliver fails the batch, whose input offsets
    /// are then never committed.
    fn acknowledged(&mut self, what: &str) -> Result<(), PipelineError> {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        loop {
            self.sink.drain(deadline).map_err(super::kafka(format!(
                "waiting for the broker to acknowledge {what}"
            )))?;
            let failed = self.sink.failed_deliveries();
            if failed == self.failed_seen {
                self.sink.all_acknowledged();
                return Ok(());
            }
            self.failed_seen = failed;
            let refused = self.sink.take_undelivered();
            let hopeless = refused.iter().find(|(_, e)| super::sink::permanent(e));
            if refused.is_empty() || hopeless.is_some() || Instant::now() >= deadline {
                self.metrics.commit(CommitResult::Refused);
                let why = hopeless.map(|(_, e)| format!(" ({e})")).unwrap_or_default();
                return Err(PipelineError::Undelivered(format!(
                    "{} records were not delivered{why}; input offsets are not committed (they will be reprocessed)",
                    refused.len().max(1)
                )));
            }
            tracing::warn!(
                records = refused.len(),
                error = %refused[0].1,
                "the broker refused records; sending them again"
            );
            std::thread::sleep(Duration::from_millis(500));
            // A new producer sends them: the broker's state for the old
            // producer id may be what refused them.
            self.sink.renew()?;
            self.failed_seen = 0;
            self.sink.resend(refused)?;
        }
    }

    /// A transaction that could not commit: aborted, and the loop's
    /// partitions marked for [`Engine::rewind`] (their state holds the
    /// batch the broker discarded). A refused commit is what a group
    /// coordinator moving or hanging, or this member's session expiring,
    /// gives; the service rides it out. Only a fatal producer error (fenced
    /// by a newer instance with the same transactional id) or an abort
    /// that does not complete stops the loop.
    fn txn_failed(
        &mut self,
        what: &'static str,
        e: rdkafka::error::KafkaError,
    ) -> Result<(), PipelineError> {
        self.metrics.commit(CommitResult::Aborted);
        let fatal = matches!(&e, rdkafka::error::KafkaError::Transaction(t) if t.is_fatal());
        if fatal {
            return Err(PipelineError::TransactionFatal {
                op: what,
                source: e,
            });
        }
        let mut aborted = self.sink.abort_transaction(TXN_TIMEOUT);
        for _ in 0..3 {
            match &aborted {
                Err(rdkafka::error::KafkaError::Transaction(t)) if t.is_retriable() => {
                    aborted = self.sink.abort_transaction(TXN_TIMEOUT);
                }
                _ => break,
            }
        }
        if let Err(source) = aborted {
            return Err(PipelineError::AbortFailed {
                op: what,
                failed: Box::new(e),
                source,
            });
        }
        tracing::warn!(
            error = %e,
            partitions = self.partitions.len(),
            "transaction {what} failed and was aborted; the partitions are restored from the changelog and their input read again"
        );
        self.rewind_pending = !self.partitions.is_empty();
        Ok(())
    }

    /// After an aborted transaction: every owned partition's state as the
    /// changelog holds it (read_committed: the aborted records are not
    /// there), the population model and refit schedule as a fresh instance
    /// would adopt them, and the consumer back at the committed offsets, so
    /// the discarded batch is processed again, deterministically, as after
    /// a crash (the same outreach ids), without leaving the process.
    pub fn rewind<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), PipelineError> {
        self.rewind_pending = false;
        let parts: Vec<i32> = self.partitions.keys().copied().collect();
        if parts.is_empty() {
            return Ok(());
        }
        // Where each partition's uncommitted input began; a partition that
        // handled nothing since is still at its committed offset (only its
        // timers ran, and its state is restored all the same).
        let from: Vec<(i32, i64)> = self
            .partitions
            .iter()
            .filter_map(|(p, t)| t.uncommitted_from.map(|o| (*p, o)))
            .collect();
        self.forget(&parts);
        self.assign(&parts)?;
        if !from.is_empty() {
            let topic = &self.settings.kafka.input_topic;
            let mut seek = TopicPartitionList::new();
            for (p, o) in &from {
                seek.add_partition_offset(topic, *p, Offset::Offset(*o))
                    .map_err(super::kafka("listing the offsets to rewind to"))?;
            }
            let sought = consumer
                .seek_partitions(seek, TXN_TIMEOUT)
                .map_err(super::kafka("seeking back to the committed offsets"))?;
            for e in sought.elements() {
                e.error().map_err(super::kafka(format!(
                    "seeking partition {} back to its committed offset",
                    e.partition()
                )))?;
            }
        }
        self.metrics.rewinds.inc();
        tracing::info!(partitions = ?parts, "rewound to the last committed transaction");
        Ok(())
    }

    /// Drops the partitions' state and everything learned from it, as a
    /// fresh instance starts: the model and refit schedule are then adopted
    /// from the changelog by [`Engine::assign`].
    fn forget(&mut self, parts: &[i32]) {
        self.revoke(parts);
        self.effects.clear();
        self.outgoing.clear();
        self.refit = None;
        self.next_refit = None;
        self.outcomes = outcomes::Outcomes::default();
        self.model = Arc::new(PopulationModel::prior(&self.core.model));
        set_model_metrics(&self.metrics, &self.core, &self.model);
    }

    /// Before the loop replaces its consumer (a fenced membership): the
    /// open transaction aborted, every partition's state dropped; the new
    /// consumer's assignment restores them from the changelog and reads
    /// their input from the committed offsets.
    pub fn drop_all(&mut self) {
        if self.txn_open {
            let _ = self.sink.abort_transaction(TXN_TIMEOUT);
            self.txn_open = false;
        }
        self.rewind_pending = false;
        let parts: Vec<i32> = self.assigned.iter().copied().collect();
        self.forget(&parts);
        self.metrics.rewinds.inc();
    }

    /// Gauges are shared by all loops of the process: each loop adds the
    /// change of its own part, so the gauge shows the sum over loops.
    pub fn update_gauges(&mut self) {
        for t in self.partitions.values_mut() {
            let evicted = t.processor.evicted();
            self.metrics
                .customers_evicted
                .inc_by(evicted.saturating_sub(t.evicted_seen));
            t.evicted_seen = evicted;
            let fired = t.processor.timers_fired();
            self.metrics
                .timers_fired
                .inc_by(fired.saturating_sub(t.timers_seen));
            t.timers_seen = fired;
        }
        let mut now = [0i64; 6];
        for t in self.partitions.values() {
            now[0] += t.processor.len() as i64;
            for (i, n) in t.processor.level_counts().iter().enumerate() {
                now[1 + i] += *n as i64;
            }
        }
        now[5] = self.assigned.len() as i64;
        let d: Vec<i64> = now.iter().zip(self.reported).map(|(n, r)| n - r).collect();
        self.metrics.customers_tracked.add(d[0]);
        for (i, l) in Level::ALL.iter().enumerate() {
            self.metrics
                .customers_by_level
                .with_label_values(&[l.as_str()])
                .add(d[1 + i]);
        }
        self.metrics.assigned_partitions.add(d[5]);
        self.reported = now;
    }

    /// The producer queue before the batch's flush (after it, it is empty).
    pub fn sample_queue(&mut self) {
        let q = i64::from(self.sink.in_flight());
        self.metrics.producer_queue.add(q - self.reported_queue);
        self.reported_queue = q;
    }

    /// Refits the population model on the schedule (stream time), from the
    /// partitions this loop owns. Neither step holds the loop: the
    /// customers' activity is gathered a part at a time in the loop's steps
    /// ([`Engine::gather_for_refit`]; reading a million states at once took
    /// 45-100 ms), then fitted on a thread of its own (50-150 ms at a million
    /// customers); the model is used from the first batch end after that.
    pub fn maybe_refit(&mut self) {
        if matches!(&self.refit, Some(Refit::Fitting { handle, .. }) if handle.is_finished()) {
            if let Some(Refit::Fitting { handle, started }) = self.refit.take() {
                self.refitted(handle, started);
            }
        }
        if self.refit.is_some() {
            return;
        }
        let every = self.core.model.refit_every.as_secs();
        let Some(st) = self
            .partitions
            .values()
            .filter_map(|t| t.processor.stream_time())
            .max()
        else {
            return;
        };
        // The first look fits at once (a restarted or new instance should
        // not score with the prior for a whole period); then once per period
        // of stream time.
        let due = self.next_refit.is_none_or(|t| st >= t);
        if !due {
            return;
        }
        self.next_refit = Some((st.div_euclid(every) + 1) * every);
        let gather = self.outcomes.begin(st, &self.core);
        self.refit = Some(Refit::Gathering {
            at: st,
            started: Instant::now(),
            partitions: self.partitions.keys().copied().collect(),
            next: 0,
            activities: Vec::with_capacity(
                self.partitions.values().map(|t| t.processor.len()).sum(),
            ),
            gather,
        });
    }

    /// One part of a refit's gathering (`budget` slots); when all is
    /// gathered, starts the fit on its own thread. True while gathering.
    pub fn gather_for_refit(&mut self, budget: u32) -> bool {
        let Some(Refit::Gathering {
            partitions,
            next,
            activities,
            gather,
            ..
        }) = &mut self.refit
        else {
            return false;
        };
        while let Some(&p) = partitions.last() {
            let more = self
                .partitions
                .get(&p)
                .and_then(|t| t.processor.gather(*next, budget, activities, gather));
            match more {
                Some(n) => {
                    *next = n;
                    return true;
                }
                None => {
                    partitions.pop();
                    *next = 0;
                }
            }
        }
        let Some(Refit::Gathering {
            at,
            started,
            activities,
            gather,
            ..
        }) = self.refit.take()
        else {
            return false;
        };
        let training = self.outcomes.finish(gather);
        let (model, core) = (self.model.clone(), self.core.clone());
        let spawned = std::thread::Builder::new()
            .name("churnwatch-refit".into())
            .spawn(move || outcomes::refit(&model, &core, &activities, &training, at));
        match spawned {
            Ok(handle) => self.refit = Some(Refit::Fitting { started, handle }),
            Err(e) => {
                self.metrics.refit(RefitResult::Error);
                tracing::warn!(error = %e, "could not start a refit; keeping the model");
            }
        }
        false
    }

    /// Uses a finished refit's model (or says why not).
    fn refitted(
        &mut self,
        handle: JoinHandle<Result<outcomes::Refitted, RefitError>>,
        started: Instant,
    ) {
        let Ok(result) = handle.join() else {
            self.metrics.refit(RefitResult::Error);
            tracing::error!("the refit thread panicked; keeping the model");
            return;
        };
        match result {
            Ok(outcomes::Refitted { model: m, learning }) => {
                match (&learning, &m.risk) {
                    (Ok(()), Some(r)) => tracing::info!(
                        labelled = r.labelled,
                        churned = r.churned,
                        auc = r.auc,
                        brier = r.brier,
                        "risk coefficients learned"
                    ),
                    (Err(e), _) => {
                        tracing::info!(reason = %e, "risk coefficients not learned; keeping the current ones")
                    }
                    _ => {}
                }
                let m = Arc::new(m);
                for t in self.partitions.values_mut() {
                    t.processor.set_model(m.clone());
                }
                set_model_metrics(&self.metrics, &self.core, &m);
                self.metrics.refit(RefitResult::Ok);
                tracing::info!(
                    params = ?m.params,
                    customers = m.fit.as_ref().map_or(0, |f| f.customers),
                    log_likelihood = m.fit.as_ref().map_or(f64::NAN, |f| f.log_likelihood),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "population model refitted"
                );
                self.model = m;
                if let Err(e) = self.record_model() {
                    tracing::warn!(error = %e, "could not record the model in the changelog");
                }
                // The fit's per-customer summaries are free.
                super::memory::release();
            }
            Err(e @ (RefitError::TooFew { .. } | RefitError::TooShort { .. })) => {
                self.metrics.refit(RefitResult::Skipped);
                tracing::info!(reason = %e, "refit skipped; keeping the model");
            }
            Err(e) => {
                self.metrics.refit(RefitResult::Error);
                tracing::warn!(error = %e, "model refit failed; keeping the model");
            }
        }
    }

    /// Restores newly assigned partitions from the changelog (all of them in
    /// one pass).
    pub fn assign(&mut self, partitions: &[i32]) -> Result<(), PipelineError> {
        let topic = self.settings.changelog_topic();
        let mut fresh = BTreeMap::new();
        for &p in partitions {
            self.assigned.insert(p);
            if !self.partitions.contains_key(&p) {
                fresh.insert(p, Processor::new(self.core.clone(), self.model.clone()));
            }
        }
        // Said before the restore, which may take minutes.
        self.published.update(|s| {
            s.joined = true;
            s.assigned = self.assigned.clone();
            s.restoring = fresh.keys().copied().collect();
        });
        let restored =
            restore::restore(&self.restorer, &topic, &mut fresh, Duration::from_secs(600))?;
        for (p, r) in &restored {
            let ps = p.to_string();
            self.metrics
                .restore_duration
                .with_label_values(&[&ps])
                .observe(r.elapsed.as_secs_f64());
            self.metrics
                .restore_records
                .with_label_values(&[&ps])
                .inc_by(r.records);
            for (reason, n) in &r.skipped_by_reason {
                self.metrics
                    .restore_skipped
                    .with_label_values(&[reason])
                    .inc_by(*n);
            }
            tracing::info!(
                partition = p,
                records = r.records,
                customers = r.customers,
                skipped = r.skipped,
                elapsed_ms = r.elapsed.as_millis() as u64,
                "restored partition state from the changelog"
            );
        }
        // The newest model any partition recorded.
        for r in restored.into_values() {
            if let Some(m) = r.model {
                self.adopt(m);
            }
        }
        for (p, mut processor) in fresh {
            processor.set_model(self.model.clone());
            self.partitions.insert(
                p,
                PartitionTask {
                    processor,
                    counters: {
                        self.metrics.partition_assigned(p);
                        PartitionCounters::new(&self.metrics, p)
                    },
                    next_offset: None,
                    uncommitted_from: None,
                    last_message: Instant::now(),
                    timers_seen: 0,
                    evicted_seen: 0,
                    cap_refusals: 0,
                    cap_logged_at: None,
                },
            );
        }
        self.published.update(|s| s.restoring.clear());
        self.update_gauges();
        // The restore's buffers (fetched records, decoded snapshots) are free.
        super::memory::release();
        Ok(())
    }

    /// Uses a model restored from the changelog if it is newer than the one
    /// in use, so a restarted instance scores as the crashed one did.
    fn adopt(&mut self, m: PopulationModel) {
        if let Err(e) = m.params.validate() {
            // A corrupt record would make every risk NaN (no outreach, ever).
            tracing::warn!(error = %e, "the changelog's model is invalid; ignored");
            return;
        }
        let newer = match (&m.fit, &self.model.fit) {
            (Some(a), Some(b)) => a.fitted_at > b.fitted_at,
            (Some(_), None) => true,
            _ => false,
        };
        if !newer || m.family != self.core.model.family || m.time_unit != self.core.model.time_unit
        {
            return;
        }
        let every = self.core.model.refit_every.as_secs();
        if let Some(f) = &m.fit {
            self.next_refit = Some((f.fitted_at.div_euclid(every) + 1) * every);
        }
        let m = Arc::new(m);
        for t in self.partitions.values_mut() {
            t.processor.set_model(m.clone());
        }
        set_model_metrics(&self.metrics, &self.core, &m);
        tracing::info!(params = ?m.params, "population model restored from the changelog");
        self.model = m;
    }

    /// Records the model in use in every owned changelog partition.
    fn record_model(&mut self) -> Result<(), PipelineError> {
        let bytes = serde_json::to_vec(&*self.model)?;
        self.begin()?;
        let parts: Vec<i32> = self.partitions.keys().copied().collect();
        for p in parts {
            self.sink
                .changelog(p, super::restore::MODEL_KEY, Some(&bytes))?;
        }
        Ok(())
    }

    /// Drops revoked partitions (after the batch was committed).
    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.assigned.remove(p);
            let ps = p.to_string();
            let _ = self.metrics.consumer_lag.remove_label_values(&[&ps]);
            let _ = self.metrics.event_time_lag.remove_label_values(&[&ps]);
            if let Some(t) = self.partitions.remove(p) {
                tracing::info!(
                    partition = p,
                    customers = t.processor.len(),
                    "partition revoked; state dropped"
                );
            }
        }
        self.published.update(|s| {
            s.assigned = self.assigned.clone();
            s.restoring.retain(|p| !partitions.contains(p));
        });
        self.update_gauges();
    }
}

fn set_model_metrics(m: &Metrics, core: &CoreConfig, model: &PopulationModel) {
    let p = &model.params;
    for (name, v) in [("r", p.r), ("alpha", p.alpha), ("a", p.a), ("b", p.b)] {
        m.model_param.with_label_values(&[name]).set(v);
    }
    let learned = model
        .risk
        .as_ref()
        .filter(|_| core.score.learning.mode == crate::config::LearningMode::Learned);
    m.set_risk(learned);
    if learned.is_none() {
        let s = &core.score;
        m.set_risk_coefficients(&crate::score::learn::to_vector(s.bias, &s.weights));
    }
    if let Some(f) = &model.fit {
        m.model_log_likelihood.set(f.log_likelihood);
        m.model_customers.set(f.customers as i64);
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
