//! The spawn helper: each test gets its own simulator on port 0, its own store (a SQLite file in
//! a temporary directory, or with `SYNCD_TEST_BACKEND=postgres` a schema of its own in the
//! PostgreSQL database `test` on 127.0.0.1:5432, dropped afterwards), and its own daemon, and
//! talks to them as a user would.
#![allow(dead_code)]

pub mod broker;

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use codearts_syncd::config::Config;
use codearts_syncd::ingress::{self, Submission, Submitted};
use codearts_syncd::sim::{SimConfig, Simulator};
use codearts_syncd::store::{AttemptRow, JobRow, Store};
use codearts_syncd::{JobId, Source};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The configuration every test starts from; `{url}` is the simulator. Fast retries, no jitter.
pub const BASE_CONFIG: &str = r#"
[store]
path = "jobs.db"
synchronous = "normal"

[cloud]
region = "ap-southeast-3"
domain_id = "5a775fdcb14f4431b6c0015618140bc3"
iam_project_id = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
codearts_project_id = "a1b2c3d4e5f60718293a4b5c6d7e8f90"

[cloud.endpoints]
iam = "{url}"
repo = "{url}"
artifact = "{url}"
swr = "{url}"

[cloud.auth]
method = "password"
domain_name = "demo-account"
user_name = "demo-user"
password = { file = "password" }

[http]
connect_timeout = "2s"
request_timeout = "5s"

[engine]
concurrency = 8
poll_interval = "50ms"
shutdown_grace = "5s"

[retry]
initial_interval = "100ms"
multiplier = 2.0
max_interval = "2s"
randomization_factor = 0.0
max_attempts = 4

[remote_mirror]
poll_interval = "50ms"
follow_timeout = "20s"

[credentials.upstream]
username = { file = "upstream-user" }
password = { file = "upstream-password" }
"#;

/// The source-repository password in the `upstream` credential profile.
pub const UPSTREAM_PASSWORD: &str = "upstream-s3cret-Pa55";

/// True when this test run uses PostgreSQL (`SYNCD_TEST_BACKEND=postgres`), not SQLite.
pub fn postgres() -> bool {
    std::env::var("SYNCD_TEST_BACKEND").is_ok_and(|v| v == "postgres")
}

/// True (and says so) when a test about the SQLite file itself — its bytes on disk, a full
/// file system under it, a damaged file — is skipped because this run is on PostgreSQL. The
/// suite's SQLite run covers it.
pub fn sqlite_only(test: &str) -> bool {
    if postgres() {
        eprintln!("{test}: about the SQLite file; skipped on PostgreSQL");
    }
    postgres()
}

/// The PostgreSQL server and database the suite uses (trust authentication).
pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of one test's own on [`PG_SERVER`], dropped (with everything in it) on drop.
pub struct PgSchema {
    pub name: String,
}

impl PgSchema {
    pub fn create() -> PgSchema {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rand::random::<u32>()
        );
        pg_exec(format!("CREATE SCHEMA {name}"));
        PgSchema { name }
    }

    /// The store URL whose connections see only this schema.
    pub fn url(&self) -> String {
        format!("{PG_SERVER}?options=-c%20search_path%3D{}", self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        pg_exec(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

/// Runs one statement on [`PG_SERVER`] from a thread of its own (callable from sync code and
/// from inside a runtime alike).
fn pg_exec(sql: String) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::postgres::PgConnection::connect(PG_SERVER)
                .await
                .expect("PostgreSQL answers on 127.0.0.1:5432 (database test)");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect("schema statement");
        })
    })
    .join()
    .expect("schema thread");
}

/// The `[store]` lines of a test's config: the SQLite file, or `pg`'s schema.
fn store_section(pg: Option<&PgSchema>) -> String {
    match pg {
        None => String::new(),
        // A short lease: a daemon restarted after a kill is a new instance, and takes its
        // predecessor's running jobs back only once the lease has passed.
        Some(pg) => format!("url = {:?}\nlease = \"2s\"\n", pg.url()),
    }
}

