//! `churnwatch mock-broker`: librdkafka's mock cluster served on loopback
//! as a stand-alone Kafka, for trials and `scripts/soak.sh` where no Kafka is
//! at hand. It speaks the Kafka protocol (produce, fetch, consumer groups,
//! offsets, transactions) but is not a broker for real data:
//!
//! - each partition keeps only its last 5 MB or 100,000 record batches
//!   (older ones are dropped, and the log start offset moves up);
//! - it has no CreateTopics: topics are made here, up front, and others
//!   are auto-created on first use with the mock's default partition count;
//! - nothing survives its exit.

use std::io::Write as _;

use anyhow::Context as _;
use rdkafka::{mocking::MockCluster, producer::DefaultProducerContext};

/// What to serve.
#[derive(Debug, Clone)]
pub struct MockBrokerOptions {
    /// Number of brokers in the cluster.
    pub brokers: i32,
    /// Topics created before the address is printed.
    pub topics: Vec<String>,
    /// Partitions of each of `topics`.
    pub partitions: i32,
}

/// Starts the cluster, creates the topics, prints the bootstrap address as
/// the only line on stdout, then serves until SIGTERM or SIGINT.
pub fn run(opts: &MockBrokerOptions) -> anyhow::Result<()> {
    let mock = MockCluster::<DefaultProducerContext>::new(opts.brokers)
        .context("starting librdkafka's mock cluster")?;
    for topic in &opts.topics {
        mock.create_topic(topic, opts.partitions, opts.brokers.min(3))
            .with_context(|| format!("creating topic {topic}"))?;
    }
    let bootstrap = mock.bootstrap_servers();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{bootstrap}")?;
        out.flush()?;
    }
    tracing::info!(
        %bootstrap,
        brokers = opts.brokers,
        topics = ?opts.topics,
        partitions = opts.partitions,
        "mock cluster serving (each partition keeps its last 5 MB or 100k batches)"
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(crate::service::signals());
    drop(mock);
    Ok(())
}
