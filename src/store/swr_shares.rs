//! SWR share snapshots written by `swr_share_audit`: one row per run, the shared repositories
//! it listed, and one row per account each is shared with, the API's strings kept verbatim. A
//! snapshot is written in one transaction, so a reader sees all of it or none. Retention keeps
//! snapshots (an auditor wants the history); a pruned job's snapshot loses only its `job_id`.

use serde::Serialize;
use sqlx::Row;

use super::{Error, Store};
use crate::{now_ms, JobId};

/// A repository the shared listing returned.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SharedRepoRow {
    pub namespace: String,
    pub repository: String,
    pub path: Option<String>,
    pub num_images: Option<i64>,
    pub updated_at: Option<String>,
}

/// One account a repository is shared with.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ShareRow {
    pub namespace: String,
    pub repository: String,
    pub access_domain: String,
    pub permit: String,
    /// `forever` or a UTC time, verbatim.
    pub deadline: String,
    /// The API's `status`: true while valid, false once expired.
    pub status: Option<bool>,
    pub description: Option<String>,
    pub creator_name: Option<String>,
    pub created: Option<String>,
    pub updated: Option<String>,
}

/// A snapshot to write.
#[derive(Clone, Debug, Default)]
pub struct NewShareSnapshot {
    /// Listing walks it took until two consecutive ones agreed.
    pub walks: i64,
    pub repos: Vec<SharedRepoRow>,
    pub shares: Vec<ShareRow>,
}

/// A stored snapshot, repositories and shares in (namespace, repository, account) order.
#[derive(Clone, Debug, Serialize)]
pub struct ShareSnapshot {
    pub id: i64,
    pub job_id: Option<i64>,
    pub taken_at: i64,
    pub walks: i64,
    pub repos: Vec<SharedRepoRow>,
    pub shares: Vec<ShareRow>,
}

impl Store {
    /// Writes a snapshot with its repositories and shares; returns its id.
    pub async fn save_share_snapshot(
        &self,
        job_id: Option<JobId>,
        s: &NewShareSnapshot,
    ) -> Result<i64, Error> {
        let r = async {
            let mut tx = self.write_tx().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO swr_share_snapshots (job_id, taken_at, repositories, shares, walks) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(job_id)
            .bind(now_ms())
            .bind(s.repos.len() as i64)
            .bind(s.shares.len() as i64)
            .bind(s.walks)
            .fetch_one(&mut *tx)
            .await?;
            for r in &s.repos {
                sqlx::query(
                    "INSERT INTO swr_shared_repos (snapshot_id, namespace, repository, path, \
                       num_images, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(&r.namespace)
                .bind(&r.repository)
                .bind(&r.path)
                .bind(r.num_images)
                .bind(&r.updated_at)
                .execute(&mut *tx)
                .await?;
            }
            for sh in &s.shares {
                sqlx::query(
                    "INSERT INTO swr_shares (snapshot_id, namespace, repository, access_domain, \
                       permit, deadline, status, description, creator_name, created, updated) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(id)
                .bind(&sh.namespace)
                .bind(&sh.repository)
                .bind(&sh.access_domain)
                .bind(&sh.permit)
                .bind(&sh.deadline)
                .bind(sh.status.map(i64::from))
                .bind(&sh.description)
                .bind(&sh.creator_name)
                .bind(&sh.created)
                .bind(&sh.updated)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<i64, sqlx::Error>(id)
        }
        .await
        .map_err(Error::from);
        self.observe(r)
    }

    /// The newest `n` snapshots, newest first, each with its repositories and shares.
    pub async fn latest_share_snapshots(&self, n: u32) -> Result<Vec<ShareSnapshot>, Error> {
        let heads = sqlx::query(
            "SELECT id, job_id, taken_at, walks FROM swr_share_snapshots \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(n))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(heads.len());
        for h in &heads {
            let id: i64 = h.try_get("id")?;
            let repos = sqlx::query(
                "SELECT namespace, repository, path, num_images, updated_at FROM swr_shared_repos \
                 WHERE snapshot_id = $1 ORDER BY namespace, repository",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(SharedRepoRow {
                    namespace: r.try_get("namespace")?,
                    repository: r.try_get("repository")?,
                    path: r.try_get("path")?,
                    num_images: r.try_get("num_images")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
            let shares = sqlx::query(
                "SELECT namespace, repository, access_domain, permit, deadline, status, \
                   description, creator_name, created, updated FROM swr_shares \
                 WHERE snapshot_id = $1 ORDER BY namespace, repository, access_domain",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let status: Option<i64> = r.try_get("status")?;
                Ok(ShareRow {
                    namespace: r.try_get("namespace")?,
                    repository: r.try_get("repository")?,
                    access_domain: r.try_get("access_domain")?,
                    permit: r.try_get("permit")?,
                    deadline: r.try_get("deadline")?,
                    status: status.map(|s| s != 0),
                    description: r.try_get("description")?,
                    creator_name: r.try_get("creator_name")?,
                    created: r.try_get("created")?,
                    updated: r.try_get("updated")?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
            out.push(ShareSnapshot {
                id,
                job_id: h.try_get("job_id")?,
                taken_at: h.try_get("taken_at")?,
                walks: h.try_get("walks")?,
                repos,
                shares,
            });
        }
        Ok(out)
    }
}
