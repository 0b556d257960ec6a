//! The sections of the file that are plain settings, as typed values with their defaults:
//! `store`, `http`, `engine`, `retry`, `remote_mirror`, `purge_recycle_bin`, `credentials`,
//! `schedules`, `amqp` and `logging`. The `cloud` section is in `cloud`; the checks that types
//! cannot express (ranges, references) are in `checks`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::checks::HOUR;
use super::SecretSource;

/// The SQLite store.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The database file (created if missing).
    pub path: PathBuf,
    /// `normal` survives a process crash; `full` also survives a power loss.
    pub synchronous: Synchronous,
    /// How long a writer waits for the lock before failing (on PostgreSQL: for a pooled
    /// connection).
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// A PostgreSQL store shared by several instances (`postgres://user@host:5432/db`);
    /// unset: the SQLite file at `path`. Never put the password here: use `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The PostgreSQL password, from a secret source (`{ env = "…" }` or `{ file = "…" }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretSource>,
    /// PostgreSQL: connections in the pool.
    pub max_connections: u32,
    /// PostgreSQL: how long after an instance's last heartbeat the others take over its
    /// running jobs.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// The configuration file's folder, for a `password = { file = … }` (set by the loader).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("/var/lib/codearts-syncd/jobs.db"),
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            url: None,
            password: None,
            max_connections: 10,
            lease: Duration::from_secs(30),
            base_dir: PathBuf::new(),
        }
    }
}

/// SQLite's `synchronous` level.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

/// HTTP client behaviour.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Quick retries inside one attempt for connection failures and resets.
    pub transport_retries: u32,
    /// Refresh a token this long before it expires.
    #[serde(with = "humantime_serde")]
    pub token_refresh_margin: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            transport_retries: 2,
            token_refresh_margin: Duration::from_secs(600),
        }
    }
}

/// The worker pool.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Jobs running at once, all kinds together.
    pub concurrency: usize,
    /// Per-kind caps, e.g. `remote_mirror = 4`.
    pub per_kind: BTreeMap<String, usize>,
    /// How often the store is checked for due jobs when nothing wakes the engine.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// On SIGTERM, how long in-flight jobs may take to finish before they are re-queued.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Per-kind attempt timeouts, e.g. `[engine.timeout] purge_recycle_bin = "10m"`: an attempt
    /// (or one poll of a followed sync) running longer is aborted and recorded `timed_out`,
    /// then retried by the retry policy. A job's own `timeout` parameter takes precedence.
    /// Absent: no limit beyond `http.request_timeout` per call.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub timeout: BTreeMap<String, humantime_serde::Serde<Duration>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            concurrency: 8,
            per_kind: BTreeMap::new(),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            timeout: BTreeMap::new(),
        }
    }
}

/// `[retention]`: how long finished jobs are kept.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Finished jobs (by `finished_at`) older than this are pruned with their attempts,
    /// requests and purge items. Absent: everything is kept.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub keep: Option<Duration>,
    /// How often the daemon prunes.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Jobs pruned per write transaction.
    pub batch_size: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep: None,
            interval: Duration::from_secs(600),
            batch_size: 500,
        }
    }
}

/// Job-level retry policy (exponential backoff with jitter).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    pub multiplier: f64,
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Jitter: each delay is drawn from `[d·(1-r), d·(1+r)]`.
    pub randomization_factor: f64,
    /// Attempts before a job is `failed`.
    pub max_attempts: u32,
    /// The longest `Retry-After` from the API that is obeyed as given; a longer one is cut to
    /// this, so a misbehaving endpoint cannot park a job for days.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_interval: Duration::from_secs(5),
            multiplier: 2.0,
            max_interval: Duration::from_secs(600),
            randomization_factor: 0.2,
            max_attempts: 6,
            max_retry_after: HOUR,
        }
    }
}

/// `remote_mirror` defaults.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteMirrorConfig {
    /// How often a started sync's mirror state is polled.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Default `follow_timeout` when a job does not give one.
    #[serde(with = "humantime_serde")]
    pub follow_timeout: Duration,
}

