//! The SQLite store: pool setup, the job table and the attempts table; the Artifact job kinds'
//! tables live in their own files ([`purge`], [`archive`], [`storage`]). The only place with SQL.
//!
//! Every state transition is a guarded `UPDATE … WHERE id = ? AND status = 'running'`; a write
//! that affects no row means the job was not ours any more, and is reported as
//! [`Error::LostOwnership`] instead of passing silently. Claiming is one statement, so two
//! workers can never take the same job.

pub mod archive;
pub mod purge;
pub mod storage;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::Notify;

use crate::config::{StoreConfig, Synchronous};
use crate::{now_ms, JobId, Source, Status};

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open store {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot apply store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store query failed: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("job {0} is no longer held by this worker (its status changed underneath)")]
    LostOwnership(JobId),
}

impl Error {
    /// True when the database was busy or locked: worth retrying later.
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Sql(sqlx::Error::Database(e)) => {
                let msg = e.message();
                msg.contains("locked") || msg.contains("busy")
            }
            _ => false,
        }
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    work: Arc<Notify>,
}

/// A job as stored.
#[derive(Clone, Debug, Serialize)]
pub struct JobRow {
    pub id: JobId,
    pub kind: String,
    pub params: serde_json::Value,
    pub source: String,
    pub schedule: Option<String>,
    pub status: String,
    #[serde(skip)]
    pub claimed_from: Option<String>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub next_run_at: i64,
    pub jid: Option<String>,
    pub trace_id: Option<String>,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub checkpoint: Option<serde_json::Value>,
    pub result: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl JobRow {
    /// The parsed status.
    pub fn status(&self) -> Option<Status> {
        Status::parse(&self.status)
    }

    /// True when this claim is a poll of a following job, not a new attempt.
    pub fn is_poll(&self) -> bool {
        self.claimed_from.as_deref() == Some("following")
    }
}

/// One attempt as stored.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRow {
    pub attempt: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: Option<String>,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub retry_delay_ms: Option<i64>,
}

/// A job to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub kind: String,
    pub params: String,
    pub source: Source,
    pub schedule: Option<String>,
    pub status: Status,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    New(JobId),
    /// The idempotency key already names this job; nothing was written.
    Duplicate(JobId),
}

/// The error details kept on a job and its attempt.
#[derive(Clone, Debug, Default)]
pub struct ErrorInfo {
    pub http_status: Option<u16>,
    pub error_code: Option<String>,
    pub error_msg: String,
    pub trace_id: Option<String>,
}

/// How an attempt (or a poll) ended; written by [`Store::settle`].
#[derive(Clone, Debug)]
pub enum Transition {
    Succeeded {
        jid: Option<String>,
        trace_id: Option<String>,
        result: serde_json::Value,
    },
    /// The remote work started; poll again at `next_run_at`.
    Following {
        jid: Option<String>,
        checkpoint: serde_json::Value,
        next_run_at: i64,
    },
    /// A retryable failure: back to `queued`.
    Retry {
        error: ErrorInfo,
        next_run_at: i64,
        delay_ms: i64,
    },
    Failed {
        error: ErrorInfo,
        result: Option<serde_json::Value>,
    },
    /// Shutdown or a crash interrupted it: back to the status it was claimed from, due now.
    Interrupted,
}

/// Filters for [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub limit: i64,
}

const JOB_COLUMNS: &str = "id, kind, params, source, schedule, status, claimed_from, attempts, \
     max_attempts, next_run_at, jid, trace_id, http_status, error_code, error_msg, checkpoint, \
     result, idempotency_key, created_at, started_at, finished_at";

impl Store {
    /// Opens (creating if needed) the database, sets WAL and the pragmas, applies migrations.
    pub async fn open(cfg: &StoreConfig) -> Result<Store, Error> {
        if let Some(dir) = cfg.path.parent() {
            if !dir.as_os_str().is_empty() {
                let _ = std::fs::create_dir_all(dir);
            }
        }
        Self::open_path(&cfg.path, cfg.synchronous, cfg.busy_timeout).await
    }

