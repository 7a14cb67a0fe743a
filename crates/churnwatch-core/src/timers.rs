//! The silence-timer queue: customers (by store slot) ordered by the stream
//! time at which their score must be looked at again. Advanced by stream time; never scans
//! every customer.

use std::{cmp::Reverse, collections::BinaryHeap};

use crate::time::Timestamp;

/// A min-queue of (due time, customer). Entries are not removed when a
/// customer is rescheduled; the caller skips an entry whose time no longer
/// matches the customer's state (lazy deletion), and [`TimerQueue::compact`]
/// rebuilds the queue when stale entries pile up.
///
/// An entry is one `u64`: the due time (unix seconds; validated events lie
/// in 1970-2100 and the timer horizon is bounded, so it fits 32 bits) above
/// the slot. Half the memory of an `(i64, u32)` pair, the same order.
#[derive(Default, Debug)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<u64>>,
}

fn pack(at: Timestamp, customer: u32) -> u64 {
    let at = at.clamp(0, i64::from(u32::MAX)) as u64;
    (at << 32) | u64::from(customer)
}

fn unpack(e: u64) -> (Timestamp, u32) {
    ((e >> 32) as Timestamp, e as u32)
}

impl TimerQueue {
    pub fn schedule(&mut self, at: Timestamp, customer: u32) {
        self.heap.push(Reverse(pack(at, customer)));
    }

    /// The earliest entry due at or before `now` (ties: by customer slot).
    pub fn pop_due(&mut self, now: Timestamp) -> Option<(Timestamp, u32)> {
        match self.heap.peek() {
            Some(Reverse(e)) if unpack(*e).0 <= now => self.heap.pop().map(|Reverse(e)| unpack(e)),
            _ => None,
        }
    }

    pub fn next_due(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse(e)| unpack(*e).0)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Rebuilds the queue from the live timers only.
    pub fn compact(&mut self, live: impl Iterator<Item = (Timestamp, u32)>) {
        self.heap = live.map(|(at, c)| Reverse(pack(at, c))).collect();
    }

    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_order_then_by_slot() {
        let mut q = TimerQueue::default();
        q.schedule(30, 2);
        q.schedule(10, 9);
        q.schedule(30, 1);
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.pop_due(100), Some((10, 9)));
        assert_eq!(q.pop_due(100), Some((30, 1)));
        assert_eq!(q.pop_due(29), None);
        assert_eq!(q.next_due(), Some(30));
    }
}
