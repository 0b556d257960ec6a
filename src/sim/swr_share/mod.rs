//! SWR shared repositories: `list_shared_repos_details` (`GET /v2/manage/shared-repositories`)
//! and `list_repo_domains` (`GET /v2/manage/namespaces/{namespace}/repositories/{repository}/access-domains`),
//! with the data behind them and their `/__sim/swr/shares` control.
//!
//! The listing is a bare JSON array of the fields the API page lists, in (namespace, name)
//! order, so a share added or removed ahead of a walk's position shifts the pages after it.
//! `limit` and `offset` come as separate query parameters (as the SDK sends them) or inside
//! `filter=center::self|limit::…|offset::…` (as the API page writes them); when both are given
//! the answer carries `Content-Range: {offset}-{count}/{total}`. A repository is listed while
//! it is shared with at least one account. Only `center=self` has content here: what others
//! share with this account is not modelled (an empty list). In the access-domains path a
//! repository name's `/` arrives as `$` (`%24`), as the `ListRepoDomains` page asks; a raw or
//! `%2F`-encoded slash names no repository (404), as on the image-sync routes.
//!
//! Errors are SWR's `{"error_code", "error_msg"}` bodies (`SVCSTG.SWR.*`; the gateway's
//! `APIGW.*` for authentication). Changes can be made now or queued to happen once the listing
//! has answered a number of pages (a share added or removed while a walk is in progress).
//! The data lives in `model.rs`, which the simulator's state holds.

pub(crate) mod model;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

pub use model::{ShareChange, ShareOp};

use super::state::{AuthKind, SimState};
use super::{error_response, AkSkVerified};

/// The listing's path.
pub(crate) const SHARED_PATH: &str = "/v2/manage/shared-repositories";
/// The access-domains path (router syntax).
pub(crate) const DOMAINS_PATH: &str =
    "/v2/manage/namespaces/{namespace}/repositories/{repository}/access-domains";

// SWR's error answers are the simulated service's one set (see `super::swr`), and so is the
// reading of a repository name's path value (`$` for `/`).
use super::swr::repository_name;
pub(crate) use super::swr::{BAD_TOKEN, INTERNAL, NO_REPOSITORY, THROTTLED};
/// SWR's bad-parameter answer.
pub(crate) const INVALID_PARAM: (&str, &str) = (super::swr::BAD_REQUEST, "Invalid param");

/// The largest `limit` accepted.
const MAX_LIMIT: u64 = 1000;

/// The gateway's 401 unless the request carries a valid token or a verified signature.
fn refused(
    state: &SimState,
    headers: &HeaderMap,
    aksk: &Option<Extension<AkSkVerified>>,
) -> Option<Response> {
    if aksk.is_none() && state.auth_kind(headers) != AuthKind::Token {
        let (code, msg) = BAD_TOKEN;
        return Some(error_response(StatusCode::UNAUTHORIZED, code, msg));
    }
    None
}

fn invalid(detail: &str) -> Response {
    let (code, msg) = INVALID_PARAM;
    error_response(StatusCode::BAD_REQUEST, code, &format!("{msg}: {detail}"))
}

