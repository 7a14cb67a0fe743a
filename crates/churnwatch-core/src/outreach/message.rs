//! The `OutreachRequested` message: the decision plus the customer's history,
//! so whoever acts on it recognises the customer (the domain brief's top
//! frustration is a company that does not).

use super::priority;
use crate::{
    config::OutreachConfig,
    events::ts,
    pb::{self, Channel, CustomerProfile, Outcome, OutreachRequested, Playbook},
    score::{Level, Score},
    signals::Context,
    state::CustomerState,
    time::{start_of_day, Timestamp, SECS_PER_DAY},
};

/// Days of tenure under which a customer is "new".
const NEW_CUSTOMER_DAYS: i64 = 30;

/// The profile summary carried by every outreach (and `/customers/{id}`).
pub fn profile(s: &CustomerState, level: Level, now: Timestamp) -> CustomerProfile {
    let tenure_days = (now - s.first_seen_at).max(0) / SECS_PER_DAY;
    let won_back = s
        .outreach
        .as_ref()
        .and_then(|h| h.last.as_ref())
        .is_some_and(|l| {
            l.outcome == Outcome::Replied as i32 || l.outcome == Outcome::Converted as i32
        });
    let stage = if won_back && level <= Level::Medium {
        "won_back"
    } else if tenure_days < NEW_CUSTOMER_DAYS {
        "new"
    } else if level == Level::Critical {
        "lapsed"
    } else if level >= Level::Medium {
        "at_risk"
    } else {
        "active"
    };
    let sat = s.satisfaction.as_deref();
    let sub = s.subscription.as_deref();
    CustomerProfile {
        tenure_days: u32::try_from(tenure_days).unwrap_or(u32::MAX),
        last_activity_at: s.activity.map(|a| ts(start_of_day(a.last_day))),
        preferred_channel: s.channels.preferred().unwrap_or(Channel::Unspecified) as i32,
        open_tickets: u32::try_from(s.open_tickets()).unwrap_or(u32::MAX),
        lifetime_value: s.value.amount,
        purchases: s.value.purchases,
        last_nps: sat.and_then(|x| x.last_nps).map(i32::from),
        last_csat: sat.and_then(|x| x.last_csat).map(i32::from),
        subscription_plan: sub.map(|x| x.plan.to_string()).unwrap_or_default(),
        renews_at: sub.filter(|x| x.renews_at != 0).map(|x| ts(x.renews_at)),
        stage: stage.to_owned(),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build(
    s: &CustomerState,
    customer_id: &str,
    outreach_id: &str,
    score: &Score,
    playbook: Playbook,
    channel: Channel,
    episode_start: Timestamp,
    now: Timestamp,
    ctx: &Context<'_>,
    cfg: &OutreachConfig,
) -> OutreachRequested {
    OutreachRequested {
        outreach_id: outreach_id.to_owned(),
        customer_id: customer_id.to_owned(),
        decided_at: Some(ts(now)),
        risk: score.risk,
        level: score.level.to_proto() as i32,
        playbook: playbook as i32,
        channel: channel as i32,
        priority: priority(score.risk, s.value.amount, playbook, cfg) as i32,
        reasons: score
            .reasons
            .iter()
            .map(|r| pb::Reason {
                code: r.code.as_str().to_owned(),
                contribution: r.contribution,
                evidence: r.evidence.clone(),
            })
            .collect(),
        profile: Some(profile(s, score.level, now)),
        model_version: ctx.model.version(),
        episode_started_at: Some(ts(episode_start)),
        held_out: false,
    }
}
