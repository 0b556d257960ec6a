//! Retention (`[retention] keep`): finished jobs older than `keep` go with their attempts,
//! requests and purge items, in batches, while jobs keep running; the audit archive and the
//! storage series stay. And `store vacuum`.

use crate::support;

use std::time::{Duration, Instant};

use codearts_syncd::now_ms;
use codearts_syncd::sim::SimConfig;
use serde_json::json;
use sqlx::AnyPool;
use support::{spawn_app_with, text, TestApp};

const WAIT: Duration = Duration::from_secs(30);
const DAY_MS: i64 = 24 * 3600 * 1000;

async fn pool(app: &TestApp) -> AnyPool {
    app.raw_db().await
}

/// `ids` as an SQL list (integers only).
fn in_list(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("({})", ids.join(", "))
}

async fn count(pool: &AnyPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Inserts `n` finished jobs with one attempt each, finished `age_ms` ago; returns their ids.
/// One transaction: the daemon's retention runs meanwhile and must never see a job without its
/// attempt (it would prune the job before the attempt is written).
async fn old_jobs(pool: &AnyPool, n: usize, age_ms: i64) -> Vec<i64> {
    let at = now_ms() - age_ms;
    let mut ids = Vec::new();
    let mut tx = pool.begin().await.unwrap();
    for i in 0..n {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (kind, params, source, status, attempts, max_attempts, \
               next_run_at, created_at, started_at, finished_at, updated_at) \
             VALUES ('remote_mirror', $1, 'cli', 'failed', 1, 4, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(json!({"repository_id": 1 + i % 90}).to_string())
        .bind(at)
        .bind(at)
        .bind(at)
        .bind(at)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO attempts (job_id, attempt, started_at, finished_at, outcome) \
             VALUES ($1, 1, $2, $3, 'failed')",
        )
        .bind(id)
        .bind(at)
        .bind(at)
        .execute(&mut *tx)
        .await
        .unwrap();
        ids.push(id);
    }
    tx.commit().await.unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_only_what_is_older_than_keep_and_never_the_archive() {
    let mut app = spawn_app_with(
        SimConfig {
            sync_duration: Duration::from_millis(100),
            audit_records: 40,
            ..SimConfig::default()
        },
        "[retention]\nkeep = \"30d\"\ninterval = \"300ms\"\nbatch_size = 7\n",
    )
    .await;
    app.start();
    // Real jobs of every table retention touches or must not touch.
    let repo = app.sim.artifact_repo_ids()[0].clone();
    let real = vec![
        app.submit("storage_snapshot", json!({})).await,
        app.submit("audit_mirror", json!({"repos": [repo]})).await,
        app.submit("purge_recycle_bin", json!({"dry_run": true}))
            .await,
        app.submit("remote_mirror", json!({"repository_id": 5}))
            .await,
        app.submit("swr_share_audit", json!({})).await,
    ];
    for id in &real {
        assert_eq!(app.wait_final(*id, WAIT).await.status, "succeeded");
    }
    let db = pool(&app).await;
    let series = [
        "SELECT COUNT(*) FROM storage_snapshots",
        "SELECT COUNT(*) FROM storage_repo_usage",
        "SELECT COUNT(*) FROM storage_trend",
        "SELECT COUNT(*) FROM audit_archive",
        "SELECT COUNT(*) FROM audit_streams",
        "SELECT COUNT(*) FROM swr_share_snapshots",
        "SELECT COUNT(*) FROM swr_shared_repos",
        "SELECT COUNT(*) FROM swr_shares",
    ];
    let mut kept_counts = Vec::new();
    for sql in series {
        kept_counts.push(count(&db, sql).await);
    }
    assert!(kept_counts.iter().all(|n| *n > 0), "{kept_counts:?}");
    assert!(count(&db, "SELECT COUNT(*) FROM purge_items").await > 0);

    // Age them past `keep`, add a backlog of old jobs, and some finished within `keep`.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET finished_at = $1 WHERE id IN {}",
        in_list(&real)
    )))
    .bind(now_ms() - 40 * DAY_MS)
    .execute(&db)
    .await
    .unwrap();
    let backlog = old_jobs(&db, 120, 60 * DAY_MS).await;
    let recent = old_jobs(&db, 3, 29 * DAY_MS).await;

    // Jobs keep running while the backlog is pruned, 7 per transaction.
    let mut live = Vec::new();
    for repo in 10..20 {
        live.push(
            app.submit("remote_mirror", json!({"repository_id": repo}))
                .await,
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    for id in &live {
        assert_eq!(app.wait_final(*id, WAIT).await.status, "succeeded");
    }
    let gone: Vec<i64> = real.iter().chain(&backlog).copied().collect();
    let gone_list = in_list(&gone);
    let deadline = Instant::now() + WAIT;
    loop {
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM jobs WHERE id IN {gone_list}"
        )))
        .fetch_one(&db)
        .await
        .unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} old jobs still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Their attempts, requests and purge items went with them.
    for table in ["attempts", "requests", "purge_items"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE job_id IN {gone_list}"
        )))
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(n, 0, "{table} of pruned jobs");
    }
    // What is within `keep`, and what ran meanwhile, is all there, attempts included.
    for id in recent.iter().chain(&live) {
        assert!(
            app.store.get(*id).await.unwrap().is_some(),
            "job {id} was pruned"
        );
        assert_eq!(app.attempts(*id).await.len(), 1, "job {id}'s attempts");
    }
    // The archive, the storage series and the share snapshots are untouched; a snapshot lost
    // only its job link.
    for (sql, before) in series.iter().zip(&kept_counts) {
        assert_eq!(count(&db, sql).await, *before, "{sql}");
    }
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM storage_snapshots WHERE job_id IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM swr_share_snapshots WHERE job_id IS NOT NULL"
        )
        .await,
        0,
        "a share snapshot outlives its pruned job"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM audit_archive WHERE job_id IS NULL"
        )
        .await,
        0,
        "archive rows keep their job id"
    );
    db.close().await;
    app.stop().await;
    let out = app.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{:?}", text(&out));

    // VACUUM on demand gives the pruned pages back.
    let out = app.cli(&["store", "vacuum"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("vacuumed") && stdout.contains("freed"),
        "{stdout}"
    );
    let job = app.store.get(recent[0]).await.unwrap();
    assert!(job.is_some(), "the store still reads after VACUUM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keep_nothing_is_pruned() {
    let mut app = spawn_app_with(SimConfig::default(), "[retention]\ninterval = \"100ms\"\n").await;
    let db = pool(&app).await;
    let old = old_jobs(&db, 5, 3650 * DAY_MS).await;
    app.start();
    tokio::time::sleep(Duration::from_millis(600)).await;
    app.stop().await;
    for id in old {
        assert!(app.store.get(id).await.unwrap().is_some());
    }
    db.close().await;
}
