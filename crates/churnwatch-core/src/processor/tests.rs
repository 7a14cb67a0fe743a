//! One partition's stream: silence timers, lateness, erasure, restore.

use std::sync::Arc;

use super::*;
use crate::{
    config::CoreConfig,
    events,
    pb::{Channel, InteractionEvent, Playbook},
    population::PopulationModel,
    time::{start_of_day, SECS_PER_DAY},
    uplift::UpliftCounts,
};

const D: i64 = SECS_PER_DAY;

fn at(day: i32) -> i64 {
    start_of_day(20_000 + day) + 10 * 3600
}

fn processor() -> Processor {
    with_fold(|_| {})
}

/// A batch end as the pipeline makes it: seal, encode, take.
fn changelog(p: &mut Processor) -> Vec<ChangelogRecord> {
    p.seal();
    p.encode_sealed(usize::MAX);
    p.take_encoded().collect()
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
    let changed = changelog(&mut p);
    assert_eq!(changed.len(), 1);
    assert!(
        changed[0].snapshot.is_none(),
        "a tombstone for the changelog"
    );
    assert_eq!(
        changed[0].erased_at,
        Some(at(0) + 7200),
        "with the erasure time"
    );
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
    let _ = changelog(&mut p);
    let last = at(21);
    // Stream time reaches 200 days after their last purchase, not beyond.
    let mut out = Vec::new();
    p.advance_to(last + 200 * D - 1, &mut out);
    assert!(p.get("gone").is_some(), "kept until the retention is over");
    p.advance_to(last + 200 * D, &mut out);
    assert!(p.get("gone").is_none() && p.get("busy").is_none());
    assert_eq!(p.evicted(), 2);
    assert_eq!(p.len(), 0);
    let changed = changelog(&mut p);
    let mut tombstones: Vec<&str> = changed
        .iter()
        .filter(|r| r.snapshot.is_none() && r.erased_at.is_none())
        .map(|r| r.customer_id.as_str())
        .collect();
    tombstones.sort_unstable();
    assert_eq!(tombstones, ["busy", "gone"], "each leaves a tombstone");
    assert_eq!(p.level_counts().iter().sum::<u64>(), 0);
}

