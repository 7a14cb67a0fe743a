//! The feed: events folded in memory into one [`Processor`], in stream
//! order, with the silence timers fired, the periodic refits run and the
//! outreach and suppressions collected. `replay` and `backtest` feed it the
//! records they read from files; the generator's closed loop feeds it its
//! own events ([`Feed::fold_one`]), so a replay of its output makes the same
//! decisions. No files, no clock: only events and stream time.

use std::{collections::BTreeMap, sync::Arc};

use serde::Serialize;

use crate::{
    config::CoreConfig,
    pb::OutreachRequested,
    population::{FitRecord, PopulationModel},
    processor::{Effect, Processed, Processor},
    score::outcomes::Outcomes,
    time::{rfc3339, Timestamp},
    uplift::UpliftCounts,
    validate::Rejection,
};

/// What a replay did, for the closing report.
#[derive(Debug, Default, Serialize)]
pub struct ReplaySummary {
    pub records: u64,
    pub folded: u64,
    pub duplicates: u64,
    pub late: u64,
    pub forgotten: u64,
    pub invalid: u64,
    pub invalid_by_reason: BTreeMap<&'static str, u64>,
    pub customers: u64,
    pub outreach: u64,
    pub suppressed_by_reason: BTreeMap<&'static str, u64>,
    /// Decisions held out (`outreach.holdout`), included in `outreach`.
    pub held_out: u64,
    /// Uplift measurements closed, by playbook (enum name).
    pub uplift: BTreeMap<&'static str, UpliftCounts>,
    pub refits: u64,
    /// Refits that learned the risk's coefficients.
    pub learned: u64,
    /// Why the last refit did not learn them, if it did not.
    pub learning_error: Option<String>,
    pub as_of: Option<String>,
    pub model: Option<FitRecord>,
    pub model_error: Option<String>,
}

/// The replay loop's state: one [`Processor`], the refit schedule and what
/// the effects decided. `replay` runs it once over everything; `backtest`
/// runs it over the events before its cutoff, scores, then continues it
/// over the horizon: one fold.
pub struct Feed {
    proc: Processor,
    pub summary: ReplaySummary,
    pub outreach: Vec<OutreachRequested>,
    effects: Vec<Effect>,
    refit_every: i64,
    next_refit: Option<Timestamp>,
    outcomes: Outcomes,
}

impl Feed {
    pub fn new(cfg: CoreConfig) -> Self {
        let cfg = Arc::new(cfg);
        let refit_every = cfg.model.refit_every.as_secs();
        Feed {
            proc: Processor::new(cfg.clone(), Arc::new(PopulationModel::prior(&cfg.model))),
            summary: ReplaySummary::default(),
            outreach: Vec::new(),
            effects: Vec::new(),
            refit_every,
            next_refit: None,
            outcomes: Outcomes::default(),
        }
    }

    pub fn processor(&self) -> &Processor {
        &self.proc
    }

    /// The processor, the summary and the outreach decided, for the end of
    /// a run.
    pub fn into_parts(self) -> (Processor, ReplaySummary, Vec<OutreachRequested>) {
        (self.proc, self.summary, self.outreach)
    }

    /// Folds one event, with no wall clock (stream time only). The caller
    /// counts the record and calls [`Feed::after_record`] after it.
    pub fn fold(&mut self, ev: &crate::pb::InteractionEvent) -> Result<Processed, Rejection> {
        self.proc.process(ev, None, &mut self.effects)
    }

    /// What follows every record: timers fired up to stream time, the
    /// scheduled refit, the effects collected.
    pub fn after_record(&mut self) {
        if let Some(st) = self.proc.stream_time() {
            self.proc.advance_to(st, &mut self.effects);
            if self.next_refit.is_none_or(|t| st >= t) {
                if self.next_refit.is_some() {
                    refit(&mut self.proc, &mut self.outcomes, st, &mut self.summary);
                }
                self.next_refit = Some((st.div_euclid(self.refit_every) + 1) * self.refit_every);
            }
        }
        collect(&mut self.effects, &mut self.outreach, &mut self.summary);
    }

    /// Folds one event as `replay` folds each record (the generator's
    /// closed loop feeds its own events this way, so a replay of its output
    /// makes the same decisions).
    pub fn fold_one(&mut self, ev: &crate::pb::InteractionEvent) {
        self.summary.records += 1;
        let _ = self.fold(ev);
        self.after_record();
    }

    /// Fires the silence timers due at `t` and collects what they decide.
    pub fn advance_to(&mut self, t: Timestamp) {
        self.proc.advance_to(t, &mut self.effects);
        collect(&mut self.effects, &mut self.outreach, &mut self.summary);
    }

    /// Scoring time reached: timers fired up to `t`, and the model refitted
    /// at `t` (kept as it was if the refit is refused, with the reason).
    pub fn settle_at(&mut self, t: Timestamp) {
        self.advance_to(t);
        self.summary.as_of = Some(rfc3339(t));
        match self.proc.refit(t) {
            Ok(m) => {
                self.summary.model = m.fit.clone();
                self.summary.model_error = None;
                self.proc.set_model(Arc::new(m));
            }
            Err(e) => self.summary.model_error = Some(e.to_string()),
        }
        self.summary.customers = self.proc.len() as u64;
    }
}

/// A scheduled refit: the same pass and fit as the service's
/// ([`Processor::refit_learning`], [`crate::score::outcomes::refit`]).
fn refit(
    proc: &mut Processor,
    outcomes: &mut Outcomes,
    at: Timestamp,
    summary: &mut ReplaySummary,
) {
    if let Ok(r) = proc.refit_learning(outcomes, at) {
        summary.refits += 1;
        match r.learning {
            Ok(()) => {
                summary.learned += 1;
                summary.learning_error = None;
            }
            Err(e) => summary.learning_error = Some(e.to_string()),
        }
        proc.set_model(Arc::new(r.model));
    }
}

fn collect(
    effects: &mut Vec<Effect>,
    outreach: &mut Vec<OutreachRequested>,
    summary: &mut ReplaySummary,
) {
    for e in effects.drain(..) {
        match e {
            Effect::Outreach(o) => {
                summary.held_out += u64::from(o.held_out);
                outreach.push(*o)
            }
            Effect::Measured(m) => summary
                .uplift
                .entry(m.playbook.as_str_name())
                .or_default()
                .add(&m),
            Effect::Suppressed { reason, .. } => {
                *summary
                    .suppressed_by_reason
                    .entry(reason.code())
                    .or_default() += 1
            }
            Effect::Outcome { .. } => {}
        }
    }
}
