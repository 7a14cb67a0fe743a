//! The service configuration (`churnwatch run --config FILE`): one TOML file
//! plus environment overrides (`CHURNWATCH_SECTION__KEY=value`, e.g.
//! `CHURNWATCH_KAFKA__BOOTSTRAP_SERVERS=broker:9092`), over built-in defaults
//! (figment). The core sections (`fold`, `model`, `score`, `outreach`) are
//! the same as `replay` reads. Every problem is reported at once, with its key.

mod check;

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    codec::Format,
    config::{ConfigProblem, CoreConfig, FoldConfig, ModelConfig, OutreachConfig, ScoreConfig},
    time::Span,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Names the consumer group (unless `kafka.group_id` is set) and the
    /// changelog topic `<application_id>-changelog`.
    pub application_id: String,
    pub kafka: KafkaSettings,
    pub processing: ProcessingSettings,
    pub shutdown: ShutdownSettings,
    pub log: LogSettings,
    pub http: HttpSettings,
    pub fold: FoldConfig,
    pub model: ModelConfig,
    pub score: ScoreConfig,
    pub outreach: OutreachConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            application_id: "churnwatch".into(),
            kafka: KafkaSettings::default(),
            processing: ProcessingSettings::default(),
            shutdown: ShutdownSettings::default(),
            log: LogSettings::default(),
            http: HttpSettings::default(),
            fold: FoldConfig::default(),
            model: ModelConfig::default(),
            score: ScoreConfig::default(),
            outreach: OutreachConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentStrategy {
    /// Incremental rebalancing (KIP-429): only moved partitions stop.
    CooperativeSticky,
    /// Eager: every rebalance revokes everything (for brokers or mixed
    /// groups that cannot do cooperative).
    Range,
    RoundRobin,
}

impl AssignmentStrategy {
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::RoundRobin => "roundrobin",
        }
    }
}

/// The consumer group protocol: who assigns the partitions, and who owns
/// the session and heartbeat timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocol {
    /// The original protocol: a member (the group leader) assigns with
    /// `kafka.assignment_strategy`; the client sets `session.timeout.ms`
    /// and `heartbeat.interval.ms`. Any Kafka broker.
    Classic,
    /// KIP-848 (`group.protocol=consumer`): the broker assigns, always
    /// incrementally and sticky, and owns the session timeout and heartbeat
    /// interval (`group.consumer.*` broker settings). Kafka 4.0 or later.
    Consumer,
}

impl GroupProtocol {
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

/// librdkafka consumer properties it refuses with `group.protocol=consumer`
/// (librdkafka 2.12 CONFIGURATION.md), and what replaces each.
const CLASSIC_ONLY_PROPERTIES: &[(&str, &str)] = &[
    (
        "session.timeout.ms",
        "the broker owns it (`group.consumer.session.timeout.ms`, or a group's `consumer.session.timeout.ms`)",
    ),
    (
        "heartbeat.interval.ms",
        "the broker owns it (`group.consumer.heartbeat.interval.ms`, or a group's `consumer.heartbeat.interval.ms`)",
    ),
    (
        "partition.assignment.strategy",
        "the broker assigns; choose its assignor with \"group.remote.assignor\" (`uniform` or `range`)",
    ),
    ("group.protocol.type", "the consumer protocol has no protocol type"),
];

/// How the producer picks the partition of a keyed record (outreach, dead
/// letters; the changelog names its partition).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioner {
    /// murmur2 of the key, as the Java client (and Kafka Streams) do: a
    /// record lands on the partition a Java producer would choose.
    Murmur2Random,
    /// CRC32 of the key, librdkafka's own default (churnwatch before 0.2).
    ConsistentRandom,
}

