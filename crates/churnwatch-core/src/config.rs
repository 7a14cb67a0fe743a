//! Configuration of the pure core: the fold, the population model, the risk
//! score and the outreach policy. One place for every key, its default (with
//! where the default comes from) and the cross-field checks.
//!
//! The service configuration (`churnwatch::settings`) embeds this as is, so a key
//! means the same in `churnwatch replay` and in `churnwatch run`.

use serde::{Deserialize, Serialize};

use crate::{
    channel,
    kind::{EventKind, KindSet},
    model::{Family, Params},
    pb::{Channel, Playbook},
    time::Span,
};

pub use crate::vocabulary::{Level, Signals, Targeting, Thresholds};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    pub fold: FoldConfig,
    pub model: ModelConfig,
    pub score: ScoreConfig,
    pub outreach: OutreachConfig,
}

/// How events are folded into customer state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FoldConfig {
    /// Kinds that count as activity for the buy-till-you-die model.
    /// Default: purchase and session (the "active day" of the domain brief).
    pub activity_kinds: KindSet,
    /// How far behind the newest event an event may arrive and still be
    /// folded. Older ones are counted and dropped. At most 60 days, because
    /// the per-customer day bitmap that keeps the buy-till-you-die counts
    /// order-independent covers 64 days.
    pub lateness: Span,
    /// How far ahead of stream time an event's timestamp may be before it is
    /// rejected as absurd (producer clocks drift; a year ahead is a bug).
    pub max_future_skew: Span,
    /// Longest accepted string field (ids, reasons, plan), in bytes.
    pub max_string_bytes: usize,
    /// Half-life of the recency weighting of channel use.
    pub channel_half_life: Span,
    /// Weight of a new answer in the fast satisfaction average (EWMA).
    pub satisfaction_fast_weight: f32,
    /// Weight of a new answer in the slow satisfaction baseline (EWMA).
    pub satisfaction_baseline_weight: f32,
    /// The support team's first-response target; slower is friction.
    pub first_response_sla: Span,
    /// Window for repeated contacts (the domain brief's "short time").
    pub contact_window: Span,
    /// A customer silent this long (and past any paid-up renewal date) has
    /// churned for good: their state is forgotten (a changelog tombstone),
    /// so bursts of one-off ids do not grow memory forever. Should they come
    /// back, they start afresh. `0s` keeps everyone.
    pub retention: Span,
    /// Hard cap on customers tracked per partition; an event for a new
    /// customer beyond it is dead-lettered (reason `customer_cap`, nothing is
    /// lost: it can be replayed once the cap is raised). 0 = no cap.
    pub max_customers_per_partition: u64,
}

impl Default for FoldConfig {
    fn default() -> Self {
        FoldConfig {
            activity_kinds: [EventKind::Purchase, EventKind::Session]
                .into_iter()
                .collect(),
            lateness: Span::days(1),
            max_future_skew: Span::hours(1),
            max_string_bytes: 256,
            channel_half_life: Span::days(30),
            satisfaction_fast_weight: 0.5,
            satisfaction_baseline_weight: 0.1,
            first_response_sla: Span::hours(24),
            contact_window: Span::days(7),
            retention: Span::days(400),
            max_customers_per_partition: 4_000_000,
        }
    }
}

/// The time unit of the buy-till-you-die model's (x, t_x, T).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    #[default]
    Day,
    Week,
}

impl TimeUnit {
    pub fn days(self) -> f64 {
        match self {
            TimeUnit::Day => 1.0,
            TimeUnit::Week => 7.0,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Day => "day",
            TimeUnit::Week => "week",
        }
    }
}

/// The population model (BG/NBD or MBG/NBD) behind P(alive).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub family: Family,
    pub time_unit: TimeUnit,
    /// Parameters used until the first fit, in `time_unit`. Default: Fader,
    /// Hardie & Lee (2005)'s CDNOW estimates (r 0.243, alpha 4.414 weeks,
    /// a 0.793, b 2.426), with alpha converted to days (x7) for `day`.
    pub prior: Option<Params>,
    /// Refit from the current state this often, in stream time.
    pub refit_every: Span,
    /// Do not fit on fewer customers than this; keep the previous model.
    pub min_customers: u64,
    /// Do not fit before the oldest customer's history is this long (a fit
    /// on a few days of data says nothing about dropout).
    pub min_history: Span,
    /// Horizon of "expected activity".
    pub horizon: Span,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            family: Family::BgNbd,
            time_unit: TimeUnit::Day,
            prior: None,
            refit_every: Span::days(1),
            min_customers: 100,
            min_history: Span::days(28),
            horizon: Span::days(30),
        }
    }
}

