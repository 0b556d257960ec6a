//! The HTTP listener (`[server]`): one axum router for everything the daemon answers over HTTP:
//! `GET /healthz` (the process answers), `GET /readyz` (it can take work: the store writes, the
//! broker is connected when AMQP is configured, it is not draining), and the webhooks
//! ([`hooks`]). Every request
//! gets an access log line (method, route, status, duration; never a body or a header value),
//! a body limit and a timeout. It keeps answering during the drain — `/readyz` then says
//! `draining` — and stops once the engine has drained. With `[server] tls` it speaks HTTPS
//! ([`tls`]) through the same serving code.

mod metrics;
pub mod tls;

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub mod hooks;

use crate::config::{Config, ServerConfig};
use crate::ingress::amqp::Connected;
use crate::store::Store;

/// What readiness is read from.
#[derive(Clone)]
pub struct Readiness {
    pub store: Store,
    /// The broker connection, when AMQP is configured.
    pub broker: Option<Connected>,
    /// Cancelled when the drain starts.
    pub draining: CancellationToken,
}

impl Readiness {
    /// The checks in a fixed order, each `Ok` or `Err(why)`.
    fn checks(&self) -> Vec<(&'static str, Result<(), &'static str>)> {
        let mut checks = vec![
            (
                "store",
                if self.store.health().is_failing() {
                    Err("the store cannot write")
                } else {
                    Ok(())
                },
            ),
            (
                "draining",
                if self.draining.is_cancelled() {
                    Err("shutting down: no new work is taken")
                } else {
                    Ok(())
                },
            ),
        ];
        if let Some(b) = &self.broker {
            checks.push((
                "broker",
                if b.get() {
                    Ok(())
                } else {
                    Err("not connected to the AMQP broker")
                },
            ));
        }
        checks
    }
}

/// The router, with the access log, the body limit and the timeout; `extra` holds the routes
/// of the other modules (the webhooks).
pub fn router(cfg: &ServerConfig, readiness: Readiness, extra: Router) -> Router {
    let timeout = cfg.request_timeout;
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(metrics::router(readiness.store.clone()))
        .with_state(Arc::new(readiness))
        .merge(extra)
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(middleware::from_fn(
            move |req: Request, next: Next| async move {
                match tokio::time::timeout(timeout, next.run(req)).await {
                    Ok(resp) => resp,
                    Err(_) => {
                        (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response()
                    }
                }
            },
        ))
        .layer(middleware::from_fn(access_log))
}

async fn readyz(State(r): State<Arc<Readiness>>) -> Response {
    let checks = r.checks();
    let failing: Vec<_> = checks
        .iter()
        .filter_map(|(name, c)| c.err().map(|why| json!({"check": name, "reason": why})))
        .collect();
    let body = json!({
        "ready": failing.is_empty(),
        "checks": checks.iter().map(|(n, c)| (n.to_string(), json!(if c.is_ok() { "ok" } else { "failing" }))).collect::<serde_json::Map<_, _>>(),
        "failing": failing,
    });
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// One line per request: method, route template (never the raw path's values), status,
/// duration. No body, no header values.
async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    tracing::info!(
        method = %method,
        route = %route,
        status = resp.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "http request"
    );
    resp
}

/// The running listener: its task, and with TLS the certificate in force (which a reload
/// replaces).
pub struct Serving {
    pub task: tokio::task::JoinHandle<()>,
    pub certificate: Option<tls::Certificate>,
}

/// Binds the listener (an error names the address) and serves until `stop` fires; requests in
/// flight then finish. With `[server] tls`, the certificate and key are read first (an error
/// names the key and the file).
/// `extra` holds routes from the layers above (the operator API).
pub async fn serve(
    config: Arc<Config>,
    readiness: Readiness,
    extra: Router,
    stop: CancellationToken,
) -> std::io::Result<Serving> {
    let Some(cfg) = config.server.clone() else {
        return Ok(Serving {
            task: tokio::spawn(async {}),
            certificate: None,
        });
    };
    let certificate = match &cfg.tls {
        Some(files) => Some(
            tls::Certificate::load(files, &config.base_dir)
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        ),
        None => None,
    };
    let hooks = hooks::Hooks::router(readiness.store.clone(), config)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", cfg.listen))
        })?;
    let addr: SocketAddr = listener.local_addr()?;
    let app = router(&cfg, readiness, hooks.merge(extra));
    let task = match &certificate {
        None => tokio::spawn(serve_on(listener, app, stop)),
        Some(c) => tokio::spawn(serve_on(tls::TlsListener::new(listener, c)?, app, stop)),
    };
    tracing::info!(%addr, tls = certificate.is_some(), "HTTP listener ready");
    Ok(Serving { task, certificate })
}

/// The serving loop for either kind of connection: axum's, with its graceful shutdown.
async fn serve_on<L>(listener: L, app: Router, stop: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: Debug,
{
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "HTTP listener failed");
    }
}
