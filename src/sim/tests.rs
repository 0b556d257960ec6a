//! Behaviour of the simulator as seen over HTTP.

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const JSON_UTF8: &str = "application/json;charset=utf-8";

fn fast_config() -> SimConfig {
    SimConfig {
        sync_duration: Duration::from_millis(150),
        ..SimConfig::default()
    }
}

async fn start(cfg: SimConfig) -> (Simulator, String) {
    let sim = Simulator::new(cfg);
    let addr = sim
        .spawn("127.0.0.1:0".parse().expect("loopback address"))
        .await
        .expect("bind simulator");
    (sim, format!("http://{addr}"))
}

fn token_request(user: &str, password: &str, domain: &str, scope: Value) -> Value {
    json!({
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": { "domain": { "name": domain }, "name": user, "password": password }
                }
            },
            "scope": scope
        }
    })
}

fn default_token_request() -> Value {
    token_request(
        "demo-user",
        "demo-password",
        "demo-account",
        json!({ "project": { "id": "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e" } }),
    )
}

async fn post_token(client: &reqwest::Client, base: &str, body: &Value) -> reqwest::Response {
    client
        .post(format!("{base}/v3/auth/tokens"))
        .header("content-type", JSON_UTF8)
        .body(body.to_string())
        .send()
        .await
        .expect("token request")
}

async fn get_token(client: &reqwest::Client, base: &str) -> String {
    let resp = post_token(client, base, &default_token_request()).await;
    assert_eq!(resp.status(), 201);
    resp.headers()
        .get("x-subject-token")
        .expect("X-Subject-Token header")
        .to_str()
        .expect("ascii token")
        .to_string()
}

async fn start_mirror(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    repo: &str,
    body: &Value,
) -> reqwest::Response {
    let mut req = client
        .post(format!("{base}/v4/repositories/{repo}/remote-mirror"))
        .json(body);
    if let Some(token) = token {
        req = req.header("x-auth-token", token);
    }
    req.send().await.expect("start request")
}

async fn show_mirror(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    repo: &str,
) -> reqwest::Response {
    let mut req = client
        .get(format!("{base}/v4/repositories/{repo}/remote-mirror"))
        .header("content-type", "application/json");
    if let Some(token) = token {
        req = req.header("x-auth-token", token);
    }
    req.send().await.expect("show request")
}

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

fn ts(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().expect("timestamp string")).expect("ISO-8601 time")
}

fn documented_401() -> Value {
    json!({ "error_code": "DEV.00000003", "error_msg": "Authentication information expired." })
}

