//! AMQP throughput benchmark. In one run on this machine it measures:
//!
//! (a) the broker's own rate: a minimal lapin publisher with confirms and a consumer with
//!     manual acks, N small persistent messages;
//! (b) the daemon's end-to-end rate: N `remote_mirror` jobs (without following) published to
//!     its queue, each calling the simulator and recorded `succeeded` with a jid;
//!
//! and prints jobs/s for both, the ratio b/a, p50 and p99 latency from publish to record, and
//! the daemon's idle and peak RSS. The daemon runs as its own process (the release binary), so
//! its RSS is its own.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_amqp -- [N] [normal|full]
//! ```
//! Needs RabbitMQ on 127.0.0.1:5672 (guest/guest).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use codearts_syncd::bench::{percentile, proc_status_kib, release_binary};
use codearts_syncd::sim::{SimConfig, Simulator};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use sqlx::Row;

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
                ShortString::default(),
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let sync = args.next().unwrap_or_else(|| "full".into());
    let bin = release_binary()?;

    println!(
        "N = {n} messages, store synchronous = {sync}, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let raw = broker_rate(n).await?;
    println!("(a) broker alone (publisher confirms + manual acks): {raw:>9.0} msg/s");

    let sim = Simulator::new(SimConfig {
        seed_repos: 1..=(n as u32 + 10),
        ..SimConfig::default()
    });
    let addr = sim.spawn(([127, 0, 0, 1], 0).into()).await?;
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
iam = "http://{addr}"
repo = "http://{addr}"
[cloud.auth]
method = "password"
domain_name = "demo-account"
user_name = "demo-user"
password = {{ file = "password" }}
[engine]
concurrency = 32
[amqp]
exchange = "bench-{tag}-ex"
queue = "bench-{tag}-q"
dead_letter_exchange = "bench-{tag}-dlx"
dead_letter_queue = "bench-{tag}-dead"
leader_queue = "bench-{tag}-leader"
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

    // Wait until the daemon consumes.
    let conn = connection().await?;
    let mut ch = conn.create_channel().await?;
    let queue = ShortString::from(format!("bench-{tag}-q"));
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
            Ok(q) if q.consumer_count() > 0 => break,
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = proc_status_kib(&pid.to_string(), "VmRSS:").unwrap_or(0);
    let cpu_before = cpu_seconds(pid);

    let pch = conn.create_channel().await?;
    pch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut published: HashMap<String, i64> = HashMap::with_capacity(n);
    let started = Instant::now();
    let t0 = chrono::Utc::now().timestamp_millis();
    let mut confirms = Vec::with_capacity(n);
    let exchange = ShortString::from(format!("bench-{tag}-ex"));
    let routing_key = ShortString::from("jobs");
    for i in 0..n {
        let key = format!("b{i}");
        let body = format!(
            r#"{{"kind":"remote_mirror","params":{{"repository_id":{},"follow":false}},"key":"{key}"}}"#,
            i + 1
        );
        published.insert(key, chrono::Utc::now().timestamp_millis());
        confirms.push(
            pch.basic_publish(
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
    let publish_s = started.elapsed().as_secs_f64();

    let db = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("jobs.db"))
                .read_only(true),
        )
        .await?;
    let mut peak_rss = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        peak_rss = peak_rss.max(proc_status_kib(&pid.to_string(), "VmRSS:").unwrap_or(0));
        let done: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded' AND jid IS NOT NULL",
        )
        .fetch_one(&db)
        .await?;
        if done as usize >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {n} jobs done after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows =
        sqlx::query("SELECT idempotency_key, finished_at FROM jobs WHERE status = 'succeeded'")
            .fetch_all(&db)
            .await?;
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
    let peak_hwm = proc_status_kib(&pid.to_string(), "VmHWM:").unwrap_or(0);
    let cpu_used = cpu_seconds(pid) - cpu_before;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_after = proc_status_kib(&pid.to_string(), "VmRSS:").unwrap_or(0);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    child.wait()?;
    for q in [
        format!("bench-{tag}-q"),
        format!("bench-{tag}-dead"),
        format!("bench-{tag}-leader"),
    ] {
        let _ = pch
            .queue_delete(q.into(), QueueDeleteOptions::default())
            .await;
    }
    for e in [format!("bench-{tag}-ex"), format!("bench-{tag}-dlx")] {
        let _ = pch
            .exchange_delete(e.into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, ShortString::from("done")).await;

    println!("(b) daemon end to end (publish → recorded succeeded with jid): {e2e:>9.0} jobs/s (publishing took {publish_s:.1} s)");
    println!("    ratio b/a: {:.2}", e2e / raw);
    println!(
        "    daemon CPU: {cpu_used:.1} s for {n} jobs over {:.1} s wall",
        (last - t0) as f64 / 1000.0
    );
    println!(
        "    latency publish → record: p50 {} ms, p99 {} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );
    println!(
        "    daemon RSS: idle {:.1} MB before, {:.1} MB after; peak {:.1} MB",
        idle_rss as f64 / 1024.0,
        idle_after as f64 / 1024.0,
        peak_hwm.max(peak_rss) as f64 / 1024.0
    );
    Ok(())
}
