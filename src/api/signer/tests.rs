//! Signatures marked "cross-checked" were computed by signing the same request with the
//! official Python signer (`huaweicloudsdkcore` 3.1.219: `Signer(BasicCredentials(AK, SK))`
//! `.sign(SdkRequest(...))`, with `datetime.utcnow` pinned to 2024-01-15 08:30:00).

use super::*;
use serde_json::Value;

const AK: &str = "HPUAEXAMPLEAK0000001";
const SK: &str = "EXAMPLEsecretKEY0000000000000000000000001";
const DATE: &str = "20240115T083000Z";

fn s(v: &str) -> String {
    v.to_string()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (s(k), s(v))).collect()
}

fn str_field<'a>(v: &'a Value, field: &str, name: &str) -> &'a str {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vector {name}: field {field} missing or not a string"))
}

/// Renders a JSON query value as section 8 says: strings as is, integers in decimal,
/// booleans lower-case, lists as one pair per element, null dropped.
fn render_query(name: &str, key: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(v) => out.push((s(key), v.clone())),
        Value::Number(n) => out.push((s(key), n.to_string())),
        Value::Bool(b) => out.push((s(key), b.to_string())),
        Value::Array(items) => {
            for item in items {
                render_query(name, key, item, out);
            }
        }
        Value::Null => {}
        Value::Object(_) => panic!("vector {name}: object query value for {key}"),
    }
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    &rest[..end]
}

fn query_of(url: &str) -> &str {
    url.split_once('?').map_or("", |(_, q)| q)
}

fn lower_set(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = headers
        .iter()
        .map(|(n, val)| (n.to_lowercase(), val.clone()))
        .collect();
    v.sort();
    v
}

fn header_map(v: &Value, field: &str, name: &str) -> Vec<(String, String)> {
    v.get(field)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("vector {name}: {field} missing or not an object"))
        .iter()
        .map(|(k, val)| {
            let val = val
                .as_str()
                .unwrap_or_else(|| panic!("vector {name}: {field}.{k} is not a string"));
            (k.clone(), s(val))
        })
        .collect()
}

#[test]
fn sdk_vectors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/aksk_vectors.json");
    let text = std::fs::read_to_string(path).expect("read tests/data/aksk_vectors.json");
    let doc: Value = serde_json::from_str(&text).expect("parse tests/data/aksk_vectors.json");
    let vectors = doc["vectors"].as_array().expect("a \"vectors\" array");
    assert!(!vectors.is_empty(), "no vectors");
    for v in vectors {
        let name = str_field(v, "name", "?");
        let mut query = Vec::new();
        let query_params = v["query_params"]
            .as_array()
            .unwrap_or_else(|| panic!("vector {name}: query_params is not an array"));
        for pair in query_params {
            let key = pair[0]
                .as_str()
                .unwrap_or_else(|| panic!("vector {name}: query key {pair} is not a string"));
            render_query(name, key, &pair[1], &mut query);
        }
        let caller_headers = header_map(v, "headers_in", name);
        let mut headers = caller_headers.clone();
        // What the SDK credentials add before the signer runs.
        for (field, header) in [
            ("project_id", "X-Project-Id"),
            ("domain_id", "X-Domain-Id"),
            ("security_token", "X-Security-Token"),
        ] {
            if let Some(val) = v.get(field).and_then(Value::as_str) {
                headers.push((s(header), s(val)));
            }
        }
        let body = match &v["body"] {
            Value::Null => "",
            Value::String(b) => b.as_str(),
            other => panic!("vector {name}: body {other} is neither null nor a string"),
        };
        let url = str_field(v, "url", name);
        let input = SignInput {
            method: str_field(v, "method", name),
            host: host_of(url),
            path: str_field(v, "path", name),
            query: &query,
            headers: &headers,
            body: body.as_bytes(),
        };
        let out = sign(
            str_field(v, "access_key", name),
            str_field(v, "secret_key", name),
            str_field(v, "sdk_date", name),
            &input,
        );
        for (field, got) in [
            ("canonical_request", &out.canonical_request),
            ("string_to_sign", &out.string_to_sign),
            ("signature", &out.signature),
            ("signed_headers", &out.signed_headers),
            ("expected_authorization", &out.authorization),
        ] {
            assert_eq!(got, str_field(v, field, name), "vector {name}: {field}");
        }
        assert_eq!(
            out.canonical_query,
            query_of(str_field(v, "sent_url", name)),
            "vector {name}: query of sent_url"
        );
        assert_eq!(
            lower_set(&out.headers),
            lower_set(&header_map(v, "expected_headers_out", name)),
            "vector {name}: headers out"
        );
        // Everything sent that the caller did not give is what the SDK (credentials + signer) adds.
        let mut added: Vec<String> = out
            .headers
            .iter()
            .map(|(n, _)| n.to_lowercase())
            .filter(|n| !caller_headers.iter().any(|(c, _)| c.to_lowercase() == *n))
            .collect();
        added.sort();
        let mut expected_added: Vec<String> = v["headers_added_by_sdk"]
            .as_array()
            .unwrap_or_else(|| panic!("vector {name}: headers_added_by_sdk is not an array"))
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_lowercase)
            .collect();
        expected_added.sort();
        assert_eq!(added, expected_added, "vector {name}: headers_added_by_sdk");
    }
}

