//! `store copy`: an existing SQLite store copied into an empty PostgreSQL one, table by table in
//! batches, with every id kept.
//!
//! - **One snapshot of the source**: every table is read inside one read transaction on the
//!   SQLite file, so the copy is one consistent moment of it even if something still writes.
//! - **One transaction on the target**: either everything is copied or nothing is (a failure
//!   halfway leaves the target as empty as it was, so the command can simply be run again; with
//!   a transaction per table, a half-copied target would be refused as not empty). PostgreSQL
//!   keeps a long transaction without trouble, and nothing else should use the target yet.
//! - **Ids as they were**: `jobs.id` (so `retry_of`, `attempts`, `requests` and the archive's
//!   `job_id` keep pointing where they did), `audit_archive.seq` (the hash chains and each
//!   stream's `head_seq`), `requests.id`, `storage_snapshots.id`, `swr_share_snapshots.id`, and the order of
//!   `purge_items`. The identity sequences are then set past the highest id the SQLite store
//!   ever handed out (its `sqlite_sequence`, which also remembers pruned jobs), so no id is used
//!   twice: a replay's `retry_of` naming a pruned job never names a new one.
//! - **No bookkeeping twice**: the trigger that writes a job's own request row on insert is off
//!   for the copy (inside the transaction), since the request rows are copied as they were.
//! - **Counted**: each table's rows on the target, inside the transaction before it commits,
//!   must equal the source's; [`Store::table_counts`] lets the caller count again afterwards.

use futures::TryStreamExt;
use sqlx::Row;

use super::{value_rows, Backend, Error, Store};

/// A column's type, as both backends store it.
#[derive(Clone, Copy)]
enum Ty {
    Int,
    Text,
}
use Ty::{Int, Text};

/// A table to copy: its columns (the same on both backends), the order it is read in, and the
/// identity column on PostgreSQL, if any.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Ty)],
    order: &'static str,
    identity: Option<&'static str>,
}

/// Every table of the store, parents before the tables that refer to them.
const TABLES: &[Table] = &[
    Table {
        name: "jobs",
        columns: &[
            ("id", Int),
            ("kind", Text),
            ("params", Text),
            ("source", Text),
            ("schedule", Text),
            ("status", Text),
            ("claimed_from", Text),
            ("attempts", Int),
            ("max_attempts", Int),
            ("next_run_at", Int),
            ("jid", Text),
            ("trace_id", Text),
            ("http_status", Int),
            ("error_code", Text),
            ("error_msg", Text),
            ("checkpoint", Text),
            ("result", Text),
            ("idempotency_key", Text),
            ("created_at", Int),
            ("started_at", Int),
            ("finished_at", Int),
            ("updated_at", Int),
            ("slot", Int),
            ("lane", Text),
            ("retry_of", Int),
            ("owner", Text),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "attempts",
        columns: &[
            ("job_id", Int),
            ("attempt", Int),
            ("started_at", Int),
            ("finished_at", Int),
            ("outcome", Text),
            ("http_status", Int),
            ("error_code", Text),
            ("error_msg", Text),
            ("retry_delay_ms", Int),
        ],
        order: "job_id, attempt",
        identity: None,
    },
    Table {
        name: "requests",
        columns: &[
            ("id", Int),
            ("job_id", Int),
            ("source", Text),
            ("idem_key", Text),
            ("outcome", Text),
            ("received_at", Int),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "schedules",
        columns: &[
            ("name", Text),
            ("last_slot", Int),
            ("paused", Int),
            ("paused_by", Text),
            ("paused_at", Int),
            ("updated_at", Int),
        ],
        order: "name",
        identity: None,
    },
    Table {
        name: "purge_items",
        // `rowid`: SQLite's implicit one, an identity column of its own on PostgreSQL.
        columns: &[
            ("rowid", Int),
            ("job_id", Int),
            ("batch", Int),
            ("item_id", Text),
            ("format", Text),
            ("uri", Text),
            ("kind", Text),
            ("modified", Text),
            ("outcome", Text),
            ("message", Text),
            ("recorded_at", Int),
        ],
        order: "rowid",
        identity: Some("rowid"),
    },
    Table {
        name: "storage_snapshots",
        columns: &[
            ("id", Int),
            ("job_id", Int),
            ("taken_at", Int),
            ("formats", Text),
            ("total_bytes", Int),
            ("total_text", Text),
            ("total_count", Int),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "storage_repo_usage",
        columns: &[
            ("snapshot_id", Int),
            ("repo_id", Text),
            ("format", Text),
            ("used_bytes", Int),
            ("used_text", Text),
            ("files_count", Int),
        ],
        order: "snapshot_id, repo_id",
        identity: None,
    },
    Table {
        name: "storage_trend",
        columns: &[
            ("repo_id", Text),
            ("day", Text),
            ("used_bytes", Int),
            ("used_text", Text),
            ("files_count", Int),
            ("updated_at", Int),
        ],
        order: "repo_id, day",
        identity: None,
    },
    Table {
        name: "swr_share_snapshots",
        columns: &[
            ("id", Int),
            ("job_id", Int),
            ("taken_at", Int),
            ("repositories", Int),
            ("shares", Int),
            ("walks", Int),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "swr_shared_repos",
        columns: &[
            ("snapshot_id", Int),
            ("namespace", Text),
            ("repository", Text),
            ("path", Text),
            ("num_images", Int),
            ("updated_at", Text),
        ],
        order: "snapshot_id, namespace, repository",
        identity: None,
    },
    Table {
        name: "swr_shares",
        columns: &[
            ("snapshot_id", Int),
            ("namespace", Text),
            ("repository", Text),
            ("access_domain", Text),
            ("permit", Text),
            ("deadline", Text),
            ("status", Int),
            ("description", Text),
            ("creator_name", Text),
            ("created", Text),
            ("updated", Text),
        ],
        order: "snapshot_id, namespace, repository, access_domain",
        identity: None,
    },
    Table {
        name: "audit_archive",
        columns: &[
            ("seq", Int),
            ("module", Text),
            ("repo", Text),
            ("record_id", Text),
            ("record_time", Text),
            ("record", Text),
            ("fetched_at", Int),
            ("job_id", Int),
            ("prev_hash", Text),
            ("hash", Text),
        ],
        order: "seq",
        identity: Some("seq"),
    },
    Table {
        name: "audit_streams",
        columns: &[
            ("module", Text),
            ("repo", Text),
            ("head_seq", Int),
            ("head_hash", Text),
            ("records", Int),
            ("complete_seq", Int),
            ("updated_at", Int),
        ],
        order: "module, repo",
        identity: None,
    },
    Table {
        name: "instances",
        columns: &[
            ("id", Text),
            ("started_at", Int),
            ("heartbeat_at", Int),
            ("stopped_at", Int),
        ],
        order: "id",
        identity: None,
    },
];

/// The names of the tables a copy covers, in the order it copies them.
pub fn table_names() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|t| t.name)
}

/// Rows per `INSERT`, at most (PostgreSQL takes up to 65,535 parameters in one statement).
const BATCH_ROWS: usize = 500;

/// One table as copied.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TableCopy {
    pub table: &'static str,
    /// Rows in the source snapshot.
    pub source: i64,
    /// Rows on the target, counted inside the copy's transaction.
    pub target: i64,
}

/// An identity sequence as set after the copy: the next id it hands out is `last + 1`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SequenceSet {
    pub table: &'static str,
    pub column: &'static str,
    pub last: i64,
}

