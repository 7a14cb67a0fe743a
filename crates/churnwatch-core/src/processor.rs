//! One partition's stream, processed: validate, fold, score, decide, and fire
//! silence timers as stream time advances. Pure and deterministic: the same
//! events in the same order give the same states and the same effects, byte
//! for byte, whether they come from Kafka or from a file.
//!
//! Stream time is the highest event time seen minus the allowed lateness;
//! events older than it are counted and dropped. A customer's own timers
//! that fall due before one of their events are fired before the event is
//! folded, so a customer's decisions depend only on their own events (and
//! the model), not on how customers are spread over partitions.

mod sealed;

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use smol_str::SmolStr;

use crate::{
    config::{CoreConfig, FoldConfig},
    fold::Folded,
    kind::EventKind,
    outreach::{self, Decision, Suppression},
    pb::{interaction_event::Kind, InteractionEvent, Outcome, OutreachRequested, Playbook},
    population::{PopulationModel, RefitError},
    score::{self, outcomes, Level},
    signals::Context,
    state::{Activity, CustomerState, RecentEvents},
    store::CustomerStore,
    time::Timestamp,
    timers::TimerQueue,
    uplift::{trial, Measured},
    validate::{validate, Rejection},
};
pub use sealed::ChangelogRecord;
use sealed::Sealed;

/// Something the processing caused that the outside world may act on.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Outreach(Box<OutreachRequested>),
    Suppressed {
        reason: Suppression,
        playbook: Playbook,
    },
    Outcome {
        playbook: Playbook,
        outcome: Outcome,
    },
    /// A decision's uplift trial closed: its horizon passed (stream time).
    Measured(Measured),
}

/// What became of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processed {
    Folded(Folded),
    /// Older than stream time (beyond the allowed lateness).
    Late,
    /// For a customer erased after this event's time: dropped, never resurrected.
    Forgotten,
}

pub struct Processor {
    cfg: Arc<CoreConfig>,
    model: Arc<PopulationModel>,
    customers: CustomerStore,
    timers: TimerQueue,
    max_event_at: Option<Timestamp>,
    /// Erased customers (xxh3 of the id, never the id) and when.
    erased: FxHashMap<u64, Timestamp>,
    /// Slots changed since the last [`Processor::seal`].
    changed: FxHashSet<u32>,
    /// Customers erased since the last [`Processor::seal`].
    tombstones: Vec<SmolStr>,
    /// The last sealed batch's changelog, being encoded.
    sealed: Sealed,
    /// Customers per level (low, medium, high, critical), kept incrementally.
    levels: [u64; 4],
    /// Silence-timer re-scores so far.
    timers_fired: u64,
    /// Customers forgotten after `fold.retention` of silence, so far.
    evicted: u64,
}

fn level_index(l: Level) -> usize {
    l as usize - 1
}

