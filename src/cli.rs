//! The command line: clap definitions and the glue from each subcommand to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, LogFormat};
use crate::ingress::{self, Submission, Submitted};
use crate::store::{AttemptRow, JobRow, ListFilter, Store};
use crate::{rfc3339, Source, Status};

/// Exit code for invalid input: a bad config, bad parameters, a rejected job.
pub const EXIT_INVALID: u8 = 2;
/// Exit code for a failure to do the work: store, network, simulator.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code when the store is damaged or from a newer version: restarting will not help
/// (the systemd unit lists it in `RestartPreventExitStatus=`).
pub const EXIT_STORE_UNUSABLE: u8 = 3;

/// codearts-syncd: declared, retried, recorded jobs against Huawei Cloud CodeArts.
///
/// Jobs arrive from cron schedules, the CLI (`enqueue`) or AMQP; each is written to the SQLite
/// job table before anything else happens, run by a worker pool with retries and backoff, and
/// recorded with its outcome, its attempts and the job id (jid) the cloud returned.
#[derive(Parser, Debug)]
#[command(name = "codearts-syncd", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML). Every key can be overridden by an environment variable
    /// CODEARTS_SYNCD_<SECTION>__<KEY>, e.g. CODEARTS_SYNCD_ENGINE__CONCURRENCY=4.
    #[arg(long, global = true, env = config::CONFIG_ENV, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,

    /// Log format: `text` for a terminal, `json` for one JSON object per line.
    /// The filter comes from RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: cron schedules and workers until SIGTERM/SIGINT, then drain gracefully
    /// (in-flight jobs get engine.shutdown_grace to finish; the rest are re-queued).
    Run,
    /// Submit a job into the store (validated first; invalid jobs are recorded as rejected).
    ///
    /// Example: codearts-syncd enqueue remote_mirror --param repository_id=123 --param force_fetch=true
    Enqueue(EnqueueArgs),
    /// Job history.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Storage usage that storage_snapshot jobs record.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// The audit archive that audit_mirror jobs fill: verify its hash chains, export it.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Start the bundled simulator and the daemon against it in a temporary directory, run
    /// sample jobs, and print their outcomes.
    Demo(DemoArgs),
    /// Benchmarks against the bundled simulator.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run the bundled CodeArts simulator alone (for trials and your own CI). Its control
    /// routes live under /__sim/ (faults, token expiry, recorded calls).
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
pub struct EnqueueArgs {
    /// Job kind: remote_mirror, purge_recycle_bin, storage_snapshot or audit_mirror.
    pub kind: String,
    /// A parameter as key=value; the value is read as JSON when it parses (123, true,
    /// ["a","b"]), else as a string. Repeat for each parameter.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Idempotency key: a second submission with the same key creates no second job.
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List(ListArgs),
    /// Show one job with its attempts.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this kind.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::jobs::JobKind::names()))]
    pub kind: Option<String>,
    /// Only this status.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Status::ALL.map(Status::as_str)))]
    pub status: Option<String>,
    /// At most this many jobs (0 = all).
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    pub id: i64,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration and print it with secrets redacted; exits non-zero naming
    /// the offending key on error.
    Check,
}

#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Print the latest snapshot and the daily trend; `--svg` also draws the trend.
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Only this repository (its usage and its trend); default the whole project.
    #[arg(long)]
    pub repo: Option<String>,
    /// Days of trend to show.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Also draw the trend as an SVG chart into this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute every stream's SHA-256 chain; exits 1 naming the first broken link.
    Verify(VerifyArgs),
    /// Stream the archive (oldest archived first) as JSON Lines or CSV.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Export formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ExportFormatArg {
    /// One JSON object per line: the record verbatim plus archive fields.
    Jsonl,
    /// A header row, then the archive fields and every audit field as columns.
    Csv,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormatArg,
    /// Only this repository id.
    #[arg(long)]
    pub repo: Option<String>,
    /// Only records whose time is at or after this: YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS" (the
    /// time as the API reports it).
    #[arg(long)]
    pub since: Option<String>,
    /// Write here instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the temporary directory (database, config) and print its path.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Mirror N audit records from the simulator into a fresh archive; print records/s and
    /// peak RSS. Run once per size: the peak is per process.
    Audit(BenchAuditArgs),
}

