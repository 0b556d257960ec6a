//! The SQLite store: pool setup, the job table and the attempts table; the Artifact job kinds'
//! tables live in their own files ([`purge`], [`archive`], [`storage`]). The only place with SQL.
//!
//! Every state transition is a guarded `UPDATE … WHERE id = ? AND status = 'running'`; a write
//! that affects no row means the job was not ours any more, and is reported as
//! [`Error::LostOwnership`] instead of passing silently. Claiming is one statement, so two
//! workers can never take the same job.

pub mod archive;
pub mod health;
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
    /// A read-only command named a store that does not exist (it is never created for them).
    #[error("no store at {path}: check store.path (or CODEARTS_SYNCD_STORE__PATH); read-only commands never create one")]
    Missing { path: String },
    /// The file is not a database, or SQLite found it damaged.
    #[error("store {path} is damaged or not a SQLite database ({detail}); restore it from a backup or move it aside so a new one is created")]
    Corrupt { path: String, detail: String },
    /// The store was written by a newer version of codearts-syncd.
    #[error("store {path} was written by a newer version of codearts-syncd (it has migration {version}, which this build does not know); run the newer version, or restore a backup made for this one")]
    NewerVersion { path: String, version: i64 },
    #[error("cannot apply store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store query failed: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("job {0} is no longer held by this worker (its status changed underneath)")]
    LostOwnership(JobId),
}

impl Error {
    /// True when the database was busy or locked: worth retrying soon.
    pub fn is_busy(&self) -> bool {
        self.message()
            .is_some_and(|m| m.contains("locked") || m.contains("busy"))
    }

    /// True when the write may succeed later without anyone changing the configuration: busy
    /// or locked, the disk or quota full, an I/O error. The daemon holds on to what it could
    /// not write and tries again.
    pub fn is_transient(&self) -> bool {
        self.is_busy()
            || self.message().is_some_and(|m| {
                m.contains("full")
                    || m.contains("disk i/o")
                    || m.contains("unable to open")
                    || m.contains("pool timed out")
                    || m.contains("out of memory")
            })
            || matches!(
                self,
                Error::Sql(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
            )
    }

    /// True when the store can no longer be used as it is (damaged, or from a newer version):
    /// restarting will not help.
    pub fn is_unusable(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::NewerVersion { .. })
    }

    /// The database's own message, lower-cased, when there is one.
    fn message(&self) -> Option<String> {
        match self {
            Error::Sql(sqlx::Error::Database(e)) => Some(e.message().to_ascii_lowercase()),
            // A batch's failure, passed on to each of its members.
            Error::Sql(sqlx::Error::Protocol(msg)) => Some(msg.to_ascii_lowercase()),
            Error::Sql(sqlx::Error::Io(e)) => Some(e.to_string().to_ascii_lowercase()),
            _ => None,
        }
    }
}

