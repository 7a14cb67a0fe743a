//! Refits of the population model on the stream-time schedule: the
//! customers gathered in steps, the fit on a thread of its own, the model
//! recorded in the changelog and adopted from it.

use super::*;

/// A refit under way: the customers' activity being gathered, then the fit
/// on its own thread.
pub(super) enum Refit {
    Gathering {
        /// Stream time the fit is as of.
        at: Timestamp,
        started: Instant,
        /// Partitions still to gather (the last one is being gathered).
        partitions: Vec<i32>,
        /// Next slot of the partition being gathered.
        next: u32,
        activities: Vec<Activity>,
        /// The risk's labels and snapshot, gathered in the same pass.
        gather: outcomes::Gather,
    },
    Fitting {
        started: Instant,
        handle: JoinHandle<Result<outcomes::Refitted, RefitError>>,
    },
}

impl Engine {
    /// Refits the population model on the schedule (stream time), from the
    /// partitions this loop owns. Neither step holds the loop: the
    /// customers' activity is gathered a part at a time in the loop's steps
    /// ([`Engine::gather_for_refit`]; reading a million states at once took
    /// 45-100 ms), then fitted on a thread of its own (50-150 ms at a million
    /// customers); the model is used from the first batch end after that.
    pub fn maybe_refit(&mut self) {
        if matches!(&self.refit, Some(Refit::Fitting { handle, .. }) if handle.is_finished()) {
            if let Some(Refit::Fitting { handle, started }) = self.refit.take() {
                self.refitted(handle, started);
            }
        }
        if self.refit.is_some() {
            return;
        }
        let every = self.core.model.refit_every.as_secs();
        let Some(st) = self
            .partitions
            .values()
            .filter_map(|t| t.processor.stream_time())
            .max()
        else {
            return;
        };
        // The first look fits at once (a restarted or new instance should
        // not score with the prior for a whole period); then once per period
        // of stream time.
        let due = self.next_refit.is_none_or(|t| st >= t);
        if !due {
            return;
        }
        self.next_refit = Some((st.div_euclid(every) + 1) * every);
        let gather = self.outcomes.begin(st, &self.core);
        self.refit = Some(Refit::Gathering {
            at: st,
            started: Instant::now(),
            partitions: self.partitions.keys().copied().collect(),
            next: 0,
            activities: Vec::with_capacity(
                self.partitions.values().map(|t| t.processor.len()).sum(),
            ),
            gather,
        });
    }

    /// One part of a refit's gathering (`budget` slots); when all is
    /// gathered, starts the fit on its own thread. True while gathering.
    pub fn gather_for_refit(&mut self, budget: u32) -> bool {
        let Some(Refit::Gathering {
            partitions,
            next,
            activities,
            gather,
            ..
        }) = &mut self.refit
        else {
            return false;
        };
        while let Some(&p) = partitions.last() {
            let more = self
                .partitions
                .get(&p)
                .and_then(|t| t.processor.gather(*next, budget, activities, gather));
            match more {
                Some(n) => {
                    *next = n;
                    return true;
                }
                None => {
                    partitions.pop();
                    *next = 0;
                }
            }
        }
        let Some(Refit::Gathering {
            at,
            started,
            activities,
            gather,
            ..
        }) = self.refit.take()
        else {
            return false;
        };
        let training = self.outcomes.finish(gather);
        let (model, core) = (self.model.clone(), self.core.clone());
        let spawned = std::thread::Builder::new()
            .name("churnwatch-refit".into())
            .spawn(move || {
                yield_to_the_loop();
                outcomes::refit(&model, &core, &activities, &training, at)
            });
        match spawned {
            Ok(handle) => self.refit = Some(Refit::Fitting { started, handle }),
            Err(e) => {
                self.metrics.refit(RefitResult::Error);
                tracing::warn!(error = %e, "could not start a refit; keeping the model");
            }
        }
        false
    }

