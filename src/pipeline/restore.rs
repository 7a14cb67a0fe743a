//! Rebuilding a partition's state from its changelog partition before that
//! partition's input is processed.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Headers, Message},
    ClientContext, Offset, TopicPartitionList,
};

use super::{client, PipelineError};
use crate::{
    population::PopulationModel, processor::Processor, settings::Settings, state::CustomerState,
};

/// Changelog key of the population model in use (customer ids never start
/// with a NUL byte; keys that do are churnwatch's own records).
pub const MODEL_KEY: &str = "\u{0}churnwatch/model";

/// Changelog key of the tombstone exactly-once mode commits at start, to
/// check that the broker supports transactions. Nothing to install; a
/// restore passes over it without counting it as skipped.
pub const PROBE_KEY: &str = "\u{0}churnwatch-transaction-probe";

/// Header of an erasure's tombstone: the erasure's event time (unix seconds).
pub const ERASED_AT_HEADER: &str = "churnwatch.erased-at";

/// What one restore did.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The last fitted model recorded in this changelog partition, if any.
    pub model: Option<PopulationModel>,
    pub records: u64,
    pub customers: usize,
    /// Records not installed, in all and by reason ([`SKIP_REASONS`]).
    pub skipped: u64,
    pub skipped_by_reason: BTreeMap<&'static str, u64>,
    pub elapsed: Duration,
}

/// The erasure time a tombstone carries, if it is an erasure's.
fn erased_at(msg: &impl Message) -> Option<i64> {
    msg.headers()?
        .iter()
        .find(|h| h.key == ERASED_AT_HEADER)
        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
}

/// The restore consumer's context. The end of a partition is how a restore
/// knows it is done, not an error; rdkafka's default context would log each
/// one at ERROR, as it does every error event.
pub struct RestoreContext;

impl ClientContext for RestoreContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        super::trouble::log(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            super::trouble::error(&error, reason);
        }
    }
}

impl ConsumerContext for RestoreContext {}

pub fn restore_consumer(
    settings: &Settings,
) -> Result<BaseConsumer<RestoreContext>, PipelineError> {
    client::base(settings)?
        .set("group.id", format!("{}-restore", settings.application_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // The end of a partition is where the broker says it is when the
        // reader gets there, not the watermark fetched before it started
        // (tansu 0.6 `memory://` reports watermarks short of the log end).
        .set("enable.partition.eof", "true")
        // At a partition's end the broker holds the fetch this long before
        // answering "nothing more": short, as the reader waits for exactly that.
        .set("fetch.wait.max.ms", "50")
        // The restore reads to the end as fast as the broker serves it: its
        // prefetch is its own, whatever `kafka.properties` sets for the
        // processing consumer (a small queue there made restores 5x slower).
        .set("queued.max.messages.kbytes", "65536")
        .set("queued.min.messages", "100000")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create_with_context(RestoreContext)
        .map_err(super::kafka("creating the restore consumer"))
}

/// Reads the changelog partitions in `targets` from the beginning to their
/// ends, all at once (one consumer, every partition fetched together),
/// installing snapshots and applying tombstones in each partition's
/// processor. A partition's end is the later of the high watermark fetched
/// first and the end of partition the reader meets (nothing else writes to
/// a changelog partition while it is restored).
pub fn restore(
    consumer: &BaseConsumer<RestoreContext>,
    topic: &str,
    targets: &mut BTreeMap<i32, Processor>,
    timeout: Duration,
) -> Result<BTreeMap<i32, Restored>, PipelineError> {
    let started = Instant::now();
    let deadline = started + timeout;
    // A broker outage or restart during a restore is waited out (librdkafka
    // reconnects by itself) until the deadline; only errors no wait can cure
    // end it.
    let mut retried = Retried::default();
    let mut progress: BTreeMap<i32, Progress> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for &partition in targets.keys() {
        let (low, high) = loop {
            match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
                Ok(w) => break w,
                Err(e) if transient(&e) && Instant::now() < deadline => {
                    retried.note(topic, Some(partition), &e);
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(super::kafka(format!("watermarks of {topic}/{partition}"))(
                        e,
                    ))
                }
            }
        };
        progress.insert(
            partition,
            Progress {
                high,
                last_offset: low - 1,
                done: false,
                out: Restored::default(),
            },
        );
        tpl.add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(super::kafka("listing the partitions to restore"))?;
    }
    if !targets.is_empty() {
        consumer
            .assign(&tpl)
            .map_err(super::kafka(format!("assigning {topic}")))?;
    }
    let mut left = progress.len();
    while left > 0 {
        if Instant::now() > deadline {
            let behind: Vec<String> = progress
                .iter()
                .filter(|(_, p)| !p.done)
                .map(|(n, p)| format!("{n} at offset {} of {}", p.last_offset, p.high))
                .collect();
            return Err(PipelineError::RestoreTimeout(format!(
                "restoring {topic} timed out: partitions {}",
                behind.join(", ")
            )));
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                // An end short of the watermark: keep reading to the watermark.
                // The reader's position counts too: a transaction's commit
                // or abort marker takes an offset (the last one, after an
                // exactly-once batch) that is never delivered, so the last
                // record read can stay short of the watermark on Apache
                // Kafka while the position is at it.
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|tpl| tpl.find_partition(topic, p)?.offset().to_raw())
                    .unwrap_or(-1);
                if let Some(pr) = progress.get_mut(&p) {
                    if !pr.done && (pr.last_offset >= pr.high - 1 || position >= pr.high) {
                        pr.done = true;
                        pr.out.elapsed = started.elapsed();
                        left -= 1;
                    }
                }
                continue;
            }
            Err(e) if transient(&e) => {
                retried.note(topic, None, &e);
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(super::kafka(format!("reading {topic}"))(e)),
        };
        let partition = msg.partition();
        let (Some(pr), Some(proc)) = (progress.get_mut(&partition), targets.get_mut(&partition))
        else {
            continue;
        };
        pr.last_offset = msg.offset();
        pr.out.records += 1;
        let record = Record {
            key: msg.key(),
            payload: msg.payload(),
            erased_at: erased_at(&msg),
            offset: msg.offset(),
        };
        apply(&record, partition, proc, &mut pr.out);
    }
    let _ = consumer.unassign();
    if retried.count > 0 {
        tracing::info!(errors = retried.count, "restore rode out broker errors");
    }
    Ok(progress
        .into_iter()
        .map(|(p, mut pr)| {
            pr.out.customers = targets.get(&p).map_or(0, Processor::len);
            (p, pr.out)
        })
        .collect())
}

