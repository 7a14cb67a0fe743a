//! churnwatch's test support, shared by the integration tests (tests/) and
//! the load harness (tools/loadtest).
//!
//! What runs a broker, and which:
//!
//! - [`Broker::start`]: the test binary's shared Apache Kafka (one KRaft
//!   node on a free loopback port, `scripts/kafka.sh run DIR`, started on
//!   first use and killed when the binary exits), or the Kafka named by
//!   `KAFKA_BOOTSTRAP`;
//! - [`Broker::own`], [`Broker::own_with`]: an Apache Kafka node of the
//!   caller's own, the same way, to stop and restart on the same port and
//!   log directory (None with `KAFKA_BOOTSTRAP` set); [`Broker::pid`] is
//!   its JVM's, for CPU and memory;
//! - [`cluster::Cluster`]: a three-node Apache Kafka cluster of a test's
//!   own (`kafka.sh prepare-cluster` and `run-node`), in network namespaces
//!   where the test runs as root;
//! - [`Broker::external`]: a broker something else runs (librdkafka's mock
//!   cluster, say).
//!
//! And around them: topics created, produced to and read back
//! ([`Broker::create_topic`], [`Broker::read_all`], ... and [`Record`]);
//! `churnwatch run` as a child ([`Service`]) found by [`churnwatch_bin`];
//! its admin HTTP and metrics ([`http_get`], [`scraped`], [`handled`]);
//! processes' CPU and memory from /proc ([`proc_cpu`], [`proc_mem`]); and
//! the March scenario ([`month`]).

pub mod bin;
pub mod broker;
pub mod cluster;
pub mod month;
pub mod process;
pub mod records;
pub mod scrape;
pub mod service;
pub mod topics;

use std::time::{Duration, Instant};

pub use bin::{churnwatch_bin, churnwatch_command, repo_root};
pub use broker::{free_port, kafka_script, kafka_version, Broker};
pub use process::{proc_cpu, proc_mem, signal, sigterm, spawn_owned, wait_exit};
pub use records::{final_states, outreach_ids, unique, Record};
pub use scrape::{
    handled, handled_scraped, http_get, http_request, metric, scraped, scraped_samples,
};
pub use service::{replay_ids, settings, settings_for_topic, Running, Service};
pub use topics::on_runtime;

/// Polls `f` until it returns Some or the timeout passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
