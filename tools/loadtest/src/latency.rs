//! Latency: a fresh topic and instance, a history prefilled and processed,
//! then live events of the same customers stamped with their send time, at
//! half of churnwatch's measured rate (or LATENCY_RATE); the outreach
//! records' Kafka timestamps minus their trigger's. Then the broker path
//! alone, and with churnwatch's write load beside it.

use std::{
    path::Path,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use churnwatch::{
    codec::{self, Format},
    generate::{GenConfig, Generator},
    time::Span,
};
use churnwatch_testkit::{handled_scraped, http_request, proc_cpu, scraped};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{Headers, Message},
    producer::{BaseProducer, Producer},
    ClientConfig, Offset, TopicPartitionList,
};

use crate::{
    churnwatch::{Churnwatch, CwOptions},
    knobs::env_f64,
    progress,
    report::{Latency, Report, Row},
    unix_ms, watermarks, BrokerCpu, Ctx, Res,
};

/// The latency phase, at half of the full-speed instance's rate (or
/// LATENCY_RATE).
pub fn run(cx: &Ctx<'_>, rep: &mut Report) -> Res<()> {
    let k = cx.k;
    if k.latency_secs > 0 && k.runs("latency") {
        let max_rate = rep.churnwatch.as_ref().map_or(0.0, Row::rate);
        let rate = env_f64("LATENCY_RATE").unwrap_or(max_rate / 2.0).max(1.0);
        rep.latency = Some(latency(cx, rate)?);
    }
    Ok(())
}

