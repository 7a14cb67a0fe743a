//! Topic checks at start: the input must exist; the changelog must be
//! co-partitioned with it (created compacted when missing); the outreach and
//! dead-letter topics are created when missing (if allowed).

use std::time::Duration;

use std::time::Instant;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    types::RDKafkaErrorCode,
    ClientContext,
};

use super::{client, trouble, PipelineError};

/// The start's probe and admin clients, with librdkafka's errors throttled.
pub struct ProbeContext;

impl ClientContext for ProbeContext {
    trouble::throttled_client_context!();
}

impl ConsumerContext for ProbeContext {}
use crate::settings::Settings;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Partition count of a topic, `None` if it does not exist.
pub fn partition_count<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<Option<usize>, PipelineError> {
    partition_count_within(consumer, topic, METADATA_TIMEOUT)
}

fn partition_count_within<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, PipelineError> {
    let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
        let why = reported(consumer);
        PipelineError::Kafka(format!("metadata for `{topic}`: {e}{why}"))
    })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            Ok(None)
        }
        Some(e) => Err(PipelineError::Kafka(format!(
            "metadata for `{topic}`: {:?}",
            RDKafkaErrorCode::from(e)
        ))),
        None if t.partitions().is_empty() => Ok(None),
        None => Ok(Some(t.partitions().len())),
    }
}

/// What the client reported while a call failed (a wrong password, a
/// certificate that does not verify): librdkafka queues its errors and logs
/// until polled, so without this the process would exit saying only
/// "broker transport failure". Polling also logs the details.
fn reported<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..20 {
        match consumer.poll(Duration::from_millis(25)) {
            Some(Err(e)) if !seen.contains(&e.to_string()) => seen.push(e.to_string()),
            Some(_) => {}
            None => break,
        }
    }
    if seen.is_empty() {
        String::new()
    } else {
        format!(" (the client reported: {})", seen.join("; "))
    }
}

/// The input topic's metadata, asked again with backoff (1 s, 2 s, ... 8 s
/// between attempts) until `kafka.connect_timeout` has passed: one line
/// says so at once, librdkafka's errors are summed up meanwhile
/// ([`trouble`]), and the final error gives the attempts and the last error.
async fn connect<C: ConsumerContext>(
    probe: &BaseConsumer<C>,
    settings: &Settings,
) -> Result<Option<usize>, PipelineError> {
    let k = &settings.kafka;
    let budget = k.connect_timeout.as_std();
    let deadline = Instant::now() + budget;
    tracing::info!(
        bootstrap = %k.bootstrap_servers,
        connect_timeout_s = budget.as_secs(),
        "connecting to the brokers at {} (kafka.connect_timeout {} s)",
        k.bootstrap_servers,
        budget.as_secs()
    );
    let mut attempts = 0u32;
    let mut backoff = Duration::from_secs(1);
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let err = match partition_count_within(probe, &k.input_topic, left.min(METADATA_TIMEOUT)) {
            Ok(n) => return Ok(n),
            Err(e) => e,
        };
        trouble::tick();
        if Instant::now() + backoff >= deadline {
            return Err(PipelineError::Kafka(format!(
                "no broker at {} answered within kafka.connect_timeout ({} s): {attempts} attempts, the last: {err}",
                k.bootstrap_servers,
                budget.as_secs()
            )));
        }
        tracing::warn!(
            attempt = attempts,
            retry_in_s = backoff.as_secs(),
            "the brokers at {} did not answer: {err}; trying again",
            k.bootstrap_servers
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(8));
    }
}

/// Checks (and if allowed creates) the topics; returns the input partition count.
pub async fn prepare(settings: &Settings) -> Result<usize, PipelineError> {
    let probe: BaseConsumer<ProbeContext> = client::base(settings)?
        .set("group.id", format!("{}-probe", settings.application_id))
        .create_with_context(ProbeContext)
        .map_err(|e| PipelineError::Kafka(format!("creating a client: {e}")))?;
    let k = &settings.kafka;
    let input = connect(&probe, settings).await?.ok_or_else(|| {
        PipelineError::Topology(format!(
            "input topic `{}` does not exist at {}",
            k.input_topic, k.bootstrap_servers
        ))
    })?;
    let changelog = settings.changelog_topic();
    let mut missing = Vec::new();
    match partition_count(&probe, &changelog)? {
        Some(n) if n != input => {
            return Err(PipelineError::Topology(format!(
                "changelog topic `{changelog}` has {n} partitions but input topic `{}` has {input}; they must be \
                 co-partitioned (state for input partition p lives in changelog partition p). Recreate the changelog \
                 with {input} partitions or use another application_id.",
                k.input_topic
            )))
        }
        Some(_) => {}
        None => missing.push((changelog.clone(), true)),
    }
    for t in [&k.outreach_topic, &k.dead_letter_topic] {
        if partition_count(&probe, t)?.is_none() {
            missing.push((t.clone(), false));
        }
    }
    if missing.is_empty() {
        return Ok(input);
    }
    if !k.create_topics {
        let names: Vec<&str> = missing.iter().map(|(n, _)| n.as_str()).collect();
        return Err(PipelineError::Topology(format!(
            "missing topics {names:?} and kafka.create_topics is false"
        )));
    }
    let admin: AdminClient<ProbeContext> = client::base(settings)?
        .create_with_context(ProbeContext)
        .map_err(|e| PipelineError::Kafka(format!("creating an admin client: {e}")))?;
    let partitions = i32::try_from(input).unwrap_or(i32::MAX);
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(name, compact)| {
            let t = NewTopic::new(
                name,
                partitions,
                TopicReplication::Fixed(k.replication_factor),
            );
            if *compact {
                t.set("cleanup.policy", "compact").set("retention.ms", "-1")
            } else {
                t.set("cleanup.policy", "delete")
                    .set("retention.ms", "604800000")
            }
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)),
        )
        .await
        .map_err(|e| PipelineError::Kafka(format!("creating topics: {e}")))?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, partitions, "created topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic exists")
            }
            Err((name, e)) => {
                return Err(PipelineError::Kafka(format!(
                    "creating topic `{name}`: {e:?}"
                )))
            }
        }
    }
    // Wait until the new topics are visible in metadata.
    for _ in 0..50 {
        let mut all = true;
        for (name, _) in &missing {
            all &= partition_count(&probe, name)?.is_some();
        }
        if all {
            return Ok(input);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(PipelineError::Topology(
        "created topics did not appear in metadata".into(),
    ))
}
