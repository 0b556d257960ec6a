//! The cloud client: one reqwest client (rustls) with timeouts, authentication, and the status
//! handling every job kind shares. One file per service builds on [`Client::call`].
//!
//! Inside one call: a 401 re-authenticates once and repeats the request; connection failures
//! and resets are repeated a few times after a short pause. Everything else is returned as an
//! [`Error`] for the engine to classify, so that job-level retries are persisted and visible.

pub mod artifact;
pub mod auth;
pub mod error;
pub mod listing;
pub mod repo;
pub mod signer;
pub mod swr;
pub mod swr_share;

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use secrecy::ExposeSecret;

pub use error::Error;

use crate::config::{Auth as ConfigAuth, Config, Endpoints};

/// The services the daemon calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Iam,
    Repo,
    Artifact,
    Swr,
}

impl Service {
    /// The name in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Iam => "iam",
            Service::Repo => "repo",
            Service::Artifact => "artifact",
            Service::Swr => "swr",
        }
    }
}

/// The path segments a metrics route label keeps as they are; any other segment (an id, a
/// number, a repository or module name) becomes `:id`, so the label takes few values.
const ROUTE_WORDS: &[&str] = &[
    "v3",
    "v4",
    "v5",
    "auth",
    "tokens",
    "repositories",
    "remote-mirror",
    "cloudartifact",
    "file-tree",
    "trashes",
    "storage",
    "storageinfo",
    "statistic",
    "audit",
    // SWR: shared repositories and image synchronization.
    "v2",
    "manage",
    "shared-repositories",
    "namespaces",
    "access-domains",
    "repos",
    "tags",
    "sync_images",
    "sync_job",
];

/// The route template of a request path for a metrics label: `/v4/repositories/:id/remote-mirror`.
pub fn route_label(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()).take(8) {
        out.push('/');
        out.push_str(
            ROUTE_WORDS
                .iter()
                .find(|w| **w == seg)
                .copied()
                .unwrap_or(":id"),
        );
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Records one round trip in `codearts_syncd_api_request_duration_seconds`; `status` is the HTTP
/// status, or `None` for a transport failure.
pub(crate) fn observe_request(service: Service, path: &str, status: Option<u16>, started: Instant) {
    let status = status.map_or_else(|| "transport".to_string(), |s| s.to_string());
    metrics::histogram!(
        "codearts_syncd_api_request_duration_seconds",
        "service" => service.as_str(),
        "route" => route_label(path),
        "status" => status
    )
    .record(started.elapsed().as_secs_f64());
}

/// One request, before authentication.
#[derive(Clone, Debug)]
pub struct Request {
    pub service: Service,
    pub method: Method,
    /// The path as sent, path parameters already percent-encoded.
    pub path: String,
    /// Decoded query pairs; sent sorted and encoded, as the signer's canonical query.
    pub query: Vec<(String, String)>,
    /// A JSON body, exactly as sent.
    pub body: Option<Vec<u8>>,
    /// May be sent again after a transport failure that could have happened after the
    /// service received it. False for calls that start remote work (a second send would start
    /// it twice): those are re-sent only when the connection itself could not be made.
    pub repeatable: bool,
}

impl Request {
    /// A request without query or body.
    pub fn new(service: Service, method: Method, path: impl Into<String>) -> Request {
        Request {
            service,
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            repeatable: true,
        }
    }

    /// Marks the request as one that must not be re-sent once it may have reached the service.
    pub fn unrepeatable(mut self) -> Request {
        self.repeatable = false;
        self
    }

    /// Adds a JSON body.
    pub fn json(mut self, body: &impl serde::Serialize) -> Request {
        self.body = Some(serde_json::to_vec(body).unwrap_or_default());
        self
    }
}

/// A successful response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// An earlier send of this request failed in transport (a reset, a timeout) before this
    /// answer: the service may have acted on it already. Matters for calls that are not
    /// idempotent in their answer, such as a trash delete.
    pub maybe_resent: bool,
}

impl Response {
    /// Parses the body as `T`, naming the request on failure.
    pub fn json<T: serde::de::DeserializeOwned>(&self, req: &Request) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Decode {
            method: req.method.to_string(),
            path: req.path.clone(),
            status: self.status,
            message: e.to_string(),
        })
    }

    /// The request id the gateway returned (`X-Request-Id`), kept as the job's trace id.
    pub fn request_id(&self) -> Option<String> {
        self.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// The client. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoints: Endpoints,
    auth: auth::Auth,
    transport_retries: u32,
}

