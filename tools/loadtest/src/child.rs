//! Measured children (ceiling, bare changelog reader, peer): they print
//! `first ...` and `done ...` on stdout, then wait for stdin to close. The
//! bare consumers are this binary, re-executed with [`CHILD`] first.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use churnwatch_testkit::{proc_cpu, proc_mem, wait_exit, Broker};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    ClientConfig, Offset, TopicPartitionList,
};

use crate::{log_tail, report::Row, unix_ms, watermarks, BrokerCpu, Res};

/// The first argument of a re-executed child.
pub const CHILD: &str = "__pipeline_child";

pub fn measure_child(
    name: &str,
    mut cmd: Command,
    log: &Path,
    b: &Broker,
    timeout: Duration,
) -> Res<Row> {
    let f = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let broker0 = b.cpu();
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(f))
        .spawn()
        .map_err(|e| format!("starting {name}: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send((started.elapsed().as_secs_f64(), line)).is_err() {
                break;
            }
        }
    });
    let mut row = Row {
        name: name.into(),
        ..Row::default()
    };
    let deadline = Instant::now() + timeout;
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok((t, line)) if line.starts_with("first") => row.first = Some(t),
            Ok((t, line)) if line.starts_with("done") => {
                row.wall = t;
                row.cpu = proc_cpu(child.id());
                (row.rss, row.hwm) = proc_mem(child.id());
                row.broker_cpu = b.cpu().zip(broker0).map(|(a, z)| a - z);
                row.done = line.trim_start_matches("done").trim().to_owned();
                break;
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{name} did not finish; log {}:\n{}",
                    log.display(),
                    log_tail(log)
                ));
            }
        }
    }
    drop(child.stdin.take());
    wait_exit(&mut child, Duration::from_secs(60));
    Ok(row)
}

pub fn child_cmd(args: &[&str]) -> Res<Command> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut c = Command::new(exe);
    c.arg(CHILD).args(args);
    Ok(c)
}

pub fn main(args: &[String]) {
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let count = match arg(0).as_str() {
        "consume" => consume(&arg(1), &arg(2), &arg(3), arg(4).parse().unwrap_or(0)),
        "read" => read_all(&arg(1), &arg(2)),
        other => {
            eprintln!("unknown child role {other}");
            std::process::exit(2);
        }
    };
    println!("done {count}");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

fn first_seen(seen: &mut bool) {
    if !*seen {
        *seen = true;
        println!("first {}", unix_ms());
        let _ = std::io::stdout().flush();
    }
}

/// The ceiling: a group member that reads and counts `want` messages.
fn consume(bootstrap: &str, topic: &str, group: &str, want: u64) -> u64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "range")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    c.subscribe(&[topic]).unwrap_or_else(|e| panic!("{e}"));
    let (mut n, mut seen) = (0u64, false);
    while n < want {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
            first_seen(&mut seen);
            n += 1;
        }
    }
    n
}

/// Every partition of `topic` from the beginning to its end as of now
/// (read-committed, as churnwatch's restore reads the changelog).
fn read_all(bootstrap: &str, topic: &str) -> u64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-bare-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    // To the end of each partition as the fetches see it (partition EOF),
    // not to the watermarks (a broker whose watermarks fall short of its
    // log, as tansu 0.6's did, is still read to the end).
    let parts = watermarks(&c, topic).len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
    }
    c.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
    let (mut n, mut seen) = (0u64, false);
    let mut at_end = std::collections::BTreeSet::new();
    while at_end.len() < parts {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                first_seen(&mut seen);
                n += 1;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            _ => {}
        }
    }
    n
}
