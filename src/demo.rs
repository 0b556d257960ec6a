//! `demo`: the newcomer's first command. Starts the bundled simulator on an ephemeral loopback
//! port and the daemon in a temporary directory with `config/demo.toml`, runs sample jobs of
//! every kind — a mirror that succeeds, one that fails for good (404), one that succeeds after
//! transient 500s, a recycle-bin purge, a storage snapshot, an audit archive run and an SWR
//! image sync with one tag failing — and prints the outcome table: jids and sync outcomes, items
//! purged, bytes measured, records archived, tags synced. Then an SWR share audit with a change:
//! two snapshots and the `swr shares --changes` report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::render::{render_table, JobView};
use crate::config::Config;
use crate::ingress::{self, Submission};
use crate::sim::{Fault, Route, SimConfig, Simulator};
use crate::store::Store;
use crate::Source;

/// An SWR share audit with a change: a snapshot, a share added, one removed and one widened in
/// the simulator, a second snapshot, then what `swr shares --changes` prints. The daemon runs.
async fn share_audit(store: &Store, cfg: &Config, sim: &Simulator) -> anyhow::Result<String> {
    use crate::sim::{ShareChange, ShareOp};
    let mut out = String::from("SWR share audit: two snapshots with a change between them\n");
    let change = |op, ns: &str, repo: &str, account: &str, permit: &str| ShareChange {
        op,
        namespace: ns.into(),
        repository: repo.into(),
        access_domain: account.into(),
        permit: Some(permit.into()),
        deadline: Some("forever".into()),
        after_pages: None,
    };
    for round in 0..2 {
        if round == 1 {
            sim.change_swr_share(change(
                ShareOp::Put,
                "team-b",
                "batch-worker",
                "partner-q",
                "read",
            ));
            sim.change_swr_share(change(
                ShareOp::Remove,
                "team-a",
                "web",
                "partner-x",
                "read",
            ));
            sim.change_swr_share(change(
                ShareOp::Put,
                "team-a",
                "api-server",
                "partner-x",
                "write",
            ));
        }
        let sub = Submission {
            kind: "swr_share_audit".into(),
            params: json!({}),
            source: Source::Cli,
            key: None,
            schedule: None,
        };
        let id = ingress::submit(store, cfg, sub).await?.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        let job = loop {
            let job = store.get(id).await?.context("a demo job vanished")?;
            if job.status().is_some_and(|s| s.is_final()) || Instant::now() > deadline {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let r = job.result.clone().unwrap_or_default();
        out.push_str(&format!(
            "job {id} swr_share_audit {}: {} shares of {} repositories, {} past their deadline\n",
            job.status, r["shares"], r["repositories"], r["deadline_passed"]
        ));
        if job.status != "succeeded" {
            anyhow::bail!("the demo's share audit {id} ended {}", job.status);
        }
    }
    let snaps = store.latest_share_snapshots(2).await?;
    out.push_str("\n$ codearts-syncd swr shares --changes\n");
    out.push_str(&crate::cli::swr::changes_report(
        &snaps,
        false,
        chrono::Utc::now(),
    )?);
    Ok(out)
}

/// The demo configuration, compiled in so the demo runs from any directory.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// Runs the demo; `keep` leaves the temporary directory in place.
pub async fn run(keep: bool) -> anyhow::Result<()> {
    let sim_cfg = SimConfig {
        sync_duration: Duration::from_millis(400),
        audit_records: 5_000,
        ..SimConfig::default()
    };
    let sim = Simulator::new(sim_cfg.clone());
    let addr = sim
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .context("cannot start the simulator")?;
    let base = format!("http://{addr}");

    let dir = tempfile::Builder::new()
        .prefix("codearts-syncd-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    std::fs::write(dir.path().join("config.toml"), DEMO_CONFIG)?;
    std::fs::write(dir.path().join("demo-password"), &sim_cfg.password)?;
    let mut cfg = Config::from_toml_str(DEMO_CONFIG, dir.path())?;
    cfg.cloud.endpoints.iam = Some(base.clone());
    cfg.cloud.endpoints.repo = Some(base.clone());
    cfg.cloud.endpoints.artifact = Some(base.clone());
    cfg.cloud.endpoints.swr = Some(base.clone());
    let cfg = Arc::new(cfg);

    println!("simulator: {base}");
    println!("database:  {}", cfg.store.path.display());
    println!();

    let store = Store::open(&cfg.store).await?;
    // Repository 3 answers two 500s before the start call goes through.
    sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(3),
        status: Some(500),
        times: 2,
        ..Fault::default()
    });
    // The image sync's tag v1.1.0 fails at the target.
    sim.swr_tag_outcome("demo-team", "web", "v1.1.0", Some("failed"));
    let samples = [
        (
            "remote_mirror",
            "a mirror that succeeds",
            json!({"repository_id": 1, "force_fetch": true}),
        ),
        (
            "remote_mirror",
            "a repository that does not exist (404)",
            json!({"repository_id": 404_404}),
        ),
        (
            "remote_mirror",
            "a mirror that succeeds after two 500s",
            json!({"repository_id": 3}),
        ),
        (
            "purge_recycle_bin",
            "empty the recycle bin of what is older than 30 days",
            json!({"older_than": "30d"}),
        ),
        (
            "storage_snapshot",
            "measure storage: total, per repository, 7-day trend",
            json!({}),
        ),
        (
            "audit_mirror",
            "archive every repository's audit log",
            json!({}),
        ),
        (
            "swr_image_sync",
            "copy three image tags to another region; one fails",
            json!({"namespace": "demo-team", "repository": "web",
                   "tags": ["v1.0.0", "v1.0.1", "v1.1.0"],
                   "remote_region_id": "ap-southeast-1", "remote_namespace": "demo-team-dr"}),
        ),
    ];
    let mut ids = Vec::new();
    for (kind, what, params) in samples {
        let sub = Submission {
            kind: kind.into(),
            params,
            source: Source::Cli,
            key: None,
            schedule: None,
        };
        let done = ingress::submit(&store, &cfg, sub).await?;
        println!("submitted job {}: {what}", done.id());
        ids.push(done.id());
    }

    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(crate::daemon::run_with_store(
        cfg.clone(),
        store.clone(),
        cancel.clone(),
    ));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let mut all_final = true;
        for id in &ids {
            let job = store.get(*id).await?.context("a demo job vanished")?;
            all_final &= job.status().is_some_and(|s| s.is_final());
        }
        if all_final || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let mut rows = Vec::new();
    for id in &ids {
        let job = store.get(*id).await?.context("a demo job vanished")?;
        let v = JobView::from(&job);
        let r = job.result.clone().unwrap_or_default();
        let outcome = match (v.kind.as_str(), &v.jid, &v.error_code) {
            ("purge_recycle_bin", _, None) => format!(
                "{} items purged, {} failed, {} skipped",
                r["deleted"], r["failed"], r["skipped"]
            ),
            ("storage_snapshot", _, None) => format!(
                "{} bytes in total ({}), {} repositories measured",
                r["total_bytes"],
                r["total_storage"].as_str().unwrap_or("-"),
                r["repos"]
            ),
            ("audit_mirror", _, None) => format!(
                "{} audit records archived from {} repositories in {} pages",
                r["records_archived"], r["streams"], r["pages_fetched"]
            ),
            ("swr_image_sync", _, _) => format!(
                "tags: {} synced, {} already there, {} failed {}",
                r["succeeded"].as_array().map_or(0, Vec::len),
                r["existed"].as_array().map_or(0, Vec::len),
                r["failed"].as_array().map_or(0, Vec::len),
                r["failed"]
            ),
            (_, Some(jid), _) if v.status == "succeeded" => {
                let sync = job
                    .result
                    .as_ref()
                    .and_then(|r| r.get("sync"))
                    .and_then(|s| s.as_str())
                    .unwrap_or("-");
                format!("jid {jid}, sync {sync}")
            }
            (_, _, Some(code)) => {
                format!("{code}: {}", v.error_msg.clone().unwrap_or_default())
            }
            _ => "-".to_string(),
        };
        rows.push([
            v.id.to_string(),
            v.kind,
            v.status,
            v.attempts.to_string(),
            outcome,
        ]);
    }
    let shares = share_audit(&store, &cfg, &sim).await?;
    cancel.cancel();
    daemon.await.context("the daemon task failed")??;
    sim.shutdown();

    println!();
    print!(
        "{}",
        render_table(&["ID", "KIND", "STATUS", "ATTEMPTS", "OUTCOME"], &rows)
    );
    println!();
    println!("{} jobs in {:.1}s", ids.len(), elapsed.as_secs_f64());
    if elapsed >= Duration::from_secs(60) {
        anyhow::bail!("the demo jobs did not all finish within 60 s");
    }
    println!();
    print!("{shares}");
    if keep {
        let path = dir.keep();
        println!(
            "kept {}; the simulator is gone, but the history stays: codearts-syncd --config {}/config.toml jobs list",
            path.display(),
            path.display()
        );
    }
    Ok(())
}
