//! Everything churnwatch writes to Kafka goes through one producer: outreach
//! decisions, dead letters and changelog records. A full producer queue
//! blocks the caller (and so consumption) instead of growing memory.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use prost::Message;
use rdkafka::{
    consumer::ConsumerGroupMetadata,
    error::{KafkaError, RDKafkaErrorCode},
    message::{BorrowedMessage, Header, Headers, Message as _, OwnedHeaders, OwnedMessage},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig},
    ClientContext, TopicPartitionList,
};

use super::{client, PipelineError};
use crate::{
    codec::Format,
    metrics::Metrics,
    pb::OutreachRequested,
    processor::ChangelogRecord,
    settings::{Guarantee, Settings},
};

/// Which records the broker has acknowledged, by epoch. Every record is
/// sent in the sink's current epoch ([`Sink::seal_epoch`] starts the next);
/// an epoch is acknowledged when all its records are. A refused record
/// keeps its epoch open until [`Sink`]'s owner resends it and clears the book.
#[derive(Default)]
pub struct Acks {
    /// Records sent and not yet acknowledged, per epoch (no zero entries).
    open: Mutex<BTreeMap<u64, u64>>,
}

impl Acks {
    fn book(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, u64>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sent(&self, epoch: u64) {
        *self.book().entry(epoch).or_insert(0) += 1;
    }

    fn acknowledged(&self, epoch: u64) {
        let mut book = self.book();
        if let Some(n) = book.get_mut(&epoch) {
            *n -= 1;
            if *n == 0 {
                book.remove(&epoch);
            }
        }
    }

    /// Every record of epochs up to `epoch` acknowledged.
    fn through(&self, epoch: u64) -> bool {
        self.book()
            .first_key_value()
            .is_none_or(|(e, _)| *e > epoch)
    }

    fn clear(&self) {
        self.book().clear();
    }
}

/// Counts records the broker did not accept; at-least-once never commits
/// input offsets past a failed delivery. Outside transactions it keeps a
/// copy of each, to be sent again ([`Sink::take_undelivered`]).
pub struct DeliveryContext {
    pub failed: AtomicU64,
    pub metrics: Arc<Metrics>,
    acks: Arc<Acks>,
    keep_undelivered: bool,
    undelivered: Mutex<Vec<(OwnedMessage, KafkaError)>>,
}

impl ClientContext for DeliveryContext {
    super::trouble::throttled_client_context!();
}

impl ProducerContext for DeliveryContext {
    /// The epoch the record was sent in.
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, epoch: usize) {
        if result.is_ok() {
            self.acks.acknowledged(epoch as u64);
        }
        if let Err((e, msg)) = result {
            if purged(e) {
                // An aborted transaction's records: discarded on purpose.
                tracing::debug!(error = %e, topic = msg.topic(), "an aborted transaction's record was purged");
                return;
            }
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.metrics.producer_errors.inc();
            tracing::error!(error = %e, topic = msg.topic(), "a record was not delivered");
            if self.keep_undelivered {
                self.undelivered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((msg.detach(), e.clone()));
            }
        }
    }
}

/// A delivery error that says the record was purged (an aborted
/// transaction), not refused.
fn purged(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
    )
}

/// Most bytes of key and value a dead letter keeps: well inside Kafka's
/// default 1 MB record limit, headers included.
pub const DEAD_LETTER_MAX_BYTES: usize = 900 * 1024;