    /// Opens the database at `path`.
    pub async fn open_path(
        path: &Path,
        sync: Synchronous,
        busy_timeout: Duration,
    ) -> Result<Store, Error> {
        let url = format!("sqlite://{}", path.display());
        let open_err = |source| Error::Open {
            path: path.display().to_string(),
            source,
        };
        let opts = SqliteConnectOptions::from_str(&url)
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                Synchronous::Normal => SqliteSynchronous::Normal,
                Synchronous::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        MIGRATOR.run(&pool).await?;
        Ok(Store {
            pool,
            work: Arc::new(Notify::new()),
        })
    }

    /// Resolves when new work was inserted in this process.
    pub async fn work_available(&self) {
        self.work.notified().await
    }

    /// Inserts a job; a duplicate idempotency key inserts nothing and names the existing job.
    pub async fn insert(&self, job: &NewJob) -> Result<Inserted, Error> {
        let mut tx = self.pool.begin().await?;
        let inserted = insert_in(&mut tx, job).await?;
        tx.commit().await?;
        if matches!(inserted, Inserted::New(_)) {
            self.work.notify_one();
        }
        Ok(inserted)
    }

    /// Inserts a cron tick's job: `skipped` when a job of the same schedule is still active.
    /// Returns the insert and whether it was skipped.
    pub async fn insert_scheduled(&self, job: &NewJob) -> Result<(Inserted, bool), Error> {
        let mut tx = self.pool.begin().await?;
        let active: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE schedule = ? \
             AND status IN ('queued', 'running', 'following') LIMIT 1",
        )
        .bind(&job.schedule)
        .fetch_optional(&mut *tx)
        .await?;
        let mut job = job.clone();
        if let Some(prev) = active {
            job.status = Status::Skipped;
            job.error_msg = Some(format!("previous run (job {prev}) is still active"));
        }
        let inserted = insert_in(&mut tx, &job).await?;
        tx.commit().await?;
        if active.is_none() {
            self.work.notify_one();
        }
        Ok((inserted, active.is_some()))
    }

    /// Claims the most overdue job of one of `kinds`, moving it to `running`. A claim from
    /// `queued` starts a new attempt (counted and recorded); a claim from `following` is a poll.
    pub async fn claim(&self, kinds: &[&str]) -> Result<Option<JobRow>, Error> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let now = now_ms();
        // Numbered throughout: sqlx does not number a bare `?` after `?1` the way SQLite does.
        let placeholders = (2..kinds.len() + 2)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE jobs SET status = 'running', claimed_from = status, \
               attempts = attempts + (status = 'queued'), \
               started_at = COALESCE(started_at, ?1), updated_at = ?1 \
             WHERE id = (SELECT id FROM jobs WHERE status IN ('queued', 'following') \
                           AND next_run_at <= ?1 AND kind IN ({placeholders}) \
                           ORDER BY next_run_at, id LIMIT 1) \
               AND status IN ('queued', 'following') \
             RETURNING {JOB_COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        let mut q = sqlx::query(&sql).bind(now);
        for k in kinds {
            q = q.bind(*k);
        }
        let Some(row) = q.fetch_optional(&mut *tx).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let job = job_from_row(&row)?;
        if !job.is_poll() {
            sqlx::query("INSERT INTO attempts (job_id, attempt, started_at) VALUES (?, ?, ?)")
                .bind(job.id)
                .bind(job.attempts)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(job))
    }

    /// The earliest `next_run_at` among waiting jobs.
    pub async fn next_due_at(&self) -> Result<Option<i64>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_run_at) FROM jobs WHERE status IN ('queued', 'following')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Saves progress of a running job (e.g. the jid right after a start call).
    pub async fn checkpoint(
        &self,
        id: JobId,
        checkpoint: &serde_json::Value,
        jid: Option<&str>,
    ) -> Result<(), Error> {
        let done = sqlx::query(
            "UPDATE jobs SET checkpoint = ?, jid = COALESCE(?, jid), updated_at = ? \
             WHERE id = ? AND status = 'running'",
        )
        .bind(checkpoint.to_string())
        .bind(jid)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::LostOwnership(id));
        }
        Ok(())
    }

    /// Writes the outcome of a claimed job: the one place that moves a job out of `running`.
    pub async fn settle(&self, job: &JobRow, t: &Transition) -> Result<(), Error> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let (status, outcome, next_run, err, delay, jid, trace, result, checkpoint, finished) =
            match t {
                Transition::Succeeded {
                    jid,
                    trace_id,
                    result,
                } => (
                    "succeeded",
                    "succeeded",
                    None,
                    None,
                    None,
                    jid.clone(),
                    trace_id.clone(),
                    Some(result.to_string()),
                    None,
                    Some(now),
                ),
                Transition::Following {
                    jid,
                    checkpoint,
                    next_run_at,
                } => (
                    "following",
                    "following",
                    Some(*next_run_at),
                    None,
                    None,
                    jid.clone(),
                    None,
                    None,
                    Some(checkpoint.to_string()),
                    None,
                ),
                Transition::Retry {
                    error,
                    next_run_at,
                    delay_ms,
                } => (
                    "queued",
                    "retry",
                    Some(*next_run_at),
                    Some(error),
                    Some(*delay_ms),
                    None,
                    error.trace_id.clone(),
                    None,
                    None,
                    None,
                ),
                Transition::Failed { error, result } => (
                    "failed",
                    "failed",
                    None,
                    Some(error),
                    None,
                    None,
                    error.trace_id.clone(),
                    result.as_ref().map(|r| r.to_string()),
                    None,
                    Some(now),
                ),
                Transition::Interrupted => {
                    let back = job.claimed_from.as_deref().unwrap_or("queued");
                    let done = sqlx::query(
                        "UPDATE jobs SET status = ?, next_run_at = ?, updated_at = ? \
                         WHERE id = ? AND status = 'running'",
                    )
                    .bind(back)
                    .bind(now)
                    .bind(now)
                    .bind(job.id)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(Error::LostOwnership(job.id));
                    }
                    if !job.is_poll() {
                        close_attempt(&mut tx, job, now, "interrupted", None, None).await?;
                    }
                    tx.commit().await?;
                    return Ok(());
                }
            };
        let http_status = err.and_then(|e| e.http_status).map(i64::from);
        let done = sqlx::query(
            "UPDATE jobs SET status = ?, next_run_at = COALESCE(?, next_run_at), \
               jid = COALESCE(?, jid), trace_id = COALESCE(?, trace_id), \
               http_status = CASE WHEN ? THEN ? ELSE http_status END, \
               error_code = CASE WHEN ? THEN ? ELSE error_code END, \
               error_msg = CASE WHEN ? THEN ? ELSE error_msg END, \
               result = COALESCE(?, result), checkpoint = COALESCE(?, checkpoint), \
               finished_at = COALESCE(?, finished_at), updated_at = ? \
             WHERE id = ? AND status = 'running'",
        )
        .bind(status)
        .bind(next_run)
        .bind(jid)
        .bind(trace)
        .bind(err.is_some())
        .bind(http_status)
        .bind(err.is_some())
        .bind(err.and_then(|e| e.error_code.clone()))
        .bind(err.is_some())
        .bind(err.map(|e| e.error_msg.clone()))
        .bind(result)
        .bind(checkpoint)
        .bind(finished)
        .bind(now)
        .bind(job.id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::LostOwnership(job.id));
        }
        if !job.is_poll() {
            close_attempt(&mut tx, job, now, outcome, err, delay).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Start-up recovery: jobs left `running` by a process that died go back to what they were
    /// claimed from, due now; their open attempts are closed as `interrupted`.
    pub async fn recover_running(&self) -> Result<u64, Error> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE attempts SET finished_at = ?, outcome = 'interrupted', \
               error_msg = 'the process stopped during this attempt' \
             WHERE outcome IS NULL AND job_id IN (SELECT id FROM jobs WHERE status = 'running')",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = COALESCE(claimed_from, 'queued'), next_run_at = ?, \
               updated_at = ? WHERE status = 'running'",
        )
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// One job.
    pub async fn get(&self, id: JobId) -> Result<Option<JobRow>, Error> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Jobs, newest first.
    pub async fn list(&self, f: &ListFilter) -> Result<Vec<JobRow>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR kind = ?1) \
             AND (?2 IS NULL OR status = ?2) ORDER BY id DESC LIMIT ?3"
        ))
        .bind(&f.kind)
        .bind(&f.status)
        .bind(if f.limit <= 0 { -1 } else { f.limit })
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// A job's attempts, in order.
    pub async fn attempts(&self, id: JobId) -> Result<Vec<AttemptRow>, Error> {
        let rows = sqlx::query(
            "SELECT attempt, started_at, finished_at, outcome, http_status, error_code, \
               error_msg, retry_delay_ms FROM attempts WHERE job_id = ? ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRow {
                    attempt: r.try_get("attempt")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    outcome: r.try_get("outcome")?,
                    http_status: r.try_get("http_status")?,
                    error_code: r.try_get("error_code")?,
                    error_msg: r.try_get("error_msg")?,
                    retry_delay_ms: r.try_get("retry_delay_ms")?,
                })
            })
            .collect()
    }

    /// Counts jobs per status.
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }

    /// Closes the pool, flushing the WAL.
    pub async fn close(&self) {
        self.pool.close().await
    }
}

