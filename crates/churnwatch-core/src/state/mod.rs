//! One customer's folded state: what the domain brief says a profile holds,
//! and what the statistics need, kept compact (a typical customer is a few
//! hundred bytes; rarely used parts are boxed and absent until needed).
//!
//! The state only changes through [`crate::fold`]; it is written to and read
//! from the changelog as the `CustomerState` protobuf by [`snapshot`].

mod activity;
mod channels;
mod recent;
pub mod snapshot;

pub use activity::{Activity, DayRecord};
pub use channels::ChannelUsage;
pub use recent::RecentEvents;

use crate::{
    pb::{Channel, Playbook},
    time::Timestamp,
    uplift::interval::UpliftCounts,
    vocabulary::Level,
};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CustomerState {
    /// Earliest event time folded (tenure starts here).
    pub first_seen_at: Timestamp,
    /// Latest event time folded.
    pub last_event_at: Timestamp,
    /// Active days for the buy-till-you-die model; `None` until the first activity.
    pub activity: Option<Activity>,
    pub value: Value,
    pub channels: ChannelUsage,
    pub support: Option<Box<Support>>,
    pub satisfaction: Option<Box<Satisfaction>>,
    pub subscription: Option<Box<SubscriptionFacts>>,
    pub consent: Consent,
    pub outreach: Option<Box<OutreachHistory>>,
    pub recent_events: RecentEvents,
    /// The last score, and when the silence timer will look again.
    pub score: ScoreMark,
}

/// What the customer has spent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Value {
    pub purchases: u32,
    /// Sum of purchase amounts (currencies are not converted; one currency
    /// per deployment is assumed).
    pub amount: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenTicket {
    /// xxh3-64 of the ticket id.
    pub ticket: u64,
    pub opened_at: Timestamp,
    pub severity: u8,
    /// 0 until the first response.
    pub first_response_at: Timestamp,
    pub reopened: bool,
    pub channel: Channel,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContactMark {
    pub at: Timestamp,
    pub channel: Channel,
}

/// Support history (tickets, contacts, complaints, negative experiences).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Support {
    /// Open tickets, oldest first; at most [`Support::MAX_OPEN`].
    pub open_tickets: Vec<OpenTicket>,
    pub tickets_opened: u32,
    pub resolved: u32,
    pub reopened: u32,
    pub first_responses: u32,
    pub first_response_secs_total: u64,
    pub slow_first_responses: u32,
    pub complaints: u32,
    pub last_complaint_at: Option<Timestamp>,
    /// Inbound contacts (and tickets opened) inside the contact window, oldest first.
    pub recent_contacts: Vec<ContactMark>,
    pub negative_experiences: u32,
    pub last_negative: Option<ContactMark>,
}

impl Support {
    /// Beyond this many open tickets the oldest is forgotten (bounded state).
    pub const MAX_OPEN: usize = 16;
    /// Beyond this many contacts in the window the oldest is forgotten.
    pub const MAX_CONTACTS: usize = 16;

    pub fn mean_first_response_secs(&self) -> Option<f64> {
        (self.first_responses > 0)
            .then(|| self.first_response_secs_total as f64 / f64::from(self.first_responses))
    }
}

/// Satisfaction answers on a common 0-1 scale (NPS / 10, (CSAT - 1) / 4).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Satisfaction {
    pub last_nps: Option<u8>,
    pub last_csat: Option<u8>,
    /// Fast exponentially weighted average.
    pub ewma: f32,
    /// Slow average: the customer's own baseline.
    pub baseline: f32,
    pub answers: u32,
    pub last_answer_at: Timestamp,
    pub last_detractor_at: Option<Timestamp>,
    pub last_low_csat_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubscriptionFacts {
    pub plan: Box<str>,
    /// 0 = unknown.
    pub renews_at: Timestamp,
    pub cancelled: bool,
    /// Event time of the subscription event these facts came from.
    pub updated_at: Timestamp,
}

/// Contact permission, globally and per channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Consent {
    /// `None` = never stated.
    pub global: Option<bool>,
    /// Bit `channel number` set = explicitly allowed / withdrawn on that channel.
    pub allowed: u16,
    pub denied: u16,
    pub updated_at: Timestamp,
}

impl Consent {
    /// Whether this channel may be used, given the policy for customers who
    /// never said anything.
    pub fn allows(&self, c: Channel, assume_consent: bool) -> bool {
        let bit = 1u16 << (c as u16);
        if self.denied & bit != 0 {
            false
        } else if self.allowed & bit != 0 {
            true
        } else {
            self.global.unwrap_or(assume_consent)
        }
    }
}

