//! The worker pool: claims due jobs (a guarded claim, so no job runs twice), runs them within
//! the overall and per-kind limits, and routes every outcome through [`transition`] into
//! [`Store::settle`], the one place that moves a job out of `running`.
//!
//! Cancellation and timeouts ([`lifecycle`]): an attempt longer than its timeout is dropped and
//! recorded `timed_out`, then retried by the policy; a job an operator cancelled (a store write,
//! from any process) is noticed by the claim loop within a second and its attempt dropped.
//!
//! Shutdown: when the cancellation token fires, no new job is claimed; in-flight jobs get
//! `shutdown_grace` to finish, and those still running after it are aborted and re-queued.
//!
//! Liveness: given a [`Heartbeat`], the claim loop marks it at least every `Heartbeat::every`,
//! so whoever watches (the daemon, for systemd's watchdog) can tell a live loop from a wedged one.

pub mod lifecycle;
pub mod retry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::EngineConfig;
use crate::jobs::{self, JobKind, RunError, Step};
use crate::store::{self, JobRow, Store, Transition};
use crate::{now_ms, JobId};
pub use retry::{Decision, RetryPolicy};

/// The worker pool.
pub struct Engine {
    ctx: jobs::Ctx,
    cfg: EngineConfig,
    policy: RetryPolicy,
    heartbeat: Option<Heartbeat>,
}

/// What the claim loop shows of itself while it runs: when it last went round, and how many
/// jobs it has in flight. Cheap to mark and to read (two atomics); clones share the values.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    every: Duration,
    origin: tokio::time::Instant,
    /// Milliseconds after `origin` of the last mark.
    last_ms: Arc<AtomicU64>,
    in_flight: Arc<AtomicUsize>,
}

