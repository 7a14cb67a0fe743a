//! What `/readyz` says: whether this instance should receive traffic, and
//! why not. Pure: the consumer loops publish their status (a small mutex and
//! an atomic of their own, never the engine lock), and [`Readiness::of`]
//! decides from those copies, so the probe answers at once even while a
//! restore holds the engine for minutes.
//!
//! Ready means "owns partitions and has restored them all", or "owns none
//! because the group has more members than the input topic has partitions"
//! (a standby, said explicitly), with the consumers polling.

use std::{collections::BTreeSet, fmt, time::Duration};

/// A consumer that has not polled for this long is stuck (a callback that
/// does not return, a broker call without a deadline).
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// One consumer loop's published status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoopStatus {
    /// The group gave this member an assignment (possibly empty) since it
    /// joined or since its last full revocation.
    pub joined: bool,
    /// Input partitions assigned to this member.
    pub assigned: BTreeSet<i32>,
    /// Of those, the ones whose state is still being read from the changelog.
    pub restoring: BTreeSet<i32>,
    /// Members of the consumer group, as last asked of the broker (only
    /// asked while this member owns nothing).
    pub group_members: Option<usize>,
    /// Stop was requested: the loop finishes its batch, commits and leaves.
    pub draining: bool,
}

/// The answer, with its documented text ([`fmt::Display`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// The pipeline is not running yet (topics are being checked).
    Starting,
    /// A loop has not received its assignment yet.
    Joining,
    /// Partitions assigned and still being restored.
    Restoring(Vec<i32>),
    /// Owns these partitions, all restored.
    Ready(Vec<i32>),
    /// Owns nothing because the group has more members than partitions.
    Standby { members: usize, partitions: usize },
    /// Owns nothing although the group has no more members than partitions
    /// (or its size is unknown): a rebalance is pending.
    Unassigned {
        members: Option<usize>,
        partitions: usize,
    },
    /// Shutting down.
    Draining,
    /// A consumer has not polled for this long.
    Stalled(Duration),
}

impl Readiness {
    /// The state of an instance whose loops published `loops` (with how
    /// long ago each last polled), reading an input topic of `partitions`.
    pub fn of(loops: &[(LoopStatus, Duration)], partitions: usize) -> Readiness {
        if loops.is_empty() {
            return Readiness::Starting;
        }
        if loops.iter().any(|(l, _)| l.draining) {
            return Readiness::Draining;
        }
        if let Some(ago) = loops
            .iter()
            .map(|(_, ago)| *ago)
            .filter(|ago| *ago > STALL_AFTER)
            .max()
        {
            return Readiness::Stalled(ago);
        }
        if loops.iter().any(|(l, _)| !l.joined) {
            return Readiness::Joining;
        }
        let restoring: BTreeSet<i32> = loops
            .iter()
            .flat_map(|(l, _)| l.restoring.iter().copied())
            .collect();
        if !restoring.is_empty() {
            return Readiness::Restoring(restoring.into_iter().collect());
        }
        let owned: BTreeSet<i32> = loops
            .iter()
            .flat_map(|(l, _)| l.assigned.iter().copied())
            .collect();
        if !owned.is_empty() {
            return Readiness::Ready(owned.into_iter().collect());
        }
        let members = loops.iter().filter_map(|(l, _)| l.group_members).max();
        match members {
            Some(m) if m > partitions => Readiness::Standby {
                members: m,
                partitions,
            },
            _ => Readiness::Unassigned {
                members,
                partitions,
            },
        }
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready(_) | Readiness::Standby { .. })
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Starting => write!(f, "starting: checking topics"),
            Readiness::Joining => write!(f, "joining the consumer group"),
            Readiness::Restoring(p) => write!(f, "restoring partitions {p:?}"),
            Readiness::Ready(p) => write!(f, "ready: owns partitions {p:?}"),
            Readiness::Standby {
                members,
                partitions,
            } => write!(
                f,
                "ready: owns no partitions: the group has {members} members for {partitions} input partitions (standby)"
            ),
            Readiness::Unassigned {
                members: Some(m),
                partitions,
            } => write!(
                f,
                "unassigned: owns no partitions, and the group has {m} members for {partitions} input partitions (rebalance pending)"
            ),
            Readiness::Unassigned {
                members: None,
                partitions,
            } => write!(
                f,
                "unassigned: owns no partitions of {partitions}; group size not known yet"
            ),
            Readiness::Draining => write!(
                f,
                "draining: finishing the batch, committing and leaving the group"
            ),
            Readiness::Stalled(ago) => {
                write!(f, "consumer has not polled for {} s", ago.as_secs())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_millis(10);

    fn status(joined: bool, assigned: &[i32], restoring: &[i32]) -> LoopStatus {
        LoopStatus {
            joined,
            assigned: assigned.iter().copied().collect(),
            restoring: restoring.iter().copied().collect(),
            ..LoopStatus::default()
        }
    }

    fn of(loops: &[LoopStatus], partitions: usize) -> (bool, String) {
        let with_poll: Vec<_> = loops.iter().map(|l| (l.clone(), NOW)).collect();
        let r = Readiness::of(&with_poll, partitions);
        (r.is_ready(), r.to_string())
    }

    #[test]
    fn starting_before_any_loop_runs() {
        assert_eq!(of(&[], 4), (false, "starting: checking topics".into()));
    }

    #[test]
    fn joining_until_the_group_answers() {
        // After a restart the old member may hold everything for a session
        // timeout: owning nothing then is not ready (it was, before).
        assert_eq!(
            of(&[status(false, &[], &[])], 4),
            (false, "joining the consumer group".into())
        );
        assert!(
            !of(&[status(true, &[0], &[]), status(false, &[], &[])], 4).0,
            "every loop must have joined"
        );
    }

    #[test]
    fn restoring_names_the_partitions_of_every_loop() {
        assert_eq!(
            of(&[status(true, &[0, 3], &[3]), status(true, &[1], &[1])], 4),
            (false, "restoring partitions [1, 3]".into())
        );
    }

    #[test]
    fn ready_when_partitions_are_owned_and_restored() {
        assert_eq!(
            of(&[status(true, &[2, 0], &[]), status(true, &[], &[])], 4),
            (true, "ready: owns partitions [0, 2]".into())
        );
    }

    #[test]
    fn unassigned_is_ready_only_as_an_explicit_standby() {
        let mut l = status(true, &[], &[]);
        assert_eq!(
            of(std::slice::from_ref(&l), 2),
            (
                false,
                "unassigned: owns no partitions of 2; group size not known yet".into()
            )
        );
        l.group_members = Some(2);
        assert_eq!(
            of(std::slice::from_ref(&l), 2),
            (
                false,
                "unassigned: owns no partitions, and the group has 2 members for 2 input partitions (rebalance pending)".into()
            )
        );
        l.group_members = Some(3);
        assert_eq!(
            of(&[l], 2),
            (
                true,
                "ready: owns no partitions: the group has 3 members for 2 input partitions (standby)".into()
            )
        );
    }

    #[test]
    fn draining_wins_over_everything() {
        let mut l = status(true, &[0], &[]);
        l.draining = true;
        assert_eq!(
            of(&[l], 1),
            (
                false,
                "draining: finishing the batch, committing and leaving the group".into()
            )
        );
    }

    #[test]
    fn a_stalled_consumer_is_not_ready() {
        let loops = [(status(true, &[0], &[]), Duration::from_secs(41))];
        let r = Readiness::of(&loops, 1);
        assert!(!r.is_ready());
        assert_eq!(r.to_string(), "consumer has not polled for 41 s");
    }
}
