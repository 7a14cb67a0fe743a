//! What the security tests share: the service as a child process, waits,
//! a weekly buyer, brokers with a second listener, secret checks.

use crate::common::{free_port, wait_for, Broker, Running};
use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use churnwatch::{events, pb::InteractionEvent, settings::Settings};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    ClientConfig,
};

pub const T0: i64 = 1_767_225_600; // 2026-01-01
pub const DAY: i64 = 86_400;

/// A `churnwatch run` child with its config, admin port and captured stderr.
pub struct Service {
    pub child: Running,
    pub port: u16,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts `churnwatch run` on `s` (its `http.listen` set to a free
    /// loopback port), with `env` added and `RUST_LOG` removed so the
    /// configured log level is the one in force.
    pub fn start(mut s: Settings, env: &[(&str, &str)]) -> Service {
        let port = free_port();
        s.http.listen = format!("127.0.0.1:{port}");
        Service::start_toml(&toml::to_string(&s).unwrap_or_default(), env, port)
    }

    /// Starts `churnwatch run` on this configuration text; `port` is where
    /// it serves the admin HTTP.
    pub fn start_toml(config_text: &str, env: &[(&str, &str)], port: u16) -> Service {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = dir.path().join("churnwatch.toml");
        std::fs::write(&config, config_text).unwrap_or_else(|e| panic!("{e}"));
        let stderr = dir.path().join("stderr.log");
        let file = std::fs::File::create(&stderr).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = churnwatch_testkit::churnwatch_command();
        cmd.args(["run", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
        Service {
            child: Running(child),
            port,
            stderr,
            _dir: dir,
        }
    }

    pub fn get(&self, path: &str, auth: Option<&str>) -> Option<(u16, String)> {
        crate::common::http_request(("127.0.0.1", self.port), path, auth)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for `/readyz` to answer 200 (partitions assigned and restored).
    pub fn wait_ready(&mut self) {
        let ready = wait_for(Duration::from_secs(90), || {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                panic!(
                    "churnwatch exited ({status}) before it was ready:\n{}",
                    self.stderr()
                );
            }
            self.get("/readyz", None).filter(|r| r.0 == 200)
        });
        assert!(
            ready.is_some(),
            "not ready: {:?}\n{}",
            self.get("/readyz", None),
            self.stderr()
        );
    }

    /// A metric's value (summed over its labels) from `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics", None).unwrap_or_default().1;
        crate::common::scraped(&text, name)
    }

    /// Waits for a metric to reach `value` (gauges follow at batch ends).
    pub fn wait_metric(&self, name: &str, value: f64) {
        let reached = wait_for(Duration::from_secs(30), || {
            (self.metric(name) == value).then_some(())
        });
        assert!(
            reached.is_some(),
            "{name} is {}, not {value}",
            self.metric(name)
        );
    }

    /// Events folded, dropped or dead-lettered so far.
    pub fn handled(&self) -> u64 {
        let text = self.get("/metrics", None).unwrap_or_default().1;
        (crate::common::scraped(&text, "churnwatch_events_consumed_total")
            + crate::common::scraped(&text, "churnwatch_events_dropped_total")
            + crate::common::scraped(&text, "churnwatch_events_rejected_total")) as u64
    }

    pub fn wait_handled(&self, n: u64) {
        let done = wait_for(Duration::from_secs(90), || {
            (self.handled() >= n).then_some(())
        });
        assert!(
            done.is_some(),
            "handled {} of {n}:\n{}",
            self.handled(),
            self.stderr()
        );
    }

    /// SIGTERM, then the exit code (the service drains and commits first).
    pub fn stop(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.0.id().to_string()])
            .status();
        let code = wait_exit(&mut self.child.0, Duration::from_secs(30));
        (code, self.stderr())
    }

    /// Waits for the process to exit by itself.
    pub fn exit_within(mut self, timeout: Duration) -> (Option<i32>, String) {
        let code = wait_exit(&mut self.child.0, timeout);
        (code, self.stderr())
    }
}

pub fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code();
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Weekly purchases of one customer: `weeks` events from `T0`.
pub fn weekly(customer: &str, weeks: i64) -> Vec<InteractionEvent> {
    (0..weeks)
        .map(|w| {
            events::purchase(
                &format!("{customer}-e{w}"),
                customer,
                T0 + w * 7 * DAY,
                25.0,
            )
        })
        .collect()
}

pub fn real_kafka() -> Option<String> {
    std::env::var("KAFKA_BOOTSTRAP").ok()
}

/// An Apache Kafka of this file's own with a second listener, `protocol`
/// (SASL_PLAINTEXT or SSL) on `port`, configured by `more`; the plaintext
/// listener stays the broker's bootstrap (topics, test producers). None
/// with `KAFKA_BOOTSTRAP` set.
pub fn kafka_with_listener(
    protocol: &str,
    port: u16,
    more: &str,
    format_args: &str,
) -> Option<Broker> {
    let props = format!(
        "listeners=PLAINTEXT://127.0.0.1:@PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@,{protocol}://127.0.0.1:{port}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:@PORT@,{protocol}://127.0.0.1:{port}\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,{protocol}:{protocol}\n\
         {more}"
    );
    Broker::own_with(&props, format_args)
}

/// Metadata as a client with these extra properties sees it (None: refused).
pub fn metadata_ok(bootstrap: &str, props: &[(&str, &str)]) -> bool {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", "probe")
        .set("log_level", "0");
    for (k, v) in props {
        c.set(*k, *v);
    }
    let Ok(c) = c.create::<BaseConsumer>() else {
        return false;
    };
    c.fetch_metadata(None, Duration::from_secs(3)).is_ok()
}

/// The secrets of a run must not appear in anything it printed.
pub fn assert_absent(text: &str, secrets: &[&str], what: &str) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows the secret `{s}`:\n{text}");
    }
}
