//! The store: the [`Store`] handle, pool setup and migrations, and the store's [`Error`].
//! The only place with SQL. Two backends behind one handle, through sqlx's `Any` driver: SQLite
//! (one file, the embedded default) and PostgreSQL (`store.url`, shared by a fleet of
//! instances). The statements are written once, with numbered `$N` placeholders both accept;
//! where the two dialects differ, [`Store::pick`] chooses, and [`Backend`] says which one this is.
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
//! - [`instances`]: instances sharing a store: heartbeats, and taking over a silent one's jobs.
//! - [`copy`]: a SQLite store copied into an empty PostgreSQL one (`store copy`), ids kept.
//!
//! Every state transition is a guarded `UPDATE … WHERE id = ? AND status = 'running'`; a write
//! that affects no row means the job was not ours any more, and is reported as
//! [`Error::LostOwnership`] instead of passing silently. A claim holds the write lock and ends in
//! one guarded `UPDATE`, so two workers can never take the same job.

pub mod archive;
pub mod attempts;
pub mod checkpoint;
pub mod claim;
pub mod copy;
pub mod health;
pub mod instances;
pub mod jobs;
pub mod lifecycle;
pub mod purge;
pub mod requests;
pub mod retention;
pub mod schedules;
pub mod settle;
pub mod storage;
pub mod swr_shares;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};
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
    /// True when the database was busy or locked: worth retrying soon. (On PostgreSQL: a
    /// serialization failure, a deadlock, a lock not available.)
    pub fn is_busy(&self) -> bool {
        self.message()
            .is_some_and(|m| m.contains("locked") || m.contains("busy"))
            || matches!(self.code().as_deref(), Some("40001" | "40P01" | "55P03"))
    }

    /// True when a unique index refused a row another writer committed first (on PostgreSQL,
    /// where writers do not take turns for the whole transaction): the transaction is to be
    /// run again, and then finds the row.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self.code().as_deref(), Some("23505"))
    }

    /// The database's error code (SQLSTATE on PostgreSQL), when there is one.
    fn code(&self) -> Option<String> {
        match self {
            Error::Sql(sqlx::Error::Database(e)) => e.code().map(|c| c.into_owned()),
            _ => None,
        }
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
                    || m.contains("terminating connection")
            })
            // PostgreSQL: insufficient resources (disk full, out of memory, too many
            // connections), the server shutting down, a connection that broke.
            || self
                .code()
                .is_some_and(|c| c.starts_with("53") || c.starts_with("57P") || c.starts_with("08"))
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

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a [`Store`] is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One file, one process (the embedded default).
    Sqlite,
    /// A server shared by every instance of a fleet (`store.url = "postgres://…"`).
    Postgres,
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// The claim statement's own connection on SQLite (see [`Store::claim_tx`]); the same pool
    /// as `pool` on PostgreSQL.
    claims: AnyPool,
    backend: Backend,
    /// This process's instance id: the owner written on every job it claims.
    instance: Arc<str>,
    work: Arc<Notify>,
    health: Arc<health::Health>,
    checkpoints: Arc<checkpoint::Writer>,
    /// Audit pages take turns here before asking the database for the write lock (see
    /// [`Store::archive_page`]).
    archive_turn: Arc<tokio::sync::Mutex<()>>,
}

