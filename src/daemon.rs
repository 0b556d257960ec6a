//! The long-running daemon (`run`): recover, then cron and workers until shutdown, then drain.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api;
use crate::config::Config;
use crate::engine::Engine;
use crate::ingress::amqp::{self, Leader};
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
    let leader = if cfg.amqp.is_some() {
        Leader::contender()
    } else {
        Leader::always()
    };
    let amqp_stop = CancellationToken::new();
    let consumer = tokio::spawn(amqp::run(
        store.clone(),
        cfg.clone(),
        leader.clone(),
        amqp_stop.clone(),
    ));
    let mut sched = cron::start(store.clone(), cfg.clone(), leader)
        .await
        .map_err(|e| Error::Cron(e.to_string()))?;
    tracing::info!(
        db = %cfg.store.path.display(),
        schedules = cfg.schedules.len(),
        concurrency = cfg.engine.concurrency,
        "daemon started"
    );
    // On shutdown the consumer stops first, so no delivery arrives while jobs drain.
    let stop_consumer = {
        let shutdown = shutdown.clone();
        let amqp_stop = amqp_stop.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            amqp_stop.cancel();
        })
    };
    let result = Engine::new(ctx).run(shutdown).await;
    amqp_stop.cancel();
    let _ = consumer.await;
    stop_consumer.abort();
    if let Err(e) = sched.shutdown().await {
        tracing::warn!(error = %e, "cron scheduler did not stop cleanly");
    }
    tracing::info!("daemon stopped");
    result.map_err(Error::from)
}
