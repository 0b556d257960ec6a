//! Several instances on one PostgreSQL store against one on SQLite: jobs/s and CPU per job.
//!
//! In one run, four setups, each on a fresh store and a fresh AMQP topology of its own:
//! 1 instance on SQLite, then 1, 2 and 3 instances sharing one PostgreSQL schema. The instances
//! are the release binary, each its own process with `engine.concurrency` C (64 by default, the
//! remote_mirror cap with it). The simulator answers every call after a latency (100 ms by
//! default), so the instances mostly wait and the figure shows whether claims let them work in
//! parallel, not how fast two cores are. Once every instance consumes, N `remote_mirror` jobs
//! (no following, each its own repository) are published; the rate is taken over the finish
//! times the store recorded, first to last.
//!
//! CPU per job: utime + stime of the daemon processes (/proc/PID/stat) over the run, divided by
//! N; for PostgreSQL also the server's backends serving those daemons (found by their
//! `application_name`), which is work SQLite does inside the daemon.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_fleet -- [N] [--latency-ms MS] [--concurrency C]
//! ```
//!
//! Needs RabbitMQ on 127.0.0.1:5672 (guest/guest) and PostgreSQL on 127.0.0.1:5432 (database
//! `test`, trust authentication). It removes its schema, queues and exchanges when done.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use codearts_syncd::bench::release_binary;
use codearts_syncd::config::Config;
use codearts_syncd::sim::{Route, SimConfig, Simulator};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Where one setup keeps its jobs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// What the command line asks for.
struct Options {
    jobs: usize,
    latency: Duration,
    concurrency: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        jobs: 6000,
        latency: Duration::from_millis(100),
        concurrency: 64,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--latency-ms" => o.latency = Duration::from_millis(value()?.parse()?),
            "--concurrency" => o.concurrency = value()?.parse()?,
            n if !n.starts_with("--") => o.jobs = n.parse()?,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    anyhow::ensure!(o.jobs >= 2, "N must be at least 2");
    Ok(o)
}

/// CPU time (user + system) a process has used so far, in seconds; 0 once it is gone.
fn cpu_of(pid: u32, tick: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces: state is
    // the 1st of them, utime the 12th and stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    ticks as f64 / tick
}

/// Clock ticks per second, as `getconf` reports them (100 on Linux unless configured).
fn clock_tick() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One setup's world: its store, its topology, its instances.
struct Fleet {
    backend: Backend,
    dir: tempfile::TempDir,
    /// Names this setup's queues, exchanges, schema and PostgreSQL connections.
    tag: String,
    config: PathBuf,
    daemons: Vec<Child>,
}

impl Fleet {
    async fn new(
        backend: Backend,
        sim: &str,
        o: &Options,
        admin: &sqlx::PgPool,
    ) -> anyhow::Result<Fleet> {
        let dir = tempfile::tempdir()?;
        let tag = format!("fleet{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let store = match backend {
            Backend::Sqlite => String::new(),
            Backend::Postgres => {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {tag}")))
                    .execute(admin)
                    .await?;
                format!(
                    "url = \"{PG_SERVER}?options=-c%20search_path%3D{tag}&application_name={tag}\"\n"
                )
            }
        };
        std::fs::write(dir.path().join("password"), SimConfig::default().password)?;
        let text = format!(
            r#"[store]
path = "jobs.db"
{store}
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
concurrency = {c}

[engine.per_kind]
remote_mirror = {c}

[amqp]
exchange = "{tag}-ex"
queue = "{tag}-q"
dead_letter_exchange = "{tag}-dlx"
dead_letter_queue = "{tag}-dead"
leader_queue = "{tag}-leader"
prefetch = {prefetch}
"#,
            project = SimConfig::default().iam_project_id,
            c = o.concurrency,
            prefetch = (o.concurrency * 4).clamp(200, 2000),
        );
        let config = dir.path().join("config.toml");
        std::fs::write(&config, text)?;
        Ok(Fleet {
            backend,
            dir,
            tag,
            config,
            daemons: Vec::new(),
        })
    }

    /// Starts `n` instances (each logs to its own file in the setup's folder).
    fn start(&mut self, bin: &Path, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            let log = std::fs::File::create(self.dir.path().join(format!("daemon-{i}.log")))?;
            self.daemons.push(
                Command::new(bin)
                    .arg("--config")
                    .arg(&self.config)
                    .arg("run")
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()?,
            );
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        self.daemons.iter().map(Child::id).collect()
    }

