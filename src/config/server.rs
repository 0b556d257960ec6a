//! `[server]`: the daemon's one HTTP listener: health and readiness, and the CodeArts Repo and
//! GitHub webhooks with the routes that map a push to `remote_mirror` jobs, optionally over TLS.
//! Absent means no listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SecretSource;

/// The HTTP listener.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port, e.g. `127.0.0.1:8625` (loopback unless a proxy or the network needs
    /// more).
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Largest request body accepted; larger ones are answered 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long one request may take before it is answered 503.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// `POST /hooks/codearts-repo`, on when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codearts_repo: Option<CodeartsRepoHook>,
    /// `POST /hooks/github`, on when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GithubHook>,
    /// How a push becomes `remote_mirror` jobs: every route that matches makes one.
    #[serde(default)]
    pub routes: Vec<HookRoute>,
    /// The operator API's bearer token (a secret source); without it the API's routes are
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<SecretSource>,
}

/// The listener's certificate and private key, PEM files read at start (relative paths against
/// the config file's directory). Loaded and checked in `ingress::http::tls`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (e.g. `fullchain.pem`).
    pub cert: PathBuf,
    /// The private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), unencrypted.
    pub key: PathBuf,
}

/// The CodeArts Repo webhook: the hook's secret token arrives as a plain header value.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CodeartsRepoHook {
    /// The token set on the hook in CodeArts Repo (a secret source).
    pub token: SecretSource,
    /// The header it arrives in (`X-Repo-Token` by default; `X-Gitlab-Token` and
    /// `X-Auth-Token` also occur).
    #[serde(default = "default_token_header")]
    pub token_header: String,
}

/// The GitHub webhook: `X-Hub-Signature-256` is the HMAC-SHA256 of the body with this secret.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GithubHook {
    pub secret: SecretSource,
}

/// One route: which pushes it takes, and the `remote_mirror` job it makes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HookRoute {
    /// Glob on the pushed repository's `path_with_namespace` (CodeArts Repo) or `full_name`
    /// (GitHub), e.g. `"platform/*"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The CodeArts Repo `project_id` instead of (or as well as) `repo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
    /// Glob on the branch (`ref` without `refs/heads/`); default every branch. Tags never match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<String>,
    /// The CodeArts Repo repository to sync.
    pub repository_id: u32,
    /// A credential profile for the sync (`[credentials.NAME]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_fetch: Option<bool>,
}

fn default_token_header() -> String {
    "X-Repo-Token".to_string()
}

fn default_max_body() -> usize {
    1024 * 1024
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
