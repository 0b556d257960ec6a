//! The typed configuration: one TOML file, every key overridable from the environment, validated
//! once at start so that everything afterwards takes typed values.
//!
//! Layering: the file (`--config PATH`, or `CODEARTS_SYNCD_CONFIG`) first, then environment
//! variables `CODEARTS_SYNCD_<SECTION>__<KEY>` (double underscore between levels, e.g.
//! `CODEARTS_SYNCD_ENGINE__CONCURRENCY=4`). Secrets never appear as values in the file: a secret
//! is a *source*, `{ env = "NAME" }` or `{ file = "/path" }`, resolved when needed and held in a
//! [`SecretString`] whose `Debug` prints nothing. Unknown keys are errors, named by their path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "CODEARTS_SYNCD_CONFIG";
/// Prefix of the environment variables that override keys.
pub const ENV_PREFIX: &str = "CODEARTS_SYNCD_";
/// Where the systemd unit and `run` look when nothing else is given.
pub const DEFAULT_PATH: &str = "/etc/codearts-syncd/config.toml";

/// A configuration error; the message names the key and why it is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl Error {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: StoreConfig,
    pub cloud: CloudConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub remote_mirror: RemoteMirrorConfig,
    #[serde(default)]
    pub purge_recycle_bin: PurgeConfig,
    /// Source-repository credential profiles for `remote_mirror`, by name.
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialProfile>,
    /// Cron schedules.
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    #[serde(default)]
    pub logging: LoggingConfig,
    /// AMQP ingress (RabbitMQ); absent means none.
    #[serde(default)]
    pub amqp: Option<AmqpConfig>,
    /// Directory relative secret files are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The SQLite store.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The database file (created if missing).
    pub path: PathBuf,
    /// `normal` survives a process crash; `full` also survives a power loss.
    pub synchronous: Synchronous,
    /// How long a writer waits for the lock before failing.
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("/var/lib/codearts-syncd/jobs.db"),
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
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

/// The cloud account, identifiers, endpoints and authentication.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    /// Region id, e.g. `ap-southeast-3`; endpoints default from it.
    pub region: String,
    /// Account (domain) id: `{tenant_id}` in Artifact paths.
    #[serde(default)]
    pub domain_id: Option<String>,
    /// IAM project id of the region: token scope and the `X-Project-Id` header.
    pub iam_project_id: String,
    /// CodeArts project id: `{project_id}` in Artifact paths (not the IAM project id).
    #[serde(default)]
    pub codearts_project_id: Option<String>,
    #[serde(default)]
    pub endpoints: EndpointOverrides,
    pub auth: AuthConfig,
}

/// Explicit endpoints; each defaults from the region.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointOverrides {
    pub iam: Option<String>,
    pub repo: Option<String>,
    pub artifact: Option<String>,
}

/// The endpoints in force, after defaults.
#[derive(Clone, Debug, Serialize)]
pub struct Endpoints {
    pub iam: String,
    pub repo: String,
    pub artifact: String,
}

/// How requests are authenticated: `method = "password"` (IAM user password → token, sent as
/// `X-Auth-Token`) with `domain_name`, `user_name`, `password`; or `method = "aksk"` (request
/// signing, `SDK-HMAC-SHA256`) with `access_key`, `secret_key`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub method: AuthMethod,
    /// Account name (IAM `domain.name`), for `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// IAM user name, for `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretSource>,
}

/// The authentication method.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Password,
    Aksk,
}

/// Authentication after validation: what each method needs, present.
pub enum Auth<'a> {
    Password {
        domain_name: &'a str,
        user_name: &'a str,
        password: &'a SecretSource,
    },
    Aksk {
        access_key: &'a SecretSource,
        secret_key: &'a SecretSource,
    },
}

