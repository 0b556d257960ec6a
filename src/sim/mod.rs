//! A local simulator of the Huawei Cloud APIs the daemon calls: the IAM
//! password-token call (`POST /v3/auth/tokens`) and CodeArts Repo's
//! remote-mirror calls (`POST`/`GET /v4/repositories/{repository_id}/remote-mirror`).
//!
//! It follows the vendor pages and the SDK-derived facts kept with the
//! project: tokens arrive in the `X-Subject-Token` header of a 201 and expire;
//! Repo calls need a valid `X-Auth-Token` and answer with the documented
//! `{"error_code", "error_msg"}` bodies (401 `DEV.00000003`, 403 `CH.004403`,
//! 404 `CH.004404`); a started sync is visible only through the repository's
//! mirror state, which changes after a configurable sync duration. It checks
//! what the real service would check and is not bent to suit any client.
//!
//! Repositories in [`SimConfig::seed_repos`] exist from the start: most show
//! one successful sync about a day old as a baseline, while those whose id is
//! a multiple of 10 have never been synced (empty timestamp strings).
//!
//! Faults can be queued per route (and optionally per repository): an error
//! status with its body and an optional `Retry-After`, a delay, a dropped
//! connection with no response, or a 200 with a truncated JSON body. Tokens can
//! be expired on demand. Every request is recorded as a [`Call`] (never with
//! a token or password in it).
//!
//! It is used by the crate's tests, the demo and the benchmarks, and by users
//! through `codearts-syncd simulate --listen ADDR`; for that standalone use
//! the same controls are exposed without authentication under `/__sim/`
//! (faults, token expiry, recorded calls, repository behaviour, health).
//!
//! SWR's shared repositories (`/v2/manage/shared-repositories` and each repository's
//! `access-domains`) are in `swr_share.rs`.
//!
//! CodeArts Artifact (`/cloudartifact/v5/…`) is in `artifact/`: repository
//! list and detail, recycle-bin file tree, delete and restore, storage usage and
//! trend, audit logs, with seeded data (see [`SimConfig`]). Every route accepts
//! a token or an AK/SK signature (`SDK-HMAC-SHA256`), verified in `aksk.rs` as
//! the gateway does, before any handler runs.
//!
//! SWR's image synchronization (`/v2/manage/namespaces/{namespace}/repos/{repository}/…`: tags,
//! `sync_images`, `sync_job`) is in `swr/`, with seeded organizations, sync jobs that progress
//! over time, and controls under `/__sim/swr/`.
//!
//! The files, top to bottom; each imports only from files below it and from this one, which
//! holds the types they share (and re-exports [`Simulator`]):
//!
//! - `simulator.rs`: the [`Simulator`] handle: start, stop, and the controls tests use.
//! - `server.rs`: the router, the `intercept` layer (records calls, verifies
//!   signatures, applies faults) and the accept loop.
//! - `control.rs`: the same controls over HTTP under `/__sim/`.
//! - `faults.rs`: applying a queued [`Fault`].
//! - `iam.rs`, `repo.rs`, `artifact/`: the simulated services' routes.
//! - `swr_share.rs`: SWR's shared-repository listing and access domains, their data (seeded
//!   shares, one past its deadline) and the `/__sim/swr/shares` control.
//! - `iam.rs`, `repo.rs`, `artifact/`, `swr/`: the simulated services' routes.
//! - `aksk.rs`: AK/SK signature verification.
//! - `state.rs`: tokens, faults, calls and repositories behind one lock.
//! - `artifact/model.rs`: the Artifact data, held by the state.
//!
//! Adding a route takes a [`Route`]
//! variant, its handler, one `.route(..)` line in `server.rs`'s `router` wrapped
//! like the others, and the variant's arms in the matches of `faults.rs` (its
//! documented error bodies, success status and a sample success body).

mod aksk;
pub mod artifact;
mod control;
mod faults;
mod iam;
mod repo;
mod server;
mod simulator;
mod state;
pub mod swr;
mod swr_share;

#[cfg(test)]
mod tests;

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;

pub use simulator::Simulator;
pub use swr_share::{ShareChange, ShareOp};

