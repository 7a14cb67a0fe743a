use proptest::prelude::*;

use super::*;
use crate::{
    config::FoldConfig,
    events,
    pb::{Channel, InteractionEvent, Outcome, TicketStatus},
    state::CustomerState,
    time::SECS_PER_DAY,
    validate::validate,
};

const T0: i64 = 1_700_000_000;

fn fold_all(events: &[InteractionEvent]) -> CustomerState {
    let cfg = FoldConfig::default();
    let mut s = CustomerState::new(T0);
    for e in events {
        if let Ok(v) = validate(e, None, &cfg) {
            s.apply(&v, &cfg);
        }
    }
    s
}

#[test]
fn purchases_and_sessions_build_the_buy_till_you_die_counts() {
    let evs = [
        events::purchase("e1", "c", T0, 10.0),
        events::session("e2", "c", T0 + 100, Channel::App),
        events::purchase("e3", "c", T0 + 3 * SECS_PER_DAY, 5.5),
        events::contact("e4", "c", T0 + 5 * SECS_PER_DAY, Channel::Phone),
    ];
    let s = fold_all(&evs);
    let a = s
        .activity
        .unwrap_or_else(|| crate::state::Activity::starting(0));
    assert_eq!(a.repeat_days, 1, "contacts are not activity by default");
    assert_eq!(a.span_days(), 3);
    assert_eq!(s.value.purchases, 2);
    assert!((s.value.amount - 15.5).abs() < 1e-9);
    assert_eq!(s.first_seen_at, T0);
    assert_eq!(s.last_event_at, T0 + 5 * SECS_PER_DAY);
}

#[test]
fn a_redelivered_event_changes_nothing() {
    let cfg = FoldConfig::default();
    let e = events::purchase("e1", "c", T0, 10.0);
    let mut s = CustomerState::new(T0);
    let v = validate(&e, None, &cfg).map_err(|r| r.to_string());
    let v = v.as_ref().map_err(Clone::clone);
    let Ok(v) = v else { panic!("valid") };
    assert_eq!(s.apply(v, &cfg), Folded::Applied);
    let once = s.clone();
    assert_eq!(s.apply(v, &cfg), Folded::Duplicate);
    assert_eq!(s, once);
}