fn get_input<'a>(
    path: &'a str,
    query: &'a [(String, String)],
    headers: &'a [(String, String)],
) -> SignInput<'a> {
    SignInput {
        method: "GET",
        host: "artifact.ap-southeast-3.myhuaweicloud.com",
        path,
        query,
        headers,
        body: b"",
    }
}

#[test]
fn sdk_date_formatting() {
    assert_eq!(sdk_date_from_unix(0), "19700101T000000Z");
    assert_eq!(sdk_date_from_unix(1_705_307_400), "20240115T083000Z");
    assert_eq!(sdk_date_from_unix(-1), "19691231T235959Z");
    assert_eq!(sdk_date_from_unix(951_782_400), "20000229T000000Z");
    assert_eq!(sdk_date_from_unix(253_402_300_799), "99991231T235959Z");
}

#[test]
fn encode_component_keeps_only_unreserved() {
    assert_eq!(encode_component("AZaz09-_.~"), "AZaz09-_.~");
    assert_eq!(
        encode_component(" +/=&,:|*%"),
        "%20%2B%2F%3D%26%2C%3A%7C%2A%25"
    );
    assert_eq!(encode_component("é"), "%C3%A9");
}

#[test]
fn canonical_uri_trailing_slash_and_empty_segments() {
    assert_eq!(canonical_uri("/a/b"), "/a/b/");
    assert_eq!(canonical_uri("/a/b/"), "/a/b/");
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("/a//b"), "/a//b/");
}

