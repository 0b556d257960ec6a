//! JSON read strictly: an object that names the same key twice is an error, at any depth.
//!
//! serde_json keeps the last of duplicate keys when it builds a [`Value`], and its maintainers
//! chose to keep it so (serde-rs/json#762: "use their own Map type or Value enum with a
//! Deserialize impl"); no well-kept crate offers a duplicate-rejecting `Value` (serde_with's
//! `maps_duplicate_key_is_error` covers typed maps, not a tree of unknown shape). So this is that
//! small Deserialize: it builds the same [`Value`] serde_json would, but fails on a repeated key.
//! Two readings of one message must never disagree (`{"dry_run": false, "dry_run": true}` read
//! by this daemon and by a proxy in front of it), so a duplicate is a rejection, not a guess.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `text` as JSON, rejecting any object with a repeated key. The error names the key and
/// where it is (`duplicate key "kind" in the message at line 1 column 30`; inside `params`, the
/// path: `duplicate key "token" in params.nested at line 1 column 80`).
pub fn from_str_strict(text: &str) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    match Strict::deserialize(&mut de).and_then(|v| de.end().map(|()| v)) {
        Ok(Strict(v)) => Ok(v),
        Err(e) if e.is_data() => Err(named(text)),
        Err(e) => Err(e.to_string()),
    }
}

/// The error of a strict reading of `text`, read again to learn where (the path costs time on
/// every message, so only a failed reading pays for it).
fn named(text: &str) -> String {
    let mut de = serde_json::Deserializer::from_str(text);
    let Err(e) = serde_path_to_error::deserialize::<_, Strict>(&mut de) else {
        return "invalid JSON".to_string();
    };
    let path = e.path().to_string();
    let msg = e.into_inner().to_string();
    if !msg.starts_with("duplicate key ") {
        return msg;
    }
    // The path is the object's that holds the repeated key (`.` for the top level).
    let (what, at) = msg.split_once(" at line ").unwrap_or((&msg, ""));
    let place = if path.is_empty() || path == "." {
        "in the message".to_string()
    } else {
        format!("in {path}")
    };
    if at.is_empty() {
        format!("{what} {place}")
    } else {
        format!("{what} {place} at line {at}")
    }
}

/// A [`Value`] whose objects had no repeated key.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"kind":"remote_mirror","params":{"repository_id":5,"x":[1,-2,3.5,null,true,"s"]}}"#,
            r#"[]"#,
            r#""\u00e9\n""#,
            r#"18446744073709551615"#,
            r#"-9223372036854775808"#,
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(from_str_strict(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn a_repeated_key_is_named_with_its_object() {
        let e = from_str_strict(r#"{"kind":"a","kind":"b"}"#).unwrap_err();
        assert!(
            e.starts_with(r#"duplicate key "kind" in the message at line 1 column"#),
            "{e}"
        );
        let e = from_str_strict(r#"{"kind":"a","params":{"n":{"s":1,"s":2}}}"#).unwrap_err();
        assert!(
            e.starts_with(r#"duplicate key "s" in params.n at line 1"#),
            "{e}"
        );
        let e = from_str_strict(r#"{"a":[{"t":1},{"t":1,"t":2}]}"#).unwrap_err();
        assert!(e.starts_with(r#"duplicate key "t" in a[1]"#), "{e}");
        // The same key in sibling objects is not a repeat.
        assert!(from_str_strict(r#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }

    #[test]
    fn syntax_errors_and_trailing_text_are_errors() {
        assert!(from_str_strict("{not json").is_err());
        assert!(from_str_strict(r#"{"a":1} x"#).is_err());
        assert!(from_str_strict("").is_err());
    }
}
