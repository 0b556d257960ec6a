//! IAM `POST /v3/auth/tokens` by password (`keystone_create_user_token_by_password`).
//!
//! Success is 201 with the token in the `X-Subject-Token` header and the
//! token's details in the body, as the vendor pages show.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use rand::RngCore;
use serde::Deserialize;

use super::error_response;
use super::state::{SimState, TokenRecord};

/// Wrong user name, password or account. The message is IAM's; the code
/// `IAM.0004` is not in the reference pages we keep.
pub(crate) const WRONG_CREDENTIALS: (&str, &str) =
    ("IAM.0004", "The username or password is wrong.");
/// A body that is not the documented shape. Neither code nor message is in
/// our reference pages; the status follows the usual 400 for a bad request.
const MALFORMED: (&str, &str) = ("IAM.0001", "The request body is malformed.");
/// The scope names a project that is not this account's. Not in our
/// reference pages either.
const BAD_SCOPE: (&str, &str) = ("IAM.0002", "The project in the scope does not exist.");
/// A content type other than JSON. Not in our reference pages.
const BAD_CONTENT_TYPE: (&str, &str) = ("IAM.0003", "The Content-Type must be application/json.");

#[derive(Deserialize)]
struct TokenRequest {
    auth: AuthBody,
}

#[derive(Deserialize)]
struct AuthBody {
    identity: Identity,
    scope: Option<Scope>,
}

#[derive(Deserialize)]
struct Identity {
    methods: Vec<String>,
    password: Option<PasswordMethod>,
}

#[derive(Deserialize)]
struct PasswordMethod {
    user: UserCredentials,
}

#[derive(Deserialize)]
struct UserCredentials {
    name: Option<String>,
    id: Option<String>,
    password: String,
    domain: Option<NameOrId>,
}

#[derive(Deserialize)]
struct NameOrId {
    name: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize)]
struct Scope {
    project: Option<NameOrId>,
    domain: Option<NameOrId>,
}

/// A stable 32-hex-digit id derived from a name, so the account's domain and
/// user ids stay the same across runs (FNV-1a, twice with different bases).
pub(crate) fn stable_id(name: &str) -> String {
    let fnv = |basis: u64| {
        name.bytes().fold(basis, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4)
    )
}

/// An opaque token value like IAM's PKI tokens (`MII…`, Base64 with `-` for `/`).
pub(crate) fn new_token_value() -> String {
    let mut raw = [0u8; 384];
    rand::thread_rng().fill_bytes(&mut raw);
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
    format!("MII{}", encoded.replace('/', "-"))
}

/// IAM writes times as UTC with microseconds and a trailing `Z`.
fn iam_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false)
}

fn reject((code, msg): (&str, &str), status: StatusCode) -> Response {
    error_response(status, code, msg)
}

