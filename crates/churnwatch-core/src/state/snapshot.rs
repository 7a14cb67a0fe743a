//! The customer state as the `CustomerState` protobuf (changelog value,
//! `replay --state-out`), and back.

use prost::Message;

use super::{
    Activity, ChannelUsage, Consent, ContactMark, CustomerState, OpenTicket, OutreachHistory,
    OutreachRecord, RecentEvents, Satisfaction, ScoreMark, SubscriptionFacts, Support, Trial,
    Value,
};
use crate::{
    channel, pb,
    time::{start_of_day, Timestamp},
    uplift::interval::{ArmCounts, UpliftCounts},
    validate::MAX_PLAUSIBLE_TIME,
    vocabulary::Level,
};

/// The snapshot format this build writes. Readers accept every version up to
/// their own (fields are only ever added).
pub const SCHEMA_VERSION: u32 = 1;

/// Latest time a snapshot may hold. Event times end before 2100; timers and
/// cooldowns may run past the last event, but not by a century. A later (or
/// negative) time is corruption: restored, it would become stream time, and
/// the silence timers would spin towards it.
pub const MAX_SNAPSHOT_TIME: Timestamp = 2 * MAX_PLAUSIBLE_TIME;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error(
        "snapshot version {0} is newer than this build's {SCHEMA_VERSION}; upgrade churnwatch"
    )]
    TooNew(u32),
    #[error("snapshot holds the time {0}, outside 1970 to {MAX_SNAPSHOT_TIME}; it is corrupt")]
    Implausible(i64),
}

fn opt(ts: i64) -> Option<i64> {
    (ts != 0).then_some(ts)
}

impl CustomerState {
    pub fn to_snapshot(&self, customer_id: &str) -> pb::CustomerState {
        pb::CustomerState {
            schema_version: SCHEMA_VERSION,
            customer_id: customer_id.to_owned(),
            first_seen_unix: self.first_seen_at,
            last_event_unix: self.last_event_at,
            activity: self.activity.map(|a| pb::ActivitySnapshot {
                first_day: a.first_day,
                last_day: a.last_day,
                repeat_days: a.repeat_days,
                recent_days: a.recent,
            }),
            value: Some(pb::ValueSnapshot {
                purchases: self.value.purchases,
                amount: self.value.amount,
            }),
            channels: Some(pb::ChannelUsageSnapshot {
                weights: self.channels.weights.to_vec(),
                reference_day: self.channels.reference_day,
            }),
            support: self.support.as_deref().map(support_snapshot),
            satisfaction: self
                .satisfaction
                .as_deref()
                .map(|s| pb::SatisfactionSnapshot {
                    last_nps: s.last_nps.map_or(-1, i32::from),
                    last_csat: s.last_csat.map_or(-1, i32::from),
                    ewma: s.ewma,
                    baseline: s.baseline,
                    answers: s.answers,
                    last_answer_unix: s.last_answer_at,
                    last_detractor_unix: s.last_detractor_at.unwrap_or(0),
                    last_low_csat_unix: s.last_low_csat_at.unwrap_or(0),
                }),
            subscription: self
                .subscription
                .as_deref()
                .map(|s| pb::SubscriptionSnapshot {
                    plan: s.plan.to_string(),
                    renews_unix: s.renews_at,
                    cancelled: s.cancelled,
                    updated_unix: s.updated_at,
                }),
            consent: Some(pb::ConsentSnapshot {
                global: match self.consent.global {
                    None => 0,
                    Some(true) => 1,
                    Some(false) => 2,
                },
                allowed_mask: u32::from(self.consent.allowed),
                denied_mask: u32::from(self.consent.denied),
                updated_unix: self.consent.updated_at,
            }),
            outreach: self.outreach.as_deref().map(outreach_snapshot),
            recent_event_hashes: self.recent_events.oldest_first().collect(),
            score: Some(pb::ScoreSnapshot {
                risk: self.score.risk,
                level: self.score.level as u32,
                next_check_unix: self.score.next_check_at,
                scored_unix: self.score.scored_at,
            }),
        }
    }

    pub fn encode_snapshot(&self, customer_id: &str) -> Vec<u8> {
        self.to_snapshot(customer_id).encode_to_vec()
    }

