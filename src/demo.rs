//! `demo`: the newcomer's first command. Starts the bundled simulator on an ephemeral loopback
//! port and the daemon in a temporary directory with `config/demo.toml`, runs sample jobs —
//! a mirror that succeeds, one that fails for good (404), one that succeeds after transient
//! 500s — and prints the outcome table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{render_table, JobView};
use crate::config::Config;
use crate::ingress::{self, Submission};
use crate::sim::{Fault, Route, SimConfig, Simulator};
use crate::store::Store;
use crate::Source;

/// The demo configuration, compiled in so the demo runs from any directory.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// Runs the demo; `keep` leaves the temporary directory in place.
pub async fn run(keep: bool) -> anyhow::Result<()> {
    let sim_cfg = SimConfig {
        sync_duration: Duration::from_millis(400),
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
    let samples = [
        (
            "a mirror that succeeds",
            json!({"repository_id": 1, "force_fetch": true}),
        ),
        (
            "a repository that does not exist (404)",
            json!({"repository_id": 404_404}),
        ),
        (
            "a mirror that succeeds after two 500s",
            json!({"repository_id": 3}),
        ),
    ];
    let mut ids = Vec::new();
    for (what, params) in samples {
        let sub = Submission {
            kind: "remote_mirror".into(),
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
        let outcome = match (&v.jid, &v.error_code) {
            (Some(jid), _) if v.status == "succeeded" => {
                let sync = job
                    .result
                    .as_ref()
                    .and_then(|r| r.get("sync"))
                    .and_then(|s| s.as_str())
                    .unwrap_or("-");
                format!("jid {jid}, sync {sync}")
            }
            (_, Some(code)) => format!("{code}: {}", v.error_msg.clone().unwrap_or_default()),
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
    cancel.cancel();
    daemon.await.context("the daemon task failed")??;
    sim.shutdown();

    println!();
    print!(
        "{}",
        render_table(&["ID", "KIND", "STATUS", "ATTEMPTS", "JID OR ERROR"], &rows)
    );
    println!();
    println!("{} jobs in {:.1}s", ids.len(), elapsed.as_secs_f64());
    if elapsed >= Duration::from_secs(60) {
        anyhow::bail!("the demo jobs did not all finish within 60 s");
    }
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
