//! `jobs list` and `jobs show`: the job history, as tables or JSON. `jobs cancel` and `jobs
//! retry` are in [`super::lifecycle`].

use clap::{Args, Subcommand};

use super::render::{render_table, table, JobView};
use super::EXIT_INVALID;
use crate::config::Config;
use crate::store::{ListFilter, Store};
use crate::Status;

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List(ListArgs),
    /// Show one job with its attempts.
    Show(ShowArgs),
    /// Cancel a queued, following or running job (a running attempt is aborted, its request
    /// dropped): final status `cancelled`, with who and when. Cancelling a cancelled job is a
    /// success that says so; any other final job is an error (exit 2) naming its status.
    Cancel(super::lifecycle::CancelArgs),
    /// Replay a failed or cancelled job as a new queued job linked to it (`retry_of`); the old
    /// job is not touched. Without an ID, a bulk replay of up to --limit jobs matching the
    /// filters, oldest first; a bulk replay never takes a replay, nor a job replayed before.
    ///
    /// Examples: codearts-syncd jobs retry 42;
    /// codearts-syncd jobs retry --status failed --kind purge_recycle_bin --since 24h --limit 20
    Retry(super::lifecycle::RetryArgs),
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

pub(super) async fn list(cfg: &Config, args: ListArgs) -> anyhow::Result<()> {
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

pub(super) async fn show(cfg: &Config, args: ShowArgs) -> anyhow::Result<u8> {
    let store = Store::open_existing(&cfg.store).await?;
    let Some(job) = store.get(args.id).await? else {
        eprintln!("error: no job {}", args.id);
        return Ok(EXIT_INVALID);
    };
    let view = super::render::job_detail(&store, &job).await?;
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
    if let Some(schedule) = &view.schedule {
        match &view.slot {
            Some(slot) => println!("  schedule    {schedule}, slot {slot}"),
            None if view.retry_of.is_some() => println!("  schedule    {schedule}"),
            None => println!("  schedule    {schedule}, fired by hand"),
        }
    }
    if let Some(of) = view.retry_of {
        println!("  replay of   job {of}");
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
