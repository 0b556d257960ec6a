//! Ingress: every way a job arrives (cron, the CLI, AMQP) ends in [`submit`], which validates the
//! submission and writes its row before anything else happens. Invalid input is not dropped: it
//! is recorded as a `rejected` job with the reason.

pub mod cron;

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
            Submitted::Queued(id) | Submitted::Duplicate(id) | Submitted::Skipped(id) => *id,
            Submitted::Rejected { id, .. } => *id,
        }
    }
}

/// Validates and records a submission.
pub async fn submit(
    store: &Store,
    cfg: &Config,
    sub: Submission,
) -> Result<Submitted, store::Error> {
    let reason = match JobKind::parse(&sub.kind) {
        None => Some(format!(
            "unknown job kind {:?} (known: {})",
            sub.kind,
            JobKind::names().join(", ")
        )),
        Some(kind) => jobs::validate(kind, &sub.params, cfg).err().map(|e| e.0),
    };
    let mut job = NewJob {
        kind: sub.kind.clone(),
        params: sub.params.to_string(),
        source: sub.source,
        schedule: sub.schedule.clone(),
        status: Status::Queued,
        max_attempts: cfg.retry.max_attempts,
        idempotency_key: sub.key.clone(),
        error_code: None,
        error_msg: None,
    };
    if let Some(reason) = reason {
        return record_rejected(store, job, reason).await;
    }
    if sub.schedule.is_some() {
        let (inserted, skipped) = store.insert_scheduled(&job).await?;
        return Ok(match (inserted, skipped) {
            (Inserted::New(id), true) => Submitted::Skipped(id),
            (Inserted::New(id), false) => Submitted::Queued(id),
            (Inserted::Duplicate(id), _) => Submitted::Duplicate(id),
        });
    }
    job.status = Status::Queued;
    Ok(match store.insert(&job).await? {
        Inserted::New(id) => Submitted::Queued(id),
        Inserted::Duplicate(id) => Submitted::Duplicate(id),
    })
}

/// Records input that could not even be read as a submission (not JSON, not UTF-8, too large):
/// `raw` is kept as the job's params so nothing is lost.
pub async fn reject_raw(
    store: &Store,
    source: Source,
    kind: Option<String>,
    raw: String,
    key: Option<String>,
    reason: String,
) -> Result<Submitted, store::Error> {
    let job = NewJob {
        kind: kind.unwrap_or_else(|| "unknown".to_string()),
        params: raw,
        source,
        schedule: None,
        status: Status::Rejected,
        max_attempts: 0,
        idempotency_key: key,
        error_code: None,
        error_msg: None,
    };
    record_rejected(store, job, reason).await
}

async fn record_rejected(
    store: &Store,
    mut job: NewJob,
    reason: String,
) -> Result<Submitted, store::Error> {
    job.status = Status::Rejected;
    job.error_code = Some("REJECTED".to_string());
    job.error_msg = Some(reason.clone());
    tracing::warn!(kind = %job.kind, source = %job.source, reason = %reason, "submission rejected");
    match store.insert(&job).await? {
        Inserted::New(id) | Inserted::Duplicate(id) => Ok(Submitted::Rejected { id, reason }),
    }
}