impl ModelConfig {
    /// The prior in this config's time unit.
    pub fn prior_params(&self) -> Params {
        self.prior.unwrap_or_else(|| {
            let weeks = Params {
                r: 0.243,
                alpha: 4.414,
                a: 0.793,
                b: 2.426,
            };
            match self.time_unit {
                TimeUnit::Week => weeks,
                TimeUnit::Day => Params {
                    alpha: weeks.alpha * 7.0,
                    ..weeks
                },
            }
        })
    }
}

/// Coefficients of the risk's log-odds: `base` multiplies the population
/// model's log-odds of no activity in the horizon, the others a signal
/// strength in [0, 1]. In `score.learning.mode = "learned"` these are the
/// prior (used until enough labelled customers exist, and the centre the
/// fit is regularised towards); in `"fixed"` they are used as they are.
pub type Weights = Signals<f64>;

impl Signals<f64> {
    /// The prior. `base` 1 and bias 0: the model's probability as it is.
    /// The signals keep the intent of version one's hand-set weights: one
    /// strong signal of the kind the domain brief says to act on at once (an
    /// escalation, a satisfaction drop, friction) moves a typical active
    /// customer (model log-odds about -1.5, P(none) 0.2) past `high` (0.9,
    /// log-odds 2.2) alone, so each weighs 4; an upcoming renewal (2.5) does
    /// so with any real companion signal. `overdue` keeps 2.0:
    /// the model knows nothing of regularity (a clockwork buyer missing a
    /// beat), which the overdue signal measures.
    pub fn prior() -> Self {
        Signals {
            base: 1.0,
            overdue: 2.0,
            rate_drop: 1.5,
            satisfaction_drop: 4.0,
            friction: 4.0,
            escalation: 4.0,
            renewal: 2.5,
        }
    }
}

/// `score.weights` (and learned weights) as given, each key missing taken
/// from [`Weights::prior`].
pub fn weights_over_prior<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Weights, D::Error> {
    let given = Signals::<Option<f64>>::deserialize(d)?;
    Ok(given.zip(Weights::prior()).map(|(g, p)| g.unwrap_or(p)))
}

/// Whether the risk's coefficients are learned from outcomes or fixed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LearningMode {
    /// Fitted at each refit on the customers as they stood one horizon ago,
    /// labelled by what they did since; the prior until enough labels exist.
    #[default]
    Learned,
    /// `score.bias` and `score.weights` as configured, never refitted.
    Fixed,
}

/// How the risk's coefficients are learned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearningConfig {
    pub mode: LearningMode,
    /// Fit only with at least this many labelled customers (and both
    /// outcomes among them); until then the prior is used.
    pub min_labelled: u64,
    /// Strength of the L2 pull towards the prior, in units of one labelled
    /// customer's log-likelihood per squared coefficient.
    pub l2: f64,
    /// Share of customers whose features are kept for labelling, chosen by a
    /// hash of the id (deterministic). Bounds memory: about 2 x sample x 64
    /// bytes per customer.
    pub sample: f64,
}

impl Default for LearningConfig {
    fn default() -> Self {
        LearningConfig {
            mode: LearningMode::Learned,
            // 1000: with 8 coefficients, enough for each to be estimated to
            // about +-0.1 when its signal is on for a tenth of them.
            min_labelled: 1000,
            // 1: a weak pull (a fit on 1000 customers moves freely), which
            // still keeps the coefficient of a signal that never fires at its
            // prior instead of leaving the system singular.
            l2: 1.0,
            // 0.25: a quarter of the customers is ample for 8 coefficients at
            // any scale that needs memory bounds (250,000 at 1M customers).
            sample: 0.25,
        }
    }
}

