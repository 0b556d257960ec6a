//! `store copy`: a SQLite store holding every kind of row, copied into an empty PostgreSQL
//! schema, reads back the same (`jobs list`, `jobs show`, `storage report`, `audit export`),
//! passes `audit verify`, refuses a second copy, and carries on there: a sync that was being
//! followed is polled to its end (never started again), new jobs and audit records continue
//! the copied ids and chains. Always SQLite into PostgreSQL, whatever SYNCD_TEST_BACKEND says.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use codearts_syncd::config::Config;
use codearts_syncd::ingress::Submitted;
use codearts_syncd::sim::{RepoBehaviour, SimConfig};
use codearts_syncd::store::Store;
use serde_json::{json, Value};
use support::broker::{acfg, amqp_toml, cleanup, job_msg, publish_raw, unique_tag};
use support::{run_binary, spawn_app_sqlite_with, text, PgSchema, TestApp};

const WAIT: Duration = Duration::from_secs(60);
/// The password given for the target (PostgreSQL's trust authentication ignores it): it must
/// never be printed.
const TARGET_PASSWORD: &str = "copy-target-Pa55-word";

/// The binary with `config`, off the runtime's threads (an in-process daemon may be running).
async fn cli(config: &Path, args: &[&str]) -> Output {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_binary(&config, &args, &[], Duration::from_secs(120))
    })
    .await
    .unwrap()
}

/// Stdout of a command that must succeed.
async fn ok(config: &Path, args: &[&str]) -> String {
    let out = cli(config, args).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
    stdout
}

/// What an operator reads from a store: every job with its attempts, requests and purge items,
/// the SWR share snapshot, the storage report and the audit archive.
async fn views(config: &Path) -> Vec<(String, String)> {
    let list = ok(config, &["jobs", "list", "--json", "--limit", "0"]).await;
    let jobs: Vec<Value> = serde_json::from_str(&list).unwrap();
    let mut out = vec![("jobs list".to_string(), list)];
    for j in &jobs {
        let id = j["id"].to_string();
        out.push((
            format!("jobs show {id}"),
            ok(config, &["jobs", "show", &id, "--json"]).await,
        ));
    }
    out.push((
        "swr shares".into(),
        ok(config, &["swr", "shares", "--json"]).await,
    ));
    out.push((
        "storage report".into(),
        ok(config, &["storage", "report", "--json", "--days", "30"]).await,
    ));
    // Into a file: the binary's piped output is read only once it exits.
    let export = config.with_extension("export.jsonl");
    ok(
        config,
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--output",
            export.to_str().unwrap(),
        ],
    )
    .await;
    out.push((
        "audit export".into(),
        std::fs::read_to_string(&export).unwrap(),
    ));
    out
}

/// Removes the test's AMQP topology when dropped, so a failing test leaves no queues behind
/// either (a daemon started after a cleanup declares them again).
struct Topology(codearts_syncd::config::AmqpConfig);

impl Drop for Topology {
    fn drop(&mut self) {
        let cfg = self.0.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(cleanup(&cfg))
        })
        .join();
    }
}