#[tokio::test]
async fn iam_token_is_issued_with_201_subject_token_header_and_expiry() {
    let (_sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let before = Utc::now();
    let resp = post_token(&client, &base, &default_token_request()).await;
    assert_eq!(resp.status(), 201);
    let token = resp.headers()["x-subject-token"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(token.starts_with("MII") && token.len() > 200, "{token}");
    let body = json_of(resp).await;
    let t = &body["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["project"]["id"], "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e");
    assert_eq!(t["project"]["name"], "ap-southeast-3");
    assert_eq!(t["user"]["name"], "demo-user");
    assert_eq!(t["user"]["domain"]["name"], "demo-account");
    assert!(t["roles"].is_array() && t["catalog"].is_array());
    // `YYYY-MM-DDTHH:MM:SS.ffffffZ`, 24 h ahead by default.
    let expires = t["expires_at"].as_str().expect("expires_at");
    assert_eq!(expires.len(), 27, "{expires}");
    assert!(expires.ends_with('Z'));
    let expires = ts(&t["expires_at"]).with_timezone(&Utc);
    let ahead = expires - before;
    assert!(
        ahead > chrono::TimeDelta::hours(23)
            && ahead <= chrono::TimeDelta::hours(24) + chrono::TimeDelta::seconds(5)
    );
    assert!(ts(&t["issued_at"]).with_timezone(&Utc) >= before - chrono::TimeDelta::seconds(1));
}

#[tokio::test]
async fn iam_token_accepts_plain_json_and_project_name_scope_and_honours_nocatalog() {
    let (_sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let body = token_request(
        "demo-user",
        "demo-password",
        "demo-account",
        json!({ "project": { "name": "ap-southeast-3" } }),
    );
    let resp = client
        .post(format!("{base}/v3/auth/tokens?nocatalog=true"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 201);
    let body = json_of(resp).await;
    assert_eq!(body["token"]["project"]["name"], "ap-southeast-3");
    assert!(body["token"].get("catalog").is_none());
}

#[tokio::test]
async fn iam_wrong_password_user_or_account_is_401_iam_0004() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let scope = json!({ "project": { "id": "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e" } });
    for body in [
        token_request("demo-user", "wrong", "demo-account", scope.clone()),
        token_request(
            "someone-else",
            "demo-password",
            "demo-account",
            scope.clone(),
        ),
        token_request("demo-user", "demo-password", "other-account", scope.clone()),
    ] {
        let resp = post_token(&client, &base, &body).await;
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().get("x-subject-token").is_none());
        assert_eq!(
            json_of(resp).await,
            json!({ "error_msg": "The username or password is wrong.", "error_code": "IAM.0004" })
        );
    }
    assert!(sim.issued_tokens().is_empty());
}

#[tokio::test]
async fn iam_malformed_or_unsupported_requests_are_400() {
    let (_sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    // Not JSON.
    let resp = client
        .post(format!("{base}/v3/auth/tokens"))
        .header("content-type", JSON_UTF8)
        .body("{\"auth\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    assert!(json_of(resp).await["error_code"].is_string());
    // No "password" method.
    let mut body = default_token_request();
    body["auth"]["identity"]["methods"] = json!(["token"]);
    assert_eq!(post_token(&client, &base, &body).await.status(), 400);
    // No scope.
    let mut body = default_token_request();
    body["auth"]
        .as_object_mut()
        .expect("object")
        .remove("scope");
    assert_eq!(post_token(&client, &base, &body).await.status(), 400);
    // Unknown project.
    let body = token_request(
        "demo-user",
        "demo-password",
        "demo-account",
        json!({ "project": { "name": "cn-north-4" } }),
    );
    assert_eq!(post_token(&client, &base, &body).await.status(), 400);
    // Not sent as JSON.
    let resp = client
        .post(format!("{base}/v3/auth/tokens"))
        .header("content-type", "text/plain")
        .body(default_token_request().to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn repo_call_without_or_with_unknown_token_is_401_documented_body() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let resp = start_mirror(&client, &base, None, "1", &json!({})).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(json_of(resp).await, documented_401());
    let resp = show_mirror(&client, &base, Some("MIIbogus"), "1").await;
    assert_eq!(resp.status(), 401);
    assert_eq!(json_of(resp).await, documented_401());
    let calls = sim.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[0].auth.as_str(), calls[0].status), ("none", 401));
    assert_eq!((calls[1].auth.as_str(), calls[1].status), ("invalid", 401));
}

#[tokio::test]
async fn expired_token_is_401_dev_00000003_exact_body() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "1")
            .await
            .status(),
        200
    );
    sim.expire_tokens();
    let resp = show_mirror(&client, &base, Some(&token), "1").await;
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.expect("body");
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(body, documented_401());
    // A token issued after the expiry works.
    let fresh = get_token(&client, &base).await;
    assert_eq!(
        show_mirror(&client, &base, Some(&fresh), "1")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn token_past_its_ttl_is_401() {
    let cfg = SimConfig {
        token_ttl: Duration::from_millis(200),
        ..fast_config()
    };
    let (_sim, base) = start(cfg).await;
    let client = reqwest::Client::new();
    let resp = post_token(&client, &base, &default_token_request()).await;
    let token = resp.headers()["x-subject-token"]
        .to_str()
        .expect("ascii")
        .to_string();
    let body = json_of(resp).await;
    let issued = ts(&body["token"]["issued_at"]);
    let expires = ts(&body["token"]["expires_at"]);
    assert_eq!(expires - issued, chrono::TimeDelta::milliseconds(200));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = start_mirror(&client, &base, Some(&token), "1", &json!({})).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(json_of(resp).await, documented_401());
}

#[tokio::test]
async fn domain_scoped_token_is_rejected_by_repo() {
    let (_sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let body = token_request(
        "demo-user",
        "demo-password",
        "demo-account",
        json!({ "domain": { "name": "demo-account" } }),
    );
    let resp = post_token(&client, &base, &body).await;
    assert_eq!(resp.status(), 201);
    let token = resp.headers()["x-subject-token"]
        .to_str()
        .expect("ascii")
        .to_string();
    let body = json_of(resp).await;
    assert!(body["token"].get("project").is_none());
    assert_eq!(body["token"]["domain"]["name"], "demo-account");
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "1")
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn seeded_repositories_have_a_day_old_baseline_or_never_synced_state() {
    let (_sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    let m = json_of(show_mirror(&client, &base, Some(&token), "1").await).await;
    let keys: Vec<&str> = m
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "id",
        "repository_id",
        "update_status",
        "last_update_at",
        "url",
        "last_successful_update_at",
        "number_of_failures",
        "mirroring_enabled",
        "is_private",
        "endpoint_uuid",
        "last_error",
    ] {
        assert!(keys.contains(&key), "missing {key} in {m}");
    }
    assert_eq!(m["repository_id"], 1);
    let last = ts(&m["last_successful_update_at"]).with_timezone(&Utc);
    let age = Utc::now() - last;
    assert!(
        age > chrono::TimeDelta::hours(23) && age < chrono::TimeDelta::hours(26),
        "{age}"
    );
    assert_eq!(m["last_update_at"], m["last_successful_update_at"]);
    assert_eq!(m["number_of_failures"], 0);
    assert_eq!(m["last_error"], "");

    let never = json_of(show_mirror(&client, &base, Some(&token), "10").await).await;
    assert_eq!(never["last_update_at"], "");
    assert_eq!(never["last_successful_update_at"], "");
}

#[tokio::test]
async fn started_sync_shows_in_progress_then_success_with_moved_timestamps() {
    // Long enough that the in-progress look below happens well inside it.
    let cfg = SimConfig {
        sync_duration: Duration::from_millis(600),
        ..SimConfig::default()
    };
    let (sim, base) = start(cfg).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    let before = json_of(show_mirror(&client, &base, Some(&token), "7").await).await;

    let sent = Utc::now();
    let resp = start_mirror(&client, &base, Some(&token), "7", &json!({})).await;
    assert_eq!(resp.status(), 200);
    let body = json_of(resp).await;
    let jid = body["jid"].as_str().expect("jid");
    assert!(uuid::Uuid::parse_str(jid).is_ok(), "{jid}");
    assert_eq!(body.as_object().expect("object").len(), 1);

    let during = json_of(show_mirror(&client, &base, Some(&token), "7").await).await;
    assert!(
        ["scheduled", "started"].contains(&during["update_status"].as_str().unwrap_or("")),
        "{during}"
    );
    assert_eq!(during["last_update_at"], before["last_update_at"]);
    assert_eq!(
        during["last_successful_update_at"],
        before["last_successful_update_at"]
    );

    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = json_of(show_mirror(&client, &base, Some(&token), "7").await).await;
    assert_eq!(after["update_status"], "finished");
    let done = ts(&after["last_successful_update_at"]).with_timezone(&Utc);
    // Shown with milliseconds, so allow for the truncation.
    assert!(
        done >= sent + chrono::TimeDelta::milliseconds(599),
        "{after}"
    );
    assert!(done <= Utc::now(), "{after}");
    assert_eq!(after["last_update_at"], after["last_successful_update_at"]);
    assert_eq!(after["number_of_failures"], 0);
    assert_eq!(after["last_error"], "");
    assert_eq!(sim.mirror_starts(7), 1);
}

#[tokio::test]
async fn failing_repository_reports_failure_fields_after_sync() {
    let (sim, base) = start(fast_config()).await;
    sim.set_repo(
        8,
        RepoBehaviour {
            sync_fails: Some("fatal: could not read Username".to_string()),
            sync_duration: Some(Duration::from_millis(50)),
            ..RepoBehaviour::default()
        },
    );
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    let before = json_of(show_mirror(&client, &base, Some(&token), "8").await).await;
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "8", &json!({}))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let after = json_of(show_mirror(&client, &base, Some(&token), "8").await).await;
    assert_eq!(after["update_status"], "failed");
    assert_eq!(after["last_error"], "fatal: could not read Username");
    assert_eq!(after["number_of_failures"], 1);
    assert!(ts(&after["last_update_at"]) > ts(&before["last_update_at"]));
    assert_eq!(
        after["last_successful_update_at"],
        before["last_successful_update_at"]
    );

    assert_eq!(
        start_mirror(&client, &base, Some(&token), "8", &json!({}))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let again = json_of(show_mirror(&client, &base, Some(&token), "8").await).await;
    assert_eq!(again["number_of_failures"], 2);
    assert_eq!(sim.mirror_starts(8), 2);
}

#[tokio::test]
async fn unknown_or_out_of_range_repository_is_404_documented_body() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    let not_found = json!({ "error_code": "CH.004404", "error_msg": "Repository Not Found" });
    sim.remove_repo(3);
    for repo in ["101", "3", "0", "2147483648", "abc", "-1"] {
        let resp = start_mirror(&client, &base, Some(&token), repo, &json!({})).await;
        assert_eq!(resp.status(), 404, "{repo}");
        assert_eq!(json_of(resp).await, not_found, "{repo}");
        let resp = show_mirror(&client, &base, Some(&token), repo).await;
        assert_eq!(resp.status(), 404, "{repo}");
        assert_eq!(json_of(resp).await, not_found, "{repo}");
    }
    // Made to exist outside the seed range.
    sim.set_repo(2147483647, RepoBehaviour::default());
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "2147483647")
            .await
            .status(),
        200
    );
    assert_eq!(sim.mirror_starts(3), 0);
}

#[tokio::test]
async fn forbidden_repository_is_403_documented_body() {
    let (sim, base) = start(fast_config()).await;
    sim.set_repo(
        4,
        RepoBehaviour {
            forbidden: true,
            ..RepoBehaviour::default()
        },
    );
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    let forbidden = json!({
        "error_code": "CH.004403",
        "error_msg": "Insufficient permissions. Apply for the required permission and try again."
    });
    let resp = start_mirror(&client, &base, Some(&token), "4", &json!({})).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(json_of(resp).await, forbidden);
    let resp = show_mirror(&client, &base, Some(&token), "4").await;
    assert_eq!(resp.status(), 403);
    assert_eq!(json_of(resp).await, forbidden);
    // Auth still comes first.
    assert_eq!(
        start_mirror(&client, &base, None, "4", &json!({}))
            .await
            .status(),
        401
    );
    assert_eq!(sim.mirror_starts(4), 0);
}

#[tokio::test]
async fn start_body_credentials_must_be_base64_and_username_is_recorded_decoded() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    // The vendor example sends empty strings.
    let example = json!({ "username": "", "password": "", "endpoint_uuid": "" });
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "2", &example)
            .await
            .status(),
        200
    );
    let good =
        json!({ "username": "bWlycm9yLWJvdA==", "password": "czNjcjN0", "force_fetch": true });
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "2", &good)
            .await
            .status(),
        200
    );
    for bad in [
        json!({ "username": "mirror-bot" }),
        json!({ "password": "s3cr3t!" }),
        // URL-safe alphabet is not what a standard decoder takes.
        json!({ "username": "_-8=" }),
        json!({ "force_fetch": "yes" }),
        json!([]),
    ] {
        let resp = start_mirror(&client, &base, Some(&token), "2", &bad).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body = json_of(resp).await;
        assert!(body["error_code"].is_string() && body["error_msg"].is_string());
    }
    // A body not sent as JSON.
    let resp = client
        .post(format!("{base}/v4/repositories/2/remote-mirror"))
        .header("x-auth-token", &token)
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);

    let starts: Vec<Call> = sim
        .calls()
        .into_iter()
        .filter(|c| c.route == Route::MirrorStart)
        .collect();
    assert_eq!(starts[0].body_username.as_deref(), Some(""));
    assert_eq!(starts[1].body_username.as_deref(), Some("mirror-bot"));
    assert_eq!(starts[1].repository_id, Some(2));
    assert_eq!(sim.mirror_starts(2), 2);
    let recorded = serde_json::to_string(&sim.calls()).expect("serialize");
    assert!(!recorded.contains("s3cr3t") && !recorded.contains("czNjcjN0"));
    assert!(!recorded.contains(&token));
}