/// How long [`Store::close`] waits for connections still in use.
pub const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Store {
    /// Opens (creating if needed) the database, sets WAL and the pragmas, applies migrations.
    pub async fn open(cfg: &StoreConfig) -> Result<Store, Error> {
        if let Some(url) = cfg.url.as_deref() {
            return Self::open_postgres(cfg, url).await;
        }
        if let Some(dir) = cfg.path.parent() {
            if !dir.as_os_str().is_empty() {
                let _ = std::fs::create_dir_all(dir);
            }
        }
        Self::open_with(&cfg.path, cfg.synchronous, cfg.busy_timeout, true).await
    }

    /// Opens an existing database for a command that only reads: a missing file is
    /// [`Error::Missing`], never created. (A PostgreSQL database is opened as by [`Store::open`].)
    pub async fn open_existing(cfg: &StoreConfig) -> Result<Store, Error> {
        if let Some(url) = cfg.url.as_deref() {
            return Self::open_postgres(cfg, url).await;
        }
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
        sqlx::any::install_default_drivers();
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
        let url = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(create)
            .to_url_lossy();
        let opts = AnyConnectOptions::from_url(&url).map_err(open_err)?;
        let pragmas = |sync: Synchronous| {
            let level = match sync {
                Synchronous::Normal => "NORMAL",
                Synchronous::Full => "FULL",
            };
            format!(
                "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = {level}; \
                 PRAGMA foreign_keys = ON;",
                busy_timeout.as_millis()
            )
        };
        let (main, fast) = (pragmas(sync), pragmas(Synchronous::Normal));
        // One connection first, with the pragmas: a file that is not a database, or is
        // damaged, fails here at once (a pool would keep retrying its connections until its
        // acquire timeout).
        {
            use sqlx::Connection;
            let mut probe = sqlx::AnyConnection::connect_with(&opts)
                .await
                .map_err(open_err)?;
            probe
                .execute(sqlx::AssertSqlSafe(main.clone()))
                .await
                .map_err(open_err)?;
            let _ = probe.close().await;
        }
        // Claims commit through a connection of their own with synchronous = NORMAL: in WAL
        // mode that is safe from corruption and skips the fsync. A claim needs no durability
        // of its own: until a later (FULL) commit makes it durable — and every commit that
        // precedes an action on the cloud is one — losing it loses nothing, since start-up
        // recovery puts `running` jobs back anyway.
        let claims = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _meta| {
                let sql = fast.clone();
                Box::pin(async move {
                    conn.execute(sqlx::AssertSqlSafe(sql)).await?;
                    Ok(())
                })
            })
            .before_acquire(|conn, _meta| Box::pin(async move { Ok(usable(conn)) }))
            .connect_lazy_with(opts.clone());
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _meta| {
                let sql = main.clone();
                Box::pin(async move {
                    conn.execute(sqlx::AssertSqlSafe(sql)).await?;
                    Ok(())
                })
            })
            // A write that failed at COMMIT (a full disk, say) can leave sqlx believing a
            // transaction is still open on the connection while SQLite already rolled it back;
            // every later `BEGIN IMMEDIATE` on it would then fail. Such a connection is closed
            // instead of being handed out again (the check is an atomic load; the pool has
            // already flushed the connection's pending rollback when it was released).
            .before_acquire(|conn, _meta| Box::pin(async move { Ok(usable(conn)) }))
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        if let Err(e) = SQLITE_MIGRATIONS.run(&pool).await {
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
        Ok(Self::new(pool, claims, Backend::Sqlite))
    }

    /// Opens the PostgreSQL database at `url` (the password, when `store.password` names one,
    /// from its secret source), and applies the migrations.
    async fn open_postgres(cfg: &StoreConfig, url: &str) -> Result<Store, Error> {
        sqlx::any::install_default_drivers();
        let shown = shown_url(url);
        let open_err = |source: sqlx::Error| Error::Open {
            path: shown.clone(),
            source,
        };
        let mut parsed = url::Url::parse(url).map_err(|e| Error::Open {
            path: shown.clone(),
            source: sqlx::Error::Configuration(e.to_string().into()),
        })?;
        if let Some(secret) = &cfg.password {
            let password = secret
                .resolve("store.password", &cfg.base_dir)
                .map_err(|e| Error::Open {
                    path: shown.clone(),
                    source: sqlx::Error::Configuration(e.to_string().into()),
                })?;
            use secrecy::ExposeSecret;
            let _ = parsed.set_password(Some(password.expose_secret()));
        }
        let opts = AnyConnectOptions::from_url(&parsed).map_err(open_err)?;
        let pool = AnyPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(cfg.busy_timeout.max(Duration::from_secs(1)))
            // Statements are prepared once per connection. PostgreSQL would soon plan them
            // generically, with the statistics of a table that was empty then (a new store):
            // an archive page's look-up by record id became a full scan, 100 ms a page at
            // 20,000 records. A plan per execution follows the table as it grows.
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET plan_cache_mode = force_custom_plan")
                        .await?;
                    Ok(())
                })
            })
            .before_acquire(|conn, _meta| Box::pin(async move { Ok(usable(conn)) }))
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        if let Err(e) = POSTGRES_MIGRATIONS.run(&pool).await {
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
        Ok(Self::new(pool.clone(), pool, Backend::Postgres))
    }

    fn new(pool: AnyPool, claims: AnyPool, backend: Backend) -> Store {
        Store {
            pool,
            claims,
            backend,
            instance: new_instance_id().into(),
            work: Arc::new(Notify::new()),
            health: Arc::new(health::Health::default()),
            checkpoints: Arc::default(),
            archive_turn: Arc::default(),
        }
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process's instance id (the owner of the jobs it claims).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The statement for this backend, where the dialects differ.
    fn pick(&self, [sqlite, postgres]: [&'static str; 2]) -> &'static str {
        match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        }
    }

    /// A write transaction. On SQLite, IMMEDIATE takes the write lock up front, so it waits
    /// out another writer (busy_timeout) instead of failing when a read inside it would need
    /// upgrading. On PostgreSQL, a plain (read committed) transaction: every transition is a
    /// guarded `UPDATE`, and what must be serialised takes a lock of its own.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// A claim's write transaction, on the claims' own connection on SQLite, which commits
    /// without an fsync (see where the pool is made in [`Store::open_with`]).
    async fn claim_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.claims.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.claims.begin().await,
        }
    }

    /// Runs the transaction `f` again when a unique index refused a row that another instance
    /// committed first (only PostgreSQL lets two writers get that far at once): run again, it
    /// finds that row (a duplicate key, a slot already fired) and answers as if it had been
    /// first to look. A few tries at most.
    async fn again_if_raced<T, F, Fut>(&self, mut f: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut tries = 0;
        loop {
            match f().await {
                Err(e) if e.is_unique_violation() && tries < 3 => tries += 1,
                r => return r,
            }
        }
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

    /// Closes the pool, flushing the WAL. Waits at most [`CLOSE_WAIT`] for connections still
    /// in use to come back: sqlx's close waits for every connection's permit, and one whose
    /// return is lost (seen once, with every task of the process idle) would otherwise hang a
    /// shutdown. Everything committed is already durable; a connection left open only leaves
    /// SQLite's `-wal` file behind until the next open.
    pub async fn close(&self) {
        let closing = async {
            self.claims.close().await;
            self.pool.close().await
        };
        if tokio::time::timeout(CLOSE_WAIT, closing).await.is_err() {
            tracing::warn!(
                waited_s = CLOSE_WAIT.as_secs(),
                in_use = (self.pool.size() as usize).saturating_sub(self.pool.num_idle()),
                "the store's connections did not all come back; closed without them"
            );
        }
    }
}

