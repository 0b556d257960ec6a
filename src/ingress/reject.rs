//! What a rejected submission leaves behind, and what is said about it: a bounded, redacted copy
//! of its body, its kind, key and reason cut to size, and log lines that a flood of bad input
//! cannot multiply. Deciding *whether* a submission is rejected is not here: that is
//! [`super::prepare`] and each job kind's `validate`.
//!
//! # The stored body of a rejected job (the `params` column, always valid JSON)
//!
//! - A body that was read as JSON (the `params` of a submission, or a whole message whose
//!   envelope was wrong) is stored as that JSON, redacted, when its compact text is at most
//!   [`MAX_KEPT_BODY`] bytes.
//! - Otherwise, and always for a body that could not be read as JSON (not UTF-8, not JSON, over
//!   `amqp.max_message_bytes`), it is stored as
//!   `{"truncated_body": "…", "size": N, "sha256": "…"}`: `size` and `sha256` (lowercase hex)
//!   describe the body as received (for a submission read as JSON, its `params` as compact JSON),
//!   so it can be matched with the dead-lettered message; `truncated_body` is the start of the
//!   redacted body, at most [`MAX_KEPT_BODY`] bytes once written as a JSON string, cut on a
//!   character boundary. For an unreadable body only its first [`MAX_UNPARSED_PREFIX`] bytes are
//!   kept (decoded lossily, then passed through [`redact_text`]), since without JSON structure
//!   the textual redaction is a best effort.
//!
//! Secrets are redacted before anything is stored or logged: see [`super::redact`].

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::redact::redact_text;

/// The most of a rejected body kept, in bytes as stored.
pub const MAX_KEPT_BODY: usize = 4096;
/// The most of an unreadable body kept, in bytes before redaction.
pub const MAX_UNPARSED_PREFIX: usize = 256;
/// The longest job kind accepted, in bytes; a longer one is stored cut to this plus `…`.
pub const MAX_KIND_BYTES: usize = 64;
/// The longest idempotency key accepted, in bytes: 255, since `enqueue` with AMQP sends the key
/// as the message's `message_id`, an AMQP short string (one length byte), and a broker hands
/// over no longer `message_id` either.
pub const MAX_KEY_BYTES: usize = 255;
/// The longest rejection reason stored (`error_msg`), in bytes.
pub const MAX_ERROR_MSG_BYTES: usize = 1024;
/// The longest rejection reason logged, in characters.
pub const MAX_LOGGED_REASON_CHARS: usize = 300;
/// How long after a logged reject further ones are only counted.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` in at most `max` bytes: cut on a character boundary, with `…` marking the cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_string()
    } else {
        format!("{}…", cut(s, max.saturating_sub('…'.len_utf8())))
    }
}

/// `s` in at most `max` characters, with `…` marking a cut.
pub fn bounded_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some(_) => {
            let end = s
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(0, |(i, _)| i);
            format!("{}…", &s[..end])
        }
    }
}

/// The longest prefix of `s` that takes at most `max` bytes once written as a JSON string
/// (quotes excluded), so that escapes cannot multiply what is stored.
fn cut_escaped(s: &str, max: usize) -> &str {
    let mut n = 0;
    for (i, c) in s.char_indices() {
        let w = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if n + w > max {
            return &s[..i];
        }
        n += w;
    }
    s
}

/// The wrapper for a body not kept whole (see the module doc).
fn wrapped(kept: &str, original: &[u8]) -> String {
    json!({
        "truncated_body": cut_escaped(kept, MAX_KEPT_BODY),
        "size": original.len(),
        "sha256": hex::encode(Sha256::digest(original)),
    })
    .to_string()
}

/// The stored form of a rejected body read as JSON and already redacted; `original` gives the
/// bytes as received (only asked for when the body is too large to keep whole).
pub fn stored_json(redacted: &Value, original: impl FnOnce() -> Vec<u8>) -> String {
    let text = redacted.to_string();
    if text.len() <= MAX_KEPT_BODY {
        return text;
    }
    wrapped(&text, &original())
}