impl Default for RemoteMirrorConfig {
    fn default() -> Self {
        RemoteMirrorConfig {
            poll_interval: Duration::from_secs(15),
            follow_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// `[swr]`: the SWR kinds. `swr_image_sync` takes its `remote_region_id` from
/// `sync_regions` and follows a sync like `remote_mirror` does.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwrConfig {
    /// The regions an image sync may target (`remote_region_id`); empty refuses every sync.
    pub sync_regions: Vec<String>,
    /// How often a started image sync's sync jobs are polled.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long an image sync is followed before its unfinished tags are recorded as unknown.
    #[serde(with = "humantime_serde")]
    pub follow_timeout: Duration,
}

impl Default for SwrConfig {
    fn default() -> Self {
        SwrConfig {
            sync_regions: Vec::new(),
            poll_interval: Duration::from_secs(15),
            follow_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// `purge_recycle_bin` settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PurgeConfig {
    /// Items sent in one `DELETE /cloudartifact/v5/trashes`.
    pub batch_size: usize,
}

impl Default for PurgeConfig {
    fn default() -> Self {
        PurgeConfig { batch_size: 100 }
    }
}

/// Source-repository credentials for a mirror, sent base64-encoded.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialProfile {
    pub username: SecretSource,
    pub password: SecretSource,
}

/// One cron schedule.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: String,
    /// Six fields, seconds first: `0 30 3 * * *` is 03:30:00 every day.
    pub cron: String,
    /// IANA time zone name; default UTC.
    #[serde(default = "default_tz")]
    pub timezone: String,
    pub kind: String,
    #[serde(default = "empty_object")]
    pub params: serde_json::Value,
    /// What happens to ticks missed while no instance could fire them (the daemon was down, a
    /// new cron leader took over): see [`Misfire`]. Default `run_once`.
    #[serde(default)]
    pub misfire: Misfire,
    /// With `misfire = "catch_up"`: at most this many missed ticks are made up (the latest
    /// ones). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_catch_up: Option<u32>,
    /// How late a tick may still fire as an on-time tick, whatever the misfire policy. A tick
    /// found later than this is a misfire. Default 30s.
    #[serde(default = "default_misfire_grace", with = "humantime_serde")]
    pub misfire_grace: Duration,
}

/// The policy for ticks that were missed (found later than `misfire_grace` after their slot).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Missed ticks are not made up; the schedule resumes with its next tick.
    Skip,
    /// One run for all the missed ticks, at the latest missed slot.
    #[default]
    RunOnce,
    /// One run per missed tick, the latest `max_catch_up` of them, oldest first.
    CatchUp,
}

impl Misfire {
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::RunOnce => "run_once",
            Misfire::CatchUp => "catch_up",
        }
    }
}

impl Schedule {
    /// How many missed ticks the misfire policy makes up at most.
    pub fn makeup_limit(&self) -> usize {
        match self.misfire {
            Misfire::Skip => 0,
            Misfire::RunOnce => 1,
            Misfire::CatchUp => self.max_catch_up.unwrap_or(1) as usize,
        }
    }
}

fn default_misfire_grace() -> Duration {
    Duration::from_secs(30)
}

fn default_tz() -> String {
    "UTC".to_string()
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// AMQP ingress: the topology the daemon declares and how it consumes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// `amqp://host:port/vhost` or `amqps://…` (TLS with rustls), without credentials.
    pub url: String,
    pub username: String,
    /// Default: the broker's `guest` password when unset (for local brokers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretSource>,
    /// Durable direct exchange the jobs are published to.
    pub exchange: String,
    pub routing_key: String,
    /// Durable queue bound to the exchange with `routing_key`.
    pub queue: String,
    /// `classic` or `quorum`.
    pub queue_type: QueueType,
    /// Fanout exchange invalid messages are dead-lettered to, and its durable queue.
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    /// Queue whose single exclusive consumer is the cron leader among instances.
    pub leader_queue: String,
    /// Unacknowledged deliveries the broker sends ahead.
    pub prefetch: u16,
    /// Larger messages are rejected.
    pub max_message_bytes: usize,
    /// The largest AMQP frame this side asks for (4096..=131072; the broker may lower it). A
    /// message larger than a frame travels in several; the connection's buffers are 32 frames
    /// each way, so this bounds their memory (16 KiB: 1 MiB in all).
    pub frame_max: u32,
    /// Deliveries gathered into one store transaction at most, and how long to gather.
    pub batch_max: usize,
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Reconnection backoff: first delay and cap.
    #[serde(with = "humantime_serde")]
    pub reconnect_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// The connection name the broker shows (default: `codearts-syncd pid N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_name: Option<String>,
    /// How long `enqueue` waits for the broker's publisher confirm.
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: "amqp://127.0.0.1:5672/%2f".into(),
            username: "guest".into(),
            password: None,
            exchange: "codearts-syncd".into(),
            routing_key: "jobs".into(),
            queue: "codearts-syncd.jobs".into(),
            queue_type: QueueType::Classic,
            dead_letter_exchange: "codearts-syncd.dlx".into(),
            dead_letter_queue: "codearts-syncd.dead".into(),
            leader_queue: "codearts-syncd.leader".into(),
            prefetch: 256,
            max_message_bytes: 64 * 1024,
            frame_max: 16 * 1024,
            batch_max: 256,
            batch_wait: Duration::from_millis(5),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            connection_name: None,
            confirm_timeout: Duration::from_secs(10),
        }
    }
}

/// RabbitMQ queue type.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Classic,
    Quorum,
}

/// Log output.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// The daemon's own level when RUST_LOG is not set (other crates log at `warn`); SIGHUP
    /// reloads it.
    pub level: LogLevel,
}

/// A log level for `logging.level`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The name as written in the file and in a tracing filter.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Human-readable text or JSON lines.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
