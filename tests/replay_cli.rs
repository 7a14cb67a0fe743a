//! `churnwatch replay` and `churnwatch generate` as a user runs them: the
//! binary, files in, files out, what is printed and the exit code.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Display,
    path::{Path, PathBuf},
    process::Output,
};

use churnwatch::{
    codec::{self, Format},
    events,
    pb::{self, Channel, InteractionEvent},
    state::CustomerState,
    time::parse_rfc3339,
};
use serde_json::Value;

fn must<T, E: Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn t(text: &str) -> i64 {
    must(parse_rfc3339(text), text)
}

fn tempdir() -> tempfile::TempDir {
    must(tempfile::tempdir(), "tempdir")
}

/// Runs the binary with `args`; returns exit code, stdout and stderr.
fn churnwatch<I, S>(args: I) -> (i32, String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out: Output = must(
        churnwatch_testkit::churnwatch_command()
            .args(args)
            .env("RUST_LOG", "warn")
            .output(),
        "running churnwatch",
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `churnwatch replay --quiet --input <input> <extra...>`; panics unless the
/// exit code is `want`. Returns stderr and the JSON summary printed there.
fn replay(input: &Path, extra: &[&str], want: i32) -> (String, Value) {
    let mut args: Vec<std::ffi::OsString> =
        vec!["replay".into(), "--quiet".into(), "--input".into()];
    args.push(input.into());
    args.extend(extra.iter().map(std::ffi::OsString::from));
    let (code, _, stderr) = churnwatch(&args);
    assert_eq!(
        code, want,
        "exit code of replay {extra:?}; stderr:\n{stderr}"
    );
    let summary = summary_of(&stderr);
    (stderr, summary)
}

/// The pretty-printed JSON summary that closes replay's stderr.
fn summary_of(stderr: &str) -> Value {
    let start = if stderr.starts_with("{\n") {
        0
    } else {
        match stderr.find("\n{\n") {
            Some(i) => i + 1,
            None => panic!("no JSON summary on stderr:\n{stderr}"),
        }
    };
    let mut values = serde_json::Deserializer::from_str(&stderr[start..]).into_iter::<Value>();
    match values.next() {
        Some(Ok(v)) => v,
        other => panic!("summary does not parse ({other:?}):\n{stderr}"),
    }
}

fn write_events(path: &Path, evs: &[InteractionEvent], format: Format) {
    let mut buf = Vec::new();
    for e in evs {
        codec::write_framed(&mut buf, e, format);
    }
    must(std::fs::write(path, buf), "writing events");
}

/// One JSON line per event, as `generate` and producers write them.
fn json_line(ev: &InteractionEvent) -> Vec<u8> {
    codec::encode(ev, Format::Json)
}

/// scores.csv as (header, rows keyed by customer id, each row keyed by column).
fn read_scores(path: &Path) -> (Vec<String>, BTreeMap<String, BTreeMap<String, String>>) {
    let mut r = must(csv::Reader::from_path(path), "opening scores.csv");
    let header: Vec<String> = must(r.headers(), "scores.csv header")
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = BTreeMap::new();
    for rec in r.records() {
        let rec = must(rec, "scores.csv row");
        let row: BTreeMap<String, String> = header
            .iter()
            .cloned()
            .zip(rec.iter().map(str::to_owned))
            .collect();
        let id = row.get("customer_id").cloned().unwrap_or_default();
        assert!(
            rows.insert(id.clone(), row).is_none(),
            "two rows for {id} in scores.csv"
        );
    }
    (header, rows)
}

fn num(row: &BTreeMap<String, String>, col: &str) -> f64 {
    let text = row.get(col).map_or("", String::as_str);
    must(text.parse::<f64>(), &format!("column {col} = {text:?}"))
}

fn read_json(path: &Path) -> Value {
    let text = must(std::fs::read_to_string(path), "reading JSON file");
    must(serde_json::from_str(&text), "parsing JSON file")
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < 1e-3, "{what}: got {got}, want {want}");
}

/// A customer "k" active on 1, 4 and 11 January 2026 (twice on the 1st,
/// once by a session), who answers a survey on the 20th (not activity); a
/// customer "z" whose purchase on 31 January is the last event of the file.
fn known_days() -> Vec<InteractionEvent> {
    let mut evs = vec![
        events::purchase("k1", "k", t("2026-01-01T10:00:00Z"), 20.0),
        events::purchase("k2", "k", t("2026-01-01T18:00:00Z"), 15.0),
        events::purchase("k3", "k", t("2026-01-04T09:00:00Z"), 30.0),
        events::session("k4", "k", t("2026-01-11T23:30:00Z"), Channel::App),
        events::nps("k5", "k", t("2026-01-20T08:00:00Z"), 9),
        events::purchase("z1", "z", t("2026-01-31T12:00:00Z"), 50.0),
    ];
    evs.sort_by_key(|e| e.occurred_at.map_or(0, |x| x.seconds));
    evs
}

#[test]
fn invalid_lines_are_reported_counted_and_skipped() {
    let dir = tempdir();
    let input = dir.path().join("mixed.jsonl");
    let at = t("2026-02-01T12:00:00Z");
    let good = |n: i64, c: &str| json_line(&events::purchase(&format!("g{n}"), c, at + n, 10.0));
    let pigeon = String::from_utf8_lossy(&good(9, "a")).replace("CHANNEL_WEB", "CHANNEL_PIGEON");
    assert!(
        pigeon.contains("\"channel\":\"CHANNEL_PIGEON\""),
        "{pigeon}"
    );
    let mut bad_utf8 = good(8, "a");
    bad_utf8.splice(20..20, [0xff, 0xfe]);
    let year_9999 = events::purchase("y", "a", t("9999-06-01T00:00:00Z"), 10.0);
    // (line bytes, rejection reason or None for a good line)
    let lines: Vec<(Vec<u8>, Option<&str>)> = vec![
        (good(1, "a"), None),
        (b"not json at all".to_vec(), Some("undecodable_json")),
        (bad_utf8, Some("invalid_utf8")),
        (Vec::new(), None), // blank: not an event, not counted
        (
            json_line(&events::nps("n", "a", at, 11)),
            Some("nps_out_of_range"),
        ),
        (good(2, "b"), None),
        (
            json_line(&events::purchase("neg", "a", at, -5.0)),
            Some("negative_amount"),
        ),
        (
            json_line(&events::purchase("noid", "", at, 10.0)),
            Some("missing_customer_id"),
        ),
        (json_line(&year_9999), Some("timestamp_out_of_range")),
        (pigeon.into_bytes(), Some("undecodable_json")),
        (b"   ".to_vec(), None), // whitespace only: blank too
        (good(3, "a"), None),
    ];
    let mut file = Vec::new();
    for (l, _) in &lines {
        file.extend_from_slice(l);
        file.push(b'\n');
    }
    must(std::fs::write(&input, file), "writing input");

    let (stderr, s) = replay(&input, &[], 0);
    let shown = input.display().to_string();
    let mut want_reasons: BTreeMap<String, u64> = BTreeMap::new();
    for (i, (_, reason)) in lines.iter().enumerate() {
        if let Some(reason) = reason {
            let prefix = format!("{shown}:{}: {reason}: ", i + 1);
            assert!(
                stderr.lines().any(|l| l.starts_with(&prefix)),
                "no `{prefix}...` on stderr:\n{stderr}"
            );
            *want_reasons.entry((*reason).to_owned()).or_default() += 1;
        }
    }
    assert!(
        stderr.contains("nps 11 is outside 0-10"),
        "the reason's detail is printed:\n{stderr}"
    );
    assert_eq!(s["invalid"], 7, "{s:#}");
    let got_reasons: BTreeMap<String, u64> = must(
        serde_json::from_value(s["invalid_by_reason"].clone()),
        "invalid_by_reason",
    );
    assert_eq!(got_reasons, want_reasons);
    assert_eq!(s["records"], 10, "blank lines are not records: {s:#}");
    assert_eq!(s["folded"], 3, "{s:#}");
    assert_eq!(s["customers"], 2, "only good lines make customers: {s:#}");

    // --strict: the same file fails the run; a clean one does not.
    let (_, strict) = replay(&input, &["--strict"], 1);
    assert_eq!(strict["invalid"], 7);
    let clean = dir.path().join("clean.jsonl");
    let mut file = Vec::new();
    for (l, reason) in &lines {
        if reason.is_none() {
            file.extend_from_slice(l);
            file.push(b'\n');
        }
    }
    must(std::fs::write(&clean, file), "writing clean input");
    let (stderr, s) = replay(&clean, &["--strict"], 0);
    assert_eq!(s["invalid"], 0, "{stderr}");
    assert_eq!(s["folded"], 3);
}

#[test]
fn protobuf_input_is_read_and_a_truncated_file_is_reported() {
    let dir = tempdir();
    let input = dir.path().join("events.pb");
    let mut evs = known_days();
    // A channel number this build does not know: only protobuf can carry it.
    let mut unknown = events::purchase("u1", "u", t("2026-01-31T13:00:00Z"), 5.0);
    unknown.channel = 42;
    evs.push(unknown);
    write_events(&input, &evs, Format::Protobuf);
    let states = dir.path().join("states.jsonl");
    let states_arg = states.display().to_string();
    let (stderr, s) = replay(
        &input,
        &["--format", "protobuf", "--state-out", &states_arg],
        0,
    );
    assert_eq!(s["records"], 7, "{stderr}");
    assert_eq!(s["folded"], 6, "{stderr}");
    assert_eq!(s["invalid_by_reason"]["unknown_enum"], 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{}:7: unknown_enum: ", input.display())),
        "records are numbered from 1:\n{stderr}"
    );
    assert_eq!(s["customers"], 2);
    let ids: Vec<String> = must(std::fs::read_to_string(&states), "states")
        .lines()
        .map(|l| must(serde_json::from_str::<Value>(l), "state line")["customerId"].to_string())
        .collect();
    assert_eq!(ids, ["\"k\"", "\"z\""]);

    // Cut the last record short: the records before it still count.
    let mut bytes = must(std::fs::read(&input), "reading events");
    bytes.truncate(bytes.len() - 3);
    let cut = dir.path().join("cut.pb");
    must(std::fs::write(&cut, bytes), "writing truncated file");
    let (stderr, s) = replay(&cut, &["--format", "protobuf"], 0);
    assert_eq!(s["invalid"], 1, "{stderr}");
    assert_eq!(s["invalid_by_reason"]["truncated_file"], 1, "{stderr}");
    assert_eq!(s["folded"], 6, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: after record 6: truncated_file",
            cut.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    replay(&cut, &["--format", "protobuf", "--strict"], 1);
}

#[test]
fn scores_csv_gives_x_t_x_and_t_in_days_and_weeks() {
    let dir = tempdir();
    let input = dir.path().join("known.jsonl");
    let mut evs = known_days();
    // A customer with a survey answer only: a row, but no activity.
    evs.push(events::nps("s1", "s", t("2026-01-15T00:00:00Z"), 7));
    evs.sort_by_key(|e| e.occurred_at.map_or(0, |x| x.seconds));
    write_events(&input, &evs, Format::Json);
    let scores = dir.path().join("scores.csv");
    let scores_arg = scores.display().to_string();

    replay(&input, &["--scores-out", &scores_arg], 0);
    let (header, rows) = read_scores(&scores);
    let want = [
        "customer_id",
        "x",
        "t_x",
        "T",
        "p_alive",
        "expected_activity",
        "risk",
        "level",
        "top_reason",
    ];
    assert_eq!(&header[..want.len()], want, "{header:?}");
    let ids: Vec<&str> = rows.keys().map(String::as_str).collect();
    assert_eq!(ids, ["k", "s", "z"], "one row per customer");
    // As of the last event (31 Jan): active days 1, 4 and 11 Jan.
    let k = &rows["k"];
    assert_eq!(num(k, "x"), 2.0, "repeat active days: {k:?}");
    assert_close(num(k, "t_x"), 10.0, "t_x in days");
    assert_close(num(k, "T"), 30.0, "T in days");
    let p = num(k, "p_alive");
    assert!((0.0..=1.0).contains(&p), "{k:?}");
    let e = num(k, "expected_activity");
    assert!(e.is_finite() && e > 0.0, "{k:?}");
    let risk = num(k, "risk");
    assert!((0.0..=1.0).contains(&risk), "{k:?}");
    assert!(
        ["low", "medium", "high", "critical"].contains(&k["level"].as_str()),
        "{k:?}"
    );
    // One purchase today: x = t_x = T = 0.
    let z = &rows["z"];
    assert_eq!((num(z, "x"), num(z, "t_x"), num(z, "T")), (0.0, 0.0, 0.0));
    // A survey answer only, no activity: no model inputs, the cells stay empty.
    let row = &rows["s"];
    for col in ["x", "t_x", "T", "p_alive", "expected_activity"] {
        assert_eq!(row[col], "", "s.{col}: {row:?}");
    }

    replay(
        &input,
        &["--scores-out", &scores_arg, "--time-unit", "week"],
        0,
    );
    let (_, rows) = read_scores(&scores);
    let k = &rows["k"];
    assert_eq!(num(k, "x"), 2.0);
    assert_close(num(k, "t_x"), 10.0 / 7.0, "t_x in weeks");
    assert_close(num(k, "T"), 30.0 / 7.0, "T in weeks");

    replay(
        &input,
        &[
            "--scores-out",
            &scores_arg,
            "--as-of",
            "2026-02-10T00:00:00Z",
        ],
        0,
    );
    let (_, rows) = read_scores(&scores);
    let k = &rows["k"];
    assert_eq!(num(k, "x"), 2.0);
    assert_close(num(k, "t_x"), 10.0, "t_x does not move with --as-of");
    assert_close(num(k, "T"), 40.0, "T as of 10 Feb");
    assert!(
        num(k, "p_alive") <= p,
        "ten more silent days cannot make k more alive: {k:?}"
    );
}

#[test]
fn longer_horizon_expects_more_activity() {
    let dir = tempdir();
    let input = dir.path().join("known.jsonl");
    write_events(&input, &known_days(), Format::Json);
    let scores = dir.path().join("scores.csv");
    let scores_arg = scores.display().to_string();
    let mut expected = Vec::new();
    for h in ["7d", "60d"] {
        replay(&input, &["--scores-out", &scores_arg, "--horizon", h], 0);
        let (_, rows) = read_scores(&scores);
        expected.push(num(&rows["k"], "expected_activity"));
    }
    assert!(expected[0] > 0.0, "{expected:?}");
    assert!(expected[1] > expected[0], "60d vs 7d: {expected:?}");
}

/// `churnwatch generate --customers N --span S` into `path`.
fn generate(path: &Path, extra: &[&str]) {
    let mut args: Vec<std::ffi::OsString> = vec!["generate".into(), "--out".into(), path.into()];
    args.extend(extra.iter().map(std::ffi::OsString::from));
    let (code, _, stderr) = churnwatch(&args);
    assert_eq!(code, 0, "generate {extra:?}: {stderr}");
}

/// A generated population of 2000 customers over 120 days, replayed with
/// every output: (scores.csv, model.json, states.jsonl, summary).
fn generated_population(dir: &Path) -> (PathBuf, PathBuf, PathBuf, Value) {
    let input = dir.join("population.jsonl");
    generate(&input, &["--customers", "2000", "--span", "120d"]);
    let scores = dir.join("scores.csv");
    let model = dir.join("model.json");
    let states = dir.join("states.jsonl");
    let (_, summary) = replay(
        &input,
        &[
            "--scores-out",
            &scores.display().to_string(),
            "--model-out",
            &model.display().to_string(),
            "--state-out",
            &states.display().to_string(),
        ],
        0,
    );
    (scores, model, states, summary)
}

#[test]
fn model_out_reports_the_fit_on_a_generated_population() {
    let dir = tempdir();
    let (scores, model, states, summary) = generated_population(dir.path());
    let m = read_json(&model);
    assert_eq!(m["family"], "bgnbd", "{m:#}");
    assert_eq!(m["time_unit"], "day", "{m:#}");
    assert_eq!(m["source"], "fit", "{m:#}");
    for p in ["r", "alpha", "a", "b"] {
        let v = m["params"][p].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v > 0.0, "params.{p} = {v}");
    }
    let ll = m["log_likelihood"].as_f64().unwrap_or(f64::NAN);
    assert!(ll.is_finite() && ll < 0.0, "log_likelihood {ll}");
    assert!(m["error"].is_null(), "{m:#}");
    let text = must(std::fs::read_to_string(&states), "states");
    let with_activity = text
        .lines()
        .filter(|l| {
            must(serde_json::from_str::<Value>(l), "state line")
                .get("activity")
                .is_some()
        })
        .count();
    assert!(with_activity > 1500, "{with_activity}");
    assert_eq!(m["customers"], with_activity as u64, "{m:#}");
    let (_, rows) = read_scores(&scores);
    assert_eq!(
        rows.len() as u64,
        summary["customers"].as_u64().unwrap_or(0)
    );
    assert_eq!(text.lines().count(), rows.len());
}

#[test]
fn fitted_scores_are_probabilities_and_finite_expectations() {
    let dir = tempdir();
    let (scores, _, _, _) = generated_population(dir.path());
    let (_, rows) = read_scores(&scores);
    let mut bad = Vec::new();
    for (id, row) in &rows {
        if row["x"].is_empty() {
            continue; // no activity: nothing for the model to say
        }
        let p = num(row, "p_alive");
        let e = num(row, "expected_activity");
        if !((0.0..=1.0).contains(&p) && e.is_finite() && e >= 0.0) {
            bad.push(format!("{id}: p_alive {p}, expected_activity {e}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} customers have an out-of-range P(alive) or expected activity, e.g. {:?}",
        bad.len(),
        rows.len(),
        &bad[..bad.len().min(3)]
    );
}

#[test]
fn few_customers_keep_the_prior_and_say_why() {
    let dir = tempdir();
    let input = dir.path().join("five.jsonl");
    let at = t("2026-01-01T09:00:00Z");
    let mut evs = Vec::new();
    for c in 0..5 {
        for d in 0..4 {
            let id = format!("c{c}-{d}");
            evs.push(events::purchase(
                &id,
                &format!("c{c}"),
                at + d * 5 * 86_400 + c,
                10.0,
            ));
        }
    }
    evs.sort_by_key(|e| e.occurred_at.map_or(0, |x| x.seconds));
    write_events(&input, &evs, Format::Json);
    let model = dir.path().join("model.json");
    let (_, summary) = replay(&input, &["--model-out", &model.display().to_string()], 0);
    let m = read_json(&model);
    assert_eq!(m["source"], "prior", "{m:#}");
    assert_eq!(m["customers"], 5, "{m:#}");
    assert!(m["log_likelihood"].is_null(), "{m:#}");
    let why = m["error"].as_str().unwrap_or_default();
    assert!(why.contains("min_customers"), "the reason is given: {m:#}");
    assert_eq!(summary["model_error"].as_str(), Some(why));
    // The documented prior: Fader, Hardie & Lee's CDNOW estimates, alpha in days.
    assert_close(m["params"]["r"].as_f64().unwrap_or(0.0), 0.243, "r");
    assert_close(
        m["params"]["alpha"].as_f64().unwrap_or(0.0),
        4.414 * 7.0,
        "alpha",
    );
    assert_close(m["params"]["a"].as_f64().unwrap_or(0.0), 0.793, "a");
    assert_close(m["params"]["b"].as_f64().unwrap_or(0.0), 2.426, "b");
}

#[test]
fn generate_is_seeded_and_both_formats_replay_alike() {
    let dir = tempdir();
    let path = |name: &str| dir.path().join(name);
    let small = ["--customers", "300", "--span", "60d"];
    generate(&path("a.jsonl"), &small);
    generate(&path("b.jsonl"), &small);
    generate(
        &path("c.jsonl"),
        &[&small[..], &["--seed", "7"][..]].concat(),
    );
    generate(
        &path("a.pb"),
        &[&small[..], &["--format", "protobuf"][..]].concat(),
    );
    let read = |name: &str| must(std::fs::read(path(name)), name);
    let a = read("a.jsonl");
    assert!(a.len() > 10_000, "{}", a.len());
    assert_eq!(a, read("b.jsonl"), "same seed, same bytes");
    assert_ne!(a, read("c.jsonl"), "another seed, other events");
    let (code, stdout, _) = churnwatch(["generate", "--out", "-"].into_iter().chain(small));
    assert_eq!(code, 0);
    assert_eq!(stdout.as_bytes(), a, "`--out -` writes the same to stdout");
    // `--skip N` continues a run of `--max-events N`: the two together are
    // the whole population, byte for byte.
    generate(
        &path("head.jsonl"),
        &[&small[..], &["--max-events", "1000"][..]].concat(),
    );
    generate(
        &path("rest.jsonl"),
        &[&small[..], &["--skip", "1000"][..]].concat(),
    );
    let joined = [read("head.jsonl"), read("rest.jsonl")].concat();
    assert_eq!(
        read("head.jsonl").iter().filter(|b| **b == b'\n').count(),
        1000
    );
    assert_eq!(
        joined, a,
        "--max-events N, then --skip N: the whole population"
    );

    let outputs = |input: &str, format: &str| {
        let tag = input.replace('.', "-");
        let names = [
            format!("scores-{tag}.csv"),
            format!("model-{tag}.json"),
            format!("outreach-{tag}.jsonl"),
            format!("states-{tag}.jsonl"),
        ];
        let p: Vec<String> = names
            .iter()
            .map(|n| path(n).display().to_string())
            .collect();
        replay(
            &path(input),
            &[
                "--format",
                format,
                "--scores-out",
                &p[0],
                "--model-out",
                &p[1],
                "--outreach-out",
                &p[2],
                "--state-out",
                &p[3],
            ],
            0,
        );
        names.map(|n| read(&n))
    };
    let from_json = outputs("a.jsonl", "jsonl");
    let from_pb = outputs("a.pb", "protobuf");
    for (i, name) in ["scores", "model", "outreach", "states"].iter().enumerate() {
        assert!(!from_json[i].is_empty(), "{name} is empty");
        assert!(
            from_json[i] == from_pb[i],
            "{name} differs between jsonl and protobuf input"
        );
    }
}

#[test]
fn state_out_writes_sorted_proto3_json_snapshots() {
    let dir = tempdir();
    let input = dir.path().join("three.jsonl");
    let at = t("2026-03-01T10:00:00Z");
    let evs = vec![
        events::purchase("b1", "bravo", at, 12.5),
        events::purchase("a1", "alpha", at + 60, 99.0),
        events::session("c1", "charlie", at + 120, Channel::App),
        events::purchase("a2", "alpha", at + 3 * 86_400, 1.0),
        events::nps("a3", "alpha", at + 4 * 86_400, 3),
    ];
    write_events(&input, &evs, Format::Json);
    let json_out = dir.path().join("x.jsonl");
    let pb_out = dir.path().join("x.pb");
    replay(
        &input,
        &[
            "--state-out",
            &json_out.display().to_string(),
            "--outreach-out",
            &dir.path().join("o.jsonl").display().to_string(),
        ],
        0,
    );
    replay(&input, &["--state-out", &pb_out.display().to_string()], 0);

    let text = must(std::fs::read_to_string(&json_out), "x.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one line per customer:\n{text}");
    let mut from_json = Vec::new();
    for l in &lines {
        let v: Value = must(serde_json::from_str(l), "state line");
        assert_eq!(v["schemaVersion"], 1, "{l}");
        assert!(
            v.get("customerId").is_some() && v.get("customer_id").is_none(),
            "{l}"
        );
        let snap: pb::CustomerState = must(serde_json::from_str(l), "proto3 JSON CustomerState");
        from_json.push(snap);
    }
    let ids: Vec<&str> = from_json.iter().map(|s| s.customer_id.as_str()).collect();
    assert_eq!(ids, ["alpha", "bravo", "charlie"], "sorted by customer id");
    let alpha = must(
        CustomerState::from_snapshot(&from_json[0]),
        "restoring alpha",
    );
    assert_eq!(alpha.value.purchases, 2);
    assert!((alpha.value.amount - 100.0).abs() < 1e-9);
    assert_eq!(alpha.activity.map(|a| a.repeat_days), Some(1));
    assert_eq!(
        alpha.satisfaction.as_ref().and_then(|s| s.last_nps),
        Some(3)
    );

    // Any other extension: the same snapshots, length-delimited protobuf.
    let bytes = must(std::fs::read(&pb_out), "x.pb");
    let mut rest = &bytes[..];
    let mut from_pb = Vec::new();
    while !rest.is_empty() {
        from_pb.push(must(
            <pb::CustomerState as prost::Message>::decode_length_delimited(&mut rest),
            "length-delimited CustomerState",
        ));
    }
    assert_eq!(from_pb, from_json);
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 3);
}

#[test]
fn errors_exit_with_status_2_and_say_what_is_wrong() {
    let dir = tempdir();
    let missing = dir.path().join("missing.jsonl");
    let (code, _, stderr) = churnwatch([
        "replay".into(),
        "--quiet".into(),
        "--input".into(),
        missing.into_os_string(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("missing.jsonl"), "{stderr}");

    let input = dir.path().join("known.jsonl");
    write_events(&input, &known_days(), Format::Json);
    let config = dir.path().join("bad.toml");
    must(
        std::fs::write(&config, "[outreach]\ntrigger_level = \"low\"\n"),
        "writing config",
    );
    let (code, _, stderr) = churnwatch([
        "replay".into(),
        "--quiet".into(),
        "--input".into(),
        input.into_os_string(),
        "--config".into(),
        config.into_os_string(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("outreach.trigger_level"), "{stderr}");
}

/// Runs `churnwatch replay --quiet --input /dev/stdin <extra>` with `input`
/// written into its stdin and its address space limited to `limit_bytes`
/// (RLIMIT_AS): returns exit code and stderr.
fn replay_limited(input: Vec<u8>, extra: &[&str], limit_bytes: u64) -> (i32, String) {
    use std::{io::Write, os::unix::process::CommandExt, process::Stdio};
    let mut cmd = churnwatch_testkit::churnwatch_command();
    cmd.args(["replay", "--quiet", "--input", "/dev/stdin"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the
    // child between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit_bytes,
                rlim_max: limit_bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = must(cmd.spawn(), "spawning churnwatch");
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            // The child may stop reading (a truncated file): that is fine.
            let _ = s.write_all(&input);
        }
    });
    let out = must(child.wait_with_output(), "waiting for churnwatch");
    let _ = writer.join();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn input_readers_are_bounded_before_they_allocate() {
    // Issue 20, finding 3: replay read a whole JSON line before the 1 MiB
    // check (a 400 MB line took 419 MB; under a memory limit it aborted
    // with exit 134). Lines of 10x and 100x the limit, under a 64 MiB
    // address-space limit, are reported as too_large and the events around
    // them are folded.
    const LIMIT: u64 = 64 << 20;
    let good = |id: &str, at: i64| {
        let mut line = json_line(&events::purchase(id, "c-1", at, 5.0));
        line.push(b'\n');
        line
    };
    let mut input = good("e1", 1_700_000_000);
    for times in [10, 100] {
        input.extend_from_slice(b"{\"eventId\":\"");
        input.resize(input.len() + times * codec::MAX_EVENT_BYTES, b'x');
        input.extend_from_slice(b"\"}\n");
    }
    input.extend(good("e2", 1_700_000_100));
    let (code, stderr) = replay_limited(input, &[], LIMIT);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("/dev/stdin:2: too_large"), "{stderr}");
    assert!(stderr.contains("/dev/stdin:3: too_large"), "{stderr}");
    let s = summary_of(&stderr);
    assert_eq!(s["folded"], 2, "{s}");
    assert_eq!(s["invalid_by_reason"]["too_large"], 2, "{s}");

    // A length prefix of 10x the limit ends the file before anything of
    // that size is allocated.
    let mut pb = Vec::new();
    codec::write_framed(
        &mut pb,
        &events::purchase("e1", "c-1", 1_700_000_000, 5.0),
        Format::Protobuf,
    );
    let mut len = 10 * codec::MAX_EVENT_BYTES as u64;
    while len >= 0x80 {
        pb.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    pb.push(len as u8);
    pb.resize(pb.len() + 10 * codec::MAX_EVENT_BYTES, 0);
    let (code, stderr) = replay_limited(pb, &["--format", "protobuf"], LIMIT);
    assert_eq!(code, 0, "{stderr}");
    let s = summary_of(&stderr);
    assert_eq!(s["folded"], 1, "{s}");
    assert_eq!(s["invalid_by_reason"]["truncated_file"], 1, "{s}");
}

#[test]
fn a_directory_or_an_unreadable_input_exits_2_with_a_message() {
    // Issue 20, finding 3: a directory counted as a truncated file, exit 0.
    let dir = tempdir();
    let (code, _, stderr) = churnwatch([
        "replay".into(),
        "--quiet".into(),
        "--input".into(),
        dir.path().as_os_str().to_owned(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is a directory"), "{stderr}");
    // Opens, then every read fails (EIO): not a truncated file either.
    let (code, _, stderr) = churnwatch(["replay", "--quiet", "--input", "/proc/self/mem"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.starts_with("error: /proc/self/mem"), "{stderr}");
}
