//! The end of a batch: exactly-once, one Kafka transaction holding the
//! changelog, the outreach and the input offsets; at-least-once, sealed
//! batches written out in steps while processing goes on, their offsets
//! committed once the broker acknowledged everything they caused.

use super::*;

/// A sealed batch on its way out (at-least-once): its changelog goes once
/// the broker has acknowledged its outreach and dead letters, its offsets
/// are committed once the broker has acknowledged its changelog.
pub(super) struct Outgoing {
    offsets: TopicPartitionList,
    /// The epoch that closed with the batch's outreach and dead letters.
    effects: u64,
    /// Changelog records encoded so far (partition, record).
    records: Vec<(i32, ChangelogRecord)>,
    /// How many of `records` are sent.
    sent: usize,
    /// Sealed customers still to encode.
    encoding: bool,
    /// The epoch that closed with the batch's changelog, once all sent.
    changelog: Option<u64>,
}

impl Engine {
    /// Ends a batch. Exactly-once: the changelog, the offsets and the
    /// transaction's commit, at once. At-least-once: seals the batch (see
    /// [`Engine::progress`], which writes it out while processing goes on);
    /// on revocation and shutdown (`sync_commit`) writes every sealed batch
    /// out and commits, before returning.
    pub fn end_batch<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), PipelineError> {
        self.clock = (Instant::now(), now_unix());
        if self.sink.transactional {
            self.end_transaction(consumer)?;
        } else {
            self.seal_batch(consumer)?;
            if self.sync_commit {
                self.write_out(consumer)?;
            }
        }
        self.update_gauges();
        Ok(())
    }

    /// This batch's input offsets (last processed + 1 per partition).
    fn take_offsets(&mut self) -> Result<TopicPartitionList, PipelineError> {
        let mut tpl = TopicPartitionList::new();
        let topic = &self.settings.kafka.input_topic;
        for (p, task) in self.partitions.iter_mut() {
            if let Some(next) = task.next_offset.take() {
                tpl.add_partition_offset(topic, *p, Offset::Offset(next))
                    .map_err(crate::pipeline::kafka("listing the batch's offsets"))?;
            }
        }
        Ok(tpl)
    }

    fn end_transaction<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), PipelineError> {
        let tpl = self.take_offsets()?;
        let mut changed = Vec::new();
        for (p, task) in self.partitions.iter_mut() {
            task.processor.seal();
            task.processor.encode_sealed(usize::MAX);
            changed.extend(task.processor.take_encoded().map(|r| (*p, r)));
        }
        if !changed.is_empty() {
            self.begin()?;
        }
        for (p, r) in &changed {
            self.sink.changelog_record(*p, r)?;
        }
        if self.txn_open {
            let committed = self.send_offsets_and_commit(consumer, &tpl);
            self.txn_open = false;
            match committed {
                Ok(()) => {
                    for t in self.partitions.values_mut() {
                        t.uncommitted_from = None;
                    }
                    self.metrics.commit(CommitResult::Ok);
                }
                Err((what, e)) => self.txn_failed(what, e)?,
            }
        }
        Ok(())
    }

    fn send_offsets_and_commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
    ) -> Result<(), (&'static str, rdkafka::error::KafkaError)> {
        let deadline = Instant::now() + TXN_TIMEOUT;
        if tpl.count() > 0 {
            // Without group metadata (not a member just now) the offsets
            // cannot join the transaction: it is aborted like a refused one.
            let meta = consumer.group_metadata().ok_or((
                "send offsets",
                rdkafka::error::KafkaError::Global(
                    rdkafka::types::RDKafkaErrorCode::UnknownMemberId,
                ),
            ))?;
            self.sink
                .send_offsets(tpl, meta, TXN_TIMEOUT)
                .map_err(|e| ("send offsets", e))?;
        }
        // The offsets and the commit share one deadline: with the abort
        // after a failure (as long again), the loop is away from its
        // consumer for well under `max.poll.interval.ms` (300 s).
        self.sink
            .producer
            .commit_transaction(deadline.saturating_duration_since(Instant::now()))
            .map_err(|e| ("commit", e))
    }

    /// At-least-once batch end: the changed customers are sealed (encoded
    /// later, a few at a time), the outreach and dead letters sent so far
    /// close an epoch, and the batch joins the queue [`Engine::progress`]
    /// works through. At most [`MAX_OUTGOING`] batches wait: beyond, the loop
    /// waits for the broker (back-pressure instead of memory).
    fn seal_batch<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), PipelineError> {
        // The previous seal's customers not encoded yet: now (a seal
        // encodes them anyway), into the batch they belong to.
        self.collect_encoded(usize::MAX);
        while self.outgoing.len() >= MAX_OUTGOING {
            self.acknowledged("a backlog of batches")?;
            self.progress(consumer, usize::MAX)?;
        }
        let offsets = self.take_offsets()?;
        for task in self.partitions.values_mut() {
            task.processor.seal();
        }
        let encoding = self
            .partitions
            .values()
            .any(|t| t.processor.sealed_waiting() > 0);
        let effects = self.sink.seal_epoch();
        self.outgoing.push_back(Outgoing {
            offsets,
            effects,
            records: Vec::new(),
            sent: 0,
            encoding,
            changelog: None,
        });
        // The tombstones are ready at once, also in a batch with nothing to
        // encode (erasures alone): `collect_encoded` skips a batch that is
        // not encoding, which left such a batch's tombstones behind (sent
        // with a later batch, or never, while its offsets were committed).
        if let Some(batch) = self.outgoing.back_mut() {
            for (p, task) in self.partitions.iter_mut() {
                batch
                    .records
                    .extend(task.processor.take_encoded().map(|r| (*p, r)));
            }
        }
        Ok(())
    }

    /// Encodes up to `budget` sealed customers (over all partitions) into
    /// the newest outgoing batch.
    fn collect_encoded(&mut self, budget: usize) {
        let Some(batch) = self.outgoing.back_mut().filter(|b| b.encoding) else {
            return;
        };
        let mut left = budget;
        let mut waiting = 0;
        for (p, task) in self.partitions.iter_mut() {
            let before = task.processor.sealed_waiting();
            let after = task.processor.encode_sealed(left);
            left -= before - after;
            waiting += after;
            batch
                .records
                .extend(task.processor.take_encoded().map(|r| (*p, r)));
        }
        batch.encoding = waiting > 0;
    }

    /// Moves sealed batches out, a step at a time (at-least-once; the loop
    /// calls it every 0.5 ms while there is work): encodes up to `budget` sealed customers;
    /// once the broker has acknowledged a batch's outreach and dead letters,
    /// sends up to `budget` of its changelog records (an outreach must be
    /// stored before the changelog that records it as sent: a crash in
    /// between would lose it for good); once it has acknowledged the whole
    /// changelog, commits the batch's input offsets. Never waits for the
    /// broker, except to resend refused records.
    pub fn progress<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        budget: usize,
    ) -> Result<Work, PipelineError> {
        if self.outgoing.is_empty() {
            return Ok(Work::Idle);
        }
        self.sink.serve_deliveries();
        if self.sink.failed_deliveries() != self.failed_seen {
            self.acknowledged("records the broker refused")?;
        }
        self.collect_encoded(budget);
        let mut busy = self.outgoing.back().is_some_and(|b| b.encoding);
        while let Some(front) = self.outgoing.front_mut() {
            if front.changelog.is_none() {
                if !self.sink.acknowledged_through(front.effects) {
                    break;
                }
                let end = front.records.len().min(front.sent.saturating_add(budget));
                for (p, r) in &front.records[front.sent..end] {
                    self.sink.changelog_record(*p, r)?;
                }
                front.sent = end;
                if front.sent < front.records.len() || front.encoding {
                    busy = true;
                    break;
                }
                front.records = Vec::new();
                front.changelog = Some(self.sink.seal_epoch());
            }
            if !front
                .changelog
                .is_some_and(|e| self.sink.acknowledged_through(e))
            {
                break;
            }
            let offsets = std::mem::take(&mut front.offsets);
            self.outgoing.pop_front();
            self.commit(consumer, &offsets);
        }
        Ok(if busy {
            Work::Busy
        } else if self.outgoing.is_empty() {
            Work::Idle
        } else {
            Work::Waiting
        })
    }

    /// Writes every sealed batch out and commits its offsets, waiting for
    /// the broker (revocation, shutdown).
    fn write_out<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), PipelineError> {
        while !self.outgoing.is_empty() {
            self.acknowledged("outreach, dead letters and the changelog")?;
            self.progress(consumer, usize::MAX)?;
        }
        Ok(())
    }

    /// Commits input offsets: synchronously on revocation and shutdown,
    /// else asynchronously (a commit never blocks the loop; a lost one only
    /// means deterministic reprocessing).
    fn commit<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, offsets: &TopicPartitionList) {
        if offsets.count() == 0 {
            return;
        }
        let mode = if self.sync_commit {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        match consumer.commit(offsets, mode) {
            Ok(()) => self.metrics.commit(CommitResult::Ok),
            Err(e) => {
                // Not fatal: the events are reprocessed after a restart
                // and the deterministic core gives the same outreach ids.
                self.metrics.commit(CommitResult::Error);
                tracing::warn!(error = %e, "offset commit failed");
            }
        }
    }

    /// Waits until the broker acknowledged everything produced so far.
    /// Records it refused (a broker restarting can refuse what it was
    /// writing) are sent again, by a new producer, until delivered, for up
    /// to `FLUSH_TIMEOUT`;
    /// one that no retry can deliver fails the batch, whose input offsets
    /// are then never committed.
    fn acknowledged(&mut self, what: &str) -> Result<(), PipelineError> {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        loop {
            self.sink
                .drain(deadline)
                .map_err(crate::pipeline::kafka(format!(
                    "waiting for the broker to acknowledge {what}"
                )))?;
            let failed = self.sink.failed_deliveries();
            if failed == self.failed_seen {
                self.sink.all_acknowledged();
                return Ok(());
            }
            self.failed_seen = failed;
            let refused = self.sink.take_undelivered();
            let hopeless = refused
                .iter()
                .find(|(_, e)| crate::pipeline::sink::permanent(e));
            if refused.is_empty() || hopeless.is_some() || Instant::now() >= deadline {
                self.metrics.commit(CommitResult::Refused);
                let why = hopeless.map(|(_, e)| format!(" ({e})")).unwrap_or_default();
                return Err(PipelineError::Undelivered(format!(
                    "{} records were not delivered{why}; input offsets are not committed (they will be reprocessed)",
                    refused.len().max(1)
                )));
            }
            tracing::warn!(
                records = refused.len(),
                error = %refused[0].1,
                "the broker refused records; sending them again"
            );
            std::thread::sleep(Duration::from_millis(500));
            // A new producer sends them: the broker's state for the old
            // producer id may be what refused them.
            self.sink.renew()?;
            self.failed_seen = 0;
            self.sink.resend(refused)?;
        }
    }

    /// A transaction that could not commit: aborted, and the loop's
    /// partitions marked for [`Engine::rewind`] (their state holds the
    /// batch the broker discarded). A refused commit is what a group
    /// coordinator moving or hanging, or this member's session expiring,
    /// gives; the service rides it out. Only a fatal producer error (fenced
    /// by a newer instance with the same transactional id) or an abort
    /// that does not complete stops the loop.
    fn txn_failed(
        &mut self,
        what: &'static str,
        e: rdkafka::error::KafkaError,
    ) -> Result<(), PipelineError> {
        self.metrics.commit(CommitResult::Aborted);
        let fatal = matches!(&e, rdkafka::error::KafkaError::Transaction(t) if t.is_fatal());
        if fatal {
            return Err(PipelineError::TransactionFatal {
                op: what,
                source: e,
            });
        }
        // The aborts share one deadline (see send_offsets_and_commit).
        let deadline = Instant::now() + TXN_TIMEOUT;
        let left = || deadline.saturating_duration_since(Instant::now());
        let aborted = if self.sink.wedged() {
            // The offsets call still holds the producer: its replacement
            // fences it, and the broker aborts the transaction.
            tracing::warn!(
                "sending the offsets outlived its timeout; the transactional producer is replaced to abort"
            );
            self.sink.replace_transactional(left())
        } else {
            let mut aborted = self.sink.abort_transaction(left());
            while matches!(&aborted, Err(rdkafka::error::KafkaError::Transaction(t)) if t.is_retriable())
                && !left().is_zero()
            {
                aborted = self.sink.abort_transaction(left());
            }
            aborted
        };
        if let Err(source) = aborted {
            return Err(PipelineError::AbortFailed {
                op: what,
                failed: Box::new(e),
                source,
            });
        }
        tracing::warn!(
            error = %e,
            partitions = self.partitions.len(),
            "transaction {what} failed and was aborted; the partitions are restored from the changelog and their input read again"
        );
        self.rewind_pending = !self.partitions.is_empty();
        Ok(())
    }
}
