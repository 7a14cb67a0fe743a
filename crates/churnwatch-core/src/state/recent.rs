//! A bounded memory of the latest event ids, so a redelivered event is ignored.

/// The hashes of the last [`RecentEvents::CAPACITY`] event ids of one
/// customer. Redelivery after a crash replays the events since the last
/// commit; per customer that is a handful, so eight is enough in practice.
///
/// Each is the low 32 bits of the id's xxh3-64, so the guard costs 32 bytes
/// per customer, not 64 (at a million customers, 32 MB). The price: a new
/// event whose hash equals one of the customer's last eight is taken for a
/// redelivery, with probability at most 8 / 2^32 (about 2 in a billion
/// events), and counted as a duplicate. Snapshots carry the same values
/// widened to 64 bits; older snapshots' full hashes are folded on load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentEvents {
    /// Oldest first; empty slots (0) at the front. Kept in this one order so
    /// that equal histories compare equal.
    slots: [u32; RecentEvents::CAPACITY],
}

/// The 32 bits kept of a 64-bit hash (0 stays reserved for "empty").
fn fold(h: u64) -> u32 {
    (h as u32).max(1)
}

impl RecentEvents {
    pub const CAPACITY: usize = 8;

    /// The hash of an event id (0 is reserved for "empty").
    pub fn hash(event_id: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64(event_id.as_bytes()).max(1)
    }

    pub fn contains(&self, h: u64) -> bool {
        self.slots.contains(&fold(h))
    }

    pub fn insert(&mut self, h: u64) {
        self.slots.copy_within(1.., 0);
        self.slots[Self::CAPACITY - 1] = fold(h);
    }

    /// Hashes oldest first (for snapshots).
    pub fn oldest_first(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots
            .iter()
            .copied()
            .filter(|h| *h != 0)
            .map(u64::from)
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

    #[test]
    fn a_snapshot_with_full_64_bit_hashes_loads_to_the_same_guard() {
        let ids = ["a", "b", "c"];
        let full: Vec<u64> = ids.iter().map(|i| RecentEvents::hash(i)).collect();
        let loaded = RecentEvents::from_oldest_first(full);
        for i in ids {
            assert!(loaded.contains(RecentEvents::hash(i)));
        }
        assert!(!loaded.contains(RecentEvents::hash("d")));
        assert_eq!(
            RecentEvents::from_oldest_first(loaded.oldest_first()),
            loaded
        );
    }
}
