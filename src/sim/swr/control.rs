//! SWR controls under `/__sim/swr/` (no auth, not recorded, no faults):
//!
//! - `POST /__sim/swr/tags`: `{"namespace", "repository", "tags": [..]}` appends tags to a
//!   repository, creating it (and its organization) if needed
//! - `PUT /__sim/swr/tag-outcome`: `{"namespace", "repository", "tag", "status"}` makes the
//!   tag's next syncs end with `status` (`failed`, `timeout`, `cancel`, `success`, `existed`;
//!   `running`: they never end)
//! - `PUT /__sim/swr/hang`: `{"namespace", "repository", "hang": bool}`: its syncs never finish
//!   (`false`: they finish again, those already running too)
//! - `POST /__sim/swr/shift`: a [`TagShift`](super::TagShift), `{"namespace", "repository",
//!   "after_pages": n, "remove": [..], "add_front": [..], "add_back": [..]}`: the tags change once the listing
//!   has served n pages
//! - `GET /__sim/swr/requests`: what the SWR routes received, as [`SwrRequest`](super::SwrRequest)s

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use crate::sim::error_response;
use crate::sim::state::SimState;

/// The statuses a sync job can end with.
/// `running`: the tag's sync never ends.
pub const FINAL_STATUSES: &[&str] = &[
    "success", "existed", "failed", "timeout", "cancel", "running",
];

pub(crate) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/swr/tags", post(add_tags))
        .route("/swr/tag-outcome", put(tag_outcome))
        .route("/swr/hang", put(hang))
        .route("/swr/shift", post(shift))
        .route("/swr/requests", get(requests))
}

fn bad_request(msg: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "SIM.400", msg)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddTags {
    namespace: String,
    repository: String,
    tags: Vec<String>,
}

async fn add_tags(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<AddTags>(&body) {
        Ok(a) => {
            state.add_swr_tags(&a.namespace, &a.repository, &a.tags);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(&format!(
            "expected {{\"namespace\", \"repository\", \"tags\": [..]}}: {e}"
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagOutcome {
    namespace: String,
    repository: String,
    tag: String,
    status: String,
}

async fn tag_outcome(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<TagOutcome>(&body) {
        Ok(t) if FINAL_STATUSES.contains(&t.status.as_str()) => {
            state.set_swr_tag_outcome(&t.namespace, &t.repository, &t.tag, Some(&t.status));
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(t) => bad_request(&format!(
            "status {:?}: one of {}",
            t.status,
            FINAL_STATUSES.join(", ")
        )),
        Err(e) => bad_request(&format!(
            "expected {{\"namespace\", \"repository\", \"tag\", \"status\"}}: {e}"
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hang {
    namespace: String,
    repository: String,
    hang: bool,
}

async fn hang(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Hang>(&body) {
        Ok(h) => {
            state.set_swr_hang(&h.namespace, &h.repository, h.hang);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(&format!(
            "expected {{\"namespace\", \"repository\", \"hang\": bool}}: {e}"
        )),
    }
}

async fn shift(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<super::TagShift>(&body) {
        Ok(s) => {
            state.lock().swr.shifts.push(s);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(&format!("not a tag shift: {e}")),
    }
}

async fn requests(State(state): State<Arc<SimState>>) -> Response {
    Json(state.lock().swr.requests.clone()).into_response()
}
