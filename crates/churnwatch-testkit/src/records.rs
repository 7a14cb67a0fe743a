//! Records read back from a topic, and what the tests make of them: final
//! customer states from a changelog, outreach ids; unique names.

use churnwatch::pb::OutreachRequested;
use rdkafka::message::{Headers, Message};

#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// A consumed message, with its key and header values as text.
    pub fn of(m: &impl Message) -> Record {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_owned(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A name no other test (or run) uses: `prefix-PID-N-TIME`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{n}-{}", std::process::id(), t % 1_000_000_007)
}

/// The outreach ids of outreach records read from a topic.
pub fn outreach_ids(records: &[Record]) -> Vec<String> {
    use prost::Message as _;
    records
        .iter()
        .map(|r| {
            OutreachRequested::decode(r.value.as_deref().unwrap_or_default())
                .map(|o| o.outreach_id)
                .unwrap_or_default()
        })
        .collect()
}

/// Final customer states from changelog records: the last value per key, a
/// tombstone deletes; churnwatch's own keys (leading NUL) are left out.
pub fn final_states(changelog: &[Record]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut by_partition: Vec<&Record> = changelog.iter().collect();
    by_partition.sort_by_key(|r| (r.partition, r.offset));
    let mut out = std::collections::BTreeMap::new();
    for r in by_partition {
        let Some(k) = r.key.clone() else { continue };
        if k.starts_with('\u{0}') {
            continue;
        }
        match &r.value {
            Some(v) => {
                out.insert(k, v.clone());
            }
            None => {
                out.remove(&k);
            }
        }
    }
    out
}
