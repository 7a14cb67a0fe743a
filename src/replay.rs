//! `churnwatch replay`: the offline face of event sourcing. Reads events from
//! files, folds, scores and decides exactly as the service does, and writes
//! the states, scores, the fitted model and the outreach decided.

use std::{
    fs::File,
    io::{self, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use indicatif::{ProgressBar, ProgressStyle};
use prost::Message;
use serde::Serialize;

pub use crate::feed::{Feed, ReplaySummary};
use crate::{
    codec::{self, Format, Records},
    config::{CoreConfig, TimeUnit},
    fold::Folded,
    pb::InteractionEvent,
    processor::{Processed, Processor},
    score::{self, learn::LearnedRisk},
    signals::Context,
    time::{day_of, rfc3339, Span, Timestamp},
};

/// Invalid records printed one by one before only counting.
const REPORT_LIMIT: u64 = 1000;

#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub inputs: Vec<PathBuf>,
    pub format: Format,
    pub strict: bool,
    /// Score as of this time (default: the last event's time).
    pub as_of: Option<Timestamp>,
    pub time_unit: Option<TimeUnit>,
    pub horizon: Option<Span>,
    pub state_out: Option<PathBuf>,
    pub state_format: Option<Format>,
    pub scores_out: Option<PathBuf>,
    pub model_out: Option<PathBuf>,
    pub outreach_out: Option<PathBuf>,
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ReplayError + '_ {
    move |source| ReplayError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Applies the command line's overrides to the configuration and checks it.
pub fn effective_config(
    mut cfg: CoreConfig,
    time_unit: Option<TimeUnit>,
    horizon: Option<Span>,
) -> Result<CoreConfig, ReplayError> {
    if let Some(u) = time_unit {
        // alpha is a time scale: convert an explicit prior to the new unit.
        if let Some(p) = cfg.model.prior.as_mut() {
            p.alpha *= cfg.model.time_unit.days() / u.days();
        }
        cfg.model.time_unit = u;
    }
    if let Some(h) = horizon {
        // The risk's horizon, and the expected activity's with it.
        cfg.score.horizon = h;
        cfg.model.horizon = h;
    }
    let problems = cfg.problems();
    if !problems.is_empty() {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(ReplayError::Config(text.join("; ")));
    }
    Ok(cfg)
}

/// Which records a pass over the inputs folds.
pub enum Pick {
    /// Fold it.
    Fold,
    /// Leave it out (another pass folds it, or it lies outside the window).
    Skip,
}

/// Reads every record of `inputs` in order into `feed`; `pick` sees each
/// decoded event first and says whether this pass folds it; `folded` sees
/// each event folded and what became of it. Records that do not decode are
/// counted and reported only when `report_undecodable` (so that a second
/// pass over the same files does not count them twice).
pub fn pass(
    feed: &mut Feed,
    inputs: &[PathBuf],
    format: Format,
    progress: bool,
    report_undecodable: bool,
    mut pick: impl FnMut(&InteractionEvent) -> Pick,
    mut folded: impl FnMut(&InteractionEvent, Processed),
) -> Result<(), ReplayError> {
    let total: u64 = inputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = if progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} replay [{bar:40}] {bytes}/{total_bytes} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for path in inputs {
        let file = File::open(path).map_err(io_err(path))?;
        if file.metadata().map_err(io_err(path))?.is_dir() {
            return Err(io_err(path)(io::Error::other(
                "is a directory, not a file of events",
            )));
        }
        let reader = BufReader::with_capacity(1 << 20, bar.wrap_read(file));
        for rec in Records::new(reader, format) {
            let rec = match rec {
                Ok(r) => r,
                // A read the system refused is no framing problem: stop.
                Err(e)
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                    ) =>
                {
                    return Err(io_err(path)(e));
                }
                Err(e) => {
                    if report_undecodable {
                        let summary = &mut feed.summary;
                        summary.invalid += 1;
                        *summary
                            .invalid_by_reason
                            .entry(crate::codec::TRUNCATED_FILE)
                            .or_default() += 1;
                        bar.suspend(|| {
                            eprintln!(
                                "{}: after record {}: {}: {e}",
                                path.display(),
                                summary.records,
                                crate::codec::TRUNCATED_FILE
                            )
                        });
                    }
                    break;
                }
            };
            let decoded = match rec.oversize {
                Some(len) => Err(codec::DecodeError::TooLarge(
                    usize::try_from(len).unwrap_or(usize::MAX),
                )),
                None => codec::decode(&rec.bytes, format),
            };
            let outcome = match decoded {
                Ok(ev) => match pick(&ev) {
                    Pick::Skip => continue,
                    Pick::Fold => {
                        feed.summary.records += 1;
                        let r = feed.fold(&ev);
                        if let Ok(p) = r {
                            folded(&ev, p);
                        }
                        r.map_err(|r| (r.reason(), r.to_string()))
                    }
                },
                Err(e) => {
                    if !report_undecodable {
                        continue;
                    }
                    feed.summary.records += 1;
                    Err((e.reason(), e.to_string()))
                }
            };
            let summary = &mut feed.summary;
            match outcome {
                Ok(Processed::Folded(Folded::Duplicate)) => summary.duplicates += 1,
                Ok(Processed::Folded(Folded::Late)) | Ok(Processed::Late) => summary.late += 1,
                Ok(Processed::Forgotten) => summary.forgotten += 1,
                Ok(Processed::Folded(_)) => summary.folded += 1,
                Err((reason, detail)) => {
                    summary.invalid += 1;
                    *summary.invalid_by_reason.entry(reason).or_default() += 1;
                    if summary.invalid <= REPORT_LIMIT {
                        bar.suspend(|| {
                            eprintln!("{}:{}: {reason}: {detail}", path.display(), rec.position)
                        });
                    }
                }
            }
            feed.after_record();
        }
    }
    bar.finish_and_clear();
    Ok(())
}

