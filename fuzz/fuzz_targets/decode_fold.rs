//! Arbitrary bytes → messages → decode (protobuf and proto3 JSON) → validate
//! → one `Processor` (fold, score, outreach policy, silence timers).
//!
//! Input layout: the first byte steers the driver, the rest is read in both
//! file framings `replay` reads (JSON Lines, and varint-length-delimited
//! protobuf). Every record of either framing is decoded in both formats, and
//! every event that decodes goes through `Processor::process`, in order.
//!
//! Control byte:
//! - bits 0-1: the wall clock passed to `process` (live mode's future-skew
//!   check): 0 = none (replay), 1 = the event's own time, 2 = an hour
//!   behind it, 3 = a day ahead of it.
//! - bits 2-6: how many days past the last event the final `advance_to`
//!   reaches (as `replay --as-of` would), 0-31.
//! - bit 7: also advance that far past stream time after every event (timers
//!   fire ahead of later events, as in `tests/robustness.rs`).
//!
//! After the run every state must survive a snapshot round trip byte for
//! byte (see `at_epoch` for the one known exception), and a refit over the
//! states must not panic.

#![no_main]

use std::sync::{Arc, OnceLock};

use churnwatch::{
    codec::{self, Format, Records},
    config::CoreConfig,
    pb::InteractionEvent,
    population::PopulationModel,
    processor::Processor,
    state::CustomerState,
    time::Span,
};
use libfuzzer_sys::fuzz_target;

const DAY: i64 = 86_400;

fn setup() -> &'static (Arc<CoreConfig>, Arc<PopulationModel>) {
    static SETUP: OnceLock<(Arc<CoreConfig>, Arc<PopulationModel>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let mut cfg = CoreConfig::default();
        // Small enough that a handful of fuzzed customers can be refit.
        cfg.model.min_customers = 2;
        cfg.model.min_history = Span::days(0);
        let model = Arc::new(PopulationModel::prior(&cfg.model));
        (Arc::new(cfg), model)
    })
}

fn decoded(data: &[u8]) -> Vec<InteractionEvent> {
    let mut events = Vec::new();
    for framing in [Format::Json, Format::Protobuf] {
        // A framing error (truncated record) ends that framing, as in replay.
        for record in Records::new(data, framing).map_while(Result::ok) {
            for format in [Format::Protobuf, Format::Json] {
                if let Ok(ev) = codec::decode(&record.bytes, format) {
                    events.push(ev);
                }
            }
        }
    }
    events
}

fn wall_clock(ctl: u8, ev: &InteractionEvent) -> Option<i64> {
    let at = ev.occurred_at.as_ref().map_or(0, |t| t.seconds);
    match ctl & 3 {
        0 => None,
        1 => Some(at),
        2 => Some(at.saturating_sub(3_600)),
        _ => Some(at.saturating_add(DAY)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let (cfg, model) = setup();
    let mut p = Processor::new(cfg.clone(), model.clone());
    let ahead = i64::from((ctl >> 2) & 31) * DAY;
    let eager = ctl & 0x80 != 0;
    let mut out = Vec::new();

    let events = decoded(body);
    // Known (README, finding 4): an event at exactly 1970-01-01T00:00:00Z is
    // valid, but the state stores "no time" as 0, so its marks do not
    // survive a snapshot. Then only check that one round trip is stable.
    let at_epoch = events
        .iter()
        .any(|e| e.occurred_at.as_ref().is_some_and(|t| t.seconds == 0));
    for ev in &events {
        let _ = p.process(ev, wall_clock(ctl, ev), &mut out);
        if let Some(st) = p.stream_time() {
            p.advance_to(st, &mut out);
            if eager {
                p.advance_to(st + ahead, &mut out);
            }
        }
        out.clear();
    }
    if let Some(last) = p.max_event_time() {
        p.advance_to(last + ahead, &mut out);
        if let Ok(fitted) = p.refit(last + ahead) {
            p.set_model(Arc::new(fitted));
            p.advance_to(last + ahead + cfg.score.timer_horizon.as_secs(), &mut out);
        }
    }
    p.seal();
    p.encode_sealed(usize::MAX);
    let _ = p.take_encoded().count();

    for (id, state) in p.sorted() {
        let bytes = state.encode_snapshot(id);
        let (back_id, back) =
            CustomerState::decode_snapshot(&bytes).expect("a written snapshot decodes");
        assert_eq!(back_id, id);
        let again = back.encode_snapshot(&back_id);
        if at_epoch {
            let (_, twice) = CustomerState::decode_snapshot(&again).expect("decodes again");
            assert_eq!(
                twice.encode_snapshot(id),
                again,
                "snapshot round trip (stable)"
            );
        } else {
            assert_eq!(again, bytes, "snapshot round trip");
        }
    }
});
