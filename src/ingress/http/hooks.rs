//! Webhooks: `POST /hooks/codearts-repo` and `POST /hooks/github` turn a push into
//! `remote_mirror` jobs through the `[server] routes`, persisted before they are answered.
//!
//! - The sender is authenticated first, in constant time: CodeArts Repo sends the hook's token
//!   as a plain header value (the header is configurable), GitHub signs the raw body
//!   (`X-Hub-Signature-256`, HMAC-SHA256). A failure is 401 and a `rejected` row with the reason
//!   only — no body, no header value.
//! - The body must be the push event's JSON (strict: a key given twice is refused): 400 naming
//!   what is wrong otherwise, recorded as a `rejected` row like any bad input.
//! - Every route that matches makes one job, keyed by the delivery (GitHub's
//!   `X-GitHub-Delivery`; for CodeArts Repo the project, ref and commit), so a re-sent delivery
//!   makes none; a push for a repository that already has a queued sync joins it. An event no
//!   route takes is answered 202 and recorded `ignored`, with why: the sender must not retry it.
//! - 202 comes only after the rows are committed; when the store cannot commit, 503 with
//!   `Retry-After`, so the sender retries and nothing is lost.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use globset::GlobMatcher;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, HookRoute};
use crate::ingress::{self, json as strict, Prepared, Submission, Submitted};
use crate::store::{NewJob, Store};
use crate::{Source, Status};

/// Seconds a sender is asked to wait when the store cannot commit.
const RETRY_AFTER_S: u64 = 5;

/// Which hook a delivery came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sender {
    CodeartsRepo,
    Github,
}

impl Sender {
    fn name(self) -> &'static str {
        match self {
            Sender::CodeartsRepo => "codearts-repo",
            Sender::Github => "github",
        }
    }
}

struct Route {
    repo: Option<GlobMatcher>,
    project_id: Option<u64>,
    branches: Option<GlobMatcher>,
    target: HookRoute,
}

/// Submissions gathered from requests that arrive together, committed in one transaction.
type Batch = (
    Vec<Prepared>,
    tokio::sync::oneshot::Sender<Result<Vec<Submitted>, String>>,
);

/// What the hook handlers share.
pub struct Hooks {
    /// The group-commit writer's inbox.
    writer: tokio::sync::mpsc::Sender<Batch>,
    cfg: Arc<Config>,
    codearts_token: Option<(String, SecretString)>,
    github_secret: Option<SecretString>,
    routes: Vec<Route>,
}

impl Hooks {
    /// The hook routes the configuration turns on (none without a `[server]` hook section);
    /// resolves the secrets, which the configuration check has already seen resolve.
    pub fn router(store: Store, cfg: Arc<Config>) -> Result<Router, crate::config::Error> {
        let Some(srv) = cfg.server.as_ref() else {
            return Ok(Router::new());
        };
        let glob = |g: &Option<String>, key: String| {
            g.as_ref()
                .map(|g| {
                    globset::GlobBuilder::new(g)
                        .literal_separator(true)
                        .build()
                        .map(|g| g.compile_matcher())
                        .map_err(|e| {
                            crate::config::Error::invalid(key, format!("invalid glob: {e}"))
                        })
                })
                .transpose()
        };
        let mut routes = Vec::new();
        for (i, r) in srv.routes.iter().enumerate() {
            routes.push(Route {
                repo: glob(&r.repo, format!("server.routes[{i}].repo"))?,
                project_id: r.project_id,
                branches: glob(&r.branches, format!("server.routes[{i}].branches"))?,
                target: r.clone(),
            });
        }
        let codearts_token = match &srv.codearts_repo {
            Some(h) => Some((
                h.token_header.to_ascii_lowercase(),
                h.token
                    .resolve("server.codearts_repo.token", &cfg.base_dir)?,
            )),
            None => None,
        };
        let github_secret = match &srv.github {
            Some(h) => Some(h.secret.resolve("server.github.secret", &cfg.base_dir)?),
            None => None,
        };
        let on_codearts = codearts_token.is_some();
        let on_github = github_secret.is_some();
        let (writer, inbox) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(group_commit(store, inbox));
        let hooks = Arc::new(Hooks {
            writer,
            cfg,
            codearts_token,
            github_secret,
            routes,
        });
        let mut router = Router::new();
        if on_codearts {
            router = router.route("/hooks/codearts-repo", post(codearts_repo));
        }
        if on_github {
            router = router.route("/hooks/github", post(github));
        }
        Ok(router
            .layer(axum::middleware::from_fn(count_requests))
            .with_state(hooks))
    }
}