pub fn replay(cfg: CoreConfig, opts: &ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    let cfg = effective_config(cfg, opts.time_unit, opts.horizon)?;
    let mut feed = Feed::new(cfg);
    pass(
        &mut feed,
        &opts.inputs,
        opts.format,
        opts.progress,
        true,
        |_| Pick::Fold,
        |_, _| {},
    )?;
    if feed.summary.invalid > REPORT_LIMIT {
        eprintln!(
            "... {} more invalid records not shown",
            feed.summary.invalid - REPORT_LIMIT
        );
    }
    let as_of = opts.as_of.or(feed.processor().max_event_time());
    if let Some(t) = as_of {
        feed.settle_at(t);
    }
    let (proc, mut summary, mut outreach) = feed.into_parts();
    summary.customers = proc.len() as u64;
    outreach.sort_by_key(|o| o.decided_at.as_ref().map_or(0, |t| t.seconds));
    summary.outreach = outreach.len() as u64;

    if let Some(path) = &opts.state_out {
        let format = opts.state_format.unwrap_or_else(|| format_of(path));
        write_states(&proc, path, format)?;
    }
    if let (Some(path), Some(t)) = (&opts.scores_out, as_of) {
        write_scores(&proc, t, path)?;
    }
    if let Some(path) = &opts.model_out {
        write_model(&proc, &summary, path)?;
    }
    if let Some(path) = &opts.outreach_out {
        let mut w = BufWriter::new(File::create(path).map_err(io_err(path))?);
        for o in &outreach {
            let line = serde_json::to_string(o).map_err(|e| ReplayError::Io {
                path: path.clone(),
                source: e.into(),
            })?;
            writeln!(w, "{line}").map_err(io_err(path))?;
        }
        w.flush().map_err(io_err(path))?;
    }
    Ok(summary)
}

/// `.jsonl` / `.json` files are JSON Lines, anything else length-delimited protobuf.
pub fn format_of(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") | Some("json") | Some("ndjson") => Format::Json,
        _ => Format::Protobuf,
    }
}

fn write_states(proc: &Processor, path: &Path, format: Format) -> Result<(), ReplayError> {
    let mut w = BufWriter::new(File::create(path).map_err(io_err(path))?);
    for (id, state) in proc.sorted() {
        let snap = state.to_snapshot(id);
        match format {
            Format::Json => {
                let line = serde_json::to_string(&snap).map_err(|e| ReplayError::Io {
                    path: path.to_owned(),
                    source: e.into(),
                })?;
                writeln!(w, "{line}").map_err(io_err(path))?;
            }
            Format::Protobuf => {
                let mut buf = Vec::with_capacity(snap.encoded_len() + 4);
                let _ = snap.encode_length_delimited(&mut buf);
                w.write_all(&buf).map_err(io_err(path))?;
            }
        }
    }
    w.flush().map_err(io_err(path))
}