#[tokio::test]
async fn fault_with_times_two_and_status_500_then_normal() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    sim.inject(Fault {
        route: Route::MirrorStart,
        status: Some(500),
        times: 2,
        ..Fault::default()
    });
    for _ in 0..2 {
        let resp = start_mirror(&client, &base, Some(&token), "1", &json!({})).await;
        assert_eq!(resp.status(), 500);
        assert!(resp.headers().get("retry-after").is_none());
        assert_eq!(
            json_of(resp).await,
            json!({ "error_code": "CH.00500", "error_msg": "Internal Server Error" })
        );
    }
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "1", &json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(sim.count(Route::MirrorStart), 3);
    assert_eq!(sim.mirror_starts(1), 1);
    let statuses: Vec<u16> = sim
        .calls()
        .iter()
        .filter(|c| c.route == Route::MirrorStart)
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![500, 500, 200]);
}

#[tokio::test]
async fn fault_is_applied_before_auth_and_uses_documented_bodies() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    sim.inject(Fault {
        route: Route::MirrorShow,
        status: Some(503),
        error_code: Some("CH.00503".to_string()),
        error_msg: Some("Service busy".to_string()),
        times: 1,
        ..Fault::default()
    });
    sim.inject(Fault {
        route: Route::MirrorShow,
        status: Some(404),
        times: 1,
        ..Fault::default()
    });
    let resp = show_mirror(&client, &base, None, "1").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        json_of(resp).await,
        json!({ "error_code": "CH.00503", "error_msg": "Service busy" })
    );
    let resp = show_mirror(&client, &base, None, "1").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        json_of(resp).await,
        json!({ "error_code": "CH.004404", "error_msg": "Repository Not Found" })
    );
    // Faults used up: the real check answers.
    assert_eq!(show_mirror(&client, &base, None, "1").await.status(), 401);
}

