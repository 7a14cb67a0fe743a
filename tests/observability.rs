//! The dashboards and alerts hold against what churnwatch really exports.
//!
//! - Without any tool: every metric family churnwatch registers is on the
//!   Grafana dashboard, and every `churnwatch_*` / `churnwatch:*` name the
//!   dashboard and the rule files use exists (as a metric or a recording rule).
//! - With Prometheus: the admin server runs on a loopback port with a small
//!   workload moving every metric, and `scripts/check-observability.sh`
//!   scrapes it with a real Prometheus and evaluates every expression. Runs
//!   when `promtool` and `prometheus` are on PATH, or when `CI` is set (the
//!   script installs them); otherwise it says it skipped.

use std::{
    collections::BTreeSet,
    fmt::Display,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use churnwatch::{
    http::{self, AdminConfig, AdminSource, CustomerView},
    kind::EventKind,
    metrics::Metrics,
    outreach::Suppression,
    pb::Playbook,
    score::Level,
    validate::Rejection,
};

fn must<T, E: Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    must(std::fs::read_to_string(repo(path)), path)
}

/// Every sample name the registry exports: counters and gauges as named,
/// histograms as `_bucket`, `_sum` and `_count`.
fn exported(metrics: &Metrics) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut families = BTreeSet::new();
    let mut samples = BTreeSet::new();
    for f in metrics.registry.gather() {
        let name = f.name().to_owned();
        if f.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
            for suffix in ["_bucket", "_sum", "_count"] {
                samples.insert(format!("{name}{suffix}"));
            }
        } else {
            samples.insert(name.clone());
        }
        families.insert(name);
    }
    (families, samples)
}

/// The `churnwatch_…` and `churnwatch:…` names in a text. A simple
/// alternation in a name regex (`churnwatch_events_(consumed|rejected)_total`)
/// is expanded into each name.
fn names_in(text: &str) -> BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':';
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("churnwatch") {
        let tail = &rest[at..];
        let boundary = rest[..at]
            .chars()
            .last()
            .is_none_or(|c| !is_name(c) && !c.is_ascii_alphabetic());
        let head_len = tail.find(|c: char| !is_name(c)).unwrap_or(tail.len());
        // A colon closing a name is prose ("churnwatch: the ..."), not PromQL.
        let head = tail[..head_len].trim_end_matches(':');
        rest = &tail[head_len.max(1)..];
        let prefixed = head.starts_with("churnwatch_") || head.starts_with("churnwatch:");
        if !boundary || !prefixed || head.len() <= "churnwatch_".len() {
            continue;
        }
        let after = &tail[head_len..];
        let alternation = after
            .strip_prefix('(')
            .and_then(|a| a.find(')').map(|end| (&a[..end], &a[end + 1..])));
        match alternation {
            Some((alts, suffix_text)) if head.ends_with('_') => {
                let suffix_len = suffix_text
                    .find(|c: char| !is_name(c))
                    .unwrap_or(suffix_text.len());
                for alt in alts.split('|') {
                    out.insert(format!("{head}{alt}{}", &suffix_text[..suffix_len]));
                }
            }
            _ => {
                out.insert(head.to_owned());
            }
        }
    }
    out
}

/// The PromQL of every dashboard target.
fn dashboard_exprs() -> Vec<String> {
    let d: serde_json::Value = must(
        serde_json::from_str(&read("deploy/grafana/churnwatch.json")),
        "dashboard JSON",
    );
    let mut out = Vec::new();
    let mut stack = vec![&d];
    while let Some(v) = stack.pop() {
        if let Some(panels) = v.get("panels").and_then(|p| p.as_array()) {
            stack.extend(panels.iter());
        }
        for t in v
            .get("targets")
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(e) = t.get("expr").and_then(|e| e.as_str()) {
                out.push(e.to_owned());
            }
        }
    }
    out
}

struct NoCustomers;

impl AdminSource for NoCustomers {
    fn readiness(&self) -> Result<String, String> {
        Ok("ready: owns partitions [0]".into())
    }
    fn customer(&self, _: &str) -> Option<CustomerView> {
        None
    }
}

fn metrics_with_router() -> (Arc<Metrics>, axum::Router) {
    let metrics = Arc::new(must(Metrics::new(), "metrics"));
    let cfg = AdminConfig {
        customers_endpoint: true,
        bearer_token: Some("t0ken".into()),
    };
    let router = http::router(metrics.clone(), Arc::new(NoCustomers), cfg);
    (metrics, router)
}

