//! API errors and their decoding. Classification lives here, once: [`Error::is_retryable`] and
//! [`Error::retry_after`] decide retries for every job kind.
//!
//! The cloud answers errors in two shapes: `{"error_code", "error_msg"}` (with the variants
//! `errorCode`/`errorMsg` and `code`/`message`, possibly nested one level), and the Artifact
//! envelope `{"status": "error", "trace_id", "result": …}`. Both are decoded and the API's own
//! code and message are kept; when none is found the code is the HTTP status and the message the
//! raw text, as the official SDK does.

use std::time::Duration;

use serde_json::Value;

/// An error from one API call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The API answered with an error status.
    #[error("{method} {path}: HTTP {status} {error_code}: {error_msg}")]
    Api {
        method: String,
        path: String,
        status: u16,
        error_code: String,
        error_msg: String,
        trace_id: Option<String>,
        retry_after: Option<Duration>,
    },
    /// No usable response: connection refused or reset, timeout, TLS failure.
    #[error("{method} {path}: {message}")]
    Transport {
        method: String,
        path: String,
        message: String,
        /// The request may have reached the service (it failed after the connection was made:
        /// a timeout, a reset): the service may have acted on it.
        maybe_sent: bool,
    },
    /// A success status with a body that does not say what the API documents.
    #[error("{method} {path}: HTTP {status} with an unreadable body: {message}")]
    Decode {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    /// Authentication could not be obtained (bad credentials, missing secret).
    #[error("authentication failed: {0}")]
    Auth(String),
}

impl Error {
    /// True for failures worth another attempt: 429, 5xx, transport failures, unreadable bodies.
    /// 400, 401 (after one re-authentication), 403 and 404 are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            Error::Transport { .. } | Error::Decode { .. } => true,
            Error::Auth(_) => false,
        }
    }

    /// The wait the API asked for (`Retry-After` on 429/503), which overrides computed backoff.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// True when the service may have acted on the request although no answer says so: a
    /// transport failure after the request could have been sent, a success status whose body
    /// could not be read, or a 500, 502 or 504 (a server error part way through, or a gateway
    /// whose backend did not answer in time, may come after the service acted). 503 and 429
    /// are refusals before any work.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Error::Api { status, .. } => matches!(status, 500 | 502 | 504),
            Error::Transport { maybe_sent, .. } => *maybe_sent,
            Error::Decode { status, .. } => *status < 300,
            _ => false,
        }
    }

    /// The HTTP status, when there was a response.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error code, or a code naming the failure class.
    pub fn error_code(&self) -> String {
        match self {
            Error::Api { error_code, .. } => error_code.clone(),
            Error::Transport { .. } => "TRANSPORT".to_string(),
            Error::Decode { .. } => "BAD_RESPONSE".to_string(),
            Error::Auth(_) => "AUTH".to_string(),
        }
    }

    /// The API's error message, or a description of the failure.
    pub fn error_msg(&self) -> String {
        match self {
            Error::Api { error_msg, .. } => error_msg.clone(),
            other => other.to_string(),
        }
    }

    /// The trace id the API returned, if any.
    pub fn trace_id(&self) -> Option<String> {
        match self {
            Error::Api { trace_id, .. } => trace_id.clone(),
            _ => None,
        }
    }
}

/// The code, message and trace id found in an error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub error_code: String,
    pub error_msg: String,
    pub trace_id: Option<String>,
}

const PAIRS: [(&str, &str); 4] = [
    ("error_code", "error_msg"),
    ("errorCode", "errorMsg"),
    ("errorCode", "errorMessage"),
    ("code", "message"),
];

/// Decodes an error body; `status` fills in when the body names no code.
pub fn decode_error_body(status: u16, body: &[u8]) -> Decoded {
    let raw = || {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let mut msg: String = text.chars().take(500).collect();
        if msg.is_empty() {
            msg = format!("HTTP {status} with an empty body");
        }
        msg
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Decoded {
            error_code: status.to_string(),
            error_msg: raw(),
            trace_id: None,
        };
    };
    // SWR's error-code page gives a bare array, `[{"errorCode", "errorMessage", "detail"}]`:
    // its first entry is the error.
    let v = match v {
        Value::Array(mut items) if items.first().is_some_and(Value::is_object) => {
            items.swap_remove(0)
        }
        other => other,
    };
    let trace_id = v
        .get("trace_id")
        .or_else(|| v.get("traceId"))
        .and_then(scalar);
    if let Some((code, msg)) = find_pair(&v).or_else(|| {
        // One level down: `{"error": {...}}`, or the envelope's `result`.
        v.as_object().and_then(|o| o.values().find_map(find_pair))
    }) {
        return Decoded {
            error_code: code,
            error_msg: msg,
            trace_id,
        };
    }
    // The envelope with a bare message: {"status": "error", "result": "text"}.
    if let Some(msg) = v.get("result").and_then(Value::as_str) {
        return Decoded {
            error_code: status.to_string(),
            error_msg: msg.to_string(),
            trace_id,
        };
    }
    Decoded {
        error_code: status.to_string(),
        error_msg: raw(),
        trace_id,
    }
}

