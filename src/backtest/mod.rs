//! `churnwatch backtest`: a time split. Everything before the cutoff is
//! folded exactly as `replay` folds it (the same [`Feed`]); every customer
//! is scored at the cutoff; then the same fold continues over the horizon,
//! which tells what each customer did and what outreach the policy sent.
//! The figures ([`evaluate`], [`measure`]) and the HTML view ([`html`]) are
//! pure; this file is the edge that reads files.

pub mod evaluate;
pub mod html;
pub mod measure;
pub mod saves;
pub mod text;

use std::{
    collections::{BTreeMap, HashMap},
    io::BufRead,
    path::PathBuf,
};

use crate::{
    codec::Format,
    config::CoreConfig,
    fold::Folded,
    kind::EventKind,
    processor::Processed,
    replay::{effective_config, pass, Feed, Pick, ReplayError, ReplaySummary},
    score::{self, Level},
    signals::Context,
    time::{day_of, rfc3339, Day, Span, Timestamp, SECS_PER_DAY},
    validate::validate,
};
pub use evaluate::{Report, Row, Truth};

#[derive(Debug, Clone)]
pub struct BacktestOptions {
    pub inputs: Vec<PathBuf>,
    pub format: Format,
    pub cutoff: Timestamp,
    pub horizon: Option<Span>,
    pub truth: Option<PathBuf>,
    pub progress: bool,
}