/// Parameters of the individual signals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalConfig {
    /// Recent window of the rate-drop test (at most 63 days: the day bitmap).
    pub rate_window: Span,
    /// The rate-drop test stays silent until the customer's active life
    /// (first to last active day) is at least this long ...
    pub rate_min_baseline: Span,
    /// ... and has at least this many repeat active days.
    pub rate_min_repeats: u32,
    /// Overdue starts at silence = typical gap x `overdue_start` and is full
    /// at `overdue_full` x the gap.
    pub overdue_start: f64,
    pub overdue_full: f64,
    /// Overdue needs at least this many repeat days to know a rhythm.
    pub overdue_min_repeats: u32,
    /// A detractor NPS or a CSAT of 1-2 counts for this long.
    pub satisfaction_memory: Span,
    /// A drop of the fast satisfaction average below the baseline by this
    /// much (on the 0-1 scale) is a full-strength drift.
    pub satisfaction_full_drop: f64,
    /// An open ticket counts fully as friction after this age.
    pub ticket_full_age: Span,
    /// Complaints count as friction for this long.
    pub complaint_memory: Span,
    /// Escalate when at least this many contacts in the contact window ...
    pub escalation_contacts: u32,
    /// ... across at least this many channels.
    pub escalation_channels: u32,
    /// The renewal signal is on within this span before the renewal date ...
    pub renewal_window: Span,
    /// ... while another signal is at least this strong.
    pub renewal_companion_strength: f64,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig {
            rate_window: Span::days(28),
            rate_min_baseline: Span::days(56),
            rate_min_repeats: 4,
            overdue_start: 1.5,
            overdue_full: 4.0,
            overdue_min_repeats: 4,
            satisfaction_memory: Span::days(30),
            satisfaction_full_drop: 0.3,
            ticket_full_age: Span::days(7),
            complaint_memory: Span::days(30),
            escalation_contacts: 3,
            escalation_channels: 2,
            renewal_window: Span::days(30),
            renewal_companion_strength: 0.3,
        }
    }
}

/// The explainable risk score: P(no activity per `fold.activity_kinds`
/// within `horizon` after the scoring time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreConfig {
    /// The horizon of the risk: a customer with no activity in it (or, for a
    /// subscriber, a cancellation or non-renewal in it) counts as churned.
    pub horizon: Span,
    /// Prior (or fixed) intercept of the log-odds, added to `base` x the
    /// model's log-odds.
    pub bias: f64,
    #[serde(deserialize_with = "weights_over_prior")]
    pub weights: Weights,
    pub learning: LearningConfig,
    pub thresholds: Thresholds,
    pub signals: SignalConfig,
    /// How far ahead the silence timer looks for the next level change; a
    /// customer with no change in sight is re-checked then.
    pub timer_horizon: Span,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            // 30 days: the monthly rhythm a customer-success team reviews in.
            horizon: Span::days(30),
            bias: 0.0,
            weights: Weights::prior(),
            learning: LearningConfig::default(),
            thresholds: Thresholds::default(),
            signals: SignalConfig::default(),
            timer_horizon: Span::days(180),
        }
    }
}

/// Playbook per dominant reason; `*_high_value` apply to customers whose
/// lifetime value reaches `OutreachConfig::high_value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlaybookMap {
    #[serde(with = "playbook_name")]
    pub silence: Playbook,
    #[serde(with = "playbook_name")]
    pub silence_high_value: Playbook,
    #[serde(with = "playbook_name")]
    pub rate_drop: Playbook,
    #[serde(with = "playbook_name")]
    pub rate_drop_high_value: Playbook,
    #[serde(with = "playbook_name")]
    pub satisfaction_drop: Playbook,
    #[serde(with = "playbook_name")]
    pub friction: Playbook,
    #[serde(with = "playbook_name")]
    pub escalation: Playbook,
    #[serde(with = "playbook_name")]
    pub renewal: Playbook,
}

impl Default for PlaybookMap {
    /// The domain brief's calls to action.
    fn default() -> Self {
        PlaybookMap {
            silence: Playbook::CheckIn,
            silence_high_value: Playbook::WinBack,
            rate_drop: Playbook::CheckIn,
            rate_drop_high_value: Playbook::WinBack,
            satisfaction_drop: Playbook::FeedbackFollowUp,
            friction: Playbook::ServiceRecovery,
            escalation: Playbook::EscalateToAgent,
            renewal: Playbook::RenewalSave,
        }
    }
}

