//! The IAM token route, and what the Repo routes make of tokens: missing, unknown, expired,
//! past their lifetime, or not project-scoped.

use super::*;

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
