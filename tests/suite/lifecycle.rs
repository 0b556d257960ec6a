//! Job lifecycle controls: cancel (queued, running: its request dropped), attempt timeouts,
//! replay of one job and in bulk, `enqueue --wait`, retention and `store vacuum`.

use crate::support;

use std::process::Output;
use std::time::{Duration, Instant};

use codearts_syncd::sim::{Fault, RepoBehaviour, Route, SimConfig};
use serde_json::{json, Value};
use support::{run_binary, spawn_app, spawn_app_with, text, TestApp};

const WAIT: Duration = Duration::from_secs(30);

/// Runs the binary off the runtime's threads, so an in-process daemon keeps running meanwhile.
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

/// Waits until the simulator has received `n` calls on `route`.
async fn wait_calls(app: &TestApp, route: Route, n: usize) {
    let deadline = Instant::now() + WAIT;
    while app.sim.count(route) < n {
        assert!(Instant::now() < deadline, "no {route:?} call arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_running_job_drops_its_request_and_records_cancelled() {
    // One remote_mirror at a time: a second job can only run once the first's attempt is gone.
    let mut app = spawn_app_with(
        SimConfig {
            sync_duration: Duration::from_millis(100),
            ..SimConfig::default()
        },
        "[engine.per_kind]\nremote_mirror = 1\n",
    )
    .await;
    // The start of repository 7 hangs for 30 s before the service would act on it.
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(7),
        delay_ms: Some(30_000),
        times: 1,
        ..Fault::default()
    });
    let hung = app
        .submit("remote_mirror", json!({"repository_id": 7}))
        .await;
    app.start();
    wait_calls(&app, Route::MirrorStart, 1).await;
    assert_eq!(app.job(hung).await.status, "running");

    let cancelled_at = Instant::now();
    let out = cli(&app, &["jobs", "cancel", &hung.to_string()]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("cancelled job {hung} (was running")),
        "{stdout}"
    );

    // The attempt is dropped: the only remote_mirror slot frees at once, long before the
    // 5 s request timeout would have freed it, and the next job runs to success.
    let next = app
        .submit("remote_mirror", json!({"repository_id": 8}))
        .await;
    let done = app.wait_final(next, WAIT).await;
    assert_eq!(done.status, "succeeded");
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(4),
        "the cancelled attempt held its slot for {:?}",
        cancelled_at.elapsed()
    );
    // The hung request never completed: no answer was sent, no sync started.
    let call = app
        .sim
        .calls()
        .into_iter()
        .find(|c| c.route == Route::MirrorStart && c.repository_id == Some(7))
        .unwrap();
    assert_eq!(call.status, 0, "the hung start was never answered");
    assert_eq!(app.sim.mirror_starts(7), 0);

    let job = app.job(hung).await;
    assert_eq!(job.status, "cancelled");
    assert_eq!(job.error_code.as_deref(), Some("cancelled"));
    let msg = job.error_msg.clone().unwrap();
    assert!(msg.starts_with("cancelled by cli"), "{msg}");
    assert!(job.finished_at.is_some());
    let attempts = app.attempts(hung).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome.as_deref(), Some("cancelled"));
    assert!(attempts[0].finished_at.is_some());
    app.stop().await;
    // Nothing wrote over the cancel afterwards (the engine's drain included).
    assert_eq!(app.job(hung).await.status, "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_queued_job_is_final_and_idempotent() {
    let mut app = spawn_app().await;
    let id = app
        .submit("remote_mirror", json!({"repository_id": 3}))
        .await;
    let out = cli(&app, &["jobs", "cancel", &id.to_string()]).await;
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    assert!(text(&out).0.contains("(was queued)"), "{:?}", text(&out));
    let first = app.job(id).await;
    assert_eq!(first.status, "cancelled");
    assert_eq!(first.attempts, 0);

    // Again: a success that says so, and nothing changes.
    let out = cli(&app, &["jobs", "cancel", &id.to_string(), "--json"]).await;
    assert_eq!(code(&out), 0);
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["outcome"], "already_cancelled");
    let again = app.job(id).await;
    assert_eq!(
        (again.error_msg, again.finished_at),
        (first.error_msg, first.finished_at)
    );

    // The daemon never runs it.
    app.start();
    let other = app
        .submit("remote_mirror", json!({"repository_id": 4}))
        .await;
    assert_eq!(app.wait_final(other, WAIT).await.status, "succeeded");
    assert_eq!(app.sim.mirror_starts(3), 0);
    assert_eq!(app.job(id).await.status, "cancelled");

    // A job final with another status keeps it: exit 2, the status named.
    let out = cli(&app, &["jobs", "cancel", &other.to_string()]).await;
    assert_eq!(code(&out), 2);
    assert!(
        text(&out).1.contains("is already succeeded"),
        "{:?}",
        text(&out)
    );
    assert_eq!(app.job(other).await.status, "succeeded");
    let out = cli(&app, &["jobs", "cancel", "99999"]).await;
    assert_eq!(code(&out), 2);
    assert!(text(&out).1.contains("no job 99999"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_following_job_stops_its_polls() {
    let mut app = spawn_app().await;
    // A sync that takes a minute: the job follows it, polling every 50 ms.
    app.sim.set_repo(
        33,
        RepoBehaviour {
            sync_duration: Some(Duration::from_secs(60)),
            ..RepoBehaviour::default()
        },
    );
    let id = app
        .submit("remote_mirror", json!({"repository_id": 33}))
        .await;
    app.start();
    app.wait_for(id, WAIT, |j| j.status == "following").await;
    let out = cli(&app, &["jobs", "cancel", &id.to_string()]).await;
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    assert!(text(&out).0.contains("(was following)") || text(&out).0.contains("(was running"));
    // A poll claimed at that instant may still be under way; after it, none.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let polls = app.sim.count(Route::MirrorShow);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.sim.count(Route::MirrorShow),
        polls,
        "still polled after the cancel"
    );
    let job = app.job(id).await;
    assert_eq!(job.status, "cancelled");
    assert!(job.jid.is_some(), "the started sync's jid is kept");
    // The attempt that started the sync ended as `following`, before the cancel.
    let attempts = app.attempts(id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome.as_deref(), Some("following"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_is_recorded_and_retried() {
    let mut app = spawn_app().await;
    // The first storage read hangs far past the job's own 5 s timeout (long enough for an
    // attempt on a loaded machine).
    app.sim.inject(Fault {
        route: Route::Storage,
        delay_ms: Some(120_000),
        times: 1,
        ..Fault::default()
    });
    let id = app
        .submit("storage_snapshot", json!({"timeout": "5s"}))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let attempts = app.attempts(id).await;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].outcome.as_deref(), Some("timed_out"));
    assert_eq!(attempts[0].error_code.as_deref(), Some("timed_out"));
    assert!(
        attempts[0].error_msg.as_deref().unwrap().contains("5s"),
        "{attempts:?}"
    );
    // Cut off by the timeout, not ended by the answer (which would have taken 120 s).
    let took = attempts[0].finished_at.unwrap() - attempts[0].started_at;
    assert!(took < 60_000, "the attempt ran {took} ms, past its timeout");
    assert_eq!(attempts[1].outcome.as_deref(), Some("succeeded"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_that_always_time_out_fail_the_job_as_timed_out() {
    // The per-kind timeout from the configuration.
    let mut app = spawn_app_with(
        SimConfig {
            sync_duration: Duration::from_millis(200),
            ..SimConfig::default()
        },
        "[engine.timeout]\nstorage_snapshot = \"200ms\"\n",
    )
    .await;
    app.sim.inject(Fault {
        route: Route::Storage,
        delay_ms: Some(3_000),
        times: 0,
        ..Fault::default()
    });
    let id = app.submit("storage_snapshot", json!({})).await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    assert_eq!(job.status, "failed");
    assert_eq!(job.error_code.as_deref(), Some("timed_out"));
    let attempts = app.attempts(id).await;
    assert_eq!(attempts.len(), 4, "retry.max_attempts of the test config");
    assert!(attempts
        .iter()
        .all(|a| a.outcome.as_deref() == Some("timed_out")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_cut_off_by_its_timeout_is_not_sent_again() {
    let mut app = spawn_app().await;
    // The service starts the sync at once but answers after 1.5 s: the 300 ms timeout drops
    // the attempt after the start was sent.
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        delay_after_ms: Some(1_500),
        times: 1,
        ..Fault::default()
    });
    let id = app
        .submit(
            "remote_mirror",
            json!({"repository_id": 12, "timeout": "300ms"}),
        )
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let attempts = app.attempts(id).await;
    assert_eq!(attempts[0].outcome.as_deref(), Some("timed_out"));
    // The next attempt found the `starting` record and followed that sync.
    assert_eq!(app.sim.mirror_starts(12), 1, "the start was sent once");
    assert_eq!(app.sim.count(Route::MirrorStart), 1);
    assert_eq!(job.result.unwrap()["start_answer"], "lost");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_timeout_is_refused_by_name() {
    let app = spawn_app().await;
    let out = cli(&app, &["enqueue", "storage_snapshot", "-p", "timeout=0s"]).await;
    assert_eq!(code(&out), 2);
    assert!(
        text(&out).1.contains("parameter `timeout`"),
        "{:?}",
        text(&out)
    );
    let out = cli(&app, &["enqueue", "storage_snapshot", "-p", "timeout=soon"]).await;
    assert_eq!(code(&out), 2);
    assert!(text(&out).1.contains("parameter `timeout`"));

    for (extra, key) in [
        (
            "[engine.timeout]\nnot_a_kind = \"1s\"\n",
            "engine.timeout.not_a_kind",
        ),
        (
            "[engine.timeout]\nremote_mirror = \"0s\"\n",
            "engine.timeout.remote_mirror",
        ),
        ("[retention]\nkeep = \"soon\"\n", "retention.keep"),
        ("[retention]\nkeep = \"0s\"\n", "retention.keep"),
    ] {
        let path = app.dir.path().join("bad.toml");
        let base = std::fs::read_to_string(app.config_path()).unwrap();
        std::fs::write(&path, format!("{base}\n{extra}")).unwrap();
        let out = run_binary(&path, &["config", "check"], &[], Duration::from_secs(30));
        assert_eq!(code(&out), 2, "{extra}");
        assert!(text(&out).1.contains(key), "{extra}: {:?}", text(&out));
    }
}

/// A simulator whose repositories 41..=49 fail every sync.
async fn failing_app() -> TestApp {
    let app = spawn_app().await;
    for repo in 41..=49 {
        app.sim.set_repo(
            repo,
            RepoBehaviour {
                sync_fails: Some("upstream unreachable".into()),
                ..RepoBehaviour::default()
            },
        );
    }
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_keeps_the_old_job_intact_and_links_the_new() {
    let mut app = failing_app().await;
    app.start();
    let old = app
        .submit(
            "remote_mirror",
            json!({"repository_id": 41, "force_fetch": true}),
        )
        .await;
    let before = app.wait_final(old, WAIT).await;
    assert_eq!(before.status, "failed");
    let attempts_before = serde_json::to_value(app.attempts(old).await).unwrap();

    let out = cli(&app, &["jobs", "retry", &old.to_string(), "--json"]).await;
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    let new = body["new_id"].as_i64().unwrap();
    assert_ne!(new, old);
    let replay = app.wait_final(new, WAIT).await;
    assert_eq!(replay.retry_of, Some(old));
    assert_eq!(
        (replay.kind.as_str(), &replay.params),
        (before.kind.as_str(), &before.params)
    );
    assert_eq!(replay.status, "failed", "the repository still fails");
    assert_eq!(app.sim.mirror_starts(41), 2);

    // The old job, its attempts and its requests are as they were.
    let after = app.job(old).await;
    assert_eq!(
        serde_json::to_value(&after).unwrap(),
        serde_json::to_value(&before).unwrap()
    );
    assert_eq!(
        serde_json::to_value(app.attempts(old).await).unwrap(),
        attempts_before
    );
    let shown = cli(&app, &["jobs", "show", &new.to_string(), "--json"]).await;
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["retry_of"], old);

    // Not replayable: a success, a rejection, an unknown id.
    let ok = app
        .submit("remote_mirror", json!({"repository_id": 5}))
        .await;
    app.wait_final(ok, WAIT).await;
    let out = cli(&app, &["jobs", "retry", &ok.to_string()]).await;
    assert_eq!(code(&out), 2);
    assert!(text(&out).1.contains("succeeded"), "{:?}", text(&out));
    let rejected = app
        .submit_raw("remote_mirror", json!({"repository_id": "x"}), None)
        .await
        .id();
    let out = cli(&app, &["jobs", "retry", &rejected.to_string()]).await;
    assert_eq!(code(&out), 2);
    assert!(text(&out).1.contains("rejected"), "{:?}", text(&out));
    assert_eq!(code(&cli(&app, &["jobs", "retry", "99999"]).await), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_replay_honours_the_limit_and_never_replays_replays() {
    let mut app = failing_app().await;
    app.start();
    let mut originals = Vec::new();
    for repo in [42, 43, 44] {
        originals.push(
            app.submit("remote_mirror", json!({"repository_id": repo}))
                .await,
        );
    }
    for id in &originals {
        assert_eq!(app.wait_final(*id, WAIT).await.status, "failed");
    }

    // First run: two of three.
    let out = cli(
        &app,
        &["jobs", "retry", "--status", "failed", "--limit", "2"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("replayed 2 failed jobs; 1 more matched"),
        "{stdout}"
    );
    let first = replays(&app).await;
    assert_eq!(first.len(), 2);
    for (old, new) in &first {
        assert!(
            stdout.contains(&format!("job {old} -> job {new}")),
            "{stdout}"
        );
        assert_eq!(app.wait_final(*new, WAIT).await.status, "failed");
    }
    assert_eq!(
        first.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        originals[..2].to_vec(),
        "oldest first"
    );

    // Second run, with room for all: only the original left; the failed replays are not taken.
    let out = cli(
        &app,
        &[
            "jobs", "retry", "--status", "failed", "--limit", "10", "--json",
        ],
    )
    .await;
    assert_eq!(code(&out), 0);
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    let replayed = body["replayed"].as_array().unwrap();
    assert_eq!(replayed.len(), 1, "{body}");
    assert_eq!(replayed[0]["id"], originals[2]);
    assert_eq!(body["left"], 0);
    app.wait_final(replayed[0]["new_id"].as_i64().unwrap(), WAIT)
        .await;

    // Third run: nothing, however often it runs.
    let out = cli(&app, &["jobs", "retry", "--limit", "10"]).await;
    assert!(
        text(&out).0.contains("replayed 0 failed jobs"),
        "{:?}",
        text(&out)
    );
    let all = replays(&app).await;
    assert_eq!(all.len(), 3);
    let replay_ids: Vec<i64> = all.iter().map(|(_, n)| *n).collect();
    assert!(
        all.iter().all(|(old, _)| !replay_ids.contains(old)),
        "a replay was replayed in bulk: {all:?}"
    );
    // Filters: no failed storage_snapshot jobs.
    let out = cli(
        &app,
        &[
            "jobs",
            "retry",
            "--kind",
            "storage_snapshot",
            "--limit",
            "5",
        ],
    )
    .await;
    assert!(text(&out).0.contains("replayed 0"));
    let out = cli(
        &app,
        &["jobs", "retry", "--since", "whenever", "--limit", "5"],
    )
    .await;
    assert_eq!(code(&out), 2);
    assert!(text(&out).1.contains("since"));
    app.stop().await;
}

/// Every (retry_of, id) pair in the store, oldest first.
async fn replays(app: &TestApp) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = app
        .store
        .list(&codearts_syncd::store::ListFilter {
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|j| j.retry_of.map(|o| (o, j.id)))
        .collect();
    out.sort();
    out
}
