//! The gateway's half of `SDK-HMAC-SHA256`: the canonical request and the string to sign,
//! rebuilt from a request as it was received (method, raw path and raw query as on the wire, the
//! header bytes, the body bytes), and the signature the secret key gives for them.
//!
//! It is written from the published algorithm (the SDK signer's steps 1 to 3), not from the
//! daemon's client: the simulator must catch a client signer that is wrong, so the two share no
//! code. Where the client starts from the values it means to send, this starts from the bytes
//! that arrived: it decodes the path and the query and re-encodes them per the algorithm, reads
//! each signed header's value from the wire, and hashes the body as received. It does not decide
//! whether a request is acceptable (the key, the clock, the project): `aksk.rs` does.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// The algorithm name, first in `Authorization` and in the string to sign.
pub(crate) const ALGORITHM: &str = "SDK-HMAC-SHA256";

/// Lower-case hex SHA-256 of no bytes: the payload hash of a request without a body.
const EMPTY_PAYLOAD_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The header carrying the request time; its value is the date in the string to sign.
pub(crate) const SDK_DATE: &str = "x-sdk-date";

/// The header whose value, when signed and not empty, stands in for the body's hash.
pub(crate) const CONTENT_SHA256: &str = "x-sdk-content-sha256";

/// What the algorithm leaves unescaped: ASCII letters and digits and `- _ . ~` (Python's
/// `quote(s, safe="~")`). Everything else is `%XX` of its UTF-8 bytes, hex upper-case.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A request as the server received it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Received<'a> {
    /// The method as received; the canonical request has it upper-case.
    pub(crate) method: &'a str,
    /// The path exactly as on the request line (still percent-encoded).
    pub(crate) path: &'a str,
    /// The query exactly as on the request line, without `?`; `None` when there was none.
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
    /// The body bytes as received (after any transfer coding); empty when there was none.
    pub(crate) body: &'a [u8],
}

/// The two texts the signature is computed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rebuilt {
    pub(crate) canonical_request: String,
    pub(crate) string_to_sign: String,
}

/// Rebuilds the canonical request and the string to sign.
///
/// `signed_headers` is the `SignedHeaders` list of the `Authorization` header, already checked to
/// be in canonical form (lower case, sorted, no repeats). The date in the string to sign is the
/// signed `X-Sdk-Date` value (its format is the caller's to check). The error says which signed
/// header could not be read.
pub(crate) fn rebuild(req: &Received<'_>, signed_headers: &[&str]) -> Result<Rebuilt, String> {
    let mut canonical_headers = String::new();
    let mut content_sha256 = None;
    let mut date = None;
    for &name in signed_headers {
        let value = signed_header_value(req.headers, name)?;
        match name {
            CONTENT_SHA256 => content_sha256 = Some(value.clone()),
            SDK_DATE => date = Some(value.clone()),
            _ => {}
        }
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&value);
        canonical_headers.push('\n');
    }
    let date = date.ok_or_else(|| format!("{SDK_DATE} is not a signed header"))?;
    let payload_hash = payload_hash(req.body, content_sha256.as_deref());
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_uppercase(),
        canonical_uri(req.path),
        canonical_query(req.query),
        canonical_headers,
        signed_headers.join(";"),
        payload_hash,
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{date}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    Ok(Rebuilt {
        canonical_request,
        string_to_sign,
    })
}

/// Lower-case hex HMAC-SHA256 of the string to sign, keyed with the secret key's UTF-8 bytes
/// (no key derivation in this algorithm).
pub(crate) fn signature(secret_key: &str, string_to_sign: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret_key.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The value of a signed header as received, trimmed. The signer sends one value per name, as
/// UTF-8; a header that is missing, repeated or not UTF-8 cannot be what was signed.
fn signed_header_value(headers: &HeaderMap, name: &str) -> Result<String, String> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or_else(|| format!("signed header {name} is missing"))?;
    if values.next().is_some() {
        return Err(format!("signed header {name} is sent more than once"));
    }
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| format!("signed header {name} is not UTF-8"))?;
    Ok(trim(text).to_string())
}

/// Trims what Python's `str.strip()` trims, as the signer does before signing: Unicode white
/// space and also U+001C..U+001F, which Python counts as white space and Rust does not.
fn trim(value: &str) -> &str {
    value.trim_matches(|c: char| c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}'))
}

/// Step 1.6: the empty hash for no body (whatever the headers say), else the signed
/// `X-Sdk-Content-Sha256` value unless it is empty, else the body's own SHA-256.
fn payload_hash(body: &[u8], content_sha256: Option<&str>) -> String {
    if body.is_empty() {
        return EMPTY_PAYLOAD_HASH.to_string();
    }
    match content_sha256 {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => hex::encode(Sha256::digest(body)),
    }
}

/// Step 1.2 from the raw path: percent-decode the whole path (invalid escapes stay literal, bytes
/// that are not UTF-8 become U+FFFD), split on `/` (so an encoded `%2F` becomes a separator),
/// re-encode each segment, join with `/`, and end with `/`.
pub(crate) fn canonical_uri(raw_path: &str) -> String {
    let decoded = percent_decode_str(raw_path).decode_utf8_lossy();
    let segments: Vec<String> = decoded
        .split('/')
        .map(|segment| utf8_percent_encode(segment, UNRESERVED).to_string())
        .collect();
    let mut uri = segments.join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// Step 1.3 from the raw query: decode every `k=v` pair (`k` alone is an empty value), sort the
/// decoded pairs by key then value (code point order, before any encoding), re-encode both, and
/// join `k=v` with `&`.
///
/// The query is decoded the way the simulator's handlers decode it (form encoding, where `+` is a
/// space), so the signature covers what the handlers act on; the SDK never sends a bare `+` (a
/// space is `%20`, a plus `%2B`), so this choice does not change any SDK request.
pub(crate) fn canonical_query(raw_query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    // `String` ordering is byte order, and UTF-8 byte order is code point order.
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, UNRESERVED),
                utf8_percent_encode(v, UNRESERVED)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}