#[tokio::test]
async fn fault_retry_after_sets_header() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    sim.inject(Fault {
        route: Route::IamToken,
        status: Some(429),
        retry_after: Some(7),
        times: 1,
        ..Fault::default()
    });
    let resp = post_token(&client, &base, &default_token_request()).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(
        json_of(resp).await,
        json!({ "error_code": "CH.00429", "error_msg": "Too Many Requests" })
    );
    assert_eq!(
        post_token(&client, &base, &default_token_request())
            .await
            .status(),
        201
    );
    assert_eq!(sim.count(Route::IamToken), 2);
    assert_eq!(sim.issued_tokens().len(), 1);
}

#[tokio::test]
async fn fault_with_only_delay_serves_real_response_late() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    sim.inject(Fault {
        route: Route::MirrorShow,
        delay_ms: Some(500),
        times: 1,
        ..Fault::default()
    });
    let t0 = Instant::now();
    let resp = show_mirror(&client, &base, Some(&token), "1").await;
    assert!(t0.elapsed() >= Duration::from_millis(500));
    assert_eq!(resp.status(), 200);
    assert_eq!(json_of(resp).await["repository_id"], 1);
    let t0 = Instant::now();
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "1")
            .await
            .status(),
        200
    );
    assert!(t0.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn fault_reset_gives_client_error_not_response() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    sim.inject(Fault {
        route: Route::MirrorStart,
        reset: true,
        times: 1,
        ..Fault::default()
    });
    let result = client
        .post(format!("{base}/v4/repositories/1/remote-mirror"))
        .header("x-auth-token", &token)
        .json(&json!({}))
        .send()
        .await;
    let err = result.expect_err("a reset must not produce a response");
    assert!(!err.is_status(), "{err:?}");
    // The same client recovers on a new connection.
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "1", &json!({}))
            .await
            .status(),
        200
    );
    let starts: Vec<u16> = sim
        .calls()
        .iter()
        .filter(|c| c.route == Route::MirrorStart)
        .map(|c| c.status)
        .collect();
    assert_eq!(starts, vec![0, 200]);
    assert_eq!(sim.mirror_starts(1), 1);
}

