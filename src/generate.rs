//! A seeded synthetic customer population, as a time-ordered stream of
//! events: segments with different rhythms, a share that goes silent,
//! support friction, NPS/CSAT answers, renewals and consent. Used by
//! `churnwatch generate`, the benches, the demo and the load harness.
//!
//! Each customer is a small state machine; a heap of "next event time" per
//! customer yields events in time order with memory linear in customers.

use std::{cmp::Reverse, collections::BinaryHeap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

use crate::{
    channel, events,
    pb::{Channel, InteractionEvent, TicketStatus},
    time::{Span, Timestamp, SECS_PER_DAY},
};

#[derive(Clone, Debug)]
pub struct GenConfig {
    pub customers: u64,
    pub seed: u64,
    /// Simulated start (unix seconds).
    pub start: Timestamp,
    /// Simulated span.
    pub span: Span,
    /// Share of customers who go silent at a random time.
    pub silent_share: f64,
    /// Share with support friction (tickets, contacts, complaints).
    pub friction_share: f64,
    /// Share with a subscription that renews inside the span.
    pub subscription_share: f64,
    /// Share that withdraws consent.
    pub no_consent_share: f64,
    /// Stop after this many events (0 = no limit).
    pub max_events: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            customers: 10_000,
            seed: 42,
            start: 1_767_225_600, // 2026-01-01
            span: Span::days(90),
            silent_share: 0.2,
            friction_share: 0.1,
            subscription_share: 0.3,
            no_consent_share: 0.05,
            max_events: 0,
        }
    }
}

/// Activity rhythms: (share, mean days between active days).
const SEGMENTS: [(f64, f64); 3] = [(0.3, 1.5), (0.5, 7.0), (0.2, 30.0)];

struct Customer {
    id: String,
    /// Mean seconds between activity events.
    activity_gap: f64,
    /// No activity after this time (silent churn).
    silent_from: Timestamp,
    friction: bool,
    preferred: Channel,
    pending_ticket: Option<(u32, u8)>,
    tickets: u32,
}

/// The population's events, in time order.
pub struct Generator {
    cfg: GenConfig,
    rng: ChaCha8Rng,
    customers: Vec<Customer>,
    /// (next event time, customer index, sequence) min-heap.
    heap: BinaryHeap<Reverse<(Timestamp, u32)>>,
    /// One-off events due (subscription, consent) before the stream starts.
    preamble: Vec<InteractionEvent>,
    emitted: u64,
    end: Timestamp,
}

impl Generator {
    pub fn new(cfg: GenConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let end = cfg.start + cfg.span.as_secs();
        let n = cfg.customers;
        let width = n.to_string().len().max(6);
        let mut customers = Vec::with_capacity(n as usize);
        let mut heap = BinaryHeap::with_capacity(n as usize);
        let mut preamble = Vec::new();
        for i in 0..n {
            let u: f64 = rng.gen();
            let mut acc = 0.0;
            let mut gap_days = SEGMENTS[SEGMENTS.len() - 1].1;
            for (share, gap) in SEGMENTS {
                acc += share;
                if u < acc {
                    gap_days = gap;
                    break;
                }
            }
            let gap_days = gap_days * rng.gen_range(0.6..1.6);
            let silent = rng.gen_bool(cfg.silent_share.clamp(0.0, 1.0));
            let silent_from = if silent {
                rng.gen_range(cfg.start..end.max(cfg.start + 1))
            } else {
                Timestamp::MAX
            };
            let preferred =
                [Channel::Web, Channel::App, Channel::Email, Channel::Store][rng.gen_range(0..4)];
            let id = format!("cust-{i:0width$}");
            let first = cfg.start + rng.gen_range(0..(gap_days * SECS_PER_DAY as f64) as i64 + 1);
            if rng.gen_bool(cfg.subscription_share.clamp(0.0, 1.0)) {
                let renews = cfg.start
                    + rng.gen_range(SECS_PER_DAY..cfg.span.as_secs().max(SECS_PER_DAY + 1));
                let plan = ["basic", "pro", "team"][rng.gen_range(0..3)];
                preamble.push(events::subscription(
                    &format!("{id}-sub"),
                    &id,
                    cfg.start,
                    plan,
                    renews,
                    false,
                ));
            }
            if rng.gen_bool(cfg.no_consent_share.clamp(0.0, 1.0)) {
                preamble.push(events::consent(
                    &format!("{id}-consent"),
                    &id,
                    cfg.start,
                    false,
                    Channel::Unspecified,
                ));
            }
            customers.push(Customer {
                id,
                activity_gap: gap_days * SECS_PER_DAY as f64,
                silent_from,
                friction: rng.gen_bool(cfg.friction_share.clamp(0.0, 1.0)),
                preferred,
                pending_ticket: None,
                tickets: 0,
            });
            heap.push(Reverse((first, i as u32)));
        }
        preamble.reverse();
        Generator {
            cfg,
            rng,
            customers,
            heap,
            preamble,
            emitted: 0,
            end,
        }
    }

