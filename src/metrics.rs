//! Every Prometheus metric churnwatch exports, in one place. Names follow
//! `churnwatch_<what>_<unit>[_total]`; labels have bounded values (kinds,
//! reasons, playbooks, channels, levels, partitions), never a customer id.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub events_consumed: IntCounterVec,
    pub events_rejected: IntCounterVec,
    pub events_dropped: IntCounterVec,
    pub processing_latency: Histogram,
    pub event_time_lag: GaugeVec,
    pub consumer_lag: IntGaugeVec,
    pub customers_tracked: IntGauge,
    pub customers_by_level: IntGaugeVec,
    pub outreach_emitted: IntCounterVec,
    pub outreach_suppressed: IntCounterVec,
    pub outreach_outcomes: IntCounterVec,
    pub outreach_held_out: IntCounterVec,
    pub uplift_decided: IntCounterVec,
    pub uplift_retained: IntCounterVec,
    pub model_refits: IntCounterVec,
    pub model_param: GaugeVec,
    pub model_log_likelihood: Gauge,
    pub model_customers: IntGauge,
    pub risk_coefficient: GaugeVec,
    pub risk_training_customers: IntGauge,
    /// No labels: a series only once learned (never NaN).
    pub risk_training_auc: GaugeVec,
    pub risk_training_brier: GaugeVec,
    pub restore_duration: HistogramVec,
    pub restore_records: IntCounterVec,
    pub restore_skipped: IntCounterVec,
    pub changelog_records: IntCounter,
    pub rebalances: IntCounterVec,
    pub assigned_partitions: IntGauge,
    pub producer_queue: IntGauge,
    pub producer_errors: IntCounter,
    pub commits: IntCounterVec,
    pub rewinds: IntCounter,
    pub timers_fired: IntCounter,
    pub customers_evicted: IntCounter,
    pub build_info: IntGaugeVec,
}

/// Label values of a bounded label, as an enum at every call site: a typo
/// is a compile error, and the series pre-created at start are exactly the
/// enum's values.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }
        }
    };
}

label_enum! {
    /// `result` of `churnwatch_commits_total`.
    CommitResult { Ok => "ok", Error => "error", Refused => "refused", Aborted => "aborted" }
}

label_enum! {
    /// `kind` of `churnwatch_rebalances_total`.
    RebalanceKind { Assign => "assign", Revoke => "revoke" }
}

label_enum! {
    /// `reason` of `churnwatch_events_dropped_total`.
    DropReason { Late => "late", Duplicate => "duplicate", Forgotten => "forgotten" }
}

label_enum! {
    /// `result` of `churnwatch_model_refits_total`.
    RefitResult { Ok => "ok", Skipped => "skipped", Error => "error" }
}

/// The `outcome` label of an outreach outcome.
pub fn outcome_label(o: crate::pb::Outcome) -> &'static str {
    use crate::pb::Outcome;
    match o {
        Outcome::Unspecified => "unspecified",
        Outcome::Delivered => "delivered",
        Outcome::Opened => "opened",
        Outcome::Replied => "replied",
        Outcome::Converted => "converted",
        Outcome::Ignored => "ignored",
        Outcome::Bounced => "bounced",
    }
}

/// The `arm` label of the uplift counts.
pub const ARMS: [&str; 2] = ["contacted", "held_out"];

/// The `arm` label of a measured decision.
pub fn arm_label(held_out: bool) -> &'static str {
    ARMS[usize::from(held_out)]
}

/// Every value of a prost enum but the unspecified one (0).
fn known<T: TryFrom<i32>>() -> Vec<T> {
    (1..64).filter_map(|i| T::try_from(i).ok()).collect()
}