/// A dead letter's headers: the original ones (if `original`), then why and
/// where from.
fn dead_letter_headers(
    msg: &BorrowedMessage<'_>,
    reason: &str,
    detail: &str,
    original: bool,
    truncated: Option<&str>,
) -> OwnedHeaders {
    let (p, o) = (msg.partition().to_string(), msg.offset().to_string());
    let mut headers = OwnedHeaders::new();
    if let Some(h) = msg.headers().filter(|_| original) {
        for h in h.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    headers = headers
        .insert(Header {
            key: header::REASON,
            value: Some(reason.as_bytes()),
        })
        .insert(Header {
            key: header::ERROR,
            value: Some(detail.as_bytes()),
        })
        .insert(Header {
            key: header::SOURCE_TOPIC,
            value: Some(msg.topic().as_bytes()),
        })
        .insert(Header {
            key: header::SOURCE_PARTITION,
            value: Some(p.as_bytes()),
        })
        .insert(Header {
            key: header::SOURCE_OFFSET,
            value: Some(o.as_bytes()),
        });
    if let Some(t) = truncated {
        headers = headers.insert(Header {
            key: header::TRUNCATED,
            value: Some(t.as_bytes()),
        });
    }
    headers
}

fn create_producer(
    cfg: &rdkafka::ClientConfig,
    metrics: &Arc<Metrics>,
    acks: &Arc<Acks>,
    keep_undelivered: bool,
) -> Result<BaseProducer<DeliveryContext>, PipelineError> {
    try_create_producer(cfg, metrics, acks, keep_undelivered)
        .map_err(super::kafka("creating the producer"))
}

fn try_create_producer(
    cfg: &rdkafka::ClientConfig,
    metrics: &Arc<Metrics>,
    acks: &Arc<Acks>,
    keep_undelivered: bool,
) -> Result<BaseProducer<DeliveryContext>, KafkaError> {
    let ctx = DeliveryContext {
        failed: AtomicU64::new(0),
        metrics: metrics.clone(),
        acks: acks.clone(),
        keep_undelivered,
        undelivered: Mutex::new(Vec::new()),
    };
    cfg.create_with_context(ctx)
}

/// Whether sending a refused record again cannot help (it is too large,
/// malformed, or not allowed); anything else (a broker restarting, a leader
/// moving, a timeout) may pass on a later try.
pub fn permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::Fatal
        )
    )
}

pub struct Sink {
    /// Shared with the thread [`Sink::send_offsets`] runs its call on.
    pub producer: Arc<BaseProducer<DeliveryContext>>,
    /// A call of [`Sink::send_offsets`] outlived its timeout and may still
    /// run: this producer's transactions are unusable until
    /// [`Sink::replace_transactional`].
    wedged: bool,
    outreach_topic: String,
    /// Named in the `churnwatch.trigger.topic` header.
    input_topic: String,
    dead_letter_topic: String,
    changelog_topic: String,
    outreach_format: Format,
    pub transactional: bool,
    metrics: Arc<Metrics>,
    /// The producer's configuration, to create it anew ([`Sink::renew`]).
    config: rdkafka::ClientConfig,
    acks: Arc<Acks>,
    /// The epoch records are sent in now.
    epoch: u64,
}

type Record<'a> = BaseRecord<'a, [u8], [u8], usize>;

/// What caused an outreach decision (header `churnwatch.trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Processing this customer's own input record (its coordinates; the
    /// Kafka timestamp in ms when the record has one).
    Event {
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
    },
    /// The customer's silence timer, fired because stream time moved on
    /// (an event of another customer of the partition carried it forward).
    Timer,
    /// The customer's silence timer, fired because an idle partition's
    /// stream time followed the wall clock (`processing.idle_advance`).
    Idle,
}

impl Trigger {
    /// The value of the `churnwatch.trigger` header.
    pub fn cause(self) -> &'static str {
        match self {
            Trigger::Event { .. } => "event",
            Trigger::Timer => "timer",
            Trigger::Idle => "idle",
        }
    }
}

/// Header names churnwatch writes (docs/contract.md explains each; a test
/// checks that the document and this list agree).
pub mod header {
    pub const OUTREACH_ID: &str = "outreach_id";
    pub const TRIGGER: &str = "churnwatch.trigger";
    pub const TRIGGER_TOPIC: &str = "churnwatch.trigger.topic";
    pub const TRIGGER_PARTITION: &str = "churnwatch.trigger.partition";
    pub const TRIGGER_OFFSET: &str = "churnwatch.trigger.offset";
    pub const TRIGGER_TIMESTAMP: &str = "churnwatch.trigger.timestamp";
    pub const REASON: &str = "churnwatch.reason";
    pub const ERROR: &str = "churnwatch.error";
    pub const SOURCE_TOPIC: &str = "churnwatch.source.topic";
    pub const SOURCE_PARTITION: &str = "churnwatch.source.partition";
    pub const SOURCE_OFFSET: &str = "churnwatch.source.offset";
    pub const TRUNCATED: &str = "churnwatch.truncated";
    /// On a changelog tombstone of an erased customer.
    pub const ERASED_AT: &str = super::super::restore::ERASED_AT_HEADER;

    /// Headers of an outreach record.
    pub const OUTREACH: &[&str] = &[
        OUTREACH_ID,
        super::CONTENT_TYPE,
        TRIGGER,
        TRIGGER_TOPIC,
        TRIGGER_PARTITION,
        TRIGGER_OFFSET,
        TRIGGER_TIMESTAMP,
    ];
    /// Headers a dead letter adds after the input record's own.
    pub const DEAD_LETTER: &[&str] = &[
        REASON,
        ERROR,
        SOURCE_TOPIC,
        SOURCE_PARTITION,
        SOURCE_OFFSET,
        TRUNCATED,
    ];
}