/// Where the restore of one partition stands.
struct Progress {
    /// High watermark when the restore began.
    high: i64,
    last_offset: i64,
    done: bool,
    out: Restored,
}

/// One changelog record, as read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// The erasure time a tombstone carries, if it is an erasure's.
    pub erased_at: Option<i64>,
    pub offset: i64,
}

/// Why a restore did not install a changelog record (the `reason` label of
/// `churnwatch_changelog_records_skipped_total`).
pub const SKIP_REASONS: [&str; 4] = [
    "key_not_utf8",
    "reserved_key",
    "unreadable_model",
    "unreadable_snapshot",
];

impl Restored {
    /// Counts and logs a record not installed (its offset and why, never
    /// its key: a key is a customer id).
    fn skip(&mut self, partition: i32, offset: i64, reason: &'static str, detail: &str) {
        self.skipped += 1;
        *self.skipped_by_reason.entry(reason).or_default() += 1;
        tracing::warn!(
            partition,
            offset,
            reason,
            detail,
            "skipping a changelog record"
        );
    }
}

/// Applies one changelog record to a partition's processor. Keys starting
/// with U+0000 are churnwatch's own ([`MODEL_KEY`]); no customer id can
/// start so (validation refuses control characters), so any other key in
/// that namespace, and a model record that does not read as a model, is
/// skipped and counted, as is every record that cannot be installed.
pub(crate) fn apply(rec: &Record<'_>, partition: i32, proc: &mut Processor, out: &mut Restored) {
    let offset = rec.offset;
    let Some(key) = rec.key.and_then(|k| std::str::from_utf8(k).ok()) else {
        out.skip(
            partition,
            offset,
            "key_not_utf8",
            "no key, or a key that is not UTF-8",
        );
        return;
    };
    if key.starts_with('\u{0}') {
        if key == PROBE_KEY {
            return;
        }
        if key != MODEL_KEY {
            out.skip(
                partition,
                offset,
                "reserved_key",
                "a key in churnwatch's reserved namespace (U+0000) that is not its model",
            );
            return;
        }
        match rec.payload.map(serde_json::from_slice::<PopulationModel>) {
            Some(Ok(m)) => out.model = Some(m),
            Some(Err(e)) => out.skip(partition, offset, "unreadable_model", &e.to_string()),
            None => out.skip(
                partition,
                offset,
                "unreadable_model",
                "a tombstone under the model key",
            ),
        }
        return;
    }
    match rec.payload {
        None => match rec.erased_at {
            Some(at) => proc.forget_erased(key, at),
            None => proc.forget(key),
        },
        Some(bytes) => match CustomerState::decode_snapshot(bytes) {
            Ok((_, state)) => proc.restore(key, state),
            Err(e) => out.skip(partition, offset, "unreadable_snapshot", &e.to_string()),
        },
    }
}