impl AuthConfig {
    /// The keys the method needs, or an error naming the missing or superfluous one.
    pub fn resolve(&self) -> Result<Auth<'_>, Error> {
        fn need<'a, T>(v: &'a Option<T>, key: &str, method: &str) -> Result<&'a T, Error> {
            v.as_ref().ok_or_else(|| {
                Error::invalid(
                    format!("cloud.auth.{key}"),
                    format!("required with method = \"{method}\""),
                )
            })
        }
        fn unused<T>(v: &Option<T>, key: &str, method: &str) -> Result<(), Error> {
            match v {
                Some(_) => Err(Error::invalid(
                    format!("cloud.auth.{key}"),
                    format!("not used with method = \"{method}\""),
                )),
                None => Ok(()),
            }
        }
        match self.method {
            AuthMethod::Password => {
                unused(&self.access_key, "access_key", "password")?;
                unused(&self.secret_key, "secret_key", "password")?;
                let domain_name = need(&self.domain_name, "domain_name", "password")?;
                let user_name = need(&self.user_name, "user_name", "password")?;
                if domain_name.is_empty() {
                    return Err(Error::invalid(
                        "cloud.auth.domain_name",
                        "must not be empty",
                    ));
                }
                if user_name.is_empty() {
                    return Err(Error::invalid("cloud.auth.user_name", "must not be empty"));
                }
                Ok(Auth::Password {
                    domain_name,
                    user_name,
                    password: need(&self.password, "password", "password")?,
                })
            }
            AuthMethod::Aksk => {
                unused(&self.domain_name, "domain_name", "aksk")?;
                unused(&self.user_name, "user_name", "aksk")?;
                unused(&self.password, "password", "aksk")?;
                Ok(Auth::Aksk {
                    access_key: need(&self.access_key, "access_key", "aksk")?,
                    secret_key: need(&self.secret_key, "secret_key", "aksk")?,
                })
            }
        }
    }
}

/// Where a secret comes from: an environment variable or a file (trailing newline dropped).
///
/// Deserialised by hand: serde's own error for a literal (`password = "hunter2"`) quotes the
/// value, and a config error is printed, logged and pasted into tickets.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SecretSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// Why a secret key holds a value instead of a source; the figment path names the key.
pub const SECRET_IS_A_SOURCE: &str =
    "a secret is a source, not a value: write { env = \"NAME\" } or { file = \"/path\" }";

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretSourceVisitor)
    }
}

/// Accepts only a table with `env` or `file`; every other shape is refused without the value.
struct SecretSourceVisitor;

impl SecretSourceVisitor {
    fn refuse<E: serde::de::Error>(self) -> Result<SecretSource, E> {
        Err(E::custom(SECRET_IS_A_SOURCE))
    }
}

impl<'de> serde::de::Visitor<'de> for SecretSourceVisitor {
    type Value = SecretSource;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{ env = \"NAME\" } or { file = \"/path\" }")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SecretSource, A::Error> {
        use serde::de::Error as _;
        let mut out = SecretSource {
            env: None,
            file: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "env" if out.env.is_some() => return Err(A::Error::duplicate_field("env")),
                "file" if out.file.is_some() => return Err(A::Error::duplicate_field("file")),
                "env" => out.env = Some(map.next_value()?),
                "file" => out.file = Some(map.next_value()?),
                other => return Err(A::Error::unknown_field(other, &["env", "file"])),
            }
        }
        Ok(out)
    }

    // Every other shape: the default implementations would quote the value.
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_char<E: serde::de::Error>(self, _: char) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, _: D) -> Result<SecretSource, D::Error> {
        self.refuse()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(
        self,
        _: D,
    ) -> Result<SecretSource, D::Error> {
        self.refuse()
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<SecretSource, A::Error> {
        self.refuse()
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, _: A) -> Result<SecretSource, A::Error> {
        self.refuse()
    }
}

impl SecretSource {
    /// Reads the secret; `key` names it in errors.
    pub fn resolve(&self, key: &str, base_dir: &Path) -> Result<SecretString, Error> {
        match (&self.env, &self.file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
                Ok(_) => Err(Error::invalid(
                    key,
                    format!("environment variable {var} is empty"),
                )),
                Err(_) => Err(Error::invalid(
                    key,
                    format!("environment variable {var} is not set"),
                )),
            },
            (None, Some(path)) => {
                let path = base_dir.join(path);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::invalid(key, format!("cannot read {}: {e}", path.display()))
                })?;
                let text = text.trim_end_matches(['\n', '\r']).to_string();
                if text.is_empty() {
                    return Err(Error::invalid(key, format!("{} is empty", path.display())));
                }
                Ok(SecretString::from(text))
            }
            _ => Err(Error::invalid(
                key,
                "give exactly one of `env` or `file` (secrets are never written in the file itself)",
            )),
        }
    }

    fn check_shape(&self, key: &str) -> Result<(), Error> {
        if self.env.is_some() == self.file.is_some() {
            return Err(Error::invalid(
                key,
                "give exactly one of `env` or `file` (secrets are never written in the file itself)",
            ));
        }
        Ok(())
    }
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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            concurrency: 8,
            per_kind: BTreeMap::new(),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
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

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A duration key and its bounds.
struct DurationKey {
    key: &'static str,
    /// Zero would stop the daemon doing its work (a timeout that always fires, a busy loop).
    nonzero: bool,
    max: Duration,
    get: fn(&Config) -> Option<Duration>,
}

