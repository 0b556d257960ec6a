//! AMQP ingress against the real RabbitMQ on 127.0.0.1:5672 (guest/guest). Each test declares
//! its own exchange and queues (unique names) and deletes them at the end.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use codearts_syncd::sim::{Fault, Route, SimConfig};
use codearts_syncd::store::{JobRow, Store};
use serde_json::json;
use support::broker::{
    acfg, all_jobs, amqp_app, cleanup, connection_pids, job_msg, publish_raw, queue_depth,
    wait_until,
};
use support::{text, TestApp};

const WAIT: Duration = Duration::from_secs(60);

fn many_repos() -> SimConfig {
    SimConfig {
        seed_repos: 1..=5000,
        sync_duration: Duration::from_millis(50),
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn thousand_messages_with_malformed_ones_are_each_recorded_once() {
    let (mut app, _) = amqp_app(many_repos(), "").await;
    let cfg = acfg(&app);
    let mut messages = Vec::new();
    let mut malformed = HashMap::new();
    for i in 0..1000u32 {
        let (body, kind) = match i % 20 {
            0 => (b"{not json".to_vec(), "not JSON"),
            1 => (vec![0xff, 0xfe, b'{', b'}'], "not UTF-8"),
            2 if i % 40 == 2 => (
                json!({"kind": "mirror_everything", "params": {}}).to_string().into_bytes(),
                "unknown kind",
            ),
            2 => (
                json!({"kind": "remote_mirror", "params": {"repository_id": "seven"}})
                    .to_string()
                    .into_bytes(),
                "bad parameter",
            ),
            3 if i % 40 == 3 => (
                json!({"kind": "remote_mirror", "params": {"repository_id": 1, "pad": "x".repeat(5000)}})
                    .to_string()
                    .into_bytes(),
                "too large",
            ),
            3 => (
                json!({"kind": "remote_mirror", "params": {"repository_id": 1, "colour": "red"}})
                    .to_string()
                    .into_bytes(),
                "unknown parameter",
            ),
            _ => (job_msg(i + 1, Some(&format!("valid-{i}"))), "valid"),
        };
        if kind != "valid" {
            malformed.insert(i, kind);
        }
        messages.push((body, Some(format!("msg-{i}"))));
    }
    assert_eq!(malformed.len(), 200);
    publish_raw(&cfg, &messages).await;
    app.start();
    let store = app.store.clone();
    wait_until(WAIT, "every message recorded and run", || {
        let store = store.clone();
        async move {
            let jobs = all_jobs(&store).await;
            jobs.len() == 1000
                && jobs
                    .iter()
                    .all(|j| j.status().is_some_and(|s| s.is_final()))
        }
    })
    .await;
    app.stop().await;

    let jobs = all_jobs(&app.store).await;
    let rejected: Vec<_> = jobs.iter().filter(|j| j.status == "rejected").collect();
    let valid: Vec<_> = jobs.iter().filter(|j| j.status != "rejected").collect();
    assert_eq!(rejected.len(), 200);
    assert_eq!(valid.len(), 800);
    assert!(valid
        .iter()
        .all(|j| j.status == "succeeded" && j.jid.is_some()));
    assert!(jobs.iter().all(|j| j.source == "amqp"));
    let keys: HashSet<_> = valid
        .iter()
        .map(|j| j.idempotency_key.clone().unwrap())
        .collect();
    assert_eq!(keys.len(), 800, "each valid message recorded exactly once");
    assert_eq!(app.sim.count(Route::MirrorStart), 800, "each executed once");
    for j in &rejected {
        let reason = j.error_msg.as_deref().unwrap();
        assert!(!reason.is_empty());
        assert_eq!(j.error_code.as_deref(), Some("REJECTED"));
    }
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|j| j.error_msg.as_deref().unwrap())
        .collect();
    for needle in [
        "not a valid job",
        "not UTF-8",
        "unknown job kind",
        "repository_id",
        "exceeds amqp.max_message_bytes",
        "unknown parameter `colour`",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no rejection says {needle:?}"
        );
    }
    assert_eq!(
        queue_depth(&cfg.dead_letter_queue).await,
        200,
        "malformed ones are dead-lettered"
    );
    assert_eq!(queue_depth(&cfg.queue).await, 0);
    cleanup(&cfg).await;
}

