//! Time inside the core: unix seconds of event time ("stream time"), UTC
//! calendar days, and human durations such as `30d`, `39w`, `12h`.
//!
//! No clock is read here; "now" is always passed in.

use std::{fmt, str::FromStr};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Event time as unix seconds (UTC).
pub type Timestamp = i64;

/// A UTC calendar day, counted from 1970-01-01 (day 0).
pub type Day = i32;

pub const SECS_PER_DAY: i64 = 86_400;

/// The UTC calendar day a timestamp falls on.
pub fn day_of(ts: Timestamp) -> Day {
    // Timestamps are validated to lie between 1970 and 9999, so this fits.
    ts.div_euclid(SECS_PER_DAY) as Day
}

/// The first second of a day.
pub fn start_of_day(day: Day) -> Timestamp {
    i64::from(day) * SECS_PER_DAY
}

/// RFC 3339 text of a timestamp, e.g. `2026-03-01T12:00:00Z`.
pub fn rfc3339(ts: Timestamp) -> String {
    match chrono::DateTime::from_timestamp(ts, 0) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => format!("@{ts}"),
    }
}

/// The calendar date of a timestamp, e.g. `2026-03-01`.
pub fn date(ts: Timestamp) -> String {
    match chrono::DateTime::from_timestamp(ts, 0) {
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => format!("@{ts}"),
    }
}

/// Parses an RFC 3339 timestamp into unix seconds.
pub fn parse_rfc3339(text: &str) -> Result<Timestamp, DurationError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|e| DurationError(format!("`{text}` is not an RFC 3339 time: {e}")))
}

/// A span of time written the way operators write it: `90s`, `15m`, `12h`,
/// `30d`, `39w` (one unit, whole numbers). Stored as seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(i64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DurationError(pub String);

impl Span {
    pub const fn seconds(s: i64) -> Self {
        Span(s)
    }
    pub const fn minutes(m: i64) -> Self {
        Span(m * 60)
    }
    pub const fn hours(h: i64) -> Self {
        Span(h * 3600)
    }
    pub const fn days(d: i64) -> Self {
        Span(d * SECS_PER_DAY)
    }
    pub const fn weeks(w: i64) -> Self {
        Span(w * 7 * SECS_PER_DAY)
    }
    pub const fn as_secs(self) -> i64 {
        self.0
    }
    pub fn as_days_f64(self) -> f64 {
        self.0 as f64 / SECS_PER_DAY as f64
    }
    /// Whole days, rounded down.
    pub fn whole_days(self) -> i64 {
        self.0.div_euclid(SECS_PER_DAY)
    }
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0.max(0) as u64)
    }
}

impl FromStr for Span {
    type Err = DurationError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| DurationError(format!("`{text}` has no unit (use s, m, h, d or w)")))?;
        let (num, unit) = t.split_at(split);
        let n: i64 = num
            .parse()
            .map_err(|_| DurationError(format!("`{text}` does not start with a whole number")))?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => SECS_PER_DAY,
            "w" => 7 * SECS_PER_DAY,
            _ => {
                return Err(DurationError(format!(
                    "`{text}`: unknown unit `{unit}` (use s, m, h, d or w)"
                )))
            }
        };
        n.checked_mul(mult)
            .map(Span)
            .ok_or_else(|| DurationError(format!("`{text}` is too long")))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let (n, u) = if s != 0 && s % (7 * SECS_PER_DAY) == 0 {
            (s / (7 * SECS_PER_DAY), "w")
        } else if s != 0 && s % SECS_PER_DAY == 0 {
            (s / SECS_PER_DAY, "d")
        } else if s != 0 && s % 3600 == 0 {
            (s / 3600, "h")
        } else if s != 0 && s % 60 == 0 {
            (s / 60, "m")
        } else {
            (s, "s")
        };
        write!(f, "{n}{u}")
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print_in_operator_units() {
        assert_eq!("30d".parse::<Span>(), Ok(Span::days(30)));
        assert_eq!("39w".parse::<Span>(), Ok(Span::weeks(39)));
        assert_eq!("12h".parse::<Span>(), Ok(Span::hours(12)));
        assert_eq!("90s".parse::<Span>(), Ok(Span::seconds(90)));
        assert_eq!(Span::days(14).to_string(), "2w");
        assert_eq!(Span::hours(36).to_string(), "36h");
        assert!("30".parse::<Span>().is_err());
        assert!("d".parse::<Span>().is_err());
        assert!("3y".parse::<Span>().is_err());
        assert!("99999999999999999w".parse::<Span>().is_err());
    }

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(86_399), 0);
        assert_eq!(day_of(86_400), 1);
        assert_eq!(day_of(-1), -1);
        let t = parse_rfc3339("2026-03-01T23:59:59+00:00").unwrap_or_default();
        assert_eq!(date(t), "2026-03-01");
        assert_eq!(rfc3339(start_of_day(day_of(t))), "2026-03-01T00:00:00Z");
    }
}
