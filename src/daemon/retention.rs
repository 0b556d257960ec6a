//! The retention task: with `[retention] keep`, prunes finished jobs older than `keep` at start
//! and then every `interval`, in batches of `batch_size` jobs per write transaction (see
//! [`Store::prune_finished`] for what goes and what is never touched).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::now_ms;
use crate::store::Store;

/// The pause between two batches, so that claims and settles get the write lock in between.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// Prunes on its interval until `shutdown`; returns at once when `keep` is absent.
pub async fn run(store: Store, cfg: RetentionConfig, shutdown: CancellationToken) {
    let Some(keep) = cfg.keep else { return };
    loop {
        let cutoff = now_ms() - keep.as_millis() as i64;
        let pass = store.prune_finished(cutoff, cfg.batch_size, BETWEEN_BATCHES);
        let pruned = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = pass => r,
        };
        match pruned {
            Ok(p) if p.jobs > 0 => tracing::info!(
                jobs = p.jobs,
                attempts = p.attempts,
                requests = p.requests,
                purge_items = p.purge_items,
                keep = %crate::config::show_duration(keep),
                "retention: pruned finished jobs older than keep"
            ),
            Ok(_) => tracing::debug!("retention: nothing to prune"),
            Err(e) => {
                tracing::warn!(error = %e, "retention: pruning failed; trying again at the next interval")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.interval) => {}
        }
    }
}
