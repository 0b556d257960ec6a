//! The control routes under `/__sim/`.

use super::*;

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