#[derive(Args, Debug)]
pub struct BenchAuditArgs {
    /// Audit records in the simulated log.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Records per page (1..=1000).
    #[arg(long, default_value_t = 1000)]
    pub page_size: u32,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Address to listen on, e.g. 127.0.0.1:18080.
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: std::net::SocketAddr,
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let format = cli.log_format.unwrap_or_default();
    match cli.command {
        Command::Demo(args) => {
            crate::logging::init(format, "warn,lapin=off");
            exit(crate::demo::run(args.keep).await.map(|_| 0))
        }
        Command::Simulate(args) => {
            crate::logging::init(
                format,
                &crate::logging::default_filter(config::LogLevel::Info),
            );
            exit(simulate(args).await.map(|_| 0))
        }
        Command::Bench(BenchCommand::Audit(args)) => {
            crate::logging::init(format, "warn");
            exit(bench_audit(args).await)
        }
        command => {
            // Every command refuses what `config check` refuses of the values (the schedules
            // included); only `run` and `config check` also read the secrets.
            let loaded = Config::load(&cli.config)
                .and_then(|c| crate::daemon::checks::check_values(&c).map(|()| c));
            let cfg = match loaded {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_INVALID);
                }
            };
            // The daemon starts only with a configuration `config check` accepts: a secret
            // that does not resolve is refused here, by key, not by every job it would fail.
            if matches!(command, Command::Run) {
                if let Err(e) = crate::daemon::checks::check_config(&cfg) {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_INVALID);
                }
            }
            crate::logging::init(
                cli.log_format.unwrap_or(cfg.logging.format),
                &crate::logging::default_filter(cfg.logging.level),
            );
            match command {
                Command::Run => exit(run_daemon(cfg, cli.config).await.map(|_| 0)),
                Command::Enqueue(args) => exit(enqueue(&cfg, args).await),
                Command::Jobs(JobsCommand::List(args)) => exit(list(&cfg, args).await.map(|_| 0)),
                Command::Jobs(JobsCommand::Show(args)) => exit(show(&cfg, args).await),
                Command::Config(ConfigCommand::Check) => exit(check(&cfg)),
                Command::Storage(StorageCommand::Report(args)) => {
                    exit(storage_report(&cfg, args).await)
                }
                Command::Audit(AuditCommand::Verify(args)) => exit(audit_verify(&cfg, args).await),
                Command::Audit(AuditCommand::Export(args)) => exit(audit_export(&cfg, args).await),
                Command::Demo(_) | Command::Simulate(_) | Command::Bench(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

fn exit(r: anyhow::Result<u8>) -> ExitCode {
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then drains it (see [`crate::daemon::run`]).
///
/// - A second SIGTERM or SIGINT during the drain exits at once, with 128 + the signal's number
///   as a shell reports a process that signal ended: 143 for SIGTERM, 130 for SIGINT. Nothing
///   more is written: jobs still running stay `running` in the store, exactly as after SIGKILL,
///   and the next start re-queues them (a `remote_mirror` job that had started its sync resumes
///   from its checkpoint).
/// - SIGHUP reloads the schedules and `logging.level` from the same file (`--config`, or
///   `CODEARTS_SYNCD_CONFIG`); see [`crate::daemon::Reload`].
async fn run_daemon(cfg: Config, path: PathBuf) -> anyhow::Result<()> {
    /// Exit statuses of a second shutdown signal: 128 + SIGINT (2), 128 + SIGTERM (15).
    const EXIT_SECOND_SIGINT: i32 = 130;
    const EXIT_SECOND_SIGTERM: i32 = 143;

    let shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel::<()>(1);

    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Registered before anything else runs: from here on SIGHUP no longer ends the process.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let (name, status) = tokio::select! {
                    Some(()) = term.recv() => ("SIGTERM", EXIT_SECOND_SIGTERM),
                    Some(()) = int.recv() => ("SIGINT", EXIT_SECOND_SIGINT),
                    Some(()) = hup.recv() => {
                        if shutdown.is_cancelled() {
                            tracing::info!("SIGHUP ignored: shutting down");
                        } else {
                            // A full channel means a reload is already pending; it reads the
                            // file as it is then, so this request is served by it.
                            let _ = reload_tx.try_send(());
                        }
                        continue;
                    }
                    else => break,
                };
                if !shutdown.is_cancelled() {
                    tracing::info!(
                        signal = name,
                        "shutdown signal received: no new jobs will be claimed; send SIGTERM or SIGINT again to exit at once"
                    );
                    shutdown.cancel();
                } else {
                    tracing::warn!(
                        signal = name,
                        exit_status = status,
                        "second shutdown signal: exiting now without waiting for running jobs; they stay recorded as running and are re-queued at the next start"
                    );
                    std::process::exit(status);
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        drop(reload_tx);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown signal received: no new jobs will be claimed; press Ctrl-C again to exit at once");
            shutdown.cancel();
            let _ = tokio::signal::ctrl_c().await;
            tracing::warn!(
                "second shutdown signal: exiting now; running jobs are re-queued at the next start"
            );
            std::process::exit(EXIT_SECOND_SIGINT);
        });
    }

    let reload = crate::daemon::Reload {
        path,
        requests: reload_rx,
    };
    crate::daemon::run(cfg, shutdown, Some(reload))
        .await
        .map_err(|e| match e {
            // The store's own error, so that the exit status can tell an unusable store.
            crate::daemon::Error::Store(e) => anyhow::Error::new(e),
            e => anyhow::Error::new(e),
        })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Parses `key=value` parameters into a JSON object; the value is JSON when it parses.
pub fn parse_params(pairs: &[String]) -> Result<Value, String> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("--param {pair:?}: expected KEY=VALUE"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("--param {pair:?}: the key is empty"));
        }
        let value = serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.into()));
        if map.insert(k.to_string(), value).is_some() {
            return Err(format!("--param {k}: given twice"));
        }
    }
    Ok(Value::Object(map))
}

