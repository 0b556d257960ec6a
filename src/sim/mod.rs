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
//! CodeArts Artifact (`/cloudartifact/v5/…`) is in `artifact.rs`: repository
//! list and detail, recycle-bin file tree, delete and restore, storage usage and
//! trend, audit logs, with seeded data (see [`SimConfig`]). Every route accepts
//! a token or an AK/SK signature (`SDK-HMAC-SHA256`), verified in `aksk.rs` as
//! the gateway does, before any handler runs.
//!
//! Adding a route takes a [`Route`]
//! variant, its handler, one `.route(..)` line in `router` wrapped like the
//! others, and the variant's arms in the matches of `faults.rs` (its
//! documented error bodies, success status and a sample success body).

mod aksk;
pub mod artifact;
mod control;
mod faults;
mod iam;
mod repo;
mod state;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use state::SimState;

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
    /// Audit records (module `file`) of the first active repository; the others get a few dozen.
    pub audit_records: u64,
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
        }
    }
}

/// A simulator instance. Clones share state; when the last clone is dropped,
/// servers started with [`Simulator::spawn`] or [`Simulator::serve`] stop.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<SimState>,
    life: Arc<Lifetime>,
}

/// Held only by `Simulator` handles, never by server tasks, so that dropping
/// the last handle closes the channel and stops the servers.
struct Lifetime {
    stop: watch::Sender<u64>,
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Self {
        let (stop, _) = watch::channel(0);
        Simulator {
            state: Arc::new(SimState::new(cfg)),
            life: Arc::new(Lifetime { stop }),
        }
    }

    /// Binds `addr` (use "127.0.0.1:0" in tests) and serves in a spawned task
    /// until the handle is dropped or `shutdown` is called; returns the bound
    /// address.
    pub async fn spawn(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let state = Arc::clone(&self.state);
        let stop = self.life.stop.subscribe();
        tokio::spawn(serve_loop(state, listener, stop, std::future::pending()));
        Ok(local)
    }

    /// Serves on an existing listener until `shutdown` resolves (or
    /// [`Simulator::shutdown`] is called, or the last handle is dropped).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = Arc::clone(&self.state);
        let stop = self.life.stop.subscribe();
        serve_loop(state, listener, stop, shutdown).await
    }

    /// Stops every server started from this simulator so far. Servers started
    /// afterwards are not affected.
    pub fn shutdown(&self) {
        self.life.stop.send_modify(|generation| *generation += 1);
    }

    /// Queues a fault; see [`Fault`].
    pub fn inject(&self, fault: Fault) {
        self.state.push_fault(fault);
    }

    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// Every token issued so far is expired from now on (401 `DEV.00000003`
    /// on use). Tokens issued later are unaffected.
    pub fn expire_tokens(&self) {
        self.state.expire_tokens();
    }

    /// Makes repository `id` exist with `behaviour`, keeping its mirror state
    /// if it already existed.
    pub fn set_repo(&self, id: u32, behaviour: RepoBehaviour) {
        self.state.set_repo(id, behaviour);
    }

    /// Repository `id` no longer exists (404 `CH.004404`).
    pub fn remove_repo(&self, id: u32) {
        self.state.remove_repo(id);
    }

    /// Every request received on a simulated API route, in order of arrival.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls()
    }

    /// Requests received on `route`, including faulted and rejected ones.
    pub fn count(&self, route: Route) -> usize {
        self.state.count(route)
    }

    /// Every token value issued, so tests can check none of them leaks into logs.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.lock().issued.clone()
    }

    /// The recycle bin's content now.
    pub fn trash_entries(&self) -> Vec<artifact::TrashEntry> {
        self.state.lock().artifact.trash_entries()
    }

    /// Every item URI deleted for good, in order (each should appear once).
    pub fn deleted_uris(&self) -> Vec<String> {
        self.state.lock().artifact.deleted.clone()
    }

    /// Every item URI received by delete calls that reached the service, in order.
    pub fn delete_requests(&self) -> Vec<String> {
        self.state.lock().artifact.delete_requests.clone()
    }

    /// Deleting `uri` fails (reported in `failedMessages`) from now on.
    pub fn lock_trash(&self, uri: &str) {
        self.state.lock().artifact.locked.push(uri.to_string());
    }

    /// Chooses the shape of the trash delete's `result`.
    pub fn set_delete_result_shape(&self, shape: artifact::DeleteResultShape) {
        self.state.lock().artifact.delete_shape = shape;
    }

    /// Ids of the active Artifact repositories, in listing order.
    pub fn artifact_repo_ids(&self) -> Vec<String> {
        self.state
            .lock()
            .artifact
            .in_order()
            .into_iter()
            .filter(|r| r.status == "active")
            .map(|r| r.id.clone())
            .collect()
    }

    /// `(repository id, exact bytes, usedSpace string)` of each active repository.
    pub fn artifact_usage(&self) -> Vec<(String, u64, String)> {
        self.state
            .lock()
            .artifact
            .in_order()
            .into_iter()
            .filter(|r| r.status == "active")
            .map(|r| {
                (
                    r.id.clone(),
                    r.used_bytes,
                    artifact::human_size(r.used_bytes, "0 MB"),
                )
            })
            .collect()
    }

    /// Appends `count` audit records to the log of (`module`, `repo`) now.
    pub fn append_audit(&self, module: &str, repo: &str, count: u64) {
        self.state.lock().artifact.append_audit(module, repo, count);
    }

    /// Appends `count` audit records to (`module`, `repo`) right after the audit route has
    /// answered `after_pages` pages of that log: an append in the middle of a walk.
    pub fn append_audit_after(&self, module: &str, repo: &str, after_pages: u64, count: u64) {
        self.state
            .lock()
            .artifact
            .triggers
            .push(artifact::AuditTrigger {
                module: module.to_string(),
                repo: repo.to_string(),
                after_pages,
                count,
            });
    }

    /// The ids of every record in the log of (`module`, `repo`), oldest first.
    pub fn audit_ids(&self, module: &str, repo: &str) -> Vec<String> {
        self.state.lock().artifact.audit_ids(module, repo)
    }

    /// Successful (200) start calls for `repository_id`.
    pub fn mirror_starts(&self, repository_id: u32) -> usize {
        self.state
            .lock()
            .starts
            .get(&repository_id)
            .copied()
            .unwrap_or(0)
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
}