/// Whether a consumer error may go away by waiting: connection loss, broker
/// restarts, leader changes. Fatal errors and refused credentials do not.
fn transient(e: &KafkaError) -> bool {
    if matches!(e, KafkaError::MessageConsumptionFatal(_)) {
        return false;
    }
    !matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::Fatal
        )
    )
}

/// Transient errors met during one restore (logged once every 5 s).
#[derive(Default)]
struct Retried {
    count: u64,
    logged: Option<Instant>,
}

impl Retried {
    fn note(&mut self, topic: &str, partition: Option<i32>, e: &KafkaError) {
        self.count += 1;
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            self.logged = Some(Instant::now());
            tracing::warn!(%topic, ?partition, error = %e, "restore waits for the broker");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CoreConfig;
    use std::sync::Arc;

    fn rec<'a>(key: &'a [u8], payload: Option<&'a [u8]>, offset: i64) -> Record<'a> {
        Record {
            key: Some(key),
            payload,
            erased_at: None,
            offset,
        }
    }

    #[test]
    fn a_changelog_with_hostile_ids_restores_its_customers_and_model_and_counts_every_skip() {
        // Issue 20, finding 1: a customer called `\0churnwatch/model` (or any
        // id in the reserved NUL namespace) was written to the changelog by
        // older builds; a restore must keep the real model and count and log
        // every record it does not install.
        let core = Arc::new(CoreConfig::default());
        let model = PopulationModel::prior(&core.model);
        let model_json = serde_json::to_vec(&model).unwrap_or_default();
        let mut proc = Processor::new(core.clone(), Arc::new(PopulationModel::prior(&core.model)));
        let state = CustomerState::new(1_700_000_000);
        let hostile_model = state.encode_snapshot(MODEL_KEY);
        let hostile = state.encode_snapshot("\u{0}c-1");
        let good = state.encode_snapshot("c-1");
        let records = [
            rec(MODEL_KEY.as_bytes(), Some(&model_json), 0),
            rec(b"c-1", Some(&good), 1),
            rec(MODEL_KEY.as_bytes(), Some(&hostile_model), 2),
            rec("\u{0}c-1".as_bytes(), Some(&hostile), 3),
            rec(&[0xff, 0xfe], Some(&good), 4),
            rec(b"c-2", Some(b"not a snapshot"), 5),
            rec("\u{0}churnwatch/other".as_bytes(), None, 6),
            // Exactly-once mode's start-up probe: churnwatch's own, not a skip.
            rec(PROBE_KEY.as_bytes(), None, 7),
        ];
        let mut out = Restored::default();
        for r in &records {
            apply(r, 0, &mut proc, &mut out);
        }
        assert_eq!(out.model.as_ref(), Some(&model), "the real model");
        assert_eq!(proc.len(), 1, "only c-1 is a customer");
        assert!(proc.get("c-1").is_some());
        assert_eq!(out.skipped, 5, "every record not installed is counted");
        let by: Vec<_> = out.skipped_by_reason.into_iter().collect();
        assert_eq!(
            by,
            [
                ("key_not_utf8", 1),
                ("reserved_key", 2),
                ("unreadable_model", 1),
                ("unreadable_snapshot", 1)
            ]
        );
    }

    #[test]
    fn broker_outages_are_waited_out_and_refusals_are_not() {
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(transient(&KafkaError::MessageConsumption(code)), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
        ] {
            assert!(
                !transient(&KafkaError::MessageConsumption(code)),
                "{code:?}"
            );
        }
        assert!(!transient(&KafkaError::MessageConsumptionFatal(
            RDKafkaErrorCode::AllBrokersDown
        )));
    }
}
