//! `swr_image_sync`: copy image tags of one SWR repository to another region
//! (`create_manual_image_sync_repo`) and follow every tag's sync job (`show_sync_job`) to its
//! end. `success` and `existed` count as done; `failed`, `timeout` and `cancel` fail the job,
//! naming the tag and the status. Each tag's outcome and sync job id is recorded in the result;
//! the sync job ids are the job's jid (comma-separated).
//!
//! `tags` is a list, or one glob matched against the repository's tags (all pages of
//! `list_repository_tags`, walked until it settles). A replay (`jobs retry`) of a job sends only
//! the tags its predecessor did not finish or start: `success`/`existed` are carried over, and a
//! sync job still unfinished there is followed (see [`replay::carry_over`]).
//!
//! Progress is the job's checkpoint: one state per tag. Following is a short claim per poll, so
//! no worker waits; past the follow timeout (the job's `follow_timeout`, else
//! `swr.follow_timeout`) the unfinished tags are recorded as unknown.
//!
//! Sync jobs are found by id: before a start the newest sync job id of the repository is read
//! (the baseline), and a tag's sync job is the newest one for that tag and target above it. A
//! start whose answer was lost (a `starting` record left in the checkpoint) is never repeated
//! blindly: the sync jobs above that start's baseline are looked at first, and only tags with
//! none are sent again.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::swr_names::{check_namespace, check_repository, check_tag, check_tag_glob};
use super::{parse_params, Ctx, ParamError, RunError, Step};
use crate::api::swr::{ManualSync, SyncJob};
use crate::config::Config;
use crate::now_ms;
use crate::store::{ErrorInfo, JobRow};

mod replay;

/// Parameters of a `swr_image_sync` job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The SWR organization holding the repository.
    pub namespace: String,
    /// The repository (may hold `/`-separated path parts).
    pub repository: String,
    /// A list of tags, or one glob string matched against the repository's tags.
    pub tags: Value,
    /// The target region; one of `swr.sync_regions`.
    pub remote_region_id: String,
    /// The organization in the target region.
    pub remote_namespace: String,
    /// Overwrite a tag that already exists at the target (default false: it is `existed`).
    #[serde(default, rename = "override")]
    pub override_existing: bool,
    /// How long to follow before recording the unfinished tags as unknown (default from the
    /// config's `swr.follow_timeout`).
    #[serde(default, with = "humantime_serde")]
    pub follow_timeout: Option<Duration>,
}

/// What `tags` asks for.
#[derive(Debug, Clone)]
pub enum TagSpec {
    List(Vec<String>),
    Glob(String, globset::GlobMatcher),
}

/// The most tags one job may name.
pub const MAX_TAGS: usize = 1000;

/// Parses and checks parameters against the configuration.
pub fn parse(params: &Value, cfg: &Config) -> Result<(Params, TagSpec), ParamError> {
    let p: Params = parse_params(params)?;
    let bad = |key: &str, why: String| ParamError(format!("parameter `{key}`: {why}"));
    check_namespace(&p.namespace).map_err(|e| bad("namespace", e))?;
    check_repository(&p.repository).map_err(|e| bad("repository", e))?;
    check_namespace(&p.remote_namespace).map_err(|e| bad("remote_namespace", e))?;
    super::remote_mirror::check_follow_timeout(p.follow_timeout)?;
    if !cfg.swr.sync_regions.contains(&p.remote_region_id) {
        return Err(bad(
            "remote_region_id",
            format!(
                "{:?} is not one of the configured swr.sync_regions ({})",
                p.remote_region_id,
                if cfg.swr.sync_regions.is_empty() {
                    "none configured".to_string()
                } else {
                    cfg.swr.sync_regions.join(", ")
                }
            ),
        ));
    }
    let spec = match &p.tags {
        Value::String(glob) => TagSpec::Glob(
            glob.clone(),
            check_tag_glob(glob).map_err(|e| bad("tags", e))?,
        ),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(bad("tags", "must name at least one tag".into()));
            }
            if items.len() > MAX_TAGS {
                return Err(bad(
                    "tags",
                    format!("{} tags, above the maximum of {MAX_TAGS}", items.len()),
                ));
            }
            let mut tags: Vec<String> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Some(tag) = item.as_str() else {
                    return Err(bad(&format!("tags[{i}]"), "expected a string".into()));
                };
                check_tag(tag).map_err(|e| bad(&format!("tags[{i}]"), e))?;
                if tags.iter().any(|t| t == tag) {
                    return Err(bad(
                        &format!("tags[{i}]"),
                        format!("{tag:?} is listed twice"),
                    ));
                }
                tags.push(tag.to_string());
            }
            TagSpec::List(tags)
        }
        _ => {
            return Err(bad(
                "tags",
                "expected a list of tags or one glob string such as \"v1.*\"".into(),
            ))
        }
    };
    Ok((p, spec))
}

