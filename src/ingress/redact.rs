//! Redaction of rejected input: values that look secret are replaced by `"[redacted]"` before
//! a rejected body is stored or anything about it is logged. Not for accepted jobs, whose
//! parameters are declared ones (see below), nor for the daemon's own secrets, which are
//! wrapped in `secrecy` types from the config on.
//!
//! The value of every key that looks secret ([`is_secret_key`]) is replaced by `"[redacted]"`,
//! at any depth, whatever its type; every other string value goes through [`redact_text`]
//! (`password=…`, `"token": "…"`, `Authorization: Bearer …`, `scheme://user:…@host`). What a
//! redaction removed is also removed from the rejection reason ([`Found::scrub`]), since serde's
//! messages quote values (`invalid type: string "…"`). Accepted jobs are stored as submitted:
//! their parameters passed `deny_unknown_fields`, and the one declared parameter such a rule
//! matches, `remote_mirror`'s `credential`, names a profile in the config, not a secret. In a
//! rejected body it is redacted all the same: a rejected `credential` may be a password typed in
//! the wrong place.
//!
//! Not redacted: secrets in prose (`my password is hunter2`), or under keys no rule matches.

use serde_json::Value;

/// What a secret value is replaced by.
pub const REDACTED: &str = "[redacted]";

/// Key names whose values are secrets: any key containing one of these once lowercased with
/// `_`, `-`, `.` and spaces removed (so `api_key`, `API-Key` and `apiKey` all match `apikey`).
const SECRET_PARTS: [&str; 11] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "authorization",
    "credential",
    "apikey",
    "accesskey",
    "privatekey",
    "cookie",
];
/// Key names that are secrets only as a whole (`sk` is an AK/SK secret key; `task` is no secret).
const SECRET_EXACT: [&str; 4] = ["sk", "ak", "auth", "pass"];

/// True when a value under this key name is treated as a secret: the name, lowercased without
/// `_`, `-`, `.` and spaces, contains `password`, `passwd`, `pwd`, `secret`, `token`,
/// `authorization`, `credential`, `apikey`, `accesskey`, `privatekey` or `cookie`, or is `sk`,
/// `ak`, `auth` or `pass`.
pub fn is_secret_key(key: &str) -> bool {
    let norm: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_EXACT.contains(&norm.as_str()) || SECRET_PARTS.iter().any(|p| norm.contains(p))
}

/// The texts a redaction removed, to be removed from whatever else is said about the body.
#[derive(Debug, Default)]
pub struct Found(Vec<String>);

impl Found {
    fn add(&mut self, s: &str) {
        if !s.is_empty() && s != REDACTED {
            self.0.push(s.to_string());
        }
    }

    /// `text` with every removed value of 3 characters or more replaced by `[redacted]`, as
    /// written and as `{:?}` writes it. (Shorter ones would garble the text and hide nothing.)
    pub fn scrub(&self, text: &str) -> String {
        let mut secrets: Vec<&String> = self.0.iter().filter(|s| s.chars().count() >= 3).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut out = text.to_string();
        for s in secrets {
            out = out.replace(s.as_str(), REDACTED);
            let escaped = s.escape_debug().to_string();
            if escaped != **s {
                out = out.replace(&escaped, REDACTED);
            }
        }
        out
    }
}

