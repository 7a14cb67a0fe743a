//! Where one partition's customer states live, compactly.
//!
//! A plain `HashMap<String, CustomerState>` wastes up to half its table on
//! empty buckets the size of a state (hash tables grow by doubling), which at
//! a million customers costs more than the states themselves. Here states sit
//! in fixed-size chunks of slots (no doubling waste), and the hash table holds
//! only 4-byte slot numbers, hashing the id stored in the slot. Ids of up to
//! 23 bytes are stored inline (no allocation).

use hashbrown::HashTable;
use smol_str::SmolStr;

use crate::state::CustomerState;

/// Slots per chunk.
const CHUNK: usize = 4096;

pub struct Slot {
    /// Empty = free slot.
    pub id: SmolStr,
    pub state: CustomerState,
}

#[derive(Default)]
pub struct CustomerStore {
    table: HashTable<u32>,
    chunks: Vec<Vec<Slot>>,
    free: Vec<u32>,
    len: usize,
}

fn hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

impl CustomerStore {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at(&self, slot: u32) -> &Slot {
        let i = slot as usize;
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    pub fn slot(&self, slot: u32) -> Option<&Slot> {
        let i = slot as usize;
        self.chunks
            .get(i / CHUNK)
            .and_then(|c| c.get(i % CHUNK))
            .filter(|s| !s.id.is_empty())
    }

    pub fn slot_mut(&mut self, slot: u32) -> Option<&mut Slot> {
        let i = slot as usize;
        self.chunks
            .get_mut(i / CHUNK)
            .and_then(|c| c.get_mut(i % CHUNK))
            .filter(|s| !s.id.is_empty())
    }

    /// The slot holding a customer.
    pub fn find(&self, id: &str) -> Option<u32> {
        self.table.find(hash(id), |s| self.at(*s).id == id).copied()
    }

    pub fn get(&self, id: &str) -> Option<&CustomerState> {
        self.find(id).and_then(|s| self.slot(s)).map(|s| &s.state)
    }

    /// Inserts or replaces a customer's state; returns its slot.
    pub fn insert(&mut self, id: &str, state: CustomerState) -> u32 {
        if let Some(s) = self.find(id) {
            if let Some(slot) = self.slot_mut(s) {
                slot.state = state;
            }
            return s;
        }
        let slot = match self.free.pop() {
            Some(s) => {
                let i = s as usize;
                self.chunks[i / CHUNK][i % CHUNK] = Slot {
                    id: SmolStr::new(id),
                    state,
                };
                s
            }
            None => {
                if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                let n = (self.chunks.len() - 1) * CHUNK;
                let chunk = self.chunks.last_mut().map_or(0, |c| {
                    c.push(Slot {
                        id: SmolStr::new(id),
                        state,
                    });
                    c.len() - 1
                });
                (n + chunk) as u32
            }
        };
        let chunks = &self.chunks;
        self.table.insert_unique(hash(id), slot, |s| {
            let i = *s as usize;
            hash(&chunks[i / CHUNK][i % CHUNK].id)
        });
        self.len += 1;
        slot
    }

    /// Removes a customer; the slot is reused later.
    pub fn remove(&mut self, id: &str) -> Option<(u32, CustomerState)> {
        let h = hash(id);
        let chunks = &self.chunks;
        let entry = self.table.find_entry(h, |s| {
            let i = *s as usize;
            chunks[i / CHUNK][i % CHUNK].id == id
        });
        let slot = match entry {
            Ok(e) => e.remove().0,
            Err(_) => return None,
        };
        let i = slot as usize;
        let taken = std::mem::replace(
            &mut self.chunks[i / CHUNK][i % CHUNK],
            Slot {
                id: SmolStr::default(),
                state: CustomerState::default(),
            },
        );
        self.free.push(slot);
        self.len -= 1;
        Some((slot, taken.state))
    }

    /// One past the highest slot number in use or free.
    pub fn slot_count(&self) -> u32 {
        (self.chunks.len() * CHUNK) as u32
    }

    /// Live customers, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Slot)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, s)| !s.id.is_empty())
            .map(|(i, s)| (i as u32, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_remove_reuse() {
        let mut st = CustomerStore::default();
        let n = 10_000;
        for i in 0..n {
            st.insert(&format!("customer-{i}"), CustomerState::new(i));
        }
        assert_eq!(st.len(), n as usize);
        assert_eq!(st.get("customer-77").map(|s| s.first_seen_at), Some(77));
        let (slot, removed) = st.remove("customer-77").unwrap_or_default();
        assert_eq!(removed.first_seen_at, 77);
        assert!(st.get("customer-77").is_none());
        assert_eq!(st.len(), n as usize - 1);
        let again = st.insert(
            "a-much-longer-customer-identifier-0001",
            CustomerState::new(5),
        );
        assert_eq!(again, slot, "freed slots are reused");
        assert_eq!(
            st.get("a-much-longer-customer-identifier-0001")
                .map(|s| s.first_seen_at),
            Some(5)
        );
        assert_eq!(st.iter().count(), n as usize);
        st.insert("customer-1", CustomerState::new(99));
        assert_eq!(st.get("customer-1").map(|s| s.first_seen_at), Some(99));
        assert_eq!(st.len(), n as usize);
    }
}
