//! The outreach policy: hysteresis, each suppression rule, channel choice,
//! playbook mapping and priority.

use super::*;
use crate::{
    config::{CoreConfig, OutreachConfig},
    pb::{Channel, Playbook, Priority},
    population::PopulationModel,
    score::{Level, Reason, Score, StrengthsView},
    signals::Context,
    state::{ContactMark, CustomerState, OpenTicket, Support},
    time::SECS_PER_DAY,
};

const T: i64 = 1_750_000_000;
const D: i64 = SECS_PER_DAY;

fn sc(level: Level, code: &'static str, at: i64) -> Score {
    let risk = match level {
        Level::Low => 0.1,
        Level::Medium => 0.4,
        Level::High => 0.7,
        Level::Critical => 0.9,
    };
    Score {
        at,
        risk,
        level,
        strengths: StrengthsView {
            signals: crate::vocabulary::Signals::from_array([0.0; 7]),
            p_dead: 0.0,
        },
        contributions: Vec::new(),
        coefficients: "prior",
        reasons: vec![Reason {
            code: crate::vocabulary::ReasonCode::from_code(code).expect("a reason code"),
            contribution: 3.0,
            evidence: format!("{code} evidence"),
        }],
    }
}

/// Runs the policy for a sequence of (time, level, reason) scores.
fn run(
    s: &mut CustomerState,
    cfg: &OutreachConfig,
    steps: &[(i64, Level, &'static str)],
) -> Vec<Option<Decision>> {
    let core = CoreConfig::default();
    let model = PopulationModel::prior(&core.model);
    let ctx = Context::new(&core, &model);
    steps
        .iter()
        .map(|(at, level, code)| decide(s, "c1", &sc(*level, code, *at), *at, &ctx, cfg))
        .collect()
}

fn sent(d: &Option<Decision>) -> Option<&OutreachRequested> {
    match d {
        Some(Decision::Send(m)) => Some(m),
        _ => None,
    }
}

fn suppressed(d: &Option<Decision>) -> Option<Suppression> {
    match d {
        Some(Decision::Suppressed { reason, .. }) => Some(*reason),
        _ => None,
    }
}

#[test]
fn an_upward_crossing_sends_once_per_episode_with_hysteresis() {
    let cfg = OutreachConfig::default();
    let mut s = CustomerState::new(T - 100 * D);
    let out = run(
        &mut s,
        &cfg,
        &[
            (T, Level::Medium, "silence"),
            (T + D, Level::High, "silence"),
            (T + 2 * D, Level::Critical, "silence"),
            (T + 3 * D, Level::Medium, "silence"), // not low: still in the episode
            (T + 40 * D, Level::High, "silence"),  // back up, not re-armed: nothing
            (T + 41 * D, Level::Low, "silence"),   // re-armed
            (T + 60 * D, Level::High, "silence"),  // new episode
        ],
    );
    let ids: Vec<Option<String>> = out
        .iter()
        .map(|d| sent(d).map(|m| m.outreach_id.clone()))
        .collect();
    assert_eq!(ids.iter().filter(|x| x.is_some()).count(), 2, "{out:?}");
    assert!(ids[1].is_some() && ids[6].is_some());
    assert_ne!(ids[1], ids[6]);
    assert_eq!(
        ids[1].as_deref(),
        Some(outreach_id("c1", Playbook::CheckIn, T + D).as_str())
    );
    let m = sent(&out[1]).cloned().unwrap_or_default();
    assert_eq!(m.decided_at.map(|t| t.seconds), Some(T + D));
    assert_eq!(m.episode_started_at.map(|t| t.seconds), Some(T + D));
    assert_eq!(m.reasons[0].code, "silence");
    assert_eq!(s.outreach.as_ref().map(|h| h.sent), Some(2));
}

#[test]
fn cooldown_holds_a_new_episode_back_until_it_ends() {
    let cfg = OutreachConfig::default();
    let mut s = CustomerState::new(T - 100 * D);
    let out = run(
        &mut s,
        &cfg,
        &[
            (T, Level::High, "silence"),
            (T + D, Level::Low, "silence"),
            (T + 2 * D, Level::High, "silence"), // new episode inside the 14-day cooldown
            (T + 3 * D, Level::High, "silence"), // same reason: counted once
            (T + 14 * D, Level::High, "silence"), // cooldown over: sent for the pending episode
        ],
    );
    assert!(sent(&out[0]).is_some());
    assert_eq!(suppressed(&out[2]), Some(Suppression::Cooldown));
    assert!(out[3].is_none());
    let m = sent(&out[4]).cloned().unwrap_or_default();
    assert_eq!(m.episode_started_at.map(|t| t.seconds), Some(T + 2 * D));
    assert_eq!(next_wakeup(&s, T + 15 * D, &cfg), Some(T + 28 * D));
}

#[test]
fn the_cap_limits_outreach_per_rolling_window() {
    let cfg = OutreachConfig {
        cooldown: crate::time::Span::days(1),
        ..OutreachConfig::default()
    };
    let mut s = CustomerState::new(T - 100 * D);
    let out = run(
        &mut s,
        &cfg,
        &[
            (T, Level::High, "silence"),
            (T + D, Level::Low, "silence"),
            (T + 2 * D, Level::High, "silence"),
            (T + 3 * D, Level::Low, "silence"),
            (T + 4 * D, Level::High, "silence"), // third in 30 days
            (T + 30 * D, Level::High, "silence"), // the first left the window
        ],
    );
    assert!(sent(&out[0]).is_some() && sent(&out[2]).is_some());
    assert_eq!(suppressed(&out[4]), Some(Suppression::FrequencyCap));
    assert!(sent(&out[5]).is_some());
}

#[test]
fn no_consent_and_cancelled_customers_get_nothing() {
    let cfg = OutreachConfig::default();
    let mut s = CustomerState::new(T - 100 * D);
    s.consent.global = Some(false);
    assert_eq!(
        suppressed(&run(&mut s, &cfg, &[(T, Level::High, "silence")])[0]),
        Some(Suppression::NoConsent)
    );

    let strict = OutreachConfig {
        assume_consent: false,
        ..OutreachConfig::default()
    };
    let mut s = CustomerState::new(T - 100 * D);
    assert_eq!(
        suppressed(&run(&mut s, &strict, &[(T, Level::High, "silence")])[0]),
        Some(Suppression::NoConsent)
    );

    let mut s = CustomerState::new(T - 100 * D);
    s.subscription = Some(Box::new(crate::state::SubscriptionFacts {
        plan: "pro".into(),
        renews_at: 0,
        cancelled: true,
        updated_at: T,
    }));
    assert_eq!(
        suppressed(&run(&mut s, &cfg, &[(T, Level::High, "renewal")])[0]),
        Some(Suppression::Cancelled)
    );
}

#[test]
fn a_worked_ticket_suppresses_everything_but_escalation() {
    let cfg = OutreachConfig::default();
    let worked = || {
        let mut s = CustomerState::new(T - 100 * D);
        s.support = Some(Box::new(Support {
            open_tickets: vec![OpenTicket {
                ticket: 1,
                opened_at: T - D,
                severity: 2,
                first_response_at: T - 1000,
                reopened: false,
                channel: Channel::Phone,
            }],
            ..Support::default()
        }));
        s
    };
    let mut s = worked();
    assert_eq!(
        suppressed(&run(&mut s, &cfg, &[(T, Level::High, "friction")])[0]),
        Some(Suppression::TicketInProgress)
    );
    let mut s = worked();
    let m = run(&mut s, &cfg, &[(T, Level::High, "escalation")]);
    assert_eq!(
        sent(&m[0]).map(|m| m.playbook),
        Some(Playbook::EscalateToAgent as i32)
    );
    // An unanswered ticket is not being worked: service recovery goes out.
    let mut s = worked();
    if let Some(sup) = s.support.as_mut() {
        sup.open_tickets[0].first_response_at = 0;
    }
    let m = run(&mut s, &cfg, &[(T, Level::High, "friction")]);
    assert_eq!(
        sent(&m[0]).map(|m| m.playbook),
        Some(Playbook::ServiceRecovery as i32)
    );
}

#[test]
fn playbook_follows_the_dominant_reason_and_value() {
    let cfg = OutreachConfig::default();
    let cases = [
        ("silence", 10.0, Playbook::CheckIn),
        ("silence", 900.0, Playbook::WinBack),
        ("rate_drop", 10.0, Playbook::CheckIn),
        ("rate_drop", 500.0, Playbook::WinBack),
        ("satisfaction_drop", 10.0, Playbook::FeedbackFollowUp),
        ("friction", 10.0, Playbook::ServiceRecovery),
        ("escalation", 10.0, Playbook::EscalateToAgent),
        ("renewal", 10.0, Playbook::RenewalSave),
    ];
    for (code, value, want) in cases {
        assert_eq!(
            choose_playbook(&sc(Level::High, code, T), value, &cfg),
            want,
            "{code} {value}"
        );
    }
    let mut custom = OutreachConfig::default();
    custom.playbooks.silence = Playbook::WinBack;
    assert_eq!(
        choose_playbook(&sc(Level::High, "silence", T), 1.0, &custom),
        Playbook::WinBack
    );
}

#[test]
fn channel_is_preferred_consented_and_not_the_last_bad_one() {
    let cfg = OutreachConfig::default();
    let mut s = CustomerState::new(T);
    assert_eq!(
        choose_channel(&s, &cfg),
        Some(Channel::Email),
        "fallback with no history"
    );
    for d in 0..5 {
        s.channels.record(Channel::Phone, 20_000 + d, 30.0);
    }
    s.channels.record(Channel::Sms, 20_004, 30.0);
    assert_eq!(choose_channel(&s, &cfg), Some(Channel::Phone), "most used");
    s.consent.denied |= 1 << (Channel::Phone as u16);
    assert_eq!(
        choose_channel(&s, &cfg),
        Some(Channel::Sms),
        "phone withdrawn"
    );
    s.consent.denied = 0;
    s.support_mut().last_negative = Some(ContactMark {
        at: T,
        channel: Channel::Phone,
    });
    assert_eq!(
        choose_channel(&s, &cfg),
        Some(Channel::Sms),
        "phone is where it went wrong"
    );
    // Store visits are not an outreach channel: fall back.
    let mut store_only = CustomerState::new(T);
    store_only.channels.record(Channel::Store, 20_000, 30.0);
    assert_eq!(choose_channel(&store_only, &cfg), Some(Channel::Email));
    // Only one consented channel: used even if it was the bad one.
    let only_phone = OutreachConfig {
        channels: vec![Channel::Phone],
        ..OutreachConfig::default()
    };
    assert_eq!(choose_channel(&s, &only_phone), Some(Channel::Phone));
    let mut none = CustomerState::new(T);
    none.consent.global = Some(false);
    assert_eq!(choose_channel(&none, &cfg), None);
}

#[test]
fn priority_weighs_risk_against_value() {
    let cfg = OutreachConfig::default();
    assert_eq!(priority(0.65, 0.0, Playbook::CheckIn, &cfg), Priority::Low);
    assert_eq!(
        priority(0.75, 0.0, Playbook::CheckIn, &cfg),
        Priority::Normal
    );
    assert_eq!(
        priority(0.65, 500.0, Playbook::WinBack, &cfg),
        Priority::High
    );
    assert_eq!(
        priority(0.9, 1000.0, Playbook::WinBack, &cfg),
        Priority::Urgent
    );
    assert_eq!(
        priority(0.65, 0.0, Playbook::EscalateToAgent, &cfg),
        Priority::High
    );
}

#[test]
fn after_the_cooldown_only_a_new_problem_starts_a_new_episode() {
    let cfg = OutreachConfig::default();
    let mut s = CustomerState::new(T - 100 * D);
    let out = run(
        &mut s,
        &cfg,
        &[
            (T, Level::High, "silence"),
            (T + 20 * D, Level::Critical, "silence"), // same problem, long after: nothing
            (T + 21 * D, Level::Critical, "friction"), // a complaint: a new problem
        ],
    );
    assert!(sent(&out[0]).is_some());
    assert!(out[1].is_none());
    let m = sent(&out[2]).cloned().unwrap_or_default();
    assert_eq!(m.playbook, Playbook::ServiceRecovery as i32);
    assert_eq!(m.episode_started_at.map(|t| t.seconds), Some(T + 21 * D));
}
