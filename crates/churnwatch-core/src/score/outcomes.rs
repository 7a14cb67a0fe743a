//! The labels the stream itself provides, and the refit that learns from
//! them.
//!
//! At each scheduled refit (stream time `t`), a deterministic share of the
//! customers is written down as they stand: the inputs of their risk at `t`
//! (activity summary and signal strengths). One horizon later, at the first
//! refit at or after `t + score.horizon`, each of them is labelled by what
//! they did since: churned if they had no activity (per
//! `fold.activity_kinds`) in the horizon, or, for a subscriber, if the
//! subscription was cancelled or came up for renewal in the horizon and was
//! not renewed. The labelled customers of the last horizon are the training
//! set of the risk's coefficients ([`super::learn`]).
//!
//! Memory stays bounded: the customers are split into `phases` = horizon /
//! `model.refit_every` groups by a hash of their id, and a refit writes down
//! only the group whose turn it is (and within it the `score.learning.sample`
//! share). So each sampled customer is waiting in at most one snapshot, and
//! labelled in at most one batch of the window: about 2 x sample rows per
//! customer, 40-48 bytes each. Deterministic: the share and the groups are
//! chosen by hash, visits follow slot order, and the same events give the
//! same snapshots. A restored instance starts with no snapshots (they are not
//! in the changelog); it keeps the learned coefficients it restored with the
//! model, and learns again one horizon after the restore.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use super::learn::{self, LearnError, LearnedRisk, K};
use crate::{
    config::{CoreConfig, LearningMode},
    model::Spend,
    pb::Playbook,
    population::{PopulationModel, RefitError},
    signals::Context,
    state::{Activity, CustomerState, RecentEvents},
    time::{day_of, Day, Timestamp},
    uplift::UpliftCounts,
};

/// A customer's activity summary as (first day, last day, repeat days).
type Days = Option<(Day, Day, u32)>;

fn days_of(a: Option<&Activity>) -> Days {
    a.map(|a| (a.first_day, a.last_day, a.repeat_days))
}

/// A customer written down at a refit, waiting for their label.
#[derive(Clone, Debug, PartialEq)]
struct Pending {
    hash: u64,
    days: Days,
    /// overdue, rate_drop, satisfaction_drop, friction, escalation, renewal.
    signals: [f32; 6],
    /// (renews_at, cancelled) of a subscription, if any.
    subscription: Option<(Timestamp, bool)>,
}

/// A labelled customer: the inputs of their risk one horizon ago, and whether
/// they churned in that horizon.
#[derive(Clone, Debug, PartialEq)]
pub struct Labelled {
    /// The scoring day (the refit's).
    day: Day,
    days: Days,
    signals: [f32; 6],
    pub churned: bool,
}

#[derive(Debug)]
struct Snapshot {
    at: Timestamp,
    rows: Vec<Pending>,
}

/// The waiting snapshots and the labelled window (one per processor in
/// `replay`, one per consumer loop in the service).
#[derive(Debug, Default)]
pub struct Outcomes {
    pending: VecDeque<Snapshot>,
    labelled: VecDeque<(Timestamp, Arc<Vec<Labelled>>)>,
}

/// One refit's pass over the customers: labels the due snapshot and writes
/// down this refit's group.
#[derive(Debug)]
pub struct Gather {
    at: Timestamp,
    horizon: i64,
    active: bool,
    /// Due rows, sorted by hash.
    due: Vec<(Timestamp, Pending)>,
    phases: u64,
    phase: u64,
    sample_below: u64,
    taken: Vec<Pending>,
    labelled: Vec<Labelled>,
    /// Every visited customer's spend, for the spend model (learning or not).
    spend: Vec<Spend>,
    /// What expected-saves targeting needs (only under it).
    saves: Option<Box<SavesGather>>,
}

/// The measured uplift's counts and the customers' values, gathered for
/// `outreach.targeting = "expected_saves"`.
#[derive(Clone, Debug, Default)]
pub struct SavesGather {
    /// Closed trials per playbook and arm, summed over the customers.
    pub counts: BTreeMap<Playbook, UpliftCounts>,
    /// (activity, purchases, amount) of every customer with activity.
    pub values: Vec<(Activity, u32, f64)>,
}

impl SavesGather {
    /// Adds one customer's closed trials and value.
    pub fn add(&mut self, s: &CustomerState) {
        for (p, c) in s.outreach.iter().flat_map(|h| &h.measured) {
            self.counts.entry(*p).or_default().merge(c);
        }
        if let Some(a) = s.activity {
            self.values.push((a, s.value.purchases, s.value.amount));
        }
    }
}