/// The stored form of a rejected body that could not be read as JSON.
pub fn stored_unparsed(body: &[u8]) -> String {
    let prefix = String::from_utf8_lossy(&body[..body.len().min(MAX_UNPARSED_PREFIX)]);
    wrapped(&redact_text(&prefix), body)
}

/// The stored form of a job kind: as given, or cut to [`MAX_KIND_BYTES`] and marked with `…`.
pub fn stored_kind(kind: &str) -> String {
    if kind.len() <= MAX_KIND_BYTES {
        kind.to_string()
    } else {
        format!("{}…", cut(kind, MAX_KIND_BYTES))
    }
}

/// Why a job kind is too long to be one, if it is.
pub fn check_kind(kind: &str) -> Result<(), String> {
    if kind.len() <= MAX_KIND_BYTES {
        return Ok(());
    }
    Err(format!(
        "job kind is {} bytes long; a kind is at most {MAX_KIND_BYTES} bytes (it begins {:?})",
        kind.len(),
        redact_text(cut(kind, 32))
    ))
}

/// Checks an idempotency key: 1 to [`MAX_KEY_BYTES`] printable ASCII characters, 0x21 to 0x7e.
/// Spaces are refused with control characters: a key is an identifier, and a trailing space
/// would make two keys that look the same in every listing.
pub fn check_key(key: &str) -> Result<(), String> {
    let problem = if key.is_empty() {
        "is empty".to_string()
    } else if key.len() > MAX_KEY_BYTES {
        format!("is {} bytes long", key.len())
    } else if let Some((i, c)) = key.char_indices().find(|(_, c)| !matches!(c, '!'..='~')) {
        match c {
            ' ' => format!("has a space at byte {i}"),
            c if c.is_control() => {
                format!(
                    "has a control character ({}) at byte {i}",
                    c.escape_unicode()
                )
            }
            _ => format!("has a non-ASCII character at byte {i}"),
        }
    } else {
        return Ok(());
    };
    Err(format!(
        "idempotency key {problem}; a key is 1 to {MAX_KEY_BYTES} printable ASCII characters \
         (0x21 to 0x7e: no spaces, no control characters)"
    ))
}

/// Paces the log lines about rejects: the first in a [`LOG_WINDOW`] is logged with its reason;
/// the rest of that window are counted and told in one summary line. Time is passed in, so the
/// rule is tested without waiting.
#[derive(Debug)]
pub struct RejectLog {
    window: Duration,
    opened: Option<Instant>,
    held: u64,
}

/// What to do about one reject.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it with its reason, after a summary line for `summary` held ones when that is not 0.
    Log { summary: u64 },
    /// Only counted. When `first`, the caller arranges a [`RejectLog::flush`] at `until`.
    Hold { first: bool, until: Instant },
}

impl RejectLog {
    /// A pacer with this window.
    pub const fn new(window: Duration) -> RejectLog {
        RejectLog {
            window,
            opened: None,
            held: 0,
        }
    }

    /// Notes a reject at `now`.
    pub fn note(&mut self, now: Instant) -> Verdict {
        match self.opened {
            Some(t) if now < t + self.window => {
                self.held += 1;
                Verdict::Hold {
                    first: self.held == 1,
                    until: t + self.window,
                }
            }
            _ => {
                self.opened = Some(now);
                Verdict::Log {
                    summary: std::mem::take(&mut self.held),
                }
            }
        }
    }

    /// Once the window has closed (`now` at or after its end), the count of held rejects not
    /// yet summarised, which are then forgotten; otherwise 0.
    pub fn flush(&mut self, now: Instant) -> u64 {
        match self.opened {
            Some(t) if now >= t + self.window => std::mem::take(&mut self.held),
            _ => 0,
        }
    }

