//! AMQP throughput and per-job cost benchmark. In one run on this machine it measures:
//!
//! (a) the broker's own rate: a minimal lapin publisher with confirms and a consumer with
//!     manual acks, N small persistent messages;
//! (b) the daemon's end-to-end rate: N `remote_mirror` jobs (without following) published to
//!     its queue while it consumes, each calling the simulator and recorded `succeeded` with a
//!     jid: jobs/s, the ratio b/a, p50 and p99 latency from publish to record;
//! (c) the daemon's CPU per job with the queue preloaded with N jobs and the API answering at
//!     once, at `engine.concurrency` 8 (the default) and 64;
//! (d) with the simulator delaying every answer by 100 ms, jobs/s at concurrency 16, 64, 256
//!     and 1024 (the per-kind cap raised with it), against the bound the latency sets:
//!     concurrency ÷ (API calls per job × 100 ms);
//! (f) the floor (`floor.rs`): the same I/O per job — the delivery and its ack, the three
//!     durable commits, the two API calls — in straight-line code on the same crates, at (c)'s
//!     concurrencies, all of it and each part alone: what a job costs before the daemon adds
//!     anything of its own;
//!
//! and the daemon's idle and peak RSS (anonymous and file-backed) and the binary's size. The
//! daemon runs as its own process (the release binary), so its CPU and RSS are its own.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_amqp -- [N] [normal|full] [--no-latency]
//! ```
//! Needs RabbitMQ on 127.0.0.1:5672 (guest/guest).
//!
//! For profiling: `--phases=c` runs only some of the phases (letters a to d and f), `--c=64`
//! sets (c)'s and (f)'s concurrencies; in (c) and (d), `BENCH_AMQP_WRAP` is a command the daemon
//! is started under (e.g. `valgrind --tool=callgrind`, which keeps the daemon's pid) and
//! `BENCH_AMQP_ATTACH` a shell command, `{pid}` replaced by the daemon's, started when the first
//! job is recorded and sent SIGINT when the last one is (e.g. `perf record -p {pid}`,
//! `strace -c -f -p {pid}`); (f)'s all-parts runs are attached the same way.
//! `BENCH_AMQP_DAEMON_ENV` (`NAME=value …`) sets variables in the daemon's environment only
//! (e.g. `RUST_LOG=warn,sqlx::query=debug` to log every statement).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codearts_syncd::bench::{percentile, proc_status_kib, release_binary};
use codearts_syncd::config::Config;
use codearts_syncd::sim::{Route, SimConfig, Simulator};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use sqlx::Row;

mod floor;

async fn connection() -> anyhow::Result<Connection> {
    Ok(Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        ConnectionProperties::default(),
    )
    .await?)
}

/// (a): publish N persistent messages with confirms while a consumer acks them manually.
async fn broker_rate(n: usize) -> anyhow::Result<f64> {
    let queue = ShortString::from(format!("bench-raw-{}", uuid::Uuid::new_v4().simple()));
    let pub_conn = connection().await?;
    let con_conn = connection().await?;
    let pch = pub_conn.create_channel().await?;
    let cch = con_conn.create_channel().await?;
    pch.queue_declare(
        queue.clone(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    pch.confirm_select(ConfirmSelectOptions::default()).await?;
    cch.basic_qos(256, BasicQosOptions::default()).await?;
    let mut consumer = cch
        .basic_consume(
            queue.clone(),
            ShortString::from("bench"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let started = Instant::now();
    let consume = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            match consumer.next().await {
                Some(Ok(d)) => {
                    d.ack(BasicAckOptions::default()).await?;
                    got += 1;
                }
                _ => anyhow::bail!("consumer ended early"),
            }
        }
        Ok(Instant::now())
    });
    let body = br#"{"kind":"remote_mirror","params":{"repository_id":1,"follow":false}}"#;
    let mut confirms = Vec::with_capacity(n);
    for _ in 0..n {
        confirms.push(
            pch.basic_publish(
                ShortString::from(""),
                queue.clone(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?,
        );
    }
    for c in confirms {
        c.await?;
    }
    let done = consume.await??;
    let rate = n as f64 / (done - started).as_secs_f64();
    pch.queue_delete(queue, QueueDeleteOptions::default())
        .await?;
    let _ = pub_conn.close(200, ShortString::from("done")).await;
    let _ = con_conn.close(200, ShortString::from("done")).await;
    Ok(rate)
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?)
        })
        .unwrap_or(0.0);
    ticks / 100.0
}

