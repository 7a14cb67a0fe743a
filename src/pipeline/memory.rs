//! Handing freed memory back to the operating system.
//!
//! glibc's malloc keeps what is freed inside its heaps (and in the arenas of
//! librdkafka's threads, where fetched messages are allocated) for reuse;
//! only `malloc_trim` returns the free pages in the middle of a heap. A
//! restore, a refit or a burst of input leaves tens of megabytes so at a
//! million customers, counted as resident until the pages are given back.
//! The trim runs at those moments, never per message: it walks every arena
//! under its lock (0.4 ms measured with a million customers held).

use std::time::{Duration, Instant};

/// Returns the free pages of every malloc arena to the kernel (glibc only;
/// elsewhere nothing to do: other allocators return memory on their own).
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only reorganises the allocator's free lists under
    // its own locks; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims once the input has caught up after a burst: when a poll finds
/// nothing, at least `min_messages` were handled since the last trim and
/// `min_gap` has passed.
#[derive(Debug)]
pub struct Trimmer {
    min_messages: u64,
    min_gap: Duration,
    handled: u64,
    last: Option<Instant>,
}

impl Trimmer {
    pub fn new(min_messages: u64, min_gap: Duration) -> Self {
        Trimmer {
            min_messages,
            min_gap,
            handled: 0,
            last: None,
        }
    }

    pub fn handled(&mut self) {
        self.handled += 1;
    }

    /// A poll returned nothing at `now`: trims if due; says whether it did.
    pub fn idle(&mut self, now: Instant) -> bool {
        if !self.due(now) {
            return false;
        }
        release();
        self.handled = 0;
        self.last = Some(now);
        true
    }

    fn due(&self, now: Instant) -> bool {
        self.handled >= self.min_messages
            && self
                .last
                .is_none_or(|t| now.saturating_duration_since(t) >= self.min_gap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_a_burst_not_while_messages_trickle_or_too_often() {
        let t0 = Instant::now();
        let mut t = Trimmer::new(3, Duration::from_secs(10));
        assert!(!t.idle(t0), "nothing handled yet");
        t.handled();
        t.handled();
        assert!(!t.idle(t0), "below the burst size");
        t.handled();
        assert!(t.idle(t0));
        assert!(!t.idle(t0), "the count starts again");
        for _ in 0..3 {
            t.handled();
        }
        assert!(
            !t.idle(t0 + Duration::from_secs(9)),
            "too soon after the last"
        );
        assert!(t.idle(t0 + Duration::from_secs(10)));
    }
}
