//! Validation of decoded events: every way an event can be unusable is a
//! typed, named rejection (its `reason()` is the stable code used in the
//! dead-letter headers and the `churnwatch_events_rejected_total` metric).

use crate::{
    config::FoldConfig,
    pb::{
        interaction_event::Kind, survey::Score, Channel, InteractionEvent, Outcome, TicketSeverity,
        TicketStatus,
    },
    time::Timestamp,
};

/// Latest accepted event time whatever the stream time: 2100-01-01. No real
/// interaction happens later; a producer that writes year 9999 is broken.
pub const MAX_PLAUSIBLE_TIME: Timestamp = 4_102_444_800;

/// Largest purchase amount accepted: 10^12 (a trillion in any currency).
/// No single purchase is larger, and with it a lifetime value stays finite
/// (it would take more than 10^296 purchases to overflow).
pub const MAX_AMOUNT: f64 = 1e12;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("customer_id is missing")]
    MissingCustomerId,
    #[error("event_id is missing")]
    MissingEventId,
    #[error("occurred_at is missing")]
    MissingTimestamp,
    #[error("{field} {} ({seconds} s) is before 1970-01-01T00:00:01Z, the earliest time accepted", when(*.seconds))]
    TimestampBeforeEpoch { field: &'static str, seconds: i64 },
    #[error("{field} {} ({seconds} s) is in 2100 or later; the latest time accepted is 2099-12-31T23:59:59Z", when(*.seconds))]
    TimestampOutOfRange { field: &'static str, seconds: i64 },
    #[error("{field} has nanos {nanos}, outside 0 to 999999999{}", leap_second_note(*.nanos))]
    InvalidNanos { field: &'static str, nanos: i32 },
    #[error("occurred_at is {ahead_secs} s ahead of stream time (max skew {max_secs} s)")]
    TimestampInFuture { ahead_secs: i64, max_secs: i64 },
    #[error("the event has no kind (empty or unknown oneof case)")]
    MissingKind,
    #[error("nps {0} is outside 0-10")]
    NpsOutOfRange(i32),
    #[error("csat {0} is outside 1-5")]
    CsatOutOfRange(i32),
    #[error("survey has neither nps nor csat")]
    SurveyWithoutScore,
    #[error("amount {0} is negative")]
    NegativeAmount(f64),
    #[error("amount is not a finite number")]
    NonFiniteAmount,
    #[error("amount {0:e} is over the maximum {MAX_AMOUNT:e}")]
    AmountTooLarge(f64),
    #[error("{field} has a control character (U+{code:04X} at byte {at}); such ids are refused, as churnwatch keeps names starting with U+0000 for its own records")]
    ControlCharacter {
        field: &'static str,
        code: u32,
        at: usize,
    },
    #[error("{field} is {len} bytes, over the {max}-byte limit")]
    OversizeString {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} has unknown enum value {value}")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("{0} is missing")]
    MissingField(&'static str),
    #[error("a new customer, and the partition already tracks {0} customers (fold.max_customers_per_partition)")]
    CustomerCap(u64),
}

impl Rejection {
    /// Stable snake_case code (metrics label, dead-letter header).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingCustomerId => "missing_customer_id",
            Rejection::MissingEventId => "missing_event_id",
            Rejection::MissingTimestamp => "missing_timestamp",
            Rejection::TimestampBeforeEpoch { .. } => "timestamp_before_epoch",
            Rejection::TimestampOutOfRange { .. } => "timestamp_out_of_range",
            Rejection::InvalidNanos { .. } => "invalid_timestamp_nanos",
            Rejection::TimestampInFuture { .. } => "timestamp_in_future",
            Rejection::MissingKind => "missing_kind",
            Rejection::CustomerCap(_) => "customer_cap",
            Rejection::NpsOutOfRange(_) => "nps_out_of_range",
            Rejection::CsatOutOfRange(_) => "csat_out_of_range",
            Rejection::SurveyWithoutScore => "survey_without_score",
            Rejection::NegativeAmount(_) => "negative_amount",
            Rejection::NonFiniteAmount => "non_finite_amount",
            Rejection::AmountTooLarge(_) => "amount_too_large",
            Rejection::ControlCharacter { .. } => "control_character",
            Rejection::OversizeString { .. } => "oversize_string",
            Rejection::UnknownEnum { .. } => "unknown_enum",
            Rejection::MissingField(_) => "missing_field",
        }
    }

    /// Every reason code, for metric pre-registration and documentation.
    pub const REASONS: [&'static str; 19] = [
        "missing_customer_id",
        "missing_event_id",
        "missing_timestamp",
        "timestamp_before_epoch",
        "timestamp_out_of_range",
        "invalid_timestamp_nanos",
        "timestamp_in_future",
        "missing_kind",
        "nps_out_of_range",
        "csat_out_of_range",
        "survey_without_score",
        "negative_amount",
        "non_finite_amount",
        "amount_too_large",
        "control_character",
        "oversize_string",
        "unknown_enum",
        "missing_field",
        "customer_cap",
    ];
}

/// A time in words for a diagnostic (`1969-06-15T00:00:00Z`).
fn when(seconds: i64) -> String {
    crate::time::rfc3339(seconds)
}

/// What a nanos value out of range most likely is: a leap second (second
/// 60, which chrono and some producers write as nanos of 10^9 or more).
fn leap_second_note(nanos: i32) -> &'static str {
    if (1_000_000_000..2_000_000_000).contains(&nanos) {
        "; this is a leap second (second 60), which a protobuf Timestamp cannot hold: send it as second 59 (or smear it)"
    } else {
        ""
    }
}