    /// The state and customer id in a snapshot.
    pub fn from_snapshot(s: &pb::CustomerState) -> Result<CustomerState, SnapshotError> {
        if s.schema_version > SCHEMA_VERSION {
            return Err(SnapshotError::TooNew(s.schema_version));
        }
        if let Some(t) = times(s).find(|t| !(0..=MAX_SNAPSHOT_TIME).contains(t)) {
            return Err(SnapshotError::Implausible(t));
        }
        let mut weights = [0f32; channel::COUNT];
        if let Some(c) = &s.channels {
            for (w, v) in weights.iter_mut().zip(&c.weights) {
                *w = *v;
            }
        }
        Ok(CustomerState {
            first_seen_at: s.first_seen_unix,
            last_event_at: s.last_event_unix,
            activity: s.activity.as_ref().map(|a| Activity {
                first_day: a.first_day,
                last_day: a.last_day,
                repeat_days: a.repeat_days,
                recent: a.recent_days,
            }),
            value: s.value.as_ref().map_or_else(Value::default, |v| Value {
                purchases: v.purchases,
                amount: v.amount,
            }),
            channels: ChannelUsage {
                weights,
                reference_day: s.channels.as_ref().map_or(0, |c| c.reference_day),
            },
            support: s.support.as_ref().map(|x| Box::new(support_from(x))),
            satisfaction: s.satisfaction.as_ref().map(|x| {
                Box::new(Satisfaction {
                    last_nps: u8::try_from(x.last_nps).ok(),
                    last_csat: u8::try_from(x.last_csat).ok(),
                    ewma: x.ewma,
                    baseline: x.baseline,
                    answers: x.answers,
                    last_answer_at: x.last_answer_unix,
                    last_detractor_at: opt(x.last_detractor_unix),
                    last_low_csat_at: opt(x.last_low_csat_unix),
                })
            }),
            subscription: s.subscription.as_ref().map(|x| {
                Box::new(SubscriptionFacts {
                    plan: x.plan.as_str().into(),
                    renews_at: x.renews_unix,
                    cancelled: x.cancelled,
                    updated_at: x.updated_unix,
                })
            }),
            consent: s
                .consent
                .as_ref()
                .map_or_else(Consent::default, |c| Consent {
                    global: match c.global {
                        1 => Some(true),
                        2 => Some(false),
                        _ => None,
                    },
                    allowed: u16::try_from(c.allowed_mask).unwrap_or(0),
                    denied: u16::try_from(c.denied_mask).unwrap_or(0),
                    updated_at: c.updated_unix,
                }),
            outreach: s.outreach.as_ref().map(|x| Box::new(outreach_from(x))),
            recent_events: RecentEvents::from_oldest_first(s.recent_event_hashes.iter().copied()),
            score: s
                .score
                .as_ref()
                .map_or_else(ScoreMark::default, |x| ScoreMark {
                    risk: x.risk,
                    level: Level::from_number(x.level),
                    next_check_at: x.next_check_unix,
                    scored_at: x.scored_unix,
                }),
        })
    }

    /// Decodes a snapshot: the customer id and the state.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<(String, CustomerState), SnapshotError> {
        let s = pb::CustomerState::decode(bytes)?;
        let state = CustomerState::from_snapshot(&s)?;
        Ok((s.customer_id, state))
    }
}

/// Every time in a snapshot (days as their first second).
fn times(s: &pb::CustomerState) -> impl Iterator<Item = Timestamp> + '_ {
    let support = s.support.iter().flat_map(|x| {
        x.open_tickets
            .iter()
            .flat_map(|t| [t.opened_unix, t.first_response_unix])
            .chain(x.recent_contacts.iter().map(|c| c.at_unix))
            .chain([x.last_complaint_unix, x.last_negative_unix])
    });
    let outreach = s.outreach.iter().flat_map(|x| {
        x.recent_unix
            .iter()
            .copied()
            .chain(
                x.last
                    .iter()
                    .flat_map(|l| [l.decided_unix, l.episode_start_unix]),
            )
            .chain([x.episode_start_unix])
            .chain(x.trial.iter().map(|t| t.decided_unix))
    });
    [s.first_seen_unix, s.last_event_unix]
        .into_iter()
        .chain(
            s.activity
                .iter()
                .flat_map(|a| [a.first_day, a.last_day].map(start_of_day)),
        )
        .chain(s.channels.iter().map(|c| start_of_day(c.reference_day)))
        .chain(support)
        .chain(s.satisfaction.iter().flat_map(|x| {
            [
                x.last_answer_unix,
                x.last_detractor_unix,
                x.last_low_csat_unix,
            ]
        }))
        .chain(
            s.subscription
                .iter()
                .flat_map(|x| [x.renews_unix, x.updated_unix]),
        )
        .chain(s.consent.iter().map(|x| x.updated_unix))
        .chain(outreach)
        .chain(
            s.score
                .iter()
                .flat_map(|x| [x.next_check_unix, x.scored_unix]),
        )
}

