//! Kafka TLS: the broker's own SSL listener, client certificates required.

use super::support::*;
use crate::common::{free_port, settings_for_topic, unique, wait_for, Broker};
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use churnwatch::codec::{self, Format};
use rdkafka::{
    producer::{BaseProducer, BaseRecord, Producer},
    ClientConfig,
};

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
