//! `enqueue --wait`: exit codes and output for success, failure, rejection and a timeout, with
//! the CLI writing the row itself, and with AMQP (the row the daemon writes for the message).

use crate::support;

use std::process::Output;
use std::time::Duration;

use codearts_syncd::sim::{Fault, RepoBehaviour, Route, SimConfig};
use serde_json::Value;
use support::broker::{acfg, amqp_app, cleanup, publish_raw};
use support::{run_binary, spawn_app, text, TestApp};

async fn cli(app: &TestApp, args: &[&str]) -> Output {
    let config = app.config_path();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_binary(&config, &args, &[], Duration::from_secs(90))
    })
    .await
    .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn failing(app: &TestApp, repo: u32) {
    app.sim.set_repo(
        repo,
        RepoBehaviour {
            sync_fails: Some("upstream unreachable".into()),
            ..RepoBehaviour::default()
        },
    );
}

/// The exit codes every mode shares: 0 succeeded, 1 failed, 2 rejected.
async fn assert_exit_codes(app: &TestApp) {
    let out = cli(
        app,
        &[
            "enqueue",
            "remote_mirror",
            "-p",
            "repository_id=7",
            "--wait",
            "--timeout",
            "60s",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}{stderr}");
    assert!(stdout.contains("succeeded (1 attempt, jid "), "{stdout}");

    let out = cli(
        app,
        &[
            "enqueue",
            "remote_mirror",
            "-p",
            "repository_id=41",
            "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(code(&out), 1, "{:?}", text(&out));
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error_code"], "SYNC_FAILED");
    assert!(job["attempt_log"].is_array(), "as jobs show --json: {job}");

    let out = cli(
        app,
        &[
            "enqueue",
            "remote_mirror",
            "-p",
            "repository_id=seven",
            "--wait",
        ],
    )
    .await;
    assert_eq!(code(&out), 2, "{:?}", text(&out));
    assert!(text(&out).1.contains("repository_id"), "{:?}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_by_outcome_without_amqp() {
    let mut app = spawn_app().await;
    failing(&app, 41);
    app.start();
    assert_exit_codes(&app).await;

    // The job outlives --timeout: exit 1, and it says the job goes on.
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(8),
        delay_ms: Some(4_000),
        times: 1,
        ..Fault::default()
    });
    let out = cli(
        &app,
        &[
            "enqueue",
            "remote_mirror",
            "-p",
            "repository_id=8",
            "--wait",
            "--timeout",
            "500ms",
        ],
    )
    .await;
    assert_eq!(code(&out), 1);
    assert!(
        text(&out).1.contains("is still running after 500ms"),
        "{:?}",
        text(&out)
    );
    // A cancelled job ends the wait with 1 as well.
    app.sim.inject(Fault {
        route: Route::Storage,
        delay_ms: Some(20_000),
        times: 1,
        ..Fault::default()
    });
    let waiting = {
        let config = app.config_path();
        tokio::task::spawn_blocking(move || {
            run_binary(
                &config,
                &["enqueue", "storage_snapshot", "--wait", "--timeout", "60s"],
                &[],
                Duration::from_secs(90),
            )
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let id = loop {
        let jobs = app
            .store
            .list(&codearts_syncd::store::ListFilter {
                kind: Some("storage_snapshot".into()),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        if let Some(j) = jobs.first() {
            break j.id;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let out = cli(&app, &["jobs", "cancel", &id.to_string()]).await;
    assert_eq!(code(&out), 0);
    let out = waiting.await.unwrap();
    assert_eq!(code(&out), 1, "{:?}", text(&out));
    assert!(text(&out).1.contains("cancelled"), "{:?}", text(&out));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_by_outcome_with_amqp() {
    let (mut app, _tag) = amqp_app(
        SimConfig {
            sync_duration: Duration::from_millis(100),
            ..SimConfig::default()
        },
        "",
    )
    .await;
    let cfg = acfg(&app);
    // The topology exists before anything is published.
    publish_raw(&cfg, &[]).await;
    failing(&app, 41);
    app.start();
    assert_exit_codes(&app).await;
    // Every waited-for job came through the broker.
    let jobs = support::broker::all_jobs(&app.store).await;
    assert_eq!(
        jobs.len(),
        2,
        "the rejected one was refused before publishing"
    );
    assert!(jobs.iter().all(|j| j.source == "amqp"), "{jobs:?}");
    assert!(jobs.iter().all(|j| j
        .idempotency_key
        .as_deref()
        .is_some_and(|k| k.starts_with("enqueue-wait-"))));
    app.stop().await;
    cleanup(&cfg).await;
}
