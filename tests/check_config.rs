//! `churnwatch check-config` as an operator meets it: every problem of a
//! file and the environment in one run, each naming where it comes from,
//! exit status 2.

use std::process::Output;

fn check_config(file: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut c = churnwatch_testkit::churnwatch_command();
    c.arg("check-config").arg(file);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CHURNWATCH_")) {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap_or_else(|e| panic!("{e}"))
}

/// Ten different mistakes: four unknown keys (file and environment), three
/// type errors (file and environment), three cross-field problems.
const TEN_MISTAKES: &str = r#"aplication_id = "cw"

[kafka]
bootstrap_servers = "broker:9092"
input_topics = "events"
outreach_topic = "customer-interactions"
replication_factor = "three"
assignment_strategy = "sticky"

[processing]
threads = 0

[outreach]
cooldwn = "7d"
"#;

/// `check-config` on a valid file: exit 0, the effective configuration it
/// printed.
fn valid(file: &std::path::Path, env: &[(&str, &str)]) -> String {
    let out = check_config(file, env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ten_mistakes_give_ten_lines_each_with_its_source() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("ten.toml");
    std::fs::write(&file, TEN_MISTAKES).unwrap_or_else(|e| panic!("{e}"));
    let out = check_config(
        &file,
        &[
            ("CHURNWATCH_KAFKA__BOOTSTRAP_SERVER", "other:9092"),
            ("CHURNWATCH_PROCESSING__MAX_IN_FLIGHT", "lots"),
            ("CHURNWATCH_HTTP__LISTEN", "nowhere"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let f = file.display().to_string();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(lines.len(), 10, "{err}");
    for expected in [
        format!("{f}:1: aplication_id: unknown key (did you mean `application_id`?)"),
        format!("{f}:5: kafka.input_topics: unknown key (did you mean `kafka.input_topic`?)"),
        format!("{f}:7: kafka.replication_factor: expected an integer, found string \"three\""),
        format!("{f}:8: kafka.assignment_strategy: unknown value `sticky`; expected one of `cooperative_sticky`, `range`, `round_robin`"),
        format!("{f}:11: processing.threads: must be between 1 and 64"),
        format!("{f}:14: outreach.cooldwn: unknown key (did you mean `outreach.cooldown`?)"),
        "CHURNWATCH_KAFKA__BOOTSTRAP_SERVER: kafka.bootstrap_server: unknown key (did you mean CHURNWATCH_KAFKA__BOOTSTRAP_SERVERS?)".to_owned(),
        "CHURNWATCH_PROCESSING__MAX_IN_FLIGHT: processing.max_in_flight: expected a non-negative integer, found string \"lots\"".to_owned(),
        "CHURNWATCH_HTTP__LISTEN: http.listen: must be an address like 127.0.0.1:9090".to_owned(),
    ] {
        assert!(lines.iter().any(|l| l.trim() == expected), "missing {expected:?} in\n{err}");
    }
    // The clash of two topic keys names one of the kafka lines.
    assert!(
        lines.iter().any(|l| l.trim().starts_with(&format!("{f}:"))
            && l.ends_with(": kafka: topic `customer-interactions` is used for two purposes")),
        "{err}"
    );
    assert!(!err.contains("``"), "doubled backticks: {err}");
    assert!(
        out.stdout.is_empty(),
        "no configuration printed for an invalid one"
    );
}

#[test]
fn an_empty_file_names_no_broker_instead_of_assuming_one() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").unwrap_or_else(|e| panic!("{e}"));
    let out = check_config(&file, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("kafka.bootstrap_servers: not set"), "{err}");
    assert!(!err.contains("127.0.0.1:9092"), "{err}");

    let text = valid(&file, &[("CHURNWATCH_KAFKA__BOOTSTRAP_SERVERS", "b1:9092")]);
    assert!(text.contains("bootstrap_servers = \"b1:9092\""), "{text}");
}

#[test]
fn a_syntax_error_names_its_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("s.toml");
    std::fs::write(
        &file,
        "[kafka]\nbootstrap_servers = \"b:9092\"\ninput_topic = \n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = check_config(&file, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}:3:", file.display())), "{err}");
}

