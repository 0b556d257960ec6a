//! Webhooks on the HTTP listener: CodeArts Repo (a token header) and GitHub (an HMAC signature)
//! pushes become `remote_mirror` jobs through the routes, committed before the answer.

use crate::support;

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::{spawn_app, with_server, TestApp};

const TOKEN: &str = "hook-token-5f1e9a";
const GH_SECRET: &str = "gh-secret-77c2d0";

/// An app with the listener, both hooks and three routes; returns the base URL.
async fn hook_app(token_header: Option<&str>) -> (TestApp, String) {
    let mut app = spawn_app().await;
    std::fs::write(app.dir.path().join("hook-token"), TOKEN).unwrap();
    std::fs::write(app.dir.path().join("gh-secret"), GH_SECRET).unwrap();
    let header = token_header
        .map(|h| format!("token_header = \"{h}\"\n"))
        .unwrap_or_default();
    let base = with_server(
        &mut app,
        &format!(
            r#"
[server.codearts_repo]
token = {{ file = "hook-token" }}
{header}
[server.github]
secret = {{ file = "gh-secret" }}

[[server.routes]]
repo = "platform/*"
branches = "main"
repository_id = 11

[[server.routes]]
project_id = 4242
repository_id = 12
force_fetch = true

[[server.routes]]
repo = "acme/widgets"
repository_id = 13
credential = "upstream"
"#
        ),
    );
    codearts_syncd::daemon::checks::check_config(&app.cfg).expect("full check");
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

fn codearts_push(path: &str, project_id: u64, git_ref: &str, sha: &str) -> Value {
    json!({
        "object_kind": "push",
        "ref": git_ref,
        "checkout_sha": sha,
        "project_id": project_id,
        "project": {
            "path_with_namespace": path,
            "git_http_url": format!("https://codehub.example.com/{path}.git"),
        },
    })
}

async fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(url).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("listener answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn jobs(app: &TestApp) -> Vec<codearts_syncd::store::JobRow> {
    app.store
        .list(&codearts_syncd::store::ListFilter {
            kind: None,
            status: None,
            limit: 0,
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codearts_repo_pushes_become_jobs_once_and_bad_tokens_are_refused() {
    let (mut app, base) = hook_app(None).await;
    let url = format!("{base}/hooks/codearts-repo");
    let body =
        serde_json::to_vec(&codearts_push("platform/api", 1, "refs/heads/main", "a1b2")).unwrap();

    // Right token: 202, one job for the matching route, run to success.
    let (status, answer) = post(&url, &[("X-Repo-Token", TOKEN)], &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["jobs"][0]["outcome"], "queued", "{answer}");
    let id = answer["jobs"][0]["id"].as_i64().unwrap();
    let job = app.wait_final(id, Duration::from_secs(20)).await;
    assert_eq!(
        (job.status.as_str(), job.source.as_str()),
        ("succeeded", "webhook")
    );
    assert_eq!(job.params, json!({"repository_id": 11}));

    // The same delivery again: no second job.
    let (status, again) = post(&url, &[("X-Repo-Token", TOKEN)], &body).await;
    assert_eq!(status, 202);
    assert_eq!(again["jobs"][0]["outcome"], "duplicate", "{again}");
    assert_eq!(again["jobs"][0]["id"].as_i64(), Some(id));

    // Wrong and missing tokens: 401 and a rejected row holding no body and no header value.
    let before = jobs(&app).await.len();
    let (status, _) = post(&url, &[("X-Repo-Token", "nope")], &body).await;
    assert_eq!(status, 401);
    let (status, _) = post(&url, &[], &body).await;
    assert_eq!(status, 401);
    let all = jobs(&app).await;
    assert_eq!(all.len(), before + 2);
    for j in &all[..2] {
        assert_eq!(
            (j.status.as_str(), j.source.as_str()),
            ("rejected", "webhook")
        );
        assert!(
            j.error_msg.as_deref().unwrap().contains("token")
                || j.error_msg.as_deref().unwrap().contains("header")
        );
        assert!(
            !j.params.to_string().contains("platform/api"),
            "no body kept: {}",
            j.params
        );
        assert!(!j.params.to_string().contains("nope"));
    }

    // A project by id (route 2), a branch the first route does not take, an unknown project.
    let by_id =
        serde_json::to_vec(&codearts_push("other/thing", 4242, "refs/heads/dev", "c3")).unwrap();
    let (status, answer) = post(&url, &[("X-Repo-Token", TOKEN)], &by_id).await;
    assert_eq!(status, 202);
    let id = answer["jobs"][0]["id"].as_i64().unwrap();
    assert_eq!(
        app.job(id).await.params,
        json!({"repository_id": 12, "force_fetch": true})
    );
    for (path, git_ref) in [
        ("platform/api", "refs/heads/dev"),
        ("nobody/knows", "refs/heads/main"),
    ] {
        let b = serde_json::to_vec(&codearts_push(path, 1, git_ref, "d4")).unwrap();
        let (status, answer) = post(&url, &[("X-Repo-Token", TOKEN)], &b).await;
        assert_eq!(status, 202, "{answer}");
        assert!(
            answer["ignored"].as_str().unwrap().contains("no route"),
            "{answer}"
        );
        let row = app.job(answer["id"].as_i64().unwrap()).await;
        assert_eq!(row.status, "ignored");
    }

    // Not a push: ignored. Not JSON, a key twice: 400 naming it.
    let (status, answer) = post(
        &url,
        &[("X-Repo-Token", TOKEN)],
        br#"{"object_kind":"tag_push"}"#,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = post(&url, &[("X-Repo-Token", TOKEN)], b"{not json").await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("not JSON"),
        "{answer}"
    );
    let (status, answer) = post(
        &url,
        &[("X-Repo-Token", TOKEN)],
        br#"{"object_kind":"push","ref":"a","ref":"b"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("duplicate key"),
        "{answer}"
    );
    // Over the body limit: 413.
    let big = vec![b' '; 2 * 1024 * 1024];
    let (status, _) = post(&url, &[("X-Repo-Token", TOKEN)], &big).await;
    assert_eq!(status, 413);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_header_is_configurable() {
    let (mut app, base) = hook_app(Some("X-Gitlab-Token")).await;
    let url = format!("{base}/hooks/codearts-repo");
    let body =
        serde_json::to_vec(&codearts_push("platform/web", 1, "refs/heads/main", "e5")).unwrap();
    let (status, _) = post(&url, &[("X-Repo-Token", TOKEN)], &body).await;
    assert_eq!(status, 401, "the default header is not the configured one");
    let (status, answer) = post(&url, &[("X-Gitlab-Token", TOKEN)], &body).await;
    assert_eq!(status, 202, "{answer}");
    app.stop().await;
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_pushes_are_verified_by_signature() {
    let (mut app, base) = hook_app(None).await;
    let url = format!("{base}/hooks/github");
    let body = serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "after": "f00d",
        "repository": {"full_name": "acme/widgets"},
    }))
    .unwrap();
    let good = sign(GH_SECRET, &body);
    let headers = |sig: &str, event: &'static str| {
        vec![
            ("X-Hub-Signature-256", sig.to_string()),
            ("X-GitHub-Event", event.to_string()),
            (
                "X-GitHub-Delivery",
                "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_string(),
            ),
        ]
    };
    let send = |h: Vec<(&'static str, String)>, b: Vec<u8>| {
        let url = url.clone();
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(&url, &h, &b).await
        }
    };
    let (status, answer) = send(headers(&good, "ping"), body.clone()).await;
    assert_eq!((status, answer["pong"].clone()), (200, json!(true)));
    let (status, answer) = send(headers(&good, "push"), body.clone()).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["jobs"][0]["id"].as_i64().unwrap();
    let job = app.job(id).await;
    assert_eq!(
        job.params,
        json!({"repository_id": 13, "credential": "upstream"})
    );
    assert_eq!(
        job.idempotency_key.as_deref(),
        Some("github:72d3162e-cc78-11e3-81ab-4c9367dc0958:13")
    );
    let (_, again) = send(headers(&good, "push"), body.clone()).await;
    assert_eq!(
        again["jobs"][0]["outcome"], "duplicate",
        "the delivery id dedupes"
    );
    // A tampered body, a wrong secret: 401.
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let (status, _) = send(headers(&good, "push"), tampered).await;
    assert_eq!(status, 401);
    let (status, _) = send(headers(&sign("wrong", &body), "push"), body.clone()).await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_commit_answers_503_and_keeps_nothing_half_done() {
    let (mut app, base) = hook_app(None).await;
    app.fill_store().await;
    let url = format!("{base}/hooks/codearts-repo");
    let body =
        serde_json::to_vec(&codearts_push("platform/api", 1, "refs/heads/main", "99")).unwrap();
    let resp = reqwest::Client::new()
        .post(&url)
        .header("X-Repo-Token", TOKEN)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert!(
        jobs(&app).await.is_empty(),
        "nothing stored, nothing answered 202"
    );
    app.unfill_store().await;
    let (status, answer) = post(&url, &[("X-Repo-Token", TOKEN)], &body).await;
    assert_eq!(status, 202, "the retry goes through: {answer}");
    app.stop().await;
}
