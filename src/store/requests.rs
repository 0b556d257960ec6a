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
    let rejected = job.status == Status::Rejected;
    // A rejected submission does not hold its key, so a corrected resend goes through.
    let key = if rejected {
        None
    } else {
        job.idempotency_key.as_deref()
    };
    let coalescible = job.coalesce && job.status == Status::Queued;
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
