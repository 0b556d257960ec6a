//! Control routes under `/__sim/` for a standalone simulator
//! (`codearts-syncd simulate --listen ADDR`). They need no auth, are not
//! recorded as calls and take no faults.
//!
//! - `POST /__sim/faults`: queue a [`Fault`] (JSON object) or several (array)
//! - `DELETE /__sim/faults`: clear queued faults
//! - `POST /__sim/expire-tokens`: expire every token issued so far
//! - `GET /__sim/calls`: the recorded calls, as a JSON array of [`Call`](super::Call)
//! - `PUT /__sim/repos/{id}`: make a repository exist with a behaviour,
//!   `{"forbidden": bool, "sync_fails": "msg", "sync_duration_ms": n}` (all optional)
//! - `DELETE /__sim/repos/{id}`: remove a repository
//! - `POST /__sim/audit/{module}/{repo}`: append audit records to a log,
//!   `{"count": n}` now, or `{"count": n, "after_pages": k}` once the audit
//!   route has answered k pages of that log (an append in the middle of a walk)
//! - `PUT /__sim/trash-result`: `{"shape": "counts" | "legacy"}`, how the
//!   trash delete answers `result`
//! - `GET /__sim/trash`: the recycle bin's content
//! - `GET /__sim/health`: `{"status": "ok"}`
//! - `GET /__sim/swr/shares`: SWR's shared repositories and their accounts; `POST` one change
//!   or an array, `{"op": "put" | "remove", "namespace", "repository", "access_domain",
//!   "permit", "deadline", "after_pages"}` (`after_pages`: once the shared listing has answered
//!   that many more pages, a share added or removed while a walk is in progress)
//! - `/__sim/swr/…`: the SWR controls (see `swr/control.rs`)

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::artifact::model::{AuditTrigger, DeleteResultShape};
use super::repo::parse_repository_id;
use super::state::SimState;
use super::{error_response, Fault, RepoBehaviour};

pub(crate) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/faults", post(add_faults).delete(clear_faults))
        .route("/expire-tokens", post(expire_tokens))
        .route("/calls", get(calls))
        .route("/repos/{id}", put(set_repo).delete(remove_repo))
        .route("/audit/{module}/{repo}", post(append_audit))
        .route("/trash-result", put(set_trash_result))
        .route("/trash", get(trash))
        .route("/health", get(health))
        .route("/latency", put(set_latency))
        .merge(super::swr_share::control_router())
        .merge(super::swr::control::router())
}

fn bad_request(msg: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "SIM.400", msg)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<Fault>),
    One(Fault),
}

async fn add_faults(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let faults = match serde_json::from_slice::<OneOrMany>(&body) {
        Ok(OneOrMany::Many(faults)) => faults,
        Ok(OneOrMany::One(fault)) => vec![fault],
        Err(e) => return bad_request(&format!("not a fault or an array of faults: {e}")),
    };
    if let Some(bad) = faults
        .iter()
        .filter_map(|f| f.status)
        .find(|s| StatusCode::from_u16(*s).is_err())
    {
        return bad_request(&format!("{bad} is not an HTTP status"));
    }
    let queued = faults.len();
    for fault in faults {
        state.push_fault(fault);
    }
    Json(serde_json::json!({ "queued": queued })).into_response()
}

async fn clear_faults(State(state): State<Arc<SimState>>) -> StatusCode {
    state.clear_faults();
    StatusCode::NO_CONTENT
}

async fn expire_tokens(State(state): State<Arc<SimState>>) -> StatusCode {
    state.expire_tokens();
    StatusCode::NO_CONTENT
}

async fn calls(State(state): State<Arc<SimState>>) -> Response {
    Json(state.calls()).into_response()
}

async fn set_repo(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    // Only ids the Repo routes accept can be reached, so refuse others.
    let Some(id) = parse_repository_id(&id) else {
        return bad_request("repository id must be an integer in 1..=2147483647");
    };
    let behaviour = if body.iter().all(u8::is_ascii_whitespace) {
        RepoBehaviour::default()
    } else {
        match serde_json::from_slice::<RepoBehaviour>(&body) {
            Ok(b) => b,
            Err(e) => return bad_request(&format!("not a repository behaviour: {e}")),
        }
    };
    state.set_repo(id, behaviour);
    StatusCode::NO_CONTENT.into_response()
}

async fn remove_repo(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_repository_id(&id) else {
        return bad_request("repository id must be an integer in 1..=2147483647");
    };
    state.remove_repo(id);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Append {
    count: u64,
    #[serde(default)]
    after_pages: Option<u64>,
}

async fn append_audit(
    State(state): State<Arc<SimState>>,
    Path((module, repo)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let a: Append = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return bad_request(&format!(
                "expected {{\"count\": n[, \"after_pages\": k]}}: {e}"
            ))
        }
    };
    let mut inner = state.lock();
    match a.after_pages {
        None => inner.artifact.append_audit(&module, &repo, a.count),
        Some(k) => inner.artifact.triggers.push(AuditTrigger {
            module,
            repo,
            after_pages: k,
            count: a.count,
        }),
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrashResult {
    shape: DeleteResultShape,
}

async fn set_trash_result(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<TrashResult>(&body) {
        Ok(t) => {
            state.lock().artifact.delete_shape = t.shape;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(&format!(
            "expected {{\"shape\": \"counts\" | \"legacy\"}}: {e}"
        )),
    }
}

async fn trash(State(state): State<Arc<SimState>>) -> Response {
    let entries = state.lock().artifact.trash_entries();
    Json(entries).into_response()
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `PUT /__sim/latency` `{"ms": 100}`: every API answer is delayed by this long from now on.
async fn set_latency(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Latency {
        ms: u64,
    }
    match serde_json::from_slice::<Latency>(&body) {
        Ok(l) if l.ms <= 60_000 => {
            state.set_latency(std::time::Duration::from_millis(l.ms));
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(l) => (
            StatusCode::BAD_REQUEST,
            format!("ms: {} is above the maximum of 60000\n", l.ms),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("expected {{\"ms\": N}}: {e}\n"),
        )
            .into_response(),
    }
}
