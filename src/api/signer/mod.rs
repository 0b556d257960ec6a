//! AK/SK request signing for Huawei Cloud APIs (`SDK-HMAC-SHA256`).
//!
//! This module turns the parts of an HTTP request (method, host, path, query pairs, explicit
//! headers, body bytes) into the `Authorization` header and the extra headers the official
//! Huawei Cloud SDK signer produces, byte for byte: the same canonical request, string to sign
//! and signature for the same inputs and date. It also returns the canonical query string,
//! which is what the SDK sends as the URL query (sorted and percent-encoded), so that the URL
//! on the wire and the signed text cannot drift apart.
//!
//! It is pure and infallible: no clock (the caller passes the `X-Sdk-Date` value, see
//! [`sdk_date_from_unix`]), no I/O, no HTTP client. It does not build URLs or bodies, does not
//! percent-encode path parameters (the caller puts already-encoded segments into `path`), does not
//! add credential headers (`X-Project-Id`, `X-Domain-Id`, `X-Security-Token` are the caller's to
//! add before signing) and does not implement the other SDK algorithms (`SDK-HMAC-SM3`, ECDSA,
//! `V11-HMAC-SHA256` derived keys). It is not an IAM token (`X-Auth-Token`) mechanism.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The signing algorithm name used in the string to sign and in `Authorization`.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";

/// SHA-256 of the empty byte string: the payload hash of a request without a body.
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The `X-Sdk-Content-Sha256` value the signer adds for non-JSON content types.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Header carrying the request time, `YYYYMMDDTHHMMSSZ`.
pub const HEADER_SDK_DATE: &str = "X-Sdk-Date";

/// Header carrying a payload hash override (`UNSIGNED-PAYLOAD`).
pub const HEADER_CONTENT_SHA256: &str = "X-Sdk-Content-Sha256";

const HEADER_HOST: &str = "Host";
const HEADER_AUTHORIZATION: &str = "Authorization";
const HEADER_CONTENT_TYPE: &str = "Content-Type";

/// The parts of a request the signer needs.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// HTTP method in any case; upper-cased in the canonical request.
    pub method: &'a str,
    /// `host[:port]` exactly as sent in the `Host` header (used unless a `Host` header is given).
    pub host: &'a str,
    /// Resource path as sent on the wire (path parameters already percent-encoded).
    pub path: &'a str,
    /// Decoded `(key, value)` pairs in caller order; lists already expanded to repeated pairs,
    /// booleans already `"true"`/`"false"`, numbers already decimal.
    pub query: &'a [(String, String)],
    /// Headers the caller sets explicitly (e.g. `Content-Type`, `User-Agent`, `X-Project-Id`).
    /// `Host` / `X-Sdk-Date` only when the caller wants to force them.
    pub headers: &'a [(String, String)],
    /// Exact body bytes sent; empty means no body.
    pub body: &'a [u8],
}

/// The result of signing: every intermediate string plus the headers to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The six-part canonical request (empty when the request was passed through unsigned).
    pub canonical_request: String,
    /// `SDK-HMAC-SHA256\n<date>\n<hex sha256 of canonical request>` (empty when passed through).
    pub string_to_sign: String,
    /// Lower-case hex HMAC-SHA256 (empty when passed through).
    pub signature: String,
    /// Sorted, `;`-joined lower-case names of the signed headers, e.g. `content-type;host;x-sdk-date`.
    pub signed_headers: String,
    /// The `Authorization` header value.
    pub authorization: String,
    /// The sorted, encoded query string; send exactly this as the URL query (no `?` when empty).
    pub canonical_query: String,
    /// Every header to send, in a stable order: the caller's (trimmed values), then the ones the
    /// signer added (`X-Sdk-Content-Sha256`, `X-Sdk-Date`, `Host`), then `Authorization`.
    pub headers: Vec<(String, String)>,
}

