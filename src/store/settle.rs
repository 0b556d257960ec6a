//! Settling: how an attempt (or a poll) ended, written to the job and its attempt in one place,
//! alone or in a batch; and the checkpoint a running job saves on the way. Every write is guarded
//! by `status = 'running'`: a job no longer ours gets [`Error::LostOwnership`].

use super::{Backend, Error, JobRow, OnBackend, Store};
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
        if self.backend == Backend::Sqlite {
            return self.settle_sqlite(items, now).await;
        }
        let mut tx = match self.write_tx().await {
            Ok(tx) => tx,
            Err(e) => return fail_all(items, &e),
        };
        let results = match settle_rows(&mut tx, self.instance(), items, now).await {
            Ok(r) => r,
            // A failed statement: give up on the whole batch.
            Err(e) => return fail_all(items, &e),
        };
        if let Err(e) = tx.commit().await {
            return fail_all(items, &e);
        }
        results
    }
}

impl Store {
    /// [`Store::settle_many`] on SQLite in one round trip to the connection's thread: the
    /// transaction's `BEGIN IMMEDIATE`, its two statements and its `COMMIT` are one command
    /// (sqlx runs a text of several statements in order, binding anonymous placeholders across
    /// them), where a transaction through sqlx is four, two of which wait for an acknowledgement.
    /// The attempts are updated first, under the same guard as the jobs (running, and ours),
    /// read under the same write lock, so an attempt is closed exactly when its job is settled.
    async fn settle_sqlite(
        &self,
        items: &[(JobRow, Transition)],
        now: i64,
    ) -> Vec<Result<(), Error>> {
        if items.is_empty() {
            return Vec::new();
        }
        let plans: Vec<Plan<'_>> = items.iter().map(|(j, t)| plan(j, t, now)).collect();
        let b = Backend::Sqlite;
        // Every item has an attempt row in the text (a poll's matches no attempt), so the text
        // depends on the batch's size alone and its prepared form is reused.
        let sql = format!(
            "BEGIN IMMEDIATE; {}; {}; COMMIT",
            attempts_sql(b, items.len(), true),
            jobs_sql(b, items.len())
        );
        // Dynamic only in the number of placeholder rows.
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(self.instance());
        for ((job, _), p) in items.iter().zip(&plans) {
            q = bind_attempt(q, job, p);
        }
        q = q.bind(now).bind(self.instance());
        for ((job, _), p) in items.iter().zip(&plans) {
            q = bind_job(q, job, p);
        }
        let conn = match self.pool.acquire().await {
            Ok(c) => c,
            Err(e) => return fail_all(items, &e),
        };
        // Dropped before the command ends (the task cancelled), the connection may be inside
        // the transaction: it is closed then, which rolls the transaction back.
        let mut guard = OpenTx(Some(conn));
        let result = match guard.0.as_mut() {
            Some(conn) => q.fetch_all(&mut **conn).await,
            None => unreachable!("the guard holds the connection until here"),
        };
        let Some(mut conn) = guard.0.take() else {
            unreachable!("the guard holds the connection until here")
        };
        match result {
            Ok(ids) => per_job(items, &ids.into_iter().collect()),
            Err(e) => {
                // The command stops at the failed statement: the transaction may still be
                // open (SQLite rolls some failures back itself; then this one fails, harmless).
                if let Err(r) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
                    if !r.to_string().contains("no transaction is active") {
                        conn.close_on_drop();
                    }
                }
                fail_all(items, &e)
            }
        }
    }
}

/// A pool connection inside a transaction sqlx does not know of: closed if dropped so.
struct OpenTx(Option<sqlx::pool::PoolConnection<sqlx::Any>>);

impl Drop for OpenTx {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
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
    // Dynamic only in the number of placeholder rows.
    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(jobs_sql(b, items.len())))
        .bind(now)
        .bind(owner);
    for ((job, _), p) in items.iter().zip(&plans) {
        q = bind_job(q, job, p);
    }
    let settled: std::collections::HashSet<i64> =
        q.fetch_all(&mut **tx).await?.into_iter().collect();
    let attempts: Vec<_> = items
        .iter()
        .zip(&plans)
        .filter(|((job, _), _)| !job.is_poll() && settled.contains(&job.id))
        .collect();
    if !attempts.is_empty() {
        // Dynamic only in the number of placeholder rows.
        let sql = attempts_sql(b, attempts.len(), false);
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(now);
        for ((job, _), p) in attempts {
            q = bind_attempt(q, job, p);
        }
        q.fetch_all(&mut **tx).await?;
    }
    Ok(per_job(items, &settled))
}

