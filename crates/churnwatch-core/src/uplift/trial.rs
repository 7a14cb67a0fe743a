//! One decision under measurement, kept in the customer's state.
//!
//! A trial opens at a decision (sent or held out) for a playbook whose
//! holdout share is above 0, unless one is already open for the customer:
//! the comparison is by intention to treat (the arm is the first decision's
//! assignment; later decisions inside its horizon are part of what that
//! arm received). The customer counts as retained when an activity event
//! (`fold.activity_kinds`) happens after the decision and before
//! `decided_at + score.horizon`; at that time (stream time: a timer) the
//! trial closes and is counted. Nothing else (no outcome event, no wall
//! clock) enters, so both arms are measured the same way.

use super::interval::UpliftCounts;
use crate::{
    pb::Playbook,
    state::{CustomerState, OutreachHistory, Trial},
    time::Timestamp,
};

/// A closed trial: what `/metrics` and the backtest count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measured {
    pub playbook: Playbook,
    pub held_out: bool,
    pub retained: bool,
}

/// Opens a trial for a decision at `now`, unless one is open.
pub fn open(h: &mut OutreachHistory, now: Timestamp, playbook: Playbook, held_out: bool) {
    if h.trial.is_none() {
        h.trial = Some(Trial {
            decided_at: now,
            playbook,
            held_out,
            retained: false,
        });
    }
}

/// Notes an activity event at `at`.
pub fn observe_activity(s: &mut CustomerState, at: Timestamp, horizon: i64) {
    if let Some(t) = s.outreach.as_deref_mut().and_then(|h| h.trial.as_mut()) {
        if at > t.decided_at && at < t.decided_at + horizon {
            t.retained = true;
        }
    }
}

/// When the open trial closes.
pub fn due(s: &CustomerState, horizon: i64) -> Option<Timestamp> {
    s.outreach
        .as_deref()
        .and_then(|h| h.trial)
        .map(|t| t.decided_at + horizon)
}

/// Closes the open trial if its horizon has passed at `now`.
pub fn close_due(s: &mut CustomerState, now: Timestamp, horizon: i64) -> Option<Measured> {
    let h = s.outreach.as_deref_mut()?;
    let t = h.trial.filter(|t| now >= t.decided_at + horizon)?;
    h.trial = None;
    let m = Measured {
        playbook: t.playbook,
        held_out: t.held_out,
        retained: t.retained,
    };
    let mut c = UpliftCounts::default();
    c.add(&m);
    h.add_measured(m.playbook, &c);
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 30 * 86_400;

    #[test]
    fn activity_inside_the_horizon_retains_and_the_trial_closes_at_its_end() {
        let mut s = CustomerState::new(1000);
        open(s.outreach_mut(), 5000, Playbook::CheckIn, true);
        // A second decision does not replace the open trial.
        open(s.outreach_mut(), 6000, Playbook::WinBack, false);
        observe_activity(&mut s, 4000, H); // before the decision: not retention
        assert_eq!(due(&s, H), Some(5000 + H));
        assert_eq!(close_due(&mut s, 5000 + H - 1, H), None);
        let m = close_due(&mut s, 5000 + H, H);
        assert_eq!(
            m,
            Some(Measured {
                playbook: Playbook::CheckIn,
                held_out: true,
                retained: false
            })
        );
        assert_eq!(due(&s, H), None);

        open(s.outreach_mut(), 10_000, Playbook::WinBack, false);
        observe_activity(&mut s, 10_000 + H, H); // at the end: too late
        observe_activity(&mut s, 10_001, H);
        let m = close_due(&mut s, 20_000 + H, H);
        assert_eq!(m.map(|m| (m.retained, m.held_out)), Some((true, false)));

        // Both closed trials stay counted in the state, per playbook and arm.
        open(s.outreach_mut(), 30_000 + H, Playbook::CheckIn, false);
        observe_activity(&mut s, 30_001 + H, H);
        assert!(close_due(&mut s, 30_000 + 2 * H, H).is_some());
        let counts: Vec<_> = s
            .outreach
            .as_deref()
            .map(|h| {
                h.measured
                    .iter()
                    .map(|(p, c)| {
                        (
                            *p,
                            (c.contacted.decided, c.contacted.retained),
                            (c.held_out.decided, c.held_out.retained),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Playbook order: CHECK_IN before WIN_BACK.
        assert_eq!(
            counts,
            vec![
                (Playbook::CheckIn, (1, 1), (1, 0)),
                (Playbook::WinBack, (1, 1), (0, 0)),
            ]
        );
    }
}