impl Partitioner {
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            Partitioner::Murmur2Random => "murmur2_random",
            Partitioner::ConsistentRandom => "consistent_random",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    /// Input: customer interaction events, key = customer_id.
    pub input_topic: String,
    /// Output: OutreachRequested, key = customer_id.
    pub outreach_topic: String,
    /// Undecodable or invalid input, with the reason in headers.
    pub dead_letter_topic: String,
    /// Consumer group; default: `application_id`.
    pub group_id: Option<String>,
    /// Static membership (`group.instance.id`): a restart within the session
    /// timeout keeps its partitions (no rebalance on rolling restarts).
    pub group_instance_id: Option<String>,
    /// `classic` (default) or `consumer` (KIP-848, assignment by the broker).
    pub group_protocol: GroupProtocol,
    /// Classic protocol only: how the group leader assigns partitions.
    pub assignment_strategy: AssignmentStrategy,
    /// Partitioner of keyed records; `consistent_random` keeps the old one.
    pub partitioner: Partitioner,
    /// Input encoding when a message has no `content-type` header.
    pub input_format: Format,
    /// Encoding of outreach messages.
    pub outreach_format: Format,
    /// Create the changelog (compacted), outreach and dead-letter topics
    /// when missing, with the input topic's partition count.
    pub create_topics: bool,
    /// Replication factor for created topics.
    pub replication_factor: i32,
    /// How long the start waits for the brokers to answer (retrying with
    /// backoff) before it gives up with exit status 2.
    pub connect_timeout: Span,
    /// Passed to librdkafka as is (security.protocol, sasl.*, ssl.*, ...).
    /// Values may be `env:VAR` or `file:PATH` to keep secrets out of the file.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            bootstrap_servers: "127.0.0.1:9092".into(),
            input_topic: "customer-interactions".into(),
            outreach_topic: "churnwatch-outreach".into(),
            dead_letter_topic: "churnwatch-dead-letter".into(),
            group_id: None,
            group_instance_id: None,
            group_protocol: GroupProtocol::Classic,
            assignment_strategy: AssignmentStrategy::CooperativeSticky,
            partitioner: Partitioner::Murmur2Random,
            input_format: Format::Protobuf,
            outreach_format: Format::Protobuf,
            create_topics: true,
            replication_factor: 1,
            connect_timeout: Span::seconds(60),
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    AtLeastOnce,
    ExactlyOnce,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessingSettings {
    pub guarantee: Guarantee,
    /// How often the changelog is flushed and input offsets are committed
    /// (after the broker acknowledged everything they caused).
    pub commit_interval_ms: u64,
    /// A partition that receives nothing for this long advances its stream
    /// time with the wall clock, so silent customers are still scored when
    /// traffic stops. `"0s"` disables it (event time only, as in replay).
    pub idle_advance: Option<Span>,
    /// Independent consumer loops in this process (each owns some partitions).
    pub threads: usize,
    /// Most messages the producer may hold unacknowledged; when full,
    /// consumption pauses (backpressure) instead of memory growing.
    pub max_in_flight: usize,
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        ProcessingSettings {
            guarantee: Guarantee::AtLeastOnce,
            commit_interval_ms: 1000,
            idle_advance: Some(Span::seconds(60)),
            threads: 1,
            max_in_flight: 100_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// On SIGTERM/SIGINT: stop fetching, drain, commit and exit within this.
    pub timeout: Span,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings {
            timeout: Span::seconds(30),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// tracing filter, e.g. `info` or `churnwatch=debug`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The admin HTTP server (`/metrics`, `/healthz`, `/readyz`, `/customers/{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to bind; loopback by default (customer data is served here).
    pub listen: String,
    /// Serve `/customers/{id}`.
    pub customers_endpoint: bool,
    /// Require `Authorization: Bearer <token>` on `/customers/{id}`; may be
    /// `env:VAR` or `file:PATH`.
    pub bearer_token: Option<String>,
    /// Time a client has to send a request head (from connecting, or from
    /// the previous response on a kept-alive connection).
    pub header_read_timeout: Span,
    /// A connection with nothing read or written for this long is closed.
    pub idle_timeout: Span,
    /// Connections open at once; a new one beyond it closes the oldest.
    pub max_connections: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:9090".into(),
            customers_endpoint: true,
            bearer_token: None,
            // A probe or scrape sends its request at once; 5 s is generous.
            header_read_timeout: Span::seconds(5),
            idle_timeout: Span::seconds(60),
            // Far above what probes and scrapers use, far below file
            // descriptor limits (the consumers and producers need theirs).
            max_connections: 256,
        }
    }
}

/// Loading failed: every problem, each with its source and key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct SettingsError(pub Vec<ConfigProblem>);

impl Settings {
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            fold: self.fold.clone(),
            model: self.model.clone(),
            score: self.score.clone(),
            outreach: self.outreach.clone(),
        }
    }

    /// The admin server's connection limits.
    pub fn http_limits(&self) -> crate::http::ConnLimits {
        let secs = |s: Span| std::time::Duration::from_secs(s.as_secs().max(1) as u64);
        crate::http::ConnLimits {
            header_read_timeout: secs(self.http.header_read_timeout),
            idle_timeout: secs(self.http.idle_timeout),
            max_connections: self.http.max_connections as usize,
        }
    }

    pub fn group_id(&self) -> &str {
        self.kafka
            .group_id
            .as_deref()
            .unwrap_or(&self.application_id)
    }

    pub fn changelog_topic(&self) -> String {
        format!("{}-changelog", self.application_id)
    }

    /// The service's settings: defaults, then the file (if any), then
    /// `CHURNWATCH_*` variables; `kafka.bootstrap_servers` must be set by one
    /// of them. Every problem at once, each with its source ([`check`]).
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        Settings::load_checked(file, true).map_err(SettingsError)
    }

    /// The same for `replay`, which reads only the core sections and needs
    /// no broker.
    pub fn load_core(file: Option<&Path>) -> Result<Settings, SettingsError> {
        Settings::load_checked(file, false).map_err(SettingsError)
    }

    /// Every cross-field problem, core included.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = self.core().problems();
        let k = &self.kafka;
        if self.application_id.trim().is_empty() {
            p.push(ConfigProblem::new("application_id", "must not be empty"));
        }
        for (key, v) in [
            ("kafka.bootstrap_servers", &k.bootstrap_servers),
            ("kafka.input_topic", &k.input_topic),
            ("kafka.outreach_topic", &k.outreach_topic),
            ("kafka.dead_letter_topic", &k.dead_letter_topic),
        ] {
            if v.trim().is_empty() {
                p.push(ConfigProblem::new(key, "must not be empty"));
            }
        }
        let topics = [
            &k.input_topic,
            &k.outreach_topic,
            &k.dead_letter_topic,
            &self.changelog_topic(),
        ];
        for (i, a) in topics.iter().enumerate() {
            if topics[i + 1..].contains(a) {
                p.push(ConfigProblem::new(
                    "kafka",
                    format!("topic `{a}` is used for two purposes"),
                ));
            }
        }
        if k.connect_timeout.as_secs() < 1 {
            p.push(ConfigProblem::new(
                "kafka.connect_timeout",
                "must be at least 1s",
            ));
        }
        if k.replication_factor < 1 {
            p.push(ConfigProblem::new(
                "kafka.replication_factor",
                "must be at least 1",
            ));
        }
        for (key, value) in &k.properties {
            if let Err(e) = resolve_secret(value) {
                p.push(ConfigProblem::new(format!("kafka.properties.\"{key}\""), e));
            }
            if [
                "enable.auto.commit",
                "group.id",
                "bootstrap.servers",
                "transactional.id",
                "partitioner",
                "group.protocol",
                "group.instance.id",
            ]
            .contains(&key.as_str())
            {
                p.push(ConfigProblem::new(
                    format!("kafka.properties.\"{key}\""),
                    "is managed by churnwatch; use the dedicated setting",
                ));
            }
        }
        p.extend(self.group_protocol_problems());
        let pr = &self.processing;
        if pr.commit_interval_ms == 0 {
            p.push(ConfigProblem::new(
                "processing.commit_interval_ms",
                "must be positive",
            ));
        }
        if pr.idle_advance.is_some_and(|s| s.as_secs() < 0) {
            p.push(ConfigProblem::new(
                "processing.idle_advance",
                "must not be negative (\"0s\" disables it)",
            ));
        }
        if pr.threads == 0 || pr.threads > 64 {
            p.push(ConfigProblem::new(
                "processing.threads",
                "must be between 1 and 64",
            ));
        }
        if pr.max_in_flight < 100 {
            p.push(ConfigProblem::new(
                "processing.max_in_flight",
                "must be at least 100",
            ));
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(ConfigProblem::new(
                "http.listen",
                "must be an address like 127.0.0.1:9090",
            ));
        }
        for (key, span) in [
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.idle_timeout", self.http.idle_timeout),
        ] {
            if span.as_secs() <= 0 {
                p.push(ConfigProblem::new(key, "must be positive"));
            }
        }
        if self.http.max_connections == 0 {
            p.push(ConfigProblem::new(
                "http.max_connections",
                "must be at least 1",
            ));
        }
        if let Some(t) = &self.http.bearer_token {
            if let Err(e) = resolve_secret(t) {
                p.push(ConfigProblem::new("http.bearer_token", e));
            }
        }
        if self.shutdown.timeout.as_secs() <= 0 {
            p.push(ConfigProblem::new("shutdown.timeout", "must be positive"));
        }
        p
    }

    /// Settings that do not fit `kafka.group_protocol`.
    fn group_protocol_problems(&self) -> Vec<ConfigProblem> {
        let k = &self.kafka;
        let mut p = Vec::new();
        match k.group_protocol {
            GroupProtocol::Consumer => {
                // cooperative_sticky (the default) is what the consumer
                // protocol does anyway; an eager strategy cannot be had.
                if k.assignment_strategy != AssignmentStrategy::CooperativeSticky {
                    p.push(ConfigProblem::new(
                        "kafka.assignment_strategy",
                        format!(
                            "`{}` is a classic-protocol strategy; with kafka.group_protocol = \"consumer\" the broker assigns (incrementally, sticky): \
                             remove the setting, or choose the broker's assignor with [kafka.properties] \"group.remote.assignor\"",
                            k.assignment_strategy.librdkafka_name()
                        ),
                    ));
                }
                for (key, instead) in CLASSIC_ONLY_PROPERTIES {
                    if k.properties.contains_key(*key) {
                        p.push(ConfigProblem::new(
                            format!("kafka.properties.\"{key}\""),
                            format!(
                                "is not supported with kafka.group_protocol = \"consumer\" (librdkafka refuses it): {instead}"
                            ),
                        ));
                    }
                }
            }
            GroupProtocol::Classic => {
                if k.properties.contains_key("group.remote.assignor") {
                    p.push(ConfigProblem::new(
                        "kafka.properties.\"group.remote.assignor\"",
                        "applies only with kafka.group_protocol = \"consumer\" (the classic protocol uses kafka.assignment_strategy)",
                    ));
                }
            }
        }
        p
    }

    /// The settings as TOML with secrets masked (for `check-config` and logs).
    pub fn redacted_toml(&self) -> String {
        let mut s = self.clone();
        if let Some(t) = s.http.bearer_token.as_mut() {
            if !t.starts_with("env:") && !t.starts_with("file:") {
                *t = "***".into();
            }
        }
        for (key, v) in s.kafka.properties.iter_mut() {
            if is_secret_key(key) && !v.starts_with("env:") && !v.starts_with("file:") {
                *v = "***".into();
            }
        }
        toml::to_string(&s).unwrap_or_default()
    }
}