/// `codearts_syncd_webhook_requests_total{hook, status}`: every webhook request by answer.
async fn count_requests(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let hook = match req.uri().path() {
        "/hooks/codearts-repo" => "codearts-repo",
        "/hooks/github" => "github",
        _ => "other",
    };
    let resp = next.run(req).await;
    metrics::counter!(
        "codearts_syncd_webhook_requests_total",
        "hook" => hook,
        "status" => resp.status().as_u16().to_string()
    )
    .increment(1);
    resp
}

/// The parts of a push event the routes read, from either sender.
struct Push {
    /// `path_with_namespace` (CodeArts Repo) or `full_name` (GitHub).
    repo: String,
    project_id: Option<u64>,
    git_ref: String,
    sha: String,
}

#[derive(Deserialize)]
struct CodeartsEvent {
    object_kind: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    checkout_sha: Option<String>,
    project_id: Option<u64>,
    project: Option<CodeartsProject>,
}

#[derive(Deserialize)]
struct CodeartsProject {
    path_with_namespace: Option<String>,
}

#[derive(Deserialize)]
struct GithubPush {
    #[serde(rename = "ref")]
    git_ref: String,
    after: Option<String>,
    repository: GithubRepository,
}

#[derive(Deserialize)]
struct GithubRepository {
    full_name: String,
}

async fn codearts_repo(State(h): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> Response {
    let sender = Sender::CodeartsRepo;
    let Some((header, token)) = &h.codearts_token else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let given = headers.get(header.as_str()).map(|v| v.as_bytes());
    let ok = given.is_some_and(|g| bool::from(g.ct_eq(token.expose_secret().as_bytes())));
    if !ok {
        let why = if given.is_none() {
            format!("webhook from {}: no {header} header", sender.name())
        } else {
            format!("webhook from {}: wrong token in {header}", sender.name())
        };
        return unauthorized(&h, why).await;
    }
    let event: CodeartsEvent = match parse(&body) {
        Ok(e) => e,
        Err(why) => return bad_request(&h, sender, &body, why).await,
    };
    if event.object_kind.as_deref() != Some("push") {
        let why = format!(
            "event {:?} is not a push",
            event.object_kind.as_deref().unwrap_or("")
        );
        return ignored(&h, sender, None, why).await;
    }
    let (Some(git_ref), Some(repo)) = (
        event.git_ref,
        event.project.and_then(|p| p.path_with_namespace),
    ) else {
        let why = "a push event needs `ref` and `project.path_with_namespace`".to_string();
        return bad_request(&h, sender, &body, why).await;
    };
    let push = Push {
        repo,
        project_id: event.project_id,
        git_ref,
        sha: event.checkout_sha.unwrap_or_default(),
    };
    // CodeArts Repo sends no delivery id: the event itself names the delivery.
    let delivery = hex::encode(Sha256::digest(
        format!(
            "{}\n{}\n{}\n{}",
            push.project_id.unwrap_or(0),
            push.repo,
            push.git_ref,
            push.sha
        )
        .as_bytes(),
    ));
    route(&h, sender, &push, &delivery[..32]).await
}

async fn github(State(h): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> Response {
    let sender = Sender::Github;
    let Some(secret) = &h.github_secret else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|v| hex::decode(v).ok());
    let Some(signature) = signature else {
        return unauthorized(
            &h,
            "webhook from github: no valid X-Hub-Signature-256".into(),
        )
        .await;
    };
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) {
        Ok(m) => m,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    mac.update(&body);
    // `verify_slice` compares in constant time.
    if mac.verify_slice(&signature).is_err() {
        return unauthorized(&h, "webhook from github: signature does not match".into()).await;
    }
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let delivery = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .filter(|d| ingress::reject::check_key(d).is_ok() && d.len() <= 64)
        .map(str::to_string);
    if event == "ping" {
        return (StatusCode::OK, Json(json!({"pong": true}))).into_response();
    }
    if event != "push" {
        let why = format!("event {event:?} is not a push");
        return ignored(&h, sender, delivery, why).await;
    }
    let push: GithubPush = match parse(&body) {
        Ok(p) => p,
        Err(why) => return bad_request(&h, sender, &body, why).await,
    };
    let push = Push {
        repo: push.repository.full_name,
        project_id: None,
        git_ref: push.git_ref,
        sha: push.after.unwrap_or_default(),
    };
    let delivery = delivery.unwrap_or_else(|| {
        hex::encode(Sha256::digest(
            format!("{}\n{}\n{}", push.repo, push.git_ref, push.sha).as_bytes(),
        ))[..32]
            .to_string()
    });
    route(&h, sender, &push, &delivery).await
}

/// Strict JSON (no key twice), then the event's shape; the error says what is wrong.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let value = strict::from_str_strict(text).map_err(|e| format!("body is not JSON: {e}"))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        format!(
            "body is not the push event expected: {}: {}",
            e.path(),
            e.inner()
        )
    })
}