#[test]
fn a_forgotten_customer_who_comes_back_starts_afresh_and_the_state_follows_the_tombstone() {
    let mut p = with_fold(|f| f.retention = crate::time::Span::days(200));
    feed(&mut p, &weekly_buyer("back", 4));
    let _ = changelog(&mut p);
    // Their own next event, a year later, before any other event moved
    // stream time: their retention ran out first, so this is a new start.
    let e = events::purchase("back-again", "back", at(21) + 365 * D, 10.0);
    feed(&mut p, &[e]);
    let s = p.get("back").cloned().unwrap_or_default();
    assert_eq!(s.value.purchases, 1, "the old history is gone");
    assert_eq!(s.first_seen_at, at(21) + 365 * D);
    assert_eq!(p.evicted(), 1);
    let changed = changelog(&mut p);
    let kinds: Vec<bool> = changed.iter().map(|r| r.snapshot.is_some()).collect();
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
        for r in changelog(p) {
            match r.snapshot {
                Some(_) => {
                    written.insert(r.customer_id.to_string(), ());
                }
                None => {
                    *tombstones += 1;
                    written.remove(r.customer_id.as_str());
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
        for r in changelog(p) {
            match r.snapshot {
                Some(_) => states.insert(r.customer_id.to_string(), ()),
                None => states.remove(r.customer_id.as_str()),
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

#[test]
fn a_sealed_customer_is_written_as_sealed_even_if_they_change_before_encoding() {
    let mut p = processor();
    feed(&mut p, &weekly_buyer("a", 3));
    feed(&mut p, &weekly_buyer("b", 3));
    p.seal();
    let sealed_a = p.get("a").map(|s| s.encode_snapshot("a"));
    let sealed_b = p.get("b").map(|s| s.encode_snapshot("b"));
    assert_eq!(p.sealed_waiting(), 2);
    // Before anything is encoded, a's next event arrives and b is erased.
    feed(&mut p, &[events::purchase("a-3", "a", at(21), 40.0)]);
    feed(&mut p, &[events::erasure("x", "b", at(21) + 60)]);
    assert_eq!(
        p.sealed_waiting(),
        0,
        "both were encoded before they changed"
    );
    p.encode_sealed(usize::MAX);
    let mut batch: Vec<ChangelogRecord> = p.take_encoded().collect();
    batch.sort_by(|x, y| x.customer_id.cmp(&y.customer_id));
    let got: Vec<(&str, Option<&Vec<u8>>)> = batch
        .iter()
        .map(|r| (r.customer_id.as_str(), r.snapshot.as_ref()))
        .collect();
    assert_eq!(
        got,
        [("a", sealed_a.as_ref()), ("b", sealed_b.as_ref())],
        "the states at the seal, not after"
    );
    // The change and the erasure belong to the next batch.
    let next = changelog(&mut p);
    let a_now = p.get("a").map(|s| s.encode_snapshot("a"));
    assert_ne!(a_now, sealed_a);
    assert_eq!(next.len(), 2);
    assert!(next
        .iter()
        .any(|r| r.customer_id == "a" && r.snapshot == a_now));
    assert!(next
        .iter()
        .any(|r| r.customer_id == "b" && r.snapshot.is_none() && r.erased_at.is_some()));
}

#[test]
fn sealed_customers_are_encoded_a_budget_at_a_time_and_each_once() {
    let mut p = processor();
    for i in 0..50 {
        feed(&mut p, &weekly_buyer(&format!("c{i:02}"), 2));
    }
    p.seal();
    let mut seen = Vec::new();
    let mut rounds = 0;
    while p.encode_sealed(7) > 0 {
        rounds += 1;
        seen.extend(p.take_encoded());
    }
    seen.extend(p.take_encoded());
    assert_eq!(rounds, 7, "50 customers, 7 per round: 7 rounds leave some");
    let mut ids: Vec<&str> = seen.iter().map(|r| r.customer_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    assert_eq!(seen.len(), 50, "each customer once");
    assert!(changelog(&mut p).is_empty(), "nothing changed since");
}

/// A batch's records in a canonical order: by customer, tombstone first.
fn canonical(mut batch: Vec<ChangelogRecord>) -> Vec<ChangelogRecord> {
    batch.sort_by(|a, b| {
        (a.customer_id.as_str(), a.snapshot.is_some())
            .cmp(&(b.customer_id.as_str(), b.snapshot.is_some()))
    });
    batch
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// Encoding sealed customers a few at a time, while events go on
    /// changing them, writes every batch exactly as encoding it at the seal
    /// would have.
    #[test]
    fn encoding_bit_by_bit_writes_what_encoding_at_the_seal_would(
        steps in proptest::collection::vec(
            (0u8..6, 0u8..12, 0i64..12 * 3600, proptest::bool::weighted(0.15), 0usize..3),
            1..160,
        ),
    ) {
        let mut bit = with_fold(|f| f.retention = crate::time::Span::days(20));
        let mut once = with_fold(|f| f.retention = crate::time::Span::days(20));
        let (mut bit_batches, mut once_batches) = (vec![], vec![]);
        let mut current = Vec::new();
        for (i, (c, kind, jitter, seal, budget)) in steps.iter().enumerate() {
            let id = format!("c{c}");
            let t = at(0) + i as i64 * 5 * 3600 + jitter;
            let e = match kind {
                0 => events::erasure(&format!("e{i}"), &id, t),
                1..=3 => events::nps(&format!("e{i}"), &id, t, i32::from(*kind)),
                _ => events::purchase(&format!("e{i}"), &id, t, 10.0),
            };
            feed(&mut bit, std::slice::from_ref(&e));
            feed(&mut once, std::slice::from_ref(&e));
            bit.encode_sealed(*budget);
            current.extend(bit.take_encoded());
            if *seal {
                bit.encode_sealed(usize::MAX);
                current.extend(bit.take_encoded());
                bit_batches.push(canonical(std::mem::take(&mut current)));
                bit.seal();
                current.extend(bit.take_encoded());
                once_batches.push(canonical(changelog(&mut once)));
            }
        }
        bit.encode_sealed(usize::MAX);
        current.extend(bit.take_encoded());
        bit_batches.push(canonical(current));
        bit.seal();
        bit.encode_sealed(usize::MAX);
        bit_batches.push(canonical(bit.take_encoded().collect()));
        once_batches.push(canonical(changelog(&mut once)));
        // `bit` has one batch more at the front: what was sealed before its
        // first seal (nothing).
        proptest::prop_assert!(bit_batches[0].is_empty());
        proptest::prop_assert_eq!(&bit_batches[1..], &once_batches[..]);
    }
}

#[test]
fn activity_gathered_in_parts_is_everyones_once() {
    let mut p = processor();
    let mut evs: Vec<InteractionEvent> = (0..40)
        .flat_map(|i| weekly_buyer(&format!("g{i:02}"), 1 + i % 4))
        .collect();
    evs.sort_by_key(|e| e.occurred_at.as_ref().map_or(0, |t| t.seconds));
    feed(&mut p, &evs);
    feed(&mut p, &[events::erasure("x", "g07", at(30))]);
    let mut parts = Vec::new();
    let mut next = Some(0);
    let mut rounds = 0;
    let mut outcomes = crate::score::outcomes::Outcomes::default();
    let mut g = outcomes.begin(at(30), p.config());
    while let Some(from) = next {
        next = p.gather(from, 3, &mut parts, &mut g);
        rounds += 1;
    }
    let mut all: Vec<Activity> = p.iter().filter_map(|(_, s)| s.activity).collect();
    assert_eq!(all.len(), 39, "the erased customer is not there");
    let key = |a: &Activity| (a.first_day, a.last_day, a.repeat_days);
    all.sort_by_key(key);
    parts.sort_by_key(key);
    assert_eq!(parts, all);
    assert!(rounds > 1, "in parts, not at once");
}

#[test]
fn a_customer_id_with_a_control_character_is_refused_and_cannot_name_the_model() {
    // Issue 20, finding 1: `\0churnwatch/model` is the changelog key of the
    // model; no event may make a customer of that name (or any id with a
    // control character, which could not be told from churnwatch's keys).
    let mut p = processor();
    let mut out = Vec::new();
    for id in [
        "\u{0}churnwatch/model",
        "\u{0}c-1",
        "c\u{1}x",
        "c\u{7f}",
        "tab\there",
    ] {
        let r = p.process(&events::purchase("e1", id, at(0), 10.0), None, &mut out);
        assert_eq!(
            r.err().map(|r| r.reason()),
            Some("control_character"),
            "{id:?}"
        );
        assert!(p.get(id).is_none(), "{id:?}");
    }
    assert!(
        changelog(&mut p).is_empty(),
        "nothing reaches the changelog"
    );
}

#[test]
fn an_erasure_erases_whatever_its_event_id() {
    // Issue 20, finding 2: an erasure whose event id repeats one of the
    // customer's recent ids is not a redelivery of that event.
    let mut p = processor();
    let mut out = Vec::new();
    let _ = p.process(&events::purchase("e1", "c", at(0), 10.0), None, &mut out);
    let r = p.process(&events::erasure("e1", "c", at(0) + 60), None, &mut out);
    assert_eq!(r.ok(), Some(Processed::Folded(Folded::Erased)));
    assert!(p.get("c").is_none(), "erased");
    let records = changelog(&mut p);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].erased_at, Some(at(0) + 60));
    // Idempotent: the same erasure again leaves the customer erased, with
    // the same erasure time, and a later one moves it on.
    let r = p.process(&events::erasure("e1", "c", at(0) + 60), None, &mut out);
    assert!(r.is_ok());
    assert!(p.get("c").is_none());
    let r = p.process(&events::erasure("e9", "c", at(0) + 120), None, &mut out);
    assert_eq!(r.ok(), Some(Processed::Folded(Folded::Erased)));
    let again: Vec<_> = changelog(&mut p)
        .into_iter()
        .map(|r| (r.customer_id, r.snapshot.is_none(), r.erased_at))
        .collect();
    assert!(again
        .iter()
        .all(|(id, tomb, _)| id.as_str() == "c" && *tomb));
    assert_eq!(again.last().and_then(|r| r.2), Some(at(0) + 120));
    let r = p.process(
        &events::purchase("e2", "c", at(0) + 90, 1.0),
        None,
        &mut out,
    );
    assert_eq!(
        r.ok(),
        Some(Processed::Forgotten),
        "before the last erasure"
    );
}

#[test]
fn an_erasure_older_than_stream_time_still_erases() {
    let mut p = processor();
    let mut out = Vec::new();
    let _ = p.process(&events::purchase("e1", "c", at(0), 10.0), None, &mut out);
    let _ = p.process(
        &events::purchase("e2", "other", at(5), 10.0),
        None,
        &mut out,
    );
    let r = p.process(&events::erasure("x", "c", at(0) + 60), None, &mut out);
    assert_eq!(r.ok(), Some(Processed::Folded(Folded::Erased)));
    assert!(p.get("c").is_none());
}

#[test]
fn an_erasure_of_an_unknown_customer_is_not_refused_by_the_cap() {
    let mut p = with_fold(|f| f.max_customers_per_partition = 1);
    let mut out = Vec::new();
    let _ = p.process(&events::purchase("e1", "a", at(0), 10.0), None, &mut out);
    let r = p.process(&events::erasure("x", "b", at(0) + 60), None, &mut out);
    assert_eq!(r.ok(), Some(Processed::Folded(Folded::Erased)));
    let r = p.process(
        &events::purchase("e2", "b", at(0) + 30, 1.0),
        None,
        &mut out,
    );
    assert_eq!(r.ok(), Some(Processed::Forgotten));
}

#[test]
fn ids_are_compared_byte_for_byte_by_the_fold_and_by_erasure_alike() {
    // "é" precomposed (NFC) and decomposed (NFD), and a case change: three
    // customers, and an erasure of one spelling leaves the others.
    let nfc = "caf\u{e9}";
    let nfd = "cafe\u{301}";
    let upper = "CAF\u{c9}";
    let mut p = processor();
    let mut out = Vec::new();
    for (i, id) in [nfc, nfd, upper].iter().enumerate() {
        let _ = p.process(
            &events::purchase(&format!("e{i}"), id, at(0), 10.0),
            None,
            &mut out,
        );
    }
    assert_eq!(p.len(), 3);
    let _ = p.process(&events::erasure("x", nfd, at(0) + 60), None, &mut out);
    assert!(p.get(nfd).is_none());
    assert!(p.get(nfc).is_some() && p.get(upper).is_some());
}

#[test]
fn an_erasure_during_a_pending_episode_counts_the_erased_suppression() {
    // Issue 20, finding 6: the fold cleared the pending outreach before the
    // processor looked for it, so `erased` was never counted.
    // The customer withdrew consent, so their episode is held back
    // (`no_consent`) and stays open until the erasure.
    let mut p = processor();
    let mut evs = weekly_buyer("c1", 10);
    evs.push(events::consent(
        "nc",
        "c1",
        at(63) + 60,
        false,
        Channel::Unspecified,
    ));
    let mut out = feed(&mut p, &evs);
    let held = |out: &[Effect]| {
        out.iter().any(|e| {
            matches!(
                e,
                Effect::Suppressed {
                    reason: Suppression::NoConsent,
                    ..
                }
            )
        })
    };
    let mut t = at(70);
    while !held(&out) && t < at(400) {
        p.advance_to(t, &mut out);
        t += D;
    }
    assert!(
        held(&out) && outreach(&out).is_empty(),
        "an episode held back"
    );
    let pending = p
        .get("c1")
        .and_then(|s| s.outreach.as_deref())
        .is_some_and(|h| h.episode_started_at.is_some() && !h.episode_done);
    assert!(pending, "the episode is open");
    let mut out = Vec::new();
    let _ = p.process(&events::erasure("x", "c1", t), None, &mut out);
    assert!(
        out.iter().any(|e| matches!(
            e,
            Effect::Suppressed {
                reason: Suppression::Erased,
                ..
            }
        )),
        "{out:?}"
    );
}

#[test]
fn live_stream_time_cannot_be_dragged_ahead_of_the_wall_clock() {
    // Issue 20, finding 4: each event an hour-less-a-minute after the last
    // used to be accepted (the check was against the newest event), and the
    // real-time events that followed were dropped as late.
    let mut p = processor();
    let mut out = Vec::new();
    let wall = at(0);
    let mut refused = 0;
    for i in 1..=30 {
        let ev = events::purchase(&format!("d{i}"), "drift", wall + i * 59 * 60, 1.0);
        if let Err(r) = p.process(&ev, Some(wall), &mut out) {
            assert_eq!(r.reason(), "timestamp_in_future");
            refused += 1;
        }
    }
    assert_eq!(
        refused, 29,
        "only the first is within an hour of the wall clock"
    );
    let r = p.process(
        &events::purchase("now", "c", wall, 1.0),
        Some(wall),
        &mut out,
    );
    assert_eq!(r.ok(), Some(Processed::Folded(Folded::Applied)));
    assert!(p.stream_time().is_some_and(|st| st <= wall + 3600));
}

/// Every suppression reason, counted when it happens: a customer's stream
/// that ends in each reason, through the fold and the timers as the pipeline
/// runs them; `Effect::Suppressed` is what the metric and replay count.
/// The match is exhaustive, so a new reason needs a scenario here.
#[test]
fn every_suppression_reason_is_counted_once_when_it_happens() {
    use crate::{config::OutreachConfig, pb::TicketStatus, time::Span};

    fn with_outreach(f: impl FnOnce(&mut OutreachConfig)) -> Processor {
        let mut cfg = CoreConfig::default();
        f(&mut cfg.outreach);
        let model = Arc::new(PopulationModel::prior(&cfg.model));
        Processor::new(Arc::new(cfg), model)
    }
    /// Weekly buyer, silent from day 63; back for four weeks from `back`.
    fn lapse_and_return(id: &str, back: i32) -> Vec<InteractionEvent> {
        let mut evs = weekly_buyer(id, 10);
        evs.extend(
            (0..4).map(|w| events::purchase(&format!("{id}-b{w}"), id, at(back + 7 * w), 40.0)),
        );
        evs
    }
    /// The events, in time order with the timers between them, then stream
    /// time day by day up to `until`.
    fn run(p: &mut Processor, mut evs: Vec<InteractionEvent>, until: i32) -> Vec<Effect> {
        evs.sort_by_key(|e| e.occurred_at.as_ref().map_or(0, |t| t.seconds));
        let mut out = Vec::new();
        let mut day = 0;
        for e in &evs {
            let t = e.occurred_at.as_ref().map_or(0, |t| t.seconds);
            while at(day + 1) <= t {
                day += 1;
                p.advance_to(at(day), &mut out);
            }
            let _ = p.process(e, None, &mut out);
        }
        while day < until {
            day += 1;
            p.advance_to(at(day), &mut out);
        }
        out
    }
    /// Expected-saves targeting with a model whose uplift record gives
    /// every playbook `counts(playbook)` as closed trials.
    fn with_saves(counts: impl Fn(Playbook) -> UpliftCounts) -> Processor {
        let mut cfg = CoreConfig::default();
        cfg.outreach.holdout.default = 0.1;
        cfg.outreach.targeting = crate::outreach::targeting::Targeting::ExpectedSaves;
        cfg.outreach.saves_min_per_arm = 100;
        let mut model = PopulationModel::prior(&cfg.model);
        model.uplift = Some(crate::population::UpliftRecord {
            counts: (1..=6)
                .filter_map(|n| Playbook::try_from(n).ok())
                .map(|p| (p.as_str_name().to_owned(), counts(p)))
                .collect(),
            mean_future_value: None,
            measured_at: at(0),
        });
        Processor::new(Arc::new(cfg), Arc::new(model))
    }
    fn arms(contacted: (u64, u64), held_out: (u64, u64)) -> UpliftCounts {
        use crate::uplift::ArmCounts;
        UpliftCounts {
            contacted: ArmCounts {
                decided: contacted.0,
                retained: contacted.1,
            },
            held_out: ArmCounts {
                decided: held_out.0,
                retained: held_out.1,
            },
        }
    }
    let sent_at = |out: &[Effect]| -> Vec<i64> {
        outreach(out)
            .iter()
            .map(|o| o.decided_at.as_ref().map_or(0, |t| t.seconds))
            .collect()
    };

    // Sent when the first lapse reaches high; back the day after, then silent
    // again: the second lapse's effects, on a fresh processor of `make`.
    let second_lapse = |make: &dyn Fn() -> Processor| {
        let first = run(&mut make(), weekly_buyer("c", 10), 200);
        let back = sent_at(&first)
            .first()
            .map_or(200, |t| ((t - at(0)) / D) as i32 + 1);
        run(&mut make(), lapse_and_return("c", back), back + 200)
    };

    for reason in Suppression::ALL {
        let (out, sent) = match reason {
            Suppression::NoConsent => {
                let mut p = processor();
                let mut evs = weekly_buyer("c", 10);
                evs.push(events::consent(
                    "nc",
                    "c",
                    at(64),
                    false,
                    Channel::Unspecified,
                ));
                let out = run(&mut p, evs, 200);
                (out, 0)
            }
            Suppression::Cancelled => {
                let mut p = processor();
                let mut evs = weekly_buyer("c", 10);
                evs.push(events::subscription("s", "c", at(64), "pro", at(90), true));
                let out = run(&mut p, evs, 200);
                (out, 0)
            }
            Suppression::TicketInProgress => {
                let mut p = processor();
                let mut evs = weekly_buyer("c", 10);
                evs.push(events::ticket_opened(
                    "t",
                    "c",
                    at(64),
                    Channel::Phone,
                    "T1",
                ));
                evs.push(events::ticket_updated(
                    "r",
                    "c",
                    at(64) + 3600,
                    "T1",
                    TicketStatus::FirstResponse,
                    Some(3600),
                ));
                let out = run(&mut p, evs, 200);
                (out, 0)
            }
            Suppression::Cooldown => {
                // The second lapse falls within the (long) cooldown.
                let out = second_lapse(&|| with_outreach(|o| o.cooldown = Span::days(365)));
                (out, 1)
            }
            Suppression::FrequencyCap => {
                let out = second_lapse(&|| {
                    with_outreach(|o| {
                        o.cooldown = Span::days(1);
                        o.cap = 1;
                        o.cap_window = Span::days(365);
                    })
                });
                (out, 1)
            }
            Suppression::Erased => {
                let mut p = processor();
                let mut evs = weekly_buyer("c", 10);
                evs.push(events::consent(
                    "nc",
                    "c",
                    at(64),
                    false,
                    Channel::Unspecified,
                ));
                evs.push(events::erasure("x", "c", at(150)));
                let out = run(&mut p, evs, 200);
                (out, 0)
            }
            Suppression::HarmfulPlaybook => {
                // Contacted churn 60%, held out 40%: contact drives them away.
                let mut p = with_saves(|_| arms((1000, 400), (200, 120)));
                (run(&mut p, weekly_buyer("c", 10), 200), 0)
            }
            Suppression::LowExpectedSaves => {
                // Renewal saves keep 40 in 100 more (and dominate the pooled
                // uplift); every other playbook 1 in 100: a tenth of the
                // pooled, so a critical risk weighs in below the trigger.
                let mut p = with_saves(|p| {
                    if p == Playbook::RenewalSave {
                        arms((10_000, 9_000), (10_000, 5_000))
                    } else {
                        arms((1000, 510), (1000, 500))
                    }
                });
                (run(&mut p, weekly_buyer("c", 10), 200), 0)
            }
        };
        let counted = out
            .iter()
            .filter(|e| matches!(e, Effect::Suppressed { reason: r, .. } if *r == reason))
            .count();
        assert_eq!(counted, 1, "{}: {out:?}", reason.code());
        assert_eq!(
            outreach(&out).len(),
            sent,
            "{}: outreach sent {:?}",
            reason.code(),
            sent_at(&out)
        );
    }
}

/// A population of weekly buyers who go silent at staggered times, half of
/// them coming back a week after going silent.
fn silent_population(n: usize) -> Vec<InteractionEvent> {
    let mut evs = Vec::new();
    for i in 0..n {
        let id = format!("h{i:04}");
        let weeks = 6 + (i % 5) as i32;
        for w in 0..weeks {
            evs.push(events::purchase(
                &format!("{id}-{w}"),
                &id,
                at(7 * w) + i as i64,
                40.0,
            ));
        }
        if i % 2 == 0 {
            let back = 7 * weeks + 30 + (i % 7) as i32;
            evs.push(events::purchase(&format!("{id}-back"), &id, at(back), 40.0));
        }
    }
    evs.sort_by_key(|e| e.occurred_at.map_or(0, |t| t.seconds));
    evs.push(events::session("end", "zz", at(400), Channel::Web));
    evs
}

fn with_holdout(share: f64) -> Processor {
    let mut cfg = CoreConfig::default();
    cfg.outreach.holdout.default = share;
    let model = Arc::new(PopulationModel::prior(&cfg.model));
    Processor::new(Arc::new(cfg), model)
}

#[test]
fn held_out_decisions_are_emitted_marked_set_no_cooldown_and_are_measured() {
    let evs = silent_population(120);
    let mut p = with_holdout(0.5);
    let effects = feed(&mut p, &evs);
    let sent = outreach(&effects);
    let held: Vec<_> = sent.iter().filter(|o| o.held_out).collect();
    assert!(
        !held.is_empty() && held.len() < sent.len(),
        "{} of {}",
        held.len(),
        sent.len()
    );
    for o in &held {
        // Assignment is the documented hash of the customer and episode.
        let s = p.get(&o.customer_id).and_then(|s| s.outreach.as_deref());
        let s = s.unwrap_or_else(|| panic!("state of {}", o.customer_id));
        assert!(s.held_out >= 1);
        if s.sent == 0 {
            // Held out only: nothing holds a later real send back.
            assert!(s.recent.is_empty() && s.last.is_none(), "{s:?}");
        }
    }
    // Every decision's trial closed at decision + horizon, and the
    // customers who came back within it were counted retained.
    let horizon = CoreConfig::default().score.horizon.as_secs();
    let measured: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Measured(m) => Some(*m),
            _ => None,
        })
        .collect();
    // The trials expected from the decisions: per customer, a decision
    // opens one unless the previous trial's horizon is still running.
    let mut expected: Vec<(bool, bool)> = Vec::new();
    let mut by_customer: std::collections::BTreeMap<&str, Vec<&OutreachRequested>> =
        std::collections::BTreeMap::new();
    for o in &sent {
        by_customer
            .entry(o.customer_id.as_str())
            .or_default()
            .push(o);
    }
    for (id, list) in &by_customer {
        let mut open_until = i64::MIN;
        for o in list {
            let decided = o.decided_at.map_or(0, |t| t.seconds);
            if decided < open_until {
                continue;
            }
            open_until = decided + horizon;
            let back = evs.iter().any(|e| {
                let t = e.occurred_at.map_or(0, |t| t.seconds);
                e.customer_id == *id && t > decided && t < decided + horizon
            });
            expected.push((o.held_out, back));
        }
    }
    let count =
        |v: &[(bool, bool)], f: fn(&(bool, bool)) -> bool| v.iter().filter(|x| f(x)).count();
    let got: Vec<(bool, bool)> = measured.iter().map(|m| (m.held_out, m.retained)).collect();
    assert_eq!(got.len(), expected.len());
    for f in [
        |x: &(bool, bool)| x.0,
        |x: &(bool, bool)| x.1,
        |x: &(bool, bool)| x.0 && x.1,
    ] {
        assert_eq!(count(&got, f), count(&expected, f));
    }
    let retained = count(&got, |x| x.1);
    assert!(retained > 0 && retained < measured.len());
}

#[test]
fn the_holdout_replays_byte_for_byte_and_survives_a_restore() {
    let evs = silent_population(80);
    let mut straight = with_holdout(0.3);
    let all = feed(&mut straight, &evs);
    let mut again = with_holdout(0.3);
    assert_eq!(feed(&mut again, &evs), all);
    let snaps = |p: &Processor| -> Vec<Vec<u8>> {
        p.sorted()
            .iter()
            .map(|(k, s)| s.encode_snapshot(k))
            .collect()
    };
    assert_eq!(snaps(&straight), snaps(&again));

    // Stop in the middle (trials open), restore from the snapshots into a
    // new processor, go on: the same effects as straight through.
    for cut in [evs.len() / 3, evs.len() / 2, 2 * evs.len() / 3] {
        let mut first = with_holdout(0.3);
        let mut effects = feed(&mut first, &evs[..cut]);
        let open = first
            .iter()
            .filter(|(_, s)| s.outreach.as_ref().is_some_and(|h| h.trial.is_some()))
            .count();
        let mut resumed = with_holdout(0.3);
        for (id, s) in first.sorted() {
            let Ok((id2, state)) = CustomerState::decode_snapshot(&s.encode_snapshot(id)) else {
                panic!("decodes")
            };
            assert_eq!(&state, s);
            resumed.restore(&id2, state);
        }
        effects.extend(feed(&mut resumed, &evs[cut..]));
        assert_eq!(effects, all, "cut at {cut} with {open} trials open");
        assert_eq!(snaps(&resumed), snaps(&straight));
    }
    assert!(all
        .iter()
        .any(|e| matches!(e, Effect::Measured(m) if m.held_out)));
}
