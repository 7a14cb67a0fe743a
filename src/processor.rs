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

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{
    config::CoreConfig,
    fold::Folded,
    outreach::{self, Decision, Suppression},
    pb::{InteractionEvent, Outcome, OutreachRequested, Playbook},
    population::PopulationModel,
    score::{self, Level},
    signals::Context,
    state::{CustomerState, RecentEvents},
    time::Timestamp,
    timers::TimerQueue,
    validate::{validate, Rejection},
};

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
    customers: FxHashMap<Arc<str>, CustomerState>,
    timers: TimerQueue,
    max_event_at: Option<Timestamp>,
    /// Erased customers (xxh3 of the id, never the id) and when.
    erased: FxHashMap<u64, Timestamp>,
    /// Customers changed since the last [`Processor::take_changed`].
    changed: FxHashSet<Arc<str>>,
    /// Customers per level (low, medium, high, critical), kept incrementally.
    levels: [u64; 4],
}

impl Processor {
    pub fn new(cfg: Arc<CoreConfig>, model: Arc<PopulationModel>) -> Self {
        Processor {
            cfg,
            model,
            customers: FxHashMap::default(),
            timers: TimerQueue::default(),
            max_event_at: None,
            erased: FxHashMap::default(),
            changed: FxHashSet::default(),
            levels: [0; 4],
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
    pub fn sorted(&self) -> Vec<(&Arc<str>, &CustomerState)> {
        let mut v: Vec<_> = self.customers.iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &CustomerState)> {
        self.customers.iter()
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
        // Live: an event far ahead of both the wall clock and stream time is
        // a broken producer clock. Offline there is no trusted "now" (gaps of
        // months are normal in a file), so only the absolute bound applies.
        let reference = wall_clock.map(|w| self.max_event_at.map_or(w, |m| m.max(w)));
        let valid = validate(ev, reference, &self.cfg.fold)?;
        let at = valid.at;
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

        let key: Arc<str> = match self.customers.get_key_value(ev.customer_id.as_str()) {
            Some((k, _)) => k.clone(),
            None => {
                self.customers
                    .insert(Arc::from(ev.customer_id.as_str()), CustomerState::new(at));
                self.levels[Level::Low as usize - 1] += 1;
                match self.customers.get_key_value(ev.customer_id.as_str()) {
                    Some((k, _)) => k.clone(),
                    None => return Ok(Processed::Late),
                }
            }
        };
        self.fire_own_timers(&key, at, out);
        let Some(state) = self.customers.get_mut(&key) else {
            return Ok(Processed::Late);
        };
        let folded = state.apply(&valid, &self.cfg.fold);
        match folded {
            Folded::Duplicate | Folded::Late => {
                if state.recent_events == RecentEvents::default() {
                    // a fresh state that took nothing
                    if let Some(s) = self.customers.remove(&key) {
                        self.levels[s.score.level as usize - 1] -= 1;
                    }
                }
                return Ok(Processed::Folded(folded));
            }
            Folded::Erased => {
                let before = self.customers.remove(&key);
                if let Some(h) = before.as_ref().and_then(|s| s.outreach.as_deref()) {
                    if h.episode_started_at.is_some() && !h.episode_done {
                        out.push(Effect::Suppressed {
                            reason: Suppression::Erased,
                            playbook: Playbook::Unspecified,
                        });
                    }
                }
                if let Some(s) = &before {
                    self.levels[s.score.level as usize - 1] -= 1;
                }
                self.erased.insert(id_hash, at);
                self.changed.insert(key);
                return Ok(Processed::Folded(folded));
            }
            Folded::Outcome { playbook, outcome } => {
                out.push(Effect::Outcome { playbook, outcome })
            }
            Folded::Applied => {}
        }
        let now = at.max(state.score.scored_at);
        self.rescore(&key, now, out);
        self.changed.insert(key);
        Ok(Processed::Folded(folded))
    }

    /// Fires every timer due at or before `now` (stream time), in time order.
    pub fn advance_to(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        while let Some((due, key)) = self.timers.pop_due(now) {
            let live = self
                .customers
                .get(&key)
                .is_some_and(|s| s.score.next_check_at == due && due > s.score.scored_at);
            if live {
                self.rescore(&key, due, out);
                self.changed.insert(key);
            }
        }
        if self.timers.len() > 2 * self.customers.len() + 1024 {
            let live = self
                .customers
                .iter()
                .filter(|(_, s)| s.score.next_check_at != 0)
                .map(|(k, s)| (s.score.next_check_at, k.clone()));
            self.timers.compact(live);
        }
    }

    /// Before a customer's event at `at`, fires that customer's timers due
    /// before it, so their decisions follow their own timeline.
    fn fire_own_timers(&mut self, key: &Arc<str>, at: Timestamp, out: &mut Vec<Effect>) {
        for _ in 0..64 {
            let due = match self.customers.get(key) {
                Some(s)
                    if s.score.next_check_at != 0
                        && s.score.next_check_at <= at
                        && s.score.next_check_at > s.score.scored_at =>
                {
                    s.score.next_check_at
                }
                _ => return,
            };
            self.rescore(key, due, out);
        }
    }

    /// Scores a customer at `now`, applies the outreach policy and schedules
    /// the next look.
    fn rescore(&mut self, key: &Arc<str>, now: Timestamp, out: &mut Vec<Effect>) {
        let cfg = &self.cfg;
        let ctx = Context {
            cfg: &cfg.score,
            fold: &cfg.fold,
            model: &self.model,
        };
        let Some(state) = self.customers.get_mut(key) else {
            return;
        };
        let before = state.score.level;
        let risk = score::risk(state, now, &ctx);
        let level = Level::of(risk, &cfg.score.thresholds);
        if level >= cfg.outreach.trigger_level || state.outreach.is_some() {
            let full = score::score(state, now, &ctx);
            match outreach::decide(state, key, &full, now, &ctx, &cfg.outreach) {
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
        let next = [change, wake]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(horizon);
        state.score.risk = risk as f32;
        state.score.level = level;
        state.score.scored_at = now;
        state.score.next_check_at = next;
        if before != level {
            self.levels[before as usize - 1] -= 1;
            self.levels[level as usize - 1] += 1;
        }
        self.timers.schedule(next, key.clone());
    }

    /// Installs a restored state (changelog) and its pending timer.
    pub fn restore(&mut self, customer_id: &str, state: CustomerState) {
        let key: Arc<str> = Arc::from(customer_id);
        self.max_event_at = Some(
            self.max_event_at
                .map_or(state.last_event_at, |m| m.max(state.last_event_at)),
        );
        if state.score.next_check_at != 0 {
            self.timers.schedule(state.score.next_check_at, key.clone());
        }
        self.levels[state.score.level as usize - 1] += 1;
        if let Some(old) = self.customers.insert(key, state) {
            self.levels[old.score.level as usize - 1] -= 1;
        }
    }

    /// Removes a customer (changelog tombstone seen during restore).
    pub fn forget(&mut self, customer_id: &str) {
        if let Some(old) = self.customers.remove(customer_id) {
            self.levels[old.score.level as usize - 1] -= 1;
        }
    }

    /// Customers changed since the last call, sorted, with their state
    /// (`None` = erased: write a tombstone).
    pub fn take_changed(&mut self) -> Vec<(Arc<str>, Option<&CustomerState>)> {
        let mut keys: Vec<Arc<str>> = self.changed.drain().collect();
        keys.sort_unstable();
        keys.into_iter()
            .map(|k| {
                let s = self.customers.get(&k);
                (k, s)
            })
            .collect()
    }

    /// Refits the population model on this processor's customers as of `now`.
    pub fn refit(&self, now: Timestamp) -> Result<PopulationModel, crate::model::ModelError> {
        self.model.refit(
            &self.cfg.model,
            self.customers.values().filter_map(|s| s.activity.as_ref()),
            now,
        )
    }

    /// Counts of customers per level (for gauges).
    pub fn level_counts(&self) -> [u64; 4] {
        self.levels
    }
}

#[cfg(test)]
mod tests;