/// Formats seconds since the Unix epoch (UTC) as an `X-Sdk-Date` value, `YYYYMMDDTHHMMSSZ`.
///
/// Negative values count back from 1970 (floor division, so `-1` is `19691231T235959Z`).
/// Years outside 0..=9999 are not meaningful to the API; they are printed with as many digits as
/// they need (and a sign when negative) rather than clamped.
pub fn sdk_date_from_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let secs_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let hour = secs_of_day / 3_600;
    let minute = secs_of_day % 3_600 / 60;
    let second = secs_of_day % 60;
    format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant's `civil_from_days`: shifting the year to start in March puts the leap day
/// last, so every era of 400 years (146 097 days) has the same shape.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Signs a request with the given `X-Sdk-Date` value.
///
/// Use `sdk_date_from_unix(now)` in production; tests pin the date. If the caller's headers
/// already contain `X-Sdk-Date` (any case), that header's trimmed value is used instead of
/// `sdk_date`, in both the canonical headers and the string to sign, as the SDK does.
///
/// If the caller's headers contain `Authorization` (any case), nothing is signed: the SDK passes
/// such a request through. Then only `canonical_query`, `authorization` (the caller's value) and
/// `headers` (the caller's, unmodified) are filled in.
///
/// Header names that differ only in case are merged (first spelling and position, last value),
/// because the SDK would otherwise list the name twice in the signed headers.
pub fn sign(access_key: &str, secret_key: &str, sdk_date: &str, input: &SignInput<'_>) -> Signed {
    let canonical_query = canonical_query(input.query);
    let mut headers = merge_headers(input.headers);

    if let Some(i) = find_header(&headers, HEADER_AUTHORIZATION) {
        let authorization = headers[i].1.clone();
        return Signed {
            canonical_request: String::new(),
            string_to_sign: String::new(),
            signature: String::new(),
            signed_headers: String::new(),
            authorization,
            canonical_query,
            headers,
        };
    }

    // Step 0.1: the SDK tests the raw (untrimmed) value, and an empty value counts as absent.
    let unsigned_payload = find_header(&headers, HEADER_CONTENT_TYPE)
        .map(|i| headers[i].1.as_str())
        .is_some_and(|ct| {
            !ct.is_empty()
                && !ct.starts_with("application/json")
                && !ct.starts_with("application/bson")
        });
    if unsigned_payload {
        // The SDK assigns the value, so a caller-supplied X-Sdk-Content-Sha256 is overwritten.
        set_header(&mut headers, HEADER_CONTENT_SHA256, UNSIGNED_PAYLOAD);
    }

    // Step 0.2 and 0.3: an existing X-Sdk-Date / Host (any case) wins over what we would add.
    let date = match find_header(&headers, HEADER_SDK_DATE) {
        Some(i) => trim_value(&headers[i].1).to_string(),
        None => {
            headers.push((HEADER_SDK_DATE.to_string(), sdk_date.to_string()));
            trim_value(sdk_date).to_string()
        }
    };
    if find_header(&headers, HEADER_HOST).is_none() {
        headers.push((HEADER_HOST.to_string(), input.host.to_string()));
    }

    // The SDK trims every header value, and what it sends is the trimmed value.
    for (_, value) in headers.iter_mut() {
        let trimmed = trim_value(value);
        if trimmed.len() != value.len() {
            *value = trimmed.to_string();
        }
    }

    // Step 1.4 and 1.5: names with '_' are sent but never signed.
    let mut signed: Vec<(String, &str)> = headers
        .iter()
        .filter(|(name, _)| !name.contains('_'))
        .map(|(name, value)| (name.to_lowercase(), value.as_str()))
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical_headers = String::new();
    for (name, value) in &signed {
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(value);
        canonical_headers.push('\n');
    }
    let signed_headers = signed
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");

    // Step 1.6: an empty body always hashes as empty, even with X-Sdk-Content-Sha256 present;
    // an empty X-Sdk-Content-Sha256 value counts as absent.
    let payload_hash = if input.body.is_empty() {
        EMPTY_BODY_SHA256.to_string()
    } else {
        match find_header(&headers, HEADER_CONTENT_SHA256).map(|i| headers[i].1.as_str()) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => sha256_hex(input.body),
        }
    };

    let canonical_request = [
        input.method.to_uppercase().as_str(),
        canonical_uri(input.path).as_str(),
        canonical_query.as_str(),
        canonical_headers.as_str(),
        signed_headers.as_str(),
        payload_hash.as_str(),
    ]
    .join("\n");

    let string_to_sign = format!(
        "{ALGORITHM}\n{date}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let signature = hmac_sha256_hex(secret_key.as_bytes(), string_to_sign.as_bytes());
    let authorization = format!(
        "{ALGORITHM} Access={access_key}, SignedHeaders={signed_headers}, Signature={signature}"
    );
    headers.push((HEADER_AUTHORIZATION.to_string(), authorization.clone()));

    Signed {
        canonical_request,
        string_to_sign,
        signature,
        signed_headers,
        authorization,
        canonical_query,
        headers,
    }
}

