//! Applying a queued [`Fault`] to a request.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::state::SimState;
use super::{artifact, error_response, iam, repo, swr, swr_share, Fault, ResetConnection, Route};

/// Applies `fault`: the delay first, then a reset, a malformed body or an
/// error status; a fault with none of those serves the real response.
pub(crate) async fn apply(
    state: &SimState,
    route: Route,
    fault: Fault,
    req: Request,
    next: Next,
) -> Response {
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(ms) = fault.delay_after_ms {
        // The service acts at once; its answer comes late (past a client's timeout, say).
        let resp = next.run(req).await;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return resp;
    }
    if fault.reset_after {
        let _ = next.run(req).await;
        let mut resp = Response::new(Body::empty());
        resp.extensions_mut().insert(ResetConnection);
        return resp;
    }
    if fault.reset {
        let mut resp = Response::new(Body::empty());
        resp.extensions_mut().insert(ResetConnection);
        return resp;
    }
    let status = fault.status.map(|s| {
        StatusCode::from_u16(s).unwrap_or_else(|_| {
            tracing::warn!(
                status = s,
                "fault status is not a valid HTTP status; using 500"
            );
            StatusCode::INTERNAL_SERVER_ERROR
        })
    });
    let acted = fault.status_after && status.is_some() && !fault.malformed;
    let (req, next) = if acted {
        // The service acts; the gateway in front of it answers with the error.
        let _ = next.run(req).await;
        (None, None)
    } else {
        (Some(req), Some(next))
    };
    let mut resp = if fault.malformed {
        malformed(state, route, status)
    } else if let (Some(status), true) = (status, route.is_artifact()) {
        let (default_code, default_msg) = documented_error(route, status);
        artifact::art_error(
            status,
            (
                fault.error_code.as_deref().unwrap_or(&default_code),
                fault.error_msg.as_deref().unwrap_or(&default_msg),
            ),
        )
    } else if let Some(status) = status {
        let (default_code, default_msg) = documented_error(route, status);
        error_response(
            status,
            fault.error_code.as_deref().unwrap_or(&default_code),
            fault.error_msg.as_deref().unwrap_or(&default_msg),
        )
    } else if let (Some(req), Some(next)) = (req, next) {
        next.run(req).await
    } else {
        unreachable!("a fault that acted answers with its status")
    };
    if let Some(secs) = fault.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// The body a route really answers with for `status`: the documented bodies
/// for 401/403/404, otherwise `CH.00<status>` with the reason phrase.
fn documented_error(route: Route, status: StatusCode) -> (String, String) {
    let documented = match (route, status.as_u16()) {
        (Route::IamToken, 401) => Some(iam::WRONG_CREDENTIALS),
        (Route::MirrorStart | Route::MirrorShow, 401) => Some(repo::TOKEN_EXPIRED),
        (Route::MirrorStart | Route::MirrorShow, 403) => Some(repo::FORBIDDEN),
        (Route::MirrorStart | Route::MirrorShow, 404) => Some(repo::NOT_FOUND),
        (Route::SwrSharedRepos | Route::SwrRepoDomains, s) => match s {
            401 => Some(swr_share::BAD_TOKEN),
            400 => Some(swr_share::INVALID_PARAM),
            404 => Some(swr_share::NO_REPOSITORY),
            429 => Some(swr_share::THROTTLED),
            500..=599 => Some(swr_share::INTERNAL),
            _ => None,
        },
        (r, 401) if r.is_artifact() => Some(artifact::BAD_TOKEN),
        (r, 403) if r.is_artifact() => Some(artifact::NO_PERMISSION),
        (r, 404) if r.is_artifact() => Some(artifact::NO_REPOSITORY),
        (r, 500) if r.is_artifact() => Some(artifact::UNKNOWN_ERROR),
        (r, 401) if r.is_swr() => Some(swr::BAD_TOKEN),
        (r, 403) if r.is_swr() => Some(swr::FORBIDDEN),
        (r, 404) if r.is_swr() => Some(swr::NO_REPOSITORY),
        (r, 429) if r.is_swr() => Some(swr::THROTTLED),
        (r, s) if r.is_swr() && s >= 500 => Some(swr::INTERNAL),
        _ => None,
    };
    match documented {
        Some((code, msg)) => (code.to_string(), msg.to_string()),
        None => (
            format!("CH.00{}", status.as_u16()),
            status
                .canonical_reason()
                .unwrap_or("Unknown Error")
                .to_string(),
        ),
    }
}

/// A complete HTTP response whose JSON body is cut off halfway, as a broken
/// proxy or a crashed backend might send.
fn malformed(state: &SimState, route: Route, status: Option<StatusCode>) -> Response {
    let sample = malformed_sample(route);
    // Byte index into ASCII text, so this is always a char boundary.
    let truncated = sample[..sample.len() / 2].to_string();
    let default_status = match route {
        Route::IamToken => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let mut resp = Response::new(Body::from(truncated));
    *resp.status_mut() = status.unwrap_or(default_status);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if route == Route::IamToken && resp.status() == StatusCode::CREATED {
        // A real 201 always carries the token header; this one carries a
        // token that was never registered, so a client that ignores the
        // broken body and uses it anyway gets 401s rather than success.
        let token = iam::new_token_value();
        if let Ok(value) = HeaderValue::from_str(&token) {
            resp.headers_mut().insert("x-subject-token", value);
        }
        state.lock().issued.push(token);
    }
    resp
}

/// What the route's success body looks like; cut in half by `malformed`.
fn malformed_sample(route: Route) -> String {
    match route {
        Route::IamToken => serde_json::json!({
            "token": {
                "expires_at": "2024-01-16T08:30:00.000000Z",
                "issued_at": "2024-01-15T08:30:00.000000Z",
                "methods": ["password"],
                "catalog": []
            }
        })
        .to_string(),
        Route::MirrorStart => {
            serde_json::json!({ "jid": "09a56216-cb37-494c-b314-d88dc6c9ff57" }).to_string()
        }
        Route::MirrorShow => serde_json::json!({
            "id": 100001,
            "repository_id": 1,
            "update_status": "finished",
            "last_update_at": "2024-01-15T08:30:00.000+08:00",
            "url": "https://github.com/example-org/project-1.git",
            "number_of_failures": 0
        })
        .to_string(),
        Route::ArtifactRepoList => serde_json::json!({
            "status": "success", "trace_id": "143006-1701221592150-283",
            "result": {"total": 1, "repositories": [{"id": null, "name": "r", "format": "npm", "status": "trash"}]}
        })
        .to_string(),
        Route::ArtifactRepoShow => serde_json::json!({
            "status": "success", "trace_id": "143002-1701221877267-423",
            "result": {"name": "r", "storageSummaryInfo": {"filesCount": 0, "usedSpace": "0 MB"}}
        })
        .to_string(),
        Route::ArtifactFileTree => serde_json::json!({
            "status": "success", "trace_id": "143002-1701223028671-441",
            "result": {"children": [{"name": "1", "path": "r/1", "folder": true}], "total": "1"}
        })
        .to_string(),
        Route::TrashDelete | Route::TrashRestore => serde_json::json!({
            "status": "success", "trace_id": "143002-1701173929284-59",
            "result": {"successNum": 2, "failedNum": 0, "failedMessages": []}
        })
        .to_string(),
        Route::Storage => serde_json::json!({
            "status": "success", "trace_id": "143006-1701220621380-265",
            "result": {"totalStorage": "549.62 MB", "totalCount": 183}
        })
        .to_string(),
        Route::StorageTrend => serde_json::json!({
            "status": "success", "trace_id": "143006-1701222420819-287",
            "result": [{"filesCount": 2, "usedSpaceLength": 1034390, "usedSpace": "1,010.15 KB", "summaryDate": "2023-11-22"}]
        })
        .to_string(),
        Route::SwrSharedRepos => serde_json::json!([
            {"name": "api-server", "namespace": "team-a", "num_images": 3, "status": false, "total_range": 1}
        ])
        .to_string(),
        Route::SwrRepoDomains => serde_json::json!([
            {"namespace": "team-a", "repository": "api-server", "access_domain": "partner-x", "permit": "read", "deadline": "forever", "status": true}
        ])
        .to_string(),
        Route::SwrTagList => {
            serde_json::json!([{"id": 50001, "repo_id": 700, "Tag": "v1.0.0", "digest": "sha256:0"}])
                .to_string()
        }
        Route::SwrSyncStart => serde_json::json!(["v1.0.0", "v1.0.1"]).to_string(),
        Route::SwrSyncJobs => serde_json::json!([
            {"id": 1001, "tag": "v1.0.0", "status": "running", "remoteRegionId": "ap-southeast-1"}
        ])
        .to_string(),
        Route::Audit => serde_json::json!({
            "status": "success", "trace_id": "143002-1701222589443-431",
            "result": {"auditInfoList": [{"id": "2271182", "module": "file", "operation": "upload"}], "total": 1}
        })
        .to_string(),
    }
}
