//! `codearts-syncd` turns the cron scripts and webhook glue kept around Huawei Cloud CodeArts into
//! declared, retried, recorded jobs.
//!
//! The modules follow the data flow, left to right:
//!
//! ```text
//! ingress (cron, CLI, AMQP) ─► store (SQLite jobs table) ─► engine (workers, retries) ─► api ─► cloud
//!                                    ▲                              │
//!                                    └──── outcome, jid, attempts ◄─┘
//! ```
//!
//! Layers, lowest first (imports point down this list; `tests/suite/architecture.rs` checks it, and
//! `ARCHITECTURE.md` is the map):
//!
//! - shared: this file (JobId, Source, Status, the clock) and [`size`].
//! - [`config`]: the typed configuration as plain data: parsing, env overrides, secret sources,
//!   shapes and ranges.
//! - [`api`]: the cloud client: IAM tokens, AK/SK, error decoding, one file per service;
//!   [`store`]: the SQLite job table, attempts and archives, the only place with SQL.
//! - [`jobs`]: one file per job kind: its parameters and its `run`.
//! - [`ingress`]: every way a job arrives, all through [`ingress::submit`]; [`engine`]: the
//!   worker pool, claiming, the state machine, the retry policy, shutdown.
//! - face: [`cli`], [`daemon`], [`notify`], [`demo`], [`bench`], [`logging`], [`chart`].
//!
//! Beside them, [`sim`]: the bundled simulator of the cloud routes, with fault injection; it
//! never imports the client.

pub mod api;
pub mod bench;
pub mod chart;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod ingress;
pub mod jobs;
pub mod logging;
pub mod notify;
pub mod sim;
pub mod size;
pub mod store;

use std::fmt;

use serde::{Deserialize, Serialize};

/// A job's row id in the store.
pub type JobId = i64;

/// Where a job came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Amqp,
    Cron,
    Cli,
    Webhook,
}

impl Source {
    /// The name stored in the job table.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Amqp => "amqp",
            Source::Cron => "cron",
            Source::Cli => "cli",
            Source::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's state. Who moves a job out of each state:
///
/// - `queued`: waiting for `next_run_at`; a worker claims it (→ `running`).
/// - `running`: a worker holds it; the worker moves it to `succeeded`, `failed`, `following`, or
///   back to `queued` for a retry. Found at start-up, the process died: back to what it was claimed from.
/// - `following`: the remote work started (a jid is recorded) and the job polls its outcome at
///   `next_run_at`; a worker claims each poll (→ `running`) without spending an attempt.
/// - `succeeded`, `failed`, `rejected` (invalid at ingress), `skipped` (a cron tick whose previous
///   run was still active), `ignored` (a webhook event no route maps to a job): final.
/// - `cancelled`: an operator cancelled it (`jobs cancel`) while it was queued, following or
///   running; final, with who and when in its `error_msg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Following,
    Succeeded,
    Failed,
    Rejected,
    Skipped,
    Ignored,
    Cancelled,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 9] = [
        Status::Queued,
        Status::Running,
        Status::Following,
        Status::Succeeded,
        Status::Failed,
        Status::Rejected,
        Status::Skipped,
        Status::Ignored,
        Status::Cancelled,
    ];

    /// The name stored in the job table.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Following => "following",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
            Status::Skipped => "skipped",
            Status::Ignored => "ignored",
            Status::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or user-given status name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True when nothing will move the job any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Succeeded
                | Status::Failed
                | Status::Rejected
                | Status::Skipped
                | Status::Ignored
                | Status::Cancelled
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Milliseconds since the Unix epoch, the store's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Formats store milliseconds as RFC 3339 UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}
