//! The simulator's Artifact routes check what the service would: credentials, the tenant and
//! project in the path, the delete body's shape (a bare array, `format` not `fomat`), paging.

use crate::support;

use codearts_syncd::api::{self, Client, Request, Service};
use codearts_syncd::sim::SimConfig;
use reqwest::Method;
use serde_json::{json, Value};
use support::spawn_app_with;

async fn client() -> (support::TestApp, Client) {
    let app = spawn_app_with(SimConfig::default(), "").await;
    let c = Client::from_config(&app.cfg).unwrap();
    (app, c)
}

fn status_of(e: &api::Error) -> (u16, String) {
    match e {
        api::Error::Api {
            status, error_code, ..
        } => (*status, error_code.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn unauthenticated_artifact_calls_get_401() {
    let (app, _) = client().await;
    let resp = reqwest::get(format!("{}/cloudartifact/v5/storage", app.url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error_code"], "APIGW.0301");
    assert_eq!(body["status"], "error");
}

#[tokio::test]
async fn another_tenant_or_project_gets_the_documented_403() {
    let (_app, c) = client().await;
    let req = Request::new(
        Service::Artifact,
        Method::GET,
        "/cloudartifact/v5/someone-else/a1b2c3d4e5f60718293a4b5c6d7e8f90/repositories",
    );
    let (status, code) = status_of(&c.call(&req).await.unwrap_err());
    assert_eq!((status, code.as_str()), (403, "CR.4102"));
}

#[tokio::test]
async fn the_delete_body_must_be_a_bare_array_with_format() {
    let (app, c) = client().await;
    let entry = app.sim.trash_entries()[0].clone();
    let old_field =
        json!([{"id": entry.repo_id, "fomat": entry.format, "uri": entry.uri, "status": "trash"}]);
    let req = Request::new(
        Service::Artifact,
        Method::DELETE,
        "/cloudartifact/v5/trashes",
    )
    .json(&old_field);
    let err = c.call(&req).await.unwrap_err();
    assert_eq!(status_of(&err).0, 400);
    assert!(err.to_string().contains("format"), "{err}");

    let wrapped = json!({"items": [{"id": entry.repo_id, "format": entry.format, "uri": entry.uri, "status": "trash"}]});
    let req = Request::new(
        Service::Artifact,
        Method::DELETE,
        "/cloudartifact/v5/trashes",
    )
    .json(&wrapped);
    assert_eq!(status_of(&c.call(&req).await.unwrap_err()).0, 400);
    assert_eq!(app.sim.trash_entries()[0], entry, "nothing deleted");
}

#[tokio::test]
async fn restore_takes_an_item_out_of_the_recycle_bin() {
    let (app, c) = client().await;
    let entry = app
        .sim
        .trash_entries()
        .into_iter()
        .find(|e| e.uri.ends_with('/'))
        .unwrap();
    let body = json!([{"id": entry.repo_id, "format": entry.format, "uri": entry.uri, "status": "active"}]);
    let req = Request::new(Service::Artifact, Method::PUT, "/cloudartifact/v5/trashes").json(&body);
    let resp = c.call(&req).await.unwrap();
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["result"]["successNum"], 1);
    assert!(!app.sim.trash_entries().contains(&entry));
    assert!(app.sim.artifact_repo_ids().contains(&entry.repo_id));
}

#[tokio::test]
async fn audit_paging_is_checked_and_newest_first() {
    let (app, c) = client().await;
    let repo = app.sim.artifact_repo_ids()[1].clone();
    let scope = codearts_syncd::jobs::artifact_scope(&app.cfg).unwrap();
    let page = c
        .audit_page(&scope, "file", &repo, 1, 3)
        .await
        .unwrap()
        .result;
    let log = app.sim.audit_ids("file", &repo);
    assert_eq!(page.total as usize, log.len());
    let ids: Vec<String> = page
        .records
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(r.get()).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let newest: Vec<String> = log.iter().rev().take(3).cloned().collect();
    assert_eq!(ids, newest);
    let err = c.audit_page(&scope, "file", &repo, 1, 0).await.unwrap_err();
    assert_eq!(status_of(&err).0, 400);
    let err = c
        .audit_page(&scope, "files", &repo, 1, 10)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err).0, 400);
}

#[tokio::test]
async fn control_routes_append_audit_records_and_show_the_bin() {
    let (app, _) = client().await;
    let repo = app.sim.artifact_repo_ids()[1].clone();
    let before = app.sim.audit_ids("file", &repo).len();
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/__sim/audit/file/{repo}", app.url))
        .json(&json!({"count": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(app.sim.audit_ids("file", &repo).len(), before + 3);
    let resp = http
        .post(format!("{}/__sim/audit/file/{repo}", app.url))
        .json(&json!({"records": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let bin: Vec<Value> = http
        .get(format!("{}/__sim/trash", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bin.len(), app.sim.trash_entries().len());
    let resp = http
        .put(format!("{}/__sim/trash-result", app.url))
        .json(&json!({"shape": "sometimes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