async fn enqueue(cfg: &Config, args: EnqueueArgs) -> anyhow::Result<u8> {
    let params = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    if cfg.amqp.is_some() {
        // Check here so a bad job fails fast with its reason instead of a dead letter.
        let check = ingress::prepare(
            cfg,
            Submission {
                kind: args.kind.clone(),
                params: params.clone(),
                source: Source::Cli,
                key: args.key.clone(),
                schedule: None,
            },
        );
        if let Some(reason) = check.rejection {
            eprintln!("error: rejected: {reason} (nothing was published)");
            return Ok(EXIT_INVALID);
        }
        return match ingress::amqp::publish(cfg, &args.kind, &params, args.key.as_deref()).await {
            Ok(()) => {
                println!(
                    "published to exchange {:?}; the broker confirmed it",
                    cfg.amqp.as_ref().map(|a| a.exchange.as_str()).unwrap_or("")
                );
                Ok(0)
            }
            Err(e) => {
                eprintln!("error: not submitted: {e}");
                Ok(EXIT_FAILURE)
            }
        };
    }
    let store = Store::open(&cfg.store).await?;
    let sub = Submission {
        kind: args.kind,
        params,
        source: Source::Cli,
        key: args.key,
        schedule: None,
    };
    let outcome = ingress::submit(&store, cfg, sub).await?;
    store.close().await;
    Ok(match outcome {
        Submitted::Queued(id) => {
            println!("queued job {id}");
            0
        }
        Submitted::Duplicate(id) => {
            println!("duplicate key: job {id} already exists; nothing added");
            0
        }
        Submitted::Coalesced(id) => {
            println!("joined queued job {id} (same kind and parameters)");
            0
        }
        Submitted::Skipped(id) => {
            println!("skipped (recorded as job {id})");
            0
        }
        Submitted::Rejected { id, reason } => {
            eprintln!("error: rejected: {reason} (recorded as job {id})");
            EXIT_INVALID
        }
    })
}

