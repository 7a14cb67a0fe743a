//! Topics on a [`Broker`]: created, altered and described through the admin
//! API, produced to, and read back (all of it, to the end, or what a group
//! committed).

use std::time::{Duration, Instant};

use churnwatch::{
    codec::{self, Format},
    pb::InteractionEvent,
};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    producer::{BaseProducer, BaseRecord, Producer},
    ClientConfig, Offset, TopicPartitionList,
};

use crate::{unique, wait_for, Broker, Record};

impl Broker {
    pub fn create_topic(&self, name: &str, partitions: i32, compact: bool) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap_or_else(|e| panic!("admin: {e}"));
        let mut t =
            NewTopic::new(name, partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1");
        if compact {
            t = t.set("cleanup.policy", "compact");
        }
        let r =
            crate::on_runtime(|rt| rt.block_on(admin.create_topics(&[t], &AdminOptions::new())));
        let r = r.unwrap_or_else(|e| panic!("create {name}: {e}"));
        for x in r {
            if let Err((n, e)) = x {
                panic!("create {n}: {e:?}");
            }
        }
        // wait for metadata
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "probe")
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..100 {
            if let Ok(md) = c.fetch_metadata(Some(name), Duration::from_secs(2)) {
                if md
                    .topics()
                    .iter()
                    .any(|t| t.name() == name && t.partitions().len() == partitions as usize)
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("topic {name} did not appear");
    }

    /// Sets topic configs (e.g. `max.message.bytes`) through the admin API.
    pub fn alter_topic(&self, topic: &str, configs: &[(&str, &str)]) {
        use rdkafka::admin::{AlterConfig, ResourceSpecifier};
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap_or_else(|e| panic!("admin: {e}"));
        let mut c = AlterConfig::new(ResourceSpecifier::Topic(topic));
        for (k, v) in configs {
            c = c.set(k, v);
        }
        let r =
            crate::on_runtime(|rt| rt.block_on(admin.alter_configs(&[c], &AdminOptions::new())));
        for x in r.unwrap_or_else(|e| panic!("alter {topic}: {e}")) {
            if let Err((_, e)) = x {
                panic!("alter {topic} {configs:?}: {e:?}");
            }
        }
    }

    /// Every config of a topic as the broker describes it (name, value).
    pub fn topic_config(&self, topic: &str) -> Vec<(String, String)> {
        use rdkafka::admin::{ConfigResourceResult, ResourceSpecifier};
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap_or_else(|e| panic!("admin: {e}"));
        let r = crate::on_runtime(|rt| {
            rt.block_on(
                admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()),
            )
        });
        match r.as_deref() {
            Ok([ConfigResourceResult::Ok(c)]) => c
                .entries
                .iter()
                .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
                .collect(),
            other => panic!("describe {topic}: {other:?}"),
        }
    }

