//! CodeArts Repo remote mirror: `start_remote_mirror_synchronization` and
//! `show_remote_mirror` (`POST`/`GET /v4/repositories/{repository_id}/remote-mirror`).
//!
//! Checks run in this order: token (401), repository id and existence (404),
//! permission (403), then the request body (400). The vendor page documents
//! only 200, 401, 403 and 404 for the start call.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::state::{AuthKind, RunningSync, SimState};
use super::{error_response, AkSkVerified, CallNote};
use axum::Extension;

pub(crate) const MIRROR_PATH: &str = "/v4/repositories/{repository_id}/remote-mirror";

/// The documented 401 body, for a missing, unknown or expired token alike.
pub(crate) const TOKEN_EXPIRED: (&str, &str) =
    ("DEV.00000003", "Authentication information expired.");
/// The documented 403 body.
pub(crate) const FORBIDDEN: (&str, &str) = (
    "CH.004403",
    "Insufficient permissions. Apply for the required permission and try again.",
);
/// The documented 404 body.
pub(crate) const NOT_FOUND: (&str, &str) = ("CH.004404", "Repository Not Found");
/// A bad request body. The start page documents no 400 at all; the code
/// follows the `CH.004<status>` pattern of the documented ones.
const BAD_BODY: &str = "CH.004400";

/// Base64 as a Java service decodes it (`java.util.Base64.getDecoder()`):
/// the standard alphabet only (no `-`/`_`), padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A repository id as the vendor page allows it: an integer in 1..=2147483647.
///
/// Anything else is answered with 404 `CH.004404` rather than 400: no such
/// repository can exist, and the page lists no 400 for this call.
pub(crate) fn parse_repository_id(raw: &str) -> Option<u32> {
    let id: u32 = raw.parse().ok()?;
    (1..=i32::MAX as u32).contains(&id).then_some(id)
}

fn reply((code, msg): (&str, &str), status: StatusCode) -> Response {
    error_response(status, code, msg)
}

fn bad_body(msg: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, BAD_BODY, msg)
}

/// Why a mirror call was refused before its own work, with the documented bodies.
enum Denied {
    Unauthorized,
    NotFound,
    Forbidden,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Unauthorized => reply(TOKEN_EXPIRED, StatusCode::UNAUTHORIZED),
            Denied::NotFound => reply(NOT_FOUND, StatusCode::NOT_FOUND),
            Denied::Forbidden => reply(FORBIDDEN, StatusCode::FORBIDDEN),
        }
    }
}

/// Runs the checks every mirror call shares and returns the repository id.
fn check_access(
    state: &SimState,
    headers: &HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
    params: Result<RawPathParams, RawPathParamsRejection>,
) -> Result<u32, Denied> {
    if aksk.is_none() && state.auth_kind(headers) != AuthKind::Token {
        return Err(Denied::Unauthorized);
    }
    let id = params.ok().and_then(|p| {
        p.iter()
            .find(|(k, _)| *k == "repository_id")
            .and_then(|(_, v)| parse_repository_id(v))
    });
    let Some(id) = id else {
        return Err(Denied::NotFound);
    };
    let mut inner = state.lock();
    match inner.repo_mut(id, &state.cfg.seed_repos, state.created_at) {
        None => Err(Denied::NotFound),
        Some(repo) if repo.behaviour.forbidden => Err(Denied::Forbidden),
        Some(_) => Ok(id),
    }
}

/// The start body; every field is optional.
#[derive(Deserialize)]
struct StartBody {
    username: Option<String>,
    password: Option<String>,
    endpoint_uuid: Option<String>,
    #[allow(dead_code)] // accepted and type-checked; a simulated sync ignores it
    force_fetch: Option<bool>,
}