/// Each job's result once the batch committed: written, or no longer ours.
fn per_job(
    items: &[(JobRow, Transition)],
    settled: &std::collections::HashSet<i64>,
) -> Vec<Result<(), Error>> {
    items
        .iter()
        .map(|(job, _)| {
            if settled.contains(&job.id) {
                Ok(())
            } else {
                Err(Error::LostOwnership(job.id))
            }
        })
        .collect()
}

/// The batch's failure, passed on to each of its jobs (the message keeps what
/// [`Error::is_transient`] reads).
fn fail_all(items: &[(JobRow, Transition)], e: &dyn std::fmt::Display) -> Vec<Result<(), Error>> {
    let msg = e.to_string();
    items
        .iter()
        .map(|_| Err(Error::Sql(sqlx::Error::Protocol(msg.clone()))))
        .collect()
}

type Scalars<'q> = sqlx::query::QueryScalar<'q, sqlx::Any, i64, sqlx::any::AnyArguments>;

/// The jobs' update of a settle of `n`: `now` and the owner, then [`bind_job`]'s columns per job;
/// returns the ids it moved (those still running, and this instance's).
fn jobs_sql(b: Backend, n: usize) -> String {
    let (scalars, rows) = (super::params_on(b, 2, 1), super::value_rows_on(b, n, 11, 3));
    format!(
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
    )
}

fn bind_job<'q>(q: Scalars<'q>, job: &JobRow, p: &Plan<'_>) -> Scalars<'q> {
    q.bind(job.id)
        .bind(p.status.to_string())
        .bind(p.next_run)
        .bind(p.jid.clone())
        .bind(p.trace.clone())
        .bind(p.err.and_then(|e| e.http_status).map(i64::from))
        .bind(p.err.and_then(|e| e.error_code.clone()))
        .bind(p.err.map(|e| e.error_msg.clone()))
        .bind(p.result.clone())
        .bind(p.checkpoint.clone())
        .bind(p.finished)
}

/// The attempts' update of a settle of `n` (`now`, then [`bind_attempt`]'s columns per attempt).
/// `guarded`: it runs before the jobs' update, so it checks their guard itself (and takes the
/// owner after `now`).
fn attempts_sql(b: Backend, n: usize, guarded: bool) -> String {
    let (scalars, rows) = (
        super::params_on(b, if guarded { 2 } else { 1 }, 1),
        super::value_rows_on(b, n, 7, if guarded { 3 } else { 2 }),
    );
    let (p, from, guard) = if guarded {
        (
            "p (now, owner)",
            "FROM v, p, jobs j",
            " AND j.id = v.job_id AND j.status = 'running' AND j.owner = p.owner",
        )
    } else {
        ("p (now)", "FROM v, p", "")
    };
    format!(
        "WITH {p} AS (VALUES ({scalars})), \
           v (job_id, attempt, outcome, http_status, error_code, error_msg, delay) \
           AS (VALUES {rows}) \
         UPDATE attempts SET finished_at = p.now, outcome = v.outcome, \
           http_status = v.http_status, error_code = v.error_code, error_msg = v.error_msg, \
           retry_delay_ms = v.delay \
         {from} WHERE attempts.job_id = v.job_id AND attempts.attempt = v.attempt{guard}"
    )
}

/// A poll has no attempt of its own: its attempt number is bound as NULL, which matches none.
fn bind_attempt<'q>(q: Scalars<'q>, job: &JobRow, p: &Plan<'_>) -> Scalars<'q> {
    q.bind(job.id)
        .bind((!job.is_poll()).then_some(job.attempts))
        .bind(p.outcome)
        .bind(p.err.and_then(|e| e.http_status).map(i64::from))
        .bind(p.err.and_then(|e| e.error_code.clone()))
        .bind(p.err.map(|e| e.error_msg.clone()))
        .bind(p.delay)
}