fn mark(at: i64, channel: u32) -> ContactMark {
    ContactMark {
        at,
        channel: channel::from_number(channel),
    }
}

fn support_snapshot(s: &Support) -> pb::SupportSnapshot {
    pb::SupportSnapshot {
        open_tickets: s
            .open_tickets
            .iter()
            .map(|t| pb::OpenTicketSnapshot {
                ticket_hash: t.ticket,
                opened_unix: t.opened_at,
                severity: u32::from(t.severity),
                first_response_unix: t.first_response_at,
                reopened: t.reopened,
                channel: t.channel as u32,
            })
            .collect(),
        tickets_opened: s.tickets_opened,
        reopened: s.reopened,
        first_responses: s.first_responses,
        first_response_seconds_total: s.first_response_secs_total,
        slow_first_responses: s.slow_first_responses,
        complaints: s.complaints,
        last_complaint_unix: s.last_complaint_at.unwrap_or(0),
        recent_contacts: s
            .recent_contacts
            .iter()
            .map(|c| pb::ContactSnapshot {
                at_unix: c.at,
                channel: c.channel as u32,
            })
            .collect(),
        negative_experiences: s.negative_experiences,
        last_negative_unix: s.last_negative.map_or(0, |n| n.at),
        last_negative_channel: s.last_negative.map_or(0, |n| n.channel as u32),
        resolved: s.resolved,
    }
}

/// The last `max` of a list kept oldest first, as the fold keeps it (a
/// longer list is not something this build writes, and would make every
/// re-score of the customer cost its square).
fn newest<T>(list: &[T], max: usize) -> &[T] {
    &list[list.len().saturating_sub(max)..]
}

fn support_from(s: &pb::SupportSnapshot) -> Support {
    Support {
        open_tickets: newest(&s.open_tickets, Support::MAX_OPEN)
            .iter()
            .map(|t| OpenTicket {
                ticket: t.ticket_hash,
                opened_at: t.opened_unix,
                severity: u8::try_from(t.severity).unwrap_or(0),
                first_response_at: t.first_response_unix,
                reopened: t.reopened,
                channel: channel::from_number(t.channel),
            })
            .collect(),
        tickets_opened: s.tickets_opened,
        resolved: s.resolved,
        reopened: s.reopened,
        first_responses: s.first_responses,
        first_response_secs_total: s.first_response_seconds_total,
        slow_first_responses: s.slow_first_responses,
        complaints: s.complaints,
        last_complaint_at: opt(s.last_complaint_unix),
        recent_contacts: newest(&s.recent_contacts, Support::MAX_CONTACTS)
            .iter()
            .map(|c| mark(c.at_unix, c.channel))
            .collect(),
        negative_experiences: s.negative_experiences,
        last_negative: opt(s.last_negative_unix).map(|at| mark(at, s.last_negative_channel)),
    }
}

