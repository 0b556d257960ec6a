//! `remote_mirror`: start a CodeArts Repo remote-mirror sync, record its `jid`, then follow the
//! repository's mirror state until the sync shows finished, and record the sync's own outcome.
//!
//! No API looks a `jid` up, so the outcome is read from the mirror state, compared with a
//! baseline taken just before the start: `last_successful_update_at` moving means success;
//! `last_update_at` moving with `number_of_failures` up or a new `last_error` means failure.
//! The raw `update_status` is kept. Past `follow_timeout` the outcome is recorded as unknown,
//! not guessed. Following is persisted in the job's checkpoint: each poll is a short claim, so
//! no worker waits, and a restart resumes where it was.

use std::time::Duration;

use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{parse_params, Ctx, ParamError, RunError, Step};
use crate::api::repo::{MirrorState, StartMirror};
use crate::config::Config;
use crate::now_ms;
use crate::store::{ErrorInfo, JobRow};

/// The highest repository id the API accepts.
pub const MAX_REPOSITORY_ID: u32 = 2_147_483_647;

/// Parameters of a `remote_mirror` job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The CodeArts Repo repository (1..=2147483647).
    pub repository_id: u32,
    #[serde(default)]
    pub force_fetch: Option<bool>,
    #[serde(default)]
    pub endpoint_uuid: Option<String>,
    /// Name of a credential profile in the config; its username/password are sent base64-encoded.
    #[serde(default)]
    pub credential: Option<String>,
    /// Follow the sync to its outcome (default true).
    #[serde(default = "yes")]
    pub follow: bool,
    /// How long to follow before recording the outcome as unknown (default from the config).
    #[serde(default, with = "humantime_serde")]
    pub follow_timeout: Option<Duration>,
}

fn yes() -> bool {
    true
}

/// Progress kept between polls.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    /// The sync's jid; `None` when the start's answer was lost (the sync was found through the
    /// mirror state instead, and no API looks a jid up).
    jid: Option<String>,
    started_at: i64,
    deadline: i64,
    baseline: MirrorState,
    polls: u64,
    /// True when the start's answer was lost and this sync was found in the mirror state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    answer_lost: bool,
}

/// Written just before the start call, so that an attempt whose answer never arrives (a
/// timeout, a reset, a shutdown or a crash in the middle) leaves a trace for the next one.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Starting {
    /// When the start was sent.
    at: i64,
    /// The mirror state read just before it.
    baseline: MirrorState,
}

/// What a job's checkpoint holds.
enum Progress {
    /// A start was sent and no answer says what became of it.
    Starting(Starting),
    /// A sync is being followed.
    Following(Checkpoint),
}

impl Progress {
    fn from_value(v: &Value) -> Result<Progress, RunError> {
        let unreadable =
            |e: serde_json::Error| RunError::Invalid(format!("unreadable checkpoint: {e}"));
        match v.get("starting") {
            Some(s) => Ok(Progress::Starting(
                serde_json::from_value(s.clone()).map_err(unreadable)?,
            )),
            None => Ok(Progress::Following(
                serde_json::from_value(v.clone()).map_err(unreadable)?,
            )),
        }
    }
}

