//! The full log output of a run, at the most verbose level, contains no password, secret key or
//! token. This binary holds a single test because it installs the global log subscriber.

mod support;

use std::time::Duration;

use base64::Engine as _;
use codearts_syncd::sim::{Fault, Route};
use serde_json::json;
use support::{spawn_app, UPSTREAM_PASSWORD};

#[tokio::test]
async fn log_output_contains_no_password_secret_or_token() {
    let capture = support::capture_all_logs();

    let mut app = spawn_app().await;
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(3),
        status: Some(500),
        times: 1,
        ..Fault::default()
    });
    let ok = app
        .submit(
            "remote_mirror",
            json!({"repository_id": 1, "credential": "upstream"}),
        )
        .await;
    let retried = app
        .submit(
            "remote_mirror",
            json!({"repository_id": 3, "credential": "upstream"}),
        )
        .await;
    let missing = app
        .submit("remote_mirror", json!({"repository_id": 404404}))
        .await;
    app.start();
    for id in [ok, retried, missing] {
        app.wait_final(id, Duration::from_secs(20)).await;
    }
    // A token that expires mid-run, and a rejected submission.
    app.sim.expire_tokens();
    let after = app
        .submit(
            "remote_mirror",
            json!({"repository_id": 2, "credential": "upstream"}),
        )
        .await;
    app.wait_final(after, Duration::from_secs(20)).await;
    app.submit_raw("remote_mirror", json!({"repository_id": "x"}), None)
        .await;
    app.stop().await;

    let logs = String::from_utf8(capture.contents()).unwrap();
    assert!(
        logs.lines().count() > 20,
        "the test captured the run's logs"
    );
    assert!(
        logs.contains("\"id\":") && logs.contains("remote_mirror"),
        "job lines carry id and kind"
    );

    let b64 = base64::engine::general_purpose::STANDARD;
    let mut secrets = vec![
        app.sim_cfg.password.clone(),
        UPSTREAM_PASSWORD.to_string(),
        b64.encode(UPSTREAM_PASSWORD),
    ];
    let tokens = app.sim.issued_tokens();
    assert_eq!(tokens.len(), 2, "a token and one refresh were issued");
    secrets.extend(tokens);
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret appears in the logs: {}…",
            &s[..4]
        );
    }
}
