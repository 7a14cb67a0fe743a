//! churnwatch's admin HTTP from outside (a minimal HTTP/1.1 GET) and its
//! metrics: Prometheus text sums, or the in-process registry of a pipeline
//! a test runs itself.

use std::time::Duration;

/// (status, body) of a plain HTTP/1.1 GET on loopback, with a bearer token.
pub fn http_get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    http_request(("127.0.0.1", port), path, auth.as_deref())
}

/// (status, body) of a plain HTTP/1.1 GET, with `authorization` (the whole
/// header value) if given. None if nothing answers (connect and read time
/// out after 5 s) or the answer is not HTTP.
pub fn http_request(
    addr: impl std::net::ToSocketAddrs,
    path: &str,
    authorization: Option<&str>,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(5);
    let mut s = addr
        .to_socket_addrs()
        .ok()?
        .find_map(|a| std::net::TcpStream::connect_timeout(&a, timeout).ok())?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let auth = authorization
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

/// The samples of one metric family in Prometheus text (every label set).
pub fn scraped_samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(move |l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

/// Sum of a metric family's samples in Prometheus text (all label sets).
pub fn scraped(text: &str, name: &str) -> f64 {
    scraped_samples(text, name).sum()
}

/// Input messages accounted for in Prometheus text: folded, dropped or
/// dead-lettered.
pub fn handled_scraped(text: &str) -> u64 {
    (scraped(text, "churnwatch_events_consumed_total")
        + scraped(text, "churnwatch_events_dropped_total")
        + scraped(text, "churnwatch_events_rejected_total")) as u64
}

/// Sum of a metric family's values (counters and gauges) over its labels.
pub fn metric(m: &churnwatch::metrics::Metrics, name: &str) -> f64 {
    m.registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| {
            f.get_metric()
                .iter()
                .map(|x| x.get_counter().get_value() + x.get_gauge().get_value())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Every input message accounted for: folded, dropped or dead-lettered.
pub fn handled(m: &churnwatch::metrics::Metrics) -> u64 {
    (metric(m, "churnwatch_events_consumed_total")
        + metric(m, "churnwatch_events_dropped_total")
        + metric(m, "churnwatch_events_rejected_total")) as u64
}
