//! The treatment model (experience model only): the population reacts to
//! churnwatch's own outreach, so that the measured uplift has a known true
//! value to recover.
//!
//! The generator runs churnwatch's pure core on the events it makes (the
//! same fold, timers and refits as `replay`: [`Feed::fold_one`]) with the
//! configuration it is given, holdout included. Each decision that opens an
//! uplift trial (docs/uplift.md) draws the customer's
//! response to contact from the playbook's effect `e` in [-1, 1]:
//!
//! - `e > 0`: with chance `e` the customer is *persuadable*: contacted, they
//!   come back (a purchase within 4 days, and any decision to leave is
//!   undone); held out, they leave at the decision (no activity after it).
//! - `e < 0`: with chance `-e` the customer is a *sleeping dog*: contacted,
//!   they leave at the decision; held out, they come back as above.
//! - otherwise (and `e = 0`) nothing: the customer's own course, whatever
//!   the arm.
//!
//! So the true difference in churn rate within the horizon (held out minus
//! contacted, what [`crate::uplift`] measures) is exactly `e`, whatever the
//! population: the other customers' outcomes have the same distribution in
//! both arms, because the arm is random. A hazard-ratio model would make the
//! true difference depend on each population's base rate, which no test
//! could state in advance.
//!
//! Timers are fired up to each event's time before the event is made (the
//! same decisions as `replay`, which fires them in the same record's turn
//! when `fold.lateness` is 0), so nothing the customer did after a decision
//! was made before the reaction to it. Use `fold.lateness = "0s"` in the
//! configuration given to both `generate` and `backtest`.

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Customer, COMEBACK};
use crate::{
    config::CoreConfig,
    feed::Feed,
    pb::Playbook,
    time::{Timestamp, SECS_PER_DAY},
    uplift::UpliftCounts,
};

/// What each playbook's contact does to the chance of leaving.
#[derive(Clone, Debug, PartialEq)]
pub struct Treatment {
    /// The core configuration the loop runs (it should be the one the
    /// generated events are later replayed or backtested with).
    pub core: CoreConfig,
    /// Effect per playbook, indexed by playbook number; 0 = none.
    pub effects: [f64; 7],
}

impl Treatment {
    /// Parses `check_in=0.2,win_back=-0.1` (playbooks as named in config).
    pub fn parse_effects(text: &str) -> Result<[f64; 7], String> {
        let mut effects = [0.0; 7];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected PLAYBOOK=EFFECT"))?;
            let p = Playbook::from_str_name(&name.trim().to_ascii_uppercase())
                .filter(|p| *p != Playbook::Unspecified)
                .ok_or_else(|| format!("`{name}`: unknown playbook"))?;
            let v: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("`{value}`: not a number"))?;
            if !(-1.0..=1.0).contains(&v) {
                return Err(format!("`{part}`: an effect is in [-1, 1]"));
            }
            effects[p as usize] = v;
        }
        Ok(effects)
    }
}

/// One trial's true response stratum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Stratum {
    Persuadable,
    SleepingDog,
    Unaffected,
}

/// The closed loop's state inside the generator.
pub(super) struct Closed {
    pub feed: Feed,
    effects: [f64; 7],
    seen: usize,
    index: HashMap<String, u32>,
    rng: ChaCha8Rng,
    /// Trials by playbook and stratum, for the ground truth.
    pub strata: BTreeMap<(&'static str, &'static str), u64>,
}