/// Makes the jobs the matching routes call for, commits them, answers 202.
async fn route(h: &Hooks, sender: Sender, push: &Push, delivery: &str) -> Response {
    let branch = push.git_ref.strip_prefix("refs/heads/");
    let mut prepared = Vec::new();
    for r in &h.routes {
        let repo_ok = r.repo.as_ref().is_none_or(|g| g.is_match(&push.repo));
        let project_ok = r.project_id.is_none_or(|p| Some(p) == push.project_id);
        let branch_ok = match (&r.branches, branch) {
            (_, None) => false, // a tag or another ref: never a branch push
            (None, Some(_)) => true,
            (Some(g), Some(b)) => g.is_match(b),
        };
        if !(repo_ok && project_ok && branch_ok) {
            continue;
        }
        let t = &r.target;
        let mut params = json!({"repository_id": t.repository_id});
        if let Some(c) = &t.credential {
            params["credential"] = json!(c);
        }
        if let Some(f) = t.force_fetch {
            params["force_fetch"] = json!(f);
        }
        let key = format!("{}:{delivery}:{}", sender.name(), t.repository_id);
        prepared.push(ingress::prepare(
            &h.cfg,
            Submission {
                kind: "remote_mirror".into(),
                params,
                source: Source::Webhook,
                key: Some(key),
                schedule: None,
            },
        ));
    }
    if prepared.is_empty() {
        let why = format!(
            "no route takes a push to {:?} on {:?}",
            push.repo, push.git_ref
        );
        return ignored(
            h,
            sender,
            Some(format!("{}:{delivery}", sender.name())),
            why,
        )
        .await;
    }
    match h.commit(prepared.into()).await {
        Ok(done) => {
            let jobs: Vec<Value> = done
                .iter()
                .map(|s| {
                    let (outcome, reason) = match s {
                        Submitted::Queued(_) => ("queued", None),
                        Submitted::Duplicate(_) => ("duplicate", None),
                        Submitted::Coalesced(_) => ("coalesced", None),
                        Submitted::Skipped(_) => ("skipped", None),
                        Submitted::Rejected { reason, .. } => ("rejected", Some(reason.clone())),
                    };
                    json!({"id": s.id(), "outcome": outcome, "reason": reason})
                })
                .collect();
            (StatusCode::ACCEPTED, Json(json!({"jobs": jobs}))).into_response()
        }
        Err(e) => store_unavailable(&e),
    }
}

