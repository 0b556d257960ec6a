//! Recycle-bin routes: deleting items for good and restoring them, with per-item failures
//! reported in the answer (a locked item, an item not in the recycle bin).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};

use super::common::{bad_param, check, ok};
use super::model::{ArtRepo, DeleteResultShape};
use crate::sim::state::SimState;
use crate::sim::AkSkVerified;

#[derive(Deserialize)]
struct DeleteItem {
    id: String,
    format: String,
    uri: String,
    status: String,
    #[serde(default)]
    #[allow(dead_code)] // accepted as documented; the simulator deletes whole items
    include_pattern: Option<String>,
}

/// Parses the bare-array body shared by delete and restore; names the bad field.
fn parse_items(body: &[u8]) -> Result<Vec<DeleteItem>, Response> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| bad_param("the request body must be a JSON array of items"))?;
    let Value::Array(items) = v else {
        return Err(bad_param(
            "the request body must be a bare JSON array of items",
        ));
    };
    if items.is_empty() {
        return Err(bad_param("the request body must not be an empty array"));
    }
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        // The old field name is gone on the wire since SDK 3.1.181; it is not accepted in place
        // of `format`.
        let item: DeleteItem =
            serde_json::from_value(item).map_err(|e| bad_param(&format!("item {i}: {e}")))?;
        if item.id.is_empty() || item.format.is_empty() || item.uri.is_empty() {
            return Err(bad_param(&format!(
                "item {i}: id, format and uri must not be empty"
            )));
        }
        if !["active", "trash", "delete"].contains(&item.status.as_str()) {
            return Err(bad_param(&format!(
                "item {i}: status must be active, trash or delete"
            )));
        }
        out.push(item);
    }
    Ok(out)
}

/// Finds what `item` names in the recycle bin: the repository itself (`{id}/`) or one file.
enum Target {
    Repo,
    File(usize),
}

fn locate(repo: &ArtRepo, item: &DeleteItem) -> Result<Target, String> {
    if item.format != repo.format {
        return Err(format!(
            "{}: format {} does not match the repository's {}",
            item.uri, item.format, repo.format
        ));
    }
    if item.uri == format!("{}/", repo.id) {
        return if repo.status == "trash" {
            Ok(Target::Repo)
        } else {
            Err(format!(
                "{}: the repository is not in the recycle bin",
                item.uri
            ))
        };
    }
    let rel = item
        .uri
        .strip_prefix(&format!("{}/", repo.id))
        .unwrap_or("");
    match repo.trash.iter().position(|f| f.path == rel) {
        Some(i) => Ok(Target::File(i)),
        None => Err(format!("{}: not in the recycle bin", item.uri)),
    }
}

fn counts_result(ok: usize, failed: Vec<String>, shape: DeleteResultShape) -> Value {
    if failed.is_empty() && shape == DeleteResultShape::Legacy {
        return Value::String("success".into());
    }
    json!({"successNum": ok, "failedNum": failed.len(), "failedMessages": failed})
}

/// `DELETE /cloudartifact/v5/trashes`: deletes each item for good.
pub(crate) async fn delete_trashes(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, None) {
        return r;
    }
    let items = match parse_items(&body) {
        Ok(items) => items,
        Err(r) => return r,
    };
    let mut inner = state.lock();
    let art = &mut inner.artifact;
    let (mut done, mut failed) = (0usize, Vec::new());
    for item in &items {
        art.delete_requests.push(item.uri.clone());
        if art.locked.contains(&item.uri) {
            failed.push(format!(
                "{}: the artifact is locked by a retention policy",
                item.uri
            ));
            continue;
        }
        let Some(repo) = art.repos.get_mut(&item.id) else {
            failed.push(format!("{}: repository {} not found", item.uri, item.id));
            continue;
        };
        match locate(repo, item) {
            Ok(Target::Repo) => {
                art.repos.remove(&item.id);
                art.deleted.push(item.uri.clone());
                done += 1;
            }
            Ok(Target::File(i)) => {
                repo.trash.remove(i);
                art.deleted.push(item.uri.clone());
                done += 1;
            }
            Err(msg) => failed.push(msg),
        }
    }
    let shape = art.delete_shape;
    drop(inner);
    ok(counts_result(done, failed, shape))
}

/// `PUT /cloudartifact/v5/trashes`: restores each item out of the recycle bin.
pub(crate) async fn restore_trashes(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, None) {
        return r;
    }
    let items = match parse_items(&body) {
        Ok(items) => items,
        Err(r) => return r,
    };
    let mut inner = state.lock();
    let art = &mut inner.artifact;
    let (mut done, mut failed) = (0usize, Vec::new());
    for item in &items {
        let Some(repo) = art.repos.get_mut(&item.id) else {
            failed.push(format!("{}: repository {} not found", item.uri, item.id));
            continue;
        };
        match locate(repo, item) {
            Ok(Target::Repo) => {
                repo.status = "active".into();
                done += 1;
            }
            Ok(Target::File(i)) => {
                repo.trash.remove(i);
                done += 1;
            }
            Err(msg) => failed.push(msg),
        }
    }
    let shape = art.delete_shape;
    drop(inner);
    ok(counts_result(done, failed, shape))
}