#[test]
fn every_metric_is_on_the_dashboard_and_every_name_used_exists() {
    let (metrics, _router) = metrics_with_router();
    // Labelled families export nothing until a label set exists: move them
    // all first (a new metric must be added to `tick` to be checked here).
    tick(&metrics, 0);
    let (families, samples) = exported(&metrics);
    assert!(families.len() >= 25, "{families:?}");
    assert!(families.contains(http::UNAUTHORIZED_METRIC), "{families:?}");

    let dashboard: String = dashboard_exprs().join("\n");
    let recording = read("deploy/prometheus/recording.yml");
    let alerts = read("deploy/prometheus/alerts.yml");
    let recorded: BTreeSet<String> = recording
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("- record:")
                .map(|n| n.trim().to_owned())
        })
        .collect();
    assert!(recorded.len() >= 5, "{recorded:?}");

    let on_dashboard = names_in(&dashboard);
    let missing: Vec<&String> = families
        .iter()
        // The process collector's standard families are not churnwatch's.
        .filter(|f| !f.starts_with("process_"))
        .filter(|f| {
            !on_dashboard.iter().any(|n| {
                n == *f
                    || n.strip_prefix(f.as_str())
                        .is_some_and(|s| s.starts_with('_'))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "metric families with no dashboard panel: {missing:?}"
    );

    for (file, text) in [
        ("dashboard", &dashboard),
        ("recording.yml", &recording),
        ("alerts.yml", &alerts),
    ] {
        for name in names_in(text) {
            let known = if name.contains(':') {
                recorded.contains(&name)
            } else {
                samples.contains(&name)
            };
            assert!(
                known,
                "{file} uses `{name}`, which churnwatch does not export (nor a recording rule)"
            );
        }
    }
}

/// Every name the dashboard and the rules use exists at the first scrape,
/// before anything happened (zeros, not gaps). Series labelled by partition
/// cannot exist before a partition is assigned: they exist from then on.
#[test]
fn every_name_the_deploy_files_use_exists_from_the_first_scrape() {
    let (metrics, _router) = metrics_with_router();
    let used: BTreeSet<String> = [
        dashboard_exprs().join("\n"),
        read("deploy/prometheus/recording.yml"),
        read("deploy/prometheus/alerts.yml"),
    ]
    .iter()
    .flat_map(|t| names_in(t))
    .filter(|n| !n.contains(':'))
    .collect();
    let by_partition = [
        "churnwatch_events_consumed_total",
        "churnwatch_consumer_lag_messages",
        "churnwatch_event_time_lag_seconds",
        "churnwatch_changelog_restore_records_total",
        // A histogram per partition, observed when the restore ends.
        "churnwatch_changelog_restore_seconds_bucket",
        "churnwatch_changelog_restore_seconds_count",
        "churnwatch_changelog_restore_seconds_sum",
    ];
    // Set when the pipeline is created (the prior in use), before it owns
    // any partition: not by `Metrics::new`, which knows no configuration.
    let at_pipeline_start = ["churnwatch_model_parameter", "churnwatch_risk_coefficient"];
    // No value before the first learning, and no NaN for "none": absent
    // until then (the dashboard shows "No data").
    let once_learned = [
        "churnwatch_risk_training_auc",
        "churnwatch_risk_training_brier",
    ];
    let (_, at_start) = exported(&metrics);
    let absent: Vec<&String> = used.iter().filter(|n| !at_start.contains(*n)).collect();
    let unexplained: Vec<&&String> = absent
        .iter()
        .filter(|n| {
            !by_partition.contains(&n.as_str())
                && !at_pipeline_start.contains(&n.as_str())
                && !once_learned.contains(&n.as_str())
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "missing at the first scrape: {unexplained:?}"
    );
    // What the pipeline sets when it is created.
    metrics.model_param.with_label_values(&["r"]).set(0.243);
    metrics.set_risk_coefficients(&[0.0; churnwatch::score::learn::K]);
    metrics.partition_assigned(0);
    let (_, assigned) = exported(&metrics);
    for n in &used {
        if !n.starts_with("churnwatch_changelog_restore_seconds")
            && !once_learned.contains(&n.as_str())
        {
            assert!(
                assigned.contains(n),
                "{n} is missing once a partition is assigned"
            );
        }
    }
    let text = metrics.render();
    assert!(
        text.contains("churnwatch_outreach_outcomes_total{outcome=\"converted\",playbook=\"PLAYBOOK_WIN_BACK\"} 0")
            || text.contains("churnwatch_outreach_outcomes_total{outcome=\"converted\",playbook=\"WIN_BACK\"} 0"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "churnwatch_build_info{{arch=\"{}\",os=\"{}\",version=\"{}\"}} 1",
            std::env::consts::ARCH,
            std::env::consts::OS,
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    #[cfg(target_os = "linux")]
    for p in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(at_start.contains(p), "{p}");
    }
}

/// Each metric's help text is the first sentence of its row in
/// docs/metrics.md (markdown removed), its type and labels agree, and every
/// row there names a metric the service registers.
#[test]
fn help_texts_and_the_metrics_reference_agree() {
    let (metrics, _router) = metrics_with_router();
    tick(&metrics, 0);
    let reference = read("docs/metrics.md");
    let mut rows = std::collections::BTreeMap::new();
    for line in reference.lines() {
        let cells: Vec<&str> = line.split(" | ").collect();
        let Some(name) = cells
            .first()
            .and_then(|c| c.strip_prefix("| `"))
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        if cells.len() >= 4 {
            rows.insert(
                name.to_owned(),
                (
                    cells[1].to_owned(),
                    cells[2].to_owned(),
                    cells[3..].join(" | "),
                ),
            );
        }
    }
    let plain = |t: &str| -> String {
        let mut out = String::new();
        let mut rest = t;
        // [text](link) -> text
        while let Some(open) = rest.find('[') {
            let Some(close) = rest[open..].find("](").map(|c| open + c) else {
                break;
            };
            let Some(end) = rest[close..].find(')').map(|e| close + e) else {
                break;
            };
            out.push_str(&rest[..open]);
            out.push_str(&rest[open + 1..close]);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out.replace('`', "")
    };
    for f in metrics.registry.gather() {
        let name = f.name();
        if name.starts_with("process_") {
            continue;
        }
        let (kind, labels, meaning) = rows
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no row in docs/metrics.md"));
        let meaning = plain(meaning.trim_end_matches(" |"));
        let first = meaning
            .match_indices(". ")
            .find(|(i, _)| {
                meaning[..*i]
                    .ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == ')')
            })
            .map_or(meaning.trim_end().to_owned(), |(i, _)| {
                format!("{}.", &meaning[..i])
            });
        assert_eq!(f.help(), first, "help of {name}");
        let ty = match f.get_field_type() {
            prometheus::proto::MetricType::COUNTER => "counter",
            prometheus::proto::MetricType::GAUGE => "gauge",
            prometheus::proto::MetricType::HISTOGRAM => "histogram",
            _ => "other",
        };
        assert_eq!(kind, ty, "type of {name}");
        let mut doc_labels: Vec<String> = plain(labels)
            .split(", ")
            .filter(|l| *l != "—")
            .map(str::to_owned)
            .collect();
        doc_labels.sort();
        let mut got: Vec<String> = f
            .get_metric()
            .first()
            .map(|m| m.get_label().iter().map(|l| l.name().to_owned()).collect())
            .unwrap_or_default();
        got.sort();
        assert_eq!(doc_labels, got, "labels of {name}");
    }
    let registered: std::collections::BTreeSet<String> = metrics
        .registry
        .gather()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    let unknown: Vec<&String> = rows
        .keys()
        .filter(|n| n.starts_with("churnwatch_") && !registered.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "rows in docs/metrics.md for metrics the service does not register: {unknown:?}"
    );
}

/// Moves every metric the way the pipeline does, with label values taken
/// from the same enums, so each family has series and rates are not zero.
fn tick(m: &Metrics, round: u64) {
    for (i, kind) in EventKind::ALL.iter().enumerate() {
        for p in ["0", "1"] {
            m.events_consumed
                .with_label_values(&[kind.as_str(), p])
                .inc_by(1 + (i as u64 + round) % 3);
        }
    }
    m.events_rejected
        .with_label_values(&[Rejection::REASONS[0]])
        .inc();
    m.events_dropped.with_label_values(&["late"]).inc();
    m.events_dropped.with_label_values(&["duplicate"]).inc();
    m.processing_latency.observe(0.004 * (1 + round % 5) as f64);
    for (p, lag) in [("0", 10 + round as i64), ("1", 3)] {
        m.event_time_lag
            .with_label_values(&[p])
            .set(2.0 + round as f64 % 3.0);
        m.consumer_lag.with_label_values(&[p]).set(lag);
    }
    m.customers_tracked.set(1000);
    // The risk's training quality: a series only once learned (never NaN).
    m.risk_training_auc
        .with_label_values(&[] as &[&str])
        .set(0.74);
    m.risk_training_brier
        .with_label_values(&[] as &[&str])
        .set(0.12);
    for (l, n) in Level::ALL.iter().zip([700, 200, 80, 20]) {
        m.customers_by_level.with_label_values(&[l.as_str()]).set(n);
    }
    for (pb, ch, level) in [
        (Playbook::CheckIn, "email", Level::High),
        (Playbook::WinBack, "phone", Level::Critical),
    ] {
        m.outreach_emitted
            .with_label_values(&[pb.as_str_name(), ch, level.as_str()])
            .inc();
        for outcome in ["delivered", "opened", "replied", "converted"] {
            m.outreach_outcomes
                .with_label_values(&[pb.as_str_name(), outcome])
                .inc();
        }
    }
    m.outreach_suppressed
        .with_label_values(&[Suppression::Cooldown.code()])
        .inc();
    // Uplift: WIN_BACK keeps customers (20% churn contacted, 60% held
    // out: significant), CHECK_IN does not measurably (30% vs 33%).
    for (pb, arm, decided, retained) in [
        (Playbook::WinBack, "contacted", 50, 40),
        (Playbook::WinBack, "held_out", 10, 4),
        (Playbook::CheckIn, "contacted", 30, 21),
        (Playbook::CheckIn, "held_out", 6, 4),
    ] {
        m.uplift_decided
            .with_label_values(&[pb.as_str_name(), arm])
            .inc_by(decided);
        m.uplift_retained
            .with_label_values(&[pb.as_str_name(), arm])
            .inc_by(retained);
        if arm == "held_out" {
            m.outreach_held_out
                .with_label_values(&[pb.as_str_name()])
                .inc();
        }
    }
    for result in ["ok", "skipped", "error"] {
        m.model_refits.with_label_values(&[result]).inc();
    }
    for (param, v) in [("r", 0.243), ("alpha", 30.9), ("a", 0.793), ("b", 2.426)] {
        m.model_param.with_label_values(&[param]).set(v);
    }
    m.risk_coefficient.with_label_values(&["bias"]).set(-1.5);
    m.risk_coefficient.with_label_values(&["base"]).set(1.0);
    m.model_log_likelihood.set(-9582.4);
    m.model_customers.set(950);
    for p in ["0", "1"] {
        m.restore_duration.with_label_values(&[p]).observe(0.2);
        m.restore_records.with_label_values(&[p]).inc_by(500);
    }
    m.changelog_records.inc_by(20);
    m.rebalances.with_label_values(&["assign"]).inc();
    m.rebalances.with_label_values(&["revoke"]).inc();
    m.assigned_partitions.set(2);
    m.producer_queue.set(5);
    for result in ["ok", "error", "refused", "aborted"] {
        m.commits.with_label_values(&[result]).inc();
    }
    m.timers_fired.inc_by(3);
}

/// Whether the Prometheus check can run: the tools are here, or CI asks for
/// it (the script installs them).
fn prometheus_check_runs() -> bool {
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
    };
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    ci || (on_path("promtool") && on_path("prometheus"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_hold_against_a_live_scrape() {
    if !prometheus_check_runs() {
        eprintln!(
            "SKIPPED: promtool/prometheus not on PATH and CI not set; \
             install Debian's `prometheus` package or run with CI=true"
        );
        return;
    }
    let (metrics, router) = metrics_with_router();
    tick(&metrics, 0);
    let listener = must(tokio::net::TcpListener::bind("127.0.0.1:0").await, "bind");
    let addr = must(listener.local_addr(), "local_addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, router, Default::default(), async {
        let _ = stopped.await;
    }));
    let workload = {
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            for round in 1.. {
                every.tick().await;
                tick(&m, round);
            }
        })
    };

    // The image's HEALTHCHECK, pointed at this server.
    let dockerfile = read("deploy/Dockerfile");
    let health = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("CMD [\"bash\", \"-c\", "))
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or_else(|| panic!("no HEALTHCHECK CMD in deploy/Dockerfile"));
    let health: String = must(serde_json::from_str(health), "HEALTHCHECK command");
    let health = health.replace("127.0.0.1/9090", &format!("127.0.0.1/{}", addr.port()));
    let probe = health.clone();
    let out = must(
        tokio::task::spawn_blocking(move || Command::new("bash").arg("-c").arg(&probe).output())
            .await,
        "join",
    );
    assert!(
        must(out, "bash").status.success(),
        "the Dockerfile's HEALTHCHECK fails against /healthz: {health}"
    );

    let script = repo("scripts/check-observability.sh");
    let url = format!("http://{addr}/metrics");
    println!("checking the dashboards and rules against {url}");
    let out = must(
        tokio::task::spawn_blocking(move || Command::new("bash").arg(&script).arg(&url).output())
            .await,
        "join",
    );
    let out = must(out, "running scripts/check-observability.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");

    workload.abort();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        out.status.success(),
        "scripts/check-observability.sh failed:\n{text}"
    );
    assert!(text.contains("0 failed"), "{text}");
    // The uplift interval computed in PromQL is Newcombe's, for the
    // significant playbook and the other alike.
    for pb in ["WIN_BACK", "CHECK_IN"] {
        assert!(
            text.contains(&format!("uplift interval of {pb} matches Newcombe")),
            "{text}"
        );
    }
}
