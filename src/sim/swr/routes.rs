//! The SWR image-sync handlers. Checks run in this order: authentication (401, the gateway's),
//! organization and repository (404), then the query or body (400).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde_json::{json, Value};

use super::{
    repository_name, SwrRequest, Target, BAD_REQUEST, BAD_TOKEN, NO_NAMESPACE, NO_REPOSITORY,
    NO_TAG, SYNC_REGIONS,
};
use crate::sim::state::{AuthKind, SimState};
use crate::sim::{error_response, AkSkVerified, Route};

pub(crate) const TAGS_PATH: &str = "/v2/manage/namespaces/{namespace}/repos/{repository}/tags";
pub(crate) const SYNC_IMAGES_PATH: &str =
    "/v2/manage/namespaces/{namespace}/repos/{repository}/sync_images";
pub(crate) const SYNC_JOB_PATH: &str =
    "/v2/manage/namespaces/{namespace}/repos/{repository}/sync_job";

fn reply((code, msg): (&str, &str), status: StatusCode) -> Response {
    error_response(status, code, msg)
}

fn bad(msg: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, BAD_REQUEST, msg)
}

/// What every handler gets.
struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
}

/// Records the request, checks authentication, organization and repository; returns the
/// repository's name with `/` restored.
fn enter(
    state: &SimState,
    route: Route,
    seen: &Seen,
    namespace: &str,
    repository: &str,
    body: Option<&Bytes>,
) -> Result<String, Response> {
    let parsed_body = body
        .filter(|b| !b.iter().all(u8::is_ascii_whitespace))
        .and_then(|b| serde_json::from_slice::<Value>(b).ok());
    state.lock().swr.requests.push(SwrRequest {
        route,
        method: seen.method.to_string(),
        path: seen.uri.path().to_string(),
        query: seen.uri.query().unwrap_or("").to_string(),
        body: parsed_body,
    });
    if seen.aksk.is_none() && state.auth_kind(&seen.headers) != AuthKind::Token {
        return Err(reply(BAD_TOKEN, StatusCode::UNAUTHORIZED));
    }
    let inner = state.lock();
    if !inner.swr.has_namespace(namespace) {
        return Err(reply(NO_NAMESPACE, StatusCode::NOT_FOUND));
    }
    let Some(name) = repository_name(repository) else {
        return Err(reply(NO_REPOSITORY, StatusCode::NOT_FOUND));
    };
    if !inner
        .swr
        .repos
        .contains_key(&(namespace.to_string(), name.clone()))
    {
        return Err(reply(NO_REPOSITORY, StatusCode::NOT_FOUND));
    }
    Ok(name)
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn number(q: &HashMap<String, String>, key: &str, default: u64, max: u64) -> Result<u64, Response> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(bad(&format!("{key}: {v:?} is not an integer in 0..={max}"))),
        },
    }
}

/// A bare JSON array, with `Content-Range: offset-count/total` when `range` (the offset and
/// the total) is given.
fn page(items: Vec<Value>, range: Option<(u64, usize)>) -> Response {
    let header = range.map(|(offset, total)| format!("{offset}-{}/{total}", items.len()));
    let mut resp = (StatusCode::OK, Json(Value::Array(items))).into_response();
    if let Some(Ok(v)) = header.as_deref().map(HeaderValue::from_str) {
        resp.headers_mut().insert("content-range", v);
    }
    resp
}

/// `GET …/tags` (`list_repository_tags`): `limit` (default 100, at most 1000) and `offset`;
/// the answer carries `Content-Range` only when both were sent, as SWR's page says.
pub(crate) async fn list_tags(
    State(state): State<Arc<SimState>>,
    Path((namespace, repository)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    let seen = Seen {
        method,
        uri,
        headers,
        aksk,
    };
    let name = match enter(
        &state,
        Route::SwrTagList,
        &seen,
        &namespace,
        &repository,
        None,
    ) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let q = query_map(&seen.uri);
    let (limit, offset) = match (
        number(&q, "limit", 100, 1000),
        number(&q, "offset", 0, u64::MAX),
    ) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let mut inner = state.lock();
    let tags = inner
        .swr
        .repos
        .get(&(namespace.clone(), name.clone()))
        .cloned()
        .unwrap_or_default();
    inner.swr.page_served(&namespace, &name);
    let created = state
        .created_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let items: Vec<Value> = tags
        .iter()
        .enumerate()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|(i, t)| {
            json!({
                "id": 50_000 + i,
                "repo_id": 700,
                "Tag": t,
                "image_id": format!("sha256:{:064x}", i + 1),
                "manifest": "",
                "digest": format!("sha256:{:064x}", i + 7),
                "schema": 2,
                "path": format!("swr.{}.myhuaweicloud.com/{namespace}/{name}:{t}", state.cfg.project_name),
                "internal_path": format!("10.125.0.198:20202/{namespace}/{name}:{t}"),
                "size": 2_048_000 + i,
                "is_trusted": false,
                "created": created,
                "updated": created,
                "deleted": null,
                "domain_id": state.cfg.domain_id,
                "scanned": false,
                "tag_type": 0,
            })
        })
        .collect();
    let ranged = q.contains_key("limit") && q.contains_key("offset");
    page(items, ranged.then_some((offset, tags.len())))
}

