//! Active days for the buy-till-you-die model, kept so that the counts do not
//! depend on the order events arrive in (within the allowed lateness).

use crate::time::Day;

/// Distinct active UTC days: the first and last, how many after the first
/// (x), and a bitmap of the 64 days ending at the last, so that a late event
/// on a day already counted is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activity {
    pub first_day: Day,
    pub last_day: Day,
    /// x: distinct active days after the first.
    pub repeat_days: u32,
    /// Bit i set = active on day `last_day - i`.
    pub recent: u64,
}

/// Outcome of recording an active day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DayRecord {
    /// A day not seen before.
    New,
    /// Already counted.
    Known,
    /// More than 63 days before the last active day and after the first:
    /// whether it was counted cannot be told, so the caller drops it as late.
    OutOfWindow,
}

impl Activity {
    /// Days covered by the bitmap.
    pub const WINDOW: i32 = 64;

    pub fn starting(day: Day) -> Self {
        Activity {
            first_day: day,
            last_day: day,
            repeat_days: 0,
            recent: 1,
        }
    }

    pub fn record(&mut self, day: Day) -> DayRecord {
        if day > self.last_day {
            let shift = day - self.last_day;
            self.recent = if shift >= Self::WINDOW {
                0
            } else {
                self.recent << shift
            };
            self.recent |= 1;
            self.last_day = day;
            self.repeat_days = self.repeat_days.saturating_add(1);
            return DayRecord::New;
        }
        if day == self.first_day {
            return DayRecord::Known;
        }
        let offset = self.last_day - day;
        if offset < Self::WINDOW {
            let bit = 1u64 << offset;
            if self.recent & bit != 0 {
                return DayRecord::Known;
            }
            self.recent |= bit;
        } else if day > self.first_day {
            return DayRecord::OutOfWindow;
        }
        if day < self.first_day {
            self.first_day = day;
        }
        self.repeat_days = self.repeat_days.saturating_add(1);
        DayRecord::New
    }

    /// Active days in `[from, last_day]`, counting only what the bitmap covers.
    pub fn active_days_from(&self, from: Day) -> u32 {
        if from > self.last_day {
            return 0;
        }
        let span = self.last_day - from + 1;
        if span >= Self::WINDOW {
            self.recent.count_ones()
        } else {
            (self.recent & ((1u64 << span) - 1)).count_ones()
        }
    }

    /// Active days in the bitmap, newest first (for window-exit breakpoints).
    pub fn recent_days(&self) -> impl Iterator<Item = Day> + '_ {
        let last = self.last_day;
        (0..Self::WINDOW)
            .filter(move |i| self.recent & (1u64 << i) != 0)
            .map(move |i| last - i)
    }

    /// t_x in days: first to last active day.
    pub fn span_days(&self) -> i32 {
        self.last_day - self.first_day
    }

    /// The customer's typical gap between active days, when there is a rhythm.
    pub fn typical_gap_days(&self) -> Option<f64> {
        (self.repeat_days > 0).then(|| f64::from(self.span_days()) / f64::from(self.repeat_days))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_days_after_the_first() {
        let mut a = Activity::starting(100);
        assert_eq!(a.record(100), DayRecord::Known);
        assert_eq!(a.record(103), DayRecord::New);
        assert_eq!(a.record(101), DayRecord::New);
        assert_eq!(a.record(101), DayRecord::Known);
        assert_eq!(a.record(98), DayRecord::New);
        assert_eq!(a.record(98), DayRecord::Known);
        assert_eq!((a.first_day, a.last_day, a.repeat_days), (98, 103, 3));
        assert_eq!(a.active_days_from(101), 2);
        assert_eq!(a.active_days_from(0), 4);
        assert_eq!(a.typical_gap_days(), Some(5.0 / 3.0));
    }

    #[test]
    fn far_late_days_inside_the_history_are_refused() {
        let mut a = Activity::starting(0);
        a.record(200);
        assert_eq!(a.record(100), DayRecord::OutOfWindow);
        assert_eq!(a.record(0), DayRecord::Known);
        assert_eq!(a.record(-5), DayRecord::New);
        assert_eq!(a.repeat_days, 2);
    }
}
