//! The March scenario: several customers over a synthetic month, shared by
//! the replay scenario test and the Kafka pipeline tests.

use std::path::Path;

use churnwatch::{
    codec::{self, Format},
    events,
    pb::{Channel, InteractionEvent},
    time::parse_rfc3339,
};

pub fn t(text: &str) -> i64 {
    parse_rfc3339(text).unwrap_or_else(|e| panic!("{e}"))
}

pub const DAY: i64 = 86_400;

/// The month of March 2026, with January and February as history.
pub fn month() -> Vec<InteractionEvent> {
    let jan1 = t("2026-01-01T10:00:00Z");
    let mut evs = Vec::new();
    let mut n = 0;
    let mut id = |c: &str| {
        n += 1;
        format!("{c}-{n}")
    };
    // A valuable regular who buys every 3 days and uses the app, then goes silent on 1 March.
    for k in 0..20 {
        let at = jan1 + k * 3 * DAY;
        evs.push(events::purchase(&id("silent"), "silent-regular", at, 60.0));
        evs.push(events::session(
            &id("silent"),
            "silent-regular",
            at + 600,
            Channel::App,
        ));
    }
    // Weekly buyers: a steady one, a frustrated one, a detractor, a renewal at risk, one without consent.
    for (c, until) in [
        ("steady", t("2026-03-31T00:00:00Z")),
        ("frustrated", t("2026-03-31T00:00:00Z")),
        ("detractor", t("2026-03-31T00:00:00Z")),
        ("renewal", t("2026-02-20T00:00:00Z")),
        ("no-consent", t("2026-02-20T00:00:00Z")),
    ] {
        let mut at = jan1 + 3600;
        while at < until {
            evs.push(events::purchase(&id(c), c, at, 25.0));
            at += 7 * DAY;
        }
    }
    evs.push(events::contact(
        &id("f"),
        "frustrated",
        t("2026-03-10T09:00:00Z"),
        Channel::Phone,
    ));
    evs.push(events::contact(
        &id("f"),
        "frustrated",
        t("2026-03-11T15:30:00Z"),
        Channel::Email,
    ));
    evs.push(events::contact(
        &id("f"),
        "frustrated",
        t("2026-03-12T08:45:00Z"),
        Channel::Chat,
    ));
    evs.push(events::nps(
        &id("d"),
        "detractor",
        t("2026-03-05T18:20:00Z"),
        2,
    ));
    evs.push(events::subscription(
        &id("r"),
        "renewal",
        t("2026-01-02T00:00:00Z"),
        "pro",
        t("2026-03-25T00:00:00Z"),
        false,
    ));
    evs.push(events::consent(
        &id("n"),
        "no-consent",
        t("2026-02-01T12:00:00Z"),
        false,
        Channel::Unspecified,
    ));
    evs.push(events::session(
        &id("end"),
        "steady",
        t("2026-03-31T23:00:00Z"),
        Channel::Web,
    ));
    evs.sort_by_key(|e| e.occurred_at.map_or(0, |x| x.seconds));
    evs
}

pub fn write_events(path: &Path, evs: &[InteractionEvent], format: Format) {
    let mut buf = Vec::new();
    for e in evs {
        codec::write_framed(&mut buf, e, format);
    }
    std::fs::write(path, buf).unwrap_or_else(|e| panic!("{e}"));
}
