//! AK/SK verification, as the API gateway does it before a request reaches any service: parse
//! `Authorization: SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`, rebuild the canonical
//! request from what was received (method, raw path, query, the signed headers, the body bytes),
//! recompute the signature with the secret key, and compare. `X-Sdk-Date` must be within 15
//! minutes of the simulator's clock and `X-Project-Id` must name the account's IAM project.
//!
//! Failures are 401 `APIGW.0301` ("Incorrect IAM authentication information: …"), the gateway's
//! code for rejected credentials; the message says which check failed but never echoes a key.

use axum::http::{HeaderMap, Method, Uri};
use chrono::{NaiveDateTime, TimeDelta, Utc};
use percent_encoding::percent_decode_str;

use super::SimConfig;
use crate::api::signer;

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

struct Authorization<'a> {
    access: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix(signer::ALGORITHM)?.strip_prefix(' ')?;
    let (mut access, mut signed, mut signature) = (None, None, None);
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=')?;
        match k {
            "Access" => access = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return None,
        }
    }
    Some(Authorization {
        access: access?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

/// Decoded query pairs in the order received (the signer sorts them itself). `+` is a literal
/// plus here, as the SDK encodes a space as `%20`.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let Some(q) = uri.query() else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect()
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
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse("authorization header is not readable"))?;
    let auth = parse_authorization(value)
        .ok_or_else(|| refuse("the Authorization header is not SDK-HMAC-SHA256"))?;
    if auth.access != cfg.access_key {
        return Err(refuse("access key not found"));
    }
    for needed in ["host", "x-sdk-date"] {
        if !auth.signed_headers.contains(&needed) {
            return Err(refuse(&format!("{needed} is not a signed header")));
        }
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let date = header("x-sdk-date").ok_or_else(|| refuse("x-sdk-date is missing"))?;
    let at = NaiveDateTime::parse_from_str(date.trim(), "%Y%m%dT%H%M%SZ")
        .map_err(|_| refuse("x-sdk-date is not YYYYMMDDTHHMMSSZ"))?
        .and_utc();
    if (Utc::now() - at).abs() > MAX_SKEW {
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
    // The headers the client says it signed, as received; a signed header that did not arrive
    // cannot match.
    let mut signed = Vec::new();
    for name in &auth.signed_headers {
        let value = headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| refuse(&format!("signed header {name} is missing")))?;
        signed.push((name.to_string(), value.to_string()));
    }
    let host = header("host").unwrap_or_default();
    let query = query_pairs(uri);
    let expected = signer::sign(
        auth.access,
        &cfg.secret_key,
        date,
        &signer::SignInput {
            method: method.as_str(),
            host,
            path: uri.path(),
            query: &query,
            headers: &signed,
            body,
        },
    );
    if expected.signed_headers != auth.signed_headers.join(";") {
        return Err(refuse("signed headers are not in canonical order"));
    }
    if !constant_time_eq(expected.signature.as_bytes(), auth.signature.as_bytes()) {
        return Err(refuse("verify aksk signature fail"));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn signed_request(cfg: &SimConfig, sk: &str, project: &str) -> (Uri, HeaderMap, Vec<u8>) {
        let body = br#"[{"id":"r","format":"npm","uri":"r/","status":"trash"}]"#.to_vec();
        let date = signer::sdk_date_from_unix(Utc::now().timestamp());
        let query = vec![
            ("b".to_string(), "x y".to_string()),
            ("a".into(), "1".into()),
        ];
        let headers_in = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("X-Project-Id".to_string(), project.to_string()),
        ];
        let s = signer::sign(
            &cfg.access_key,
            sk,
            &date,
            &signer::SignInput {
                method: "DELETE",
                host: "127.0.0.1:8080",
                path: "/cloudartifact/v5/trashes",
                query: &query,
                headers: &headers_in,
                body: &body,
            },
        );
        let mut headers = HeaderMap::new();
        for (k, v) in &s.headers {
            headers.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let uri: Uri = format!("/cloudartifact/v5/trashes?{}", s.canonical_query)
            .parse()
            .unwrap();
        (uri, headers, body)
    }

    #[test]
    fn accepts_a_correct_signature_and_refuses_a_wrong_one() {
        let cfg = SimConfig::default();
        let (uri, headers, body) = signed_request(&cfg, &cfg.secret_key, &cfg.iam_project_id);
        assert_eq!(verify(&cfg, &Method::DELETE, &uri, &headers, &body), Ok(()));

        // A changed body, method or query no longer matches.
        let err = verify(&cfg, &Method::DELETE, &uri, &headers, b"[]").unwrap_err();
        assert_eq!(err.0, "verify aksk signature fail");
        assert!(verify(&cfg, &Method::PUT, &uri, &headers, &body).is_err());
        let other: Uri = "/cloudartifact/v5/trashes?a=2&b=x%20y".parse().unwrap();
        assert!(verify(&cfg, &Method::DELETE, &other, &headers, &body).is_err());

        // A wrong secret key.
        let (uri, headers, body) = signed_request(&cfg, "not-the-key", &cfg.iam_project_id);
        let err = verify(&cfg, &Method::DELETE, &uri, &headers, &body).unwrap_err();
        assert_eq!(err.0, "verify aksk signature fail");
    }

    #[test]
    fn refuses_another_project() {
        let cfg = SimConfig::default();
        let (uri, headers, body) = signed_request(&cfg, &cfg.secret_key, "someone-elses-project");
        let err = verify(&cfg, &Method::DELETE, &uri, &headers, &body).unwrap_err();
        assert!(err.0.contains("x-project-id"), "{err:?}");
    }

    #[test]
    fn refuses_an_old_date() {
        let cfg = SimConfig::default();
        let (uri, mut headers, body) = signed_request(&cfg, &cfg.secret_key, &cfg.iam_project_id);
        let old = signer::sdk_date_from_unix(Utc::now().timestamp() - 3600);
        headers.insert("x-sdk-date", HeaderValue::from_str(&old).unwrap());
        let err = verify(&cfg, &Method::DELETE, &uri, &headers, &body).unwrap_err();
        assert!(err.0.contains("expired"), "{err:?}");
    }
}
