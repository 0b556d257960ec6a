//! A `remote_mirror` start whose answer is lost (the service acted, the client never heard)
//! must not start a second sync: not after a reset, not after a client timeout, not after a
//! crash or a shutdown in the middle of the call.

use crate::support;

use std::time::Duration;

use codearts_syncd::sim::{Fault, Route, SimConfig};
use serde_json::json;
use support::spawn_app_with;

/// Client timeout 1 s; a `delay_after_ms` of 1.5 s loses the answer.
const SHORT_TIMEOUT: &str = "[http]\nconnect_timeout = \"2s\"\nrequest_timeout = \"1s\"\n";

fn sim() -> SimConfig {
    SimConfig {
        sync_duration: Duration::from_millis(300),
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_starts_under_lost_answers_make_one_sync_each() {
    // The base config's [http] section is replaced, not repeated.
    let mut app = spawn_app_with(sim(), "").await;
    let text = std::fs::read_to_string(app.config_path()).unwrap();
    let text = text.replace(
        "[http]\nconnect_timeout = \"2s\"\nrequest_timeout = \"5s\"\n",
        SHORT_TIMEOUT,
    );
    std::fs::write(app.config_path(), text).unwrap();
    app.cfg = std::sync::Arc::new(
        codearts_syncd::config::Config::load(&app.config_path()).expect("config"),
    );
    assert_eq!(app.cfg.http.request_timeout, Duration::from_secs(1));

    // Repositories 1..=50: a third lose the answer to a reset after the service acted, a
    // third to a late answer past the client's timeout, a third answer normally.
    for repo in 1..=50u32 {
        let fault = match repo % 3 {
            0 => Fault {
                route: Route::MirrorStart,
                repository_id: Some(repo),
                reset_after: true,
                times: 1,
                ..Fault::default()
            },
            1 => Fault {
                route: Route::MirrorStart,
                repository_id: Some(repo),
                delay_after_ms: Some(1500),
                times: 1,
                ..Fault::default()
            },
            _ => continue,
        };
        app.sim.inject(fault);
    }
    let mut ids = Vec::new();
    for repo in 1..=50u32 {
        ids.push((
            repo,
            app.submit("remote_mirror", json!({"repository_id": repo}))
                .await,
        ));
    }
    app.start();
    let mut lost = 0;
    for (repo, id) in &ids {
        let job = app.wait_final(*id, Duration::from_secs(60)).await;
        assert_eq!(job.status, "succeeded", "repository {repo}: {job:?}");
        assert_eq!(
            app.sim.mirror_starts(*repo),
            1,
            "repository {repo}: one sync, however the answer went"
        );
        let result = job.result.clone().expect("a result");
        assert_eq!(result["sync"], "succeeded", "repository {repo}: {result}");
        if repo % 3 == 2 {
            // The answer arrived: the sync's jid is on the job.
            assert!(job.jid.is_some(), "repository {repo}: jid recorded");
            assert!(result.get("start_answer").is_none());
        } else {
            // The answer was lost: no API looks a jid up, so the job says so instead.
            assert_eq!(
                result["start_answer"], "lost",
                "repository {repo}: {result}"
            );
            assert!(job.jid.is_none());
            assert!(
                job.attempts >= 2,
                "repository {repo}: the lost answer cost an attempt"
            );
            lost += 1;
        }
    }
    assert_eq!(
        lost, 33,
        "16 resets after the service acted, 17 late answers"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_cut_off_by_a_crash_or_a_shutdown_is_not_sent_again() {
    for (repo, graceful) in [(7u32, false), (8u32, true)] {
        // A start whose answer takes 3 s; the daemon dies (or its grace runs out) meanwhile.
        let mut app = spawn_app_with(sim(), "").await;
        let text = std::fs::read_to_string(app.config_path())
            .unwrap()
            .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"200ms\"");
        std::fs::write(app.config_path(), text).unwrap();
        app.cfg = std::sync::Arc::new(
            codearts_syncd::config::Config::load(&app.config_path()).expect("config"),
        );
        app.sim.inject(Fault {
            route: Route::MirrorStart,
            repository_id: Some(repo),
            delay_after_ms: Some(3000),
            times: 1,
            ..Fault::default()
        });
        let id = app
            .submit("remote_mirror", json!({"repository_id": repo}))
            .await;
        app.start();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while app.sim.mirror_starts(repo) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the start never arrived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if graceful {
            app.stop().await;
            assert_eq!(app.job(id).await.status, "queued", "re-queued at shutdown");
        } else {
            app.kill();
            assert_eq!(
                app.job(id).await.status,
                "running",
                "left as a crash leaves it"
            );
        }
        app.start();
        let job = app.wait_final(id, Duration::from_secs(30)).await;
        assert_eq!(job.status, "succeeded", "{job:?}");
        assert_eq!(
            app.sim.mirror_starts(repo),
            1,
            "graceful={graceful}: the interrupted start was followed, not repeated"
        );
        assert_eq!(job.result.unwrap()["start_answer"], "lost");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_on_the_start_is_looked_into_before_a_second_start() {
    let mut app = spawn_app_with(sim(), "").await;
    // Repositories 1 and 2: the gateway answers 504 after the service started the sync; 3 and
    // 4: 502 after it did; 5 and 6: a 500 before anything was started.
    for repo in 1..=6u32 {
        app.sim.inject(Fault {
            route: Route::MirrorStart,
            repository_id: Some(repo),
            status: Some(match repo {
                1 | 2 => 504,
                3 | 4 => 502,
                _ => 500,
            }),
            status_after: repo <= 4,
            times: 1,
            ..Fault::default()
        });
    }
    let mut ids = Vec::new();
    for repo in 1..=6u32 {
        ids.push((
            repo,
            app.submit("remote_mirror", json!({"repository_id": repo}))
                .await,
        ));
    }
    app.start();
    for (repo, id) in &ids {
        let job = app.wait_final(*id, Duration::from_secs(60)).await;
        assert_eq!(job.status, "succeeded", "repository {repo}: {job:?}");
        assert_eq!(job.attempts, 2, "repository {repo}: {job:?}");
        assert_eq!(
            app.sim.mirror_starts(*repo),
            1,
            "repository {repo}: a sync the service started is followed, not started again; \
             a start the service refused is sent again"
        );
        let result = job.result.clone().expect("a result");
        assert_eq!(result["sync"], "succeeded", "repository {repo}: {result}");
        if *repo <= 4 {
            assert_eq!(
                result["start_answer"], "lost",
                "repository {repo}: {result}"
            );
        } else {
            assert!(
                job.jid.is_some(),
                "repository {repo}: the second start's jid"
            );
        }
    }
    app.stop().await;
}
