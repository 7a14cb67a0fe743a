//! The demo's live view: counts read from the metrics registry, and the
//! latest outreach read back from the outreach topic by a consumer of its
//! own, printed every few seconds.

use std::{
    collections::{BTreeMap, VecDeque},
    io::{IsTerminal as _, Write as _},
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use prost::Message as _;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{Headers, Message},
    ClientConfig, Offset, TopicPartitionList,
};

use crate::{
    channel,
    metrics::Metrics,
    pb::{Channel, OutreachRequested},
    settings::KafkaSettings,
    time::{date, rfc3339, Timestamp},
};

/// Outreach lines the view shows.
const SHOWN: usize = 8;

/// How far the demo's input has got.
#[derive(Default)]
pub(super) struct InputProgress {
    sent: AtomicU64,
    /// Event time of the last event sent.
    at: AtomicI64,
    done: AtomicBool,
}

impl InputProgress {
    pub(super) fn set(&self, sent: u64, at: Timestamp) {
        self.sent.store(sent, Ordering::Relaxed);
        self.at.store(at, Ordering::Relaxed);
    }

    pub(super) fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// One outreach decision as the view shows it.
struct Line {
    customer: String,
    decided_at: Timestamp,
    playbook: String,
    channel: &'static str,
    reason: String,
}

/// The outreach read back so far.
#[derive(Default)]
pub(super) struct Recent {
    read: u64,
    /// Newest last.
    last: VecDeque<Line>,
}

impl Recent {
    fn push(&mut self, o: &OutreachRequested) {
        self.read += 1;
        let reason = o
            .reasons
            .first()
            .map(|r| format!("{}: {}", r.code, r.evidence))
            .unwrap_or_default();
        self.last.push_back(Line {
            customer: o.customer_id.clone(),
            decided_at: o.decided_at.map_or(0, |t| t.seconds),
            playbook: o.playbook().as_str_name().to_ascii_lowercase(),
            channel: channel::name(Channel::try_from(o.channel).unwrap_or(Channel::Unspecified)),
            reason,
        });
        while self.last.len() > SHOWN {
            self.last.pop_front();
        }
    }
}

/// Reads the outreach topic from the beginning, as any downstream consumer
/// would (its own group, nothing committed).
pub(super) fn spawn_reader(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    recent: Arc<Mutex<Recent>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "churnwatch-demo-view")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the outreach reader")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    std::thread::Builder::new()
        .name("churnwatch-demo-view".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
                    continue;
                };
                let payload = m.payload().unwrap_or_default();
                let json = m.headers().is_some_and(|h| {
                    h.iter()
                        .any(|x| x.key == "content-type" && x.value == Some(b"application/json"))
                });
                let decoded = if json {
                    serde_json::from_slice::<OutreachRequested>(payload).ok()
                } else {
                    OutreachRequested::decode(payload).ok()
                };
                if let (Some(o), Ok(mut r)) = (decoded, recent.lock()) {
                    r.push(&o);
                }
            }
        })
        .context("starting the outreach reader")
}

/// The live view: counts from the metrics registry, the latest outreach.
pub(super) struct View {
    kafka: String,
    http: String,
    input_topic: String,
    outreach_topic: String,
    started: Instant,
    metrics: Arc<Metrics>,
    input: Arc<InputProgress>,
    recent: Arc<Mutex<Recent>>,
    /// On a terminal each frame replaces the last; otherwise frames follow
    /// one another (logs, pipes, tests).
    redraw: bool,
    printed_last: AtomicBool,
}

impl View {
    pub(super) fn new(
        kafka: String,
        http: String,
        topics: &KafkaSettings,
        metrics: Arc<Metrics>,
        input: Arc<InputProgress>,
        recent: Arc<Mutex<Recent>>,
    ) -> View {
        View {
            kafka,
            http,
            input_topic: topics.input_topic.clone(),
            outreach_topic: topics.outreach_topic.clone(),
            started: Instant::now(),
            metrics,
            input,
            recent,
            redraw: std::io::stdout().is_terminal(),
            printed_last: AtomicBool::new(false),
        }
    }