pub(crate) async fn start_mirror(
    State(state): State<Arc<SimState>>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
    body: Bytes,
) -> Response {
    let id = match check_access(&state, &headers, aksk, params) {
        Ok(id) => id,
        Err(denied) => return denied.into_response(),
    };

    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return bad_body("The request body must be JSON (Content-Type: application/json).");
    }
    // The body must be a JSON object (`{}` at least): a bare array or an
    // empty body is not the documented shape.
    let start: StartBody = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v @ serde_json::Value::Object(_)) => match serde_json::from_value(v) {
            Ok(start) => start,
            Err(_) => return bad_body("Invalid request body: a field has the wrong type."),
        },
        _ => return bad_body("Invalid request body: expected a JSON object."),
    };
    // The credentials must be Base64 (the vendor page says so). The error
    // for a value that is not is undocumented; 400 is what a bad parameter gets.
    let username = match start.username.as_deref().map(|u| BASE64.decode(u)) {
        None => None,
        Some(Ok(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Some(Err(_)) => return bad_body("Invalid parameter: username must be Base64 encoded."),
    };
    if let Some(Err(_)) = start.password.as_deref().map(|p| BASE64.decode(p)) {
        return bad_body("Invalid parameter: password must be Base64 encoded.");
    }

    let now = Utc::now();
    {
        let mut inner = state.lock();
        let Some(repo) = inner.repo_mut(id, &state.cfg.seed_repos, state.created_at) else {
            // Removed between the checks and here.
            return reply(NOT_FOUND, StatusCode::NOT_FOUND);
        };
        repo.settle(now);
        let duration = repo
            .behaviour
            .sync_duration
            .unwrap_or(state.cfg.sync_duration);
        let finishes_at = TimeDelta::from_std(duration)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if let Some(uuid) = start.endpoint_uuid.filter(|u| !u.is_empty()) {
            repo.mirror.endpoint_uuid = uuid;
        }
        // A start while a sync runs restarts it: the outcome shows once the
        // latest one has run for its full duration.
        repo.running = Some(RunningSync {
            started_at: now,
            finishes_at,
            failure: repo.behaviour.sync_fails.clone(),
        });
        *inner.starts.entry(id).or_insert(0) += 1;
    }

    let jid = uuid::Uuid::new_v4().to_string();
    let mut resp = (StatusCode::OK, Json(serde_json::json!({ "jid": jid }))).into_response();
    resp.extensions_mut().insert(CallNote {
        body_username: username,
    });
    resp
}

/// `show_remote_mirror`'s response object.
#[derive(Serialize)]
struct MirrorView {
    id: u64,
    repository_id: u32,
    update_status: String,
    last_update_at: String,
    url: String,
    last_successful_update_at: String,
    number_of_failures: u32,
    mirroring_enabled: bool,
    is_private: bool,
    endpoint_uuid: String,
    last_error: String,
}

const UTC_PLUS_8: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

/// The exact timestamp format is undocumented. This uses ISO-8601 with
/// milliseconds and the +08:00 offset of the service's home region, so a
/// client has to honour the offset; never-set times are empty strings.
fn repo_time(t: Option<DateTime<Utc>>) -> String {
    let Some(t) = t else {
        return String::new();
    };
    t.with_timezone(&UTC_PLUS_8)
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

pub(crate) async fn show_mirror(
    State(state): State<Arc<SimState>>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    let id = match check_access(&state, &headers, aksk, params) {
        Ok(id) => id,
        Err(denied) => return denied.into_response(),
    };
    let now = Utc::now();
    let view = {
        let mut inner = state.lock();
        let Some(repo) = inner.repo_mut(id, &state.cfg.seed_repos, state.created_at) else {
            return reply(NOT_FOUND, StatusCode::NOT_FOUND);
        };
        repo.settle(now);
        // The vendor lists no `update_status` values. These follow the
        // usual mirror life cycle: queued briefly, then running, then
        // finished or failed. A client should decide by the timestamps and
        // counters, not by these strings.
        let update_status = match &repo.running {
            Some(run) if now < run.started_at + (run.finishes_at - run.started_at) / 5 => {
                "scheduled".to_string()
            }
            Some(_) => "started".to_string(),
            None => repo.mirror.update_status.clone(),
        };
        let m = &repo.mirror;
        MirrorView {
            id: m.id,
            repository_id: id,
            update_status,
            last_update_at: repo_time(m.last_update_at),
            url: m.url.clone(),
            last_successful_update_at: repo_time(m.last_successful_update_at),
            number_of_failures: m.number_of_failures,
            mirroring_enabled: m.mirroring_enabled,
            is_private: m.is_private,
            endpoint_uuid: m.endpoint_uuid.clone(),
            last_error: m.last_error.clone(),
        }
    };
    (StatusCode::OK, Json(view)).into_response()
}
