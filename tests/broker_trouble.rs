//! An unreachable broker at start, as an operator sees it: one clear line at
//! once, summaries instead of bursts of librdkafka ERROR lines, and exit
//! status 2 after `kafka.connect_timeout` with the attempts and last error.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

#[test]
fn an_unreachable_broker_is_said_once_then_summed_up_and_the_start_gives_up_in_time() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:{port}\"\nconnect_timeout = \"12s\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let mut c = churnwatch_testkit::churnwatch_command();
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CHURNWATCH_") || k == "RUST_LOG")
    {
        c.env_remove(k);
    }
    let out = c
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        took < Duration::from_secs(40),
        "gave up after {took:?}: {err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains(&format!("connecting to the brokers at 127.0.0.1:{port}")))
        .unwrap_or_else(|| panic!("no line at once: {err}"));
    assert!(first < 3, "said before anything else: {err}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("broker trouble: "))
            .count(),
        1,
        "the first error once: {err}"
    );
    let errors = lines.iter().filter(|l| l.contains("ERROR")).count();
    assert!(errors <= 3, "no burst of ERROR lines ({errors}): {err}");
    assert!(
        lines.iter().any(
            |l| l.contains("answered within kafka.connect_timeout (12 s)")
                && l.contains("attempts")
        ),
        "{err}"
    );
}
