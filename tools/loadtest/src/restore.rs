//! Restore: a fresh instance with the stopped one's application id
//! restores every partition from `<application_id>-changelog`; next to a
//! bare consumer (a child) reading that whole changelog.

use std::time::Duration;

use churnwatch_testkit::{proc_mem, scraped, scraped_samples};

use crate::{
    child::{child_cmd, measure_child},
    churnwatch::{Churnwatch, CwOptions, Measured},
    progress,
    report::{Memory, Report, Restore},
    Ctx, Res,
};

/// The restore phase, after [`crate::churnwatch::run`] measured `m` over `topic`.
pub fn run(cx: &Ctx<'_>, topic: &str, m0: Measured, rep: &mut Report) -> Res<()> {
    let Ctx { k, b, dir, .. } = *cx;
    let Measured {
        app,
        customers,
        rss,
        rss_at_done: rss_done,
        idle_rss,
    } = m0;
    let opts = CwOptions {
        app: &app,
        input: topic,
        properties: k.cw_properties.clone(),
    };
    progress("restore: fresh instance, same application id");
    let mut re = Churnwatch::spawn(b, &opts, dir, "restore")?;
    let ready_secs = re.wait_ready(k.partitions, Duration::from_secs(1800))?;
    std::thread::sleep(Duration::from_millis(1500));
    let m = re.metrics();
    let restored_rss = proc_mem(re.pid()).0;
    let restored_customers = scraped(&m, "churnwatch_customers_tracked") as u64;
    let records = scraped(&m, "churnwatch_changelog_restore_records_total") as u64;
    // Partitions are restored together: the restore took as long as the
    // slowest one (each partition's figure runs from the common start).
    let restore_secs =
        scraped_samples(&m, "churnwatch_changelog_restore_seconds_sum").fold(0.0, f64::max);
    let (status, _) = re.stop();
    rep.notes
        .push(format!("restore instance stop (SIGTERM): {status}"));
    let changelog = format!("{app}-changelog");
    let cmd = child_cmd(&["read", &b.bootstrap, &changelog])?;
    let mut bare = measure_child(
        "bare read of the changelog",
        cmd,
        &dir.join("bare-changelog.log"),
        b,
        Duration::from_secs(1800),
    )?;
    bare.events = bare.done.parse().unwrap_or(0);
    progress(format!(
        "restore: {records} records in {restore_secs:.1} s (ready at {ready_secs:.1} s); bare read {} in {:.1} s",
        bare.events, bare.wall
    ));
    rep.memory = Some(Memory {
        rss,
        rss_at_done: rss_done,
        idle_rss,
        customers,
        restored_rss,
        restored_customers,
    });
    rep.restore = Some(Restore {
        customers,
        restored: restored_customers,
        records,
        restore_secs,
        ready_secs,
        bare,
    });
    Ok(())
}