/// The training set of one refit: the labelled batches of the last horizon.
#[derive(Clone, Debug, Default)]
pub struct TrainingSet {
    batches: Vec<Arc<Vec<Labelled>>>,
    /// The customers' spend as of the refit (the spend model's data).
    pub spend: Vec<Spend>,
    /// Expected-saves targeting's data, when it is configured.
    pub saves: Option<Box<SavesGather>>,
}

impl TrainingSet {
    pub fn len(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Feature rows with the base computed by `model`, and the outcomes.
    pub fn rows(&self, model: &PopulationModel, cfg: &CoreConfig) -> (Vec<[f64; K]>, Vec<bool>) {
        let n = self.len();
        let (mut rows, mut y) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let limit = crate::signals::p_alive::LOG_ODDS_LIMIT;
        for l in self.batches.iter().flat_map(|b| b.iter()) {
            let a = l.days.map(|(first_day, last_day, repeat_days)| Activity {
                first_day,
                last_day,
                repeat_days,
                recent: 0,
            });
            let (_, lo) = model.no_activity(a.as_ref(), l.day, cfg.score.horizon);
            let lo = if lo.is_nan() {
                0.0
            } else {
                lo.clamp(-limit, limit)
            };
            let s = l.signals.map(f64::from);
            rows.push([1.0, lo, s[0], s[1], s[2], s[3], s[4], s[5]]);
            y.push(l.churned);
        }
        (rows, y)
    }
}

impl Outcomes {
    /// Starts a refit's pass at stream time `at`: takes out the snapshots due
    /// (written at least one horizon ago) to be labelled.
    pub fn begin(&mut self, at: Timestamp, cfg: &CoreConfig) -> Gather {
        let horizon = cfg.score.horizon.as_secs();
        let every = cfg.model.refit_every.as_secs().max(1);
        let active = cfg.score.learning.mode == LearningMode::Learned;
        let mut due = Vec::new();
        while self.pending.front().is_some_and(|s| s.at + horizon <= at) {
            if let Some(s) = self.pending.pop_front() {
                due.extend(s.rows.into_iter().map(|p| (s.at, p)));
            }
        }
        if !active {
            self.pending.clear();
            self.labelled.clear();
            due.clear();
        }
        due.sort_by_key(|(_, p)| p.hash);
        let phases = (horizon.max(1) as u64).div_ceil(every as u64).max(1);
        Gather {
            at,
            horizon,
            active,
            due,
            phases,
            phase: at.div_euclid(every) as u64 % phases,
            sample_below: (cfg.score.learning.sample.clamp(0.0, 1.0) * 4_294_967_296.0) as u64,
            taken: Vec::new(),
            saves: cfg.outreach.targets_saves().then(Box::default),
            labelled: Vec::new(),
            spend: Vec::new(),
        }
    }

    /// Ends the pass: keeps this refit's snapshot and labelled batch, drops
    /// batches older than one horizon, and returns the training set.
    pub fn finish(&mut self, g: Gather) -> TrainingSet {
        if !g.active {
            return TrainingSet {
                batches: Vec::new(),
                spend: g.spend,
                saves: g.saves,
            };
        }
        let mut rows = g.taken;
        rows.sort_by_key(|p| p.hash);
        self.pending.push_back(Snapshot { at: g.at, rows });
        self.labelled.push_back((g.at, Arc::new(g.labelled)));
        while self
            .labelled
            .front()
            .is_some_and(|(t, _)| *t + g.horizon <= g.at)
        {
            self.labelled.pop_front();
        }
        TrainingSet {
            batches: self.labelled.iter().map(|(_, b)| b.clone()).collect(),
            spend: g.spend,
            saves: g.saves,
        }
    }