/// When and how to reach out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutreachConfig {
    /// Outreach fires on an upward crossing into this level.
    pub trigger_level: Level,
    /// After an episode, the customer re-arms once the level is at or below this.
    pub re_arm_level: Level,
    /// Minimum time between two outreach to one customer (domain: rare, not stalking).
    pub cooldown: Span,
    /// At most `cap` outreach per customer in any `cap_window`.
    pub cap: u32,
    pub cap_window: Span,
    /// Whether a customer who never stated consent may be contacted.
    pub assume_consent: bool,
    /// Channels outreach can be sent on, in order of preference for ties.
    #[serde(with = "channel::serde_names")]
    pub channels: Vec<Channel>,
    /// Channel used when no preferred, consented channel is known.
    #[serde(with = "channel::serde_name")]
    pub fallback_channel: Channel,
    /// Lifetime value from which a customer counts as high value.
    pub high_value: f64,
    pub playbooks: PlaybookMap,
    /// The randomised control group (docs/uplift.md).
    pub holdout: HoldoutConfig,
    /// Whom to contact first: `risk` (the default) or `expected_saves`
    /// (risk x measured uplift x predicted future value;
    /// docs/uplift.md, "Targeting by expected saves").
    pub targeting: Targeting,
    /// Closed trials needed in each arm of a playbook before its measured
    /// uplift is used by `expected_saves` targeting; below it the playbook
    /// is ranked by risk. 200 per arm bounds the standard error of the
    /// measured difference by 0.05.
    pub saves_min_per_arm: u64,
}

/// `[outreach.holdout]`: the share of decisions, per playbook, that are held
/// out (emitted with `held_out = true` and not sent) so that the uplift of
/// contacting can be measured against them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoldoutConfig {
    /// Share for every playbook not named below. 0 (the default) disables
    /// the holdout: nothing changes from the policy without one.
    pub default: f64,
    /// Per-playbook shares (keys as the playbooks are named in config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_in: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub win_back: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_recovery: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalate_to_agent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_follow_up: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal_save: Option<f64>,
    /// Key of the assignment hash. Changing it draws a new, independent
    /// control group; keep it fixed for as long as an experiment runs.
    pub key: String,
}

impl Default for HoldoutConfig {
    fn default() -> Self {
        HoldoutConfig {
            default: 0.0,
            check_in: None,
            win_back: None,
            service_recovery: None,
            escalate_to_agent: None,
            feedback_follow_up: None,
            renewal_save: None,
            key: "churnwatch-holdout".to_owned(),
        }
    }
}

impl HoldoutConfig {
    /// The share held out for `playbook`.
    pub fn share(&self, playbook: Playbook) -> f64 {
        let own = match playbook {
            Playbook::CheckIn => self.check_in,
            Playbook::WinBack => self.win_back,
            Playbook::ServiceRecovery => self.service_recovery,
            Playbook::EscalateToAgent => self.escalate_to_agent,
            Playbook::FeedbackFollowUp => self.feedback_follow_up,
            Playbook::RenewalSave => self.renewal_save,
            Playbook::Unspecified => None,
        };
        own.unwrap_or(self.default)
    }

