//! A disk that fills while jobs and AMQP deliveries flow, then is freed: the daemon must stop
//! taking work, acknowledge nothing it could not store, keep the outcomes it could not write,
//! and resume on its own. The store lives on a small tmpfs mounted for the test (root only).

use crate::support;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use codearts_syncd::config::Config;
use codearts_syncd::sim::SimConfig;
use codearts_syncd::store::Store;
use support::broker::{acfg, all_jobs, amqp_app, cleanup, job_msg, publish_raw, wait_until};

/// A tmpfs of a few megabytes, unmounted when dropped.
struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    fn mount(dir: &Path, megabytes: u32) -> Result<SmallFs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}M"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(SmallFs {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes a filler file until the filesystem refuses more; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler file");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // The last partial chunk may leave a few bytes; take them too.
        while f.write_all(&[0u8; 512]).is_ok() {}
        while f.write_all(&[0u8]).is_ok() {}
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_the_daemon_and_it_resumes_when_space_returns() {
    if support::sqlite_only("a_full_disk_pauses_the_daemon_and_it_resumes_when_space_returns") {
        return;
    }
    let sim = SimConfig {
        seed_repos: 1..=5000,
        sync_duration: Duration::from_millis(50),
        ..SimConfig::default()
    };
    let (mut app, _tag) = amqp_app(sim, "").await;
    let fs = match SmallFs::mount(&app.dir.path().join("small"), 24) {
        Ok(fs) => fs,
        Err(e) => {
            // Mounting needs root (CI runs as root); say so loudly rather than pass quietly.
            eprintln!("SKIPPED: cannot mount a tmpfs for the store: {e}");
            return;
        }
    };
    // Move the store onto the small filesystem.
    let text = std::fs::read_to_string(app.config_path()).unwrap();
    let store_path = fs.dir.join("jobs.db");
    let text = text.replace(
        "path = \"jobs.db\"",
        &format!("path = {:?}", store_path.display().to_string()),
    );
    std::fs::write(app.config_path(), text).unwrap();
    app.store.close().await;
    app.cfg = Arc::new(Config::load(&app.config_path()).unwrap());
    app.store = Store::open(&app.cfg.store).await.unwrap();
    let cfg = acfg(&app);
    app.start();

    // A publisher that trickles messages (one repository each, a unique key each) until told
    // to stop, so deliveries arrive before, during and after the full disk.
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let cfg = cfg.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sent = 0u32;
            while !stop.load(Ordering::Relaxed) && sent < 3000 {
                let batch: Vec<_> = (sent + 1..=sent + 10)
                    .map(|r| (job_msg(r, Some(&format!("k{r}"))), None))
                    .collect();
                publish_raw(&cfg, &batch).await;
                sent += 10;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    };

    // Let work flow, then fill the disk.
    let store = app.store.clone();
    wait_until(Duration::from_secs(30), "some jobs done", || {
        let store = store.clone();
        async move { all_jobs(&store).await.len() >= 100 }
    })
    .await;
    let filler = fs.fill();
    wait_until(
        Duration::from_secs(60),
        "the store to report that it cannot write",
        || {
            let failing = app.store.health().is_failing();
            async move { failing }
        },
    )
    .await;
    // Keep it full a while longer: writes that still fit (a reused WAL) may pass, others fail;
    // either way nothing may be lost or doubled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::remove_file(&filler).unwrap();
    wait_until(Duration::from_secs(30), "the store to recover", || {
        let ok = !app.store.health().is_failing();
        async move { ok }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = publisher.await.unwrap();

    // Every message is recorded exactly once and every job ends final; each ran exactly once.
    let store = app.store.clone();
    wait_until(Duration::from_secs(120), "every job final", || {
        let store = store.clone();
        async move {
            let jobs = all_jobs(&store).await;
            jobs.len() as u32 >= sent
                && jobs
                    .iter()
                    .all(|j| j.status().is_some_and(|s| s.is_final()))
        }
    })
    .await;
    let jobs = all_jobs(&app.store).await;
    let mut by_key: HashMap<String, u32> = HashMap::new();
    for j in &jobs {
        assert_eq!(j.status, "succeeded", "job {} {:?}", j.id, j.error_msg);
        *by_key
            .entry(j.idempotency_key.clone().expect("every message has a key"))
            .or_default() += 1;
    }
    assert_eq!(by_key.len() as u32, sent, "one job per message sent");
    assert!(
        by_key.values().all(|n| *n == 1),
        "no message recorded twice"
    );
    for r in 1..=sent {
        assert_eq!(
            app.sim.mirror_starts(r),
            1,
            "repository {r}: its job ran once, its outcome saved once"
        );
    }
    app.stop().await;
    cleanup(&cfg).await;
    drop(fs);
}