/// The test's config with `[store] url` pointing at `pg`.
fn target_config(app: &TestApp, pg: &PgSchema) -> PathBuf {
    let source = std::fs::read_to_string(app.config_path()).unwrap();
    let text = source.replacen("[store]\n", &format!("[store]\nurl = {:?}\n", pg.url()), 1);
    assert_ne!(text, source);
    let path = app.dir.path().join("target.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_with_every_kind_of_row_copies_into_postgres_and_carries_on() {
    let tag = unique_tag();
    let extra = format!(
        "{}\n[[schedules]]\nname = \"snap\"\ncron = \"* * * * * *\"\nkind = \"storage_snapshot\"\nparams = {{ trend_days = 3 }}\n",
        amqp_toml(&tag)
    );
    let sim = SimConfig {
        sync_duration: Duration::from_millis(200),
        audit_records: 150,
        ..SimConfig::default()
    };
    let mut app = spawn_app_sqlite_with(sim, &extra).await;
    // A sync followed for longer than it runs (20 s, below), whatever the machine's load.
    let config = std::fs::read_to_string(app.config_path()).unwrap();
    let longer = config.replace("follow_timeout = \"20s\"", "follow_timeout = \"120s\"");
    assert_ne!(config, longer);
    std::fs::write(app.config_path(), longer).unwrap();
    app.cfg = Arc::new(Config::load(&app.config_path()).unwrap());
    let amqp = acfg(&app);
    let _topology = Topology(amqp.clone());
    let source = app.config_path();

    // Before the daemon runs: a job cancelled while queued, two identical requests that
    // coalesce, a keyed request and its duplicate, a rejected submission.
    let cancelled = app
        .submit("remote_mirror", json!({"repository_id": 3}))
        .await;
    ok(&source, &["jobs", "cancel", &cancelled.to_string()]).await;
    let coalesced = app
        .submit("remote_mirror", json!({"repository_id": 4}))
        .await;
    match app
        .submit_raw("remote_mirror", json!({"repository_id": 4}), None)
        .await
    {
        Submitted::Coalesced(id) => assert_eq!(id, coalesced),
        other => panic!("expected the second request to join the first: {other:?}"),
    }
    for _ in 0..2 {
        app.submit_raw(
            "storage_snapshot",
            json!({"trend_days": 5}),
            Some("nightly-snapshot"),
        )
        .await;
    }
    assert!(matches!(
        app.submit_raw("purge_recycle_bin", json!({"colour": "red"}), None)
            .await,
        Submitted::Rejected { .. }
    ));
    // Followed syncs: one that ends while followed, one still following at the copy.
    app.sim.set_repo(
        9,
        RepoBehaviour {
            sync_duration: Some(Duration::from_secs(20)),
            ..RepoBehaviour::default()
        },
    );
    let followed = app
        .submit("remote_mirror", json!({"repository_id": 1}))
        .await;
    let still_following = app
        .submit("remote_mirror", json!({"repository_id": 9}))
        .await;
    // A job that fails (no such repository), to be replayed.
    let failed = app
        .submit("remote_mirror", json!({"repository_id": 100_000}))
        .await;
    let purge = app.submit("purge_recycle_bin", json!({})).await;
    let snapshot = app
        .submit("storage_snapshot", json!({"trend_days": 7}))
        .await;
    let audit = app.submit("audit_mirror", json!({"page_size": 20})).await;
    let shares = app.submit("swr_share_audit", json!({"page_size": 2})).await;
    // From AMQP: a valid keyed message and two that are rejected.
    publish_raw(
        &amqp,
        &[
            (job_msg(12, Some("amqp-key-12")), Some("m-1".into())),
            (b"{not json".to_vec(), Some("m-2".into())),
            (
                json!({"kind": "audit_mirror", "params": {"repos": 7}})
                    .to_string()
                    .into_bytes(),
                Some("m-3".into()),
            ),
        ],
    )
    .await;

    app.start();
    for id in [followed, failed, purge, snapshot, audit, shares, coalesced] {
        app.wait_final(id, WAIT).await;
    }
    assert_eq!(app.job(failed).await.status, "failed");
    let replay: Value =
        serde_json::from_str(&ok(&source, &["jobs", "retry", &failed.to_string(), "--json"]).await)
            .unwrap();
    let replay = replay["new_id"].as_i64().expect("the replay's id");
    app.wait_final(replay, WAIT).await;
    app.wait_for(still_following, WAIT, |j| j.status == "following")
        .await;
    // A few cron ticks and the AMQP messages.
    support::broker::wait_until(WAIT, "ticks and messages", || async {
        let jobs = support::broker::all_jobs(&app.store).await;
        let ticks = jobs.iter().filter(|j| j.slot.is_some()).count();
        let amqp = jobs.iter().filter(|j| j.source == "amqp").count();
        ticks >= 2 && amqp == 3
    })
    .await;
    app.stop().await;

    let jobs = support::broker::all_jobs(&app.store).await;
    let status_of = |id: i64| jobs.iter().find(|j| j.id == id).unwrap().status.clone();
    assert_eq!(status_of(cancelled), "cancelled");
    assert_eq!(status_of(still_following), "following", "{jobs:?}");
    assert_eq!(status_of(followed), "succeeded");
    assert_eq!(status_of(purge), "succeeded");
    assert_eq!(status_of(audit), "succeeded");
    assert_eq!(status_of(shares), "succeeded");
    assert!(jobs.iter().any(|j| j.retry_of == Some(failed)));
    assert_eq!(
        jobs.iter()
            .filter(|j| j.status == "rejected" && j.source == "amqp")
            .count(),
        2
    );
    let before = views(&source).await;
    let verified = ok(&source, &["audit", "verify"]).await;
    let max_id = jobs.iter().map(|j| j.id).max().unwrap();

    // Not a PostgreSQL URL: refused before anything is opened.
    let out = cli(
        &source,
        &["store", "copy", "--to", "sqlite:///tmp/elsewhere.db"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("not a PostgreSQL URL"),
        "{:?}",
        text(&out)
    );

    // The copy.
    let pg = PgSchema::create();
    let password_file = app.dir.path().join("target-password");
    std::fs::write(&password_file, format!("{TARGET_PASSWORD}\n")).unwrap();
    let copy_args = [
        "store",
        "copy",
        "--to",
        &pg.url(),
        "--password-file",
        password_file.to_str().unwrap(),
    ];
    let out = cli(&source, &copy_args).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("row counts on the target equal the source's in all 14 tables"),
        "{stdout}"
    );
    assert!(
        stdout.contains("audit archive on the target intact"),
        "{stdout}"
    );
    assert!(!stdout.contains(TARGET_PASSWORD) && !stderr.contains(TARGET_PASSWORD));

    // The target reads back exactly as the source did.
    let target = target_config(&app, &pg);
    let after = views(&target).await;
    assert_eq!(before.len(), after.len());
    for ((what, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "{what} differs after the copy");
    }
    let verified_target = ok(&target, &["audit", "verify"]).await;
    assert_eq!(verified, verified_target);
    assert!(verified.contains("audit archive intact"), "{verified}");

    // A second copy into the same target is refused, naming it and why, with the password
    // (here in the URL) hidden.
    let with_password = pg
        .url()
        .replace("postgres@", &format!("postgres:{TARGET_PASSWORD}@"));
    let out = cli(&source, &["store", "copy", "--to", &with_password]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("already holds") && stderr.contains(" job(s)"),
        "{stderr}"
    );
    assert!(stderr.contains("postgres://postgres:***@"), "{stderr}");
    assert!(!stdout.contains(TARGET_PASSWORD) && !stderr.contains(TARGET_PASSWORD));
    assert_eq!(
        views(&target).await,
        after,
        "the refused copy changed nothing"
    );

    // The daemon on the target: the followed sync is polled to its end, not started again;
    // new jobs and audit records continue after the copied ids and chains.
    let target_cfg = Config::load(&target).unwrap();
    app.store.close().await;
    app.store = Store::open(&target_cfg.store).await.unwrap();
    app.cfg = Arc::new(target_cfg);
    let new_job = app
        .submit("remote_mirror", json!({"repository_id": 2}))
        .await;
    assert!(new_job > max_id, "new job {new_job} after copied {max_id}");
    let repo = app.sim.artifact_repo_ids()[1].clone();
    app.sim.append_audit("file", &repo, 30);
    let more_audit = app
        .submit("audit_mirror", json!({"repos": [repo], "page_size": 20}))
        .await;
    app.start();
    let done = app.wait_final(still_following, WAIT).await;
    assert_eq!(done.status, "succeeded", "{done:?}");
    assert_eq!(app.sim.mirror_starts(9), 1, "the sync was started once");
    assert_eq!(app.wait_final(new_job, WAIT).await.status, "succeeded");
    let job = app.wait_final(more_audit, WAIT).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(job.result.unwrap()["records_archived"], 30);
    app.stop().await;
    let verified = ok(&target, &["audit", "verify"]).await;
    assert!(verified.contains("audit archive intact"), "{verified}");
    app.store.close().await;
}