/// Every duration in the configuration with its bounds, in one place. The maxima are far
/// above any sensible value; they are there so that a typo (`"99999999d"`) is refused by name
/// instead of overflowing a timer or parking a job for centuries. A test checks that no
/// duration key is missing here.
const DURATION_KEYS: &[DurationKey] = &[
    DurationKey {
        key: "store.busy_timeout",
        nonzero: false,
        max: HOUR,
        get: |c| Some(c.store.busy_timeout),
    },
    DurationKey {
        key: "http.connect_timeout",
        nonzero: true,
        max: HOUR,
        get: |c| Some(c.http.connect_timeout),
    },
    DurationKey {
        key: "http.request_timeout",
        nonzero: true,
        max: HOUR,
        get: |c| Some(c.http.request_timeout),
    },
    DurationKey {
        key: "http.token_refresh_margin",
        nonzero: false,
        max: Duration::from_secs(12 * 3600),
        get: |c| Some(c.http.token_refresh_margin),
    },
    DurationKey {
        key: "engine.poll_interval",
        nonzero: true,
        max: HOUR,
        get: |c| Some(c.engine.poll_interval),
    },
    DurationKey {
        key: "engine.shutdown_grace",
        nonzero: false,
        max: HOUR,
        get: |c| Some(c.engine.shutdown_grace),
    },
    DurationKey {
        key: "retry.initial_interval",
        nonzero: false,
        max: DAY,
        get: |c| Some(c.retry.initial_interval),
    },
    DurationKey {
        key: "retry.max_interval",
        nonzero: false,
        max: DAY,
        get: |c| Some(c.retry.max_interval),
    },
    DurationKey {
        key: "retry.max_retry_after",
        nonzero: true,
        max: DAY,
        get: |c| Some(c.retry.max_retry_after),
    },
    DurationKey {
        key: "remote_mirror.poll_interval",
        nonzero: true,
        max: HOUR,
        get: |c| Some(c.remote_mirror.poll_interval),
    },
    DurationKey {
        key: "remote_mirror.follow_timeout",
        nonzero: true,
        max: Duration::from_secs(7 * 24 * 3600),
        get: |c| Some(c.remote_mirror.follow_timeout),
    },
    DurationKey {
        key: "amqp.batch_wait",
        nonzero: false,
        max: Duration::from_secs(10),
        get: |c| c.amqp.as_ref().map(|a| a.batch_wait),
    },
    DurationKey {
        key: "amqp.reconnect_initial",
        nonzero: true,
        max: HOUR,
        get: |c| c.amqp.as_ref().map(|a| a.reconnect_initial),
    },
    DurationKey {
        key: "amqp.reconnect_max",
        nonzero: true,
        max: HOUR,
        get: |c| c.amqp.as_ref().map(|a| a.reconnect_max),
    },
    DurationKey {
        key: "amqp.confirm_timeout",
        nonzero: true,
        max: HOUR,
        get: |c| c.amqp.as_ref().map(|a| a.confirm_timeout),
    },
];

/// A duration as a person would write it: the largest unit that divides it (`7d`, `90s`),
/// else humantime's long form.
fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() == 0 {
        for (unit, name) in [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")] {
            if s > 0 && s % unit == 0 {
                return format!("{}{name}", s / unit);
            }
        }
        if s == 0 {
            return "0s".into();
        }
    }
    if d.as_nanos() % 1_000_000 == 0 {
        return format!("{}ms", d.as_millis());
    }
    humantime::format_duration(d).to_string()
}