impl Route {
    /// True for the CodeArts Artifact routes.
    pub fn is_artifact(self) -> bool {
        !matches!(
            self,
            Route::IamToken | Route::MirrorStart | Route::MirrorShow
        )
    }
}

/// A fault applied to matching requests before any other check (so a fault
/// also hits unauthenticated requests). Order: `delay_ms` first, then
/// `delay_after_ms`, else `reset_after`, else `reset`, else `malformed`, else `status`; `retry_after` adds a header to
/// whatever is answered. A fault with only `delay_ms` serves the real
/// response late.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Fault {
    pub route: Route,
    /// Only requests for this repository (`None`: any request on the route).
    pub repository_id: Option<u32>,
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
    /// The path only; the query is left out.
    pub path: String,
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

/// Put on a request by [`intercept`] when its AK/SK signature verified.
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

/// The router: simulated API routes, each wrapped by [`intercept`], and the
/// control routes under `/__sim`.
fn router(state: Arc<SimState>) -> Router {
    let api = |route: Route, endpoint: MethodRouter<Arc<SimState>>| {
        let ep = Endpoint {
            state: Arc::clone(&state),
            route,
        };
        endpoint.route_layer(middleware::from_fn_with_state(ep, intercept))
    };
    Router::new()
        .route(
            "/v3/auth/tokens",
            api(Route::IamToken, post(iam::create_token)),
        )
        .route(
            repo::MIRROR_PATH,
            api(Route::MirrorStart, post(repo::start_mirror))
                .merge(api(Route::MirrorShow, get(repo::show_mirror))),
        )
        // Path segments that hold different things in different routes share one name
        // (`{a}`, `{b}`), as the router requires; handlers take them by position.
        .route(
            "/cloudartifact/v5/trashes",
            api(Route::TrashDelete, delete(artifact::delete_trashes)).merge(api(
                Route::TrashRestore,
                axum::routing::put(artifact::restore_trashes),
            )),
        )
        .route(
            "/cloudartifact/v5/storage",
            api(Route::Storage, get(artifact::show_storage)),
        )
        .route(
            "/cloudartifact/v5/{tenant_id}/{project_id}/repositories",
            api(Route::ArtifactRepoList, get(artifact::list_repositories)),
        )
        .route(
            "/cloudartifact/v5/{tenant_id}/{project_id}/storageinfo/statistic",
            api(Route::StorageTrend, get(artifact::storage_statistic)),
        )
        .route(
            "/cloudartifact/v5/{tenant_id}/{project_id}/{a}/repositories",
            api(Route::ArtifactRepoShow, get(artifact::show_repository)),
        )
        .route(
            "/cloudartifact/v5/{tenant_id}/{project_id}/{a}/file-tree",
            api(Route::ArtifactFileTree, get(artifact::file_tree)),
        )
        .route(
            "/cloudartifact/v5/{tenant_id}/{project_id}/{a}/{b}/audit",
            api(Route::Audit, get(artifact::audit)),
        )
        .nest("/__sim", control::router())
        .fallback(unknown_api)
        .with_state(state)
}

