//! Webhook benchmark: N valid CodeArts Repo push hooks (distinct repositories, distinct commits)
//! POSTed by C concurrent clients on loopback at the daemon's listener, with
//! `store.synchronous = "full"`. Prints accepted webhooks/s, p50/p99 latency, and the daemon's
//! RSS; then checks that every accepted hook is a committed row. The daemon runs as its own
//! process (the release binary).
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_webhooks -- [N] [C]
//! ```

use std::time::{Duration, Instant};

use codearts_syncd::bench::{percentile, proc_status_kib, release_binary};
use codearts_syncd::sim::{SimConfig, Simulator};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let clients: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    let bin = release_binary()?;

    let sim = Simulator::new(SimConfig::default());
    let sim_addr = sim.spawn(([127, 0, 0, 1], 0).into()).await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("password"), SimConfig::default().password)?;
    std::fs::write(dir.path().join("hook-token"), "bench-token")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = format!(
        r#"
[store]
path = "jobs.db"
synchronous = "full"
[cloud]
region = "ap-southeast-3"
iam_project_id = "{project}"
[cloud.endpoints]
iam = "http://{sim_addr}"
repo = "http://{sim_addr}"
[cloud.auth]
method = "password"
domain_name = "demo-account"
user_name = "demo-user"
password = {{ file = "password" }}
[server]
listen = "127.0.0.1:{port}"
[server.codearts_repo]
token = {{ file = "hook-token" }}
[[server.routes]]
repo = "bench/*"
repository_id = 1
"#,
        project = SimConfig::default().iam_project_id,
    );
    std::fs::write(dir.path().join("config.toml"), config)?;
    let mut child = std::process::Command::new(&bin)
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .arg("run")
        .env("RUST_LOG", "warn")
        .spawn()?;
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the listener did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = proc_status_kib(&pid.to_string(), "VmRSS:").unwrap_or(0);

    println!("N = {n} hooks, {clients} concurrent clients, store synchronous = full");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let url = format!("{base}/hooks/codearts-repo");
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut accepted = 0usize;
            for i in (c..n).step_by(clients) {
                let body = format!(
                    r#"{{"object_kind":"push","ref":"refs/heads/main","checkout_sha":"{i:040x}","project_id":{i},"project":{{"path_with_namespace":"bench/repo-{i}","git_http_url":"https://example.invalid/bench/repo-{i}.git"}}}}"#
                );
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .header("X-Repo-Token", "bench-token")
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                if resp.is_ok_and(|r| r.status().as_u16() == 202) {
                    accepted += 1;
                }
            }
            (lat, accepted)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    let mut accepted = 0;
    for t in tasks {
        let (l, a) = t.await?;
        lat.extend(l);
        accepted += a;
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let peak = proc_status_kib(&pid.to_string(), "VmRSS:").unwrap_or(0);

    // Every accepted hook is a committed row (a job or a request that joined one).
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("jobs.db").display()
    ))
    .await?;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE source = 'webhook'")
        .fetch_one(&db)
        .await?;
    db.close().await;
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();

    println!(
        "accepted: {accepted} of {n} ({:.0} webhooks/s)",
        accepted as f64 / secs
    );
    println!(
        "latency: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    println!("committed request rows: {rows}");
    println!(
        "daemon RSS: idle {:.1} MB, after {:.1} MB",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    anyhow::ensure!(rows as usize >= accepted, "an accepted hook has no row");
    Ok(())
}
