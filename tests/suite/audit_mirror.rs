//! `audit_mirror` end to end: a complete, duplicate-free archive while records arrive mid-walk
//! (one stream, and several walked in parallel with pages fetched ahead), incremental runs,
//! resuming after a crash, tamper evidence (`audit verify`), `audit export`,
//! and transient failures.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use codearts_syncd::sim::{Fault, Route, SimConfig};
use serde_json::{json, Value};
use support::{spawn_app_with, text, TestApp};

const WAIT: Duration = Duration::from_secs(60);

async fn app() -> TestApp {
    spawn_app_with(SimConfig::default(), "").await
}

/// The big seeded log (20,000 records) and a small one.
fn repos(app: &TestApp) -> (String, String) {
    let ids = app.sim.artifact_repo_ids();
    (ids[0].clone(), ids[1].clone())
}

async fn assert_archive_equals_log(app: &TestApp, repo: &str) -> usize {
    let archived = app.store.audit_record_ids("file", repo).await.unwrap();
    let log = app.sim.audit_ids("file", repo);
    let unique: HashSet<&String> = archived.iter().collect();
    assert_eq!(unique.len(), archived.len(), "duplicates in the archive");
    let want: HashSet<&String> = log.iter().collect();
    let missing: Vec<&&String> = want.difference(&unique).take(5).collect();
    let extra: Vec<&&String> = unique.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "archive differs from the log: missing {missing:?}, extra {extra:?}"
    );
    archived.len()
}

#[tokio::test]
async fn audit_walk_stays_complete_when_pages_shift() {
    let mut app = app().await;
    let (big, _) = repos(&app);
    assert_eq!(app.sim.audit_ids("file", &big).len(), 20_000);
    // 500 records arrive while the walk is under way, in two bursts.
    app.sim.append_audit_after("file", &big, 40, 300);
    app.sim.append_audit_after("file", &big, 150, 200);
    let id = app
        .submit("audit_mirror", json!({"repos": [big], "page_size": 100}))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let r = job.result.unwrap();
    assert_eq!(r["records_archived"], 20_500);
    assert!(
        r["passes"].as_u64().unwrap() >= 2,
        "a catch-up pass ran: {r}"
    );
    assert_eq!(assert_archive_equals_log(&app, &big).await, 20_500);
}

