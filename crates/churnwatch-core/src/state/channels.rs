//! Recency-weighted channel use, for the customer's preferred channel.

use crate::{channel, pb::Channel, time::Day};

/// Per channel, a use count that halves every half-life. Weights are kept
/// relative to `reference_day`; a late use adds its already-decayed weight,
/// so the result does not depend on arrival order.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ChannelUsage {
    pub weights: [f32; channel::COUNT],
    pub reference_day: Day,
}

impl ChannelUsage {
    pub fn record(&mut self, c: Channel, day: Day, half_life_days: f64) {
        let Some(i) = channel::index(c) else { return };
        let is_empty = self.weights.iter().all(|w| *w == 0.0);
        if is_empty {
            self.reference_day = day;
        }
        if day > self.reference_day {
            let decay = decay(f64::from(day - self.reference_day), half_life_days);
            for w in &mut self.weights {
                *w *= decay;
            }
            self.reference_day = day;
            self.weights[i] += 1.0;
        } else {
            self.weights[i] += decay(f64::from(self.reference_day - day), half_life_days);
        }
    }

    /// The most used channel among `candidates` (ties: the earlier candidate);
    /// `None` if none of them was ever used.
    pub fn preferred_among(&self, candidates: impl Iterator<Item = Channel>) -> Option<Channel> {
        let mut best: Option<(Channel, f32)> = None;
        for c in candidates {
            let Some(i) = channel::index(c) else { continue };
            let w = self.weights[i];
            if w > 0.0 && best.is_none_or(|(_, bw)| w > bw) {
                best = Some((c, w));
            }
        }
        best.map(|(c, _)| c)
    }

    /// The most used channel overall.
    pub fn preferred(&self) -> Option<Channel> {
        self.preferred_among(channel::ALL.into_iter())
    }
}

fn decay(days: f64, half_life_days: f64) -> f32 {
    (0.5f64).powf(days / half_life_days) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_use_outweighs_old_habit() {
        let mut u = ChannelUsage::default();
        for d in 0..5 {
            u.record(Channel::Phone, d, 30.0);
        }
        for d in 200..202 {
            u.record(Channel::Email, d, 30.0);
        }
        assert_eq!(u.preferred(), Some(Channel::Email));
        assert_eq!(
            u.preferred_among([Channel::Phone, Channel::Sms].into_iter()),
            Some(Channel::Phone)
        );
        assert_eq!(u.preferred_among([Channel::Sms].into_iter()), None);
    }

    #[test]
    fn late_use_counts_as_if_it_had_come_in_order() {
        let mut a = ChannelUsage::default();
        a.record(Channel::Web, 10, 30.0);
        a.record(Channel::App, 20, 30.0);
        let mut b = ChannelUsage::default();
        b.record(Channel::App, 20, 30.0);
        b.record(Channel::Web, 10, 30.0);
        for i in 0..channel::COUNT {
            assert!((a.weights[i] - b.weights[i]).abs() < 1e-6);
        }
    }
}