    /// Every (config key, share) pair that is set.
    fn entries(&self) -> Vec<(&'static str, f64)> {
        [
            ("default", Some(self.default)),
            ("check_in", self.check_in),
            ("win_back", self.win_back),
            ("service_recovery", self.service_recovery),
            ("escalate_to_agent", self.escalate_to_agent),
            ("feedback_follow_up", self.feedback_follow_up),
            ("renewal_save", self.renewal_save),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// Whether any playbook has a holdout.
    pub fn enabled(&self) -> bool {
        self.entries().iter().any(|(_, v)| *v > 0.0)
    }
}

impl OutreachConfig {
    /// Whether outreach is targeted by expected saves.
    pub fn targets_saves(&self) -> bool {
        self.targeting == crate::outreach::targeting::Targeting::ExpectedSaves
    }
}

impl Default for OutreachConfig {
    fn default() -> Self {
        OutreachConfig {
            trigger_level: Level::High,
            re_arm_level: Level::Low,
            cooldown: Span::days(14),
            cap: 2,
            cap_window: Span::days(30),
            assume_consent: true,
            channels: vec![
                Channel::Email,
                Channel::Phone,
                Channel::Sms,
                Channel::App,
                Channel::Chat,
                Channel::Web,
            ],
            fallback_channel: Channel::Email,
            high_value: 500.0,
            playbooks: PlaybookMap::default(),
            holdout: HoldoutConfig::default(),
            targeting: Targeting::Risk,
            saves_min_per_arm: 200,
        }
    }
}

/// One configuration problem, with the key it concerns and, when known,
/// where the value came from (`file:line`, an environment variable, or
/// `default`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{key}: {problem}", .origin.as_ref().map(|s| format!("{s}: ")).unwrap_or_default())]
pub struct ConfigProblem {
    pub key: String,
    pub problem: String,
    pub origin: Option<String>,
}

impl ConfigProblem {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigProblem {
            key: key.into(),
            problem: problem.into(),
            origin: None,
        }
    }

    /// The same problem, said to come from `source`.
    pub fn at(mut self, source: impl Into<String>) -> Self {
        self.origin = Some(source.into());
        self
    }
}

impl CoreConfig {
    /// Every cross-field problem at once (empty = valid).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let f = &self.fold;
        if f.activity_kinds == KindSet::default() {
            p.push(ConfigProblem::new(
                "fold.activity_kinds",
                "must name at least one kind",
            ));
        }
        if f.lateness.as_secs() < 0 || f.lateness > Span::days(60) {
            p.push(ConfigProblem::new(
                "fold.lateness",
                "must be between 0s and 60d",
            ));
        }
        if f.max_future_skew.as_secs() < 0 {
            p.push(ConfigProblem::new(
                "fold.max_future_skew",
                "must not be negative",
            ));
        }
        if f.max_string_bytes == 0 {
            p.push(ConfigProblem::new(
                "fold.max_string_bytes",
                "must be positive",
            ));
        }
        if f.channel_half_life.as_secs() <= 0 {
            p.push(ConfigProblem::new(
                "fold.channel_half_life",
                "must be positive",
            ));
        }
        for (key, w) in [
            ("fold.satisfaction_fast_weight", f.satisfaction_fast_weight),
            (
                "fold.satisfaction_baseline_weight",
                f.satisfaction_baseline_weight,
            ),
        ] {
            if !(w > 0.0 && w <= 1.0) {
                p.push(ConfigProblem::new(key, "must be in (0, 1]"));
            }
        }
        if f.contact_window.as_secs() <= 0 {
            p.push(ConfigProblem::new(
                "fold.contact_window",
                "must be positive",
            ));
        }
        let r = f.retention.as_secs();
        if r != 0 && r < Span::days(30).as_secs() {
            p.push(ConfigProblem::new(
                "fold.retention",
                "must be 0s (keep everyone) or at least 30d: a customer silent for less has not churned for good",
            ));
        }
        let m = &self.model;
        let prior = m.prior_params();
        if ![prior.r, prior.alpha, prior.a, prior.b]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
        {
            p.push(ConfigProblem::new(
                "model.prior",
                "r, alpha, a and b must be positive",
            ));
        }
        if m.refit_every.as_secs() <= 0 {
            p.push(ConfigProblem::new("model.refit_every", "must be positive"));
        }
        if m.horizon.as_secs() <= 0 {
            p.push(ConfigProblem::new("model.horizon", "must be positive"));
        }
        let s = &self.score;
        let t = &s.thresholds;
        if !(0.0 < t.medium && t.medium < t.high && t.high < t.critical && t.critical < 1.0) {
            p.push(ConfigProblem::new(
                "score.thresholds",
                "need 0 < medium < high < critical < 1",
            ));
        }
        for (name, &v) in s.weights.iter() {
            if !(v.is_finite() && v >= 0.0) {
                p.push(ConfigProblem::new(
                    format!("score.weights.{name}"),
                    "must be a finite number >= 0",
                ));
            }
        }
        if !s.bias.is_finite() {
            p.push(ConfigProblem::new("score.bias", "must be finite"));
        }
        if s.horizon < Span::days(1) || s.horizon > Span::days(365) {
            p.push(ConfigProblem::new(
                "score.horizon",
                "must be between 1d and 365d",
            ));
        }
        let l = &s.learning;
        if !(l.l2.is_finite() && l.l2 > 0.0) {
            p.push(ConfigProblem::new(
                "score.learning.l2",
                "must be positive (it keeps a signal that never fires at its prior)",
            ));
        }
        if !(l.sample > 0.0 && l.sample <= 1.0) {
            p.push(ConfigProblem::new(
                "score.learning.sample",
                "must be in (0, 1]",
            ));
        }
        if l.min_labelled < 10 {
            p.push(ConfigProblem::new(
                "score.learning.min_labelled",
                "must be at least 10",
            ));
        }
        let g = &s.signals;
        if g.rate_window.as_secs() <= 0 || g.rate_window > Span::days(63) {
            p.push(ConfigProblem::new(
                "score.signals.rate_window",
                "must be between 1d and 63d",
            ));
        }
        if !(g.overdue_start >= 1.0 && g.overdue_full > g.overdue_start) {
            p.push(ConfigProblem::new(
                "score.signals.overdue_full",
                "need 1 <= overdue_start < overdue_full",
            ));
        }
        if !(g.satisfaction_full_drop > 0.0 && g.satisfaction_full_drop <= 1.0) {
            p.push(ConfigProblem::new(
                "score.signals.satisfaction_full_drop",
                "must be in (0, 1]",
            ));
        }
        if g.ticket_full_age.as_secs() <= 0 {
            p.push(ConfigProblem::new(
                "score.signals.ticket_full_age",
                "must be positive",
            ));
        }
        if g.escalation_contacts == 0 || g.escalation_channels == 0 {
            p.push(ConfigProblem::new(
                "score.signals.escalation_contacts",
                "contacts and channels must be at least 1",
            ));
        }
        if s.timer_horizon < Span::days(1) || s.timer_horizon > Span::days(5 * 365) {
            p.push(ConfigProblem::new(
                "score.timer_horizon",
                "must be between 1d and 1825d",
            ));
        }
        let o = &self.outreach;
        if o.re_arm_level >= o.trigger_level {
            p.push(ConfigProblem::new(
                "outreach.re_arm_level",
                "must be below outreach.trigger_level (hysteresis)",
            ));
        }
        if o.trigger_level == Level::Low {
            p.push(ConfigProblem::new(
                "outreach.trigger_level",
                "must be above low",
            ));
        }
        if o.cap == 0 || o.cap > 16 {
            p.push(ConfigProblem::new(
                "outreach.cap",
                "must be between 1 and 16",
            ));
        }
        if o.cap_window.as_secs() <= 0 {
            p.push(ConfigProblem::new(
                "outreach.cap_window",
                "must be positive",
            ));
        }
        if o.cooldown.as_secs() < 0 {
            p.push(ConfigProblem::new(
                "outreach.cooldown",
                "must not be negative",
            ));
        }
        if o.channels.is_empty() {
            p.push(ConfigProblem::new(
                "outreach.channels",
                "must name at least one channel",
            ));
        }
        if !(o.high_value.is_finite() && o.high_value > 0.0) {
            p.push(ConfigProblem::new(
                "outreach.high_value",
                "must be positive",
            ));
        }
        for (k, v) in o.holdout.entries() {
            // Below 1: a playbook held out entirely measures nothing (no
            // contacted arm) and silently stops all its outreach.
            if !(0.0..1.0).contains(&v) {
                p.push(ConfigProblem::new(
                    format!("outreach.holdout.{k}"),
                    "must be a share in [0, 1)",
                ));
            }
        }
        if o.holdout.key.is_empty() {
            p.push(ConfigProblem::new(
                "outreach.holdout.key",
                "must not be empty",
            ));
        }
        if o.saves_min_per_arm == 0 {
            p.push(ConfigProblem::new(
                "outreach.saves_min_per_arm",
                "must be at least 1",
            ));
        }
        if o.targeting == Targeting::ExpectedSaves && !o.holdout.enabled() {
            // Without a control group no uplift is ever measured: the
            // targeting would silently stay the risk ranking.
            p.push(ConfigProblem::new(
                "outreach.targeting",
                "expected_saves needs a holdout to measure uplift: set outreach.holdout.default (or a playbook's share) above 0",
            ));
        }
        p
    }
}

