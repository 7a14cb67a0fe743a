//! Repeated multi-channel contact: at least N contacts in the contact window
//! across at least M channels. The domain brief: escalate to a human.

use super::Context;
use crate::{
    channel,
    state::{ContactMark, CustomerState},
    time::Timestamp,
};

fn in_window(s: &CustomerState, now: Timestamp, window: i64) -> impl Iterator<Item = &ContactMark> {
    s.support
        .iter()
        .flat_map(|x| x.recent_contacts.iter())
        .filter(move |c| c.at <= now && now < c.at + window)
}

fn counts(s: &CustomerState, now: Timestamp, window: i64) -> (u32, u32, u16) {
    let mut n = 0;
    let mut mask = 0u16;
    for c in in_window(s, now, window) {
        n += 1;
        mask |= 1 << (c.channel as u16);
    }
    (n, mask.count_ones(), mask)
}

pub fn strength(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> f64 {
    let g = &ctx.cfg.signals;
    let (n, channels, _) = counts(s, now, ctx.fold.contact_window.as_secs());
    if n >= g.escalation_contacts && channels >= g.escalation_channels {
        1.0
    } else {
        0.0
    }
}

pub fn evidence(s: &CustomerState, now: Timestamp, ctx: &Context<'_>) -> String {
    let window = ctx.fold.contact_window;
    let (n, _, mask) = counts(s, now, window.as_secs());
    let names: Vec<&str> = channel::ALL
        .iter()
        .filter(|c| mask & (1 << (**c as u16)) != 0)
        .map(|c| channel::name(*c))
        .collect();
    format!(
        "{n} contacts in {} over {}",
        super::days(window.whole_days()),
        names.join(", ")
    )
}

/// Each contact leaves the window at `at + window`.
pub fn breakpoints(s: &CustomerState, now: Timestamp, ctx: &Context<'_>, out: &mut Vec<Timestamp>) {
    let window = ctx.fold.contact_window.as_secs();
    for c in in_window(s, now, window) {
        super::push_after(out, now, c.at + window);
    }
}
