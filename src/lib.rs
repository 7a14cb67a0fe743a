//! churnwatch: an event-sourced churn-detection stream processor.
//!
//! The flow, folder by folder: events come in ([`pb`], [`codec`],
//! [`validate`]), are folded into per-customer state ([`fold`], [`state`]),
//! scored by the signals ([`signals`], [`model`], [`population`], [`score`]),
//! and turned into outreach decisions ([`outreach`]). [`processor`] runs one
//! partition's stream through all of that, with silence timers ([`timers`]).
//! Everything so far is the pure core: no Kafka, no clock, no I/O.
//! [`replay`] drives it from files, and [`backtest`] measures it on a time
//! split (its figures are pure functions too); [`pipeline`] and [`service`] run it on
//! Kafka (`churnwatch run`), and [`demo`] runs all of it on one machine.

pub mod backtest;
pub mod channel;
pub mod cli;
pub mod codec;
pub mod config;
pub mod demo;
pub mod events;
pub mod feed;
pub mod fold;
pub mod generate;
pub mod http;
pub mod kind;
pub mod metrics;
pub mod mock_broker;
pub mod model;
pub mod outreach;
pub mod pb;
pub mod pipeline;
pub mod population;
pub mod processor;
pub mod readiness;
pub mod replay;
pub mod score;
pub mod service;
pub mod settings;
pub mod signals;
pub mod state;
pub mod store;
pub mod time;
pub mod timers;
pub mod uplift;
pub mod validate;
