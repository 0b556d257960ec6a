//! The verifier on its own, from requests as the server receives them: the official SDK's
//! vectors (`tests/data/aksk_vectors.json`), requests the official SDK sent over a socket
//! (`sdk_wire_vectors.json`), a one-byte change to each part of them, and the gateway's checks.

use std::str::FromStr;

use axum::http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::canonical::{canonical_query, canonical_uri, signature};
use super::*;

const OFFICIAL: &str = include_str!("../../../tests/data/aksk_vectors.json");
const WIRE: &str = include_str!("sdk_wire_vectors.json");

/// A request as it arrived: method, request target, headers in arrival order, body.
#[derive(Clone, Debug)]
struct Wire {
    name: String,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Wire {
    fn uri(&self) -> Uri {
        Uri::from_str(&self.target)
            .unwrap_or_else(|e| panic!("{}: target {}: {e}", self.name, self.target))
    }

    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_bytes(value.as_bytes()).expect("header value"),
            );
        }
        map
    }

    fn set_header(&mut self, name: &str, value: String) {
        let slot = self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("{}: no header {name}", self.name));
        slot.1 = value;
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{}: no header {name}", self.name))
    }

    /// Runs the signature check alone (no key, clock or project policy).
    fn check(&self, secret_key: &str) -> Result<Rebuilt, Refused> {
        let uri = self.uri();
        let headers = self.header_map();
        let auth_value = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .expect("authorization");
        let auth = parse_authorization(auth_value).expect("an SDK-HMAC-SHA256 header");
        let received = Received {
            method: &self.method,
            path: uri.path(),
            query: uri.query(),
            headers: &headers,
            body: &self.body,
        };
        check_signature(secret_key, &received, &auth)
    }

    /// Runs the whole gateway check with the clock given.
    fn verify_at(&self, cfg: &SimConfig, now: DateTime<Utc>) -> Result<Rebuilt, Refused> {
        let uri = self.uri();
        let headers = self.header_map();
        let received = Received {
            method: &self.method,
            path: uri.path(),
            query: uri.query(),
            headers: &headers,
            body: &self.body,
        };
        verify_at(cfg, now, &received)
    }
}

/// One known-good signed request and what the signer computed for it.
struct Vector {
    wire: Wire,
    access_key: String,
    secret_key: String,
    project_id: Option<String>,
    canonical_request: String,
    string_to_sign: String,
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{}: {field} is not a string", v["name"]))
}

fn string(v: &Value, field: &str) -> String {
    text(v, field).to_string()
}

/// The official vectors as the server receives them: the request line of `sent_url` (path and
/// the SDK's sorted query), the headers the SDK sends with `Authorization` rebuilt from the
/// expected signature, what an HTTP library adds unsigned, and the body.
fn official_vectors() -> Vec<Vector> {
    let doc: Value = serde_json::from_str(OFFICIAL).expect("aksk_vectors.json");
    let vectors = doc["vectors"].as_array().expect("vectors");
    assert!(!vectors.is_empty());
    vectors
        .iter()
        .map(|v| {
            let name = string(v, "name");
            let sent_url = text(v, "sent_url");
            let after_scheme = sent_url.split_once("://").map_or(sent_url, |(_, r)| r);
            let target = &after_scheme[after_scheme.find('/').expect("a path")..];
            let body = match &v["body"] {
                Value::Null => Vec::new(),
                b => b.as_str().expect("body").as_bytes().to_vec(),
            };
            let authorization = format!(
                "{ALGORITHM} Access={}, SignedHeaders={}, Signature={}",
                text(v, "access_key"),
                text(v, "signed_headers"),
                text(v, "signature"),
            );
            assert_eq!(authorization, text(v, "expected_authorization"), "{name}");
            let mut headers: Vec<(String, String)> = v["expected_headers_out"]
                .as_object()
                .expect("expected_headers_out")
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
                .map(|(k, val)| (k.clone(), val.as_str().expect("header").to_string()))
                .collect();
            headers.push(("Authorization".into(), authorization));
            headers.push(("Accept-Encoding".into(), "gzip, deflate".into()));
            if !body.is_empty() {
                headers.push(("Content-Length".into(), body.len().to_string()));
            }
            Vector {
                wire: Wire {
                    method: string(v, "method"),
                    target: target.to_string(),
                    headers,
                    body,
                    name,
                },
                access_key: string(v, "access_key"),
                secret_key: string(v, "secret_key"),
                project_id: v["project_id"].as_str().map(str::to_string),
                canonical_request: string(v, "canonical_request"),
                string_to_sign: string(v, "string_to_sign"),
            }
        })
        .collect()
}

