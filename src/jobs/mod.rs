//! Job kinds: one file per kind, each a parameters type (serde, unknown fields rejected) and a
//! `run` function. Adding a kind is a variant here, its file, and one line in [`validate`] and
//! [`run`]; the engine does not change.

pub mod audit_mirror;
pub mod purge_recycle_bin;
pub mod remote_mirror;
pub mod storage_snapshot;
pub mod swr_image_sync;
pub mod swr_names;
pub mod swr_share_audit;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api;
use crate::config::Config;
use crate::store::{ErrorInfo, JobRow, Store};

/// The job kinds the daemon runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    RemoteMirror,
    PurgeRecycleBin,
    StorageSnapshot,
    AuditMirror,
    SwrShareAudit,
    SwrImageSync,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 6] = [
        JobKind::RemoteMirror,
        JobKind::PurgeRecycleBin,
        JobKind::StorageSnapshot,
        JobKind::AuditMirror,
        JobKind::SwrShareAudit,
        JobKind::SwrImageSync,
    ];

    /// The snake_case name used in messages, the store and the config.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::RemoteMirror => "remote_mirror",
            JobKind::PurgeRecycleBin => "purge_recycle_bin",
            JobKind::StorageSnapshot => "storage_snapshot",
            JobKind::AuditMirror => "audit_mirror",
            JobKind::SwrShareAudit => "swr_share_audit",
            JobKind::SwrImageSync => "swr_image_sync",
        }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<JobKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// True when a request may join a queued job of this kind with the same parameters
    /// instead of adding one (a burst of pushes costs one sync, not fifty).
    pub fn coalesces(self) -> bool {
        matches!(self, JobKind::RemoteMirror | JobKind::SwrImageSync)
    }

    /// The lane of a valid job of this kind: jobs sharing a lane never run together (at most
    /// one is `running` or `following`). A `remote_mirror`'s lane is its repository, so two
    /// syncs of one repository never overlap. `purge_recycle_bin` has one lane, the account's
    /// recycle bin (a store serves one account), so two purges never run at once, on one
    /// instance or across several. `None`: no exclusion.
    pub fn lane(self, params: &Value) -> Option<String> {
        match self {
            JobKind::RemoteMirror => params
                .get("repository_id")
                .and_then(Value::as_u64)
                .map(|id| format!("remote_mirror:{id}")),
            // One purge of the account's recycle bin at a time, across every instance.
            JobKind::PurgeRecycleBin => Some("purge_recycle_bin".to_string()),
            // One image sync per repository and target (region and organization).
            JobKind::SwrImageSync => swr_image_sync::lane(params),
            _ => None,
        }
    }

    /// Every kind's name.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|k| k.as_str()).collect()
    }
}

/// Invalid job parameters; the message names the parameter.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

/// The parameter every kind accepts besides its own: how long one attempt (or one poll of a
/// followed sync) may take before it is aborted and recorded `timed_out`.
pub const TIMEOUT_PARAM: &str = "timeout";

/// The longest per-job `timeout` accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A job's own `timeout` parameter (a duration such as `"90s"`), if it gives one.
pub fn job_timeout(params: &Value) -> Result<Option<Duration>, ParamError> {
    let Some(v) = params.get(TIMEOUT_PARAM) else {
        return Ok(None);
    };
    let bad = |why: String| ParamError(format!("parameter `{TIMEOUT_PARAM}`: {why}"));
    let text = v.as_str().ok_or_else(|| {
        bad(format!(
            "expected a duration such as \"90s\", got {}",
            kind_of(v)
        ))
    })?;
    let d = humantime::parse_duration(text).map_err(|e| bad(format!("{text:?}: {e}")))?;
    if d.is_zero() {
        return Err(bad("must be above zero".into()));
    }
    if d > MAX_TIMEOUT {
        return Err(bad(format!(
            "{text} is above the maximum of {}",
            crate::config::show_duration(MAX_TIMEOUT)
        )));
    }
    Ok(Some(d))
}