/// A history for `latency_customers` customers, processed first, then live
/// events at `rate` for `latency_secs`; event times end at now.
fn latency(cx: &Ctx<'_>, rate: f64) -> Res<Latency> {
    let Ctx { k, b, run_id, dir } = *cx;
    let live = (rate * k.latency_secs as f64) as u64;
    let customers = k.latency_customers.max(1);
    // History: `LATENCY_HISTORY_DAYS` of the population, ending now,
    // processed first. Live: the same customers' further activity (the
    // generator again, with other seeds), each event stamped with the time
    // it is sent: event time runs at wall time, as in production, so the
    // silence timers and daily refits run at their production pace (the
    // generator's own next days, compressed into the window, made a day of
    // event time pass every 0.7 s: every timer and a refit per day fired
    // inside one minute).
    let span_days = k.latency_history_days.max(1) as i64;
    let now = unix_ms() / 1000;
    let gen = |seed: u64| {
        Generator::new(GenConfig {
            customers,
            seed,
            start: now - Span::days(span_days).as_secs(),
            span: Span::days(span_days),
            silent_share: k.latency_silent_share,
            ..GenConfig::default()
        })
    };
    let base_seed = GenConfig::default().seed;
    let history = gen(base_seed).count() as u64;
    let live_events = || {
        (1u64..)
            .flat_map(move |round| {
                gen(base_seed + round).map(move |mut ev| {
                    ev.event_id = format!("live{round}-{}", ev.event_id);
                    ev
                })
            })
            .take(live as usize)
    };
    let stamped = |ev: &churnwatch::pb::InteractionEvent| {
        let mut ev = ev.clone();
        if let Some(t) = ev.occurred_at.as_mut() {
            t.seconds = unix_ms() / 1000;
            t.nanos = 0;
        }
        ev
    };
    let total = history + live;
    let what = format!(
        "`generate` population of {customers} customers (silent share {}) over the {span_days} days before now: \
         {history} history events produced and processed first, then {live} further events of the same customers \
         live at {rate:.0} events/s, each stamped with the time it was sent (event time = wall time)",
        k.latency_silent_share,
    );
    progress(format!("latency: {what}"));

    let topic = format!("{run_id}-live-in");
    b.create_topic(&topic, k.partitions, false);
    let app = format!("{run_id}-live");
    let props = k.cw_consumer_properties();
    let mut cw = Churnwatch::spawn(
        b,
        &CwOptions {
            app: &app,
            input: &topic,
            properties: props.clone(),
        },
        dir,
        "latency",
    )?;
    cw.wait_ready(k.partitions, Duration::from_secs(120))?;

    let producer = |linger: u64| -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &b.bootstrap)
            .set("linger.ms", linger.to_string())
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .unwrap_or_else(|e| panic!("producer: {e}"))
    };
    let send_to = |p: &BaseProducer, topic: &str, ev: &churnwatch::pb::InteractionEvent| {
        let bytes = codec::encode(ev, Format::Protobuf);
        send_record(p, topic, ev.customer_id.as_bytes(), &bytes);
    };
    let send = |p: &BaseProducer, ev: &churnwatch::pb::InteractionEvent| send_to(p, &topic, ev);
    let p = producer(20);
    for ev in gen(base_seed) {
        send(&p, &ev);
    }
    p.flush(Duration::from_secs(300))
        .map_err(|e| e.to_string())?;
    cw.wait_handled(history, Duration::from_secs(3600))?;
    let settled = settle(&cw);
    progress(format!(
        "latency: history processed, settled after {settled:.1} s; live now"
    ));

    let p = producer(k.linger_ms);
    let log_mark = std::fs::metadata(&cw.log).map_or(0, |m| m.len());
    let live_start = unix_ms();
    let writes = |m: &str| {
        scraped(m, "churnwatch_changelog_records_written_total")
            + scraped(m, "churnwatch_outreach_emitted_total")
    };
    let writes0 = writes(&cw.metrics());
    let cpu0 = proc_cpu(cw.pid());
    let broker0 = b.cpu();
    let own0 = proc_cpu(std::process::id());
    let t0 = Instant::now();
    // Backlog (messages sent but not yet handled by churnwatch), sampled
    // every 250 ms while the live events are sent.
    let sent = AtomicU64::new(0);
    let sending = AtomicBool::new(true);
    let http = cw.http.clone();
    let max_backlog = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut max = 0u64;
            while sending.load(Ordering::Relaxed) {
                let s = sent.load(Ordering::Relaxed);
                if let Some((_, m)) = http_request(&http, "/metrics", None) {
                    max = max.max(s.saturating_sub(handled_scraped(&m).saturating_sub(history)));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            max
        });
        paced(live_events(), rate, |i, ev| {
            send(&p, &stamped(ev));
            sent.store(i as u64 + 1, Ordering::Relaxed);
        });
        sending.store(false, Ordering::Relaxed);
        sampler.join().unwrap_or(0)
    });
    p.flush(Duration::from_secs(300))
        .map_err(|e| e.to_string())?;
    let sent_secs = t0.elapsed().as_secs_f64();
    let write_rate = (writes(&cw.metrics()) - writes0) / sent_secs;
    let own = proc_cpu(std::process::id()) - own0;
    let broker = b.cpu().zip(broker0).map(|(a, z)| a - z);
    let backlog_end = live.saturating_sub(handled_scraped(&cw.metrics()).saturating_sub(history));
    let drain = Instant::now();
    cw.wait_handled(total, Duration::from_secs(600))?;
    let drain_secs = drain.elapsed().as_secs_f64();
    let cpu = proc_cpu(cw.pid()) - cpu0;
    let (refits, refit_ms) = refits_logged(&cw.log, log_mark);
    std::thread::sleep(Duration::from_millis(1500));
    let emitted = scraped(&cw.metrics(), "churnwatch_outreach_emitted_total") as usize;
    cw.stop();

    let samples = outreach_latencies(
        &b.bootstrap,
        &format!("{app}-outreach"),
        emitted,
        live_start,
    );
    progress(format!(
        "latency: {} samples of {emitted} outreach",
        samples.len()
    ));

    // The broker path alone: the same live events at the same rate into a
    // fresh topic, read by a bare consumer with churnwatch's fetch settings;
    // then again with churnwatch's own writes (its changelog and outreach
    // records, at the rate it wrote them) going to the broker beside it.
    // churnwatch's own consumer settings, under the run's overrides.
    let fetch: Vec<(String, String)> = k
        .consumer_settings()
        .into_iter()
        .map(|(key, v, _)| (key, v))
        .collect();
    let floor_run = |tag: &str, load: f64| -> (Vec<i64>, f64, Option<f64>) {
        progress(format!("latency: the broker path, {tag}"));
        let topic = format!("{run_id}-floor-{tag}");
        b.create_topic(&topic, k.partitions, false);
        let load_topic = format!("{run_id}-floor-{tag}-load");
        if load > 0.0 {
            b.create_topic(&load_topic, k.partitions, false);
        }
        let reader = reader_from_start(&b.bootstrap, &topic, Some(k.partitions), &fetch);
        // Let the reader connect and start fetching before the first send.
        let warm = Instant::now() + Duration::from_secs(2);
        while Instant::now() < warm {
            let _ = reader.poll(Duration::from_millis(100));
        }
        let p = producer(k.linger_ms);
        let cpu0 = b.cpu();
        let f0 = Instant::now();
        let sending = AtomicBool::new(true);
        let mut got = std::thread::scope(|scope| {
            let read = scope.spawn(|| {
                let mut out = Vec::with_capacity(live as usize);
                let mut stop_at = None;
                while (out.len() as u64) < live {
                    if stop_at.is_none() && !sending.load(Ordering::Relaxed) {
                        stop_at = Some(Instant::now() + Duration::from_secs(30));
                    }
                    if stop_at.is_some_and(|t| Instant::now() > t) {
                        break;
                    }
                    if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
                        if let Some(ts) = m.timestamp().to_millis() {
                            out.push(unix_ms() - ts);
                        }
                    }
                }
                out
            });
            if load > 0.0 {
                // Records the size of a state snapshot, keyed by customer.
                scope.spawn(|| {
                    let lp = producer(5);
                    let value = [7u8; 170];
                    let until_done = (0u64..).take_while(|_| sending.load(Ordering::Relaxed));
                    paced(until_done, load, |_, i| {
                        let key = format!("c{}", i % customers);
                        send_record(&lp, &load_topic, key.as_bytes(), &value);
                    });
                    let _ = lp.flush(Duration::from_secs(60));
                });
            }
            paced(live_events(), rate, |_, ev| {
                send_to(&p, &topic, &stamped(ev))
            });
            let _ = p.flush(Duration::from_secs(300));
            sending.store(false, Ordering::Relaxed);
            read.join().unwrap_or_default()
        });
        got.sort_unstable();
        let secs = f0.elapsed().as_secs_f64();
        let broker = b.cpu().zip(cpu0).map(|(a, z)| a - z);
        progress(format!(
            "latency: broker path ({tag}), {} of {live} messages read",
            got.len()
        ));
        (got, secs, broker)
    };
    let (floor, floor_secs, floor_broker) = floor_run("alone", 0.0);
    let (loaded, loaded_secs, loaded_broker) = floor_run("loaded", write_rate);
    let floor_n = floor.len();
    let loaded_n = loaded.len();
    Ok(Latency {
        samples,
        floor,
        loaded,
        loaded_note: format!(
            "broker path with churnwatch's writes: as above, while another producer writes {write_rate:.0} records/s of 170 bytes \
             (churnwatch's changelog and outreach records per second in its live window) to a topic of its own; {loaded_n} read, \
             the broker used {} CPU s in {loaded_secs:.1} s",
            loaded_broker.map_or("?".into(), |c| format!("{c:.1}"))
        ),
        floor_note: format!(
            "broker path alone: the same {live} live events at the same rate into a fresh topic, read by a bare consumer \
             with churnwatch's fetch settings; latency = receipt time minus CreateTime; {floor_n} read, the broker used {} CPU s in {floor_secs:.1} s",
            floor_broker.map_or("?".into(), |c| format!("{c:.1}"))
        ),
        backlog: format!(
            "live from {settled:.1} s after the history was handled (its changelog written, its refits done: \
             those counters unchanged for {} s); backlog (sent, not yet handled) at most {max_backlog} messages ({:.2} s of input) during the live window, \
             {backlog_end} when the last was sent, drained {drain_secs:.1} s later; over the {sent_secs:.1} s of sending \
             the broker used {} CPU s and the harness (producer, generator) {own:.1} CPU s; {refits} refits of the model \
             (one per day of event time), gathered in steps and fitted beside \
             the loop, {refit_ms} ms from start to use in all",
            SETTLED_FOR.as_secs(),
            max_backlog as f64 / rate,
            broker.map_or("?".into(), |c| format!("{c:.1}"))
        ),
        rate: (total - history) as f64 / sent_secs,
        target_rate: rate,
        cpu_per_m: cpu / ((total - history) as f64 / 1e6),
        what,
    })
}