#[test]
fn tickets_track_open_age_responses_and_reopens() {
    let d = SECS_PER_DAY;
    let s = fold_all(&[
        events::ticket_opened("e1", "c", T0, Channel::Phone, "t1"),
        events::ticket_opened("e2", "c", T0 + d, Channel::Email, "t2"),
        events::ticket_updated(
            "e3",
            "c",
            T0 + 2 * d,
            "t1",
            TicketStatus::FirstResponse,
            Some(172_800),
        ),
        events::ticket_updated("e4", "c", T0 + 3 * d, "t1", TicketStatus::Resolved, None),
        events::ticket_updated("e5", "c", T0 + 4 * d, "t1", TicketStatus::Reopened, None),
        events::ticket_updated(
            "e6",
            "c",
            T0 + 4 * d,
            "unknown",
            TicketStatus::Resolved,
            None,
        ),
    ]);
    let sup = s.support.unwrap_or_default();
    assert_eq!(sup.tickets_opened, 2);
    assert_eq!(sup.open_tickets.len(), 2);
    assert!(sup.open_tickets.iter().any(|t| t.reopened));
    assert_eq!(
        (
            sup.first_responses,
            sup.slow_first_responses,
            sup.resolved,
            sup.reopened
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(sup.mean_first_response_secs(), Some(172_800.0));
    assert_eq!(sup.negative_experiences, 2, "slow response and reopen");
    assert_eq!(sup.recent_contacts.len(), 2);
}

#[test]
fn contacts_keep_only_the_window() {
    let d = SECS_PER_DAY;
    let s = fold_all(&[
        events::contact("e1", "c", T0, Channel::Phone),
        events::contact("e2", "c", T0 + 8 * d, Channel::Chat),
        events::contact("e3", "c", T0 + 9 * d, Channel::Email),
        events::contact("e4", "c", T0 + 7 * d, Channel::Phone),
    ]);
    let sup = s.support.unwrap_or_default();
    let channels: Vec<Channel> = sup.recent_contacts.iter().map(|c| c.channel).collect();
    assert_eq!(
        channels,
        vec![Channel::Phone, Channel::Chat, Channel::Email]
    );
}

#[test]
fn surveys_move_the_averages_and_mark_detractors() {
    let d = SECS_PER_DAY;
    let s = fold_all(&[
        events::nps("e1", "c", T0, 9),
        events::nps("e2", "c", T0 + d, 3),
        events::csat("e3", "c", T0 + 2 * d, 2),
    ]);
    let sat = s.satisfaction.clone().unwrap_or_default();
    assert_eq!(
        (sat.last_nps, sat.last_csat, sat.answers),
        (Some(3), Some(2), 3)
    );
    // ewma: 0.9 -> 0.6 -> (0.6 + 0.25)/2 = 0.425 ; baseline: 0.9 -> 0.84 -> 0.781
    assert!((sat.ewma - 0.425).abs() < 1e-6, "{}", sat.ewma);
    assert!((sat.baseline - 0.781).abs() < 1e-6, "{}", sat.baseline);
    assert_eq!(sat.last_detractor_at, Some(T0 + d));
    assert_eq!(sat.last_low_csat_at, Some(T0 + 2 * d));
    assert_eq!(s.support.map(|x| x.negative_experiences), Some(2));
}

#[test]
fn consent_subscription_latest_statement_wins() {
    let d = SECS_PER_DAY;
    let s = fold_all(&[
        events::consent("e1", "c", T0 + d, false, Channel::Unspecified),
        events::consent("e2", "c", T0, true, Channel::Unspecified),
        events::consent("e3", "c", T0 + 2 * d, true, Channel::Email),
        events::subscription("e4", "c", T0 + d, "pro", T0 + 30 * d, false),
        events::subscription("e5", "c", T0, "basic", T0 + 10 * d, true),
    ]);
    assert!(!s.consent.allows(Channel::Sms, true));
    assert!(s.consent.allows(Channel::Email, false));
    let sub = s.subscription.unwrap_or_default();
    assert_eq!(
        (&*sub.plan, sub.renews_at, sub.cancelled),
        ("pro", T0 + 30 * d, false)
    );
}

#[test]
fn outcomes_close_the_episode_of_the_outreach_they_answer() {
    let cfg = FoldConfig::default();
    let mut s = CustomerState::new(T0);
    let h = s.outreach_mut();
    h.armed = false;
    h.episode_started_at = Some(T0);
    h.episode_done = true;
    h.last = Some(crate::state::OutreachRecord {
        outreach_id: "o1".into(),
        decided_at: T0,
        playbook: crate::pb::Playbook::WinBack,
        channel: Channel::Email,
        episode_started_at: T0,
        outcome: 0,
        reasons: 1,
    });
    let opened = events::outcome("e1", "c", T0 + 10, "o1", Outcome::Opened);
    let replied = events::outcome("e2", "c", T0 + 20, "o1", Outcome::Replied);
    let other = events::outcome("e3", "c", T0 + 30, "o-unknown", Outcome::Ignored);
    let mut results = Vec::new();
    for e in [&opened, &replied, &other] {
        if let Ok(v) = validate(e, None, &cfg) {
            results.push(s.apply(&v, &cfg));
        }
    }
    use crate::pb::Playbook;
    assert_eq!(
        results,
        vec![
            Folded::Outcome {
                playbook: Playbook::WinBack,
                outcome: Outcome::Opened
            },
            Folded::Outcome {
                playbook: Playbook::WinBack,
                outcome: Outcome::Replied
            },
            Folded::Outcome {
                playbook: Playbook::Unspecified,
                outcome: Outcome::Ignored
            },
        ]
    );
    let h = s.outreach.unwrap_or_default();
    assert_eq!(h.episode_started_at, None, "a reply ends the episode");
    assert_eq!(h.last.map(|l| l.outcome), Some(Outcome::Replied as i32));
    assert_eq!(h.outcomes[Outcome::Ignored as usize], 1);
}

#[test]
fn erasure_resets_the_state_but_the_score_mark() {
    let cfg = FoldConfig::default();
    let mut s = fold_all(&[events::purchase("e1", "c", T0, 10.0)]);
    s.score.level = crate::score::Level::High;
    s.score.next_check_at = T0 + 60;
    let mark = s.score;
    let e = events::erasure("e2", "c", T0 + 5);
    let Ok(v) = validate(&e, None, &cfg) else {
        panic!("valid")
    };
    assert_eq!(s.apply(&v, &cfg), Folded::Erased);
    // The mark stays until the processor removes the state: it uncounts the
    // customer from the level the mark names.
    assert_eq!(
        s,
        CustomerState {
            score: mark,
            ..CustomerState::default()
        }
    );
}

/// Fuzzing (fuzz/seeds/decode_fold/every-kind.pb): erasing a customer above
/// `low` uncounted them from `low` (the fold had already reset their score
/// mark), an overflow panic with debug assertions and wrong per-level
/// gauges without.
#[test]
fn erasing_a_customer_at_risk_leaves_the_level_counts_right() {
    use std::sync::Arc;

    use crate::{config::CoreConfig, population::PopulationModel, processor::Processor};
    let cfg = Arc::new(CoreConfig::default());
    let model = Arc::new(PopulationModel::prior(&cfg.model));
    let mut p = Processor::new(cfg, model);
    let h = 3_600;
    let evs = [
        events::purchase("e1", "c", T0, 120.0),
        events::ticket_opened("e2", "c", T0 + h, Channel::Chat, "t1"),
        events::ticket_updated(
            "e3",
            "c",
            T0 + 30 * h,
            "t1",
            TicketStatus::FirstResponse,
            None,
        ),
        events::csat("e4", "c", T0 + 31 * h, 1),
        events::complaint("e5", "c", T0 + 32 * h, Channel::Phone, "slow"),
        events::ticket_updated("e6", "c", T0 + 33 * h, "t1", TicketStatus::Reopened, None),
    ];
    let mut out = Vec::new();
    for e in &evs {
        assert!(p.process(e, None, &mut out).is_ok());
    }
    assert_ne!(p.level_counts()[0], 1, "the customer is above low");
    let erase = events::erasure("e7", "c", T0 + 34 * h);
    assert!(p.process(&erase, None, &mut out).is_ok());
    assert!(p.is_empty());
    assert_eq!(p.level_counts(), [0; 4]);
}

/// Fuzzing (snapshot target): a restored snapshot can hold any count, and
/// the next event must not overflow it.
#[test]
fn counters_saturate_instead_of_overflowing() {
    let cfg = FoldConfig::default();
    let mut s = fold_all(&[
        events::purchase("e1", "c", T0, 1.0),
        events::ticket_opened("e2", "c", T0, Channel::Chat, "t1"),
        events::nps("e3", "c", T0, 9),
    ]);
    let max = u32::MAX;
    s.value.purchases = max;
    if let Some(a) = s.activity.as_mut() {
        a.repeat_days = max;
    }
    let sup = s.support_mut();
    sup.tickets_opened = max;
    sup.resolved = max;
    sup.reopened = max;
    sup.first_responses = max;
    sup.first_response_secs_total = u64::MAX;
    sup.slow_first_responses = max;
    sup.complaints = max;
    sup.negative_experiences = max;
    s.satisfaction_mut().answers = max;
    s.outreach_mut().outcomes = [max; 7];
    let d = SECS_PER_DAY;
    let evs = [
        events::purchase("f1", "c", T0 + d, 1.0),
        events::ticket_opened("f2", "c", T0 + d, Channel::Chat, "t2"),
        events::ticket_updated(
            "f3",
            "c",
            T0 + 3 * d,
            "t2",
            TicketStatus::FirstResponse,
            None,
        ),
        events::ticket_updated("f4", "c", T0 + 3 * d, "t2", TicketStatus::Resolved, None),
        events::ticket_updated("f5", "c", T0 + 3 * d, "t2", TicketStatus::Reopened, None),
        events::complaint("f6", "c", T0 + 3 * d, Channel::Phone, "slow"),
        events::nps("f7", "c", T0 + 3 * d, 0),
        events::outcome("f8", "c", T0 + 3 * d, "o1", Outcome::Ignored),
    ];
    for e in &evs {
        if let Ok(v) = validate(e, None, &cfg) {
            s.apply(&v, &cfg);
        }
    }
    assert_eq!(s.value.purchases, max);
    assert_eq!(s.activity.map(|a| a.repeat_days), Some(max));
    let sup = s.support.as_deref().cloned().unwrap_or_default();
    assert_eq!(
        [
            sup.tickets_opened,
            sup.resolved,
            sup.reopened,
            sup.first_responses,
            sup.slow_first_responses,
            sup.complaints,
            sup.negative_experiences,
        ],
        [max; 7]
    );
    assert_eq!(sup.first_response_secs_total, u64::MAX);
    assert_eq!(s.satisfaction.map(|x| x.answers), Some(max));
    assert_eq!(s.outreach.map(|h| h.outcomes), Some([max; 7]));
}

// ---- properties ----

/// A realistic mix of kinds for one customer within `span` seconds of T0.
fn arb_event(span: i64) -> impl Strategy<Value = InteractionEvent> {
    (
        0..span,
        0u8..9,
        0..11i32,
        prop::sample::select(crate::channel::ALL.to_vec()),
        0u32..4,
    )
        .prop_map(move |(dt, kind, n, channel, tk)| {
            let at = T0 + dt;
            let id = format!("{dt}-{kind}-{n}-{tk}");
            let ticket = format!("t{tk}");
            match kind {
                0 => events::purchase(&id, "c", at, f64::from(n) * 3.5),
                1 => events::session(&id, "c", at, channel),
                2 => events::contact(&id, "c", at, channel),
                3 => events::nps(&id, "c", at, n),
                4 => events::csat(&id, "c", at, 1 + n % 5),
                5 => events::ticket_opened(&id, "c", at, channel, &ticket),
                6 => events::complaint(&id, "c", at, channel, "slow"),
                7 => events::consent(&id, "c", at, n % 2 == 0, channel),
                _ => events::session(&id, "c", at, crate::pb::Channel::Web),
            }
        })
}

fn btyd(s: &CustomerState) -> Option<(i32, i32, u32)> {
    s.activity.map(|a| (a.first_day, a.last_day, a.repeat_days))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any order of events within the lateness window gives the same counts.
    #[test]
    fn buy_till_you_die_counts_do_not_depend_on_order(
        evs in prop::collection::vec(arb_event(60 * SECS_PER_DAY), 1..60),
        seed in any::<u64>(),
    ) {
        use rand::{seq::SliceRandom, SeedableRng};
        let mut shuffled = evs.clone();
        shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        let a = fold_all(&evs);
        let b = fold_all(&shuffled);
        prop_assert_eq!(btyd(&a), btyd(&b));
        prop_assert_eq!(a.value.purchases, b.value.purchases);
        prop_assert_eq!(a.first_seen_at, b.first_seen_at);
        prop_assert_eq!(a.last_event_at, b.last_event_at);
        let distinct: std::collections::BTreeSet<i64> = evs.iter()
            .filter(|e| matches!(e.kind, Some(crate::pb::interaction_event::Kind::Purchase(_)) | Some(crate::pb::interaction_event::Kind::Session(_))))
            .map(|e| e.occurred_at.as_ref().map_or(0, |t| t.seconds).div_euclid(SECS_PER_DAY))
            .collect();
        prop_assert_eq!(a.activity.map_or(0, |x| x.repeat_days as usize + 1), distinct.len());
    }

    /// Redelivering any events (a crash replays a suffix) changes nothing.
    #[test]
    fn duplicates_change_nothing(
        evs in prop::collection::vec(arb_event(60 * SECS_PER_DAY), 1..40),
        redeliver in 0usize..8,
    ) {
        let mut with_dups = evs.clone();
        let tail = evs.len().saturating_sub(redeliver);
        with_dups.extend_from_slice(&evs[tail..]);
        prop_assert_eq!(fold_all(&evs), fold_all(&with_dups));
    }

    /// Snapshot, decode, and continue folding: the same as folding straight through.
    #[test]
    fn snapshot_then_continue_equals_straight_through(
        evs in prop::collection::vec(arb_event(60 * SECS_PER_DAY), 2..60),
        cut in any::<prop::sample::Index>(),
    ) {
        let cfg = FoldConfig::default();
        let cut = cut.index(evs.len());
        let straight = fold_all(&evs);
        let first = fold_all(&evs[..cut]);
        let bytes = first.encode_snapshot("c");
        let (id, mut resumed) = match CustomerState::decode_snapshot(&bytes) {
            Ok(x) => x,
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        prop_assert_eq!(id, "c");
        prop_assert_eq!(&resumed, &first);
        for e in &evs[cut..] {
            if let Ok(v) = validate(e, None, &cfg) {
                resumed.apply(&v, &cfg);
            }
        }
        prop_assert_eq!(resumed, straight);
    }
}

#[test]
fn snapshots_from_older_versions_decode_and_newer_ones_are_refused() {
    use prost::Message;
    // A version-0 writer knew only the id and the activity.
    let old = crate::pb::CustomerState {
        schema_version: 0,
        customer_id: "c".into(),
        activity: Some(crate::pb::ActivitySnapshot {
            first_day: 10,
            last_day: 12,
            repeat_days: 1,
            recent_days: 0b101,
        }),
        ..Default::default()
    };
    let decoded = CustomerState::decode_snapshot(&old.encode_to_vec());
    let Ok((_, s)) = decoded else {
        panic!("old snapshot must decode")
    };
    assert_eq!(s.activity.map(|a| a.repeat_days), Some(1));
    assert!(s.consent.allows(Channel::Email, true));
    let newer = crate::pb::CustomerState {
        schema_version: 99,
        ..old
    };
    assert!(CustomerState::decode_snapshot(&newer.encode_to_vec()).is_err());
}
