//! The admin HTTP server under slow and idle clients (issue 20, finding 5):
//! 300 slow connections stayed open past 40 s, a partial request line past
//! 75 s, and with 256 file descriptors 352 idle connections made `/healthz`
//! time out, so a liveness probe would have killed a healthy pod.
//!
//! Its own test binary: it sets this process's file-descriptor limit.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use churnwatch::{
    http::{router, serve, AdminConfig, AdminSource, ConnLimits, CustomerView},
    metrics::Metrics,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

struct Ready;

impl AdminSource for Ready {
    fn readiness(&self) -> Result<String, String> {
        Ok("ready: owns partitions [0]".to_owned())
    }
    fn customer(&self, _: &str) -> Option<CustomerView> {
        None
    }
}

/// Starts the admin server with `limits` on a free loopback port.
async fn start(limits: ConnLimits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let app = router(metrics, Arc::new(Ready), AdminConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, limits, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// `GET /healthz` on a new connection: the status line and how long the
/// whole answer took (connect included).
async fn healthz(addr: std::net::SocketAddr) -> (String, Duration) {
    let t = Instant::now();
    let answer = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = match tokio::time::timeout(Duration::from_secs(5), answer).await {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "no answer in 5 s".to_owned(),
    };
    (text.lines().next().unwrap_or("").to_owned(), t.elapsed())
}

/// This process's soft file-descriptor limit, set to `n` (within the hard one).
fn set_nofile(n: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = n.min(lim.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_within_100_ms_while_1000_slow_or_idle_connections_are_open() {
    // Room for the 1,000 clients' ends and the server's cap of 256, and
    // some for the runtime, but not for the server to take all 1,000.
    let limits = ConnLimits::default();
    let nofile = set_nofile(1000 + limits.max_connections as u64 + 150);
    assert!(nofile >= 1300, "RLIMIT_NOFILE {nofile}");
    let (addr, _stop) = start(limits).await;
    let mut held = Vec::new();
    for i in 0..1000 {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            panic!("connection {i} refused");
        };
        match i % 3 {
            0 => {} // idle: connected, says nothing
            1 => {
                // slow: a request line, cut short
                let _ = s.write_all(b"GET /hea").await;
            }
            _ => {
                // slow: headers a piece at a time, never finished
                let _ = s
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
                    .await;
            }
        }
        held.push(s);
    }
    // Let the server accept (and close the oldest of) all of them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let (status, took) = healthz(addr).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "took {took:?}");
        assert!(took < Duration::from_millis(100), "/healthz took {took:?}");
        // Another wave keeps the slow ones coming while probes run.
        for s in held.iter_mut().take(50) {
            let _ = s.write_all(b"a").await;
        }
    }
    drop(held);
}

/// Whether the server closed `s` within `within` (EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let t = Instant::now();
    while t.elapsed() < within {
        match tokio::time::timeout(within.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_their_timeouts() {
    let (addr, _stop) = start(ConnLimits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(60),
        max_connections: 256,
    })
    .await;
    // A partial request line, then a byte a while: closed by the header
    // timeout, however the bytes trickle in.
    let mut slow = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = slow.write_all(b"GET /hea").await;
    let t = Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = slow.write_all(b"l").await;
    }
    assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
    assert!(t.elapsed() < Duration::from_secs(3));
    // Kept alive after an answer, then silent: closed by the same timeout.
    let mut kept = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = kept
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 256];
    let n = kept.read(&mut buf).await.unwrap_or(0);
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut kept, Duration::from_secs(3)).await);

    // The idle timeout: a connection nothing moves on.
    let (addr, _stop2) = start(ConnLimits {
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(1),
        max_connections: 256,
    })
    .await;
    let mut idle = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);

    // The cap: beyond it, the oldest connection is closed.
    let (addr, _stop3) = start(ConnLimits {
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        max_connections: 2,
    })
    .await;
    let mut first = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _second = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _) = healthz(addr).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(closed_within(&mut first, Duration::from_secs(2)).await);
}