/// SQLite's primary result codes that say the file itself is unusable.
fn corruption(e: &sqlx::Error) -> Option<String> {
    if let sqlx::Error::Database(db) = e {
        let code = db.code().unwrap_or_default();
        // SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), possibly extended.
        let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(-1);
        if primary == 11 || primary == 26 {
            return Some(db.message().to_string());
        }
    }
    None
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    work: Arc<Notify>,
    health: Arc<health::Health>,
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
    /// Join a queued job of the same kind with the same parameters instead of adding one.
    pub coalesce: bool,
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    New(JobId),
    /// The idempotency key already names this job; nothing was written.
    Duplicate(JobId),
    /// Joined this queued job (recorded as a request of it).
    Coalesced(JobId),
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
        Self::open_with(&cfg.path, cfg.synchronous, cfg.busy_timeout, true).await
    }

    /// Opens an existing database for a command that only reads: a missing file is
    /// [`Error::Missing`], never created.
    pub async fn open_existing(cfg: &StoreConfig) -> Result<Store, Error> {
        if !cfg.path.is_file() {
            return Err(Error::Missing {
                path: cfg.path.display().to_string(),
            });
        }
        Self::open_with(&cfg.path, cfg.synchronous, cfg.busy_timeout, false).await
    }

    /// Opens the database at `path`, creating it if needed.
    pub async fn open_path(
        path: &Path,
        sync: Synchronous,
        busy_timeout: Duration,
    ) -> Result<Store, Error> {
        Self::open_with(path, sync, busy_timeout, true).await
    }

    async fn open_with(
        path: &Path,
        sync: Synchronous,
        busy_timeout: Duration,
        create: bool,
    ) -> Result<Store, Error> {
        let url = format!("sqlite://{}", path.display());
        let shown = path.display().to_string();
        let open_err = |source: sqlx::Error| match corruption(&source) {
            Some(detail) => Error::Corrupt {
                path: shown.clone(),
                detail,
            },
            None => Error::Open {
                path: shown.clone(),
                source,
            },
        };
        let opts = SqliteConnectOptions::from_str(&url)
            .map_err(open_err)?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                Synchronous::Normal => SqliteSynchronous::Normal,
                Synchronous::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A write that failed at COMMIT (a full disk, say) can leave sqlx believing a
            // transaction is still open on the connection while SQLite already rolled it back;
            // every later `BEGIN IMMEDIATE` on it would then fail. Such a connection is closed
            // instead of being handed out again (the check is an atomic load; the pool has
            // already flushed the connection's pending rollback when it was released).
            .before_acquire(|conn, _meta| {
                Box::pin(async move {
                    let stuck = sqlx::Connection::is_in_transaction(conn);
                    if stuck {
                        tracing::warn!(
                            "closing a store connection left inside a failed transaction"
                        );
                    }
                    Ok(!stuck)
                })
            })
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        if let Err(e) = MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(match e {
                sqlx::migrate::MigrateError::VersionMissing(version) => Error::NewerVersion {
                    path: shown,
                    version,
                },
                sqlx::migrate::MigrateError::Execute(source) => open_err(source),
                other => Error::Migrate(other),
            });
        }
        Ok(Store {
            pool,
            work: Arc::new(Notify::new()),
            health: Arc::new(health::Health::default()),
        })
    }

    /// A write transaction. IMMEDIATE takes the write lock up front, so it waits out another
    /// writer (busy_timeout) instead of failing when a read inside it would need upgrading.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Whether the store can write, as its write paths last saw it.
    pub fn health(&self) -> &health::Health {
        &self.health
    }

    /// Reports a write's result to [`Store::health`] and passes it on.
    fn observe<T>(&self, r: Result<T, Error>) -> Result<T, Error> {
        match &r {
            Ok(_) => self.health.ok(),
            Err(e) if e.is_transient() => self.health.failed(e),
            Err(_) => {}
        }
        r
    }

    /// Resolves when new work was inserted in this process.
    pub async fn work_available(&self) {
        self.work.notified().await
    }

    /// Inserts a job; a duplicate idempotency key inserts nothing and names the existing job.
    pub async fn insert(&self, job: &NewJob) -> Result<Inserted, Error> {
        let inserted = self.observe(
            async {
                let mut tx = self.write_tx().await?;
                let inserted = insert_in(&mut tx, job).await?;
                tx.commit().await?;
                Ok(inserted)
            }
            .await,
        )?;
        if matches!(inserted, Inserted::New(_)) {
            self.work.notify_one();
        }
        Ok(inserted)
    }

    /// Inserts several jobs in one transaction: all are recorded, or none (one commit for a
    /// whole batch of deliveries, which is what makes persist-then-ack affordable).
    pub async fn insert_many(&self, jobs: &[NewJob]) -> Result<Vec<Inserted>, Error> {
        let out = self.observe(
            async {
                let mut tx = self.write_tx().await?;
                let mut out = Vec::with_capacity(jobs.len());
                for job in jobs {
                    out.push(insert_in(&mut tx, job).await?);
                }
                tx.commit().await?;
                Ok(out)
            }
            .await,
        )?;
        if out.iter().any(|i| matches!(i, Inserted::New(_))) {
            self.work.notify_one();
        }
        Ok(out)
    }

    /// The requests a job served: (source, key, outcome), oldest first.
    pub async fn requests_of(
        &self,
        id: JobId,
    ) -> Result<Vec<(String, Option<String>, String)>, Error> {
        let rows = sqlx::query(
            "SELECT source, idem_key, outcome FROM requests WHERE job_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("source")?,
                    r.try_get("idem_key")?,
                    r.try_get("outcome")?,
                ))
            })
            .collect()
    }

    /// Inserts a cron tick's job: `skipped` when a job of the same schedule is still active.
    /// Returns the insert and whether it was skipped.
    pub async fn insert_scheduled(&self, job: &NewJob) -> Result<(Inserted, bool), Error> {
        let r = self.insert_scheduled_tx(job).await;
        self.observe(r)
    }

    async fn insert_scheduled_tx(&self, job: &NewJob) -> Result<(Inserted, bool), Error> {
        let mut tx = self.write_tx().await?;
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

    /// Claims the most overdue job of one of `kinds` (see [`Store::claim_batch`]).
    pub async fn claim(&self, kinds: &[&str]) -> Result<Option<JobRow>, Error> {
        for kind in kinds {
            if let Some(job) = self.claim_batch(&[(kind, 1)]).await?.pop() {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// Claims due jobs, most overdue first: at most `total`, and at most `limit` of each
    /// `(kind, limit)`, moving them to `running`, in one statement. A claim from `queued` starts a
    /// new attempt (counted; its attempt row is opened by a trigger); a claim from `following` is
    /// a poll. Being one `UPDATE … RETURNING`, two claimers never take the same job.
    pub async fn claim_batch_limited(
        &self,
        limits: &[(&str, usize)],
        total: usize,
    ) -> Result<Vec<JobRow>, Error> {
        let limits: Vec<_> = limits.iter().filter(|(_, n)| *n > 0).collect();
        if limits.is_empty() || total == 0 {
            return Ok(Vec::new());
        }
        let now = now_ms();
        // Numbered throughout: sqlx does not number a bare `?` after `?1` the way SQLite does.
        // Each kind's candidates come from index range scans on (kind, status, next_run_at)
        // capped at its limit, so a claim reads a few rows however long the queue is.
        let per_kind = (0..limits.len())
            .map(|i| {
                let (k, cap) = (3 + 2 * i, 4 + 2 * i);
                let scan = |status: &str| {
                    format!(
                        "SELECT * FROM (SELECT id, next_run_at FROM jobs \
                         WHERE kind = ?{k} AND status = '{status}' AND next_run_at <= ?1 \
                         ORDER BY next_run_at, id LIMIT ?{cap})"
                    )
                };
                format!(
                    "SELECT * FROM (SELECT id, next_run_at FROM ({} UNION ALL {}) \
                     ORDER BY next_run_at, id LIMIT ?{cap})",
                    scan("queued"),
                    scan("following")
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let sql = format!(
            "UPDATE jobs SET status = 'running', claimed_from = status, \
               attempts = attempts + (status = 'queued'), \
               started_at = COALESCE(started_at, ?1), updated_at = ?1 \
             WHERE id IN (SELECT id FROM ({per_kind}) ORDER BY next_run_at, id LIMIT ?2) \
               AND status IN ('queued', 'following') \
             RETURNING {JOB_COLUMNS}"
        );
        let mut q = sqlx::query(&sql).bind(now).bind(total as i64);
        for (kind, cap) in &limits {
            q = q.bind(*kind).bind(*cap as i64);
        }
        let rows = self.observe(
            async {
                let mut tx = self.write_tx().await?;
                let rows = q.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                Ok(rows)
            }
            .await,
        )?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|j| (j.next_run_at, j.id));
        Ok(jobs)
    }

    /// As [`Store::claim_batch_limited`] with no overall limit beyond the per-kind ones.
    pub async fn claim_batch(&self, limits: &[(&str, usize)]) -> Result<Vec<JobRow>, Error> {
        let total = limits.iter().map(|(_, n)| *n).sum();
        self.claim_batch_limited(limits, total).await
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
    /// `None` clears it.
    pub async fn checkpoint(
        &self,
        id: JobId,
        checkpoint: Option<&serde_json::Value>,
        jid: Option<&str>,
    ) -> Result<(), Error> {
        let done = self.observe(
            sqlx::query(
                "UPDATE jobs SET checkpoint = ?, jid = COALESCE(?, jid), updated_at = ? \
                 WHERE id = ? AND status = 'running'",
            )
            .bind(checkpoint.map(|c| c.to_string()))
            .bind(jid)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(Error::from),
        )?;
        if done.rows_affected() == 0 {
            return Err(Error::LostOwnership(id));
        }
        Ok(())
    }

    /// Writes the outcome of a claimed job: the one place that moves a job out of `running`.
    pub async fn settle(&self, job: &JobRow, t: &Transition) -> Result<(), Error> {
        self.settle_many(&[(job.clone(), t.clone())])
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Settles several jobs in one transaction; each gets its own result (a job no longer
    /// running fails alone). If the commit fails, every one fails.
    pub async fn settle_many(&self, items: &[(JobRow, Transition)]) -> Vec<Result<(), Error>> {
        let results = self.settle_many_tx(items).await;
        match results.iter().find_map(|r| r.as_ref().err()) {
            Some(e) if e.is_transient() => self.health.failed(e),
            _ => self.health.ok(),
        }
        results
    }

    async fn settle_many_tx(&self, items: &[(JobRow, Transition)]) -> Vec<Result<(), Error>> {
        let now = now_ms();
        let mut tx = match self.write_tx().await {
            Ok(tx) => tx,
            Err(e) => {
                return items
                    .iter()
                    .map(|_| Err(Error::Sql(clone_sql(&e))))
                    .collect()
            }
        };
        let results = match settle_rows(&mut tx, items, now).await {
            Ok(r) => r,
            Err(e) => {
                // A failed statement: give up on the whole batch.
                let msg = e.to_string();
                drop(tx);
                return items
                    .iter()
                    .map(|_| Err(Error::Sql(sqlx::Error::Protocol(msg.clone()))))
                    .collect();
            }
        };
        if let Err(e) = tx.commit().await {
            return items
                .iter()
                .map(|_| Err(Error::Sql(clone_sql(&e))))
                .collect();
        }
        results
    }

    /// Start-up recovery: jobs left `running` by a process that died go back to what they were
    /// claimed from, due now; their open attempts are closed as `interrupted`.
    pub async fn recover_running(&self) -> Result<u64, Error> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
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

/// The row values one outcome writes: the job's, and its attempt's.
struct Plan<'a> {
    status: &'a str,
    outcome: &'static str,
    next_run: Option<i64>,
    err: Option<&'a ErrorInfo>,
    delay: Option<i64>,
    jid: Option<String>,
    trace: Option<String>,
    result: Option<String>,
    checkpoint: Option<String>,
    finished: Option<i64>,
}

fn plan<'a>(job: &'a JobRow, t: &'a Transition, now: i64) -> Plan<'a> {
    let (status, outcome, next_run, err, delay, jid, trace, result, checkpoint, finished) = match t
    {
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
        // Back to what it was claimed from, due now.
        Transition::Interrupted => (
            job.claimed_from.as_deref().unwrap_or("queued"),
            "interrupted",
            Some(now),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ),
    };
    Plan {
        status,
        outcome,
        next_run,
        err,
        delay,
        jid,
        trace,
        result,
        checkpoint,
        finished,
    }
}

/// Writes a batch of outcomes (one or many) with two statements, one for the jobs and one for
/// their attempts: the one place that moves a job out of `running`. Each job's update is guarded
/// by `status = 'running'`; a job no longer running gets [`Error::LostOwnership`].
async fn settle_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    items: &[(JobRow, Transition)],
    now: i64,
) -> Result<Vec<Result<(), Error>>, Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let plans: Vec<Plan<'_>> = items.iter().map(|(j, t)| plan(j, t, now)).collect();
    let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; items.len()].join(", ");
    let sql = format!(
        "WITH v (id, status, next_run, jid, trace, http_status, error_code, error_msg, result, \
                 checkpoint, finished) AS (VALUES {rows}) \
         UPDATE jobs SET status = v.status, next_run_at = COALESCE(v.next_run, jobs.next_run_at), \
           jid = COALESCE(v.jid, jobs.jid), trace_id = COALESCE(v.trace, jobs.trace_id), \
           http_status = v.http_status, error_code = v.error_code, error_msg = v.error_msg, \
           result = COALESCE(v.result, jobs.result), \
           checkpoint = COALESCE(v.checkpoint, jobs.checkpoint), \
           finished_at = COALESCE(v.finished, jobs.finished_at), updated_at = ? \
         FROM v WHERE jobs.id = v.id AND jobs.status = 'running' RETURNING jobs.id"
    );
    let mut q = sqlx::query_scalar::<_, i64>(&sql);
    for ((job, _), p) in items.iter().zip(&plans) {
        q = q
            .bind(job.id)
            .bind(p.status)
            .bind(p.next_run)
            .bind(p.jid.clone())
            .bind(p.trace.clone())
            .bind(p.err.and_then(|e| e.http_status).map(i64::from))
            .bind(p.err.and_then(|e| e.error_code.clone()))
            .bind(p.err.map(|e| e.error_msg.clone()))
            .bind(p.result.clone())
            .bind(p.checkpoint.clone())
            .bind(p.finished);
    }
    // Positional parameters follow the text: the rows' values, then `updated_at`.
    let settled: std::collections::HashSet<i64> = q
        .bind(now)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
    let attempts: Vec<_> = items
        .iter()
        .zip(&plans)
        .filter(|((job, _), _)| !job.is_poll() && settled.contains(&job.id))
        .collect();
    if !attempts.is_empty() {
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; attempts.len()].join(", ");
        let sql = format!(
            "WITH v (job_id, attempt, outcome, http_status, error_code, error_msg, delay) \
               AS (VALUES {rows}) \
             UPDATE attempts SET finished_at = ?, outcome = v.outcome, \
               http_status = v.http_status, error_code = v.error_code, error_msg = v.error_msg, \
               retry_delay_ms = v.delay \
             FROM v WHERE attempts.job_id = v.job_id AND attempts.attempt = v.attempt"
        );
        let mut q = sqlx::query(&sql);
        for ((job, _), p) in attempts {
            q = q
                .bind(job.id)
                .bind(job.attempts)
                .bind(p.outcome)
                .bind(p.err.and_then(|e| e.http_status).map(i64::from))
                .bind(p.err.and_then(|e| e.error_code.clone()))
                .bind(p.err.map(|e| e.error_msg.clone()))
                .bind(p.delay);
        }
        q.bind(now).execute(&mut **tx).await?;
    }
    Ok(items
        .iter()
        .map(|(job, _)| {
            if settled.contains(&job.id) {
                Ok(())
            } else {
                Err(Error::LostOwnership(job.id))
            }
        })
        .collect())
}

fn clone_sql(e: &sqlx::Error) -> sqlx::Error {
    sqlx::Error::Protocol(e.to_string())
}

async fn insert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    job: &NewJob,
) -> Result<Inserted, Error> {
    let now = now_ms();
    let rejected = job.status == Status::Rejected;
    // A rejected submission does not hold its key, so a corrected resend goes through.
    let key = if rejected {
        None
    } else {
        job.idempotency_key.as_deref()
    };
    let coalescible = job.coalesce && job.status == Status::Queued;
    if key.is_some() || coalescible {
        // One statement for both look-ups: an earlier request with this key, a queued job to join.
        let row = sqlx::query(
            "SELECT (SELECT job_id FROM requests WHERE ?1 IS NOT NULL AND idem_key = ?1) AS dup, \
                    (SELECT id FROM jobs WHERE ?2 AND kind = ?3 AND status = 'queued' \
                       AND params = ?4 ORDER BY id LIMIT 1) AS joinable",
        )
        .bind(key)
        .bind(coalescible)
        .bind(&job.kind)
        .bind(&job.params)
        .fetch_one(&mut **tx)
        .await?;
        if let Some(id) = row.try_get::<Option<i64>, _>("dup")? {
            return Ok(Inserted::Duplicate(id));
        }
        if let Some(id) = row.try_get::<Option<i64>, _>("joinable")? {
            record_request(tx, id, job, key, "coalesced", now).await?;
            return Ok(Inserted::Coalesced(id));
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
    // The job's request row is written by the trigger jobs_record_request.
    Ok(Inserted::New(id))
}

async fn record_request(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    job_id: JobId,
    job: &NewJob,
    key: Option<&str>,
    outcome: &str,
    now: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO requests (job_id, source, idem_key, outcome, received_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(job_id)
    .bind(job.source.as_str())
    .bind(key)
    .bind(outcome)
    .bind(now)
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
