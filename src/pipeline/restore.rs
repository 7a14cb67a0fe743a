//! Rebuilding a partition's state from its changelog partition before that
//! partition's input is processed.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::{KafkaError, RDKafkaErrorCode},
    message::{BorrowedMessage, Headers, Message},
    ClientContext, Offset, TopicPartitionList,
};

use super::{client, PipelineError};
use crate::{
    population::PopulationModel, processor::Processor, settings::Settings, state::CustomerState,
};

/// Changelog key of the population model in use (customer ids never start
/// with a NUL byte; keys that do are churnwatch's own records).
pub const MODEL_KEY: &str = "\u{0}churnwatch/model";

/// Header of an erasure's tombstone: the erasure's event time (unix seconds).
pub const ERASED_AT_HEADER: &str = "churnwatch.erased-at";

/// What one restore did.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The last fitted model recorded in this changelog partition, if any.
    pub model: Option<PopulationModel>,
    pub records: u64,
    pub customers: usize,
    pub skipped: u64,
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
        .map_err(|e| PipelineError::Kafka(format!("creating the restore consumer: {e}")))
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
                    return Err(PipelineError::Kafka(format!(
                        "watermarks of {topic}/{partition}: {e}"
                    )))
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
            .map_err(|e| PipelineError::Kafka(e.to_string()))?;
    }
    if !targets.is_empty() {
        consumer
            .assign(&tpl)
            .map_err(|e| PipelineError::Kafka(format!("assigning {topic}: {e}")))?;
    }
    let mut left = progress.len();
    while left > 0 {
        if Instant::now() > deadline {
            let behind: Vec<String> = progress
                .iter()
                .filter(|(_, p)| !p.done)
                .map(|(n, p)| format!("{n} at offset {} of {}", p.last_offset, p.high))
                .collect();
            return Err(PipelineError::Kafka(format!(
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
                if let Some(pr) = progress.get_mut(&p) {
                    if !pr.done && pr.last_offset >= pr.high - 1 {
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
            Err(e) => return Err(PipelineError::Kafka(format!("reading {topic}: {e}"))),
        };
        let partition = msg.partition();
        let (Some(pr), Some(proc)) = (progress.get_mut(&partition), targets.get_mut(&partition))
        else {
            continue;
        };
        pr.last_offset = msg.offset();
        pr.out.records += 1;
        apply(&msg, partition, proc, &mut pr.out);
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

/// Applies one changelog record to a partition's processor.
fn apply(msg: &BorrowedMessage<'_>, partition: i32, proc: &mut Processor, out: &mut Restored) {
    let Some(key) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) else {
        out.skipped += 1;
        return;
    };
    if key.starts_with('\u{0}') {
        if key == MODEL_KEY {
            if let Some(m) = msg
                .payload()
                .and_then(|b| serde_json::from_slice::<PopulationModel>(b).ok())
            {
                out.model = Some(m);
            }
        }
        return;
    }
    match msg.payload() {
        None => match erased_at(msg) {
            Some(at) => proc.forget_erased(key, at),
            None => proc.forget(key),
        },
        Some(bytes) => match CustomerState::decode_snapshot(bytes) {
            Ok((_, state)) => proc.restore(key, state),
            Err(e) => {
                out.skipped += 1;
                tracing::warn!(partition, offset = msg.offset(), error = %e, "skipping an unreadable changelog record");
            }
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