    /// Waits until every instance consumes from the queue.
    async fn wait_consumers(&mut self, conn: &Connection) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ch = conn.create_channel().await?;
        loop {
            for d in &mut self.daemons {
                if let Some(status) = d.try_wait()? {
                    anyhow::bail!(
                        "an instance exited ({status}) before consuming; see {}",
                        self.dir.path().display()
                    );
                }
            }
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            match ch
                .queue_declare(
                    ShortString::from(format!("{}-q", self.tag)),
                    passive,
                    FieldTable::default(),
                )
                .await
            {
                Ok(q) if q.consumer_count() as usize >= self.daemons.len() => return Ok(()),
                Ok(_) => {}
                // Not declared yet: the refused passive declare closed the channel.
                Err(_) => ch = conn.create_channel().await?,
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the instances did not all consume within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Publishes `repos` as `remote_mirror` jobs without following, with confirms.
    async fn publish(&self, ch: &Channel, repos: std::ops::Range<usize>) -> anyhow::Result<()> {
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut pending = Vec::with_capacity(repos.len());
        for repo in repos {
            let body = serde_json::json!({
                "kind": "remote_mirror",
                "params": {"repository_id": repo, "follow": false},
                "key": format!("{}-{repo}", self.tag),
            })
            .to_string();
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"));
            pending.push(
                ch.basic_publish(
                    ShortString::from(format!("{}-ex", self.tag)),
                    ShortString::from("jobs"),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    props,
                )
                .await?,
            );
        }
        for p in pending {
            anyhow::ensure!(p.await?.is_ack(), "the broker refused a message");
        }
        Ok(())
    }

    /// A read-only view of the store this setup's instances share.
    async fn store(&self) -> anyhow::Result<sqlx::AnyPool> {
        sqlx::any::install_default_drivers();
        let url = match self.backend {
            Backend::Sqlite => format!(
                "sqlite://{}?mode=ro",
                self.dir.path().join("jobs.db").display()
            ),
            Backend::Postgres => format!("{PG_SERVER}?options=-c%20search_path%3D{}", self.tag),
        };
        Ok(sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await?)
    }

    /// The PostgreSQL backends serving this setup's instances.
    async fn backends(&self, admin: &sqlx::PgPool) -> anyhow::Result<Vec<u32>> {
        if self.backend == Backend::Sqlite {
            return Ok(Vec::new());
        }
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
                .bind(&self.tag)
                .fetch_all(admin)
                .await?;
        Ok(pids.into_iter().map(|p| p as u32).collect())
    }

    /// Stops the instances (SIGTERM, then waits) and removes the topology and the schema.
    async fn finish(mut self, conn: &Connection, admin: &sqlx::PgPool) -> anyhow::Result<()> {
        for d in &self.daemons {
            let _ = Command::new("kill")
                .args(["-TERM", &d.id().to_string()])
                .status();
        }
        for d in &mut self.daemons {
            d.wait()?;
        }
        let ch = conn.create_channel().await?;
        for q in ["q", "dead", "leader"] {
            let _ = ch
                .queue_delete(
                    ShortString::from(format!("{}-{q}", self.tag)),
                    QueueDeleteOptions::default(),
                )
                .await;
        }
        for e in ["ex", "dlx"] {
            let _ = ch
                .exchange_delete(
                    ShortString::from(format!("{}-{e}", self.tag)),
                    ExchangeDeleteOptions::default(),
                )
                .await;
        }
        if self.backend == Backend::Postgres {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                self.tag
            )))
            .execute(admin)
            .await?;
        }
        Ok(())
    }
}

/// What one setup measured.
struct Measured {
    jobs_per_s: f64,
    daemon_us_per_job: f64,
    server_us_per_job: f64,
    api_calls_per_job: f64,
    recorded: i64,
}

/// Runs one setup: `instances` on `backend`, the jobs for repositories `repos`.
#[allow(clippy::too_many_arguments)]
async fn run_setup(
    bin: &Path,
    sim: &Simulator,
    addr: &str,
    conn: &Connection,
    admin: &sqlx::PgPool,
    o: &Options,
    backend: Backend,
    instances: usize,
    repos: std::ops::Range<usize>,
) -> anyhow::Result<Measured> {
    let mut fleet = Fleet::new(backend, addr, o, admin).await?;
    // The topology first, so that nothing published is unroutable.
    let ch = conn.create_channel().await?;
    let cfg = Config::load(&fleet.config)?;
    codearts_syncd::ingress::amqp::declare_topology(&ch, cfg.amqp.as_ref().expect("amqp")).await?;
    let run = async {
        fleet.start(bin, instances)?;
        fleet.wait_consumers(conn).await?;
        // Let the pools and heartbeats settle.
        tokio::time::sleep(Duration::from_secs(1)).await;
        measure(&fleet, sim, &ch, admin, repos).await
    }
    .await;
    let finished = fleet.finish(conn, admin).await;
    let m = run?;
    finished?;
    Ok(m)
}

