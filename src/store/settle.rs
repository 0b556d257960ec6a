//! Settling: how an attempt (or a poll) ended, written to the job and its attempt in one place,
//! alone or in a batch; and the checkpoint a running job saves on the way. Every write is guarded
//! by `status = 'running'`: a job no longer ours gets [`Error::LostOwnership`].

use super::{Error, JobRow, OnBackend, Store};
use crate::now_ms;

/// The `error_code` of an attempt that exceeded its timeout, and that attempt's `outcome`
/// (whether it is retried or was the last).
pub const TIMED_OUT: &str = "timed_out";

/// The error details kept on a job and its attempt.
#[derive(Clone, Debug, Default)]
pub struct ErrorInfo {
    pub http_status: Option<u16>,
    pub error_code: Option<String>,
    pub error_msg: String,
    pub trace_id: Option<String>,
}

/// How an attempt (or a poll) ended; written by [`Store::settle`].
#[derive(Clone, Debug)]
pub enum Transition {
    Succeeded {
        jid: Option<String>,
        trace_id: Option<String>,
        result: serde_json::Value,
    },
    /// The remote work started; poll again at `next_run_at`.
    Following {
        jid: Option<String>,
        checkpoint: serde_json::Value,
        next_run_at: i64,
    },
    /// A retryable failure: back to `queued`.
    Retry {
        error: ErrorInfo,
        next_run_at: i64,
        delay_ms: i64,
    },
    Failed {
        error: ErrorInfo,
        result: Option<serde_json::Value>,
    },
    /// Shutdown or a crash interrupted it: back to the status it was claimed from, due now.
    Interrupted,
}

