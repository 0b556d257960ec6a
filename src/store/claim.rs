//! Claiming: workers take due jobs, most overdue first, with a per-kind limit, in one write
//! transaction ending in a guarded `UPDATE … RETURNING`, so two claimers never take the same
//! job. Also when the next waiting job is due, so an idle worker knows how long to sleep.

use super::jobs::{job_from_row, JOB_COLUMNS};
use super::{json_ids, Backend, Error, JobRow, Store};
use crate::now_ms;

/// One kind's due queued jobs whose lane is free, most overdue first, at most `cap`: no job
/// of its lane is `running` or `following`, and no older job of its lane is queued (so one
/// claim takes at most one job of a lane, and a lane's jobs start in the order they arrived).
/// `${k}` is the kind, `${cap}` its cap, `$1` now. An index range scan on (kind, status,
/// next_run_at): a few rows read, however long the queue. `lock` ends it on PostgreSQL (see
/// [`Store::claim_batch_limited`]).
fn queued(k: usize, cap: usize, lock: &str) -> String {
    format!(
        "SELECT next_run_at, id, kind FROM jobs j \
         WHERE kind = ${k} AND status = 'queued' AND next_run_at <= $1 \
           AND (j.lane IS NULL OR NOT EXISTS (SELECT 1 FROM jobs b \
             WHERE b.lane = j.lane AND b.id <> j.id AND (b.status IN ('running', 'following') \
               OR (b.status = 'queued' AND b.id < j.id)))) \
         ORDER BY next_run_at, id LIMIT ${cap}{lock}"
    )
}

/// One kind's due following jobs: always claimable (their remote work has started, and their
/// polls must go on).
fn following(k: usize, cap: usize, lock: &str) -> String {
    format!(
        "SELECT next_run_at, id, kind FROM jobs \
         WHERE kind = ${k} AND status = 'following' AND next_run_at <= $1 \
         ORDER BY next_run_at, id LIMIT ${cap}{lock}"
    )
}

/// Every kind's candidates in one statement (see [`queued`], [`following`]). SQLite: a
/// `UNION ALL` of the subqueries. PostgreSQL: each subquery a CTE that locks the rows it
/// returns and skips rows another instance's claim holds (`FOR UPDATE SKIP LOCKED`), so
/// instances claiming at once never wait for each other and never take the same job.
fn candidates(kinds: usize, backend: Backend) -> String {
    let parts = (0..kinds).flat_map(|i| {
        let (k, cap) = (2 + 2 * i, 3 + 2 * i);
        [(k, cap, true), (k, cap, false)]
    });
    match backend {
        Backend::Sqlite => parts
            .map(|(k, cap, q)| {
                let sub = if q {
                    queued(k, cap, "")
                } else {
                    following(k, cap, "")
                };
                format!("SELECT * FROM ({sub})")
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL "),
        Backend::Postgres => {
            let lock = " FOR UPDATE SKIP LOCKED";
            let parts: Vec<_> = parts
                .enumerate()
                .map(|(n, (k, cap, q))| {
                    let sub = if q {
                        queued(k, cap, lock)
                    } else {
                        following(k, cap, lock)
                    };
                    (format!("c{n} AS ({sub})"), format!("SELECT * FROM c{n}"))
                })
                .collect();
            let ctes: Vec<_> = parts.iter().map(|(c, _)| c.as_str()).collect();
            let selects: Vec<_> = parts.iter().map(|(_, s)| s.as_str()).collect();
            format!("WITH {} {}", ctes.join(", "), selects.join(" UNION ALL "))
        }
    }
}

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
    /// `(kind, limit)`, moving them to `running`; a queued job only when its lane is free
    /// (see [`queued`]). A claim from `queued` starts a new attempt (counted; its attempt row
    /// is opened by a trigger); a claim from `following` is a poll.
    ///
    /// One write transaction with two statements: every kind's candidates from small index
    /// scans (see [`queued`]), then, with the overall order and limits applied here, one guarded
    /// `UPDATE … RETURNING` that moves them (only rows still `queued` or `following`). The
    /// write lock is held throughout, so two claimers never take the same job.
    pub async fn claim_batch_limited(
        &self,
        limits: &[(&str, usize)],
        total: usize,
    ) -> Result<Vec<JobRow>, Error> {
        let limits: Vec<_> = limits.iter().filter(|(_, n)| *n > 0).collect();
        if limits.is_empty() || total == 0 {
            return Ok(Vec::new());
        }
        let candidates = candidates(limits.len(), self.backend);
        let ids = self.pick(json_ids!("", "2", ""));
        let update = format!(
            "UPDATE jobs SET status = 'running', claimed_from = status, \
               attempts = attempts + CASE WHEN status = 'queued' THEN 1 ELSE 0 END, \
               started_at = COALESCE(started_at, $1), updated_at = $1, owner = $3 \
             WHERE id IN {ids} \
               AND status IN ('queued', 'following') \
             RETURNING {JOB_COLUMNS}"
        );
        let rows = self.observe(
            async {
                let mut tx = self.claim_tx().await?;
                // The time is read once the write lock is held, so a job's start is never
                // before the end of a job that held its lane.
                let now = now_ms();
                // Every kind's candidates in one statement. No ORDER BY over the whole
                // compound: SQLite would then sort each kind's whole queue. The overall order
                // and the caps are applied here instead.
                let mut q = sqlx::query_as::<_, (i64, i64, String)>(sqlx::AssertSqlSafe(
                    candidates.as_str(),
                ))
                .bind(now);
                for (kind, cap) in &limits {
                    q = q.bind(*kind).bind(*cap as i64);
                }
                let mut due = q.fetch_all(&mut *tx).await?;
                due.sort_unstable();
                let mut left: std::collections::HashMap<&str, usize> =
                    limits.iter().map(|(k, c)| (*k, *c)).collect();
                let mut picked: Vec<(i64, i64)> = Vec::new();
                for (at, id, kind) in &due {
                    if picked.len() == total {
                        break;
                    }
                    if let Some(n) = left.get_mut(kind.as_str()).filter(|n| **n > 0) {
                        *n -= 1;
                        picked.push((*at, *id));
                    }
                }
                if picked.is_empty() {
                    tx.rollback().await?;
                    return Ok(Vec::new());
                }
                let ids =
                    serde_json::to_string(&picked.iter().map(|(_, id)| *id).collect::<Vec<_>>())
                        .unwrap_or_else(|_| "[]".into());
                // Dynamic only in the fixed column list: the time and the ids are bound.
                let rows = sqlx::query(sqlx::AssertSqlSafe(update))
                    .bind(now)
                    .bind(ids)
                    .bind(self.instance())
                    .fetch_all(&mut *tx)
                    .await?;
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