async fn measure(
    fleet: &Fleet,
    sim: &Simulator,
    ch: &Channel,
    admin: &sqlx::PgPool,
    repos: std::ops::Range<usize>,
) -> anyhow::Result<Measured> {
    let tick = clock_tick();
    let n = repos.len();
    let daemons = fleet.pids();
    let cpu = |pids: &[u32]| pids.iter().map(|&p| cpu_of(p, tick)).sum::<f64>();
    let daemon_before = cpu(&daemons);
    let server_before: Vec<(u32, f64)> = fleet
        .backends(admin)
        .await?
        .into_iter()
        .map(|p| (p, cpu_of(p, tick)))
        .collect();
    let calls_before = sim.count(Route::MirrorShow) + sim.count(Route::MirrorStart);
    fleet.publish(ch, repos).await?;
    let store = fleet.store().await?;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded' AND jid IS NOT NULL",
        )
        .fetch_one(&store)
        .await?;
        if done as usize >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {n} jobs done after 900 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let daemon_cpu = cpu(&daemons) - daemon_before;
    // Backends that came and went during the run are missed; the pools keep theirs open.
    let server_cpu: f64 = fleet
        .backends(admin)
        .await?
        .into_iter()
        .map(|p| {
            let before = server_before
                .iter()
                .find(|(q, _)| *q == p)
                .map_or(0.0, |b| b.1);
            cpu_of(p, tick) - before
        })
        .sum();
    let calls = sim.count(Route::MirrorShow) + sim.count(Route::MirrorStart) - calls_before;
    let (first, last, recorded): (i64, i64, i64) =
        sqlx::query_as("SELECT MIN(finished_at), MAX(finished_at), COUNT(*) FROM jobs")
            .fetch_one(&store)
            .await?;
    store.close().await;
    let span = ((last - first) as f64 / 1000.0).max(0.001);
    Ok(Measured {
        jobs_per_s: (n - 1) as f64 / span,
        daemon_us_per_job: daemon_cpu / n as f64 * 1e6,
        server_us_per_job: server_cpu / n as f64 * 1e6,
        api_calls_per_job: calls as f64 / n as f64,
        recorded,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let bin = release_binary()?;
    let setups = [
        ("sqlite, 1 instance", Backend::Sqlite, 1),
        ("postgres, 1 instance", Backend::Postgres, 1),
        ("postgres, 2 instances", Backend::Postgres, 2),
        ("postgres, 3 instances", Backend::Postgres, 3),
    ];
    let sim = Simulator::new(SimConfig {
        seed_repos: 1..=(o.jobs * setups.len() + 10) as u32,
        latency: o.latency,
        ..SimConfig::default()
    });
    let addr = sim.spawn(([127, 0, 0, 1], 0).into()).await?.to_string();
    let conn = Connection::connect(BROKER, ConnectionProperties::default()).await?;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(PG_SERVER)
        .await?;
    println!(
        "N = {} remote_mirror jobs per setup (no following), API latency {} ms, engine.concurrency {} per instance, {} cores",
        o.jobs,
        o.latency.as_millis(),
        o.concurrency,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let mut results = Vec::new();
    for (i, (name, backend, instances)) in setups.iter().enumerate() {
        let repos = (i * o.jobs + 1)..((i + 1) * o.jobs + 1);
        let m = run_setup(
            &bin, &sim, &addr, &conn, &admin, &o, *backend, *instances, repos,
        )
        .await?;
        anyhow::ensure!(
            m.recorded as usize == o.jobs,
            "{name}: {} jobs recorded for {} messages",
            m.recorded,
            o.jobs
        );
        println!(
            "  {name}: {:.0} jobs/s, {:.1} API calls/job, every job recorded once",
            m.jobs_per_s, m.api_calls_per_job
        );
        results.push((*name, *backend, *instances, m));
    }
    let base = results
        .iter()
        .find(|r| r.1 == Backend::Postgres && r.2 == 1)
        .map_or(1.0, |r| r.3.jobs_per_s);
    let calls = results.iter().map(|r| r.3.api_calls_per_job).sum::<f64>() / results.len() as f64;
    let per_instance = o.concurrency as f64 / (calls * o.latency.as_secs_f64());
    println!();
    println!(
        "{:<24} {:>8} {:>9} {:>14} {:>16} {:>12} {:>14}",
        "setup", "jobs/s", "bound", "CPU µs/job", "+ PG server", "= total", "ratio to PG ×1"
    );
    for (name, backend, instances, m) in &results {
        let server = match backend {
            Backend::Sqlite => "-".to_string(),
            Backend::Postgres => format!("{:.0}", m.server_us_per_job),
        };
        println!(
            "{:<24} {:>8.0} {:>9.0} {:>14.0} {:>16} {:>12.0} {:>14.2}",
            name,
            m.jobs_per_s,
            per_instance * *instances as f64,
            m.daemon_us_per_job,
            server,
            m.daemon_us_per_job + m.server_us_per_job,
            m.jobs_per_s / base
        );
    }
    println!(
        "(bound: instances × concurrency ÷ (API calls per job × latency); CPU: the daemons' own, then the PostgreSQL backends serving them)"
    );
    let _ = conn.close(200, ShortString::from("done")).await;
    admin.close().await;
    Ok(())
}