/// A job as `jobs list --json` and `jobs show --json` print it (times RFC 3339, UTC).
#[derive(Serialize)]
pub struct JobView {
    pub id: i64,
    pub kind: String,
    pub source: String,
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub jid: Option<String>,
    pub trace_id: Option<String>,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub next_run_at: Option<String>,
    pub params: Value,
    pub result: Option<Value>,
    pub idempotency_key: Option<String>,
    pub schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptView>>,
    /// The submissions this job served (`jobs show`): its own, and any that joined it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<Vec<RequestView>>,
    /// For `purge_recycle_bin` jobs in `jobs show`: every item and what became of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_items: Option<Vec<crate::store::purge::PurgeItemRow>>,
}

/// One submission served by a job.
#[derive(Serialize)]
pub struct RequestView {
    pub source: String,
    pub key: Option<String>,
    /// `new`, `coalesced` or `rejected`.
    pub outcome: String,
}

/// One attempt as printed.
#[derive(Serialize)]
pub struct AttemptView {
    pub attempt: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub retry_delay_ms: Option<i64>,
}

impl From<&JobRow> for JobView {
    fn from(j: &JobRow) -> JobView {
        let waiting = matches!(j.status(), Some(Status::Queued | Status::Following));
        JobView {
            id: j.id,
            kind: j.kind.clone(),
            source: j.source.clone(),
            status: j.status.clone(),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            jid: j.jid.clone(),
            trace_id: j.trace_id.clone(),
            http_status: j.http_status,
            error_code: j.error_code.clone(),
            error_msg: j.error_msg.clone(),
            created_at: rfc3339(j.created_at),
            started_at: j.started_at.map(rfc3339),
            finished_at: j.finished_at.map(rfc3339),
            next_run_at: waiting.then(|| rfc3339(j.next_run_at)),
            params: j.params.clone(),
            result: j.result.clone(),
            idempotency_key: j.idempotency_key.clone(),
            schedule: j.schedule.clone(),
            attempt_log: None,
            requests: None,
            purge_items: None,
        }
    }
}

impl From<&AttemptRow> for AttemptView {
    fn from(a: &AttemptRow) -> AttemptView {
        AttemptView {
            attempt: a.attempt,
            started_at: rfc3339(a.started_at),
            finished_at: a.finished_at.map(rfc3339),
            outcome: a.outcome.clone(),
            http_status: a.http_status,
            error_code: a.error_code.clone(),
            error_msg: a.error_msg.clone(),
            retry_delay_ms: a.retry_delay_ms,
        }
    }
}

async fn list(cfg: &Config, args: ListArgs) -> anyhow::Result<()> {
    let store = Store::open_existing(&cfg.store).await?;
    let jobs = store
        .list(&ListFilter {
            kind: args.kind,
            status: args.status,
            limit: args.limit,
        })
        .await?;
    let views: Vec<JobView> = jobs.iter().map(JobView::from).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&views)?);
    } else {
        print!("{}", table(&views));
    }
    Ok(())
}

/// The human table of jobs.
pub fn table(jobs: &[JobView]) -> String {
    let header = [
        "ID",
        "KIND",
        "SOURCE",
        "STATUS",
        "ATTEMPTS",
        "CREATED",
        "JID / ERROR",
    ];
    let rows: Vec<[String; 7]> = jobs
        .iter()
        .map(|j| {
            let detail = match (&j.jid, &j.error_code) {
                (_, Some(code)) if j.status != "succeeded" => format!(
                    "{code}: {}",
                    j.error_msg
                        .as_deref()
                        .unwrap_or("")
                        .chars()
                        .take(80)
                        .collect::<String>()
                ),
                (Some(jid), _) => jid.clone(),
                _ if j.result.as_ref().and_then(|r| r.get("start_answer"))
                    == Some(&Value::from("lost")) =>
                {
                    "jid unknown: the start's answer was lost".to_string()
                }
                _ => String::new(),
            };
            [
                j.id.to_string(),
                j.kind.clone(),
                j.source.clone(),
                j.status.clone(),
                format!("{}/{}", j.attempts, j.max_attempts),
                j.created_at.clone(),
                detail,
            ]
        })
        .collect();
    render_table(&header, &rows)
}

