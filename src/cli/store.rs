//! `store vacuum`: give the space of pruned and deleted rows back to the file system.
//! `store copy`: move a SQLite store to PostgreSQL (see [`crate::store::copy`]).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{EXIT_FAILURE, EXIT_INVALID};
use crate::config::{Config, SecretSource, StoreConfig};
use crate::size::format_size;
use crate::store::copy::CopyError;
use crate::store::{shown_url, Store};

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Run VACUUM on the store (it rewrites the file without its free pages, then truncates the
    /// WAL) and say how much it freed. Safe while the daemon runs: it waits for the write lock
    /// (store.busy_timeout) and holds it while it rewrites; on a large store that pauses jobs
    /// for as long, so run it in a quiet hour.
    Vacuum,
    /// Copy the SQLite store at store.path into an empty PostgreSQL database or schema: every
    /// table, with job ids and the audit archive's order kept (the hash chains stay intact),
    /// in one transaction; then compare each table's row count on the target with the source's
    /// and verify the audit archive there as `audit verify` does.
    ///
    /// The source is always the file at store.path, even when store.url is set (so url and
    /// password can be written into the configuration before copying). Stop the daemon first:
    /// the copy reads one consistent snapshot of the file, and jobs written after it are not
    /// copied. The target's tables are created if missing; a target that already holds rows is
    /// refused. The target's password: --password-env or --password-file, else store.password
    /// from the configuration, else none. Put no password in the URL itself (it would stay in
    /// the shell's history); it is never printed.
    ///
    /// Example: codearts-syncd store copy --to postgres://syncd@db.internal:5432/syncd --password-env PGPASSWORD
    Copy(CopyArgs),
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The target: postgres://user@host:port/database (a `?options=-c search_path=…` picks a
    /// schema).
    #[arg(long, value_name = "POSTGRES_URL")]
    pub to: String,
    /// Read the target's password from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "password_file")]
    pub password_env: Option<String>,
    /// Read the target's password from this file (a trailing newline is dropped).
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
}

pub(super) async fn vacuum(cfg: &Config) -> anyhow::Result<u8> {
    let store = Store::open_existing(&cfg.store).await?;
    let done = store.vacuum(&cfg.store.path).await;
    store.close().await;
    let done = done?;
    println!(
        "vacuumed {}: {} -> {} (freed {})",
        cfg.store.path.display(),
        format_size(done.before),
        format_size(done.after),
        format_size(done.before.saturating_sub(done.after))
    );
    Ok(0)
}

pub(super) async fn copy(cfg: &Config, args: CopyArgs) -> anyhow::Result<u8> {
    let shown = shown_url(&args.to);
    match url::Url::parse(&args.to) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
        Ok(u) => {
            eprintln!(
                "error: --to {shown}: not a PostgreSQL URL (scheme {:?}); store copy moves a SQLite store to PostgreSQL: postgres://user@host:port/database",
                u.scheme()
            );
            return Ok(EXIT_INVALID);
        }
        Err(e) => {
            eprintln!("error: --to {shown}: {e}; expected postgres://user@host:port/database");
            return Ok(EXIT_INVALID);
        }
    }
    let password = match (&args.password_env, &args.password_file) {
        (Some(var), _) => Some(SecretSource {
            env: Some(var.clone()),
            file: None,
        }),
        (None, Some(path)) => Some(SecretSource {
            env: None,
            file: Some(std::path::absolute(path)?),
        }),
        (None, None) => cfg.store.password.clone(),
    };
    if let (Some(source), true) = (
        &password,
        args.password_env.is_some() || args.password_file.is_some(),
    ) {
        let option = match args.password_env {
            Some(_) => "--password-env",
            None => "--password-file",
        };
        if let Err(e) = source.resolve(option, std::path::Path::new("/")) {
            eprintln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
    }
    let source_cfg = StoreConfig {
        url: None,
        password: None,
        ..cfg.store.clone()
    };
    let target_cfg = StoreConfig {
        url: Some(args.to.clone()),
        password,
        max_connections: 2,
        ..cfg.store.clone()
    };
    let source = Store::open_existing(&source_cfg).await?;
    let target = match Store::open(&target_cfg).await {
        Ok(t) => t,
        Err(e) => {
            source.close().await;
            return Err(e.into());
        }
    };
    let r = copy_and_verify(cfg, &source, &target, &shown).await;
    source.close().await;
    target.close().await;
    r
}

async fn copy_and_verify(
    cfg: &Config,
    source: &Store,
    target: &Store,
    shown: &str,
) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    println!(
        "copying {} into {shown} (one transaction)",
        cfg.store.path.display()
    );
    let copied = source
        .copy_to(target, |t| {
            println!("  {:<20} {:>10} rows", t.table, t.source)
        })
        .await;
    let report = match copied {
        Ok(r) => r,
        Err(CopyError::NotEmpty { table, rows }) => {
            let what = match table {
                "jobs" => format!("{rows} job(s)"),
                other => format!("{rows} row(s) in {other}"),
            };
            eprintln!(
                "error: {shown} already holds {what}: store copy fills only an empty store, since it keeps every job id and the audit archive's order, which rows already there would collide or interleave with; nothing was copied. Copy into a new database or schema"
            );
            return Ok(EXIT_INVALID);
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("copy into {shown} failed"))),
    };
    let total: i64 = report.tables.iter().map(|t| t.source).sum();
    println!(
        "committed {total} rows in {} tables in {:.1} s",
        report.tables.len(),
        started.elapsed().as_secs_f64()
    );
    let seqs: Vec<String> = report
        .sequences
        .iter()
        .map(|s| format!("{}.{} {}", s.table, s.column, s.last))
        .collect();
    println!("identity sequences continue after: {}", seqs.join(", "));

    // Verified afresh, as the daemon will read the target.
    let counts = target.table_counts().await?;
    let differ: Vec<String> = report
        .tables
        .iter()
        .filter_map(|t| {
            let now = counts
                .iter()
                .find(|(n, _)| *n == t.table)
                .map_or(-1, |c| c.1);
            (now != t.source).then(|| {
                format!(
                    "{} ({} in the source, {now} on the target)",
                    t.table, t.source
                )
            })
        })
        .collect();
    if !differ.is_empty() {
        eprintln!(
            "error: row counts differ after the copy: {}",
            differ.join(", ")
        );
        return Ok(EXIT_FAILURE);
    }
    println!(
        "row counts on the target equal the source's in all {} tables",
        counts.len()
    );
    let v = target.verify_audit().await?;
    match &v.broken {
        None if v.records == 0 => println!("audit archive: no records archived, nothing to verify"),
        None => println!(
            "audit archive on the target intact: {} records in {} streams",
            v.records, v.streams
        ),
        Some(b) => {
            let in_source = match source.verify_audit().await?.broken {
                Some(_) => "it is broken in the source too",
                None => "the source's verifies",
            };
            eprintln!(
                "error: audit archive on the target broken: stream {}/{}: {} ({in_source})",
                b.module, b.repo, b.reason
            );
            return Ok(EXIT_FAILURE);
        }
    }
    println!("to use it: set store.url (and store.password) to the target and start the daemon");
    Ok(0)
}
