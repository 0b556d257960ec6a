//! Storage time series written by `storage_snapshot`: one snapshot per run (the total), the
//! per-repository usage within it, and the daily trend per repository ('' for the whole project)
//! with exact byte counts. A snapshot is written in one transaction.

use serde::Serialize;
use sqlx::Row;

use super::{Error, Store};
use crate::{now_ms, JobId};

/// One repository's usage in a snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct RepoUsage {
    pub repo_id: String,
    pub format: Option<String>,
    pub used_bytes: i64,
    pub used_text: String,
    pub files_count: Option<i64>,
}

/// One day of a trend.
#[derive(Clone, Debug, Serialize)]
pub struct TrendPoint {
    /// '' for the whole project.
    pub repo_id: String,
    pub day: String,
    pub used_bytes: i64,
    pub used_text: String,
    pub files_count: Option<i64>,
}

/// A snapshot to write.
#[derive(Clone, Debug)]
pub struct NewSnapshot {
    pub formats: Option<String>,
    pub total_bytes: i64,
    pub total_text: String,
    pub total_count: Option<i64>,
    pub repos: Vec<RepoUsage>,
    pub trend: Vec<TrendPoint>,
}

/// A stored snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub id: i64,
    pub job_id: Option<i64>,
    pub taken_at: i64,
    pub formats: Option<String>,
    pub total_bytes: i64,
    pub total_text: String,
    pub total_count: Option<i64>,
    pub repos: Vec<RepoUsage>,
}

impl Store {
    /// Writes a snapshot, its repositories and its trend days; returns the snapshot id.
    pub async fn save_snapshot(
        &self,
        job_id: Option<JobId>,
        s: &NewSnapshot,
    ) -> Result<i64, Error> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO storage_snapshots (job_id, taken_at, formats, total_bytes, total_text, \
               total_count) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(job_id)
        .bind(now)
        .bind(&s.formats)
        .bind(s.total_bytes)
        .bind(&s.total_text)
        .bind(s.total_count)
        .fetch_one(&mut *tx)
        .await?;
        for r in &s.repos {
            sqlx::query(
                "INSERT INTO storage_repo_usage (snapshot_id, repo_id, format, used_bytes, \
                   used_text, files_count) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(&r.repo_id)
            .bind(&r.format)
            .bind(r.used_bytes)
            .bind(&r.used_text)
            .bind(r.files_count)
            .execute(&mut *tx)
            .await?;
        }
        for t in &s.trend {
            sqlx::query(
                "INSERT INTO storage_trend (repo_id, day, used_bytes, used_text, files_count, \
                   updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (repo_id, day) DO UPDATE SET used_bytes = excluded.used_bytes, \
                   used_text = excluded.used_text, files_count = excluded.files_count, \
                   updated_at = excluded.updated_at",
            )
            .bind(&t.repo_id)
            .bind(&t.day)
            .bind(t.used_bytes)
            .bind(&t.used_text)
            .bind(t.files_count)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// The newest snapshot with its repositories.
    pub async fn latest_snapshot(&self) -> Result<Option<Snapshot>, Error> {
        let Some(row) = sqlx::query(
            "SELECT id, job_id, taken_at, formats, total_bytes, total_text, total_count \
             FROM storage_snapshots ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        let repos = sqlx::query(
            "SELECT repo_id, format, used_bytes, used_text, files_count FROM storage_repo_usage \
             WHERE snapshot_id = $1 ORDER BY used_bytes DESC, repo_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(RepoUsage {
                repo_id: r.try_get("repo_id")?,
                format: r.try_get("format")?,
                used_bytes: r.try_get("used_bytes")?,
                used_text: r.try_get("used_text")?,
                files_count: r.try_get("files_count")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
        Ok(Some(Snapshot {
            id,
            job_id: row.try_get("job_id")?,
            taken_at: row.try_get("taken_at")?,
            formats: row.try_get("formats")?,
            total_bytes: row.try_get("total_bytes")?,
            total_text: row.try_get("total_text")?,
            total_count: row.try_get("total_count")?,
            repos,
        }))
    }

    /// The last `days` days of a repository's trend ('' for the whole project), oldest first.
    /// (The subquery is named: PostgreSQL before 16 refuses one without a name.)
    pub async fn storage_trend(&self, repo_id: &str, days: u32) -> Result<Vec<TrendPoint>, Error> {
        let rows = sqlx::query(
            "SELECT repo_id, day, used_bytes, used_text, files_count FROM \
               (SELECT * FROM storage_trend WHERE repo_id = $1 ORDER BY day DESC LIMIT $2) AS latest \
             ORDER BY day",
        )
        .bind(repo_id)
        .bind(i64::from(days))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TrendPoint {
                    repo_id: r.try_get("repo_id")?,
                    day: r.try_get("day")?,
                    used_bytes: r.try_get("used_bytes")?,
                    used_text: r.try_get("used_text")?,
                    files_count: r.try_get("files_count")?,
                })
            })
            .collect()
    }
}
