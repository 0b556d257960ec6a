//! The operator API on the HTTP listener, present only with `[server] api_token`: every request
//! carries `Authorization: Bearer <token>` (compared in constant time; 401 otherwise).
//!
//! - `GET /jobs?kind=&status=&limit=` — as `jobs list --json`;
//! - `GET /jobs/{id}` — as `jobs show --json` (attempts, requests, purge items);
//! - `POST /jobs` `{"kind", "params", "key"}` — as `enqueue` into the store: 202 with the job
//!   and what became of it (`queued`, `duplicate`, `coalesced`), 400 with the reason (recorded
//!   `rejected`), 503 when the store cannot commit;
//! - `GET /schedules` — as `schedules list --json`;
//! - `POST /schedules/{name}/run` — as `schedules run`: 202 with the job (`queued`) or 409 when
//!   the previous run is still active (recorded `skipped`);
//! - `POST /schedules/{name}/pause`, `…/resume` — as `schedules pause|resume` (200; `changed`
//!   says whether it was already so).
//! - `POST /jobs/{id}/cancel` — as `jobs cancel ID --json` (200; 404 no such job; 409 final);
//! - `POST /jobs/{id}/retry` — as `jobs retry ID --json` (200 with `new_id`; 404; 409);
//! - `POST /jobs/retry` `{"status", "kind", "since", "schedule", "limit"}` — a bulk replay, as
//!   `jobs retry --limit N --json` (200; 400 for a bad filter).
//!
//! The routes are listed in [`ROUTES`] and documented in `openapi.json` at the repository's
//! root; a test checks the two against the router.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::cli::lifecycle::{self, Answer, BulkRequest};
use crate::cli::render::{job_detail, JobView};
use crate::cli::schedules as sched;
use crate::config::Config;
use crate::ingress::{self, Submission, Submitted};
use crate::store::{ListFilter, Store};
use crate::{JobId, Source, Status};

/// Every route of the operator API, as `(method, path)`; `openapi.json` documents each.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/jobs"),
    ("post", "/jobs"),
    ("get", "/jobs/{id}"),
    ("get", "/schedules"),
    ("post", "/schedules/{name}/run"),
    ("post", "/schedules/{name}/pause"),
    ("post", "/schedules/{name}/resume"),
    ("post", "/jobs/{id}/cancel"),
    ("post", "/jobs/{id}/retry"),
    ("post", "/jobs/retry"),
];

struct Api {
    store: Store,
    cfg: Arc<Config>,
    token: SecretString,
}

/// The API's routes, or none when `[server] api_token` is absent.
pub fn router(store: Store, cfg: Arc<Config>) -> Result<Router, crate::config::Error> {
    let Some(src) = cfg.server.as_ref().and_then(|s| s.api_token.clone()) else {
        return Ok(Router::new());
    };
    let token = src.resolve("server.api_token", &cfg.base_dir)?;
    let api = Arc::new(Api { store, cfg, token });
    Ok(Router::new()
        .route("/jobs", get(list).post(submit))
        .route("/jobs/{id}", get(show))
        .route("/schedules", get(schedules))
        .route("/schedules/{name}/run", post(run_schedule))
        .route("/schedules/{name}/pause", post(pause_schedule))
        .route("/schedules/{name}/resume", post(resume_schedule))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/retry", post(retry_one))
        .route("/jobs/retry", post(retry_bulk))
        .route_layer(middleware::from_fn_with_state(api.clone(), bearer))
        .with_state(api))
}