/// A checked event: its time in unix seconds and its kind.
#[derive(Debug, Clone, Copy)]
pub struct Valid<'a> {
    pub event: &'a InteractionEvent,
    pub at: Timestamp,
    pub kind: &'a Kind,
    pub channel: Channel,
}

/// Checks an event. `reference` is the latest time the caller trusts (stream
/// time, or in live mode the later of stream time and the wall clock); an
/// event further than `max_future_skew` ahead of it is rejected.
pub fn validate<'a>(
    ev: &'a InteractionEvent,
    reference: Option<Timestamp>,
    cfg: &FoldConfig,
) -> Result<Valid<'a>, Rejection> {
    let max = cfg.max_string_bytes;
    let check_len = |field: &'static str, s: &str| {
        if s.len() > max {
            Err(Rejection::OversizeString {
                field,
                len: s.len(),
                max,
            })
        } else {
            Ok(())
        }
    };
    check_len("customer_id", &ev.customer_id)?;
    check_len("event_id", &ev.event_id)?;
    if ev.customer_id.trim().is_empty() {
        return Err(Rejection::MissingCustomerId);
    }
    // Ids are compared byte for byte (docs/events.md, "How ids are compared"); a
    // control character is refused, so no id can be one of churnwatch's own
    // changelog keys (they start with U+0000) or break a log line.
    if let Some((at, c)) = ev.customer_id.char_indices().find(|(_, c)| c.is_control()) {
        return Err(Rejection::ControlCharacter {
            field: "customer_id",
            code: c as u32,
            at,
        });
    }
    if ev.event_id.trim().is_empty() {
        return Err(Rejection::MissingEventId);
    }
    let ts = ev.occurred_at.as_ref().ok_or(Rejection::MissingTimestamp)?;
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(Rejection::InvalidNanos {
            field: "occurred_at",
            nanos: ts.nanos,
        });
    }
    let at = ts.seconds;
    // Time 0 itself is refused too: the state uses 0 for "no time".
    if at <= 0 {
        return Err(Rejection::TimestampBeforeEpoch {
            field: "occurred_at",
            seconds: at,
        });
    }
    if at >= MAX_PLAUSIBLE_TIME {
        return Err(Rejection::TimestampOutOfRange {
            field: "occurred_at",
            seconds: at,
        });
    }
    if let Some(reference) = reference {
        let ahead = at - reference;
        if ahead > cfg.max_future_skew.as_secs() {
            return Err(Rejection::TimestampInFuture {
                ahead_secs: ahead,
                max_secs: cfg.max_future_skew.as_secs(),
            });
        }
    }
    let channel = Channel::try_from(ev.channel).map_err(|_| Rejection::UnknownEnum {
        field: "channel",
        value: ev.channel,
    })?;
    let kind = ev.kind.as_ref().ok_or(Rejection::MissingKind)?;
    validate_kind(kind, &check_len)?;
    Ok(Valid {
        event: ev,
        at,
        kind,
        channel,
    })
}

