//! A store the daemon cannot use as it is (not a database, damaged, or written by a newer
//! version) stops `run` and `jobs list` with status 3, naming the file and what to do: a restart
//! cannot mend it, and the systemd unit does not restart on 3.

use crate::support;

use std::path::Path;
use std::time::Duration;

use codearts_syncd::config::Synchronous;
use codearts_syncd::ingress::{self, Submission};
use codearts_syncd::store::Store;
use codearts_syncd::Source;
use rand::RngCore;
use support::{spawn_app, text, TestApp};

const EXIT_STORE_UNUSABLE: i32 = 3;

/// Runs `args` against the store at `path`; returns the exit status and stderr.
fn run_on(app: &TestApp, path: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = app.cli_env(
        args,
        &[("CODEARTS_SYNCD_STORE__PATH", path.to_str().unwrap())],
        Duration::from_secs(30),
    );
    (out.status.code(), text(&out).1)
}

/// A real store with a few jobs in it, closed (its WAL checkpointed away).
async fn real_store(app: &TestApp, path: &Path) {
    let store = Store::open_path(path, Synchronous::Normal, Duration::from_secs(5))
        .await
        .expect("store opens");
    for repo in 1..=20 {
        ingress::submit(
            &store,
            &app.cfg,
            Submission {
                kind: "remote_mirror".into(),
                params: serde_json::json!({"repository_id": repo}),
                source: Source::Cli,
                key: None,
                schedule: None,
            },
        )
        .await
        .expect("submitted");
    }
    store.close().await;
    // Fold the WAL into the file and leave rollback-journal mode, so the file alone is the
    // database (the damage below must reach what SQLite reads).
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    // The closed store's connections are released by their worker threads a moment after
    // `close` returns; until then these may find the database busy.
    for statement in [
        "PRAGMA wal_checkpoint(TRUNCATE)",
        "PRAGMA journal_mode = DELETE",
    ] {
        let mut tries = 0;
        while let Err(e) = sqlx::query(statement).execute(&pool).await {
            tries += 1;
            assert!(tries < 50, "{statement}: {e}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    pool.close().await;
    for suffix in ["-wal", "-shm"] {
        assert!(
            !Path::new(&format!("{}{suffix}", path.display())).exists(),
            "{suffix} left"
        );
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// `run` and `jobs list` both stop with status 3 and a message naming `path` and `expected`.
fn assert_unusable(app: &TestApp, path: &Path, expected: &str) {
    for args in [&["run"][..], &["jobs", "list"][..]] {
        let (code, stderr) = run_on(app, path, args);
        assert_eq!(code, Some(EXIT_STORE_UNUSABLE), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "{args:?}: the file is not named: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_store_of_random_bytes_stops_run_with_status_3() {
    if support::sqlite_only("a_store_of_random_bytes_stops_run_with_status_3") {
        return;
    }
    let app = spawn_app().await;
    let path = app.dir.path().join("garbage.db");
    std::fs::write(&path, random_bytes(8192)).unwrap();
    assert_unusable(&app, &path, "restore it from a backup or move it aside");
}

#[tokio::test]
async fn a_store_with_damaged_pages_stops_run_with_status_3() {
    if support::sqlite_only("a_store_with_damaged_pages_stops_run_with_status_3") {
        return;
    }
    let app = spawn_app().await;
    let path = app.dir.path().join("damaged.db");
    real_store(&app, &path).await;
    // Keep the header page, overwrite every other page: the tables' pages are garbage.
    let mut bytes = std::fs::read(&path).unwrap();
    let page = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536,
        n => n as usize,
    };
    assert!(bytes.len() > page, "more than one page");
    let tail = random_bytes(bytes.len() - page);
    bytes[page..].copy_from_slice(&tail);
    std::fs::write(&path, bytes).unwrap();
    assert_unusable(&app, &path, "damaged");
}

#[tokio::test]
async fn a_truncated_store_stops_run_with_status_3() {
    if support::sqlite_only("a_truncated_store_stops_run_with_status_3") {
        return;
    }
    let app = spawn_app().await;
    let path = app.dir.path().join("truncated.db");
    real_store(&app, &path).await;
    let bytes = std::fs::read(&path).unwrap();
    let page = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536,
        n => n as usize,
    };
    assert!(bytes.len() > page, "more than one page");
    std::fs::write(&path, &bytes[..page]).unwrap();
    assert_unusable(&app, &path, "damaged");
}

#[tokio::test]
async fn a_store_from_a_newer_version_stops_run_with_status_3() {
    if support::sqlite_only("a_store_from_a_newer_version_stops_run_with_status_3") {
        return;
    }
    let app = spawn_app().await;
    let path = app.dir.path().join("newer.db");
    real_store(&app, &path).await;
    // What a newer build would leave: a migration this one does not know.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999991, 'from a newer version', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_unusable(&app, &path, "written by a newer version");
    let (_, stderr) = run_on(&app, &path, &["run"]);
    assert!(stderr.contains("99999991"), "{stderr}");
}
