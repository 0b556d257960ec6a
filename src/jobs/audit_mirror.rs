//! `audit_mirror`: copy Artifact audit logs into the local archive, one stream per (module,
//! repository), complete and without duplicates even while new records arrive.
//!
//! The log is paged newest first, so records that arrive during a walk push older ones to later
//! pages: a walk may see a record twice (the archive keeps it once, by record id) but never
//! skips one. A walk goes from page 1 down until it reaches a record that an earlier *complete*
//! walk archived (incremental, the default) or the end of the log (`full`, or a stream never
//! walked to its end). When a walk is over, the stream is marked complete up to its newest row;
//! if the log's `total` grew while walking, another pass from page 1 picks up what arrived, down
//! to what this walk archived. A walk interrupted by a failure or a restart resumes at the page
//! after the last one archived (each page is written with the job's checkpoint in one
//! transaction); as records only arrive at the newest end, resuming there skips nothing.
//! While walking to the end, the next page is fetched while the current one is written.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{artifact_scope, parse_params, Ctx, ParamError, RunError, Step};
use crate::api::{
    self,
    artifact::{AuditPage, Traced},
};
use crate::config::Config;
use crate::store::archive::NewRecord;
use crate::store::JobRow;

/// Page size when a job gives none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest page size a job may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Passes over one stream in one run before giving up on catching a log that keeps growing.
const MAX_PASSES: u32 = 20;
/// Modules the audit call serves.
pub const MODULES: [&str; 2] = ["file", "repository"];

/// Parameters of an `audit_mirror` job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Repository ids (default: every active repository).
    #[serde(default)]
    pub repos: Option<Vec<String>>,
    /// `file` (default) or `repository`.
    #[serde(default)]
    pub module: Option<String>,
    /// Records per page (default 100).
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Walk every page, not only down to what is archived.
    #[serde(default)]
    pub full: bool,
}

/// Parses and checks parameters against the configuration.
pub fn parse(params: &Value, cfg: &Config) -> Result<Params, ParamError> {
    let p: Params = parse_params(params)?;
    artifact_scope(cfg)?;
    if let Some(m) = &p.module {
        if !MODULES.contains(&m.as_str()) {
            return Err(ParamError(format!(
                "parameter `module`: unknown module {m:?} (known: {})",
                MODULES.join(", ")
            )));
        }
    }
    if let Some(n) = p.page_size {
        if n == 0 || n > MAX_PAGE_SIZE {
            return Err(ParamError(format!(
                "parameter `page_size`: {n} is out of range 1..={MAX_PAGE_SIZE}"
            )));
        }
    }
    if let Some(repos) = &p.repos {
        if repos.is_empty() || repos.iter().any(|r| r.trim().is_empty()) {
            return Err(ParamError(
                "parameter `repos`: must list repository ids (leave it out for all)".into(),
            ));
        }
    }
    Ok(p)
}

/// Validates parameters at ingress.
pub fn validate(params: &Value, cfg: &Config) -> Result<(), ParamError> {
    parse(params, cfg).map(|_| ())
}

/// Where the walk of one stream is; kept in the job's checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct StreamProgress {
    repo: String,
    done: bool,
    /// The next page to fetch in the current pass.
    page: u32,
    pass: u32,
    /// Stop at records archived at or below this position (`None`: walk to the end).
    stop_seq: Option<i64>,
    /// `total` as page 1 of this pass reported it.
    first_total: Option<i64>,
    last_total: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    streams: Vec<StreamProgress>,
    pages: u64,
    archived: u64,
}

/// Normalises the API's `2023/10/27 15:46:19` to `2023-10-27 15:46:19` for ordering and export
/// filters; anything else is kept out of the index (the record itself is kept verbatim).
fn record_time(t: &str) -> Option<String> {
    let b = t.as_bytes();
    let shape = b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'/' || *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    shape.then(|| t.replace('/', "-"))
}

/// The fields of a record the walk needs; the record itself is kept as text.
#[derive(Deserialize)]
struct Key {
    id: Value,
    #[serde(default)]
    time: Option<String>,
}

