//! The Repo remote-mirror routes: seeded mirror state, started syncs that succeed or fail,
//! unknown and forbidden repositories, the start body's credentials.

use super::*;

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