/// Every configuration key (dotted path to a value, not a table) the
/// settings know, core sections included; docs/configuration.md documents
/// each (tests/docs.rs).
pub fn keys() -> Vec<String> {
    check::leaf_keys()
}

/// Keys whose values are secrets.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.contains("token")
        || k.contains("credential")
        || k.ends_with(".key")
        // librdkafka: a private key given inline (`ssl.key.pem`), and the
        // OAUTHBEARER config string, which may carry tokens or keys.
        || k.ends_with("key.pem")
        || k == "sasl.oauthbearer.config"
}

/// A property value: literal, `env:VAR` or `file:PATH` (trailing newline trimmed).
pub fn resolve_secret(value: &str) -> Result<String, String> {
    if let Some(var) = value.strip_prefix("env:") {
        std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
    } else if let Some(path) = value.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| format!("cannot read {path}: {e}"))
    } else {
        Ok(value.to_owned())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                r#"
                application_id = "cw-test"
                [kafka]
                input_topic = "events"
                [kafka.properties]
                "security.protocol" = "SASL_PLAINTEXT"
                "sasl.password" = "hunter2"
                [outreach]
                cooldown = "7d"
                "#,
            )?;
            jail.set_env("CHURNWATCH_KAFKA__BOOTSTRAP_SERVERS", "10.0.0.1:9093");
            jail.set_env("CHURNWATCH_PROCESSING__THREADS", "2");
            let s = Settings::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.application_id, "cw-test");
            assert_eq!(s.kafka.input_topic, "events");
            assert_eq!(s.kafka.bootstrap_servers, "10.0.0.1:9093");
            assert_eq!(s.processing.threads, 2);
            assert_eq!(s.outreach.cooldown, Span::days(7));
            assert_eq!(s.changelog_topic(), "cw-test-changelog");
            assert_eq!(s.group_id(), "cw-test");
            let shown = s.redacted_toml();
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("SASL_PLAINTEXT"));
            Ok(())
        });
    }

    #[test]
    fn all_problems_are_reported_together_with_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bad.toml",
                r#"
                [kafka]
                input_topic = "x"
                outreach_topic = "x"
                [kafka.properties]
                "enable.auto.commit" = "true"
                "sasl.password" = "env:CHURNWATCH_TEST_UNSET_VAR"
                [processing]
                threads = 0
                [outreach]
                cap = 0
                "#,
            )?;
            let err = match Settings::load(Some(Path::new("bad.toml"))) {
                Ok(_) => panic!("must fail"),
                Err(e) => e,
            };
            let keys: Vec<String> = err.0.iter().map(|p| p.key.clone()).collect();
            for k in [
                "kafka",
                "kafka.properties.\"enable.auto.commit\"",
                "kafka.properties.\"sasl.password\"",
                "processing.threads",
                "outreach.cap",
            ] {
                assert!(keys.iter().any(|x| x == k), "{k} not in {keys:?}");
            }
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_name_their_path() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("u.toml", "[kafka]\nbootstrap = \"x\"\n")?;
            let err = Settings::load(Some(Path::new("u.toml")))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("bootstrap"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn secrets_resolve_from_env_and_files() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CW_SECRET", "s3cret");
            jail.create_file("pw", "from-file\n")?;
            assert_eq!(resolve_secret("env:CW_SECRET"), Ok("s3cret".into()));
            assert_eq!(resolve_secret("file:pw"), Ok("from-file".into()));
            assert_eq!(resolve_secret("plain"), Ok("plain".into()));
            assert!(resolve_secret("env:CW_NOPE_NOT_SET").is_err());
            Ok(())
        });
    }
}
