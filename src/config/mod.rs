//! The typed configuration as plain data: one TOML file, every key overridable from the
//! environment, checked once at start so that everything afterwards takes typed values.
//!
//! Layering: the file (`--config PATH`, or `CODEARTS_SYNCD_CONFIG`) first, then environment
//! variables `CODEARTS_SYNCD_<SECTION>__<KEY>` (double underscore between levels, e.g.
//! `CODEARTS_SYNCD_ENGINE__CONCURRENCY=4`). Secrets never appear as values in the file: a secret
//! is a *source*, `{ env = "NAME" }` or `{ file = "/path" }`, resolved when needed and held in a
//! [`SecretString`](secrecy::SecretString) whose `Debug` prints nothing. Unknown keys are errors,
//! named by their path.
//!
//! This module knows nothing of the layers that use it: it checks shapes, ranges and references
//! between its own sections. What needs knowledge of job kinds or cron (a schedule's expression,
//! kind and params; the kinds named in `engine.per_kind`) is checked above it, in
//! [`crate::daemon::checks`], which every command goes through after loading.
//!
//! - `sections`: the sections' types and their defaults (store, http, engine, retry, jobs,
//!   schedules, amqp, logging).
//! - `cloud`: the cloud account and its authentication method.
//! - `endpoints`: the endpoints in force and the region defaults.
//! - `secrets`: secret sources: parsing without echoing a value, resolving, checking their shape.
//! - `load`: file + environment layering, and figment's errors turned into one line per key.
//! - `checks`: the shape and range checks, with the bounds of every duration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod checks;
mod cloud;
mod endpoints;
mod load;
mod secrets;
mod sections;
mod server;
#[cfg(test)]
mod tests;

pub use checks::show_duration;
pub use cloud::{Auth, AuthConfig, AuthMethod, CloudConfig};
pub use endpoints::{default_endpoints, EndpointOverrides, Endpoints};
pub use secrets::{SecretSource, SECRET_IS_A_SOURCE};
pub use sections::SwrConfig;
pub use sections::{
    AmqpConfig, CredentialProfile, EngineConfig, HttpConfig, LogFormat, LogLevel, LoggingConfig,
    Misfire, PurgeConfig, QueueType, RemoteMirrorConfig, RetentionConfig, RetryConfig, Schedule,
    StoreConfig, Synchronous,
};
pub use server::{CodeartsRepoHook, GithubHook, HookRoute, ServerConfig, TlsFiles};

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
    /// An [`Error::Invalid`]: `key` is the dotted path the user wrote, `reason` what is wrong.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Error {
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
    #[serde(default)]
    pub swr: SwrConfig,
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
    /// The HTTP listener (health, readiness); absent means none.
    #[serde(default)]
    pub server: Option<ServerConfig>,
    /// How long finished jobs are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Directory relative secret files are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl Config {
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
