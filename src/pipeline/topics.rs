//! Topic checks at start: the input must exist; the changelog must be
//! co-partitioned with it (created compacted when missing, with the settings
//! in [`CHANGELOG_CONFIG`]) and must not be one the broker deletes state
//! from; the outreach and dead-letter topics are created when missing (if
//! allowed).

use std::time::{Duration, Instant};

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

/// The changelog's topic configuration when churnwatch creates it.
///
/// - `cleanup.policy=compact`: the broker keeps the last record per customer
///   (and removes a customer after its tombstone), never a whole segment by
///   age; the changelog is the state's only durable copy.
/// - `segment.ms` 6 h, `segment.bytes` 64 MiB: the log cleaner never touches
///   the active segment, so smaller segments than Kafka's (7 days, 1 GiB)
///   let superseded states be compacted within hours, and a restore reads
///   less uncompacted tail.
/// - `min.compaction.lag.ms=0`, `max.compaction.lag.ms` 1 day: a superseded
///   state (including an erased customer's old values) is compacted away
///   within a day of being superseded, whatever the dirty ratio.
/// - `delete.retention.ms` 1 day: a tombstone stays that long after
///   compaction, so an instance restoring meanwhile still sees the erasure.
/// - `retention.ms=-1`, `retention.bytes=-1`: nothing is removed by age or
///   size, even if the policy is later changed to `compact,delete`.
pub const CHANGELOG_CONFIG: [(&str, &str); 8] = [
    ("cleanup.policy", "compact"),
    ("segment.ms", "21600000"),
    ("segment.bytes", "67108864"),
    ("min.compaction.lag.ms", "0"),
    ("max.compaction.lag.ms", "86400000"),
    ("delete.retention.ms", "86400000"),
    ("retention.ms", "-1"),
    ("retention.bytes", "-1"),
];

/// Why an existing changelog with these configs would lose state, if it
/// would: a `delete` cleanup policy with a finite `retention.ms` or
/// `retention.bytes` removes whole segments, and with them the state of
/// every customer not updated since.
pub fn changelog_deletes_state(topic: &str, config: &[(String, String)]) -> Option<String> {
    let get = |k: &str| {
        config
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let policy = get("cleanup.policy").unwrap_or("delete");
    if !policy.split(',').any(|p| p.trim() == "delete") {
        return None;
    }
    let finite = |k: &str| {
        get(k)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .map(|v| format!("{k}={v}"))
    };
    let limits: Vec<String> = ["retention.ms", "retention.bytes"]
        .into_iter()
        .filter_map(finite)
        .collect();
    if limits.is_empty() {
        return None;
    }
    Some(format!(
        "changelog topic `{topic}` has cleanup.policy={policy} with {}: the broker would delete the state of \
         customers not updated within that limit. Set cleanup.policy=compact on it (kafka-configs.sh --alter \
         --entity-type topics --entity-name {topic} --add-config cleanup.policy=compact) or use another \
         application_id.",
        limits.join(" and ")
    ))
}

/// Reads the existing changelog's configuration and refuses one the broker
/// would delete state from. A broker that cannot describe configs (such as
/// librdkafka's mock cluster) is let through with a warning.
async fn check_changelog(settings: &Settings, topic: &str) -> Result<(), PipelineError> {
    use rdkafka::admin::{ConfigResourceResult, ResourceSpecifier};
    let admin: AdminClient<ProbeContext> = client::base(settings)?
        .create_with_context(ProbeContext)
        .map_err(super::kafka("creating an admin client"))?;
    let got = admin
        .describe_configs(
            &[ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT)),
        )
        .await;
    let config = match got.as_deref() {
        Ok([ConfigResourceResult::Ok(r)]) => r
            .entries
            .iter()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect::<Vec<_>>(),
        other => {
            tracing::warn!(
                topic,
                result = ?other.map(|r| r.len()),
                "could not read the changelog's configuration; its cleanup policy is not checked"
            );
            return Ok(());
        }
    };
    match changelog_deletes_state(topic, &config) {
        Some(why) => Err(PipelineError::Topology(why)),
        None => Ok(()),
    }
}

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
        super::kafka(format!("metadata for `{topic}`{why}"))(e)
    })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            Ok(None)
        }
        Some(e) => Err(PipelineError::Admin {
            op: format!("metadata for `{topic}`"),
            source: RDKafkaErrorCode::from(e),
        }),
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

