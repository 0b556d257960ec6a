//! The requests table: every request a job served (its source, idempotency key and outcome),
//! and the look-up that answers a new submission with an earlier job: the one already holding
//! its idempotency key, or a queued job with the same parameters to join (coalescing).

use sqlx::Row;

use super::{Backend, Error, Inserted, NewJob, OnBackend, Store};
use crate::{JobId, Status};

impl Store {
    /// The requests a job served: (source, key, outcome), oldest first.
    pub async fn requests_of(
        &self,
        id: JobId,
    ) -> Result<Vec<(String, Option<String>, String)>, Error> {
        let rows = sqlx::query(
            "SELECT source, idem_key, outcome FROM requests WHERE job_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("source")?,
                    r.try_get("idem_key")?,
                    r.try_get("outcome")?,
                ))
            })
            .collect()
    }
}

/// The job an earlier request already answers this one with: the job holding its idempotency key
/// ([`Inserted::Duplicate`], nothing written), or a queued job of the same kind with the same
/// parameters when `job.coalesce` ([`Inserted::Coalesced`], recorded as a request of it).
/// `None`: a new job is to be inserted.
pub(super) async fn earlier(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &NewJob,
    now: i64,
) -> Result<Option<Inserted>, Error> {
    let key = held_key(job);
    let coalescible = coalescible(job);
    if coalescible {
        take_coalesce_turn(tx, job).await?;
    }
    if key.is_some() || coalescible {
        // One statement for both look-ups: an earlier request with this key, a queued job to join.
        // PostgreSQL indexes the parameters' digest (a B-tree entry cannot hold a long text).
        let sql = match tx.backend() {
            Backend::Sqlite => {
                "SELECT (SELECT job_id FROM requests WHERE $1 IS NOT NULL AND idem_key = $1) AS dup, \
                        (SELECT id FROM jobs WHERE $2 AND kind = $3 AND status = 'queued' \
                           AND params = $4 ORDER BY id LIMIT 1) AS joinable"
            }
            Backend::Postgres => {
                "SELECT (SELECT job_id FROM requests WHERE $1 IS NOT NULL AND idem_key = $1) AS dup, \
                        (SELECT id FROM jobs WHERE $2 AND kind = $3 AND status = 'queued' \
                           AND md5(params) = md5($4) AND params = $4 ORDER BY id LIMIT 1) AS joinable"
            }
        };
        let row = sqlx::query(sql)
            .bind(key)
            .bind(coalescible)
            .bind(&job.kind)
            .bind(&job.params)
            .fetch_one(&mut **tx)
            .await?;
        if let Some(id) = row.try_get::<Option<i64>, _>("dup")? {
            return Ok(Some(Inserted::Duplicate(id)));
        }
        if let Some(id) = row.try_get::<Option<i64>, _>("joinable")? {
            record_request(tx, id, job, key, "coalesced", now).await?;
            return Ok(Some(Inserted::Coalesced(id)));
        }
    }
    Ok(None)
}

/// The idempotency key a job holds once recorded: none for a rejected submission, so that a
/// corrected resend goes through.
pub(super) fn held_key(job: &NewJob) -> Option<&str> {
    if job.status == Status::Rejected {
        None
    } else {
        job.idempotency_key.as_deref()
    }
}

/// True when the job joins a queued job of its kind with the same parameters, if there is one.
pub(super) fn coalescible(job: &NewJob) -> bool {
    job.coalesce && job.status == Status::Queued
}