    /// Uses a finished refit's model (or says why not).
    fn refitted(
        &mut self,
        handle: JoinHandle<Result<outcomes::Refitted, RefitError>>,
        started: Instant,
    ) {
        let Ok(result) = handle.join() else {
            self.metrics.refit(RefitResult::Error);
            tracing::error!("the refit thread panicked; keeping the model");
            return;
        };
        match result {
            Ok(outcomes::Refitted { model: m, learning }) => {
                match (&learning, &m.risk) {
                    (Ok(()), Some(r)) => tracing::info!(
                        labelled = r.labelled,
                        churned = r.churned,
                        auc = r.auc,
                        brier = r.brier,
                        "risk coefficients learned"
                    ),
                    (Err(e), _) => {
                        tracing::info!(reason = %e, "risk coefficients not learned; keeping the current ones")
                    }
                    _ => {}
                }
                let m = Arc::new(m);
                for t in self.partitions.values_mut() {
                    t.processor.set_model(m.clone());
                }
                set_model_metrics(&self.metrics, &self.core, &m);
                self.metrics.refit(RefitResult::Ok);
                tracing::info!(
                    params = ?m.params,
                    customers = m.fit.as_ref().map_or(0, |f| f.customers),
                    log_likelihood = m.fit.as_ref().map_or(f64::NAN, |f| f.log_likelihood),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "population model refitted"
                );
                self.model = m;
                if let Err(e) = self.record_model() {
                    tracing::warn!(error = %e, "could not record the model in the changelog");
                }
                // The fit's per-customer summaries are free.
                crate::pipeline::memory::release();
            }
            Err(e @ (RefitError::TooFew { .. } | RefitError::TooShort { .. })) => {
                self.metrics.refit(RefitResult::Skipped);
                tracing::info!(reason = %e, "refit skipped; keeping the model");
            }
            Err(e) => {
                self.metrics.refit(RefitResult::Error);
                tracing::warn!(error = %e, "model refit failed; keeping the model");
            }
        }
    }

    /// Uses a model restored from the changelog if it is newer than the one
    /// in use, so a restarted instance scores as the crashed one did.
    pub(super) fn adopt(&mut self, m: PopulationModel) {
        if let Err(e) = m.params.validate() {
            // A corrupt record would make every risk NaN (no outreach, ever).
            tracing::warn!(error = %e, "the changelog's model is invalid; ignored");
            return;
        }
        let newer = match (&m.fit, &self.model.fit) {
            (Some(a), Some(b)) => a.fitted_at > b.fitted_at,
            (Some(_), None) => true,
            _ => false,
        };
        if !newer || m.family != self.core.model.family || m.time_unit != self.core.model.time_unit
        {
            return;
        }
        let every = self.core.model.refit_every.as_secs();
        if let Some(f) = &m.fit {
            self.next_refit = Some((f.fitted_at.div_euclid(every) + 1) * every);
        }
        let m = Arc::new(m);
        for t in self.partitions.values_mut() {
            t.processor.set_model(m.clone());
        }
        set_model_metrics(&self.metrics, &self.core, &m);
        tracing::info!(params = ?m.params, "population model restored from the changelog");
        self.model = m;
    }

    /// Records the model in use in every owned changelog partition.
    fn record_model(&mut self) -> Result<(), PipelineError> {
        let bytes = serde_json::to_vec(&*self.model)?;
        self.begin()?;
        let parts: Vec<i32> = self.partitions.keys().copied().collect();
        for p in parts {
            self.sink.changelog(p, restore::MODEL_KEY, Some(&bytes))?;
        }
        Ok(())
    }
}

/// Gives the calling thread (the refit's) the lowest scheduling priority
/// (nice 19): the fit is background work of a second or two, and on a
/// machine whose cores are busy it would otherwise take CPU time from the
/// loop, whose input then waits (measured at 64k events/s on 2 cores beside
/// the broker: decision latency p99 from the refits alone of about 300 ms).
/// Linux gives each thread a nice value of its own; elsewhere this does
/// nothing. A refusal (a sandbox forbidding it) only keeps the priority.
fn yield_to_the_loop() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread (who = 0) has no memory
    // effects; its result is only a status code.
    unsafe {
        let _ = libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}