/// The listing's query: separate parameters, or the same inside `filter`; `Err` says what is
/// wrong with it.
fn listing_query(q: &BTreeMap<String, String>) -> Result<(String, Option<(u64, u64)>), String> {
    let mut params: BTreeMap<String, String> = q.clone();
    if let Some(filter) = q.get("filter") {
        for part in filter.split('|').filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once("::") else {
                return Err(format!("filter part {part:?}"));
            };
            params.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    let center = params
        .get("center")
        .cloned()
        .ok_or_else(|| "center is required".to_string())?;
    if center != "self" && center != "thirdparty" {
        return Err("center must be self or thirdparty".into());
    }
    let num = |k: &str| -> Result<Option<u64>, String> {
        params
            .get(k)
            .map(|v| v.parse::<u64>().map_err(|_| format!("{k} {v:?}")))
            .transpose()
    };
    let page = match (num("offset")?, num("limit")?) {
        (Some(o), Some(l)) if (1..=MAX_LIMIT).contains(&l) => Some((o, l)),
        (Some(_), Some(l)) => return Err(format!("limit {l} is out of 1..={MAX_LIMIT}")),
        (None, None) => None,
        _ => return Err("offset and limit must be used together".into()),
    };
    Ok((center, page))
}

/// `GET /v2/manage/shared-repositories`.
pub(crate) async fn list_shared(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = refused(&state, &headers, &aksk) {
        return r;
    }
    let (center, page) = match listing_query(&q) {
        Ok(p) => p,
        Err(why) => return invalid(&why),
    };
    let now = Utc::now();
    let host = format!("swr.{}.myhuaweicloud.com", state.cfg.project_name);
    let mut inner = state.lock();
    let all: Vec<_> = if center == "self" {
        inner.swr_shares.repos.iter().collect()
    } else {
        Vec::new()
    };
    let total = all.len() as u64;
    let (offset, items) = match page {
        Some((o, l)) => (
            o,
            all.into_iter().skip(o as usize).take(l as usize).collect(),
        ),
        None => (0, all),
    };
    let body: Vec<serde_json::Value> = items
        .iter()
        .map(|((ns, name), r)| {
            let created = r.created_at.unwrap_or(state.created_at);
            let updated = r
                .domains
                .values()
                .map(|d| d.updated)
                .max()
                .unwrap_or(created);
            json!({
                "name": name,
                "category": "other",
                "description": "",
                "size": 115_645_792,
                "is_public": false,
                "num_images": r.num_images,
                "num_download": 0,
                "created_at": created.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                "updated_at": updated.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                "logo": "",
                "url": "",
                "path": format!("{host}/{ns}/{name}"),
                "internal_path": format!("{host}/{ns}/{name}"),
                "domain_name": state.cfg.domain_name,
                "namespace": ns,
                "tags": r.tags,
                "status": false,
                "total_range": total,
            })
        })
        .collect();
    let count = body.len();
    if page.is_some() {
        inner.swr_shares.page_answered(now);
    }
    drop(inner);
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    if page.is_some() {
        if let Ok(v) = HeaderValue::from_str(&format!("{offset}-{count}/{total}")) {
            resp.headers_mut().insert("content-range", v);
        }
    }
    resp
}

/// `GET …/access-domains`: the accounts a repository is shared with.
pub(crate) async fn list_domains(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
    Path((namespace, repository)): Path<(String, String)>,
) -> Response {
    if let Some(r) = refused(&state, &headers, &aksk) {
        return r;
    }
    let now = Utc::now();
    let inner = state.lock();
    let Some((repository, repo)) = repository_name(&repository).and_then(|name| {
        let repo = inner
            .swr_shares
            .repos
            .get(&(namespace.clone(), name.clone()))?;
        Some((name, repo))
    }) else {
        let (code, msg) = NO_REPOSITORY;
        return error_response(StatusCode::NOT_FOUND, code, msg);
    };
    let body: Vec<serde_json::Value> = repo
        .domains
        .iter()
        .map(|(domain, s)| {
            let valid = s.deadline == "forever"
                || DateTime::parse_from_rfc3339(&s.deadline).is_ok_and(|d| d > now);
            json!({
                "namespace": namespace,
                "repository": repository,
                "access_domain": domain,
                "permit": s.permit,
                "deadline": s.deadline,
                "description": s.description,
                "creator_id": "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
                "creator_name": state.cfg.user_name,
                "created": s.created.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "updated": s.updated.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "status": valid,
            })
        })
        .collect();
    (StatusCode::OK, Json(body)).into_response()
}

/// `/__sim/swr/shares`: `GET` every share; `POST` one [`ShareChange`] or an array of them.
pub(crate) fn control_router() -> Router<Arc<SimState>> {
    Router::new().route("/swr/shares", get(control_list).post(control_change))
}

async fn control_list(State(state): State<Arc<SimState>>) -> Response {
    let inner = state.lock();
    let all: Vec<_> = inner
        .swr_shares
        .repos
        .iter()
        .map(|((ns, name), r)| json!({"namespace": ns, "repository": name, "domains": r.domains}))
        .collect();
    Json(all).into_response()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<ShareChange>),
    One(ShareChange),
}

async fn control_change(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let changes = match serde_json::from_slice::<OneOrMany>(&body) {
        Ok(OneOrMany::Many(c)) => c,
        Ok(OneOrMany::One(c)) => vec![c],
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "SIM.400",
                &format!("expected a share change or an array of them: {e}"),
            )
        }
    };
    let n = changes.len();
    let now = Utc::now();
    let mut inner = state.lock();
    for c in changes {
        inner.swr_shares.change(c, now);
    }
    Json(json!({ "applied": n })).into_response()
}
