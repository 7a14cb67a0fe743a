//! The Kafka tests that share one broker: this binary's Apache Kafka
//! (started on first use by churnwatch-testkit, `scripts/kafka.sh run`), or the
//! cluster `KAFKA_BOOTSTRAP` names. One binary, so one link and one broker
//! start for all of them; topics and groups are unique per test, so they
//! run side by side. The trials that stop or kill a broker are binaries of
//! their own: `tests/kafka_faults.rs` (a broker of its own per trial, and
//! the shared one) and `tests/kafka_cluster.rs` (three nodes).
//!
//! `cargo test --release --test kafka -- pipeline::` runs one module.

use churnwatch_testkit as common;

/// The changelog compacted by the broker's cleaner; creation settings.
mod compaction;
/// Transactions: no repeats under SIGKILL, aborted records invisible.
mod exactly_once;
/// A flood of new customer ids against the per-partition cap.
mod flood;
/// `/metrics` after a run over known input, metric by metric.
mod metrics;
/// Events in, outreach out, idle advance, dead letters, restore, sharing.
mod pipeline;
/// Poison input: each kind of bad message to the dead-letter topic.
mod poison;
/// `churnwatch run` as ops run it: admin HTTP, signals.
mod service;
/// Restore after a restart; two instances sharing partitions.
mod state;
