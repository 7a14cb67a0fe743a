//! Security, as an operator meets it: Kafka credentials and TLS passed
//! through to librdkafka, secrets that never show, an admin HTTP that exposes
//! no more than it must, logs without customer data, and erasure that sticks.
//!
//! Every test runs the `churnwatch` binary, as ops run it. The SASL and TLS
//! tests run an Apache Kafka of their own (tests/common, `Broker::own_with`)
//! with a SASL_PLAINTEXT or SSL listener beside the plaintext one the test
//! uses to create topics; with `KAFKA_BOOTSTRAP` set they say why they skip.
//! The others run against this binary's Apache Kafka, or that Kafka.
//!
//! - SASL: SCRAM-SHA-256 and SCRAM-SHA-512 users are made when the broker's
//!   storage is formatted (`kafka-storage format --add-scram`, KIP-900), and
//!   PLAIN users in the listener's JAAS configuration.
//! - TLS: the broker's own SSL listener with PEM files made by openssl
//!   (`ssl.keystore.type=PEM`), requiring a client certificate.

mod common;

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use churnwatch::{
    codec::{self, Format},
    events,
    generate::{GenConfig, Generator},
    pb::InteractionEvent,
    settings::Settings,
    time::Span,
};
use common::{free_port, settings, settings_for_topic, unique, wait_for, Broker, Running};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{Header, OwnedHeaders},
    producer::{BaseProducer, BaseRecord, Producer},
    ClientConfig,
};

const T0: i64 = 1_767_225_600; // 2026-01-01
const DAY: i64 = 86_400;

// ---------------------------------------------------------------- helpers