/// Requests the official SDK signed and sent, as recorded by the server that received them.
fn wire_vectors() -> Vec<Vector> {
    let doc: Value = serde_json::from_str(WIRE).expect("sdk_wire_vectors.json");
    let vectors = doc["vectors"].as_array().expect("vectors");
    assert!(!vectors.is_empty());
    vectors
        .iter()
        .map(|v| {
            let r = &v["received"];
            let headers = r["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| {
                    let part = |i: usize| h[i].as_str().expect("a header part").to_string();
                    (part(0), part(1))
                })
                .collect::<Vec<_>>();
            let wire = Wire {
                name: string(v, "name"),
                method: string(r, "method"),
                target: string(r, "target"),
                headers,
                body: text(r, "body").as_bytes().to_vec(),
            };
            let project_id = wire
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("x-project-id"))
                .map(|(_, p)| p.clone());
            assert!(
                wire.header("authorization")
                    .ends_with(&format!("Signature={}", text(v, "signature"))),
                "{}",
                wire.name
            );
            Vector {
                wire,
                access_key: string(v, "access_key"),
                secret_key: string(v, "secret_key"),
                project_id,
                canonical_request: string(v, "canonical_request"),
                string_to_sign: string(v, "string_to_sign"),
            }
        })
        .collect()
}

/// Changes the last ASCII letter or digit of `s` to another of the same kind.
fn flip_last_alphanumeric(s: &str) -> String {
    let (i, c) = s
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_ascii_alphanumeric())
        .unwrap_or_else(|| panic!("nothing to flip in {s:?}"));
    let flipped = match c {
        '9' => '0',
        'z' => 'a',
        'Z' => 'A',
        c => char::from(c as u8 + 1),
    };
    format!("{}{flipped}{}", &s[..i], &s[i + 1..])
}

fn signed_header_names(wire: &Wire) -> Vec<String> {
    let auth = wire.header("authorization");
    let list = auth
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("SignedHeaders");
    list.split(';').map(str::to_string).collect()
}