/// Redacts `value` in place (see the module doc), noting what was removed in `found`.
pub fn redact_value(value: &mut Value, found: &mut Found) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) {
                    collect(v, found);
                    *v = Value::String(REDACTED.to_string());
                } else {
                    redact_value(v, found);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, found)),
        Value::String(s) => {
            let red = redact_str(s, found);
            if red != *s {
                *s = red;
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn collect(v: &Value, found: &mut Found) {
    match v {
        Value::String(s) => found.add(s),
        Value::Number(n) => found.add(&n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
        Value::Object(map) => map.values().for_each(|v| collect(v, found)),
        Value::Null | Value::Bool(_) => {}
    }
}

/// Redacts secrets in text that has no JSON structure to go by: the value after a secret-looking
/// key followed by `:` or `=` (quoted, bracketed, or up to the next `,;&)]}`, quote or line end,
/// so `Authorization: Bearer abc` loses `Bearer abc`), and the password of `scheme://user:pw@host`.
pub fn redact_text(text: &str) -> String {
    redact_str(text, &mut Found::default())
}

/// [`redact_text`], noting what was removed in `found`.
pub fn redact_str(text: &str, found: &mut Found) -> String {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut pos = 0;
    // Every index below stops on an ASCII byte or the end, so slicing stays on char boundaries.
    while pos < b.len() {
        let span = if b[pos..].starts_with(b"://") {
            pos += 3;
            userinfo_password(b, pos)
        } else if is_key_byte(b[pos]) {
            let start = pos;
            while pos < b.len() && is_key_byte(b[pos]) {
                pos += 1;
            }
            if is_secret_key(&text[start..pos]) {
                value_after(b, pos)
            } else {
                None
            }
        } else {
            pos += 1;
            None
        };
        if let Some((from, to)) = span {
            out.push_str(&text[copied..from]);
            out.push_str(REDACTED);
            found.add(&text[from..to]);
            copied = to;
            pos = to;
        }
    }
    if copied == 0 {
        return text.to_string();
    }
    out.push_str(&text[copied..]);
    out
}

fn is_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// The value that follows a key ending at `p`: `"key": "v"`, `key=v`, `\"key\":\"v\"`, `key => v`.
fn value_after(b: &[u8], p: usize) -> Option<(usize, usize)> {
    let mut q = p;
    if b[q..].starts_with(b"\\\"") {
        q += 2;
    } else if q < b.len() && matches!(b[q], b'"' | b'\'') {
        q += 1;
    }
    let skip_ws = |mut q: usize| {
        while q < b.len() && matches!(b[q], b' ' | b'\t') {
            q += 1;
        }
        q
    };
    q = skip_ws(q);
    if q < b.len() && matches!(b[q], b':' | b'=') {
        q += 1;
    } else {
        return None;
    }
    if q < b.len() && matches!(b[q], b'=' | b'>') {
        q += 1;
    }
    q = skip_ws(q);
    let find = |from: usize, stop: &dyn Fn(usize) -> bool| (from..b.len()).find(|&i| stop(i));
    let (from, to) = match b.get(q) {
        None => return None,
        Some(b'\\') if b.get(q + 1) == Some(&b'"') => {
            let from = q + 2;
            let to = find(from, &|i| b[i..].starts_with(b"\\\"")).unwrap_or(b.len());
            (from, to)
        }
        Some(&quote @ (b'"' | b'\'')) => {
            let from = q + 1;
            let mut i = from;
            while i < b.len() && b[i] != quote {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            (from, i.min(b.len()))
        }
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut in_str = false;
            let mut i = q;
            let mut end = b.len();
            while i < b.len() {
                match b[i] {
                    b'\\' if in_str => i += 1,
                    b'"' => in_str = !in_str,
                    b'{' | b'[' if !in_str => depth += 1,
                    b'}' | b']' if !in_str => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            (q, end.min(b.len()))
        }
        Some(_) => {
            let to = find(q, &|i| {
                matches!(
                    b[i],
                    b',' | b';' | b'&' | b')' | b']' | b'}' | b'"' | b'\'' | b'\r' | b'\n'
                )
            })
            .unwrap_or(b.len());
            (q, to)
        }
    };
    (to > from).then_some((from, to))
}

/// The password in the authority that starts at `p` (after `://`), if it has `user:password@`.
fn userinfo_password(b: &[u8], p: usize) -> Option<(usize, usize)> {
    let end = (p..b.len())
        .find(|&i| {
            matches!(
                b[i],
                b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b' ' | b'\t' | b'\r' | b'\n'
            )
        })
        .unwrap_or(b.len());
    let at = (p..end).rev().find(|&i| b[i] == b'@')?;
    let colon = (p..at).find(|&i| b[i] == b':')?;
    (at > colon + 1).then_some((colon + 1, at))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_keys_match_by_part_and_short_ones_whole() {
        for k in [
            "password",
            "DB_PASSWORD",
            "passwd",
            "client_secret",
            "x-auth-token",
            "accessToken",
            "Authorization",
            "credential",
            "credentials",
            "api_key",
            "API-Key",
            "apiKey",
            "access_key_id",
            "private_key",
            "sk",
            "SK",
            "ak",
            "Cookie",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "task",
            "kind",
            "repository_id",
            "skip",
            "make",
            "key",
            "desk",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn json_values_under_secret_keys_are_redacted_at_any_depth() {
        let mut v = json!({
            "token": "tok-123",
            "nested": {"secret": {"a": "s-1", "b": [7, "s-2"]}, "ok": "visible"},
            "list": [{"Password": 424242}, {"note": "password=hunter2, more"}],
            "url": "https://bot:pw-9876@git.example.com/r.git",
            "sk": "short",
        });
        let mut found = Found::default();
        redact_value(&mut v, &mut found);
        assert_eq!(
            v,
            json!({
                "token": "[redacted]",
                "nested": {"secret": "[redacted]", "ok": "visible"},
                "list": [{"Password": "[redacted]"}, {"note": "password=[redacted], more"}],
                "url": "https://bot:[redacted]@git.example.com/r.git",
                "sk": "[redacted]",
            })
        );
        let reason = r#"invalid type: string "tok-123", expected u32; 424242 and "pw-9876""#;
        assert_eq!(
            found.scrub(reason),
            r#"invalid type: string "[redacted]", expected u32; [redacted] and "[redacted]""#
        );
    }

    #[test]
    fn text_without_structure_is_redacted_after_key_and_separator() {
        let cases = [
            (
                r#"{"password": "a b\"c", "x": 1"#,
                r#"{"password": "[redacted]", "x": 1"#,
            ),
            (
                "user=bob&passwd=p4ss&next=1",
                "user=bob&passwd=[redacted]&next=1",
            ),
            (
                "Authorization: Bearer eyJabc.def\nHost: x",
                "Authorization: [redacted]\nHost: x",
            ),
            (r#"{\"token\":\"t0k\"}"#, r#"{\"token\":\"[redacted]\"}"#),
            (
                r#"{"credentials": {"u": "a", "p": "b"}, "k": 2"#,
                r#"{"credentials": [redacted], "k": 2"#,
            ),
            ("api_key => 'abc'", "api_key => '[redacted]'"),
            (
                "amqp://guest:guest@127.0.0.1/",
                "amqp://guest:[redacted]@127.0.0.1/",
            ),
            ("{not json, task=3", "{not json, task=3"),
            ("the password is hunter2", "the password is hunter2"),
            (
                r#"cut in "secret": "abcd"#,
                r#"cut in "secret": "[redacted]"#,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(redact_text(text), want, "{text}");
        }
    }
}