    /// Whether the last frame was printed.
    pub(super) fn printed_last(&self) -> bool {
        self.printed_last.load(Ordering::SeqCst)
    }

    pub(super) fn print(&self, last: bool) {
        if last {
            self.printed_last.store(true, Ordering::SeqCst);
        }
        let mut text = String::new();
        if self.redraw && !last {
            text.push_str("\x1b[H\x1b[2J");
        }
        text.push_str(&self.frame(last));
        let mut out = std::io::stdout().lock();
        // A closed stdout (`demo | head`) is not a reason to stop the demo.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn frame(&self, last: bool) -> String {
        let c = Counts::read(&self.metrics);
        let secs = self.started.elapsed().as_secs();
        let mut f = String::new();
        let title = if last {
            "stopping after"
        } else {
            "running for"
        };
        f.push_str(&format!(
            "\n== churnwatch demo, {title} {}:{:02} · kafka {} · admin http://{}\n",
            secs / 60,
            secs % 60,
            self.kafka,
            self.http
        ));
        let sent = self.input.sent.load(Ordering::Relaxed);
        let at = self.input.at.load(Ordering::Relaxed);
        let state = if self.input.done.load(Ordering::Relaxed) {
            "all sent"
        } else {
            "sending"
        };
        let upto = if at > 0 {
            format!(", event time up to {}", date(at))
        } else {
            String::new()
        };
        row(
            &mut f,
            "input",
            &format!(
                "{} events produced to {} ({state}{upto})",
                thousands(sent),
                self.input_topic
            ),
        );
        let dropped: u64 = c.dropped.iter().map(|(_, n)| n).sum();
        row(
            &mut f,
            "events",
            &format!(
                "{} consumed · {} rejected{} · {} dropped ({})",
                thousands(c.consumed),
                thousands(c.rejected.iter().map(|(_, n)| n).sum()),
                breakdown(&c.rejected),
                thousands(dropped),
                listing(&c.dropped)
            ),
        );
        row(
            &mut f,
            "outreach",
            &format!(
                "{} sent{}",
                thousands(c.outreach.iter().map(|(_, n)| n).sum()),
                breakdown(&c.outreach)
            ),
        );
        row(
            &mut f,
            "suppressed",
            &format!(
                "{}{}",
                thousands(c.suppressed.iter().map(|(_, n)| n).sum()),
                breakdown(&c.suppressed)
            ),
        );
        row(
            &mut f,
            "customers",
            &format!("{}: {}", thousands(c.tracked), listing(&c.levels)),
        );
        let recent = self.recent.lock().ok();
        let read = recent.as_ref().map_or(0, |r| r.read);
        f.push_str(&format!(
            "\nlatest outreach ({} read from {}, newest first)\n",
            thousands(read),
            self.outreach_topic
        ));
        if let Some(r) = recent.as_ref().filter(|r| !r.last.is_empty()) {
            f.push_str(&format!(
                "  {:<12} {:<20}  {:<19} {:<8} {}\n",
                "customer", "decided at", "playbook", "channel", "top reason"
            ));
            for l in r.last.iter().rev() {
                f.push_str(&format!(
                    "  {:<12} {:<20}  {:<19} {:<8} {}\n",
                    l.customer,
                    rfc3339(l.decided_at),
                    l.playbook,
                    l.channel,
                    truncate(&l.reason, 90)
                ));
            }
            if !last {
                if let Some(l) = r.last.back() {
                    f.push_str(&format!(
                        "\nwhy: curl -s http://{}/customers/{}\n",
                        self.http, l.customer
                    ));
                }
            }
        } else {
            f.push_str("  (none yet)\n");
        }
        if !last {
            f.push_str("Ctrl-C stops the demo.\n");
        }
        f
    }
}

fn row(f: &mut String, label: &str, text: &str) {
    f.push_str(&format!("{label:<11}{text}\n"));
}

/// `: a 3 · b 1` for the non-zero entries, largest first.
fn breakdown(entries: &[(String, u64)]) -> String {
    let mut v: Vec<&(String, u64)> = entries.iter().filter(|(_, n)| *n > 0).collect();
    if v.is_empty() {
        return String::new();
    }
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    format!(
        ": {}",
        v.iter()
            .map(|(k, n)| format!("{k} {}", thousands(*n)))
            .collect::<Vec<_>>()
            .join(" · ")
    )
}

