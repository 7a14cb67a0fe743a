//! The admin HTTP: loopback by default, `/customers` off or guarded.

use super::support::*;
use crate::common::{settings, settings_for_topic, unique, Broker};
use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use churnwatch::{codec::Format, settings::Settings};

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
    let out = churnwatch_testkit::churnwatch_command()
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
        crate::common::http_request("127.0.0.1:9090", "/healthz", None).map(|r| r.0),
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