pub(crate) async fn create_token(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    // The SDK sends `application/json;charset=utf-8`; plain JSON is fine too.
    if !is_json(&headers) {
        return reject(BAD_CONTENT_TYPE, StatusCode::BAD_REQUEST);
    }
    let Ok(request) = serde_json::from_slice::<TokenRequest>(&body) else {
        return reject(MALFORMED, StatusCode::BAD_REQUEST);
    };
    let auth = request.auth;
    if !auth.identity.methods.iter().any(|m| m == "password") {
        return reject(MALFORMED, StatusCode::BAD_REQUEST);
    }
    let Some(PasswordMethod { user }) = auth.identity.password else {
        return reject(MALFORMED, StatusCode::BAD_REQUEST);
    };
    let cfg = &state.cfg;
    let domain_id = stable_id(&cfg.domain_name);
    let user_id = stable_id(&format!("{}/{}", cfg.domain_name, cfg.user_name));

    // A user is named within an account, so a name needs the account; an id
    // is unique on its own.
    let user_ok = match (&user.name, &user.id) {
        (Some(name), _) => {
            let Some(domain) = &user.domain else {
                return reject(MALFORMED, StatusCode::BAD_REQUEST);
            };
            let domain_ok = match (&domain.name, &domain.id) {
                (Some(n), _) => *n == cfg.domain_name,
                (None, Some(id)) => *id == domain_id,
                (None, None) => return reject(MALFORMED, StatusCode::BAD_REQUEST),
            };
            domain_ok && *name == cfg.user_name
        }
        (None, Some(id)) => *id == user_id,
        (None, None) => return reject(MALFORMED, StatusCode::BAD_REQUEST),
    };
    if !user_ok || user.password != cfg.password {
        return reject(WRONG_CREDENTIALS, StatusCode::UNAUTHORIZED);
    }

    // Huawei IAM requires a scope; CodeArts needs it to be a project.
    let Some(scope) = auth.scope else {
        return reject(MALFORMED, StatusCode::BAD_REQUEST);
    };
    let project_scoped = match (&scope.project, &scope.domain) {
        (Some(p), _) => {
            let ok = match (&p.id, &p.name) {
                (Some(id), _) => *id == cfg.iam_project_id,
                (None, Some(name)) => *name == cfg.project_name,
                (None, None) => return reject(MALFORMED, StatusCode::BAD_REQUEST),
            };
            if !ok {
                return reject(BAD_SCOPE, StatusCode::BAD_REQUEST);
            }
            true
        }
        (None, Some(d)) => {
            let ok = match (&d.id, &d.name) {
                (Some(id), _) => *id == domain_id,
                (None, Some(name)) => *name == cfg.domain_name,
                (None, None) => return reject(MALFORMED, StatusCode::BAD_REQUEST),
            };
            if !ok {
                return reject(BAD_SCOPE, StatusCode::BAD_REQUEST);
            }
            false
        }
        (None, None) => return reject(MALFORMED, StatusCode::BAD_REQUEST),
    };

    let issued_at = Utc::now();
    let ttl = TimeDelta::from_std(cfg.token_ttl).unwrap_or(TimeDelta::MAX);
    let expires_at = issued_at
        .checked_add_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let token = new_token_value();
    let Ok(header_value) = HeaderValue::from_str(&token) else {
        return reject(MALFORMED, StatusCode::INTERNAL_SERVER_ERROR);
    };
    {
        let mut inner = state.lock();
        inner.tokens.insert(
            token.clone(),
            TokenRecord {
                expires_at,
                project_scoped,
                revoked: false,
            },
        );
        inner.issued.push(token);
    }

    let domain = serde_json::json!({ "id": domain_id, "name": cfg.domain_name });
    let mut body = serde_json::json!({
        "expires_at": iam_time(expires_at),
        "issued_at": iam_time(issued_at),
        "methods": ["password"],
        "user": {
            "id": user_id,
            "name": cfg.user_name,
            "password_expires_at": "",
            "domain": domain,
        },
        "roles": [
            { "id": "0", "name": "op_gated_codearts" },
            { "id": stable_id("te_admin"), "name": "te_admin" }
        ],
    });
    if project_scoped {
        body["project"] = serde_json::json!({
            "id": cfg.iam_project_id,
            "name": cfg.project_name,
            "domain": domain,
        });
    } else {
        body["domain"] = domain;
    }
    // `nocatalog` with any non-empty value leaves the catalog out.
    let no_catalog = query.as_deref().unwrap_or("").split('&').any(|pair| {
        let mut kv = pair.splitn(2, '=');
        kv.next() == Some("nocatalog") && kv.next().is_some_and(|v| !v.is_empty())
    });
    if !no_catalog {
        body["catalog"] = serde_json::json!([]);
    }
    let mut resp = (
        StatusCode::CREATED,
        Json(serde_json::json!({ "token": body })),
    )
        .into_response();
    resp.headers_mut().insert("x-subject-token", header_value);
    resp
}
