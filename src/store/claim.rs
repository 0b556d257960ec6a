//! Claiming: workers take due jobs, most overdue first, with a per-kind limit, atomically, so
//! two claimers never take the same job: on SQLite one `UPDATE … RETURNING` statement, on
//! PostgreSQL a transaction of a locking candidate query and a guarded `UPDATE … RETURNING`. Also when the next waiting job is due, so an idle worker knows how long to sleep.

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
    queued_at(k, cap, "$1", lock)
}

/// [`queued`] with the time as an SQL expression.
fn queued_at(k: usize, cap: usize, now: &str, lock: &str) -> String {
    format!(
        "SELECT next_run_at, id, kind FROM jobs j \
         WHERE kind = ${k} AND status = 'queued' AND next_run_at <= {now} \
           AND (j.lane IS NULL OR NOT EXISTS (SELECT 1 FROM jobs b \
             WHERE b.lane = j.lane AND b.id <> j.id AND (b.status IN ('running', 'following') \
               OR (b.status = 'queued' AND b.id < j.id)))) \
         ORDER BY next_run_at, id LIMIT ${cap}{lock}"
    )
}

/// One kind's due following jobs: always claimable (their remote work has started, and their
/// polls must go on).
fn following(k: usize, cap: usize, lock: &str) -> String {
    following_at(k, cap, "$1", lock)
}

/// [`following`] with the time as an SQL expression.
fn following_at(k: usize, cap: usize, now: &str, lock: &str) -> String {
    format!(
        "SELECT next_run_at, id, kind FROM jobs \
         WHERE kind = ${k} AND status = 'following' AND next_run_at <= {now} \
         ORDER BY next_run_at, id LIMIT ${cap}{lock}"
    )
}

/// PostgreSQL: every kind's candidates in one statement (see [`queued`], [`following`]), each
/// subquery a CTE that locks the rows it returns and skips rows another instance's claim holds
/// (`FOR UPDATE SKIP LOCKED`), so instances claiming at once never wait for each other and
/// never take the same job. (SQLite claims in one statement: [`claim_sqlite`].)
fn candidates_pg(kinds: usize) -> String {
    let lock = " FOR UPDATE SKIP LOCKED";
    let parts: Vec<_> = (0..kinds)
        .flat_map(|i| {
            let (k, cap) = (2 + 2 * i, 3 + 2 * i);
            [queued(k, cap, lock), following(k, cap, lock)]
        })
        .enumerate()
        .map(|(n, sub)| (format!("c{n} AS ({sub})"), format!("SELECT * FROM c{n}")))
        .collect();
    let ctes: Vec<_> = parts.iter().map(|(c, _)| c.as_str()).collect();
    let selects: Vec<_> = parts.iter().map(|(_, s)| s.as_str()).collect();
    format!("WITH {} {}", ctes.join(", "), selects.join(" UNION ALL "))
}

/// SQLite's clock in Unix milliseconds, read inside a statement: constant through one
/// statement, and read under the write lock when the statement writes.
const SQLITE_NOW_MS: &str = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)";

/// SQLite: a whole claim as one statement, so one round trip to the connection's thread
/// instead of four (begin, candidates, update, commit). A writing statement takes SQLite's write
/// lock before it reads anything, so the candidates, the time and the update are one atomic
/// step, as in the transaction PostgreSQL uses. Each kind's candidates ([`queued_at`],
/// [`following_at`]) are capped twice: per subquery by `LIMIT`, and per kind across its two
/// subqueries by numbering them in order; then the most overdue `$2` of all. `$1` is the owner,
/// `$3, $4, …` each kind and its cap. The chosen rows are found by id: the unary `+` keeps
/// SQLite from walking the status index over the whole queue instead.
fn claim_sqlite(kinds: usize) -> String {
    let now = SQLITE_NOW_MS;
    let parts: Vec<String> = (0..kinds)
        .flat_map(|i| {
            let (k, cap) = (3 + 2 * i, 4 + 2 * i);
            [
                format!(
                    "SELECT next_run_at, id, kind, ${cap} AS cap FROM ({})",
                    queued_at(k, cap, now, "")
                ),
                format!(
                    "SELECT next_run_at, id, kind, ${cap} AS cap FROM ({})",
                    following_at(k, cap, now, "")
                ),
            ]
        })
        .collect();
    format!(
        "UPDATE jobs SET status = 'running', claimed_from = status, \
           attempts = attempts + CASE WHEN status = 'queued' THEN 1 ELSE 0 END, \
           started_at = COALESCE(started_at, t.now), updated_at = t.now, owner = $1 \
         FROM (SELECT {now} AS now) t \
         WHERE jobs.id IN (SELECT id FROM ( \
             SELECT id, next_run_at, cap, \
               ROW_NUMBER() OVER (PARTITION BY kind ORDER BY next_run_at, id) AS n \
             FROM ({})) WHERE n <= cap ORDER BY next_run_at, id LIMIT $2) \
           AND +jobs.status IN ('queued', 'following') \
         RETURNING {JOB_COLUMNS}",
        parts.join(" UNION ALL ")
    )
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
    /// SQLite: one statement ([`claim_sqlite`]). PostgreSQL: one transaction with two
    /// statements: every kind's candidates from small index scans, locked
    /// ([`candidates_pg`]), then, with the overall order and limits applied here, one guarded
    /// `UPDATE … RETURNING` that moves them (only rows still `queued` or `following`).
    pub async fn claim_batch_limited(
        &self,
        limits: &[(&str, usize)],
        total: usize,
    ) -> Result<Vec<JobRow>, Error> {
        let limits: Vec<_> = limits.iter().filter(|(_, n)| *n > 0).collect();
        if limits.is_empty() || total == 0 {
            return Ok(Vec::new());
        }
        if self.backend == Backend::Sqlite {
            return self.claim_sqlite(&limits, total).await;
        }
        let candidates = candidates_pg(limits.len());
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
                // The time the candidates are due by.
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
                // The start is read again now that the candidates were read: a job of the same
                // lane that ended just before they were read (its settle took its time before
                // this transaction began, and committed before the candidates' snapshot) must
                // not look as if it overlapped this one.
                let started = now_ms().max(now);
                // Dynamic only in the fixed column list: the time and the ids are bound.
                let rows = sqlx::query(sqlx::AssertSqlSafe(update))
                    .bind(started)
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

    /// [`Store::claim_batch_limited`] on SQLite: one statement ([`claim_sqlite`]) on the
    /// claims' own connection.
    async fn claim_sqlite(
        &self,
        limits: &[&(&str, usize)],
        total: usize,
    ) -> Result<Vec<JobRow>, Error> {
        let sql = claim_sqlite(limits.len());
        // Dynamic only in the number of kinds: the owner, the caps and the kinds are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.instance())
            .bind(total as i64);
        for (kind, cap) in limits {
            q = q.bind(*kind).bind(*cap as i64);
        }
        let rows = self.observe(q.fetch_all(&self.claims).await.map_err(Error::from))?;
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