/// The longest `follow_timeout` accepted: a sync still unfinished after a week is not followed.
pub const MAX_FOLLOW_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses and checks parameters against the configuration.
pub fn parse(params: &Value, cfg: &Config) -> Result<Params, ParamError> {
    let p: Params = parse_params(params)?;
    if p.repository_id == 0 || p.repository_id > MAX_REPOSITORY_ID {
        return Err(ParamError(format!(
            "parameter `repository_id`: {} is out of range 1..={MAX_REPOSITORY_ID}",
            p.repository_id
        )));
    }
    if let Some(name) = &p.credential {
        if !cfg.credentials.contains_key(name) {
            let known: Vec<&str> = cfg.credentials.keys().map(String::as_str).collect();
            return Err(ParamError(format!(
                "parameter `credential`: no credential profile {name:?} in the config (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    check_follow_timeout(p.follow_timeout)?;
    Ok(p)
}

/// Checks a job's `follow_timeout` parameter: above zero, at most [`MAX_FOLLOW_TIMEOUT`].
pub fn check_follow_timeout(t: Option<Duration>) -> Result<(), ParamError> {
    if t.is_some_and(|t| t.is_zero()) {
        return Err(ParamError(
            "parameter `follow_timeout`: must be above zero".into(),
        ));
    }
    if let Some(t) = t.filter(|t| *t > MAX_FOLLOW_TIMEOUT) {
        return Err(ParamError(format!(
            "parameter `follow_timeout`: {} is above the maximum of {}",
            crate::config::show_duration(t),
            crate::config::show_duration(MAX_FOLLOW_TIMEOUT)
        )));
    }
    Ok(())
}

/// Validates parameters at ingress.
pub fn validate(params: &Value, cfg: &Config) -> Result<(), ParamError> {
    parse(params, cfg).map(|_| ())
}

/// Starts the sync, or polls it when the job already holds a checkpoint.
///
/// At most one sync per start, even when an answer is lost: the start is preceded by a
/// `starting` checkpoint. An attempt that finds one did not learn what became of the previous
/// start, so it reads the mirror state first and, if the state moved since the baseline taken
/// before that start (a timestamp, the failure counter, the last error or `update_status`
/// changed), follows that sync instead of starting another. Only a state that shows nothing at
/// all leads to a new start.
pub async fn run(ctx: &Ctx, job: &JobRow) -> Result<Step, RunError> {
    let p = parse(&job.params, &ctx.config).map_err(|e| RunError::Invalid(e.0))?;
    let poll_every = ctx.config.remote_mirror.poll_interval;
    let timeout = p
        .follow_timeout
        .unwrap_or(ctx.config.remote_mirror.follow_timeout);
    let progress = match job.checkpoint.as_ref().filter(|v| !v.is_null()) {
        Some(v) => Some(Progress::from_value(v)?),
        None => None,
    };
    let baseline = match progress {
        Some(Progress::Following(cp)) => return poll(ctx, &p, cp, poll_every).await,
        Some(Progress::Starting(prev)) => {
            let state = ctx.api.show_mirror(p.repository_id).await?;
            if sync_began(&prev.baseline, &state) {
                tracing::warn!(
                    repository_id = p.repository_id,
                    "the previous start's answer was lost and the mirror state shows a sync \
                     since: following it instead of starting another (its jid is unknown)"
                );
                if !p.follow {
                    return Ok(Step::Done {
                        jid: None,
                        trace_id: None,
                        result: json!({"jid": null, "sync": "not_followed", "start_answer": "lost"}),
                    });
                }
                let cp = Checkpoint {
                    jid: None,
                    started_at: prev.at,
                    deadline: prev.at + timeout.as_millis() as i64,
                    baseline: prev.baseline,
                    polls: 0,
                    answer_lost: true,
                };
                return Ok(judge(cp, state, poll_every));
            }
            tracing::info!(
                repository_id = p.repository_id,
                "the previous start's answer was lost and the mirror state shows no sync since: \
                 starting one"
            );
            state
        }
        None => ctx.api.show_mirror(p.repository_id).await?,
    };
    let body = start_body(ctx, &p)?;
    let started_at = now_ms();
    let starting = Starting {
        at: started_at,
        baseline: baseline.clone(),
    };
    ctx.store
        .checkpoint(job.id, Some(&json!({ "starting": starting })), None)
        .await?;
    let started = match ctx.api.start_mirror(p.repository_id, &body).await {
        Ok(started) => started,
        Err(e) => {
            if !e.outcome_unknown() {
                // An answer says the service did not start a sync: nothing to look for later.
                ctx.store.checkpoint(job.id, None, None).await?;
            }
            return Err(e.into());
        }
    };
    tracing::info!(jid = %started.jid, repository_id = p.repository_id, "remote mirror sync started");
    if !p.follow {
        return Ok(Step::Done {
            jid: Some(started.jid.clone()),
            trace_id: started.request_id,
            result: json!({"jid": started.jid, "sync": "not_followed"}),
        });
    }
    let cp = Checkpoint {
        jid: Some(started.jid.clone()),
        started_at,
        deadline: started_at + timeout.as_millis() as i64,
        baseline,
        polls: 0,
        answer_lost: false,
    };
    Ok(Step::Follow {
        jid: Some(started.jid),
        checkpoint: serde_json::to_value(&cp).unwrap_or(Value::Null),
        after: poll_every,
    })
}

/// True when the mirror state moved since `baseline` in any way: evidence that a sync began.
fn sync_began(baseline: &MirrorState, now: &MirrorState) -> bool {
    now.last_update_at != baseline.last_update_at
        || now.last_successful_update_at != baseline.last_successful_update_at
        || now.number_of_failures != baseline.number_of_failures
        || now.last_error != baseline.last_error
        || now.update_status != baseline.update_status
}

fn start_body(ctx: &Ctx, p: &Params) -> Result<StartMirror, RunError> {
    let mut body = StartMirror {
        endpoint_uuid: p.endpoint_uuid.clone(),
        force_fetch: p.force_fetch,
        ..Default::default()
    };
    if let Some(name) = &p.credential {
        let cfg = &ctx.config;
        let profile = cfg
            .credentials
            .get(name)
            .ok_or_else(|| RunError::Invalid(format!("no credential profile {name:?}")))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let user = profile
            .username
            .resolve(&format!("credentials.{name}.username"), &cfg.base_dir)
            .map_err(|e| RunError::Invalid(e.to_string()))?;
        let pass = profile
            .password
            .resolve(&format!("credentials.{name}.password"), &cfg.base_dir)
            .map_err(|e| RunError::Invalid(e.to_string()))?;
        body.username = Some(b64.encode(user.expose_secret()));
        body.password = Some(b64.encode(pass.expose_secret()));
    }
    Ok(body)
}

async fn poll(
    ctx: &Ctx,
    p: &Params,
    cp: Checkpoint,
    poll_every: Duration,
) -> Result<Step, RunError> {
    // A transient failure here costs a poll, not an attempt: the engine polls again later.
    let state = ctx.api.show_mirror(p.repository_id).await?;
    Ok(judge(cp, state, poll_every))
}

/// Decides from one reading of the mirror state: done, failed, unknown past the deadline, or
/// look again after `poll_every`.
fn judge(mut cp: Checkpoint, state: MirrorState, poll_every: Duration) -> Step {
    cp.polls += 1;
    let result = |sync: &str| {
        let mut r = json!({
            "jid": cp.jid,
            "sync": sync,
            "update_status": state.update_status,
            "last_update_at": state.last_update_at,
            "last_successful_update_at": state.last_successful_update_at,
            "number_of_failures": state.number_of_failures,
            "last_error": state.last_error,
            "polls": cp.polls,
        });
        if cp.answer_lost {
            r["start_answer"] = json!("lost");
        }
        r
    };
    let jid = cp.jid.as_deref().unwrap_or("unknown");
    match decide(&cp.baseline, &state) {
        Outcome::Succeeded => {
            tracing::info!(jid, update_status = ?state.update_status, "remote mirror sync succeeded");
            Step::Done {
                jid: cp.jid.clone(),
                trace_id: None,
                result: result("succeeded"),
            }
        }
        Outcome::Failed => {
            let msg = state
                .last_error
                .clone()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "sync failed (update_status {:?})",
                        state.update_status.as_deref().unwrap_or("")
                    )
                });
            tracing::warn!(jid, error = %msg, "remote mirror sync failed");
            Step::Fail {
                error: ErrorInfo {
                    error_code: Some("SYNC_FAILED".into()),
                    error_msg: msg,
                    ..Default::default()
                },
                result: result("failed"),
            }
        }
        Outcome::Pending if now_ms() >= cp.deadline => {
            let secs = (cp.deadline - cp.started_at) / 1000;
            Step::Fail {
                error: ErrorInfo {
                    error_code: Some("SYNC_OUTCOME_UNKNOWN".into()),
                    error_msg: format!(
                        "the mirror state showed no finished sync within follow_timeout ({secs}s); the sync's outcome is unknown"
                    ),
                    ..Default::default()
                },
                result: result("unknown"),
            }
        }
        Outcome::Pending => Step::Follow {
            jid: cp.jid.clone(),
            checkpoint: serde_json::to_value(&cp).unwrap_or(Value::Null),
            after: poll_every,
        },
    }
}

/// What the mirror state says about the sync started after `baseline` was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Pending,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|v| !v.is_empty())
}

/// Decides by timestamps and counters, never by the undocumented `update_status`.
pub fn decide(baseline: &MirrorState, now: &MirrorState) -> Outcome {
    let success_moved = non_empty(&now.last_successful_update_at).is_some()
        && now.last_successful_update_at != baseline.last_successful_update_at;
    if success_moved {
        return Outcome::Succeeded;
    }
    let update_moved =
        non_empty(&now.last_update_at).is_some() && now.last_update_at != baseline.last_update_at;
    let failures_up =
        now.number_of_failures.unwrap_or(0) > baseline.number_of_failures.unwrap_or(0);
    let new_error = non_empty(&now.last_error).is_some() && now.last_error != baseline.last_error;
    if update_moved && (failures_up || new_error) {
        return Outcome::Failed;
    }
    Outcome::Pending
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(last: &str, ok: &str, failures: i64, err: &str) -> MirrorState {
        MirrorState {
            update_status: Some("x".into()),
            last_update_at: Some(last.into()),
            last_successful_update_at: Some(ok.into()),
            number_of_failures: Some(failures),
            last_error: Some(err.into()),
            mirroring_enabled: Some(true),
        }
    }

    #[test]
    fn success_is_the_successful_timestamp_moving() {
        let b = state("t1", "t1", 0, "");
        assert_eq!(decide(&b, &state("t2", "t2", 0, "")), Outcome::Succeeded);
    }

    #[test]
    fn failure_needs_the_update_timestamp_and_a_counter_or_error() {
        let b = state("t1", "t1", 2, "old");
        assert_eq!(decide(&b, &state("t2", "t1", 3, "old")), Outcome::Failed);
        assert_eq!(decide(&b, &state("t2", "t1", 2, "new")), Outcome::Failed);
        // The update time moved but nothing says how: still pending.
        assert_eq!(decide(&b, &state("t2", "t1", 2, "old")), Outcome::Pending);
        assert_eq!(decide(&b, &b), Outcome::Pending);
    }

    #[test]
    fn a_never_synced_repository_counts_its_first_success() {
        let b = state("", "", 0, "");
        assert_eq!(decide(&b, &state("t1", "t1", 0, "")), Outcome::Succeeded);
    }
}
