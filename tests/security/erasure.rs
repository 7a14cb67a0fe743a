//! Erasure sticks: tombstones, and a restore does not bring the customer back.

use super::support::*;
use crate::common::{settings, unique, wait_for, Broker};
use std::time::Duration;

use churnwatch::{codec::Format, events};

/// Records of the changelog with this key, in order (None = tombstone).
fn changelog_values(broker: &Broker, topic: &str, key: &str) -> Vec<Option<Vec<u8>>> {
    broker
        .read_topic(topic, usize::MAX, Duration::from_secs(8), false)
        .into_iter()
        .filter(|r| r.key.as_deref() == Some(key))
        .map(|r| r.value)
        .collect()
}

/// An erasure removes the customer from memory, `/customers` and the
/// changelog (a tombstone); an older event that arrives later does not bring
/// them back, neither in the running instance nor in a new one restored from
/// the changelog.
#[test]
fn an_erased_customer_stays_erased_across_a_restore() {
    let broker = Broker::start();
    let app = unique("cw-erase");
    let s = settings(&broker, &app, 1);
    let input = s.kafka.input_topic.clone();
    let gone = "pii-erase-me";
    let kept = "pii-keep-me";
    let mut evs = weekly(gone, 8);
    evs.extend(weekly(kept, 8));
    // In time order: one partition, so out of order would be merely late.
    evs.sort_by_key(|e| e.occurred_at.as_ref().map(|t| t.seconds));
    broker.produce(&input, &evs, Format::Protobuf, |_| 0);
    let last = T0 + 7 * 7 * DAY;

    let mut a = Service::start(s.clone(), &[]);
    a.wait_ready();
    a.wait_handled(evs.len() as u64);
    let r = a
        .get(&format!("/customers/{gone}"), None)
        .unwrap_or_default();
    assert!(r.0 == 200 && r.1.contains("\"purchases\":8"), "{r:?}");
    a.wait_metric("churnwatch_customers_tracked", 2.0);

    // The erasure, then an event from before it (within the lateness, so
    // not merely late), then an event of another customer.
    let erased_at = last + 3600;
    let after = vec![
        events::erasure("erase-1", gone, erased_at),
        events::purchase("late-1", gone, erased_at - 1800, 9.0),
        events::purchase("kept-after", kept, erased_at + 3600, 9.0),
    ];
    broker.produce(&input, &after, Format::Protobuf, |_| 0);
    a.wait_handled((evs.len() + after.len()) as u64);
    let r = a
        .get(&format!("/customers/{gone}"), None)
        .unwrap_or_default();
    assert_eq!(r.0, 404, "erased: {r:?}");
    let r = a
        .get(&format!("/customers/{kept}"), None)
        .unwrap_or_default();
    assert!(r.0 == 200 && r.1.contains("\"purchases\":9"), "{r:?}");
    a.wait_metric("churnwatch_customers_tracked", 1.0);
    let text = a.get("/metrics", None).unwrap_or_default().1;
    assert!(
        text.contains("churnwatch_events_dropped_total{reason=\"forgotten\"} 1"),
        "the older event was forgotten: {text}"
    );

    // The changelog: the customer's last record is a tombstone.
    let changelog = s.changelog_topic();
    let values = wait_for(Duration::from_secs(30), || {
        let v = changelog_values(&broker, &changelog, gone);
        (v.last() == Some(&None)).then_some(v)
    });
    let values = values.unwrap_or_else(|| {
        panic!(
            "no tombstone for {gone}: {:?}",
            changelog_values(&broker, &changelog, gone)
                .iter()
                .map(Option::is_some)
                .collect::<Vec<_>>()
        )
    });
    assert!(values.len() >= 2, "a snapshot, then the tombstone");
    let (code, log) = a.stop();
    assert_eq!(code, Some(0), "{log}");

    // While no instance runs, another event from before the erasure arrives.
    let late = vec![events::purchase("late-2", gone, erased_at - 900, 9.0)];
    broker.produce(&input, &late, Format::Protobuf, |_| 0);

    // A new instance restores from the changelog: the customer is not there,
    // and the late event does not bring them back.
    let mut b = Service::start(s.clone(), &[]);
    b.wait_ready();
    b.wait_handled(late.len() as u64);
    let r = b
        .get(&format!("/customers/{gone}"), None)
        .unwrap_or_default();
    assert_eq!(r.0, 404, "restored without the erased customer: {r:?}");
    let r = b
        .get(&format!("/customers/{kept}"), None)
        .unwrap_or_default();
    assert!(r.0 == 200 && r.1.contains("\"purchases\":9"), "{r:?}");
    b.wait_metric("churnwatch_customers_tracked", 1.0);
    let text = b.get("/metrics", None).unwrap_or_default().1;
    assert!(
        text.contains("churnwatch_events_dropped_total{reason=\"forgotten\"} 1"),
        "the late event was forgotten after the restore: {text}"
    );
    let (code, log) = b.stop();
    assert_eq!(code, Some(0), "{log}");
    let values = changelog_values(&broker, &changelog, gone);
    assert_eq!(
        values.last(),
        Some(&None),
        "nothing written for the erased customer after the tombstone"
    );
}
