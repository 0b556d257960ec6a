//! Retention: pruning finished jobs older than a cutoff, in small batches, and `VACUUM` on
//! demand.
//!
//! A pruned job goes with its attempts, its requests (so its idempotency keys are free again)
//! and its purge items. Never touched: the audit archive (`audit_archive`, `audit_streams`) and
//! the storage series (`storage_snapshots`, `storage_repo_usage`, `storage_trend`), and the SWR
//! share snapshots (`swr_share_snapshots`, `swr_shared_repos`, `swr_shares`: an auditor wants the
//! history). A storage or share snapshot taken by a pruned job keeps its rows; its `job_id` is
//! set to NULL (the job is gone).
//! An audit record keeps its `job_id`, which then names a job that no longer exists: the
//! archive's rows are hash-chained and are never rewritten. A replay whose original was pruned
//! keeps its `retry_of`, likewise.
//!
//! Each batch is one short write transaction, so jobs keep being claimed and settled while a
//! large backlog is pruned; a passive WAL checkpoint follows the last batch.

use super::{json_ids, Backend, Error, Store};

/// What one pruning pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub attempts: u64,
    pub requests: u64,
    pub purge_items: u64,
}

impl Pruned {
    fn add(&mut self, o: Pruned) {
        self.jobs += o.jobs;
        self.attempts += o.attempts;
        self.requests += o.requests;
        self.purge_items += o.purge_items;
    }
}

/// Sizes before and after a `VACUUM`, in bytes (the database file and its WAL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vacuumed {
    pub before: u64,
    pub after: u64,
}

impl Store {
    /// Prunes finished jobs whose `finished_at` is before `cutoff` (store milliseconds), at
    /// most `batch` per transaction, pausing `pause` between batches so that other writers get
    /// the lock; then checkpoints the WAL passively.
    pub async fn prune_finished(
        &self,
        cutoff: i64,
        batch: usize,
        pause: std::time::Duration,
    ) -> Result<Pruned, Error> {
        let mut total = Pruned::default();
        loop {
            let r = self.prune_batch(cutoff, batch.max(1)).await;
            let done = self.observe(r)?;
            total.add(done);
            if done.jobs < batch.max(1) as u64 {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        if total.jobs > 0 && self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(total)
    }

    async fn prune_batch(&self, cutoff: i64, batch: usize) -> Result<Pruned, Error> {
        let mut tx = self.write_tx().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < $1 \
               AND status NOT IN ('queued', 'running', 'following') \
             ORDER BY finished_at LIMIT $2",
        )
        .bind(cutoff)
        .bind(batch as i64)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            return Ok(Pruned::default());
        }
        let list = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
        let mut out = Pruned::default();
        for (sql, slot) in [
            (
                self.pick(json_ids!("DELETE FROM attempts WHERE job_id IN ", "1", "")),
                &mut out.attempts,
            ),
            (
                self.pick(json_ids!("DELETE FROM requests WHERE job_id IN ", "1", "")),
                &mut out.requests,
            ),
            (
                self.pick(json_ids!(
                    "DELETE FROM purge_items WHERE job_id IN ",
                    "1",
                    ""
                )),
                &mut out.purge_items,
            ),
        ] {
            *slot = sqlx::query(sql)
                .bind(&list)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        sqlx::query(self.pick(json_ids!(
            "UPDATE storage_snapshots SET job_id = NULL WHERE job_id IN ",
            "1",
            ""
        )))
        .bind(&list)
        .execute(&mut *tx)
        .await?;
        sqlx::query(self.pick(json_ids!(
            "UPDATE swr_share_snapshots SET job_id = NULL WHERE job_id IN ",
            "1",
            ""
        )))
        .bind(&list)
        .execute(&mut *tx)
        .await?;
        out.jobs = sqlx::query(self.pick(json_ids!("DELETE FROM jobs WHERE id IN ", "1", "")))
            .bind(&list)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(out)
    }

    /// Runs `VACUUM` (the file shrinks to what it holds), then truncates the WAL; returns the
    /// sizes of the database file and its WAL before and after. On PostgreSQL: `VACUUM` of
    /// every table (space is reused, not returned to the system), and the database's size.
    pub async fn vacuum(&self, path: &std::path::Path) -> Result<Vacuumed, Error> {
        if self.backend == Backend::Postgres {
            let size = || async {
                sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
                    .fetch_one(&self.pool)
                    .await
            };
            let before = size().await?;
            let r = sqlx::query("VACUUM (ANALYZE)")
                .execute(&self.pool)
                .await
                .map_err(Error::from);
            self.observe(r)?;
            return Ok(Vacuumed {
                before: before.max(0) as u64,
                after: size().await?.max(0) as u64,
            });
        }
        let size = || {
            let wal = {
                let mut p = path.as_os_str().to_owned();
                p.push("-wal");
                std::path::PathBuf::from(p)
            };
            [path.to_path_buf(), wal]
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum::<u64>()
        };
        let before = size();
        let r = async {
            sqlx::query("VACUUM").execute(&self.pool).await?;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await?;
            Ok(())
        }
        .await;
        self.observe(r)?;
        Ok(Vacuumed {
            before,
            after: size(),
        })
    }
}
