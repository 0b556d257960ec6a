//! Schedules as the store knows them: each firing's job row carries its slot (`(schedule,
//! slot)` is unique, so a tick fires at most once, even across a restart), the last slot each
//! schedule dealt with (so the misfire policy knows what was missed while nothing fired), and
//! whether it is paused. The schedules themselves (cron, zone, kind) live in the configuration.

use sqlx::Row;

use super::jobs::insert_in;
use super::{Error, Inserted, NewJob, Store};
use crate::{now_ms, JobId, Status};

/// What became of one tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fired {
    /// A job was queued (or, for an invalid job, rejected) for the slot.
    Queued(JobId),
    /// The previous run is still active: recorded as a `skipped` job with the slot.
    Skipped(JobId),
    /// The schedule is paused: nothing recorded but the slot, as dealt with.
    Paused,
    /// The slot had fired already (another start of this process within the same second):
    /// nothing written.
    Already(JobId),
}

/// One schedule's state in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScheduleState {
    pub name: String,
    /// The latest slot fired or passed (Unix ms).
    pub last_slot: Option<i64>,
    /// The job of the latest slot that has one, and its status.
    pub last_job: Option<(JobId, String)>,
    pub paused: bool,
    pub paused_by: Option<String>,
    pub paused_at: Option<i64>,
}

