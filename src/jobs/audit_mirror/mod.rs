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
//!
//! Streams are walked in parallel (`parallel_streams`, default 8), each by one writer so its
//! hash chain stays a chain; while walking to the end, up to `prefetch_pages` (default 4) pages
//! of a stream are requested ahead of the one being written. Why pages requested ahead keep the
//! walk complete, and what a checkpoint holds while streams write concurrently: [`walk`].

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{artifact_scope, parse_params, Ctx, ParamError, RunError, Step};
use crate::config::Config;
use crate::store::JobRow;

mod walk;

/// Page size when a job gives none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest page size a job may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Passes over one stream in one run before giving up on catching a log that keeps growing.
const MAX_PASSES: u32 = 20;
/// Streams walked at once when a job gives no `parallel_streams`.
pub const DEFAULT_PARALLEL_STREAMS: u32 = 8;
/// The most streams a job may walk at once.
pub const MAX_PARALLEL_STREAMS: u32 = 32;
/// Pages requested ahead of the one being written, per stream, when a job gives no
/// `prefetch_pages`.
pub const DEFAULT_PREFETCH_PAGES: u32 = 4;
/// The most pages a job may have requested ahead, per stream.
pub const MAX_PREFETCH_PAGES: u32 = 16;
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
    /// Streams walked at once (default 8).
    #[serde(default)]
    pub parallel_streams: Option<u32>,
    /// Pages requested ahead of the one being written, per stream, while walking to the end
    /// (default 4; 0 requests one page at a time).
    #[serde(default)]
    pub prefetch_pages: Option<u32>,
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
    if let Some(n) = p.parallel_streams {
        if n == 0 || n > MAX_PARALLEL_STREAMS {
            return Err(ParamError(format!(
                "parameter `parallel_streams`: {n} is out of range 1..={MAX_PARALLEL_STREAMS}"
            )));
        }
    }
    if let Some(n) = p.prefetch_pages {
        if n > MAX_PREFETCH_PAGES {
            return Err(ParamError(format!(
                "parameter `prefetch_pages`: {n} is out of range 0..={MAX_PREFETCH_PAGES}"
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

/// Walks every stream, several at a time; resumes from the checkpoint.
pub async fn run(ctx: &Ctx, job: &JobRow) -> Result<Step, RunError> {
    let p = parse(&job.params, &ctx.config).map_err(|e| RunError::Invalid(e.0))?;
    let scope = artifact_scope(&ctx.config).map_err(|e| RunError::Invalid(e.0))?;
    let module = p.module.clone().unwrap_or_else(|| "file".to_string());
    let page_size = p.page_size.unwrap_or(DEFAULT_PAGE_SIZE);

    let cp: Checkpoint = match &job.checkpoint {
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
    let streams = cp.streams.len();
    let walk = walk::Walk {
        ctx,
        job,
        scope: &scope,
        module: &module,
        page_size,
        full: p.full,
        prefetch: p.prefetch_pages.unwrap_or(DEFAULT_PREFETCH_PAGES),
        committed: std::sync::Mutex::new(cp),
    };
    // Each stream is walked by one future (its one writer); up to `parallel_streams` of them at
    // once. The first error ends the run (the others are dropped, their requests aborted) and
    // the next attempt resumes every stream from the checkpoint.
    let parallel = p.parallel_streams.unwrap_or(DEFAULT_PARALLEL_STREAMS) as usize;
    let mut walks = futures::stream::iter(0..streams)
        .map(|i| walk::stream(&walk, i))
        .buffer_unordered(parallel.max(1));
    let mut last_trace = None;
    while let Some(trace) = walks.try_next().await? {
        last_trace = trace.or(last_trace);
    }
    drop(walks);
    let cp = walk
        .committed
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
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
