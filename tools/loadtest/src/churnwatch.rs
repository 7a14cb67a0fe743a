//! churnwatch as a measured process: `churnwatch run --config FILE` with
//! a generated config, its admin HTTP polled; and the phase that runs it,
//! an idle instance first, then one at full speed over the prefilled topic.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use churnwatch_testkit::{
    free_port, handled_scraped, http_request, proc_cpu, proc_mem, scraped, sigterm, wait_exit,
    Broker,
};

use crate::{
    log_tail, progress,
    report::{Report, Row},
    BrokerCpu, Ctx, Res,
};

/// How long after its last event a processing instance's memory is read.
pub const SETTLE_SECS: u64 = 10;

/// The churnwatch binary under test: CW_BIN (another build, for before and
/// after comparisons), else the one cargo built beside this tool.
pub fn churnwatch_bin() -> PathBuf {
    std::env::var_os("CW_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(churnwatch_testkit::churnwatch_bin)
}

pub struct CwOptions<'a> {
    pub app: &'a str,
    pub input: &'a str,
    pub properties: Vec<(String, String)>,
}

pub struct Churnwatch {
    child: Child,
    pub http: String,
    started: Instant,
    pub log: PathBuf,
}

impl Churnwatch {
    pub fn spawn(b: &Broker, o: &CwOptions<'_>, dir: &Path, tag: &str) -> Res<Churnwatch> {
        let http = format!("127.0.0.1:{}", free_port());
        let mut props = String::new();
        for (k, v) in &o.properties {
            props.push_str(&format!("{k:?} = {v:?}\n"));
        }
        let toml = format!(
            "application_id = {app:?}\n\n[kafka]\nbootstrap_servers = {bs:?}\ninput_topic = {input:?}\n\
             outreach_topic = \"{app}-outreach\"\ndead_letter_topic = \"{app}-dlq\"\n\n\
             [kafka.properties]\n{props}\n[processing]\nguarantee = \"at_least_once\"\n\
             idle_advance = \"0s\"\n\n[http]\nlisten = {http:?}\n\n[log]\nlevel = \"info\"\n",
            app = o.app,
            bs = b.bootstrap,
            input = o.input,
        );
        let cfg = dir.join(format!("{tag}.toml"));
        std::fs::write(&cfg, toml).map_err(|e| e.to_string())?;
        let log = dir.join(format!("{tag}.log"));
        let f = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(churnwatch_bin())
            .env_remove("CHURNWATCH_BIN")
            .args(["run", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(f))
            .spawn()
            .map_err(|e| format!("starting churnwatch: {e}"))?;
        Ok(Churnwatch {
            child,
            http,
            started: Instant::now(),
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn metrics(&self) -> String {
        http_request(&self.http, "/metrics", None).map_or_else(String::new, |(_, body)| body)
    }

    fn check_alive(&mut self) -> Res<()> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Err(format!(
                "churnwatch exited ({s}); log {}:\n{}",
                self.log.display(),
                log_tail(&self.log)
            ));
        }
        Ok(())
    }

    /// Waits until every one of `partitions` is assigned and restored.
    pub fn wait_ready(&mut self, partitions: i32, timeout: Duration) -> Res<f64> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let m = self.metrics();
            if scraped(&m, "churnwatch_assigned_partitions") as i32 == partitions
                && http_request(&self.http, "/readyz", None).is_some_and(|(c, _)| c == 200)
            {
                return Ok(self.started.elapsed().as_secs_f64());
            }
            if Instant::now() > deadline {
                return Err(format!("churnwatch not ready within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls /metrics until `n` input messages are handled. Returns (seconds
    /// from start to the first event consumed, seconds from start to done).
    pub fn wait_handled(&mut self, n: u64, timeout: Duration) -> Res<(Option<f64>, f64)> {
        let deadline = Instant::now() + timeout;
        let mut first = None;
        let mut last_note = Instant::now();
        loop {
            self.check_alive()?;
            let h = handled_scraped(&self.metrics());
            let t = self.started.elapsed().as_secs_f64();
            if h > 0 && first.is_none() {
                first = Some(t);
            }
            if h >= n {
                return Ok((first, t));
            }
            if last_note.elapsed() > Duration::from_secs(10) {
                progress(format!("  churnwatch: {h} of {n} handled at {t:.0} s"));
                last_note = Instant::now();
            }
            if Instant::now() > deadline {
                return Err(format!("churnwatch handled {h} of {n} within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM; (exit status, seconds to exit).
    pub fn stop(mut self) -> (String, f64) {
        let t = Instant::now();
        sigterm(self.pid());
        let s = wait_exit(&mut self.child, Duration::from_secs(90));
        (
            s.map_or("killed after 90 s".into(), |s| s.to_string()),
            t.elapsed().as_secs_f64(),
        )
    }
}

impl Drop for Churnwatch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the instance at full speed leaves for the restore phase.
pub struct Measured {
    /// Its application id (the restore instance takes it over).
    pub app: String,
    pub customers: u64,
    /// VmRSS settled, and at the last event.
    pub rss: u64,
    pub rss_at_done: u64,
    /// An idle instance's VmRSS (0 customers).
    pub idle_rss: u64,
}

/// An idle instance (resident memory with 0 customers), then churnwatch at
/// full speed over the `n` messages of `topic`.
pub fn run(cx: &Ctx<'_>, topic: &str, n: u64, rep: &mut Report) -> Res<Measured> {
    let Ctx { k, b, run_id, dir } = *cx;
    let idle_topic = format!("{run_id}-idle-in");
    b.create_topic(&idle_topic, k.partitions, false);
    let idle_app = format!("{run_id}-idle");
    let mut idle = Churnwatch::spawn(
        b,
        &CwOptions {
            app: &idle_app,
            input: &idle_topic,
            properties: k.cw_properties.clone(),
        },
        dir,
        "idle",
    )?;
    idle.wait_ready(k.partitions, Duration::from_secs(120))?;
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = proc_mem(idle.pid()).0;
    idle.stop();
    progress(format!(
        "idle churnwatch: {:.1} MB resident",
        idle_rss as f64 / 1e6
    ));

    // 3. churnwatch at full speed.
    progress("churnwatch: at-least-once, changelog and outreach on");
    let app = format!("{run_id}-cw");
    let opts = CwOptions {
        app: &app,
        input: topic,
        properties: k.cw_properties.clone(),
    };
    let broker0 = b.cpu();
    let mut cw = Churnwatch::spawn(b, &opts, dir, "churnwatch")?;
    let (first, wall) = cw.wait_handled(n, Duration::from_secs(3 * 3600))?;
    let cpu = proc_cpu(cw.pid());
    let (rss_done, hwm_done) = proc_mem(cw.pid());
    let broker_cpu = b.cpu().zip(broker0).map(|(a, z)| a - z);
    // customers_tracked is updated at batch ends: let one pass.
    std::thread::sleep(Duration::from_millis(2500));
    let m = cw.metrics();
    let customers = scraped(&m, "churnwatch_customers_tracked") as u64;
    // Settled: the input caught up, the last batches written out, and
    // the freed memory returned (churnwatch trims once it is idle).
    std::thread::sleep(Duration::from_secs(SETTLE_SECS) - Duration::from_millis(2500));
    let (rss, hwm) = proc_mem(cw.pid());
    let row = Row {
        name: "churnwatch (at-least-once, changelog + outreach)".into(),
        events: handled_scraped(&m),
        wall,
        first,
        cpu,
        rss: rss_done,
        hwm: hwm_done.max(hwm),
        broker_cpu,
        done: String::new(),
    };
    rep.notes.push(format!(
        "churnwatch: {} consumed, {} rejected, {} dropped; {} outreach, {} suppressed; {} changelog records; \
         {} timer re-scores; {} refits ok; first event at {:.1} s",
        scraped(&m, "churnwatch_events_consumed_total"),
        scraped(&m, "churnwatch_events_rejected_total"),
        scraped(&m, "churnwatch_events_dropped_total"),
        scraped(&m, "churnwatch_outreach_emitted_total"),
        scraped(&m, "churnwatch_outreach_suppressed_total"),
        scraped(&m, "churnwatch_changelog_records_written_total"),
        scraped(&m, "churnwatch_timers_fired_total"),
        m.lines()
            .find(|l| l.starts_with("churnwatch_model_refits_total{result=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("?"),
        first.unwrap_or(0.0),
    ));
    progress(format!(
        "churnwatch: {:.1} s, {:.0} events/s, {customers} customers",
        row.wall,
        row.rate()
    ));
    let (status, stop_secs) = cw.stop();
    rep.notes.push(format!(
        "churnwatch stop (SIGTERM): {status} in {stop_secs:.1} s"
    ));
    rep.rows.push(row.clone());
    rep.churnwatch = Some(row);
    Ok(Measured {
        app,
        customers,
        rss,
        rss_at_done: rss_done,
        idle_rss,
    })
}
