//! `[server]`: the daemon's one HTTP listener (health and readiness today; webhooks and the
//! operator API build on it). Absent means no listener.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The HTTP listener.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port, e.g. `127.0.0.1:8625` (loopback unless a proxy or the network needs
    /// more).
    pub listen: SocketAddr,
    /// Largest request body accepted; larger ones are answered 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long one request may take before it is answered 503.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

fn default_max_body() -> usize {
    1024 * 1024
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
