//! An operator's controls over a job's lifecycle: cancelling one, replaying one or many final
//! jobs as new jobs linked to the old (`retry_of`), and the reads the engine and `enqueue
//! --wait` need (which running jobs were cancelled, which job a key names).
//!
//! Cancelling is a store write like any other, so it works from another process (the CLI) as
//! well as from the daemon's API: the engine notices a cancelled job among those it runs and
//! drops its attempt. The write is guarded: only a job still `queued`, `following` or `running`
//! is cancelled, so a job that finished first keeps its real outcome.

use sqlx::Row;

use super::jobs::{job_from_row, JOB_COLUMNS};
use super::{json_ids, Error, JobRow, Store};
use crate::{now_ms, rfc3339, JobId, Source, Status};

/// The `error_code` of a cancelled job and the `outcome` of its dropped attempt.
pub const CANCELLED: &str = "cancelled";

/// What [`Store::cancel`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancel {
    /// Cancelled; the status it had.
    Cancelled {
        was: Status,
    },
    /// It was cancelled before; nothing changed. The message says by whom and when.
    AlreadyCancelled {
        msg: Option<String>,
    },
    /// It is final with another status, which it keeps.
    Final(Status),
    NotFound,
}

/// What [`Store::replay`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replay {
    /// The new job's id.
    Replayed(JobId),
    NotFound,
    /// The job cannot be replayed; the reason says why.
    Refused(String),
}

/// Which final jobs a bulk replay takes ([`Store::replay_many`]).
#[derive(Clone, Debug, Default)]
pub struct ReplayFilter {
    /// `failed` or `cancelled`.
    pub status: String,
    pub kind: Option<String>,
    /// Only jobs that finished at or after this instant (store milliseconds).
    pub since: Option<i64>,
    pub schedule: Option<String>,
    pub limit: i64,
}

/// What a bulk replay did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Replayed {
    /// `(old, new)` for each job replayed, oldest first.
    pub jobs: Vec<(JobId, JobId)>,
    /// Jobs that matched but were left for a later run by the limit.
    pub left: i64,
}

/// The statuses a replay may start from: final, and not a success. `rejected` is not among
/// them: its parameters were invalid, so a replay would be rejected again.
pub const REPLAYABLE: [Status; 2] = [Status::Failed, Status::Cancelled];

impl Store {
    /// Cancels a job that is `queued`, `following` or `running`: final status `cancelled`,
    /// `error_code` `cancelled`, `error_msg` "cancelled by WHO at TIME", and its open attempt (a
    /// running one) closed with outcome `cancelled`. The engine running it drops the attempt when
    /// it next looks ([`Store::cancelled_among`]).
    pub async fn cancel(&self, id: JobId, who: &str) -> Result<Cancel, Error> {
        let r = self.cancel_tx(id, who).await;
        self.observe(r)
    }

