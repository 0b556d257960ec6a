//! (f) The floor: what the I/O a job needs costs with the crates the daemon is built on, in
//! straight-line code with none of the daemon's own bookkeeping. Per job:
//!
//! - `amqp`: one delivery from a preloaded queue (lapin, manual acks, the daemon's prefetch),
//!   acknowledged once its row is committed;
//! - `sql`: three durable SQLite commits, each shared by whatever is ready at the time (group
//!   commit), through sqlx's SQLite driver on a WAL file with the daemon's pragmas: the row at
//!   ingest, the `starting` checkpoint before the start call, the outcome with the jid;
//! - `http`: the two calls a `remote_mirror` start makes (reqwest, one client, to the bundled
//!   simulator with a real token): `GET` the mirror state, `POST` the start, both answers parsed.
//!
//! Jobs go from ingest straight to workers (at most `concurrency` at once); there is no claim,
//! no validation, no idempotency key, no attempt row, no log line and no metric. Each part can
//! be left out, so one run also shows what each costs alone. It runs as a process of its own
//! (this example re-run with `--floor-child`), so its CPU is its own, read the same way as the
//! daemon's.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Connection};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::sync::{mpsc, oneshot, Semaphore};

use codearts_syncd::sim::SimConfig;

/// Writes grouped into one commit at most, as the daemon's writers do.
const BATCH: usize = 256;

/// Which parts of a job's I/O a run does.
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    pub amqp: bool,
    pub sql: bool,
    pub http: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        amqp: true,
        sql: true,
        http: true,
    };

    fn parse(s: &str) -> anyhow::Result<Parts> {
        let mut p = Parts {
            amqp: false,
            sql: false,
            http: false,
        };
        for w in s.split('+') {
            match w {
                "amqp" => p.amqp = true,
                "sql" => p.sql = true,
                "http" => p.http = true,
                other => anyhow::bail!("unknown floor part {other:?} (amqp, sql, http)"),
            }
        }
        Ok(p)
    }

    pub fn label(self) -> String {
        let mut w = Vec::new();
        for (on, name) in [(self.amqp, "amqp"), (self.sql, "sql"), (self.http, "http")] {
            if on {
                w.push(name);
            }
        }
        w.join("+")
    }
}

/// What one floor run measured.
pub struct Floor {
    pub jobs_per_s: f64,
    pub cpu_us_per_job: f64,
    /// Voluntary context switches per job.
    pub switches_per_job: f64,
}

/// Runs the floor with `parts` at `concurrency` over `n` jobs, as a child process; the queue
/// is declared and preloaded here when AMQP is a part.
pub async fn run(
    conn: &Connection,
    sim_addr: &str,
    sync: &str,
    concurrency: usize,
    n: usize,
    parts: Parts,
) -> anyhow::Result<Floor> {
    let dir = tempfile::tempdir()?;
    let queue = format!("bench-floor-{}", uuid::Uuid::new_v4().simple());
    let ch = conn.create_channel().await?;
    if parts.amqp {
        ch.queue_declare(
            ShortString::from(queue.clone()),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut confirms = Vec::with_capacity(n);
        for i in 0..n {
            let body = format!(
                r#"{{"kind":"remote_mirror","params":{{"repository_id":{},"follow":false}},"key":"b{i}"}}"#,
                i + 1
            );
            confirms.push(
                ch.basic_publish(
                    ShortString::from(""),
                    ShortString::from(queue.clone()),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await?,
            );
        }
        for c in confirms {
            c.await?;
        }
    }
    let token = if parts.http {
        token(sim_addr).await?
    } else {
        String::new()
    };
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--floor-child")
        .arg(&queue)
        .arg(sim_addr)
        .arg(dir.path().join("floor.db"))
        .arg(sync)
        .arg(concurrency.to_string())
        .arg(n.to_string())
        .arg(parts.label())
        .env("BENCH_FLOOR_TOKEN", token)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    if parts.amqp {
        let _ = ch
            .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
            .await;
    }
    anyhow::ensure!(out.status.success(), "the floor's process failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let figures: Vec<f64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [jobs_per_s, cpu_us_per_job, switches_per_job] = figures[..] else {
        anyhow::bail!("the floor's process printed {text:?}");
    };
    Ok(Floor {
        jobs_per_s,
        cpu_us_per_job,
        switches_per_job,
    })
}

/// A project-scoped token from the simulator's IAM, as the daemon gets one.
async fn token(sim_addr: &str) -> anyhow::Result<String> {
    let sim = SimConfig::default();
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": sim.user_name, "password": sim.password, "domain": {"name": sim.domain_name}}}},
        "scope": {"project": {"id": sim.iam_project_id}}}});
    let resp = reqwest::Client::new()
        .post(format!("http://{sim_addr}/v3/auth/tokens"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    Ok(resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow::anyhow!("no X-Subject-Token"))?
        .to_string())
}