/// A vector verifies on its own, the verifier rebuilds the signer's texts byte for byte, the
/// whole gateway check passes at the vector's date, and a change to any signed part fails.
fn check_vector(v: &Vector) {
    let name = &v.wire.name;
    let rebuilt = v
        .wire
        .check(&v.secret_key)
        .unwrap_or_else(|e| panic!("{name}: refused: {e:?}"));
    assert_eq!(
        rebuilt.canonical_request, v.canonical_request,
        "{name}: canonical request"
    );
    assert_eq!(
        rebuilt.string_to_sign, v.string_to_sign,
        "{name}: string to sign"
    );

    // The gateway's own checks, at the vector's date.
    let at = parse_sdk_date(v.wire.header("x-sdk-date")).expect("a valid date");
    let cfg = SimConfig {
        access_key: v.access_key.clone(),
        secret_key: v.secret_key.clone(),
        iam_project_id: v.project_id.clone().unwrap_or_default(),
        ..SimConfig::default()
    };
    let full = v.wire.verify_at(&cfg, at + TimeDelta::minutes(14));
    match &v.project_id {
        Some(_) => assert_eq!(full.as_ref().ok(), Some(&rebuilt), "{name}: {full:?}"),
        // Only the project check stands between these and a verified request.
        None => assert_eq!(full, Err(refuse("x-project-id is missing")), "{name}"),
    }
    let mut other = cfg.clone();
    other.secret_key.push('x');
    assert_eq!(
        v.wire.check(&other.secret_key),
        Err(refuse("verify aksk signature fail")),
        "{name}: another secret key"
    );

    let refused = |w: &Wire, what: &str| {
        assert!(
            w.check(&v.secret_key).is_err(),
            "{name}: {what} changed and still verified"
        );
    };

    // The body: a flipped byte, or a body where there was none. With UNSIGNED-PAYLOAD signed,
    // the algorithm does not cover a body, which is what the SDK asks for non-JSON types.
    let unsigned_payload = v.wire.headers.iter().any(|(n, val)| {
        n.eq_ignore_ascii_case("x-sdk-content-sha256") && val == "UNSIGNED-PAYLOAD"
    });
    let mut w = v.wire.clone();
    match w.body.len() {
        0 => w.body = b"x".to_vec(),
        n => w.body[n / 2] ^= 0x01,
    }
    if unsigned_payload && !v.wire.body.is_empty() {
        assert!(w.check(&v.secret_key).is_ok(), "{name}: unsigned payload");
    } else {
        refused(&w, "body");
    }

    // The signature: one hex digit.
    let mut w = v.wire.clone();
    let auth = w.header("authorization").to_string();
    let (head, sig) = auth.rsplit_once("Signature=").expect("Signature=");
    let first = if sig.starts_with('0') { '1' } else { '0' };
    w.set_header(
        "authorization",
        format!("{head}Signature={first}{}", &sig[1..]),
    );
    assert_eq!(
        w.check(&v.secret_key),
        Err(refuse("verify aksk signature fail")),
        "{name}: signature"
    );

    // Each signed header's value.
    for header in signed_header_names(&v.wire) {
        let mut w = v.wire.clone();
        let value = flip_last_alphanumeric(w.header(&header));
        w.set_header(&header, value);
        refused(&w, &format!("header {header}"));
    }

    // The path, the query and the method.
    let (path, query) = match v.wire.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (v.wire.target.as_str(), None),
    };
    let mut w = v.wire.clone();
    w.target = format!(
        "{}{}",
        flip_last_alphanumeric(path),
        query.map(|q| format!("?{q}")).unwrap_or_default()
    );
    refused(&w, "path");
    if let Some(q) = query {
        let mut w = v.wire.clone();
        w.target = format!("{path}?{}", flip_last_alphanumeric(q));
        refused(&w, "query");
    }
    let mut w = v.wire.clone();
    w.method = if v.wire.method == "GET" {
        "HEAD"
    } else {
        "GET"
    }
    .into();
    refused(&w, "method");
}

#[test]
fn official_vectors_verify_and_any_changed_byte_fails() {
    let vectors = official_vectors();
    assert_eq!(vectors.len(), 5);
    for v in &vectors {
        check_vector(v);
    }
}

#[test]
fn requests_the_sdk_sent_verify_and_any_changed_byte_fails() {
    let vectors = wire_vectors();
    assert!(vectors.len() >= 20, "{}", vectors.len());
    for v in &vectors {
        check_vector(v);
    }
}

#[test]
fn canonical_uri_from_the_wire() {
    for (raw, canonical) in [
        ("/a/b", "/a/b/"),
        ("/a/b/", "/a/b/"),
        ("/", "/"),
        ("/a//b", "/a//b/"),
        ("/caf%c3%a9/x%3ay", "/caf%C3%A9/x%3Ay/"),
        (
            "/v4/repositories/team%2Frepo/remote-mirror",
            "/v4/repositories/team/repo/remote-mirror/",
        ),
        ("/a%ZZb", "/a%25ZZb/"),
        ("/a%25ZZb", "/a%25ZZb/"),
        ("/100%", "/100%25/"),
        ("/a%FFb", "/a%EF%BF%BDb/"),
        ("/a%C3", "/a%EF%BF%BD/"),
        ("/~a-b_c.d!e", "/~a-b_c.d%21e/"),
    ] {
        assert_eq!(canonical_uri(raw), canonical, "{raw}");
    }
}

#[test]
fn canonical_query_from_the_wire() {
    for (raw, canonical) in [
        (None, ""),
        (Some(""), ""),
        (Some("b=2&a=1"), "a=1&b=2"),
        // Repeated keys sort by value; a key alone or with `=` has an empty value.
        (Some("f=npm&f=go&a"), "a=&f=go&f=npm"),
        (Some("c=&b"), "b=&c="),
        // Sorted on the decoded text, before encoding: '~' (U+007E) < 'é' (U+00E9), 'A' < '_' < 'a'.
        (Some("k=%C3%A9a&k=~a"), "k=~a&k=%C3%A9a"),
        (Some("a=3&_x=2&A=1"), "A=1&_x=2&a=3"),
        // Spaces and reserved characters are re-encoded; lower-case escapes come out upper-case.
        (
            Some("q=a%20b%2bc%2f%3D%26%2C%3A%7C%2A%25%7E"),
            "q=a%20b%2Bc%2F%3D%26%2C%3A%7C%2A%25~",
        ),
        // A bare '+' is a space, as the handlers read it.
        (Some("q=a+b"), "q=a%20b"),
        // An invalid escape stays literal.
        (Some("q=1%ZZ"), "q=1%25ZZ"),
    ] {
        assert_eq!(canonical_query(raw), canonical, "{raw:?}");
    }
}

