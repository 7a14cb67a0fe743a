//! Proactive-outreach decisions (pure core): when a customer's risk crosses
//! into the trigger level, choose a playbook, a channel and a priority, or
//! suppress the outreach and say why. The decision is recorded in the
//! customer's state, so a replay gives the same outreach, byte for byte, and
//! never a second one for the same episode.
//!
//! Episodes: an upward crossing into the trigger level while armed starts an
//! episode; the customer re-arms once the level is back at or below the
//! re-arm level (hysteresis). While an episode's outreach is suppressed it
//! stays pending and is sent as soon as nothing suppresses it (cooldown over,
//! ticket closed, consent given). After the cooldown, a still-high customer
//! whose dominant reason is one the last outreach did not mention (a new
//! problem) starts a new episode; the same risk persisting does not, however
//! long it lasts (outreach stays rare).

mod channel_choice;
pub mod holdout;
mod id;
mod message;
mod playbook;
mod priority;
mod suppression;
pub mod targeting;

pub use channel_choice::choose_channel;
pub use id::outreach_id;
pub use message::profile;
pub use playbook::choose_playbook;
pub use priority::priority;
pub use suppression::{suppression_code, Suppression};

use crate::{
    config::OutreachConfig,
    pb::{OutreachRequested, Playbook},
    score::Score,
    signals::Context,
    state::{CustomerState, OutreachRecord},
    time::{day_of, Timestamp},
    vocabulary::{reason_mask, Level},
};

/// What the policy decided at one scoring.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The outreach, or with `held_out` set, the control group's record of it.
    Send(Box<OutreachRequested>),
    Suppressed {
        reason: Suppression,
        playbook: Playbook,
    },
}

/// Applies the policy after a (re)score at `now`, recording any decision in
/// the state.
pub fn decide(
    s: &mut CustomerState,
    customer_id: &str,
    score: &Score,
    now: Timestamp,
    ctx: &Context<'_>,
    cfg: &OutreachConfig,
) -> Option<Decision> {
    if s.outreach.is_none() && score.level < cfg.trigger_level {
        return None; // never high: nothing to record (keeps typical state small)
    }
    let playbook = choose_playbook(score, s.value.amount, cfg);
    let h = s.outreach_mut();
    let window = cfg.cap_window.as_secs();
    h.recent.retain(|t| *t > now - window);

    if score.level <= cfg.re_arm_level {
        h.armed = true;
        h.episode_started_at = None;
        h.episode_done = false;
        h.suppressed = None;
        return None;
    }
    if score.level < cfg.trigger_level {
        return None;
    }
    if h.armed {
        h.armed = false;
        h.episode_started_at = Some(now);
        h.episode_done = false;
        h.suppressed = None;
    } else if h.episode_done {
        let dominant = score.reasons.first().map_or(0, |r| reason_mask([r.code]));
        let renewed = h.last.as_ref().is_some_and(|l| {
            now >= l.decided_at + cfg.cooldown.as_secs()
                && dominant != 0
                && l.reasons & dominant == 0
        });
        if !renewed {
            return None;
        }
        h.episode_started_at = Some(now);
        h.episode_done = false;
        h.suppressed = None;
    }
    let episode_start = h.episode_started_at?;

    if let Some(reason) = suppression::check(s, playbook, now, cfg) {
        return note_suppressed(s, reason, playbook);
    }
    let Some(channel) = choose_channel(s, cfg) else {
        return note_suppressed(s, Suppression::NoConsent, playbook);
    };
    // Expected-saves targeting: the risk weighed by the playbook's measured
    // uplift and the customer's future value gates the send and sets the
    // priority (targeting.rs); unmeasured playbooks go by risk.
    let mut priority_risk = score.risk;
    if cfg.targets_saves() {
        let value = ctx.model.future_value(
            s.activity.as_ref(),
            s.value.purchases,
            s.value.amount,
            day_of(now),
            ctx.cfg.horizon,
        );
        match targeting::weight(
            ctx.model.uplift.as_ref(),
            playbook,
            value,
            cfg.saves_min_per_arm,
        ) {
            targeting::Weight::Unmeasured => {}
            targeting::Weight::Harmful { .. } => {
                return note_suppressed(s, Suppression::HarmfulPlaybook, playbook);
            }
            targeting::Weight::Measured { factor, .. } => {
                priority_risk = score.risk * factor;
                if Level::of(priority_risk, &ctx.cfg.thresholds) < cfg.trigger_level {
                    return note_suppressed(s, Suppression::LowExpectedSaves, playbook);
                }
            }
        }
    }
    let id = outreach_id(customer_id, playbook, episode_start);
    let episode = s.outreach_mut().decisions();
    let held_out = holdout::is_held_out(&cfg.holdout, customer_id, episode, playbook);
    let mut msg = message::build(
        s,
        customer_id,
        &id,
        score,
        playbook,
        channel,
        episode_start,
        now,
        ctx,
        cfg,
    );
    msg.held_out = held_out;
    if cfg.targets_saves() {
        msg.priority = priority(priority_risk, s.value.amount, playbook, cfg) as i32;
    }
    let h = s.outreach_mut();
    if cfg.holdout.share(playbook) > 0.0 {
        crate::uplift::trial::open(h, now, playbook, held_out);
    }
    if held_out {
        // Still the episode's decision (no second one for it), but nothing
        // was sent: no cooldown, no place in the cap window, not the last
        // outreach that outcomes answer.
        h.held_out = h.held_out.saturating_add(1);
        h.episode_done = true;
        h.suppressed = None;
        return Some(Decision::Send(Box::new(msg)));
    }
    h.recent.push(now);
    h.sent = h.sent.saturating_add(1);
    h.episode_done = true;
    h.suppressed = None;
    h.last = Some(OutreachRecord {
        outreach_id: id,
        decided_at: now,
        playbook,
        channel,
        episode_started_at: episode_start,
        outcome: 0,
        reasons: reason_mask(score.reasons.iter().map(|r| r.code)),
    });
    Some(Decision::Send(Box::new(msg)))
}

/// Counts a suppression once per episode and reason.
fn note_suppressed(
    s: &mut CustomerState,
    reason: Suppression,
    playbook: Playbook,
) -> Option<Decision> {
    let h = s.outreach_mut();
    if h.suppressed == Some(reason.code()) {
        return None;
    }
    h.suppressed = Some(reason.code());
    Some(Decision::Suppressed { reason, playbook })
}

/// When the policy itself needs another look without a level change: the
/// end of a cooldown or a cap window that holds back a pending episode or
/// allows a new one.
pub fn next_wakeup(s: &CustomerState, now: Timestamp, cfg: &OutreachConfig) -> Option<Timestamp> {
    let h = s.outreach.as_deref()?;
    h.episode_started_at?;
    let mut times = Vec::with_capacity(2);
    if let Some(l) = &h.last {
        times.push(l.decided_at + cfg.cooldown.as_secs());
    }
    if h.recent.len() as u32 >= cfg.cap {
        if let Some(oldest) = h.recent.first() {
            times.push(oldest + cfg.cap_window.as_secs());
        }
    }
    times.into_iter().filter(|t| *t > now).min()
}

#[cfg(test)]
mod tests;