/// Reads one HTTP/1.1 response with a Content-Length body; `None` on EOF or error.
async fn read_response(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&buf[..end + 4 + len]).to_string());
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn keep_alive_connection_serves_many_requests_until_a_reset_fault() {
    let (sim, base) = start(fast_config()).await;
    let addr = base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /v4/repositories/1/remote-mirror HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\r\n"
    );
    for _ in 0..3 {
        stream.write_all(request.as_bytes()).await.expect("write");
        let resp = read_response(&mut stream).await.expect("a response");
        assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
        assert!(resp.contains("DEV.00000003"));
    }
    sim.inject(Fault {
        route: Route::MirrorShow,
        reset: true,
        times: 1,
        ..Fault::default()
    });
    stream.write_all(request.as_bytes()).await.expect("write");
    // Not a single byte of a response: EOF or a reset.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
        .await
        .expect("the server closes the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(sim.count(Route::MirrorShow), 4);
}

#[tokio::test]
async fn fault_malformed_body_is_not_valid_json() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    sim.inject(Fault {
        route: Route::MirrorStart,
        malformed: true,
        times: 1,
        ..Fault::default()
    });
    let resp = start_mirror(&client, &base, Some(&token), "1", &json!({})).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("complete body");
    assert!(!text.is_empty());
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    // A malformed token answer carries a token that does not work.
    sim.inject(Fault {
        route: Route::IamToken,
        malformed: true,
        times: 1,
        ..Fault::default()
    });
    let resp = post_token(&client, &base, &default_token_request()).await;
    assert_eq!(resp.status(), 201);
    let bogus = resp.headers()["x-subject-token"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(serde_json::from_str::<Value>(&resp.text().await.expect("body")).is_err());
    assert_eq!(
        show_mirror(&client, &base, Some(&bogus), "1")
            .await
            .status(),
        401
    );
    assert!(sim.issued_tokens().contains(&bogus));
}