/// Records an event no job comes of, with why, and answers 202 so the sender does not retry.
async fn ignored(h: &Hooks, sender: Sender, key: Option<String>, why: String) -> Response {
    let job = NewJob {
        kind: "remote_mirror".into(),
        params: json!({"hook": sender.name()}).to_string(),
        source: Source::Webhook,
        schedule: None,
        status: Status::Ignored,
        max_attempts: 0,
        idempotency_key: key.filter(|k| ingress::reject::check_key(k).is_ok()),
        error_code: Some("IGNORED".into()),
        error_msg: Some(why.clone()),
        coalesce: false,
        slot: None,
        lane: None,
    };
    let prepared = [Prepared {
        job,
        rejection: None,
    }];
    match h.commit(prepared.into()).await {
        Ok(done) => {
            let id = done.first().map(Submitted::id);
            (
                StatusCode::ACCEPTED,
                Json(json!({"ignored": why, "id": id})),
            )
                .into_response()
        }
        Err(e) => store_unavailable(&e),
    }
}

/// 401, recorded as a `rejected` row with the reason only.
async fn unauthorized(h: &Hooks, why: String) -> Response {
    let p = ingress::prepare_raw(
        Source::Webhook,
        Some("remote_mirror".into()),
        b"",
        None,
        why.clone(),
    );
    match h.commit(vec![p]).await {
        Ok(_) => (StatusCode::UNAUTHORIZED, Json(json!({"error": why}))).into_response(),
        Err(e) => store_unavailable(&e),
    }
}

/// 400 naming what is wrong, recorded (bounded, redacted) like any bad input.
async fn bad_request(h: &Hooks, sender: Sender, body: &[u8], why: String) -> Response {
    let why = format!("webhook from {}: {why}", sender.name());
    let p = ingress::prepare_raw(
        Source::Webhook,
        Some("remote_mirror".into()),
        body,
        None,
        why.clone(),
    );
    match h.commit(vec![p]).await {
        Ok(_) => (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response(),
        Err(e) => store_unavailable(&e),
    }
}

impl Hooks {
    /// Commits `prepared` together with whatever other requests are committing now.
    async fn commit(&self, prepared: Vec<Prepared>) -> Result<Vec<Submitted>, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.writer.send((prepared, reply)).await.is_err() {
            return Err("the store writer has stopped".into());
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the store writer has stopped".into()))
    }
}

/// Gathers the submissions of the requests that arrive while a commit runs into the next one:
/// one transaction (one fsync) for many webhooks, each answered only after it.
async fn group_commit(store: Store, mut inbox: tokio::sync::mpsc::Receiver<Batch>) {
    const MAX: usize = 512;
    while let Some(first) = inbox.recv().await {
        let mut batches = vec![first];
        let mut n = batches[0].0.len();
        while n < MAX {
            match inbox.try_recv() {
                Ok(b) => {
                    n += b.0.len();
                    batches.push(b);
                }
                Err(_) => break,
            }
        }
        let all: Vec<Prepared> = batches
            .iter()
            .flat_map(|(p, _)| p.iter().cloned())
            .collect();
        match ingress::submit_many(&store, &all).await {
            Ok(done) => {
                let mut done = done.into_iter();
                for (p, reply) in batches {
                    let mine: Vec<Submitted> = done.by_ref().take(p.len()).collect();
                    let _ = reply.send(Ok(mine));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (_, reply) in batches {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

/// 503 with `Retry-After`: nothing was stored, the sender should send it again.
fn store_unavailable(e: &str) -> Response {
    tracing::warn!(error = %e, "webhook not stored; answered 503 for the sender to retry");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("retry-after", RETRY_AFTER_S.to_string())],
        Json(json!({"error": "the job store cannot take it now; retry later"})),
    )
        .into_response()
}