async fn bearer(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::as_bytes);
    let ok = given.is_some_and(|g| bool::from(g.ct_eq(api.token.expose_secret().as_bytes())));
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer")],
            Json(
                json!({"error": "a valid `Authorization: Bearer <server.api_token>` is required"}),
            ),
        )
            .into_response();
    }
    next.run(req).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    kind: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(api): State<Arc<Api>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return bad(e.body_text()),
    };
    if let Some(s) = &q.status {
        if Status::parse(s).is_none() {
            return bad(format!(
                "status {s:?}: unknown (known: {})",
                Status::ALL.map(Status::as_str).join(", ")
            ));
        }
    }
    let filter = ListFilter {
        kind: q.kind,
        status: q.status,
        limit: q.limit.unwrap_or(50),
    };
    match api.store.list(&filter).await {
        Ok(jobs) => Json(jobs.iter().map(JobView::from).collect::<Vec<_>>()).into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn show(State(api): State<Arc<Api>>, Path(id): Path<JobId>) -> Response {
    let job = match api.store.get(id).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": format!("no job {id}")})),
            )
                .into_response()
        }
        Err(e) => return unavailable(&e),
    };
    match job_detail(&api.store, &job).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => unavailable(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewJob {
    kind: String,
    #[serde(default = "empty_object")]
    params: Value,
    #[serde(default)]
    key: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

async fn submit(State(api): State<Arc<Api>>, body: axum::body::Bytes) -> Response {
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(e) => return bad(format!("body is not UTF-8: {e}")),
    };
    let parsed = ingress::json::from_str_strict(text)
        .map_err(|e| format!("body is not JSON: {e}"))
        .and_then(|v| {
            serde_json::from_value::<NewJob>(v)
                .map_err(|e| format!("expected {{\"kind\", \"params\", \"key\"}}: {e}"))
        });
    let job = match parsed {
        Ok(j) => j,
        Err(why) => return bad(why),
    };
    let sub = Submission {
        kind: job.kind,
        params: job.params,
        source: Source::Cli,
        key: job.key,
        schedule: None,
    };
    match ingress::submit(&api.store, &api.cfg, sub).await {
        Ok(Submitted::Rejected { id, reason }) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("rejected: {reason}"), "id": id})),
        )
            .into_response(),
        Ok(done) => {
            let outcome = match done {
                Submitted::Queued(_) => "queued",
                Submitted::Duplicate(_) => "duplicate",
                Submitted::Coalesced(_) => "coalesced",
                Submitted::Skipped(_) => "skipped",
                Submitted::Rejected { .. } => "rejected",
            };
            (
                StatusCode::ACCEPTED,
                Json(json!({"id": done.id(), "outcome": outcome})),
            )
                .into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// Who a cancel through the API is recorded as.
const API_USER: &str = "the operator API";

fn answer(r: Result<Answer, crate::store::Error>) -> Response {
    match r {
        Ok(a) => (
            StatusCode::from_u16(a.http_status()).unwrap_or(StatusCode::OK),
            Json(a.body),
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn cancel(State(api): State<Arc<Api>>, Path(id): Path<JobId>) -> Response {
    answer(lifecycle::cancel(&api.store, id, API_USER).await)
}

async fn retry_one(State(api): State<Arc<Api>>, Path(id): Path<JobId>) -> Response {
    answer(lifecycle::retry_one(&api.store, &api.cfg, id, Source::Cli).await)
}

async fn retry_bulk(State(api): State<Arc<Api>>, body: axum::body::Bytes) -> Response {
    let parsed = std::str::from_utf8(&body)
        .map_err(|e| format!("body is not UTF-8: {e}"))
        .and_then(|t| {
            ingress::json::from_str_strict(t).map_err(|e| format!("body is not JSON: {e}"))
        })
        .and_then(|v| {
            serde_json::from_value::<BulkRequest>(v).map_err(|e| {
                format!(
                    "expected {{\"limit\", \"status\", \"kind\", \"since\", \"schedule\"}}: {e}"
                )
            })
        });
    match parsed {
        Ok(req) => answer(lifecycle::retry_bulk(&api.store, &api.cfg, &req, Source::Cli).await),
        Err(why) => bad(why),
    }
}

fn bad(why: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response()
}

fn unavailable(e: &crate::store::Error) -> Response {
    tracing::warn!(error = %e, "operator API: the store did not answer");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("retry-after", "5")],
        Json(json!({"error": "the job store cannot answer now; retry later"})),
    )
        .into_response()
}

async fn schedules(State(api): State<Arc<Api>>) -> Response {
    match sched::views(&api.cfg, &api.store).await {
        Ok(views) => Json(views).into_response(),
        Err(e) => unavailable(&e),
    }
}

fn no_schedule(why: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": why}))).into_response()
}

async fn run_schedule(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    let s = match sched::find(&api.cfg, &name) {
        Ok(s) => s,
        Err(why) => return no_schedule(why),
    };
    match sched::fire_now(&api.cfg, &api.store, s, Source::Cli).await {
        Ok(Submitted::Skipped(id)) => (
            StatusCode::CONFLICT,
            Json(json!({"id": id, "outcome": "skipped", "error": "the previous run is still active"})),
        )
            .into_response(),
        Ok(Submitted::Rejected { id, reason }) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("rejected: {reason}"), "id": id})),
        )
            .into_response(),
        Ok(done) => (
            StatusCode::ACCEPTED,
            Json(json!({"id": done.id(), "outcome": "queued"})),
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn pause_schedule(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    set_paused(&api, &name, true).await
}

async fn resume_schedule(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    set_paused(&api, &name, false).await
}

async fn set_paused(api: &Api, name: &str, paused: bool) -> Response {
    if let Err(why) = sched::find(&api.cfg, name) {
        return no_schedule(why);
    }
    match api.store.set_paused(name, paused, "api").await {
        Ok(changed) => {
            Json(json!({"name": name, "paused": paused, "changed": changed})).into_response()
        }
        Err(e) => unavailable(&e),
    }
}
