//! State that outlives instances: restore from the changelog after a
//! restart, and two instances sharing (then taking over) partitions.
//! On Apache Kafka (churnwatch-testkit), whose storage is durable, since consumers resume
//! from committed offsets.

use crate::common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use churnwatch::{
    codec::Format,
    generate::{GenConfig, Generator},
    metrics::Metrics,
    pb::{InteractionEvent, OutreachRequested},
    pipeline::Pipeline,
    settings::Settings,
    time::Span,
};
use common::{handled, settings, unique, wait_for, Broker};
use prost::Message;

fn population(customers: u64, days: i64) -> Vec<InteractionEvent> {
    Generator::new(GenConfig {
        customers,
        span: Span::days(days),
        seed: 7,
        ..GenConfig::default()
    })
    .collect()
}

fn partition_of(id: &str, n: u64) -> i32 {
    (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % n) as i32
}

/// No refits: every instance and the replay score with the same (prior) model.
fn fixed_model(mut s: Settings) -> Settings {
    s.model.min_customers = u64::MAX;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_restores_the_state_from_the_changelog_without_reprocessing() {
    let broker = Broker::start();
    let app = unique("cw-restore");
    let s = fixed_model(settings(&broker, &app, 2));
    let evs = population(300, 45);
    broker.produce(&s.kafka.input_topic, &evs, Format::Protobuf, |c| {
        partition_of(c, 2)
    });

    let ma = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let a = Pipeline::start(s.clone(), ma.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let done = wait_for(Duration::from_secs(120), || {
        (handled(&ma) == evs.len() as u64).then_some(())
    });
    assert!(
        done.is_some(),
        "instance A handled {} of {}",
        handled(&ma),
        evs.len()
    );
    let before = a.snapshots();
    assert_eq!(before.len(), 300);
    a.stop();
    a.join().unwrap_or_else(|e| panic!("{e}"));

    let mb = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let b = Pipeline::start(s.clone(), mb.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ready = wait_for(Duration::from_secs(60), || {
        (b.assigned() == vec![0, 1] && b.readiness().is_ready()).then_some(())
    });
    assert!(
        ready.is_some(),
        "B owns and restored both partitions: {:?} {:?}",
        b.assigned(),
        b.readiness()
    );
    let after = b.snapshots();
    assert_eq!(after.len(), before.len());
    assert!(
        after == before,
        "the restored state equals the state before, byte for byte"
    );
    assert!(common::metric(&mb, "churnwatch_changelog_restore_records_total") as u64 >= 300);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        handled(&mb),
        0,
        "no input reprocessed: offsets were committed"
    );
    b.stop();
    b.join().unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_and_one_takes_over_when_the_other_stops() {
    let broker = Broker::start();
    let app = unique("cw-share");
    let s = fixed_model(settings(&broker, &app, 4));

    let evs = population(400, 60);
    let half = evs.len() / 2;
    broker.produce(&s.kafka.input_topic, &evs[..half], Format::Protobuf, |c| {
        partition_of(c, 4)
    });

    let ma = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let mb = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let a = Pipeline::start(s.clone(), ma.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = Pipeline::start(s.clone(), mb.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let shared = wait_for(Duration::from_secs(60), || {
        let (pa, pb) = (a.assigned(), b.assigned());
        let all: BTreeSet<i32> = pa.iter().chain(&pb).copied().collect();
        (!pa.is_empty() && !pb.is_empty() && all.len() == 4 && pa.len() + pb.len() == 4)
            .then_some((pa, pb))
    });
    assert!(
        shared.is_some(),
        "both own partitions: {:?} / {:?}",
        a.assigned(),
        b.assigned()
    );
    let first = wait_for(Duration::from_secs(120), || {
        (handled(&ma) + handled(&mb) >= half as u64).then_some(())
    });
    assert!(
        first.is_some(),
        "first half handled: {}",
        handled(&ma) + handled(&mb)
    );

    a.stop();
    a.join().unwrap_or_else(|e| panic!("{e}"));
    let took_over = wait_for(Duration::from_secs(60), || {
        (b.assigned() == vec![0, 1, 2, 3] && b.readiness().is_ready()).then_some(())
    });
    assert!(took_over.is_some(), "B took over: {:?}", b.assigned());
    assert!(
        common::metric(&mb, "churnwatch_changelog_restore_records_total") as u64 > 0,
        "A's partitions restored from the changelog"
    );

    broker.produce(&s.kafka.input_topic, &evs[half..], Format::Protobuf, |c| {
        partition_of(c, 4)
    });
    let all = wait_for(Duration::from_secs(120), || {
        (handled(&ma) + handled(&mb) >= evs.len() as u64).then_some(())
    });
    assert!(
        all.is_some(),
        "everything handled: {} of {}",
        handled(&ma) + handled(&mb),
        evs.len()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(b.snapshots().len(), 400, "B holds every customer");

    let out = broker.read_topic(
        &s.kafka.outreach_topic,
        usize::MAX,
        Duration::from_secs(5),
        false,
    );
    let sent: Vec<OutreachRequested> = out
        .iter()
        .map(|r| {
            OutreachRequested::decode(r.value.as_deref().unwrap_or_default()).unwrap_or_default()
        })
        .collect();
    assert!(!sent.is_empty());
    // One id per (customer, episode), never a second id for another episode's outreach.
    let mut by_episode: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    for o in &sent {
        by_episode
            .entry((
                o.customer_id.clone(),
                o.episode_started_at.map_or(0, |t| t.seconds),
            ))
            .or_default()
            .insert(o.outreach_id.clone());
    }
    assert!(by_episode.values().all(|ids| ids.len() == 1));
    let distinct: BTreeSet<&str> = sent.iter().map(|o| o.outreach_id.as_str()).collect();
    assert_eq!(
        distinct.len(),
        sent.len(),
        "no outreach sent twice across the takeover"
    );

    // And every one of them is a decision the replay of the same events makes.
    let replay_ids = common::replay_ids(&evs, s.core());
    let foreign: Vec<&&str> = distinct
        .iter()
        .filter(|id| !replay_ids.contains(**id))
        .collect();
    assert!(
        foreign.is_empty(),
        "{} outreach ids the replay does not make: {foreign:?}",
        foreign.len()
    );
    b.stop();
    b.join().unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_scores_with_the_model_the_stopped_one_had_fitted() {
    let broker = Broker::start();
    let app = unique("cw-model");
    let s = settings(&broker, &app, 2);
    let evs = population(400, 60);
    broker.produce(&s.kafka.input_topic, &evs, Format::Protobuf, |c| {
        partition_of(c, 2)
    });
    let ma = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let a = Pipeline::start(s.clone(), ma.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let done = wait_for(Duration::from_secs(120), || {
        (handled(&ma) == evs.len() as u64).then_some(())
    });
    assert!(done.is_some());
    let first = wait_for(Duration::from_secs(30), || {
        a.model().filter(|m| m.fit.is_some())
    });
    assert!(first.is_some(), "A refitted the model: {:?}", a.model());
    std::thread::sleep(Duration::from_secs(1)); // one more batch: the model record is committed
    let fitted = a.model().unwrap_or_else(|| panic!("A has a model"));
    a.stop();
    a.join().unwrap_or_else(|e| panic!("{e}"));

    let b = Pipeline::start(
        s.clone(),
        Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}"))),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let restored = wait_for(Duration::from_secs(60), || {
        (b.assigned() == vec![0, 1] && b.readiness().is_ready())
            .then(|| b.model())
            .flatten()
    });
    let restored = restored.unwrap_or_else(|| panic!("B ready"));
    assert_eq!(
        restored.params, fitted.params,
        "the same model, not the prior"
    );
    assert_eq!(
        restored.fit.as_ref().map(|f| f.fitted_at),
        fitted.fit.as_ref().map(|f| f.fitted_at)
    );
    b.stop();
    b.join().unwrap_or_else(|e| panic!("{e}"));
}
