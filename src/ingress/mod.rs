//! Ingress: every way a job arrives (cron, the CLI, AMQP) ends in [`submit`], which validates the
//! submission and writes its row before anything else happens. Invalid input is not dropped: it
//! is recorded as a `rejected` job with the reason, bounded ([`reject`]) and with secrets redacted
//! ([`redact`]), and logged at a pace a flood of bad input cannot raise.

pub mod amqp;
pub mod cron;
pub mod http;
pub mod json;
pub mod leader;
pub mod redact;
pub mod reject;

use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use crate::config::Config;
use crate::jobs::{self, JobKind};
use crate::store::{self, Inserted, NewJob, Store};
use crate::{JobId, Source, Status};

/// A job as submitted.
#[derive(Clone, Debug)]
pub struct Submission {
    pub kind: String,
    pub params: Value,
    pub source: Source,
    /// Idempotency key: a second submission with the same key creates no second job.
    pub key: Option<String>,
    /// The cron schedule that fired it.
    pub schedule: Option<String>,
}

/// What became of a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    Queued(JobId),
    /// The key already names this job.
    Duplicate(JobId),
    /// Joined this queued job with the same kind and parameters.
    Coalesced(JobId),
    /// Invalid; recorded as a `rejected` job.
    Rejected {
        id: JobId,
        reason: String,
    },
    /// A cron tick whose previous run is still active; recorded as `skipped`.
    Skipped(JobId),
}

impl Submitted {
    /// The job row this submission is recorded as.
    pub fn id(&self) -> JobId {
        match self {
            Submitted::Queued(id)
            | Submitted::Duplicate(id)
            | Submitted::Coalesced(id)
            | Submitted::Skipped(id) => *id,
            Submitted::Rejected { id, .. } => *id,
        }
    }
}

/// A submission checked and turned into the row to write.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub job: NewJob,
    /// Why it is rejected, when it is.
    pub rejection: Option<String>,
}

/// Validates a submission against the configuration; never fails, since an invalid submission
/// becomes a `rejected` row. A rejected row keeps a bounded, redacted copy of the parameters
/// (see [`reject`] for its exact shape) and a bounded reason.
pub fn prepare(cfg: &Config, sub: Submission) -> Prepared {
    prepare_checked(cfg, sub, None)
}

/// [`prepare`], with a reason already found by the caller (a strict reading of the message)
/// taking precedence over every other check.
pub(crate) fn prepare_checked(cfg: &Config, sub: Submission, early: Option<String>) -> Prepared {
    let kind = JobKind::parse(&sub.kind);
    let key_problem = sub.key.as_deref().and_then(|k| reject::check_key(k).err());
    let rejection = early
        .or_else(|| reject::check_kind(&sub.kind).err())
        .or_else(|| key_problem.clone())
        .or_else(|| match kind {
            None => Some(format!(
                "unknown job kind {:?} (known: {})",
                sub.kind,
                JobKind::names().join(", ")
            )),
            Some(kind) => jobs::validate(kind, &sub.params, cfg).err().map(|e| e.0),
        });
    let Some(reason) = rejection else {
        return Prepared {
            job: NewJob {
                kind: sub.kind,
                params: sub.params.to_string(),
                source: sub.source,
                // Cron ticks are never joined: their overlap rule is to skip.
                coalesce: sub.schedule.is_none() && kind.is_some_and(JobKind::coalesces),
                schedule: sub.schedule,
                status: Status::Queued,
                max_attempts: cfg.retry.max_attempts,
                idempotency_key: sub.key,
                error_code: None,
                error_msg: None,
                slot: None,
                lane: kind.and_then(|k| k.lane(&sub.params)),
            },
            rejection: None,
        };
    };
    let mut redacted = sub.params.clone();
    let mut found = redact::Found::default();
    redact::redact_value(&mut redacted, &mut found);
    let params = reject::stored_json(&redacted, || sub.params.to_string().into_bytes());
    // Cut before it is redacted: what is cut off is not kept, and a 60 KB kind costs nothing.
    let kind = redact::redact_str(&reject::stored_kind(&sub.kind), &mut found);
    rejected(
        NewJob {
            kind,
            params,
            source: sub.source,
            schedule: sub.schedule,
            status: Status::Rejected,
            max_attempts: cfg.retry.max_attempts,
            // An invalid key is not kept: it is what was wrong, and it must not bloat an index.
            idempotency_key: sub.key.filter(|_| key_problem.is_none()),
            error_code: None,
            error_msg: None,
            coalesce: false,
            slot: None,
            lane: None,
        },
        &found.scrub(&reason),
    )
}

/// Input that could not even be read as a submission (not UTF-8, not JSON, too large). Its
/// body is kept as [`reject::stored_unparsed`] describes: size, SHA-256 and a short redacted
/// prefix; `kind` is kept cut to size and `key` only when it is a valid key.
pub fn prepare_raw(
    source: Source,
    kind: Option<String>,
    body: &[u8],
    key: Option<String>,
    reason: String,
) -> Prepared {
    unreadable(source, kind, reject::stored_unparsed(body), key, reason)
}