/// A `churnwatch run` child with its config, admin port and captured stderr.
struct Service {
    child: Running,
    port: u16,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts `churnwatch run` on `s` (its `http.listen` set to a free
    /// loopback port), with `env` added and `RUST_LOG` removed so the
    /// configured log level is the one in force.
    fn start(mut s: Settings, env: &[(&str, &str)]) -> Service {
        let port = free_port();
        s.http.listen = format!("127.0.0.1:{port}");
        Service::start_toml(&toml::to_string(&s).unwrap_or_default(), env, port)
    }

    /// Starts `churnwatch run` on this configuration text; `port` is where
    /// it serves the admin HTTP.
    fn start_toml(config_text: &str, env: &[(&str, &str)], port: u16) -> Service {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = dir.path().join("churnwatch.toml");
        std::fs::write(&config, config_text).unwrap_or_else(|e| panic!("{e}"));
        let stderr = dir.path().join("stderr.log");
        let file = std::fs::File::create(&stderr).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_churnwatch"));
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

    fn get(&self, path: &str, auth: Option<&str>) -> Option<(u16, String)> {
        common::http_request(("127.0.0.1", self.port), path, auth)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for `/readyz` to answer 200 (partitions assigned and restored).
    fn wait_ready(&mut self) {
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
    fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics", None).unwrap_or_default().1;
        common::scraped(&text, name)
    }

    /// Waits for a metric to reach `value` (gauges follow at batch ends).
    fn wait_metric(&self, name: &str, value: f64) {
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
    fn handled(&self) -> u64 {
        let text = self.get("/metrics", None).unwrap_or_default().1;
        (common::scraped(&text, "churnwatch_events_consumed_total")
            + common::scraped(&text, "churnwatch_events_dropped_total")
            + common::scraped(&text, "churnwatch_events_rejected_total")) as u64
    }

    fn wait_handled(&self, n: u64) {
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
    fn stop(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.0.id().to_string()])
            .status();
        let code = wait_exit(&mut self.child.0, Duration::from_secs(30));
        (code, self.stderr())
    }

    /// Waits for the process to exit by itself.
    fn exit_within(mut self, timeout: Duration) -> (Option<i32>, String) {
        let code = wait_exit(&mut self.child.0, timeout);
        (code, self.stderr())
    }
}

fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> Option<i32> {
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
fn weekly(customer: &str, weeks: i64) -> Vec<InteractionEvent> {
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

fn real_kafka() -> Option<String> {
    std::env::var("KAFKA_BOOTSTRAP").ok()
}

/// An Apache Kafka of this file's own with a second listener, `protocol`
/// (SASL_PLAINTEXT or SSL) on `port`, configured by `more`; the plaintext
/// listener stays the broker's bootstrap (topics, test producers). None
/// with `KAFKA_BOOTSTRAP` set.
fn kafka_with_listener(protocol: &str, port: u16, more: &str, format_args: &str) -> Option<Broker> {
    let props = format!(
        "listeners=PLAINTEXT://127.0.0.1:@PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@,{protocol}://127.0.0.1:{port}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:@PORT@,{protocol}://127.0.0.1:{port}\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,{protocol}:{protocol}\n\
         {more}"
    );
    Broker::own_with(&props, format_args)
}

/// Metadata as a client with these extra properties sees it (None: refused).
fn metadata_ok(bootstrap: &str, props: &[(&str, &str)]) -> bool {
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
fn assert_absent(text: &str, secrets: &[&str], what: &str) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows the secret `{s}`:\n{text}");
    }
}

// ------------------------------------------------------ config and secrets

/// `check-config` prints the effective configuration: every secret, however
/// it is given, is masked, and `env:`/`file:` references show as references.
#[test]
fn check_config_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key_file = dir.path().join("sasl-password");
    std::fs::write(&key_file, "pw-from-file-9d1c\n").unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "svc-churnwatch"
"sasl.password" = "literal-pw-71f3"
"ssl.key.password" = "env:CW_TEST_KEY_PW"
"ssl.key.pem" = "-----BEGIN PRIVATE KEY-----\nliteral-pem-body-5e2a\n-----END PRIVATE KEY-----"
"ssl.keystore.password" = "file:{}"
"sasl.oauthbearer.client.secret" = "literal-oauth-secret-0b7e"
"sasl.oauthbearer.config" = "principal=svc extension_token=literal-jwt-ext-44aa"
[http]
bearer_token = "literal-bearer-c3d9"
"#,
            key_file.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_churnwatch"))
        .arg("check-config")
        // The service names its brokers (none is assumed).
        .env("CHURNWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        .arg(&config)
        .env("CW_TEST_KEY_PW", "pw-from-env-2a8b")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_absent(
        &text,
        &[
            "literal-pw-71f3",
            "pw-from-env-2a8b",
            "pw-from-file-9d1c",
            "literal-pem-body-5e2a",
            "literal-oauth-secret-0b7e",
            "literal-jwt-ext-44aa",
            "literal-bearer-c3d9",
        ],
        "check-config",
    );
    // Still useful: references and non-secrets are shown as written.
    assert!(text.contains("env:CW_TEST_KEY_PW"), "{text}");
    assert!(
        text.contains(&format!("file:{}", key_file.display())),
        "{text}"
    );
    assert!(text.contains("svc-churnwatch"), "{text}");
    assert!(text.contains("\"***\""), "{text}");

    // A token given only in the environment is masked too.
    let out = Command::new(env!("CARGO_BIN_EXE_churnwatch"))
        .arg("check-config")
        // The service names its brokers (none is assumed).
        .env("CHURNWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        .arg(&config)
        .env("CW_TEST_KEY_PW", "pw-from-env-2a8b")
        .env("CHURNWATCH_HTTP__BEARER_TOKEN", "env-override-token-6f0d")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert_absent(&text, &["env-override-token-6f0d"], "check-config");

    // A reference that cannot be resolved names the key and the variable,
    // and the error says nothing secret.
    let out = Command::new(env!("CARGO_BIN_EXE_churnwatch"))
        .arg("check-config")
        // The service names its brokers (none is assumed).
        .env("CHURNWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        .arg(&config)
        .env_remove("CW_TEST_KEY_PW")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("kafka.properties.\"ssl.key.password\"")
            && err.contains("environment variable CW_TEST_KEY_PW is not set"),
        "{err}"
    );
    assert_absent(
        &err,
        &[
            "literal-pw-71f3",
            "pw-from-file-9d1c",
            "literal-bearer-c3d9",
        ],
        "the configuration error",
    );
}

// ---------------------------------------------------------------- Kafka SASL

/// SCRAM and PLAIN on Apache Kafka's SASL_PLAINTEXT listener: the right
/// credentials, from the environment (SCRAM-SHA-512) or a file
/// (SCRAM-SHA-256), run the whole service; a wrong password stops it with an
/// authentication error; no password is ever printed.
#[test]
fn sasl_scram_credentials_pass_through_to_kafka() {
    if let Some(b) = real_kafka() {
        println!(
            "skipped: KAFKA_BOOTSTRAP={b} is set; this test configures SASL users on its own Apache Kafka"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let (pw512, pw256, pw_plain) = ("scram512-pw-1e6b", "scram256-pw-8c2f", "plain-pw-77d1");
    let jaas = |module: &str, users: &str| {
        format!("org.apache.kafka.common.security.{module} required{users};")
    };
    let more = format!(
        "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN\n\
         listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config={}\n\
         listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={}\n\
         listener.name.sasl_plaintext.plain.sasl.jaas.config={}",
        jaas("scram.ScramLoginModule", ""),
        jaas("scram.ScramLoginModule", ""),
        jaas(
            "plain.PlainLoginModule",
            &format!(" user_cw-plain=\"{pw_plain}\"")
        ),
    );
    let users = format!(
        "--add-scram SCRAM-SHA-512=[name=cw-512,password={pw512}] \
         --add-scram SCRAM-SHA-256=[name=cw-256,password={pw256}]"
    );
    let plain = kafka_with_listener("SASL_PLAINTEXT", port, &more, &users)
        .unwrap_or_else(|| panic!("KAFKA_BOOTSTRAP is not set"));
    let input = unique("sasl-in");
    plain.create_topic(&input, 1, false);
    let evs = weekly("pii-sasl-customer", 6);
    plain.produce(&input, &evs, Format::Protobuf, |_| 0);

    let sasl = |mech: &str, user: &str, pw: &str| {
        metadata_ok(
            &bootstrap,
            &[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", mech),
                ("sasl.username", user),
                ("sasl.password", pw),
            ],
        )
    };
    let up = wait_for(Duration::from_secs(30), || {
        sasl("SCRAM-SHA-512", "cw-512", pw512).then_some(())
    });
    assert!(up.is_some(), "SCRAM-SHA-512 with the right password");
    assert!(
        !metadata_ok(&bootstrap, &[]),
        "a client without credentials is refused (else this test proves nothing)"
    );
    assert!(
        sasl("PLAIN", "cw-plain", pw_plain),
        "PLAIN with the right password"
    );
    assert!(
        !sasl("PLAIN", "cw-plain", "wrong-pw-3a7d"),
        "PLAIN with a wrong password"
    );

    let with = |app: &str, mech: &str, user: &str, pw_ref: &str| {
        let mut s = settings_for_topic(&plain, app, &input);
        s.kafka.bootstrap_servers = bootstrap.clone();
        let p = &mut s.kafka.properties;
        p.insert("security.protocol".into(), "SASL_PLAINTEXT".into());
        p.insert("sasl.mechanism".into(), mech.into());
        p.insert("sasl.username".into(), user.into());
        p.insert("sasl.password".into(), pw_ref.into());
        s
    };
    let secrets = [pw512, pw256, pw_plain, "wrong-pw-3a7d"];

    // Password from the environment, SCRAM-SHA-512.
    let s = with(
        &unique("cw-sasl-env"),
        "SCRAM-SHA-512",
        "cw-512",
        "env:CW_SASL_PASSWORD",
    );
    let mut svc = Service::start(s, &[("CW_SASL_PASSWORD", pw512)]);
    svc.wait_ready();
    svc.wait_handled(evs.len() as u64);
    let seen = svc.get("/customers/pii-sasl-customer", None);
    assert!(
        seen.as_ref()
            .is_some_and(|r| r.0 == 200 && r.1.contains("\"purchases\":6")),
        "{seen:?}"
    );
    let (code, log) = svc.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_absent(&log, &secrets, "the service log (SCRAM-SHA-512, env:)");

    // Password from a file, SCRAM-SHA-256.
    let pw_file = dir.path().join("kafka-password");
    std::fs::write(&pw_file, format!("{pw256}\n")).unwrap_or_else(|e| panic!("{e}"));
    let s = with(
        &unique("cw-sasl-file"),
        "SCRAM-SHA-256",
        "cw-256",
        &format!("file:{}", pw_file.display()),
    );
    let mut svc = Service::start(s, &[]);
    svc.wait_ready();
    svc.wait_handled(evs.len() as u64);
    let (code, log) = svc.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_absent(&log, &secrets, "the service log (SCRAM-SHA-256, file:)");

    // A wrong password: the service stops, says authentication failed, and
    // prints neither the password it was given nor the right one.
    let s = with(
        &unique("cw-sasl-wrong"),
        "SCRAM-SHA-512",
        "cw-512",
        "env:CW_SASL_PASSWORD",
    );
    let svc = Service::start(s, &[("CW_SASL_PASSWORD", "wrong-pw-3a7d")]);
    let (code, log) = svc.exit_within(Duration::from_secs(60));
    assert_eq!(code, Some(2), "exits with an error:\n{log}");
    let last_line = log.lines().last().unwrap_or_default();
    assert!(
        last_line.starts_with("error:") && last_line.contains("Authentication"),
        "the error says authentication failed: {last_line}\n{log}"
    );
    assert!(
        log.contains("SASL authentication error"),
        "the log has librdkafka's detail:\n{log}"
    );
    assert_absent(&log, &secrets, "the service log (wrong password)");
}

// ----------------------------------------------------------------- Kafka TLS

fn openssl(args: &[&str], dir: &Path) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A self-signed certificate for 127.0.0.1: `NAME.pem` and `NAME.key`,
/// the key encrypted with `pass` when given.
fn self_signed(dir: &Path, name: &str, pass: Option<&str>) -> bool {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        &key,
        "-out",
        &cert,
    ];
    let passout = pass.map(|p| format!("pass:{p}"));
    match &passout {
        Some(p) => args.extend(["-passout", p.as_str()]),
        None => args.push("-nodes"),
    }
    openssl(&args, dir)
}

/// TLS with certificates made by openssl: the service verifies the broker
/// against `ssl.ca.location` and presents a client certificate whose key is
/// unlocked by `ssl.key.password` from the environment. With a CA that did
/// not sign the broker's certificate it stops and says so.
#[test]
fn tls_settings_pass_through_to_kafka() {
    if let Some(b) = real_kafka() {
        println!(
            "skipped: KAFKA_BOOTSTRAP={b} is set; this test runs its own Apache Kafka with a TLS listener"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let key_pw = "client-key-pw-5b9e";
    if !(self_signed(d, "server", None)
        && self_signed(d, "client", Some(key_pw))
        && self_signed(d, "stranger", None))
    {
        println!("skipped: openssl could not make certificates (is it installed?)");
        return;
    }
    // The broker's PEM keystore: its certificate and (unencrypted PKCS#8) key
    // in one file; it trusts the client's self-signed certificate.
    let server_pem = std::fs::read_to_string(d.join("server.pem")).unwrap_or_default()
        + &std::fs::read_to_string(d.join("server.key")).unwrap_or_default();
    std::fs::write(d.join("server-keystore.pem"), server_pem).unwrap_or_else(|e| panic!("{e}"));
    let tls_port = free_port();
    let more = format!(
        "ssl.keystore.type=PEM\n\
         ssl.keystore.location={}\n\
         ssl.truststore.type=PEM\n\
         ssl.truststore.location={}\n\
         ssl.client.auth=required",
        d.join("server-keystore.pem").display(),
        d.join("client.pem").display(),
    );
    let broker = kafka_with_listener("SSL", tls_port, &more, "")
        .unwrap_or_else(|| panic!("KAFKA_BOOTSTRAP is not set"));

    let bootstrap = format!("127.0.0.1:{tls_port}");
    let ca = d.join("server.pem").display().to_string();
    let cert = d.join("client.pem").display().to_string();
    let key = d.join("client.key").display().to_string();
    let tls: Vec<(&str, &str)> = vec![
        ("security.protocol", "SSL"),
        ("ssl.ca.location", &ca),
        ("ssl.certificate.location", &cert),
        ("ssl.key.location", &key),
        ("ssl.key.password", key_pw),
    ];
    let tls_up = wait_for(Duration::from_secs(30), || {
        metadata_ok(&bootstrap, &tls).then_some(())
    });
    assert!(tls_up.is_some(), "a TLS client gets metadata");
    assert!(
        !metadata_ok(&bootstrap, &[]),
        "a plaintext client is refused on the TLS port (else this test proves nothing)"
    );

    // The input topic (on the plaintext listener) and its events, over TLS.
    let input = unique("tls-in");
    broker.create_topic(&input, 1, false);
    let mut pc = ClientConfig::new();
    pc.set("bootstrap.servers", &bootstrap);
    for (k, v) in &tls {
        pc.set(*k, *v);
    }
    let producer: BaseProducer = pc.create().unwrap_or_else(|e| panic!("{e}"));
    let evs = weekly("pii-tls-customer", 5);
    for e in &evs {
        let bytes = codec::encode(e, Format::Protobuf);
        let r = BaseRecord::to(&input)
            .partition(0)
            .key(e.customer_id.as_bytes())
            .payload(&bytes);
        producer.send(r).unwrap_or_else(|(e, _)| panic!("{e}"));
    }
    producer
        .flush(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));

    let holder = Broker::external(&bootstrap);
    let with = |app: &str, ca: &str| {
        let mut s = settings_for_topic(&holder, app, &input);
        let p = &mut s.kafka.properties;
        p.insert("security.protocol".into(), "SSL".into());
        p.insert("ssl.ca.location".into(), ca.into());
        p.insert("ssl.certificate.location".into(), cert.clone());
        p.insert("ssl.key.location".into(), key.clone());
        p.insert("ssl.key.password".into(), "env:CW_SSL_KEY_PASSWORD".into());
        s
    };
    let mut svc = Service::start(
        with(&unique("cw-tls"), &ca),
        &[("CW_SSL_KEY_PASSWORD", key_pw)],
    );
    svc.wait_ready();
    svc.wait_handled(evs.len() as u64);
    let seen = svc.get("/customers/pii-tls-customer", None);
    assert!(
        seen.as_ref()
            .is_some_and(|r| r.0 == 200 && r.1.contains("\"purchases\":5")),
        "{seen:?}"
    );
    let (code, log) = svc.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_absent(&log, &[key_pw], "the service log (TLS)");

    // Trusting the wrong CA: the broker's certificate does not verify.
    let stranger = d.join("stranger.pem").display().to_string();
    let svc = Service::start(
        with(&unique("cw-tls-wrong"), &stranger),
        &[("CW_SSL_KEY_PASSWORD", key_pw)],
    );
    let (code, log) = svc.exit_within(Duration::from_secs(60));
    assert_eq!(code, Some(2), "exits with an error:\n{log}");
    let last_line = log.lines().last().unwrap_or_default();
    assert!(
        last_line.starts_with("error:") && last_line.contains("SSL"),
        "the error says TLS failed: {last_line}\n{log}"
    );
    assert!(
        log.contains("certificate verify failed"),
        "the log has librdkafka's detail:\n{log}"
    );
    assert_absent(&log, &[key_pw], "the service log (wrong CA)");
}

// ----------------------------------------------------------------- admin HTTP

/// With no `[http]` section the admin server listens on loopback only.
#[test]
fn the_admin_http_binds_to_loopback_by_default() {
    let defaults = Settings::default();
    let addr: SocketAddr = defaults
        .http
        .listen
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(addr.ip().is_loopback(), "{addr}");
    assert!(
        defaults.http.customers_endpoint && defaults.http.bearer_token.is_none(),
        "on, without a token: safe only because it is loopback"
    );
    // What an operator sees for a file without `[http]`.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "application_id = \"x\"\n").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_churnwatch"))
        .arg("check-config")
        // The service names its brokers (none is assumed).
        .env("CHURNWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        .arg(&config)
        .env_remove("CHURNWATCH_HTTP__LISTEN")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"127.0.0.1:9090\""), "{text}");

    // The running service: reachable on 127.0.0.1:9090, not on this host's
    // other address (when it has one and the port is free to use).
    if TcpStream::connect("127.0.0.1:9090").is_ok() {
        println!("skipped the running part: something already listens on 127.0.0.1:9090");
        return;
    }
    let outside = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    let broker = Broker::start();
    let s = settings(&broker, &unique("cw-loopback"), 1);
    let mut table: toml::Table =
        toml::from_str(&toml::to_string(&s).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    table.remove("http");
    let mut svc = Service::start_toml(&table.to_string(), &[], 9090);
    svc.wait_ready();
    assert_eq!(
        common::http_request("127.0.0.1:9090", "/healthz", None).map(|r| r.0),
        Some(200)
    );
    match outside {
        Some(ip) => assert!(
            TcpStream::connect_timeout(&SocketAddr::new(ip, 9090), Duration::from_secs(2)).is_err(),
            "the admin port answers on {ip}, not only on loopback"
        ),
        None => println!("no non-loopback address on this host: checked loopback only"),
    }
    let (code, log) = svc.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// `/customers/{id}` off; on with a token from the file, from an `env:`
/// reference, from a `file:` reference and from `CHURNWATCH_HTTP__BEARER_TOKEN`;
/// every refusal is a 401 and is counted; probes and metrics stay open.
#[test]
fn the_customers_endpoint_can_be_turned_off_or_guarded_by_a_token() {
    let broker = Broker::start();
    let first = unique("cw-http");
    let base = settings(&broker, &first, 1);
    let evs = weekly("pii-http-customer", 4);
    broker.produce(&base.kafka.input_topic, &evs, Format::Protobuf, |_| 0);
    let input = base.kafka.input_topic.clone();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tok-from-file-81c4\n").unwrap_or_else(|e| panic!("{e}"));

    let variant = |app: &str, endpoint: bool, token: Option<String>| {
        let mut s = settings_for_topic(&broker, app, &input);
        s.http.customers_endpoint = endpoint;
        s.http.bearer_token = token;
        s
    };
    let off = Service::start(variant(&unique("cw-off"), false, None), &[]);
    let literal = Service::start(
        variant(&first, true, Some("tok-in-config-2e5f".into())),
        &[],
    );
    let env_ref = Service::start(
        variant(
            &unique("cw-envref"),
            true,
            Some("env:CW_ADMIN_TOKEN".into()),
        ),
        &[("CW_ADMIN_TOKEN", "tok-from-env-ref-7a0c")],
    );
    let file_ref = Service::start(
        variant(
            &unique("cw-fileref"),
            true,
            Some(format!("file:{}", token_file.display())),
        ),
        &[],
    );
    let env_var = Service::start(
        variant(&unique("cw-envvar"), true, None),
        &[("CHURNWATCH_HTTP__BEARER_TOKEN", "tok-env-override-93bd")],
    );
    let mut all = vec![
        (off, ""),
        (literal, "tok-in-config-2e5f"),
        (env_ref, "tok-from-env-ref-7a0c"),
        (file_ref, "tok-from-file-81c4"),
        (env_var, "tok-env-override-93bd"),
    ];
    for (svc, _) in &mut all {
        svc.wait_ready();
        svc.wait_handled(evs.len() as u64);
    }
    let path = "/customers/pii-http-customer";
    let mut iter = all.into_iter();
    let (off, _) = iter.next().unwrap_or_else(|| panic!("five services"));

    // Off: the route does not exist, whatever the credentials; the rest stays.
    assert_eq!(off.get(path, None).map(|r| r.0), Some(404));
    let body = off.get(path, Some("Bearer anything")).unwrap_or_default().1;
    assert!(!body.contains("purchases"), "{body}");
    assert_eq!(off.get("/metrics", None).map(|r| r.0), Some(200));
    assert_eq!(off.get("/readyz", None).map(|r| r.0), Some(200));
    assert_eq!(off.metric("churnwatch_http_unauthorized_total"), 0.0);
    let (code, log) = off.stop();
    assert_eq!(code, Some(0), "{log}");

    for (svc, token) in iter {
        let refused = [
            None,
            Some("Bearer wrong-token".to_owned()),
            Some(format!("Basic {token}")),
            Some(format!("Bearer {token}x")),
        ];
        for auth in &refused {
            let r = svc.get(path, auth.as_deref()).unwrap_or_default();
            assert_eq!(r.0, 401, "{auth:?} ({token}): {}", r.1);
            assert!(!r.1.contains("purchases"), "{}", r.1);
        }
        let ok = svc
            .get(path, Some(&format!("Bearer {token}")))
            .unwrap_or_default();
        assert!(
            ok.0 == 200 && ok.1.contains("\"purchases\":4"),
            "{token}: {ok:?}"
        );
        assert_eq!(
            svc.metric("churnwatch_http_unauthorized_total"),
            refused.len() as f64,
            "every refusal counted ({token})"
        );
        assert_eq!(svc.get("/metrics", None).map(|r| r.0), Some(200));
        assert_eq!(svc.get("/healthz", None).map(|r| r.0), Some(200));
        let (code, log) = svc.stop();
        assert_eq!(code, Some(0), "{log}");
        assert_absent(&log, &[token], "the service log");
    }
}

// ------------------------------------------------------------------- logs

/// Runs the service over a realistic population plus invalid, undecodable,
/// late, duplicate and erasure events, at `level` in `format`, and returns
/// its log and every customer id it saw.
fn run_and_log(
    broker: &Broker,
    input: &str,
    population: &[InteractionEvent],
    level: &str,
    format: &str,
) -> String {
    let app = unique("cw-logs");
    let mut s = settings_for_topic(broker, &app, input);
    s.log.level = level.into();
    s.log.format = if format == "json" {
        churnwatch::settings::LogFormat::Json
    } else {
        churnwatch::settings::LogFormat::Text
    };
    // Refits (logged at info) on this small population.
    s.model.min_customers = 20;
    let mut svc = Service::start(s, &[]);
    svc.wait_ready();
    let total = population.len() as u64 + EXTRA_MESSAGES;
    svc.wait_handled(total);
    // At least one refit (logged at info), then stop.
    let refit = wait_for(Duration::from_secs(30), || {
        (svc.metric("churnwatch_model_refits_total") >= 1.0).then_some(())
    });
    assert!(refit.is_some(), "no refit:\n{}", svc.stderr());
    // Every path was taken: dead letters, late, duplicate, forgotten, outreach.
    let text = svc.get("/metrics", None).unwrap_or_default().1;
    assert_eq!(
        common::scraped(&text, "churnwatch_events_rejected_total"),
        6.0
    );
    for reason in ["late", "duplicate", "forgotten"] {
        assert!(
            text.contains(&format!(
                "churnwatch_events_dropped_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {text}"
        );
    }
    assert!(common::scraped(&text, "churnwatch_outreach_emitted_total") >= 1.0);
    // The service saw the customers: there was something to leak.
    let seen = svc.get("/customers/cust-000001", None).map(|r| r.0);
    assert_eq!(seen, Some(200));
    let (code, log) = svc.stop();
    assert_eq!(code, Some(0), "{log}");
    log
}

/// Messages `bad_and_odd_input` adds to the population.
const EXTRA_MESSAGES: u64 = 11;

/// Input that takes every logging path a customer's message can: invalid
/// events (dead-lettered), undecodable bytes and JSON, a late event, a
/// duplicate, an erasure and an event for the erased customer.
fn bad_and_odd_input(broker: &Broker, input: &str, last: i64) {
    let p = broker.producer();
    let enc = |e: &InteractionEvent| codec::encode(e, Format::Protobuf);
    let send = |key: &str, value: Vec<u8>, json: bool| {
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some(if json {
                "application/json"
            } else {
                "application/x-protobuf"
            }),
        });
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(input)
            .partition(0)
            .key(key.as_bytes())
            .payload(value.as_slice())
            .headers(headers);
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    p.poll(Duration::from_millis(50));
                }
            }
        }
    };
    // Invalid: dead-lettered with a reason.
    send(
        "pii-bad-nps",
        enc(&events::nps("pii-bad-nps-e1", "pii-bad-nps", last, 11)),
        false,
    );
    send(
        "pii-bad-amount",
        enc(&events::purchase(
            "pii-bad-amount-e1",
            "pii-bad-amount",
            last,
            -5.0,
        )),
        false,
    );
    send(
        "pii-bad-future",
        enc(&events::purchase(
            "pii-bad-future-e1",
            "pii-bad-future",
            4_000_000_000,
            1.0,
        )),
        false,
    );
    send(
        "pii-bad-long",
        enc(&events::purchase(
            "e",
            &format!("pii-bad-long-{}", "x".repeat(300)),
            last,
            1.0,
        )),
        false,
    );
    // Undecodable: protobuf garbage, and JSON whose error quotes the input.
    send("pii-raw-key", b"pii-raw-payload \xff\xfe".to_vec(), false);
    send(
        "pii-json-key",
        br#"{"eventId":"pii-json-e1","customerId":"pii-json-customer","occurredAt":"pii-not-a-time"}"#.to_vec(),
        true,
    );
    // Late (beyond the allowed lateness) and a redelivered duplicate.
    send(
        "cust-000002",
        enc(&events::purchase(
            "pii-late-e1",
            "cust-000002",
            last - 30 * DAY,
            1.0,
        )),
        false,
    );
    send(
        "pii-dup",
        enc(&events::purchase("pii-dup-e1", "pii-dup", last, 3.0)),
        false,
    );
    send(
        "pii-dup",
        enc(&events::purchase("pii-dup-e1", "pii-dup", last, 3.0)),
        false,
    );
    // Erasure, then an older event for the erased customer (forgotten).
    send(
        "cust-000003",
        enc(&events::erasure("pii-erase-e1", "cust-000003", last + 60)),
        false,
    );
    send(
        "cust-000003",
        enc(&events::purchase(
            "pii-forgotten-e1",
            "cust-000003",
            last,
            2.0,
        )),
        false,
    );
    p.flush(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Logs at info and above carry no customer data: no customer id, event id
/// or payload text appears, in text at info or in JSON at warn, whatever the
/// input did (outreach, refits, dead letters, undecodable input, late,
/// duplicate, erasure).
#[test]
fn logs_at_info_and_above_carry_no_customer_data() {
    let broker = Broker::start();
    let input = unique("logs-in");
    broker.create_topic(&input, 1, false);
    let population: Vec<InteractionEvent> = Generator::new(GenConfig {
        customers: 120,
        span: Span::days(75),
        seed: 11,
        ..GenConfig::default()
    })
    .collect();
    let last = population
        .iter()
        .filter_map(|e| e.occurred_at.as_ref().map(|t| t.seconds))
        .max()
        .unwrap_or(T0);
    broker.produce(&input, &population, Format::Protobuf, |_| 0);
    bad_and_odd_input(&broker, &input, last);

    let ids: std::collections::BTreeSet<&str> =
        population.iter().map(|e| e.customer_id.as_str()).collect();
    for (level, format) in [("info", "text"), ("warn", "json")] {
        let log = run_and_log(&broker, &input, &population, level, format);
        if level == "info" {
            // The log is there, so its silence about customers means something.
            for line in ["restored partition state", "refit", "stopping: draining"] {
                assert!(log.contains(line), "`{line}` missing from:\n{log}");
            }
        }
        // Nothing went wrong in this run (bad input is a warning, and the end
        // of a changelog partition is how a restore ends): no ERROR line for
        // an ops team's alert to fire on.
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        assert!(
            errors.is_empty(),
            "ERROR lines in a healthy {level} {format} run:\n{}",
            errors.join("\n")
        );
        for id in &ids {
            assert!(
                !log.contains(id),
                "customer {id} appears in the {level} log:\n{log}"
            );
        }
        for needle in ["pii-", "cust-"] {
            assert!(
                !log.contains(needle),
                "`{needle}` (customer data) appears in the {level} {format} log:\n{log}"
            );
        }
    }
}

// ------------------------------------------------------------------- erasure

/// Records of the changelog with this key, in order (None = tombstone).
fn changelog_values(broker: &Broker, topic: &str, key: &str) -> Vec<Option<Vec<u8>>> {
    broker
        .read_topic(topic, usize::MAX, Duration::from_secs(8), false)
        .into_iter()
        .filter(|r| r.key.as_deref() == Some(key))
        .map(|r| r.value)
        .collect()
}

/// An erasure removes the customer from memory, `/customers` and the
/// changelog (a tombstone); an older event that arrives later does not bring
/// them back, neither in the running instance nor in a new one restored from
/// the changelog.
#[test]
fn an_erased_customer_stays_erased_across_a_restore() {
    let broker = Broker::start();
    let app = unique("cw-erase");
    let s = settings(&broker, &app, 1);
    let input = s.kafka.input_topic.clone();
    let gone = "pii-erase-me";
    let kept = "pii-keep-me";
    let mut evs = weekly(gone, 8);
    evs.extend(weekly(kept, 8));
    // In time order: one partition, so out of order would be merely late.
    evs.sort_by_key(|e| e.occurred_at.as_ref().map(|t| t.seconds));
    broker.produce(&input, &evs, Format::Protobuf, |_| 0);
    let last = T0 + 7 * 7 * DAY;

    let mut a = Service::start(s.clone(), &[]);
    a.wait_ready();
    a.wait_handled(evs.len() as u64);
    let r = a
        .get(&format!("/customers/{gone}"), None)
        .unwrap_or_default();
    assert!(r.0 == 200 && r.1.contains("\"purchases\":8"), "{r:?}");
    a.wait_metric("churnwatch_customers_tracked", 2.0);

    // The erasure, then an event from before it (within the lateness, so
    // not merely late), then an event of another customer.
    let erased_at = last + 3600;
    let after = vec![
        events::erasure("erase-1", gone, erased_at),
        events::purchase("late-1", gone, erased_at - 1800, 9.0),
        events::purchase("kept-after", kept, erased_at + 3600, 9.0),
    ];
    broker.produce(&input, &after, Format::Protobuf, |_| 0);
    a.wait_handled((evs.len() + after.len()) as u64);
    let r = a
        .get(&format!("/customers/{gone}"), None)
        .unwrap_or_default();
    assert_eq!(r.0, 404, "erased: {r:?}");
    let r = a
        .get(&format!("/customers/{kept}"), None)
        .unwrap_or_default();
    assert!(r.0 == 200 && r.1.contains("\"purchases\":9"), "{r:?}");
    a.wait_metric("churnwatch_customers_tracked", 1.0);
    let text = a.get("/metrics", None).unwrap_or_default().1;
    assert!(
        text.contains("churnwatch_events_dropped_total{reason=\"forgotten\"} 1"),
        "the older event was forgotten: {text}"
    );

    // The changelog: the customer's last record is a tombstone.
    let changelog = s.changelog_topic();
    let values = wait_for(Duration::from_secs(30), || {
        let v = changelog_values(&broker, &changelog, gone);
        (v.last() == Some(&None)).then_some(v)
    });
    let values = values.unwrap_or_else(|| {
        panic!(
            "no tombstone for {gone}: {:?}",
            changelog_values(&broker, &changelog, gone)
                .iter()
                .map(Option::is_some)
                .collect::<Vec<_>>()
        )
    });
    assert!(values.len() >= 2, "a snapshot, then the tombstone");
    let (code, log) = a.stop();
    assert_eq!(code, Some(0), "{log}");

    // While no instance runs, another event from before the erasure arrives.
    let late = vec![events::purchase("late-2", gone, erased_at - 900, 9.0)];
    broker.produce(&input, &late, Format::Protobuf, |_| 0);

    // A new instance restores from the changelog: the customer is not there,
    // and the late event does not bring them back.
    let mut b = Service::start(s.clone(), &[]);
    b.wait_ready();
    b.wait_handled(late.len() as u64);
    let r = b
        .get(&format!("/customers/{gone}"), None)
        .unwrap_or_default();
    assert_eq!(r.0, 404, "restored without the erased customer: {r:?}");
    let r = b
        .get(&format!("/customers/{kept}"), None)
        .unwrap_or_default();
    assert!(r.0 == 200 && r.1.contains("\"purchases\":9"), "{r:?}");
    b.wait_metric("churnwatch_customers_tracked", 1.0);
    let text = b.get("/metrics", None).unwrap_or_default().1;
    assert!(
        text.contains("churnwatch_events_dropped_total{reason=\"forgotten\"} 1"),
        "the late event was forgotten after the restore: {text}"
    );
    let (code, log) = b.stop();
    assert_eq!(code, Some(0), "{log}");
    let values = changelog_values(&broker, &changelog, gone);
    assert_eq!(
        values.last(),
        Some(&None),
        "nothing written for the erased customer after the tombstone"
    );
}