    /// The summary line for `n` held rejects.
    pub fn summary(&self, n: u64) -> String {
        format!(
            "{n} more submission(s) rejected within {} of the one logged; see `jobs list --status rejected`",
            humantime::format_duration(self.window)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_are_kept_whole_and_large_ones_cut_with_size_and_hash() {
        let small = json!({"a": 1});
        assert_eq!(stored_json(&small, || unreachable!()), r#"{"a":1}"#);

        let big = json!({"pad": "\"".repeat(10_000)});
        let original = big.to_string().into_bytes();
        let stored = stored_json(&big, || original.clone());
        assert!(stored.len() <= MAX_KEPT_BODY + 150, "{}", stored.len());
        let v: Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(v["size"], original.len());
        assert_eq!(v["sha256"], hex::encode(Sha256::digest(&original)));
        assert!(v["truncated_body"]
            .as_str()
            .unwrap()
            .starts_with(r#"{"pad":"\""#));

        let raw = [b"password=hunter2 ".as_slice(), &[0xff; 5000]].concat();
        let v: Value = serde_json::from_str(&stored_unparsed(&raw)).unwrap();
        assert_eq!(v["size"], 5017);
        let kept = v["truncated_body"].as_str().unwrap();
        assert!(kept.starts_with("password=[redacted]"), "{kept}");
        assert!(kept.len() <= 3 * MAX_UNPARSED_PREFIX);
    }

    #[test]
    fn cuts_land_on_character_boundaries() {
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(bounded("ééé", 5), "é…");
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(bounded_chars("ééé", 2), "é…");
        assert_eq!(bounded_chars("éé", 2), "éé");
        assert_eq!(cut_escaped("a\u{1}b", 6), "a");
        let kind = "é".repeat(40);
        let stored = stored_kind(&kind);
        assert!(stored.len() <= MAX_KIND_BYTES + 3 && stored.ends_with('…'));
    }

    #[test]
    fn a_long_kind_is_named_by_its_redacted_start() {
        let kind = format!("token={}", "s3cr3t".repeat(20));
        let e = check_kind(&kind).unwrap_err();
        assert!(e.starts_with("job kind is 126 bytes long"), "{e}");
        assert!(
            e.contains("token=[redacted]") && !e.contains("s3cr3t"),
            "{e}"
        );
    }

    #[test]
    fn keys_are_printable_ascii_of_bounded_length() {
        assert!(check_key("order-42/retry#1").is_ok());
        assert!(check_key(&"k".repeat(255)).is_ok());
        for (key, says) in [
            ("", "is empty"),
            (&"k".repeat(256) as &str, "is 256 bytes long"),
            ("a b", "has a space at byte 1"),
            ("ab\u{7}", "has a control character (\\u{7}) at byte 2"),
            ("clé", "has a non-ASCII character at byte 2"),
        ] {
            let e = check_key(key).unwrap_err();
            assert!(e.contains(says) && e.contains("0x21 to 0x7e"), "{e}");
        }
    }

    #[test]
    fn a_burst_of_rejects_is_one_line_and_a_summary() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut log = RejectLog::new(s(10));
        assert_eq!(log.note(t0), Verdict::Log { summary: 0 });
        let until = t0 + s(10);
        assert_eq!(log.note(t0 + s(1)), Verdict::Hold { first: true, until });
        for i in 2..=9 {
            assert_eq!(
                log.note(t0 + s(i)),
                Verdict::Hold {
                    first: false,
                    until
                }
            );
        }
        assert_eq!(log.flush(t0 + s(9)), 0, "the window is still open");
        // The next reject after the window carries the summary of the held ones.
        assert_eq!(log.note(t0 + s(12)), Verdict::Log { summary: 9 });
        assert_eq!(
            log.note(t0 + s(13)),
            Verdict::Hold {
                first: true,
                until: t0 + s(22)
            }
        );
        // Or the flush at the window's end does, and then nothing is told twice.
        assert_eq!(log.flush(t0 + s(22)), 1);
        assert_eq!(log.flush(t0 + s(23)), 0);
        assert_eq!(log.note(t0 + s(40)), Verdict::Log { summary: 0 });
        assert!(log
            .summary(9)
            .starts_with("9 more submission(s) rejected within 10s"));
    }
}