    fn next_event(&mut self) -> Option<InteractionEvent> {
        loop {
            let Reverse((at, i)) = self.heap.pop()?;
            if at >= self.end {
                continue;
            }
            let rng = &mut self.rng;
            let c = &mut self.customers[i as usize];
            let seq = self.emitted;
            let eid = format!("{}-{seq}", c.id);
            // Friction customers use the whole range; others skip the
            // support bands [0, 0.28).
            let roll: f64 = if c.friction {
                rng.gen()
            } else {
                0.28 + 0.72 * rng.gen::<f64>()
            };
            let ev = if let Some((ticket, step)) = c.pending_ticket {
                // Work the open ticket: first response, then resolution (sometimes reopened).
                let tid = format!("{}-t{ticket}", c.id);
                let (status, next) = match step {
                    0 => (TicketStatus::FirstResponse, Some((ticket, 1))),
                    1 if rng.gen_bool(0.15) => (TicketStatus::Reopened, Some((ticket, 1))),
                    _ => (TicketStatus::Resolved, None),
                };
                c.pending_ticket = next;
                let secs = rng.gen_range(600..200_000u32);
                events::ticket_updated(
                    &eid,
                    &c.id,
                    at,
                    &tid,
                    status,
                    (status == TicketStatus::FirstResponse).then_some(secs),
                )
            } else if c.friction && roll < 0.15 {
                c.tickets += 1;
                c.pending_ticket = Some((c.tickets, 0));
                let ch = [Channel::Phone, Channel::Email, Channel::Chat][rng.gen_range(0..3)];
                events::ticket_opened(&eid, &c.id, at, ch, &format!("{}-t{}", c.id, c.tickets))
            } else if c.friction && roll < 0.25 {
                let ch = [
                    Channel::Phone,
                    Channel::Email,
                    Channel::Chat,
                    Channel::Social,
                ][rng.gen_range(0..4)];
                events::contact(&eid, &c.id, at, ch)
            } else if c.friction && roll < 0.28 {
                events::complaint(&eid, &c.id, at, Channel::Phone, "service")
            } else if roll < 0.283 {
                // Few answer surveys; among those who do, the usual NPS mix
                // (about 50% promoters, 35% passives, 15% detractors), worse with friction.
                let u: f64 = rng.gen();
                let detractor_share = if c.friction { 0.5 } else { 0.15 };
                let nps = if u < detractor_share {
                    rng.gen_range(0..7)
                } else if u < detractor_share + 0.35 {
                    rng.gen_range(7..9)
                } else {
                    rng.gen_range(9..11)
                };
                events::nps(&eid, &c.id, at, nps)
            } else if roll < 0.285 {
                let csat = if rng.gen_bool(0.1) {
                    rng.gen_range(1..3)
                } else {
                    rng.gen_range(3..6)
                };
                events::csat(&eid, &c.id, at, csat)
            } else if roll < 0.60 {
                let amount = (rng.gen_range(5.0..200.0f64) * 100.0).round() / 100.0;
                let mut e = events::purchase(&eid, &c.id, at, amount);
                e.channel = c.preferred as i32;
                e
            } else {
                let ch = if rng.gen_bool(0.8) {
                    c.preferred
                } else {
                    channel::ALL[rng.gen_range(0..channel::COUNT)]
                };
                events::session(&eid, &c.id, at, ch)
            };
            let gap = if c.pending_ticket.is_some() {
                rng.gen_range(3_600.0..172_800.0)
            } else {
                Exp::new(1.0 / c.activity_gap).map_or(c.activity_gap, |d| d.sample(rng))
            };
            let next = at + gap.max(60.0) as i64;
            if next < c.silent_from || c.pending_ticket.is_some() {
                self.heap.push(Reverse((next, i)));
            }
            return Some(ev);
        }
    }
}

impl Iterator for Generator {
    type Item = InteractionEvent;
    fn next(&mut self) -> Option<InteractionEvent> {
        if self.cfg.max_events != 0 && self.emitted >= self.cfg.max_events {
            return None;
        }
        let ev = match self.preamble.pop() {
            Some(e) => Some(e),
            None => self.next_event(),
        };
        if ev.is_some() {
            self.emitted += 1;
        }
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kind::EventKind, validate::validate};

    #[test]
    fn seeded_time_ordered_valid_and_mixed() {
        let cfg = GenConfig {
            customers: 500,
            span: Span::days(60),
            ..GenConfig::default()
        };
        let a: Vec<InteractionEvent> = Generator::new(cfg.clone()).collect();
        let b: Vec<InteractionEvent> = Generator::new(cfg.clone()).collect();
        assert_eq!(a, b, "same seed, same stream");
        assert!(a.len() > 2_000, "{}", a.len());
        let times: Vec<i64> = a
            .iter()
            .map(|e| e.occurred_at.map_or(0, |t| t.seconds))
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "time ordered");
        let fold = crate::config::FoldConfig::default();
        let mut kinds = std::collections::BTreeSet::new();
        for e in &a {
            let v = validate(e, None, &fold);
            assert!(v.is_ok(), "{e:?}");
            if let Some(k) = &e.kind {
                kinds.insert(EventKind::of(k));
            }
        }
        assert!(kinds.len() >= 9, "{kinds:?}");
        let ids: std::collections::BTreeSet<&str> = a.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), a.len(), "event ids are unique");
        let other: Vec<InteractionEvent> = Generator::new(GenConfig { seed: 7, ..cfg }).collect();
        assert_ne!(a, other);
    }
}