#[test]
fn signature_is_hmac_of_the_string_to_sign_with_the_bare_secret_key() {
    // RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
    assert_eq!(
        signature("Jefe", "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

// ---- the gateway's checks, on requests signed here --------------------------------------------

fn sdk_date(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A request signed with this module's own texts, for the checks around the signature.
fn signed_wire(cfg: &SimConfig, sk: &str, project: &str, date: &str) -> Wire {
    let mut wire = Wire {
        name: "signed here".into(),
        method: "DELETE".into(),
        target: "/cloudartifact/v5/trashes?a=1&b=x%20y".into(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("X-Project-Id".into(), project.into()),
            ("X-Sdk-Date".into(), date.into()),
            ("Host".into(), "127.0.0.1:8080".into()),
        ],
        body: br#"[{"id":"r","format":"npm","uri":"r/","status":"trash"}]"#.to_vec(),
    };
    let signed = "content-type;host;x-project-id;x-sdk-date";
    let uri = wire.uri();
    let headers = wire.header_map();
    let received = Received {
        method: &wire.method,
        path: uri.path(),
        query: uri.query(),
        headers: &headers,
        body: &wire.body,
    };
    let names: Vec<&str> = signed.split(';').collect();
    let rebuilt = canonical::rebuild(&received, &names).expect("rebuild");
    let sig = signature(sk, &rebuilt.string_to_sign);
    wire.headers.push((
        "Authorization".into(),
        format!(
            "{ALGORITHM} Access={}, SignedHeaders={signed}, Signature={sig}",
            cfg.access_key
        ),
    ));
    wire
}

fn now_wire(cfg: &SimConfig) -> Wire {
    signed_wire(
        cfg,
        &cfg.secret_key,
        &cfg.iam_project_id,
        &sdk_date(Utc::now()),
    )
}

fn verify_wire(cfg: &SimConfig, w: &Wire) -> Result<(), Refused> {
    verify(
        cfg,
        &Method::from_bytes(w.method.as_bytes()).expect("method"),
        &w.uri(),
        &w.header_map(),
        &w.body,
    )
}

#[test]
fn accepts_a_correct_signature_and_refuses_a_wrong_one() {
    let cfg = SimConfig::default();
    let w = now_wire(&cfg);
    assert_eq!(verify_wire(&cfg, &w), Ok(()));

    // The query's order on the wire does not matter; its content does.
    let mut other = w.clone();
    other.target = "/cloudartifact/v5/trashes?b=x%20y&a=1".into();
    assert_eq!(verify_wire(&cfg, &other), Ok(()));
    other.target = "/cloudartifact/v5/trashes?a=2&b=x%20y".into();
    assert!(verify_wire(&cfg, &other).is_err());

    let mut other = w.clone();
    other.body = b"[]".to_vec();
    assert_eq!(
        verify_wire(&cfg, &other),
        Err(refuse("verify aksk signature fail"))
    );

    let w = signed_wire(
        &cfg,
        "not-the-key",
        &cfg.iam_project_id,
        &sdk_date(Utc::now()),
    );
    assert_eq!(
        verify_wire(&cfg, &w),
        Err(refuse("verify aksk signature fail"))
    );
}

#[test]
fn refuses_another_project() {
    let cfg = SimConfig::default();
    let w = signed_wire(
        &cfg,
        &cfg.secret_key,
        "someone-elses-project",
        &sdk_date(Utc::now()),
    );
    let err = verify_wire(&cfg, &w).unwrap_err();
    assert!(err.0.contains("x-project-id"), "{err:?}");
}

#[test]
fn refuses_an_old_or_malformed_date() {
    let cfg = SimConfig::default();
    let old = sdk_date(Utc::now() - TimeDelta::hours(1));
    let w = signed_wire(&cfg, &cfg.secret_key, &cfg.iam_project_id, &old);
    let err = verify_wire(&cfg, &w).unwrap_err();
    assert!(err.0.contains("expired"), "{err:?}");

    for bad in [
        "2024-01-15T08:30:00Z",
        "20240115T083000",
        "20241315T083000Z",
    ] {
        let w = signed_wire(&cfg, &cfg.secret_key, &cfg.iam_project_id, bad);
        assert_eq!(
            verify_wire(&cfg, &w),
            Err(refuse("x-sdk-date is not YYYYMMDDTHHMMSSZ")),
            "{bad}"
        );
    }
}

#[test]
fn refuses_signed_headers_the_algorithm_never_lists() {
    let cfg = SimConfig::default();
    let w = now_wire(&cfg);
    let auth = w.header("authorization").to_string();
    for list in [
        "host;content-type;x-project-id;x-sdk-date",
        "Content-Type;host;x-project-id;x-sdk-date",
        "content-type;host;host;x-project-id;x-sdk-date",
        "content-type;host;x-project-id;x-sdk-date;x_trace",
        "content-type;host;;x-project-id;x-sdk-date",
    ] {
        let mut other = w.clone();
        other.set_header(
            "authorization",
            auth.replace("content-type;host;x-project-id;x-sdk-date", list),
        );
        assert_eq!(
            verify_wire(&cfg, &other),
            Err(refuse("signed headers are not in canonical order")),
            "{list}"
        );
    }
    let mut other = w.clone();
    other.set_header(
        "authorization",
        auth.replace(
            "content-type;host;x-project-id;x-sdk-date",
            "content-type;host;x-project-id",
        ),
    );
    assert_eq!(
        verify_wire(&cfg, &other),
        Err(refuse("x-sdk-date is not a signed header"))
    );
}

#[test]
fn a_signed_header_must_arrive_once() {
    let cfg = SimConfig::default();
    let w = now_wire(&cfg);
    let mut twice = w.clone();
    twice
        .headers
        .push(("Content-Type".into(), "application/json".into()));
    assert_eq!(
        verify_wire(&cfg, &twice),
        Err(refuse("signed header content-type is sent more than once"))
    );
    let mut missing = w.clone();
    missing
        .headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
    assert_eq!(
        verify_wire(&cfg, &missing),
        Err(refuse("signed header content-type is missing"))
    );
    // Headers nobody signed may come and go.
    let mut extra = w.clone();
    extra.headers.push(("Accept".into(), "*/*".into()));
    extra.headers.push(("X_Trace".into(), "abc".into()));
    assert_eq!(verify_wire(&cfg, &extra), Ok(()));
}

#[test]
fn an_unsigned_content_sha256_header_does_not_replace_the_body_hash() {
    let cfg = SimConfig::default();
    let mut w = now_wire(&cfg);
    w.headers
        .push(("X-Sdk-Content-Sha256".into(), "UNSIGNED-PAYLOAD".into()));
    assert_eq!(verify_wire(&cfg, &w), Ok(()));
    w.body = b"[]".to_vec();
    assert_eq!(
        verify_wire(&cfg, &w),
        Err(refuse("verify aksk signature fail"))
    );
}

#[test]
fn refuses_a_malformed_authorization_header() {
    let cfg = SimConfig::default();
    let w = now_wire(&cfg);
    let auth = w.header("authorization").to_string();
    for bad in [
        auth.replace("SDK-HMAC-SHA256 ", "SDK-HMAC-SM3 "),
        auth.replace(", SignedHeaders", ",SignedHeaders"),
        format!("{auth}, Signature=00"),
        auth.replace("Access=", "Credential="),
    ] {
        let mut other = w.clone();
        other.set_header("authorization", bad.clone());
        assert_eq!(
            verify_wire(&cfg, &other),
            Err(refuse("the Authorization header is not SDK-HMAC-SHA256")),
            "{bad}"
        );
    }
    let mut other = w.clone();
    other.set_header(
        "authorization",
        auth.replace(&cfg.access_key, "SOMEONEELSE"),
    );
    assert_eq!(
        verify_wire(&cfg, &other),
        Err(refuse("access key not found"))
    );
}