fn outreach_snapshot(h: &OutreachHistory) -> pb::OutreachSnapshot {
    pb::OutreachSnapshot {
        recent_unix: h.recent.clone(),
        last: h.last.as_ref().map(|l| pb::OutreachRecord {
            outreach_id: l.outreach_id.clone(),
            decided_unix: l.decided_at,
            playbook: l.playbook as u32,
            channel: l.channel as u32,
            outcome: u32::try_from(l.outcome).unwrap_or(0),
            episode_start_unix: l.episode_started_at,
            reason_codes: crate::vocabulary::REASON_CODES
                .iter()
                .enumerate()
                .filter(|(i, _)| l.reasons & (1 << i) != 0)
                .map(|(_, c)| (*c).to_owned())
                .collect(),
        }),
        armed: h.armed,
        episode_start_unix: h.episode_started_at.unwrap_or(0),
        suppressed: h.suppressed.unwrap_or_default().to_owned(),
        sent: h.sent,
        outcomes: h.outcomes.to_vec(),
        episode_done: h.episode_done,
        held_out: h.held_out,
        trial: h.trial.map(|t| pb::TrialSnapshot {
            decided_unix: t.decided_at,
            playbook: t.playbook as u32,
            held_out: t.held_out,
            retained: t.retained,
        }),
        measured: h
            .measured
            .iter()
            .map(|(p, c)| pb::MeasuredSnapshot {
                playbook: *p as u32,
                contacted: c.contacted.decided,
                contacted_retained: c.contacted.retained,
                held_out: c.held_out.decided,
                held_out_retained: c.held_out.retained,
            })
            .collect(),
    }
}

fn outreach_from(s: &pb::OutreachSnapshot) -> OutreachHistory {
    let mut outcomes = [0u32; 7];
    for (o, v) in outcomes.iter_mut().zip(&s.outcomes) {
        *o = *v;
    }
    OutreachHistory {
        recent: s.recent_unix.clone(),
        last: s.last.as_ref().map(|l| OutreachRecord {
            outreach_id: l.outreach_id.clone(),
            decided_at: l.decided_unix,
            playbook: playbook_of(l.playbook).unwrap_or(pb::Playbook::Unspecified),
            channel: channel::from_number(l.channel),
            episode_started_at: l.episode_start_unix,
            outcome: i32::try_from(l.outcome).unwrap_or(0),
            reasons: crate::vocabulary::reason_mask(
                l.reason_codes
                    .iter()
                    .filter_map(|c| crate::vocabulary::ReasonCode::from_code(c)),
            ),
        }),
        armed: s.armed,
        episode_started_at: opt(s.episode_start_unix),
        episode_done: s.episode_done,
        suppressed: crate::vocabulary::suppression_code(&s.suppressed),
        sent: s.sent,
        held_out: s.held_out,
        outcomes,
        trial: s.trial.as_ref().map(|t| Trial {
            decided_at: t.decided_unix,
            playbook: playbook_of(t.playbook).unwrap_or(pb::Playbook::Unspecified),
            held_out: t.held_out,
            retained: t.retained,
        }),
        measured: measured_from(&s.measured),
    }
}

/// A stored playbook number, if it names one.
fn playbook_of(n: u32) -> Option<pb::Playbook> {
    i32::try_from(n)
        .ok()
        .and_then(|p| pb::Playbook::try_from(p).ok())
}

