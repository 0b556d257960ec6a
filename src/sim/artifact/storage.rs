//! Storage routes: the project's total usage now, and the daily usage trend of the project or
//! one repository.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};

use super::common::{art_error, bad_param, check, ok, NO_REPOSITORY};
use super::model::{human_size, ArtRepo, UTC8};
use crate::sim::state::SimState;
use crate::sim::AkSkVerified;

/// `GET /cloudartifact/v5/storage?format_list=&in_project=` (`in_project` is a string).
pub(crate) async fn show_storage(
    State(state): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, None) {
        return r;
    }
    if let Some(v) = q.get("in_project") {
        if v != "true" && v != "false" {
            return bad_param("in_project must be \"true\" or \"false\"");
        }
    }
    let formats: Option<Vec<String>> = q
        .get("format_list")
        .filter(|f| !f.is_empty())
        .map(|f| f.split(',').map(str::to_string).collect());
    let inner = state.lock();
    let (bytes, count) = inner
        .artifact
        .repos
        .values()
        .filter(|r| r.status == "active")
        .filter(|r| formats.as_ref().is_none_or(|f| f.contains(&r.format)))
        .fold((0u64, 0i64), |(b, c), r| {
            (b + r.used_bytes, c + r.files_count)
        });
    drop(inner);
    ok(json!({"totalStorage": human_size(bytes, "0 MB"), "totalCount": count}))
}

/// The day-`d` usage of a repository: growing towards today's figure, with a day of nothing
/// every so often (the API then sends `usedSpace: ""`).
fn trend_bytes(r: &ArtRepo, days_ago: i64) -> u64 {
    if days_ago % 9 == 8 {
        return 0;
    }
    let shrink = (days_ago.max(0) as u64) * 37_171;
    r.used_bytes.saturating_sub(shrink)
}

/// `GET /cloudartifact/v5/{tenant_id}/{project_id}/storageinfo/statistic`.
pub(crate) async fn storage_statistic(
    State(state): State<Arc<SimState>>,
    Path((tenant, project)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, Some((&tenant, &project))) {
        return r;
    }
    let today = Utc::now().with_timezone(&UTC8).date_naive();
    let parse = |k: &str, default| match q.get(k) {
        None => Ok(default),
        Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| bad_param(&format!("{k} must be yyyy-MM-dd"))),
    };
    let start = match parse("start_time", today - TimeDelta::days(6)) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let end = match parse("end_time", today) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if end < start || (end - start).num_days() > 366 {
        return bad_param("end_time must be after start_time and within a year of it");
    }
    let inner = state.lock();
    let repos: Vec<&ArtRepo> = match q.get("repo").filter(|r| !r.is_empty()) {
        Some(id) => match inner.artifact.repos.get(id) {
            Some(r) if r.status == "active" => vec![r],
            _ => return art_error(StatusCode::NOT_FOUND, NO_REPOSITORY),
        },
        None => inner
            .artifact
            .repos
            .values()
            .filter(|r| r.status == "active")
            .collect(),
    };
    let mut days = Vec::new();
    let mut d = start;
    while d <= end {
        let ago = (today - d).num_days();
        let bytes: u64 = repos.iter().map(|r| trend_bytes(r, ago)).sum();
        let files: i64 = repos
            .iter()
            .filter(|r| trend_bytes(r, ago) > 0)
            .map(|r| r.files_count)
            .sum();
        days.push(json!({
            "filesCount": files,
            "usedSpaceLength": bytes,
            "usedSpace": human_size(bytes, ""),
            "summaryDate": d.format("%Y-%m-%d").to_string(),
            "foldersCount": Value::Null,
            "itemsCount": Value::Null,
        }));
        d += TimeDelta::days(1);
    }
    drop(inner);
    ok(Value::Array(days))
}