/// What a copy did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CopyReport {
    pub tables: Vec<TableCopy>,
    pub sequences: Vec<SequenceSet>,
}

/// Why a copy did not happen; the target is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the source of a copy must be a SQLite store, and its target a PostgreSQL one")]
    Backends,
    /// The target already holds rows: the copy keeps ids, which would collide with them.
    #[error("the target already holds {rows} row(s) in {table}")]
    NotEmpty { table: &'static str, rows: i64 },
    /// The rows counted on the target differ from the source's (the transaction was rolled back).
    #[error("{table}: {source_rows} row(s) in the source but {target_rows} on the target; nothing was committed")]
    Mismatch {
        table: &'static str,
        source_rows: i64,
        target_rows: i64,
    },
    /// A statement failed while copying this table (the transaction was rolled back).
    #[error("copying {table}: {source}")]
    Table {
        table: &'static str,
        source: sqlx::Error,
    },
    #[error(transparent)]
    Store(#[from] Error),
}

/// A value read from the source.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl Store {
    /// Copies every table of this (SQLite) store into `target` (PostgreSQL, migrated, empty) in
    /// one transaction; `copied` hears about each table once it is in. See the module docs.
    pub async fn copy_to(
        &self,
        target: &Store,
        mut copied: impl FnMut(&TableCopy),
    ) -> Result<CopyReport, CopyError> {
        if self.backend != Backend::Sqlite || target.backend != Backend::Postgres {
            return Err(CopyError::Backends);
        }
        let mut src = self.pool.begin().await.map_err(Error::from)?;
        let mut dst = target.pool.begin().await.map_err(Error::from)?;
        let on =
            |table: &'static str| move |source: sqlx::Error| CopyError::Table { table, source };
        // Nobody else inserts jobs while this transaction runs (and the trigger's job is done
        // by copying the request rows themselves); a wait for the lock is bounded.
        for sql in [
            "SET LOCAL lock_timeout = '10s'",
            "ALTER TABLE jobs DISABLE TRIGGER jobs_record_request",
        ] {
            sqlx::query(sql)
                .execute(&mut *dst)
                .await
                .map_err(on("jobs"))?;
        }
        for t in TABLES {
            let rows = count(&mut dst, t.name).await.map_err(on(t.name))?;
            if rows > 0 {
                return Err(CopyError::NotEmpty {
                    table: t.name,
                    rows,
                });
            }
        }
        let mut report = CopyReport {
            tables: Vec::new(),
            sequences: Vec::new(),
        };
        for t in TABLES {
            let source = count(&mut src, t.name).await.map_err(on(t.name))?;
            copy_table(&mut src, &mut dst, t)
                .await
                .map_err(on(t.name))?;
            let done = TableCopy {
                table: t.name,
                source,
                target: count(&mut dst, t.name).await.map_err(on(t.name))?,
            };
            if done.source != done.target {
                return Err(CopyError::Mismatch {
                    table: t.name,
                    source_rows: done.source,
                    target_rows: done.target,
                });
            }
            copied(&done);
            report.tables.push(done);
        }
        for t in TABLES {
            let Some(column) = t.identity else { continue };
            let last = last_id(&mut src, t.name, column)
                .await
                .map_err(on(t.name))?;
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{}', '{column}'), GREATEST($1, 1), $1 >= 1)",
                t.name
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(last)
                .execute(&mut *dst)
                .await
                .map_err(on(t.name))?;
            report.sequences.push(SequenceSet {
                table: t.name,
                column,
                last,
            });
        }
        sqlx::query("ALTER TABLE jobs ENABLE TRIGGER jobs_record_request")
            .execute(&mut *dst)
            .await
            .map_err(on("jobs"))?;
        dst.commit().await.map_err(Error::from)?;
        src.rollback().await.map_err(Error::from)?;
        Ok(report)
    }

    /// Rows per table of the store, for every table a copy covers.
    pub async fn table_counts(&self) -> Result<Vec<(&'static str, i64)>, Error> {
        let mut conn = self.pool.acquire().await?;
        let mut out = Vec::new();
        for t in TABLES {
            out.push((t.name, count(&mut conn, t.name).await?));
        }
        Ok(out)
    }
}

