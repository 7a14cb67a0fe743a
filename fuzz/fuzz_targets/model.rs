//! Arbitrary bytes as the population model recorded in the changelog (key
//! `"\0churnwatch/model"`, read back by `pipeline::restore` with
//! `serde_json::from_slice::<PopulationModel>` and put in use as is) →
//! scoring a small built-in population with it, silence timers, and a refit
//! that starts from its parameters (as the service's next refit does).

#![no_main]

use std::sync::{Arc, OnceLock};

use churnwatch::{
    config::CoreConfig,
    events,
    pb::{Channel, InteractionEvent},
    population::PopulationModel,
    processor::Processor,
    time::Span,
};
use libfuzzer_sys::fuzz_target;

const DAY: i64 = 86_400;
/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600;

fn setup() -> &'static (Arc<CoreConfig>, Vec<InteractionEvent>) {
    static SETUP: OnceLock<(Arc<CoreConfig>, Vec<InteractionEvent>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let mut cfg = CoreConfig::default();
        cfg.model.min_customers = 3;
        cfg.model.min_history = Span::days(0);
        // Four customers over 60 days: regular, slowing, gone silent, new.
        let mut evs = Vec::new();
        let mut push = |c: usize, day: i64, purchase: bool| {
            let id = format!("cust-{c}");
            let eid = format!("e-{c}-{day}");
            let at = START + day * DAY + 36_000 + c as i64 * 60;
            evs.push(if purchase {
                events::purchase(&eid, &id, at, 40.0 + day as f64)
            } else {
                events::session(&eid, &id, at, Channel::App)
            });
        };
        for day in (0..60).step_by(3) {
            push(0, day, day % 9 == 0);
        }
        for day in [0, 2, 5, 9, 14, 20, 27, 35, 44, 54] {
            push(1, day, true);
        }
        for day in [0, 1, 3, 4, 6, 8, 10] {
            push(2, day, day % 2 == 0);
        }
        for day in [50, 55, 58] {
            push(3, day, false);
        }
        evs.sort_by_key(|e| e.occurred_at.as_ref().map_or(0, |t| t.seconds));
        (Arc::new(cfg), evs)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(model) = serde_json::from_slice::<PopulationModel>(data) else {
        return;
    };
    let _ = model.version();
    let (cfg, evs) = setup();
    let mut p = Processor::new(cfg.clone(), Arc::new(model));
    let mut out = Vec::new();
    for ev in evs {
        let _ = p.process(ev, None, &mut out);
        if let Some(st) = p.stream_time() {
            p.advance_to(st, &mut out);
        }
    }
    let end = START + 90 * DAY;
    p.advance_to(end, &mut out);
    if let Ok(fitted) = p.refit(end) {
        p.set_model(Arc::new(fitted));
        p.advance_to(end + 90 * DAY, &mut out);
    }
});
