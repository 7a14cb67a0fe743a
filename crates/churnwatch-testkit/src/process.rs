//! Processes from outside: CPU seconds and memory from /proc, signals, and
//! waiting for a child's exit.

use std::{
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

/// Clock ticks per second (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> f64 {
    use std::sync::OnceLock;
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds of a live process (utime + stime from
/// /proc/PID/stat; 0 for one that is gone).
pub fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// (VmRSS, VmHWM) of a live process, in bytes (from /proc/PID/status).
pub fn proc_mem(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// Sends `sig` (`-TERM`, `-KILL`, `-STOP`, ...) to a process, with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// SIGTERM to a process.
pub fn sigterm(pid: u32) {
    signal(pid, "-TERM");
}

/// Waits for a child to exit, up to `timeout`; kills it after that (None).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Spawns `c` from a thread that lives as long as the test process, with
/// the parent-death signal set: when the test binary exits (or is killed),
/// the child is killed too, even a shared broker nothing drops. (The signal
/// follows the spawning thread, hence the one long-lived thread.) Every
/// broker, cluster node and service the kit starts goes through it.
pub fn spawn_owned(mut c: Command) -> Child {
    let program = c.get_program().to_owned();
    use std::os::unix::process::CommandExt;
    use std::sync::{mpsc, Mutex, OnceLock};
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for (mut c, back) in rx {
                let _ = back.send(c.spawn());
            }
            // The senders live in a static: never reached, so this thread
            // (the parent the death signal watches) lives until exit.
            loop {
                std::thread::park();
            }
        });
        Mutex::new(tx)
    });
    let (back, got) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((c, back))
        .unwrap_or_else(|e| panic!("the spawner is gone: {e}"));
    got.recv()
        .unwrap_or_else(|e| panic!("the spawner is gone: {e}"))
        .unwrap_or_else(|e| panic!("spawning {:?}: {e}", program))
}