/// A message that is JSON but not a submission (a wrong envelope): the whole message is kept,
/// redacted, as [`reject::stored_json`] describes, and any secret it held is scrubbed from the
/// reason; `body` is the message as received.
pub(crate) fn prepare_invalid_envelope(
    source: Source,
    mut message: Value,
    body: &[u8],
    key: Option<String>,
    reason: String,
) -> Prepared {
    let mut found = redact::Found::default();
    redact::redact_value(&mut message, &mut found);
    let kind = message
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_string);
    let params = reject::stored_json(&message, || body.to_vec());
    unreadable(source, kind, params, key, found.scrub(&reason))
}

/// A submission that is rejected before it could be validated; `params` is its stored body.
fn unreadable(
    source: Source,
    kind: Option<String>,
    params: String,
    key: Option<String>,
    reason: String,
) -> Prepared {
    let job = NewJob {
        kind: kind.map_or_else(|| "unknown".to_string(), |k| reject::stored_kind(&k)),
        params,
        source,
        schedule: None,
        status: Status::Rejected,
        max_attempts: 0,
        idempotency_key: key.filter(|k| reject::check_key(k).is_ok()),
        error_code: None,
        error_msg: None,
        coalesce: false,
        slot: None,
        lane: None,
    };
    rejected(job, &reason)
}

/// Marks `job` rejected for `reason`, stored and returned cut to
/// [`reject::MAX_ERROR_MSG_BYTES`].
fn rejected(mut job: NewJob, reason: &str) -> Prepared {
    let reason = reject::bounded(reason, reject::MAX_ERROR_MSG_BYTES);
    job.status = Status::Rejected;
    job.error_code = Some("REJECTED".to_string());
    job.error_msg = Some(reason.clone());
    Prepared {
        job,
        rejection: Some(reason),
    }
}

/// Paces the reject log lines of the whole process (see [`reject::RejectLog`]).
static REJECT_LOG: Mutex<reject::RejectLog> =
    Mutex::new(reject::RejectLog::new(reject::LOG_WINDOW));

fn reject_log() -> std::sync::MutexGuard<'static, reject::RejectLog> {
    // The pacer's state is two numbers, consistent after any panic.
    REJECT_LOG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Logs a reject: never its body, its reason cut to [`reject::MAX_LOGGED_REASON_CHARS`], and
/// within a burst only the first, the rest told in one summary line when the window closes.
fn log_reject(job: &NewJob, reason: &str, id: JobId) {
    let verdict = reject_log().note(Instant::now());
    match verdict {
        reject::Verdict::Log { summary } => {
            if summary > 0 {
                let line = reject_log().summary(summary);
                tracing::warn!(rejected = summary, "{line}");
            }
            let reason = reject::bounded_chars(reason, reject::MAX_LOGGED_REASON_CHARS);
            tracing::warn!(kind = %job.kind, source = %job.source, reason = %reason, id, "submission rejected");
        }
        reject::Verdict::Hold { first: true, until } => {
            // One short-lived thread per window with held rejects tells their count when the
            // window closes; it holds nothing, so it is not tracked for shutdown (a count still
            // held at exit is lost with the process). A thread rather than a task: it must
            // outlive whichever runtime noted the first held reject.
            let spawned = std::thread::Builder::new()
                .name("reject-log".into())
                .spawn(move || {
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    let mut log = reject_log();
                    let n = log.flush(until);
                    let line = log.summary(n);
                    drop(log);
                    if n > 0 {
                        tracing::warn!(rejected = n, "{line}");
                    }
                });
            if spawned.is_err() {
                // Without the thread the count is told with the next reject after the window.
                tracing::debug!("cannot start the reject-log timer");
            }
        }
        reject::Verdict::Hold { .. } => {}
    }
}

fn outcome(p: &Prepared, inserted: Inserted) -> Submitted {
    if let Some(reason) = &p.rejection {
        let id = inserted_id(inserted);
        log_reject(&p.job, reason, id);
        return Submitted::Rejected {
            id,
            reason: reason.clone(),
        };
    }
    match inserted {
        Inserted::New(id) => Submitted::Queued(id),
        Inserted::Duplicate(id) => Submitted::Duplicate(id),
        Inserted::Coalesced(id) => Submitted::Coalesced(id),
    }
}

fn inserted_id(i: Inserted) -> JobId {
    match i {
        Inserted::New(id) | Inserted::Duplicate(id) | Inserted::Coalesced(id) => id,
    }
}

/// Validates and records a submission.
pub async fn submit(
    store: &Store,
    cfg: &Config,
    sub: Submission,
) -> Result<Submitted, store::Error> {
    let p = prepare(cfg, sub);
    if p.rejection.is_none() && p.job.schedule.is_some() {
        let (inserted, skipped) = store.insert_scheduled(&p.job).await?;
        return Ok(match (inserted, skipped) {
            (Inserted::New(id), true) => Submitted::Skipped(id),
            (other, _) => outcome(&p, other),
        });
    }
    let inserted = store.insert(&p.job).await?;
    Ok(outcome(&p, inserted))
}

/// Records prepared submissions in one transaction; the results are in the same order.
pub async fn submit_many(
    store: &Store,
    prepared: &[Prepared],
) -> Result<Vec<Submitted>, store::Error> {
    let jobs: Vec<NewJob> = prepared.iter().map(|p| p.job.clone()).collect();
    let inserted = store.insert_many(&jobs).await?;
    Ok(prepared
        .iter()
        .zip(inserted)
        .map(|(p, i)| outcome(p, i))
        .collect())
}
