//! What production sends that it should not: every case goes the way a user's input goes (an
//! AMQP body through `parse_message` and `submit_many`, a CLI submission through `submit`) into
//! a real store, and the test reads back the row, the store's files and the logs.

mod support;

use std::time::{Duration, Instant};

use codearts_syncd::config::AmqpConfig;
use codearts_syncd::ingress::{self, amqp, Submission, Submitted};
use codearts_syncd::store::JobRow;
use codearts_syncd::Source;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{broker, shared_log_capture, spawn_app, TestApp};

/// What a case expects of its stored row, beyond the reason.
enum Stored {
    /// Kept whole, redacted: exactly this JSON.
    Whole(Value),
    /// Kept as `{"truncated_body", "size", "sha256"}` of the body as received (or of `params`
    /// as compact JSON for a submission read as JSON).
    Cut { of: Vec<u8> },
    /// Not checked beyond the common bounds.
    Any,
}

struct Case {
    name: &'static str,
    body: Vec<u8>,
    message_id: Option<String>,
    /// `None`: accepted.
    reason: Option<&'static str>,
    stored: Stored,
    /// The idempotency key the row keeps.
    key: Option<&'static str>,
}

/// Values that must appear nowhere: not in the store's files, the logs, or any reason.
const SECRETS: [&str; 13] = [
    "pw-notutf8-0001",
    "pw-notjson-0002",
    "sec-1mb-0003",
    "tok-dup-0006",
    "tok-dup-0006b",
    "pw-unknown-0010",
    "tok-bad-0011",
    "sec-bad-0011",
    "98765432101",
    "Bearer abc-env-0014",
    "pw-big-0015",
    "pw-cli-0016",
    "url-pw-0017",
];