/// `a 3, b 0` in the given order.
fn listing(entries: &[(String, u64)]) -> String {
    entries
        .iter()
        .map(|(k, n)| format!("{k} {}", thousands(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The counts the view shows, read from the metrics registry.
#[derive(Debug, Default)]
struct Counts {
    consumed: u64,
    rejected: Vec<(String, u64)>,
    dropped: Vec<(String, u64)>,
    outreach: Vec<(String, u64)>,
    suppressed: Vec<(String, u64)>,
    tracked: u64,
    levels: Vec<(String, u64)>,
}

impl Counts {
    fn read(m: &Metrics) -> Counts {
        let families = m.registry.gather();
        // Sum of a family's samples by one label's value.
        let by = |name: &str, label: &str| -> BTreeMap<String, u64> {
            let mut out = BTreeMap::new();
            for f in families.iter().filter(|f| f.name() == name) {
                for x in f.get_metric() {
                    let key = x
                        .get_label()
                        .iter()
                        .find(|l| l.name() == label)
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default();
                    let v = x.get_counter().get_value() + x.get_gauge().get_value();
                    *out.entry(key).or_insert(0) += v.max(0.0) as u64;
                }
            }
            out
        };
        let lower = |m: BTreeMap<String, u64>| -> Vec<(String, u64)> {
            m.into_iter()
                .map(|(k, n)| (k.to_ascii_lowercase(), n))
                .collect()
        };
        let levels = by("churnwatch_customers_by_risk_level", "level");
        Counts {
            consumed: by("churnwatch_events_consumed_total", "kind")
                .values()
                .sum(),
            rejected: lower(by("churnwatch_events_rejected_total", "reason")),
            dropped: {
                let n = by("churnwatch_events_dropped_total", "reason");
                crate::metrics::DropReason::ALL
                    .iter()
                    .map(|r| {
                        let r = r.as_str();
                        (r.to_owned(), n.get(r).copied().unwrap_or(0))
                    })
                    .collect()
            },
            outreach: lower(by("churnwatch_outreach_emitted_total", "playbook")),
            suppressed: lower(by("churnwatch_outreach_suppressed_total", "reason")),
            tracked: m.customers_tracked.get().max(0) as u64,
            levels: crate::score::Level::ALL
                .iter()
                .map(|l| {
                    let s = l.as_str();
                    (s.to_owned(), levels.get(s).copied().unwrap_or(0))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_breakdowns_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        let e = vec![
            ("a".to_owned(), 1),
            ("b".to_owned(), 0),
            ("c".to_owned(), 5),
        ];
        assert_eq!(breakdown(&e), ": c 5 · a 1");
        assert_eq!(breakdown(&[("b".to_owned(), 0)]), "");
        assert_eq!(listing(&e), "a 1, b 0, c 5");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn counts_come_from_the_registry() {
        let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        m.events_consumed
            .with_label_values(&["purchase", "0"])
            .inc_by(3);
        m.events_consumed
            .with_label_values(&["session", "1"])
            .inc_by(2);
        m.outreach_emitted
            .with_label_values(&["WIN_BACK", "email", "high"])
            .inc();
        m.outreach_emitted
            .with_label_values(&["WIN_BACK", "app", "critical"])
            .inc();
        m.events_dropped.with_label_values(&["duplicate"]).inc();
        m.customers_tracked.set(4);
        m.customers_by_level.with_label_values(&["high"]).set(1);
        let c = Counts::read(&m);
        assert_eq!(c.consumed, 5);
        // Every playbook is exported at 0 from the start; the view shows
        // only those with outreach.
        let sent: Vec<_> = c.outreach.iter().filter(|(_, n)| *n > 0).cloned().collect();
        assert_eq!(sent, vec![("win_back".to_owned(), 2)]);
        assert_eq!(c.dropped[1], ("duplicate".to_owned(), 1));
        assert_eq!(c.tracked, 4);
        assert_eq!(c.levels[2], ("high".to_owned(), 1));
        assert!(c.suppressed.iter().all(|(_, n)| *n == 0));
    }
}