/// How long the changelog-records and refit counters of `cw`'s metrics
/// take to stay unchanged for [`SETTLED_FOR`] (at most 180 s), in seconds:
/// live events then meet a service that has finished the history's work
/// (its last batches written out, the refits the history's days queued
/// fitted), as a running service is between bursts, not one still
/// catching up after a restart.
fn settle(cw: &Churnwatch) -> f64 {
    let t0 = Instant::now();
    let mark = |m: &str| {
        (
            scraped(m, "churnwatch_changelog_records_written_total"),
            scraped(m, "churnwatch_model_refits_total"),
        )
    };
    let (mut last, mut since) = (mark(&cw.metrics()), Instant::now());
    while since.elapsed() < SETTLED_FOR && t0.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_millis(250));
        let now = mark(&cw.metrics());
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    t0.elapsed().as_secs_f64()
}

/// See [`settle`]: longer than a refit of a million customers (3-4 s).
const SETTLED_FOR: Duration = Duration::from_secs(5);

/// Kafka timestamp minus `churnwatch.trigger.timestamp`, in ms, for every
/// outreach record triggered by an input message produced at or after
/// `since_ms`. Reads until `want` records are seen or 60 s pass.
fn outreach_latencies(bootstrap: &str, topic: &str, want: usize, since_ms: i64) -> Vec<i64> {
    let c = reader_from_start(bootstrap, topic, None, &[]);
    let (mut seen, mut timeline) = (0usize, vec![]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < want && Instant::now() < deadline {
        let Some(Ok(m)) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        seen += 1;
        let trigger = m.headers().and_then(|h| {
            h.iter()
                .find(|x| x.key == "churnwatch.trigger.timestamp")
                .and_then(|x| std::str::from_utf8(x.value?).ok()?.parse::<i64>().ok())
        });
        if let (Some(tr), Some(ts)) = (trigger, m.timestamp().to_millis()) {
            if tr >= since_ms {
                timeline.push((tr - since_ms, ts - tr));
            }
        }
    }
    if let Some(path) = std::env::var_os("LATENCY_SAMPLES") {
        // The samples in trigger order, for a plot: when in the live window
        // (ms from its start) and how long.
        timeline.sort_unstable();
        let csv: String = std::iter::once("since_start_ms,latency_ms\n".to_owned())
            .chain(timeline.iter().map(|(at, l)| format!("{at},{l}\n")))
            .collect();
        if let Err(e) = std::fs::write(&path, csv) {
            progress(format!("latency: could not write LATENCY_SAMPLES: {e}"));
        }
    }
    let mut out: Vec<i64> = timeline.into_iter().map(|(_, l)| l).collect();
    out.sort_unstable();
    out
}

/// A consumer (no group membership, no commits) assigned every partition
/// of `topic` from the beginning, with `props` on top of the defaults.
/// `partitions`: how many, or None to ask the broker.
fn reader_from_start(
    bootstrap: &str,
    topic: &str,
    partitions: Option<i32>,
    props: &[(String, String)],
) -> BaseConsumer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false");
    for (key, v) in props {
        cfg.set(key, v);
    }
    let c: BaseConsumer = cfg
        .create()
        .unwrap_or_else(|e| panic!("reader of {topic}: {e}"));
    let parts = partitions.unwrap_or_else(|| watermarks(&c, topic).len() as i32);
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts {
        let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
    }
    c.assign(&tpl)
        .unwrap_or_else(|e| panic!("assigning {topic}: {e}"));
    c
}

/// Refits the service logged after byte `from` of its log, and the time
/// they took (their `elapsed_ms`), summed.
fn refits_logged(log: &Path, from: u64) -> (usize, u64) {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let refits: Vec<u64> = tail
        .lines()
        .filter(|l| l.contains("population model refitted"))
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("elapsed_ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    (refits.len(), refits.iter().sum())
}

/// Hands `items` to `send` at `rate` per second from now (sleeping when
/// ahead, catching up without sleep when behind).
fn paced<T>(items: impl Iterator<Item = T>, rate: f64, mut send: impl FnMut(usize, &T)) {
    let t0 = Instant::now();
    for (i, item) in items.enumerate() {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now + Duration::from_millis(1) {
            std::thread::sleep(due - now);
        }
        send(i, &item);
    }
}

/// Sends one record, waiting while the producer's queue is full.
fn send_record(p: &BaseProducer, topic: &str, key: &[u8], value: &[u8]) {
    let mut r = rdkafka::producer::BaseRecord::<[u8], [u8]>::to(topic)
        .key(key)
        .payload(value);
    while let Err((_, back)) = p.send(r) {
        r = back;
        p.poll(Duration::from_millis(5));
    }
    p.poll(Duration::ZERO);
}