fn write_scores(proc: &Processor, now: Timestamp, path: &Path) -> Result<(), ReplayError> {
    let cfg = proc.config();
    let model = proc.model();
    let ctx = Context::new(cfg, model);
    let file = File::create(path).map_err(io_err(path))?;
    let mut w = csv::Writer::from_writer(BufWriter::new(file));
    let csv_err = |e: csv::Error| ReplayError::Io {
        path: path.to_owned(),
        source: io::Error::other(e),
    };
    w.write_record([
        "customer_id",
        "x",
        "t_x",
        "T",
        "p_alive",
        "expected_activity",
        "risk",
        "level",
        "top_reason",
        "top_evidence",
    ])
    .map_err(csv_err)?;
    for (id, state) in proc.sorted() {
        let s = score::score(state, now, &ctx);
        // Customers with no activity yet (only consent or subscription
        // events) have no buy-till-you-die inputs: those cells stay empty.
        let (x, t_x, t, p_alive, expected) = match &state.activity {
            Some(a) => {
                let tr = model.triple(a, day_of(now));
                let expected = model
                    .expected_activity(a, day_of(now), cfg.model.horizon)
                    .map_or(String::new(), |e| format!("{e:.6}"));
                (
                    format!("{}", tr.x),
                    format!("{:.4}", tr.t_x),
                    format!("{:.4}", tr.t),
                    format!("{:.6}", model.p_alive(a, day_of(now))),
                    expected,
                )
            }
            None => Default::default(),
        };
        let top = s.reasons.first();
        w.write_record([
            id.to_string(),
            x,
            t_x,
            t,
            p_alive,
            expected,
            format!("{:.6}", s.risk),
            s.level.as_str().to_owned(),
            top.map_or("", |r| r.code.as_str()).to_owned(),
            top.map_or(String::new(), |r| r.evidence.clone()),
        ])
        .map_err(csv_err)?;
    }
    w.flush().map_err(io_err(path))
}

#[derive(Serialize)]
struct ModelFile<'a> {
    family: crate::model::Family,
    params: crate::model::Params,
    time_unit: TimeUnit,
    source: &'static str,
    log_likelihood: Option<f64>,
    customers: u64,
    distinct_triples: Option<u64>,
    iterations: Option<u64>,
    converged: Option<bool>,
    fitted_at: Option<String>,
    error: Option<&'a str>,
    version: String,
    /// The risk's horizon and coefficients in use.
    risk: RiskFile<'a>,
    /// The Gamma-Gamma spend model (absent until a spend fit succeeded).
    #[serde(skip_serializing_if = "Option::is_none")]
    spend: Option<&'a crate::population::SpendRecord>,
    /// The uplift record expected-saves targeting decides with (absent
    /// under risk targeting).
    #[serde(skip_serializing_if = "Option::is_none")]
    uplift: Option<&'a crate::population::UpliftRecord>,
}

#[derive(Serialize)]
struct RiskFile<'a> {
    horizon: Span,
    /// `learned`, `prior` or `fixed`.
    coefficients: &'static str,
    bias: f64,
    weights: &'a crate::config::Weights,
    learned: Option<&'a LearnedRisk>,
    learning_error: Option<&'a str>,
}

fn write_model(proc: &Processor, summary: &ReplaySummary, path: &Path) -> Result<(), ReplayError> {
    let m = proc.model();
    let fit = m.fit.as_ref();
    let out = ModelFile {
        family: m.family,
        params: m.params,
        time_unit: m.time_unit,
        source: if fit.is_some() { "fit" } else { "prior" },
        log_likelihood: fit.map(|f| f.log_likelihood),
        customers: fit.map_or(proc.len() as u64, |f| f.customers),
        distinct_triples: fit.map(|f| f.distinct_triples),
        iterations: fit.map(|f| f.iterations),
        converged: fit.map(|f| f.converged),
        fitted_at: fit.map(|f| rfc3339(f.fitted_at)),
        error: summary.model_error.as_deref(),
        version: m.version(),
        risk: {
            let cfg = proc.config();
            let (c, source) = score::coefficients(&Context::new(cfg, m));
            let learned = m.risk.as_ref().filter(|_| source == "learned");
            RiskFile {
                horizon: cfg.score.horizon,
                coefficients: source,
                bias: c[0],
                weights: learned.map_or(&cfg.score.weights, |r| &r.weights),
                learned,
                learning_error: summary.learning_error.as_deref(),
            }
        },
        spend: m.spend.as_ref(),
        uplift: m.uplift.as_ref(),
    };
    let text = serde_json::to_string_pretty(&out).map_err(|e| ReplayError::Io {
        path: path.to_owned(),
        source: e.into(),
    })?;
    std::fs::write(path, text + "\n").map_err(io_err(path))
}
