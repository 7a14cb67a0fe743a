//! `churnwatch demo`: the whole service on one machine with nothing
//! installed. An in-process Kafka (librdkafka's mock cluster, or a `tansu`
//! broker with `--tansu`), a seeded synthetic population produced into the
//! input topic, the full pipeline with its admin HTTP ([`service::run`]), and
//! a live view on stdout: counts from the metrics registry and the latest
//! outreach, read back from the outreach topic by a consumer of its own.
//!
//! The parts: the broker and the settings here, events into a topic in
//! [`load`] (also `churnwatch generate --bootstrap`), the view in `view`.

mod load;
mod view;

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    mocking::MockCluster,
    producer::DefaultProducerContext,
    ClientConfig,
};

pub use load::{ensure_topic, produce, Target, TopicSpec};
use view::{spawn_reader, InputProgress, Recent, View};

use crate::{
    codec::Format,
    generate::{GenConfig, Generator},
    metrics::Metrics,
    pipeline::PipelineError,
    service,
    settings::{AssignmentStrategy, Settings},
    time::{day_of, start_of_day, Span},
};

/// What `churnwatch demo` runs (its flags).
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub customers: u64,
    pub seed: u64,
    /// Simulated history, ending at today's midnight (UTC).
    pub span: Span,
    pub silent_share: f64,
    /// Partitions of every topic.
    pub partitions: i32,
    /// Events per second into the input topic; `None`: as fast as possible.
    pub rate: Option<f64>,
    /// The admin HTTP address.
    pub http: String,
    /// Stop after this long; `None`: on Ctrl-C or SIGTERM only.
    pub duration: Option<Span>,
    /// How often the live view is printed.
    pub refresh: Span,
    /// Run a tansu broker (from PATH or ~/.cache/churnwatch/tools/bin)
    /// instead of the in-process mock cluster.
    pub tansu: bool,
}

/// Runs the demo until Ctrl-C, SIGTERM or `--duration`.
pub fn run(opts: DemoOptions) -> anyhow::Result<()> {
    // Fail before anything starts if the admin port is taken.
    std::net::TcpListener::bind(&opts.http).with_context(|| {
        format!(
            "the admin HTTP address {} is not free; pick another with --http 127.0.0.1:PORT",
            opts.http
        )
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let broker = Broker::start(opts.tansu)?;
    let bootstrap = broker.bootstrap();
    let settings = settings(&bootstrap, &opts);
    let problems = settings.problems();
    if !problems.is_empty() {
        let text: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        bail!("invalid demo settings:\n{}", text.join("\n"));
    }
    let k = &settings.kafka;
    let topics = [
        (k.input_topic.clone(), false),
        (k.outreach_topic.clone(), false),
        (k.dead_letter_topic.clone(), false),
        (settings.changelog_topic(), true),
    ];
    for (name, compact) in &topics {
        broker.create_topic(&rt, name, opts.partitions, *compact)?;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "kafka: {bootstrap} ({}; connect any Kafka client while the demo runs)\n\
         topics: {} ({} partitions each)\n\
         admin: http://{}/metrics, /readyz, /customers/{{id}}",
        broker.describe(),
        topics
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        opts.partitions,
        opts.http
    );
    let _ = out.flush();
    drop(out);

    let metrics = Arc::new(Metrics::new()?);
    let stop = Arc::new(AtomicBool::new(false));
    let input = Arc::new(InputProgress::default());
    let recent = Arc::new(Mutex::new(Recent::default()));
    let producer = spawn_producer(&opts, &settings, input.clone(), stop.clone())?;
    let reader = spawn_reader(
        &bootstrap,
        &settings.kafka.outreach_topic,
        opts.partitions,
        recent.clone(),
        stop.clone(),
    )?;
    let view = Arc::new(View::new(
        format!("{bootstrap} ({})", broker.describe()),
        opts.http.clone(),
        &settings.kafka,
        metrics.clone(),
        input,
        recent,
    ));

    let result = rt.block_on(serve(
        settings,
        metrics,
        view.clone(),
        stop.clone(),
        opts.refresh,
        opts.duration,
    ));
    stop.store(true, Ordering::SeqCst);
    let produced = producer.join();
    let _ = reader.join();
    if !view.printed_last() {
        view.print(true);
    }
    // A loop that did not stop within shutdown.timeout is still blocked in
    // a spawn_blocking join: do not wait for it (dropping the runtime would).
    rt.shutdown_timeout(Duration::from_secs(2));
    if let Err(e) = result {
        // Its clients may still be inside librdkafka: the process exits
        // next, so the broker is left to go with it.
        std::mem::forget(broker);
        return Err(e.into());
    }
    drop(broker);
    let _ = writeln!(
        std::io::stdout(),
        "stopped: the service drained, committed its offsets and left the group."
    );
    match produced {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.context("producing the population")),
        Err(_) => bail!("the producer thread panicked"),
    }
}

/// Runs the service with the view printing beside it, until a signal or
/// the end of `duration`.
async fn serve(
    settings: Settings,
    metrics: Arc<Metrics>,
    view: Arc<View>,
    stop: Arc<AtomicBool>,
    refresh: Span,
    duration: Option<Span>,
) -> Result<(), PipelineError> {
    let every = Duration::from_secs(refresh.as_secs().max(1) as u64);
    let v = view.clone();
    let printer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if v.printed_last() {
                break;
            }
            v.print(false);
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = service::signals() => {}
            _ = async {
                match duration {
                    Some(d) => tokio::time::sleep(d.as_std()).await,
                    None => std::future::pending::<()>().await,
                }
            } => tracing::info!("--duration reached"),
        }
        // The last frame, while the partitions (and their customers) are
        // still owned; the service then drains, commits and leaves.
        stop.store(true, Ordering::SeqCst);
        view.print(true);
    };
    let r = service::run(settings, metrics, shutdown).await;
    printer.abort();
    r
}

