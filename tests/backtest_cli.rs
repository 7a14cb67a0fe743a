//! `churnwatch backtest` as a user runs it: the binary on files, what it
//! prints, the exit code, and the HTML report opened in headless Chromium.

use std::{
    fmt::Display,
    path::{Path, PathBuf},
    process::Command,
};

use churnwatch::{
    codec::{self, Format},
    events,
    pb::InteractionEvent,
    time::parse_rfc3339,
};
use serde_json::Value;

fn must<T, E: Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn t(text: &str) -> i64 {
    must(parse_rfc3339(text), text)
}

fn churnwatch<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String, String) {
    let out = must(
        churnwatch_testkit::churnwatch_command().args(args).output(),
        "running churnwatch",
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_events(dir: &Path, name: &str, evs: &[InteractionEvent]) -> PathBuf {
    let path = dir.join(name);
    let mut buf = Vec::new();
    for e in evs {
        codec::write_framed(&mut buf, e, Format::Json);
    }
    must(std::fs::write(&path, buf), "writing events");
    path
}

/// Three customers buying through January and February: `a` keeps buying
/// in March, `b` stops at the end of January, `c` only opens a ticket in March.
fn small_history() -> Vec<InteractionEvent> {
    let mut v = Vec::new();
    for d in 1..=28 {
        let day = format!("2026-01-{d:02}T10:00:00Z");
        v.push(events::purchase(&format!("a{d}"), "a", t(&day), 10.0));
        if d % 3 == 0 {
            v.push(events::purchase(&format!("b{d}"), "b", t(&day), 10.0));
            v.push(events::purchase(&format!("c{d}"), "c", t(&day), 10.0));
        }
    }
    for d in 1..=28 {
        let day = format!("2026-02-{d:02}T10:00:00Z");
        v.push(events::purchase(&format!("a2{d}"), "a", t(&day), 10.0));
        if d % 2 == 0 {
            v.push(events::purchase(&format!("c2{d}"), "c", t(&day), 10.0));
        }
    }
    v.push(events::purchase(
        "a-mar",
        "a",
        t("2026-03-05T10:00:00Z"),
        10.0,
    ));
    v.push(events::ticket_opened(
        "c-mar",
        "c",
        t("2026-03-20T10:00:00Z"),
        churnwatch::pb::Channel::Email,
        "c-t1",
    ));
    v.push(events::purchase(
        "a-apr",
        "a",
        t("2026-04-10T10:00:00Z"),
        10.0,
    ));
    v
}

#[test]
fn backtest_reads_the_outcome_after_the_cutoff() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let input = write_events(dir.path(), "ev.jsonl", &small_history());
    let json = dir.path().join("report.json");
    let (code, stdout, stderr) = churnwatch(&[
        "backtest".as_ref(),
        "--input".as_ref(),
        input.as_os_str(),
        "--cutoff".as_ref(),
        "2026-03-01T00:00:00Z".as_ref(),
        "--horizon".as_ref(),
        "30d".as_ref(),
        "--quiet".as_ref(),
        "--json-out".as_ref(),
        json.as_os_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("3 customers scored"), "{stdout}");
    let r: Value = must(
        serde_json::from_str(&must(std::fs::read_to_string(&json), "report")),
        "json",
    );
    // a bought in March; b and c (a ticket is not activity) did not.
    assert_eq!(r["customers"], 3);
    assert_eq!(r["churned"], 2);
    assert!((r["base_rate"].as_f64().unwrap_or(0.0) - 2.0 / 3.0).abs() < 1e-12);
    let buckets = r["frequency"].as_array().cloned().unwrap_or_default();
    let actual: f64 = buckets
        .iter()
        .map(|b| b["mean_actual"].as_f64().unwrap_or(0.0) * b["customers"].as_f64().unwrap_or(0.0))
        .sum();
    assert_eq!(
        actual, 1.0,
        "one active day in the horizon, a's: {buckets:?}"
    );
    assert_eq!(r["risk"]["reliability"].as_array().map(Vec::len), Some(10));
    assert_eq!(r["baselines"].as_array().map(Vec::len), Some(3));
}

fn bad(args: &[&str], input: &Path, want: &[&str]) {
    let mut all: Vec<&std::ffi::OsStr> = vec!["backtest".as_ref(), "--quiet".as_ref()];
    all.push("--input".as_ref());
    all.push(input.as_os_str());
    all.extend(args.iter().map(std::ffi::OsStr::new));
    let (code, stdout, stderr) = churnwatch(&all);
    assert_eq!(code, 2, "{args:?}: stdout {stdout} stderr {stderr}");
    for w in want {
        assert!(stderr.contains(w), "{args:?}: `{w}` not in {stderr}");
    }
}

#[test]
fn bad_input_gets_a_clear_message_and_exit_2() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let input = write_events(dir.path(), "ev.jsonl", &small_history());
    let empty = write_events(dir.path(), "empty.jsonl", &[]);
    bad(
        &["--cutoff", "2026-03-01T00:00:00Z"],
        &empty,
        &["no valid events"],
    );
    bad(
        &["--cutoff", "2025-12-01T00:00:00Z"],
        &input,
        &["at or before the first event", "2026-01-01T10:00:00Z"],
    );
    bad(
        &["--cutoff", "2026-05-01T00:00:00Z"],
        &input,
        &["after the last event", "2026-04-10T10:00:00Z"],
    );
    // Without a's purchases in March and April, all that follows the
    // cutoff is c's ticket: not activity.
    let mut no_activity = small_history();
    no_activity.retain(|e| e.event_id != "a-mar" && e.event_id != "a-apr");
    let no_activity = write_events(dir.path(), "noact.jsonl", &no_activity);
    bad(
        &["--cutoff", "2026-03-01T00:00:00Z", "--horizon", "10d"],
        &no_activity,
        &["no activity event", "purchase"],
    );
    // Data ends 2026-04-10T10:00: 40.42 days after the cutoff.
    bad(
        &["--cutoff", "2026-03-01T00:00:00Z", "--horizon", "60d"],
        &input,
        &["horizon is 60d", "covers only 40.42 days", "at most 40d"],
    );
}

/// Count of data points (circle.pt, rect.bar) inside each
/// `<svg class="plot" data-plot="NAME">` of a DOM dump.
fn points_per_plot(dom: &str) -> Vec<(String, usize)> {
    dom.split("<svg class=\"plot\" data-plot=\"")
        .skip(1)
        .map(|part| {
            let name = part.split('"').next().unwrap_or("").to_owned();
            let body = part.split("</svg>").next().unwrap_or("");
            let n = body.matches("class=\"pt\"").count() + body.matches("class=\"bar\"").count();
            (name, n)
        })
        .collect()
}

#[test]
fn html_report_renders_every_plot_with_data_in_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        println!("SKIPPED: no chromium binary on PATH (Debian: apt-get install -y chromium)");
        return;
    };
    let dir = must(tempfile::tempdir(), "tempdir");
    let input = dir.path().join("pop.jsonl");
    let (code, _, stderr) = churnwatch(&[
        "generate".as_ref(),
        "--customers".as_ref(),
        "1500".as_ref(),
        "--span".as_ref(),
        "90d".as_ref(),
        "--out".as_ref(),
        input.as_os_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let html = dir.path().join("report.html");
    let (code, _, stderr) = churnwatch(&[
        "backtest".as_ref(),
        "--input".as_ref(),
        input.as_os_str(),
        "--cutoff".as_ref(),
        "2026-03-01T00:00:00Z".as_ref(),
        "--horizon".as_ref(),
        "30d".as_ref(),
        "--quiet".as_ref(),
        "--html-out".as_ref(),
        html.as_os_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let text = must(std::fs::read_to_string(&html), "html");
    // Self-contained: nothing to fetch.
    for needle in ["<script src", "<link", "http://", "https://"] {
        let stray = text.replace("http://www.w3.org/2000/svg", "");
        assert!(!stray.contains(needle), "{needle} in the report");
    }
    let profile = must(tempfile::tempdir(), "profile");
    let out = must(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-quic",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", html.display()))
            .output(),
        "running chromium",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let plots = points_per_plot(&dom);
    let names: Vec<&str> = plots.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "reliability",
            "gains",
            "lift",
            "histograms",
            "frequency",
            "outreach"
        ],
        "{dom}"
    );
    for (name, n) in &plots {
        assert!(*n > 0, "plot {name} rendered without data points");
    }
    assert!(
        dom.contains("<table id=\"figures\">"),
        "figures table missing"
    );
    assert!(dom.contains("<th>risk</th>"), "risk row missing");
}
