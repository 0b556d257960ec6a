//! The job table: what a job is as stored, inserting one (alone, in a batch, or as a cron tick
//! that is skipped while its previous run is active), reading jobs back, and start-up recovery of
//! jobs a dead process left `running`. Claiming and settling live in [`super::claim`] and
//! [`super::settle`]; who asked for a job, in [`super::requests`].

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;

use super::{requests, Backend, Error, OnBackend, Store};
use crate::{now_ms, JobId, Source, Status};

/// A job as stored.
#[derive(Clone, Debug, Serialize)]
pub struct JobRow {
    pub id: JobId,
    pub kind: String,
    pub params: serde_json::Value,
    pub source: String,
    pub schedule: Option<String>,
    pub status: String,
    #[serde(skip)]
    pub claimed_from: Option<String>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub next_run_at: i64,
    pub jid: Option<String>,
    pub trace_id: Option<String>,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub checkpoint: Option<serde_json::Value>,
    pub result: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// A cron job's slot: the instant its tick was scheduled for (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<i64>,
    #[serde(skip)]
    pub lane: Option<String>,
    /// The job this one replays (`jobs retry`), when it is a replay.
    pub retry_of: Option<JobId>,
}

impl JobRow {
    /// The parsed status.
    pub fn status(&self) -> Option<Status> {
        Status::parse(&self.status)
    }

    /// True when this claim is a poll of a following job, not a new attempt.
    pub fn is_poll(&self) -> bool {
        self.claimed_from.as_deref() == Some("following")
    }
}

/// A job to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub kind: String,
    pub params: String,
    pub source: Source,
    pub schedule: Option<String>,
    pub status: Status,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    /// Join a queued job of the same kind with the same parameters instead of adding one.
    pub coalesce: bool,
    /// The cron slot this job fires: the instant its tick was scheduled for (Unix ms).
    pub slot: Option<i64>,
    /// Jobs sharing a lane never run together (see `JobKind::lane`).
    pub lane: Option<String>,
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    New(JobId),
    /// The idempotency key already names this job; nothing was written.
    Duplicate(JobId),
    /// Joined this queued job (recorded as a request of it).
    Coalesced(JobId),
}

/// One kind's share of the queue, for the metrics gauges ([`Store::queue_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub kind: String,
    /// Jobs `queued`, due or waiting for a retry.
    pub queued: i64,
    /// How long the longest-waiting due `queued` job has been due (0 when none is due).
    pub oldest_due_age_ms: i64,
    pub following: i64,
    pub running: i64,
}

/// Filters for [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub limit: i64,
}

pub(super) const JOB_COLUMNS: &str =
    "id, kind, params, source, schedule, status, claimed_from, attempts, \
     max_attempts, next_run_at, jid, trace_id, http_status, error_code, error_msg, checkpoint, \
     result, idempotency_key, created_at, started_at, finished_at, slot, lane, retry_of";

impl Store {
    /// Inserts a job; a duplicate idempotency key inserts nothing and names the existing job.
    pub async fn insert(&self, job: &NewJob) -> Result<Inserted, Error> {
        let inserted = self.observe(
            self.again_if_raced(|| async {
                let mut tx = self.write_tx().await?;
                let inserted = insert_in(&mut tx, job).await?;
                tx.commit().await?;
                Ok(inserted)
            })
            .await,
        )?;
        if matches!(inserted, Inserted::New(_)) {
            self.work.notify_one();
        }
        Ok(inserted)
    }

    /// Inserts several jobs in one transaction: all are recorded, or none (one commit for a
    /// whole batch of deliveries, which is what makes persist-then-ack affordable).
    pub async fn insert_many(&self, jobs: &[NewJob]) -> Result<Vec<Inserted>, Error> {
        let out = self.observe(
            self.again_if_raced(|| async {
                let mut tx = self.write_tx().await?;
                requests::take_coalesce_turns(&mut tx, jobs).await?;
                let out = insert_batch_in(&mut tx, jobs).await?;
                tx.commit().await?;
                Ok(out)
            })
            .await,
        )?;
        if out.iter().any(|i| matches!(i, Inserted::New(_))) {
            self.work.notify_one();
        }
        Ok(out)
    }