/// The service settings of the demo: the default topics and group, state in
/// the changelog, stream time from event time only (the population is
/// history, so the wall clock must not age it further).
fn settings(bootstrap: &str, opts: &DemoOptions) -> Settings {
    let mut s = Settings::default();
    s.kafka.bootstrap_servers = bootstrap.to_owned();
    // The demo creates its topics itself (the mock cluster has no admin API),
    // so the start-up check only reads metadata.
    s.kafka.create_topics = false;
    if opts.tansu {
        // tansu 0.6 does not complete cooperative rebalances (README).
        s.kafka.assignment_strategy = AssignmentStrategy::Range;
    }
    s.processing.idle_advance = None;
    s.http.listen = opts.http.clone();
    s
}

/// The demo's broker, stopped when dropped.
enum Broker {
    Mock(MockCluster<'static, DefaultProducerContext>),
    Tansu { child: Child, bootstrap: String },
}

impl Broker {
    fn start(tansu: bool) -> anyhow::Result<Broker> {
        if !tansu {
            let mock = MockCluster::new(1).context("starting the in-process Kafka mock cluster")?;
            return Ok(Broker::Mock(mock));
        }
        let bin = tansu_bin().context(
            "--tansu: no `tansu` on PATH or at ~/.cache/churnwatch/tools/bin/tansu \
             (install it with `bash scripts/install-tansu.sh`, or leave out --tansu)",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .context("finding a free port for tansu")?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut b = Broker::Tansu {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        b.wait_ready()?;
        Ok(b)
    }

    fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::Tansu { bootstrap, .. } => bootstrap.clone(),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Broker::Mock(_) => "librdkafka mock cluster, in this process",
            Broker::Tansu { .. } => "tansu, in memory",
        }
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let Broker::Tansu { child, bootstrap } = self else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("tansu exited at start ({status})");
            }
            // A TCP connect first: librdkafka logs every refused connection.
            if std::net::TcpStream::connect(bootstrap.as_str()).is_ok() {
                let probe: Result<BaseConsumer, _> = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap.as_str())
                    .set("group.id", "churnwatch-demo-probe")
                    .create();
                if let Ok(c) = probe {
                    if c.fetch_metadata(None, Duration::from_secs(2)).is_ok() {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("tansu at {bootstrap} did not answer within 30 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn create_topic(
        &self,
        rt: &tokio::runtime::Runtime,
        name: &str,
        partitions: i32,
        compact: bool,
    ) -> anyhow::Result<()> {
        match self {
            Broker::Mock(m) => m
                .create_topic(name, partitions, 1)
                .with_context(|| format!("creating topic `{name}` on the mock cluster")),
            Broker::Tansu { bootstrap, .. } => {
                let spec = TopicSpec {
                    name,
                    partitions,
                    replication: 1,
                    compact,
                    retention_ms: -1,
                };
                let mut cfg = ClientConfig::new();
                cfg.set("bootstrap.servers", bootstrap.as_str());
                rt.block_on(ensure_topic(&cfg, &spec)).map(|_| ())
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Tansu { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tansu_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = PathBuf::from(home).join(".cache/churnwatch/tools/bin/tansu");
        p.is_file().then_some(p)
    })
}

fn spawn_producer(
    opts: &DemoOptions,
    settings: &Settings,
    progress: Arc<InputProgress>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<u64>>> {
    let today = start_of_day(day_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    ));
    let gen = GenConfig {
        customers: opts.customers,
        seed: opts.seed,
        start: today - opts.span.as_secs(),
        span: opts.span,
        silent_share: opts.silent_share,
        ..GenConfig::default()
    };
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &settings.kafka.bootstrap_servers);
    let topic = settings.kafka.input_topic.clone();
    let rate = opts.rate;
    std::thread::Builder::new()
        .name("churnwatch-demo-input".into())
        .spawn(move || {
            let target = Target {
                client,
                topic: &topic,
                format: Format::Protobuf,
                rate,
            };
            let r = produce(Generator::new(gen), &target, &stop, |n, at| {
                progress.set(n, at);
            });
            progress.finish();
            if let Err(e) = &r {
                tracing::error!(error = %format!("{e:#}"), "producing the population failed");
            }
            r
        })
        .context("starting the producer thread")
}