/// Renders rows under a header with columns padded to their widest cell.
pub fn render_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

async fn show(cfg: &Config, args: ShowArgs) -> anyhow::Result<u8> {
    let store = Store::open_existing(&cfg.store).await?;
    let Some(job) = store.get(args.id).await? else {
        eprintln!("error: no job {}", args.id);
        return Ok(EXIT_INVALID);
    };
    let attempts = store.attempts(args.id).await?;
    let mut view = JobView::from(&job);
    view.attempt_log = Some(attempts.iter().map(AttemptView::from).collect());
    view.requests = Some(
        store
            .requests_of(args.id)
            .await?
            .into_iter()
            .map(|(source, key, outcome)| RequestView {
                source,
                key,
                outcome,
            })
            .collect(),
    );
    if job.kind == crate::jobs::JobKind::PurgeRecycleBin.as_str() {
        view.purge_items = Some(store.purge_items(job.id).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(0);
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("job {} ({}, from {})", view.id, view.kind, view.source);
    println!("  status      {}", view.status);
    println!("  attempts    {}/{}", view.attempts, view.max_attempts);
    println!("  jid         {}", opt(&view.jid));
    println!("  trace id    {}", opt(&view.trace_id));
    if view.error_code.is_some() || view.error_msg.is_some() {
        println!(
            "  error       {} {}{}",
            opt(&view.error_code),
            opt(&view.error_msg),
            view.http_status
                .map(|s| format!(" (HTTP {s})"))
                .unwrap_or_default()
        );
    }
    println!("  created     {}", view.created_at);
    println!("  started     {}", opt(&view.started_at));
    println!("  finished    {}", opt(&view.finished_at));
    if let Some(next) = &view.next_run_at {
        println!("  next run    {next}");
    }
    println!("  params      {}", view.params);
    if let Some(r) = &view.result {
        println!("  result      {r}");
    }
    if let Some(reqs) = view.requests.as_ref().filter(|r| r.len() > 1) {
        let joined = reqs.iter().filter(|r| r.outcome == "coalesced").count();
        println!("  requests    {} ({joined} joined this job)", reqs.len());
    }
    if let Some(log) = &view.attempt_log {
        let rows: Vec<[String; 6]> = log
            .iter()
            .map(|a| {
                [
                    a.attempt.to_string(),
                    a.started_at.clone(),
                    opt(&a.outcome),
                    a.http_status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                    a.retry_delay_ms
                        .map(|d| format!("{d} ms"))
                        .unwrap_or_else(|| "-".into()),
                    match (&a.error_code, &a.error_msg) {
                        (Some(c), Some(m)) => format!("{c}: {m}"),
                        (None, Some(m)) => m.clone(),
                        _ => String::new(),
                    },
                ]
            })
            .collect();
        println!();
        print!(
            "{}",
            render_table(
                &["ATTEMPT", "STARTED", "OUTCOME", "HTTP", "NEXT IN", "ERROR"],
                &rows
            )
        );
    }
    if let Some(items) = view.purge_items.as_ref().filter(|i| !i.is_empty()) {
        let rows: Vec<[String; 5]> = items
            .iter()
            .map(|i| {
                [
                    i.batch.map_or("-".into(), |b| b.to_string()),
                    i.outcome.clone(),
                    i.format.clone(),
                    i.uri.clone(),
                    i.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        println!();
        print!(
            "{}",
            render_table(&["BATCH", "OUTCOME", "FORMAT", "URI", "MESSAGE"], &rows)
        );
    }
    Ok(0)
}

async fn storage_report(cfg: &Config, args: ReportArgs) -> anyhow::Result<u8> {
    use crate::size::format_size;
    if args.days == 0 {
        eprintln!("error: --days must be at least 1");
        return Ok(EXIT_INVALID);
    }
    let store = Store::open_existing(&cfg.store).await?;
    let snapshot = store.latest_snapshot().await?;
    let trend = store
        .storage_trend(args.repo.as_deref().unwrap_or(""), args.days)
        .await?;
    store.close().await;
    let Some(snap) = snapshot else {
        eprintln!("error: no storage snapshot yet; run a storage_snapshot job first");
        return Ok(EXIT_INVALID);
    };
    let repos: Vec<_> = snap
        .repos
        .iter()
        .filter(|r| args.repo.as_deref().is_none_or(|id| r.repo_id == id))
        .collect();
    if let Some(id) = &args.repo {
        if repos.is_empty() && trend.is_empty() {
            eprintln!("error: --repo {id}: not in the latest snapshot and no trend recorded");
            return Ok(EXIT_INVALID);
        }
    }
    if let Some(path) = &args.svg {
        let title = match &args.repo {
            Some(id) => format!("storage used: {id}"),
            None => "storage used: whole project".to_string(),
        };
        crate::chart::trend_svg(&trend, &title, path)?;
        eprintln!("trend chart written to {}", path.display());
    }
    if args.json {
        let v = serde_json::json!({
            "snapshot": {
                "id": snap.id,
                "taken_at": rfc3339(snap.taken_at),
                "total_bytes": snap.total_bytes,
                "total_storage": snap.total_text,
                "total_count": snap.total_count,
            },
            "repos": repos,
            "trend": trend,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "snapshot {} taken {}: total {} ({} bytes, API: {:?}), {} files",
        snap.id,
        rfc3339(snap.taken_at),
        format_size(snap.total_bytes.max(0) as u64),
        snap.total_bytes,
        snap.total_text,
        snap.total_count.map_or("-".into(), |c| c.to_string())
    );
    let rows: Vec<[String; 5]> = repos
        .iter()
        .map(|r| {
            [
                r.repo_id.clone(),
                r.format.clone().unwrap_or_default(),
                r.used_bytes.to_string(),
                r.used_text.clone(),
                r.files_count.map_or("-".into(), |c| c.to_string()),
            ]
        })
        .collect();
    println!();
    print!(
        "{}",
        render_table(
            &["REPOSITORY", "FORMAT", "BYTES", "API SIZE", "FILES"],
            &rows
        )
    );
    let rows: Vec<[String; 4]> = trend
        .iter()
        .map(|t| {
            [
                t.day.clone(),
                t.used_bytes.to_string(),
                format_size(t.used_bytes.max(0) as u64),
                t.files_count.map_or("-".into(), |c| c.to_string()),
            ]
        })
        .collect();
    println!();
    println!(
        "trend ({}), last {} days:",
        args.repo.as_deref().unwrap_or("whole project"),
        args.days
    );
    print!(
        "{}",
        render_table(&["DAY", "BYTES", "SIZE", "FILES"], &rows)
    );
    Ok(0)
}

async fn audit_verify(cfg: &Config, args: VerifyArgs) -> anyhow::Result<u8> {
    let store = Store::open_existing(&cfg.store).await?;
    let v = store.verify_audit().await?;
    store.close().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    // "intact, 0 records" would pass a check that verified nothing.
    if v.records == 0 && v.broken.is_none() {
        eprintln!(
            "error: no audit records archived yet in {}; nothing to verify (run an audit_mirror job first)",
            cfg.store.path.display()
        );
        return Ok(EXIT_FAILURE);
    }
    match &v.broken {
        None => {
            if !args.json {
                println!(
                    "audit archive intact: {} records in {} streams",
                    v.records, v.streams
                );
            }
            Ok(0)
        }
        Some(b) => {
            let at = match (&b.record_id, b.seq) {
                (Some(id), Some(seq)) => format!("record {id} (archive seq {seq})"),
                (None, Some(seq)) => format!("after archive seq {seq}"),
                _ => "its head".to_string(),
            };
            eprintln!(
                "error: audit archive broken: stream {}/{}: {at}: {} ({} records verified before it)",
                b.module, b.repo, b.reason, v.records
            );
            Ok(EXIT_FAILURE)
        }
    }
}

/// Checks `--since` and normalises it to the archive's `YYYY-MM-DD HH:MM:SS` form.
pub fn parse_since(s: &str) -> Result<String, String> {
    let t = s.trim().replace('T', " ");
    if chrono::NaiveDate::parse_from_str(&t, "%Y-%m-%d").is_ok() {
        return Ok(t);
    }
    if chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S").is_ok() {
        return Ok(t);
    }
    Err(format!(
        "--since {s:?}: expected YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\""
    ))
}

async fn audit_export(cfg: &Config, args: ExportArgs) -> anyhow::Result<u8> {
    use crate::store::archive::{ExportFilter, ExportFormat};
    let since = match args.since.as_deref().map(parse_since).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    let format = match args.format {
        ExportFormatArg::Jsonl => ExportFormat::Jsonl,
        ExportFormatArg::Csv => ExportFormat::Csv,
    };
    let filter = ExportFilter {
        repo: args.repo,
        since,
    };
    let store = Store::open_existing(&cfg.store).await?;
    let n = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("--output {}: {e}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            store.export_audit(&filter, format, &mut w).await?
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout());
            store.export_audit(&filter, format, &mut w).await?
        }
    };
    store.close().await;
    eprintln!("exported {n} records");
    Ok(0)
}

fn check(cfg: &Config) -> anyhow::Result<u8> {
    print!("{}", cfg.to_redacted_toml());
    if let Err(e) = crate::daemon::checks::check_config(cfg) {
        eprintln!("error: {e}");
        return Ok(EXIT_INVALID);
    }
    eprintln!("configuration is valid");
    Ok(0)
}

async fn bench_audit(args: BenchAuditArgs) -> anyhow::Result<u8> {
    if args.records == 0 {
        eprintln!("error: --records must be at least 1");
        return Ok(EXIT_INVALID);
    }
    if !(1..=crate::jobs::audit_mirror::MAX_PAGE_SIZE).contains(&args.page_size) {
        eprintln!(
            "error: --page-size must be in 1..={}",
            crate::jobs::audit_mirror::MAX_PAGE_SIZE
        );
        return Ok(EXIT_INVALID);
    }
    let b = crate::bench::audit(args.records, args.page_size).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&b)?);
    } else {
        println!(
            "audit_mirror: {} records in {} pages of {} in {:.2} s = {:.0} records/s; peak RSS {}",
            b.records,
            b.pages,
            b.page_size,
            b.seconds,
            b.records_per_second,
            b.peak_rss_kib
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "unknown".into())
        );
    }
    Ok(0)
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let sim = crate::sim::Simulator::new(crate::sim::SimConfig::default());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!("simulator listening on http://{addr} (control routes under /__sim/)");
    sim.serve(listener, wait_for_signal()).await?;
    Ok(())
}

/// The exit code for an error, from the first cause that decides it: a configuration error or
/// a missing store is invalid input (2); a damaged store or one from a newer version cannot be
/// used as it is, and a restart will not help (3); anything else is a failure to do the work (1).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(s) = cause.downcast_ref::<crate::store::Error>() {
            if s.is_unusable() {
                return EXIT_STORE_UNUSABLE;
            }
            if matches!(s, crate::store::Error::Missing { .. }) {
                return EXIT_INVALID;
            }
        }
        if cause.downcast_ref::<config::Error>().is_some() {
            return EXIT_INVALID;
        }
    }
    EXIT_FAILURE
}

/// An error and its causes on one line, each cause once: many error types print their source
/// inside their own message and also return it as `source()`, so a cause whose text is already
/// on the line is left out.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
