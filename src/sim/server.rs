//! Serving: the router, where every simulated API route is wrapped by [`intercept`] (it records
//! the call, verifies an AK/SK signature as the gateway does, and applies a queued fault before
//! the handler runs), and the hand-rolled accept loop that lets a fault drop a connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use chrono::Utc;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use super::artifact::{audit, repos, storage, trash};
use super::state::{self, SimState};
use super::swr::routes as swr;
use super::{aksk, control, faults, iam, repo, swr_share};
use super::{error_response, AkSkVerified, Call, CallNote, ResetConnection, Route};

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
            api(Route::TrashDelete, delete(trash::delete_trashes)).merge(api(
                Route::TrashRestore,
                axum::routing::put(trash::restore_trashes),
            )),
        )
        .route(
            "/cloudartifact/v5/storage",
            api(Route::Storage, get(storage::show_storage)),
        )
        .route(
            "/cloudartifact/v5/{tenant_id}/{project_id}/repositories",
            api(Route::ArtifactRepoList, get(repos::list_repositories)),
        )
        .route(
            "/cloudartifact/v5/{tenant_id}/{project_id}/storageinfo/statistic",
            api(Route::StorageTrend, get(storage::storage_statistic)),
        )
        .route(
            "/cloudartifact/v5/{tenant_id}/{project_id}/{a}/repositories",
            api(Route::ArtifactRepoShow, get(repos::show_repository)),
        )
        .route(
            "/cloudartifact/v5/{tenant_id}/{project_id}/{a}/file-tree",
            api(Route::ArtifactFileTree, get(repos::file_tree)),
        )
        .route(
            "/cloudartifact/v5/{tenant_id}/{project_id}/{a}/{b}/audit",
            api(Route::Audit, get(audit::audit)),
        )
        .route(
            swr_share::SHARED_PATH,
            api(Route::SwrSharedRepos, get(swr_share::list_shared)),
        )
        .route(
            swr_share::DOMAINS_PATH,
            api(Route::SwrRepoDomains, get(swr_share::list_domains)),
        )
        .route(swr::TAGS_PATH, api(Route::SwrTagList, get(swr::list_tags)))
        .route(
            swr::SYNC_IMAGES_PATH,
            api(Route::SwrSyncStart, post(swr::sync_images)),
        )
        .route(
            swr::SYNC_JOB_PATH,
            api(Route::SwrSyncJobs, get(swr::sync_job)),
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
    let latency = ep.state.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
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
        query: req.uri().query().map(str::to_string),
        repository_id,
        at: Utc::now(),
        status: 0,
        auth: auth.as_str().to_string(),
        body_username: None,
    });

    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_string());
    let mut resp = match ep.state.take_fault(ep.route, repository_id, &target) {
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
pub(super) async fn serve_loop(
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
