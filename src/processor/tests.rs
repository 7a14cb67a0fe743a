//! One partition's stream: silence timers, lateness, erasure, restore.

use std::sync::Arc;

use super::*;
use crate::{
    config::CoreConfig,
    events,
    pb::{Channel, InteractionEvent},
    population::PopulationModel,
    time::{start_of_day, SECS_PER_DAY},
};

const D: i64 = SECS_PER_DAY;

fn at(day: i32) -> i64 {
    start_of_day(20_000 + day) + 10 * 3600
}

fn processor() -> Processor {
    with_fold(|_| {})
}

fn feed(p: &mut Processor, evs: &[InteractionEvent]) -> Vec<Effect> {
    let mut out = Vec::new();
    for e in evs {
        let _ = p.process(e, None, &mut out);
        if let Some(st) = p.stream_time() {
            p.advance_to(st, &mut out);
        }
    }
    out
}

fn outreach(effects: &[Effect]) -> Vec<&OutreachRequested> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Outreach(o) => Some(&**o),
            _ => None,
        })
        .collect()
}

fn weekly_buyer(id: &str, weeks: i32) -> Vec<InteractionEvent> {
    (0..weeks)
        .map(|w| events::purchase(&format!("{id}-{w}"), id, at(7 * w), 40.0))
        .collect()
}

#[test]
fn a_silent_customer_crosses_into_high_at_the_scheduled_time_and_not_before() {
    let mut p = processor();
    let out = feed(&mut p, &weekly_buyer("c1", 10));
    assert!(outreach(&out).is_empty());
    let state = p.get("c1").cloned().unwrap_or_default();
    let due = state.score.next_check_at;
    assert!(due > at(63), "a timer is set after the last purchase");
    assert!(state.score.level < Level::High);

    // Nothing for c1 arrives; stream time moves on (another customer is active).
    let mut out = Vec::new();
    p.advance_to(due - 1, &mut out);
    assert!(
        outreach(&out).is_empty(),
        "no outreach before the scheduled time"
    );
    let mut guard = 0;
    let mut fired = Vec::new();
    let mut t = due;
    while fired.is_empty() && guard < 10 {
        let mut out = Vec::new();
        p.advance_to(t, &mut out);
        fired = outreach(&out).into_iter().cloned().collect();
        t = p.get("c1").map_or(t, |s| s.score.next_check_at);
        guard += 1;
    }
    let o = fired.first().cloned().unwrap_or_default();
    let decided = o.decided_at.map_or(0, |t| t.seconds);
    let s = p.get("c1").cloned().unwrap_or_default();
    assert!(s.score.level >= Level::High);
    // The decision time is exactly where the level first reaches high.
    let cfg = CoreConfig::default();
    let ctx = crate::signals::Context::new(&cfg, p.model());
    assert!(score::level(&s, decided, &ctx) >= Level::High);
    assert!(score::level(&s, decided - 1, &ctx) < Level::High);
    assert_eq!(o.customer_id, "c1");
    assert_eq!(o.reasons[0].code, "silence");
}

#[test]
fn late_events_are_dropped_and_counted_not_folded() {
    let mut p = processor();
    let mut out = Vec::new();
    assert!(p
        .process(&events::purchase("a", "c", at(10), 1.0), None, &mut out)
        .is_ok());
    let r = p.process(
        &events::purchase("b", "c", at(10) - 2 * D, 1.0),
        None,
        &mut out,
    );
    assert_eq!(r.ok(), Some(Processed::Late));
    let r = p.process(
        &events::purchase("c", "c", at(10) - D / 2, 1.0),
        None,
        &mut out,
    );
    assert_eq!(
        r.ok(),
        Some(Processed::Folded(Folded::Applied)),
        "within the 1-day lateness"
    );
    assert_eq!(p.get("c").map(|s| s.value.purchases), Some(2));
}

#[test]
fn erasure_forgets_the_customer_and_earlier_events_do_not_bring_them_back() {
    let mut p = processor();
    let mut out = Vec::new();
    let _ = p.process(&events::purchase("a", "c", at(0), 10.0), None, &mut out);
    let _ = p.process(
        &events::purchase("b", "c", at(0) + 3600, 10.0),
        None,
        &mut out,
    );
    let _ = p.process(&events::erasure("x", "c", at(0) + 7200), None, &mut out);
    assert!(p.get("c").is_none());
    let changed = p.take_changed();
    assert_eq!(changed.len(), 1);
    assert!(changed[0].1.is_none(), "a tombstone for the changelog");
    // A late copy from before the erasure (within lateness) is forgotten.
    let r = p.process(
        &events::purchase("late", "c", at(0) + 5000, 10.0),
        None,
        &mut out,
    );
    assert_eq!(r.ok(), Some(Processed::Forgotten));
    assert!(p.get("c").is_none());
    // A new relationship after the erasure starts from nothing.
    let _ = p.process(&events::purchase("new", "c", at(1), 10.0), None, &mut out);
    assert_eq!(p.get("c").map(|s| s.value.purchases), Some(1));
    assert_eq!(p.level_counts().iter().sum::<u64>(), 1);
}