fn body(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn cases() -> Vec<Case> {
    let big_params =
        json!({"repository_id": 1, "pad": "x".repeat(20_000), "password": "pw-big-0015"});
    let big_text = big_params.to_string().into_bytes();
    let mut one_mb =
        br#"{"api_key": "sec-1mb-0003", "kind": "remote_mirror", "params": {"pad": ""#.to_vec();
    one_mb.resize(1024 * 1024 - 3, b'y');
    one_mb.extend_from_slice(br#""}}"#);
    vec![
        Case {
            name: "not UTF-8",
            body: [&[0xff, 0xfe][..], br#"{"password": "pw-notutf8-0001"}"#].concat(),
            message_id: Some("m-0".into()),
            reason: Some("message body is not UTF-8"),
            stored: Stored::Cut {
                of: [&[0xff, 0xfe][..], br#"{"password": "pw-notutf8-0001"}"#].concat(),
            },
            key: Some("m-0"),
        },
        Case {
            name: "not JSON",
            body: br#"{"kind": "remote_mirror", "password": "pw-notjson-0002", oops"#.to_vec(),
            message_id: None,
            reason: Some("message is not a valid job: not JSON: key must be a string at line 1"),
            stored: Stored::Cut {
                of: br#"{"kind": "remote_mirror", "password": "pw-notjson-0002", oops"#.to_vec(),
            },
            key: None,
        },
        Case {
            name: "a 1 MiB body",
            body: one_mb.clone(),
            message_id: None,
            reason: Some("message of 1048576 bytes exceeds amqp.max_message_bytes (65536)"),
            stored: Stored::Cut { of: one_mb },
            key: None,
        },
        Case {
            name: "a 60 KB kind",
            body: body(json!({"kind": "k".repeat(60_000), "params": {}})),
            message_id: None,
            reason: Some("job kind is 60000 bytes long; a kind is at most 64 bytes"),
            stored: Stored::Whole(json!({})),
            key: None,
        },
        Case {
            name: "a duplicate envelope key",
            body: br#"{"kind":"remote_mirror","kind":"purge_recycle_bin","params":{"repository_id":1}}"#
                .to_vec(),
            message_id: None,
            reason: Some(r#"message is not a valid job: duplicate key "kind" in the message at line 1"#),
            stored: Stored::Any,
            key: None,
        },
        Case {
            name: "a duplicate params key",
            body: br#"{"kind":"purge_recycle_bin","params":{"dry_run":false,"dry_run":true,"opts":{"token":"tok-dup-0006","token":"tok-dup-0006b"}}}"#
                .to_vec(),
            message_id: None,
            reason: Some(r#"message is not a valid job: duplicate key "dry_run" in params at line 1"#),
            stored: Stored::Whole(json!({"dry_run": true, "opts": {"token": "[redacted]"}})),
            key: None,
        },
        Case {
            name: "an empty key",
            body: body(json!({"kind": "remote_mirror", "params": {"repository_id": 1}, "key": ""})),
            message_id: Some("m-7".into()),
            reason: Some("idempotency key is empty; a key is 1 to 255 printable ASCII characters"),
            stored: Stored::Whole(json!({"repository_id": 1})),
            key: None,
        },
        Case {
            name: "a 300-byte key",
            body: body(json!({"kind": "remote_mirror", "params": {"repository_id": 1}, "key": "k".repeat(300)})),
            message_id: None,
            reason: Some("idempotency key is 300 bytes long"),
            stored: Stored::Whole(json!({"repository_id": 1})),
            key: None,
        },
        Case {
            name: "a key with a control character",
            body: body(json!({"kind": "remote_mirror", "params": {"repository_id": 1}, "key": "ab\u{7}cd"})),
            message_id: None,
            reason: Some(r"idempotency key has a control character (\u{7}) at byte 2"),
            stored: Stored::Whole(json!({"repository_id": 1})),
            key: None,
        },
        Case {
            name: "a message_id with a space",
            body: body(json!({"kind": "remote_mirror", "params": {"repository_id": 1}})),
            message_id: Some("order 42".into()),
            reason: Some("idempotency key has a space at byte 5"),
            stored: Stored::Whole(json!({"repository_id": 1})),
            key: None,
        },
        Case {
            name: "an unknown kind with a password",
            body: body(json!({"kind": "mirror_everything", "params": {"password": "pw-unknown-0010"}})),
            message_id: Some("m-10".into()),
            reason: Some(r#"unknown job kind "mirror_everything""#),
            stored: Stored::Whole(json!({"password": "[redacted]"})),
            key: Some("m-10"),
        },
        Case {
            name: "bad params with a token and a nested secret",
            body: body(json!({"kind": "remote_mirror", "params": {
                "repository_id": 1, "token": "tok-bad-0011", "nested": {"secret": "sec-bad-0011", "ok": 2}
            }})),
            message_id: None,
            reason: Some("unknown parameter `nested`"),
            stored: Stored::Whole(json!({
                "repository_id": 1, "token": "[redacted]", "nested": {"secret": "[redacted]", "ok": 2}
            })),
            key: None,
        },
        Case {
            name: "a secret the parser quotes in its reason",
            body: body(json!({"kind": "remote_mirror", "params": {"repository_id": 1, "credential": 98765432101u64}})),
            message_id: None,
            reason: Some("parameter `credential`: invalid type: integer `[redacted]`, expected a string"),
            stored: Stored::Whole(json!({"repository_id": 1, "credential": "[redacted]"})),
            key: None,
        },
        Case {
            name: "an invalid include_pattern glob",
            body: body(json!({"kind": "purge_recycle_bin", "params": {"include_pattern": "[abc"}})),
            message_id: None,
            reason: Some(r#"parameter `include_pattern`: invalid glob "[abc": unclosed character class; missing ']'"#),
            stored: Stored::Whole(json!({"include_pattern": "[abc"})),
            key: None,
        },
        Case {
            name: "an older_than beyond ten years",
            body: body(json!({"kind": "purge_recycle_bin", "params": {"older_than": "99999999d"}})),
            message_id: None,
            reason: Some("parameter `older_than`: 99999999d is above the maximum of 3650d"),
            stored: Stored::Whole(json!({"older_than": "99999999d"})),
            key: None,
        },
        Case {
            name: "a follow_timeout beyond seven days",
            body: body(json!({"kind": "remote_mirror", "params": {"repository_id": 1, "follow_timeout": "99999999d"}})),
            message_id: None,
            reason: Some("parameter `follow_timeout`: 99999999d is above the maximum of 7d"),
            stored: Stored::Whole(json!({"repository_id": 1, "follow_timeout": "99999999d"})),
            key: None,
        },
        Case {
            name: "a wrong envelope with a secret",
            body: body(json!({"kind": "remote_mirror", "params": {}, "authorization": "Bearer abc-env-0014"})),
            message_id: None,
            reason: Some("unknown field `authorization`"),
            stored: Stored::Whole(json!({"kind": "remote_mirror", "params": {}, "authorization": "[redacted]"})),
            key: None,
        },
        Case {
            name: "large bad params",
            body: body(json!({"kind": "remote_mirror", "params": big_params})),
            message_id: None,
            reason: Some("unknown parameter `pad`"),
            stored: Stored::Cut { of: big_text },
            key: None,
        },
        Case {
            name: "a valid message",
            body: body(json!({"kind": "remote_mirror", "params": {"repository_id": 1}, "key": "order-42"})),
            message_id: Some("m-ok".into()),
            reason: None,
            stored: Stored::Whole(json!({"repository_id": 1})),
            key: Some("order-42"),
        },
    ]
}

/// The store's raw bounds, read behind the store's back: (rows whose params are not valid
/// JSON, longest params, kind, error_msg and key in bytes).
async fn raw_bounds(app: &TestApp) -> (i64, i64, i64, i64, i64) {
    let pool = app.raw_db().await;
    let rows: Vec<(String, String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT params, kind, error_msg, idempotency_key FROM jobs")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    let longest = |f: &dyn Fn(&(String, String, Option<String>, Option<String>)) -> usize| {
        rows.iter().map(f).max().unwrap_or(0) as i64
    };
    let invalid = rows
        .iter()
        .filter(|r| serde_json::from_str::<serde_json::Value>(&r.0).is_err())
        .count() as i64;
    (
        invalid,
        longest(&|r| r.0.len()),
        longest(&|r| r.1.len()),
        longest(&|r| r.2.as_ref().map_or(0, String::len)),
        longest(&|r| r.3.as_ref().map_or(0, String::len)),
    )
}

/// Everything the store holds, as bytes: the SQLite file and its WAL, or on PostgreSQL every
/// row of the test's schema as text, and the size the tables take.
async fn store_files(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    if app.pg.is_some() {
        let pool = app.raw_db().await;
        let mut out = Vec::new();
        for table in ["jobs", "requests", "attempts"] {
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT CAST(t.* AS TEXT) FROM {table} t"
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            out.push((format!("table {table}"), rows.join("\n").into_bytes()));
        }
        pool.close().await;
        return out;
    }
    let db = app.cfg.store.path.clone();
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    assert!(
        out.len() >= 2,
        "the store and its WAL are there: {out:?}",
        out = out.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn check_common(name: &str, job: &JobRow) {
    assert_eq!(job.status, "rejected", "{name}");
    assert_eq!(job.error_code.as_deref(), Some("REJECTED"), "{name}");
    assert!(job.error_msg.as_deref().unwrap().len() <= 1024, "{name}");
    assert!(
        job.kind.len() <= 64 + 3,
        "{name}: kind of {} bytes",
        job.kind.len()
    );
    assert!(
        job.params.to_string().len() <= 4096 + 200,
        "{name}: params of {} bytes",
        job.params.to_string().len()
    );
}

#[tokio::test]
async fn bad_input_is_rejected_naming_the_rule_stored_bounded_and_redacted() {
    let logs = shared_log_capture();
    let app = spawn_app().await;
    let max = AmqpConfig::default().max_message_bytes;
    assert_eq!(max, 65536, "the cases assume the default limit");

    let cases = cases();
    let prepared: Vec<_> = cases
        .iter()
        .map(|c| amqp::parse_message(&app.cfg, max, &c.body, c.message_id.clone()))
        .collect();
    let results = ingress::submit_many(&app.store, &prepared).await.unwrap();
    let mut reasons = Vec::new();
    for (c, r) in cases.iter().zip(&results) {
        let job = app.job(r.id()).await;
        match (c.reason, r) {
            (None, Submitted::Queued(_)) => {
                assert_eq!(job.status, "queued", "{}", c.name);
            }
            (Some(want), Submitted::Rejected { reason, .. }) => {
                assert!(reason.contains(want), "{}: {reason}", c.name);
                assert_eq!(
                    job.error_msg.as_deref(),
                    Some(reason.as_str()),
                    "{}",
                    c.name
                );
                check_common(c.name, &job);
                reasons.push(reason.clone());
            }
            (want, got) => panic!("{}: expected {want:?}, got {got:?}", c.name),
        }
        assert_eq!(job.idempotency_key.as_deref(), c.key, "{}", c.name);
        assert_eq!(job.source, "amqp", "{}", c.name);
        match &c.stored {
            Stored::Whole(v) => assert_eq!(&job.params, v, "{}", c.name),
            Stored::Cut { of } => {
                let p = &job.params;
                assert_eq!(p["size"], of.len(), "{}: {p}", c.name);
                assert_eq!(p["sha256"], hex::encode(Sha256::digest(of)), "{}", c.name);
                let kept = p["truncated_body"].as_str().unwrap();
                assert!(!kept.is_empty() && kept.len() <= 4096, "{}", c.name);
                assert_eq!(p.as_object().unwrap().len(), 3, "{}: {p}", c.name);
            }
            Stored::Any => {}
        }
    }
    let kind = &app.job(results[3].id()).await.kind;
    assert_eq!(
        kind,
        &format!("{}…", "k".repeat(64)),
        "the kind is stored cut"
    );
    let kind = &app.job(results[4].id()).await.kind;
    assert_eq!(
        kind, "purge_recycle_bin",
        "a repeated key is read last-wins to keep it"
    );

    // The CLI's way in: the same rules, the same redaction.
    for (kind, params, key, want) in [
        (
            "remote_mirror",
            json!({"repository_id": 1}),
            Some("a b"),
            "idempotency key has a space at byte 1",
        ),
        (
            "mirror_everything",
            json!({"Password": "pw-cli-0016", "url": "https://bot:url-pw-0017@git.example.com/x.git"}),
            None,
            "unknown job kind",
        ),
        (
            &*"z".repeat(100),
            json!({}),
            None,
            "job kind is 100 bytes long",
        ),
    ] {
        let got = ingress::submit(
            &app.store,
            &app.cfg,
            Submission {
                kind: kind.to_string(),
                params,
                source: Source::Cli,
                key: key.map(str::to_string),
                schedule: None,
            },
        )
        .await
        .unwrap();
        let Submitted::Rejected { id, reason } = got else {
            panic!("{kind:.20}: not rejected: {got:?}");
        };
        assert!(reason.contains(want), "{reason}");
        let job = app.job(id).await;
        check_common(want, &job);
        assert_eq!(job.idempotency_key, None);
        reasons.push(reason);
    }
    let cli = app
        .store
        .list(&codearts_syncd::store::ListFilter {
            kind: Some("mirror_everything".into()),
            status: None,
            limit: 0,
        })
        .await
        .unwrap();
    assert!(cli.iter().any(|j| j.params
        == json!({"Password": "[redacted]", "url": "https://bot:[redacted]@git.example.com/x.git"})));

    let (invalid_json, params, kind, error_msg, key) = raw_bounds(&app).await;
    assert_eq!(invalid_json, 0, "every params column holds valid JSON");
    assert!(params <= 4096 + 200, "params column of {params} bytes");
    assert!(kind <= 67 && error_msg <= 1024 && key <= 255);

    // No secret anywhere: the database, its WAL, the reasons, the logs.
    let files = store_files(&app).await;
    let reasons = reasons.join("\n");
    for s in SECRETS {
        for (path, bytes) in &files {
            assert!(!contains(bytes, s), "{s:?} is in {path}");
        }
        assert!(!reasons.contains(s), "{s:?} is in a reason");
    }

    // A burst is one line with its reason, then one summary when the window closes.
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = String::from_utf8(logs.contents()).unwrap();
        if text.contains("more submission(s) rejected within 10s of the one logged") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no summary line in the logs:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for s in SECRETS {
        assert!(!text.contains(s), "{s:?} is in the logs");
    }
    let lines: Vec<&str> = text.lines().collect();
    let full = lines
        .iter()
        .filter(|l| l.contains("\"submission rejected\""))
        .count();
    assert!(
        (1..5).contains(&full),
        "{full} reject lines for {} rejects",
        cases.len() + 2
    );
    for l in lines
        .iter()
        .filter(|l| l.contains("submission rejected") || l.contains("submission(s) rejected"))
    {
        assert!(l.len() < 1024, "a log line of {} bytes: {l:.200}", l.len());
    }
}

#[tokio::test]
async fn two_thousand_rejected_60kb_messages_keep_the_store_small() {
    let _logs = shared_log_capture();
    let app = spawn_app().await;
    let max = AmqpConfig::default().max_message_bytes;
    let started = Instant::now();
    for batch in 0..8 {
        let prepared: Vec<_> = (0..250)
            .map(|i| {
                let n = batch * 250 + i;
                let msg = json!({"kind": format!("{n}-{}", "k".repeat(60_000)), "params": {}});
                amqp::parse_message(
                    &app.cfg,
                    max,
                    msg.to_string().as_bytes(),
                    Some(format!("id-{n}")),
                )
            })
            .collect();
        let results = ingress::submit_many(&app.store, &prepared).await.unwrap();
        assert!(results
            .iter()
            .all(|r| matches!(r, Submitted::Rejected { reason, .. } if reason.contains("a kind is at most 64 bytes"))));
    }
    let took = started.elapsed();
    let size: u64 = store_files(&app)
        .await
        .iter()
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert!(
        size < 20 * 1024 * 1024,
        "2,000 rejected 60 KB messages take {size} bytes of store"
    );
    let (invalid_json, params, kind, error_msg, _) = raw_bounds(&app).await;
    assert_eq!(invalid_json, 0);
    assert!(params <= 4096 && kind <= 67 && error_msg <= 1024);
    eprintln!("2,000 rejects recorded in {took:?}; store files {size} bytes");
}

/// The daemon's own consumer on the real broker (127.0.0.1:5672): this test's queues are named
/// after a fresh tag and deleted at the end.
#[tokio::test]
async fn malformed_messages_through_the_broker_are_dead_lettered_and_stored_redacted() {
    let logs = shared_log_capture();
    let (mut app, _tag) = broker::amqp_app(
        codearts_syncd::sim::SimConfig {
            sync_duration: Duration::from_millis(50),
            ..Default::default()
        },
        "",
    )
    .await;
    let acfg = broker::acfg(&app);
    let secrets = ["pw-broker-0020", "tok-broker-0021"];
    let messages: [(&[u8], &str); 3] = [
        (br#"{"kind": "remote_mirror", "password": "pw-broker-0020"  oops"#, "b-1"),
        (
            br#"{"kind":"remote_mirror","params":{"repository_id":1,"opts":{"auth_token":"tok-broker-0021"}}}"#,
            "b-2",
        ),
        (br#"{"kind":"remote_mirror","params":{"repository_id":1}}"#, "b-3"),
    ];
    let raw: Vec<(Vec<u8>, Option<String>)> = messages
        .iter()
        .map(|(body, id)| (body.to_vec(), Some(id.to_string())))
        .collect();
    broker::publish_raw(&acfg, &raw).await;

    app.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    let jobs = loop {
        let jobs = app
            .store
            .list(&codearts_syncd::store::ListFilter {
                kind: None,
                status: None,
                limit: 0,
            })
            .await
            .unwrap();
        if jobs.len() == 3
            && jobs
                .iter()
                .all(|j| j.status().is_some_and(|s| s.is_final()))
        {
            break jobs;
        }
        assert!(Instant::now() < deadline, "not all recorded: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    app.stop().await;

    let by_key = |k: &str| {
        jobs.iter()
            .find(|j| j.idempotency_key.as_deref() == Some(k))
            .unwrap()
    };
    let not_json = by_key("b-1");
    assert!(not_json.error_msg.as_deref().unwrap().contains("not JSON"));
    assert_eq!(not_json.params["size"], messages[0].0.len());
    let bad = by_key("b-2");
    assert_eq!(bad.status, "rejected");
    assert_eq!(
        bad.params,
        json!({"repository_id": 1, "opts": {"auth_token": "[redacted]"}})
    );
    assert_eq!(by_key("b-3").status, "succeeded");

    assert_eq!(
        broker::queue_depth(&acfg.dead_letter_queue).await,
        2,
        "the two malformed ones are dead-lettered"
    );

    let text = String::from_utf8(logs.contents()).unwrap();
    let files = store_files(&app).await;
    for s in secrets {
        assert!(!text.contains(s), "{s:?} is in the logs");
        for (path, bytes) in &files {
            assert!(!contains(bytes, s), "{s:?} is in {path}");
        }
    }

    broker::cleanup(&acfg).await;
}
