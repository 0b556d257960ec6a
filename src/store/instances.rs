//! Instances sharing a store: each registers, heartbeats while it runs and says when it stops.
//! A claimed job carries its claimer's id (`jobs.owner`), and every write a worker makes to a
//! running job is guarded by it. When an instance stops heartbeating for longer than the lease,
//! another takes its running jobs back: a job claimed from `queued` is queued again (its open
//! attempt closed as `interrupted`), a poll of a `following` job goes back to `following` and is
//! polled with its recorded jid, never started again. On SQLite one process owns the file, and
//! start-up recovery ([`Store::recover_running`]) takes back everything instead.

use super::{Backend, Error, Store};
use crate::now_ms;

/// Why the jobs were taken back, as written on their interrupted attempts.
const TAKEN_OVER: &str =
    "the instance running this attempt stopped heartbeating; another took it over";

/// One instance as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InstanceRow {
    pub id: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub stopped_at: Option<i64>,
    /// Jobs it holds `running`.
    pub running: i64,
}

impl Store {
    /// Registers this instance (or renews its heartbeat): one upsert.
    pub async fn heartbeat(&self) -> Result<(), Error> {
        let now = now_ms();
        let r = sqlx::query(
            "INSERT INTO instances (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = $2",
        )
        .bind(self.instance())
        .bind(now)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(Error::from);
        self.observe(r)
    }

    /// Records that this instance stopped cleanly (its running jobs, if any are left, are then
    /// taken over at once instead of after the lease).
    pub async fn stopped(&self) -> Result<(), Error> {
        sqlx::query("UPDATE instances SET stopped_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(self.instance())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes back the running jobs of instances that stopped, or whose last heartbeat is older
    /// than `lease` (and jobs running with no known owner, untouched for as long); returns how
    /// many. One transaction; the guarded `UPDATE` makes two instances doing it at once harmless.
    pub async fn take_over(&self, lease: std::time::Duration) -> Result<u64, Error> {
        // The owners whose jobs are taken back: stopped, silent past the lease, or unknown.
        let orphaned = "status = 'running' AND owner IS DISTINCT FROM $2 AND (owner IS NULL \
             OR owner IN (SELECT id FROM instances WHERE stopped_at IS NOT NULL \
                          OR heartbeat_at < $1) \
             OR (owner NOT IN (SELECT id FROM instances) AND updated_at < $1))";
        self.put_back(orphaned, lease.as_millis() as i64).await
    }

    /// Puts the running jobs `which` selects (`$1`: the lease's cutoff, `$2`: this instance)
    /// back to what they were claimed from, closing their open attempts as interrupted.
    async fn put_back(&self, which: &str, lease_ms: i64) -> Result<u64, Error> {
        let now = now_ms();
        let cutoff = now - lease_ms;
        let orphaned = which;
        let attempts = format!(
            "UPDATE attempts SET finished_at = $3, outcome = 'interrupted', error_msg = $4 \
             WHERE outcome IS NULL AND job_id IN (SELECT id FROM jobs WHERE {orphaned})"
        );
        let jobs = format!(
            "UPDATE jobs SET status = COALESCE(claimed_from, 'queued'), next_run_at = $3, \
               owner = NULL, updated_at = $3 WHERE {orphaned}"
        );
        let r = async {
            let mut tx = self.write_tx().await?;
            // Fixed text: the times and ids are bound.
            sqlx::query(sqlx::AssertSqlSafe(attempts))
                .bind(cutoff)
                .bind(self.instance())
                .bind(now)
                .bind(TAKEN_OVER)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query(sqlx::AssertSqlSafe(jobs))
                .bind(cutoff)
                .bind(self.instance())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            // Instances gone for a day are forgotten.
            sqlx::query("DELETE FROM instances WHERE heartbeat_at < $1")
                .bind(now - 86_400_000)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        }
        .await;
        let n = self.observe(r)?;
        if n > 0 {
            self.work.notify_one();
        }
        Ok(n)
    }

    /// Takes back the jobs `running` under this instance's own id (see
    /// [`Store::recover_running`]).
    pub(super) async fn take_back_own(&self) -> Result<u64, Error> {
        self.put_back("status = 'running' AND owner = $2 AND updated_at < $1", -1)
            .await
    }

    /// The instances known to the store, newest heartbeat first, with their running jobs.
    pub async fn instances(&self) -> Result<Vec<InstanceRow>, Error> {
        let rows: Vec<(String, i64, i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT i.id, i.started_at, i.heartbeat_at, i.stopped_at, \
               (SELECT COUNT(*) FROM jobs j WHERE j.status = 'running' AND j.owner = i.id) \
             FROM instances i ORDER BY i.heartbeat_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, started_at, heartbeat_at, stopped_at, running)| InstanceRow {
                    id,
                    started_at,
                    heartbeat_at,
                    stopped_at,
                    running,
                },
            )
            .collect())
    }

    /// True when several instances may share this store (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.backend == Backend::Postgres
    }
}
