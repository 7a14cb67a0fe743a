//! A seeded synthetic customer population, as a time-ordered stream of
//! events: segments with different rhythms, a share that goes silent,
//! support friction, NPS/CSAT answers, renewals and consent. Used by
//! `churnwatch generate`, the benches, the demo and the load harness.
//!
//! Each customer is a small state machine; a heap of "next event time" per
//! customer yields events in time order with memory linear in customers.
//!
//! Two models ([`GenModel`]): `classic` (the default, unchanged) sends a
//! share of customers silent at a random time; `experience` makes leaving
//! depend on each customer's experience in the domain brief's proportions,
//! and records why each customer left ([`Generator::truth`]).
//! docs/generate.md documents the experience model's parameters.

mod treatment;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

use crate::{
    channel, events,
    pb::{Channel, InteractionEvent, TicketStatus},
    time::{Span, Timestamp, SECS_PER_DAY},
    uplift::UpliftCounts,
};
use treatment::Closed;
pub use treatment::{Stratum, Treatment};

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
    pub model: GenModel,
    /// Experience model: what bad experiences do to the chance of leaving.
    pub experience: ExperienceParams,
    /// Experience model: the population reacts to churnwatch's outreach
    /// ([`Treatment`]); `None` = outreach changes nothing.
    pub treatment: Option<Treatment>,
}

/// How customers come to leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GenModel {
    /// `silent_share` of customers go silent at a random time, whatever
    /// happened to them (the version-one generator, byte for byte).
    #[default]
    Classic,
    /// Each customer's hazard of leaving follows their experience; a share
    /// leaves with no warning sign (`ExperienceParams`).
    Experience,
}

/// Parameters of the experience model, defaults from the domain brief.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperienceParams {
    /// Chance that a first (unrepaired) bad experience makes the customer
    /// leave: "after one negative experience 45% spend elsewhere".
    pub leave_after_one: f64,
    /// Chance that each further bad experience, while at least two are
    /// unrepaired, makes them leave: "after several, 47% never buy again".
    pub leave_after_several: f64,
    /// Good experiences (active days' events) that repair one bad one:
    /// "about 12 good experiences make up for one bad one".
    pub good_to_repair: u32,
    /// Mean days from the decision to leave to the last activity.
    pub decision_lag_days: f64,
    /// Share that leaves at a uniformly random time with no warning sign
    /// (chosen so that about a third of leavers leave for no visible
    /// reason: the brief's 66% leave because of a poor experience).
    pub no_warning_share: f64,
    /// Share with support friction (tickets, contacts, complaints).
    pub friction_share: f64,
    /// Chance that a ticket, once answered, is never resolved.
    pub unresolved: f64,
    /// Share of detractor answers once a bad experience is unrepaired.
    pub detractor_after_bad: f64,
    /// A subscriber with an unrepaired bad experience does not renew with
    /// this chance at the renewal date.
    pub lapse_at_renewal: f64,
    /// Subscriptions renew for this many days at a time.
    pub renewal_period_days: i64,
}

impl Default for ExperienceParams {
    fn default() -> Self {
        ExperienceParams {
            leave_after_one: 0.45,
            leave_after_several: 0.47,
            good_to_repair: 12,
            decision_lag_days: 7.0,
            no_warning_share: 0.08,
            friction_share: 0.3,
            unresolved: 0.2,
            detractor_after_bad: 0.6,
            lapse_at_renewal: 0.3,
            renewal_period_days: 30,
        }
    }
}

/// Why and when a customer of the experience model left (the ground truth
/// `backtest --truth` reads). `left_at` is unix seconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TruthRecord {
    pub customer_id: String,
    pub left: bool,
    pub left_at: Option<Timestamp>,
    /// `none`, `no_warning`, `renewal_lapse`, or the bad experience that
    /// tipped the decision: `slow_response`, `reopened`, `unresolved`,
    /// `detractor`, `repeated_contacts`, `complaint`.
    pub cause: &'static str,
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
            model: GenModel::Classic,
            experience: ExperienceParams::default(),
            treatment: None,
        }
    }
}