/// One test's world.
pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
    pub sim_cfg: SimConfig,
    pub url: String,
    pub cfg: Arc<Config>,
    pub store: Store,
    /// The test's PostgreSQL schema, when the suite runs on PostgreSQL.
    pub pg: Option<PgSchema>,
    daemon: Option<(CancellationToken, JoinHandle<()>, tokio::task::AbortHandle)>,
}

/// Starts a simulator with `sim_cfg` and prepares a config (`extra` TOML appended) and a store.
pub async fn spawn_app_with(sim_cfg: SimConfig, extra: &str) -> TestApp {
    spawn_app_on(sim_cfg, extra, postgres().then(PgSchema::create)).await
}

/// As [`spawn_app_with`], on a SQLite store whatever the suite's backend (for a test whose
/// subject is the SQLite store itself, such as `store copy`).
pub async fn spawn_app_sqlite_with(sim_cfg: SimConfig, extra: &str) -> TestApp {
    spawn_app_on(sim_cfg, extra, None).await
}

/// As [`spawn_app_with`], on `pg`'s schema when given (whatever `SYNCD_TEST_BACKEND` says),
/// else on a SQLite file.
pub async fn spawn_app_on(sim_cfg: SimConfig, extra: &str, pg: Option<PgSchema>) -> TestApp {
    let sim = Simulator::new(sim_cfg.clone());
    let addr = sim
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator starts");
    let url = format!("http://{addr}");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("password"), &sim_cfg.password).unwrap();
    std::fs::write(dir.path().join("upstream-user"), "mirror-bot").unwrap();
    std::fs::write(dir.path().join("upstream-password"), UPSTREAM_PASSWORD).unwrap();
    let text = format!(
        "{}\n{extra}",
        BASE_CONFIG.replace("{url}", &url).replace(
            "synchronous = \"normal\"\n",
            &format!("synchronous = \"normal\"\n{}", store_section(pg.as_ref()))
        )
    );
    std::fs::write(dir.path().join("config.toml"), &text).unwrap();
    let cfg = Config::load(&dir.path().join("config.toml")).expect("test config is valid");
    let store = Store::open(&cfg.store).await.expect("store opens");
    TestApp {
        dir,
        sim,
        sim_cfg,
        url,
        cfg: Arc::new(cfg),
        store,
        pg,
        daemon: None,
    }
}

/// The `[cloud.auth]` block of [`BASE_CONFIG`].
const PASSWORD_AUTH: &str = r#"[cloud.auth]
method = "password"
domain_name = "demo-account"
user_name = "demo-user"
password = { file = "password" }"#;

/// A test world whose daemon signs requests with AK/SK (`access_key`/`secret_key` files hold
/// `sim_cfg`'s access key and `secret_key`, which a test may set wrong on purpose).
pub async fn spawn_app_aksk(sim_cfg: SimConfig, secret_key: &str, extra: &str) -> TestApp {
    let mut app = spawn_app_with(sim_cfg.clone(), extra).await;
    std::fs::write(app.dir.path().join("access_key"), &sim_cfg.access_key).unwrap();
    std::fs::write(app.dir.path().join("secret_key"), secret_key).unwrap();
    let text = std::fs::read_to_string(app.config_path()).unwrap();
    assert!(text.contains(PASSWORD_AUTH), "the base config's auth block");
    let text = text.replace(
        PASSWORD_AUTH,
        "[cloud.auth]\nmethod = \"aksk\"\naccess_key = { file = \"access_key\" }\nsecret_key = { file = \"secret_key\" }",
    );
    std::fs::write(app.config_path(), text).unwrap();
    let cfg = Config::load(&app.config_path()).expect("AK/SK test config is valid");
    app.cfg = Arc::new(cfg);
    app
}