async fn count(conn: &mut sqlx::AnyConnection, table: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(conn)
        .await
}

/// The highest id the SQLite store has handed out in `column`: the table's largest, or what
/// `sqlite_sequence` remembers for an AUTOINCREMENT table (higher when the newest rows were
/// pruned); 0 for none.
async fn last_id(
    src: &mut sqlx::AnyConnection,
    table: &str,
    column: &str,
) -> Result<i64, sqlx::Error> {
    let max: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT MAX({column}) FROM {table}"
    )))
    .fetch_one(&mut *src)
    .await?;
    let remembered: Option<i64> =
        sqlx::query_scalar("SELECT MAX(seq) FROM sqlite_sequence WHERE name = $1")
            .bind(table)
            .fetch_one(&mut *src)
            .await?;
    Ok(max.unwrap_or(0).max(remembered.unwrap_or(0)))
}

/// Streams one table out of the source and into the target, [`BATCH_ROWS`] rows per `INSERT`.
async fn copy_table(
    src: &mut sqlx::AnyConnection,
    dst: &mut sqlx::AnyConnection,
    t: &Table,
) -> Result<(), sqlx::Error> {
    let names: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
    let select = format!(
        "SELECT {} FROM {} ORDER BY {}",
        names.join(", "),
        t.name,
        t.order
    );
    // `purge_items.rowid` is GENERATED ALWAYS on PostgreSQL: the copied order is written over it.
    let overriding = if t.identity == Some("rowid") {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    let per_batch = BATCH_ROWS.min(65_535 / t.columns.len());
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(src);
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(per_batch);
    loop {
        let row = rows.try_next().await?;
        if let Some(row) = &row {
            let mut values = Vec::with_capacity(t.columns.len());
            for (i, (_, ty)) in t.columns.iter().enumerate() {
                values.push(match ty {
                    Int => Value::Int(row.try_get(i)?),
                    Text => Value::Text(row.try_get(i)?),
                });
            }
            batch.push(values);
        }
        if batch.len() == per_batch || (row.is_none() && !batch.is_empty()) {
            let sql = format!(
                "INSERT INTO {} ({}){overriding} VALUES {}",
                t.name,
                names.join(", "),
                value_rows(batch.len(), names.len(), 1)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in batch.drain(..).flatten() {
                q = match v {
                    Value::Int(i) => q.bind(i),
                    Value::Text(s) => q.bind(s),
                };
            }
            q.execute(&mut *dst).await?;
        }
        if row.is_none() {
            return Ok(());
        }
    }
}
