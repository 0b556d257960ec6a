//! With AK/SK signing, the full log output of a run of every job kind, at the most verbose
//! level, contains neither the secret key nor a signature. One test per binary: it installs the
//! global log subscriber.

mod support;

use std::time::Duration;

use codearts_syncd::sim::SimConfig;
use serde_json::json;
use support::spawn_app_aksk;

#[tokio::test]
async fn aksk_logs_contain_no_secret_key_or_signature() {
    let capture = support::capture_all_logs();
    let sim = SimConfig {
        audit_records: 50,
        sync_duration: Duration::from_millis(100),
        ..SimConfig::default()
    };
    let sk = sim.secret_key.clone();
    let mut app = spawn_app_aksk(sim, &sk, "").await;
    let repo = app.sim.artifact_repo_ids()[0].clone();
    let ids = [
        app.submit("remote_mirror", json!({"repository_id": 5}))
            .await,
        app.submit("purge_recycle_bin", json!({"dry_run": true}))
            .await,
        app.submit("storage_snapshot", json!({})).await,
        app.submit("audit_mirror", json!({"repos": [repo]})).await,
    ];
    app.start();
    for id in ids {
        let job = app.wait_final(id, Duration::from_secs(20)).await;
        assert_eq!(job.status, "succeeded", "{job:?}");
    }
    app.stop().await;

    let logs = String::from_utf8(capture.contents()).unwrap();
    assert!(
        logs.lines().count() > 20,
        "the test captured the run's logs"
    );
    assert!(!logs.contains(&sk), "the secret key appears in the logs");
    assert!(
        !logs.contains("Signature="),
        "an Authorization header appears in the logs"
    );
}
