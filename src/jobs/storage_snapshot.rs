//! `storage_snapshot`: record Artifact storage usage with exact byte counts: the total
//! (`GET /cloudartifact/v5/storage`), each repository's usage (the repository detail call, whose
//! `storageSummaryInfo` counts the artifacts) and the daily trend (`storageinfo/statistic`) for
//! the project and for each repository.
//!
//! The API writes sizes for people (`"1,010.15 KB"`); [`crate::size::parse_size`] turns them into
//! bytes, and the text is kept beside the number. The trend also carries `usedSpaceLength`, the
//! exact byte count, which is stored as it is.

use chrono::{FixedOffset, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{active_repositories, artifact_scope, parse_params, Ctx, ParamError, RunError, Step};
use crate::api;
use crate::config::Config;
use crate::size::parse_size;
use crate::store::storage::{NewSnapshot, RepoUsage, TrendPoint};
use crate::store::JobRow;

const UTC8: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(o) => o,
    None => panic!("UTC+8 is a valid offset"),
};

/// Trend days when a job gives none.
pub const DEFAULT_TREND_DAYS: u32 = 7;
/// The longest trend a job may ask for.
pub const MAX_TREND_DAYS: u32 = 366;

/// Parameters of a `storage_snapshot` job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Only these formats (default: all).
    #[serde(default)]
    pub formats: Option<Vec<String>>,
    /// Only these repository ids (default: every active repository).
    #[serde(default)]
    pub repos: Option<Vec<String>>,
    /// Days of trend to fetch (default 7).
    #[serde(default)]
    pub trend_days: Option<u32>,
}

/// Parses and checks parameters against the configuration.
pub fn parse(params: &Value, cfg: &Config) -> Result<Params, ParamError> {
    let p: Params = parse_params(params)?;
    artifact_scope(cfg)?;
    if let Some(formats) = &p.formats {
        if formats.is_empty() {
            return Err(ParamError(
                "parameter `formats`: must not be empty (leave it out for all formats)".into(),
            ));
        }
        for f in formats {
            if !super::purge_recycle_bin::FORMATS.contains(&f.as_str()) {
                return Err(ParamError(format!(
                    "parameter `formats`: unknown format {f:?} (known: {})",
                    super::purge_recycle_bin::FORMATS.join(", ")
                )));
            }
        }
    }
    if let Some(repos) = &p.repos {
        if repos.is_empty() || repos.iter().any(|r| r.trim().is_empty()) {
            return Err(ParamError(
                "parameter `repos`: must list repository ids (leave it out for all)".into(),
            ));
        }
    }
    if let Some(d) = p.trend_days {
        if d == 0 || d > MAX_TREND_DAYS {
            return Err(ParamError(format!(
                "parameter `trend_days`: {d} is out of range 1..={MAX_TREND_DAYS}"
            )));
        }
    }
    Ok(p)
}

/// Validates parameters at ingress.
pub fn validate(params: &Value, cfg: &Config) -> Result<(), ParamError> {
    parse(params, cfg).map(|_| ())
}

/// A size string from the API as bytes; a string the parser refuses is a bad answer.
fn bytes_of(text: &str, what: &str) -> Result<i64, RunError> {
    let n = parse_size(text).map_err(|e| {
        RunError::Api(api::Error::Decode {
            method: "GET".into(),
            path: what.to_string(),
            status: 200,
            message: e.to_string(),
        })
    })?;
    i64::try_from(n).map_err(|_| {
        RunError::Api(api::Error::Decode {
            method: "GET".into(),
            path: what.to_string(),
            status: 200,
            message: format!("size {text:?} does not fit the store"),
        })
    })
}

/// Reads everything, then writes the snapshot in one transaction.
pub async fn run(ctx: &Ctx, job: &JobRow) -> Result<Step, RunError> {
    let p = parse(&job.params, &ctx.config).map_err(|e| RunError::Invalid(e.0))?;
    let scope = artifact_scope(&ctx.config).map_err(|e| RunError::Invalid(e.0))?;
    let region = ctx.config.cloud.region.clone();
    let format_list = p.formats.as_ref().map(|f| f.join(","));

    let total = ctx.api.show_storage(format_list.as_deref()).await?;
    let total_text = total.result.total_storage.clone().unwrap_or_default();
    let total_bytes = bytes_of(&total_text, "/cloudartifact/v5/storage totalStorage")?;

    let repo_ids: Vec<String> = match &p.repos {
        Some(r) => r.clone(),
        None => active_repositories(ctx, &scope)
            .await?
            .iter()
            .filter(|r| {
                p.formats.as_ref().is_none_or(|f| {
                    r.format
                        .as_deref()
                        .is_some_and(|x| f.iter().any(|y| y == x))
                })
            })
            .filter_map(|r| r.repo_id().map(str::to_string))
            .collect(),
    };

    let mut repos = Vec::with_capacity(repo_ids.len());
    for id in &repo_ids {
        let detail = ctx.api.show_repository(&scope, id, &region).await?.result;
        let summary = detail.storage_summary_info.unwrap_or_default();
        let text = summary.used_space.unwrap_or_default();
        repos.push(RepoUsage {
            repo_id: id.clone(),
            format: detail.format,
            used_bytes: bytes_of(&text, &format!("repository {id} usedSpace"))?,
            used_text: text,
            files_count: summary.files_count,
        });
    }

    // The service's days are its own (UTC+8).
    let days = p.trend_days.unwrap_or(DEFAULT_TREND_DAYS);
    let today = Utc::now().with_timezone(&UTC8).date_naive();
    let start = (today - TimeDelta::days(i64::from(days) - 1))
        .format("%Y-%m-%d")
        .to_string();
    let end = today.format("%Y-%m-%d").to_string();
    let mut trend = Vec::new();
    let mut last_trace = total.trace_id;
    for repo in std::iter::once(None).chain(repo_ids.iter().map(Some)) {
        let got = ctx
            .api
            .storage_trend(&scope, repo.map(String::as_str), &start, &end)
            .await?;
        last_trace = got.trace_id.or(last_trace);
        for d in got.result {
            let text = d.used_space.clone().unwrap_or_default();
            // `usedSpaceLength` is exact; the text is the fallback when it is missing.
            let bytes = match d.used_space_length {
                Some(n) => n,
                None => bytes_of(&text, "storageinfo/statistic usedSpace")?,
            };
            trend.push(TrendPoint {
                repo_id: repo.cloned().unwrap_or_default(),
                day: d.summary_date,
                used_bytes: bytes,
                used_text: text,
                files_count: d.files_count,
            });
        }
    }

    let repo_bytes: i64 = repos.iter().map(|r| r.used_bytes).sum();
    let snapshot = NewSnapshot {
        formats: format_list,
        total_bytes,
        total_text: total_text.clone(),
        total_count: total.result.total_count,
        repos,
        trend,
    };
    let id = ctx.store.save_snapshot(Some(job.id), &snapshot).await?;
    Ok(Step::Done {
        jid: None,
        trace_id: last_trace,
        result: json!({
            "snapshot_id": id,
            "total_bytes": total_bytes,
            "total_storage": total_text,
            "total_count": snapshot.total_count,
            "repos": snapshot.repos.len(),
            "repo_bytes": repo_bytes,
            "trend_days": days,
            "trend_points": snapshot.trend.len(),
        }),
    })
}