/// `POST …/sync_images` (`create_manual_image_sync_repo`): body `{imageTag, override,
/// remoteNamespace, remoteRegionId}`; one sync job per tag; answers `[]`.
pub(crate) async fn sync_images(
    State(state): State<Arc<SimState>>,
    Path((namespace, repository)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method,
        uri,
        headers,
        aksk,
    };
    let route = Route::SwrSyncStart;
    let name = match enter(&state, route, &seen, &namespace, &repository, Some(&body)) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let Ok(Value::Object(b)) = serde_json::from_slice::<Value>(&body) else {
        return bad("the body is not a JSON object");
    };
    if let Some(k) = b.keys().find(|k| {
        !["imageTag", "override", "remoteNamespace", "remoteRegionId"].contains(&k.as_str())
    }) {
        return bad(&format!("unknown field {k}"));
    }
    let tags: Vec<String> = match b.get("imageTag").and_then(Value::as_array) {
        Some(a) if !a.is_empty() && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return bad("imageTag must be a non-empty array of strings"),
    };
    let override_existing = match b.get("override") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(v)) => *v,
        Some(_) => return bad("override must be a boolean"),
    };
    let Some(region) = b.get("remoteRegionId").and_then(Value::as_str) else {
        return bad("remoteRegionId is required");
    };
    if !SYNC_REGIONS.contains(&region) {
        return bad(&format!(
            "remoteRegionId {region:?} does not support image synchronization"
        ));
    }
    let remote_ns = match b.get("remoteNamespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() => ns,
        _ => return bad("remoteNamespace is required"),
    };
    let mut inner = state.lock();
    let known = inner
        .swr
        .repos
        .get(&(namespace.clone(), name.clone()))
        .cloned()
        .unwrap_or_default();
    if let Some(missing) = tags.iter().find(|t| !known.contains(t)) {
        return error_response(
            StatusCode::NOT_FOUND,
            NO_TAG,
            &format!("Image tag {missing} not found"),
        );
    }
    let target = Target {
        region,
        namespace: remote_ns,
        override_existing,
    };
    inner
        .swr
        .start(&namespace, &name, &tags, &target, Utc::now());
    (StatusCode::OK, Json(json!([]))).into_response()
}

/// `GET …/sync_job?filter=limit::N|offset::M[|order::asc|desc]` (`show_sync_job`): the
/// repository's sync jobs, newest first by default.
pub(crate) async fn sync_job(
    State(state): State<Arc<SimState>>,
    Path((namespace, repository)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    let seen = Seen {
        method,
        uri,
        headers,
        aksk,
    };
    let name = match enter(
        &state,
        Route::SwrSyncJobs,
        &seen,
        &namespace,
        &repository,
        None,
    ) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let q = query_map(&seen.uri);
    let Some(filter) = q.get("filter") else {
        return bad("filter is required: limit::{limit}|offset::{offset}[|order::{order}]");
    };
    let mut parts = HashMap::new();
    for part in filter.split('|') {
        let Some((k, v)) = part.split_once("::") else {
            return bad(&format!("filter: {part:?} is not key::value"));
        };
        if !["limit", "offset", "order"].contains(&k) {
            return bad(&format!("filter: unknown key {k:?}"));
        }
        parts.insert(k.to_string(), v.to_string());
    }
    if !parts.contains_key("limit") || !parts.contains_key("offset") {
        return bad("filter: limit and offset are both required");
    }
    let (limit, offset) = match (
        number(&parts, "limit", 0, 1000),
        number(&parts, "offset", 0, u64::MAX),
    ) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let desc = match parts.get("order").map(String::as_str) {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(o) => return bad(&format!("filter: order {o:?} is neither asc nor desc")),
    };
    let inner = state.lock();
    let mut jobs: Vec<_> = inner
        .swr
        .jobs
        .iter()
        .filter(|j| j.namespace == namespace && j.repository == name)
        .collect();
    jobs.sort_by_key(|j| j.id);
    if desc {
        jobs.reverse();
    }
    let now = Utc::now();
    let items: Vec<Value> = jobs
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|j| j.to_json(now, state.cfg.sync_duration, &state.cfg.domain_id))
        .collect();
    page(items, Some((offset, jobs.len())))
}
