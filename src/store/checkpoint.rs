//! Checkpoints: a running job's saved progress (the `starting` record a remote_mirror writes
//! before its start call, a purge's plan, an audit walk's position).
//!
//! A checkpoint must be durable before the job acts on it, so each caller waits for its commit;
//! but the checkpoints that arrive while one commit is under way are written together in the
//! next (group commit), so their cost is one transaction per batch, not one per job.

use std::sync::OnceLock;

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::{health::Health, Backend, Error, Store};
use crate::{now_ms, JobId};

/// Checkpoints written in one transaction at most.
const BATCH: usize = 256;

struct Pending {
    id: JobId,
    checkpoint: Option<String>,
    jid: Option<String>,
    reply: oneshot::Sender<Result<(), Error>>,
}

/// The writer task's inbox, started on first use.
#[derive(Default)]
pub(super) struct Writer(OnceLock<mpsc::Sender<Pending>>);

impl Store {
    /// Saves progress of a running job (e.g. the jid right after a start call); `None` clears
    /// it. Returns once it is committed; [`Error::LostOwnership`] if the job is not running.
    pub async fn checkpoint(
        &self,
        id: JobId,
        checkpoint: Option<&serde_json::Value>,
        jid: Option<&str>,
    ) -> Result<(), Error> {
        let inbox = self.checkpoints.0.get_or_init(|| {
            let (tx, rx) = mpsc::channel(BATCH * 4);
            // The task holds the pool and the health, not the Store, so it ends when the last
            // Store (and with it the sender) is gone.
            tokio::spawn(write_batches(
                self.pool.clone(),
                self.backend,
                self.instance.clone(),
                self.health.clone(),
                rx,
            ));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            id,
            checkpoint: checkpoint.map(|c| c.to_string()),
            jid: jid.map(str::to_string),
            reply,
        };
        if inbox.send(pending).await.is_err() {
            return Err(Error::Sql(sqlx::Error::PoolClosed));
        }
        answer
            .await
            .unwrap_or(Err(Error::Sql(sqlx::Error::PoolClosed)))
    }
}

async fn write_batches(
    pool: AnyPool,
    backend: Backend,
    owner: std::sync::Arc<str>,
    health: std::sync::Arc<Health>,
    mut rx: mpsc::Receiver<Pending>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        match write(&pool, backend, &owner, &batch).await {
            Ok(written) => {
                health.ok();
                for p in batch {
                    let result = if written.contains(&p.id) {
                        Ok(())
                    } else {
                        Err(Error::LostOwnership(p.id))
                    };
                    let _ = p.reply.send(result);
                }
            }
            Err(e) => {
                let e = Error::from(e);
                if e.is_transient() {
                    health.failed(&e);
                }
                let msg = e.to_string();
                for p in batch {
                    let _ = p
                        .reply
                        .send(Err(Error::Sql(sqlx::Error::Protocol(msg.clone()))));
                }
            }
        }
    }
}

/// One statement for the whole batch; returns the ids it updated (those still running, and
/// still this instance's).
async fn write(
    pool: &AnyPool,
    backend: Backend,
    owner: &str,
    batch: &[Pending],
) -> Result<Vec<JobId>, sqlx::Error> {
    let (scalars, rows) = (
        super::params_on(backend, 2, 1),
        super::value_rows_on(backend, batch.len(), 3, 3),
    );
    let sql = format!(
        "WITH p (now, owner) AS (VALUES ({scalars})), \
           v (id, checkpoint, jid) AS (VALUES {rows}) \
         UPDATE jobs SET checkpoint = v.checkpoint, jid = COALESCE(v.jid, jobs.jid), \
           updated_at = p.now \
         FROM v, p WHERE jobs.id = v.id AND jobs.status = 'running' AND jobs.owner = p.owner \
         RETURNING jobs.id"
    );
    // Dynamic only in the number of placeholder rows.
    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .bind(now_ms())
        .bind(owner);
    for p in batch {
        q = q.bind(p.id).bind(p.checkpoint.clone()).bind(p.jid.clone());
    }
    q.fetch_all(pool).await
}
