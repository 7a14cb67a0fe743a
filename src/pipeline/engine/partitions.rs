//! Partition bookkeeping: restore on assignment, drop on revocation, and
//! the in-process rewind after an aborted transaction or a fenced
//! membership.

use super::*;

impl Engine {
    /// Restores newly assigned partitions from the changelog (all of them in
    /// one pass).
    pub fn assign(&mut self, partitions: &[i32]) -> Result<(), PipelineError> {
        let topic = self.settings.changelog_topic();
        let mut fresh = BTreeMap::new();
        for &p in partitions {
            self.assigned.insert(p);
            if !self.partitions.contains_key(&p) {
                fresh.insert(p, Processor::new(self.core.clone(), self.model.clone()));
            }
        }
        // Said before the restore, which may take minutes.
        self.published.update(|s| {
            s.joined = true;
            s.assigned = self.assigned.clone();
            s.restoring = fresh.keys().copied().collect();
        });
        let restored =
            restore::restore(&self.restorer, &topic, &mut fresh, Duration::from_secs(600))?;
        for (p, r) in &restored {
            let ps = p.to_string();
            self.metrics
                .restore_duration
                .with_label_values(&[&ps])
                .observe(r.elapsed.as_secs_f64());
            self.metrics
                .restore_records
                .with_label_values(&[&ps])
                .inc_by(r.records);
            for (reason, n) in &r.skipped_by_reason {
                self.metrics
                    .restore_skipped
                    .with_label_values(&[reason])
                    .inc_by(*n);
            }
            tracing::info!(
                partition = p,
                records = r.records,
                customers = r.customers,
                skipped = r.skipped,
                elapsed_ms = r.elapsed.as_millis() as u64,
                "restored partition state from the changelog"
            );
        }
        // The newest model any partition recorded.
        for r in restored.into_values() {
            if let Some(m) = r.model {
                self.adopt(m);
            }
        }
        for (p, mut processor) in fresh {
            processor.set_model(self.model.clone());
            self.partitions.insert(
                p,
                PartitionTask {
                    processor,
                    counters: {
                        self.metrics.partition_assigned(p);
                        PartitionCounters::new(&self.metrics, p)
                    },
                    next_offset: None,
                    uncommitted_from: None,
                    last_message: Instant::now(),
                    timers_seen: 0,
                    evicted_seen: 0,
                    cap_refusals: 0,
                    cap_logged_at: None,
                },
            );
        }
        self.published.update(|s| s.restoring.clear());
        self.update_gauges();
        // The restore's buffers (fetched records, decoded snapshots) are free.
        crate::pipeline::memory::release();
        Ok(())
    }

    /// Drops revoked partitions (after the batch was committed).
    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.assigned.remove(p);
            let ps = p.to_string();
            let _ = self.metrics.consumer_lag.remove_label_values(&[&ps]);
            let _ = self.metrics.event_time_lag.remove_label_values(&[&ps]);
            if let Some(t) = self.partitions.remove(p) {
                tracing::info!(
                    partition = p,
                    customers = t.processor.len(),
                    "partition revoked; state dropped"
                );
            }
        }
        self.published.update(|s| {
            s.assigned = self.assigned.clone();
            s.restoring.retain(|p| !partitions.contains(p));
        });
        self.update_gauges();
    }

    /// After an aborted transaction: every owned partition's state as the
    /// changelog holds it (read_committed: the aborted records are not
    /// there), the population model and refit schedule as a fresh instance
    /// would adopt them, and the consumer back at the committed offsets, so
    /// the discarded batch is processed again, deterministically, as after
    /// a crash (the same outreach ids), without leaving the process.
    pub fn rewind<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), PipelineError> {
        self.rewind_pending = false;
        let parts: Vec<i32> = self.partitions.keys().copied().collect();
        if parts.is_empty() {
            return Ok(());
        }
        // Where each partition's uncommitted input began; a partition that
        // handled nothing since is still at its committed offset (only its
        // timers ran, and its state is restored all the same).
        let from: Vec<(i32, i64)> = self
            .partitions
            .iter()
            .filter_map(|(p, t)| t.uncommitted_from.map(|o| (*p, o)))
            .collect();
        self.forget(&parts);
        self.assign(&parts)?;
        if !from.is_empty() {
            let topic = &self.settings.kafka.input_topic;
            let mut seek = TopicPartitionList::new();
            for (p, o) in &from {
                seek.add_partition_offset(topic, *p, Offset::Offset(*o))
                    .map_err(crate::pipeline::kafka("listing the offsets to rewind to"))?;
            }
            let sought =
                consumer
                    .seek_partitions(seek, TXN_TIMEOUT)
                    .map_err(crate::pipeline::kafka(
                        "seeking back to the committed offsets",
                    ))?;
            for e in sought.elements() {
                e.error().map_err(crate::pipeline::kafka(format!(
                    "seeking partition {} back to its committed offset",
                    e.partition()
                )))?;
            }
        }
        self.metrics.rewinds.inc();
        tracing::info!(partitions = ?parts, "rewound to the last committed transaction");
        Ok(())
    }

    /// Drops the partitions' state and everything learned from it, as a
    /// fresh instance starts: the model and refit schedule are then adopted
    /// from the changelog by [`Engine::assign`].
    fn forget(&mut self, parts: &[i32]) {
        self.revoke(parts);
        self.effects.clear();
        self.outgoing.clear();
        self.refit = None;
        self.next_refit = None;
        self.outcomes = outcomes::Outcomes::default();
        self.model = Arc::new(PopulationModel::prior(&self.core.model));
        set_model_metrics(&self.metrics, &self.core, &self.model);
    }

    /// Before the loop replaces its consumer (a fenced membership): the
    /// open transaction aborted, every partition's state dropped; the new
    /// consumer's assignment restores them from the changelog and reads
    /// their input from the committed offsets.
    pub fn drop_all(&mut self) {
        if self.txn_open {
            let _ = if self.sink.wedged() {
                self.sink.replace_transactional(TXN_TIMEOUT)
            } else {
                self.sink.abort_transaction(TXN_TIMEOUT)
            };
            self.txn_open = false;
        }
        self.rewind_pending = false;
        let parts: Vec<i32> = self.assigned.iter().copied().collect();
        self.forget(&parts);
        self.metrics.rewinds.inc();
    }
}