/// Renewal entries in the heap carry this bit on the customer index.
const RENEWAL: u32 = 1 << 31;
/// A comeback purchase (the treatment model) carries this one.
const COMEBACK: u32 = 1 << 30;

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
    /// Experience model only: unrepaired bad experiences, good ones since
    /// the last repair, recent contacts, when and why they left.
    bad: u32,
    good: u32,
    contacts: Vec<(Timestamp, Channel)>,
    left_at: Timestamp,
    cause: &'static str,
    plan: &'static str,
    /// The treatment model brought them back after their events stopped:
    /// the comeback purchase restarts them.
    revive: bool,
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
    closed: Option<Box<Closed>>,
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
            let experience = cfg.model == GenModel::Experience;
            let silent_share = if experience {
                cfg.experience.no_warning_share
            } else {
                cfg.silent_share
            };
            let silent = rng.gen_bool(silent_share.clamp(0.0, 1.0));
            let silent_from = if silent {
                rng.gen_range(cfg.start..end.max(cfg.start + 1))
            } else {
                Timestamp::MAX
            };
            let preferred =
                [Channel::Web, Channel::App, Channel::Email, Channel::Store][rng.gen_range(0..4)];
            let id = format!("cust-{i:0width$}");
            let first = cfg.start + rng.gen_range(0..(gap_days * SECS_PER_DAY as f64) as i64 + 1);
            let mut plan = "";
            if rng.gen_bool(cfg.subscription_share.clamp(0.0, 1.0)) {
                let renews = cfg.start
                    + rng.gen_range(SECS_PER_DAY..cfg.span.as_secs().max(SECS_PER_DAY + 1));
                plan = ["basic", "pro", "team"][rng.gen_range(0..3)];
                if experience {
                    heap.push(Reverse((renews, i as u32 | RENEWAL)));
                }
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
            let friction_share = if experience {
                cfg.experience.friction_share
            } else {
                cfg.friction_share
            };
            customers.push(Customer {
                id,
                activity_gap: gap_days * SECS_PER_DAY as f64,
                silent_from,
                friction: rng.gen_bool(friction_share.clamp(0.0, 1.0)),
                preferred,
                pending_ticket: None,
                tickets: 0,
                bad: 0,
                good: 0,
                contacts: Vec::new(),
                left_at: silent_from,
                cause: if silent { "no_warning" } else { "none" },
                plan,
                revive: false,
            });
            heap.push(Reverse((first, i as u32)));
        }
        preamble.reverse();
        let closed = cfg
            .treatment
            .as_ref()
            .filter(|_| cfg.model == GenModel::Experience)
            .map(|t| {
                let mut c = Closed::new(t, cfg.seed);
                for (i, x) in customers.iter().enumerate() {
                    c.know(&x.id, i as u32);
                }
                Box::new(c)
            });
        Generator {
            cfg,
            rng,
            customers,
            heap,
            preamble,
            emitted: 0,
            end,
            closed,
        }
    }

    fn next_event(&mut self) -> Option<InteractionEvent> {
        loop {
            // The treatment model: decisions due by this time are made, and
            // reacted to, before anything happens at it.
            // Not past the end: nothing is made there, so no decision
            // there could be measured (as in a replay of the output).
            let top = self.heap.peek().map(|Reverse((at, _))| *at);
            if let (Some(c), Some(at)) = (self.closed.as_mut(), top.filter(|t| *t < self.end)) {
                c.feed.advance_to(at);
                for entry in c.react(&mut self.customers, at) {
                    self.heap.push(Reverse(entry));
                }
            }
            let Reverse((at, i)) = self.heap.pop()?;
            if at >= self.end {
                continue;
            }
            if i & RENEWAL != 0 {
                return Some(self.renewal(at, i & !RENEWAL));
            }
            if i & COMEBACK != 0 {
                return Some(self.comeback(at, i & !COMEBACK));
            }
            let experience = self.cfg.model == GenModel::Experience;
            let gone = &self.customers[i as usize];
            if experience && at >= gone.silent_from && gone.pending_ticket.is_none() {
                continue; // lapsed at a renewal after this was scheduled
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
                if experience {
                    let p = &self.cfg.experience;
                    if status == TicketStatus::FirstResponse && i64::from(secs) > SECS_PER_DAY {
                        bad_experience(c, rng, p, at, "slow_response");
                    } else if status == TicketStatus::Reopened {
                        bad_experience(c, rng, p, at, "reopened");
                    } else if status == TicketStatus::Resolved && rng.gen_bool(p.unresolved) {
                        // Never resolved: the customer hears nothing more.
                        bad_experience(c, rng, p, at, "unresolved");
                        let eid = format!("{}-{seq}", c.id);
                        let ev = events::contact(&eid, &c.id, at, Channel::Email);
                        self.schedule(at, i);
                        return Some(ev);
                    }
                }
                let c = &mut self.customers[i as usize];
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
                if experience {
                    c.contacts.retain(|(t, _)| at - t < 7 * SECS_PER_DAY);
                    c.contacts.push((at, ch));
                    let mut chans: Vec<Channel> = c.contacts.iter().map(|p| p.1).collect();
                    chans.sort_unstable();
                    chans.dedup();
                    if c.contacts.len() >= 3 && chans.len() >= 2 {
                        c.contacts.clear();
                        bad_experience(c, rng, &self.cfg.experience, at, "repeated_contacts");
                    }
                }
                events::contact(&eid, &c.id, at, ch)
            } else if c.friction && roll < 0.28 {
                if experience {
                    bad_experience(c, rng, &self.cfg.experience, at, "complaint");
                }
                events::complaint(&eid, &c.id, at, Channel::Phone, "service")
            } else if roll < 0.283 {
                // Few answer surveys; among those who do, the usual NPS mix
                // (about 50% promoters, 35% passives, 15% detractors), worse with friction.
                let u: f64 = rng.gen();
                let detractor_share = if experience && c.bad > 0 {
                    self.cfg.experience.detractor_after_bad
                } else if c.friction {
                    0.5
                } else {
                    0.15
                };
                let nps = if u < detractor_share {
                    rng.gen_range(0..7)
                } else if u < detractor_share + 0.35 {
                    rng.gen_range(7..9)
                } else {
                    rng.gen_range(9..11)
                };
                if experience && nps < 7 {
                    bad_experience(c, rng, &self.cfg.experience, at, "detractor");
                }
                events::nps(&eid, &c.id, at, nps)
            } else if roll < 0.285 {
                let csat = if rng.gen_bool(0.1) {
                    rng.gen_range(1..3)
                } else {
                    rng.gen_range(3..6)
                };
                events::csat(&eid, &c.id, at, csat)
            } else if roll < 0.60 {
                if experience {
                    good_experience(c, &self.cfg.experience);
                }
                let amount = (rng.gen_range(5.0..200.0f64) * 100.0).round() / 100.0;
                let mut e = events::purchase(&eid, &c.id, at, amount);
                e.channel = c.preferred as i32;
                e
            } else {
                if experience {
                    good_experience(c, &self.cfg.experience);
                }
                let ch = if rng.gen_bool(0.8) {
                    c.preferred
                } else {
                    channel::ALL[rng.gen_range(0..channel::COUNT)]
                };
                events::session(&eid, &c.id, at, ch)
            };
            self.schedule(at, i);
            return Some(ev);
        }
    }

    /// The customer's next event after `at`, unless they have gone silent.
    fn schedule(&mut self, at: Timestamp, i: u32) {
        let rng = &mut self.rng;
        let c = &mut self.customers[i as usize];
        {
            let gap = if c.pending_ticket.is_some() {
                rng.gen_range(3_600.0..172_800.0)
            } else {
                Exp::new(1.0 / c.activity_gap).map_or(c.activity_gap, |d| d.sample(rng))
            };
            let next = at + gap.max(60.0) as i64;
            if next < c.silent_from || c.pending_ticket.is_some() {
                self.heap.push(Reverse((next, i)));
            }
        }
    }

    /// A subscriber's renewal date (experience model): one who has left, or
    /// lapses now, cancels; the others renew for another period.
    fn renewal(&mut self, at: Timestamp, i: u32) -> InteractionEvent {
        let p = &self.cfg.experience;
        let seq = self.emitted;
        let c = &mut self.customers[i as usize];
        if c.left_at > at && c.bad > 0 && self.rng.gen_bool(p.lapse_at_renewal) {
            c.left_at = at;
            c.silent_from = at;
            c.cause = "renewal_lapse";
        }
        let eid = format!("{}-{seq}", c.id);
        if c.left_at <= at {
            return events::subscription(&eid, &c.id, at, c.plan, at, true);
        }
        let next = at + p.renewal_period_days * SECS_PER_DAY;
        self.heap.push(Reverse((next, i | RENEWAL)));
        events::subscription(&eid, &c.id, at, c.plan, next, false)
    }

    /// The treatment model's comeback: a purchase, and the customer's own
    /// course again if it had stopped.
    fn comeback(&mut self, at: Timestamp, i: u32) -> InteractionEvent {
        let seq = self.emitted;
        let amount = (self.rng.gen_range(5.0..200.0f64) * 100.0).round() / 100.0;
        let c = &mut self.customers[i as usize];
        let mut e = events::purchase(&format!("{}-{seq}", c.id), &c.id, at, amount);
        e.channel = c.preferred as i32;
        if std::mem::take(&mut c.revive) {
            self.schedule(at, i);
        }
        e
    }

    /// The uplift the generator's own churnwatch measured, by playbook
    /// (treatment model only).
    pub fn measured(&self) -> Option<&BTreeMap<&'static str, UpliftCounts>> {
        self.closed.as_ref().map(|c| c.measured())
    }

    /// Trials by (playbook, true response stratum) (treatment model only).
    pub fn strata(&self) -> Option<&BTreeMap<(&'static str, &'static str), u64>> {
        self.closed.as_ref().map(|c| &c.strata)
    }

    /// Ground truth so far: who left (within the span), when and why.
    pub fn truth(&self) -> Vec<TruthRecord> {
        self.customers
            .iter()
            .map(|c| {
                let left = c.left_at < self.end;
                TruthRecord {
                    customer_id: c.id.clone(),
                    left,
                    left_at: left.then_some(c.left_at),
                    cause: if left { c.cause } else { "none" },
                }
            })
            .collect()
    }
}