/// A test world with the default simulator.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(
        SimConfig {
            sync_duration: Duration::from_millis(200),
            ..SimConfig::default()
        },
        "",
    )
    .await
}

impl TestApp {
    /// From now on every insert into `jobs` fails as on a full disk (SQLite: "database or disk
    /// is full"; PostgreSQL: SQLSTATE 53100, disk full), until [`TestApp::unfill_store`].
    pub async fn fill_store(&self) {
        let db = self.raw_db().await;
        let statements: &[&str] = if self.pg.is_some() {
            &[
                "CREATE FUNCTION no_room() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' \
                 USING ERRCODE = 'disk_full'; END $$",
                "CREATE TRIGGER no_room BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION no_room()",
            ]
        } else {
            &["CREATE TRIGGER no_room BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;"]
        };
        for sql in statements {
            sqlx::query(*sql).execute(&db).await.unwrap();
        }
        db.close().await;
    }

    /// Room again after [`TestApp::fill_store`].
    pub async fn unfill_store(&self) {
        let db = self.raw_db().await;
        let sql = if self.pg.is_some() {
            "DROP TRIGGER no_room ON jobs"
        } else {
            "DROP TRIGGER no_room"
        };
        sqlx::query(sql).execute(&db).await.unwrap();
        db.close().await;
    }

    /// A connection pool of the test's own on its store, for SQL a test runs behind the
    /// daemon's back (tampering, ageing rows); portable SQL runs on both backends.
    pub async fn raw_db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = match &self.pg {
            Some(pg) => pg.url(),
            None => format!("sqlite://{}", self.cfg.store.path.display()),
        };
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("raw connection to the store")
    }

    /// The config file path (for the binary).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Starts the daemon in-process (recovery, cron, engine) on this app's store.
    pub fn start(&mut self) {
        assert!(self.daemon.is_none(), "daemon already running");
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(codearts_syncd::daemon::run_with_store(
            self.cfg.clone(),
            self.store.clone(),
            cancel.clone(),
        ));
        // Kept so that `kill` stops the daemon itself, not only the task waiting for it.
        let daemon = handle.abort_handle();
        let handle = tokio::spawn(async move {
            handle.await.expect("daemon task").expect("daemon runs");
        });
        self.daemon = Some((cancel, handle, daemon));
    }

    /// Stops the daemon gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some((cancel, handle, _)) = self.daemon.take() {
            cancel.cancel();
            handle.await.expect("daemon stops cleanly");
        }
    }

    /// Kills the daemon without any shutdown (as SIGKILL would): whatever it held stays as it was.
    pub fn kill(&mut self) {
        if let Some((_, handle, daemon)) = self.daemon.take() {
            daemon.abort();
            handle.abort();
        }
    }

    /// Submits a CLI job; panics unless it was queued.
    pub async fn submit(&self, kind: &str, params: Value) -> JobId {
        match self.submit_raw(kind, params, None).await {
            Submitted::Queued(id) => id,
            other => panic!("expected queued, got {other:?}"),
        }
    }

    /// Submits and returns whatever happened.
    pub async fn submit_raw(&self, kind: &str, params: Value, key: Option<&str>) -> Submitted {
        ingress::submit(
            &self.store,
            &self.cfg,
            Submission {
                kind: kind.into(),
                params,
                source: Source::Cli,
                key: key.map(str::to_string),
                schedule: None,
            },
        )
        .await
        .expect("submission recorded")
    }

    pub async fn job(&self, id: JobId) -> JobRow {
        self.store.get(id).await.unwrap().expect("job exists")
    }

    pub async fn attempts(&self, id: JobId) -> Vec<AttemptRow> {
        self.store.attempts(id).await.unwrap()
    }

    /// Waits until the job's status is final.
    pub async fn wait_final(&self, id: JobId, within: Duration) -> JobRow {
        self.wait_for(id, within, |j| j.status().is_some_and(|s| s.is_final()))
            .await
    }

    /// Waits until `pred` holds for the job.
    pub async fn wait_for(
        &self,
        id: JobId,
        within: Duration,
        pred: impl Fn(&JobRow) -> bool,
    ) -> JobRow {
        let deadline = Instant::now() + within;
        loop {
            let job = self.job(id).await;
            if pred(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not reach the expected state within {within:?}: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs the binary with this app's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("binary runs")
    }
}

/// The binary's stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Everything the global log subscriber writes, kept in memory.
#[derive(Clone, Default)]
pub struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    /// The log text so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Installs the global subscriber at TRACE for everything, JSON lines, into memory. Call once
/// per test binary (the subscriber is global).
pub fn capture_all_logs() -> Capture {
    let capture = Capture::default();
    codearts_syncd::logging::init_with_writer(
        codearts_syncd::config::LogFormat::Json,
        tracing_subscriber::EnvFilter::new("trace"),
        capture.clone(),
    );
    capture
}

/// Runs the binary with `config`, `args` and extra environment variables (`RUST_LOG` removed);
/// kills it and panics if it has not exited within `within`, so a command that should refuse
/// to start cannot hang a test.
pub fn run_binary(
    config: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    within: Duration,
) -> Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    // Both pipes are drained while it runs: an output larger than a pipe's buffer would
    // otherwise block the binary on its write until the deadline.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    use std::io::Read;
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait().expect("wait for the binary") {
            Some(status) => {
                return Output {
                    status,
                    stdout: stdout.join().expect("stdout"),
                    stderr: stderr.join().expect("stderr"),
                }
            }
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{args:?} still running after {within:?}; stderr: {}",
                    String::from_utf8_lossy(&stderr.join().expect("stderr"))
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl TestApp {
    /// Runs the binary with this app's config and extra environment variables; kills it and
    /// panics if it has not exited within `within` (a command expected to fail must not hang).
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)], within: Duration) -> Output {
        run_binary(&self.config_path(), args, env, within)
    }

    /// Starts `run` as a separate process, as an operator would; its log (text, stderr) goes
    /// to `log_name` in the test directory.
    pub fn spawn_run(&self, log_name: &str) -> RunningBinary {
        self.spawn_run_config(&self.config_path(), log_name)
    }

    /// As [`TestApp::spawn_run`] with another configuration file (one instance of several).
    pub fn spawn_run_config(&self, config: &std::path::Path, log_name: &str) -> RunningBinary {
        let log = self.dir.path().join(log_name);
        let file = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
            .arg("--config")
            .arg(config)
            .arg("run")
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("binary runs");
        RunningBinary { child, log }
    }
}

