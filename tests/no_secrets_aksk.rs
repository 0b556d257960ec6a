//! With AK/SK signing, the full log output of a run of every job kind, at the most verbose
//! level, contains neither the secret key nor a signature. One test per binary: it installs the
//! global log subscriber.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codearts_syncd::config::LogFormat;
use codearts_syncd::sim::SimConfig;
use serde_json::json;
use support::spawn_app_aksk;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test]
async fn aksk_logs_contain_no_secret_key_or_signature() {
    let capture = Capture::default();
    codearts_syncd::logging::init_with_writer(
        LogFormat::Json,
        tracing_subscriber::EnvFilter::new("trace"),
        capture.clone(),
    );
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

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
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