/// Validates parameters at ingress.
pub fn validate(params: &Value, cfg: &Config) -> Result<(), ParamError> {
    parse(params, cfg).map(|_| ())
}

/// The lane: one sync per repository and target at a time.
pub fn lane(params: &Value) -> Option<String> {
    let s = |k: &str| params.get(k).and_then(Value::as_str);
    Some(format!(
        "swr_image_sync:{}/{}:{}:{}",
        s("namespace")?,
        s("repository")?,
        s("remote_region_id")?,
        s("remote_namespace")?
    ))
}

/// SWR statuses that end a sync job well, and badly.
const DONE: [&str; 2] = ["success", "existed"];
const FAILED: [&str; 3] = ["failed", "timeout", "cancel"];

/// One tag's progress.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TagState {
    /// Sent in a start whose answer arrived (or found in the sync jobs after a lost answer).
    #[serde(default)]
    sent: bool,
    /// The newest sync job id before the start that sent it.
    #[serde(default)]
    baseline: i64,
    #[serde(default)]
    sync_job_id: Option<i64>,
    /// The last status seen (SWR's word).
    #[serde(default)]
    status: Option<String>,
    /// Finished by the job this one replays (`success`/`existed` there): not sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    carried_from: Option<i64>,
    /// Started by the job this one replays and unfinished there: its sync job is followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    followed_from: Option<i64>,
}

impl TagState {
    fn is_final(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| DONE.contains(&s) || FAILED.contains(&s))
    }

    fn outcome(&self, timed_out: bool) -> &'static str {
        match self.status.as_deref() {
            Some("success") => "succeeded",
            Some("existed") => "existed",
            Some(s) if FAILED.contains(&s) => "failed",
            _ if timed_out => "unknown",
            _ if self.sent => "pending",
            _ => "not_started",
        }
    }
}

/// A start sent and not answered yet; left in the checkpoint if the answer is lost.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Starting {
    at: i64,
    baseline: i64,
    tags: Vec<String>,
}

/// The job's checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    tags: BTreeMap<String, TagState>,
    /// When the first start was sent (0: not yet), and the follow deadline from it.
    #[serde(default)]
    started_at: i64,
    #[serde(default)]
    deadline: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    starting: Option<Starting>,
    #[serde(default)]
    polls: u64,
    /// A start's answer was lost and its sync jobs were found by looking.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    answer_lost: bool,
    /// What the last start answered (an array of strings the SDK leaves undescribed).
    #[serde(default)]
    start_answer: Vec<String>,
}

impl Checkpoint {
    /// This job's own sync job ids (not the carried ones), comma-separated.
    fn jid(&self) -> Option<String> {
        let ids: Vec<String> = self
            .tags
            .values()
            .filter(|t| t.carried_from.is_none())
            .filter_map(|t| t.sync_job_id.map(|i| i.to_string()))
            .collect();
        (!ids.is_empty()).then(|| ids.join(","))
    }