pub const CONTENT_TYPE: &str = "content-type";
pub const PROTOBUF: &str = "application/x-protobuf";
pub const JSON: &str = "application/json";

impl Sink {
    pub fn new(
        settings: &Settings,
        metrics: Arc<Metrics>,
        thread: usize,
    ) -> Result<Sink, PipelineError> {
        let mut cfg = client::base(settings)?;
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("partitioner", settings.kafka.partitioner.librdkafka_name())
            .set(
                "queue.buffering.max.messages",
                settings.processing.max_in_flight.to_string(),
            )
            .set("message.timeout.ms", "300000");
        let transactional = settings.processing.guarantee == Guarantee::ExactlyOnce;
        if transactional {
            let instance = settings
                .kafka
                .group_instance_id
                .clone()
                .unwrap_or_else(|| format!("pid{}", std::process::id()));
            cfg.set(
                "transactional.id",
                format!("{}-{instance}-{thread}", settings.application_id),
            );
            // A transaction spans one commit interval; the broker aborts it
            // after this long (and librdkafka requires message.timeout.ms <= it).
            let txn_ms = (settings.processing.commit_interval_ms * 2).max(60_000);
            cfg.set("transaction.timeout.ms", txn_ms.to_string())
                .set("message.timeout.ms", txn_ms.to_string());
        }
        let acks = Arc::new(Acks::default());
        let producer = Arc::new(create_producer(&cfg, &metrics, &acks, !transactional)?);
        Ok(Sink {
            producer,
            wedged: false,
            outreach_topic: settings.kafka.outreach_topic.clone(),
            input_topic: settings.kafka.input_topic.clone(),
            dead_letter_topic: settings.kafka.dead_letter_topic.clone(),
            changelog_topic: settings.changelog_topic(),
            outreach_format: settings.kafka.outreach_format,
            transactional,
            metrics,
            config: cfg,
            acks,
            epoch: 0,
        })
    }