impl Heartbeat {
    /// A heartbeat the loop marks at least every `every`; it counts as marked at creation.
    pub fn new(every: Duration) -> Heartbeat {
        Heartbeat {
            every: every.max(Duration::from_millis(1)),
            origin: tokio::time::Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn mark(&self, in_flight: usize) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
        self.in_flight.store(in_flight, Ordering::Relaxed);
    }

    /// How long ago the loop last went round.
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// Jobs running at the last mark.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl Engine {
    /// An engine over `ctx` with the configured limits and retry policy.
    pub fn new(ctx: jobs::Ctx) -> Engine {
        let cfg = ctx.config.engine.clone();
        let policy = RetryPolicy::from_config(&ctx.config.retry);
        Engine {
            ctx,
            cfg,
            policy,
            heartbeat: None,
        }
    }

    /// The same engine, marking `heartbeat` from its claim loop.
    pub fn with_heartbeat(mut self, heartbeat: Heartbeat) -> Engine {
        self.heartbeat = Some(heartbeat);
        self
    }

    fn store(&self) -> &Store {
        &self.ctx.store
    }

    fn limit(&self, kind: JobKind) -> usize {
        self.cfg
            .per_kind
            .get(kind.as_str())
            .copied()
            .unwrap_or(self.cfg.concurrency)
    }

    /// Runs until `cancel` fires, then drains.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), store::Error> {
        let mut tasks: JoinSet<JobId> = JoinSet::new();
        let mut in_flight: HashMap<JobId, JobRow> = HashMap::new();
        // Each running job's cancel switch, pulled when an operator cancels it.
        let mut switches: HashMap<JobId, CancellationToken> = HashMap::new();
        let check_every = lifecycle::cancel_check_every(self.cfg.poll_interval);
        let mut next_check = tokio::time::Instant::now() + check_every;
        let mut per_kind: HashMap<String, usize> = HashMap::new();
        let mut store_failures = 0u32;
        let mut last_claim: Option<tokio::time::Instant> = None;
        let settler = Settler::spawn(self.ctx.store.clone());

        while !cancel.is_cancelled() {
            if let Some(hb) = &self.heartbeat {
                hb.mark(tasks.len());
            }
            let mut claimed = false;
            let free = self.cfg.concurrency.saturating_sub(tasks.len());
            // Claim in batches: one transaction for several jobs, not one per finished task.
            let min_batch = (self.cfg.concurrency / 4).max(1);
            // While the store cannot write (any write path saw a full disk, say), no new work
            // is taken: a claim is made only as the probe that finds the store writable again,
            // at most every MAX_STORE_PAUSE.
            let store_down = store_failures > 0 || self.store().health().is_failing();
            let probe_due = last_claim.is_none_or(|at| at.elapsed() >= MAX_STORE_PAUSE);
            if free > 0 && (free >= min_batch || tasks.is_empty()) && (!store_down || probe_due) {
                last_claim = Some(tokio::time::Instant::now());
                let limits: Vec<(&str, usize)> = JobKind::ALL
                    .iter()
                    .map(|k| {
                        let used = per_kind.get(k.as_str()).copied().unwrap_or(0);
                        (k.as_str(), self.limit(*k).saturating_sub(used).min(free))
                    })
                    .collect();
                match self.store().claim_batch_limited(&limits, free).await {
                    Ok(jobs) => {
                        store_failures = 0;
                        // Every claimed job runs: one left unspawned would stay `running`.
                        for job in jobs {
                            claimed = true;
                            *per_kind.entry(job.kind.clone()).or_default() += 1;
                            in_flight.insert(job.id, job.clone());
                            let switch = CancellationToken::new();
                            switches.insert(job.id, switch.clone());
                            let ctx = self.ctx.clone();
                            let policy = self.policy;
                            let settler = settler.clone();
                            let span = job_span(&job);
                            tasks
                                .spawn(execute(ctx, policy, settler, job, switch).instrument(span));
                        }
                    }
                    Err(e) => {
                        store_failures += 1;
                        if !e.is_transient() {
                            tracing::error!(error = %e, "cannot claim jobs; will try again");
                        }
                    }
                }
            }
            let wait = if store_down {
                MAX_STORE_PAUSE
            } else if claimed {
                Duration::ZERO
            } else if !tasks.is_empty() && free < min_batch {
                // Nothing is claimed before a running job ends, which wakes the loop: asking
                // the store when the next job is due would be a query per finished job.
                self.cfg.poll_interval
            } else {
                self.until_next_due().await
            };
            if !in_flight.is_empty() && tokio::time::Instant::now() >= next_check {
                next_check = tokio::time::Instant::now() + check_every;
                self.pull_cancelled(&in_flight, &switches).await;
            }
            // An idle loop still goes round often enough to mark its heartbeat; a busy one,
            // often enough to notice a cancelled job.
            let wait = match &self.heartbeat {
                Some(hb) => wait.min(hb.every),
                None => wait,
            };
            let wait = if in_flight.is_empty() {
                wait
            } else {
                wait.min(next_check.saturating_duration_since(tokio::time::Instant::now()))
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.store().work_available() => {}
                _ = tokio::time::sleep(wait) => {}
                Some(done) = tasks.join_next() => {
                    self.reap(done, &mut in_flight, &mut per_kind);
                }
            }
            while let Some(done) = tasks.try_join_next() {
                self.reap(done, &mut in_flight, &mut per_kind);
            }
            switches.retain(|id, _| in_flight.contains_key(id));
        }

        if !tasks.is_empty() {
            tracing::info!(
                in_flight = tasks.len(),
                grace_s = self.cfg.shutdown_grace.as_secs_f64(),
                "shutting down: waiting for running jobs"
            );
        }
        // Jobs cancelled during the drain are still dropped.
        let drained = tokio::time::timeout(self.cfg.shutdown_grace, async {
            loop {
                tokio::select! {
                    done = tasks.join_next() => match done {
                        Some(done) => self.reap(done, &mut in_flight, &mut per_kind),
                        None => break,
                    },
                    _ = tokio::time::sleep(check_every) => {
                        self.pull_cancelled(&in_flight, &switches).await;
                    }
                }
            }
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            for job in in_flight.values() {
                let span = job_span(&job);
                async {
                    match self.store().settle(job, &Transition::Interrupted).await {
                        Ok(()) => {
                            count_transition(job, &Transition::Interrupted);
                            tracing::warn!("shutdown grace period over: job re-queued")
                        }
                        Err(store::Error::LostOwnership(_)) => tracing::info!(
                            "shutdown grace period over: the job was no longer running (cancelled)"
                        ),
                        Err(e) => tracing::error!(error = %e, "cannot re-queue job at shutdown"),
                    }
                }
                .instrument(span)
                .await;
            }
        }
        Ok(())
    }

    /// Pulls the cancel switch of every job in `in_flight` the store shows cancelled.
    async fn pull_cancelled(
        &self,
        in_flight: &HashMap<JobId, JobRow>,
        switches: &HashMap<JobId, CancellationToken>,
    ) {
        let ids: Vec<JobId> = in_flight.keys().copied().collect();
        match self.store().cancelled_among(&ids).await {
            Ok(cancelled) => {
                for id in cancelled {
                    if let Some(switch) = switches.get(&id) {
                        switch.cancel();
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot check for cancelled jobs"),
        }
    }

    fn reap(
        &self,
        done: Result<JobId, tokio::task::JoinError>,
        in_flight: &mut HashMap<JobId, JobRow>,
        per_kind: &mut HashMap<String, usize>,
    ) {
        let id = match done {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "a job task ended abnormally");
                return;
            }
        };
        if let Some(job) = in_flight.remove(&id) {
            if let Some(n) = per_kind.get_mut(&job.kind) {
                *n = n.saturating_sub(1);
            }
        }
    }

    async fn until_next_due(&self) -> Duration {
        let poll = self.cfg.poll_interval;
        match self.store().next_due_at().await {
            // Due already, yet not claimable: its kind is at its limit, and a finishing task
            // wakes the loop.
            Ok(Some(at)) if at <= now_ms() => poll,
            Ok(Some(at)) => {
                let ms = (at - now_ms()).clamp(1, poll.as_millis() as i64);
                Duration::from_millis(ms as u64)
            }
            _ => poll,
        }
    }
}

/// Gathers the outcomes of jobs that finish together into one store transaction.
#[derive(Clone)]
struct Settler {
    tx: tokio::sync::mpsc::Sender<(
        JobRow,
        Transition,
        oneshot::Sender<Result<(), store::Error>>,
    )>,
}

impl Settler {
    const BATCH: usize = 256;

    fn spawn(store: Store) -> Settler {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(
            JobRow,
            Transition,
            oneshot::Sender<Result<(), store::Error>>,
        )>(Self::BATCH * 4);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < Self::BATCH {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let (items, replies): (Vec<_>, Vec<_>) = batch
                    .into_iter()
                    .map(|(job, t, reply)| ((job, t), reply))
                    .unzip();
                let results = store.settle_many(&items).await;
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
        });
        Settler { tx }
    }

    async fn settle(&self, job: &JobRow, t: &Transition) -> Result<(), store::Error> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((job.clone(), t.clone(), reply)).await.is_err() {
            return Err(store::Error::Sql(sqlx::Error::PoolClosed));
        }
        answer
            .await
            .unwrap_or(Err(store::Error::Sql(sqlx::Error::PoolClosed)))
    }
}

