//! The command line: `churnwatch replay | check-config | ...`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::{
    codec::Format,
    config::{CoreConfig, TimeUnit},
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
    /// Fold events from files and write states, scores, the model and outreach.
    Replay(ReplayArgs),
    /// Write a seeded synthetic population's events to a file (or stdout).
    Generate(GenerateArgs),
    /// Run the service: consume events from Kafka, keep state in the
    /// changelog, emit outreach (see README, "Service mode").
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
    /// Horizon of expected activity, e.g. 30d (overrides model.horizon).
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
    /// jsonl or protobuf (length-delimited).
    #[arg(long, value_parser = parse_format, default_value = "jsonl")]
    pub format: Format,
    /// Output file; `-` for standard output.
    #[arg(long, default_value = "-")]
    pub out: PathBuf,
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

/// Reads a configuration file (the same file `run` reads; replay uses its
/// core sections), with `CHURNWATCH_*` overrides, every problem at once.
pub fn load_core_config(path: Option<&PathBuf>) -> anyhow::Result<CoreConfig> {
    Ok(Settings::load(path.map(PathBuf::as_path))?.core())
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
        Command::Generate(a) => {
            generate_to_file(a)?;
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
    for ev in Generator::new(cfg) {
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
    Ok(())
}