    /// Start-up recovery: jobs left `running` by a process that died go back to what they were
    /// claimed from, due now; their open attempts are closed as `interrupted`. On a shared
    /// store (PostgreSQL) other instances may be running jobs right now: only the jobs of
    /// instances that stopped or fell silent past `lease` are taken back ([`Store::take_over`]).
    pub async fn recover_running(&self, lease: std::time::Duration) -> Result<u64, Error> {
        if self.is_shared() {
            self.heartbeat().await?;
            // This instance runs nothing yet: jobs still `running` under its own id were left
            // by an earlier run in this process (a daemon restarted on the same handle).
            return Ok(self.take_back_own().await? + self.take_over(lease).await?);
        }
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE attempts SET finished_at = $1, outcome = 'interrupted', \
               error_msg = 'the process stopped during this attempt' \
             WHERE outcome IS NULL AND job_id IN (SELECT id FROM jobs WHERE status = 'running')",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = COALESCE(claimed_from, 'queued'), next_run_at = $1, \
               updated_at = $2 WHERE status = 'running'",
        )
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// One job.
    pub async fn get(&self, id: JobId) -> Result<Option<JobRow>, Error> {
        // A fixed column list; the id is bound.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Jobs, newest first.
    pub async fn list(&self, f: &ListFilter) -> Result<Vec<JobRow>, Error> {
        // A fixed column list; the filters are bound.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 IS NULL OR kind = $1) \
             AND ($2 IS NULL OR status = $2) ORDER BY id DESC LIMIT $3"
        )))
        .bind(&f.kind)
        .bind(&f.status)
        .bind(if f.limit <= 0 { i64::MAX } else { f.limit })
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Active jobs per kind (kinds with none are absent), in one statement over the
    /// `(kind, status, next_run_at)` index.
    pub async fn queue_stats(&self, now: i64) -> Result<Vec<QueueStats>, Error> {
        let rows = sqlx::query(
            "SELECT kind, \
               SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) AS queued, \
               COALESCE($1 - MIN(CASE WHEN status = 'queued' AND next_run_at <= $1 \
                 THEN next_run_at END), 0) AS oldest_due_age_ms, \
               SUM(CASE WHEN status = 'following' THEN 1 ELSE 0 END) AS following, \
               SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running \
             FROM jobs WHERE status IN ('queued', 'following', 'running') GROUP BY kind",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueueStats {
                    kind: r.try_get("kind")?,
                    queued: r.try_get("queued")?,
                    oldest_due_age_ms: r.try_get("oldest_due_age_ms")?,
                    following: r.try_get("following")?,
                    running: r.try_get("running")?,
                })
            })
            .collect()
    }

    /// Counts jobs per status.
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}

pub(super) async fn insert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &NewJob,
) -> Result<Inserted, Error> {
    let now = now_ms();
    if let Some(earlier) = requests::earlier(tx, job, now).await? {
        return Ok(earlier);
    }
    let finished = job.status.is_final().then_some(now);
    let pg = tx.backend() == Backend::Postgres;
    let text = |s: &str| stored_text(pg, s);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (kind, params, source, schedule, status, max_attempts, next_run_at, \
           idempotency_key, error_code, error_msg, created_at, finished_at, updated_at, slot, \
           lane) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
    )
    .bind(text(&job.kind))
    .bind(text(&job.params))
    .bind(job.source.as_str())
    .bind(&job.schedule)
    .bind(job.status.as_str())
    .bind(job.max_attempts as i64)
    .bind(now)
    .bind(job.idempotency_key.as_deref().map(text))
    .bind(&job.error_code)
    .bind(job.error_msg.as_deref().map(text))
    .bind(now)
    .bind(finished)
    .bind(now)
    .bind(job.slot)
    .bind(&job.lane)
    .fetch_one(&mut **tx)
    .await?;
    // The job's request row is written by the trigger jobs_record_request.
    Ok(Inserted::New(id))
}

/// What one job of a batch does, decided before anything is written.
enum Plan {
    Done(Inserted),
    /// Inserted, as the n-th new row of the batch.
    New(usize),
    /// Joins the job the n-th new row of the batch becomes.
    JoinNew(usize),
    /// Joins a job already in the store.
    Join(JobId),
    /// Its key was taken by the n-th new row of the batch.
    DuplicateOfNew(usize),
}

/// Where a key or a set of parameters already points inside a batch.
#[derive(Clone, Copy)]
enum Target {
    New(usize),
    Stored(JobId),
}

