//! Arbitrary bytes as a changelog value: snapshot decode → if it decodes,
//! `Processor::restore` (as `pipeline::restore` does on partition assignment)
//! → valid events of every kind for that customer, with silence timers.
//!
//! The changelog is written by churnwatch, but it is read back from Kafka,
//! where anything with write access to the topic (or a bug in an older
//! build) may have put anything: restore must survive any bytes.

#![no_main]

use std::sync::{Arc, OnceLock};

use churnwatch::{
    config::CoreConfig,
    events,
    pb::{Channel, InteractionEvent, Outcome, TicketStatus},
    population::PopulationModel,
    processor::Processor,
    state::CustomerState,
    validate::MAX_PLAUSIBLE_TIME,
};
use libfuzzer_sys::fuzz_target;

const DAY: i64 = 86_400;

fn setup() -> &'static (Arc<CoreConfig>, Arc<PopulationModel>) {
    static SETUP: OnceLock<(Arc<CoreConfig>, Arc<PopulationModel>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let cfg = CoreConfig::default();
        let model = Arc::new(PopulationModel::prior(&cfg.model));
        (Arc::new(cfg), model)
    })
}

/// Valid events for `id` starting at `t0`, one of each kind (erasure last).
fn history(id: &str, t0: i64) -> Vec<InteractionEvent> {
    let h = 3_600;
    vec![
        events::session("f-1", id, t0, Channel::App),
        events::purchase("f-2", id, t0 + h, 120.0),
        events::ticket_opened("f-3", id, t0 + 2 * h, Channel::Chat, "t-1"),
        events::ticket_updated(
            "f-4",
            id,
            t0 + 30 * h,
            "t-1",
            TicketStatus::FirstResponse,
            Some(100_000),
        ),
        events::csat("f-5", id, t0 + 31 * h, 1),
        events::complaint("f-6", id, t0 + 32 * h, Channel::Phone, "slow"),
        events::contact("f-7", id, t0 + 33 * h, Channel::Email),
        events::nps("f-8", id, t0 + 34 * h, 0),
        events::subscription("f-9", id, t0 + 35 * h, "pro", t0 + 10 * DAY, true),
        events::consent("f-10", id, t0 + 36 * h, false, Channel::Email),
        events::outcome("f-11", id, t0 + 37 * h, "o-1", Outcome::Ignored),
        events::ticket_updated(
            "f-12",
            id,
            t0 + 3 * DAY,
            "t-1",
            TicketStatus::Resolved,
            None,
        ),
        events::session("f-13", id, t0 + 40 * DAY, Channel::Web),
        events::erasure("f-14", id, t0 + 41 * DAY),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok((snapshot_id, state)) = CustomerState::decode_snapshot(data) else {
        return;
    };
    // The changelog key names the customer; the id inside is informational.
    let id = if snapshot_id.trim().is_empty() || snapshot_id.starts_with('\0') {
        "c1".to_owned()
    } else {
        snapshot_id
    };
    // Decode then encode is stable after one round.
    let once = state.encode_snapshot(&id);
    let twice = CustomerState::decode_snapshot(&once).map(|(_, b)| b.encode_snapshot(&id));
    assert_eq!(
        twice.ok().as_ref(),
        Some(&once),
        "restored snapshot round trip"
    );
    let t0 = state.last_event_at.clamp(0, MAX_PLAUSIBLE_TIME - 60 * DAY);
    let (cfg, model) = setup();
    let mut p = Processor::new(cfg.clone(), model.clone());
    p.restore(&id, state);
    let mut out = Vec::new();
    for (i, ev) in history(&id, t0).iter().enumerate() {
        // Alternate replay (no wall clock) and live mode.
        let wall = (i % 2 == 1).then_some(t0 + 60 * DAY);
        let _ = p.process(ev, wall, &mut out);
        if let Some(st) = p.stream_time() {
            p.advance_to(st, &mut out);
        }
        if i == 1 {
            // The state as the service would write it back, and read again.
            if let Some(s) = p.get(&id) {
                let bytes = s.encode_snapshot(&id);
                let back =
                    CustomerState::decode_snapshot(&bytes).map(|(_, b)| b.encode_snapshot(&id));
                assert_eq!(back.ok(), Some(bytes), "snapshot round trip");
            }
        }
    }
    p.advance_to(MAX_PLAUSIBLE_TIME, &mut out);
    p.seal();
    p.encode_sealed(usize::MAX);
    let _ = p.take_encoded().count();
});
