//! The command line: `churnwatch demo | replay | backtest | generate | run | check-config | mock-broker`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::{
    codec::Format,
    config::{CoreConfig, TimeUnit},
    demo::{self, DemoOptions},
    replay::{self, ReplayOptions},
    settings::Settings,
    time::{parse_rfc3339, Span},
};

#[derive(Parser, Debug)]
#[command(
    name = "churnwatch",
    version,
    about = "Event-sourced churn detection: fold customer events, score silent churn, emit proactive outreach."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Try it: an in-process Kafka, a synthetic population, the whole
    /// service and a live view of what it decides (see README, "Quick start").
    Demo(DemoArgs),
    /// Fold events from files and write states, scores, the model and outreach.
    Replay(ReplayArgs),
    /// Score everyone at a cutoff and compare with what happened in the
    /// horizon after it: ranking, calibration, outreach, baselines (see
    /// docs/risk.md).
    Backtest(BacktestArgs),
    /// Write a seeded synthetic population's events to a file, stdout or a
    /// Kafka topic.
    Generate(GenerateArgs),
    /// Run the service: consume events from Kafka, keep state in the
    /// changelog, emit outreach (see docs/service.md).
    Run {
        /// TOML configuration file (environment `CHURNWATCH_*` overrides it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file without connecting anywhere, and print
    /// the effective configuration (secrets masked).
    CheckConfig {
        /// TOML configuration file.
        file: PathBuf,
    },
    /// Serve librdkafka's mock cluster on loopback as a throwaway Kafka for
    /// trials (not for real data: each partition keeps only its last 5 MB);
    /// prints the bootstrap address, serves until SIGTERM or Ctrl-C.
    MockBroker(MockBrokerArgs),
}

