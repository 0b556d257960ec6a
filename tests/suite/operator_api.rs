//! The operator API: bearer token, the routes `openapi.json` documents, answers like the CLI's.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{spawn_app, with_server, TestApp};

const TOKEN: &str = "operator-token-19af";

async fn api_app(with_token: bool) -> (TestApp, String) {
    let mut app = spawn_app().await;
    std::fs::write(app.dir.path().join("api-token"), TOKEN).unwrap();
    let token = if with_token {
        "api_token = { file = \"api-token\" }"
    } else {
        ""
    };
    let base = with_server(&mut app, token);
    app.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "listener never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (app, base)
}

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = match method {
        "get" => client.get(url),
        "post" => client.post(url),
        other => panic!("method {other}"),
    };
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_token_and_answers_like_the_cli() {
    let (mut app, base) = api_app(true).await;
    // No token, a wrong one: 401.
    assert_eq!(
        call("get", &format!("{base}/jobs"), None, None).await.0,
        401
    );
    assert_eq!(
        call("get", &format!("{base}/jobs"), Some("wrong"), None)
            .await
            .0,
        401
    );

    // POST /jobs like enqueue: good parameters are queued, bad ones rejected and recorded.
    let (status, ok) = call(
        "post",
        &format!("{base}/jobs"),
        Some(TOKEN),
        Some(json!({"kind": "remote_mirror", "params": {"repository_id": 5}, "key": "api-1"})),
    )
    .await;
    assert_eq!(
        (status, ok["outcome"].as_str()),
        (202, Some("queued")),
        "{ok}"
    );
    let id = ok["id"].as_i64().unwrap();
    let (status, dup) = call(
        "post",
        &format!("{base}/jobs"),
        Some(TOKEN),
        Some(json!({"kind": "remote_mirror", "params": {"repository_id": 5}, "key": "api-1"})),
    )
    .await;
    assert_eq!(
        (status, dup["outcome"].as_str(), dup["id"].as_i64()),
        (202, Some("duplicate"), Some(id))
    );
    let (status, bad) = call(
        "post",
        &format!("{base}/jobs"),
        Some(TOKEN),
        Some(json!({"kind": "remote_mirror", "params": {"repository_id": "seven"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        bad["error"].as_str().unwrap().contains("repository_id"),
        "{bad}"
    );
    let rejected = app.job(bad["id"].as_i64().unwrap()).await;
    assert_eq!(rejected.status, "rejected");

    // GET /jobs/{id} as jobs show --json, GET /jobs as jobs list --json.
    app.wait_final(id, Duration::from_secs(20)).await;
    let (status, job) = call("get", &format!("{base}/jobs/{id}"), Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(job["status"], "succeeded");
    assert!(
        job["attempt_log"].as_array().is_some_and(|a| a.len() == 1),
        "{job}"
    );
    let cli = app.cli(&["jobs", "show", &id.to_string(), "--json"]);
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(job, cli, "the API answers what jobs show --json prints");
    let (status, list) = call(
        "get",
        &format!("{base}/jobs?status=rejected"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        call(
            "get",
            &format!("{base}/jobs?status=bogus"),
            Some(TOKEN),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call("get", &format!("{base}/jobs/999999"), Some(TOKEN), None)
            .await
            .0,
        404
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_exactly_the_routes_the_router_serves() {
    let doc: Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    let mut documented = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut routes: Vec<(String, String)> = codearts_syncd::daemon::operator::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(
        documented, routes,
        "openapi.json and the router's route list differ"
    );
    // Each documented route is served (authorised: not 404/405), and absent without a token.
    let (mut app, base) = api_app(true).await;
    let (mut bare, bare_base) = api_app(false).await;
    for (method, path) in &routes {
        let concrete = path.replace("{id}", "1");
        let body = (method == "post").then(|| json!({"kind": "storage_snapshot"}));
        let (status, answer) = call(
            method,
            &format!("{base}{concrete}"),
            Some(TOKEN),
            body.clone(),
        )
        .await;
        assert!(
            status != 405 && !(status == 404 && answer.get("error").is_none()),
            "{method} {path}: {status} {answer}"
        );
        let (status, _) = call(method, &format!("{bare_base}{concrete}"), Some(TOKEN), body).await;
        assert!(
            status == 404 || status == 405,
            "{method} {path} without api_token: {status}"
        );
    }
    app.stop().await;
    bare.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_cancels_and_replays_like_the_cli() {
    use codearts_syncd::sim::{Fault, Route};
    let (mut app, base) = api_app(true).await;
    // A job that fails (repository 901 does not exist: 404), and one whose start hangs.
    let failed = app
        .submit("remote_mirror", json!({"repository_id": 901}))
        .await;
    assert_eq!(
        app.wait_final(failed, Duration::from_secs(20)).await.status,
        "failed"
    );
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(9),
        delay_ms: Some(20_000),
        times: 1,
        ..Fault::default()
    });
    let hung = app
        .submit("remote_mirror", json!({"repository_id": 9}))
        .await;
    app.wait_for(hung, Duration::from_secs(20), |j| j.status == "running")
        .await;

    // Cancel: the running job, again (idempotent), a final job (409), no job (404).
    let url = |p: String| format!("{base}{p}");
    let (status, body) = call(
        "post",
        &url(format!("/jobs/{hung}/cancel")),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (status, body["outcome"].as_str(), body["was"].as_str()),
        (200, Some("cancelled"), Some("running")),
        "{body}"
    );
    let job = app.wait_final(hung, Duration::from_secs(5)).await;
    assert_eq!(job.status, "cancelled");
    assert!(job
        .error_msg
        .unwrap()
        .contains("cancelled by the operator API"));
    let (status, body) = call(
        "post",
        &url(format!("/jobs/{hung}/cancel")),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("already_cancelled"))
    );
    let (status, body) = call(
        "post",
        &url(format!("/jobs/{failed}/cancel")),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        body["error"].as_str().unwrap().contains("already failed"),
        "{body}"
    );
    assert_eq!(
        call("post", &url("/jobs/99999/cancel".into()), Some(TOKEN), None)
            .await
            .0,
        404
    );
    assert_eq!(
        call("post", &url(format!("/jobs/{failed}/cancel")), None, None)
            .await
            .0,
        401
    );

    // Replay one: the same answer as `jobs retry ID --json`.
    let (status, body) = call(
        "post",
        &url(format!("/jobs/{failed}/retry")),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let new = body["new_id"].as_i64().unwrap();
    assert_eq!(app.job(new).await.retry_of, Some(failed));
    app.wait_final(new, Duration::from_secs(20)).await;

    // Bulk: the cancelled job is taken; the failed one already has a replay, and the replay
    // is a replay: neither is.
    let (status, body) = call(
        "post",
        &url("/jobs/retry".into()),
        Some(TOKEN),
        Some(json!({"status": "cancelled", "limit": 5})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let replayed = body["replayed"].as_array().unwrap();
    assert_eq!(replayed.len(), 1, "{body}");
    assert_eq!(replayed[0]["id"], hung);
    let (status, body) = call(
        "post",
        &url("/jobs/retry".into()),
        Some(TOKEN),
        Some(json!({"limit": 5})),
    )
    .await;
    assert_eq!(
        (status, body["replayed"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{body}"
    );
    // A bad filter names itself.
    let (status, body) = call(
        "post",
        &url("/jobs/retry".into()),
        Some(TOKEN),
        Some(json!({"status": "rejected", "limit": 5})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("rejected"),
        "{body}"
    );
    let (status, _) = call(
        "post",
        &url("/jobs/retry".into()),
        Some(TOKEN),
        Some(json!({"status": "failed"})),
    )
    .await;
    assert_eq!(status, 400, "limit is required");
    app.stop().await;
}
