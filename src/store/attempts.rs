//! The attempts table, read side: one row per attempt of a job, with its outcome, error and the
//! retry delay chosen. Rows are opened by a trigger when a job is claimed from `queued` and
//! closed by [`super::settle`] or [`Store::recover_running`].

use serde::Serialize;
use sqlx::Row;

use super::{Error, Store};
use crate::JobId;

/// One attempt as stored.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRow {
    pub attempt: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: Option<String>,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub retry_delay_ms: Option<i64>,
}

impl Store {
    /// A job's attempts, in order.
    pub async fn attempts(&self, id: JobId) -> Result<Vec<AttemptRow>, Error> {
        let rows = sqlx::query(
            "SELECT attempt, started_at, finished_at, outcome, http_status, error_code, \
               error_msg, retry_delay_ms FROM attempts WHERE job_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRow {
                    attempt: r.try_get("attempt")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    outcome: r.try_get("outcome")?,
                    http_status: r.try_get("http_status")?,
                    error_code: r.try_get("error_code")?,
                    error_msg: r.try_get("error_msg")?,
                    retry_delay_ms: r.try_get("retry_delay_ms")?,
                })
            })
            .collect()
    }
}