/// [`earlier`]'s two look-ups for every job of a batch in one statement per
/// [`super::ROWS_PER_STATEMENT`] jobs: for each job, in order, the job holding its
/// idempotency key and the oldest queued job it may join, as the store holds them before the
/// batch (the batch's own jobs are the caller's to match).
pub(super) async fn earlier_many(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    jobs: &[NewJob],
) -> Result<Vec<(Option<JobId>, Option<JobId>)>, Error> {
    let mut out = vec![(None, None); jobs.len()];
    let asks: Vec<usize> = (0..jobs.len())
        .filter(|&i| held_key(&jobs[i]).is_some() || coalescible(&jobs[i]))
        .collect();
    for chunk in asks.chunks(super::ROWS_PER_STATEMENT) {
        let joinable = match tx.backend() {
            Backend::Sqlite => "params = v.params",
            Backend::Postgres => "md5(params) = md5(v.params) AND params = v.params",
        };
        let sql = format!(
            "WITH v (i, k, co, kind, params) AS (VALUES {}) \
             SELECT v.i AS i, \
               (SELECT job_id FROM requests WHERE v.k IS NOT NULL AND idem_key = v.k) AS dup, \
               (SELECT id FROM jobs WHERE v.co AND kind = v.kind AND status = 'queued' \
                  AND {joinable} ORDER BY id LIMIT 1) AS joinable \
             FROM v",
            super::value_rows_on(tx.backend(), chunk.len(), 5, 1)
        );
        // Dynamic only in the number of placeholder rows and the backend's digest clause.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for &i in chunk {
            let job = &jobs[i];
            q = q
                .bind(i as i64)
                .bind(held_key(job).map(str::to_string))
                .bind(coalescible(job))
                .bind(job.kind.clone())
                .bind(job.params.clone());
        }
        for row in q.fetch_all(&mut **tx).await? {
            let i: i64 = row.try_get("i")?;
            let slot = out.get_mut(i as usize).ok_or_else(|| {
                Error::Sql(sqlx::Error::Protocol(format!("look-up returned row {i}")))
            })?;
            *slot = (row.try_get("dup")?, row.try_get("joinable")?);
        }
    }
    Ok(out)
}

/// Records the requests of a batch's jobs that joined another job (`coalesced`), in one
/// statement per [`super::ROWS_PER_STATEMENT`].
pub(super) async fn record_joined(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    joined: &[(JobId, &NewJob)],
    now: i64,
) -> Result<(), Error> {
    for chunk in joined.chunks(super::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO requests (job_id, source, idem_key, outcome, received_at) VALUES {}",
            super::value_rows_on(tx.backend(), chunk.len(), 5, 1)
        );
        // Dynamic only in the number of placeholder rows.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, job) in chunk {
            q = q
                .bind(*id)
                .bind(job.source.as_str())
                .bind(held_key(job).map(str::to_string))
                .bind("coalesced")
                .bind(now);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// On PostgreSQL, where writers do not take turns for the whole transaction, two instances
/// could each find no queued job to join and each insert one (a burst over a fleet then costs
/// a sync per instance). Requests with the same kind and parameters take turns here instead,
/// under a lock held until the transaction ends: the later one's look-up then sees the earlier
/// one's job. Re-entrant, so a batch may take its turns up front (in one order, see
/// [`take_coalesce_turns`]). Nothing to do on SQLite, where the write lock is the turn.
pub(super) async fn take_coalesce_turn(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &NewJob,
) -> Result<(), Error> {
    if tx.backend() == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(coalesce_turn(job))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Every coalescible job's turn in a batch, taken in one (sorted) order, so that two batches
/// sharing parameters wait for each other instead of deadlocking.
pub(super) async fn take_coalesce_turns(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    jobs: &[NewJob],
) -> Result<(), Error> {
    let mut turns: Vec<&NewJob> = jobs
        .iter()
        .filter(|j| j.coalesce && j.status == Status::Queued)
        .collect();
    turns.sort_by_key(|j| coalesce_turn(j));
    turns.dedup_by_key(|j| coalesce_turn(j));
    for job in turns {
        take_coalesce_turn(tx, job).await?;
    }
    Ok(())
}

/// The advisory lock's name for one kind and parameter text (as the look-up compares them).
fn coalesce_turn(job: &NewJob) -> String {
    format!("coalesce:{}:{}", job.kind, job.params)
}

async fn record_request(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job_id: JobId,
    job: &NewJob,
    key: Option<&str>,
    outcome: &str,
    now: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO requests (job_id, source, idem_key, outcome, received_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(job_id)
    .bind(job.source.as_str())
    .bind(key)
    .bind(outcome)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
