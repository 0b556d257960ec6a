//! Every SWR call `swr_share_audit` makes, checked against the official SDK
//! (`huaweicloudsdkswr`, `huaweicloud-sdk-swr/huaweicloudsdkswr/v2/swr_client.py` and its
//! `model/` request and response classes): the HTTP method, the path template, the names of
//! the query parameters sent and of the response fields read. The daemon's own client is driven
//! against the simulator; what the simulator recorded is compared with the table, and so are the
//! simulator's answers, so neither side can drift from the SDK unnoticed.

use crate::support;

use std::collections::BTreeSet;

use codearts_syncd::api::swr_share::{AccessDomain, SharedRepo};
use codearts_syncd::api::{Client, Request, Service};
use codearts_syncd::sim::{Call, Route, SimConfig};
use reqwest::Method;
use serde_json::Value;
use support::spawn_app_with;

/// One SDK operation as the SDK defines it.
struct Row {
    /// `SwrClient` method.
    sdk_method: &'static str,
    method: &'static str,
    path: &'static str,
    /// The query parameters the SDK's request class declares (`attribute_map`).
    sdk_query: &'static [&'static str],
    /// The ones the daemon sends.
    sent_query: &'static [&'static str],
    /// The response element's fields (`openapi_types` of the element class).
    response_fields: &'static [&'static str],
    route: Route,
}

const TABLE: &[Row] = &[
    Row {
        // ListSharedReposDetailsRequest; response ListSharedReposDetailsResponse, a bare array
        // of ShowReposResp with the `Content-Range` header.
        sdk_method: "list_shared_repos_details",
        method: "GET",
        path: "/v2/manage/shared-repositories",
        sdk_query: &[
            "namespace",
            "name",
            "center",
            "limit",
            "offset",
            "order_column",
            "order_type",
            "filter",
        ],
        sent_query: &["center", "limit", "offset"],
        response_fields: &[
            "name",
            "category",
            "description",
            "size",
            "is_public",
            "num_images",
            "num_download",
            "created_at",
            "updated_at",
            "logo",
            "url",
            "path",
            "internal_path",
            "domain_name",
            "namespace",
            "tags",
            "status",
            "total_range",
        ],
        route: Route::SwrSharedRepos,
    },
    Row {
        // ListRepoDomainsRequest (path parameters only); response ListRepoDomainsResponse, a
        // bare array of ShowRepoDomainsResponse.
        sdk_method: "list_repo_domains",
        method: "GET",
        path: "/v2/manage/namespaces/{namespace}/repositories/{repository}/access-domains",
        sdk_query: &[],
        sent_query: &[],
        response_fields: &[
            "namespace",
            "repository",
            "access_domain",
            "permit",
            "deadline",
            "description",
            "creator_id",
            "creator_name",
            "created",
            "updated",
            "status",
        ],
        route: Route::SwrRepoDomains,
    },
];

/// True when `path` fits `template`, each `{name}` standing for one non-empty segment.
fn fits(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

fn query_names(c: &Call) -> BTreeSet<String> {
    c.query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split('=').next().unwrap_or("").to_string())
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn every_swr_share_call_matches_the_sdk() {
    let app = spawn_app_with(SimConfig::default(), "").await;
    let client = Client::from_config(&app.cfg).unwrap();

    // The calls as the job makes them.
    let page = client.list_shared_repos(0, 2).await.unwrap();
    assert_eq!(page.repos.len(), 2);
    let first = &page.repos[0];
    let domains = client
        .list_repo_domains(&first.namespace, &first.name)
        .await
        .unwrap();
    assert!(!domains.is_empty());

    for row in TABLE {
        let calls: Vec<Call> = app
            .sim
            .calls()
            .into_iter()
            .filter(|c| c.route == row.route)
            .collect();
        assert!(!calls.is_empty(), "{}: never called", row.sdk_method);
        for c in &calls {
            assert_eq!(c.method, row.method, "{}", row.sdk_method);
            assert!(
                fits(row.path, &c.path),
                "{}: {} does not fit {}",
                row.sdk_method,
                c.path,
                row.path
            );
            let sent = query_names(c);
            assert_eq!(sent, set(row.sent_query), "{}: query sent", row.sdk_method);
            assert!(
                sent.is_subset(&set(row.sdk_query)),
                "{}: {sent:?} not all in the SDK's {:?}",
                row.sdk_method,
                row.sdk_query
            );
            assert_eq!(c.status, 200, "{}", row.sdk_method);
        }
    }

    // What the client reads is named as in the SDK's response classes.
    let read = |v: Value| keys(&v);
    let shared_row = &TABLE[0];
    let domains_row = &TABLE[1];
    let read_shared = read(serde_json::to_value(SharedRepo::default()).unwrap());
    assert!(
        read_shared.is_subset(&set(shared_row.response_fields)),
        "{read_shared:?}"
    );
    let read_domain = read(serde_json::to_value(AccessDomain::default()).unwrap());
    assert!(
        read_domain.is_subset(&set(domains_row.response_fields)),
        "{read_domain:?}"
    );

    // And the simulator answers with exactly those fields, as bare arrays.
    let mut req = Request::new(Service::Swr, Method::GET, shared_row.path);
    req.query = vec![
        ("center".into(), "self".into()),
        ("limit".into(), "10".into()),
        ("offset".into(), "0".into()),
    ];
    let resp = client.call(&req).await.unwrap();
    let range = resp.headers.get("content-range").expect("Content-Range");
    assert_eq!(range.to_str().unwrap(), "0-3/3");
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    for item in body.as_array().expect("a bare array") {
        assert_eq!(keys(item), set(shared_row.response_fields));
    }
    let path = codearts_syncd::api::swr_share::access_domains_path("team-a", "api-server");
    let resp = client
        .call(&Request::new(Service::Swr, Method::GET, path))
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    let items = body.as_array().expect("a bare array");
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(keys(item), set(domains_row.response_fields));
    }

    // The API page's form (`filter=center::self|limit::…|offset::…`) is understood too, and an
    // unknown repository is SWR's 404 body.
    let mut req = Request::new(Service::Swr, Method::GET, shared_row.path);
    req.query = vec![("filter".into(), "center::self|limit::1|offset::1".into())];
    let resp = client.call(&req).await.unwrap();
    assert_eq!(
        resp.headers.get("content-range").unwrap().to_str().unwrap(),
        "1-1/3"
    );
    // Without `center`, or with a limit but no offset: SWR's bad-parameter body.
    for query in [
        vec![("limit", "2"), ("offset", "0")],
        vec![("center", "self"), ("limit", "2")],
    ] {
        let mut req = Request::new(Service::Swr, Method::GET, shared_row.path);
        req.query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match client.call(&req).await.unwrap_err() {
            codearts_syncd::api::Error::Api {
                status, error_code, ..
            } => assert_eq!((status, error_code.as_str()), (400, "SVCSTG.SWR.4001002")),
            other => panic!("{other:?}"),
        }
    }
    let err = client
        .list_repo_domains("team-a", "no-such-repo")
        .await
        .unwrap_err();
    match err {
        codearts_syncd::api::Error::Api {
            status, error_code, ..
        } => {
            assert_eq!(status, 404);
            assert_eq!(error_code, "SVCSTG.SWR.4041002");
        }
        other => panic!("{other:?}"),
    }
}
