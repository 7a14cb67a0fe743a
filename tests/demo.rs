//! `churnwatch demo` as a new user meets it: one command, nothing
//! installed, and a live view of what the service decides.

use churnwatch_testkit as common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use churnwatch::pb::OutreachRequested;
use common::{free_port, wait_for, Broker, Running};
use prost::Message;

/// The body of a plain HTTP/1.1 GET, if the status is 200.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let ok = text.split_whitespace().nth(1) == Some("200");
    ok.then(|| text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

/// The number after `label` at the start of the last line that has it
/// (`events     9,207 consumed ...` gives 9207).
fn last_count(lines: &[String], label: &str) -> Option<u64> {
    lines.iter().rev().find_map(|l| {
        let rest = l.strip_prefix(label)?;
        rest.split_whitespace()
            .next()?
            .trim_end_matches(':')
            .replace(',', "")
            .parse()
            .ok()
    })
}

#[test]
fn the_demo_runs_the_whole_service_and_shows_what_it_decides() {
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let mut demo = Running(
        churnwatch_testkit::churnwatch_command()
            .args(["demo", "--customers", "300", "--duration", "20s"])
            .args(["--http", &http])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stdout = demo.0.stdout.take().unwrap_or_else(|| panic!("piped"));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
        }
    });
    let snapshot = || lines.lock().map(|l| l.clone()).unwrap_or_default();
    let started = Instant::now();

    // The in-process Kafka's address is printed for other tools...
    let bootstrap = wait_for(Duration::from_secs(30), || {
        snapshot().iter().find_map(|l| {
            l.strip_prefix("kafka: ")
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned)
        })
    })
    .unwrap_or_else(|| panic!("no `kafka: HOST:PORT` line: {:?}", snapshot()));
    assert!(bootstrap.starts_with("127.0.0.1:"), "{bootstrap}");
    // ...and another client reads the outreach topic there.
    let outreach = Broker::external(&bootstrap).read_topic(
        "churnwatch-outreach",
        1,
        Duration::from_secs(15),
        false,
    );
    let first = outreach
        .first()
        .unwrap_or_else(|| panic!("no outreach on {bootstrap} after {:?}", started.elapsed()));
    let o = OutreachRequested::decode(first.value.as_deref().unwrap_or_default())
        .unwrap_or_else(|e| panic!("outreach decodes: {e}"));
    assert_eq!(first.key.as_deref(), Some(o.customer_id.as_str()));
    assert_eq!(o.outreach_id.len(), 32);

    // The admin HTTP serves the running service's metrics.
    let metrics = wait_for(Duration::from_secs(10), || {
        get(port, "/metrics").filter(|b| b.contains("churnwatch_outreach_emitted_total{"))
    });
    assert!(metrics.is_some(), "{:?}", get(port, "/metrics"));

    // --duration 20s: it stops by itself, cleanly.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(s)) = demo.0.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = reader.join();
    let out = snapshot();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", out.join("\n"));
    assert!(started.elapsed() >= Duration::from_secs(20), "ran its 20 s");

    // What the user saw: counts...
    let consumed = last_count(&out, "events").unwrap_or(0);
    assert!(consumed > 1000, "{}", out.join("\n"));
    assert!(last_count(&out, "outreach").unwrap_or(0) > 0);
    assert_eq!(
        last_count(&out, "customers"),
        Some(300),
        "{}",
        out.join("\n")
    );
    // ...and the latest outreach decisions, with their reasons.
    let header = out
        .iter()
        .rposition(|l| l.starts_with("latest outreach"))
        .unwrap_or_else(|| panic!("{}", out.join("\n")));
    let decisions: Vec<&String> = out[header..]
        .iter()
        .filter(|l| l.trim_start().starts_with("cust-"))
        .collect();
    assert!(!decisions.is_empty(), "{}", out.join("\n"));
    let playbooks = [
        "check_in",
        "win_back",
        "service_recovery",
        "escalate_to_agent",
        "feedback_follow_up",
        "renewal_save",
    ];
    for d in &decisions {
        assert!(playbooks.iter().any(|p| d.contains(p)), "{d}");
        assert!(d.contains("T00:") || d.contains('Z'), "decided at: {d}");
        assert!(d.contains(": "), "top reason with evidence: {d}");
    }
    assert!(
        out.last().is_some_and(|l| l.starts_with("stopped:")),
        "{}",
        out.join("\n")
    );
}