/// CPU seconds this process has used, all threads, and its voluntary context switches.
fn own_cpu_seconds() -> (f64, u64) {
    let pid = std::process::id();
    (super::cpu_seconds(pid), super::context_switches(pid).0)
}

/// The child: `--floor-child QUEUE SIM DB SYNC CONCURRENCY N PARTS`. Prints jobs/s, CPU µs/job
/// and voluntary context switches per job, counted from the first job done to the last.
pub async fn child(args: &[String]) -> anyhow::Result<()> {
    let [queue, sim_addr, db, sync, concurrency, n, parts] = args else {
        anyhow::bail!("--floor-child QUEUE SIM DB SYNC CONCURRENCY N PARTS");
    };
    let (concurrency, n): (usize, usize) = (concurrency.parse()?, n.parse()?);
    let parts = Parts::parse(parts)?;
    let pool = if parts.sql {
        Some(open(Path::new(db), sync).await?)
    } else {
        None
    };
    let writer = pool.clone().map(Writer::spawn);
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://{sim_addr}"),
        token: std::env::var("BENCH_FLOOR_TOKEN").unwrap_or_default(),
    };
    let done = Arc::new(AtomicUsize::new(0));
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<((f64, u64), Instant)>();
    let slots = Arc::new(Semaphore::new(concurrency));
    let (ids_tx, mut ids_rx) = mpsc::unbounded_channel::<Vec<i64>>();

    let ingest = tokio::spawn(ingest(
        parts,
        queue.clone(),
        pool.clone(),
        (concurrency * 4).clamp(200, 2000),
        n,
        ids_tx,
    ));
    let dispatch = tokio::spawn(async move {
        while let Some(ids) = ids_rx.recv().await {
            for id in ids {
                let permit = slots.clone().acquire_owned().await?;
                let (api, writer, done, finished) = (
                    api.clone(),
                    writer.clone(),
                    done.clone(),
                    finished_tx.clone(),
                );
                tokio::spawn(async move {
                    if let Err(e) = job(parts, id, &api, writer.as_ref()).await {
                        eprintln!("floor job {id}: {e:#}");
                        std::process::exit(1);
                    }
                    drop(permit);
                    let k = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if k == 1 || k == n {
                        let _ = finished.send((own_cpu_seconds(), Instant::now()));
                    }
                });
            }
        }
        anyhow::Ok(())
    });
    let (cpu_first, at_first) = finished_rx.recv().await.expect("a first job");
    let attached = match std::env::var("BENCH_AMQP_ATTACH") {
        Ok(cmd) if parts.amqp && parts.sql && parts.http => {
            Some(super::attach_to(&cmd, std::process::id())?)
        }
        _ => None,
    };
    let (cpu_last, at_last) = finished_rx.recv().await.expect("a last job");
    if let Some(child) = attached {
        super::detach(child)?;
    }
    ingest.await??;
    dispatch.abort();
    let rest = (n - 1).max(1) as f64;
    let wall = (at_last - at_first).as_secs_f64().max(1e-6);
    println!(
        "{:.1} {:.1} {:.2}",
        rest / wall,
        (cpu_last.0 - cpu_first.0) / rest * 1e6,
        cpu_last.1.saturating_sub(cpu_first.1) as f64 / rest
    );
    if let Some(pool) = pool {
        // Every job's row was written through to its outcome.
        let recorded: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded' AND jid IS NOT NULL \
             AND checkpoint IS NOT NULL",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        anyhow::ensure!(
            recorded as usize == n,
            "the floor recorded {recorded} of {n} jobs"
        );
    }
    Ok(())
}

/// A SQLite pool as the daemon opens its store: WAL, the configured `synchronous`, four
/// connections; one table for the jobs.
async fn open(path: &Path, sync: &str) -> anyhow::Result<SqlitePool> {
    let level = if sync == "normal" { "NORMAL" } else { "FULL" };
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .pragma("journal_mode", "WAL")
        .pragma("synchronous", level)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await?;
    sqlx::query(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, body TEXT NOT NULL, \
         status TEXT NOT NULL, checkpoint TEXT, jid TEXT, updated_at INTEGER NOT NULL)",
    )
    .execute(&pool)
    .await?;
    Ok(pool)
}

