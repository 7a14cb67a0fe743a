//! `churnwatch run` as ops run it: the binary, its admin HTTP, and signals.

use crate::common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use churnwatch::{codec::Format, events};
use common::{free_port, settings, unique, wait_for, Broker, Running};

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(broker: &Broker, token: &str) -> (Running, u16, String) {
    let app = unique("cw-svc");
    let mut s = settings(broker, &app, 2);
    let port = free_port();
    s.http.listen = format!("127.0.0.1:{port}");
    s.http.bearer_token = Some("env:CW_TEST_TOKEN".into());
    let t0 = 1_767_225_600;
    let evs: Vec<_> = (0..5)
        .map(|i| events::purchase(&format!("e{i}"), "alice", t0 + i * 86_400, 20.0))
        .collect();
    broker.produce(&s.kafka.input_topic, &evs, Format::Protobuf, |_| 0);
    let dir = std::env::temp_dir().join(format!("{app}.toml"));
    std::fs::write(&dir, toml::to_string(&s).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let child = churnwatch_testkit::churnwatch_command()
        .args(["run", "--config"])
        .arg(&dir)
        .env("CW_TEST_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    (Running(child), port, app)
}

#[test]
fn the_service_serves_its_admin_endpoints_and_stops_cleanly_on_sigterm() {
    let broker = Broker::start();
    let (mut svc, port, _) = start(&broker, "s3cret");
    let healthy = wait_for(Duration::from_secs(30), || {
        common::http_get(port, "/healthz", None).filter(|r| r.0 == 200)
    });
    assert!(
        healthy.is_some(),
        "/healthz answers while the service starts"
    );
    let ready = wait_for(Duration::from_secs(60), || {
        common::http_get(port, "/readyz", None).filter(|r| r.0 == 200)
    });
    assert!(
        ready.is_some(),
        "/readyz turns 200 once partitions are restored: {:?}",
        common::http_get(port, "/readyz", None)
    );
    let alice = wait_for(Duration::from_secs(30), || {
        common::http_get(port, "/customers/alice", Some("s3cret"))
            .filter(|r| r.0 == 200 && r.1.contains("\"purchases\":5"))
    });
    assert!(
        alice.is_some(),
        "{:?}",
        common::http_get(port, "/customers/alice", Some("s3cret"))
    );
    assert_eq!(
        common::http_get(port, "/customers/alice", None).map(|r| r.0),
        Some(401),
        "no token, no customer data"
    );
    let nobody = common::http_get(port, "/customers/nobody", Some("s3cret")).unwrap_or_default();
    assert_eq!(nobody.0, 404);
    assert!(
        nobody.1.contains("not owned by this instance"),
        "{}",
        nobody.1
    );
    let metrics = common::http_get(port, "/metrics", None).unwrap_or_default();
    assert!(
        metrics
            .1
            .contains("churnwatch_events_consumed_total{kind=\"purchase\",partition=\"0\"} 5"),
        "{}",
        metrics.1
    );
    assert!(metrics.1.contains("churnwatch_http_unauthorized_total 1"));

    signal(&svc.0, "-TERM");
    let status = wait_exit(&mut svc.0, Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGTERM: drain, commit, exit 0 within shutdown.timeout"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let Some(mut broker) = Broker::own() else {
        eprintln!("skipped: KAFKA_BOOTSTRAP names a broker this test cannot stop");
        return;
    };
    let (mut svc, port, _) = start(&broker, "t");
    let ready = wait_for(Duration::from_secs(60), || {
        common::http_get(port, "/readyz", None).filter(|r| r.0 == 200)
    });
    assert!(ready.is_some());
    // With the broker gone, a graceful stop cannot finish quickly...
    broker.stop();
    signal(&svc.0, "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    // ...a second signal ends it now.
    signal(&svc.0, "-TERM");
    let status = wait_exit(&mut svc.0, Duration::from_secs(3));
    assert!(
        status.is_some(),
        "still running 3 s after the second signal"
    );
    let code = status.and_then(|s| s.code());
    assert!(code == Some(130) || code == Some(0), "{code:?}");
}

/// `churnwatch run` on `s` with stderr captured in a file next to its config.
fn spawn_logged(s: &churnwatch::settings::Settings, name: &str) -> (Running, std::path::PathBuf) {
    let dir = std::env::temp_dir();
    let config = dir.join(format!("{name}.toml"));
    let log = dir.join(format!("{name}.log"));
    std::fs::write(&config, toml::to_string(s).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let child = churnwatch_testkit::churnwatch_command()
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error,rdkafka::client=off")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}")),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    (Running(child), log)
}

/// Under the consumer group protocol (KIP-848) a member given no partition
/// is never called back; it must still say "standby" (200) when the group
/// has more members than the input has partitions, as under classic.
#[test]
fn a_standby_is_ready_under_the_consumer_group_protocol() {
    use churnwatch::settings::GroupProtocol;
    let broker = Broker::start();
    let app = unique("cw-standby");
    let mut s = settings(&broker, &app, 1);
    s.kafka.group_protocol = GroupProtocol::Consumer;
    let ports = [free_port(), free_port()];
    let mut running = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let mut si = s.clone();
        si.http.listen = format!("127.0.0.1:{port}");
        running.push(spawn_logged(&si, &format!("{app}-{i}")));
        // The first owns the partition before the second joins.
        if i == 0 {
            let owner = wait_for(Duration::from_secs(60), || {
                common::http_get(*port, "/readyz", None).filter(|r| r.0 == 200)
            });
            assert!(owner.is_some(), "the first instance owns the partition");
        }
    }
    let standby = wait_for(Duration::from_secs(30), || {
        common::http_get(ports[1], "/readyz", None).filter(|r| r.0 == 200)
    });
    let said = common::http_get(ports[1], "/readyz", None).unwrap_or_default();
    assert!(
        standby.is_some(),
        "the second member stays unready: {said:?}; its log: {}",
        std::fs::read_to_string(&running[1].1).unwrap_or_default()
    );
    assert!(
        said.1
            .contains("the group has 2 members for 1 input partitions (standby)"),
        "{said:?}"
    );
    let first = common::http_get(ports[0], "/readyz", None).unwrap_or_default();
    assert!(first.1.contains("owns partitions [0]"), "{first:?}");
}

/// Under the consumer protocol a static member killed and restarted before
/// its session expired is refused by the broker (UNRELEASED_INSTANCE_ID, a
/// fatal error): the service must exit 2 saying so, not sit unready.
#[test]
fn a_static_member_restarted_too_soon_under_the_consumer_protocol_exits_2_saying_why() {
    use churnwatch::settings::GroupProtocol;
    let broker = Broker::start();
    let app = unique("cw-static");
    let mut s = settings(&broker, &app, 2);
    s.kafka.group_protocol = GroupProtocol::Consumer;
    s.kafka.group_instance_id = Some("pod-a".into());
    let port = free_port();
    s.http.listen = format!("127.0.0.1:{port}");
    let (mut first, _) = spawn_logged(&s, &format!("{app}-first"));
    let ready = wait_for(Duration::from_secs(60), || {
        common::http_get(port, "/readyz", None).filter(|r| r.0 == 200)
    });
    assert!(ready.is_some(), "the first instance gets ready");
    let _ = first.0.kill();
    let _ = first.0.wait();
    // Well within the broker's default session timeout (45 s).
    let (mut second, log) = spawn_logged(&s, &format!("{app}-second"));
    let status = wait_exit(&mut second.0, Duration::from_secs(30));
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{said}");
    for words in [
        "still holds kafka.group_instance_id `pod-a`",
        "group.consumer.session.timeout.ms",
    ] {
        assert!(said.contains(words), "{words:?} not in: {said}");
    }
}
