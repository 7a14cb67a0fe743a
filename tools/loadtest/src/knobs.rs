//! The environment knobs of a run (see the crate docs for the list).

use std::path::PathBuf;

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

pub fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

pub struct Knobs {
    pub events: u64,
    pub customers: u64,
    pub partitions: i32,
    pub span_days: i64,
    pub peer: bool,
    pub python: PathBuf,
    pub latency_secs: u64,
    pub latency_customers: u64,
    pub latency_history_days: u64,
    pub latency_silent_share: f64,
    pub linger_ms: u64,
    pub fetch_wait_ms: Option<u64>,
    /// CW_PROPERTIES: librdkafka properties given to every churnwatch instance.
    pub cw_properties: Vec<(String, String)>,
    pub out: PathBuf,
    /// SKIP: phases left out (comma-separated: ceiling, churnwatch, peer, latency).
    pub skip: String,
}

impl Knobs {
    /// CW_PROPERTIES, then FETCH_WAIT_MS as `fetch.wait.max.ms`: the
    /// consumer settings a run gives churnwatch over its own defaults.
    pub fn cw_consumer_properties(&self) -> Vec<(String, String)> {
        let mut props = self.cw_properties.clone();
        if let Some(ms) = self.fetch_wait_ms {
            props.push(("fetch.wait.max.ms".to_owned(), ms.to_string()));
        }
        props
    }

    /// What churnwatch's input consumer runs with: its defaults
    /// ([`churnwatch::pipeline::CONSUMER_DEFAULTS`]) not overridden, then
    /// [`Knobs::cw_consumer_properties`]; each with whether the run set it.
    /// The bare readers of the latency phase take the same.
    pub fn consumer_settings(&self) -> Vec<(String, String, bool)> {
        let overrides = self.cw_consumer_properties();
        let mut settings: Vec<(String, String, bool)> = churnwatch::pipeline::CONSUMER_DEFAULTS
            .iter()
            .filter(|(key, _)| !overrides.iter().any(|(o, _)| o == key))
            .map(|(key, v)| ((*key).to_owned(), (*v).to_owned(), false))
            .collect();
        settings.extend(overrides.into_iter().map(|(key, v)| (key, v, true)));
        settings
    }

    pub fn runs(&self, phase: &str) -> bool {
        !self.skip.split(',').any(|s| s.trim() == phase)
    }

    pub fn from_env() -> Knobs {
        let events = env_u64("EVENTS", 1_000_000);
        let customers = env_u64("CUSTOMERS", 200_000).max(1);
        // About 0.35 preamble events per customer, then 0.27 per customer-day
        // (1M customers over 21 days give 6.04M events); the span is cut at EVENTS.
        let per_customer = events as f64 / customers as f64;
        let span = (((per_customer - 0.35) / 0.27).ceil() as i64 + 1).max(7);
        // The target directory: this binary is target/<profile>/loadtest.
        let target = std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.to_path_buf()))
            .unwrap_or_else(std::env::temp_dir);
        Knobs {
            events,
            customers,
            partitions: env_u64("PARTITIONS", 8).max(1) as i32,
            span_days: env_u64("SPAN_DAYS", span as u64) as i64,
            peer: env_u64("PEER", 1) != 0,
            python: std::env::var("PEER_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_default())
                        .join(".cache/churnwatch/peer-venv/bin/python")
                }),
            latency_secs: env_u64("LATENCY_SECS", 60),
            latency_customers: env_u64("LATENCY_CUSTOMERS", customers),
            latency_history_days: env_u64("LATENCY_HISTORY_DAYS", 30),
            latency_silent_share: env_f64("LATENCY_SILENT_SHARE").unwrap_or(0.2),
            // librdkafka's own default: the live producer stands for the
            // services upstream, which batch as their clients do.
            linger_ms: env_u64("LATENCY_LINGER_MS", 5),
            fetch_wait_ms: std::env::var("FETCH_WAIT_MS")
                .ok()
                .and_then(|v| v.parse().ok()),
            cw_properties: std::env::var("CW_PROPERTIES")
                .unwrap_or_default()
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim().to_owned(), v.trim().to_owned()))
                })
                .collect(),
            skip: std::env::var("SKIP").unwrap_or_default(),
            out: std::env::var("PERF_TABLE")
                .map(PathBuf::from)
                .unwrap_or_else(|_| target.join("perf-table.md")),
        }
    }
}
