//! An attempt's bounds: its timeout (the job's own `timeout` parameter, else the kind's
//! `[engine.timeout]`), and cancellation by an operator (`jobs cancel`), which the claim loop
//! learns from the store ([`Store::cancelled_among`](crate::store::Store::cancelled_among)) and
//! passes on through a token. Either way the attempt's future is dropped, and with it any
//! request in flight.
//!
//! A dropped `remote_mirror` start keeps the at-most-once guarantee: its `starting` checkpoint
//! was committed before the request was sent, so the next attempt treats it as a start whose
//! answer was lost and reads the mirror state before acting again.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::jobs::{self, RunError, Step};
use crate::store::JobRow;

/// How long one attempt (or poll) of `job` may take: its own `timeout`, else its kind's.
pub fn timeout_for(cfg: &Config, job: &JobRow) -> Option<Duration> {
    jobs::job_timeout(&job.params)
        .ok()
        .flatten()
        .or_else(|| cfg.engine.timeout.get(&job.kind).map(|d| **d))
}

/// Runs one claimed job within its timeout, unless `cancel` fires first: `None` then, the
/// attempt having been dropped. A timeout ends it with [`RunError::TimedOut`].
pub async fn run_bounded(
    ctx: &jobs::Ctx,
    job: &JobRow,
    cancel: &CancellationToken,
) -> Option<Result<Step, RunError>> {
    let limit = timeout_for(&ctx.config, job);
    let run = async {
        match limit {
            Some(d) => tokio::time::timeout(d, jobs::run(ctx, job))
                .await
                .unwrap_or(Err(RunError::TimedOut(d))),
            None => jobs::run(ctx, job).await,
        }
    };
    tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        r = run => Some(r),
    }
}

/// How often the claim loop asks the store whether any of its running jobs was cancelled:
/// the engine's poll interval, at most a second.
pub fn cancel_check_every(poll_interval: Duration) -> Duration {
    poll_interval.min(Duration::from_secs(1))
}
