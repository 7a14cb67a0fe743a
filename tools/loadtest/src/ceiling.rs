//! The ceiling: a bare rdkafka consumer (this binary, re-executed as a
//! child) in a consumer group that only reads and counts the topic.

use std::time::Duration;

use crate::{
    child::{child_cmd, measure_child},
    progress,
    report::Report,
    Ctx, Res,
};

/// The ceiling over the `n` messages of `topic`.
pub fn run(cx: &Ctx<'_>, topic: &str, n: u64, rep: &mut Report) -> Res<()> {
    let Ctx { k, b, run_id, dir } = *cx;
    if k.runs("ceiling") {
        progress("ceiling: bare rdkafka consumer");
        let cmd = child_cmd(&[
            "consume",
            &b.bootstrap,
            topic,
            &format!("{run_id}-ceiling"),
            &n.to_string(),
        ])?;
        let mut ceiling = measure_child(
            "bare rdkafka consumer (ceiling)",
            cmd,
            &dir.join("ceiling.log"),
            b,
            Duration::from_secs(3600),
        )?;
        ceiling.events = n;
        progress(format!(
            "ceiling: {:.1} s, {:.0} events/s",
            ceiling.wall,
            ceiling.rate()
        ));
        rep.rows.push(ceiling.clone());
        rep.ceiling = Some(ceiling);
    }
    Ok(())
}
