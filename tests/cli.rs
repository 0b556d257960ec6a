//! The binary as an operator uses it: config errors, enqueue validation, `run` and SIGTERM.

mod support;

use std::time::{Duration, Instant};

use codearts_syncd::sim::{Fault, Route};
use serde_json::Value;
use support::{spawn_app, text};

#[tokio::test]
async fn config_with_a_bad_key_names_the_key() {
    let app = spawn_app().await;
    let path = app.dir.path().join("bad.toml");
    let good = std::fs::read_to_string(app.config_path()).unwrap();
    std::fs::write(&path, good.replace("concurrency = 8", "concurency = 8")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .args(["--config", path.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("engine.concurency"), "stderr: {stderr}");
}

#[tokio::test]
async fn config_with_a_bad_value_names_the_key_and_why() {
    let app = spawn_app().await;
    let good = std::fs::read_to_string(app.config_path()).unwrap();
    for (from, to, key) in [
        ("max_attempts = 4", "max_attempts = 0", "retry.max_attempts"),
        (
            "poll_interval = \"50ms\"\nshutdown",
            "poll_interval = \"soon\"\nshutdown",
            "engine.poll_interval",
        ),
        (
            "region = \"ap-southeast-3\"",
            "region = \"\"",
            "cloud.region",
        ),
    ] {
        let path = app.dir.path().join("bad.toml");
        assert!(good.contains(from), "fixture has {from}");
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
            .args(["--config", path.to_str().unwrap(), "config", "check"])
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains(key), "expected {key} in: {stderr}");
    }
}

#[tokio::test]
async fn config_check_prints_sources_not_secrets_and_reports_a_missing_one() {
    let app = spawn_app().await;
    let out = app.cli(&["config", "check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("[engine]"));
    assert!(!stdout.contains(&app.sim_cfg.password), "password printed");
    assert!(
        !stdout.contains(support::UPSTREAM_PASSWORD),
        "password printed"
    );

    std::fs::remove_file(app.dir.path().join("upstream-password")).unwrap();
    let out = app.cli(&["config", "check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("credentials.upstream.password"), "{stderr}");
}

#[tokio::test]
async fn environment_overrides_a_key() {
    let app = spawn_app().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .arg("--config")
        .arg(app.config_path())
        .args(["config", "check"])
        .env("CODEARTS_SYNCD_ENGINE__CONCURRENCY", "3")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("concurrency = 3"), "{stdout}");
}

#[tokio::test]
async fn enqueue_rejects_bad_parameters_naming_them() {
    let app = spawn_app().await;
    let cases = [
        (vec!["--param", "repository_id=abc"], "repository_id"),
        (
            vec!["--param", "repository_id=1", "--param", "colour=red"],
            "colour",
        ),
        (vec!["--param", "repository_id=0"], "repository_id"),
        (vec!["--param", "repository_id=2147483648"], "repository_id"),
        (
            vec!["--param", "repository_id=1", "--param", "credential=nope"],
            "credential",
        ),
        (vec!["--param", "force_fetch=true"], "repository_id"),
    ];
    for (params, named) in &cases {
        let mut args = vec!["enqueue", "remote_mirror"];
        args.extend(params.iter().copied());
        let out = app.cli(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{params:?}: {stderr}");
        assert!(
            stderr.contains(named),
            "{params:?}: expected {named} in {stderr}"
        );
    }
    let out = app.cli(&["enqueue", "mirror_everything", "--param", "x=1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("unknown job kind \"mirror_everything\""),
        "{stderr}"
    );

    // Every rejection is recorded.
    let out = app.cli(&["jobs", "list", "--status", "rejected", "--json"]);
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), cases.len() + 1);
    assert!(list
        .iter()
        .all(|j| j["error_code"] == "REJECTED" && j["error_msg"].is_string()));
}

#[tokio::test]
async fn enqueue_with_a_key_creates_one_job() {
    let app = spawn_app().await;
    let a = app.cli(&[
        "enqueue",
        "remote_mirror",
        "-p",
        "repository_id=1",
        "--key",
        "push-7f3a",
    ]);
    let b = app.cli(&[
        "enqueue",
        "remote_mirror",
        "-p",
        "repository_id=1",
        "--key",
        "push-7f3a",
    ]);
    assert!(a.status.success() && b.status.success());
    assert!(text(&b).0.contains("duplicate key"), "{:?}", text(&b));
    let out = app.cli(&["jobs", "list", "--json"]);
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["idempotency_key"], "push-7f3a");
}

#[tokio::test]
async fn jobs_show_includes_the_attempts() {
    let mut app = spawn_app().await;
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        status: Some(502),
        times: 1,
        ..Fault::default()
    });
    let id = app
        .submit(
            "remote_mirror",
            serde_json::json!({"repository_id": 2, "follow": false}),
        )
        .await;
    app.start();
    app.wait_final(id, Duration::from_secs(20)).await;
    app.stop().await;
    let out = app.cli(&["jobs", "show", &id.to_string(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let log = v["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["http_status"], 502);
    assert_eq!(log[0]["outcome"], "retry");
    assert_eq!(log[1]["outcome"], "succeeded");
    let human = text(&app.cli(&["jobs", "show", &id.to_string()])).0;
    assert!(
        human.contains("ATTEMPT") && human.contains("502"),
        "{human}"
    );
    let table = text(&app.cli(&["jobs", "list"])).0;
    assert!(table.contains(v["jid"].as_str().unwrap()), "{table}");
}

#[tokio::test]
async fn sigterm_during_a_slow_job_lets_it_finish_and_exits_0() {
    let app = spawn_app().await;
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        delay_ms: Some(1500),
        times: 1,
        ..Fault::default()
    });
    let id = app
        .submit(
            "remote_mirror",
            serde_json::json!({"repository_id": 4, "follow": false}),
        )
        .await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .arg("--config")
        .arg(app.config_path())
        .arg("run")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the slow start call is in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.sim.count(Route::MirrorStart) == 0 {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.job(id).await.status, "running");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let job = app.job(id).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert!(job.jid.is_some());
}
