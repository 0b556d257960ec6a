//! `remote_mirror` end to end against the simulator: outcomes, retries, auth, recovery.

use crate::support;

use std::time::Duration;

use codearts_syncd::sim::{Fault, RepoBehaviour, Route, SimConfig};
use codearts_syncd::store::Transition;
use serde_json::{json, Value};
use support::{spawn_app, spawn_app_with, text};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn mirror_success_records_jid_and_sync_outcome() {
    let mut app = spawn_app().await;
    let id = app
        .submit(
            "remote_mirror",
            json!({"repository_id": 7, "force_fetch": true, "credential": "upstream"}),
        )
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let jid = job.jid.clone().expect("jid recorded");
    assert_eq!(jid.len(), 36, "the simulator returns a UUID jid: {jid}");
    let result = job.result.clone().expect("result recorded");
    assert_eq!(result["sync"], "succeeded");
    assert_eq!(result["jid"], jid.as_str());
    assert_eq!(app.sim.mirror_starts(7), 1);
    // The credential profile went out base64-encoded (the simulator decodes the username).
    let start = app
        .sim
        .calls()
        .into_iter()
        .find(|c| c.route == Route::MirrorStart)
        .expect("a start call");
    assert_eq!(start.body_username.as_deref(), Some("mirror-bot"));

    // What a user sees: `jobs list --json`.
    let out = app.cli(&["jobs", "list", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "jobs list failed: {stderr}");
    let list: Vec<Value> = serde_json::from_str(&stdout).expect("JSON array");
    let row = list
        .iter()
        .find(|r| r["id"] == id)
        .expect("the job is listed");
    for field in [
        "id",
        "kind",
        "source",
        "status",
        "attempts",
        "jid",
        "trace_id",
        "error_code",
        "error_msg",
        "created_at",
        "started_at",
        "finished_at",
        "params",
    ] {
        assert!(row.get(field).is_some(), "field {field} missing in {row}");
    }
    assert_eq!(row["status"], "succeeded");
    assert_eq!(row["source"], "cli");
    assert_eq!(row["jid"], jid.as_str());
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["result"]["sync"], "succeeded");
    assert_eq!(row["params"]["repository_id"], 7);
    let created = row["created_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'),
        "created_at is RFC 3339 UTC: {created}"
    );
}

#[tokio::test]
async fn mirror_404_fails_without_retry() {
    let mut app = spawn_app().await;
    let id = app
        .submit("remote_mirror", json!({"repository_id": 999_999}))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "failed");
    assert_eq!(job.error_code.as_deref(), Some("CH.004404"));
    assert_eq!(job.error_msg.as_deref(), Some("Repository Not Found"));
    assert_eq!(job.http_status, Some(404));
    assert_eq!(job.attempts, 1);
    let attempts = app.attempts(id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome.as_deref(), Some("failed"));
    assert_eq!(attempts[0].error_code.as_deref(), Some("CH.004404"));
}

#[tokio::test]
async fn mirror_403_is_final_and_keeps_the_api_error() {
    let mut app = spawn_app().await;
    app.sim.set_repo(
        11,
        RepoBehaviour {
            forbidden: true,
            ..Default::default()
        },
    );
    let id = app
        .submit("remote_mirror", json!({"repository_id": 11}))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "failed");
    assert_eq!(job.error_code.as_deref(), Some("CH.004403"));
    assert_eq!(job.attempts, 1);
}

#[tokio::test]
async fn two_500s_then_success_records_three_attempts_with_growing_delays() {
    let mut app = spawn_app().await;
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(5),
        status: Some(500),
        times: 2,
        ..Fault::default()
    });
    let id = app
        .submit("remote_mirror", json!({"repository_id": 5}))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(job.attempts, 3);
    assert!(job.jid.is_some());
    let attempts = app.attempts(id).await;
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| a.outcome.clone().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "following"]);
    assert_eq!(attempts[0].http_status, Some(500));
    let d1 = attempts[0].retry_delay_ms.unwrap();
    let d2 = attempts[1].retry_delay_ms.unwrap();
    assert!(d2 > d1, "delays grow: {d1} then {d2}");
    // Each retry waited at least its recorded delay.
    for pair in attempts.windows(2) {
        let gap = pair[1].started_at - pair[0].finished_at.unwrap();
        assert!(
            gap >= pair[0].retry_delay_ms.unwrap(),
            "attempt {} started {gap} ms after the previous ended, before its delay",
            pair[1].attempt
        );
    }
}