impl Store {
    /// Records the tick of schedule `name` at `slot` in one transaction: a `queued` job, or
    /// a `skipped` one while a job of the schedule is still active (unless `behind`: a
    /// made-up tick queues behind it), or nothing while the
    /// schedule is paused or when the slot has a job already; and the slot as the schedule's
    /// latest.
    pub async fn fire_slot(
        &self,
        name: &str,
        slot: i64,
        job: &NewJob,
        behind: bool,
    ) -> Result<Fired, Error> {
        let mut job = job.clone();
        job.schedule = Some(name.to_string());
        job.slot = Some(slot);
        let job = &job;
        let r = self
            .again_if_raced(|| async {
                let mut tx = self.write_tx().await?;
                let paused: Option<bool> =
                    sqlx::query_scalar::<_, i64>("SELECT paused FROM schedules WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|p| p != 0);
                let fired = if paused == Some(true) {
                    Fired::Paused
                } else if let Some(id) = sqlx::query_scalar::<_, i64>(
                    "SELECT id FROM jobs WHERE schedule = $1 AND slot = $2",
                )
                .bind(name)
                .bind(slot)
                .fetch_optional(&mut *tx)
                .await?
                {
                    Fired::Already(id)
                } else {
                    match scheduled_in(&mut tx, job, behind).await? {
                        (id, true) => Fired::Skipped(id),
                        (id, false) => Fired::Queued(id),
                    }
                };
                advance_in(&mut tx, name, slot).await?;
                tx.commit().await?;
                Ok(fired)
            })
            .await;
        let fired = self.observe(r)?;
        if matches!(fired, Fired::Queued(_)) {
            self.work.notify_one();
        }
        Ok(fired)
    }

    /// Inserts a job of a schedule fired by hand (no slot): `skipped` when a job of the same
    /// schedule is still active. Returns the insert and whether it was skipped.
    pub async fn insert_scheduled(&self, job: &NewJob) -> Result<(Inserted, bool), Error> {
        let r = self
            .again_if_raced(|| async {
                let mut tx = self.write_tx().await?;
                let (id, skipped) = scheduled_in(&mut tx, job, false).await?;
                tx.commit().await?;
                Ok((Inserted::New(id), skipped))
            })
            .await;
        let r = self.observe(r)?;
        if !r.1 {
            self.work.notify_one();
        }
        Ok(r)
    }

    /// Records that `schedule` dealt with every slot up to `slot` without a job (misfires the
    /// policy does not make up).
    pub async fn pass_slots(&self, schedule: &str, slot: i64) -> Result<(), Error> {
        let r = async {
            let mut tx = self.write_tx().await?;
            advance_in(&mut tx, schedule, slot).await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        self.observe(r)
    }

    /// The latest slot `schedule` dealt with.
    pub async fn last_slot(&self, schedule: &str) -> Result<Option<i64>, Error> {
        Ok(
            sqlx::query_scalar("SELECT last_slot FROM schedules WHERE name = $1")
                .bind(schedule)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    /// Pauses (`true`) or resumes a schedule; `by` says who. Returns whether it changed.
    pub async fn set_paused(&self, schedule: &str, paused: bool, by: &str) -> Result<bool, Error> {
        let now = now_ms();
        let r = async {
            let mut tx = self.write_tx().await?;
            let was: Option<bool> =
                sqlx::query_scalar::<_, i64>("SELECT paused FROM schedules WHERE name = $1")
                    .bind(schedule)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|p| p != 0);
            let changed = was.unwrap_or(false) != paused;
            if changed {
                sqlx::query(
                    "INSERT INTO schedules (name, paused, paused_by, paused_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4) \
                     ON CONFLICT (name) DO UPDATE SET paused = $2, paused_by = $3, \
                       paused_at = $4, updated_at = $4",
                )
                .bind(schedule)
                .bind(paused as i64)
                .bind(by)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(changed)
        }
        .await;
        self.observe(r)
    }

    /// Every schedule the store knows (fired, passed or paused at least once), by name.
    pub async fn schedule_states(&self) -> Result<Vec<ScheduleState>, Error> {
        let rows = sqlx::query(
            "SELECT s.name, s.last_slot, s.paused, s.paused_by, s.paused_at, \
               (SELECT j.id FROM jobs j WHERE j.schedule = s.name AND j.slot IS NOT NULL \
                  ORDER BY j.slot DESC LIMIT 1) AS job_id, \
               (SELECT j.status FROM jobs j WHERE j.schedule = s.name AND j.slot IS NOT NULL \
                  ORDER BY j.slot DESC LIMIT 1) AS job_status \
             FROM schedules s ORDER BY s.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: Option<i64> = r.try_get("job_id")?;
                let status: Option<String> = r.try_get("job_status")?;
                Ok(ScheduleState {
                    name: r.try_get("name")?,
                    last_slot: r.try_get("last_slot")?,
                    last_job: id.zip(status),
                    paused: r.try_get::<i64, _>("paused")? != 0,
                    paused_by: r.try_get("paused_by")?,
                    paused_at: r.try_get("paused_at")?,
                })
            })
            .collect()
    }

    /// When each schedule's latest successful job finished (Unix ms), by schedule.
    pub async fn last_success_by_schedule(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT schedule, MAX(finished_at) AS at FROM jobs \
             WHERE schedule IS NOT NULL AND status = 'succeeded' AND finished_at IS NOT NULL \
             GROUP BY schedule",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("schedule")?, r.try_get("at")?)))
            .collect()
    }
}

/// Inserts a schedule's job, as `skipped` (naming the active job) while a job of the same
/// schedule is still queued, running or following — unless `behind`: then it is queued (its
/// lane makes it wait for the active one). Returns its id and whether it was skipped.
async fn scheduled_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &NewJob,
    behind: bool,
) -> Result<(JobId, bool), Error> {
    let active: Option<i64> = if job.status == Status::Queued && !behind {
        sqlx::query_scalar(
            "SELECT id FROM jobs WHERE schedule = $1 \
             AND status IN ('queued', 'running', 'following') LIMIT 1",
        )
        .bind(&job.schedule)
        .fetch_optional(&mut **tx)
        .await?
    } else {
        None
    };
    let mut job = job.clone();
    if let Some(prev) = active {
        job.status = Status::Skipped;
        job.lane = None;
        job.error_msg = Some(format!("previous run (job {prev}) is still active"));
    }
    let id = match insert_in(tx, &job).await? {
        Inserted::New(id) | Inserted::Duplicate(id) | Inserted::Coalesced(id) => id,
    };
    Ok((id, active.is_some()))
}

/// Sets `schedule`'s latest slot to `slot` unless it is later already.
async fn advance_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    schedule: &str,
    slot: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO schedules (name, last_slot, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET \
           last_slot = CASE WHEN schedules.last_slot IS NULL OR schedules.last_slot < $2 \
             THEN $2 ELSE schedules.last_slot END, updated_at = $3",
    )
    .bind(schedule)
    .bind(slot)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