impl Closed {
    pub fn new(t: &Treatment, seed: u64) -> Self {
        Closed {
            feed: Feed::new(t.core.clone()),
            effects: t.effects,
            seen: 0,
            index: HashMap::new(),
            // Its own stream: the population's draws stay as without it
            // until the first reaction.
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7472_6561_746d_656e),
            strata: BTreeMap::new(),
        }
    }

    pub fn know(&mut self, id: &str, i: u32) {
        self.index.insert(id.to_owned(), i);
    }

    /// Reacts to the decisions made since the last call; `now` is the
    /// generator's time (no event before it can be made any more).
    /// Returns the comeback events to schedule: (time, customer index).
    pub fn react(&mut self, customers: &mut [Customer], now: Timestamp) -> Vec<(Timestamp, u32)> {
        let mut comebacks = Vec::new();
        let new = self.feed.outreach.len();
        for k in self.seen..new {
            let o = &self.feed.outreach[k];
            let decided = o.decided_at.map_or(0, |t| t.seconds);
            let opened = self
                .feed
                .processor()
                .get(&o.customer_id)
                .and_then(|s| s.outreach.as_deref())
                .and_then(|h| h.trial)
                .is_some_and(|t| t.decided_at == decided && t.held_out == o.held_out);
            let Some(&i) = self.index.get(&o.customer_id) else {
                continue;
            };
            if !opened {
                continue;
            }
            let playbook = o.playbook();
            let e = self.effects[playbook as usize];
            let u: f64 = self.rng.gen();
            let stratum = if e > 0.0 && u < e {
                Stratum::Persuadable
            } else if e < 0.0 && u < -e {
                Stratum::SleepingDog
            } else {
                Stratum::Unaffected
            };
            let name = match stratum {
                Stratum::Persuadable => "persuadable",
                Stratum::SleepingDog => "sleeping_dog",
                Stratum::Unaffected => "unaffected",
            };
            *self
                .strata
                .entry((playbook.as_str_name(), name))
                .or_default() += 1;
            let c = &mut customers[i as usize];
            let leaves = matches!(
                (stratum, o.held_out),
                (Stratum::Persuadable, true) | (Stratum::SleepingDog, false)
            );
            let returns = matches!(
                (stratum, o.held_out),
                (Stratum::Persuadable, false) | (Stratum::SleepingDog, true)
            );
            if leaves {
                c.silent_from = decided;
                c.left_at = c.left_at.min(decided);
                c.cause = if o.held_out {
                    "not_contacted"
                } else {
                    "contacted"
                };
            } else if returns {
                // Gone already (no event chain left): the comeback restarts it.
                c.revive = c.silent_from <= now;
                c.silent_from = Timestamp::MAX;
                c.left_at = Timestamp::MAX;
                c.cause = "none";
                let lag = self.rng.gen_range(3_600..4 * SECS_PER_DAY);
                comebacks.push((now.max(decided) + lag, i | COMEBACK));
            }
        }
        self.seen = new;
        comebacks
    }

    /// The measured uplift so far, by playbook.
    pub fn measured(&self) -> &BTreeMap<&'static str, UpliftCounts> {
        &self.feed.summary.uplift
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{GenConfig, GenModel, Generator};

    /// Everyone persuadable (effect 1): every contacted customer measured
    /// is retained and no held-out one; everyone a sleeping dog (-1): the
    /// reverse. The strata act exactly as documented.
    #[test]
    fn full_effects_decide_every_measured_outcome() {
        for (e, contacted_kept, held_out_kept) in [(1.0, true, false), (-1.0, false, true)] {
            let mut core = CoreConfig::default();
            core.fold.lateness = crate::time::Span::seconds(0);
            core.outreach.holdout.default = 0.5;
            let cfg = GenConfig {
                customers: 300,
                seed: 3,
                span: crate::time::Span::days(120),
                model: GenModel::Experience,
                treatment: Some(Treatment {
                    core,
                    effects: [e; 7],
                }),
                ..GenConfig::default()
            };
            let mut g = Generator::new(cfg);
            g.by_ref().for_each(drop);
            let m = g.measured().cloned().unwrap_or_default();
            let (mut c, mut h) = (ArmCountsSum::default(), ArmCountsSum::default());
            for u in m.values() {
                c.add(u.contacted.decided, u.contacted.retained);
                h.add(u.held_out.decided, u.held_out.retained);
            }
            assert!(c.decided > 20 && h.decided > 20, "{m:?}");
            assert_eq!(c.retained == c.decided, contacted_kept, "{e}: {m:?}");
            assert_eq!(c.retained == 0, !contacted_kept, "{e}: {m:?}");
            assert_eq!(h.retained == h.decided, held_out_kept, "{e}: {m:?}");
            assert_eq!(h.retained == 0, !held_out_kept, "{e}: {m:?}");
        }
    }

    #[derive(Default)]
    struct ArmCountsSum {
        decided: u64,
        retained: u64,
    }
    impl ArmCountsSum {
        fn add(&mut self, d: u64, r: u64) {
            self.decided += d;
            self.retained += r;
        }
    }

    #[test]
    fn effects_parse_by_playbook_name() {
        let e = Treatment::parse_effects("check_in=0.2, WIN_BACK=-0.1").unwrap_or_default();
        assert_eq!(e[Playbook::CheckIn as usize], 0.2);
        assert_eq!(e[Playbook::WinBack as usize], -0.1);
        assert_eq!(e[Playbook::RenewalSave as usize], 0.0);
        assert!(Treatment::parse_effects("checkin=0.2").is_err());
        assert!(Treatment::parse_effects("check_in=1.5").is_err());
    }
}