/// serde for a playbook written as its enum name (`WIN_BACK`) or in lower case.
pub mod playbook_name {
    use serde::{de, Deserialize, Deserializer, Serializer};

    use crate::pb::Playbook;

    pub fn serialize<S: Serializer>(p: &Playbook, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.as_str_name().to_ascii_lowercase())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Playbook, D::Error> {
        let text = String::deserialize(d)?;
        match Playbook::from_str_name(&text.to_ascii_uppercase()) {
            Some(Playbook::Unspecified) | None => {
                Err(de::Error::custom(format!("unknown playbook `{text}`")))
            }
            Some(p) => Ok(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let c = CoreConfig::default();
        assert_eq!(c.problems(), vec![]);
        let text = toml::to_string(&c).unwrap_or_default();
        let back: CoreConfig = toml::from_str(&text).unwrap_or_default();
        assert_eq!(back, c);
        assert!(
            text.contains("activity_kinds = [\"purchase\", \"session\"]"),
            "{text}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
            [fold]
            lateness = "90d"
            [score.thresholds]
            medium = 0.95
            [outreach]
            trigger_level = "low"
            cap = 0
        "#;
        let c: CoreConfig = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        for k in [
            "fold.lateness",
            "score.thresholds",
            "outreach.re_arm_level",
            "outreach.cap",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn targeting_defaults_to_risk_and_expected_saves_needs_a_holdout() {
        let d = CoreConfig::default();
        assert_eq!(d.outreach.targeting, Targeting::Risk);
        assert_eq!(d.outreach.saves_min_per_arm, 200);
        let ok = r#"
            [outreach]
            targeting = "expected_saves"
            saves_min_per_arm = 50
            [outreach.holdout]
            default = 0.1
        "#;
        let c: CoreConfig = toml::from_str(ok).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.problems(), vec![]);
        assert_eq!(c.outreach.targeting, Targeting::ExpectedSaves);
        let bad = r#"
            [outreach]
            targeting = "expected_saves"
            saves_min_per_arm = 0
        "#;
        let c: CoreConfig = toml::from_str(bad).unwrap_or_else(|e| panic!("{e}"));
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["outreach.saves_min_per_arm", "outreach.targeting"]);
        assert!(toml::from_str::<CoreConfig>("[outreach]\ntargeting = \"value\"\n").is_err());
    }

    #[test]
    fn holdout_shares_per_playbook_and_their_checks() {
        let text = r#"
            [outreach.holdout]
            default = 0.1
            win_back = 0.25
            renewal_save = 0
        "#;
        let c: CoreConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.problems(), vec![]);
        let h = &c.outreach.holdout;
        assert!(h.enabled());
        assert_eq!(h.share(Playbook::WinBack), 0.25);
        assert_eq!(h.share(Playbook::RenewalSave), 0.0);
        assert_eq!(h.share(Playbook::CheckIn), 0.1);
        assert!(!CoreConfig::default().outreach.holdout.enabled());
        let bad = r#"
            [outreach.holdout]
            default = -0.1
            check_in = 1.0
            key = ""
        "#;
        let c: CoreConfig = toml::from_str(bad).unwrap_or_else(|e| panic!("{e}"));
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "outreach.holdout.default",
                "outreach.holdout.check_in",
                "outreach.holdout.key"
            ]
        );
        assert!(toml::from_str::<CoreConfig>(
            "[outreach.holdout]
winback = 0.1
"
        )
        .is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<CoreConfig>("[fold]\nlatenes = \"1d\"\n");
        assert!(e.is_err());
    }

    #[test]
    fn day_prior_is_the_cdnow_prior_in_days() {
        let m = ModelConfig::default();
        let p = m.prior_params();
        assert!((p.alpha - 4.414 * 7.0).abs() < 1e-9);
        let w = ModelConfig {
            time_unit: TimeUnit::Week,
            ..m
        };
        assert!((w.prior_params().alpha - 4.414).abs() < 1e-9);
    }
}