/// The consumer group protocol (KIP-848) takes assignment and session timing
/// away from the client: what librdkafka would refuse at start is named by
/// `check-config` first, with the line it comes from; the same file under
/// the classic protocol is valid.
#[test]
fn the_consumer_group_protocol_refuses_classic_only_settings_by_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text = |protocol: &str| {
        format!(
            r#"[kafka]
bootstrap_servers = "broker:9092"
group_protocol = "{protocol}"
assignment_strategy = "range"

[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"partition.assignment.strategy" = "roundrobin"
"#
        )
    };
    let file = dir.path().join("consumer.toml");
    std::fs::write(&file, text("consumer")).unwrap_or_else(|e| panic!("{e}"));
    let out = check_config(&file, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let f = file.display().to_string();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(lines.len(), 4, "{err}");
    for (line, key, says) in [
        (
            4,
            "kafka.assignment_strategy",
            "`range` is a classic-protocol strategy",
        ),
        (
            6,
            "kafka.properties.\"session.timeout.ms\"",
            "group.consumer.session.timeout.ms",
        ),
        (
            6,
            "kafka.properties.\"heartbeat.interval.ms\"",
            "group.consumer.heartbeat.interval.ms",
        ),
        (
            6,
            "kafka.properties.\"partition.assignment.strategy\"",
            "group.remote.assignor",
        ),
    ] {
        let head = format!("{f}:{line}: {key}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.trim().starts_with(&head) && l.contains(says)),
            "missing {head}...{says} in\n{err}"
        );
    }

    // Under the classic protocol the same settings are the client's own.
    let file = dir.path().join("classic.toml");
    std::fs::write(&file, text("classic")).unwrap_or_else(|e| panic!("{e}"));
    let out = check_config(&file, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the consumer protocol without them is valid, from the environment too.
    let file = dir.path().join("plain.toml");
    std::fs::write(&file, "[kafka]\nbootstrap_servers = \"broker:9092\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = valid(&file, &[("CHURNWATCH_KAFKA__GROUP_PROTOCOL", "consumer")]);
    assert!(shown.contains("group_protocol = \"consumer\""), "{shown}");
}

/// Writes `text` to `file`, runs check-config on it, expects exit 2, and
/// asserts every `file:LINE: message` of `expected` (lines relative to the
/// file's path) is among its stderr lines.
fn refused_with(file: &std::path::Path, text: &str, expected: &[&str]) {
    std::fs::write(file, text).unwrap_or_else(|e| panic!("{e}"));
    let out = check_config(file, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let f = file.display().to_string();
    for line in expected {
        let expected = format!("{f}:{line}");
        assert!(
            err.lines().any(|l| l.trim() == expected),
            "missing {expected:?} in\n{err}"
        );
    }
}

#[test]
fn holdout_shares_are_checked_per_playbook_key() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("h.toml");
    refused_with(
        &file,
        "[kafka]\nbootstrap_servers = \"b:9092\"\n\n[outreach.holdout]\ndefault = 0.1\nwin_back = 1.5\nwinback = 0.2\n",
        &[
            "7: outreach.holdout.winback: unknown key (did you mean `outreach.holdout.win_back`?)",
            "6: outreach.holdout.win_back: must be a share in [0, 1)",
        ],
    );
    let good = "[kafka]\nbootstrap_servers = \"b:9092\"\n\n[outreach.holdout]\ndefault = 0.1\nwin_back = 0.3\n";
    std::fs::write(&file, good).unwrap_or_else(|e| panic!("{e}"));
    let shown = valid(&file, &[]);
    assert!(shown.contains("win_back = 0.3"), "{shown}");
}

#[test]
fn targeting_is_checked_with_its_key_and_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("t.toml");
    refused_with(
        &file,
        "[kafka]\nbootstrap_servers = \"b:9092\"\n\n[outreach]\ntargeting = \"expected_saves\"\nsaves_min_per_arm = 0\n",
        &[
            "6: outreach.saves_min_per_arm: must be at least 1",
            "5: outreach.targeting: expected_saves needs a holdout to measure uplift: set outreach.holdout.default (or a playbook's share) above 0",
        ],
    );
    let good = "[kafka]\nbootstrap_servers = \"b:9092\"\n\n[outreach]\ntargeting = \"expected_saves\"\n\n[outreach.holdout]\ndefault = 0.1\n";
    std::fs::write(&file, good).unwrap_or_else(|e| panic!("{e}"));
    let shown = valid(&file, &[]);
    assert!(shown.contains("targeting = \"expected_saves\""), "{shown}");
    assert!(shown.contains("saves_min_per_arm = 200"), "{shown}");
}