/// A `run` process started by [`TestApp::spawn_run`]; killed when dropped if still running.
pub struct RunningBinary {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl RunningBinary {
    /// Sends a signal by name (`TERM`, `INT`, `HUP`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// The log written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle` at least `times` times; returns the last line with it.
    pub async fn wait_log(&self, needle: &str, times: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
            if lines.len() >= times {
                return lines[lines.len() - 1].to_string();
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged {times} time(s) within {within:?}; log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Waits for the process to exit (checking every 5 ms); panics after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {within:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The one log capture of a test binary whose tests run in parallel: installed by whichever
/// test asks first, shared by all.
pub fn shared_log_capture() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(capture_all_logs).clone()
}

/// A port nothing listens on now (the listener binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Adds a `[server]` section (its `listen` on a free port, then `extra`) to the app's config
/// file and reloads it; returns the listener's base URL.
pub fn with_server(app: &mut TestApp, extra: &str) -> String {
    let port = free_port();
    let mut text = std::fs::read_to_string(app.config_path()).unwrap();
    text.push_str(&format!(
        "\n[server]\nlisten = \"127.0.0.1:{port}\"\n{extra}\n"
    ));
    std::fs::write(app.config_path(), text).unwrap();
    app.cfg = Arc::new(Config::load(&app.config_path()).expect("config with [server]"));
    format!("http://127.0.0.1:{port}")
}