/// The closed trials' counts, sorted by playbook with one entry each
/// whatever the snapshot held (entries of one playbook are summed; an
/// unknown playbook number is dropped; retained is at most decided).
fn measured_from(m: &[pb::MeasuredSnapshot]) -> Vec<(pb::Playbook, UpliftCounts)> {
    let arm = |decided: u64, retained: u64| ArmCounts {
        decided,
        retained: retained.min(decided),
    };
    let mut h = OutreachHistory::default();
    for x in m {
        let Some(playbook) = playbook_of(x.playbook) else {
            continue;
        };
        let c = UpliftCounts {
            contacted: arm(x.contacted, x.contacted_retained),
            held_out: arm(x.held_out, x.held_out_retained),
        };
        h.add_measured(playbook, &c);
    }
    h.measured
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(last_event_unix: i64) -> pb::CustomerState {
        pb::CustomerState {
            schema_version: SCHEMA_VERSION,
            customer_id: "c".into(),
            first_seen_unix: 1_767_468_259,
            last_event_unix,
            score: Some(pb::ScoreSnapshot {
                next_check_unix: 1_783_020_259,
                scored_unix: 1_767_468_259,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Fuzzing (snapshot target): a changelog record whose last event was
    /// in the year 15 billion became stream time on restore, and the silence
    /// timers then fired every 180 days towards it (a hang). Corrupt times
    /// are refused; the restore skips the record.
    #[test]
    fn implausible_times_are_refused() {
        let corrupt = snapshot(474_451_838_179_699_939).encode_to_vec();
        assert!(matches!(
            CustomerState::decode_snapshot(&corrupt),
            Err(SnapshotError::Implausible(474_451_838_179_699_939))
        ));
        let mut negative = snapshot(1_767_468_259);
        negative.support = Some(pb::SupportSnapshot {
            recent_contacts: vec![pb::ContactSnapshot {
                at_unix: i64::MIN,
                channel: 1,
            }],
            ..Default::default()
        });
        assert!(CustomerState::decode_snapshot(&negative.encode_to_vec()).is_err());
        // The last second events may have, with a timer past it, is fine.
        let mut latest = snapshot(MAX_PLAUSIBLE_TIME - 1);
        latest.score = Some(pb::ScoreSnapshot {
            next_check_unix: MAX_PLAUSIBLE_TIME + 180 * 86_400,
            ..Default::default()
        });
        assert!(CustomerState::decode_snapshot(&latest.encode_to_vec()).is_ok());
    }

    /// Fuzzing (snapshot target, then by hand): 4,000 open tickets in one
    /// snapshot made each event of that customer cost 1.6 s (re-scoring is
    /// quadratic in them). The fold keeps at most `Support::MAX_OPEN`, and so
    /// does the restore: the newest.
    #[test]
    fn long_lists_keep_only_the_newest_the_fold_would_keep() {
        let mut s = snapshot(1_767_468_259);
        s.support = Some(pb::SupportSnapshot {
            open_tickets: (0..1_000)
                .map(|i| pb::OpenTicketSnapshot {
                    ticket_hash: i,
                    opened_unix: 1_767_000_000 + i as i64,
                    ..Default::default()
                })
                .collect(),
            recent_contacts: (0..1_000)
                .map(|i| pb::ContactSnapshot {
                    at_unix: 1_767_000_000 + i,
                    channel: 1,
                })
                .collect(),
            ..Default::default()
        });
        let Ok((_, state)) = CustomerState::decode_snapshot(&s.encode_to_vec()) else {
            panic!("decodes")
        };
        let support = state.support.unwrap_or_default();
        assert_eq!(support.open_tickets.len(), Support::MAX_OPEN);
        assert_eq!(support.open_tickets.first().map(|t| t.ticket), Some(984));
        assert_eq!(support.recent_contacts.len(), Support::MAX_CONTACTS);
        assert_eq!(
            support.recent_contacts.last().map(|c| c.at),
            Some(1_767_000_999)
        );
    }

    /// The closed trials' counts survive a restore (the measured uplift is
    /// summed from them at each refit), and a snapshot that lists a
    /// playbook twice or out of order, or more retained than decided,
    /// restores as the fold would have kept it: one sorted entry each.
    #[test]
    fn measured_counts_restore_sorted_and_merged() {
        let mut s = snapshot(1_767_468_259);
        let m = |playbook: pb::Playbook, c: u64, cr: u64, h: u64, hr: u64| pb::MeasuredSnapshot {
            playbook: playbook as u32,
            contacted: c,
            contacted_retained: cr,
            held_out: h,
            held_out_retained: hr,
        };
        s.outreach = Some(pb::OutreachSnapshot {
            measured: vec![
                m(pb::Playbook::WinBack, 3, 1, 1, 0),
                m(pb::Playbook::CheckIn, 2, 2, 0, 0),
                m(pb::Playbook::WinBack, 1, 1, 2, 9),
                pb::MeasuredSnapshot {
                    playbook: 999,
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let Ok((_, state)) = CustomerState::decode_snapshot(&s.encode_to_vec()) else {
            panic!("decodes")
        };
        let h = state.outreach.unwrap_or_default();
        let arm = |decided, retained| ArmCounts { decided, retained };
        assert_eq!(
            h.measured,
            vec![
                (
                    pb::Playbook::CheckIn,
                    UpliftCounts {
                        contacted: arm(2, 2),
                        held_out: arm(0, 0)
                    }
                ),
                (
                    pb::Playbook::WinBack,
                    UpliftCounts {
                        contacted: arm(4, 2),
                        held_out: arm(3, 2)
                    }
                ),
            ]
        );
        // And back: the same counts in the snapshot written from it.
        let again = outreach_snapshot(&h);
        assert_eq!(measured_from(&again.measured), h.measured);
    }
}
