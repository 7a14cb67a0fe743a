//! `churnwatch run`: the service's edge. Starts the pipeline, waits for
//! SIGTERM/SIGINT (or a caller's shutdown future), then drains within
//! `shutdown.timeout`; a second signal exits at once.

use std::{future::Future, sync::Arc, time::Duration};

use crate::{
    metrics::Metrics,
    pipeline::{Pipeline, PipelineError},
    settings::Settings,
};

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
    let pipeline = Pipeline::start(settings, metrics).await?;
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
    let joined = tokio::task::spawn_blocking(move || pipeline.join());
    match tokio::time::timeout(timeout, joined).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(PipelineError::Panicked),
        Err(_) => Err(PipelineError::Kafka(format!(
            "did not stop within shutdown.timeout ({timeout:?})"
        ))),
    }
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
