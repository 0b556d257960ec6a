//! Repository routes: the list (active, or what the recycle bin holds), one repository's detail
//! with its storage summary, and the file tree, which shows the trashed files under a path.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};

use super::common::{
    art_error, bad_param, check, ok, parse_bool, parse_page, MAX_PAGE_SIZE, NO_REPOSITORY,
};
use super::model::{art_time, human_size, ArtRepo};
use crate::sim::state::SimState;
use crate::sim::AkSkVerified;

fn repo_view(r: &ArtRepo, region: &str, with_counts: bool) -> Value {
    json!({
        "id": Value::Null,
        "name": r.id,
        "description": "",
        "createdTime": art_time(r.created),
        "createdUserId": "e9253deb37654775bb3c411aca89153a",
        "createdUserName": "demo-user",
        "modifiedTime": art_time(r.modified),
        "modifiedUserId": "e9253deb37654775bb3c411aca89153a",
        "modifiedUserName": "demo-user",
        "format": r.format,
        "repoType": "hosted",
        "includesPattern": "**/*",
        "url": Value::Null,
        "storageSummaryInfo": if with_counts {
            json!({"filesCount": r.files_count, "usedSpace": human_size(r.used_bytes, "0 MB")})
        } else {
            Value::Null
        },
        "projectId": Value::Null,
        "shareRight": Value::Null,
        "deploymentPolicy": Value::Null,
        "repositoryName": r.name,
        "displayName": Value::Null,
        "policy": Value::Null,
        "tabId": Value::Null,
        "status": r.status,
        "domainId": Value::Null,
        "region": region,
        "uri": Value::Null,
        "disable": false,
        "packageType": r.format,
    })
}

/// `GET /cloudartifact/v5/{tenant_id}/{project_id}/repositories`.
pub(crate) async fn list_repositories(
    State(state): State<Arc<SimState>>,
    Path((tenant, project)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, Some((&tenant, &project))) {
        return r;
    }
    let recycle = match parse_bool(q.get("is_recycle_bin"), "is_recycle_bin") {
        Ok(b) => b.unwrap_or(false),
        Err(r) => return r,
    };
    let paging = match parse_bool(q.get("is_need_paging"), "is_need_paging") {
        Ok(b) => b.unwrap_or(true),
        Err(r) => return r,
    };
    let page_no = match parse_page(q.get("page_no"), "page_no", 1, u32::MAX) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let page_size = match parse_page(q.get("page_size"), "page_size", 10, MAX_PAGE_SIZE) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let formats: Option<Vec<String>> = q
        .get("format_list")
        .filter(|f| !f.is_empty())
        .map(|f| f.split(',').map(str::to_string).collect());
    let region = state.cfg.project_name.clone();
    let inner = state.lock();
    // In the recycle bin: trashed repositories, and active ones holding trashed files.
    let matching: Vec<&ArtRepo> = inner
        .artifact
        .in_order()
        .into_iter()
        .filter(|r| {
            if recycle {
                r.status == "trash" || !r.trash.is_empty()
            } else {
                r.status == "active"
            }
        })
        .filter(|r| formats.as_ref().is_none_or(|f| f.contains(&r.format)))
        .collect();
    let total = matching.len();
    let page: Vec<Value> = if paging {
        matching
            .iter()
            .skip((page_no as usize - 1).saturating_mul(page_size as usize))
            .take(page_size as usize)
            .map(|r| repo_view(r, &region, false))
            .collect()
    } else {
        matching
            .iter()
            .map(|r| repo_view(r, &region, false))
            .collect()
    };
    drop(inner);
    ok(json!({"total": total, "repositories": page}))
}

/// `GET /cloudartifact/v5/{tenant_id}/{project_id}/{repo_id}/repositories?region=`.
pub(crate) async fn show_repository(
    State(state): State<Arc<SimState>>,
    Path((tenant, project, repo_id)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, Some((&tenant, &project))) {
        return r;
    }
    // `region` is mandatory on this call.
    match q.get("region") {
        Some(r) if *r == state.cfg.project_name => {}
        Some(_) => return art_error(StatusCode::NOT_FOUND, NO_REPOSITORY),
        None => return bad_param("region is required"),
    }
    let region = state.cfg.project_name.clone();
    let inner = state.lock();
    match inner.artifact.repos.get(&repo_id) {
        Some(r) if r.status == "active" => {
            let v = repo_view(r, &region, true);
            drop(inner);
            ok(v)
        }
        _ => art_error(StatusCode::NOT_FOUND, NO_REPOSITORY),
    }
}

/// `GET /cloudartifact/v5/{tenant_id}/{project_id}/{repo_name}/file-tree?path=&is_recycle_bin=`.
///
/// Only the recycle-bin view has content here (the simulator keeps no live file trees): it lists
/// the trashed files and folders directly under `path`.
pub(crate) async fn file_tree(
    State(state): State<Arc<SimState>>,
    Path((tenant, project, repo_id)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, Some((&tenant, &project))) {
        return r;
    }
    let Some(path) = q.get("path") else {
        return bad_param("path is required");
    };
    let recycle = match parse_bool(q.get("is_recycle_bin"), "is_recycle_bin") {
        Ok(b) => b.unwrap_or(false),
        Err(r) => return r,
    };
    let inner = state.lock();
    let Some(repo) = inner.artifact.repos.get(&repo_id) else {
        return art_error(StatusCode::NOT_FOUND, NO_REPOSITORY);
    };
    let dir = path.trim_matches('/');
    let mut children: BTreeMap<String, Value> = BTreeMap::new();
    if recycle {
        for f in &repo.trash {
            let rest = if dir.is_empty() {
                Some(f.path.as_str())
            } else {
                f.path.strip_prefix(dir).and_then(|r| r.strip_prefix('/'))
            };
            let Some(rest) = rest else { continue };
            let (name, folder) = match rest.split_once('/') {
                Some((first, _)) => (first, true),
                None => (rest, false),
            };
            let rel = if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            let entry = children.entry(name.to_string()).or_insert_with(|| {
                json!({
                    "name": name,
                    "uri": format!("https://artifact.example/artgalaxy/api/storage/auto-trashcan/{}/{rel}", repo.id),
                    "path": format!("{}/{rel}", repo.id),
                    "modified": art_time(f.modified),
                    "folder": folder,
                    "display_size": Value::Null,
                    "modified_by": "demo-user",
                    "has_child": if folder { "true" } else { "false" },
                })
            });
            // A folder shows its newest content's time.
            if folder {
                let t = art_time(f.modified);
                if entry["modified"].as_str().is_some_and(|m| m < t.as_str()) {
                    entry["modified"] = Value::String(t);
                }
            }
        }
    }
    let list: Vec<Value> = children.into_values().collect();
    // `total` is a string on this call.
    let total = list.len().to_string();
    let created = art_time(repo.created);
    let id = repo.id.clone();
    drop(inner);
    ok(json!({
        "children": list,
        "uploadAccess": "false",
        "total": total,
        "uri": format!("/{id}"),
        "created": created,
    }))
}