/// Whether a failed metadata call failed because the brokers refused this
/// client (SASL authentication, TLS verification), as librdkafka reports it.
fn refused(error: &str) -> bool {
    error.contains("Local: Authentication failure") || error.contains("Local: SSL error")
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
        let text = err.to_string();
        if refused(&text) {
            // Waiting does not mend wrong credentials or an untrusted
            // certificate: say so at once rather than after the deadline.
            return Err(PipelineError::Connect(format!(
                "the brokers at {} refused this client (not retried; check the security settings in kafka.properties): {text}",
                k.bootstrap_servers
            )));
        }
        if Instant::now() + backoff >= deadline {
            return Err(PipelineError::Connect(format!(
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
        .map_err(super::kafka("creating a client"))?;
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
        Some(_) => check_changelog(settings, &changelog).await?,
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
        .map_err(super::kafka("creating an admin client"))?;
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
                CHANGELOG_CONFIG.iter().fold(t, |t, (k, v)| t.set(k, v))
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
        .map_err(super::kafka("creating topics"))?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, partitions, "created topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic exists")
            }
            Err((name, e)) => {
                return Err(PipelineError::Admin {
                    op: format!("creating topic `{name}`"),
                    source: e,
                })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_from_brokers_that_are_not_there_yet() {
        assert!(refused("Meta data fetch error: BrokerTransportFailure (Local: Broker transport failure) (the client reported: Message consumption error: Authentication (Local: Authentication failure); Message consumption error: AllBrokersDown (Local: All broker connections are down))"));
        assert!(refused(
            "(the client reported: Message consumption error: SSL (Local: SSL error))"
        ));
        assert!(!refused("Meta data fetch error: BrokerTransportFailure (Local: Broker transport failure) (the client reported: Message consumption error: AllBrokersDown (Local: All broker connections are down))"));
    }

    fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_changelog_that_deletes_by_age_or_size_is_refused_naming_the_setting() {
        let why = changelog_deletes_state(
            "app-changelog",
            &config(&[("cleanup.policy", "delete"), ("retention.ms", "604800000")]),
        )
        .unwrap_or_default();
        assert!(
            why.contains("cleanup.policy=delete") && why.contains("retention.ms=604800000"),
            "{why}"
        );
        let why = changelog_deletes_state(
            "app-changelog",
            &config(&[
                ("cleanup.policy", "compact,delete"),
                ("retention.ms", "-1"),
                ("retention.bytes", "1073741824"),
            ]),
        )
        .unwrap_or_default();
        assert!(
            why.contains("cleanup.policy=compact,delete")
                && why.contains("retention.bytes=1073741824"),
            "{why}"
        );
    }

    #[test]
    fn compacted_or_unlimited_changelogs_are_accepted() {
        assert_eq!(
            changelog_deletes_state("c", &config(&CHANGELOG_CONFIG)),
            None
        );
        assert_eq!(
            changelog_deletes_state(
                "c",
                &config(&[("cleanup.policy", "compact"), ("retention.ms", "604800000")])
            ),
            None,
            "retention.ms does not apply to a compact-only topic"
        );
        assert_eq!(
            changelog_deletes_state(
                "c",
                &config(&[
                    ("cleanup.policy", "delete"),
                    ("retention.ms", "-1"),
                    ("retention.bytes", "-1")
                ])
            ),
            None,
            "delete with no limit deletes nothing"
        );
    }
}