/// What the simulated account looks like and how fast things happen.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// IAM account (domain) name accepted by the token route.
    pub domain_name: String,
    /// IAM user name accepted by the token route.
    pub user_name: String,
    /// Password accepted by the token route.
    pub password: String,
    /// IAM project id accepted in `scope.project.id`.
    pub iam_project_id: String,
    /// Project (region) name accepted in `scope.project.name`, e.g. `ap-southeast-3`.
    pub project_name: String,
    /// Lifetime of an issued token; `expires_at` reflects it. IAM documents 24 h.
    pub token_ttl: Duration,
    /// How long a started mirror sync runs before its outcome shows.
    pub sync_duration: Duration,
    /// Repositories that exist from the start; any other id is 404 `CH.004404`.
    pub seed_repos: std::ops::RangeInclusive<u32>,
    /// Account (domain) id: the `{tenant_id}` Artifact paths must carry.
    pub domain_id: String,
    /// CodeArts project id: the `{project_id}` Artifact paths must carry.
    pub codearts_project_id: String,
    /// Access key accepted in AK/SK signatures.
    pub access_key: String,
    /// Secret key the simulator verifies AK/SK signatures with.
    pub secret_key: String,
    /// Active Artifact repositories seeded (formats in turn from [`artifact::FORMATS`]).
    pub artifact_repos: usize,
    /// Repositories seeded in the recycle bin, after the active ones.
    pub trashed_repos: usize,
    /// Trashed files in every third active repository.
    pub trash_files_per_repo: usize,
    /// Audit records (module `file`) of the first active repository; the others get a few dozen
    /// (unless [`SimConfig::audit_records_per_repo`] says otherwise).
    pub audit_records: u64,
    /// When set, every active repository's `file` log holds this many records (`audit_records`
    /// is then unused), as for a backfill of many large logs.
    pub audit_records_per_repo: Option<u64>,
    /// Every API answer is delayed by this long (the network and the service's own time), as a
    /// real cloud's would be; zero by default. Changeable while running (`/__sim/latency`).
    pub latency: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            domain_name: "demo-account".to_string(),
            user_name: "demo-user".to_string(),
            password: "demo-password".to_string(),
            iam_project_id: "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e".to_string(),
            project_name: "ap-southeast-3".to_string(),
            token_ttl: Duration::from_secs(24 * 60 * 60),
            sync_duration: Duration::from_millis(500),
            seed_repos: 1..=100,
            domain_id: "5a775fdcb14f4431b6c0015618140bc3".to_string(),
            codearts_project_id: "a1b2c3d4e5f60718293a4b5c6d7e8f90".to_string(),
            access_key: "HPUADEMOACCESSKEY000".to_string(),
            secret_key: "demo-secret-key-0123456789".to_string(),
            artifact_repos: 12,
            trashed_repos: 4,
            trash_files_per_repo: 6,
            audit_records: 20_000,
            audit_records_per_repo: None,
            latency: Duration::ZERO,
        }
    }
}

/// A simulated API operation.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `POST /v3/auth/tokens`
    #[default]
    IamToken,
    /// `POST /v4/repositories/{repository_id}/remote-mirror`
    MirrorStart,
    /// `GET /v4/repositories/{repository_id}/remote-mirror`
    MirrorShow,
    /// `GET /cloudartifact/v5/{tenant_id}/{project_id}/repositories`
    ArtifactRepoList,
    /// `GET /cloudartifact/v5/{tenant_id}/{project_id}/{repo_id}/repositories`
    ArtifactRepoShow,
    /// `GET /cloudartifact/v5/{tenant_id}/{project_id}/{repo_name}/file-tree`
    ArtifactFileTree,
    /// `DELETE /cloudartifact/v5/trashes`
    TrashDelete,
    /// `PUT /cloudartifact/v5/trashes`
    TrashRestore,
    /// `GET /cloudartifact/v5/storage`
    Storage,
    /// `GET /cloudartifact/v5/{tenant_id}/{project_id}/storageinfo/statistic`
    StorageTrend,
    /// `GET /cloudartifact/v5/{tenant_id}/{project_id}/{module}/{repo}/audit`
    Audit,
    /// `GET /v2/manage/shared-repositories` (SWR, `list_shared_repos_details`)
    SwrSharedRepos,
    /// `GET /v2/manage/namespaces/{namespace}/repositories/{repository}/access-domains`
    /// (SWR, `list_repo_domains`)
    SwrRepoDomains,
    /// `GET /v2/manage/namespaces/{namespace}/repos/{repository}/tags`
    SwrTagList,
    /// `POST /v2/manage/namespaces/{namespace}/repos/{repository}/sync_images`
    SwrSyncStart,
    /// `GET /v2/manage/namespaces/{namespace}/repos/{repository}/sync_job`
    SwrSyncJobs,
}

impl Route {
    /// True for the CodeArts Artifact routes.
    pub fn is_artifact(self) -> bool {
        !matches!(
            self,
            Route::IamToken | Route::MirrorStart | Route::MirrorShow
        ) && !self.is_swr()
    }