fn validate_kind(
    kind: &Kind,
    check_len: &dyn Fn(&'static str, &str) -> Result<(), Rejection>,
) -> Result<(), Rejection> {
    match kind {
        Kind::Purchase(p) => {
            check_len("purchase.order_id", &p.order_id)?;
            check_len("purchase.currency", &p.currency)?;
            if !p.amount.is_finite() {
                return Err(Rejection::NonFiniteAmount);
            }
            if p.amount < 0.0 {
                return Err(Rejection::NegativeAmount(p.amount));
            }
            if p.amount > MAX_AMOUNT {
                return Err(Rejection::AmountTooLarge(p.amount));
            }
        }
        Kind::Session(_) | Kind::Erasure(_) => {}
        Kind::TicketOpened(t) => {
            check_len("ticket_opened.ticket_id", &t.ticket_id)?;
            if t.ticket_id.is_empty() {
                return Err(Rejection::MissingField("ticket_opened.ticket_id"));
            }
            if TicketSeverity::try_from(t.severity).is_err() {
                return Err(Rejection::UnknownEnum {
                    field: "ticket_opened.severity",
                    value: t.severity,
                });
            }
        }
        Kind::TicketUpdated(t) => {
            check_len("ticket_updated.ticket_id", &t.ticket_id)?;
            if t.ticket_id.is_empty() {
                return Err(Rejection::MissingField("ticket_updated.ticket_id"));
            }
            match TicketStatus::try_from(t.status) {
                Ok(TicketStatus::Unspecified) => {
                    return Err(Rejection::MissingField("ticket_updated.status"))
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(Rejection::UnknownEnum {
                        field: "ticket_updated.status",
                        value: t.status,
                    })
                }
            }
        }
        Kind::Contact(c) => check_len("contact.reason", &c.reason)?,
        Kind::Complaint(c) => check_len("complaint.reason", &c.reason)?,
        Kind::Survey(s) => match s.score {
            Some(Score::Nps(n)) if !(0..=10).contains(&n) => {
                return Err(Rejection::NpsOutOfRange(n))
            }
            Some(Score::Csat(c)) if !(1..=5).contains(&c) => {
                return Err(Rejection::CsatOutOfRange(c))
            }
            Some(_) => {}
            None => return Err(Rejection::SurveyWithoutScore),
        },
        Kind::Subscription(s) => {
            check_len("subscription.plan", &s.plan)?;
            if let Some(r) = &s.renews_at {
                let field = "subscription.renews_at";
                if r.seconds < 0 {
                    return Err(Rejection::TimestampBeforeEpoch {
                        field,
                        seconds: r.seconds,
                    });
                }
                if r.seconds >= MAX_PLAUSIBLE_TIME {
                    return Err(Rejection::TimestampOutOfRange {
                        field,
                        seconds: r.seconds,
                    });
                }
            }
        }
        Kind::Consent(c) => {
            if Channel::try_from(c.channel).is_err() {
                return Err(Rejection::UnknownEnum {
                    field: "consent.channel",
                    value: c.channel,
                });
            }
        }
        Kind::OutreachOutcome(o) => {
            check_len("outreach_outcome.outreach_id", &o.outreach_id)?;
            if o.outreach_id.is_empty() {
                return Err(Rejection::MissingField("outreach_outcome.outreach_id"));
            }
            match Outcome::try_from(o.outcome) {
                Ok(Outcome::Unspecified) => {
                    return Err(Rejection::MissingField("outreach_outcome.outcome"))
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(Rejection::UnknownEnum {
                        field: "outreach_outcome.outcome",
                        value: o.outcome,
                    })
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events,
        pb::{Purchase, Subscription, Survey},
    };

    const T: Timestamp = 1_700_000_000;

    fn reason(ev: &InteractionEvent) -> &'static str {
        reason_at(ev, Some(T))
    }

    fn reason_at(ev: &InteractionEvent, reference: Option<Timestamp>) -> &'static str {
        match validate(ev, reference, &FoldConfig::default()) {
            Ok(_) => "ok",
            Err(r) => r.reason(),
        }
    }

    fn with_kind(kind: Kind) -> InteractionEvent {
        events::event("e", "c", T, Channel::Web, kind)
    }

    #[test]
    fn a_good_event_passes() {
        let ev = events::purchase("e", "c", T, 10.0);
        let v = validate(&ev, Some(T), &FoldConfig::default());
        assert_eq!(v.map(|v| (v.at, v.channel)).ok(), Some((T, Channel::Web)));
    }

    #[test]
    fn identity_and_time_rejections() {
        let good = events::purchase("e", "c", T, 10.0);
        assert_eq!(
            reason(&InteractionEvent {
                customer_id: String::new(),
                ..good.clone()
            }),
            "missing_customer_id"
        );
        assert_eq!(
            reason(&InteractionEvent {
                customer_id: "  ".into(),
                ..good.clone()
            }),
            "missing_customer_id"
        );
        assert_eq!(
            reason(&InteractionEvent {
                event_id: String::new(),
                ..good.clone()
            }),
            "missing_event_id"
        );
        assert_eq!(
            reason(&InteractionEvent {
                occurred_at: None,
                ..good.clone()
            }),
            "missing_timestamp"
        );
        let at = |seconds, nanos| Some(pbjson_types::Timestamp { seconds, nanos });
        assert_eq!(
            reason(&InteractionEvent {
                occurred_at: at(-62_135_596_800, 0),
                ..good.clone()
            }),
            "timestamp_before_epoch"
        );
        assert_eq!(
            reason(&InteractionEvent {
                occurred_at: at(253_402_300_799, 0),
                ..good.clone()
            }),
            "timestamp_out_of_range"
        );
        assert_eq!(
            reason_at(
                &InteractionEvent {
                    occurred_at: at(253_402_300_799, 0),
                    ..good.clone()
                },
                None
            ),
            "timestamp_out_of_range"
        );
        assert_eq!(
            reason(&InteractionEvent {
                occurred_at: at(T, -1),
                ..good.clone()
            }),
            "invalid_timestamp_nanos"
        );
        assert_eq!(
            reason(&InteractionEvent {
                occurred_at: at(T + 7200, 0),
                ..good.clone()
            }),
            "timestamp_in_future"
        );
        assert_eq!(
            reason(&InteractionEvent {
                occurred_at: at(T + 3600, 0),
                ..good.clone()
            }),
            "ok"
        );
        assert_eq!(
            reason_at(
                &InteractionEvent {
                    occurred_at: at(T + 7200, 0),
                    ..good.clone()
                },
                None
            ),
            "ok"
        );
        assert_eq!(
            reason(&InteractionEvent {
                kind: None,
                ..good.clone()
            }),
            "missing_kind"
        );
        assert_eq!(
            reason(&InteractionEvent {
                channel: 42,
                ..good.clone()
            }),
            "unknown_enum"
        );
        let long = "x".repeat(257);
        assert_eq!(
            reason(&InteractionEvent {
                customer_id: long.clone(),
                ..good.clone()
            }),
            "oversize_string"
        );
        assert_eq!(
            reason(&InteractionEvent {
                event_id: long,
                ..good
            }),
            "oversize_string"
        );
    }

    #[test]
    fn payload_rejections() {
        let purchase = |amount| {
            with_kind(Kind::Purchase(Purchase {
                order_id: "o".into(),
                amount,
                currency: "EUR".into(),
            }))
        };
        assert_eq!(reason(&purchase(-1.0)), "negative_amount");
        assert_eq!(reason(&purchase(f64::NAN)), "non_finite_amount");
        assert_eq!(reason(&purchase(f64::INFINITY)), "non_finite_amount");
        assert_eq!(reason(&purchase(0.0)), "ok");
        assert_eq!(reason(&events::nps("e", "c", T, 11)), "nps_out_of_range");
        assert_eq!(reason(&events::nps("e", "c", T, -1)), "nps_out_of_range");
        assert_eq!(reason(&events::nps("e", "c", T, 0)), "ok");
        assert_eq!(reason(&events::csat("e", "c", T, 0)), "csat_out_of_range");
        assert_eq!(reason(&events::csat("e", "c", T, 6)), "csat_out_of_range");
        assert_eq!(reason(&events::csat("e", "c", T, 5)), "ok");
        assert_eq!(
            reason(&with_kind(Kind::Survey(Survey { score: None }))),
            "survey_without_score"
        );
        let mut ticket = events::ticket_opened("e", "c", T, Channel::Phone, "t1");
        if let Some(Kind::TicketOpened(t)) = ticket.kind.as_mut() {
            t.severity = 9;
        }
        assert_eq!(reason(&ticket), "unknown_enum");
        assert_eq!(
            reason(&events::ticket_opened("e", "c", T, Channel::Phone, "")),
            "missing_field"
        );
        let update = events::ticket_updated("e", "c", T, "t1", TicketStatus::Unspecified, None);
        assert_eq!(reason(&update), "missing_field");
        let mut outcome = events::outcome("e", "c", T, "o1", Outcome::Replied);
        assert_eq!(reason(&outcome), "ok");
        if let Some(Kind::OutreachOutcome(o)) = outcome.kind.as_mut() {
            o.outcome = 77;
        }
        assert_eq!(reason(&outcome), "unknown_enum");
        assert_eq!(
            reason(&events::consent("e", "c", T, true, Channel::Unspecified)),
            "ok"
        );
        let mut consent = events::consent("e", "c", T, true, Channel::Sms);
        if let Some(Kind::Consent(c)) = consent.kind.as_mut() {
            c.channel = 100;
        }
        assert_eq!(reason(&consent), "unknown_enum");
        let sub = with_kind(Kind::Subscription(Subscription {
            plan: "p".repeat(300),
            renews_at: None,
            cancelled: false,
        }));
        assert_eq!(reason(&sub), "oversize_string");
        let sub = with_kind(Kind::Subscription(Subscription {
            plan: "pro".into(),
            renews_at: Some(pbjson_types::Timestamp {
                seconds: -5,
                nanos: 0,
            }),
            cancelled: false,
        }));
        assert_eq!(reason(&sub), "timestamp_before_epoch");
        assert_eq!(
            reason(&events::complaint(
                "e",
                "c",
                T,
                Channel::Phone,
                &"r".repeat(300)
            )),
            "oversize_string"
        );
    }

    #[test]
    fn amounts_are_bounded() {
        // Issue 20, finding 7: two purchases of 1.797e308 made the lifetime
        // value infinite.
        let purchase = |amount| {
            with_kind(Kind::Purchase(Purchase {
                order_id: "o".into(),
                amount,
                currency: "EUR".into(),
            }))
        };
        assert_eq!(reason(&purchase(MAX_AMOUNT)), "ok");
        assert_eq!(reason(&purchase(MAX_AMOUNT * 1.5)), "amount_too_large");
        assert_eq!(reason(&purchase(f64::MAX)), "amount_too_large");
    }

    #[test]
    fn control_characters_in_a_customer_id_are_refused() {
        let good = events::purchase("e", "c", T, 10.0);
        for id in [
            "\u{0}churnwatch/model",
            "a\u{1b}[31m",
            "line\nbreak",
            "c\u{85}",
        ] {
            let ev = InteractionEvent {
                customer_id: id.into(),
                ..good.clone()
            };
            assert_eq!(reason(&ev), "control_character", "{id:?}");
        }
        let ev = InteractionEvent {
            customer_id: "caf\u{e9} \u{1f600}".into(),
            ..good
        };
        assert_eq!(reason(&ev), "ok", "other Unicode is an id like any other");
    }

    #[test]
    fn diagnostics_name_the_real_problem() {
        // Issue 20, finding 8.
        let message = |ev: &InteractionEvent| match validate(ev, Some(T), &FoldConfig::default()) {
            Ok(_) => String::from("ok"),
            Err(r) => format!("{}: {r}", r.reason()),
        };
        let renewal = |seconds| {
            with_kind(Kind::Subscription(Subscription {
                plan: "pro".into(),
                renews_at: Some(pbjson_types::Timestamp { seconds, nanos: 0 }),
                cancelled: false,
            }))
        };
        let m = message(&renewal(-86_400 * 200));
        assert!(!m.contains("2100"), "{m}");
        assert!(
            m.contains("subscription.renews_at") && m.contains("1969-06-15"),
            "{m}"
        );
        assert!(
            m.contains("timestamp_before_epoch") && m.contains("before 1970"),
            "{m}"
        );
        let m = message(&renewal(MAX_PLAUSIBLE_TIME + 10));
        assert!(
            m.contains("subscription.renews_at") && m.contains("2100 or later"),
            "{m}"
        );
        let leap = InteractionEvent {
            occurred_at: Some(pbjson_types::Timestamp {
                seconds: T,
                nanos: 1_000_000_000,
            }),
            ..events::purchase("e", "c", T, 1.0)
        };
        let m = message(&leap);
        assert!(m.contains("leap second"), "{m}");
        let m = message(&InteractionEvent {
            occurred_at: Some(pbjson_types::Timestamp {
                seconds: T,
                nanos: -1,
            }),
            ..events::purchase("e", "c", T, 1.0)
        });
        assert!(m.contains("0 to 999999999") && !m.contains("leap"), "{m}");
        // From JSON, as a producer writes it: second 60.
        let json =
            r#"{"eventId":"e","customerId":"c","occurredAt":"2016-12-31T23:59:60Z","session":{}}"#;
        let ev = crate::codec::decode(json.as_bytes(), crate::codec::Format::Json);
        let m = match ev {
            Ok(ev) => message(&ev),
            Err(e) => format!("{}: {e}", e.reason()),
        };
        assert!(m.contains("leap second"), "{m}");
    }

    #[test]
    fn every_reason_code_is_listed() {
        for r in [
            Rejection::MissingCustomerId,
            Rejection::MissingEventId,
            Rejection::MissingTimestamp,
            Rejection::TimestampBeforeEpoch {
                field: "f",
                seconds: 0,
            },
            Rejection::TimestampOutOfRange {
                field: "f",
                seconds: 0,
            },
            Rejection::InvalidNanos {
                field: "f",
                nanos: 0,
            },
            Rejection::TimestampInFuture {
                ahead_secs: 0,
                max_secs: 0,
            },
            Rejection::MissingKind,
            Rejection::NpsOutOfRange(0),
            Rejection::CsatOutOfRange(0),
            Rejection::SurveyWithoutScore,
            Rejection::NegativeAmount(0.0),
            Rejection::NonFiniteAmount,
            Rejection::AmountTooLarge(2e12),
            Rejection::ControlCharacter {
                field: "f",
                code: 0,
                at: 0,
            },
            Rejection::OversizeString {
                field: "f",
                len: 0,
                max: 0,
            },
            Rejection::UnknownEnum {
                field: "f",
                value: 0,
            },
            Rejection::MissingField("f"),
            Rejection::CustomerCap(1),
        ] {
            assert!(Rejection::REASONS.contains(&r.reason()), "{}", r.reason());
            assert!(!r.to_string().is_empty());
        }
    }
}