/// Walks every stream; resumes from the checkpoint.
pub async fn run(ctx: &Ctx, job: &JobRow) -> Result<Step, RunError> {
    let p = parse(&job.params, &ctx.config).map_err(|e| RunError::Invalid(e.0))?;
    let scope = artifact_scope(&ctx.config).map_err(|e| RunError::Invalid(e.0))?;
    let module = p.module.clone().unwrap_or_else(|| "file".to_string());
    let page_size = p.page_size.unwrap_or(DEFAULT_PAGE_SIZE);

    let mut cp: Checkpoint = match &job.checkpoint {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| RunError::Invalid(format!("unreadable checkpoint: {e}")))?,
        None => {
            let repos = match &p.repos {
                Some(r) => r.clone(),
                None => super::active_repositories(ctx, &scope)
                    .await?
                    .iter()
                    .filter_map(|r| r.repo_id().map(str::to_string))
                    .collect(),
            };
            Checkpoint {
                streams: repos
                    .into_iter()
                    .map(|repo| StreamProgress {
                        repo,
                        page: 1,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }
        }
    };

    let mut last_trace = None;
    for i in 0..cp.streams.len() {
        if cp.streams[i].done {
            continue;
        }
        if cp.streams[i].pass == 0 {
            // A new stream walk: stop where the last complete walk reached, unless told `full`.
            let state = ctx.store.audit_stream(&module, &cp.streams[i].repo).await?;
            let s = &mut cp.streams[i];
            s.pass = 1;
            s.page = 1;
            s.stop_seq = (!p.full && state.complete_seq > 0).then_some(state.complete_seq);
        }
        let mut prefetched: Option<(u32, Result<Traced<AuditPage>, api::Error>)> = None;
        loop {
            let repo = cp.streams[i].repo.clone();
            let page = cp.streams[i].page;
            let answer = match prefetched.take() {
                Some((p, fetched)) if p == page => fetched?,
                _ => {
                    ctx.api
                        .audit_page(&scope, &module, &repo, page, page_size)
                        .await?
                }
            };
            last_trace = answer.trace_id;
            let total = answer.result.total;
            let raws = answer.result.records;
            let mut records = Vec::with_capacity(raws.len());
            for raw in &raws {
                let key: Key = serde_json::from_str(raw.get()).map_err(|e| {
                    RunError::Api(crate::api::Error::Decode {
                        method: "GET".into(),
                        path: format!("audit of {repo}"),
                        status: 200,
                        message: format!("an audit record has no usable id: {e}"),
                    })
                })?;
                let id = match key.id {
                    Value::String(s) if !s.is_empty() => s,
                    Value::Number(n) => n.to_string(),
                    other => {
                        return Err(RunError::Api(crate::api::Error::Decode {
                            method: "GET".into(),
                            path: format!("audit of {repo}"),
                            status: 200,
                            message: format!("an audit record's id is {other}"),
                        }))
                    }
                };
                records.push(NewRecord {
                    record_id: id,
                    record_time: key.time.as_deref().and_then(record_time),
                    raw: raw.get(),
                });
            }
            // Decide what comes next before writing, so the page and the position that follows
            // it are saved together.
            let s = &mut cp.streams[i];
            if s.first_total.is_none() {
                s.first_total = Some(total);
            }
            s.last_total = Some(total);
            let at_end = records.is_empty()
                || records.len() < page_size as usize
                || i64::from(page) * i64::from(page_size) >= total;
            s.page = page + 1;
            cp.pages += 1;
            let snapshot = serde_json::to_value(&cp).unwrap_or(Value::Null);
            let writing = std::time::Instant::now();
            // Walking to the end, the next page is certain to be wanted: fetch it while this one
            // is written. Walking down to the archive, whether it is wanted depends on this
            // write, so nothing is fetched ahead.
            let write = ctx
                .store
                .archive_page(job.id, &module, &repo, &records, &snapshot);
            let wrote = if cp.streams[i].stop_seq.is_none() && !at_end {
                let next = ctx
                    .api
                    .audit_page(&scope, &module, &repo, page + 1, page_size);
                let (wrote, next) = tokio::join!(write, next);
                prefetched = Some((page + 1, next));
                wrote?
            } else {
                write.await?
            };
            tracing::debug!(
                repo = %repo,
                page,
                records = records.len(),
                inserted = wrote.inserted,
                write_ms = writing.elapsed().as_millis() as u64,
                "audit page archived"
            );
            cp.archived += wrote.inserted as u64;
            let s = &mut cp.streams[i];
            let reached_archived = match (s.stop_seq, wrote.min_existing_seq) {
                (Some(stop), Some(min)) => min <= stop,
                _ => false,
            };
            if !(at_end || reached_archived) {
                continue;
            }
            // This pass is complete down to what was already archived.
            let complete = ctx.store.audit_mark_complete(&module, &repo).await?;
            let grew = s.last_total != s.first_total;
            if grew && s.pass < MAX_PASSES {
                tracing::info!(repo = %repo, pass = s.pass, "audit log grew during the walk; catching up from page 1");
                s.pass += 1;
                s.page = 1;
                s.stop_seq = Some(complete);
                s.first_total = None;
                s.last_total = None;
                continue;
            }
            s.done = true;
            break;
        }
        let snapshot = serde_json::to_value(&cp).unwrap_or(Value::Null);
        ctx.store.checkpoint(job.id, Some(&snapshot), None).await?;
    }
    Ok(Step::Done {
        jid: None,
        trace_id: last_trace,
        result: json!({
            "module": module,
            "streams": cp.streams.len(),
            "records_archived": cp.archived,
            "pages_fetched": cp.pages,
            "passes": cp.streams.iter().map(|s| s.pass).sum::<u32>(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_times_are_normalised_for_ordering() {
        assert_eq!(
            record_time("2023/10/27 15:46:19").as_deref(),
            Some("2023-10-27 15:46:19")
        );
        assert_eq!(
            record_time("2023-10-27 15:46:19").as_deref(),
            Some("2023-10-27 15:46:19")
        );
        assert_eq!(record_time("27/10/2023 15:46"), None);
        assert_eq!(record_time(""), None);
    }
}