async fn insert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    job: &NewJob,
) -> Result<Inserted, Error> {
    let now = now_ms();
    if let (Some(key), false) = (&job.idempotency_key, job.status == Status::Rejected) {
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE idempotency_key = ? AND status <> 'rejected'",
        )
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(id) = existing {
            return Ok(Inserted::Duplicate(id));
        }
    }
    let finished = job.status.is_final().then_some(now);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (kind, params, source, schedule, status, max_attempts, next_run_at, \
           idempotency_key, error_code, error_msg, created_at, finished_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&job.kind)
    .bind(&job.params)
    .bind(job.source.as_str())
    .bind(&job.schedule)
    .bind(job.status.as_str())
    .bind(job.max_attempts as i64)
    .bind(now)
    .bind(&job.idempotency_key)
    .bind(&job.error_code)
    .bind(&job.error_msg)
    .bind(now)
    .bind(finished)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Inserted::New(id))
}

async fn close_attempt(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    job: &JobRow,
    now: i64,
    outcome: &str,
    err: Option<&ErrorInfo>,
    delay_ms: Option<i64>,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE attempts SET finished_at = ?, outcome = ?, http_status = ?, error_code = ?, \
           error_msg = ?, retry_delay_ms = ? WHERE job_id = ? AND attempt = ?",
    )
    .bind(now)
    .bind(outcome)
    .bind(err.and_then(|e| e.http_status).map(i64::from))
    .bind(err.and_then(|e| e.error_code.clone()))
    .bind(err.map(|e| e.error_msg.clone()))
    .bind(delay_ms)
    .bind(job.id)
    .bind(job.attempts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn json_col(row: &sqlx::sqlite::SqliteRow, col: &str) -> Result<Option<serde_json::Value>, Error> {
    let text: Option<String> = row.try_get(col)?;
    Ok(text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t))))
}

fn job_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<JobRow, Error> {
    Ok(JobRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        params: json_col(row, "params")?.unwrap_or(serde_json::Value::Null),
        source: row.try_get("source")?,
        schedule: row.try_get("schedule")?,
        status: row.try_get("status")?,
        claimed_from: row.try_get("claimed_from")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        next_run_at: row.try_get("next_run_at")?,
        jid: row.try_get("jid")?,
        trace_id: row.try_get("trace_id")?,
        http_status: row.try_get("http_status")?,
        error_code: row.try_get("error_code")?,
        error_msg: row.try_get("error_msg")?,
        checkpoint: json_col(row, "checkpoint")?,
        result: json_col(row, "result")?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}
