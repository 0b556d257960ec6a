//! The purge record: one row per recycle-bin item a `purge_recycle_bin` job decided about.
//!
//! The plan (every item with its batch, or why it is skipped) is written once, together with the
//! job's checkpoint, before the first delete; each batch's outcome is written in one transaction
//! when the API has answered. A retry or a restart continues with the batches still pending, so
//! an item confirmed deleted is never sent again.

use serde::Serialize;
use sqlx::Row;

use super::{Error, Store};
use crate::{now_ms, JobId};

/// An item as planned.
#[derive(Clone, Debug)]
pub struct PlannedItem {
    pub batch: Option<i64>,
    pub item_id: String,
    pub format: String,
    pub uri: String,
    /// `repository` or `file`.
    pub kind: String,
    pub modified: Option<String>,
    /// `pending`, `skipped` or `would_delete`.
    pub outcome: String,
    pub message: Option<String>,
}

/// An item as recorded.
#[derive(Clone, Debug, Serialize)]
pub struct PurgeItemRow {
    pub batch: Option<i64>,
    pub item_id: String,
    pub format: String,
    pub uri: String,
    pub kind: String,
    pub modified: Option<String>,
    pub outcome: String,
    pub message: Option<String>,
}

/// The final outcome of one sent item.
#[derive(Clone, Debug)]
pub struct ItemOutcome {
    pub uri: String,
    pub item_id: String,
    /// `deleted`, `failed` or `unconfirmed`.
    pub outcome: String,
    pub message: Option<String>,
}

impl Store {
    /// Writes the plan and the job's checkpoint in one transaction, if the job is still ours.
    pub async fn purge_plan(
        &self,
        job_id: JobId,
        items: &[PlannedItem],
        checkpoint: &serde_json::Value,
    ) -> Result<(), Error> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE jobs SET checkpoint = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'running' AND owner = $4",
        )
        .bind(checkpoint.to_string())
        .bind(now)
        .bind(job_id)
        .bind(self.instance())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::LostOwnership(job_id));
        }
        for it in items {
            sqlx::query(
                "INSERT INTO purge_items (job_id, batch, item_id, format, uri, kind, modified, \
                   outcome, message, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(job_id)
            .bind(it.batch)
            .bind(&it.item_id)
            .bind(&it.format)
            .bind(&it.uri)
            .bind(&it.kind)
            .bind(&it.modified)
            .bind(&it.outcome)
            .bind(&it.message)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The items of `job_id` still pending, by batch, in batch order.
    pub async fn purge_pending(
        &self,
        job_id: JobId,
    ) -> Result<Vec<(i64, Vec<PurgeItemRow>)>, Error> {
        let rows = self.purge_items_where(job_id, Some("pending")).await?;
        let mut out: Vec<(i64, Vec<PurgeItemRow>)> = Vec::new();
        for r in rows {
            let b = r.batch.unwrap_or(0);
            match out.last_mut() {
                Some((last, items)) if *last == b => items.push(r),
                _ => out.push((b, vec![r])),
            }
        }
        Ok(out)
    }

    /// Records one batch's outcomes in one transaction.
    pub async fn purge_batch_done(
        &self,
        job_id: JobId,
        batch: i64,
        outcomes: &[ItemOutcome],
    ) -> Result<(), Error> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        for o in outcomes {
            sqlx::query(
                "UPDATE purge_items SET outcome = $1, message = $2, recorded_at = $3 \
                 WHERE job_id = $4 AND batch = $5 AND item_id = $6 AND uri = $7 AND outcome = 'pending'",
            )
            .bind(&o.outcome)
            .bind(&o.message)
            .bind(now)
            .bind(job_id)
            .bind(batch)
            .bind(&o.item_id)
            .bind(&o.uri)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many items of `job_id` have each outcome.
    pub async fn purge_counts(&self, job_id: JobId) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT outcome, COUNT(*) AS n FROM purge_items WHERE job_id = $1 GROUP BY outcome",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("outcome")?, r.try_get("n")?)))
            .collect()
    }

    /// Every recorded item of `job_id`, by batch then uri.
    pub async fn purge_items(&self, job_id: JobId) -> Result<Vec<PurgeItemRow>, Error> {
        self.purge_items_where(job_id, None).await
    }

    /// The items of `job_id` with one outcome.
    pub async fn purge_items_with(
        &self,
        job_id: JobId,
        outcome: &str,
    ) -> Result<Vec<PurgeItemRow>, Error> {
        self.purge_items_where(job_id, Some(outcome)).await
    }

    /// Settles unconfirmed items, in one transaction.
    pub async fn purge_resolve(
        &self,
        job_id: JobId,
        outcomes: &[ItemOutcome],
    ) -> Result<(), Error> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        for o in outcomes {
            sqlx::query(
                "UPDATE purge_items SET outcome = $1, message = $2, recorded_at = $3 \
                 WHERE job_id = $4 AND item_id = $5 AND uri = $6 AND outcome = 'unconfirmed'",
            )
            .bind(&o.outcome)
            .bind(&o.message)
            .bind(now)
            .bind(job_id)
            .bind(&o.item_id)
            .bind(&o.uri)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn purge_items_where(
        &self,
        job_id: JobId,
        outcome: Option<&str>,
    ) -> Result<Vec<PurgeItemRow>, Error> {
        let rows = sqlx::query(
            "SELECT batch, item_id, format, uri, kind, modified, outcome, message \
             FROM purge_items WHERE job_id = $1 AND ($2 IS NULL OR outcome = $3) \
             ORDER BY batch IS NULL, batch, rowid",
        )
        .bind(job_id)
        .bind(outcome)
        .bind(outcome)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PurgeItemRow {
                    batch: r.try_get("batch")?,
                    item_id: r.try_get("item_id")?,
                    format: r.try_get("format")?,
                    uri: r.try_get("uri")?,
                    kind: r.try_get("kind")?,
                    modified: r.try_get("modified")?,
                    outcome: r.try_get("outcome")?,
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }
}