impl Store {
    /// Writes the outcome of a claimed job: the one place that moves a job out of `running`.
    pub async fn settle(&self, job: &JobRow, t: &Transition) -> Result<(), Error> {
        self.settle_many(&[(job.clone(), t.clone())])
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Settles several jobs in one transaction; each gets its own result (a job no longer
    /// running fails alone). If the commit fails, every one fails. The transaction's duration
    /// goes to `codearts_syncd_store_commit_duration_seconds`.
    pub async fn settle_many(&self, items: &[(JobRow, Transition)]) -> Vec<Result<(), Error>> {
        let started = std::time::Instant::now();
        let results = self.settle_many_tx(items).await;
        metrics::histogram!("codearts_syncd_store_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        match results.iter().find_map(|r| r.as_ref().err()) {
            Some(e) if e.is_transient() => self.health.failed(e),
            _ => self.health.ok(),
        }
        results
    }

    async fn settle_many_tx(&self, items: &[(JobRow, Transition)]) -> Vec<Result<(), Error>> {
        let now = now_ms();
        let mut tx = match self.write_tx().await {
            Ok(tx) => tx,
            Err(e) => {
                return items
                    .iter()
                    .map(|_| Err(Error::Sql(clone_sql(&e))))
                    .collect()
            }
        };
        let results = match settle_rows(&mut tx, self.instance(), items, now).await {
            Ok(r) => r,
            Err(e) => {
                // A failed statement: give up on the whole batch.
                let msg = e.to_string();
                drop(tx);
                return items
                    .iter()
                    .map(|_| Err(Error::Sql(sqlx::Error::Protocol(msg.clone()))))
                    .collect();
            }
        };
        if let Err(e) = tx.commit().await {
            return items
                .iter()
                .map(|_| Err(Error::Sql(clone_sql(&e))))
                .collect();
        }
        results
    }
}

/// The row values one outcome writes: the job's, and its attempt's.
struct Plan<'a> {
    status: &'a str,
    outcome: &'static str,
    next_run: Option<i64>,
    err: Option<&'a ErrorInfo>,
    delay: Option<i64>,
    jid: Option<String>,
    trace: Option<String>,
    result: Option<String>,
    checkpoint: Option<String>,
    finished: Option<i64>,
}

fn plan<'a>(job: &'a JobRow, t: &'a Transition, now: i64) -> Plan<'a> {
    let (status, outcome, next_run, err, delay, jid, trace, result, checkpoint, finished) = match t
    {
        Transition::Succeeded {
            jid,
            trace_id,
            result,
        } => (
            "succeeded",
            "succeeded",
            None,
            None,
            None,
            jid.clone(),
            trace_id.clone(),
            Some(result.to_string()),
            None,
            Some(now),
        ),
        Transition::Following {
            jid,
            checkpoint,
            next_run_at,
        } => (
            "following",
            "following",
            Some(*next_run_at),
            None,
            None,
            jid.clone(),
            None,
            None,
            Some(checkpoint.to_string()),
            None,
        ),
        Transition::Retry {
            error,
            next_run_at,
            delay_ms,
        } => (
            "queued",
            "retry",
            Some(*next_run_at),
            Some(error),
            Some(*delay_ms),
            None,
            error.trace_id.clone(),
            None,
            None,
            None,
        ),
        Transition::Failed { error, result } => (
            "failed",
            "failed",
            None,
            Some(error),
            None,
            None,
            error.trace_id.clone(),
            result.as_ref().map(|r| r.to_string()),
            None,
            Some(now),
        ),
        // Back to what it was claimed from, due now.
        Transition::Interrupted => (
            job.claimed_from.as_deref().unwrap_or("queued"),
            "interrupted",
            Some(now),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ),
    };
    // An attempt cut off by its timeout says so, whether it is retried or was the last.
    let outcome = match err {
        Some(e) if e.error_code.as_deref() == Some(TIMED_OUT) => TIMED_OUT,
        _ => outcome,
    };
    Plan {
        status,
        outcome,
        next_run,
        err,
        delay,
        jid,
        trace,
        result,
        checkpoint,
        finished,
    }
}

/// Writes a batch of outcomes (one or many) with two statements, one for the jobs and one for
/// their attempts: the one place that moves a job out of `running`. Each job's update is guarded
/// by `status = 'running'`; a job no longer running gets [`Error::LostOwnership`].
async fn settle_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    owner: &str,
    items: &[(JobRow, Transition)],
    now: i64,
) -> Result<Vec<Result<(), Error>>, Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let plans: Vec<Plan<'_>> = items.iter().map(|(j, t)| plan(j, t, now)).collect();
    let b = tx.backend();
    let (scalars, rows) = (
        super::params_on(b, 2, 1),
        super::value_rows_on(b, items.len(), 11, 3),
    );
    let sql = format!(
        "WITH p (now, owner) AS (VALUES ({scalars})), \
           v (id, status, next_run, jid, trace, http_status, error_code, error_msg, result, \
              checkpoint, finished) AS (VALUES {rows}) \
         UPDATE jobs SET status = v.status, next_run_at = COALESCE(v.next_run, jobs.next_run_at), \
           jid = COALESCE(v.jid, jobs.jid), trace_id = COALESCE(v.trace, jobs.trace_id), \
           http_status = v.http_status, error_code = v.error_code, error_msg = v.error_msg, \
           result = COALESCE(v.result, jobs.result), \
           checkpoint = COALESCE(v.checkpoint, jobs.checkpoint), \
           finished_at = COALESCE(v.finished, jobs.finished_at), updated_at = p.now \
         FROM v, p WHERE jobs.id = v.id AND jobs.status = 'running' AND jobs.owner = p.owner \
         RETURNING jobs.id"
    );
    // Dynamic only in the number of placeholder rows.
    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(owner);
    for ((job, _), p) in items.iter().zip(&plans) {
        q = q
            .bind(job.id)
            .bind(p.status)
            .bind(p.next_run)
            .bind(p.jid.clone())
            .bind(p.trace.clone())
            .bind(p.err.and_then(|e| e.http_status).map(i64::from))
            .bind(p.err.and_then(|e| e.error_code.clone()))
            .bind(p.err.map(|e| e.error_msg.clone()))
            .bind(p.result.clone())
            .bind(p.checkpoint.clone())
            .bind(p.finished);
    }
    let settled: std::collections::HashSet<i64> =
        q.fetch_all(&mut **tx).await?.into_iter().collect();
    let attempts: Vec<_> = items
        .iter()
        .zip(&plans)
        .filter(|((job, _), _)| !job.is_poll() && settled.contains(&job.id))
        .collect();
    if !attempts.is_empty() {
        let (scalar, rows) = (
            super::params_on(b, 1, 1),
            super::value_rows_on(b, attempts.len(), 7, 2),
        );
        let sql = format!(
            "WITH p (now) AS (VALUES ({scalar})), \
               v (job_id, attempt, outcome, http_status, error_code, error_msg, delay) \
               AS (VALUES {rows}) \
             UPDATE attempts SET finished_at = p.now, outcome = v.outcome, \
               http_status = v.http_status, error_code = v.error_code, error_msg = v.error_msg, \
               retry_delay_ms = v.delay \
             FROM v, p WHERE attempts.job_id = v.job_id AND attempts.attempt = v.attempt"
        );
        // Dynamic only in the number of placeholder rows.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for ((job, _), p) in attempts {
            q = q
                .bind(job.id)
                .bind(job.attempts)
                .bind(p.outcome)
                .bind(p.err.and_then(|e| e.http_status).map(i64::from))
                .bind(p.err.and_then(|e| e.error_code.clone()))
                .bind(p.err.map(|e| e.error_msg.clone()))
                .bind(p.delay);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(items
        .iter()
        .map(|(job, _)| {
            if settled.contains(&job.id) {
                Ok(())
            } else {
                Err(Error::LostOwnership(job.id))
            }
        })
        .collect())
}

fn clone_sql(e: &sqlx::Error) -> sqlx::Error {
    sqlx::Error::Protocol(e.to_string())
}