#[derive(Args, Debug)]
pub struct MockBrokerArgs {
    /// Topic to create up front (repeatable); the mock has no CreateTopics.
    #[arg(long = "topic", value_name = "NAME")]
    pub topics: Vec<String>,
    /// Partitions of each --topic.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=1_000))]
    pub partitions: i32,
    /// Brokers in the cluster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=9))]
    pub brokers: i32,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Input file (repeatable); read in the order given.
    #[arg(long = "input", required = true)]
    pub inputs: Vec<PathBuf>,
    /// jsonl: proto3 JSON, one event per line; protobuf: length-delimited.
    #[arg(long, value_parser = parse_format, default_value = "jsonl")]
    pub format: Format,
    /// TOML configuration (the fold, model, score and outreach sections).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Exit with status 1 if any record was invalid.
    #[arg(long)]
    pub strict: bool,
    /// Score as of this RFC 3339 time (default: the last event's time).
    #[arg(long, value_parser = parse_time)]
    pub as_of: Option<i64>,
    /// Time unit of the buy-till-you-die model (overrides model.time_unit).
    #[arg(long, value_enum)]
    pub time_unit: Option<TimeUnitArg>,
    /// Horizon of the risk, e.g. 30d: risk = P(no activity in it) (overrides score.horizon and model.horizon).
    #[arg(long)]
    pub horizon: Option<Span>,
    /// Write every customer's state (.jsonl: proto3 JSON; else length-delimited protobuf).
    #[arg(long)]
    pub state_out: Option<PathBuf>,
    /// Write one CSV row per customer with x, t_x, T, P(alive), expected activity, risk, level and top reason.
    #[arg(long)]
    pub scores_out: Option<PathBuf>,
    /// Write the fitted population model as JSON.
    #[arg(long)]
    pub model_out: Option<PathBuf>,
    /// Write every outreach decided, proto3 JSON, one per line, in stream-time order.
    #[arg(long)]
    pub outreach_out: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct BacktestArgs {
    /// Input file (repeatable); read in the order given.
    #[arg(long = "input", required = true)]
    pub inputs: Vec<PathBuf>,
    /// jsonl: proto3 JSON, one event per line; protobuf: length-delimited.
    #[arg(long, value_parser = parse_format, default_value = "jsonl")]
    pub format: Format,
    /// Score at this RFC 3339 time; what happened after it is the outcome.
    #[arg(long, value_parser = parse_time)]
    pub cutoff: i64,
    /// How far after the cutoff to look, e.g. 30d (default: the configured horizon).
    #[arg(long)]
    pub horizon: Option<Span>,
    /// TOML configuration (the fold, model, score and outreach sections).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Ground truth from `generate --truth-out`: adds recall of those who really left.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Write the report as JSON.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Write the report as one self-contained HTML file with plots.
    #[arg(long)]
    pub html_out: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Number of customers.
    #[arg(long, default_value_t = 10_000)]
    pub customers: u64,
    /// Random seed: the same seed gives the same events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Simulated start, RFC 3339.
    #[arg(long, value_parser = parse_time, default_value = "2026-01-01T00:00:00Z")]
    pub start: i64,
    /// Simulated span, e.g. 90d.
    #[arg(long, default_value = "90d")]
    pub span: Span,
    /// Share of customers who go silent.
    #[arg(long, default_value_t = 0.2)]
    pub silent_share: f64,
    /// Stop after this many events (0 = until the span ends).
    #[arg(long, default_value_t = 0)]
    pub max_events: u64,
    /// classic: --silent-share go silent at random; experience: leaving
    /// follows each customer's experience (docs/generate.md, "The experience model").
    #[arg(long, value_enum, default_value = "classic")]
    pub model: GenModelArg,
    /// Write each customer's ground truth (left or not, when, cause), one
    /// JSON object per line, for `backtest --truth`.
    #[arg(long, value_name = "FILE", conflicts_with = "bootstrap")]
    pub truth_out: Option<PathBuf>,
    /// Experience model: the population reacts to churnwatch's own outreach
    /// (docs/uplift.md): the effect of each playbook's contact
    /// on the chance of leaving within the horizon, in [-1, 1], e.g.
    /// `check_in=0.2,win_back=0,service_recovery=-0.1` (unnamed: 0).
    /// The generator runs churnwatch's core with `--config` (its holdout
    /// included) on the events it makes; backtest with the same file.
    #[arg(
        long,
        value_name = "EFFECTS",
        requires = "config",
        conflicts_with = "bootstrap"
    )]
    pub treatment: Option<String>,
    /// The core configuration the treatment model runs (with
    /// `fold.lateness = "0s"`, as the backtest of the output must use).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Leave out the first N events: a run with `--max-events M --skip N`
    /// continues one with `--max-events N` (same seed and settings).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub skip: u64,
    /// jsonl or protobuf: the file framing (one JSON line, or
    /// length-delimited binary), or on Kafka the message value.
    #[arg(long, value_parser = parse_format, default_value = "jsonl")]
    pub format: Format,
    /// Output file; `-` for standard output.
    #[arg(long, default_value = "-")]
    pub out: PathBuf,
    /// Write to Kafka instead: the bootstrap servers.
    #[arg(
        long,
        value_name = "HOST:PORT",
        requires = "topic",
        conflicts_with = "out"
    )]
    pub bootstrap: Option<String>,
    /// The topic to write to (created when missing).
    #[arg(long, requires = "bootstrap")]
    pub topic: Option<String>,
    /// Events per second (default: as fast as the broker takes them).
    #[arg(long, value_name = "EVENTS_PER_SEC", value_parser = parse_rate, requires = "bootstrap")]
    pub rate: Option<f64>,
    /// Partitions of the topic, if it is created.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Replication factor of the topic, if it is created.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
    pub replication_factor: i32,
    /// retention.ms of the topic, if it is created (messages carry the time
    /// they were produced, not the event time).
    #[arg(long, default_value = "7d")]
    pub retention: Span,
    /// A librdkafka property, KEY=VALUE (repeatable), e.g.
    /// security.protocol=SASL_SSL; VALUE may be env:VAR or file:PATH.
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of customers in the synthetic population.
    #[arg(long, default_value_t = 2_000)]
    pub customers: u64,
    /// Simulated history, ending at today's midnight (UTC).
    #[arg(long, default_value = "120d")]
    pub span: Span,
    /// Random seed of the population.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of customers who go silent.
    #[arg(long, default_value_t = 0.2)]
    pub silent_share: f64,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=64))]
    pub partitions: i32,
    /// Events per second into the input topic; 0: as fast as possible.
    #[arg(long, value_name = "EVENTS_PER_SEC", default_value_t = 5_000.0)]
    pub rate: f64,
    /// Address of the admin HTTP server (/metrics, /readyz, /customers/{id}).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub http: String,
    /// Stop after this long, e.g. 20s or 5m (default: on Ctrl-C).
    #[arg(long)]
    pub duration: Option<Span>,
    /// How often the live view is printed, e.g. 3s.
    #[arg(long, default_value = "3s")]
    pub refresh: Span,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum GenModelArg {
    Classic,
    Experience,
}

