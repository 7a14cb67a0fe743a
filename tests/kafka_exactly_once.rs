//! Exactly-once: Kafka transactions, tested on librdkafka's mock cluster
//! (which implements them), and refused on a broker that lacks them.

mod common;

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use churnwatch::{
    codec::Format,
    config::CoreConfig,
    metrics::Metrics,
    pipeline::{Pipeline, PipelineError},
    settings::Guarantee,
};
use common::{month::month, outreach_ids, settings, unique, wait_for, Broker, Running, Storage};
use rdkafka::{mocking::MockCluster, producer::DefaultProducerContext};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_is_refused_with_a_clear_error_where_the_broker_lacks_transactions() {
    let broker = Broker::start(Storage::Memory);
    if !broker.is_tansu() {
        eprintln!("KAFKA_BOOTSTRAP names a real broker with transactions; nothing to refuse");
        return;
    }
    let mut s = settings(&broker, &unique("cw-eos-tansu"), 1);
    s.processing.guarantee = Guarantee::ExactlyOnce;
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    match Pipeline::start(s, metrics).await {
        Err(PipelineError::Unsupported(msg)) => {
            assert!(
                msg.contains("exactly_once") && msg.contains("transactions"),
                "{msg}"
            );
        }
        Err(e) => panic!("expected a clear refusal, got: {e}"),
        Ok(p) => {
            p.stop();
            panic!("exactly_once must be refused on tansu 0.6 (no EndTxn)");
        }
    }
}