    /// True for the SWR routes.
    pub fn is_swr(self) -> bool {
        matches!(
            self,
            Route::SwrTagList
                | Route::SwrSyncStart
                | Route::SwrSyncJobs
                | Route::SwrSharedRepos
                | Route::SwrRepoDomains
        )
    }
}

/// A fault applied to matching requests before any other check (so a fault
/// also hits unauthenticated requests). Order: `delay_ms` first, then
/// `delay_after_ms`, else `reset_after`, else `reset`, else `malformed`, else `status` (after the
/// real handling with `status_after`); `retry_after` adds a header to
/// whatever is answered. A fault with only `delay_ms` serves the real
/// response late.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Fault {
    pub route: Route,
    /// Only requests for this repository (`None`: any request on the route).
    pub repository_id: Option<u32>,
    /// Only requests whose path and query (`/path?query`, as sent) contain this text, e.g.
    /// `"/{repo}/audit?page_num=2&"` for one page of one audit log.
    pub target_contains: Option<String>,
    /// Answer with this status. Without `error_code`/`error_msg`, 401, 403
    /// and 404 get the route's documented bodies, other statuses
    /// `{"error_code": "CH.00<status>", "error_msg": <reason phrase>}`.
    pub status: Option<u16>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    /// Seconds, sent as a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// Wait this long before answering or applying the rest of the fault.
    pub delay_ms: Option<u64>,
    /// Handle the request for real at once, then wait this long before sending the answer (a
    /// client that gives up first never learns that the service acted).
    pub delay_after_ms: Option<u64>,
    /// Close the connection without any response.
    pub reset: bool,
    /// Handle the request for real, then close the connection without the response (the
    /// service acted, the client never hears of it).
    pub reset_after: bool,
    /// Handle the request for real, then answer with `status` instead of its response (a
    /// gateway's 502 or 504 after the service behind it acted).
    pub status_after: bool,
    /// Answer with a truncated, invalid JSON body: with `status` if given,
    /// else the route's success status (200; 201 for the IAM token route).
    pub malformed: bool,
    /// How many matching requests it applies to; 0 means every one until cleared.
    pub times: u32,
    /// Let this many matching requests through untouched before the fault applies (e.g. 1 to
    /// fail the second batch of a purge).
    pub skip: u32,
}

/// One request received on a simulated API route.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Call {
    pub route: Route,
    pub method: String,
    /// The path only; the query is in [`Call::query`].
    pub path: String,
    /// The query string as sent (still percent-encoded), `None` without one.
    pub query: Option<String>,
    pub repository_id: Option<u32>,
    /// When the request arrived.
    pub at: DateTime<Utc>,
    /// The status answered; 0 if no response was sent (a `reset` fault, or
    /// the client went away before the answer).
    pub status: u16,
    /// "token" (valid), "aksk" (a verified signature), "none" (no `X-Auth-Token`),
    /// "invalid" (a bad token) or "bad_signature"; never the token or key.
    pub auth: String,
    /// The Base64-decoded `username` of a start body, so tests can check the
    /// encoding. The password is never recorded.
    pub body_username: Option<String>,
}

/// How a repository behaves.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "RepoBehaviourWire")]
pub struct RepoBehaviour {
    /// Every mirror call on it is 403 `CH.004403`.
    pub forbidden: bool,
    /// Started syncs end in failure with this `last_error`.
    pub sync_fails: Option<String>,
    /// Overrides [`SimConfig::sync_duration`] for this repository.
    pub sync_duration: Option<Duration>,
}

/// JSON form of [`RepoBehaviour`] for `PUT /__sim/repos/{id}`: a duration is
/// given in milliseconds.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RepoBehaviourWire {
    forbidden: bool,
    sync_fails: Option<String>,
    sync_duration_ms: Option<u64>,
}

impl From<RepoBehaviourWire> for RepoBehaviour {
    fn from(w: RepoBehaviourWire) -> Self {
        RepoBehaviour {
            forbidden: w.forbidden,
            sync_fails: w.sync_fails,
            sync_duration: w.sync_duration_ms.map(Duration::from_millis),
        }
    }
}

/// The `{"error_code", "error_msg"}` body every service here uses for errors.
pub(crate) fn error_response(status: StatusCode, code: &str, msg: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error_code": code, "error_msg": msg })),
    )
        .into_response()
}

/// Put on a request by the server's `intercept` when its AK/SK signature verified.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AkSkVerified;

/// Put on a response by a `reset` fault; the connection service turns it into
/// an error so hyper closes the connection without writing anything.
#[derive(Clone, Copy)]
struct ResetConnection;

/// Put on a response by a handler to fill in [`Call::body_username`].
#[derive(Clone)]
pub(crate) struct CallNote {
    pub(crate) body_username: Option<String>,
}
