//! The results of a run: rows (one per measured process), the figures of
//! memory, restore and latency, their verdicts, and the markdown table.

use churnwatch_testkit::Broker;

use crate::{churnwatch::SETTLE_SECS, knobs::Knobs, BrokerCpu};

#[derive(Default, Clone)]
pub struct Row {
    pub name: String,
    pub events: u64,
    pub wall: f64,
    pub first: Option<f64>,
    pub cpu: f64,
    pub rss: u64,
    pub hwm: u64,
    pub broker_cpu: Option<f64>,
    pub done: String,
}

impl Row {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.wall.max(1e-9)
    }
    pub fn cpu_per_m(&self) -> f64 {
        self.cpu / (self.events as f64 / 1e6).max(1e-9)
    }
}

#[derive(Default)]
pub struct Report {
    pub setup: Vec<String>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub ceiling: Option<Row>,
    pub churnwatch: Option<Row>,
    pub peer: Option<Row>,
    pub latency: Option<Latency>,
    pub memory: Option<Memory>,
    pub restore: Option<Restore>,
}

pub struct Latency {
    pub samples: Vec<i64>,
    /// Arrival latency (ms) of a bare consumer at the same rate: what the
    /// broker alone costs, the floor under `samples`.
    pub floor: Vec<i64>,
    pub floor_note: String,
    /// The same, with churnwatch's write load on the broker beside it.
    pub loaded: Vec<i64>,
    pub loaded_note: String,
    pub backlog: String,
    pub rate: f64,
    pub target_rate: f64,
    pub cpu_per_m: f64,
    pub what: String,
}

pub struct Memory {
    /// Settled: SETTLE_SECS after the last event was handled.
    pub rss: u64,
    /// When the last event was handled.
    pub rss_at_done: u64,
    pub idle_rss: u64,
    pub customers: u64,
    pub restored_rss: u64,
    pub restored_customers: u64,
}

pub struct Restore {
    /// Customers the stopped instance had, and the fresh one restored.
    pub customers: u64,
    pub restored: u64,
    pub records: u64,
    pub restore_secs: f64,
    pub ready_secs: f64,
    pub bare: Row,
}
/// `p50 / p99 / p999 ms` of sorted milliseconds.
pub fn percentiles(sorted: &[i64]) -> String {
    format!(
        "{} / {} / {} ms",
        pct(sorted, 0.5),
        pct(sorted, 0.99),
        pct(sorted, 0.999)
    )
}