/// Canonical URI (section 8 step 1.2): decode, split on `/`, encode each segment, end with `/`.
///
/// An encoded slash (`%2F`) therefore becomes a separator, invalid escapes (`%ZZ`) stay literal
/// and their `%` becomes `%25`, and decoded bytes that are not valid UTF-8 become U+FFFD (as
/// Python's `unquote` does). An empty path gives `/`.
pub fn canonical_uri(path: &str) -> String {
    let decoded = percent_decode_lossy(path);
    let mut out = decoded
        .split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/");
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Canonical query string (step 1.3): sort by raw key then raw value, encode, `k=v`, join with `&`.
///
/// Sorting compares the decoded text by Unicode code point (`str` ordering is UTF-8 byte order,
/// which is the same), before encoding: `~a` sorts before `éa` although `%C3%A9a` < `~a`.
pub fn canonical_query(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    let mut out = String::new();
    for (i, (key, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&encode_component(key));
        out.push('=');
        out.push_str(&encode_component(value));
    }
    out
}

/// Percent-encodes UTF-8 bytes, keeping only `A-Z a-z 0-9 - _ . ~`, with upper-case hex.
pub fn encode_component(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Decodes `%XX` escapes (either hex case); anything else, including `%` not followed by two hex
/// digits, is kept as is. Invalid UTF-8 in the result becomes U+FFFD, one per maximal invalid
/// subsequence, which is how Python's `unquote(errors="replace")` behaves too.
fn percent_decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|&c| hex_value(c)),
                bytes.get(i + 2).and_then(|&c| hex_value(c)),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Trims header values the way the SDK's Python `str.strip()` does: Unicode whitespace plus the
/// ASCII separators U+001C..U+001F, which Python counts as whitespace and Rust does not.
fn trim_value(v: &str) -> &str {
    v.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Index of the header whose name equals `name` ignoring case.
fn find_header(headers: &[(String, String)], name: &str) -> Option<usize> {
    let wanted = name.to_lowercase();
    headers.iter().position(|(n, _)| n.to_lowercase() == wanted)
}

/// Sets the value of `name` (any case) in place, or appends it with this spelling.
fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    match find_header(headers, name) {
        Some(i) => headers[i].1 = value.to_string(),
        None => headers.push((name.to_string(), value.to_string())),
    }
}

/// Copies the caller's headers, merging names that differ only in case.
fn merge_headers(input: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(input.len() + 4);
    for (name, value) in input {
        match find_header(&out, name) {
            Some(i) => out[i].1 = value.clone(),
            None => out.push((name.clone(), value.clone())),
        }
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    // HMAC accepts keys of any length (long keys are hashed), so this never fails.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests;