/// Inserts a batch with a few statements instead of two per job: one look-up for every key and
/// every set of parameters ([`requests::earlier_many`]), one multi-row `INSERT` of the new jobs,
/// one of the requests that joined a job. The outcome of each job is what inserting them one by
/// one in order ([`insert_in`]) gives: a later job of the batch finds an earlier one's key
/// (`Duplicate`) and joins an earlier queued one with its parameters (`Coalesced`), a job
/// already in the store first.
pub(super) async fn insert_batch_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    jobs: &[NewJob],
) -> Result<Vec<Inserted>, Error> {
    if jobs.len() < 2 {
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            out.push(insert_in(tx, job).await?);
        }
        return Ok(out);
    }
    let now = now_ms();
    let found = requests::earlier_many(tx, jobs).await?;
    let mut keys: HashMap<&str, Target> = HashMap::new();
    let mut queued: HashMap<(&str, &str), usize> = HashMap::new();
    let mut new_rows: Vec<&NewJob> = Vec::new();
    let mut plans = Vec::with_capacity(jobs.len());
    for (job, (dup, joinable)) in jobs.iter().zip(found) {
        let key = requests::held_key(job);
        let plan = match key.and_then(|k| keys.get(k)) {
            Some(Target::New(n)) => Plan::DuplicateOfNew(*n),
            Some(Target::Stored(id)) => Plan::Done(Inserted::Duplicate(*id)),
            None => match dup {
                Some(id) => Plan::Done(Inserted::Duplicate(id)),
                None if requests::coalescible(job) => match joinable {
                    Some(id) => Plan::Join(id),
                    None => match queued.get(&(job.kind.as_str(), job.params.as_str())) {
                        Some(n) => Plan::JoinNew(*n),
                        None => Plan::New(new_rows.len()),
                    },
                },
                None => Plan::New(new_rows.len()),
            },
        };
        match plan {
            Plan::New(n) => {
                new_rows.push(job);
                if job.status == Status::Queued {
                    queued.insert((&job.kind, &job.params), n);
                }
                if let Some(k) = key {
                    keys.insert(k, Target::New(n));
                }
            }
            Plan::Join(id) => {
                if let Some(k) = key {
                    keys.insert(k, Target::Stored(id));
                }
            }
            Plan::JoinNew(n) => {
                if let Some(k) = key {
                    keys.insert(k, Target::New(n));
                }
            }
            _ => {}
        }
        plans.push(plan);
    }
    let ids = insert_rows(tx, &new_rows, now).await?;
    let mut joined = Vec::new();
    let out = plans
        .into_iter()
        .zip(jobs)
        .map(|(plan, job)| match plan {
            Plan::Done(i) => i,
            Plan::New(n) => Inserted::New(ids[n]),
            Plan::DuplicateOfNew(n) => Inserted::Duplicate(ids[n]),
            Plan::Join(id) => {
                joined.push((id, job));
                Inserted::Coalesced(id)
            }
            Plan::JoinNew(n) => {
                joined.push((ids[n], job));
                Inserted::Coalesced(ids[n])
            }
        })
        .collect();
    requests::record_joined(tx, &joined, now).await?;
    Ok(out)
}

/// Inserts `rows` as new jobs, a multi-row `INSERT` per [`super::ROWS_PER_STATEMENT`]; their ids in
/// the same order. Ids are handed out in the order of the rows (SQLite's rowid, PostgreSQL's
/// identity), so the returned ids, sorted, are the rows' in order.
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[&NewJob],
    now: i64,
) -> Result<Vec<JobId>, Error> {
    let pg = tx.backend() == Backend::Postgres;
    let mut ids = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(super::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO jobs (kind, params, source, schedule, status, max_attempts, \
               next_run_at, idempotency_key, error_code, error_msg, created_at, finished_at, \
               updated_at, slot, lane) VALUES {} RETURNING id",
            super::value_rows_on(tx.backend(), chunk.len(), 15, 1)
        );
        // Dynamic only in the number of placeholder rows.
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
        for job in chunk {
            let finished = job.status.is_final().then_some(now);
            q = q
                .bind(stored_text(pg, &job.kind))
                .bind(stored_text(pg, &job.params))
                .bind(job.source.as_str())
                .bind(job.schedule.clone())
                .bind(job.status.as_str())
                .bind(job.max_attempts as i64)
                .bind(now)
                .bind(job.idempotency_key.as_deref().map(|k| stored_text(pg, k)))
                .bind(job.error_code.clone())
                .bind(job.error_msg.as_deref().map(|m| stored_text(pg, m)))
                .bind(now)
                .bind(finished)
                .bind(now)
                .bind(job.slot)
                .bind(job.lane.clone());
        }
        let mut got = q.fetch_all(&mut **tx).await?;
        got.sort_unstable();
        if got.len() != chunk.len() {
            return Err(Error::Sql(sqlx::Error::Protocol(format!(
                "a multi-row insert of {} jobs returned {} ids",
                chunk.len(),
                got.len()
            ))));
        }
        ids.extend(got);
    }
    Ok(ids)
}

/// Text as stored: PostgreSQL's text cannot hold NUL, which a rejected submission's raw bytes
/// may contain, so there it is stored as U+FFFD (SQLite keeps it).
fn stored_text(pg: bool, s: &str) -> String {
    if pg && s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

fn json_col(row: &sqlx::any::AnyRow, col: &str) -> Result<Option<serde_json::Value>, Error> {
    let text: Option<String> = row.try_get(col)?;
    Ok(text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t))))
}

pub(super) fn job_from_row(row: &sqlx::any::AnyRow) -> Result<JobRow, Error> {
    Ok(JobRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        params: json_col(row, "params")?.unwrap_or(serde_json::Value::Null),
        source: row.try_get("source")?,
        schedule: row.try_get("schedule")?,
        status: row.try_get("status")?,
        claimed_from: row.try_get("claimed_from")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        next_run_at: row.try_get("next_run_at")?,
        jid: row.try_get("jid")?,
        trace_id: row.try_get("trace_id")?,
        http_status: row.try_get("http_status")?,
        error_code: row.try_get("error_code")?,
        error_msg: row.try_get("error_msg")?,
        checkpoint: json_col(row, "checkpoint")?,
        result: json_col(row, "result")?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        slot: row.try_get("slot")?,
        lane: row.try_get("lane")?,
        retry_of: row.try_get("retry_of")?,
    })
}
