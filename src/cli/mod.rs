//! The command line: the clap definitions of the binary and its dispatch. One module per command
//! group holds its arguments and its glue to the library: [`jobs`] (history), [`enqueue`],
//! [`archive`] (storage report, audit verify and export), [`swr`] (`swr shares`), [`check`] (`config check`),
//! [`daemon`] (`run`: signals, reload, drain), [`tools`] (demo, bench, simulate), [`shell`]
//! (completions, man page); [`render`] turns
//! jobs into the tables and JSON views that `jobs` and `demo` print. Exit codes live here.

pub mod archive;
pub mod check;
pub mod daemon;
pub mod enqueue;
pub mod jobs;
pub mod lifecycle;
pub mod render;
pub mod schedules;
pub mod shell;
pub mod store;
pub mod swr;
pub mod tools;
pub mod wait;

pub use archive::{
    AuditCommand, ExportArgs, ExportFormatArg, ReportArgs, StorageCommand, VerifyArgs,
};
pub use check::ConfigCommand;
pub use daemon::wait_for_signal;
pub use enqueue::{parse_params, EnqueueArgs};
pub use jobs::{JobsCommand, ListArgs, ShowArgs};
pub use render::{render_table, table, AttemptView, JobView, RequestView};
pub use tools::{BenchAuditArgs, BenchCommand, DemoArgs, SimulateArgs};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, LogFormat};

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

    /// Log format: `text` for a terminal, `json` for one JSON object per line. This daemon logs
    /// at logging.level (default `info`), other crates at `warn`; RUST_LOG replaces the filter.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: cron schedules, AMQP, the HTTP listener and workers until SIGTERM/SIGINT,
    /// then drain gracefully (in-flight jobs get engine.shutdown_grace to finish; the rest are
    /// re-queued). A second SIGTERM/SIGINT exits at once; SIGHUP reloads schedules, log level and
    /// the TLS certificate.
    Run,
    /// Submit a job into the store (validated first; invalid jobs are recorded as rejected).
    ///
    /// Example: codearts-syncd enqueue remote_mirror --param repository_id=123 --param force_fetch=true
    Enqueue(EnqueueArgs),
    /// Job history.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Cron schedules: list them with their next and last ticks, fire one now, pause, resume.
    #[command(subcommand)]
    Schedules(schedules::SchedulesCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Storage usage that storage_snapshot jobs record.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// SWR reports: `swr shares` (what swr_share_audit jobs recorded).
    #[command(subcommand)]
    Swr(swr::SwrCommand),
    /// The job store itself: `store vacuum`, `store copy --to postgres://…`.
    #[command(subcommand)]
    Store(store::StoreCommand),
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
    /// Print a shell completion script to stdout (bash, zsh, fish, elvish, powershell).
    #[command(after_help = shell::COMPLETIONS_AFTER_HELP)]
    Completions(shell::CompletionsArgs),
    /// Print the man page (roff, section 1) to stdout.
    #[command(after_help = shell::MANPAGE_AFTER_HELP)]
    Manpage,
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let format = cli.log_format.unwrap_or_default();
    match cli.command {
        // Nothing to read: these describe the command line itself.
        Command::Completions(args) => exit(shell::completions(args)),
        Command::Manpage => exit(shell::manpage()),
        Command::Demo(args) => {
            crate::logging::init(format, "warn,lapin=off");
            exit(crate::demo::run(args.keep).await.map(|_| 0))
        }
        Command::Simulate(args) => {
            crate::logging::init(
                format,
                &crate::logging::default_filter(config::LogLevel::Info),
            );
            exit(tools::simulate(args).await.map(|_| 0))
        }
        Command::Bench(BenchCommand::Audit(args)) => {
            crate::logging::init(format, "warn");
            exit(tools::bench_audit(args).await)
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
                Command::Run => exit(daemon::run_daemon(cfg, cli.config).await.map(|_| 0)),
                Command::Enqueue(args) => exit(enqueue::enqueue(&cfg, args).await),
                Command::Jobs(JobsCommand::List(args)) => {
                    exit(jobs::list(&cfg, args).await.map(|_| 0))
                }
                Command::Jobs(JobsCommand::Show(args)) => exit(jobs::show(&cfg, args).await),
                Command::Schedules(c) => exit(schedules::run(&cfg, c).await),
                Command::Jobs(JobsCommand::Cancel(args)) => {
                    exit(lifecycle::cancel_cmd(&cfg, args).await)
                }
                Command::Jobs(JobsCommand::Retry(args)) => {
                    exit(lifecycle::retry_cmd(&cfg, args).await)
                }
                Command::Store(store::StoreCommand::Vacuum) => exit(store::vacuum(&cfg).await),
                Command::Store(store::StoreCommand::Copy(args)) => {
                    exit(store::copy(&cfg, args).await)
                }
                Command::Config(ConfigCommand::Check) => exit(check::check(&cfg)),
                Command::Storage(StorageCommand::Report(args)) => {
                    exit(archive::storage_report(&cfg, args).await)
                }
                Command::Swr(swr::SwrCommand::Shares(args)) => exit(swr::shares(&cfg, args).await),
                Command::Audit(AuditCommand::Verify(args)) => {
                    exit(archive::audit_verify(&cfg, args).await)
                }
                Command::Audit(AuditCommand::Export(args)) => {
                    exit(archive::audit_export(&cfg, args).await)
                }
                Command::Demo(_)
                | Command::Simulate(_)
                | Command::Bench(_)
                | Command::Completions(_)
                | Command::Manpage => {
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