/// Runs one claimed job and records its outcome; when `cancel` fires (an operator cancelled
/// the job, which the store already records), the attempt is dropped and nothing is written.
async fn execute(
    ctx: jobs::Ctx,
    policy: RetryPolicy,
    settler: Settler,
    job: JobRow,
    cancel: CancellationToken,
) -> JobId {
    if job.is_poll() {
        tracing::debug!("polling");
    } else {
        tracing::info!(attempt = job.attempts, "attempt started");
    }
    let Some(result) = lifecycle::run_bounded(&ctx, &job, &cancel).await else {
        tracing::info!(
            attempt = job.attempts,
            "job cancelled: its attempt was dropped"
        );
        return job.id;
    };
    let t = transition(&policy, &ctx.config.engine, &job, result);
    log_transition(&job, &t);
    if settle_until_written(&ctx.store, &settler, &job, &t).await {
        count_transition(&job, &t);
    }
    job.id
}

/// Writes an outcome, holding on to it while the store cannot write (a full disk, a busy lock):
/// it is retried with a growing pause, capped at a few seconds, until it is written, so an
/// outcome is never dropped while the process lives. Only a lost ownership (or a store error
/// no retry can mend) ends the loop without writing; the row then stays `running` and start-up
/// recovery re-queues it. Returns whether it was written.
async fn settle_until_written(
    store: &Store,
    settler: &Settler,
    job: &JobRow,
    t: &Transition,
) -> bool {
    let mut pause = Duration::from_millis(50);
    let mut first = true;
    loop {
        let settled = if first {
            settler.settle(job, t).await
        } else {
            store.settle(job, t).await
        };
        first = false;
        match settled {
            Ok(()) => return true,
            Err(e) if e.is_transient() => {
                // The store's health logs the condition once, then once a minute.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_STORE_PAUSE);
            }
            Err(store::Error::LostOwnership(id)) if matches!(store.get(id).await, Ok(Some(j)) if j.status() == Some(crate::Status::Cancelled)) =>
            {
                tracing::info!(
                    "the job was cancelled before its outcome was written; it stays cancelled"
                );
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record the job's outcome");
                return false;
            }
        }
    }
}

/// The longest pause between two tries of a write the store refused for a passing reason.
const MAX_STORE_PAUSE: Duration = Duration::from_secs(2);

