//! `churnwatch demo`: the whole service on one machine with nothing
//! installed. An in-process Kafka (librdkafka's mock cluster), a seeded
//! synthetic population produced into the
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
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use rdkafka::{mocking::MockCluster, producer::DefaultProducerContext, ClientConfig};

pub use load::{ensure_topic, produce, Target, TopicSpec};
use view::{spawn_reader, InputProgress, Recent, View};

use crate::{
    codec::Format,
    generate::{GenConfig, Generator},
    metrics::Metrics,
    pipeline::PipelineError,
    service,
    settings::Settings,
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
    let broker = Broker::start()?;
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
    // The mock cluster has no cleanup policies: the changelog's `true`
    // (compacted) is what a real broker would be given.
    for (name, _compact) in &topics {
        broker.create_topic(name, opts.partitions)?;
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
    s.processing.idle_advance = None;
    s.http.listen = opts.http.clone();
    s
}

/// The demo's broker: librdkafka's mock cluster in this process (nothing to
/// install), stopped when dropped. For Apache Kafka, run the service itself
/// against it (docs/service.md, "Try it against a broker").
struct Broker(MockCluster<'static, DefaultProducerContext>);

impl Broker {
    fn start() -> anyhow::Result<Broker> {
        let mock = MockCluster::new(1).context("starting the in-process Kafka mock cluster")?;
        Ok(Broker(mock))
    }

    fn bootstrap(&self) -> String {
        self.0.bootstrap_servers()
    }

    fn describe(&self) -> &'static str {
        "librdkafka mock cluster, in this process"
    }

    fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        self.0
            .create_topic(name, partitions, 1)
            .with_context(|| format!("creating topic `{name}` on the mock cluster"))
    }
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
