//! The daemon as systemd runs it: the shipped unit is hardened (its exposure score, as
//! `systemd-analyze security` reports it, stays at most 2.0), and `run` speaks the notify
//! protocol: `READY=1` only once the store is open, `WATCHDOG=1` while the engine goes round,
//! `STOPPING=1` when SIGTERM starts the drain.

use crate::support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codearts_syncd::config::EngineConfig;
use support::spawn_app;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/codearts-syncd.service")
}

/// The value of `key=` in the unit (the last one, as systemd reads a single-valued key).
fn unit_value(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .last()
        .map(str::to_string)
}

#[test]
fn unit_exposure_is_at_most_2() {
    let unit = unit_path();
    let out = match std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "SKIPPED: systemd-analyze is not installed; the unit's exposure was not measured"
            );
            return;
        }
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("unrecognized option") {
        println!("SKIPPED: this systemd-analyze has no --offline (systemd 250 or later has it)");
        return;
    }
    let line = stdout
        .lines()
        .chain(stderr.lines())
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line; stdout: {stdout}\nstderr: {stderr}"));
    let score: f64 = line
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    println!("{line}");
    assert!(score <= 2.0, "the unit is too exposed: {line}");
}

#[test]
fn unit_waits_for_readiness_and_outlasts_the_drain() {
    let unit = std::fs::read_to_string(unit_path()).expect("the unit file");
    assert_eq!(unit_value(&unit, "Type").as_deref(), Some("notify"));
    assert!(unit_value(&unit, "WatchdogSec").is_some(), "a watchdog");
    let stop = unit_value(&unit, "TimeoutStopSec").expect("TimeoutStopSec");
    let stop = humantime::parse_duration(&stop)
        .or_else(|_| stop.parse::<u64>().map(Duration::from_secs))
        .expect("TimeoutStopSec is a duration");
    assert!(
        stop > EngineConfig::default().shutdown_grace,
        "TimeoutStopSec ({stop:?}) must outlast the default engine.shutdown_grace"
    );
}

/// Receives datagrams until one contains `needle`; returns every message seen (in order).
fn recv_until(sock: &UnixDatagram, needle: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {needle:?} within {within:?}; received: {seen:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg.lines().any(|l| l == needle);
                seen.push(msg);
                if done {
                    return seen;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("notify socket: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_notifies_ready_after_the_store_opens_then_watchdog_then_stopping() {
    let app = spawn_app().await;
    // A store of its own that does not exist yet, so its file shows `run` opened it.
    let db = app.dir.path().join("notify.db");
    let sock_path = app.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    let log = app.dir.path().join("run.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .arg("--config")
        .arg(app.config_path())
        .arg("run")
        .env_remove("RUST_LOG")
        .env_remove("WATCHDOG_PID")
        .env("CODEARTS_SYNCD_STORE__PATH", &db)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("binary runs");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let before = recv_until(&sock, "READY=1", Duration::from_secs(30));
    if !support::postgres() {
        assert!(db.exists(), "READY=1 came before the store was opened");
    }
    assert!(
        log_text().contains("daemon started"),
        "READY=1 came before start-up finished; log: {}",
        log_text()
    );
    assert!(
        before.last().unwrap().contains("STATUS="),
        "READY=1 carries a status line: {before:?}"
    );

    // With WATCHDOG_USEC=200ms, a ping is due every 100 ms while the engine goes round.
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_secs(2) {
        let seen = recv_until(&sock, "WATCHDOG=1", Duration::from_secs(2));
        assert!(
            !seen.iter().any(|m| m.contains("STOPPING=1")),
            "stopping before any signal: {seen:?}"
        );
        pings += 1;
    }
    assert!(pings >= 5, "only {pings} watchdog pings in 2 s");

    let ok = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -TERM failed");
    recv_until(&sock, "STOPPING=1", Duration::from_secs(10));

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the daemon") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the daemon did not exit after SIGTERM; log: {}", log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "log: {}", log_text());
}