#[tokio::test]
async fn duplicate_keys_and_redelivered_messages_make_one_job_each() {
    let (mut app, _) = amqp_app(many_repos(), "").await;
    let cfg = acfg(&app);
    let mut messages = Vec::new();
    for i in 0..20u32 {
        // The same key three times, and a key-less message redelivered with its message id.
        for _ in 0..3 {
            messages.push((job_msg(100 + i, Some(&format!("push-{i}"))), None));
        }
        for _ in 0..2 {
            messages.push((job_msg(200 + i, None), Some(format!("mid-{i}"))));
        }
    }
    publish_raw(&cfg, &messages).await;
    app.start();
    let store = app.store.clone();
    wait_until(WAIT, "all recorded", || {
        let store = store.clone();
        async move {
            let jobs = all_jobs(&store).await;
            jobs.len() == 40 && jobs.iter().all(|j| j.status == "succeeded")
        }
    })
    .await;
    // Give any stray duplicate time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop().await;
    assert_eq!(all_jobs(&app.store).await.len(), 40);
    assert_eq!(app.sim.count(Route::MirrorStart), 40);
    assert_eq!(
        queue_depth(&cfg.queue).await,
        0,
        "duplicates are acknowledged"
    );
    assert_eq!(queue_depth(&cfg.dead_letter_queue).await, 0);
    cleanup(&cfg).await;
}

#[tokio::test]
async fn burst_of_50_mirror_requests_costs_at_most_two_syncs() {
    let (mut app, _) = amqp_app(many_repos(), "").await;
    let cfg = acfg(&app);
    // Each sync is followed for 2 s, longer than the burst takes to arrive: one sync, and at
    // most one follow-up for what arrived while it ran (never two at once).
    app.sim.set_repo(
        77,
        codearts_syncd::sim::RepoBehaviour {
            sync_duration: Some(Duration::from_secs(2)),
            ..Default::default()
        },
    );
    app.start();
    let messages: Vec<_> = (0..50)
        .map(|i| {
            let body = serde_json::json!({
                "kind": "remote_mirror",
                "params": {"repository_id": 77},
                "key": format!("burst-{i}"),
            });
            (body.to_string().into_bytes(), None)
        })
        .collect();
    publish_raw(&cfg, &messages).await;
    let store = app.store.clone();
    wait_until(WAIT, "50 requests recorded", || {
        let store = store.clone();
        async move {
            let jobs = all_jobs(&store).await;
            let mut n = 0;
            for j in &jobs {
                n += store.requests_of(j.id).await.unwrap().len();
            }
            n == 50
                && jobs
                    .iter()
                    .all(|j| j.status().is_some_and(|s| s.is_final()))
        }
    })
    .await;
    app.stop().await;
    let starts = app.sim.mirror_starts(77);
    assert!(
        (1..=2).contains(&starts),
        "{starts} syncs for a burst of 50"
    );
    let jobs = all_jobs(&app.store).await;
    assert!(jobs.len() <= 2);
    // Every request is traceable to the job that served it.
    let mut keys = HashSet::new();
    for j in &jobs {
        for (source, key, _) in app.store.requests_of(j.id).await.unwrap() {
            assert_eq!(source, "amqp");
            keys.insert(key.unwrap());
        }
    }
    assert_eq!(keys.len(), 50);
    // `jobs show` lists them: between the (at most two) jobs, all 50.
    let mut shown_total = 0;
    for j in &jobs {
        let out = app.cli(&["jobs", "show", &j.id.to_string(), "--json"]);
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        shown_total += shown["requests"].as_array().unwrap().len();
    }
    assert_eq!(shown_total, 50);
    cleanup(&cfg).await;
}

