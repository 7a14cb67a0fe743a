//! `churnwatch run` as a child process ([`Service`]), children killed when
//! dropped ([`Running`]), the service settings of a test, and the outreach
//! ids `churnwatch replay` gives on the same events.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use churnwatch::{codec::Format, pb::InteractionEvent, settings::Settings};

use crate::{churnwatch_command, free_port, handled_scraped, http_get, month, Broker};

/// Service settings for a test: its own application id, topics and group.
pub fn settings(broker: &Broker, app: &str, partitions: i32) -> Settings {
    let mut s = Settings {
        application_id: app.to_owned(),
        ..Settings::default()
    };
    s.kafka.bootstrap_servers = broker.bootstrap.clone();
    s.kafka.input_topic = format!("{app}-in");
    s.kafka.outreach_topic = format!("{app}-outreach");
    s.kafka.dead_letter_topic = format!("{app}-dlq");
    s.processing.commit_interval_ms = 200;
    s.processing.idle_advance = None;
    s.kafka
        .properties
        .insert("topic.metadata.refresh.interval.ms".into(), "1000".into());
    broker.create_topic(&s.kafka.input_topic, partitions, false);
    s
}

/// Service settings over an existing input topic.
pub fn settings_for_topic(broker: &Broker, app: &str, input: &str) -> Settings {
    let mut s = Settings {
        application_id: app.to_owned(),
        ..Settings::default()
    };
    s.kafka.bootstrap_servers = broker.bootstrap.clone();
    s.kafka.input_topic = input.to_owned();
    s.kafka.outreach_topic = format!("{app}-outreach");
    s.kafka.dead_letter_topic = format!("{app}-dlq");
    s.processing.idle_advance = None;
    s
}

/// A child process killed when dropped (a failing test leaves nothing running).
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The outreach ids `churnwatch replay` gives on the same events.
pub fn replay_ids(
    evs: &[InteractionEvent],
    core: churnwatch::config::CoreConfig,
) -> std::collections::BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let input = dir.path().join("in.pb");
    month::write_events(&input, evs, Format::Protobuf);
    let out = dir.path().join("out.jsonl");
    let opts = churnwatch::replay::ReplayOptions {
        inputs: vec![input],
        format: Format::Protobuf,
        outreach_out: Some(out.clone()),
        ..Default::default()
    };
    churnwatch::replay::replay(core, &opts).unwrap_or_else(|e| panic!("{e}"));
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<churnwatch::pb::OutreachRequested>(l)
                .map(|o| o.outreach_id)
                .unwrap_or_default()
        })
        .collect()
}

/// `churnwatch run` as a child process, with its admin HTTP on a free port.
pub struct Service {
    pub child: Running,
    pub port: u16,
    config: PathBuf,
}

impl Service {
    /// Writes `settings` (with a fresh `http.listen`) next to `dir` and starts the binary.
    pub fn spawn(settings: &Settings, dir: &std::path::Path, name: &str) -> Service {
        let port = free_port();
        let mut s = settings.clone();
        s.http.listen = format!("127.0.0.1:{port}");
        let config = dir.join(format!("{name}.toml"));
        let text = toml::to_string(&s).unwrap_or_else(|e| panic!("settings as TOML: {e}"));
        std::fs::write(&config, text).unwrap_or_else(|e| panic!("{e}"));
        let child = churnwatch_command()
            .args(["run", "--config"])
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("CW_CHILD_LOG").unwrap_or("error,rdkafka::client=off".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting churnwatch: {e}"));
        Service {
            child: Running(child),
            port,
            config,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// None while running; the exit status once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.0.try_wait().ok().flatten()
    }

    /// The `/metrics` text, if the admin server answers.
    pub fn metrics_text(&self) -> Option<String> {
        http_get(self.port, "/metrics", None)
            .filter(|r| r.0 == 200)
            .map(|r| r.1)
    }

    /// Input messages accounted for (folded, dropped or dead-lettered), or
    /// None if `/metrics` does not answer.
    pub fn handled(&self) -> Option<u64> {
        Some(handled_scraped(&self.metrics_text()?))
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status();
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// SIGTERM and wait for the exit status (None: still running at the timeout,
    /// then killed).
    pub fn terminate(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.signal("-TERM");
        crate::wait_for(timeout, || self.exited())
    }

    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }
}