#[test]
fn a_restored_state_ignores_redelivered_events_and_keeps_its_timer() {
    let mut p = processor();
    let evs = weekly_buyer("c1", 6);
    feed(&mut p, &evs);
    let snap = p
        .get("c1")
        .map(|s| s.encode_snapshot("c1"))
        .unwrap_or_default();
    let Ok((id, state)) = CustomerState::decode_snapshot(&snap) else {
        panic!("decodes")
    };
    let mut fresh = processor();
    fresh.restore(&id, state.clone());
    let mut out = Vec::new();
    let r = fresh.process(&evs[5], None, &mut out);
    assert_eq!(r.ok(), Some(Processed::Folded(Folded::Duplicate)));
    assert_eq!(fresh.get("c1"), Some(&state));
    // Both instances fire the same silence outreach later.
    let mut a = Vec::new();
    let mut b = Vec::new();
    p.advance_to(at(200), &mut a);
    fresh.advance_to(at(200), &mut b);
    assert_eq!(a, b);
    assert!(!outreach(&a).is_empty());
}

#[test]
fn a_customers_own_due_timer_fires_before_their_next_event() {
    // With no other traffic, stream time lags; the customer's own event at
    // day 200 first fires the silence decision that fell due before it.
    let mut p = processor();
    let mut out = Vec::new();
    for e in weekly_buyer("c1", 10) {
        let _ = p.process(&e, None, &mut out);
    }
    let due = p.get("c1").map_or(0, |s| s.score.next_check_at);
    let _ = p.process(
        &events::purchase("back", "c1", at(200), 40.0),
        None,
        &mut out,
    );
    let sent = outreach(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert!(sent[0].decided_at.map_or(0, |t| t.seconds) >= due);
    assert!(sent[0].decided_at.map_or(0, |t| t.seconds) < at(200));
}

#[test]
fn same_events_same_effects() {
    let mut evs = weekly_buyer("a", 8);
    evs.extend(weekly_buyer("b", 12));
    evs.push(events::contact("k1", "c", at(3), Channel::Phone));
    evs.push(events::contact("k2", "c", at(4), Channel::Email));
    evs.push(events::contact("k3", "c", at(5), Channel::Chat));
    evs.sort_by_key(|e| e.occurred_at.map_or(0, |t| t.seconds));
    evs.push(events::session("end", "z", at(300), Channel::Web));
    let mut p1 = processor();
    let mut p2 = processor();
    let e1 = feed(&mut p1, &evs);
    let e2 = feed(&mut p2, &evs);
    assert_eq!(e1, e2);
    assert!(outreach(&e1).len() >= 3, "{}", outreach(&e1).len());
    let s1: Vec<Vec<u8>> = p1
        .sorted()
        .iter()
        .map(|(k, s)| s.encode_snapshot(k))
        .collect();
    let s2: Vec<Vec<u8>> = p2
        .sorted()
        .iter()
        .map(|(k, s)| s.encode_snapshot(k))
        .collect();
    assert_eq!(s1, s2);
}

fn with_fold(f: impl FnOnce(&mut crate::config::FoldConfig)) -> Processor {
    let mut cfg = CoreConfig::default();
    f(&mut cfg.fold);
    let model = Arc::new(PopulationModel::prior(&cfg.model));
    Processor::new(Arc::new(cfg), model)
}

#[test]
fn a_customer_silent_past_the_retention_is_forgotten_with_a_tombstone() {
    let mut p = with_fold(|f| f.retention = crate::time::Span::days(200));
    feed(&mut p, &weekly_buyer("gone", 4));
    feed(&mut p, &weekly_buyer("busy", 4));
    let _ = p.take_changed();
    let last = at(21);
    // Stream time reaches 200 days after their last purchase, not beyond.
    let mut out = Vec::new();
    p.advance_to(last + 200 * D - 1, &mut out);
    assert!(p.get("gone").is_some(), "kept until the retention is over");
    p.advance_to(last + 200 * D, &mut out);
    assert!(p.get("gone").is_none() && p.get("busy").is_none());
    assert_eq!(p.evicted(), 2);
    assert_eq!(p.len(), 0);
    let changed = p.take_changed();
    let tombstones: Vec<&str> = changed
        .iter()
        .filter(|(_, s)| s.is_none())
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(tombstones, ["busy", "gone"], "each leaves a tombstone");
    assert_eq!(p.level_counts().iter().sum::<u64>(), 0);
}

#[test]
fn a_forgotten_customer_who_comes_back_starts_afresh_and_the_state_follows_the_tombstone() {
    let mut p = with_fold(|f| f.retention = crate::time::Span::days(200));
    feed(&mut p, &weekly_buyer("back", 4));
    let _ = p.take_changed();
    // Their own next event, a year later, before any other event moved
    // stream time: their retention ran out first, so this is a new start.
    let e = events::purchase("back-again", "back", at(21) + 365 * D, 10.0);
    feed(&mut p, &[e]);
    let s = p.get("back").cloned().unwrap_or_default();
    assert_eq!(s.value.purchases, 1, "the old history is gone");
    assert_eq!(s.first_seen_at, at(21) + 365 * D);
    assert_eq!(p.evicted(), 1);
    let changed = p.take_changed();
    let kinds: Vec<bool> = changed.iter().map(|(_, s)| s.is_some()).collect();
    assert_eq!(kinds, [false, true], "tombstone first, then the new state");
}

#[test]
fn a_paid_up_subscription_keeps_a_silent_customer_until_its_renewal_date() {
    let mut p = with_fold(|f| f.retention = crate::time::Span::days(30));
    let renews = at(0) + 300 * D;
    feed(
        &mut p,
        &[events::subscription(
            "s1",
            "sub",
            at(0),
            "annual",
            renews,
            false,
        )],
    );
    let mut out = Vec::new();
    p.advance_to(at(0) + 100 * D, &mut out);
    assert!(p.get("sub").is_some(), "silent, but paid up to the renewal");
    p.advance_to(renews, &mut out);
    assert!(p.get("sub").is_none(), "gone once the renewal date passed");
}

#[test]
fn retention_off_keeps_everyone() {
    let mut p = with_fold(|f| f.retention = crate::time::Span::days(0));
    feed(&mut p, &weekly_buyer("kept", 2));
    let mut out = Vec::new();
    p.advance_to(at(0) + 5000 * D, &mut out);
    assert!(p.get("kept").is_some());
    assert_eq!(p.evicted(), 0);
}

#[test]
fn new_customers_beyond_the_cap_are_refused_and_known_ones_go_on() {
    let mut p = with_fold(|f| f.max_customers_per_partition = 3);
    let mut out = Vec::new();
    for i in 0..3 {
        let e = events::purchase(&format!("e{i}"), &format!("c{i}"), at(i), 1.0);
        assert!(p.process(&e, None, &mut out).is_ok());
    }
    let refused = p.process(&events::purchase("e9", "c9", at(4), 1.0), None, &mut out);
    assert_eq!(
        refused.map_err(|r| r.reason()),
        Err("customer_cap"),
        "a fourth customer is refused"
    );
    assert!(p.get("c9").is_none());
    let known = p.process(&events::purchase("e10", "c1", at(5), 1.0), None, &mut out);
    assert!(known.is_ok(), "a known customer's events still count");
    assert_eq!(p.len(), 3);
}

#[test]
fn every_forgotten_customer_leaves_one_tombstone_across_batches() {
    let mut p = with_fold(|f| f.retention = crate::time::Span::days(400));
    let mut written = std::collections::BTreeMap::new();
    let mut tombstones = 0;
    let mut collect = |p: &mut Processor, tombstones: &mut usize| {
        for (id, s) in p.take_changed() {
            match s {
                Some(_) => {
                    written.insert(id.to_string(), ());
                }
                None => {
                    *tombstones += 1;
                    written.remove(id.as_str());
                }
            }
        }
    };
    for i in 0..5000 {
        let e = events::purchase(&format!("e{i}"), &format!("c{i}"), at(0) + i % 1000, 1.0);
        feed(&mut p, &[e]);
        if i % 700 == 0 {
            collect(&mut p, &mut tombstones);
        }
    }
    collect(&mut p, &mut tombstones);
    let back = events::purchase("b", "c3", at(402), 1.0);
    feed(&mut p, &[back]);
    collect(&mut p, &mut tombstones);
    assert_eq!(p.evicted(), 5000);
    assert_eq!(tombstones, 5000);
    assert_eq!(written.keys().collect::<Vec<_>>(), ["c3"]);
    assert_eq!(p.len(), 1);
}

#[test]
fn customers_new_after_a_mass_eviction_are_written_to_the_changelog() {
    let mut p = with_fold(|f| {
        f.retention = crate::time::Span::days(400);
        f.max_customers_per_partition = 250;
    });
    let t0 = at(0);
    let mut states = std::collections::BTreeMap::new();
    let collect = |p: &mut Processor, states: &mut std::collections::BTreeMap<String, ()>| {
        for (id, s) in p.take_changed() {
            match s {
                Some(_) => states.insert(id.to_string(), ()),
                None => states.remove(id.as_str()),
            };
        }
    };
    for i in 0..1000 {
        let e = events::purchase(&format!("e{i}"), &format!("c{i:04}"), t0 + i % 100, 1.0);
        feed(&mut p, &[e]);
    }
    collect(&mut p, &mut states);
    assert_eq!(states.len(), 250);
    feed(&mut p, &[events::purchase("b", "c0000", t0 + 401 * D, 1.0)]);
    collect(&mut p, &mut states);
    for i in 0..3 {
        let e = events::purchase(&format!("n{i}"), &format!("new{i}"), t0 + 402 * D, 1.0);
        feed(&mut p, &[e]);
    }
    collect(&mut p, &mut states);
    assert_eq!(p.evicted(), 250);
    assert_eq!(
        states.keys().map(String::as_str).collect::<Vec<_>>(),
        ["c0000", "new0", "new1", "new2"]
    );
}