impl Config {
    /// Loads the file at `path` and the `CODEARTS_SYNCD_*` environment overrides, then validates.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let env = Env::prefixed(ENV_PREFIX)
            .split("__")
            .filter(|k| k.as_str() != "config");
        let figment = Figment::from(Toml::string(&text)).merge(env);
        // Absolute, so that messages name the store and secret files unambiguously.
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::path::absolute(&base).unwrap_or(base);
        Self::from_figment(figment, base)
    }

    /// Parses a TOML string alone (no environment), then validates.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, Error> {
        Self::from_figment(Figment::from(Toml::string(text)), base_dir.to_path_buf())
    }

    fn from_figment(figment: Figment, base_dir: PathBuf) -> Result<Config, Error> {
        let mut cfg: Config = figment.extract().map_err(describe_figment_error)?;
        // A relative store path is relative to the config file, like the secret files.
        if cfg.store.path.is_relative() {
            cfg.store.path = base_dir.join(&cfg.store.path);
        }
        cfg.base_dir = base_dir;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what the types cannot: ranges, references between sections, schedules.
    pub fn validate(&self) -> Result<(), Error> {
        if self.cloud.region.trim().is_empty() {
            return Err(Error::invalid("cloud.region", "must not be empty"));
        }
        if self.cloud.iam_project_id.trim().is_empty() {
            return Err(Error::invalid("cloud.iam_project_id", "must not be empty"));
        }
        for (key, url) in [
            ("cloud.endpoints.iam", &self.cloud.endpoints.iam),
            ("cloud.endpoints.repo", &self.cloud.endpoints.repo),
            ("cloud.endpoints.artifact", &self.cloud.endpoints.artifact),
        ] {
            if let Some(url) = url {
                match url::Url::parse(url) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => {
                        return Err(Error::invalid(
                            key,
                            format!("{url:?} is not an http(s) URL"),
                        ))
                    }
                }
            }
        }
        match self.cloud.auth.resolve()? {
            Auth::Password { password, .. } => password.check_shape("cloud.auth.password")?,
            Auth::Aksk {
                access_key,
                secret_key,
            } => {
                access_key.check_shape("cloud.auth.access_key")?;
                secret_key.check_shape("cloud.auth.secret_key")?;
            }
        }
        for d in DURATION_KEYS {
            let Some(value) = (d.get)(self) else { continue };
            if d.nonzero && value.is_zero() {
                return Err(Error::invalid(d.key, "must be above zero"));
            }
            if value > d.max {
                return Err(Error::invalid(
                    d.key,
                    format!(
                        "{} is above the maximum of {}",
                        show_duration(value),
                        show_duration(d.max)
                    ),
                ));
            }
        }
        if self.engine.concurrency == 0 {
            return Err(Error::invalid("engine.concurrency", "must be at least 1"));
        }
        for (kind, limit) in &self.engine.per_kind {
            if crate::jobs::JobKind::parse(kind).is_none() {
                return Err(Error::invalid(
                    format!("engine.per_kind.{kind}"),
                    format!(
                        "unknown job kind (known: {})",
                        crate::jobs::JobKind::names().join(", ")
                    ),
                ));
            }
            if *limit == 0 {
                return Err(Error::invalid(
                    format!("engine.per_kind.{kind}"),
                    "must be at least 1",
                ));
            }
        }
        let r = &self.retry;
        if !(r.multiplier >= 1.0 && r.multiplier.is_finite()) {
            return Err(Error::invalid("retry.multiplier", "must be at least 1.0"));
        }
        if !(0.0..1.0).contains(&r.randomization_factor) {
            return Err(Error::invalid(
                "retry.randomization_factor",
                "must be in [0, 1)",
            ));
        }
        if r.max_attempts == 0 {
            return Err(Error::invalid("retry.max_attempts", "must be at least 1"));
        }
        if r.initial_interval > r.max_interval {
            return Err(Error::invalid(
                "retry.initial_interval",
                "must not exceed retry.max_interval",
            ));
        }
        if !(1..=1000).contains(&self.purge_recycle_bin.batch_size) {
            return Err(Error::invalid(
                "purge_recycle_bin.batch_size",
                "must be in 1..=1000",
            ));
        }
        for (name, profile) in &self.credentials {
            profile
                .username
                .check_shape(&format!("credentials.{name}.username"))?;
            profile
                .password
                .check_shape(&format!("credentials.{name}.password"))?;
        }
        if let Some(a) = &self.amqp {
            match url::Url::parse(&a.url) {
                Ok(u) if u.scheme() == "amqp" || u.scheme() == "amqps" => {
                    if !u.username().is_empty() || u.password().is_some() {
                        return Err(Error::invalid(
                            "amqp.url",
                            "must not carry credentials; use amqp.username and amqp.password",
                        ));
                    }
                }
                _ => {
                    return Err(Error::invalid(
                        "amqp.url",
                        format!("{:?} is not an amqp:// or amqps:// URL", a.url),
                    ))
                }
            }
            if let Some(p) = &a.password {
                p.check_shape("amqp.password")?;
            }
            for (key, v) in [
                ("amqp.exchange", &a.exchange),
                ("amqp.queue", &a.queue),
                ("amqp.dead_letter_exchange", &a.dead_letter_exchange),
                ("amqp.dead_letter_queue", &a.dead_letter_queue),
                ("amqp.leader_queue", &a.leader_queue),
            ] {
                if v.is_empty() {
                    return Err(Error::invalid(key, "must not be empty"));
                }
            }
            if a.prefetch == 0 {
                return Err(Error::invalid("amqp.prefetch", "must be at least 1"));
            }
            if a.batch_max == 0 {
                return Err(Error::invalid("amqp.batch_max", "must be at least 1"));
            }
            if a.reconnect_initial > a.reconnect_max {
                return Err(Error::invalid(
                    "amqp.reconnect_initial",
                    "must not exceed amqp.reconnect_max",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.schedules.iter().enumerate() {
            let key = format!("schedules[{i}]");
            if s.name.trim().is_empty() {
                return Err(Error::invalid(format!("{key}.name"), "must not be empty"));
            }
            if !seen.insert(s.name.as_str()) {
                return Err(Error::invalid(
                    format!("{key}.name"),
                    format!("schedule name {:?} is used twice", s.name),
                ));
            }
            let tz: chrono_tz::Tz = s.timezone.parse().map_err(|_| {
                Error::invalid(
                    format!("schedules.{}.timezone", s.name),
                    format!("{:?} is not an IANA time zone name", s.timezone),
                )
            })?;
            crate::ingress::cron::check_expression(&s.cron, tz).map_err(|e| {
                Error::invalid(
                    format!("schedules.{}.cron", s.name),
                    format!("{:?} {e}", s.cron),
                )
            })?;
            let Some(kind) = crate::jobs::JobKind::parse(&s.kind) else {
                return Err(Error::invalid(
                    format!("schedules.{}.kind", s.name),
                    format!(
                        "unknown job kind {:?} (known: {})",
                        s.kind,
                        crate::jobs::JobKind::names().join(", ")
                    ),
                ));
            };
            crate::jobs::validate(kind, &s.params, self).map_err(|e| {
                Error::invalid(format!("schedules.{}.params", s.name), e.to_string())
            })?;
        }
        Ok(())
    }

    /// The endpoints in force: overrides, else the region's defaults.
    pub fn endpoints(&self) -> Endpoints {
        let d = default_endpoints(&self.cloud.region);
        let e = &self.cloud.endpoints;
        Endpoints {
            iam: e.iam.clone().unwrap_or(d.iam),
            repo: e.repo.clone().unwrap_or(d.repo),
            artifact: e.artifact.clone().unwrap_or(d.artifact),
        }
    }

    /// Everything `config check` checks, and `run` before it starts anything: the values
    /// ([`Config::validate`]) and that every secret source resolves ([`Config::check_secrets`]).
    /// One function, so that the daemon never starts with a configuration `config check` refuses.
    pub fn check_all(&self) -> Result<(), Error> {
        self.validate()?;
        self.check_secrets()
    }

    /// Resolves every secret source once, so `config check` can report a missing one by key.
    pub fn check_secrets(&self) -> Result<(), Error> {
        match self.cloud.auth.resolve()? {
            Auth::Password { password, .. } => {
                password.resolve("cloud.auth.password", &self.base_dir)?;
            }
            Auth::Aksk {
                access_key,
                secret_key,
            } => {
                access_key.resolve("cloud.auth.access_key", &self.base_dir)?;
                secret_key.resolve("cloud.auth.secret_key", &self.base_dir)?;
            }
        }
        if let Some(p) = self.amqp.as_ref().and_then(|a| a.password.as_ref()) {
            p.resolve("amqp.password", &self.base_dir)?;
        }
        for (name, p) in &self.credentials {
            p.username
                .resolve(&format!("credentials.{name}.username"), &self.base_dir)?;
            p.password
                .resolve(&format!("credentials.{name}.password"), &self.base_dir)?;
        }
        Ok(())
    }

    /// The effective configuration as TOML. Secrets are sources (`env`/`file`), never values,
    /// so printing the structure reveals none.
    pub fn to_redacted_toml(&self) -> String {
        #[derive(Serialize)]
        struct Effective<'a> {
            #[serde(flatten)]
            cfg: &'a Config,
            effective_endpoints: Endpoints,
        }
        toml::to_string_pretty(&Effective {
            cfg: self,
            effective_endpoints: self.endpoints(),
        })
        .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// Region defaults, from the SDK region files: Artifact and Repo hosts are not uniform.
pub fn default_endpoints(region: &str) -> Endpoints {
    let artifact_host = match region {
        "ap-southeast-3" | "cn-south-1" | "me-east-1" | "af-south-1" | "af-north-1" => "artifact",
        _ => "cloudartifacts-ext",
    };
    let repo_host = match region {
        "la-south-2" | "tr-west-1" | "eu-west-101" => "codeartsrepo-ext",
        r if r == "me-east-1" || r.starts_with("af-") => "repo",
        _ => "codehub-ext",
    };
    let iam_suffix = if region == "eu-west-101" {
        "myhuaweicloud.eu"
    } else {
        "myhuaweicloud.com"
    };
    Endpoints {
        iam: format!("https://iam.{region}.{iam_suffix}"),
        repo: format!("https://{repo_host}.{region}.myhuaweicloud.com"),
        artifact: format!("https://{artifact_host}.{region}.myhuaweicloud.com"),
    }
}

/// Turns figment's error into one line per problem, each naming the key once by its full path
/// (and the environment variable when the value came from one). A message about a secret key
/// never carries serde's description of the value: that would be the secret itself.
fn describe_figment_error(err: figment::Error) -> Error {
    use figment::error::Kind;
    let mut lines = Vec::new();
    for e in err {
        let mut path: Vec<String> = e
            .path
            .iter()
            .filter(|p| p.as_str() != "default")
            .cloned()
            .collect();
        // Figment prefixes the path with the key whose key or value failed, so for an unknown
        // key the path already ends with it; a missing key is reported on its table.
        let field = match &e.kind {
            Kind::UnknownField(field, _) => Some(field.to_string()),
            Kind::DuplicateField(field) => Some(field.to_string()),
            Kind::MissingField(field) => Some(field.to_string()),
            _ => None,
        };
        if let Some(field) = field {
            if path.last() != Some(&field) {
                path.push(field);
            }
        }
        // A missing key is tagged with its table's source, which says nothing about the key.
        let from_env = !matches!(e.kind, Kind::MissingField(_))
            && e.metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment variable"));
        let secret = secret_key_of(&path);
        let (key, reason) = match (&e.kind, secret) {
            (Kind::UnknownField(_, expected), _) if !expected.is_empty() => (
                path.join("."),
                format!("unknown key (known here: {})", expected.join(", ")),
            ),
            (Kind::UnknownField(..), _) => (path.join("."), "unknown key".to_string()),
            (Kind::MissingField(_), _) => (path.join("."), "missing key".to_string()),
            (Kind::DuplicateField(_), _) => (path.join("."), "given twice".to_string()),
            // Whatever else went wrong at or under a secret key, say what the key wants, not
            // what it holds (the value is not trusted to be anything but the secret).
            (_, Some(secret)) => (secret, SECRET_IS_A_SOURCE.to_string()),
            (kind, None) => (path.join("."), kind.to_string()),
        };
        let line = match (key.is_empty(), from_env) {
            (true, _) => reason,
            (false, false) => format!("{key}: {reason}"),
            (false, true) => format!(
                "{key} (from the environment variable {ENV_PREFIX}{}): {reason}",
                path.join("__").to_ascii_uppercase()
            ),
        };
        lines.push(line);
    }
    lines.dedup();
    Error::Parse(lines.join("; "))
}

/// The secret key a config path is at or under (`cloud.auth.password`, `amqp.password`,
/// `credentials.NAME.username`, ...), if any.
fn secret_key_of(path: &[String]) -> Option<String> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let n = match p.as_slice() {
        ["cloud", "auth", "password" | "access_key" | "secret_key", ..] => 3,
        ["amqp", "password", ..] => 2,
        ["credentials", _, "username" | "password", ..] => 3,
        _ => return None,
    };
    Some(p[..n].join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[cloud]
region = "ap-southeast-3"
iam_project_id = "p1"
[cloud.auth]
method = "password"
domain_name = "acct"
user_name = "u"
password = { env = "SOME_VAR" }
"#;

    #[test]
    fn minimal_config_loads_with_defaults() {
        let cfg = Config::from_toml_str(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(cfg.engine.concurrency, 8);
        assert_eq!(
            cfg.endpoints().artifact,
            "https://artifact.ap-southeast-3.myhuaweicloud.com"
        );
    }

    #[test]
    fn unknown_key_is_named_once_with_its_path() {
        let text = format!("{MINIMAL}\n[engine]\nconcurency = 3\n");
        let err = Config::from_toml_str(&text, Path::new(".")).unwrap_err();
        let msg = err.to_string();
        assert_eq!(msg.matches("concurency").count(), 1, "got: {msg}");
        assert!(msg.contains("engine.concurency: unknown key"), "got: {msg}");
        assert!(msg.contains("concurrency"), "lists the known keys: {msg}");

        let text = format!("{MINIMAL}\n[nonsense]\nx = 1\n");
        let msg = Config::from_toml_str(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert_eq!(msg.matches("nonsense").count(), 1, "got: {msg}");
    }

    #[test]
    fn a_missing_key_is_named_with_its_path() {
        let text = MINIMAL.replace("user_name = \"u\"\n", "");
        let text = text.replace("method = \"password\"\n", "");
        let msg = Config::from_toml_str(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("cloud.auth.method: missing key"), "got: {msg}");
    }

    #[test]
    fn a_literal_secret_is_refused_by_key_without_its_value() {
        let aksk = MINIMAL
            .replace("method = \"password\"", "method = \"aksk\"")
            .replace("domain_name = \"acct\"\nuser_name = \"u\"\n", "")
            .replace(
                "password = { env = \"SOME_VAR\" }",
                "access_key = { env = \"AK\" }\nsecret_key = { env = \"SK\" }",
            );
        let amqp = "\n[amqp]\npassword = { env = \"AMQP_PW\" }\n";
        let creds = "\n[credentials.gh]\nusername = { env = \"U\" }\npassword = { env = \"P\" }\n";
        let cases: Vec<(String, &str, &str)> = [
            (
                MINIMAL.to_string(),
                "password = { env = \"SOME_VAR\" }",
                "cloud.auth.password",
            ),
            (
                aksk.clone(),
                "access_key = { env = \"AK\" }",
                "cloud.auth.access_key",
            ),
            (
                aksk.clone(),
                "secret_key = { env = \"SK\" }",
                "cloud.auth.secret_key",
            ),
            (
                format!("{MINIMAL}{amqp}"),
                "password = { env = \"AMQP_PW\" }",
                "amqp.password",
            ),
            (
                format!("{MINIMAL}{creds}"),
                "username = { env = \"U\" }",
                "credentials.gh.username",
            ),
            (
                format!("{MINIMAL}{creds}"),
                "password = { env = \"P\" }",
                "credentials.gh.password",
            ),
        ]
        .into_iter()
        .collect();
        for (text, line, key) in &cases {
            Config::from_toml_str(text, Path::new(".")).expect("the source form is valid");
            let name = line.split(" = ").next().unwrap();
            for literal in [
                "\"hunter2-s3cret\"".to_string(),
                "73572811".to_string(),
                "[\"hunter2-s3cret\"]".to_string(),
                "'hunter2-s3cret'".to_string(),
            ] {
                let bad = text.replacen(line, &format!("{name} = {literal}"), 1);
                assert_ne!(&bad, text, "{key}: the case replaced something");
                let msg = Config::from_toml_str(&bad, Path::new("."))
                    .unwrap_err()
                    .to_string();
                assert!(
                    msg.contains(&format!("{key}: {SECRET_IS_A_SOURCE}")),
                    "{key} = {literal}: {msg}"
                );
                assert!(
                    !msg.contains("hunter2") && !msg.contains("73572811"),
                    "{key} = {literal}: the value is echoed: {msg}"
                );
            }
        }
    }

    #[test]
    fn no_error_under_a_secret_key_quotes_its_value() {
        // Defence in depth: whatever figment reports at or under a secret key.
        let err = figment::Error::from(figment::error::Kind::InvalidType(
            figment::error::Actual::Str("hunter2".into()),
            "a table".into(),
        ))
        .with_path("credentials.gh.password");
        let msg = describe_figment_error(err).to_string();
        assert_eq!(
            msg,
            format!("invalid configuration: credentials.gh.password: {SECRET_IS_A_SOURCE}")
        );
    }

    #[test]
    fn durations_above_their_maximum_are_refused_by_key() {
        let text = format!("{MINIMAL}\n[remote_mirror]\nfollow_timeout = \"99999999d\"\n");
        let msg = Config::from_toml_str(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            msg.ends_with("remote_mirror.follow_timeout: 99999999d is above the maximum of 7d"),
            "got: {msg}"
        );
        for (section, key, value, max) in [
            ("retry", "max_interval", "25h", "1d"),
            ("retry", "max_retry_after", "2d", "1d"),
            ("engine", "shutdown_grace", "61m", "1h"),
            ("http", "request_timeout", "3601s", "1h"),
            ("amqp", "batch_wait", "11s", "10s"),
        ] {
            let text = format!("{MINIMAL}\n[{section}]\n{key} = \"{value}\"\n");
            let msg = Config::from_toml_str(&text, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(&format!("{section}.{key}: "))
                    && msg.contains(&format!("maximum of {max}")),
                "{section}.{key} = {value}: {msg}"
            );
        }
        let text = format!("{MINIMAL}\n[remote_mirror]\nfollow_timeout = \"7d\"\n");
        Config::from_toml_str(&text, Path::new(".")).expect("the maximum itself is allowed");
    }

    #[test]
    fn every_duration_key_has_bounds() {
        // Every value of the full configuration that reads as a duration must be in
        // DURATION_KEYS, so that a new duration key cannot be left unbounded.
        let text = format!("{MINIMAL}\n[amqp]\n");
        let cfg = Config::from_toml_str(&text, Path::new(".")).unwrap();
        let value = toml::Value::try_from(&cfg).unwrap();
        fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&key, v, out);
                    }
                }
                toml::Value::String(s) if humantime::parse_duration(s).is_ok() => {
                    out.push(prefix.to_string())
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        walk("", &value, &mut found);
        assert!(found.len() >= 10, "found {found:?}");
        for key in found {
            assert!(
                DURATION_KEYS.iter().any(|d| d.key == key),
                "{key} is a duration without bounds: add it to DURATION_KEYS"
            );
        }
        for d in DURATION_KEYS {
            assert!((d.get)(&cfg).is_some(), "{} is read", d.key);
            assert!(
                (d.get)(&cfg).unwrap() <= d.max,
                "{}'s default is within bounds",
                d.key
            );
        }
    }

    #[test]
    fn a_cron_expression_that_never_fires_is_refused() {
        for (cron, tz) in [("0 0 0 30 2 *", "UTC"), ("0 0 0 31 4 *", "Asia/Tokyo")] {
            let text = format!(
                "{MINIMAL}\n[[schedules]]\nname = \"never\"\ncron = \"{cron}\"\ntimezone = \"{tz}\"\nkind = \"remote_mirror\"\nparams = {{ repository_id = 1 }}\n"
            );
            let started = std::time::Instant::now();
            let msg = Config::from_toml_str(&text, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(
                msg.ends_with(&format!(
                    "schedules.never.cron: \"{cron}\" never fires (no occurrence in the next 5 years)"
                )),
                "got: {msg}"
            );
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
        }
        let text = format!(
            "{MINIMAL}\n[[schedules]]\nname = \"leap\"\ncron = \"0 0 0 29 2 *\"\nkind = \"remote_mirror\"\nparams = {{ repository_id = 1 }}\n"
        );
        Config::from_toml_str(&text, Path::new(".")).expect("29 February comes within 5 years");
        let text = format!(
            "{MINIMAL}\n[[schedules]]\nname = \"bad\"\ncron = \"0 0 25 * * *\"\nkind = \"remote_mirror\"\nparams = {{ repository_id = 1 }}\n"
        );
        let msg = Config::from_toml_str(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("schedules.bad.cron: \"0 0 25 * * *\" is not a valid cron expression"),
            "got: {msg}"
        );
    }

    #[test]
    fn check_all_also_resolves_the_secrets() {
        let text = MINIMAL.replace("SOME_VAR", "CODEARTS_SYNCD_TEST_SURELY_UNSET_VAR");
        let cfg = Config::from_toml_str(&text, Path::new(".")).expect("valid shape");
        let msg = cfg.check_all().unwrap_err().to_string();
        assert!(
            msg.contains("cloud.auth.password")
                && msg.contains("CODEARTS_SYNCD_TEST_SURELY_UNSET_VAR is not set"),
            "got: {msg}"
        );
    }

    #[test]
    fn the_documented_example_and_the_demo_config_are_valid() {
        let example = include_str!("../config/codearts-syncd.toml");
        let cfg = Config::from_toml_str(example, Path::new("/etc/codearts-syncd"))
            .expect("config/codearts-syncd.toml is valid");
        assert_eq!(cfg.schedules.len(), 4);
        Config::from_toml_str(crate::demo::DEMO_CONFIG, Path::new("/tmp"))
            .expect("config/demo.toml is valid");
    }

    #[test]
    fn secrets_must_name_exactly_one_source() {
        let text = MINIMAL.replace(
            r#"password = { env = "SOME_VAR" }"#,
            r#"password = { env = "A", file = "b" }"#,
        );
        let err = Config::from_toml_str(&text, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("cloud.auth.password"), "{err}");
        let text = MINIMAL.replace(r#"{ env = "SOME_VAR" }"#, r#""hunter2""#);
        let err = Config::from_toml_str(&text, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("cloud.auth.password"), "{err}");
    }

    #[test]
    fn region_defaults_follow_the_sdk_region_files() {
        assert_eq!(
            default_endpoints("cn-north-4").artifact,
            "https://cloudartifacts-ext.cn-north-4.myhuaweicloud.com"
        );
        assert_eq!(
            default_endpoints("tr-west-1").repo,
            "https://codeartsrepo-ext.tr-west-1.myhuaweicloud.com"
        );
        assert_eq!(
            default_endpoints("eu-west-101").iam,
            "https://iam.eu-west-101.myhuaweicloud.eu"
        );
    }
}
