//! `enqueue --wait`: follow a submitted job until it is final and exit by its outcome: 0
//! succeeded, 1 failed, cancelled or skipped (or `--timeout` passed first: the job goes on), 2
//! rejected. The job is read from the store by polling, so it works whichever process runs it:
//! a daemon sharing the store picks the job up, and with AMQP the row appears once the daemon
//! has consumed the message (found by its idempotency key).

use std::time::Duration;

use tokio::time::Instant;

use super::render::job_detail;
use super::{EXIT_FAILURE, EXIT_INVALID};
use crate::config::Config;
use crate::ingress::Submitted;
use crate::store::{JobRow, Store};
use crate::{JobId, Status};

/// How often the store is read while waiting.
const POLL: Duration = Duration::from_millis(100);

/// How to wait.
#[derive(Clone, Debug)]
pub struct Waiting {
    /// Stop waiting after this long; `None`: until the job is final.
    pub timeout: Option<Duration>,
    /// Print the job as `jobs show --json` does instead of a line.
    pub json: bool,
}

/// `--timeout`: a duration such as `90s`, above zero.
pub fn parse_wait_timeout(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be above zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{s:?} is not a duration such as 90s or 10m: {e}")),
    }
}

/// Waits for the job a local submission is recorded as.
pub(super) async fn wait_submitted(
    store: &Store,
    submitted: &Submitted,
    w: &Waiting,
) -> anyhow::Result<u8> {
    let id = submitted.id();
    let line = match submitted {
        Submitted::Queued(_) => format!("queued job {id}"),
        Submitted::Duplicate(_) => format!("duplicate key: waiting for job {id}"),
        Submitted::Coalesced(_) => format!("joined queued job {id}"),
        Submitted::Skipped(_) => format!("skipped (recorded as job {id})"),
        Submitted::Rejected { .. } => String::new(),
    };
    if !line.is_empty() {
        eprintln!("{line}");
    }
    let deadline = w.timeout.map(|t| Instant::now() + t);
    wait_final(store, id, deadline, w).await
}

/// Waits for the daemon to record the message published with `key`, then for its job.
pub(super) async fn wait_for_key(cfg: &Config, key: &str, w: &Waiting) -> anyhow::Result<u8> {
    let deadline = w.timeout.map(|t| Instant::now() + t);
    let passed = || deadline.is_some_and(|d| Instant::now() >= d);
    // The daemon creates the store if it is new; wait for it like for the row.
    let store = loop {
        match Store::open_existing(&cfg.store).await {
            Ok(s) => break s,
            Err(crate::store::Error::Missing { .. }) if !passed() => tokio::time::sleep(POLL).await,
            Err(e) => return Err(e.into()),
        }
    };
    let id = loop {
        if let Some(id) = store.job_for_key(key).await? {
            break Some(id);
        }
        if passed() {
            break None;
        }
        tokio::time::sleep(POLL).await;
    };
    let code = match id {
        Some(id) => wait_final(&store, id, deadline, w).await,
        None => {
            eprintln!(
                "error: no job recorded for key {key:?} within {}; the message is published and \
                 the daemon will record it when it consumes it",
                crate::config::show_duration(w.timeout.unwrap_or_default())
            );
            Ok(EXIT_FAILURE)
        }
    };
    store.close().await;
    code
}

async fn wait_final(
    store: &Store,
    id: JobId,
    deadline: Option<Instant>,
    w: &Waiting,
) -> anyhow::Result<u8> {
    let job = loop {
        let Some(job) = store.get(id).await? else {
            anyhow::bail!("job {id} is not in the store (pruned by retention?)");
        };
        let final_ = job.status().is_some_and(Status::is_final);
        if final_ || deadline.is_some_and(|d| Instant::now() >= d) {
            break job;
        }
        tokio::time::sleep(POLL).await;
    };
    let code = exit_code(&job);
    if w.json {
        let view = job_detail(store, &job).await?;
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else if code == 0 {
        println!("{}", outcome_line(&job, w.timeout));
    } else {
        eprintln!("{}", outcome_line(&job, w.timeout));
    }
    Ok(code)
}

fn exit_code(job: &JobRow) -> u8 {
    match job.status() {
        Some(Status::Succeeded) => 0,
        Some(Status::Rejected) => EXIT_INVALID,
        _ => EXIT_FAILURE,
    }
}

/// The one line `--wait` prints: how the job ended, or that waiting stopped first.
pub fn outcome_line(job: &JobRow, timeout: Option<Duration>) -> String {
    let attempts = match job.attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    let error = || match (&job.error_code, &job.error_msg) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (None, Some(m)) => m.clone(),
        (Some(c), None) => c.clone(),
        (None, None) => "no details".into(),
    };
    match job.status() {
        Some(Status::Succeeded) => format!(
            "job {} succeeded ({attempts}{})",
            job.id,
            job.jid
                .as_deref()
                .map(|j| format!(", jid {j}"))
                .unwrap_or_default()
        ),
        Some(Status::Rejected) => format!("error: job {} rejected: {}", job.id, error()),
        Some(s) if s.is_final() => {
            format!("error: job {} {s} after {attempts}: {}", job.id, error())
        }
        _ => format!(
            "error: job {} is still {} after {}; stopped waiting (the job goes on)",
            job.id,
            job.status,
            crate::config::show_duration(timeout.unwrap_or_default())
        ),
    }
}