/// A bad experience: the count of unrepaired ones rises, and the customer
/// may decide to leave (after a lag), unless they already have.
fn bad_experience(
    c: &mut Customer,
    rng: &mut ChaCha8Rng,
    p: &ExperienceParams,
    at: Timestamp,
    cause: &'static str,
) {
    c.bad += 1;
    c.good = 0;
    if c.left_at <= at || !matches!(c.cause, "none" | "no_warning") {
        return; // gone already, or decided by an earlier bad experience
    }
    let chance = if c.bad >= 2 {
        p.leave_after_several
    } else {
        p.leave_after_one
    };
    if rng.gen_bool(chance.clamp(0.0, 1.0)) {
        let lag = Exp::new(1.0 / (p.decision_lag_days.max(0.01) * SECS_PER_DAY as f64))
            .map_or(0.0, |d| d.sample(rng));
        let left_at = at + lag as i64;
        if left_at < c.left_at {
            c.left_at = left_at;
            c.silent_from = left_at;
            c.cause = cause;
        }
    }
}

/// A good experience (an active day's event): enough of them repair one bad one.
fn good_experience(c: &mut Customer, p: &ExperienceParams) {
    if c.bad == 0 {
        return;
    }
    c.good += 1;
    if c.good >= p.good_to_repair {
        c.bad -= 1;
        c.good = 0;
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
        if let (Some(c), Some(e)) = (self.closed.as_mut(), ev.as_ref()) {
            c.feed.fold_one(e);
            let now = e.occurred_at.map_or(0, |t| t.seconds);
            for entry in c.react(&mut self.customers, now) {
                self.heap.push(Reverse(entry));
            }
        }
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

    #[test]
    fn experience_model_leaves_for_the_brief_s_reasons() {
        let cfg = GenConfig {
            customers: 3_000,
            span: Span::days(120),
            model: GenModel::Experience,
            ..GenConfig::default()
        };
        let mut gen = Generator::new(cfg.clone());
        let evs: Vec<InteractionEvent> = gen.by_ref().collect();
        let again: Vec<InteractionEvent> = Generator::new(cfg.clone()).collect();
        assert_eq!(evs, again, "same seed, same stream");
        let truth = gen.truth();
        let left: Vec<&TruthRecord> = truth.iter().filter(|t| t.left).collect();
        let no_warning = left.iter().filter(|t| t.cause == "no_warning").count();
        let share = no_warning as f64 / left.len() as f64;
        // About a third of leavers leave with no warning sign (brief: 66%
        // leave because of a poor experience).
        assert!((0.2..0.5).contains(&share), "{share} of {}", left.len());
        // A leaver is never active after leaving.
        let gone: std::collections::HashMap<&str, i64> = left
            .iter()
            .filter_map(|t| Some((t.customer_id.as_str(), t.left_at?)))
            .collect();
        for e in &evs {
            let active = matches!(
                e.kind,
                Some(crate::pb::interaction_event::Kind::Purchase(_))
                    | Some(crate::pb::interaction_event::Kind::Session(_))
            );
            let at = e.occurred_at.map_or(0, |t| t.seconds);
            if let (true, Some(l)) = (active, gone.get(e.customer_id.as_str())) {
                assert!(at <= *l, "{} active after leaving", e.customer_id);
            }
        }
        // The default model's stream does not change.
        let classic: Vec<InteractionEvent> = Generator::new(GenConfig {
            model: GenModel::Classic,
            ..cfg
        })
        .collect();
        assert_ne!(classic, evs);
    }
}