impl From<GenModelArg> for crate::generate::GenModel {
    fn from(m: GenModelArg) -> Self {
        match m {
            GenModelArg::Classic => crate::generate::GenModel::Classic,
            GenModelArg::Experience => crate::generate::GenModel::Experience,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum TimeUnitArg {
    Day,
    Week,
}

fn parse_format(s: &str) -> Result<Format, String> {
    match s {
        "jsonl" | "json" => Ok(Format::Json),
        "protobuf" | "pb" => Ok(Format::Protobuf),
        _ => Err(format!("unknown format `{s}` (jsonl or protobuf)")),
    }
}

fn parse_time(s: &str) -> Result<i64, String> {
    parse_rfc3339(s).map_err(|e| e.to_string())
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "`{s}` is not a positive number of events per second"
        )),
    }
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Reads a configuration file (the same file `run` reads; replay uses its
/// core sections), with `CHURNWATCH_*` overrides, every problem at once.
pub fn load_core_config(path: Option<&PathBuf>) -> anyhow::Result<CoreConfig> {
    Ok(Settings::load_core(path.map(PathBuf::as_path))?.core())
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay(a) => {
            let cfg = load_core_config(a.config.as_ref())?;
            let opts = ReplayOptions {
                inputs: a.inputs,
                format: a.format,
                strict: a.strict,
                as_of: a.as_of,
                time_unit: a.time_unit.map(|u| match u {
                    TimeUnitArg::Day => TimeUnit::Day,
                    TimeUnitArg::Week => TimeUnit::Week,
                }),
                horizon: a.horizon,
                state_out: a.state_out,
                state_format: None,
                scores_out: a.scores_out,
                model_out: a.model_out,
                outreach_out: a.outreach_out,
                progress: !a.quiet,
            };
            let summary = replay::replay(cfg, &opts)?;
            eprintln!("{}", serde_json::to_string_pretty(&summary)?);
            if opts.strict && summary.invalid > 0 {
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backtest(a) => {
            let cfg = load_core_config(a.config.as_ref())?;
            let opts = crate::backtest::BacktestOptions {
                inputs: a.inputs,
                format: a.format,
                cutoff: a.cutoff,
                horizon: a.horizon,
                truth: a.truth,
                progress: !a.quiet,
            };
            let done = crate::backtest::backtest(cfg, &opts)?;
            let s = &done.summary;
            eprintln!(
                "folded {} of {} records ({} invalid, {} duplicates, {} late); {} after the horizon not read",
                s.folded, s.records, s.invalid, s.duplicates, s.late, done.records_after_horizon
            );
            if let Some(e) = &s.model_error {
                eprintln!("model at the cutoff: the prior stays ({e})");
            }
            print!("{}", crate::backtest::text::render(&done.report));
            if let Some(path) = &a.json_out {
                let text = serde_json::to_string_pretty(&done.report)?;
                std::fs::write(path, text + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &a.html_out {
                let title = format!("churnwatch backtest at {}", done.report.cutoff);
                std::fs::write(path, crate::backtest::html::render(&done.report, &title))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(a) => {
            if a.bootstrap.is_some() {
                generate_to_kafka(a)?;
            } else {
                generate_to_file(a)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(a) => {
            if !(0.0..=1.0).contains(&a.silent_share) {
                anyhow::bail!("--silent-share must be between 0 and 1");
            }
            if !a.rate.is_finite() || a.rate < 0.0 {
                anyhow::bail!("--rate must be a number of events per second, 0 for unlimited");
            }
            if a.duration.is_some_and(|d| d.as_secs() <= 0) {
                anyhow::bail!("--duration must be positive");
            }
            demo::run(DemoOptions {
                customers: a.customers,
                seed: a.seed,
                span: a.span,
                silent_share: a.silent_share,
                partitions: a.partitions,
                rate: (a.rate > 0.0).then_some(a.rate),
                http: a.http,
                duration: a.duration,
                refresh: a.refresh,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file } => {
            let settings = Settings::load(Some(&file))?;
            use std::io::Write as _;
            // A closed pipe (`check-config FILE | head`) is not an error.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "# {} is valid; effective configuration (secrets masked):\n{}",
                file.display(),
                settings.redacted_toml()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::MockBroker(a) => {
            crate::mock_broker::run(&crate::mock_broker::MockBrokerOptions {
                brokers: a.brokers,
                topics: a.topics,
                partitions: a.partitions,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { .. } => anyhow::bail!("`run` is handled by the binary's entry point"),
    }
}

fn generate_to_file(a: GenerateArgs) -> anyhow::Result<()> {
    use std::io::Write;

    use crate::generate::{GenConfig, Generator};

    let cfg = GenConfig {
        customers: a.customers,
        seed: a.seed,
        start: a.start,
        span: a.span,
        silent_share: a.silent_share,
        max_events: a.max_events,
        model: a.model.into(),
        treatment: match &a.treatment {
            Some(text) => {
                anyhow::ensure!(
                    matches!(a.model, GenModelArg::Experience),
                    "--treatment needs --model experience"
                );
                let core = load_core_config(a.config.as_ref())?;
                anyhow::ensure!(
                    core.fold.lateness.as_secs() == 0,
                    "--treatment: the configuration's fold.lateness must be \"0s\" (decisions are reacted to when they are made)"
                );
                Some(crate::generate::Treatment {
                    core,
                    effects: crate::generate::Treatment::parse_effects(text)
                        .map_err(|e| anyhow::anyhow!("--treatment: {e}"))?,
                })
            }
            None => None,
        },
        ..GenConfig::default()
    };
    let sink: Box<dyn Write> = if a.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&a.out)
                .with_context(|| format!("creating {}", a.out.display()))?,
        )
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 20, sink);
    let bar = if a.out.as_os_str() == "-" {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    let mut buf = Vec::with_capacity(512);
    let mut n = 0u64;
    let mut gen = Generator::new(cfg);
    for ev in gen.by_ref().skip(a.skip as usize) {
        buf.clear();
        crate::codec::write_framed(&mut buf, &ev, a.format);
        w.write_all(&buf)?;
        n += 1;
        if n % 100_000 == 0 {
            bar.set_message(format!("{n} events"));
            bar.tick();
        }
    }
    w.flush()?;
    bar.finish_and_clear();
    eprintln!("wrote {n} events for {} customers", a.customers);
    if let Some(path) = &a.truth_out {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut t = std::io::BufWriter::new(file);
        let truth = gen.truth();
        for r in &truth {
            writeln!(t, "{}", serde_json::to_string(r)?)?;
        }
        t.flush()?;
        let left = truth.iter().filter(|r| r.left).count();
        eprintln!(
            "wrote the ground truth of {} customers ({left} left within the span) to {}",
            truth.len(),
            path.display()
        );
    }
    Ok(())
}

/// `generate --bootstrap`: the same events, to a Kafka topic (created when
/// missing), keyed by customer id, with a progress bar on a terminal.
fn generate_to_kafka(a: GenerateArgs) -> anyhow::Result<()> {
    use std::sync::atomic::AtomicBool;

    use crate::generate::{GenConfig, Generator};

    let (Some(bootstrap), Some(topic)) = (a.bootstrap.as_deref(), a.topic.as_deref()) else {
        anyhow::bail!("--bootstrap needs --topic");
    };
    if a.retention.as_secs() <= 0 {
        anyhow::bail!("--retention must be positive");
    }
    let mut client = rdkafka::ClientConfig::new();
    client.set("bootstrap.servers", bootstrap);
    for (k, v) in &a.properties {
        let value = crate::settings::resolve_secret(v)
            .map_err(|e| anyhow::anyhow!("--property {k}: {e}"))?;
        client.set(k, value);
    }
    let spec = demo::TopicSpec {
        name: topic,
        partitions: a.partitions,
        replication: a.replication_factor,
        compact: false,
        retention_ms: a.retention.as_secs() * 1000,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (partitions, created) = rt.block_on(demo::ensure_topic(&client, &spec))?;
    drop(rt);
    let cfg = GenConfig {
        customers: a.customers,
        seed: a.seed,
        start: a.start,
        span: a.span,
        silent_share: a.silent_share,
        max_events: a.max_events,
        model: a.model.into(),
        ..GenConfig::default()
    };
    let days = a.span.whole_days().max(1) as u64;
    let bar = indicatif::ProgressBar::new(days);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} day {pos}/{len} of the simulated span · {msg}",
    ) {
        bar.set_style(style);
    }
    let target = demo::Target {
        client,
        topic,
        format: a.format,
        rate: a.rate,
    };
    let started = std::time::Instant::now();
    let stop = AtomicBool::new(false);
    let sent = demo::produce(
        Generator::new(cfg).skip(a.skip as usize),
        &target,
        &stop,
        |n, at| {
            bar.set_position(((at - a.start).max(0) / crate::time::SECS_PER_DAY) as u64);
            bar.set_message(format!("{n} events sent"));
        },
    )?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {sent} events for {} customers to topic {topic} at {bootstrap} ({partitions} partitions{}) in {secs:.1} s ({:.0} events/s)",
        a.customers,
        if created { ", created" } else { "" },
        sent as f64 / secs.max(1e-3)
    );
    Ok(())
}