#[tokio::test]
async fn retries_stop_at_max_attempts_with_the_last_error_kept() {
    let mut app = spawn_app().await;
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(6),
        status: Some(503),
        error_code: Some("CH.00503".into()),
        error_msg: Some("service busy".into()),
        times: 0,
        ..Fault::default()
    });
    let id = app
        .submit("remote_mirror", json!({"repository_id": 6}))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "failed");
    assert_eq!(job.attempts, 4, "max_attempts is 4 in the test config");
    assert_eq!(job.error_code.as_deref(), Some("CH.00503"));
    assert_eq!(job.error_msg.as_deref(), Some("service busy"));
    assert_eq!(app.attempts(id).await.len(), 4);
}

#[tokio::test]
async fn retry_after_is_honoured_before_the_next_attempt() {
    let mut app = spawn_app().await;
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(8),
        status: Some(429),
        retry_after: Some(2),
        times: 1,
        ..Fault::default()
    });
    let id = app
        .submit("remote_mirror", json!({"repository_id": 8}))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded");
    let attempts = app.attempts(id).await;
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].http_status, Some(429));
    assert_eq!(attempts[0].retry_delay_ms, Some(2000));
    let gap = attempts[1].started_at - attempts[0].finished_at.unwrap();
    assert!(
        gap >= 2000,
        "second attempt came {gap} ms after a Retry-After of 2 s"
    );
}

#[tokio::test]
async fn connection_reset_is_retried_and_succeeds() {
    let mut app = spawn_app().await;
    // A reset after the start was sent leaves its outcome unknown, so it is never re-sent
    // within the call: each costs a job-level attempt, which reads the mirror state first.
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(9),
        reset: true,
        times: 3,
        ..Fault::default()
    });
    let id = app
        .submit("remote_mirror", json!({"repository_id": 9}))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(job.attempts, 4);
    let first = &app.attempts(id).await[0];
    assert_eq!(first.error_code.as_deref(), Some("TRANSPORT"));
    assert_eq!(app.sim.mirror_starts(9), 1);
}

#[tokio::test]
async fn failed_sync_is_recorded_with_its_error() {
    let mut app = spawn_app().await;
    app.sim.set_repo(
        12,
        RepoBehaviour {
            sync_fails: Some("fatal: could not read from remote repository".into()),
            ..Default::default()
        },
    );
    let id = app
        .submit("remote_mirror", json!({"repository_id": 12}))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "failed");
    assert!(job.jid.is_some(), "the jid of the failed sync is kept");
    assert_eq!(job.error_code.as_deref(), Some("SYNC_FAILED"));
    assert_eq!(
        job.error_msg.as_deref(),
        Some("fatal: could not read from remote repository")
    );
    assert_eq!(job.result.unwrap()["sync"], "failed");
    assert_eq!(job.attempts, 1, "a failed sync is not retried");
}

#[tokio::test]
async fn follow_timeout_records_the_outcome_as_unknown() {
    let mut app = spawn_app().await;
    app.sim.set_repo(
        13,
        RepoBehaviour {
            sync_duration: Some(Duration::from_secs(60)),
            ..Default::default()
        },
    );
    let id = app
        .submit(
            "remote_mirror",
            json!({"repository_id": 13, "follow_timeout": "500ms"}),
        )
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "failed");
    assert_eq!(job.error_code.as_deref(), Some("SYNC_OUTCOME_UNKNOWN"));
    assert_eq!(job.result.unwrap()["sync"], "unknown");
    assert!(job.jid.is_some());
}

#[tokio::test]
async fn expired_token_reauthenticates_once_without_a_storm() {
    let mut app = spawn_app_with(
        SimConfig {
            sync_duration: Duration::from_millis(600),
            ..SimConfig::default()
        },
        "",
    )
    .await;
    // One job that is mid-run (following) when the token expires.
    let first = app
        .submit("remote_mirror", json!({"repository_id": 20}))
        .await;
    app.start();
    app.wait_for(first, WAIT, |j| j.status == "following").await;
    assert_eq!(app.sim.count(Route::IamToken), 1);
    app.sim.expire_tokens();
    // Many jobs that all hit the 401 at once.
    let mut ids = vec![first];
    for repo in 21..=36 {
        ids.push(
            app.submit(
                "remote_mirror",
                json!({"repository_id": repo, "follow": false}),
            )
            .await,
        );
    }
    for id in &ids {
        let job = app.wait_final(*id, WAIT).await;
        assert_eq!(job.status, "succeeded", "{job:?}");
        assert_eq!(job.attempts, 1, "re-authentication is not a retry: {job:?}");
    }
    app.stop().await;
    assert_eq!(
        app.sim.count(Route::IamToken),
        2,
        "one token at start, one refresh for everybody"
    );
}

