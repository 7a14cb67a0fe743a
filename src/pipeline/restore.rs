//! Rebuilding a partition's state from its changelog partition before that
//! partition's input is processed.

use std::time::{Duration, Instant};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Headers, Message},
    Offset, TopicPartitionList,
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

pub fn restore_consumer(settings: &Settings) -> Result<BaseConsumer, PipelineError> {
    client::base(settings)?
        .set("group.id", format!("{}-restore", settings.application_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .map_err(|e| PipelineError::Kafka(format!("creating the restore consumer: {e}")))
}

/// Reads changelog partition `partition` from the beginning to its end as of
/// now, installing snapshots and applying tombstones.
pub fn restore(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    proc: &mut Processor,
    timeout: Duration,
) -> Result<Restored, PipelineError> {
    let started = Instant::now();
    let deadline = started + timeout;
    // A broker outage or restart during a restore is waited out (librdkafka
    // reconnects by itself) until the deadline; only errors no wait can cure
    // end it.
    let mut retried = Retried::default();
    let (low, high) = loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(w) => break w,
            Err(e) if transient(&e) && Instant::now() < deadline => {
                retried.note(topic, partition, &e);
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                return Err(PipelineError::Kafka(format!(
                    "watermarks of {topic}/{partition}: {e}"
                )))
            }
        }
    };
    let mut out = Restored::default();
    if high <= low {
        out.elapsed = started.elapsed();
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(|e| PipelineError::Kafka(e.to_string()))?;
    consumer
        .assign(&tpl)
        .map_err(|e| PipelineError::Kafka(format!("assigning {topic}/{partition}: {e}")))?;
    let mut last_offset = low - 1;
    while last_offset < high - 1 {
        if Instant::now() > deadline {
            return Err(PipelineError::Kafka(format!(
                "restoring {topic}/{partition} timed out at offset {last_offset} of {high}"
            )));
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) if transient(&e) => {
                retried.note(topic, partition, &e);
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => {
                return Err(PipelineError::Kafka(format!(
                    "reading {topic}/{partition}: {e}"
                )))
            }
        };
        last_offset = msg.offset();
        out.records += 1;
        let Some(key) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            out.skipped += 1;
            continue;
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
            continue;
        }
        match msg.payload() {
            None => match erased_at(&msg) {
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
    let _ = consumer.unassign();
    if retried.count > 0 {
        tracing::info!(
            partition,
            errors = retried.count,
            "restore rode out broker errors"
        );
    }
    out.customers = proc.len();
    out.elapsed = started.elapsed();
    Ok(out)
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
    fn note(&mut self, topic: &str, partition: i32, e: &KafkaError) {
        self.count += 1;
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            self.logged = Some(Instant::now());
            tracing::warn!(%topic, partition, error = %e, "restore waits for the broker");
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
