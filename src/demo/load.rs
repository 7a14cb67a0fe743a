//! Events to a Kafka topic: creating the topic when it is missing, and
//! producing a stream of events keyed by customer at a chosen rate. Used by
//! the demo and by `churnwatch generate --bootstrap`.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext},
    ClientConfig, ClientContext,
};

use crate::{
    codec::{self, Format},
    pb::InteractionEvent,
    time::Timestamp,
};

/// A topic [`ensure_topic`] creates when it is missing.
#[derive(Clone, Debug)]
pub struct TopicSpec<'a> {
    pub name: &'a str,
    pub partitions: i32,
    pub replication: i32,
    /// `cleanup.policy=compact` (else `delete`).
    pub compact: bool,
    /// `retention.ms`, always given at creation: some brokers (tansu 0.6)
    /// report only the configs a topic was created with. -1 keeps forever.
    pub retention_ms: i64,
}

/// Partition count of a topic, `None` if it does not exist.
fn partition_count(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Option<usize>> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("metadata for `{topic}`"))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error().map(RDKafkaErrorCode::from) {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Ok(None),
        Some(e) => bail!("metadata for `{topic}`: {e:?}"),
        None if t.partitions().is_empty() => Ok(None),
        None => Ok(Some(t.partitions().len())),
    }
}

/// Creates the topic unless it exists. Returns its partition count and
/// whether it was created. `cfg` carries the bootstrap servers and any
/// security properties.
pub async fn ensure_topic(
    cfg: &ClientConfig,
    spec: &TopicSpec<'_>,
) -> anyhow::Result<(usize, bool)> {
    // A consumer's metadata request never auto-creates the topic.
    let probe: BaseConsumer = cfg
        .clone()
        .set("group.id", "churnwatch-topic-probe")
        .create()
        .context("creating a Kafka client")?;
    if let Some(n) = partition_count(&probe, spec.name)? {
        return Ok((n, false));
    }
    let admin: AdminClient<DefaultClientContext> =
        cfg.create().context("creating a Kafka admin client")?;
    let retention = spec.retention_ms.to_string();
    let topic = NewTopic::new(
        spec.name,
        spec.partitions,
        TopicReplication::Fixed(spec.replication),
    )
    .set(
        "cleanup.policy",
        if spec.compact { "compact" } else { "delete" },
    )
    .set("retention.ms", &retention);
    let results = admin
        .create_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .with_context(|| format!("creating topic `{}`", spec.name))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, e)) => bail!("creating topic `{name}`: {e}"),
        }
    }
    for _ in 0..100 {
        if let Some(n) = partition_count(&probe, spec.name)? {
            return Ok((n, true));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "topic `{}` was created but does not appear in metadata",
        spec.name
    )
}

/// Where [`produce`] writes.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    /// Bootstrap servers and any librdkafka properties (security, ...).
    pub client: ClientConfig,
    pub topic: &'a str,
    /// `Protobuf` (content-type `application/x-protobuf`) or `Json`
    /// (`application/json`), one event per message.
    pub format: Format,
    /// Events per second; `None`: as fast as the broker takes them.
    pub rate: Option<f64>,
}

/// Counts records the broker did not accept.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first_error.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Produces `events` to the target topic: key = customer id, value = the
/// event in the target's format with a `content-type` header. Partitions by
/// key with murmur2, as the Java client does. `progress(sent, event_time)` is
/// called every 1000 events and at the end. Stops early (after flushing)
/// when `stop` is set. Returns how many events the broker acknowledged.
pub fn produce(
    events: impl Iterator<Item = InteractionEvent>,
    target: &Target<'_>,
    stop: &AtomicBool,
    mut progress: impl FnMut(u64, Timestamp),
) -> anyhow::Result<u64> {
    let mut cfg = target.client.clone();
    cfg.set("client.id", "churnwatch-generate")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", "120000");
    let producer: BaseProducer<Deliveries> = cfg
        .create_with_context(Deliveries::default())
        .context("creating the Kafka producer")?;
    let content_type: &[u8] = match target.format {
        Format::Protobuf => b"application/x-protobuf",
        Format::Json => b"application/json",
    };
    let started = Instant::now();
    let mut sent = 0u64;
    let mut last_at = 0;
    for ev in events {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let value = codec::encode(&ev, target.format);
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some(content_type),
        });
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(target.topic)
            .key(ev.customer_id.as_bytes())
            .payload(&value[..])
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(e).context(format!("producing to `{}`", target.topic)),
            }
        }
        producer.poll(Duration::ZERO);
        sent += 1;
        last_at = ev.occurred_at.map_or(last_at, |t| t.seconds);
        if sent % 1000 == 0 {
            progress(sent, last_at);
        }
        if let Some(rate) = target.rate {
            // Keep to the schedule (sent / rate seconds), sleeping in steps
            // long enough for the OS timer to honour.
            let due = Duration::from_secs_f64(sent as f64 / rate);
            let ahead = due.saturating_sub(started.elapsed());
            if ahead >= Duration::from_millis(5) {
                std::thread::sleep(ahead);
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .context("waiting for the broker to acknowledge the events")?;
    progress(sent, last_at);
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = producer
            .context()
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        bail!("{failed} of {sent} events were not delivered (first error: {first})");
    }
    Ok(sent)
}