/// A label-less gauge that is a series only while it has a finite value:
/// "not known" is an absent series, never NaN (which PromQL would carry into
/// every rate and alert built on it).
fn set_or_absent(g: &GaugeVec, v: Option<f64>) {
    match v.filter(|v| v.is_finite()) {
        Some(v) => g.with_label_values(&[] as &[&str]).set(v),
        None => {
            let _ = g.remove_label_values(&[] as &[&str]);
        }
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let m = Metrics {
            events_consumed: IntCounterVec::new(
                opts("churnwatch_events_consumed_total", "Input events decoded, valid and folded into a customer's state, by event kind (purchase, session, ticket_opened, ticket_updated, contact, survey, complaint, subscription, consent, outreach_outcome, erasure) and input partition."),
                &["kind", "partition"],
            )?,
            events_rejected: IntCounterVec::new(
                opts("churnwatch_events_rejected_total", "Input messages sent to the dead-letter topic, by rejection reason (decoding and validation)."),
                &["reason"],
            )?,
            events_dropped: IntCounterVec::new(
                opts(
                    "churnwatch_events_dropped_total",
                    "Valid events not folded: late (older than the partition's stream time, or activity more than 63 days before the customer's last active day; also sent to the dead-letter topic with reason late), duplicate (an event_id among the customer's 8 most recent: a redelivery), forgotten (for a customer erased after the event's time).",
                ),
                &["reason"],
            )?,
            processing_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "churnwatch_processing_latency_seconds",
                    "For each outreach caused by an input message: from that message's Kafka timestamp (its producer's clock, or the broker's with LogAppendTime) to the outreach handed to the producer.",
                )
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            )?,
            event_time_lag: GaugeVec::new(
                opts("churnwatch_event_time_lag_seconds", "Wall clock minus the event time of the last valid event read on the partition (duplicates and late events included)."),
                &["partition"],
            )?,
            consumer_lag: IntGaugeVec::new(
                opts("churnwatch_consumer_lag_messages", "Messages not yet committed on the input partition: its last stable offset minus the committed offset, from librdkafka's statistics every 5 s."),
                &["partition"],
            )?,
            customers_tracked: IntGauge::new("churnwatch_customers_tracked", "Customers in memory: those of the partitions this process owns.")?,
            customers_by_level: IntGaugeVec::new(
                opts("churnwatch_customers_by_risk_level", "The same customers by their current level: low, medium, high, critical (as of each customer's last score)."),
                &["level"],
            )?,
            outreach_emitted: IntCounterVec::new(
                opts("churnwatch_outreach_emitted_total", "Outreach sent, by playbook (enum name: WIN_BACK), channel (short name: email) and level at the decision (high, critical)."),
                &["playbook", "channel", "level"],
            )?,
            outreach_suppressed: IntCounterVec::new(
                opts("churnwatch_outreach_suppressed_total", "Outreach held back, by suppression reason (cancelled, no_consent, ticket_in_progress, cooldown, frequency_cap, erased, harmful_playbook, low_expected_saves), once per episode and reason."),
                &["reason"],
            )?,
            outreach_outcomes: IntCounterVec::new(
                opts("churnwatch_outreach_outcomes_total", "OutreachOutcome events folded, by the playbook of the outreach they answer (unknown when the id is not the customer's last outreach) and outcome (delivered, opened, replied, converted, ignored, bounced)."),
                &["playbook", "outcome"],
            )?,
            outreach_held_out: IntCounterVec::new(
                opts("churnwatch_outreach_held_out_total", "Decisions held out (the control group of outreach.holdout: emitted with heldOut, not to be sent), by playbook."),
                &["playbook"],
            )?,
            uplift_decided: IntCounterVec::new(
                opts("churnwatch_uplift_decided_total", "Decisions whose uplift measurement closed (score.horizon after the decision, in stream time), by playbook and arm (contacted, held_out)."),
                &["playbook", "arm"],
            )?,
            uplift_retained: IntCounterVec::new(
                opts("churnwatch_uplift_retained_total", "Of those, the customers active within score.horizon after the decision, by playbook and arm (contacted, held_out)."),
                &["playbook", "arm"],
            )?,
            model_refits: IntCounterVec::new(
                opts("churnwatch_model_refits_total", "Scheduled refits: ok (the fit replaced the model), skipped (too few customers with activity, model.min_customers, or too short a history, model.min_history), error (the fit failed; the model stays)."),
                &["result"],
            )?,
            model_param: GaugeVec::new(
                opts("churnwatch_model_parameter", "Parameters in use: r, alpha (in model.time_unit), a, b."),
                &["param"],
            )?,
            model_log_likelihood: Gauge::new("churnwatch_model_log_likelihood", "Log-likelihood of the last successful fit; 0 before any.")?,
            model_customers: IntGauge::new("churnwatch_model_customers", "Customers the last successful fit used; 0 before any.")?,
            risk_coefficient: GaugeVec::new(
                opts("churnwatch_risk_coefficient", "Coefficients of the risk's log-odds in use (bias, base = the population model's log-odds, and one per signal); learned, or the prior until learned."),
                &["term"],
            )?,
            risk_training_customers: IntGauge::new("churnwatch_risk_training_customers", "Labelled customers the risk's coefficients were last learned from (0 = prior or fixed).")?,
            risk_training_auc: GaugeVec::new(opts("churnwatch_risk_training_auc", "AUC of the risk on its training set at the last learning (absent = not learned)."), &[])?,
            risk_training_brier: GaugeVec::new(opts("churnwatch_risk_training_brier", "Brier score of the risk on its training set at the last learning (absent = not learned)."), &[])?,
            restore_duration: HistogramVec::new(
                HistogramOpts::new("churnwatch_changelog_restore_seconds", "Time until one partition's state was restored from the changelog, one observation per assignment of the partition; partitions assigned together are read together, each timed from the common start.")
                    .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
                &["partition"],
            )?,
            restore_records: IntCounterVec::new(
                opts("churnwatch_changelog_restore_records_total", "Changelog records read while restoring."),
                &["partition"],
            )?,
            restore_skipped: IntCounterVec::new(
                opts("churnwatch_changelog_restore_skipped_total", "Changelog records a restore read but did not install: key_not_utf8, reserved_key (a key starting with U+0000 that is not the model's), unreadable_model, unreadable_snapshot."),
                &["reason"],
            )?,
            changelog_records: IntCounter::new(
                "churnwatch_changelog_records_written_total",
                "Snapshots and tombstones handed to the producer for the changelog (one per changed customer per batch).",
            )?,
            rebalances: IntCounterVec::new(
                opts("churnwatch_rebalances_total", "Rebalance callbacks: assign, revoke."),
                &["kind"],
            )?,
            assigned_partitions: IntGauge::new("churnwatch_assigned_partitions", "Input partitions this process owns.")?,
            producer_queue: IntGauge::new("churnwatch_producer_queue_messages", "Messages in the producer queue not yet acknowledged (outreach, dead letters, changelog), sampled at each batch end.")?,
            producer_errors: IntCounter::new("churnwatch_producer_send_errors_total", "Records the broker did not accept (after librdkafka's retries).")?,
            commits: IntCounterVec::new(
                opts("churnwatch_commits_total", "Batch ends that committed: ok (offsets committed, or the transaction committed), error (the offset commit failed; not fatal: the partition's next commit covers those offsets), refused (not committed because records were not delivered), aborted (the transaction was aborted)."),
                &["result"],
            )?,
            rewinds: IntCounter::new(
                "churnwatch_rewinds_total",
                "Aborted transactions or fenced group memberships ridden out without a restart: the loop's partitions restored from the changelog and their input read again from the committed offsets.",
            )?,
            timers_fired: IntCounter::new("churnwatch_timers_fired_total", "Silence-timer re-scores (a customer looked at again without an event).")?,
            customers_evicted: IntCounter::new(
                "churnwatch_customers_evicted_total",
                "Customers forgotten after fold.retention of silence; each leaves a changelog tombstone.",
            )?,
            build_info: IntGaugeVec::new(
                opts("churnwatch_build_info", "Always 1; the labels say which build runs."),
                &["version", "os", "arch"],
            )?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.events_consumed.clone()))?;
        r.register(Box::new(m.events_rejected.clone()))?;
        r.register(Box::new(m.events_dropped.clone()))?;
        r.register(Box::new(m.processing_latency.clone()))?;
        r.register(Box::new(m.event_time_lag.clone()))?;
        r.register(Box::new(m.consumer_lag.clone()))?;
        r.register(Box::new(m.customers_tracked.clone()))?;
        r.register(Box::new(m.customers_by_level.clone()))?;
        r.register(Box::new(m.outreach_emitted.clone()))?;
        r.register(Box::new(m.outreach_suppressed.clone()))?;
        r.register(Box::new(m.outreach_outcomes.clone()))?;
        r.register(Box::new(m.outreach_held_out.clone()))?;
        r.register(Box::new(m.uplift_decided.clone()))?;
        r.register(Box::new(m.uplift_retained.clone()))?;
        r.register(Box::new(m.model_refits.clone()))?;
        r.register(Box::new(m.model_param.clone()))?;
        r.register(Box::new(m.model_log_likelihood.clone()))?;
        r.register(Box::new(m.model_customers.clone()))?;
        r.register(Box::new(m.risk_coefficient.clone()))?;
        r.register(Box::new(m.risk_training_customers.clone()))?;
        r.register(Box::new(m.risk_training_auc.clone()))?;
        r.register(Box::new(m.risk_training_brier.clone()))?;
        r.register(Box::new(m.restore_duration.clone()))?;
        r.register(Box::new(m.restore_records.clone()))?;
        r.register(Box::new(m.restore_skipped.clone()))?;
        r.register(Box::new(m.changelog_records.clone()))?;
        r.register(Box::new(m.rebalances.clone()))?;
        r.register(Box::new(m.assigned_partitions.clone()))?;
        r.register(Box::new(m.producer_queue.clone()))?;
        r.register(Box::new(m.producer_errors.clone()))?;
        r.register(Box::new(m.commits.clone()))?;
        r.register(Box::new(m.rewinds.clone()))?;
        r.register(Box::new(m.timers_fired.clone()))?;
        r.register(Box::new(m.customers_evicted.clone()))?;
        r.register(Box::new(m.build_info.clone()))?;
        // process_cpu_seconds_total, process_resident_memory_bytes,
        // process_open_fds, ... (Linux only, from /proc).
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        m.build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH,
            ])
            .set(1);
        // Pre-create the bounded label sets so dashboards see zeros, not gaps.
        for reason in crate::validate::Rejection::REASONS
            .iter()
            .chain(crate::codec::DecodeError::REASONS.iter())
        {
            m.events_rejected.with_label_values(&[reason]);
        }
        for s in crate::outreach::Suppression::ALL {
            m.outreach_suppressed.with_label_values(&[s.code()]);
        }
        for l in crate::score::Level::ALL {
            m.customers_by_level.with_label_values(&[l.as_str()]);
        }
        for reason in DropReason::ALL {
            m.events_dropped.with_label_values(&[reason.as_str()]);
        }
        for reason in crate::pipeline::restore::SKIP_REASONS {
            m.restore_skipped.with_label_values(&[reason]);
        }
        for result in RefitResult::ALL {
            m.model_refits.with_label_values(&[result.as_str()]);
        }
        for result in CommitResult::ALL {
            m.commits.with_label_values(&[result.as_str()]);
        }
        for kind in RebalanceKind::ALL {
            m.rebalances.with_label_values(&[kind.as_str()]);
        }
        // Outreach by playbook: the dashboard and the outcome-rate rules
        // divide by these, so they exist at 0 before the first outreach.
        use crate::pb::{Channel, Outcome, Playbook};
        let playbooks: Vec<Playbook> = known();
        let outcomes: Vec<Outcome> = known();
        let channels: Vec<Channel> = known();
        for p in &playbooks {
            m.outreach_held_out.with_label_values(&[p.as_str_name()]);
            for arm in ARMS {
                m.uplift_decided.with_label_values(&[p.as_str_name(), arm]);
                m.uplift_retained.with_label_values(&[p.as_str_name(), arm]);
            }
            for o in &outcomes {
                m.outreach_outcomes
                    .with_label_values(&[p.as_str_name(), outcome_label(*o)]);
            }
            for c in &channels {
                // Outreach fires at `outreach.trigger_level` or above: never `low`.
                for l in &crate::score::Level::ALL[1..] {
                    m.outreach_emitted.with_label_values(&[
                        p.as_str_name(),
                        crate::channel::name(*c),
                        l.as_str(),
                    ]);
                }
            }
        }
        Ok(m)
    }

    /// The risk's coefficients in use and what they were learned from; with
    /// `None` (prior or fixed) the caller sets the coefficients it uses.
    pub fn set_risk(&self, learned: Option<&crate::score::learn::LearnedRisk>) {
        match learned {
            Some(r) => {
                let c = crate::score::learn::to_vector(r.bias, &r.weights);
                self.set_risk_coefficients(&c);
                self.risk_training_customers.set(r.labelled as i64);
                set_or_absent(&self.risk_training_auc, Some(r.auc));
                set_or_absent(&self.risk_training_brier, Some(r.brier));
            }
            None => {
                self.risk_training_customers.set(0);
                set_or_absent(&self.risk_training_auc, None);
                set_or_absent(&self.risk_training_brier, None);
            }
        }
    }

    pub fn set_risk_coefficients(&self, c: &[f64; crate::score::learn::K]) {
        for (name, v) in crate::score::learn::NAMES.iter().zip(c) {
            self.risk_coefficient.with_label_values(&[name]).set(*v);
        }
    }

    pub fn commit(&self, result: CommitResult) {
        self.commits.with_label_values(&[result.as_str()]).inc();
    }

    pub fn rebalance(&self, kind: RebalanceKind) {
        self.rebalances.with_label_values(&[kind.as_str()]).inc();
    }

    pub fn dropped(&self, reason: DropReason) {
        self.events_dropped
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    pub fn refit(&self, result: RefitResult) {
        self.model_refits
            .with_label_values(&[result.as_str()])
            .inc();
    }

    /// The series of an input partition, at 0 from its assignment (their
    /// label sets cannot be known before).
    pub fn partition_assigned(&self, partition: i32) {
        let p = partition.to_string();
        for k in crate::kind::EventKind::ALL {
            self.events_consumed.with_label_values(&[k.as_str(), &p]);
        }
        self.consumer_lag.with_label_values(&[&p]);
        self.event_time_lag.with_label_values(&[&p]);
        self.restore_records.with_label_values(&[&p]);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        m.events_consumed
            .with_label_values(&["purchase", "0"])
            .inc();
        m.outreach_emitted
            .with_label_values(&["WIN_BACK", "email", "high"])
            .inc();
        m.outreach_outcomes
            .with_label_values(&["WIN_BACK", "replied"])
            .inc();
        m.model_refits.with_label_values(&["ok"]).inc();
        m.restore_records.with_label_values(&["0"]).inc();
        m.rebalances.with_label_values(&["assign"]).inc();
        m.commits.with_label_values(&["ok"]).inc();
        m.restore_duration.with_label_values(&["0"]).observe(0.1);
        m.event_time_lag.with_label_values(&["0"]).set(1.0);
        m.consumer_lag.with_label_values(&["0"]).set(1);
        m.model_param.with_label_values(&["r"]).set(1.0);
        for f in m.registry.gather() {
            let name = f.name();
            if name.starts_with("process_") {
                continue;
            }
            assert!(name.starts_with("churnwatch_"), "{name}");
            let counter = f.get_field_type() == prometheus::proto::MetricType::COUNTER;
            assert_eq!(counter, name.ends_with("_total"), "{name}");
            for metric in f.get_metric() {
                for l in metric.get_label() {
                    assert_ne!(l.name(), "customer_id");
                }
            }
        }
        assert!(m
            .render()
            .contains("churnwatch_events_rejected_total{reason=\"nps_out_of_range\"} 0"));
    }

    #[test]
    fn risk_quality_is_absent_until_learned_never_nan() {
        let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        let series = |m: &Metrics| {
            m.render()
                .lines()
                .filter(|l| l.starts_with("churnwatch_risk_training_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        m.set_risk(None);
        assert_eq!(series(&m), vec!["churnwatch_risk_training_customers 0"]);
        let mut r = crate::score::learn::LearnedRisk {
            bias: -1.0,
            weights: crate::score::learn::from_vector(&[0.0; crate::score::learn::K]).1,
            labelled: 800,
            churned: 200,
            auc: 0.75,
            brier: 0.125,
            iterations: 6,
            fitted_at: 0,
        };
        m.set_risk(Some(&r));
        assert_eq!(
            series(&m),
            vec![
                "churnwatch_risk_training_auc 0.75",
                "churnwatch_risk_training_brier 0.125",
                "churnwatch_risk_training_customers 800",
            ]
        );
        // A degenerate training set (one class) has no AUC: absent, not NaN.
        r.auc = f64::NAN;
        m.set_risk(Some(&r));
        assert!(!m.render().contains("NaN"), "{}", m.render());
        assert!(series(&m).iter().all(|l| !l.contains("_auc")));
        m.set_risk(None);
        assert_eq!(series(&m), vec!["churnwatch_risk_training_customers 0"]);
    }
}
