//! The gauges a loop reports: its part of the shared totals, and the
//! model's parameters.

use super::*;

pub(super) fn set_model_metrics(m: &Metrics, core: &CoreConfig, model: &PopulationModel) {
    let p = &model.params;
    for (name, v) in [("r", p.r), ("alpha", p.alpha), ("a", p.a), ("b", p.b)] {
        m.model_param.with_label_values(&[name]).set(v);
    }
    let learned = model
        .risk
        .as_ref()
        .filter(|_| core.score.learning.mode == crate::config::LearningMode::Learned);
    m.set_risk(learned);
    if learned.is_none() {
        let s = &core.score;
        m.set_risk_coefficients(&crate::score::learn::to_vector(s.bias, &s.weights));
    }
    if let Some(f) = &model.fit {
        m.model_log_likelihood.set(f.log_likelihood);
        m.model_customers.set(f.customers as i64);
    }
}

impl Engine {
    /// Gauges are shared by all loops of the process: each loop adds the
    /// change of its own part, so the gauge shows the sum over loops.
    pub fn update_gauges(&mut self) {
        for t in self.partitions.values_mut() {
            let evicted = t.processor.evicted();
            self.metrics
                .customers_evicted
                .inc_by(evicted.saturating_sub(t.evicted_seen));
            t.evicted_seen = evicted;
            let fired = t.processor.timers_fired();
            self.metrics
                .timers_fired
                .inc_by(fired.saturating_sub(t.timers_seen));
            t.timers_seen = fired;
        }
        let mut now = [0i64; 6];
        for t in self.partitions.values() {
            now[0] += t.processor.len() as i64;
            for (i, n) in t.processor.level_counts().iter().enumerate() {
                now[1 + i] += *n as i64;
            }
        }
        now[5] = self.assigned.len() as i64;
        let d: Vec<i64> = now.iter().zip(self.reported).map(|(n, r)| n - r).collect();
        self.metrics.customers_tracked.add(d[0]);
        for (i, l) in Level::ALL.iter().enumerate() {
            self.metrics
                .customers_by_level
                .with_label_values(&[l.as_str()])
                .add(d[1 + i]);
        }
        self.metrics.assigned_partitions.add(d[5]);
        self.reported = now;
    }

    /// The producer queue before the batch's flush (after it, it is empty).
    pub fn sample_queue(&mut self) {
        let q = i64::from(self.sink.in_flight());
        self.metrics.producer_queue.add(q - self.reported_queue);
        self.reported_queue = q;
    }
}