#[tokio::test]
async fn job_left_running_by_a_killed_process_runs_again() {
    let mut app = spawn_app().await;
    let id = app
        .submit("remote_mirror", json!({"repository_id": 30}))
        .await;
    // A process claimed it and died.
    let claimed = app
        .store
        .claim(&["remote_mirror"])
        .await
        .unwrap()
        .expect("claimable");
    assert_eq!(claimed.id, id);
    assert_eq!(app.job(id).await.status, "running");

    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded");
    assert_eq!(job.attempts, 2);
    let attempts = app.attempts(id).await;
    assert_eq!(attempts[0].outcome.as_deref(), Some("interrupted"));
    assert_eq!(attempts[1].outcome.as_deref(), Some("following"));
}

#[tokio::test]
async fn followed_sync_resumes_following_after_restart() {
    let mut app = spawn_app_with(
        SimConfig {
            sync_duration: Duration::from_millis(1500),
            ..SimConfig::default()
        },
        "",
    )
    .await;
    let id = app
        .submit("remote_mirror", json!({"repository_id": 31}))
        .await;
    app.start();
    let following = app.wait_for(id, WAIT, |j| j.status == "following").await;
    let jid = following
        .jid
        .clone()
        .expect("jid recorded before following");
    app.kill();
    // Killed in the middle of a poll: the row says running.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let poll = loop {
        if let Some(j) = app.store.claim(&["remote_mirror"]).await.unwrap() {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(poll.is_poll());

    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(
        job.jid.as_deref(),
        Some(jid.as_str()),
        "same sync, same jid"
    );
    assert_eq!(
        app.sim.mirror_starts(31),
        1,
        "the sync was not started again"
    );
    assert_eq!(job.attempts, 1);
}

#[tokio::test]
async fn settle_refuses_a_job_that_is_no_longer_running() {
    let app = spawn_app().await;
    let id = app
        .submit("remote_mirror", json!({"repository_id": 1}))
        .await;
    let claimed = app.store.claim(&["remote_mirror"]).await.unwrap().unwrap();
    app.store
        .recover_running(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let err = app
        .store
        .settle(
            &claimed,
            &Transition::Succeeded {
                jid: None,
                trace_id: None,
                result: json!({}),
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&format!("job {id}")), "{err}");
    assert_eq!(app.job(id).await.status, "queued");
}

#[tokio::test]
async fn a_batch_claim_respects_the_overall_and_per_kind_limits() {
    let app = spawn_app().await;
    for repo in 1..=10 {
        app.submit("remote_mirror", json!({"repository_id": repo}))
            .await;
    }
    let got = app
        .store
        .claim_batch_limited(&[("remote_mirror", 5), ("no_such_kind", 5)], 3)
        .await
        .unwrap();
    assert_eq!(got.len(), 3, "the overall limit");
    let got = app
        .store
        .claim_batch_limited(&[("remote_mirror", 2)], 10)
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "the per-kind limit");
    let running = app
        .store
        .list(&codearts_syncd::store::ListFilter {
            kind: None,
            status: Some("running".into()),
            limit: 0,
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 5, "exactly the claimed jobs are running");
    // Attempt rows were opened for every claim.
    for j in &running {
        assert_eq!(app.attempts(j.id).await.len(), 1);
    }
}

#[tokio::test]
async fn a_batch_settle_writes_each_outcome_and_refuses_lost_jobs() {
    let app = spawn_app().await;
    let a = app
        .submit("remote_mirror", json!({"repository_id": 1}))
        .await;
    let b = app
        .submit("remote_mirror", json!({"repository_id": 2}))
        .await;
    let claimed = app
        .store
        .claim_batch(&[("remote_mirror", 2)])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let job_a = claimed.iter().find(|j| j.id == a).unwrap().clone();
    let job_b = claimed.iter().find(|j| j.id == b).unwrap().clone();
    // b is taken away (as start-up recovery of another process would) before the batch lands.
    app.store
        .settle(&job_b, &Transition::Interrupted)
        .await
        .unwrap();
    let results = app
        .store
        .settle_many(&[
            (
                job_a.clone(),
                Transition::Retry {
                    error: codearts_syncd::store::ErrorInfo {
                        http_status: Some(503),
                        error_code: Some("CH.00503".into()),
                        error_msg: "busy".into(),
                        trace_id: None,
                    },
                    next_run_at: 0,
                    delay_ms: 1234,
                },
            ),
            (
                job_b.clone(),
                Transition::Succeeded {
                    jid: Some("j".into()),
                    trace_id: None,
                    result: json!({}),
                },
            ),
        ])
        .await;
    assert!(results[0].is_ok());
    assert!(results[1]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains(&format!("job {b}")));
    let row_a = app.job(a).await;
    assert_eq!(row_a.status, "queued");
    assert_eq!(row_a.error_code.as_deref(), Some("CH.00503"));
    assert_eq!(row_a.http_status, Some(503));
    let attempt = &app.attempts(a).await[0];
    assert_eq!(attempt.outcome.as_deref(), Some("retry"));
    assert_eq!(attempt.retry_delay_ms, Some(1234));
    assert_eq!(attempt.error_msg.as_deref(), Some("busy"));
    let row_b = app.job(b).await;
    assert_eq!(row_b.status, "queued", "the lost job was not overwritten");
    assert!(row_b.jid.is_none());
    assert_eq!(
        app.attempts(b).await[0].outcome.as_deref(),
        Some("interrupted")
    );
}

#[tokio::test]
async fn a_settle_that_fails_part_way_writes_nothing_and_the_store_stays_usable() {
    let app = spawn_app().await;
    let ids = [
        app.submit("remote_mirror", json!({"repository_id": 1}))
            .await,
        app.submit("remote_mirror", json!({"repository_id": 2}))
            .await,
    ];
    let claimed = app
        .store
        .claim_batch(&[("remote_mirror", 2)])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let done = |j: &codearts_syncd::store::JobRow| {
        (
            j.clone(),
            Transition::Succeeded {
                jid: Some(format!("jid-{}", j.id)),
                trace_id: None,
                result: json!({}),
            },
        )
    };
    let batch: Vec<_> = claimed.iter().map(done).collect();
    // The attempts' half of the settle fails, as a full disk would fail it.
    let raw = app.raw_db().await;
    let (add, drop): (&[&str], &[&str]) = if support::postgres() {
        (
            &[
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'database or disk is full (test)'; END $$",
                "CREATE TRIGGER refuse BEFORE UPDATE ON attempts \
                 FOR EACH ROW EXECUTE FUNCTION refuse()",
            ],
            &["DROP TRIGGER refuse ON attempts", "DROP FUNCTION refuse()"],
        )
    } else {
        (
            &["CREATE TRIGGER refuse BEFORE UPDATE ON attempts \
               BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END"],
            &["DROP TRIGGER refuse"],
        )
    };
    for sql in add {
        sqlx::query(*sql).execute(&raw).await.unwrap();
    }
    let results = app.store.settle_many(&batch).await;
    for r in &results {
        let e = r.as_ref().expect_err("the settle failed");
        assert!(e.to_string().contains("full (test)"), "{e}");
        assert!(e.is_transient(), "a full disk is passing: {e}");
    }
    // Nothing of it was written: both jobs still running, their attempts open.
    for id in ids {
        let job = app.job(id).await;
        assert_eq!(job.status, "running", "{job:?}");
        assert!(job.jid.is_none(), "{job:?}");
        let attempts = app.attempts(id).await;
        assert_eq!(attempts.len(), 1);
        assert!(attempts[0].finished_at.is_none(), "{attempts:?}");
    }
    for sql in drop {
        sqlx::query(*sql).execute(&raw).await.unwrap();
    }
    raw.close().await;
    // The store takes writes again at once: no connection was left inside the failed
    // transaction holding the write lock. The same outcomes, retried, are written whole.
    let again = tokio::time::timeout(Duration::from_secs(3), app.store.settle_many(&batch))
        .await
        .expect("a write after the failed settle does not wait for a lock");
    assert!(again.iter().all(|r| r.is_ok()), "{again:?}");
    for _ in 0..8 {
        let id = app
            .submit("remote_mirror", json!({"repository_id": 3}))
            .await;
        let job = app
            .store
            .claim_batch(&[("remote_mirror", 1)])
            .await
            .unwrap();
        assert_eq!(job.len(), 1, "job {id} claimable");
        app.store
            .settle_many(&[done(&job[0])])
            .await
            .pop()
            .unwrap()
            .unwrap();
    }
    for id in ids {
        let job = app.job(id).await;
        assert_eq!(job.status, "succeeded");
        assert_eq!(job.jid.as_deref(), Some(format!("jid-{id}").as_str()));
        assert_eq!(
            app.attempts(id).await[0].outcome.as_deref(),
            Some("succeeded")
        );
    }
}

#[tokio::test]
async fn two_claimers_never_take_the_same_job() {
    let app = spawn_app().await;
    for repo in 1..=40 {
        app.submit("remote_mirror", json!({"repository_id": repo}))
            .await;
    }
    let mut handles = Vec::new();
    for _ in 0..4 {
        let store = app.store.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = store.claim(&["remote_mirror"]).await.unwrap() {
                got.push(j.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, 40);
    assert_eq!(all.len(), 40, "a job was claimed twice");
    assert!(app.store.claim(&["remote_mirror"]).await.unwrap().is_none());
}
