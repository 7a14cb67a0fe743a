//! Kafka SASL: SCRAM and PLAIN credentials pass through to librdkafka.

use super::support::*;
use crate::common::{free_port, settings_for_topic, unique, wait_for};
use std::time::Duration;

use churnwatch::codec::Format;

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
