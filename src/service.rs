//! `churnwatch run`: the service's edge. Serves the admin HTTP, starts the
//! pipeline, waits for SIGTERM/SIGINT (or a caller's shutdown future), then
//! drains within `shutdown.timeout`; a second signal exits at once.

use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::Duration,
};

use crate::{
    http::{self, AdminConfig, AdminSource, CustomerView},
    metrics::Metrics,
    pipeline::{Pipeline, PipelineError},
    readiness::Readiness,
    settings::{resolve_secret, Settings},
};

/// The admin server's view of the pipeline, which starts after the server
/// (so `/healthz` answers while topics are checked and state restored).
#[derive(Default)]
struct Source(OnceLock<Arc<Pipeline>>);

impl AdminSource for Source {
    fn readiness(&self) -> Result<String, String> {
        let r = match self.0.get() {
            Some(p) => p.readiness(),
            None => Readiness::Starting,
        };
        if r.is_ready() {
            Ok(r.to_string())
        } else {
            Err(r.to_string())
        }
    }
    fn customer(&self, id: &str) -> Option<CustomerView> {
        self.0.get().and_then(|p| p.customer_view(id))
    }
}

/// Runs until `shutdown` resolves or a loop fails.
pub async fn run(
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PipelineError> {
    let timeout = settings.shutdown.timeout.as_std();
    tracing::info!(
        application_id = %settings.application_id,
        bootstrap = %settings.kafka.bootstrap_servers,
        input = %settings.kafka.input_topic,
        guarantee = ?settings.processing.guarantee,
        "starting"
    );
    let source = Arc::new(Source::default());
    let token = match &settings.http.bearer_token {
        Some(t) => Some(
            resolve_secret(t)
                .map_err(|e| PipelineError::Config(format!("http.bearer_token: {e}")))?,
        ),
        None => None,
    };
    let router = http::router(
        metrics.clone(),
        source.clone(),
        AdminConfig {
            customers_endpoint: settings.http.customers_endpoint,
            bearer_token: token,
        },
    );
    let listener = tokio::net::TcpListener::bind(&settings.http.listen)
        .await
        .map_err(|e| PipelineError::Config(format!("http.listen {}: {e}", settings.http.listen)))?;
    tracing::info!(listen = %settings.http.listen, "admin HTTP: /metrics /healthz /readyz /customers/{{id}}");
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = settings.http_limits();
    let server = tokio::spawn(http::serve(listener, router, limits, async move {
        let _ = http_stopped.await;
    }));

    let pipeline = Arc::new(Pipeline::start(settings, metrics).await?);
    let _ = source.0.set(pipeline.clone());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if pipeline.is_finished() {
                    break;
                }
            }
        }
    }
    tracing::info!("stopping: draining, committing and leaving the group");
    pipeline.stop();
    let joiner = pipeline.clone();
    let joined = tokio::task::spawn_blocking(move || joiner.join());
    let result = match tokio::time::timeout(timeout, joined).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(PipelineError::Panicked),
        Err(_) => Err(PipelineError::ShutdownTimeout(timeout)),
    };
    let _ = http_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    result
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits the process at once.
pub async fn signals() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        });
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
