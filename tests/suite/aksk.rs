//! AK/SK signing end to end: one job of every kind authenticated by `SDK-HMAC-SHA256` signatures
//! that the simulator verifies as the gateway does; a wrong secret key or another IAM project is
//! refused with 401 and the job fails without retrying.

use crate::support;

use std::time::Duration;

use codearts_syncd::sim::{Route, SimConfig};
use serde_json::json;
use support::{spawn_app_aksk, TestApp};

const WAIT: Duration = Duration::from_secs(30);

async fn app() -> TestApp {
    let sim = SimConfig {
        sync_duration: Duration::from_millis(200),
        audit_records: 300,
        ..SimConfig::default()
    };
    let sk = sim.secret_key.clone();
    spawn_app_aksk(sim, &sk, "").await
}

#[tokio::test]
async fn every_job_kind_runs_with_aksk_signatures() {
    let mut app = app().await;
    let ids = app.sim.artifact_repo_ids();
    let jobs = [
        app.submit("remote_mirror", json!({"repository_id": 7}))
            .await,
        app.submit("purge_recycle_bin", json!({})).await,
        app.submit("storage_snapshot", json!({})).await,
        app.submit("audit_mirror", json!({"repos": [ids[0]]})).await,
    ];
    app.start();
    for id in jobs {
        let job = app.wait_final(id, WAIT).await;
        assert_eq!(job.status, "succeeded", "{job:?}");
        assert_eq!(job.attempts, 1, "{job:?}");
    }
    app.stop().await;

    let calls = app.sim.calls();
    assert_eq!(app.sim.count(Route::IamToken), 0, "no token with AK/SK");
    for route in [
        Route::MirrorStart,
        Route::MirrorShow,
        Route::ArtifactRepoList,
        Route::ArtifactFileTree,
        Route::TrashDelete,
        Route::Storage,
        Route::ArtifactRepoShow,
        Route::StorageTrend,
        Route::Audit,
    ] {
        assert!(
            calls.iter().any(|c| c.route == route),
            "{route:?} was called"
        );
    }
    assert!(
        calls.iter().all(|c| c.auth == "aksk" && c.status == 200),
        "every call verified: {:?}",
        calls.iter().find(|c| c.auth != "aksk" || c.status != 200)
    );
    assert!(app.sim.trash_entries().is_empty());
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused_and_not_retried() {
    let sim = SimConfig::default();
    let mut app = spawn_app_aksk(sim, "not-the-secret-key", "").await;
    let id = app.submit("storage_snapshot", json!({})).await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.attempts, 1);
    assert_eq!(job.http_status, Some(401));
    assert_eq!(job.error_code.as_deref(), Some("APIGW.0301"));
    assert!(
        job.error_msg
            .as_deref()
            .unwrap()
            .contains("verify aksk signature fail"),
        "{job:?}"
    );
    let calls = app.sim.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].auth, "bad_signature");
}

#[tokio::test]
async fn another_iam_project_is_refused() {
    let sim = SimConfig {
        iam_project_id: "ffffffffffffffffffffffffffffffff".into(),
        ..SimConfig::default()
    };
    let sk = sim.secret_key.clone();
    let mut app = spawn_app_aksk(sim, &sk, "").await;
    let id = app.submit("audit_mirror", json!({"repos": ["x"]})).await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.http_status, Some(401));
    assert!(
        job.error_msg.as_deref().unwrap().contains("x-project-id"),
        "{job:?}"
    );
}
