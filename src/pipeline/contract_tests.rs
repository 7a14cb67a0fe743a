//! The output contract (docs/contract.md) against the real sink, on
//! librdkafka's in-process mock cluster: the partition each key lands on and
//! the headers each kind of decision carries.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{Headers, Message},
    mocking::MockCluster,
    producer::DefaultProducerContext,
    ClientConfig, Offset, TopicPartitionList,
};

use super::sink::{header, Sink, Trigger};
use crate::{
    metrics::Metrics,
    pb::OutreachRequested,
    settings::{Partitioner, Settings},
};

/// (key, partition of 12) as Java's kafka-clients 4.4.0 computes them:
/// `Utils.toPositive(Utils.murmur2(key.getBytes(UTF_8))) % 12`, printed by a
/// single-file `java` program run once against
/// ~/.cache/churnwatch/kafka/4.4.0/libs/kafka-clients-4.4.0.jar (with its
/// slf4j-api jar on the class path). Not computed here: the test must not
/// share a bug with the code it checks.
const JAVA_MURMUR2_OF_12: [(&str, i32); 11] = [
    ("c-000001", 1),
    ("c-000002", 1),
    ("c-000042", 1),
    ("cust-17", 7),
    ("customer-12345", 6),
    ("alice", 9),
    ("bob", 6),
    ("x", 10),
    ("c-999999", 0),
    ("0", 8),
    ("Ω-unicode", 2),
];

struct Sent {
    partition: i32,
    headers: BTreeMap<String, String>,
}

/// Sends one outreach per (customer, trigger) through a [`Sink`] made from
/// `settings` and reads the records back, by customer.
fn through_sink(partitioner: Partitioner, sends: &[(&str, Trigger)]) -> BTreeMap<String, Sent> {
    let mock = MockCluster::<DefaultProducerContext>::new(1)
        .unwrap_or_else(|e| panic!("mock cluster: {e}"));
    let mut s = Settings::default();
    s.kafka.bootstrap_servers = mock.bootstrap_servers();
    s.kafka.input_topic = "in".into();
    s.kafka.outreach_topic = "out".into();
    s.kafka.partitioner = partitioner;
    mock.create_topic("out", 12, 1)
        .unwrap_or_else(|e| panic!("topic: {e}"));
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let sink = Sink::new(&s, metrics, 0).unwrap_or_else(|e| panic!("{e}"));
    for (id, trigger) in sends {
        let o = OutreachRequested {
            outreach_id: format!("o-{id}"),
            customer_id: (*id).to_owned(),
            ..Default::default()
        };
        sink.outreach(&o, *trigger)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    sink.drain(std::time::Instant::now() + Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("delivery: {e}"));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("group.id", "contract-test")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tpl = TopicPartitionList::new();
    for p in 0..12 {
        tpl.add_partition_offset("out", p, Offset::Beginning)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    consumer.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
    let mut got = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < sends.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            let v = String::from_utf8_lossy(x.value.unwrap_or_default());
                            (x.key.to_owned(), v.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            got.insert(
                key,
                Sent {
                    partition: m.partition(),
                    headers,
                },
            );
        }
    }
    assert_eq!(got.len(), sends.len(), "every record read back");
    got
}

#[test]
fn keys_land_on_the_partition_the_java_client_chooses() {
    let sends: Vec<(&str, Trigger)> = JAVA_MURMUR2_OF_12
        .iter()
        .map(|(k, _)| (*k, Trigger::Timer))
        .collect();
    let got = through_sink(Partitioner::Murmur2Random, &sends);
    for (key, java) in JAVA_MURMUR2_OF_12 {
        assert_eq!(got[key].partition, java, "partition of {key:?}");
    }
    // The old setting really is the old placement (CRC32): not the Java one.
    let old = through_sink(Partitioner::ConsistentRandom, &sends);
    let same = JAVA_MURMUR2_OF_12
        .iter()
        .filter(|(k, java)| old[*k].partition == *java)
        .count();
    assert!(same < JAVA_MURMUR2_OF_12.len() / 2, "{same} agree");
}

#[test]
fn headers_name_the_cause_and_only_an_event_points_at_a_record() {
    let event = Trigger::Event {
        partition: 3,
        offset: 41,
        timestamp_ms: Some(1_700_000_000_123),
    };
    let untimed = Trigger::Event {
        partition: 4,
        offset: 7,
        timestamp_ms: None,
    };
    let got = through_sink(
        Partitioner::Murmur2Random,
        &[
            ("e", event),
            ("u", untimed),
            ("t", Trigger::Timer),
            ("i", Trigger::Idle),
        ],
    );
    let h = |k: &str| &got[k].headers;
    for k in ["e", "u", "t", "i"] {
        assert_eq!(h(k)[header::OUTREACH_ID], format!("o-{k}"));
        assert_eq!(h(k)["content-type"], "application/x-protobuf");
        for name in h(k).keys() {
            assert!(header::OUTREACH.contains(&name.as_str()), "{name}");
        }
    }
    assert_eq!(h("e")[header::TRIGGER], "event");
    assert_eq!(h("e")[header::TRIGGER_TOPIC], "in");
    assert_eq!(h("e")[header::TRIGGER_PARTITION], "3");
    assert_eq!(h("e")[header::TRIGGER_OFFSET], "41");
    assert_eq!(h("e")[header::TRIGGER_TIMESTAMP], "1700000000123");
    assert_eq!(h("u")[header::TRIGGER_OFFSET], "7");
    assert!(!h("u").contains_key(header::TRIGGER_TIMESTAMP));
    for (k, cause) in [("t", "timer"), ("i", "idle")] {
        assert_eq!(h(k)[header::TRIGGER], cause);
        assert_eq!(h(k).len(), 3, "no record coordinates: {:?}", h(k).keys());
    }
}

/// Every `churnwatch.*` (and other) header the code writes is in
/// docs/contract.md, and the page names no header the code does not write.
#[test]
fn the_contract_page_and_the_code_name_the_same_headers() {
    let page = include_str!("../../docs/contract.md");
    let documented = |section: &str| -> Vec<String> {
        let start = page
            .find(section)
            .unwrap_or_else(|| panic!("section {section}"));
        let rest = &page[start..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
        rest[..end]
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_owned)
            .collect()
    };
    let outreach = documented("## Outreach");
    let dead = documented("## Dead letters");
    assert_eq!(outreach, header::OUTREACH, "outreach headers");
    assert_eq!(dead, header::DEAD_LETTER, "dead-letter headers");
    let sink_src = include_str!("sink.rs");
    for name in header::OUTREACH.iter().chain(header::DEAD_LETTER) {
        assert!(sink_src.contains(&format!("\"{name}\"")), "{name}");
    }
}