/// Parses `params` into a kind's parameter type, naming the offending parameter on error. The
/// common [`TIMEOUT_PARAM`] is not the kind's: it is read by [`job_timeout`] and left out here.
pub fn parse_params<T: DeserializeOwned>(params: &Value) -> Result<T, ParamError> {
    if !params.is_object() {
        return Err(ParamError(format!(
            "params must be a JSON object, got {}",
            kind_of(params)
        )));
    }
    let own;
    let params = match params.as_object() {
        Some(m) if m.contains_key(TIMEOUT_PARAM) => {
            let mut m = m.clone();
            m.remove(TIMEOUT_PARAM);
            own = Value::Object(m);
            &own
        }
        _ => params,
    };
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if let Some(rest) = inner.strip_prefix("unknown field ") {
            ParamError(format!("unknown parameter {rest}"))
        } else if let Some(rest) = inner.strip_prefix("missing field ") {
            ParamError(format!("missing parameter {rest}"))
        } else if path == "." {
            ParamError(inner)
        } else {
            ParamError(format!("parameter `{path}`: {inner}"))
        }
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Validates a submission's parameters for `kind` against the configuration.
pub fn validate(kind: JobKind, params: &Value, cfg: &Config) -> Result<(), ParamError> {
    if params.is_object() {
        job_timeout(params)?;
    }
    match kind {
        JobKind::RemoteMirror => remote_mirror::validate(params, cfg),
        JobKind::PurgeRecycleBin => purge_recycle_bin::validate(params, cfg),
        JobKind::StorageSnapshot => storage_snapshot::validate(params, cfg),
        JobKind::AuditMirror => audit_mirror::validate(params, cfg),
        JobKind::SwrShareAudit => swr_share_audit::validate(params, cfg),
        JobKind::SwrImageSync => swr_image_sync::validate(params, cfg),
    }
}

/// The `{tenant_id}` and `{project_id}` of Artifact paths, or an error naming the missing key.
pub fn artifact_scope(cfg: &Config) -> Result<api::artifact::Scope, ParamError> {
    let need = |v: &Option<String>, key: &str| {
        v.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
            ParamError(format!(
                "this job kind calls CodeArts Artifact, which needs `{key}` in the configuration"
            ))
        })
    };
    Ok(api::artifact::Scope {
        tenant_id: need(&cfg.cloud.domain_id, "cloud.domain_id")?,
        project_id: need(&cfg.cloud.codearts_project_id, "cloud.codearts_project_id")?,
    })
}

/// Every active Artifact repository, all pages of the listing.
pub async fn active_repositories(
    ctx: &Ctx,
    scope: &api::artifact::Scope,
) -> Result<Vec<api::artifact::Repository>, RunError> {
    const PAGE: u32 = 100;
    let mut repos = Vec::new();
    let mut page = 1;
    loop {
        let got = ctx
            .api
            .list_repositories(scope, false, page, PAGE)
            .await?
            .result;
        let n = got.repositories.len();
        repos.extend(
            got.repositories
                .into_iter()
                .filter(|r| r.status.as_deref().is_none_or(|s| s == "active")),
        );
        if n < PAGE as usize || i64::from(page) * i64::from(PAGE) >= got.total {
            break;
        }
        page += 1;
    }
    Ok(repos)
}

/// What a job run needs.
#[derive(Clone)]
pub struct Ctx {
    pub api: api::Client,
    pub config: Arc<Config>,
    pub store: Store,
}

/// How a run ended, short of an API error.
#[derive(Clone, Debug)]
pub enum Step {
    /// Done; the job succeeded.
    Done {
        jid: Option<String>,
        trace_id: Option<String>,
        result: Value,
    },
    /// The remote work started; look again after `after` (no worker is held meanwhile).
    Follow {
        jid: Option<String>,
        checkpoint: Value,
        after: Duration,
    },
    /// The remote work itself failed (e.g. the sync ended in failure): final, no retry.
    Fail { error: ErrorInfo, result: Value },
}

/// Runs (or resumes, from its checkpoint) one claimed job.
pub async fn run(ctx: &Ctx, job: &JobRow) -> Result<Step, RunError> {
    let kind = JobKind::parse(&job.kind)
        .ok_or_else(|| RunError::Invalid(format!("unknown job kind {:?}", job.kind)))?;
    match kind {
        JobKind::RemoteMirror => remote_mirror::run(ctx, job).await,
        JobKind::PurgeRecycleBin => purge_recycle_bin::run(ctx, job).await,
        JobKind::StorageSnapshot => storage_snapshot::run(ctx, job).await,
        JobKind::AuditMirror => audit_mirror::run(ctx, job).await,
        JobKind::SwrShareAudit => swr_share_audit::run(ctx, job).await,
        JobKind::SwrImageSync => swr_image_sync::run(ctx, job).await,
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Api(#[from] api::Error),
    /// The stored job cannot run (its parameters no longer validate, say); final.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The attempt exceeded its timeout and was aborted; retried like a transient failure.
    #[error("the attempt exceeded its timeout of {} and was aborted", crate::config::show_duration(*.0))]
    TimedOut(Duration),
}

impl RunError {
    /// True when another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RunError::Api(e) => e.is_retryable(),
            RunError::Invalid(_) => false,
            RunError::Store(e) => e.is_transient(),
            RunError::TimedOut(_) => true,
        }
    }

    /// The wait the API asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RunError::Api(e) => e.retry_after(),
            _ => None,
        }
    }

    /// The details kept on the job and the attempt.
    pub fn info(&self) -> ErrorInfo {
        match self {
            RunError::Api(e) => ErrorInfo {
                http_status: e.http_status(),
                error_code: Some(e.error_code()),
                error_msg: e.error_msg(),
                trace_id: e.trace_id(),
            },
            RunError::Invalid(msg) => ErrorInfo {
                error_code: Some("INVALID_JOB".into()),
                error_msg: msg.clone(),
                ..Default::default()
            },
            RunError::Store(e) => ErrorInfo {
                error_code: Some("STORE".into()),
                error_msg: e.to_string(),
                ..Default::default()
            },
            RunError::TimedOut(_) => ErrorInfo {
                error_code: Some(crate::store::settle::TIMED_OUT.into()),
                error_msg: self.to_string(),
                ..Default::default()
            },
        }
    }
}
