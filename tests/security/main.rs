//! Security, as an operator meets it: Kafka credentials and TLS passed
//! through to librdkafka, secrets that never show, an admin HTTP that exposes
//! no more than it must, logs without customer data, and erasure that sticks.
//!
//! Every test runs the `churnwatch` binary, as ops run it. The SASL and TLS
//! tests run an Apache Kafka of their own (churnwatch-testkit, `Broker::own_with`)
//! with a SASL_PLAINTEXT or SSL listener beside the plaintext one the test
//! uses to create topics; with `KAFKA_BOOTSTRAP` set they say why they skip.
//! The others run against this binary's Apache Kafka, or that Kafka.
//!
//! - SASL: SCRAM-SHA-256 and SCRAM-SHA-512 users are made when the broker's
//!   storage is formatted (`kafka-storage format --add-scram`, KIP-900), and
//!   PLAIN users in the listener's JAAS configuration.
//! - TLS: the broker's own SSL listener with PEM files made by openssl
//!   (`ssl.keystore.type=PEM`), requiring a client certificate.

use churnwatch_testkit as common;

mod admin_http;
mod erasure;
mod logs;
mod sasl;
mod secrets;
mod support;
mod tls;
