//! Claiming: workers take due jobs, most overdue first, with a per-kind limit, in one
//! `UPDATE … RETURNING` statement, so two claimers never take the same job. Also when the next
//! waiting job is due, so an idle worker knows how long to sleep.

use super::jobs::{job_from_row, JOB_COLUMNS};
use super::{Error, JobRow, Store};
use crate::now_ms;

/// A queued job starts only when its lane is free: no job of its lane is `running` or
/// `following`, and no older job of its lane is queued (so one claim takes at most one job of
/// a lane, and a lane's jobs start in the order they arrived). A following job is always
/// claimable: its remote work has started, and its polls must go on.
const LANE_FREE: &str = " AND (j.lane IS NULL OR NOT EXISTS (SELECT 1 FROM jobs b \
     WHERE b.lane = j.lane AND b.id <> j.id \
       AND (b.status IN ('running', 'following') OR (b.status = 'queued' AND b.id < j.id))))";

impl Store {
    /// Claims the most overdue job of one of `kinds` (see [`Store::claim_batch`]).
    pub async fn claim(&self, kinds: &[&str]) -> Result<Option<JobRow>, Error> {
        for kind in kinds {
            if let Some(job) = self.claim_batch(&[(kind, 1)]).await?.pop() {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// Claims due jobs, most overdue first: at most `total`, and at most `limit` of each
    /// `(kind, limit)`, moving them to `running`, in one statement; a queued job only when its
    /// lane is free (see [`LANE_FREE`]). A claim from `queued` starts a
    /// new attempt (counted; its attempt row is opened by a trigger); a claim from `following` is
    /// a poll. Being one `UPDATE … RETURNING`, two claimers never take the same job.
    pub async fn claim_batch_limited(
        &self,
        limits: &[(&str, usize)],
        total: usize,
    ) -> Result<Vec<JobRow>, Error> {
        let limits: Vec<_> = limits.iter().filter(|(_, n)| *n > 0).collect();
        if limits.is_empty() || total == 0 {
            return Ok(Vec::new());
        }
        // Numbered throughout: sqlx does not number a bare `?` after `?1` the way SQLite does.
        // Each kind's candidates come from index range scans on (kind, status, next_run_at)
        // capped at its limit, so a claim reads a few rows however long the queue is.
        let per_kind = (0..limits.len())
            .map(|i| {
                let (k, cap) = (3 + 2 * i, 4 + 2 * i);
                let scan = |status: &str, extra: &str| {
                    format!(
                        "SELECT * FROM (SELECT id, next_run_at FROM jobs j \
                         WHERE kind = ?{k} AND status = '{status}' AND next_run_at <= ?1{extra} \
                         ORDER BY next_run_at, id LIMIT ?{cap})"
                    )
                };
                format!(
                    "SELECT * FROM (SELECT id, next_run_at FROM ({} UNION ALL {}) \
                     ORDER BY next_run_at, id LIMIT ?{cap})",
                    scan("queued", LANE_FREE),
                    scan("following", "")
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let sql = format!(
            "UPDATE jobs SET status = 'running', claimed_from = status, \
               attempts = attempts + (status = 'queued'), \
               started_at = COALESCE(started_at, ?1), updated_at = ?1 \
             WHERE id IN (SELECT id FROM ({per_kind}) ORDER BY next_run_at, id LIMIT ?2) \
               AND status IN ('queued', 'following') \
             RETURNING {JOB_COLUMNS}"
        );
        let rows = self.observe(
            async {
                let mut tx = self.claim_tx().await?;
                // The time is read once the write lock is held, so a job's start is never
                // before the end of a job that held its lane.
                // Dynamic only in numbered placeholders and fixed status literals: kinds and
                // caps are bound.
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(now_ms())
                    .bind(total as i64);
                for (kind, cap) in &limits {
                    q = q.bind(*kind).bind(*cap as i64);
                }
                let rows = q.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                Ok(rows)
            }
            .await,
        )?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|j| (j.next_run_at, j.id));
        Ok(jobs)
    }

    /// As [`Store::claim_batch_limited`] with no overall limit beyond the per-kind ones.
    pub async fn claim_batch(&self, limits: &[(&str, usize)]) -> Result<Vec<JobRow>, Error> {
        let total = limits.iter().map(|(_, n)| *n).sum();
        self.claim_batch_limited(limits, total).await
    }

    /// The earliest `next_run_at` among waiting jobs.
    pub async fn next_due_at(&self) -> Result<Option<i64>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_run_at) FROM jobs WHERE status IN ('queued', 'following')",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