impl Processor {
    pub fn new(cfg: Arc<CoreConfig>, model: Arc<PopulationModel>) -> Self {
        Processor {
            cfg,
            model,
            customers: CustomerStore::default(),
            timers: TimerQueue::default(),
            max_event_at: None,
            erased: FxHashMap::default(),
            changed: FxHashSet::default(),
            tombstones: Vec::new(),
            sealed: Sealed::default(),
            levels: [0; 4],
            timers_fired: 0,
            evicted: 0,
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn model(&self) -> &Arc<PopulationModel> {
        &self.model
    }

    pub fn set_model(&mut self, model: Arc<PopulationModel>) {
        self.model = model;
    }

    /// Highest event time seen minus the allowed lateness.
    pub fn stream_time(&self) -> Option<Timestamp> {
        self.max_event_at
            .map(|t| t - self.cfg.fold.lateness.as_secs())
    }

    pub fn max_event_time(&self) -> Option<Timestamp> {
        self.max_event_at
    }

    pub fn len(&self) -> usize {
        self.customers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }

    pub fn get(&self, customer_id: &str) -> Option<&CustomerState> {
        self.customers.get(customer_id)
    }

    /// All customers, sorted by id (deterministic output).
    pub fn sorted(&self) -> Vec<(&str, &CustomerState)> {
        let mut v: Vec<(&str, &CustomerState)> = self
            .customers
            .iter()
            .map(|(_, s)| (s.id.as_str(), &s.state))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &CustomerState)> {
        self.customers
            .iter()
            .map(|(_, s)| (s.id.as_str(), &s.state))
    }

    /// Validates and processes one event; effects are appended to `out`.
    /// `wall_clock` (live mode only) is the reference of the future-skew
    /// check, with stream time.
    pub fn process(
        &mut self,
        ev: &InteractionEvent,
        wall_clock: Option<Timestamp>,
        out: &mut Vec<Effect>,
    ) -> Result<Processed, Rejection> {
        // Live: an event more than `fold.max_future_skew` ahead of the wall
        // clock is a broken producer clock. The wall clock alone is the
        // reference (not the newest event), so a drifting producer cannot
        // drag stream time ahead an hour at a time: it stays within
        // `max_future_skew - lateness` of the wall clock. Offline there is no
        // trusted "now" (gaps of months are normal in a file), so only the
        // absolute bound applies.
        let valid = validate(ev, wall_clock, &self.cfg.fold)?;
        let at = valid.at;
        if let Kind::Erasure(_) = valid.kind {
            // Whatever its event id and however late: an erasure always erases.
            self.erase(&ev.customer_id, at, out);
            return Ok(Processed::Folded(Folded::Erased));
        }
        if self.stream_time().is_some_and(|st| at < st) {
            return Ok(Processed::Late);
        }
        let id_hash = RecentEvents::hash(&ev.customer_id);
        if self
            .erased
            .get(&id_hash)
            .is_some_and(|erased_at| at <= *erased_at)
        {
            return Ok(Processed::Forgotten);
        }
        self.max_event_at = Some(self.max_event_at.map_or(at, |m| m.max(at)));

        let mut found = self.customers.find(&ev.customer_id);
        if let Some(slot) = found {
            self.sealed.before_change(&self.customers, slot);
            // Their own timers first: they may have churned for good before
            // this event (retention), and then it starts a new customer.
            if self.fire_own_timers(slot, at, out) {
                found = None;
            }
        }
        let (slot, fresh) = match found {
            Some(slot) => (slot, false),
            None => {
                let cap = self.cfg.fold.max_customers_per_partition;
                if cap > 0 && self.customers.len() as u64 >= cap {
                    return Err(Rejection::CustomerCap(cap));
                }
                self.levels[level_index(Level::Low)] += 1;
                (
                    self.customers
                        .insert(&ev.customer_id, CustomerState::new(at)),
                    true,
                )
            }
        };
        let Some(entry) = self.customers.slot_mut(slot) else {
            return Ok(Processed::Late);
        };
        let folded = entry.state.apply(&valid, &self.cfg.fold);
        if matches!(folded, Folded::Applied | Folded::Outcome { .. })
            && self
                .cfg
                .fold
                .activity_kinds
                .contains(EventKind::of(valid.kind))
        {
            trial::observe_activity(&mut entry.state, at, self.cfg.score.horizon.as_secs());
        }
        match folded {
            Folded::Duplicate | Folded::Late => {
                if fresh {
                    self.drop_customer(&ev.customer_id);
                }
                return Ok(Processed::Folded(folded));
            }
            Folded::Erased => {
                // Erasures are handled before the fold (`erase`).
                self.erase(&ev.customer_id, at, out);
                return Ok(Processed::Folded(folded));
            }
            Folded::Outcome { playbook, outcome } => {
                out.push(Effect::Outcome { playbook, outcome })
            }
            Folded::Applied => {}
        }
        let now = at.max(entry.state.score.scored_at);
        self.rescore(slot, now, out);
        self.changed.insert(slot);
        Ok(Processed::Folded(folded))
    }

    /// Forgets a customer at `at` (an erasure): their state goes, their
    /// events up to `at` stay forgotten, and the changelog gets a tombstone.
    /// Idempotent: erasing again only moves the erasure time on. An open
    /// episode held back so far is counted as suppressed (`erased`).
    fn erase(&mut self, customer_id: &str, at: Timestamp, out: &mut Vec<Effect>) {
        if let Some(slot) = self.customers.find(customer_id) {
            self.sealed.before_change(&self.customers, slot);
            // Their own timers due before the erasure fire first, as before
            // any of their events.
            if !self.fire_own_timers(slot, at, out) {
                let pending = self
                    .customers
                    .slot(slot)
                    .and_then(|s| s.state.outreach.as_deref())
                    .is_some_and(|h| h.episode_started_at.is_some() && !h.episode_done);
                if pending {
                    out.push(Effect::Suppressed {
                        reason: Suppression::Erased,
                        playbook: Playbook::Unspecified,
                    });
                }
                self.drop_customer(customer_id);
            }
            self.changed.remove(&slot);
        }
        let e = self
            .erased
            .entry(RecentEvents::hash(customer_id))
            .or_insert(at);
        *e = (*e).max(at);
        self.max_event_at = Some(self.max_event_at.map_or(at, |m| m.max(at)));
        self.tombstones.push(SmolStr::new(customer_id));
    }

    fn drop_customer(&mut self, id: &str) {
        if let Some((_, s)) = self.customers.remove(id) {
            self.levels[level_index(s.score.level)] -= 1;
        }
    }

    /// Fires every timer due at or before `now` (stream time), in time order.
    pub fn advance_to(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        while let Some((due, slot)) = self.timers.pop_due(now) {
            let live = self.customers.slot(slot).is_some_and(|s| {
                s.state.score.next_check_at == due && due > s.state.score.scored_at
            });
            if live {
                self.sealed.before_change(&self.customers, slot);
                if self.evict_if_due(slot, due) {
                    continue;
                }
                self.timers_fired += 1;
                self.rescore(slot, due, out);
                self.changed.insert(slot);
            }
        }
        // Stale entries (rescheduled customers) are dropped once they reach
        // half the live ones, bounding the queue at 1.5 entries per customer.
        if self.timers.len() > self.customers.len() + self.customers.len() / 2 + 1024 {
            let live = self
                .customers
                .iter()
                .filter(|(_, s)| s.state.score.next_check_at != 0)
                .map(|(slot, s)| (s.state.score.next_check_at, slot));
            self.timers.compact(live);
        }
    }

    /// When a customer silent since `s.last_event_at` is forgotten: after
    /// `fold.retention`, and not before a renewal date they have paid up to.
    fn evict_at(fold: &FoldConfig, s: &CustomerState) -> Option<Timestamp> {
        let r = fold.retention.as_secs();
        if r <= 0 {
            return None;
        }
        let renewal = s
            .subscription
            .as_ref()
            .filter(|sub| !sub.cancelled)
            .map_or(0, |sub| sub.renews_at);
        Some((s.last_event_at + r).max(renewal))
    }

    /// Forgets the customer in `slot` if the timer due at `due` is their
    /// retention running out; they leave a changelog tombstone.
    fn evict_if_due(&mut self, slot: u32, due: Timestamp) -> bool {
        let Some(s) = self.customers.slot(slot) else {
            return false;
        };
        if Self::evict_at(&self.cfg.fold, &s.state).is_none_or(|t| due < t) {
            return false;
        }
        let id = s.id.clone();
        self.drop_customer(&id);
        self.changed.remove(&slot);
        self.tombstones.push(id);
        self.evicted += 1;
        true
    }

    /// Before a customer's event at `at`, fires that customer's timers due
    /// before it, so their decisions follow their own timeline. True when
    /// the customer was forgotten (retention) on the way.
    fn fire_own_timers(&mut self, slot: u32, at: Timestamp, out: &mut Vec<Effect>) -> bool {
        for _ in 0..64 {
            let due = match self.customers.slot(slot) {
                Some(s) => {
                    let sc = &s.state.score;
                    if sc.next_check_at != 0
                        && sc.next_check_at <= at
                        && sc.next_check_at > sc.scored_at
                    {
                        sc.next_check_at
                    } else {
                        return false;
                    }
                }
                None => return false,
            };
            if self.evict_if_due(slot, due) {
                return true;
            }
            self.timers_fired += 1;
            self.rescore(slot, due, out);
        }
        false
    }

    /// Scores a customer at `now`, applies the outreach policy and schedules
    /// the next look.
    fn rescore(&mut self, slot: u32, now: Timestamp, out: &mut Vec<Effect>) {
        let cfg = &self.cfg;
        let ctx = Context::new(cfg, &self.model);
        let Some(entry) = self.customers.slot_mut(slot) else {
            return;
        };
        let state = &mut entry.state;
        let before = state.score.level;
        let trial_horizon = cfg.score.horizon.as_secs();
        if let Some(m) = trial::close_due(state, now, trial_horizon) {
            out.push(Effect::Measured(m));
        }
        let risk = score::risk(state, now, &ctx);
        let level = Level::of(risk, &cfg.score.thresholds);
        if level >= cfg.outreach.trigger_level || state.outreach.is_some() {
            let full = score::score(state, now, &ctx);
            match outreach::decide(state, &entry.id, &full, now, &ctx, &cfg.outreach) {
                Some(Decision::Send(msg)) => out.push(Effect::Outreach(msg)),
                Some(Decision::Suppressed { reason, playbook }) => {
                    out.push(Effect::Suppressed { reason, playbook })
                }
                None => {}
            }
        }
        let horizon = now + cfg.score.timer_horizon.as_secs();
        let change = score::schedule::next_change(state, now, horizon, &ctx);
        let wake = outreach::next_wakeup(state, now, &cfg.outreach);
        // Within the horizon only (a timer never looks further ahead).
        let evict = Self::evict_at(&cfg.fold, state)
            .filter(|t| *t <= horizon)
            .map(|t| t.max(now + 1));
        let trial_end = trial::due(state, trial_horizon).filter(|t| *t <= horizon);
        let next = [change, wake, evict, trial_end]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(horizon);
        state.score.risk = risk as f32;
        state.score.level = level;
        state.score.scored_at = now;
        state.score.next_check_at = next;
        if before != level {
            self.levels[level_index(before)] -= 1;
            self.levels[level_index(level)] += 1;
        }
        self.timers.schedule(next, slot);
    }

    /// Installs a restored state (changelog) and its pending timer.
    pub fn restore(&mut self, customer_id: &str, state: CustomerState) {
        self.max_event_at = Some(
            self.max_event_at
                .map_or(state.last_event_at, |m| m.max(state.last_event_at)),
        );
        let next = state.score.next_check_at;
        let level = state.score.level;
        self.drop_customer(customer_id);
        self.levels[level_index(level)] += 1;
        let slot = self.customers.insert(customer_id, state);
        if next != 0 {
            self.timers.schedule(next, slot);
        }
    }

    /// Removes a customer (changelog tombstone seen during restore).
    pub fn forget(&mut self, customer_id: &str) {
        self.drop_customer(customer_id);
    }

    /// Removes a customer erased at `at` (an erasure's tombstone seen during
    /// restore): their events up to `at` stay forgotten after the restore.
    pub fn forget_erased(&mut self, customer_id: &str, at: Timestamp) {
        self.drop_customer(customer_id);
        let e = self
            .erased
            .entry(RecentEvents::hash(customer_id))
            .or_insert(at);
        *e = (*e).max(at);
    }

    /// Ends a batch for the changelog: the customers changed since the last
    /// seal are sealed, to be encoded by [`Processor::encode_sealed`] (a
    /// sealed customer who changes before that is encoded first, as sealed).
    /// Whatever the previous seal still held is encoded now.
    pub fn seal(&mut self) {
        let erased = &self.erased;
        let tombstones = self.tombstones.drain(..).map(|id| ChangelogRecord {
            erased_at: erased.get(&RecentEvents::hash(&id)).copied(),
            customer_id: id,
            snapshot: None,
        });
        self.sealed
            .seal(&self.customers, tombstones, self.changed.drain());
    }

    /// Encodes up to `max` sealed customers; returns how many still wait.
    pub fn encode_sealed(&mut self, max: usize) -> usize {
        self.sealed.encode(&self.customers, max)
    }

    /// Sealed customers not encoded yet.
    pub fn sealed_waiting(&self) -> usize {
        self.sealed.waiting()
    }

    /// The sealed records encoded so far (tombstones first, then states; a
    /// customer appears at most once as each).
    pub fn take_encoded(&mut self) -> std::vec::Drain<'_, ChangelogRecord> {
        self.sealed.take()
    }

    /// Gathers the activity of the customers in slots `from..from + max`
    /// into `out`, and visits them for the risk's labels (`g`), for a refit a
    /// part at a time; returns the slot to go on from, or `None` when every
    /// slot was seen.
    pub fn gather(
        &self,
        from: u32,
        max: u32,
        out: &mut Vec<Activity>,
        g: &mut outcomes::Gather,
    ) -> Option<u32> {
        let end = from.saturating_add(max).min(self.customers.slot_count());
        let ctx = Context::new(&self.cfg, &self.model);
        for i in from..end {
            if let Some(s) = self.customers.slot(i) {
                if let Some(a) = s.state.activity {
                    out.push(a);
                }
                g.visit(&s.id, &s.state, &ctx);
            }
        }
        (end < self.customers.slot_count()).then_some(end)
    }

    /// A whole refit of this processor alone (as `replay` does it): the
    /// population model and the risk's coefficients, as of `now`.
    pub fn refit_learning(
        &self,
        outcomes: &mut outcomes::Outcomes,
        now: Timestamp,
    ) -> Result<outcomes::Refitted, RefitError> {
        let mut g = outcomes.begin(now, &self.cfg);
        let mut activities = Vec::with_capacity(self.customers.len());
        let mut from = 0;
        while let Some(next) = self.gather(from, u32::MAX, &mut activities, &mut g) {
            from = next;
        }
        let training = outcomes.finish(g);
        outcomes::refit(&self.model, &self.cfg, &activities, &training, now)
    }

    /// Refits the population model on this processor's customers as of `now`.
    pub fn refit(&self, now: Timestamp) -> Result<PopulationModel, RefitError> {
        let spend: Vec<crate::model::Spend> = self
            .customers
            .iter()
            .filter_map(|(_, s)| {
                crate::model::Spend::of(s.state.value.purchases, s.state.value.amount)
            })
            .collect();
        let model = self
            .model
            .refit(
                &self.cfg.model,
                self.customers
                    .iter()
                    .filter_map(|(_, s)| s.state.activity.as_ref()),
                now,
            )?
            .with_spend(&spend, now);
        if !self.cfg.outreach.targets_saves() {
            return Ok(model);
        }
        let mut g = outcomes::SavesGather::default();
        for (_, s) in self.customers.iter() {
            g.add(&s.state);
        }
        Ok(model.with_uplift(&g.counts, &g.values, now, self.cfg.score.horizon))
    }

    /// Counts of customers per level (low, medium, high, critical).
    pub fn level_counts(&self) -> [u64; 4] {
        self.levels
    }

    /// Silence-timer re-scores since this processor started.
    pub fn timers_fired(&self) -> u64 {
        self.timers_fired
    }

    /// Customers forgotten after `fold.retention` of silence since this
    /// processor started.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests;
