//! The long-running daemon (`run`): recover, then cron and workers until shutdown, then drain.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api;
use crate::config::Config;
use crate::engine::Engine;
use crate::ingress::cron;
use crate::jobs::Ctx;
use crate::store::Store;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Api(#[from] api::Error),
    #[error("cannot start the cron scheduler: {0}")]
    Cron(String),
}

/// Opens the store and the client, re-queues jobs a dead process left running, then runs cron
/// and the engine until `shutdown` fires; in-flight jobs then finish within the grace period.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let cfg = Arc::new(cfg);
    let store = Store::open(&cfg.store).await?;
    let result = run_with_store(cfg, store.clone(), shutdown).await;
    store.close().await;
    result
}

/// As [`run`], on an open store (left open for the caller).
pub async fn run_with_store(
    cfg: Arc<Config>,
    store: Store,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let recovered = store.recover_running().await?;
    if recovered > 0 {
        tracing::warn!(
            jobs = recovered,
            "re-queued jobs left running by a previous process"
        );
    }
    let api = api::Client::from_config(&cfg)?;
    let ctx = Ctx {
        api,
        config: cfg.clone(),
        store: store.clone(),
    };
    let mut sched = cron::start(store.clone(), cfg.clone())
        .await
        .map_err(|e| Error::Cron(e.to_string()))?;
    tracing::info!(
        db = %cfg.store.path.display(),
        schedules = cfg.schedules.len(),
        concurrency = cfg.engine.concurrency,
        "daemon started"
    );
    let result = Engine::new(ctx).run(shutdown).await;
    if let Err(e) = sched.shutdown().await {
        tracing::warn!(error = %e, "cron scheduler did not stop cleanly");
    }
    tracing::info!("daemon stopped");
    result.map_err(Error::from)
}
