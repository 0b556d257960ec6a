//! Ingress: every way a job arrives (cron, the CLI, AMQP) ends in [`submit`], which validates the
//! submission and writes its row before anything else happens. Invalid input is not dropped: it
//! is recorded as a `rejected` job with the reason.

pub mod amqp;
pub mod cron;
pub mod leader;

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
/// becomes a `rejected` row.
pub fn prepare(cfg: &Config, sub: Submission) -> Prepared {
    let kind = JobKind::parse(&sub.kind);
    let rejection = match kind {
        None => Some(format!(
            "unknown job kind {:?} (known: {})",
            sub.kind,
            JobKind::names().join(", ")
        )),
        Some(kind) => jobs::validate(kind, &sub.params, cfg).err().map(|e| e.0),
    };
    let mut job = NewJob {
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
    };
    if let Some(reason) = &rejection {
        mark_rejected(&mut job, reason);
    }
    Prepared { job, rejection }
}

/// Input that could not even be read as a submission (not JSON, not UTF-8, too large): `raw`
/// is kept as the job's params so nothing is lost.
pub fn prepare_raw(
    source: Source,
    kind: Option<String>,
    raw: String,
    key: Option<String>,
    reason: String,
) -> Prepared {
    let mut job = NewJob {
        kind: kind.unwrap_or_else(|| "unknown".to_string()),
        params: raw,
        source,
        schedule: None,
        status: Status::Rejected,
        max_attempts: 0,
        idempotency_key: key,
        error_code: None,
        error_msg: None,
        coalesce: false,
    };
    mark_rejected(&mut job, &reason);
    Prepared {
        job,
        rejection: Some(reason),
    }
}

fn mark_rejected(job: &mut NewJob, reason: &str) {
    job.status = Status::Rejected;
    job.error_code = Some("REJECTED".to_string());
    job.error_msg = Some(reason.to_string());
}

fn outcome(p: &Prepared, inserted: Inserted) -> Submitted {
    if let Some(reason) = &p.rejection {
        tracing::warn!(kind = %p.job.kind, source = %p.job.source, reason = %reason, id = inserted_id(inserted), "submission rejected");
        return Submitted::Rejected {
            id: inserted_id(inserted),
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
