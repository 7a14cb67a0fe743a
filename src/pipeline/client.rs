//! librdkafka client configuration shared by the consumer, producer, restore
//! consumer and admin client: bootstrap servers plus the pass-through
//! properties (security.protocol, SASL, TLS, ...), with secrets resolved from
//! `env:` / `file:` references.

use rdkafka::ClientConfig;

use super::PipelineError;
use crate::settings::{resolve_secret, Settings};

pub fn base(settings: &Settings) -> Result<ClientConfig, PipelineError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.kafka.bootstrap_servers);
    c.set(
        "client.id",
        format!("{}-churnwatch", settings.application_id),
    );
    for (k, v) in &settings.kafka.properties {
        let value = resolve_secret(v)
            .map_err(|e| PipelineError::Config(format!("kafka.properties.\"{k}\": {e}")))?;
        c.set(k, value);
    }
    Ok(c)
}