/// Takes jobs in (from the queue, or made up when AMQP is not a part), commits their rows in
/// one statement per batch, acknowledges the batch, and hands the ids on.
async fn ingest(
    parts: Parts,
    queue: String,
    pool: Option<SqlitePool>,
    prefetch: usize,
    n: usize,
    ids: mpsc::UnboundedSender<Vec<i64>>,
) -> anyhow::Result<()> {
    let mut taken = 0usize;
    if !parts.amqp {
        while taken < n {
            let bodies: Vec<(String, String)> = (taken..n.min(taken + BATCH))
                .map(|i| {
                    (
                        format!("b{i}"),
                        format!(
                            r#"{{"kind":"remote_mirror","params":{{"repository_id":{}}}}}"#,
                            i + 1
                        ),
                    )
                })
                .collect();
            taken += bodies.len();
            let batch = insert(pool.as_ref(), taken, bodies).await?;
            ids.send(batch)?;
        }
        return Ok(());
    }
    let conn = super::connection().await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(prefetch as u16, BasicQosOptions::default())
        .await?;
    let mut consumer = ch
        .basic_consume(
            ShortString::from(queue),
            ShortString::from("floor"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    while taken < n {
        let first = consumer
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match consumer.next().now_or_never() {
                Some(Some(d)) => batch.push(d?),
                _ => break,
            }
        }
        taken += batch.len();
        let rows: Vec<(String, String)> = batch
            .iter()
            .map(|d| {
                let body = String::from_utf8_lossy(&d.data).into_owned();
                let v: serde_json::Value = serde_json::from_str(&body)?;
                let key = v["key"].as_str().unwrap_or_default().to_string();
                anyhow::Ok((key, body))
            })
            .collect::<Result<_, _>>()?;
        let committed = insert(pool.as_ref(), taken, rows).await?;
        let last = batch.last().expect("a batch is never empty");
        last.ack(BasicAckOptions { multiple: true }).await?;
        ids.send(committed)?;
    }
    let _ = conn.close(200, ShortString::from("done")).await;
    Ok(())
}

/// One statement for the batch's rows; without SQLite, the ids are counted.
async fn insert(
    pool: Option<&SqlitePool>,
    taken: usize,
    rows: Vec<(String, String)>,
) -> anyhow::Result<Vec<i64>> {
    let Some(pool) = pool else {
        return Ok(((taken - rows.len()) as i64..taken as i64).collect());
    };
    let values = vec!["(?, ?, 'running', ?)"; rows.len()].join(", ");
    let sql =
        format!("INSERT INTO jobs (key, body, status, updated_at) VALUES {values} RETURNING id");
    let now = chrono::Utc::now().timestamp_millis();
    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
    for (key, body) in rows {
        q = q.bind(key).bind(body).bind(now);
    }
    Ok(q.fetch_all(pool).await?)
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// One job: the mirror state, the `starting` checkpoint, the start, the outcome.
async fn job(parts: Parts, id: i64, api: &Api, writer: Option<&Writer>) -> anyhow::Result<()> {
    let repo = id + 1;
    let url = format!("{}/v4/repositories/{repo}/remote-mirror", api.base);
    let baseline = if parts.http {
        let state: serde_json::Value = api
            .http
            .get(&url)
            .header("x-auth-token", &api.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        state
    } else {
        serde_json::Value::Null
    };
    if let Some(w) = writer {
        let cp = serde_json::json!({"starting": {"at": 0, "baseline": baseline}}).to_string();
        w.write(id, Some(cp), None).await?;
    }
    let jid = if parts.http {
        let started: serde_json::Value = api
            .http
            .post(&url)
            .header("x-auth-token", &api.token)
            .json(&serde_json::json!({}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        started["jid"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("a start answer without a jid: {started}"))?
            .to_string()
    } else {
        format!("jid-{id}")
    };
    if let Some(w) = writer {
        w.write(id, None, Some(jid)).await?;
    }
    Ok(())
}

/// Group commit: every write waiting when a commit starts goes into it, one statement.
#[derive(Clone)]
struct Writer(mpsc::Sender<Write>);

struct Write {
    id: i64,
    checkpoint: Option<String>,
    jid: Option<String>,
    reply: oneshot::Sender<Result<(), String>>,
}

impl Writer {
    fn spawn(pool: SqlitePool) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Write>(BATCH * 4);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(w) => batch.push(w),
                        Err(_) => break,
                    }
                }
                let values = vec!["(?, ?, ?)"; batch.len()].join(", ");
                let sql = format!(
                    "WITH v (id, checkpoint, jid) AS (VALUES {values}) \
                     UPDATE jobs SET checkpoint = COALESCE(v.checkpoint, jobs.checkpoint), \
                       jid = COALESCE(v.jid, jobs.jid), \
                       status = CASE WHEN v.jid IS NULL THEN jobs.status ELSE 'succeeded' END, \
                       updated_at = ? \
                     FROM v WHERE jobs.id = v.id AND jobs.status = 'running'"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for w in &batch {
                    q = q.bind(w.id).bind(w.checkpoint.clone()).bind(w.jid.clone());
                }
                let result = q
                    .bind(chrono::Utc::now().timestamp_millis())
                    .execute(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                for w in batch {
                    let _ = w.reply.send(result.clone());
                }
            }
        });
        Writer(tx)
    }

    async fn write(
        &self,
        id: i64,
        checkpoint: Option<String>,
        jid: Option<String>,
    ) -> anyhow::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(Write {
                id,
                checkpoint,
                jid,
                reply,
            })
            .await
            .map_err(|_| anyhow::anyhow!("the writer stopped"))?;
        answer.await?.map_err(|e| anyhow::anyhow!(e))
    }
}
