//! `jobs cancel` and `jobs retry` (one job, or a bulk replay): the answers the CLI prints and
//! the operator API returns (`POST /jobs/{id}/cancel`, `/jobs/{id}/retry`, `/jobs/retry`) come
//! from here, so the two say the same thing.

use clap::Args;
use serde_json::{json, Value};

use super::EXIT_INVALID;
use crate::config::Config;
use crate::jobs::{self, JobKind};
use crate::store::lifecycle::{Cancel, Replay, ReplayFilter, REPLAYABLE};
use crate::store::{self, Store};
use crate::{now_ms, JobId, Source, Status};

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The job to cancel (queued, following or running).
    pub id: JobId,
    /// JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// `jobs retry ID`, or a bulk replay with `--limit`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["id", "limit"])))]
pub struct RetryArgs {
    /// The job to replay (failed or cancelled). Without it, a bulk replay: give --limit.
    #[arg(conflicts_with_all = ["status", "kind", "since", "schedule", "limit"])]
    pub id: Option<JobId>,
    /// Bulk: replay jobs with this status.
    #[arg(long, default_value = "failed", value_parser = clap::builder::PossibleValuesParser::new(REPLAYABLE.map(Status::as_str)))]
    pub status: String,
    /// Bulk: only this kind.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(JobKind::names()))]
    pub kind: Option<String>,
    /// Bulk: only jobs that finished since then: a duration ago (`24h`, `7d`), an RFC 3339
    /// time, or a date (`2026-11-27`, midnight UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Bulk: only jobs of this cron schedule.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Bulk: replay at most this many jobs (oldest first).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub limit: Option<i64>,
    /// JSON instead of lines of text.
    #[arg(long)]
    pub json: bool,
}

/// How an answer ends: the CLI's exit code and the API's HTTP status follow from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Done,
    NotFound,
    /// The job is in a state that does not allow it.
    Conflict,
    /// The request itself is wrong.
    Invalid,
}

/// What a lifecycle command answers: a verdict, the text a person reads, the JSON body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub verdict: Verdict,
    pub text: String,
    pub body: Value,
}

impl Answer {
    fn refused(verdict: Verdict, text: String) -> Answer {
        Answer {
            verdict,
            body: json!({ "error": text }),
            text,
        }
    }

    /// The HTTP status the operator API answers with.
    pub fn http_status(&self) -> u16 {
        match self.verdict {
            Verdict::Done => 200,
            Verdict::NotFound => 404,
            Verdict::Conflict => 409,
            Verdict::Invalid => 400,
        }
    }
}

/// Cancels job `id` on behalf of `who`.
pub async fn cancel(store: &Store, id: JobId, who: &str) -> Result<Answer, store::Error> {
    Ok(match store.cancel(id, who).await? {
        Cancel::Cancelled { was } => {
            let text = match was {
                Status::Running => format!(
                    "cancelled job {id} (was running; its attempt is dropped within a second)"
                ),
                _ => format!("cancelled job {id} (was {was})"),
            };
            Answer {
                verdict: Verdict::Done,
                body: json!({"id": id, "outcome": "cancelled", "was": was.as_str(), "message": text}),
                text,
            }
        }
        Cancel::AlreadyCancelled { msg } => {
            let text = format!(
                "job {id} was already cancelled ({}); nothing changed",
                msg.as_deref().unwrap_or("no details")
            );
            Answer {
                verdict: Verdict::Done,
                body: json!({"id": id, "outcome": "already_cancelled", "message": text}),
                text,
            }
        }
        Cancel::Final(status) => Answer::refused(
            Verdict::Conflict,
            format!(
                "job {id} is already {status}, which is final; only queued, following or \
                 running jobs can be cancelled"
            ),
        ),
        Cancel::NotFound => Answer::refused(Verdict::NotFound, format!("no job {id}")),
    })
}

/// Replays job `id` as a new queued job linked to it.
pub async fn retry_one(
    store: &Store,
    cfg: &Config,
    id: JobId,
    source: Source,
) -> Result<Answer, store::Error> {
    // A job whose parameters no longer fit the configuration (a removed credential profile,
    // say) would only fail again: refuse it here, naming why.
    if let Some(job) = store.get(id).await? {
        if let Some(kind) = JobKind::parse(&job.kind) {
            if job.status() != Some(Status::Rejected) {
                if let Err(e) = jobs::validate(kind, &job.params, cfg) {
                    return Ok(Answer::refused(
                        Verdict::Conflict,
                        format!(
                            "job {id} cannot be replayed: its parameters no longer validate: {e}"
                        ),
                    ));
                }
            }
        }
    }
    Ok(
        match store.replay(id, source, cfg.retry.max_attempts).await? {
            Replay::Replayed(new) => {
                let text = format!("replayed job {id} as job {new}");
                Answer {
                    verdict: Verdict::Done,
                    body: json!({"id": id, "new_id": new, "message": text}),
                    text,
                }
            }
            Replay::NotFound => Answer::refused(Verdict::NotFound, format!("no job {id}")),
            Replay::Refused(why) => {
                Answer::refused(Verdict::Conflict, format!("cannot replay: {why}"))
            }
        },
    )
}

/// The filters of a bulk replay, as the CLI and the API take them.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    #[serde(default = "failed")]
    pub status: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub schedule: Option<String>,
    pub limit: i64,
}

