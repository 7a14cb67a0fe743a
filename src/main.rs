use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;

use churnwatch::{
    cli::{self, Cli, Command},
    metrics::Metrics,
    service,
    settings::{LogFormat, Settings},
};

fn init_logs(format: LogFormat, level: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    // Colours only on a terminal: a file or a log shipper gets plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(config.as_deref()),
        demo @ Command::Demo(_) => {
            // The live view owns stdout; only warnings and errors go to stderr.
            init_logs(LogFormat::Text, "warn");
            cli::run(Cli { command: demo })
        }
        other => {
            init_logs(LogFormat::Text, "info");
            cli::run(Cli { command: other })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(config: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    init_logs(settings.log.format, &settings.log.level);
    let metrics = Arc::new(Metrics::new()?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(service::run(settings, metrics, service::signals()));
    // After shutdown.timeout a processing thread may still be stuck (a Kafka
    // call without a deadline); dropping the runtime would wait for it.
    rt.shutdown_timeout(Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}