fn find_pair(v: &Value) -> Option<(String, String)> {
    let o = v.as_object()?;
    let field = |k: &str| o.get(k).and_then(scalar);
    // A code with its message first; a code alone, else.
    PAIRS
        .iter()
        .find_map(|(c, m)| Some((field(c)?, field(m)?)))
        .or_else(|| {
            PAIRS
                .iter()
                .find_map(|(c, _)| Some((field(c)?, String::new())))
        })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The error an error response stands for: the API's code, message and trace id (or the
/// gateway's `X-Request-Id`), and its `Retry-After`.
pub fn from_response(
    method: &str,
    path: &str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> Error {
    let d = decode_error_body(status, body);
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    Error::Api {
        method: method.to_string(),
        path: path.to_string(),
        status,
        error_code: d.error_code,
        error_msg: d.error_msg,
        trace_id: d
            .trace_id
            .or_else(|| header("x-request-id").map(str::to_string)),
        retry_after: header("retry-after").and_then(parse_retry_after),
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_common_error_shape() {
        let d = decode_error_body(
            404,
            br#"{"error_code": "CH.004404", "error_msg": "Repository Not Found"}"#,
        );
        assert_eq!(d.error_code, "CH.004404");
        assert_eq!(d.error_msg, "Repository Not Found");
    }

    #[test]
    fn decodes_camel_case_and_code_message_variants() {
        let d = decode_error_body(400, br#"{"errorCode": "X.1", "errorMsg": "bad"}"#);
        assert_eq!(
            (d.error_code.as_str(), d.error_msg.as_str()),
            ("X.1", "bad")
        );
        let d = decode_error_body(400, br#"{"code": 1234, "message": "m"}"#);
        assert_eq!((d.error_code.as_str(), d.error_msg.as_str()), ("1234", "m"));
        let d = decode_error_body(400, br#"{"errorCode": "X.2"}"#);
        assert_eq!((d.error_code.as_str(), d.error_msg.as_str()), ("X.2", ""));
    }

    #[test]
    fn decodes_swr_documented_array_of_errors() {
        let d = decode_error_body(
            400,
            br#"[{"errorCode": "SVCSTG.SWR.4000014", "errorMessage": "Invalid parameter", "detail": "tag"}]"#,
        );
        assert_eq!(
            (d.error_code.as_str(), d.error_msg.as_str()),
            ("SVCSTG.SWR.4000014", "Invalid parameter")
        );
        // An array of something else is kept as text.
        let d = decode_error_body(500, br#"["a"]"#);
        assert_eq!(
            (d.error_code.as_str(), d.error_msg.as_str()),
            ("500", r#"["a"]"#)
        );
    }

    #[test]
    fn decodes_nested_and_envelope_errors() {
        let d = decode_error_body(
            500,
            br#"{"status": "error", "trace_id": "t-1", "result": {"error_code": "CA.1", "error_msg": "boom"}}"#,
        );
        assert_eq!(d.error_code, "CA.1");
        assert_eq!(d.error_msg, "boom");
        assert_eq!(d.trace_id.as_deref(), Some("t-1"));
        let d = decode_error_body(
            400,
            br#"{"status": "error", "trace_id": "t-2", "result": "no such repository"}"#,
        );
        assert_eq!(d.error_code, "400");
        assert_eq!(d.error_msg, "no such repository");
        assert_eq!(d.trace_id.as_deref(), Some("t-2"));
    }

    #[test]
    fn falls_back_to_status_and_raw_text() {
        let d = decode_error_body(502, b"<html>Bad Gateway</html>");
        assert_eq!(d.error_code, "502");
        assert_eq!(d.error_msg, "<html>Bad Gateway</html>");
        let d = decode_error_body(503, b"");
        assert_eq!(d.error_code, "503");
        assert!(d.error_msg.contains("empty body"));
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Tue, 15 Nov 1994 08:12:31 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn classification_follows_the_status_rules() {
        let api = |status| Error::Api {
            method: "GET".into(),
            path: "/".into(),
            status,
            error_code: String::new(),
            error_msg: String::new(),
            trace_id: None,
            retry_after: None,
        };
        for s in [429, 500, 502, 503, 504] {
            assert!(api(s).is_retryable(), "{s} should be retried");
        }
        for s in [400, 401, 403, 404] {
            assert!(!api(s).is_retryable(), "{s} should be final");
        }
        let t = Error::Transport {
            method: "GET".into(),
            path: "/".into(),
            message: "connection reset".into(),
            maybe_sent: true,
        };
        assert!(t.is_retryable());
        assert!(!Error::Auth("bad password".into()).is_retryable());
    }
}