/// Why a backtest cannot be run on these inputs (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("no valid events in the input files: there is nothing to backtest")]
    Empty,
    #[error("the cutoff {cutoff} is at or before the first event ({first}): nothing is known before it; choose a cutoff inside the data")]
    CutoffBeforeFirst { cutoff: String, first: String },
    #[error("the cutoff {cutoff} is after the last event ({last}): nothing happened after it; choose a cutoff inside the data")]
    CutoffAfterLast { cutoff: String, last: String },
    #[error("no activity event ({kinds}) at or after the cutoff {cutoff}: what customers did after it cannot be read")]
    NoEventAfter { cutoff: String, kinds: String },
    #[error("the horizon is {horizon} but the data after the cutoff {cutoff} covers only {covered_days:.2} days (to {last}): choose an earlier cutoff or a horizon of at most {whole}d")]
    HorizonTooLong {
        horizon: Span,
        cutoff: String,
        last: String,
        covered_days: f64,
        whole: i64,
    },
    #[error("no customer had any activity before the cutoff {cutoff}: nobody to score")]
    NobodyToScore { cutoff: String },
    #[error("{}:{line}: {problem}", path.display())]
    Truth {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// What was read, beside the report.
pub struct Backtest {
    pub report: Report,
    /// The fold's counts over both parts (before the cutoff and the horizon).
    pub summary: ReplaySummary,
    pub records_after_horizon: u64,
}

/// The backtest's horizon: `--horizon`, else `score.horizon` (the risk's).
pub fn horizon_of(cfg: &CoreConfig, opts: &BacktestOptions) -> Span {
    opts.horizon.unwrap_or(cfg.score.horizon)
}

pub fn backtest(cfg: CoreConfig, opts: &BacktestOptions) -> Result<Backtest, BacktestError> {
    let cfg = effective_config(cfg, None, opts.horizon)?;
    let horizon = horizon_of(&cfg, opts);
    let cutoff = opts.cutoff;
    let end = cutoff + horizon.as_secs();
    let fold = cfg.fold.clone();
    let trigger = cfg.outreach.trigger_level;
    let activity = fold.activity_kinds;
    let mut feed = Feed::new(cfg);

    // Part one: the events before the cutoff, folded as replay folds them.
    let (mut first, mut last): (Option<Timestamp>, Option<Timestamp>) = (None, None);
    let mut activity_after = 0u64;
    let mut after_horizon = 0u64;
    pass(
        &mut feed,
        &opts.inputs,
        opts.format,
        opts.progress,
        true,
        |ev| {
            let Ok(v) = validate(ev, None, &fold) else {
                return Pick::Fold; // rejected and counted by the fold
            };
            first = Some(first.map_or(v.at, |f| f.min(v.at)));
            last = Some(last.map_or(v.at, |l| l.max(v.at)));
            if v.at < cutoff {
                return Pick::Fold;
            }
            if v.at >= end {
                after_horizon += 1;
            }
            if activity.contains(EventKind::of(v.kind)) {
                activity_after += 1;
            }
            Pick::Skip
        },
        |_, _| {},
    )?;
    let (Some(first), Some(last)) = (first, last) else {
        return Err(BacktestError::Empty);
    };
    if cutoff <= first {
        return Err(BacktestError::CutoffBeforeFirst {
            cutoff: rfc3339(cutoff),
            first: rfc3339(first),
        });
    }
    if cutoff > last {
        return Err(BacktestError::CutoffAfterLast {
            cutoff: rfc3339(cutoff),
            last: rfc3339(last),
        });
    }
    if activity_after == 0 {
        return Err(BacktestError::NoEventAfter {
            cutoff: rfc3339(cutoff),
            kinds: activity
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if last < end {
        let covered = (last - cutoff) as f64 / SECS_PER_DAY as f64;
        return Err(BacktestError::HorizonTooLong {
            horizon,
            cutoff: rfc3339(cutoff),
            last: rfc3339(last),
            covered_days: covered,
            whole: covered.floor() as i64,
        });
    }
    let truth = match &opts.truth {
        Some(p) => Some(read_truth(p)?),
        None => None,
    };

    // At the cutoff: timers fired, the model refitted, everyone scored.
    feed.settle_at(cutoff);
    let before = feed.outreach.len();
    let suppressed_before = feed.summary.suppressed_by_reason.clone();
    let mut rows = Vec::new();
    let mut candidates = Vec::new();
    let mut without_activity = 0u64;
    let mut subscriptions: HashMap<String, (Timestamp, bool)> = HashMap::new();
    {
        let proc = feed.processor();
        let model = proc.model();
        let ctx = Context::new(proc.config(), model);
        let now_day = day_of(cutoff);
        for (id, state) in proc.sorted() {
            let Some(a) = &state.activity else {
                without_activity += 1;
                continue;
            };
            let s = score::score(state, cutoff, &ctx);
            // Every term of the log-odds but the bias: `base` (the
            // population model's log-odds of no activity) and the signals.
            let parts = s
                .contributions
                .iter()
                .filter(|c| c.name != "bias")
                .map(|c| (c.name, c.log_odds))
                .collect();
            if let Some(sub) = &state.subscription {
                subscriptions.insert(id.to_owned(), (sub.renews_at, sub.cancelled));
            }
            candidates.push(crate::outreach::targeting::Candidate {
                risk: s.risk,
                playbook: crate::outreach::choose_playbook(
                    &s,
                    state.value.amount,
                    &proc.config().outreach,
                ),
                future_value: model.future_value(
                    Some(a),
                    state.value.purchases,
                    state.value.amount,
                    now_day,
                    ctx.cfg.horizon,
                ),
            });
            rows.push(Row {
                id: id.to_owned(),
                risk: s.risk,
                flagged: Level::of(s.risk, &ctx.cfg.thresholds) >= trigger,
                p_alive: model.p_alive(a, now_day),
                expected: model.expected_activity(a, now_day, horizon).unwrap_or(0.0),
                recency_days: f64::from((now_day - a.last_day).max(0)),
                parts,
                x: a.repeat_days,
                actual: 0,
                churned: false,
                contacted: false,
                truth: None,
            });
        }
    }
    if rows.is_empty() {
        return Err(BacktestError::NobodyToScore {
            cutoff: rfc3339(cutoff),
        });
    }

    // Targeting at the same volume, by the uplift measured before the cutoff.
    let volume = rows.iter().filter(|r| r.flagged).count();
    let min_per_arm = feed.processor().config().outreach.saves_min_per_arm;
    let saves = saves::compare(&candidates, volume, &feed.summary.uplift, min_per_arm);

    // Part two: the same fold continues over the horizon.
    let mut active: HashMap<String, Vec<Day>> = HashMap::new();
    pass(
        &mut feed,
        &opts.inputs,
        opts.format,
        false,
        false,
        |ev| match ev.occurred_at.as_ref().map(|t| t.seconds) {
            Some(t) if t >= cutoff && t < end => Pick::Fold,
            _ => Pick::Skip,
        },
        |ev, p| {
            let applied = matches!(
                p,
                Processed::Folded(Folded::Applied) | Processed::Folded(Folded::Outcome { .. })
            );
            let is_activity = ev
                .kind
                .as_ref()
                .is_some_and(|k| activity.contains(EventKind::of(k)));
            if let (true, true, Some(t)) = (applied, is_activity, ev.occurred_at.as_ref()) {
                let days = active.entry(ev.customer_id.clone()).or_default();
                let d = day_of(t.seconds);
                if !days.contains(&d) {
                    days.push(d);
                }
            }
        },
    )?;
    feed.advance_to(end - 1);

    let proc = feed.processor();
    for r in &mut rows {
        r.actual = active.get(&r.id).map_or(0, |d| d.len() as u32);
        let sub_churn = subscriptions.get(&r.id).is_some_and(|(renews, cancelled)| {
            let now = proc.get(&r.id).and_then(|s| s.subscription.as_deref());
            let cancelled_now = now.is_some_and(|s| s.cancelled) && !cancelled;
            let due = *renews >= cutoff && *renews < end && !cancelled;
            let renewed = now.is_some_and(|s| s.renews_at > *renews && !s.cancelled);
            cancelled_now || (due && !renewed)
        });
        r.churned = r.actual == 0 || sub_churn;
    }
    let mut days_after = Vec::new();
    // Held-out decisions are not contact: the outreach figures leave them out.
    for o in feed.outreach[before..].iter().filter(|o| !o.held_out) {
        let at = o.decided_at.as_ref().map_or(cutoff, |t| t.seconds);
        if at < end {
            days_after.push((at - cutoff) as f64 / SECS_PER_DAY as f64);
            if let Ok(r) = rows.binary_search_by(|r| r.id.as_str().cmp(&o.customer_id)) {
                rows[r].contacted = true;
            }
        }
    }
    if let Some(truth) = truth {
        for r in &mut rows {
            r.truth = truth.get(&r.id).cloned();
        }
    }
    let mut suppressed: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (k, v) in &feed.summary.suppressed_by_reason {
        let n = v - suppressed_before.get(k).copied().unwrap_or(0);
        if n > 0 {
            suppressed.insert(k, n);
        }
    }
    let mut report = evaluate::evaluate(
        &rows,
        evaluate::Window {
            cutoff: rfc3339(cutoff),
            horizon_days: horizon.as_days_f64(),
            cutoff_at: cutoff,
            without_activity,
        },
        evaluate::Sent {
            days_after_cutoff: days_after,
            suppressed_by_reason: suppressed,
        },
    );
    report.uplift = evaluate::uplift_rows(&feed.summary.uplift);
    report.targeting = Some(saves);
    let mut summary = std::mem::take(&mut feed.summary);
    summary.customers = feed.processor().len() as u64;
    Ok(Backtest {
        report,
        summary,
        records_after_horizon: after_horizon,
    })
}

/// Reads `generate --truth-out`: one JSON object per line.
pub fn read_truth(path: &std::path::Path) -> Result<HashMap<String, Truth>, BacktestError> {
    let err = |line: usize, problem: String| BacktestError::Truth {
        path: path.to_owned(),
        line,
        problem,
    };
    let file = std::fs::File::open(path).map_err(|e| err(0, e.to_string()))?;
    let mut out = HashMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| err(i + 1, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let t: Truth = serde_json::from_str(&line).map_err(|e| err(i + 1, e.to_string()))?;
        out.insert(t.customer_id.clone(), t);
    }
    Ok(out)
}