    /// Customers waiting for a label.
    pub fn waiting(&self) -> usize {
        self.pending.iter().map(|s| s.rows.len()).sum()
    }
}

impl Gather {
    /// Visits one customer: labels them if they were written down one
    /// horizon ago, and writes them down if this refit's group holds them.
    pub fn visit(&mut self, id: &str, s: &CustomerState, ctx: &Context<'_>) {
        if let Some(sp) = Spend::of(s.value.purchases, s.value.amount) {
            self.spend.push(sp);
        }
        if let Some(g) = &mut self.saves {
            g.add(s);
        }
        if !self.active {
            return;
        }
        let hash = RecentEvents::hash(id);
        if let Ok(i) = self.due.binary_search_by_key(&hash, |(_, p)| p.hash) {
            let (t0, p) = &self.due[i];
            if let Some(churned) = churned(p, *t0, self.horizon, s) {
                self.labelled.push(Labelled {
                    day: day_of(*t0),
                    days: p.days,
                    signals: p.signals,
                    churned,
                });
            }
        }
        if hash % self.phases == self.phase && (hash >> 32) < self.sample_below {
            let st = super::strengths(s, self.at, ctx);
            self.taken.push(Pending {
                hash,
                days: days_of(s.activity.as_ref()),
                signals: [
                    st.signals.overdue,
                    st.signals.rate_drop,
                    st.signals.satisfaction_drop,
                    st.signals.friction,
                    st.signals.escalation,
                    st.signals.renewal,
                ]
                .map(|v| v as f32),
                subscription: s.subscription.as_ref().map(|x| (x.renews_at, x.cancelled)),
            });
        }
    }
}

/// Any active day in `(lo, hi]`? `None` when the activity summary cannot
/// tell (the days in question fell out of the 64-day bitmap).
fn active_between(a: &Activity, lo: Day, hi: Day) -> Option<bool> {
    if a.last_day <= lo {
        return Some(false);
    }
    if a.last_day <= hi {
        return Some(true);
    }
    if a.first_day > lo && a.first_day <= hi {
        return Some(true);
    }
    // Bits: offset i = day last_day - i; the days (lo, hi] are offsets
    // last_day - hi ..= last_day - lo - 1.
    let (near, far) = (a.last_day - hi, a.last_day - lo - 1);
    if far >= Activity::WINDOW {
        return None;
    }
    let width = far - near + 1;
    let mask = if width >= 64 {
        u64::MAX
    } else {
        ((1u64 << width) - 1) << near
    };
    Some(a.recent & mask != 0)
}

/// The outcome of a customer written down at `t0`, seen in state `s` now.
fn churned(p: &Pending, t0: Timestamp, horizon: i64, s: &CustomerState) -> Option<bool> {
    let (lo, hi) = (day_of(t0), day_of(t0 + horizon));
    let active = match &s.activity {
        Some(a) => active_between(a, lo, hi)?,
        None => false,
    };
    let lapsed = match (p.subscription, &s.subscription) {
        (Some((renews_at, false)), Some(now)) => {
            let cancelled = now.cancelled && now.updated_at > t0 && now.updated_at <= t0 + horizon;
            let not_renewed =
                renews_at > t0 && renews_at <= t0 + horizon && now.renews_at <= renews_at;
            cancelled || not_renewed
        }
        _ => false,
    };
    Some(!active || lapsed)
}

/// What a refit produced: the population model (with the coefficients
/// learned, if learning succeeded) and why learning did not, if it did not.
#[derive(Debug)]
pub struct Refitted {
    pub model: PopulationModel,
    pub learning: Result<(), LearnError>,
}

/// The refit, one code path for `run`, `replay` and `backtest`: the
/// population model on the customers' activity as of `at` and the spend
/// model on their purchases (kept as it was if that fit fails), then the risk's
/// coefficients on the training set, with the base from the new model.
/// Fails as the population refit does (the current model stays).
pub fn refit(
    current: &PopulationModel,
    cfg: &CoreConfig,
    activities: &[Activity],
    training: &TrainingSet,
    at: Timestamp,
) -> Result<Refitted, RefitError> {
    let mut model = current
        .refit(&cfg.model, activities.iter(), at)?
        .with_spend(&training.spend, at);
    if let Some(g) = &training.saves {
        model = model.with_uplift(&g.counts, &g.values, at, cfg.score.horizon);
    }
    let learning = if cfg.score.learning.mode == LearningMode::Learned {
        learn_into(&mut model, cfg, training, at)
    } else {
        Err(LearnError::Fixed)
    };
    Ok(Refitted { model, learning })
}

fn learn_into(
    model: &mut PopulationModel,
    cfg: &CoreConfig,
    training: &TrainingSet,
    at: Timestamp,
) -> Result<(), LearnError> {
    let l = &cfg.score.learning;
    let (rows, y) = training.rows(model, cfg);
    let prior = learn::to_vector(cfg.score.bias, &cfg.score.weights);
    let f = learn::fit(&rows, &y, &prior, l.l2, l.min_labelled)?;
    let (bias, weights) = learn::from_vector(&f.coefficients);
    model.risk = Some(LearnedRisk {
        bias,
        weights,
        labelled: rows.len() as u64,
        churned: f.churned,
        auc: f.auc,
        brier: f.brier,
        iterations: f.iterations,
        fitted_at: at,
    });
    Ok(())
}

#[cfg(test)]
mod tests;