/// One outreach the customer was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutreachRecord {
    pub outreach_id: String,
    pub decided_at: Timestamp,
    pub playbook: Playbook,
    pub channel: Channel,
    pub episode_started_at: Timestamp,
    /// Last outcome reported (protobuf `Outcome` number), 0 = none yet.
    pub outcome: i32,
    /// The reason codes it carried, as a bit set over `vocabulary::REASON_CODES`.
    pub reasons: u8,
}

/// Risk episodes and outreach history (the decisions are state too: event sourcing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutreachHistory {
    /// Decision times still inside the cap window, oldest first.
    pub recent: Vec<Timestamp>,
    pub last: Option<OutreachRecord>,
    /// Whether an upward crossing into the trigger level starts an episode.
    pub armed: bool,
    /// Start of the open risk episode, if any.
    pub episode_started_at: Option<Timestamp>,
    /// The open episode got its outreach (or was closed by an outcome).
    pub episode_done: bool,
    /// Suppression reason last counted for the open episode.
    pub suppressed: Option<&'static str>,
    pub sent: u32,
    /// Decisions held out (emitted with `held_out`, not sent) so far.
    pub held_out: u32,
    /// Outcome counts for this customer, indexed by `Outcome` number.
    pub outcomes: [u32; 7],
    /// The uplift measurement of a decision whose horizon has not passed.
    pub trial: Option<Trial>,
    /// This customer's closed trials, counted per playbook and arm (sorted
    /// by playbook, at most one entry each): what a refit sums into the
    /// measured uplift that `outreach.targeting = "expected_saves"` uses.
    pub measured: Vec<(Playbook, UpliftCounts)>,
}

impl OutreachHistory {
    /// Adds `counts` to the closed trials of `playbook`, keeping `measured`
    /// sorted with one entry per playbook.
    pub fn add_measured(&mut self, playbook: Playbook, counts: &UpliftCounts) {
        match self.measured.binary_search_by_key(&playbook, |(p, _)| *p) {
            Ok(i) => self.measured[i].1.merge(counts),
            Err(i) => self.measured.insert(i, (playbook, *counts)),
        }
    }

    /// The customer's decision sequence number: decisions so far (sent or
    /// held out). The holdout's "episode" (`outreach::holdout`).
    pub fn decisions(&self) -> u32 {
        self.sent.saturating_add(self.held_out)
    }
}

/// One decision under measurement: was the customer retained (active within
/// `score.horizon` after it)? Closed, and counted, when the horizon passes
/// in stream time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trial {
    pub decided_at: Timestamp,
    pub playbook: Playbook,
    /// The arm: held out (not contacted) or contacted.
    pub held_out: bool,
    /// Activity seen after the decision, within the horizon.
    pub retained: bool,
}

impl Default for OutreachHistory {
    fn default() -> Self {
        OutreachHistory {
            recent: Vec::new(),
            last: None,
            armed: true,
            episode_started_at: None,
            episode_done: false,
            suppressed: None,
            sent: 0,
            held_out: 0,
            outcomes: [0; 7],
            trial: None,
            measured: Vec::new(),
        }
    }
}

/// The last score and the next time the silence timer looks at this customer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ScoreMark {
    pub risk: f32,
    pub level: Level,
    /// 0 = no timer.
    pub next_check_at: Timestamp,
    /// Stream time of the last score (scores never go back in time).
    pub scored_at: Timestamp,
}

impl CustomerState {
    pub fn support_mut(&mut self) -> &mut Support {
        self.support.get_or_insert_with(Default::default)
    }
    pub fn satisfaction_mut(&mut self) -> &mut Satisfaction {
        self.satisfaction.get_or_insert_with(Default::default)
    }
    pub fn outreach_mut(&mut self) -> &mut OutreachHistory {
        self.outreach.get_or_insert_with(Default::default)
    }
    pub fn open_tickets(&self) -> usize {
        self.support.as_ref().map_or(0, |s| s.open_tickets.len())
    }
    pub fn is_cancelled(&self) -> bool {
        self.subscription.as_ref().is_some_and(|s| s.cancelled)
    }
    /// Time of the last activity (start of its day), if any.
    pub fn last_activity_day(&self) -> Option<crate::time::Day> {
        self.activity.as_ref().map(|a| a.last_day)
    }
}