/// The state change an attempt's result calls for.
pub fn transition(
    policy: &RetryPolicy,
    engine: &EngineConfig,
    job: &JobRow,
    result: Result<Step, RunError>,
) -> Transition {
    let now = now_ms();
    match result {
        Ok(Step::Done {
            jid,
            trace_id,
            result,
        }) => Transition::Succeeded {
            jid,
            trace_id,
            result,
        },
        Ok(Step::Follow {
            jid,
            checkpoint,
            after,
        }) => Transition::Following {
            jid,
            checkpoint,
            next_run_at: now + after.as_millis() as i64,
        },
        Ok(Step::Fail { error, result }) => Transition::Failed {
            error,
            result: Some(result),
        },
        Err(e) if job.is_poll() && e.is_retryable() => {
            // A transient failure while following costs a poll, not an attempt.
            let after = e
                .retry_after()
                .map(|d| policy.cap_retry_after(d))
                .unwrap_or(engine.poll_interval.max(policy.initial_interval));
            tracing::warn!(error = %e, "poll failed; polling again later");
            Transition::Following {
                jid: None,
                checkpoint: job.checkpoint.clone().unwrap_or(serde_json::Value::Null),
                next_run_at: now + after.as_millis() as i64,
            }
        }
        Err(e) => {
            let attempt = u32::try_from(job.attempts).unwrap_or(u32::MAX);
            // The job keeps the limit it was submitted with.
            let limited = RetryPolicy {
                max_attempts: u32::try_from(job.max_attempts).unwrap_or(policy.max_attempts),
                ..*policy
            };
            match limited.decide(attempt, e.is_retryable(), e.retry_after()) {
                Decision::RetryAfter(delay) => {
                    let mut error = e.info();
                    if let Some(asked) = e.retry_after().filter(|a| *a > delay) {
                        // Recorded on the attempt, so the shorter wait is not a mystery.
                        error.error_msg.push_str(&format!(
                            " [Retry-After asked for {}; waited the cap of {}]",
                            humantime::format_duration(asked),
                            humantime::format_duration(delay)
                        ));
                    }
                    Transition::Retry {
                        error,
                        next_run_at: now + delay.as_millis() as i64,
                        delay_ms: delay.as_millis() as i64,
                    }
                }
                Decision::GiveUp => Transition::Failed {
                    error: e.info(),
                    result: None,
                },
            }
        }
    }
}

/// Counts a written outcome: the attempt (a poll is not one), a retry, a job that finished.
fn count_transition(job: &JobRow, t: &Transition) {
    let outcome = match t {
        Transition::Succeeded { .. } => "succeeded",
        Transition::Following { .. } => "following",
        Transition::Retry { .. } => "retry",
        Transition::Failed { .. } => "failed",
        Transition::Interrupted => "interrupted",
    };
    let kind = job.kind.clone();
    if !job.is_poll() {
        metrics::counter!("codearts_syncd_attempts_total", "kind" => kind.clone(), "outcome" => outcome)
            .increment(1);
    }
    match t {
        Transition::Retry { .. } => {
            metrics::counter!("codearts_syncd_retries_total", "kind" => kind).increment(1)
        }
        Transition::Succeeded { .. } | Transition::Failed { .. } => {
            metrics::counter!("codearts_syncd_jobs_finished_total", "kind" => kind, "status" => outcome)
                .increment(1)
        }
        Transition::Following { .. } | Transition::Interrupted => {}
    }
}

fn log_transition(job: &JobRow, t: &Transition) {
    match t {
        Transition::Succeeded { jid, .. } => {
            tracing::info!(
                attempt = job.attempts,
                jid = jid.as_deref().unwrap_or(""),
                "job succeeded"
            )
        }
        Transition::Following {
            jid, next_run_at, ..
        } => {
            if !job.is_poll() {
                tracing::info!(
                    jid = jid.as_deref().unwrap_or("not known yet"),
                    next_poll_in_ms = next_run_at - now_ms(),
                    "remote work started; following it"
                )
            }
        }
        Transition::Retry {
            error, delay_ms, ..
        } => tracing::warn!(
            attempt = job.attempts,
            http_status = error.http_status,
            error_code = error.error_code.as_deref().unwrap_or(""),
            error = %error.error_msg,
            retry_in_ms = delay_ms,
            "attempt failed; will retry"
        ),
        Transition::Failed { error, .. } => tracing::error!(
            attempt = job.attempts,
            http_status = error.http_status,
            error_code = error.error_code.as_deref().unwrap_or(""),
            error = %error.error_msg,
            "job failed"
        ),
        Transition::Interrupted => tracing::warn!("job interrupted"),
    }
}

/// The span every line about a job is logged in. Its level is ERROR so that it is enabled
/// whenever any of the job's lines is, whatever the filter: a warning without its job id and
/// kind would be of little use.
pub fn job_span(job: &JobRow) -> tracing::Span {
    tracing::error_span!("job", id = job.id, kind = %job.kind)
}
