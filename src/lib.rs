//! churnwatch: an event-sourced churn-detection stream processor.
//!
//! The flow, folder by folder: events come in ([`pb`], [`codec`],
//! [`validate`]), are folded into per-customer state ([`fold`], [`state`]),
//! scored by the signals ([`signals`], [`model`], [`population`], [`score`]),
//! and turned into outreach decisions ([`outreach`]). [`processor`] runs one
//! partition's stream through all of that, with silence timers ([`timers`]).
//! Everything so far is the pure core, the `churnwatch-core` crate
//! (`crates/churnwatch-core`), re-exported here under the same names: no
//! Kafka, no clock, no I/O. [`replay`] drives it from files, and
//! [`backtest`] measures it on a time split (its figures are pure functions
//! too); [`pipeline`] and [`service`] run it on Kafka (`churnwatch run`), and
//! [`demo`] runs all of it on one machine.

pub use churnwatch_core::{
    channel, codec, config, events, feed, fold, generate, kind, learn, model, outreach, pb,
    population, processor, score, signals, state, store, time, timers, uplift, validate,
    vocabulary,
};

pub mod backtest;
pub mod cli;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod mock_broker;
pub mod pipeline;
pub mod readiness;
pub mod replay;
pub mod service;
pub mod settings;
