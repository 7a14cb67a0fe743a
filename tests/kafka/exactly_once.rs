//! Exactly-once: Kafka transactions, on Apache Kafka (churnwatch-testkit: this
//! binary's own, or `KAFKA_BOOTSTRAP`), where aborted transactions are
//! invisible to read-committed readers, and on librdkafka's mock cluster,
//! which shows them (its documented limit, kept as evidence).

use crate::common;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::{Child, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use churnwatch::{
    codec::Format,
    config::CoreConfig,
    generate::{GenConfig, Generator},
    pb::InteractionEvent,
    settings::{AssignmentStrategy, Guarantee, Settings},
    time::Span,
};
use common::{month::month, outreach_ids, unique, wait_for, Broker, Running, Service};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::{mocking::MockCluster, producer::DefaultProducerContext};

fn spawn(config: &std::path::Path) -> Child {
    churnwatch_testkit::churnwatch_command()
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
[http]
listen = "127.0.0.1:{port}"
"#,
            // Its own port: the mock and Kafka variants run at once.
            port = common::free_port(),
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

    // Third run: nothing is sent again. On a real Kafka the transaction
    // committed the input offsets, so nothing is reprocessed. The mock
    // acknowledges transactional offset commits without storing them (see
    // `eos_wait_to_end`): there the input is read again from the start, and
    // the state restored from the changelog drops it (late or duplicate).
    let before = all.len();
    let third = Running(spawn(&config(200)));
    std::thread::sleep(Duration::from_secs(8));
    drop(third);
    let after = broker
        .read_topic(&outreach, usize::MAX, Duration::from_secs(3), true)
        .len();
    assert_eq!(after, before, "a restart after the commit re-sends nothing");
}

#[test]
fn a_crash_mid_transaction_commits_the_outreach_once_on_the_mock_cluster() {
    let mock = MockCluster::<DefaultProducerContext>::new(1).unwrap_or_else(|e| panic!("{e}"));
    let create = |t: &str, n: i32| mock.create_topic(t, n, 1).unwrap_or_else(|e| panic!("{e}"));
    crash_mid_transaction(&mock.bootstrap_servers(), &create, false);
}

/// On Apache Kafka, the full promise: an aborted transaction leaves no
/// outreach visible to a read-committed consumer.
#[test]
fn a_crash_mid_transaction_leaves_nothing_visible_on_apache_kafka() {
    let broker = Broker::start();
    let create = |t: &str, n: i32| broker.create_topic(t, n, t.ends_with("-changelog"));
    crash_mid_transaction(&broker.bootstrap, &create, true);
}

/// One transaction aborted ("aborted"), then one committed ("committed"), on
/// topic `t`; returns the payloads a read-committed reader then sees.
fn read_committed_after_an_abort(bootstrap: &str, t: &str) -> Vec<String> {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        message::Message,
        producer::{BaseProducer, BaseRecord, Producer},
        ClientConfig, Offset, TopicPartitionList,
    };
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", unique("probe"))
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    p.init_transactions(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    for (payload, commit) in [("aborted", false), ("committed", true)] {
        p.begin_transaction().unwrap_or_else(|e| panic!("{e}"));
        p.send(
            BaseRecord::<[u8], [u8]>::to(t)
                .key(&b"k"[..])
                .payload(payload.as_bytes()),
        )
        .map_err(|e| e.0)
        .unwrap_or_else(|e| panic!("{e}"));
        p.flush(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        if commit {
            p.commit_transaction(Duration::from_secs(10))
        } else {
            p.abort_transaction(Duration::from_secs(10))
        }
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("probe"))
        .set("isolation.level", "read_committed")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(t, 0, Offset::Beginning)
        .unwrap_or_else(|e| panic!("{e}"));
    c.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
    let mut seen = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < end {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            seen.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    seen
}

/// Apache Kafka hides the aborted transaction from read-committed readers
/// and shows the committed one.
#[test]
fn apache_kafka_hides_aborted_transactions_from_read_committed_readers() {
    let broker = Broker::start();
    let t = unique("cw-abort");
    broker.create_topic(&t, 1, false);
    assert_eq!(
        read_committed_after_an_abort(&broker.bootstrap, &t),
        vec!["committed".to_owned()],
        "a read-committed reader sees only the committed transaction"
    );
}

/// Evidence for docs/reliability.md: librdkafka's mock cluster returns records of open and
/// aborted transactions to read-committed consumers. If this test starts
/// failing, the mock learned to filter: strengthen the mock tests above.
#[test]
fn the_mock_cluster_does_not_hide_aborted_transactions() {
    let mock = MockCluster::<DefaultProducerContext>::new(1).unwrap_or_else(|e| panic!("{e}"));
    mock.create_topic("t", 1, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        read_committed_after_an_abort(&mock.bootstrap_servers(), "t"),
        vec!["aborted".to_owned(), "committed".to_owned()],
        "the mock shows aborted records to read-committed readers"
    );
}

/// Settings of one exactly-once run over `input` (topics made by the caller:
/// the mock cluster has no admin API). Fixed model, no idle advance: the
/// outcome is a function of the input.
fn eos_settings(bootstrap: &str, app: &str, input: &str, instance: &str) -> Settings {
    let mut s = Settings {
        application_id: app.to_owned(),
        ..Settings::default()
    };
    s.kafka.bootstrap_servers = bootstrap.to_owned();
    s.kafka.input_topic = input.to_owned();
    s.kafka.outreach_topic = format!("{app}-outreach");
    s.kafka.dead_letter_topic = format!("{app}-dlq");
    s.kafka.create_topics = false;
    s.kafka.assignment_strategy = AssignmentStrategy::Range;
    // Static membership and a fixed transactional id: a restart fences the
    // killed instance and aborts its open transaction.
    s.kafka.group_instance_id = Some(instance.to_owned());
    s.kafka
        .properties
        .insert("session.timeout.ms".into(), "6000".into());
    s.processing.guarantee = Guarantee::ExactlyOnce;
    s.processing.commit_interval_ms = 200;
    s.processing.idle_advance = Some(Span::seconds(0));
    s.model.min_customers = i64::MAX as u64;
    s
}

/// Waits until the run reached the end of the input; fails if the service
/// exits meanwhile. On a real Kafka: the group committed the end of every
/// partition. On librdkafka's mock cluster, which acknowledges transactional
/// offset commits without storing them (`rd_kafka_mock_handle_TxnOffsetCommit`
/// in librdkafka 2.12 parses and answers, and keeps nothing), a restarted
/// instance starts over from the first offset: there, the service has handled
/// every input event and its transaction count has then stood still for 1 s
/// (five commit intervals; a transaction open at the last event is committed
/// within one). Waiting for one more commit after the last event was seen
/// raced: at 200 ms batches, the last commit often fell in the same 100 ms
/// scrape as the last event, and nothing committed after it.
fn eos_wait_to_end(broker: &Broker, s: &Settings, svc: &mut Service, real: bool, what: &str) {
    let end = broker.end_offsets(&s.kafka.input_topic);
    let total: i64 = end.iter().sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Since when the commit count stood still, and at what, once all is handled.
    let mut handled_all_at: Option<(Instant, f64)> = None;
    loop {
        if let Some(status) = svc.exited() {
            panic!("{what}: the service exited ({status}) before the end of the input");
        }
        let reached = if real {
            broker
                .committed(s.group_id(), &s.kafka.input_topic, end.len())
                .as_ref()
                == Some(&end)
        } else {
            let m = svc.metrics_text().unwrap_or_default();
            let handled = common::scraped(&m, "churnwatch_events_consumed_total")
                + common::scraped(&m, "churnwatch_events_dropped_total")
                + common::scraped(&m, "churnwatch_events_rejected_total");
            let commits = common::scraped(&m, "churnwatch_commits_total{result=\"ok\"}");
            match handled_all_at {
                Some((_, c)) if commits != c => {
                    handled_all_at = Some((Instant::now(), commits));
                    false
                }
                Some((since, _)) => since.elapsed() >= Duration::from_secs(1),
                None => {
                    if handled as i64 >= total {
                        handled_all_at = Some((Instant::now(), commits));
                    }
                    false
                }
            }
        };
        if reached {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the end of the input ({end:?}) not reached in 120 s: committed {:?}, /metrics handled all: {}",
            broker.committed(s.group_id(), &s.kafka.input_topic, end.len()),
            handled_all_at.is_some()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What read-committed readers see after a run: outreach ids in topic order
/// and final customer states from the changelog.
fn eos_outcome(broker: &Broker, s: &Settings) -> (Vec<String>, BTreeMap<String, Vec<u8>>) {
    let out = broker.read_to_end(&s.kafka.outreach_topic, true, Duration::from_secs(60));
    let changelog = broker.read_to_end(&s.changelog_topic(), true, Duration::from_secs(60));
    (outreach_ids(&out), common::final_states(&changelog))
}

const EOS_PARTITIONS: i32 = 2;

fn eos_partition_of(id: &str) -> i32 {
    (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % EOS_PARTITIONS as u64) as i32
}

fn produce_events(bootstrap: &str, topic: &str, evs: &[InteractionEvent]) {
    let broker = Broker::external(bootstrap);
    broker.produce(topic, evs, Format::Protobuf, eos_partition_of);
}

/// Seeded crash trials in exactly-once mode: each streams a generated
/// population into its own input topic, SIGKILLs the service once it has
/// handled a random number of events (usually mid-transaction), restarts it
/// with the same transactional id and runs to the end. The committed outreach
/// must be the clean run's: on a broker that hides aborted transactions
/// (`filters`), exactly, with no repeats; on the mock, which shows them, the
/// same ids, each at most twice (the aborted copy and the committed one).
/// A last restart re-sends nothing.
fn eos_crash_trials(bootstrap: &str, create: &dyn Fn(&str, i32), filters: bool) {
    let started = Instant::now();
    let trials: usize = std::env::var("CW_EOS_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let evs: Vec<InteractionEvent> = Generator::new(GenConfig {
        customers: 150,
        span: Span::days(45),
        seed: 21,
        ..GenConfig::default()
    })
    .collect();
    let total = evs.len() as u64;
    let broker = Broker::external(bootstrap);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let topics = |app: &str| {
        for t in ["in", "outreach", "dlq", "changelog"] {
            create(&format!("{app}-{t}"), EOS_PARTITIONS);
        }
    };

    // The clean run.
    let app = unique("cw-eos-clean");
    topics(&app);
    produce_events(bootstrap, &format!("{app}-in"), &evs);
    let s = eos_settings(bootstrap, &app, &format!("{app}-in"), "clean");
    let mut svc = Service::spawn(&s, dir.path(), "clean");
    eos_wait_to_end(&broker, &s, &mut svc, filters, "clean run");
    assert_eq!(
        svc.terminate(Duration::from_secs(40))
            .and_then(|s| s.code()),
        Some(0)
    );
    let (clean_ids, clean_states) = eos_outcome(&broker, &s);
    let clean: BTreeSet<String> = clean_ids.iter().cloned().collect();
    assert_eq!(
        clean.len(),
        clean_ids.len(),
        "the clean run repeats nothing"
    );
    assert!(!clean.is_empty());
    eprintln!(
        "exactly-once clean run: {total} events, {} outreach, {} customers ({:.1} s)",
        clean.len(),
        clean_states.len(),
        started.elapsed().as_secs_f64()
    );

    let mut rng = ChaCha8Rng::seed_from_u64(20_240_612);
    let seeds: Vec<u64> = (0..trials).map(|_| rng.gen()).collect();
    // Topics first (the mock cluster's handle stays on this thread).
    let apps: Vec<String> = (0..trials)
        .map(|trial| {
            let app = unique(&format!("cw-eos{trial}"));
            topics(&app);
            app
        })
        .collect();
    let next = AtomicUsize::new(0);
    let (repeats, state_diffs) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let trial = next.fetch_add(1, Ordering::SeqCst);
                let Some(&seed) = seeds.get(trial) else { break };
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let target = rng.gen_range(0..total);
                let delay = Duration::from_millis(rng.gen_range(0..150));
                let t0 = Instant::now();
                let app = apps[trial].clone();
                let input = format!("{app}-in");
                let s = eos_settings(bootstrap, &app, &input, &format!("eos-{trial}"));
                let first = Service::spawn(&s, dir.path(), &app);
                // Stream once it owns its partitions, so the kill lands mid-stream.
                let ready = wait_for(Duration::from_secs(60), || {
                    common::http_get(first.port, "/readyz", None).filter(|r| r.0 == 200)
                });
                assert!(ready.is_some(), "trial {trial}: the service became ready");
                // The input streams in while the first instance runs.
                let (evs, topic, b) = (evs.clone(), input.clone(), bootstrap.to_owned());
                let producer = std::thread::spawn(move || {
                    for chunk in evs.chunks(40) {
                        produce_events(&b, &topic, chunk);
                        std::thread::sleep(Duration::from_millis(150));
                    }
                });
                let mut seen = 0;
                let deadline = Instant::now() + Duration::from_secs(90);
                while seen < target && Instant::now() < deadline {
                    seen = first.handled().unwrap_or(seen);
                    std::thread::sleep(Duration::from_millis(2));
                }
                assert!(seen >= target, "trial {trial}: handled {seen} of {target} in 90 s");
                std::thread::sleep(delay);
                let seen = first.handled().unwrap_or(seen);
                if std::env::var("CW_TRACE").is_ok() {
                    let m = first.metrics_text().unwrap_or_default();
                    eprintln!(
                        "trial {trial} before the kill ({:?}): {:?}",
                        t0.elapsed(),
                        m.lines()
                            .filter(|l| l.starts_with("churnwatch_commits_total")
                                || l.starts_with("churnwatch_changelog_records"))
                            .collect::<Vec<_>>()
                    );
                }
                first.kill();
                producer
                    .join()
                    .unwrap_or_else(|_| panic!("trial {trial}: producer panicked"));
                let mut second = Service::spawn(&s, dir.path(), &app);
                eos_wait_to_end(&broker, &s, &mut second, filters, &format!("trial {trial}"));
                assert_eq!(
                    second.terminate(Duration::from_secs(40)).and_then(|s| s.code()),
                    Some(0),
                    "trial {trial}: SIGTERM, exit 0"
                );
                let (ids, states) = eos_outcome(&broker, &s);
                let distinct: BTreeSet<String> = ids.iter().cloned().collect();
                assert_eq!(
                    distinct, clean,
                    "trial {trial} (seed {seed}): the committed outreach ids are the clean run's"
                );
                let twice = ids.len() - distinct.len();
                if filters {
                    assert_eq!(twice, 0, "trial {trial} (seed {seed}): no repeats");
                    assert!(
                        states == clean_states,
                        "trial {trial} (seed {seed}): final states equal the clean run's"
                    );
                } else {
                    for id in &distinct {
                        let n = ids.iter().filter(|x| *x == id).count();
                        assert!(n <= 2, "trial {trial} (seed {seed}): {id} seen {n} times");
                    }
                }
                let differing = clean_states
                    .iter()
                    .filter(|(k, v)| states.get(*k) != Some(*v))
                    .count();
                repeats.fetch_add(twice, Ordering::SeqCst);
                state_diffs.fetch_add(usize::from(differing > 0), Ordering::SeqCst);

                // Once: a further restart finds everything committed and re-sends nothing.
                if trial == 0 {
                    let mut third = Service::spawn(&s, dir.path(), &app);
                    std::thread::sleep(Duration::from_secs(5));
                    assert!(third.exited().is_none());
                    if filters {
                        assert_eq!(third.handled(), Some(0), "trial 0: nothing reprocessed");
                    }
                    third.kill();
                    assert_eq!(
                        eos_outcome(&broker, &s).0.len(),
                        ids.len(),
                        "trial 0: a restart after the end re-sends nothing"
                    );
                }
                eprintln!(
                    "eos trial {trial:2}: seed {seed:20}: SIGKILL after {seen:4} of {total} events handled (target {target:4}, then {delay:?}); \
                     restarted: {} committed outreach records, {} distinct (= clean), {twice} seen twice (aborted copies{}); \
                     final states {}; {:.1} s",
                    ids.len(),
                    distinct.len(),
                    if filters { ": none, as required" } else { " the mock shows" },
                    if differing == 0 {
                        "= clean".to_owned()
                    } else {
                        format!("differ for {differing} customers (the mock's restore reads aborted changelog records)")
                    },
                    t0.elapsed().as_secs_f64()
                );
            });
        }
    });
    eprintln!(
        "{trials} exactly-once crash trials, {trials} kills, {} outreach records seen twice in all, final states differing in {} trials, {:.1} s",
        repeats.into_inner(),
        state_diffs.into_inner(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn seeded_crashes_in_exactly_once_mode_commit_the_clean_outreach_on_the_mock_cluster() {
    let mock = MockCluster::<DefaultProducerContext>::new(1).unwrap_or_else(|e| panic!("{e}"));
    let create = |t: &str, n: i32| mock.create_topic(t, n, 1).unwrap_or_else(|e| panic!("{e}"));
    eos_crash_trials(&mock.bootstrap_servers(), &create, false);
}

/// On Apache Kafka, the full promise: no repeats, and final states equal
/// the clean run's.
#[test]
fn seeded_crashes_in_exactly_once_mode_repeat_nothing_on_apache_kafka() {
    let broker = Broker::start();
    let create = |t: &str, n: i32| broker.create_topic(t, n, t.ends_with("-changelog"));
    eos_crash_trials(&broker.bootstrap, &create, true);
}