#[tokio::test]
async fn a_second_incremental_run_fetches_only_the_new_pages() {
    let mut app = app().await;
    let (_, small) = repos(&app);
    let first = app
        .submit("audit_mirror", json!({"repos": [small], "page_size": 10}))
        .await;
    app.start();
    let job = app.wait_final(first, WAIT).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let before = app.sim.audit_ids("file", &small).len();
    assert_eq!(job.result.unwrap()["records_archived"], before);

    app.sim.append_audit("file", &small, 25);
    let calls_before = app.sim.count(Route::Audit);
    let second = app
        .submit("audit_mirror", json!({"repos": [small], "page_size": 10}))
        .await;
    let job = app.wait_final(second, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let r = job.result.unwrap();
    assert_eq!(r["records_archived"], 25);
    // 25 new records at 10 a page: pages 1 and 2 are new, page 3 reaches the archive.
    assert_eq!(r["pages_fetched"], 3);
    assert_eq!(app.sim.count(Route::Audit) - calls_before, 3);
    assert_eq!(assert_archive_equals_log(&app, &small).await, before + 25);

    // `full` walks everything again and archives nothing twice.
    let third = app
        .submit(
            "audit_mirror",
            json!({"repos": [small], "page_size": 10, "full": true}),
        )
        .await;
    app.start();
    let job = app.wait_final(third, WAIT).await;
    app.stop().await;
    let r = job.result.unwrap();
    assert_eq!(r["records_archived"], 0);
    assert_eq!(
        r["pages_fetched"].as_u64().unwrap() as usize,
        (before + 25).div_ceil(10)
    );
}

#[tokio::test]
async fn every_active_repository_is_mirrored_by_default() {
    let mut app = spawn_app_with(
        SimConfig {
            audit_records: 120,
            ..SimConfig::default()
        },
        "",
    )
    .await;
    let id = app.submit("audit_mirror", json!({})).await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let ids = app.sim.artifact_repo_ids();
    assert_eq!(job.result.unwrap()["streams"], ids.len());
    for repo in &ids {
        assert_archive_equals_log(&app, repo).await;
    }
}

/// A crash: SIGKILL of the daemon's process, so every task and connection it had ends with it.
/// (Aborting an in-process daemon's task leaves the tasks it spawned running.)
fn crash(daemon: &mut support::RunningBinary) {
    daemon.child.kill().expect("SIGKILL");
    daemon.child.wait().expect("the killed daemon is reaped");
}

#[tokio::test]
async fn a_walk_resumes_after_a_crash_without_gaps_or_duplicates() {
    let app = app().await;
    let (big, _) = repos(&app);
    // Slow pages so the crash lands mid-walk.
    app.sim.inject(Fault {
        route: Route::Audit,
        delay_ms: Some(20),
        ..Fault::default()
    });
    let id = app
        .submit("audit_mirror", json!({"repos": [big], "page_size": 100}))
        .await;
    let mut daemon = app.spawn_run("before-crash.log");
    app.wait_for(id, WAIT, |j| {
        j.checkpoint
            .as_ref()
            .and_then(|c| c["pages"].as_u64())
            .is_some_and(|p| p >= 30)
    })
    .await;
    crash(&mut daemon);
    app.sim.clear_faults();
    let calls_at_crash = app.sim.count(Route::Audit);
    app.sim.append_audit("file", &big, 77);
    let mut daemon = app.spawn_run("after-crash.log");
    let job = app.wait_final(id, WAIT).await;
    daemon.signal("TERM");
    daemon.wait_exit(WAIT).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(assert_archive_equals_log(&app, &big).await, 20_077);
    // Resumed where it was: nowhere near a second full walk (200 pages).
    let after = app.sim.count(Route::Audit) - calls_at_crash;
    assert!(after < 190, "{after} pages after the restart");
}

#[tokio::test]
async fn tampering_with_an_archived_row_makes_audit_verify_fail_and_name_it() {
    let mut app = app().await;
    let (_, small) = repos(&app);
    let id = app.submit("audit_mirror", json!({"repos": [small]})).await;
    app.start();
    app.wait_final(id, WAIT).await;
    app.stop().await;

    let out = app.cli(&["audit", "verify"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let n = app.sim.audit_ids("file", &small).len();
    assert!(stdout.contains(&format!("{n} records")), "{stdout}");

    // Change one word in the 11th archived record.
    let pool = app.raw_db().await;
    let (seq, record_id): (i64, String) =
        sqlx::query_as("SELECT seq, record_id FROM audit_archive ORDER BY seq LIMIT 1 OFFSET 10")
            .fetch_one(&pool)
            .await
            .unwrap();
    sqlx::query("UPDATE audit_archive SET record = replace(record, '\"operation\":\"', '\"operation\":\"x') WHERE seq = $1")
        .bind(seq)
        .execute(&pool)
        .await
        .unwrap();
    let out = app.cli(&["audit", "verify"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("record {record_id} (archive seq {seq})"))
            && stderr.contains("altered"),
        "{stderr}"
    );
    let out = app.cli(&["audit", "verify", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["broken"]["record_id"], record_id.as_str());

    // Removing a row breaks the link of the row after it.
    sqlx::query("UPDATE audit_archive SET record = replace(record, '\"operation\":\"x', '\"operation\":\"') WHERE seq = $1")
        .bind(seq)
        .execute(&pool)
        .await
        .unwrap();
    assert!(app.cli(&["audit", "verify"]).status.success());
    sqlx::query("DELETE FROM audit_archive WHERE seq = $1")
        .bind(seq)
        .execute(&pool)
        .await
        .unwrap();
    let (next_id,): (String,) =
        sqlx::query_as("SELECT record_id FROM audit_archive WHERE seq > $1 ORDER BY seq LIMIT 1")
            .bind(seq)
            .fetch_one(&pool)
            .await
            .unwrap();
    let out = app.cli(&["audit", "verify"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("record {next_id} ")) && stderr.contains("prev_hash"),
        "{stderr}"
    );
}

#[tokio::test]
async fn audit_export_streams_jsonl_and_csv_with_filters() {
    let mut app = app().await;
    let (_, small) = repos(&app);
    let other = app.sim.artifact_repo_ids()[2].clone();
    let id = app
        .submit("audit_mirror", json!({"repos": [small, other]}))
        .await;
    app.start();
    app.wait_final(id, WAIT).await;
    app.stop().await;
    let n_small = app.sim.audit_ids("file", &small).len();
    let n_other = app.sim.audit_ids("file", &other).len();

    let out = app.cli(&["audit", "export", "--format", "jsonl"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), n_small + n_other);
    assert!(lines
        .iter()
        .all(|l| l["record"]["id"].is_string() && l["hash"].as_str().unwrap().len() == 64));
    let ids: HashSet<&str> = lines
        .iter()
        .map(|l| l["record"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), lines.len());

    let file = app.dir.path().join("small.csv");
    let out = app.cli(&[
        "audit",
        "export",
        "--format",
        "csv",
        "--repo",
        &small,
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    let csv = std::fs::read_to_string(&file).unwrap();
    let mut rows = csv.lines();
    let header = rows.next().unwrap();
    assert!(
        header.starts_with("seq,archive_module,archive_repo,fetched_at,id,module,operation,time")
    );
    assert_eq!(rows.clone().count(), n_small);
    assert!(rows.all(|r| r.contains(&small)));

    // --since keeps the newer records: the simulator spaces records 7 s apart.
    let all_times: Vec<String> = lines
        .iter()
        .map(|l| l["record"]["time"].as_str().unwrap().replace('/', "-"))
        .collect();
    let mut sorted = all_times.clone();
    sorted.sort();
    let mid = &sorted[sorted.len() / 2];
    let out = app.cli(&["audit", "export", "--format", "jsonl", "--since", mid]);
    let expected = all_times.iter().filter(|t| *t >= mid).count();
    assert_eq!(text(&out).0.lines().count(), expected);

    let out = app.cli(&[
        "audit",
        "export",
        "--format",
        "jsonl",
        "--since",
        "last week",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--since"));
}

#[tokio::test]
async fn audit_rides_out_token_expiry_429_and_resets() {
    let mut app = app().await;
    let (_, small) = repos(&app);
    app.sim.inject(Fault {
        route: Route::Audit,
        status: Some(429),
        retry_after: Some(1),
        skip: 2,
        times: 1,
        ..Fault::default()
    });
    app.sim.inject(Fault {
        route: Route::Audit,
        reset: true,
        skip: 1,
        times: 1,
        ..Fault::default()
    });
    let id = app
        .submit("audit_mirror", json!({"repos": [small], "page_size": 5}))
        .await;
    app.start();
    app.wait_for(id, WAIT, |j| j.attempts >= 1 && j.status == "queued")
        .await;
    app.sim.expire_tokens();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let attempts = app.attempts(id).await;
    assert_eq!(attempts[0].http_status, Some(429));
    assert_eq!(attempts[0].retry_delay_ms, Some(1000));
    assert_archive_equals_log(&app, &small).await;
    assert!(app.cli(&["audit", "verify"]).status.success());
}

#[tokio::test]
async fn bad_audit_parameters_are_rejected_naming_them() {
    let app = app().await;
    for (params, needle) in [
        (json!({"module": "files"}), "module"),
        (json!({"page_size": 0}), "page_size"),
        (json!({"repos": []}), "repos"),
        (json!({"parallel_streams": 0}), "parallel_streams"),
        (json!({"parallel_streams": 33}), "parallel_streams"),
        (json!({"prefetch_pages": 17}), "prefetch_pages"),
        (json!({"since": "2024-01-01"}), "unknown parameter"),
    ] {
        match app.submit_raw("audit_mirror", params.clone(), None).await {
            codearts_syncd::ingress::Submitted::Rejected { reason, .. } => {
                assert!(reason.contains(needle), "{params}: {reason}")
            }
            other => panic!("{params} was not rejected: {other:?}"),
        }
    }
}

/// Appends audit records through the simulator's control route, now or once `after_pages`
/// pages of the log have been answered.
async fn append_via_control(app: &TestApp, repo: &str, count: u64, after_pages: Option<u64>) {
    let mut body = json!({"count": count});
    if let Some(k) = after_pages {
        body["after_pages"] = json!(k);
    }
    let status = reqwest::Client::new()
        .post(format!("{}/__sim/audit/file/{repo}", app.url))
        .json(&body)
        .send()
        .await
        .expect("control route answers")
        .status();
    assert!(status.is_success(), "append to {repo}: {status}");
}

#[tokio::test]
async fn a_parallel_fetch_ahead_walk_stays_complete_while_several_streams_grow() {
    let mut app = spawn_app_with(
        SimConfig {
            artifact_repos: 5,
            audit_records_per_repo: Some(600),
            ..SimConfig::default()
        },
        "",
    )
    .await;
    let ids = app.sim.artifact_repo_ids();
    assert_eq!(ids.len(), 5);
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    // Stream a: page 1 is fetched alone, then pages 2..=5 together; page 2 is held back, so
    // pages 3, 4 and 5 are answered first, and 7 records arrive just before page 2 is answered.
    // Page 3's answer is then older than page 2's: taken as it is, it would leave those 7
    // positions unread.
    app.sim.inject(Fault {
        route: Route::Audit,
        target_contains: Some(format!("/{a}/audit?page_num=2&")),
        delay_ms: Some(500),
        times: 1,
        ..Fault::default()
    });
    append_via_control(&app, a, 7, Some(4)).await;
    // Other streams grow at several points of their walks, in bursts of up to more than a page.
    app.sim.inject(Fault {
        route: Route::Audit,
        target_contains: Some(format!("/{b}/audit?page_num=6&")),
        delay_ms: Some(200),
        times: 1,
        ..Fault::default()
    });
    for (repo, after, count) in [
        (b, 3, 20),
        (b, 5, 4),
        (b, 20, 35),
        (b, 50, 3),
        (c, 1, 100),
        (c, 40, 11),
        (d, 10, 9),
    ] {
        append_via_control(&app, repo, count, Some(after)).await;
    }
    let id = app
        .submit(
            "audit_mirror",
            json!({"page_size": 10, "parallel_streams": 3, "prefetch_pages": 4}),
        )
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let r = job.result.unwrap();
    let mut total = 0;
    for repo in &ids {
        total += assert_archive_equals_log(&app, repo).await;
    }
    assert_eq!(total, 5 * 600 + 7 + 20 + 4 + 35 + 3 + 100 + 11 + 9);
    assert_eq!(r["records_archived"], total);
    assert_eq!(r["streams"], 5);
    let v = app.store.verify_audit().await.unwrap();
    assert!(v.broken.is_none(), "{v:?}");
    assert_eq!(v.records as usize, total);
    assert!(app.cli(&["audit", "verify"]).status.success());
}

#[tokio::test]
async fn a_parallel_walk_resumes_every_stream_after_a_crash() {
    let app = spawn_app_with(
        SimConfig {
            artifact_repos: 4,
            audit_records_per_repo: Some(3000),
            ..SimConfig::default()
        },
        "",
    )
    .await;
    let ids = app.sim.artifact_repo_ids();
    // Slow pages so the crash lands mid-walk of every stream.
    app.sim.inject(Fault {
        route: Route::Audit,
        delay_ms: Some(20),
        ..Fault::default()
    });
    let id = app
        .submit(
            "audit_mirror",
            json!({"page_size": 100, "parallel_streams": 4, "prefetch_pages": 3}),
        )
        .await;
    let mut daemon = app.spawn_run("before-crash.log");
    app.wait_for(id, WAIT, |j| {
        j.checkpoint
            .as_ref()
            .and_then(|c| c["pages"].as_u64())
            .is_some_and(|p| p >= 40)
    })
    .await;
    crash(&mut daemon);
    app.sim.clear_faults();
    let calls_at_crash = app.sim.count(Route::Audit);
    app.sim.append_audit("file", &ids[0], 77);
    app.sim.append_audit("file", &ids[3], 5);
    let mut daemon = app.spawn_run("after-crash.log");
    let job = app.wait_final(id, WAIT).await;
    daemon.signal("TERM");
    daemon.wait_exit(WAIT).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let mut total = 0;
    for repo in &ids {
        total += assert_archive_equals_log(&app, repo).await;
    }
    assert_eq!(total, 4 * 3000 + 77 + 5);
    assert!(app.store.verify_audit().await.unwrap().broken.is_none());
    // Every stream resumed where it was: nowhere near a second full walk (120 pages).
    let after = app.sim.count(Route::Audit) - calls_at_crash;
    assert!(after < 110, "{after} pages after the restart");
}
