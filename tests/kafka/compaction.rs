//! The changelog compacted for real, on Apache Kafka (churnwatch-testkit: this
//! binary's own, or `KAFKA_BOOTSTRAP`): churnwatch creates it with the
//! settings of `pipeline::topics::CHANGELOG_CONFIG`, refuses one whose
//! cleanup policy would delete state, and after the broker's log cleaner
//! compacted it (small segments here) a fresh instance restores the very
//! same states, erased customers included (still gone).

use crate::common;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use churnwatch::{
    codec::Format,
    events,
    generate::{GenConfig, Generator},
    metrics::Metrics,
    pb::InteractionEvent,
    pipeline::{Pipeline, PipelineError, CHANGELOG_CONFIG},
    settings::Settings,
    time::Span,
};
use common::{handled, settings, unique, wait_for, Broker};

/// No refits: every instance scores with the same (prior) model.
fn fixed_model(mut s: Settings) -> Settings {
    s.model.min_customers = u64::MAX;
    s
}

async fn start(s: &Settings) -> (Pipeline, Arc<Metrics>) {
    let m = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let p = Pipeline::start(s.clone(), m.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (p, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_changelog_is_created_with_the_documented_compaction_settings() {
    let broker = Broker::start();
    let s = fixed_model(settings(&broker, &unique("cw-clcfg"), 1));
    let (p, _) = start(&s).await;
    p.stop();
    p.join().unwrap_or_else(|e| panic!("{e}"));
    let got = broker.topic_config(&s.changelog_topic());
    for (k, v) in CHANGELOG_CONFIG {
        assert_eq!(
            got.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str()),
            Some(v),
            "{k} of the created changelog"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_whose_cleanup_policy_deletes_state_is_refused_naming_the_setting() {
    let broker = Broker::start();
    let s = fixed_model(settings(&broker, &unique("cw-cldel"), 1));
    let changelog = s.changelog_topic();
    broker.create_topic(&changelog, 1, false);
    broker.alter_topic(
        &changelog,
        &[("cleanup.policy", "delete"), ("retention.ms", "604800000")],
    );
    let m = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    match Pipeline::start(s.clone(), m).await {
        Err(PipelineError::Topology(msg)) => assert!(
            msg.contains(&changelog)
                && msg.contains("cleanup.policy=delete")
                && msg.contains("retention.ms=604800000"),
            "{msg}"
        ),
        Err(e) => panic!("expected a refusal naming the setting, got: {e}"),
        Ok(p) => {
            p.stop();
            panic!("a changelog with cleanup.policy=delete must be refused");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_log_cleaner_compacts_the_changelog_a_fresh_instance_restores_the_same_states() {
    let broker = Broker::start();
    let s = fixed_model(settings(&broker, &unique("cw-compact"), 1));
    let changelog = s.changelog_topic();
    // Small segments (rolled every 200 ms of writes) and an eager cleaner:
    // everything but the active segment is compacted within seconds. The
    // tombstones stay (delete.retention.ms: 1 day), as in production.
    broker.create_topic(&changelog, 1, true);
    broker.alter_topic(
        &changelog,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "200"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "0"),
            ("retention.ms", "-1"),
        ],
    );
    let evs: Vec<InteractionEvent> = Generator::new(GenConfig {
        customers: 150,
        span: Span::days(60),
        seed: 17,
        ..GenConfig::default()
    })
    .collect();
    let ids: BTreeSet<String> = evs.iter().map(|e| e.customer_id.clone()).collect();
    let erased: Vec<String> = ids.iter().step_by(15).cloned().collect();
    let last = evs
        .iter()
        .filter_map(|e| e.occurred_at.as_ref().map(|t| t.seconds))
        .max()
        .unwrap_or_default();
    let erasures: Vec<InteractionEvent> = erased
        .iter()
        .enumerate()
        .map(|(i, c)| events::erasure(&format!("erase-{i}"), c, last + 60))
        .collect();

    // Instance A, the input streamed in pieces so that each customer's state
    // is written many times over many segments; then the erasures.
    let (a, ma) = start(&s).await;
    let chunks: Vec<&[InteractionEvent]> = evs.chunks(evs.len().div_ceil(15)).collect();
    let mut sent = 0;
    for chunk in chunks.iter().copied().chain([&erasures[..]]) {
        broker.produce(&s.kafka.input_topic, chunk, Format::Protobuf, |_| 0);
        sent += chunk.len() as u64;
        let done = wait_for(Duration::from_secs(60), || {
            (handled(&ma) >= sent).then_some(())
        });
        assert!(done.is_some(), "A handled {} of {sent}", handled(&ma));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let before = a.snapshots();
    a.stop();
    a.join().unwrap_or_else(|e| panic!("{e}"));
    let kept: BTreeSet<&String> = before.iter().map(|(k, _)| k).collect();
    for c in &erased {
        assert!(!kept.contains(c), "{c} erased in A");
    }
    assert_eq!(kept.len(), ids.len() - erased.len());

    // The log cleaner at work: wait until the records left are far fewer
    // than those written.
    let written: i64 = broker.end_offsets(&changelog).iter().sum();
    let mut present = 0;
    let compacted = wait_for(Duration::from_secs(90), || {
        present = broker
            .read_topic(&changelog, written as usize, Duration::from_secs(5), true)
            .len();
        (present as i64 * 2 < written).then_some(())
    });
    assert!(
        compacted.is_some(),
        "the cleaner did not compact {changelog}: {present} of {written} records left"
    );
    let records = broker.read_topic(&changelog, present, Duration::from_secs(10), true);
    let keys: BTreeSet<&String> = records.iter().filter_map(|r| r.key.as_ref()).collect();
    // A fresh instance restores from the compacted changelog.
    let (b, mb) = start(&s).await;
    let ready = wait_for(Duration::from_secs(60), || {
        (b.assigned() == vec![0] && b.readiness().is_ready()).then_some(())
    });
    assert!(ready.is_some(), "B restored: {:?}", b.readiness());
    let after = b.snapshots();
    let restored = common::metric(&mb, "churnwatch_changelog_restore_records_total") as i64;
    b.stop();
    b.join().unwrap_or_else(|e| panic!("{e}"));
    let back: Vec<&String> = after
        .iter()
        .map(|(k, _)| k)
        .filter(|k| erased.contains(k))
        .collect();
    assert!(back.is_empty(), "erased customers restored: {back:?}");
    for c in &erased {
        let of_c: Vec<(i64, Option<usize>)> = records
            .iter()
            .filter(|r| r.key.as_ref() == Some(c))
            .map(|r| (r.offset, r.value.as_ref().map(Vec::len)))
            .collect();
        assert!(
            of_c.last().is_none_or(|(_, v)| v.is_none()),
            "the last record of erased {c} is its tombstone: (offset, value bytes) {of_c:?}; \
             changelog end {written}"
        );
    }

    assert!(
        after == before,
        "the states restored from the compacted changelog equal A's, byte for byte ({} vs {} customers)",
        after.len(),
        before.len()
    );
    assert!(
        restored < written,
        "the restore read the compacted log: {restored} records of {written} written"
    );
    eprintln!(
        "compaction: {written} changelog records written for {} customers ({} erased); \
         {present} left after the cleaner ({} keys); fresh instance restored {restored} records, \
         {} states = A's",
        ids.len(),
        erased.len(),
        keys.len(),
        after.len()
    );
}
