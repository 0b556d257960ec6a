//! `bench audit`: how fast an `audit_mirror` job archives large audit logs. Starts the bundled
//! simulator with `repos` repositories holding `records` audit records each (answering every
//! call after `latency`, as a real cloud would), a fresh store in a temporary directory, and the
//! daemon; runs one job that walks every log to its end; prints records per second and the
//! process's peak resident memory (VmHWM from /proc/self/status).
//!
//! The simulator runs in the same process and computes records from their position, so its
//! memory does not grow with the log; peak RSS therefore shows what the walk itself holds. Run
//! it once per size (a new process each time), since the peak is per process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ingress::{self, Submission, Submitted};
use crate::sim::{SimConfig, Simulator};
use crate::store::Store;
use crate::Source;

/// What one benchmark run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditBench {
    /// Records archived, over all repositories.
    pub records: u64,
    pub repos: usize,
    pub latency_ms: u64,
    pub parallel_streams: u32,
    pub prefetch_pages: u32,
    pub page_size: u32,
    pub pages: u64,
    pub seconds: f64,
    pub records_per_second: f64,
    pub peak_rss_kib: Option<u64>,
}

/// The process's peak resident set size in KiB (Linux), if readable.
pub fn peak_rss_kib() -> Option<u64> {
    proc_status_kib("self", "VmHWM:")
}

/// A `kB` field (`VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`; `pid` may be `self`.
pub fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The `p`-quantile (0..=1) of sorted values, nearest rank; 0 for none.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The release binary next to a running example (`target/release/codearts-syncd`), for the
/// benchmarks that run the daemon as its own process.
pub fn release_binary() -> anyhow::Result<std::path::PathBuf> {
    let bin = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("codearts-syncd"))
        .ok_or_else(|| anyhow::anyhow!("cannot locate the codearts-syncd binary"))?;
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --release` first",
        bin.display()
    );
    Ok(bin)
}

/// How a `bench audit` run is set up.
#[derive(Debug, Clone)]
pub struct AuditSetup {
    /// Audit records in each repository's log.
    pub records: u64,
    pub repos: usize,
    pub page_size: u32,
    /// The simulator's delay before every answer.
    pub latency: Duration,
    /// The job's `parallel_streams` and `prefetch_pages` (the job's defaults when `None`).
    pub parallel_streams: Option<u32>,
    pub prefetch_pages: Option<u32>,
}

/// Mirrors `repos` logs of `records` audit records each from a fresh simulator into a fresh
/// archive.
pub async fn audit(setup: AuditSetup) -> anyhow::Result<AuditBench> {
    let AuditSetup {
        records,
        repos,
        page_size,
        latency,
        parallel_streams,
        prefetch_pages,
    } = setup;
    let sim_cfg = SimConfig {
        artifact_repos: repos,
        trashed_repos: 0,
        audit_records: records,
        audit_records_per_repo: Some(records),
        latency,
        ..SimConfig::default()
    };
    let sim = Simulator::new(sim_cfg.clone());
    let addr = sim
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .context("cannot start the simulator")?;
    let base = format!("http://{addr}");
    let dir = tempfile::Builder::new()
        .prefix("codearts-syncd-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    std::fs::write(dir.path().join("demo-password"), &sim_cfg.password)?;
    let mut cfg = Config::from_toml_str(crate::demo::DEMO_CONFIG, dir.path())?;
    cfg.cloud.endpoints.iam = Some(base.clone());
    cfg.cloud.endpoints.repo = Some(base.clone());
    cfg.cloud.endpoints.artifact = Some(base.clone());
    cfg.cloud.endpoints.swr = Some(base);
    cfg.http.request_timeout = Duration::from_secs(60);
    let cfg = Arc::new(cfg);
    let store = Store::open(&cfg.store).await?;
    let repo_ids = sim.artifact_repo_ids();
    anyhow::ensure!(
        repo_ids.len() == repos,
        "the simulator has {} repositories, expected {repos}",
        repo_ids.len()
    );
    let parallel_streams =
        parallel_streams.unwrap_or(crate::jobs::audit_mirror::DEFAULT_PARALLEL_STREAMS);
    let prefetch_pages =
        prefetch_pages.unwrap_or(crate::jobs::audit_mirror::DEFAULT_PREFETCH_PAGES);
    let sub = Submission {
        kind: "audit_mirror".into(),
        params: json!({
            "repos": repo_ids,
            "page_size": page_size,
            "full": true,
            "parallel_streams": parallel_streams,
            "prefetch_pages": prefetch_pages,
        }),
        source: Source::Cli,
        key: None,
        schedule: None,
    };
    let id = match ingress::submit(&store, &cfg, sub).await? {
        Submitted::Queued(id) => id,
        other => anyhow::bail!("the benchmark job was not queued: {other:?}"),
    };
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(crate::daemon::run_with_store(
        cfg.clone(),
        store.clone(),
        cancel.clone(),
    ));
    let started = Instant::now();
    let job = loop {
        let job = store.get(id).await?.context("the benchmark job vanished")?;
        if job.status().is_some_and(|s| s.is_final()) {
            break job;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!("the benchmark job did not finish within an hour");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    cancel.cancel();
    daemon.await.context("the daemon task failed")??;
    if job.status != "succeeded" {
        anyhow::bail!(
            "the benchmark job ended {}: {}",
            job.status,
            job.error_msg.unwrap_or_default()
        );
    }
    let result = job.result.unwrap_or_default();
    let archived = result["records_archived"].as_u64().unwrap_or(0);
    let records = records * repos as u64;
    if archived != records {
        anyhow::bail!("archived {archived} records, expected {records}");
    }
    // The job's own start and finish times: claim to settle, without the polling above.
    let ms = match (job.started_at, job.finished_at) {
        (Some(s), Some(f)) if f > s => (f - s) as f64,
        _ => started.elapsed().as_millis() as f64,
    };
    let seconds = ms / 1000.0;
    store.close().await;
    sim.shutdown();
    Ok(AuditBench {
        records,
        repos,
        latency_ms: latency.as_millis() as u64,
        parallel_streams,
        prefetch_pages,
        page_size,
        pages: result["pages_fetched"].as_u64().unwrap_or(0),
        seconds,
        records_per_second: records as f64 / seconds,
        peak_rss_kib: peak_rss_kib(),
    })
}