/// The broker's pid for this test's connection, from `rabbitmqctl`.
#[tokio::test]
async fn broker_dropping_the_connection_loses_nothing() {
    let (mut app, tag) = amqp_app(many_repos(), "").await;
    let cfg = acfg(&app);
    app.start();
    let name = format!("codearts-syncd-test-{tag}");
    wait_until(WAIT, "the daemon's connection", || {
        let name = name.clone();
        async move { !connection_pids(&name).is_empty() }
    })
    .await;
    let first: Vec<_> = (0..300u32)
        .map(|i| (job_msg(1000 + i, Some(&format!("drop-{i}"))), None))
        .collect();
    let second: Vec<_> = (300..600u32)
        .map(|i| (job_msg(1000 + i, Some(&format!("drop-{i}"))), None))
        .collect();
    publish_raw(&cfg, &first).await;
    for pid in connection_pids(&name) {
        let status = std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", &pid, "test drops the connection"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    publish_raw(&cfg, &second).await;
    let store = app.store.clone();
    wait_until(WAIT, "600 recorded", || {
        let store = store.clone();
        async move { all_jobs(&store).await.len() >= 600 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop().await;
    let jobs = all_jobs(&app.store).await;
    assert_eq!(jobs.len(), 600, "every message recorded exactly once");
    let keys: HashSet<_> = jobs.iter().map(|j| j.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 600);
    assert_eq!(queue_depth(&cfg.queue).await, 0);
    cleanup(&cfg).await;
}

#[tokio::test]
async fn enqueue_publishes_with_confirms_and_fails_clearly_without_a_broker() {
    let (app, _) = amqp_app(many_repos(), "").await;
    let cfg = acfg(&app);
    // Nothing bound yet: the broker returns the message, enqueue says so.
    let out = app.cli(&["enqueue", "remote_mirror", "-p", "repository_id=1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no queue is bound"), "{stderr}");

    // With the topology declared it goes through.
    publish_raw(&cfg, &[]).await;
    let out = app.cli(&[
        "enqueue",
        "remote_mirror",
        "-p",
        "repository_id=1",
        "--key",
        "k1",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(queue_depth(&cfg.queue).await, 1);

    // A stopped broker: a clear message, exit 1, nothing recorded.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .arg("--config")
        .arg(app.config_path())
        .args(["enqueue", "remote_mirror", "-p", "repository_id=1"])
        .env("CODEARTS_SYNCD_AMQP__URL", "amqp://127.0.0.1:1/%2f")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the AMQP broker at amqp://127.0.0.1:1/"),
        "{stderr}"
    );
    assert!(!stderr.contains("guest"), "credentials in: {stderr}");
    assert!(
        all_jobs(&app.store).await.is_empty(),
        "nothing recorded as submitted"
    );
    cleanup(&cfg).await;
}

#[tokio::test]
async fn deliveries_the_store_cannot_commit_go_back_to_the_broker() {
    let (mut app, _) = amqp_app(many_repos(), "").await;
    let cfg = acfg(&app);
    // Make every insert fail, as a full disk would.
    app.fill_store().await;
    let messages: Vec<_> = (0..20u32)
        .map(|i| (job_msg(300 + i, Some(&format!("full-{i}"))), None))
        .collect();
    publish_raw(&cfg, &messages).await;
    app.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(all_jobs(&app.store).await.is_empty());
    assert_eq!(
        queue_depth(&cfg.dead_letter_queue).await,
        0,
        "nothing dead-lettered"
    );
    // Room again: the same deliveries come back and are stored.
    app.unfill_store().await;
    let store = app.store.clone();
    wait_until(WAIT, "20 recorded after the store recovered", || {
        let store = store.clone();
        async move { all_jobs(&store).await.len() == 20 }
    })
    .await;
    app.stop().await;
    assert_eq!(queue_depth(&cfg.queue).await, 0);
    cleanup(&cfg).await;
}

fn spawn_daemon(app: &TestApp, config: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .current_dir(app.dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon starts")
}

#[tokio::test]
async fn sigkill_mid_stream_and_restart_records_every_message_once() {
    let (app, _) = amqp_app(
        SimConfig {
            seed_repos: 1..=5000,
            ..SimConfig::default()
        },
        "",
    )
    .await;
    let cfg = acfg(&app);
    // Slow the start calls so jobs are in flight when the process dies.
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        delay_ms: Some(20),
        times: 0,
        ..Fault::default()
    });
    let messages: Vec<_> = (0..1000u32)
        .map(|i| (job_msg(2000 + i, Some(&format!("kill-{i}"))), None))
        .collect();
    publish_raw(&cfg, &messages).await;
    let mut child = spawn_daemon(&app, &app.config_path());
    let store = app.store.clone();
    wait_until(WAIT, "some jobs done", || {
        let store = store.clone();
        async move {
            all_jobs(&store)
                .await
                .iter()
                .filter(|j| j.status == "succeeded")
                .count()
                >= 100
        }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = all_jobs(&app.store).await;
    let running_at_kill = at_kill.iter().filter(|j| j.status == "running").count();

    let mut child = spawn_daemon(&app, &app.config_path());
    wait_until(Duration::from_secs(120), "all 1000 done", || {
        let store = store.clone();
        async move {
            let jobs = all_jobs(&store).await;
            jobs.len() == 1000 && jobs.iter().all(|j| j.status == "succeeded")
        }
    })
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();

    let jobs = all_jobs(&app.store).await;
    assert_eq!(jobs.len(), 1000);
    let keys: HashSet<_> = jobs.iter().map(|j| j.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 1000, "every message recorded exactly once");
    let mut rerun = 0;
    for i in 0..1000u32 {
        let starts = app.sim.mirror_starts(2000 + i);
        assert!(
            (1..=2).contains(&starts),
            "repository {} started {starts} times",
            2000 + i
        );
        if starts == 2 {
            rerun += 1;
        }
    }
    assert!(
        rerun <= running_at_kill,
        "{rerun} jobs re-ran, but only {running_at_kill} were running at the kill"
    );
    eprintln!("jobs running at SIGKILL: {running_at_kill}; remote calls repeated: {rerun}");
    assert_eq!(queue_depth(&cfg.queue).await, 0);
    cleanup(&cfg).await;
}

#[tokio::test]
async fn two_instances_fire_each_cron_tick_once_and_hand_over_on_death() {
    if support::postgres() {
        // Broker leadership is for instances with stores of their own (SQLite); on a shared
        // store every instance fires and the slot key decides (tests/suite/fleet.rs).
        return;
    }
    let schedule = r#"
[[schedules]]
name = "every-second"
cron = "* * * * * *"
kind = "remote_mirror"
params = { repository_id = 1, follow = false }
"#;
    let (app, _) = amqp_app(many_repos(), schedule).await;
    let cfg = acfg(&app);
    // A second instance: same broker topology, its own store.
    let second = app.dir.path().join("second.toml");
    let text = std::fs::read_to_string(app.config_path())
        .unwrap()
        .replace("path = \"jobs.db\"", "path = \"second.db\"");
    std::fs::write(&second, text).unwrap();
    let mut a = spawn_daemon(&app, &app.config_path());
    let mut b = spawn_daemon(&app, &second);
    tokio::time::sleep(Duration::from_secs(10)).await;

    let store_a = app.store.clone();
    let store_b = Store::open_path(
        &app.dir.path().join("second.db"),
        codearts_syncd::config::Synchronous::Normal,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let seconds =
        |jobs: &[JobRow]| -> Vec<i64> { jobs.iter().map(|j| j.created_at / 1000).collect() };
    let a_ticks = seconds(&all_jobs(&store_a).await);
    let b_ticks = seconds(&all_jobs(&store_b).await);
    let total = a_ticks.len() + b_ticks.len();
    let distinct: HashSet<_> = a_ticks.iter().chain(&b_ticks).collect();
    assert_eq!(
        distinct.len(),
        total,
        "a tick fired twice: {a_ticks:?} {b_ticks:?}"
    );
    assert!(
        total >= 7,
        "about one firing per second in 10 s, got {total}"
    );
    assert!(
        a_ticks.is_empty() || b_ticks.is_empty(),
        "one leader while both live: {a_ticks:?} {b_ticks:?}"
    );

    // Kill the leader; the other takes over within seconds.
    let (leader, survivor, survivor_store) = if a_ticks.is_empty() {
        (&mut b, &mut a, store_a.clone())
    } else {
        (&mut a, &mut b, store_b.clone())
    };
    leader.kill().unwrap();
    leader.wait().unwrap();
    let killed_at = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after: Vec<_> = all_jobs(&survivor_store)
        .await
        .into_iter()
        .filter(|j| j.created_at > killed_at)
        .collect();
    assert!(
        after.len() >= 2,
        "the survivor fires after the leader died: {after:?}"
    );
    let first = after.iter().map(|j| j.created_at).min().unwrap();
    assert!(
        first - killed_at < 4000,
        "took over after {} ms",
        first - killed_at
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &survivor.id().to_string()])
        .status();
    survivor.wait().unwrap();
    cleanup(&cfg).await;
}

#[test]
fn message_parsing_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = codearts_syncd::config::Config::from_toml_str(
        &support::BASE_CONFIG.replace("{url}", "http://127.0.0.1:1"),
        dir.path(),
    )
    .unwrap();
    let parse = |body: &[u8], id: Option<&str>| {
        codearts_syncd::ingress::amqp::parse_message(&cfg, 100, body, id.map(str::to_string))
    };
    let ok = parse(
        br#"{"kind":"remote_mirror","params":{"repository_id":5}}"#,
        Some("m1"),
    );
    assert!(ok.rejection.is_none());
    assert_eq!(
        ok.job.idempotency_key.as_deref(),
        Some("m1"),
        "message_id serves as key"
    );
    let keyed = parse(
        br#"{"kind":"remote_mirror","params":{"repository_id":5},"key":"k"}"#,
        Some("m1"),
    );
    assert_eq!(
        keyed.job.idempotency_key.as_deref(),
        Some("k"),
        "key wins over message_id"
    );
    let extra = parse(
        br#"{"kind":"remote_mirror","params":{},"priority":1}"#,
        None,
    );
    assert!(extra.rejection.unwrap().contains("priority"));
    let big = parse(&[b' '; 101], None);
    assert!(big.rejection.unwrap().contains("exceeds"));
}

#[tokio::test]
async fn quorum_queue_topology_works_the_same() {
    let (mut app, _) = amqp_app(many_repos(), "").await;
    // Rewrite this app's config to a quorum queue and reload it.
    let text = std::fs::read_to_string(app.config_path())
        .unwrap()
        .replace("prefetch = 200", "prefetch = 200\nqueue_type = \"quorum\"");
    std::fs::write(app.config_path(), text).unwrap();
    app.cfg =
        std::sync::Arc::new(codearts_syncd::config::Config::load(&app.config_path()).unwrap());
    let cfg = acfg(&app);
    assert_eq!(cfg.queue_type, codearts_syncd::config::QueueType::Quorum);
    let messages: Vec<_> = (0..10u32)
        .map(|i| (job_msg(400 + i, Some(&format!("q-{i}"))), None))
        .collect();
    publish_raw(&cfg, &messages).await;
    app.start();
    let store = app.store.clone();
    wait_until(WAIT, "10 done", || {
        let store = store.clone();
        async move {
            let jobs = all_jobs(&store).await;
            jobs.len() == 10 && jobs.iter().all(|j| j.status == "succeeded")
        }
    })
    .await;
    app.stop().await;
    // The broker reports the queue's type.
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "type"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = listing
        .lines()
        .find(|l| l.starts_with(&cfg.queue))
        .expect("queue listed");
    assert!(line.contains("quorum"), "{line}");
    cleanup(&cfg).await;
}
