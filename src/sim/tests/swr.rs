//! The SWR image-sync routes: the tag listing's shape and paging (`Content-Range` only with both
//! `limit` and `offset`), a manual sync's jobs moving to their outcome, `existed`, the `$` for
//! `/` in repository names, and the error bodies.

use super::*;

async fn swr_get(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
) -> reqwest::Response {
    client
        .get(format!("{base}{path}"))
        .header("x-auth-token", token)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("SWR request")
}

async fn swr_sync(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    repo: &str,
    body: &Value,
) -> reqwest::Response {
    client
        .post(format!(
            "{base}/v2/manage/namespaces/demo-team/repos/{repo}/sync_images"
        ))
        .header("x-auth-token", token)
        .json(body)
        .send()
        .await
        .expect("sync request")
}

#[tokio::test]
async fn tags_are_a_bare_array_paged_with_content_range() {
    let (_sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    let resp = swr_get(
        &client,
        &base,
        &token,
        "/v2/manage/namespaces/demo-team/repos/api/tags?limit=100&offset=200",
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-range"], "200-50/250");
    let page = json_of(resp).await;
    let items = page.as_array().expect("a bare array");
    assert_eq!(items.len(), 50);
    assert_eq!(items[0]["Tag"], "v1.200");
    // `Content-Range` only when both `limit` and `offset` were sent, as SWR's page says.
    for query in ["", "?limit=10", "?offset=10"] {
        let resp = swr_get(
            &client,
            &base,
            &token,
            &format!("/v2/manage/namespaces/demo-team/repos/api/tags{query}"),
        )
        .await;
        assert_eq!(resp.status(), 200, "{query}");
        assert!(
            resp.headers().get("content-range").is_none(),
            "{query}: {:?}",
            resp.headers()
        );
        assert!(
            !json_of(resp).await.as_array().unwrap().is_empty(),
            "{query}"
        );
    }
    let resp = swr_get(
        &client,
        &base,
        &token,
        "/v2/manage/namespaces/demo-team/repos/api/tags?offset=10&limit=10",
    )
    .await;
    assert_eq!(resp.headers()["content-range"], "10-10/250");
    // A repository name's `/` arrives as `$`; a %2F names nothing.
    let ok = swr_get(
        &client,
        &base,
        &token,
        "/v2/manage/namespaces/demo-team/repos/tools%24builder/tags",
    )
    .await;
    assert_eq!(ok.status(), 200);
    let slash = swr_get(
        &client,
        &base,
        &token,
        "/v2/manage/namespaces/demo-team/repos/tools%2Fbuilder/tags",
    )
    .await;
    assert_eq!(slash.status(), 404);
    assert_eq!(json_of(slash).await["error_code"], "SVCSTG.SWR.4041002");
    let bad = swr_get(
        &client,
        &base,
        &token,
        "/v2/manage/namespaces/demo-team/repos/web/tags?limit=abc",
    )
    .await;
    assert_eq!(bad.status(), 400);
    let none = client
        .get(format!(
            "{base}/v2/manage/namespaces/demo-team/repos/web/tags"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(json_of(none).await["error_code"], "APIGW.0301");
}

#[tokio::test]
async fn a_manual_sync_makes_one_job_per_tag_that_ends_in_its_outcome() {
    let (sim, base) = start(fast_config()).await;
    sim.swr_tag_outcome("demo-team", "web", "v2.0.0", Some("timeout"));
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    let body = json!({"imageTag": ["v1.0.0", "v1.0.1", "v2.0.0"], "override": false,
                      "remoteNamespace": "demo-team-dr", "remoteRegionId": "ap-southeast-1"});
    let resp = swr_sync(&client, &base, &token, "web", &body).await;
    assert_eq!(resp.status(), 200);
    assert!(json_of(resp).await.is_array(), "a bare array");

    let jobs_path = "/v2/manage/namespaces/demo-team/repos/web/sync_job?filter=limit%3A%3A10%7Coffset%3A%3A0%7Corder%3A%3Adesc";
    let deadline = Instant::now() + Duration::from_secs(10);
    let jobs = loop {
        let resp = swr_get(&client, &base, &token, jobs_path).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-range"], "0-3/3");
        let jobs = json_of(resp).await;
        let statuses: Vec<&str> = jobs
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["status"].as_str().unwrap())
            .collect();
        for s in &statuses {
            assert!(
                ["waiting", "running", "success", "existed", "timeout"].contains(s),
                "{s}"
            );
        }
        if statuses.iter().all(|s| *s != "waiting" && *s != "running") {
            break jobs;
        }
        assert!(Instant::now() < deadline, "{jobs}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Newest first; one per tag; the outcome of each.
    let by_tag = |t: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["tag"] == t)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        by_tag("v1.0.0")["status"],
        "existed",
        "seeded at the target"
    );
    assert_eq!(by_tag("v1.0.1")["status"], "success");
    assert_eq!(by_tag("v2.0.0")["status"], "timeout");
    let ids: Vec<i64> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "desc: {ids:?}");
    for key in [
        "remoteRegionId",
        "remoteNamespace",
        "createdAt",
        "updatedAt",
        "repoName",
    ] {
        assert!(by_tag("v1.0.1").get(key).is_some(), "{key}");
    }
    // With override, a tag at the target is copied again.
    let again = json!({"imageTag": ["v1.0.0"], "override": true,
                       "remoteNamespace": "demo-team-dr", "remoteRegionId": "ap-southeast-1"});
    assert_eq!(
        swr_sync(&client, &base, &token, "web", &again)
            .await
            .status(),
        200
    );
    assert_eq!(sim.swr_sync_jobs("demo-team", "web"), 4);
}

#[tokio::test]
async fn a_bad_sync_body_or_filter_is_400_and_an_unknown_tag_404() {
    let (_sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    for body in [
        json!({"imageTag": [], "remoteNamespace": "x", "remoteRegionId": "ap-southeast-1"}),
        json!({"imageTag": ["v1.0.0"], "remoteNamespace": "x", "remoteRegionId": "mars-1"}),
        json!({"imageTag": ["v1.0.0"], "remoteRegionId": "ap-southeast-1"}),
        json!({"image_tag": ["v1.0.0"], "remoteNamespace": "x", "remoteRegionId": "ap-southeast-1"}),
    ] {
        let resp = swr_sync(&client, &base, &token, "web", &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(json_of(resp).await["error_code"], "SVCSTG.SWR.4001002");
    }
    let unknown =
        json!({"imageTag": ["v9"], "remoteNamespace": "x", "remoteRegionId": "ap-southeast-1"});
    let resp = swr_sync(&client, &base, &token, "web", &unknown).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json_of(resp).await["error_code"], "SVCSTG.SWR.4041003");
    for q in [
        "",
        "?filter=limit%3A%3A10",
        "?filter=limit%3A%3A10%7Coffset%3A%3A0%7Corder%3A%3Aup",
    ] {
        let resp = swr_get(
            &client,
            &base,
            &token,
            &format!("/v2/manage/namespaces/demo-team/repos/web/sync_job{q}"),
        )
        .await;
        assert_eq!(resp.status(), 400, "{q}");
    }
}
