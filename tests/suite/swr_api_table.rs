//! Every SWR call the daemon makes, checked against the official SDK (`huaweicloudsdkswr`, v2,
//! `swr_client.py` and its request models): method, path template, query names and body field
//! names. The real client is driven against the simulator, which records what arrives; each
//! recorded request must match its row, and every SWR request a job sends must match a row.
//!
//! Rows are grouped by the kind that makes the call; a new SWR call adds a row here.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use codearts_syncd::api::swr::ManualSync;
use codearts_syncd::api::Client;
use codearts_syncd::sim::swr::SwrRequest;
use codearts_syncd::sim::{Route, SimConfig};
use serde_json::json;
use support::spawn_app_with;

/// One SWR operation as the SDK defines it, and what the daemon sends of it.
struct Row {
    /// `kind.call`: the job kind that makes the call, and what for.
    name: &'static str,
    /// The SDK method (`SwrClient.<method>`) whose definition this row copies.
    sdk_method: &'static str,
    method: &'static str,
    /// The SDK's `resource_path`.
    path: &'static str,
    /// Every query parameter the SDK's request model knows.
    sdk_query: &'static [&'static str],
    /// The ones the daemon sends.
    query: &'static [&'static str],
    /// The body fields (JSON names, from the body model's `attribute_map`) the daemon sends.
    body: &'static [&'static str],
    /// Of those, the ones the SDK requires.
    body_required: &'static [&'static str],
    /// The simulator route that serves it.
    route: Route,
}

/// The table. From huaweicloud-sdk-swr/huaweicloudsdkswr/v2/swr_client.py (`_…_http_info`) and
/// model/{list_repository_tags_request, create_manual_image_sync_repo_request_body,
/// show_sync_job_request}.py.
const SWR_CALLS: &[Row] = &[
    // swr_image_sync
    Row {
        name: "swr_image_sync.list_tags",
        sdk_method: "list_repository_tags",
        method: "GET",
        path: "/v2/manage/namespaces/{namespace}/repos/{repository}/tags",
        sdk_query: &[
            "limit",
            "offset",
            "order_column",
            "order_type",
            "tag",
            "filter",
        ],
        query: &["limit", "offset"],
        body: &[],
        body_required: &[],
        route: Route::SwrTagList,
    },
    Row {
        name: "swr_image_sync.start",
        sdk_method: "create_manual_image_sync_repo",
        method: "POST",
        path: "/v2/manage/namespaces/{namespace}/repos/{repository}/sync_images",
        sdk_query: &[],
        query: &[],
        body: &["imageTag", "override", "remoteNamespace", "remoteRegionId"],
        body_required: &["imageTag", "remoteNamespace", "remoteRegionId"],
        route: Route::SwrSyncStart,
    },
    Row {
        name: "swr_image_sync.follow",
        sdk_method: "show_sync_job",
        method: "GET",
        path: "/v2/manage/namespaces/{namespace}/repos/{repository}/sync_job",
        sdk_query: &["filter"],
        query: &["filter"],
        body: &[],
        body_required: &[],
        route: Route::SwrSyncJobs,
    },
];

/// True when `path` (as sent) fits `template`: the same literal segments, one non-empty
/// segment for each `{param}`.
fn fits(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') && t.ends_with('}') {
                !p.is_empty()
            } else {
                t == p
            }
        })
}

fn query_names(q: &str) -> BTreeSet<String> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect()
}

fn body_names(r: &SwrRequest) -> BTreeSet<String> {
    r.body
        .as_ref()
        .and_then(|b| b.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Checks one recorded request against its row, naming the row on failure.
fn check(row: &Row, r: &SwrRequest) {
    assert_eq!(r.method, row.method, "{}: method", row.name);
    assert!(
        fits(row.path, &r.path),
        "{}: {} does not fit {}",
        row.name,
        r.path,
        row.path
    );
    let q = query_names(&r.query);
    assert_eq!(q, set(row.query), "{}: query names", row.name);
    assert!(
        q.is_subset(&set(row.sdk_query)),
        "{}: a query name the SDK does not know: {q:?}",
        row.name
    );
    let b = body_names(r);
    assert_eq!(b, set(row.body), "{}: body field names", row.name);
    assert!(
        set(row.body_required).is_subset(&b),
        "{}: a required body field is missing",
        row.name
    );
}

fn row_of(route: Route) -> &'static Row {
    SWR_CALLS
        .iter()
        .find(|r| r.route == route)
        .unwrap_or_else(|| panic!("no row for {route:?}: add the SDK method to SWR_CALLS"))
}

#[tokio::test]
async fn each_swr_call_matches_its_sdk_definition() {
    let app = spawn_app_with(
        SimConfig {
            sync_duration: Duration::from_millis(100),
            ..SimConfig::default()
        },
        "[swr]\nsync_regions = [\"ap-southeast-1\"]\n",
    )
    .await;
    let client = Client::from_config(&app.cfg).expect("client");
    let page = client
        .list_image_tags("demo-team", "tools/builder", 0, 100)
        .await
        .expect("tags");
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.range.map(|r| r.total), Some(2));
    client
        .start_image_sync(
            "demo-team",
            "tools/builder",
            &ManualSync {
                image_tag: vec!["1.0".into()],
                override_existing: false,
                remote_namespace: "demo-team-dr".into(),
                remote_region_id: "ap-southeast-1".into(),
            },
        )
        .await
        .expect("start");
    let jobs = client
        .list_sync_jobs("demo-team", "tools/builder", 0, 10)
        .await
        .expect("sync jobs");
    assert_eq!(jobs.items.len(), 1);
    assert_eq!(jobs.items[0].tag, "1.0");

    let reqs = app.sim.swr_requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        check(row_of(r.route), r);
    }
    // The one query value with a grammar of its own: `limit::N|offset::M|order::desc`.
    let follow = reqs.iter().find(|r| r.route == Route::SwrSyncJobs).unwrap();
    let filter: Vec<(String, String)> = url::form_urlencoded::parse(follow.query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        filter,
        [(
            "filter".to_string(),
            "limit::10|offset::0|order::desc".to_string()
        )]
    );
    // Every row was exercised.
    for row in SWR_CALLS {
        assert!(
            reqs.iter().any(|r| r.route == row.route),
            "{} ({}) not exercised",
            row.name,
            row.sdk_method
        );
    }
}

#[tokio::test]
async fn every_swr_request_of_an_image_sync_job_has_a_row() {
    let mut app = spawn_app_with(
        SimConfig {
            sync_duration: Duration::from_millis(100),
            ..SimConfig::default()
        },
        "[swr]\nsync_regions = [\"ap-southeast-1\"]\npoll_interval = \"50ms\"\n",
    )
    .await;
    let id = app
        .submit(
            "swr_image_sync",
            json!({"namespace": "demo-team", "repository": "web", "tags": "v1.*",
                   "remote_region_id": "ap-southeast-1", "remote_namespace": "demo-team-dr",
                   "override": true}),
        )
        .await;
    app.start();
    let job = app.wait_final(id, Duration::from_secs(30)).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let reqs = app.sim.swr_requests();
    for route in [Route::SwrTagList, Route::SwrSyncStart, Route::SwrSyncJobs] {
        assert!(reqs.iter().any(|r| r.route == route), "{route:?} sent");
    }
    for r in &reqs {
        check(row_of(r.route), r);
    }
    let start = reqs
        .iter()
        .find(|r| r.route == Route::SwrSyncStart)
        .and_then(|r| r.body.clone())
        .unwrap();
    assert_eq!(start["override"], true);
}