/// Which backend a transaction talks to, for the functions that are handed one.
pub(super) trait OnBackend {
    fn backend(&self) -> Backend;
}

impl OnBackend for sqlx::Transaction<'_, sqlx::Any> {
    fn backend(&self) -> Backend {
        if (**self).backend_name() == "PostgreSQL" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// `url` with any password replaced, for messages.
pub fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(an unparsable store.url)".to_string(),
    }
}

/// A fresh instance id: host, process and start time, unique across restarts.
fn new_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}:{}", std::process::id(), crate::now_ms())
}

/// `n` numbered placeholders from `$first`, comma-separated: an `IN (…)` list.
pub(super) fn placeholders(n: usize, first: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rows` tuples of `cols` numbered placeholders from `$first`: a multi-row `VALUES`.
pub(super) fn value_rows(rows: usize, cols: usize, first: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(cols, first + r * cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The most rows one multi-row insert carries (SQLite allows 32,766 placeholders, PostgreSQL
/// 65,535; the widest such statement has 15 columns).
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// `n` placeholders for the parameters bound from the `first`-th on, in the order they appear in
/// the statement's text: numbered on PostgreSQL, the anonymous `?` on SQLite, where sqlx looks
/// each numbered placeholder's name up in a list as long as the statement's placeholders
/// (quadratic: a page of 1,000 archived records, 9,000 placeholders, took a second to bind).
/// A statement written with these binds its parameters in the order of its text.
pub(super) fn params_on(backend: Backend, n: usize, first: usize) -> String {
    match backend {
        Backend::Postgres => placeholders(n, first),
        Backend::Sqlite => vec!["?"; n].join(", "),
    }
}

/// As [`value_rows`], with [`params_on`]'s placeholders.
pub(super) fn value_rows_on(backend: Backend, rows: usize, cols: usize, first: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", params_on(backend, cols, first + r * cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ids in a JSON array bound at `$n`, as a subquery, for each backend (see [`Store::pick`]).
macro_rules! json_ids {
    ($before:literal, $n:literal, $after:literal) => {
        [
            concat!($before, "(SELECT value FROM json_each($", $n, "))", $after),
            concat!(
                $before,
                "(SELECT CAST(value AS BIGINT) FROM json_array_elements_text(CAST($",
                $n,
                " AS JSON)))",
                $after
            ),
        ]
    };
}
pub(crate) use json_ids;

/// False for a connection sqlx still believes is inside a transaction (see where the pools are
/// made): the pool closes it instead of handing it out.
fn usable(conn: &mut sqlx::AnyConnection) -> bool {
    let stuck = sqlx::Connection::is_in_transaction(conn);
    if stuck {
        tracing::warn!("closing a store connection left inside a failed transaction");
    }
    !stuck
}
