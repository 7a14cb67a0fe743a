//! A bounded memory of the latest event ids, so a redelivered event is ignored.

/// The xxh3-64 hashes of the last [`RecentEvents::CAPACITY`] event ids of one
/// customer. Redelivery after a crash replays the events since the last
/// commit; per customer that is a handful, so eight is enough in practice and
/// keeps the state small (64 bytes, no allocation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentEvents {
    /// Oldest first; empty slots (0) at the front. Kept in this one order so
    /// that equal histories compare equal.
    slots: [u64; RecentEvents::CAPACITY],
}

impl RecentEvents {
    pub const CAPACITY: usize = 8;

    /// The hash of an event id (0 is reserved for "empty").
    pub fn hash(event_id: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64(event_id.as_bytes()).max(1)
    }

    pub fn contains(&self, h: u64) -> bool {
        self.slots.contains(&h)
    }

    pub fn insert(&mut self, h: u64) {
        self.slots.copy_within(1.., 0);
        self.slots[Self::CAPACITY - 1] = h;
    }

    /// Hashes oldest first (for snapshots).
    pub fn oldest_first(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().copied().filter(|h| *h != 0)
    }

    pub fn from_oldest_first(hashes: impl IntoIterator<Item = u64>) -> Self {
        let mut r = RecentEvents::default();
        for h in hashes {
            r.insert(h);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_eight() {
        let mut r = RecentEvents::default();
        for i in 0..10 {
            r.insert(RecentEvents::hash(&format!("e{i}")));
        }
        assert!(!r.contains(RecentEvents::hash("e1")));
        assert!(r.contains(RecentEvents::hash("e2")));
        assert!(r.contains(RecentEvents::hash("e9")));
        let again = RecentEvents::from_oldest_first(r.oldest_first());
        assert_eq!(again, r);
    }
}
