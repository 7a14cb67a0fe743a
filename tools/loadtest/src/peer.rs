//! The peer: benches/peer/quix_peer.py (Quix Streams) over the same topic,
//! a measured child.

use std::{process::Command, time::Duration};

use churnwatch_testkit::repo_root;

use crate::{child::measure_child, progress, report::Report, Ctx, Res};

/// The peer over the `n` messages of `topic`, if its Python is there.
pub fn run(cx: &Ctx<'_>, topic: &str, n: u64, rep: &mut Report) -> Res<()> {
    let Ctx { k, b, run_id, dir } = *cx;
    if k.peer && k.runs("peer") {
        if k.python.exists() {
            progress("peer: Quix Streams");
            let proto = repo_root().join("proto");
            let script = repo_root().join("benches/peer/quix_peer.py");
            let state = dir.join("quix-state");
            let mut cmd = Command::new(&k.python);
            cmd.arg("-W").arg("ignore").arg(script);
            cmd.args(["--bootstrap", &b.bootstrap, "--topic", topic]);
            cmd.args([
                "--output",
                &format!("{run_id}-peer-out"),
                "--group",
                &format!("{run_id}-peer"),
            ]);
            cmd.args(["--expected", &n.to_string()]);
            cmd.arg("--proto-dir")
                .arg(&proto)
                .arg("--state-dir")
                .arg(&state);
            let mut peer = measure_child(
                "peer: Quix Streams (Python)",
                cmd,
                &dir.join("peer.log"),
                b,
                Duration::from_secs(6 * 3600),
            )?;
            let done: serde_json::Value = serde_json::from_str(&peer.done).unwrap_or_default();
            peer.events = done["processed"].as_u64().unwrap_or(0);
            rep.notes.push(format!(
                "peer: {} processed, {} outreach-like records; its own CPU count {} s",
                peer.events, done["outreach"], done["cpu_s"]
            ));
            progress(format!(
                "peer: {:.1} s, {:.0} events/s",
                peer.wall,
                peer.rate()
            ));
            rep.rows.push(peer.clone());
            rep.peer = Some(peer);
        } else {
            rep.notes.push(format!(
                "peer skipped: no {} (run scripts/perf.sh)",
                k.python.display()
            ));
        }
    }
    Ok(())
}