    /// A record for `topic`, in the current epoch.
    fn record<'a>(&self, topic: &'a str) -> Record<'a> {
        BaseRecord::with_opaque_to(topic, self.epoch as usize)
    }

    /// Ends the current epoch (the records sent so far) and returns it.
    pub fn seal_epoch(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch - 1
    }

    /// Whether the broker acknowledged every record of epochs up to `epoch`.
    pub fn acknowledged_through(&self, epoch: u64) -> bool {
        self.acks.through(epoch)
    }

    /// Serves delivery reports that have arrived, without waiting.
    pub fn serve_deliveries(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Sends lingering records now and serves delivery reports until none
    /// is in flight (or `deadline` passes). Unlike rdkafka's `flush`, which
    /// waits in steps of 100 ms, it returns as soon as the last report is in.
    pub fn drain(&self, deadline: Instant) -> Result<(), KafkaError> {
        // rd_kafka_flush with no wait: sends what lingers, returns at once.
        let _ = self.producer.flush(Duration::ZERO);
        while self.producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::RequestTimedOut));
            }
            // rdkafka's poll waits out its whole timeout, and librdkafka
            // counts whole milliseconds (under 1 ms it spins): 5 ms steps.
            self.producer.poll(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Aborts the open transaction. librdkafka discards its records, and
    /// waits for their delivery reports, which this producer serves only
    /// when polled: they are purged and served first, then the abort.
    pub fn abort_transaction(&self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = Instant::now() + timeout;
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let _ = self.drain(deadline);
        self.producer
            .abort_transaction(deadline.saturating_duration_since(Instant::now()))
    }

    /// After every record in flight was delivered (none refused since):
    /// all epochs so far are acknowledged, resent records included.
    pub fn all_acknowledged(&self) {
        self.acks.clear();
    }

    /// Replaces the producer (at-least-once, with nothing in flight) by a new
    /// one: a new producer id, so the broker's idempotence state for the old
    /// one (which may be what refused its records, as tansu 0.6 does after
    /// a restart) no longer applies. Its delivery counters start at zero.
    pub fn renew(&mut self) -> Result<(), PipelineError> {
        self.producer = Arc::new(create_producer(
            &self.config,
            &self.metrics,
            &self.acks,
            !self.transactional,
        )?);
        Ok(())
    }

    /// Adds the consumer's offsets to the open transaction, within `timeout`.
    ///
    /// librdkafka's own call can outlive its timeout, silently, when the
    /// group coordinator it has cached left the cluster (a killed broker,
    /// dropped from the metadata): it then waits for some other broker's
    /// state to change (confluentinc/librdkafka#5456 and #5511, open in
    /// 2.12). On the three-node cluster that held the loop for over four
    /// minutes after the controller, also the group coordinator, was
    /// killed. So the call runs on a thread of its own and the loop waits
    /// for it `timeout` and a second more; a call still running then counts
    /// as timed out (abortable), and the sink is wedged: this producer's
    /// transactional API stays busy while that call runs, so only
    /// [`Sink::replace_transactional`] can end the transaction.
    pub fn send_offsets(
        &mut self,
        offsets: &TopicPartitionList,
        meta: ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        let (producer, offsets) = (self.producer.clone(), offsets.clone());
        let (done, result) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("send-offsets".to_owned())
            .spawn(move || {
                let _ = done.send(producer.send_offsets_to_transaction(&offsets, &meta, timeout));
                // The producer is dropped here, after the call: the last
                // handle of a replaced one is this thread's.
            })
            // No thread to be had: as a failed call (the batch is aborted).
            .map_err(|_| KafkaError::Global(RDKafkaErrorCode::Fail))?;
        match result.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(r) => r,
            Err(_) => {
                self.wedged = true;
                Err(KafkaError::Global(RDKafkaErrorCode::OperationTimedOut))
            }
        }
    }

    /// Whether a call of [`Sink::send_offsets`] outlived its timeout.
    pub fn wedged(&self) -> bool {
        self.wedged
    }

    /// Ends a transaction this producer can no longer end (see
    /// [`Sink::send_offsets`]): a new producer with the same
    /// `transactional.id` initialises its transactions, which fences the old
    /// one (whatever it still sends is refused) and has the broker abort the
    /// old one's open transaction, within `timeout`. The old producer lives
    /// on only in the thread of its hung call, and goes with it.
    pub fn replace_transactional(&mut self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let producer = try_create_producer(&self.config, &self.metrics, &self.acks, false)?;
        producer.init_transactions(timeout)?;
        self.producer = Arc::new(producer);
        self.wedged = false;
        // The old producer's records were purged without their reports
        // being served: nothing of the aborted transaction is awaited.
        self.acks.clear();
        Ok(())
    }

    /// Sends, waiting (and serving delivery reports) while the queue is full.
    fn send(&self, record: Record<'_>) -> Result<(), PipelineError> {
        self.enqueue(record).map_err(super::kafka("producing"))
    }

    fn enqueue(&self, mut record: Record<'_>) -> Result<(), KafkaError> {
        let epoch = record.delivery_opaque as u64;
        // Booked before the send: its report can only come after it.
        self.acks.sent(epoch);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    self.acks.acknowledged(epoch);
                    return Err(e);
                }
            }
        }
    }

    /// An outreach decision, with headers saying what caused it (see
    /// [`Trigger`] and docs/contract.md): `churnwatch.trigger` always, the
    /// input record's coordinates only when an event of this customer did.
    pub fn outreach(&self, o: &OutreachRequested, trigger: Trigger) -> Result<(), PipelineError> {
        let (payload, ct) = match self.outreach_format {
            Format::Protobuf => (o.encode_to_vec(), PROTOBUF),
            Format::Json => (serde_json::to_vec(o).unwrap_or_default(), JSON),
        };
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: header::OUTREACH_ID,
                value: Some(o.outreach_id.as_bytes()),
            })
            .insert(Header {
                key: CONTENT_TYPE,
                value: Some(ct.as_bytes()),
            })
            .insert(Header {
                key: header::TRIGGER,
                value: Some(trigger.cause().as_bytes()),
            });
        if let Trigger::Event {
            partition,
            offset,
            timestamp_ms,
        } = trigger
        {
            let (p, off) = (partition.to_string(), offset.to_string());
            headers = headers
                .insert(Header {
                    key: header::TRIGGER_TOPIC,
                    value: Some(self.input_topic.as_bytes()),
                })
                .insert(Header {
                    key: header::TRIGGER_PARTITION,
                    value: Some(p.as_bytes()),
                })
                .insert(Header {
                    key: header::TRIGGER_OFFSET,
                    value: Some(off.as_bytes()),
                });
            if let Some(ts) = timestamp_ms.map(|v| v.to_string()) {
                headers = headers.insert(Header {
                    key: header::TRIGGER_TIMESTAMP,
                    value: Some(ts.as_bytes()),
                });
            }
        }
        self.send(
            self.record(&self.outreach_topic)
                .key(o.customer_id.as_bytes())
                .payload(&payload[..])
                .headers(headers),
        )
    }

    /// The original message (key, bytes and headers), with why it was
    /// refused and where it came from. Key and value are cut to
    /// [`DEAD_LETTER_MAX_BYTES`] in all (header `churnwatch.truncated` then
    /// gives their sizes); if the producer still refuses the record as too
    /// large (huge original headers), it goes without key, value and
    /// original headers. A poison message never stops the service.
    pub fn dead_letter(
        &self,
        msg: &BorrowedMessage<'_>,
        reason: &str,
        detail: &str,
    ) -> Result<(), PipelineError> {
        let (key, payload) = (msg.key(), msg.payload());
        let (klen, vlen) = (key.map_or(0, <[u8]>::len), payload.map_or(0, <[u8]>::len));
        let key = key.map(|k| &k[..k.len().min(DEAD_LETTER_MAX_BYTES)]);
        let room = DEAD_LETTER_MAX_BYTES - key.map_or(0, <[u8]>::len);
        let payload = payload.map(|v| &v[..v.len().min(room)]);
        let truncated = (klen + vlen > DEAD_LETTER_MAX_BYTES).then(|| {
            format!(
                "key {klen} bytes, value {vlen} bytes; the first {DEAD_LETTER_MAX_BYTES} bytes are kept"
            )
        });
        let mut r = self
            .record(&self.dead_letter_topic)
            .headers(dead_letter_headers(
                msg,
                reason,
                detail,
                true,
                truncated.as_deref(),
            ));
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(v) = payload {
            r = r.payload(v);
        }
        match self.enqueue(r) {
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {
                let note = format!(
                    "key {klen} bytes, value {vlen} bytes, original headers: too large to keep"
                );
                self.send(
                    self.record(&self.dead_letter_topic)
                        .headers(dead_letter_headers(msg, reason, detail, false, Some(&note))),
                )
            }
            other => other.map_err(super::kafka("producing")),
        }
    }

    /// A state snapshot (or a tombstone) to the partition's changelog partition.
    pub fn changelog(
        &self,
        partition: i32,
        customer_id: &str,
        snapshot: Option<&[u8]>,
    ) -> Result<(), PipelineError> {
        let mut r = self
            .record(&self.changelog_topic)
            .partition(partition)
            .key(customer_id.as_bytes());
        if let Some(v) = snapshot {
            r = r.payload(v);
        }
        self.metrics.changelog_records.inc();
        self.send(r)
    }

    /// A customer's tombstone; an erasure's carries its time in a header
    /// ([`super::restore::ERASED_AT_HEADER`]) so that a restore keeps the
    /// customer's older events forgotten.
    pub fn changelog_tombstone(
        &self,
        partition: i32,
        customer_id: &str,
        erased_at: Option<i64>,
    ) -> Result<(), PipelineError> {
        let Some(at) = erased_at else {
            return self.changelog(partition, customer_id, None);
        };
        let at = at.to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: header::ERASED_AT,
            value: Some(at.as_str()),
        });
        let r = self
            .record(&self.changelog_topic)
            .partition(partition)
            .key(customer_id.as_bytes())
            .headers(headers);
        self.metrics.changelog_records.inc();
        self.send(r)
    }

    /// A changelog record of partition `partition`'s customers.
    pub fn changelog_record(
        &self,
        partition: i32,
        r: &ChangelogRecord,
    ) -> Result<(), PipelineError> {
        match &r.snapshot {
            Some(b) => self.changelog(partition, &r.customer_id, Some(b)),
            None => self.changelog_tombstone(partition, &r.customer_id, r.erased_at),
        }
    }

    pub fn failed_deliveries(&self) -> u64 {
        self.producer.context().failed.load(Ordering::Relaxed)
    }

    /// The records refused since the last call, with why (at-least-once only).
    pub fn take_undelivered(&self) -> Vec<(OwnedMessage, KafkaError)> {
        std::mem::take(
            &mut *self
                .producer
                .context()
                .undelivered
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// Sends refused records again, in the order they were refused, each to
    /// the partition it was meant for.
    pub fn resend(&self, records: Vec<(OwnedMessage, KafkaError)>) -> Result<(), PipelineError> {
        for (mut m, _) in records {
            let headers = m.detach_headers();
            let mut r = self.record(m.topic());
            if m.partition() >= 0 {
                r = r.partition(m.partition());
            }
            if let Some(k) = m.key() {
                r = r.key(k);
            }
            if let Some(v) = m.payload() {
                r = r.payload(v);
            }
            if let Some(h) = headers {
                r = r.headers(h);
            }
            self.send(r)?;
        }
        Ok(())
    }

    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_is_acknowledged_when_it_and_every_earlier_one_are() {
        let acks = Acks::default();
        assert!(acks.through(5), "nothing sent: everything acknowledged");
        acks.sent(0);
        acks.sent(0);
        acks.sent(1);
        acks.sent(3);
        assert!(!acks.through(0));
        acks.acknowledged(0);
        assert!(!acks.through(0), "one of epoch 0 is still out");
        acks.acknowledged(1);
        assert!(!acks.through(1), "epoch 1 is done, epoch 0 is not");
        acks.acknowledged(0);
        assert!(acks.through(0) && acks.through(1) && acks.through(2));
        assert!(!acks.through(3));
        // A refused record keeps its epoch open until the book is cleared
        // (after it was sent again and everything in flight delivered).
        acks.clear();
        assert!(acks.through(3));
        acks.acknowledged(3);
        assert!(
            acks.through(u64::MAX),
            "a late report of a cleared epoch is ignored"
        );
    }

    /// librdkafka's `send_offsets_to_transaction` does not return while the
    /// group coordinator stays down, whatever its timeout (#5456): the
    /// sink's call returns an abortable failure after the timeout, and a
    /// replacement producer ends the transaction and can run the next one.
    #[test]
    fn sending_offsets_returns_while_the_group_coordinator_is_down() {
        use rdkafka::{
            consumer::{BaseConsumer, Consumer},
            mocking::{MockCluster, MockCoordinator},
            producer::DefaultProducerContext,
        };
        let mock = MockCluster::<DefaultProducerContext>::new(3)
            .unwrap_or_else(|e| panic!("mock cluster: {e}"));
        let mut s = Settings {
            application_id: "wedge".into(),
            ..Settings::default()
        };
        s.kafka.bootstrap_servers = mock.bootstrap_servers();
        s.kafka.input_topic = "in".into();
        s.kafka.group_instance_id = Some("i".into());
        s.processing.guarantee = Guarantee::ExactlyOnce;
        mock.create_topic("in", 1, 3)
            .unwrap_or_else(|e| panic!("topic: {e}"));
        mock.create_topic(&s.changelog_topic(), 1, 3)
            .unwrap_or_else(|e| panic!("topic: {e}"));
        mock.coordinator(MockCoordinator::Transaction("wedge-i-0".into()), 1)
            .unwrap_or_else(|e| panic!("{e}"));
        mock.coordinator(MockCoordinator::Group(s.group_id().to_owned()), 2)
            .unwrap_or_else(|e| panic!("{e}"));
        let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
        let mut sink = Sink::new(&s, metrics, 0).unwrap_or_else(|e| panic!("{e}"));
        let txn = |sink: &Sink| {
            sink.producer.begin_transaction()?;
            sink.changelog(0, "c-1", Some(b"state"))
                .map_err(|_| KafkaError::Global(RDKafkaErrorCode::Fail))?;
            Ok::<_, KafkaError>(())
        };
        sink.producer
            .init_transactions(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        txn(&sink).unwrap_or_else(|e| panic!("{e}"));
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", s.group_id())
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        let meta = consumer
            .group_metadata()
            .unwrap_or_else(|| panic!("no group metadata"));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("in", 0, rdkafka::Offset::Offset(1))
            .unwrap_or_else(|e| panic!("{e}"));
        mock.broker_down(2).unwrap_or_else(|e| panic!("{e}"));

        let sent = sink.send_offsets(&tpl, meta, Duration::from_secs(2));
        assert!(sent.is_err(), "offsets sent to a coordinator that is down");
        assert!(sink.wedged(), "the producer's call is still running");

        mock.broker_up(2).unwrap_or_else(|e| panic!("{e}"));
        sink.replace_transactional(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("replacing the producer: {e}"));
        assert!(!sink.wedged());
        txn(&sink).unwrap_or_else(|e| panic!("{e}"));
        sink.producer
            .commit_transaction(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("the next transaction: {e}"));
    }
}