/// Context switches (voluntary, involuntary) of the process's live threads.
fn context_switches(pid: u32) -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return total;
    };
    for t in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            let n = |l: &str| l.trim().parse::<u64>().unwrap_or(0);
            if let Some(v) = line.strip_prefix("voluntary_ctxt_switches:") {
                total.0 += n(v);
            } else if let Some(v) = line.strip_prefix("nonvoluntary_ctxt_switches:") {
                total.1 += n(v);
            }
        }
    }
    total
}

/// RSS in MB: total, anonymous, file-backed.
fn rss_mb(pid: u32) -> (f64, f64, f64) {
    let f = |field| proc_status_kib(&pid.to_string(), field).unwrap_or(0) as f64 / 1024.0;
    (f("VmRSS:"), f("RssAnon:"), f("RssFile:"))
}

/// One daemon process with its own store, queue and simulator settings.
struct Daemon {
    dir: tempfile::TempDir,
    tag: String,
    child: std::process::Child,
    pid: u32,
}

impl Daemon {
    /// Writes its config (store `sync`, `concurrency`, the remote_mirror cap with it) and, when
    /// `preload` is given, declares its topology and publishes those jobs before it starts.
    async fn start(
        bin: &Path,
        sim: &str,
        sync: &str,
        concurrency: usize,
        preload: Option<(&Channel, usize)>,
        wrap: Option<&str>,
    ) -> anyhow::Result<Daemon> {
        let dir = tempfile::tempdir()?;
        let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        std::fs::write(dir.path().join("password"), SimConfig::default().password)?;
        let config = format!(
            r#"
[store]
path = "jobs.db"
synchronous = "{sync}"
[cloud]
region = "ap-southeast-3"
iam_project_id = "{project}"
[cloud.endpoints]
iam = "http://{sim}"
repo = "http://{sim}"
[cloud.auth]
method = "password"
domain_name = "demo-account"
user_name = "demo-user"
password = {{ file = "password" }}
[engine]
concurrency = {concurrency}
[engine.per_kind]
remote_mirror = {concurrency}
[amqp]
exchange = "bench-{tag}-ex"
queue = "bench-{tag}-q"
dead_letter_exchange = "bench-{tag}-dlx"
dead_letter_queue = "bench-{tag}-dead"
leader_queue = "bench-{tag}-leader"
prefetch = {prefetch}
"#,
            project = SimConfig::default().iam_project_id,
            prefetch = (concurrency * 4).clamp(200, 2000),
        );
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config)?;
        if let Some((ch, n)) = preload {
            let cfg = Config::load(&path)?;
            let acfg = cfg.amqp.as_ref().expect("amqp configured");
            codearts_syncd::ingress::amqp::declare_topology(ch, acfg).await?;
            publish(ch, &tag, 0..n).await?;
        }
        let mut words = wrap.unwrap_or("").split_whitespace();
        let mut cmd = match words.next() {
            Some(first) => {
                let mut c = std::process::Command::new(first);
                c.args(words).arg(bin);
                c
            }
            None => std::process::Command::new(bin),
        };
        let child = cmd
            .arg("--config")
            .arg(&path)
            .arg("run")
            .env("RUST_LOG", "warn")
            .envs(
                std::env::var("BENCH_AMQP_DAEMON_ENV")
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('=')),
            )
            .spawn()?;
        let pid = child.id();
        Ok(Daemon {
            dir,
            tag,
            child,
            pid,
        })
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("jobs.db")
    }

    /// Waits until the daemon consumes from its queue.
    async fn wait_consuming(&self, conn: &Connection) -> anyhow::Result<()> {
        let mut ch = conn.create_channel().await?;
        let queue = ShortString::from(format!("bench-{}-q", self.tag));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let q = ch
                .queue_declare(
                    queue.clone(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match q {
                Ok(q) if q.consumer_count() > 0 => return Ok(()),
                Ok(_) => {}
                // Not declared yet; the failed passive declare closed the channel.
                Err(_) => ch = conn.create_channel().await?,
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the daemon did not start consuming"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the daemon (SIGTERM) and removes its queues and exchanges.
    async fn stop(mut self, ch: &Channel) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        self.child.wait()?;
        let tag = &self.tag;
        for q in [
            format!("bench-{tag}-q"),
            format!("bench-{tag}-dead"),
            format!("bench-{tag}-leader"),
        ] {
            let _ = ch
                .queue_delete(ShortString::from(q), QueueDeleteOptions::default())
                .await;
        }
        for e in [format!("bench-{tag}-ex"), format!("bench-{tag}-dlx")] {
            let _ = ch
                .exchange_delete(ShortString::from(e), ExchangeDeleteOptions::default())
                .await;
        }
        Ok(())
    }
}

/// Publishes one `remote_mirror` job (no following) per index, repository `i + 1`, key `b{i}`,
/// with confirms; returns when the broker confirmed them all.
async fn publish(
    ch: &Channel,
    tag: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<HashMap<String, i64>> {
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let exchange = ShortString::from(format!("bench-{tag}-ex"));
    let routing_key = ShortString::from("jobs");
    let mut published = HashMap::with_capacity(range.len());
    let mut confirms = Vec::with_capacity(range.len());
    for i in range {
        let key = format!("b{i}");
        let body = format!(
            r#"{{"kind":"remote_mirror","params":{{"repository_id":{},"follow":false}},"key":"{key}"}}"#,
            i + 1
        );
        published.insert(key, chrono::Utc::now().timestamp_millis());
        confirms.push(
            ch.basic_publish(
                exchange.clone(),
                routing_key.clone(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type(ShortString::from("application/json")),
            )
            .await?,
        );
    }
    for c in confirms {
        c.await?;
    }
    Ok(published)
}

/// Starts `cmd` (a shell command, `{pid}` replaced by `pid`) in a process group of its own.
fn attach_to(cmd: &str, pid: u32) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd.replace("{pid}", &pid.to_string()))
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
}

/// Sends SIGINT to what [`attach_to`] started and waits for it.
fn detach(mut child: std::process::Child) -> std::io::Result<()> {
    let _ = std::process::Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status();
    child.wait().map(|_| ())
}

/// Polls the store until `n` jobs succeeded with a jid. Returns the CPU the daemon had used
/// when the first job was recorded and the count then, and its peak RSS seen; `switches`
/// gets the daemon's context switches when the first job was recorded. `attach` (a
/// shell command, `{pid}` replaced) is started when the first job is recorded and sent SIGINT
/// at the end.
async fn wait_done(
    d: &Daemon,
    n: usize,
    attach: Option<&str>,
    switches: &mut (u64, u64),
) -> anyhow::Result<(f64, usize, f64)> {
    // The daemon creates its store as it starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    let db = loop {
        let opened = read_only(&d.db()).await;
        match opened {
            Ok(db) => break db,
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut first: Option<(f64, usize)> = None;
    let mut attached: Option<std::process::Child> = None;
    let mut peak = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        peak = peak.max(rss_mb(d.pid).0);
        let cpu = cpu_seconds(d.pid);
        let done: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded' AND jid IS NOT NULL",
        )
        .fetch_one(&db)
        .await
        .unwrap_or(0);
        if done > 0 && first.is_none() {
            first = Some((cpu, done as usize));
            *switches = context_switches(d.pid);
            if let Some(cmd) = attach {
                attached = Some(attach_to(cmd, d.pid)?);
            }
        }
        if done as usize >= n {
            if let Some(child) = attached.take() {
                detach(child)?;
            }
            db.close().await;
            let (c, k) = first.unwrap_or((cpu, 0));
            return Ok((c, k, peak));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {n} jobs done after 900 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The daemon's store, opened read-only.
async fn read_only(db: &Path) -> Result<sqlx::SqlitePool, sqlx::Error> {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(db)
                .read_only(true),
        )
        .await
}

/// What one preloaded run measured.
struct Preloaded {
    jobs_per_s: f64,
    cpu_us_per_job: f64,
    api_calls_per_job: f64,
    /// The daemon's context switches per job (voluntary, involuntary).
    switches_per_job: (f64, f64),
}

/// (c)/(d): N jobs preloaded, then the daemon started with `concurrency`; timed from the first
/// job recorded to the last.
async fn preloaded(
    bin: &Path,
    sim: &Simulator,
    addr: &str,
    conn: &Connection,
    sync: &str,
    concurrency: usize,
    n: usize,
) -> anyhow::Result<Preloaded> {
    let ch = conn.create_channel().await?;
    let calls_before = sim.count(Route::MirrorShow) + sim.count(Route::MirrorStart);
    let wrap = std::env::var("BENCH_AMQP_WRAP").ok();
    let attach = std::env::var("BENCH_AMQP_ATTACH").ok();
    let d = Daemon::start(
        bin,
        addr,
        sync,
        concurrency,
        Some((&ch, n)),
        wrap.as_deref(),
    )
    .await?;
    println!("    daemon pid {}, store {}", d.pid, d.db().display());
    let started = Instant::now();
    let mut switches_first = (0, 0);
    let (cpu_first, done_first, _) =
        wait_done(&d, n, attach.as_deref(), &mut switches_first).await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu_end = cpu_seconds(d.pid);
    let switches_end = context_switches(d.pid);
    let calls = sim.count(Route::MirrorShow) + sim.count(Route::MirrorStart) - calls_before;
    // Rate over the jobs after the first one recorded, so start-up is not counted.
    let rest = (n - done_first).max(1);
    let first_at = {
        let db = read_only(&d.db()).await?;
        let r = sqlx::query("SELECT MIN(finished_at) AS a, MAX(finished_at) AS b FROM jobs")
            .fetch_one(&db)
            .await?;
        let (a, b): (i64, i64) = (r.try_get("a")?, r.try_get("b")?);
        db.close().await;
        ((b - a) as f64 / 1000.0).max(wall.min(0.001))
    };
    d.stop(&ch).await?;
    Ok(Preloaded {
        jobs_per_s: (n - 1) as f64 / first_at,
        cpu_us_per_job: (cpu_end - cpu_first) / rest as f64 * 1e6,
        api_calls_per_job: calls as f64 / n as f64,
        switches_per_job: (
            switches_end.0.saturating_sub(switches_first.0) as f64 / rest as f64,
            switches_end.1.saturating_sub(switches_first.1) as f64 / rest as f64,
        ),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--floor-child") {
        return floor::child(&args[1..]).await;
    }
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    let phases = flag("--phases").unwrap_or_else(|| "abcdf".into());
    let concurrencies: Vec<usize> = match flag("--c") {
        Some(list) => list
            .split(',')
            .map(|c| c.trim().parse())
            .collect::<Result<_, _>>()?,
        None => vec![8, 64],
    };
    let latency_mode = phases.contains('d') && !args.iter().any(|a| a == "--no-latency");
    let mut positional = args.iter().filter(|a| !a.starts_with("--"));
    let n: usize = positional
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let sync = positional.next().cloned().unwrap_or_else(|| "full".into());
    let bin = release_binary()?;

    println!(
        "N = {n} messages, store synchronous = {sync}, {} cores; binary {:.1} MB",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        std::fs::metadata(&bin)?.len() as f64 / 1e6
    );
    let raw = if phases.contains('a') {
        let raw = broker_rate(n).await?;
        println!("(a) broker alone (publisher confirms + manual acks): {raw:>9.0} msg/s");
        raw
    } else {
        f64::NAN
    };

    let sim = Simulator::new(SimConfig {
        seed_repos: 1..=(n as u32 + 10),
        ..SimConfig::default()
    });
    let addr = sim.spawn(([127, 0, 0, 1], 0).into()).await?.to_string();
    let conn = connection().await?;
    let ch = conn.create_channel().await?;

    if phases.contains('b') {
        end_to_end(&bin, &addr, &conn, &ch, &sync, n, raw).await?;
    }

    // (c) CPU per job, queue preloaded, at two concurrencies.
    let mut daemon_cpu = HashMap::new();
    if phases.contains('c') {
        for &c in &concurrencies {
            let r = preloaded(&bin, &sim, &addr, &conn, &sync, c, n).await?;
            println!(
                "(c) preloaded, concurrency {c:>4}: {:>7.0} jobs/s, daemon CPU {:>5.0} µs/job, {:.1} + {:.1} context switches/job (voluntary + not)",
                r.jobs_per_s, r.cpu_us_per_job, r.switches_per_job.0, r.switches_per_job.1
            );
            daemon_cpu.insert(c, r.cpu_us_per_job);
        }
    }

    // (f) the floor: the same I/O per job without the daemon, all of it and each part alone.
    if phases.contains('f') {
        use floor::Parts;
        let alone = |amqp, sql, http| Parts { amqp, sql, http };
        for &c in &concurrencies {
            for parts in [
                Parts::ALL,
                alone(true, false, false),
                alone(false, true, false),
                alone(false, false, true),
            ] {
                let f = floor::run(&conn, &addr, &sync, c, n, parts).await?;
                let mut versus = String::new();
                if parts.amqp && parts.sql && parts.http {
                    if raw.is_finite() {
                        versus.push_str(&format!("; ÷ (a): {:.2}", f.jobs_per_s / raw));
                    }
                    if let Some(d) = daemon_cpu.get(&c) {
                        versus.push_str(&format!(
                            "; the daemon's (c) CPU is {:.1}× this",
                            d / f.cpu_us_per_job
                        ));
                    }
                }
                println!(
                    "(f) floor, concurrency {c:>4}, {:<13} {:>7.0} jobs/s, CPU {:>5.0} µs/job, {:.1} voluntary context switches/job{versus}",
                    format!("{}:", parts.label()),
                    f.jobs_per_s,
                    f.cpu_us_per_job,
                    f.switches_per_job
                );
            }
        }
    }

    // (d) under API latency.
    if latency_mode {
        let latency = Duration::from_millis(100);
        sim.set_latency(latency);
        for c in [16, 64, 256, 1024] {
            let jobs = (c * 8).max(2000).min(n.max(2000));
            let r = preloaded(&bin, &sim, &addr, &conn, &sync, c, jobs).await?;
            let bound = c as f64 / (r.api_calls_per_job * latency.as_secs_f64());
            println!(
                "(d) API latency 100 ms, concurrency {c:>4}: {:>7.0} jobs/s ({jobs} jobs, {:.1} API calls/job; bound {:.0} jobs/s, reached {:.0} %), CPU {:.0} µs/job",
                r.jobs_per_s,
                r.api_calls_per_job,
                bound,
                100.0 * r.jobs_per_s / bound,
                r.cpu_us_per_job
            );
        }
        sim.set_latency(Duration::ZERO);
    }
    let _ = conn.close(200, ShortString::from("done")).await;
    Ok(())
}

/// (b): the daemon end to end, publishing while it consumes; `raw` is (a)'s rate.
async fn end_to_end(
    bin: &Path,
    addr: &str,
    conn: &Connection,
    ch: &Channel,
    sync: &str,
    n: usize,
    raw: f64,
) -> anyhow::Result<()> {
    let d = Daemon::start(bin, addr, sync, 32, None, None).await?;
    d.wait_consuming(conn).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_mb(d.pid);
    let cpu_before = cpu_seconds(d.pid);
    let pch = conn.create_channel().await?;
    let started = Instant::now();
    let t0 = chrono::Utc::now().timestamp_millis();
    let published = publish(&pch, &d.tag, 0..n).await?;
    let publish_s = started.elapsed().as_secs_f64();
    let (_, _, peak_seen) = wait_done(&d, n, None, &mut (0, 0)).await?;
    let cpu_used = cpu_seconds(d.pid) - cpu_before;
    let db = read_only(&d.db()).await?;
    let rows =
        sqlx::query("SELECT idempotency_key, finished_at FROM jobs WHERE status = 'succeeded'")
            .fetch_all(&db)
            .await?;
    db.close().await;
    let mut latencies = Vec::with_capacity(n);
    let mut last = t0;
    for r in rows {
        let key: String = r.try_get("idempotency_key")?;
        let fin: i64 = r.try_get("finished_at")?;
        last = last.max(fin);
        if let Some(p) = published.get(&key) {
            latencies.push(fin - p);
        }
    }
    latencies.sort_unstable();
    let e2e = n as f64 / ((last - t0) as f64 / 1000.0);
    let hwm = proc_status_kib(&d.pid.to_string(), "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_after = rss_mb(d.pid);
    d.stop(ch).await?;

    println!("(b) daemon end to end (publish → recorded succeeded with jid): {e2e:>9.0} jobs/s (publishing took {publish_s:.1} s)");
    println!("    ratio b/a: {:.2}", e2e / raw);
    println!(
        "    daemon CPU: {cpu_used:.1} s for {n} jobs over {:.1} s wall ({:.0} µs/job)",
        (last - t0) as f64 / 1000.0,
        cpu_used / n as f64 * 1e6
    );
    println!(
        "    latency publish → record: p50 {} ms, p99 {} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );
    println!(
        "    daemon RSS: idle {:.1} MB (anonymous {:.1}, file-backed {:.1}); after the run {:.1} MB (anonymous {:.1}); peak {:.1} MB",
        idle.0,
        idle.1,
        idle.2,
        idle_after.0,
        idle_after.1,
        hwm.max(peak_seen)
    );

    Ok(())
}