fn spawn(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_churnwatch"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A crash (SIGKILL) in the middle of a transaction, then a restart with the
/// same transactional id: the open transaction is aborted, its input is
/// reprocessed (its offsets were never committed) and committed once.
///
/// `filters`: whether the broker hides open and aborted transactions from
/// read-committed consumers. Real Kafka does; librdkafka's mock cluster
/// (2.12) does not (see `the_mock_cluster_does_not_hide_aborted_transactions`),
/// so there the test can only check that the reprocessed batch carries the
/// very same outreach ids, which downstream deduplication removes.
fn crash_mid_transaction(bootstrap: &str, create: &dyn Fn(&str, i32), filters: bool) {
    let app = unique("cw-eos");
    let (input, outreach, dlq, changelog) = (
        format!("{app}-in"),
        format!("{app}-outreach"),
        format!("{app}-dlq"),
        format!("{app}-changelog"),
    );
    for t in [&input, &outreach, &dlq, &changelog] {
        create(t, 2);
    }
    let broker = Broker::external(bootstrap);
    let evs = month();
    let busy_first = ["steady", "silent-regular", "renewal"];
    broker.produce(&input, &evs, Format::Protobuf, |c| {
        i32::from(!busy_first.contains(&c))
    });
    let expected = common::replay_ids(&evs, CoreConfig::default());
    assert_eq!(expected.len(), 4);

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = |commit_ms: u64| {
        let path = dir.path().join(format!("c{commit_ms}.toml"));
        let text = format!(
            r#"application_id = "{app}"
[kafka]
bootstrap_servers = "{bootstrap}"
input_topic = "{input}"
outreach_topic = "{outreach}"
dead_letter_topic = "{dlq}"
group_instance_id = "eos-instance-1"
assignment_strategy = "range"
create_topics = false
[kafka.properties]
"session.timeout.ms" = "6000"
[processing]
guarantee = "exactly_once"
commit_interval_ms = {commit_ms}
"#
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    };

    // First run: one long transaction, then SIGKILL before it commits.
    let first = Running(spawn(&config(120_000)));
    // Generous: on a loaded machine the first transaction can take a while to open.
    let produced = wait_for(Duration::from_secs(240), || {
        let seen = broker.read_topic(&outreach, 4, Duration::from_secs(1), false);
        (seen.len() >= 4).then_some(seen)
    })
    .unwrap_or_default();
    assert_eq!(
        outreach_ids(&produced).into_iter().collect::<BTreeSet<_>>(),
        expected,
        "produced inside the transaction"
    );
    if filters {
        let visible = broker.read_topic(&outreach, 1, Duration::from_secs(3), true);
        assert!(
            visible.is_empty(),
            "an open transaction is invisible to read-committed readers"
        );
    }
    drop(first); // SIGKILL

    // Second run: same transactional id: aborts, reprocesses, commits.
    let second = Running(spawn(&config(200)));
    let want = if filters { 4 } else { 8 };
    let committed = wait_for(Duration::from_secs(90), || {
        let seen = broker.read_topic(&outreach, want, Duration::from_secs(1), true);
        (seen.len() >= want).then_some(seen)
    })
    .unwrap_or_default();
    std::thread::sleep(Duration::from_secs(2));
    let all = outreach_ids(&broker.read_topic(&outreach, usize::MAX, Duration::from_secs(3), true));
    drop(second);
    assert!(
        committed.len() >= want,
        "{} outreach records visible",
        committed.len()
    );
    let distinct: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(
        distinct, expected,
        "the committed outreach is exactly the replay's"
    );
    if filters {
        assert_eq!(
            all.len(),
            expected.len(),
            "no repeats: the aborted copies are invisible"
        );
    } else {
        // The aborted copies are visible on the mock; each id at most twice
        // (once aborted, once committed), never a different id.
        for id in &expected {
            let n = all.iter().filter(|x| *x == id).count();
            assert!((1..=2).contains(&n), "{id} seen {n} times");
        }
    }

    // Third run: the transaction committed the input offsets: nothing is reprocessed.
    let before = all.len();
    let third = Running(spawn(&config(200)));
    std::thread::sleep(Duration::from_secs(8));
    drop(third);
    let after = broker
        .read_topic(&outreach, usize::MAX, Duration::from_secs(3), true)
        .len();
    assert_eq!(
        after, before,
        "committed offsets: a restart reprocesses nothing"
    );
}

#[test]
fn a_crash_mid_transaction_commits_the_outreach_once_on_the_mock_cluster() {
    let mock = MockCluster::<DefaultProducerContext>::new(1).unwrap_or_else(|e| panic!("{e}"));
    let create = |t: &str, n: i32| mock.create_topic(t, n, 1).unwrap_or_else(|e| panic!("{e}"));
    crash_mid_transaction(&mock.bootstrap_servers(), &create, false);
}

/// With a real Kafka (`KAFKA_BOOTSTRAP`), the full promise: an aborted
/// transaction leaves no outreach visible to a read-committed consumer.
#[test]
fn a_crash_mid_transaction_leaves_nothing_visible_on_a_real_kafka() {
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP") else {
        eprintln!("KAFKA_BOOTSTRAP not set: the invisibility of aborted transactions needs a real Kafka (see README)");
        return;
    };
    let broker = Broker::external(&bootstrap);
    let create = |t: &str, n: i32| broker.create_topic(t, n, t.ends_with("-changelog"));
    crash_mid_transaction(&bootstrap, &create, true);
}

/// Evidence for README: librdkafka's mock cluster returns records of open and
/// aborted transactions to read-committed consumers. If this test starts
/// failing, the mock learned to filter: strengthen the mock test above.
#[test]
fn the_mock_cluster_does_not_hide_aborted_transactions() {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        message::Message,
        producer::{BaseProducer, BaseRecord, Producer},
        ClientConfig, Offset, TopicPartitionList,
    };
    let mock = MockCluster::<DefaultProducerContext>::new(1).unwrap_or_else(|e| panic!("{e}"));
    mock.create_topic("t", 1, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("transactional.id", "probe")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    p.init_transactions(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    p.begin_transaction().unwrap_or_else(|e| panic!("{e}"));
    p.send(
        BaseRecord::<[u8], [u8]>::to("t")
            .key(&b"k"[..])
            .payload(&b"aborted"[..]),
    )
    .map_err(|e| e.0)
    .unwrap_or_else(|e| panic!("{e}"));
    p.flush(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    p.abort_transaction(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("group.id", "probe")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("t", 0, Offset::Beginning)
        .unwrap_or_else(|e| panic!("{e}"));
    c.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
    let mut seen = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < end {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            seen.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(
        seen,
        vec!["aborted".to_owned()],
        "the mock shows aborted records to read-committed readers"
    );
}