    async fn cancel_tx(&self, id: JobId, who: &str) -> Result<Cancel, Error> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("SELECT status, error_msg FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(Cancel::NotFound);
        };
        let status: String = row.try_get("status")?;
        let status = Status::parse(&status).unwrap_or(Status::Failed);
        match status {
            Status::Cancelled => {
                return Ok(Cancel::AlreadyCancelled {
                    msg: row.try_get("error_msg")?,
                })
            }
            s if s.is_final() => return Ok(Cancel::Final(s)),
            _ => {}
        }
        let msg = format!("cancelled by {who} at {}", rfc3339(now));
        let done = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', error_code = $1, error_msg = $2, \
               http_status = NULL, finished_at = $3, updated_at = $4 \
             WHERE id = $5 AND status IN ('queued', 'following', 'running')",
        )
        .bind(CANCELLED)
        .bind(&msg)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Cannot happen inside the write transaction; answer as a lost race would.
            return Ok(Cancel::Final(status));
        }
        sqlx::query(
            "UPDATE attempts SET finished_at = $1, outcome = $2, error_code = $3, error_msg = $4 \
             WHERE job_id = $5 AND outcome IS NULL",
        )
        .bind(now)
        .bind(CANCELLED)
        .bind(CANCELLED)
        .bind(&msg)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Cancel::Cancelled { was: status })
    }

    /// Of `ids` (jobs this engine runs), those now `cancelled`: one indexed read.
    pub async fn cancelled_among(&self, ids: &[JobId]) -> Result<Vec<JobId>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        Ok(sqlx::query_scalar(self.pick(json_ids!(
            "SELECT id FROM jobs WHERE id IN ",
            "1",
            " AND status = 'cancelled'"
        )))
        .bind(list)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replays one final job as a new `queued` job with the same kind, parameters and schedule,
    /// `retry_of` = `id`, `max_attempts` as given; the old row is not touched. Only
    /// [`REPLAYABLE`] statuses are replayed.
    pub async fn replay(
        &self,
        id: JobId,
        source: Source,
        max_attempts: u32,
    ) -> Result<Replay, Error> {
        let r = async {
            let mut tx = self.write_tx().await?;
            let Some(job) = get_in(&mut tx, id).await? else {
                return Ok(Replay::NotFound);
            };
            if let Some(why) = not_replayable(&job) {
                return Ok(Replay::Refused(why));
            }
            let new = insert_replay(&mut tx, &job, source, max_attempts).await?;
            tx.commit().await?;
            Ok(Replay::Replayed(new))
        }
        .await;
        let r = self.observe(r)?;
        if matches!(r, Replay::Replayed(_)) {
            self.work.notify_one();
        }
        Ok(r)
    }

    /// Replays, in one transaction, up to `f.limit` final jobs matching `f`, oldest first.
    /// A bulk replay takes only original jobs: never a job that is itself a replay, and never
    /// one that already has a replay. So no run picks up what an earlier run created, and
    /// running it again and again cannot loop: each failed job is replayed in bulk at most once
    /// (a replay that fails again can still be replayed by its id).
    pub async fn replay_many(
        &self,
        f: &ReplayFilter,
        source: Source,
        max_attempts: u32,
    ) -> Result<Replayed, Error> {
        let r = async {
            let mut tx = self.write_tx().await?;
            let matching = "FROM jobs j WHERE j.status = $1 AND ($2 IS NULL OR j.kind = $2) \
                   AND ($3 IS NULL OR j.finished_at >= $3) AND ($4 IS NULL OR j.schedule = $4) \
                   AND j.retry_of IS NULL \
                   AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.retry_of = j.id)";
            // Unqualified columns are the outer `j`'s: `r` lives only in the subquery.
            // Dynamic only in the fixed column list and filter text: every value is bound.
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {JOB_COLUMNS} {matching} ORDER BY j.id LIMIT $5"
            )))
            .bind(&f.status)
            .bind(&f.kind)
            .bind(f.since)
            .bind(&f.schedule)
            .bind(f.limit.max(0))
            .fetch_all(&mut *tx)
            .await?;
            let total: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) {matching}")))
                    .bind(&f.status)
                    .bind(&f.kind)
                    .bind(f.since)
                    .bind(&f.schedule)
                    .fetch_one(&mut *tx)
                    .await?;
            let mut out = Replayed::default();
            for row in &rows {
                let job = job_from_row(row)?;
                if not_replayable(&job).is_some() {
                    continue;
                }
                let new = insert_replay(&mut tx, &job, source, max_attempts).await?;
                out.jobs.push((job.id, new));
            }
            tx.commit().await?;
            out.left = total - rows.len() as i64;
            Ok(out)
        }
        .await;
        let r = self.observe(r)?;
        if !r.jobs.is_empty() {
            self.work.notify_one();
        }
        Ok(r)
    }

    /// The job a submission with idempotency key `key` is recorded as (its own, the earlier job
    /// with that key, or the queued job it joined), once the row is written; or the `rejected`
    /// job that recorded it, when it was refused (a rejected request holds no key).
    pub async fn job_for_key(&self, key: &str) -> Result<Option<JobId>, Error> {
        let served: Option<JobId> =
            sqlx::query_scalar("SELECT job_id FROM requests WHERE idem_key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        if served.is_some() {
            return Ok(served);
        }
        // Read through the (status, next_run_at) index: rejected rows only.
        Ok(sqlx::query_scalar(
            "SELECT id FROM jobs WHERE status = 'rejected' AND idempotency_key = $1 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// Why `job` cannot be replayed, if it cannot.
fn not_replayable(job: &JobRow) -> Option<String> {
    match job.status() {
        Some(s) if REPLAYABLE.contains(&s) => None,
        Some(Status::Rejected) => Some(format!(
            "job {} was rejected: its parameters were invalid, so a replay would be rejected \
             too; submit a corrected job instead",
            job.id
        )),
        Some(Status::Succeeded) => Some(format!(
            "job {} succeeded; only failed or cancelled jobs are replayed (submit a new job \
             with enqueue to run it again)",
            job.id
        )),
        Some(s) if !s.is_final() => Some(format!(
            "job {} is {s}, not final; only failed or cancelled jobs are replayed",
            job.id
        )),
        _ => Some(format!(
            "job {} is {}; only failed or cancelled jobs are replayed",
            job.id, job.status
        )),
    }
}

async fn get_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: JobId,
) -> Result<Option<JobRow>, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(job_from_row).transpose()
}

async fn insert_replay(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &JobRow,
    source: Source,
    max_attempts: u32,
) -> Result<JobId, Error> {
    let now = now_ms();
    // No idempotency key (the old job holds it) and no coalescing: a replay is asked for
    // explicitly. Its request row is written by the trigger jobs_record_request.
    Ok(sqlx::query_scalar(
        "INSERT INTO jobs (kind, params, source, schedule, status, max_attempts, next_run_at, \
           created_at, updated_at, retry_of, lane) \
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(&job.kind)
    .bind(job.params.to_string())
    .bind(source.as_str())
    .bind(&job.schedule)
    .bind(i64::from(max_attempts))
    .bind(now)
    .bind(now)
    .bind(now)
    .bind(job.id)
    // The same lane: a replayed sync waits for the repository's sync in progress too.
    .bind(&job.lane)
    .fetch_one(&mut **tx)
    .await?)
}