#[tokio::test]
async fn fault_repository_id_filter_applies_only_to_that_repository() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(5),
        status: Some(502),
        times: 0,
        ..Fault::default()
    });
    for _ in 0..3 {
        assert_eq!(
            start_mirror(&client, &base, Some(&token), "5", &json!({}))
                .await
                .status(),
            502
        );
        assert_eq!(
            start_mirror(&client, &base, Some(&token), "6", &json!({}))
                .await
                .status(),
            200
        );
    }
    // Other routes on the same repository are untouched.
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "5")
            .await
            .status(),
        200
    );
    sim.clear_faults();
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "5", &json!({}))
            .await
            .status(),
        200
    );
    assert_eq!((sim.mirror_starts(5), sim.mirror_starts(6)), (1, 3));
}

#[tokio::test]
async fn control_routes_drive_the_simulator() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{base}/__sim/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(health.status(), 200);
    assert_eq!(json_of(health).await, json!({ "status": "ok" }));

    // Faults: one object or an array.
    let resp = client
        .post(format!("{base}/__sim/faults"))
        .json(&json!([
            { "route": "mirror_show", "status": 500, "times": 1 },
            { "route": "mirror_start", "repository_id": 9, "status": 429, "retry_after": 3 }
        ]))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(json_of(resp).await["queued"], 2);
    let resp = client
        .post(format!("{base}/__sim/faults"))
        .json(&json!({ "route": "iam_token", "status": 1000 }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);

    let token = get_token(&client, &base).await;
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "1")
            .await
            .status(),
        500
    );
    let resp = start_mirror(&client, &base, Some(&token), "9", &json!({})).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    let cleared = client
        .delete(format!("{base}/__sim/faults"))
        .send()
        .await
        .expect("send");
    assert_eq!(cleared.status(), 204);
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "9", &json!({}))
            .await
            .status(),
        200
    );

    // Repositories.
    let resp = client
        .put(format!("{base}/__sim/repos/4242"))
        .json(&json!({ "forbidden": true }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 204);
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "4242")
            .await
            .status(),
        403
    );
    let resp = client
        .put(format!("{base}/__sim/repos/4242"))
        .json(&json!({ "sync_fails": "remote hung up", "sync_duration_ms": 10 }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 204);
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "4242", &json!({}))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    let m = json_of(show_mirror(&client, &base, Some(&token), "4242").await).await;
    assert_eq!(m["last_error"], "remote hung up");
    let resp = client
        .delete(format!("{base}/__sim/repos/4242"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 204);
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "4242")
            .await
            .status(),
        404
    );

    // Token expiry.
    let resp = client
        .post(format!("{base}/__sim/expire-tokens"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 204);
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "1")
            .await
            .status(),
        401
    );

    // Calls: control routes are not recorded; API calls are, without tokens.
    let calls = client
        .get(format!("{base}/__sim/calls"))
        .send()
        .await
        .expect("send");
    assert_eq!(calls.status(), 200);
    let text = calls.text().await.expect("body");
    assert!(!text.contains(&token));
    let calls: Value = serde_json::from_str(&text).expect("JSON");
    let calls = calls.as_array().expect("array");
    assert_eq!(calls.len(), sim.calls().len());
    assert!(calls
        .iter()
        .all(|c| !c["path"].as_str().unwrap_or("").starts_with("/__sim")));
    assert_eq!(calls[0]["route"], "iam_token");
    assert_eq!(calls[0]["status"], 201);
    assert_eq!(calls[1]["route"], "mirror_show");
    assert_eq!(calls[1]["status"], 500);
    assert_eq!(calls[1]["auth"], "token");
    assert_eq!(calls[1]["repository_id"], 1);
    assert_eq!(calls.last().expect("a call")["auth"], "invalid");
}