fn failed() -> String {
    "failed".into()
}

/// Replays up to `req.limit` matching jobs (see [`Store::replay_many`] for which are taken).
pub async fn retry_bulk(
    store: &Store,
    cfg: &Config,
    req: &BulkRequest,
    source: Source,
) -> Result<Answer, store::Error> {
    if !REPLAYABLE.iter().any(|s| s.as_str() == req.status) {
        return Ok(Answer::refused(
            Verdict::Invalid,
            format!(
                "status {:?}: a bulk replay takes {} jobs (rejected ones cannot be replayed: \
                 their parameters were invalid)",
                req.status,
                REPLAYABLE.map(Status::as_str).join(" or ")
            ),
        ));
    }
    if let Some(k) = req.kind.as_deref().filter(|k| JobKind::parse(k).is_none()) {
        return Ok(Answer::refused(
            Verdict::Invalid,
            format!(
                "kind {k:?}: unknown (known: {})",
                JobKind::names().join(", ")
            ),
        ));
    }
    if !(1..=10_000).contains(&req.limit) {
        return Ok(Answer::refused(
            Verdict::Invalid,
            format!("limit {}: must be in 1..=10000", req.limit),
        ));
    }
    let since = match req.since.as_deref().map(parse_since).transpose() {
        Ok(s) => s,
        Err(why) => return Ok(Answer::refused(Verdict::Invalid, format!("since: {why}"))),
    };
    let filter = ReplayFilter {
        status: req.status.clone(),
        kind: req.kind.clone(),
        since,
        schedule: req.schedule.clone(),
        limit: req.limit,
    };
    let done = store
        .replay_many(&filter, source, cfg.retry.max_attempts)
        .await?;
    let mut lines: Vec<String> = done
        .jobs
        .iter()
        .map(|(old, new)| format!("job {old} -> job {new}"))
        .collect();
    let mut summary = format!(
        "replayed {} {} job{}",
        done.jobs.len(),
        req.status,
        if done.jobs.len() == 1 { "" } else { "s" }
    );
    if done.left > 0 {
        summary.push_str(&format!(
            "; {} more matched and were left for a later run (--limit {})",
            done.left, req.limit
        ));
    }
    summary.push_str(
        " (a bulk replay never takes a replay, nor a job replayed before; replay those by id)",
    );
    lines.push(summary.clone());
    Ok(Answer {
        verdict: Verdict::Done,
        body: json!({
            "replayed": done.jobs.iter().map(|(o, n)| json!({"id": o, "new_id": n})).collect::<Vec<_>>(),
            "left": done.left,
            "message": summary,
        }),
        text: lines.join("\n"),
    })
}

/// `--since`: a duration ago (`24h`), an RFC 3339 time, or a date (midnight UTC); store ms.
pub fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms() - d.as_millis() as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    Err(format!(
        "{s:?} is neither a duration ago (24h, 7d), an RFC 3339 time nor a date (YYYY-MM-DD)"
    ))
}

/// Who a cancel from the command line is recorded as.
fn cli_user() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(u) if !u.is_empty() => format!("cli (user {u})"),
        _ => "cli".into(),
    }
}

fn print(answer: &Answer, json_out: bool) -> anyhow::Result<u8> {
    let code = match answer.verdict {
        Verdict::Done => 0,
        Verdict::NotFound | Verdict::Conflict | Verdict::Invalid => EXIT_INVALID,
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&answer.body)?);
    } else if code == 0 {
        println!("{}", answer.text);
    }
    if code != 0 {
        eprintln!("error: {}", answer.text);
    }
    Ok(code)
}

pub(super) async fn cancel_cmd(cfg: &Config, args: CancelArgs) -> anyhow::Result<u8> {
    let store = Store::open_existing(&cfg.store).await?;
    let answer = cancel(&store, args.id, &cli_user()).await;
    store.close().await;
    print(&answer?, args.json)
}

pub(super) async fn retry_cmd(cfg: &Config, args: RetryArgs) -> anyhow::Result<u8> {
    let store = Store::open_existing(&cfg.store).await?;
    let answer = match (args.id, args.limit) {
        (Some(id), _) => retry_one(&store, cfg, id, Source::Cli).await,
        (None, Some(limit)) => {
            let req = BulkRequest {
                status: args.status,
                kind: args.kind,
                since: args.since,
                schedule: args.schedule,
                limit,
            };
            retry_bulk(&store, cfg, &req, Source::Cli).await
        }
        (None, None) => {
            eprintln!("error: give a job ID, or --limit N for a bulk replay");
            return Ok(EXIT_INVALID);
        }
    };
    store.close().await;
    print(&answer?, args.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_ago_a_time_or_a_date() {
        let now = now_ms();
        let day_ago = parse_since("24h").unwrap();
        assert!((now - 86_400_000 - day_ago).abs() < 5_000);
        assert_eq!(
            parse_since("2026-11-27T10:00:00Z").unwrap(),
            1_795_773_600_000
        );
        assert_eq!(parse_since("2026-11-27").unwrap(), 1_795_737_600_000);
        let err = parse_since("last tuesday").unwrap_err();
        assert!(err.contains("last tuesday"), "{err}");
    }
}
