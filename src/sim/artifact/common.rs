//! What every Artifact route shares: the answer envelope (success and error), the documented
//! error codes, the authentication and tenant check, and query-parameter parsing.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};

use crate::sim::state::{AuthKind, SimState};
use crate::sim::AkSkVerified;

/// The documented 403 for a project the caller has no permission on.
pub(crate) const NO_PERMISSION: (&str, &str) =
    ("CR.4102", "You do not have permissions on the project.");
/// The documented 500.
pub(crate) const UNKNOWN_ERROR: (&str, &str) = ("CR.5000", "Unknown service error.");
/// A missing token or one the gateway refuses.
pub(crate) const BAD_TOKEN: (&str, &str) = (
    "APIGW.0301",
    "Incorrect IAM authentication information: token expired or invalid",
);
/// No such repository. Not in the reference's code table; follows its `CR.4xxx` pattern.
pub(crate) const NO_REPOSITORY: (&str, &str) = ("CR.4104", "The repository does not exist.");
/// A bad parameter. Not in the reference's code table either.
const BAD_PARAM: &str = "CR.4100";

/// The largest `page_size` the simulated audit and list calls accept.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// [`ok`] for a typed result, serialised once.
pub(super) fn ok_typed<T: Serialize>(result: T) -> Response {
    #[derive(Serialize)]
    struct Envelope<T> {
        status: &'static str,
        trace_id: String,
        result: T,
    }
    let trace = format!(
        "143002-{}-{}",
        Utc::now().timestamp_millis(),
        rand::random::<u16>()
    );
    (
        StatusCode::OK,
        Json(Envelope {
            status: "success",
            trace_id: trace,
            result,
        }),
    )
        .into_response()
}

/// The envelope every Artifact answer uses.
pub(super) fn ok(result: Value) -> Response {
    let trace = format!(
        "143002-{}-{}",
        Utc::now().timestamp_millis(),
        rand::random::<u16>()
    );
    (
        StatusCode::OK,
        Json(json!({"status": "success", "trace_id": trace, "result": result})),
    )
        .into_response()
}

/// An Artifact error: the envelope with `status: error` and the `{error_code, error_msg}` pair.
pub(crate) fn art_error(status: StatusCode, (code, msg): (&str, &str)) -> Response {
    let trace = format!("143002-{}-0", Utc::now().timestamp_millis());
    (
        status,
        Json(json!({"status": "error", "trace_id": trace, "error_code": code, "error_msg": msg})),
    )
        .into_response()
}

pub(super) fn bad_param(msg: &str) -> Response {
    art_error(StatusCode::BAD_REQUEST, (BAD_PARAM, msg))
}

/// The checks every Artifact call shares: auth, then the tenant and project in the path.
pub(super) fn check(
    state: &SimState,
    headers: &HeaderMap,
    aksk: &Option<Extension<AkSkVerified>>,
    tenant: Option<(&str, &str)>,
) -> Result<(), Response> {
    if aksk.is_none() && state.auth_kind(headers) != AuthKind::Token {
        return Err(art_error(StatusCode::UNAUTHORIZED, BAD_TOKEN));
    }
    if let Some((tenant_id, project_id)) = tenant {
        if tenant_id != state.cfg.domain_id || project_id != state.cfg.codearts_project_id {
            return Err(art_error(StatusCode::FORBIDDEN, NO_PERMISSION));
        }
    }
    Ok(())
}

pub(super) fn parse_bool(v: Option<&String>, name: &str) -> Result<Option<bool>, Response> {
    match v.map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(bad_param(&format!(
            "{name} must be true or false, got {other:?}"
        ))),
    }
}

pub(super) fn parse_page(
    v: Option<&String>,
    name: &str,
    default: u32,
    max: u32,
) -> Result<u32, Response> {
    match v {
        None => Ok(default),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad_param(&format!(
                "{name} must be an integer in 1..={max}"
            ))),
        },
    }
}
