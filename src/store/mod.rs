//! The SQLite store: the [`Store`] handle, pool setup and migrations, and the store's [`Error`].
//! The only place with SQL.
//!
//! One file per table or concern, each adding its methods to [`Store`]:
//!
//! - [`jobs`]: the job table: inserting (with cron's skip rule), reading, start-up recovery.
//! - [`requests`]: who asked for a job: idempotency keys and coalesced requests.
//! - [`claim`]: workers taking due jobs, in one transaction on a connection of its own.
//! - [`schedules`]: a cron tick's job with its unique slot; each schedule's last slot and pause.
//! - [`settle`]: writing an attempt's outcome and a running job's checkpoint.
//! - [`attempts`]: reading a job's attempts.
//! - [`lifecycle`]: an operator's controls: cancel, replay (`retry_of`), waiting on a key.
//! - [`retention`]: pruning finished jobs in batches, `VACUUM`.
//! - [`purge`], [`archive`], [`storage`]: the Artifact job kinds' tables.
//! - [`health`]: whether the store can write, as the write paths last saw it.
//!
//! Every state transition is a guarded `UPDATE … WHERE id = ? AND status = 'running'`; a write
//! that affects no row means the job was not ours any more, and is reported as
//! [`Error::LostOwnership`] instead of passing silently. A claim holds the write lock and ends in
//! one guarded `UPDATE`, so two workers can never take the same job.

pub mod archive;
pub mod attempts;
pub mod checkpoint;
pub mod claim;
pub mod health;
pub mod jobs;
pub mod lifecycle;
pub mod purge;
pub mod requests;
pub mod retention;
pub mod schedules;
pub mod settle;
pub mod storage;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use tokio::sync::Notify;

pub use attempts::AttemptRow;
pub use jobs::{Inserted, JobRow, ListFilter, NewJob};
pub use schedules::{Fired, ScheduleState};
pub use settle::{ErrorInfo, Transition};

use crate::config::{StoreConfig, Synchronous};
use crate::JobId;

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
    /// The claim statement's own connection (see [`Store::claim_tx`]).
    claims: SqlitePool,
    work: Arc<Notify>,
    health: Arc<health::Health>,
    checkpoints: Arc<checkpoint::Writer>,
    /// Audit pages take turns here before asking SQLite for the write lock (see
    /// [`Store::archive_page`]).
    archive_turn: Arc<tokio::sync::Mutex<()>>,
}

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
        // Claims commit through a connection of their own with synchronous = NORMAL: in WAL
        // mode that is safe from corruption and skips the fsync. A claim needs no durability
        // of its own: until a later (FULL) commit makes it durable — and every commit that
        // precedes an action on the cloud is one — losing it loses nothing, since start-up
        // recovery puts `running` jobs back anyway.
        let claims = SqlitePoolOptions::new()
            .max_connections(1)
            .before_acquire(|conn, _meta| Box::pin(async move { Ok(usable(conn)) }))
            .connect_lazy_with(opts.clone().synchronous(SqliteSynchronous::Normal));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A write that failed at COMMIT (a full disk, say) can leave sqlx believing a
            // transaction is still open on the connection while SQLite already rolled it back;
            // every later `BEGIN IMMEDIATE` on it would then fail. Such a connection is closed
            // instead of being handed out again (the check is an atomic load; the pool has
            // already flushed the connection's pending rollback when it was released).
            .before_acquire(|conn, _meta| Box::pin(async move { Ok(usable(conn)) }))
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
            claims,
            work: Arc::new(Notify::new()),
            health: Arc::new(health::Health::default()),
            checkpoints: Arc::default(),
            archive_turn: Arc::default(),
        })
    }

    /// A write transaction. IMMEDIATE takes the write lock up front, so it waits out another
    /// writer (busy_timeout) instead of failing when a read inside it would need upgrading.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// A claim's write transaction, on the claims' own connection, which commits without
    /// an fsync (see where the pool is made in [`Store::open_with`]).
    async fn claim_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.claims.begin_with("BEGIN IMMEDIATE").await
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

    /// Closes the pool, flushing the WAL.
    pub async fn close(&self) {
        self.claims.close().await;
        self.pool.close().await
    }
}

/// False for a connection sqlx still believes is inside a transaction (see where the pools are
/// made): the pool closes it instead of handing it out.
fn usable(conn: &mut sqlx::SqliteConnection) -> bool {
    let stuck = sqlx::Connection::is_in_transaction(conn);
    if stuck {
        tracing::warn!("closing a store connection left inside a failed transaction");
    }
    !stuck
}