    fn value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Starts the sync, or follows it when the job already holds a checkpoint.
pub async fn run(ctx: &Ctx, job: &JobRow) -> Result<Step, RunError> {
    let (p, spec) = parse(&job.params, &ctx.config).map_err(|e| RunError::Invalid(e.0))?;
    let poll_every = ctx.config.swr.poll_interval;
    let mut cp = match job.checkpoint.as_ref().filter(|v| !v.is_null()) {
        Some(v) => serde_json::from_value::<Checkpoint>(v.clone())
            .map_err(|e| RunError::Invalid(format!("unreadable checkpoint: {e}")))?,
        None => match init(ctx, job, &p, &spec).await? {
            Ok(cp) => cp,
            Err(step) => return Ok(step),
        },
    };
    if let Some(st) = cp.starting.take() {
        recover(ctx, &p, &mut cp, &st).await?;
    }
    let unsent: Vec<String> = cp
        .tags
        .iter()
        .filter(|(_, t)| !t.sent && t.carried_from.is_none() && t.status.is_none())
        .map(|(k, _)| k.clone())
        .collect();
    if !unsent.is_empty() {
        start(ctx, job, &p, &mut cp, unsent).await?;
        return Ok(Step::Follow {
            jid: cp.jid(),
            checkpoint: cp.value(),
            after: poll_every,
        });
    }
    if cp.tags.values().any(|t| t.sent && !t.is_final()) {
        // A transient failure here costs a poll, not an attempt: the engine polls again later.
        look(ctx, &p, &mut cp, None).await?;
        cp.polls += 1;
    }
    judge(ctx, job, &p, cp, poll_every).await
}

/// The first run: resolves the tags and carries over what the replayed job finished.
async fn init(
    ctx: &Ctx,
    job: &JobRow,
    p: &Params,
    spec: &TagSpec,
) -> Result<Result<Checkpoint, Step>, RunError> {
    let tags = match spec {
        TagSpec::List(tags) => tags.clone(),
        TagSpec::Glob(glob, matcher) => {
            let (all, matched) = matching_tags(ctx, p, matcher).await?;
            if matched.is_empty() {
                return Ok(Err(Step::Fail {
                    error: ErrorInfo {
                        error_code: Some("NO_MATCHING_TAGS".into()),
                        error_msg: format!(
                            "no tag of {}/{} matches {glob:?} ({all} tags listed)",
                            p.namespace, p.repository
                        ),
                        ..Default::default()
                    },
                    result: json!({"tags": {}, "glob": glob, "listed": all}),
                }));
            }
            matched
        }
    };
    let mut cp = Checkpoint::default();
    for t in tags {
        cp.tags.insert(t, TagState::default());
    }
    if let Some(prev_id) = job.retry_of {
        replay::carry_over(ctx, prev_id, &mut cp).await?;
        if cp.starting.is_some() || cp.tags.values().any(|t| t.followed_from.is_some()) {
            let now = now_ms();
            cp.started_at = now;
            cp.deadline = now + follow_timeout(ctx, p).as_millis() as i64;
        }
    }
    Ok(Ok(cp))
}

/// The follow timeout of this job: its own parameter, or the config's.
fn follow_timeout(ctx: &Ctx, p: &Params) -> Duration {
    p.follow_timeout.unwrap_or(ctx.config.swr.follow_timeout)
}

/// Every tag of the repository (all pages, walked until it settles) and those `matcher` takes.
async fn matching_tags(
    ctx: &Ctx,
    p: &Params,
    matcher: &globset::GlobMatcher,
) -> Result<(usize, Vec<String>), RunError> {
    let all = ctx.api.all_image_tags(&p.namespace, &p.repository).await?;
    let matched = all
        .iter()
        .filter(|t| matcher.is_match(t.as_str()))
        .cloned()
        .collect();
    Ok((all.len(), matched))
}

/// Sends one start for `tags`, leaving a `starting` record while the answer is outstanding.
async fn start(
    ctx: &Ctx,
    job: &JobRow,
    p: &Params,
    cp: &mut Checkpoint,
    tags: Vec<String>,
) -> Result<(), RunError> {
    let page = ctx
        .api
        .list_sync_jobs(&p.namespace, &p.repository, 0, 1)
        .await?;
    let baseline = page.items.iter().map(|j| j.id).max().unwrap_or(0);
    let now = now_ms();
    if cp.started_at == 0 {
        cp.started_at = now;
        cp.deadline = now + follow_timeout(ctx, p).as_millis() as i64;
    }
    cp.starting = Some(Starting {
        at: now,
        baseline,
        tags: tags.clone(),
    });
    ctx.store
        .checkpoint(job.id, Some(&cp.value()), None)
        .await?;
    let body = ManualSync {
        image_tag: tags.clone(),
        override_existing: p.override_existing,
        remote_namespace: p.remote_namespace.clone(),
        remote_region_id: p.remote_region_id.clone(),
    };
    match ctx
        .api
        .start_image_sync(&p.namespace, &p.repository, &body)
        .await
    {
        Ok(answer) => {
            tracing::info!(
                namespace = %p.namespace,
                repository = %p.repository,
                tags = tags.len(),
                remote_region_id = %p.remote_region_id,
                "image sync started"
            );
            cp.starting = None;
            cp.start_answer = answer;
            for t in &tags {
                if let Some(s) = cp.tags.get_mut(t) {
                    s.sent = true;
                    s.baseline = baseline;
                }
            }
            Ok(())
        }
        Err(e) => {
            if !e.outcome_unknown() {
                // An answer says nothing was started: nothing to look for later.
                cp.starting = None;
                ctx.store
                    .checkpoint(job.id, Some(&cp.value()), None)
                    .await?;
            }
            Err(e.into())
        }
    }
}

/// After a lost answer: the tags of that start that have a sync job above its baseline were
/// started, and are followed; the others are sent again.
async fn recover(
    ctx: &Ctx,
    p: &Params,
    cp: &mut Checkpoint,
    st: &Starting,
) -> Result<(), RunError> {
    for t in &st.tags {
        if let Some(s) = cp.tags.get_mut(t) {
            s.baseline = st.baseline;
        }
    }
    look(ctx, p, cp, Some(&st.tags)).await?;
    let mut found = 0;
    for t in &st.tags {
        if let Some(s) = cp.tags.get_mut(t) {
            if s.sync_job_id.is_some() {
                s.sent = true;
                found += 1;
            }
        }
    }
    tracing::warn!(
        namespace = %p.namespace,
        repository = %p.repository,
        found,
        sent_again = st.tags.len() - found,
        "the previous start's answer was lost: following the sync jobs it made, sending the \
         tags without one again"
    );
    if found > 0 {
        cp.answer_lost = true;
    }
    Ok(())
}

/// Reads the repository's sync jobs, newest first, down to the lowest baseline of the tags
/// looked for (`only`, or every sent, unfinished tag), and records each tag's newest sync job
/// for this target above its baseline.
async fn look(
    ctx: &Ctx,
    p: &Params,
    cp: &mut Checkpoint,
    only: Option<&Vec<String>>,
) -> Result<(), RunError> {
    const PAGE: u64 = 100;
    const MAX_PAGES: u64 = 1000;
    let wanted: Vec<String> = match only {
        Some(tags) => tags.clone(),
        None => cp
            .tags
            .iter()
            .filter(|(_, t)| t.sent && !t.is_final())
            .map(|(k, _)| k.clone())
            .collect(),
    };
    let Some(floor) = wanted
        .iter()
        .filter_map(|t| cp.tags.get(t).map(|s| s.baseline))
        .min()
    else {
        return Ok(());
    };
    let mut newest: BTreeMap<String, SyncJob> = BTreeMap::new();
    let mut offset = 0;
    for _ in 0..MAX_PAGES {
        let page = ctx
            .api
            .list_sync_jobs(&p.namespace, &p.repository, offset, PAGE)
            .await?;
        for j in &page.items {
            let ours = j.remote_region_id == p.remote_region_id
                && j.remote_namespace == p.remote_namespace
                && wanted.contains(&j.tag)
                && cp.tags.get(&j.tag).is_some_and(|s| j.id > s.baseline);
            if ours && newest.get(&j.tag).is_none_or(|n| j.id > n.id) {
                newest.insert(j.tag.clone(), j.clone());
            }
        }
        let reached_floor = page.items.iter().any(|j| j.id <= floor);
        if reached_floor || page.is_last(offset, PAGE) {
            break;
        }
        offset += page.items.len() as u64;
    }
    for (tag, j) in newest {
        if let Some(s) = cp.tags.get_mut(&tag) {
            s.sync_job_id = Some(j.id);
            s.status = Some(j.status);
        }
    }
    Ok(())
}

/// Done when every tag is `success` or `existed`; failed when every tag is final and one is
/// not; unknown past the deadline; otherwise look again after `poll_every`.
async fn judge(
    ctx: &Ctx,
    job: &JobRow,
    p: &Params,
    cp: Checkpoint,
    poll_every: std::time::Duration,
) -> Result<Step, RunError> {
    let all_final = cp.tags.values().all(|t| t.is_final());
    let timed_out = !all_final && now_ms() >= cp.deadline;
    if !all_final && !timed_out {
        return Ok(Step::Follow {
            jid: cp.jid(),
            checkpoint: cp.value(),
            after: poll_every,
        });
    }
    let result = result(p, &cp, timed_out);
    let failed: Vec<String> = cp
        .tags
        .iter()
        .filter(|(_, t)| t.status.as_deref().is_some_and(|s| FAILED.contains(&s)))
        .map(|(k, t)| format!("{k} ({})", t.status.as_deref().unwrap_or("")))
        .collect();
    if failed.is_empty() && !timed_out {
        tracing::info!(namespace = %p.namespace, repository = %p.repository, "image sync done");
        return Ok(Step::Done {
            jid: cp.jid(),
            trace_id: None,
            result,
        });
    }
    // A failure does not carry a jid of its own: keep this job's sync job ids on it now.
    if let Some(jid) = cp.jid() {
        ctx.store
            .checkpoint(job.id, Some(&cp.value()), Some(&jid))
            .await?;
    }
    let error = if failed.is_empty() {
        let pending: Vec<&str> = cp
            .tags
            .iter()
            .filter(|(_, t)| !t.is_final())
            .map(|(k, _)| k.as_str())
            .collect();
        let secs = (cp.deadline - cp.started_at) / 1000;
        ErrorInfo {
            error_code: Some("SYNC_OUTCOME_UNKNOWN".into()),
            error_msg: format!(
                "{} of {} tags did not finish within follow_timeout ({secs}s), their outcome is \
                 unknown: {}",
                pending.len(),
                cp.tags.len(),
                pending.join(", ")
            ),
            ..Default::default()
        }
    } else {
        ErrorInfo {
            error_code: Some("SYNC_FAILED".into()),
            error_msg: format!(
                "{} of {} tags failed to sync to {}/{}: {}",
                failed.len(),
                cp.tags.len(),
                p.remote_region_id,
                p.remote_namespace,
                failed.join(", ")
            ),
            ..Default::default()
        }
    };
    tracing::warn!(namespace = %p.namespace, repository = %p.repository, error = %error.error_msg, "image sync failed");
    Ok(Step::Fail { error, result })
}

/// The job's result: every tag's outcome, and the lists a reader looks for.
fn result(p: &Params, cp: &Checkpoint, timed_out: bool) -> Value {
    let mut tags = serde_json::Map::new();
    let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, t) in &cp.tags {
        let outcome = t.outcome(timed_out);
        by.entry(outcome).or_default().push(name);
        let mut v = json!({"outcome": outcome, "status": t.status, "sync_job_id": t.sync_job_id});
        if let Some(from) = t.carried_from {
            v["carried_from"] = json!(from);
        }
        if let Some(from) = t.followed_from {
            v["followed_from"] = json!(from);
        }
        tags.insert(name.clone(), v);
    }
    let list = |k: &str| json!(by.get(k).cloned().unwrap_or_default());
    let mut r = json!({
        "namespace": p.namespace,
        "repository": p.repository,
        "remote_region_id": p.remote_region_id,
        "remote_namespace": p.remote_namespace,
        "override": p.override_existing,
        "tags": tags,
        "succeeded": list("succeeded"),
        "existed": list("existed"),
        "failed": list("failed"),
        "unknown": list("unknown"),
        "carried": cp.tags.iter().filter(|(_, t)| t.carried_from.is_some()).map(|(k, _)| k).collect::<Vec<_>>(),
        "followed": cp.tags.iter().filter(|(_, t)| t.followed_from.is_some()).map(|(k, _)| k).collect::<Vec<_>>(),
        "sync_job_ids": cp.tags.values().filter(|t| t.carried_from.is_none()).filter_map(|t| t.sync_job_id).collect::<Vec<_>>(),
        "polls": cp.polls,
    });
    if cp.answer_lost {
        r["start_answer"] = json!("lost");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(sent: bool, status: Option<&str>) -> TagState {
        TagState {
            sent,
            status: status.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn outcomes_follow_swr_statuses() {
        assert_eq!(state(true, Some("success")).outcome(false), "succeeded");
        assert_eq!(state(true, Some("existed")).outcome(false), "existed");
        for s in FAILED {
            assert_eq!(state(true, Some(s)).outcome(false), "failed");
            assert!(state(true, Some(s)).is_final());
        }
        assert_eq!(state(true, Some("running")).outcome(false), "pending");
        assert!(!state(true, Some("waiting")).is_final());
        assert_eq!(state(true, Some("running")).outcome(true), "unknown");
        assert_eq!(state(false, None).outcome(false), "not_started");
    }

    #[test]
    fn the_lane_is_the_repository_and_the_target() {
        let p = json!({"namespace": "team", "repository": "a/b", "tags": ["v1"],
                       "remote_region_id": "ap-southeast-1", "remote_namespace": "dr"});
        assert_eq!(
            lane(&p).as_deref(),
            Some("swr_image_sync:team/a/b:ap-southeast-1:dr")
        );
    }
}
