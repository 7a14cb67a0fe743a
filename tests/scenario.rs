//! A synthetic month of several customers through `replay`: exactly which
//! outreach each one gets, when, by which channel, and why.

use std::{collections::BTreeMap, path::Path};

use churnwatch_testkit as common;

use churnwatch::{
    codec::Format,
    config::CoreConfig,
    pb::{InteractionEvent, OutreachRequested},
    replay::{replay, ReplayOptions},
    time::date,
};
use common::month::{month, t, write_events};

fn read_outreach(path: &Path) -> Vec<OutreachRequested> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn each_customer_gets_the_outreach_their_month_calls_for() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let input = dir.path().join("month.jsonl");
    write_events(&input, &month(), Format::Json);
    let out = dir.path().join("outreach.jsonl");
    let opts = ReplayOptions {
        inputs: vec![input],
        format: Format::Json,
        outreach_out: Some(out.clone()),
        ..ReplayOptions::default()
    };
    let summary = replay(CoreConfig::default(), &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.invalid, 0);
    let sent = read_outreach(&out);
    let by_customer: BTreeMap<&str, Vec<&OutreachRequested>> =
        sent.iter().fold(BTreeMap::new(), |mut m, o| {
            m.entry(o.customer_id.as_str()).or_default().push(o);
            m
        });
    let expect = |c: &str| by_customer.get(c).cloned().unwrap_or_default();
    assert!(
        expect("steady").is_empty(),
        "a steady customer is left alone"
    );
    assert!(expect("no-consent").is_empty(), "no consent, no outreach");
    assert_eq!(summary.suppressed_by_reason.get("no_consent"), Some(&1));
    assert_eq!(sent.len(), 4, "{sent:#?}");

    // (customer, decided at, playbook, channel, dominant reason, evidence fragment)
    let want = [
        (
            "detractor",
            "2026-03-05T18:20:00Z",
            "FEEDBACK_FOLLOW_UP",
            "CHANNEL_WEB",
            "satisfaction_drop",
            "NPS 2 (detractor)",
        ),
        (
            "renewal",
            "2026-03-07T00:00:00Z",
            "RENEWAL_SAVE",
            "CHANNEL_WEB",
            "renewal",
            "renews on 2026-03-25",
        ),
        (
            "silent-regular",
            "2026-03-12T00:00:00Z",
            "WIN_BACK",
            "CHANNEL_APP",
            "silence",
            "no activity for 13 days; usually every 3 days",
        ),
        (
            "frustrated",
            "2026-03-12T08:45:00Z",
            "ESCALATE_TO_AGENT",
            "CHANNEL_WEB",
            "escalation",
            "3 contacts in 7 days over email, phone, chat",
        ),
    ];
    for (o, (customer, at, playbook, channel, reason, evidence)) in sent.iter().zip(want) {
        assert_eq!(o.customer_id, customer);
        assert_eq!(o.decided_at.map(|x| x.seconds), Some(t(at)), "{customer}");
        assert_eq!(o.playbook().as_str_name(), playbook, "{customer}");
        assert_eq!(o.channel().as_str_name(), channel, "{customer}");
        assert_eq!(o.reasons[0].code, reason, "{customer}");
        assert!(
            o.reasons[0].evidence.contains(evidence),
            "{customer}: {}",
            o.reasons[0].evidence
        );
        assert!(o.risk >= 0.9, "{customer} crossed into high");
        assert_eq!(o.outreach_id.len(), 32);
        let profile = o.profile.clone().unwrap_or_default();
        assert!(
            profile.purchases > 0 && profile.tenure_days > 30,
            "{customer}: {profile:?}"
        );
    }
    // Why the channels: the detractor answered by email (a negative experience
    // there), so the web shop they buy in is used; the silent regular lives in the app.
    // The renewal's silence timer fired at midnight of the first day the risk was high:
    // one second earlier it was not.
    let cfg = CoreConfig::default();
    let customer: Vec<InteractionEvent> = month()
        .into_iter()
        .filter(|e| e.customer_id == "renewal")
        .collect();
    let mut p = churnwatch::processor::Processor::new(
        std::sync::Arc::new(cfg.clone()),
        std::sync::Arc::new(churnwatch::population::PopulationModel::prior(&cfg.model)),
    );
    let mut fx = Vec::new();
    for e in &customer {
        let _ = p.process(e, None, &mut fx);
    }
    let s = p.get("renewal").cloned().unwrap_or_default();
    let ctx = churnwatch::signals::Context {
        cfg: &cfg.score,
        fold: &cfg.fold,
        model: p.model(),
    };
    let before = churnwatch::score::score(&s, t("2026-03-07T00:00:00Z") - 1, &ctx);
    assert!(before.risk < 0.6, "{}", before.risk);
    assert_eq!(date(t("2026-03-07T00:00:00Z")), "2026-03-07");
}

#[test]
fn replays_are_deterministic_and_formats_agree() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let jsonl = dir.path().join("month.jsonl");
    let pb = dir.path().join("month.pb");
    write_events(&jsonl, &month(), Format::Json);
    write_events(&pb, &month(), Format::Protobuf);
    let run = |input: &Path, format: &str, tag: &str| {
        let outreach = dir.path().join(format!("outreach-{tag}.jsonl"));
        let states = dir.path().join(format!("states-{tag}.pb"));
        let status = churnwatch_testkit::churnwatch_command()
            .args(["replay", "--quiet", "--format", format, "--input"])
            .arg(input)
            .arg("--outreach-out")
            .arg(&outreach)
            .arg("--state-out")
            .arg(&states)
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success());
        (
            std::fs::read(outreach).unwrap_or_default(),
            std::fs::read(states).unwrap_or_default(),
        )
    };
    let a = run(&jsonl, "jsonl", "a");
    let b = run(&jsonl, "jsonl", "b");
    let c = run(&pb, "protobuf", "c");
    assert!(!a.0.is_empty() && !a.1.is_empty());
    assert_eq!(a, b, "two replays of the same input give identical files");
    assert_eq!(a, c, "protobuf and JSON inputs give identical files");
}
