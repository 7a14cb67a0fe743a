//! Broker trouble in the log: one clear line at once, then a summary every
//! [`SUMMARY_EVERY`] (how many errors, the last one) instead of librdkafka's
//! bursts of identical ERROR lines (an unreachable broker gave 22 in one
//! millisecond, 19 the same). Every client's context sends its librdkafka
//! errors here; other librdkafka log levels pass through unchanged.

use std::{
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use rdkafka::{config::RDKafkaLogLevel, error::KafkaError};

/// How often repeated broker errors are summed up in one line.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// What to log for a stream of errors: the first at once, then one summary
/// per window that had any. Pure (time is given), so it is tested without
/// a broker.
#[derive(Debug, Default)]
pub struct Throttle {
    /// Start of the current window; `None` before the first error.
    window: Option<Instant>,
    /// Errors in the current window not yet logged.
    pending: u64,
    /// Errors since the first.
    total: u64,
    last: String,
}

/// A line to log.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    First(String),
    Summary {
        errors: u64,
        total: u64,
        last: String,
    },
}

impl Throttle {
    /// An error happened at `now`.
    pub fn error(&mut self, now: Instant, what: &str) -> Option<Line> {
        self.total += 1;
        self.last = what.to_owned();
        let Some(start) = self.window else {
            self.window = Some(now);
            return Some(Line::First(what.to_owned()));
        };
        self.pending += 1;
        if now.saturating_duration_since(start) >= SUMMARY_EVERY {
            self.tick(now)
        } else {
            None
        }
    }

    /// The summary of the window, if one is due and it had errors.
    pub fn tick(&mut self, now: Instant) -> Option<Line> {
        let start = self.window?;
        if self.pending == 0 || now.saturating_duration_since(start) < SUMMARY_EVERY {
            return None;
        }
        self.window = Some(now);
        let errors = std::mem::take(&mut self.pending);
        Some(Line::Summary {
            errors,
            total: self.total,
            last: self.last.clone(),
        })
    }
}

fn throttle() -> &'static Mutex<Throttle> {
    static T: OnceLock<Mutex<Throttle>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(Throttle::default()))
}

fn emit(line: Option<Line>) {
    match line {
        Some(Line::First(what)) => tracing::error!(
            error = %what,
            "broker trouble: {what}; librdkafka retries on its own, a summary follows every {} s while it lasts",
            SUMMARY_EVERY.as_secs()
        ),
        Some(Line::Summary {
            errors,
            total,
            last,
        }) => tracing::warn!(
            errors,
            total,
            last_error = %last,
            "broker trouble continues: {errors} more errors in the last {} s ({total} in all), the last: {last}",
            SUMMARY_EVERY.as_secs()
        ),
        None => {}
    }
}

/// A broker error (from a client's `error` callback or an error-level log).
pub fn report(what: &str) {
    let line = throttle()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .error(Instant::now(), what);
    emit(line);
}

/// Logs the summary if one is due (called from the loops and the start).
pub fn tick() {
    let line = throttle()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .tick(Instant::now());
    emit(line);
}

/// `ClientContext::log` for every churnwatch client: errors are throttled,
/// the rest logged as rdkafka would.
pub fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => report(&format!("{fac}: {message}")),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", "{fac} {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac} {message}"),
    }
}

/// `ClientContext::error` for every churnwatch client.
pub fn error(error: &KafkaError, reason: &str) {
    report(&format!("{error}: {reason}"));
}

/// Implements `ClientContext`'s `log` and `error` with the throttle.
macro_rules! throttled_client_context {
    () => {
        fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
            $crate::pipeline::trouble::log(level, fac, message);
        }
        fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
            $crate::pipeline::trouble::error(&error, reason);
        }
    };
}
pub(crate) use throttled_client_context;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_at_once_then_one_summary_per_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Throttle::default();
        assert_eq!(
            t.error(at(0), "connection refused"),
            Some(Line::First("connection refused".into()))
        );
        // A burst in the same millisecond: nothing more.
        for _ in 0..21 {
            assert_eq!(t.error(at(0), "connection refused"), None);
        }
        assert_eq!(t.tick(at(9_999)), None);
        assert_eq!(
            t.tick(at(10_000)),
            Some(Line::Summary {
                errors: 21,
                total: 22,
                last: "connection refused".into()
            })
        );
        // A quiet window says nothing; the next error after it sums up.
        assert_eq!(t.tick(at(25_000)), None);
        assert_eq!(
            t.error(at(30_000), "timed out"),
            Some(Line::Summary {
                errors: 1,
                total: 23,
                last: "timed out".into()
            })
        );
    }
}