    pub fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap_or_else(|e| panic!("producer: {e}"))
    }

    /// Produces events keyed by customer id; `partition_of` picks the partition.
    pub fn produce(
        &self,
        topic: &str,
        events: &[InteractionEvent],
        format: Format,
        partition_of: impl Fn(&str) -> i32,
    ) {
        let p = self.producer();
        for e in events {
            let bytes = codec::encode(e, format);
            self.send_raw(
                &p,
                topic,
                Some(e.customer_id.as_bytes()),
                Some(&bytes),
                partition_of(&e.customer_id),
            );
        }
        p.flush(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("flush: {e}"));
    }

    pub fn send_raw(
        &self,
        p: &BaseProducer,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partition: i32,
    ) {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(partition);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(v) = value {
            r = r.payload(v);
        }
        let mut r = r;
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    p.poll(Duration::from_millis(50));
                }
            }
        }
        p.poll(Duration::ZERO);
    }

    /// A consumer of its own group that commits nothing, read-committed
    /// or not, for reading topics back.
    fn reader(&self, read_committed: bool) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", format!("reader-{}", unique("g")))
            .set("enable.auto.commit", "false")
            .set(
                "isolation.level",
                if read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .create()
            .unwrap_or_else(|e| panic!("reader: {e}"))
    }

    /// Reads every message of a topic (all partitions) until `want` are read
    /// or `timeout` passes; `read_committed` as a transactional consumer would.
    pub fn read_topic(
        &self,
        topic: &str,
        want: usize,
        timeout: Duration,
        read_committed: bool,
    ) -> Vec<Record> {
        let c = self.reader(read_committed);
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
        let parts = md.topics().first().map_or(0, |t| t.partitions().len());
        let mut tpl = TopicPartitionList::new();
        for p in 0..parts {
            let _ = tpl.add_partition_offset(topic, p as i32, Offset::Beginning);
        }
        c.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        while out.len() < want && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                out.push(Record::of(&m));
            }
        }
        out
    }

    /// High watermark of every partition of `topic`.
    pub fn end_offsets(&self, topic: &str) -> Vec<i64> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "probe")
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        // Retried for a while: the broker may just be coming back.
        let mut last = String::new();
        for _ in 0..10 {
            let got = c
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .map_err(|e| format!("metadata of {topic}: {e}"))
                .and_then(|md| {
                    let parts = md.topics().first().map_or(0, |t| t.partitions().len());
                    (0..parts as i32)
                        .map(|p| {
                            c.fetch_watermarks(topic, p, Duration::from_secs(5))
                                .map(|w| w.1)
                                .map_err(|e| format!("watermarks of {topic}/{p}: {e}"))
                        })
                        .collect::<Result<Vec<i64>, String>>()
                });
            match got {
                Ok(v) if !v.is_empty() => return v,
                Ok(_) => last = format!("{topic} has no partitions"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{last}");
    }

    /// The offsets `group` committed on `topic` (-1 where none), or None if
    /// the broker does not answer.
    pub fn committed(&self, group: &str, topic: &str, partitions: usize) -> Option<Vec<i64>> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .ok()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition(topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(5)).ok()?;
        Some(
            (0..partitions as i32)
                .map(|p| {
                    got.find_partition(topic, p)
                        .and_then(|e| e.offset().to_raw())
                        .unwrap_or(-1)
                })
                .collect(),
        )
    }

    /// Waits until `group` has committed the end of every partition of `topic`.
    pub fn wait_committed_to_end(&self, group: &str, topic: &str, timeout: Duration) -> bool {
        let end = self.end_offsets(topic);
        wait_for(timeout, || {
            (self.committed(group, topic, end.len()).as_ref() == Some(&end)).then_some(())
        })
        .is_some()
    }

    /// Every record of `topic`, up to its end as of now.
    pub fn read_all(&self, topic: &str, timeout: Duration) -> Vec<Record> {
        let end = self.end_offsets(topic);
        let want = end.iter().map(|e| *e as usize).sum();
        let got = self.read_topic(topic, want, timeout, false);
        assert_eq!(
            got.len(),
            want,
            "read {} of the {want} records of {topic} in {timeout:?}",
            got.len()
        );
        got
    }

    /// Every record of `topic` up to its end as of now, as a read-committed
    /// (or uncommitted) reader sees them: reads until each partition's
    /// position reaches its high watermark, or nothing arrives for 2 s
    /// (transaction markers may hold a position just short of it).
    pub fn read_to_end(&self, topic: &str, read_committed: bool, timeout: Duration) -> Vec<Record> {
        let end = self.end_offsets(topic);
        let c = self.reader(read_committed);
        let mut tpl = TopicPartitionList::new();
        for p in 0..end.len() as i32 {
            let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
        }
        c.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        let mut last = Instant::now();
        loop {
            let done = c.position().is_ok_and(|pos| {
                end.iter().enumerate().all(|(p, hw)| {
                    *hw == 0
                        || pos
                            .find_partition(topic, p as i32)
                            .and_then(|e| e.offset().to_raw())
                            .is_some_and(|o| o >= *hw)
                })
            });
            if done || last.elapsed() > Duration::from_secs(2) || Instant::now() > deadline {
                return out;
            }
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                last = Instant::now();
                out.push(Record::of(&m));
            }
        }
    }
}

/// Runs `f` with a tokio runtime of its own, on a thread of its own
/// (callers may be inside a runtime already): rdkafka's admin calls are
/// futures, the kit's callers are not.
pub fn on_runtime<T: Send>(f: impl FnOnce(&tokio::runtime::Runtime) -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("{e}"));
                f(&rt)
            })
            .join()
            .unwrap_or_else(|_| panic!("admin thread panicked"))
    })
}
