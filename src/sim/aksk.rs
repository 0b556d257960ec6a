//! AK/SK verification, as the API gateway does it before a request reaches any service: parse
//! `Authorization: SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`, check the access key,
//! the signed headers list, `X-Sdk-Date` (within 15 minutes of the simulator's clock) and
//! `X-Project-Id` (the account's IAM project), then rebuild the canonical request from what was
//! received (method, raw path, raw query, the signed headers, the body bytes), recompute the
//! signature with the secret key, and compare.
//!
//! The rebuilding is in `aksk/canonical.rs`, written from the published algorithm and sharing no
//! code with the daemon's client signer, so that a signer bug fails here instead of passing its
//! own simulator. Its tests (`aksk/tests.rs`) replay the official SDK's vectors and requests the
//! official SDK sent over a socket (`aksk/sdk_wire_vectors.json`, made by the script beside it).
//!
//! Failures are 401 `APIGW.0301` ("Incorrect IAM authentication information: …"), the gateway's
//! code for rejected credentials; the message says which check failed but never echoes a key.

mod canonical;
#[cfg(test)]
mod tests;

use axum::http::{HeaderMap, Method, Uri};
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use super::SimConfig;
use canonical::{Rebuilt, Received, ALGORITHM};

/// The gateway's error code for credentials it refuses.
pub(crate) const GATEWAY_AUTH_CODE: &str = "APIGW.0301";

/// How far `X-Sdk-Date` may be from the server's clock.
const MAX_SKEW: TimeDelta = TimeDelta::minutes(15);

/// Why a signed request was refused; the text becomes the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

impl Refused {
    pub(crate) fn message(&self) -> String {
        format!("Incorrect IAM authentication information: {}", self.0)
    }
}

fn refuse(why: &str) -> Refused {
    Refused(why.to_string())
}

/// The three parts of an `Authorization` header.
#[derive(Debug)]
struct Authorization<'a> {
    access: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

/// Parses `SDK-HMAC-SHA256 Access=<ak>, SignedHeaders=<a;b;c>, Signature=<hex>` (one space after
/// the algorithm, `", "` between the parts, as the SDK writes it).
fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut access, mut signed, mut signature) = (None, None, None);
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=')?;
        let slot = match k {
            "Access" => &mut access,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return None,
        };
        if slot.replace(v).is_some() {
            return None;
        }
    }
    Some(Authorization {
        access: access?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

/// The signer lists lower-cased names without `_`, sorted, each once; anything else was not
/// produced by the algorithm.
fn signed_headers_are_canonical(names: &[&str]) -> bool {
    let well_formed = names.iter().all(|n| {
        !n.is_empty()
            && n.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^`|~".contains(&b)
            })
    });
    well_formed && names.windows(2).all(|w| w[0] < w[1])
}

/// Parses an `X-Sdk-Date` value, which must be exactly `YYYYMMDDTHHMMSSZ` (UTC).
fn parse_sdk_date(value: &str) -> Option<DateTime<Utc>> {
    let b = value.as_bytes();
    let shape = b.len() == 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z';
    if !shape {
        return None;
    }
    NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Verifies a signed request; `Ok` means the signature is the one the configured secret key
/// gives for exactly what was received.
pub(crate) fn verify(
    cfg: &SimConfig,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refused> {
    let received = Received {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query(),
        headers,
        body,
    };
    verify_at(cfg, Utc::now(), &received).map(|_| ())
}

/// [`verify`] with the clock given; returns what the signature was checked over.
fn verify_at(cfg: &SimConfig, now: DateTime<Utc>, req: &Received<'_>) -> Result<Rebuilt, Refused> {
    let value = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse("authorization header is not readable"))?;
    let auth = parse_authorization(value)
        .ok_or_else(|| refuse("the Authorization header is not SDK-HMAC-SHA256"))?;
    if auth.access != cfg.access_key {
        return Err(refuse("access key not found"));
    }
    if !signed_headers_are_canonical(&auth.signed_headers) {
        return Err(refuse("signed headers are not in canonical order"));
    }
    for needed in ["host", "x-sdk-date"] {
        if !auth.signed_headers.contains(&needed) {
            return Err(refuse(&format!("{needed} is not a signed header")));
        }
    }
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let date = header("x-sdk-date").ok_or_else(|| refuse("x-sdk-date is missing"))?;
    let at =
        parse_sdk_date(date.trim()).ok_or_else(|| refuse("x-sdk-date is not YYYYMMDDTHHMMSSZ"))?;
    if (now - at).abs() > MAX_SKEW {
        return Err(refuse(
            "the request has expired (x-sdk-date is too far from now)",
        ));
    }
    match header("x-project-id") {
        Some(p) if p.trim() == cfg.iam_project_id => {}
        Some(_) => {
            return Err(refuse(
                "x-project-id does not match the credentials' project",
            ))
        }
        None => return Err(refuse("x-project-id is missing")),
    }
    check_signature(&cfg.secret_key, req, &auth)
}

/// Rebuilds what was signed and compares the signature; no policy (key, clock, project) here.
fn check_signature(
    secret_key: &str,
    req: &Received<'_>,
    auth: &Authorization<'_>,
) -> Result<Rebuilt, Refused> {
    let rebuilt = canonical::rebuild(req, &auth.signed_headers).map_err(|why| refuse(&why))?;
    let expected = canonical::signature(secret_key, &rebuilt.string_to_sign);
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(refuse("verify aksk signature fail"));
    }
    Ok(rebuilt)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
