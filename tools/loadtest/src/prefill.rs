//! Prefill: `churnwatch generate` writes the population (protobuf) into a
//! topic created first with PARTITIONS partitions and `retention.ms`.

use std::{
    process::{Command, Stdio},
    time::Instant,
};

use crate::{churnwatch::churnwatch_bin, progress, report::Report, topic_messages, Ctx, Res};

/// Creates and fills `<run id>-in`: (the topic, its message count).
pub fn run(cx: &Ctx<'_>, rep: &mut Report) -> Res<(String, u64)> {
    let Ctx { k, b, run_id, .. } = *cx;
    let topic = format!("{run_id}-in");
    b.create_topic(&topic, k.partitions, false); // with retention.ms (Quix reads it)
    progress(format!(
        "prefill: {} customers, {} days, at most {} events into {topic}",
        k.customers, k.span_days, k.events
    ));
    let t = Instant::now();
    let gen = Command::new(churnwatch_bin())
        .env_remove("CHURNWATCH_BIN")
        .args([
            "generate",
            "--format",
            "protobuf",
            "--bootstrap",
            &b.bootstrap,
            "--topic",
            &topic,
        ])
        .args(["--customers", &k.customers.to_string()])
        .args(["--span", &format!("{}d", k.span_days)])
        .args(["--max-events", &k.events.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("generate: {e}"))?;
    let said = String::from_utf8_lossy(&gen.stderr);
    if !gen.status.success() {
        return Err(format!("generate failed: {}: {said}", gen.status));
    }
    // generate's own count, every message acknowledged (acks=all), checked
    // against the watermarks (tansu 0.6, the former broker, reported high
    // watermarks short of the end of its log).
    let n: u64 = said
        .split_whitespace()
        .skip_while(|w| *w != "wrote")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("generate said: {said}"))?;
    let wm = topic_messages(&b.bootstrap, &topic);
    if wm != n {
        rep.notes.push(format!(
            "the broker's high watermarks of the input add up to {wm}, not the {n} messages written (and read)"
        ));
    }
    rep.setup.push(format!(
        "input: `churnwatch generate --customers {} --span {}d --max-events {} --format protobuf` \
         (seed 42, start 2026-01-01), {n} messages, prefilled in {:.1} s",
        k.customers,
        k.span_days,
        k.events,
        t.elapsed().as_secs_f64()
    ));
    progress(format!(
        "prefill: {n} messages in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    Ok((topic, n))
}