#[test]
fn encoded_slash_in_path_segment() {
    let path = "/v4/repositories/team%2Frepo/remote-mirror";
    assert_eq!(
        canonical_uri(path),
        "/v4/repositories/team/repo/remote-mirror/"
    );
    let headers = pairs(&[("Content-Type", "application/json")]);
    let out = sign(AK, SK, DATE, &get_input(path, &[], &headers));
    assert_eq!(
        out.canonical_request,
        "GET\n/v4/repositories/team/repo/remote-mirror/\n\n\
         content-type:application/json\n\
         host:artifact.ap-southeast-3.myhuaweicloud.com\n\
         x-sdk-date:20240115T083000Z\n\n\
         content-type;host;x-sdk-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned), path as given.
    assert_eq!(
        out.signature,
        "1bf0e8f961ac69f4f04438d0849571a0b8746fe784d88a61887a2b0de6fcb0b9"
    );
}

#[test]
fn unicode_in_path_and_query() {
    // Path given raw (not pre-encoded) and pre-encoded must canonicalise the same way.
    assert_eq!(canonical_uri("/files/café"), "/files/caf%C3%A9/");
    assert_eq!(canonical_uri("/files/caf%C3%A9"), "/files/caf%C3%A9/");
    let query = pairs(&[("name", "日本"), ("q", "a b+c")]);
    assert_eq!(
        canonical_query(&query),
        "name=%E6%97%A5%E6%9C%AC&q=a%20b%2Bc"
    );
    let headers = pairs(&[("Content-Type", "application/json")]);
    let out = sign(
        AK,
        SK,
        DATE,
        &get_input("/files/caf%C3%A9", &query, &headers),
    );
    assert_eq!(
        out.canonical_request,
        "GET\n/files/caf%C3%A9/\nname=%E6%97%A5%E6%9C%AC&q=a%20b%2Bc\n\
         content-type:application/json\n\
         host:artifact.ap-southeast-3.myhuaweicloud.com\n\
         x-sdk-date:20240115T083000Z\n\n\
         content-type;host;x-sdk-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    assert_eq!(
        out.signature,
        "9cd75e4eb49ee7cad753878035f3207775a4d28dc0e1b8d757220e40f9b91f63"
    );
}

#[test]
fn invalid_utf8_escape_in_path_becomes_replacement_character() {
    // %FF decodes to a byte that is not UTF-8; Python's unquote turns it into U+FFFD.
    assert_eq!(canonical_uri("/a%FFb"), "/a%EF%BF%BDb/");
    assert_eq!(canonical_uri("/a%C3"), "/a%EF%BF%BD/");
}

#[test]
fn empty_query_values() {
    let query = pairs(&[("b", ""), ("a", "1"), ("c", "")]);
    assert_eq!(canonical_query(&query), "a=1&b=&c=");
    let headers = pairs(&[("Content-Type", "application/json")]);
    let out = sign(AK, SK, DATE, &get_input("/x", &query, &headers));
    assert_eq!(out.canonical_query, "a=1&b=&c=");
    assert!(out.canonical_request.starts_with("GET\n/x/\na=1&b=&c=\n"));
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    assert_eq!(
        out.signature,
        "2d029f0d8e3fcdc26ae53a5fae0ed5e979e839d7755b9820742f33e4ab9aab09"
    );
}

#[test]
fn repeated_keys_sorted_by_value() {
    let query = pairs(&[
        ("format", "npm"),
        ("format", "maven2"),
        ("a", "z"),
        ("format", "go"),
    ]);
    assert_eq!(
        canonical_query(&query),
        "a=z&format=go&format=maven2&format=npm"
    );
    let headers = pairs(&[("Content-Type", "application/json")]);
    let out = sign(AK, SK, DATE, &get_input("/x", &query, &headers));
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer, query as [("a","z"),("format",[...])].
    assert_eq!(
        out.signature,
        "908bc70d936ed7f013fe525649aff5111b73fda28bb5b0fdab0a0fed6f0e47e5"
    );
}

#[test]
fn sort_before_encode() {
    // U+007E '~' < U+00E9 'é', although the encoded "%C3%A9a" < "~a".
    let query = pairs(&[("k", "éa"), ("k", "~a")]);
    assert_eq!(canonical_query(&query), "k=~a&k=%C3%A9a");
    let query = pairs(&[("éa", "1"), ("~a", "2")]);
    assert_eq!(canonical_query(&query), "~a=2&%C3%A9a=1");
    // 'A' (0x41) < '_' (0x5F) < 'a' (0x61), i.e. not case-folded.
    let query = pairs(&[("a", "3"), ("_x", "2"), ("A", "1")]);
    assert_eq!(canonical_query(&query), "A=1&_x=2&a=3");
    // A space sorts before letters, and is encoded as %20 (never '+').
    let query = pairs(&[("k", "b"), ("k", " a"), ("k", "+a")]);
    assert_eq!(canonical_query(&query), "k=%20a&k=%2Ba&k=b");

    let query = pairs(&[
        ("k", "éa"),
        ("k", "~a"),
        ("a", "3"),
        ("_x", "2"),
        ("A", "1"),
    ]);
    let headers = pairs(&[("Content-Type", "application/json")]);
    let out = sign(AK, SK, DATE, &get_input("/x", &query, &headers));
    assert_eq!(out.canonical_query, "A=1&_x=2&a=3&k=~a&k=%C3%A9a");
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    assert_eq!(
        out.signature,
        "dfb5148a9ce371caa4814cfa2e1b30ebfb73864bc93ad77b113a0da40fb50e60"
    );
}

#[test]
fn header_with_underscore_is_sent_not_signed() {
    let headers = pairs(&[
        ("Content-Type", "application/json"),
        ("X_Custom_Trace", "  abc  "),
        ("User-Agent", "  huaweicloud-usdk-python/3.0  "),
    ]);
    let out = sign(AK, SK, DATE, &get_input("/x", &[], &headers));
    assert_eq!(
        out.signed_headers,
        "content-type;host;user-agent;x-sdk-date"
    );
    assert_eq!(
        out.canonical_request,
        "GET\n/x/\n\n\
         content-type:application/json\n\
         host:artifact.ap-southeast-3.myhuaweicloud.com\n\
         user-agent:huaweicloud-usdk-python/3.0\n\
         x-sdk-date:20240115T083000Z\n\n\
         content-type;host;user-agent;x-sdk-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Sent, with the trimmed value, in caller order, before what the signer added.
    assert_eq!(out.headers[1], (s("X_Custom_Trace"), s("abc")));
    assert_eq!(
        out.headers[2],
        (s("User-Agent"), s("huaweicloud-usdk-python/3.0"))
    );
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    assert_eq!(
        out.signature,
        "2b05f30ee2e0155e18a082b90b91bfbfd6de0336c0c385423059719d9e686c63"
    );
}

#[test]
fn non_default_port_in_host() {
    let headers = pairs(&[("Content-Type", "application/json")]);
    let mut input = get_input("/cloudartifact/v5/storage", &[], &headers);
    input.host = "127.0.0.1:18080";
    let out = sign(AK, SK, DATE, &input);
    assert!(out.canonical_request.contains("\nhost:127.0.0.1:18080\n"));
    assert!(out.headers.contains(&(s("Host"), s("127.0.0.1:18080"))));
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    assert_eq!(
        out.signature,
        "4d4894576d36d1d4323f0dd2c7b17082f81344082058e40bd20e06f868fbbc30"
    );
}

#[test]
fn empty_body_with_non_json_content_type() {
    let headers = pairs(&[("Content-Type", "application/octet-stream")]);
    let mut input = get_input("/upload", &[], &headers);
    input.method = "put";
    let out = sign(AK, SK, DATE, &input);
    assert_eq!(
        out.canonical_request,
        "PUT\n/upload/\n\n\
         content-type:application/octet-stream\n\
         host:artifact.ap-southeast-3.myhuaweicloud.com\n\
         x-sdk-content-sha256:UNSIGNED-PAYLOAD\n\
         x-sdk-date:20240115T083000Z\n\n\
         content-type;host;x-sdk-content-sha256;x-sdk-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        out.headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        [
            "Content-Type",
            "X-Sdk-Content-Sha256",
            "X-Sdk-Date",
            "Host",
            "Authorization"
        ]
    );
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    assert_eq!(
        out.signature,
        "d94d4e32f2ef31c113fae8ae185a52054a29b48a04603fd7b17e30f0126ca933"
    );
}

#[test]
fn non_empty_body_with_non_json_content_type_is_unsigned_payload() {
    let headers = pairs(&[("Content-Type", "text/plain")]);
    let mut input = get_input("/upload", &[], &headers);
    input.method = "POST";
    input.body = b"hello";
    let out = sign(AK, SK, DATE, &input);
    assert!(out.canonical_request.ends_with("\nUNSIGNED-PAYLOAD"));
    // application/bson and application/json;charset=utf-8 hash the body.
    for ct in ["application/bson", "application/json;charset=utf-8"] {
        let headers = pairs(&[("Content-Type", ct)]);
        let mut input = get_input("/upload", &[], &headers);
        input.body = b"hello";
        let out = sign(AK, SK, DATE, &input);
        assert!(!out.signed_headers.contains("x-sdk-content-sha256"));
        assert!(out
            .canonical_request
            .ends_with(&format!("\n{}", sha256_hex(b"hello"))));
    }
    // No Content-Type at all: nothing added.
    let mut input = get_input("/upload", &[], &[]);
    input.body = b"hello";
    let out = sign(AK, SK, DATE, &input);
    assert_eq!(out.signed_headers, "host;x-sdk-date");
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    assert_eq!(
        out.signature,
        "1388df12e44f2b41b420346322410014a7732a7ceb2c62443dad3f87935ea002"
    );
}

#[test]
fn content_type_edge_values() {
    let post = |headers: &[(String, String)]| {
        let mut input = get_input("/upload", &[], headers);
        input.method = "POST";
        input.body = b"hello";
        sign(AK, SK, DATE, &input)
    };
    // An empty Content-Type counts as absent: the body is hashed.
    let out = post(&pairs(&[("Content-Type", "")]));
    assert_eq!(out.signed_headers, "content-type;host;x-sdk-date");
    assert!(out.canonical_request.contains("\ncontent-type:\nhost:"));
    assert!(out
        .canonical_request
        .ends_with(&format!("\n{}", sha256_hex(b"hello"))));
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    assert_eq!(
        out.signature,
        "f45caf8b8a7743b37425f7ad44ec1d32edb051286538dc4c10929deebb634255"
    );

    // The JSON test looks at the untrimmed value, so a leading space makes it non-JSON,
    // while the value sent and signed is trimmed.
    let out = post(&pairs(&[("Content-Type", " application/json")]));
    assert_eq!(
        out.signed_headers,
        "content-type;host;x-sdk-content-sha256;x-sdk-date"
    );
    assert!(out
        .canonical_request
        .contains("\ncontent-type:application/json\n"));
    assert!(out.canonical_request.ends_with("\nUNSIGNED-PAYLOAD"));
    assert_eq!(out.headers[0], (s("Content-Type"), s("application/json")));
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    let space_signature = "4ea552de0cf97b1f47e5c4e20e3417b9d5812352d5b7e0f23acbf5897979c973";
    assert_eq!(out.signature, space_signature);

    // A caller-supplied X-Sdk-Content-Sha256 (any case) is signed and used as the payload hash.
    let out = post(&pairs(&[
        ("Content-Type", "application/json"),
        ("x-sdk-content-sha256", "UNSIGNED-PAYLOAD"),
    ]));
    assert!(out.canonical_request.ends_with("\nUNSIGNED-PAYLOAD"));
    assert_eq!(
        out.headers[1],
        (s("x-sdk-content-sha256"), s("UNSIGNED-PAYLOAD"))
    );
    assert_eq!(out.signature, space_signature);
}

#[test]
fn bare_json_array_body() {
    let body = br#"["a.tgz", "b.tgz"]"#;
    let headers = pairs(&[("Content-Type", "application/json;charset=UTF-8")]);
    let mut input = get_input("/devreposerver/v5/files/compeletion", &[], &headers);
    input.method = "DELETE";
    input.body = body;
    let out = sign(AK, SK, DATE, &input);
    // sha256 of the exact bytes, computed with python3 hashlib.
    assert!(out
        .canonical_request
        .ends_with("\n247b953ffda627ebbcf5a0e142a0e19f3b97d72cb0f2b8cff82aacb119375532"));
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    assert_eq!(
        out.signature,
        "46b32c227dd07a2372cfdea3623f1c7adc908b090ef08aaf399e7d4329a5f8fc"
    );
}

#[test]
fn lower_case_escapes_come_out_upper_case() {
    assert_eq!(canonical_uri("/a%2fb/c%3ad"), "/a/b/c%3Ad/");
    assert_eq!(canonical_uri("/caf%c3%a9"), "/caf%C3%A9/");
    let headers = pairs(&[("Content-Type", "application/json")]);
    let out = sign(AK, SK, DATE, &get_input("/caf%c3%a9/x%3ay", &[], &headers));
    assert!(out
        .canonical_request
        .starts_with("GET\n/caf%C3%A9/x%3Ay/\n\n"));
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    assert_eq!(
        out.signature,
        "90cf66a3e424d2c56306a6c388206f459574886402fe693274bac5180e7ec458"
    );
}

#[test]
fn invalid_escape_is_kept_and_percent_encoded() {
    assert_eq!(canonical_uri("/a%ZZb"), "/a%25ZZb/");
    assert_eq!(canonical_uri("/a%2"), "/a%252/");
    assert_eq!(canonical_uri("/100%"), "/100%25/");
    assert_eq!(canonical_uri("/%%41"), "/%25A/");
    let headers = pairs(&[("Content-Type", "application/json")]);
    let out = sign(AK, SK, DATE, &get_input("/a%ZZb", &[], &headers));
    assert!(out.canonical_request.starts_with("GET\n/a%25ZZb/\n\n"));
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer (clock pinned).
    assert_eq!(
        out.signature,
        "2e6381b7686207f2e16b5cea43bd297b578c926911d33381c999a9b0068a2865"
    );
}

#[test]
fn existing_date_and_host_headers_are_used_any_case() {
    let headers = pairs(&[
        ("Content-Type", "application/json"),
        ("x-sdk-date", " 20250301T120000Z "),
        ("HOST", "example.com:8443"),
    ]);
    let out = sign(AK, SK, DATE, &get_input("/x", &[], &headers));
    assert_eq!(
        out.string_to_sign.lines().nth(1),
        Some("20250301T120000Z"),
        "the header's date wins over the argument"
    );
    assert!(out
        .canonical_request
        .contains("\nhost:example.com:8443\nx-sdk-date:20250301T120000Z\n\n"));
    assert_eq!(
        out.headers,
        vec![
            (s("Content-Type"), s("application/json")),
            (s("x-sdk-date"), s("20250301T120000Z")),
            (s("HOST"), s("example.com:8443")),
            (s("Authorization"), out.authorization.clone()),
        ]
    );
    // Cross-checked with huaweicloudsdkcore 3.1.219 Signer, given the date header without the
    // surrounding spaces (its strptime rejects them; this signer trims first).
    assert_eq!(
        out.signature,
        "9ce895e377bf6a365ae7b178b495329c75d52ab28edf933e63297fa2f2f1ae3f"
    );
}

#[test]
fn header_names_differing_in_case_are_merged() {
    let headers = pairs(&[
        ("Content-Type", "application/json"),
        ("X-Custom", "1"),
        ("x-custom", "2"),
    ]);
    let out = sign(AK, SK, DATE, &get_input("/x", &[], &headers));
    assert_eq!(out.signed_headers, "content-type;host;x-custom;x-sdk-date");
    assert!(out.canonical_request.contains("\nx-custom:2\n"));
    assert_eq!(out.headers[1], (s("X-Custom"), s("2")));
}

#[test]
fn existing_authorization_passes_through_unsigned() {
    let headers = pairs(&[
        ("Content-Type", "application/json"),
        ("authorization", "Bearer t"),
    ]);
    let query = pairs(&[("b", "2"), ("a", "1")]);
    let out = sign(AK, SK, DATE, &get_input("/x", &query, &headers));
    assert_eq!(out.signature, "");
    assert_eq!(out.authorization, "Bearer t");
    assert_eq!(out.canonical_query, "a=1&b=2");
    assert_eq!(out.headers, headers);
}

#[test]
fn trimming_matches_python_strip() {
    assert_eq!(trim_value("\u{1f}\u{a0} a b \t\u{3000}"), "a b");
}