/// Unknown paths. The cloud's API gateway answers these itself with
/// `APIGW.0101`; that code is not in the reference pages we keep, but a
/// JSON error body is closer to the real thing than an empty 404.
async fn unknown_api() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "APIGW.0101",
        "The API does not exist or has not been published in the environment",
    )
}

#[derive(Clone)]
struct Endpoint {
    state: Arc<SimState>,
    route: Route,
}

/// Runs after routing, so the route and repository id are known: records the
/// call, applies a queued fault before the handler's own checks (auth
/// included), and logs the outcome without any credential.
async fn intercept(
    State(ep): State<Endpoint>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let repository_id = params.ok().and_then(|p| {
        p.iter()
            .find(|(k, _)| *k == "repository_id")
            .and_then(|(_, v)| repo::parse_repository_id(v))
    });
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let mut auth = ep.state.auth_kind(req.headers());
    // A signed request is verified here, before faults and handlers, as the gateway does.
    // IAM's token call is not behind the gateway's AK/SK check.
    let mut req = req;
    let mut refused = None;
    if ep.route != Route::IamToken && req.headers().contains_key("authorization") {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, 12 * 1024 * 1024)
            .await
            .unwrap_or_default();
        match aksk::verify(
            &ep.state.cfg,
            &parts.method,
            &parts.uri,
            &parts.headers,
            &bytes,
        ) {
            Ok(()) => auth = state::AuthKind::AkSk,
            Err(why) => {
                auth = state::AuthKind::BadSignature;
                refused = Some(why);
            }
        }
        req = Request::from_parts(parts, Body::from(bytes));
        if auth == state::AuthKind::AkSk {
            req.extensions_mut().insert(AkSkVerified);
        }
    }
    let index = ep.state.begin_call(Call {
        route: ep.route,
        method: method.clone(),
        path: path.clone(),
        repository_id,
        at: Utc::now(),
        status: 0,
        auth: auth.as_str().to_string(),
        body_username: None,
    });

    let mut resp = match ep.state.take_fault(ep.route, repository_id) {
        Some(fault) => faults::apply(&ep.state, ep.route, fault, req, next).await,
        None => match refused {
            Some(why) => error_response(
                StatusCode::UNAUTHORIZED,
                aksk::GATEWAY_AUTH_CODE,
                &why.message(),
            ),
            None => next.run(req).await,
        },
    };

    let status = if resp.extensions().get::<ResetConnection>().is_some() {
        0
    } else {
        resp.status().as_u16()
    };
    let note = resp.extensions_mut().remove::<CallNote>();
    ep.state
        .finish_call(index, status, note.and_then(|n| n.body_username));
    // Real responses carry a request id that SDKs report with errors.
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string()) {
        resp.headers_mut().insert("x-request-id", id);
    }
    tracing::debug!(
        route = ?ep.route,
        %method,
        %path,
        repository_id,
        status,
        auth = auth.as_str(),
        "simulator request"
    );
    resp
}

/// Error returned to hyper for a `reset` fault, which makes it drop the
/// connection without a response.
#[derive(Debug)]
struct ConnectionReset;

impl std::fmt::Display for ConnectionReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by simulated fault")
    }
}

impl std::error::Error for ConnectionReset {}

/// Per-connection hyper service around the axum router.
#[derive(Clone)]
struct ConnService {
    router: Router,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = ConnectionReset;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ConnectionReset>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let router = self.router.clone();
        Box::pin(async move {
            let resp = match router.oneshot(req.map(Body::new)).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            if resp.extensions().get::<ResetConnection>().is_some() {
                return Err(ConnectionReset);
            }
            Ok(resp)
        })
    }
}

/// Resolves when the simulator is shut down or its last handle is dropped.
async fn stopped(mut stop: watch::Receiver<u64>) {
    // Err means the sender (the last handle) is gone: stop as well.
    let _ = stop.changed().await;
}

/// Hand-rolled accept loop: axum's own `serve` cannot drop a single
/// connection on demand, which the `reset` fault needs.
async fn serve_loop(
    state: Arc<SimState>,
    listener: TcpListener,
    stop: watch::Receiver<u64>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = ConnService {
        router: router(state),
    };
    // Tells open connections to finish their current request and close.
    let (close_tx, close_rx) = watch::channel(());
    let stopped = stopped(stop);
    tokio::pin!(shutdown, stopped);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Typically out of file descriptors: back off rather than spin.
                tracing::warn!(error = %e, "simulator accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let mut close = close_rx.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                res = conn.as_mut() => res,
                _ = close.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "simulator connection closed");
            }
        });
    }
    drop(close_tx);
    Ok(())
}