pub fn pct(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

pub fn render(k: &Knobs, rep: &Report, b: &Broker) -> String {
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line("## churnwatch end to end (tools/loadtest)".into());
    line(String::new());
    for x in &rep.setup {
        line(format!("- {x}"));
    }
    if !k.cw_properties.is_empty() {
        let props: Vec<String> = k
            .cw_properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line(format!(
            "- churnwatch kafka.properties (CW_PROPERTIES): {}",
            props.join(", ")
        ));
    }
    line(String::new());
    line("| contender | events | wall s | events/s | CPU s | CPU s per 1M events | RSS (peak) | first event at s | broker CPU s |".into());
    line("|---|---:|---:|---:|---:|---:|---:|---:|---:|".into());
    for r in &rep.rows {
        line(format!(
            "| {} | {} | {:.1} | {:.0} | {:.1} | {:.2} | {} ({}) | {} | {} |",
            r.name,
            r.events,
            r.wall,
            r.rate(),
            r.cpu,
            r.cpu_per_m(),
            mb(r.rss),
            mb(r.hwm),
            r.first.map_or("-".into(), |f| format!("{f:.1}")),
            r.broker_cpu.map_or("-".into(), |c| format!("{c:.1}")),
        ));
    }
    line(String::new());
    line("| measure | figure | target | verdict |".into());
    line("|---|---|---|---|".into());
    if let (Some(c), Some(w)) = (&rep.ceiling, &rep.churnwatch) {
        let r = w.rate() / c.rate();
        line(format!(
            "| churnwatch / ceiling, rate | {r:.2} ({:.0} / {:.0} events/s) | >= 0.80 | {} |",
            w.rate(),
            c.rate(),
            verdict(r >= 0.8)
        ));
        line(format!(
            "| churnwatch / ceiling, CPU per event | {:.1}x ({:.2} / {:.2} CPU s per 1M) | - | - |",
            w.cpu_per_m() / c.cpu_per_m(),
            w.cpu_per_m(),
            c.cpu_per_m()
        ));
    }
    if let (Some(p), Some(w)) = (&rep.peer, &rep.churnwatch) {
        let r = w.rate() / p.rate();
        line(format!(
            "| churnwatch / peer, rate | {r:.2} ({:.0} / {:.0} events/s) | > 1 | {} |",
            w.rate(),
            p.rate(),
            verdict(r > 1.0)
        ));
        let c = p.cpu_per_m() / w.cpu_per_m();
        line(format!(
            "| peer / churnwatch, CPU per event | {c:.1}x less for churnwatch ({:.2} vs {:.2} CPU s per 1M) | >= 10x | {} |",
            w.cpu_per_m(),
            p.cpu_per_m(),
            verdict(c >= 10.0)
        ));
    }
    if let Some(l) = &rep.latency {
        let p99 = pct(&l.samples, 0.99);
        line(format!(
            "| decision latency at half load, p50 / p99 / p999 | {} (n = {}, at {:.0} events/s, target {:.0}; churnwatch {:.2} CPU s per 1M events) | p99 < 50 ms | {} |",
            percentiles(&l.samples),
            l.samples.len(),
            l.rate,
            l.target_rate,
            l.cpu_per_m,
            verdict(!l.samples.is_empty() && p99 < 50)
        ));
        line(format!(
            "| the broker path alone (bare consumer, same events, rate and fetch settings), p50 / p99 / p999 | {} (n = {}) | - | - |",
            percentiles(&l.floor),
            l.floor.len()
        ));
        line(format!(
            "| the broker path with churnwatch's writes beside it (same, plus its changelog and outreach rate from another producer), p50 / p99 / p999 | {} (n = {}) | - | - |",
            percentiles(&l.loaded),
            l.loaded.len()
        ));
    }
    if let Some(m) = &rep.memory {
        let per = m.rss as f64 / m.customers.max(1) as f64;
        let marginal = m.rss.saturating_sub(m.idle_rss) as f64 / m.customers.max(1) as f64;
        line(format!(
            "| resident bytes per customer | {per:.0} B settled ({} / {} customers, {SETTLE_SECS} s after the last event); {:.0} B at the last event ({}: prefetched input, changelog on its way); marginal {marginal:.0} B (idle instance {}); after restore {:.0} B ({} / {}) | <= 400 B (settled) | {} |",
            mb(m.rss),
            m.customers,
            m.rss_at_done as f64 / m.customers.max(1) as f64,
            mb(m.rss_at_done),
            mb(m.idle_rss),
            m.restored_rss as f64 / m.restored_customers.max(1) as f64,
            mb(m.restored_rss),
            m.restored_customers,
            verdict(per <= 400.0)
        ));
    }
    if let Some(r) = &rep.restore {
        let rate = r.records as f64 / r.restore_secs.max(1e-9);
        let bare = r.bare.rate();
        let complete = r.restored >= r.customers && r.records >= r.bare.events;
        line(format!(
            "| restore from the changelog | {} of {} customers{}; {} records in {:.1} s = {rate:.0} rec/s (ready {:.1} s after start); bare read {} in {:.1} s = {bare:.0} rec/s; ratio {:.2} | >= 0.70, all customers | {} |",
            r.restored,
            r.customers,
            if complete { "" } else { " (INCOMPLETE)" },
            r.records,
            r.restore_secs,
            r.ready_secs,
            r.bare.events,
            r.bare.wall,
            rate / bare,
            verdict(complete && rate / bare >= 0.7)
        ));
    }
    line(String::new());
    for x in &rep.notes {
        line(format!("- {x}"));
    }
    if let Some(l) = &rep.latency {
        line(format!("- latency events: {}", l.what));
        line(format!("- latency run: {}", l.backlog));
        line(format!("- {}", l.floor_note));
        line(format!("- {}", l.loaded_note));
        line(format!(
            "- latency producer: linger.ms={}, CreateTime stamped by librdkafka at send; churnwatch's consumer and the bare reader: {}",
            k.linger_ms,
            fetch_settings(k)
        ));
    }
    if let Some((rss, hwm)) = b.mem() {
        line(format!(
            "- broker (Apache Kafka, the JVM) at the end: {} resident, {} peak",
            mb(rss),
            mb(hwm)
        ));
    }
    line("- CPU = utime + stime of the contender's process (/proc/PID/stat) from start to done; RSS = VmRSS at done (VmHWM in parentheses); wall from process start to done.".into());
    s
}

/// churnwatch's consumer settings, as `k=v, ...` (`(set)` where the run
/// set them).
fn fetch_settings(k: &Knobs) -> String {
    k.consumer_settings()
        .iter()
        .map(|(key, v, set)| format!("{key}={v}{}", if *set { " (set)" } else { "" }))
        .collect::<Vec<_>>()
        .join(", ")
}