impl Client {
    /// Builds the client from the configuration, resolving the auth secrets.
    pub fn from_config(cfg: &Config) -> Result<Client, Error> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(cfg.http.connect_timeout)
            .timeout(cfg.http.request_timeout)
            .user_agent(concat!("codearts-syncd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Auth(format!("cannot build the HTTP client: {e}")))?;
        let endpoints = cfg.endpoints();
        let auth = match cfg
            .cloud
            .auth
            .resolve()
            .map_err(|e| Error::Auth(e.to_string()))?
        {
            ConfigAuth::Password {
                domain_name,
                user_name,
                password,
            } => {
                let password = password
                    .resolve("cloud.auth.password", &cfg.base_dir)
                    .map_err(|e| Error::Auth(e.to_string()))?;
                auth::Auth::token(auth::TokenSource::new(
                    http.clone(),
                    &endpoints.iam,
                    domain_name,
                    user_name,
                    password,
                    &cfg.cloud.iam_project_id,
                    cfg.http.token_refresh_margin,
                ))
            }
            ConfigAuth::Aksk {
                access_key,
                secret_key,
            } => {
                let ak = access_key
                    .resolve("cloud.auth.access_key", &cfg.base_dir)
                    .map_err(|e| Error::Auth(e.to_string()))?;
                let sk = secret_key
                    .resolve("cloud.auth.secret_key", &cfg.base_dir)
                    .map_err(|e| Error::Auth(e.to_string()))?;
                auth::Auth::aksk(ak, sk, &cfg.cloud.iam_project_id)
            }
        };
        Ok(Client {
            http,
            endpoints,
            auth,
            transport_retries: cfg.http.transport_retries,
        })
    }

    fn base(&self, service: Service) -> &str {
        match service {
            Service::Iam => &self.endpoints.iam,
            Service::Repo => &self.endpoints.repo,
            Service::Artifact => &self.endpoints.artifact,
            Service::Swr => &self.endpoints.swr,
        }
    }

    /// Sends `req`, authenticated. Returns the response for 2xx, an [`Error`] otherwise.
    pub async fn call(&self, req: &Request) -> Result<Response, Error> {
        let mut reauthenticated = false;
        let mut transport_failures = 0u32;
        loop {
            let credential = self.auth.credential().await?;
            match self.send_once(req, &credential).await {
                Ok(resp) if resp.status == 401 && !reauthenticated && credential.is_token() => {
                    tracing::info!(
                        method = %req.method,
                        path = %req.path,
                        "token rejected (401); re-authenticating once"
                    );
                    self.auth.invalidate(&credential).await;
                    reauthenticated = true;
                }
                Ok(resp) if resp.status >= 400 => return Err(api_error(req, &resp)),
                Ok(mut resp) => {
                    resp.maybe_resent = transport_failures > 0;
                    return Ok(resp);
                }
                Err(e @ Error::Transport { .. })
                    if transport_failures < self.transport_retries
                        && (req.repeatable || !e.outcome_unknown()) =>
                {
                    transport_failures += 1;
                    let pause = Duration::from_millis(100 * (1 << transport_failures.min(6)));
                    tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "transport failure; trying again");
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_once(
        &self,
        req: &Request,
        credential: &auth::Credential,
    ) -> Result<Response, Error> {
        let base = self.base(req.service).trim_end_matches('/');
        let query = auth::canonical_query(&req.query);
        let url = if query.is_empty() {
            format!("{base}{}", req.path)
        } else {
            format!("{base}{}?{query}", req.path)
        };
        let body = req.body.clone().unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        credential.apply(
            &mut headers,
            &auth::Signable {
                method: req.method.as_str(),
                url: &url,
                path: &req.path,
                query: &req.query,
                body: &body,
            },
        )?;
        let started = Instant::now();
        let mut builder = self.http.request(req.method.clone(), &url).headers(headers);
        if req.body.is_some() {
            builder = builder.body(body);
        }
        let transport = |e: reqwest::Error| Error::Transport {
            method: req.method.to_string(),
            path: req.path.clone(),
            message: describe_reqwest_error(&e),
            // A failure to connect means nothing was sent.
            maybe_sent: !e.is_connect(),
        };
        let resp = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                observe_request(req.service, &req.path, None, started);
                return Err(transport(e));
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => {
                observe_request(req.service, &req.path, None, started);
                return Err(transport(e));
            }
        };
        observe_request(req.service, &req.path, Some(status), started);
        tracing::debug!(
            method = %req.method,
            path = %req.path,
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "api call"
        );
        Ok(Response {
            status,
            headers,
            body,
            maybe_resent: false,
        })
    }
}

fn api_error(req: &Request, resp: &Response) -> Error {
    error::from_response(
        req.method.as_str(),
        &req.path,
        resp.status,
        &resp.headers,
        &resp.body,
    )
}

/// A one-line description of a reqwest failure, with its cause chain but never a URL's secrets
/// (the daemon's URLs carry none).
fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Exposes a secret for a header value, marked sensitive so no debug output prints it.
pub(crate) fn sensitive_header(secret: &secrecy::SecretString) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(secret.expose_secret()).map_err(|_| {
        Error::Auth("credential contains characters not allowed in a header".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn route_label_keeps_known_words_and_hides_ids() {
        assert_eq!(
            route_label("/v4/repositories/123/remote-mirror"),
            "/v4/repositories/:id/remote-mirror"
        );
        assert_eq!(
            route_label("/cloudartifact/v5/t%2F1/p1/my-repo/file-tree"),
            "/cloudartifact/v5/:id/:id/:id/file-tree"
        );
        assert_eq!(route_label("/v3/auth/tokens"), "/v3/auth/tokens");
        assert_eq!(route_label(""), "/");
    }
}
