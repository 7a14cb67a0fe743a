//! A batch's changelog, sealed at the batch end and encoded a few customers
//! at a time while processing goes on, so a batch end never stops the loop
//! for the whole batch (at a million customers, encoding 50k changed states
//! at once held the loop for 40-150 ms).
//!
//! Sealing moves the changed customers into the sealed set; encoding takes
//! them from it. A sealed customer about to change again (an event, a timer,
//! an eviction, an erasure) is encoded first, so every record is the state
//! as it was at the seal, exactly what the batch's input offsets cover.

use rustc_hash::FxHashSet;
use smol_str::SmolStr;

use crate::{store::CustomerStore, time::Timestamp};

/// One changelog record: a customer's snapshot, or their tombstone.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangelogRecord {
    pub customer_id: SmolStr,
    /// `None`: a tombstone.
    pub snapshot: Option<Vec<u8>>,
    /// An erasure's tombstone carries the erasure time (see restore).
    pub erased_at: Option<Timestamp>,
}

#[derive(Default)]
pub(super) struct Sealed {
    /// Sealed slots in seal order; some may already be encoded (skipped).
    order: Vec<u32>,
    /// Sealed slots not encoded yet.
    waiting: FxHashSet<u32>,
    /// Records encoded and not yet taken.
    out: Vec<ChangelogRecord>,
}

impl Sealed {
    /// Seals a batch: its tombstones go out first (a customer forgotten and
    /// back within the batch then ends with the new state), its changed
    /// slots wait for encoding. Anything still waiting from the previous
    /// seal is encoded first.
    pub(super) fn seal(
        &mut self,
        store: &CustomerStore,
        tombstones: impl Iterator<Item = ChangelogRecord>,
        changed: impl Iterator<Item = u32>,
    ) {
        self.encode(store, usize::MAX);
        self.out.extend(tombstones);
        self.order.extend(changed);
        self.waiting.extend(self.order.iter().copied());
    }

    /// Encodes up to `max` waiting customers; returns how many still wait.
    pub(super) fn encode(&mut self, store: &CustomerStore, max: usize) -> usize {
        let mut done = 0;
        while done < max {
            let Some(slot) = self.order.pop() else {
                break;
            };
            if self.waiting.remove(&slot) {
                self.push(store, slot);
                done += 1;
            }
        }
        if self.order.is_empty() {
            self.waiting.clear();
        }
        self.waiting.len()
    }

    /// Before `slot` changes: encodes it now if it is waiting.
    #[inline]
    pub(super) fn before_change(&mut self, store: &CustomerStore, slot: u32) {
        if !self.waiting.is_empty() && self.waiting.remove(&slot) {
            self.push(store, slot);
        }
    }

    fn push(&mut self, store: &CustomerStore, slot: u32) {
        if let Some(s) = store.slot(slot) {
            self.out.push(ChangelogRecord {
                customer_id: s.id.clone(),
                snapshot: Some(s.state.encode_snapshot(&s.id)),
                erased_at: None,
            });
        }
    }

    pub(super) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The records encoded so far; the buffer keeps its capacity (taken
    /// every 0.5 ms, a fresh one would grow from nothing each time).
    pub(super) fn take(&mut self) -> std::vec::Drain<'_, ChangelogRecord> {
        self.out.drain(..)
    }
}