#[tokio::test]
async fn unknown_paths_get_a_json_404_and_are_not_recorded() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{base}/v4/nothing"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    assert!(json_of(resp).await["error_code"].is_string());
    assert!(sim.calls().is_empty());
}

#[tokio::test]
async fn shutdown_and_dropping_the_last_handle_stop_the_server() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    assert!(client
        .get(format!("{base}/__sim/health"))
        .send()
        .await
        .is_ok());
    sim.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::new();
    assert!(fresh
        .get(format!("{base}/__sim/health"))
        .send()
        .await
        .is_err());

    let (sim, base) = start(fast_config()).await;
    let other = sim.clone();
    drop(sim);
    assert!(fresh
        .get(format!("{base}/__sim/health"))
        .send()
        .await
        .is_ok());
    drop(other);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::new();
    assert!(fresh
        .get(format!("{base}/__sim/health"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn serve_runs_on_a_listener_until_its_shutdown_future_resolves() {
    let sim = Simulator::new(fast_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let sim = sim.clone();
        tokio::spawn(async move {
            sim.serve(listener, async {
                let _ = rx.await;
            })
            .await
        })
    };
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("http://{addr}/__sim/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let _ = tx.send(());
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns")
        .expect("task");
    assert!(result.is_ok());
    let fresh = reqwest::Client::new();
    assert!(fresh
        .get(format!("http://{addr}/__sim/health"))
        .send()
        .await
        .is_err());
}

/// Collects every formatted tracing event, to check what the simulator logs.
struct Capture(std::sync::Arc<std::sync::Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        span.record(&mut Fields(&mut out));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        values.record(&mut Fields(&mut out));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        event.record(&mut Fields(&mut out));
        out.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// Single-threaded so the server's tasks log through this thread's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn debug_log_names_requests_without_tokens_or_passwords() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let _guard = tracing::subscriber::set_default(Capture(log.clone()));
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    let body = json!({ "username": "bWlycm9yLWJvdA==", "password": "czNjcjN0" });
    // Another test's thread may have cached "no subscriber" for the
    // simulator's log call site just before this thread's subscriber was
    // registered; recompute it now that the subscriber is in place.
    tracing::callsite::rebuild_interest_cache();
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "1", &body)
            .await
            .status(),
        200
    );
    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(log.contains("/v4/repositories/1/remote-mirror"), "{log}");
    for secret in sim.issued_tokens() {
        assert!(!log.contains(&secret));
    }
    for secret in ["demo-password", "czNjcjN0", "s3cr3t"] {
        assert!(!log.contains(secret), "{secret} in {log}");
    }
}

/// The simulator must catch a client bug, so it shares no code with the client it stands in
/// front of: no file under `src/sim/` names the `api` module.
#[test]
fn simulator_never_imports_the_client() {
    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src/sim") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sim");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 5, "{files:?}");
    // Built from pieces so that this file does not match itself.
    let needles = [
        ["crate", "::api"].concat(),
        ["codearts_syncd", "::api"].concat(),
        ["super::super", "::api"].concat(),
    ];
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "{} uses {needle}",
                file.display()
            );
        }
    }
}
