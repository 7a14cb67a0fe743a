//! churnwatch-core: the pure core of churnwatch, with no Kafka, no clock
//! and no I/O (the compiler keeps it so: this crate depends on none of
//! rdkafka, tokio, axum, hyper or prometheus).
//!
//! The flow, folder by folder: events come in ([`pb`], [`codec`],
//! [`validate`]), are folded into per-customer state ([`fold`], [`state`],
//! [`store`]), scored by the signals ([`signals`], [`model`],
//! [`population`], [`score`], with coefficients [`learn`]ed from
//! outcomes), and turned into outreach decisions ([`outreach`],
//! [`uplift`]). [`vocabulary`] is the leaf they share (levels, thresholds,
//! reason codes, suppression reasons, targeting), so that none of them
//! imports another in a circle. [`processor`] runs one partition's stream
//! through all of that, with silence timers ([`timers`]); [`feed`] runs it
//! over events in memory (replay, backtest and the generator's closed
//! loop). [`config`] is the core configuration with its defaults and checks;
//! [`generate`] makes synthetic populations with a known answer.
//!
//! The `churnwatch` crate re-exports every module here under the same name.

pub mod channel;
pub mod codec;
pub mod config;
pub mod events;
pub mod feed;
pub mod fold;
pub mod generate;
pub mod kind;
pub mod learn;
pub mod model;
pub mod outreach;
pub mod pb;
pub mod population;
pub mod processor;
pub mod score;
pub mod signals;
pub mod state;
pub mod store;
pub mod time;
pub mod timers;
pub mod uplift;
pub mod validate;
pub mod vocabulary;
