//! The audit route: a log's records, newest first, page by page, rendered from their position;
//! appends scheduled by tests for a given point of a walk happen before the page is answered.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::common::{
    art_error, bad_param, check, ok_typed, parse_page, MAX_PAGE_SIZE, NO_REPOSITORY,
};
use super::model::{record_id, AuditLog, UTC8};
use crate::sim::state::SimState;
use crate::sim::AkSkVerified;

const OPERATIONS: [&str; 4] = ["upload", "download", "update", "delete"];

/// One audit record as the API renders it (`AuditDO`: all strings, `reason` null here). A
/// typed struct rather than a `json!` map: a log of hundreds of thousands of records is served
/// fast enough for benchmarks of the client.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditDo<'a> {
    id: String,
    module: &'a str,
    operation: &'static str,
    time: String,
    info: &'a str,
    data: String,
    reason: Option<&'static str>,
    user_agent: &'static str,
    operator: String,
    operator_nick_name: String,
    operator_tenant_name: &'static str,
    ip_source: String,
}

/// Record `i` (1 = oldest) of a log.
fn audit_record<'a>(
    module: &'a str,
    repo: &'a str,
    log: &AuditLog,
    i: u64,
    origin: DateTime<Utc>,
) -> AuditDo<'a> {
    let at = origin + TimeDelta::seconds(i as i64 * 7);
    AuditDo {
        id: record_id(log.stream_no, i),
        module,
        operation: OPERATIONS[(i % 4) as usize],
        time: at
            .with_timezone(&UTC8)
            .format("%Y/%m/%d %H:%M:%S")
            .to_string(),
        info: repo,
        data: format!("com/acme/lib{}/1.{}/lib-1.{}.jar", i % 97, i % 13, i % 13),
        reason: None,
        user_agent: "Apache-HttpClient/4.5.13 (Java/1.8.0_232)",
        operator: format!("devcloud_user_{:02}", i % 17),
        operator_nick_name: format!("user {:02}", i % 17),
        operator_tenant_name: "demo-account",
        ip_source: format!("10.172.{}.{}", (i / 256) % 256, i % 256),
    }
}

/// `GET /cloudartifact/v5/{tenant_id}/{project_id}/{module}/{repo}/audit`, newest first.
pub(crate) async fn audit(
    State(state): State<Arc<SimState>>,
    Path((tenant, project, module, repo)): Path<(String, String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, Some((&tenant, &project))) {
        return r;
    }
    if module != "file" && module != "repository" {
        return bad_param("module must be file or repository");
    }
    let page_num = match parse_page(q.get("page_num"), "page_num", 1, u32::MAX) {
        Ok(n) => n as u64,
        Err(r) => return r,
    };
    let page_size = match parse_page(q.get("page_size"), "page_size", 10, MAX_PAGE_SIZE) {
        Ok(n) => n as u64,
        Err(r) => return r,
    };
    let key = (module.clone(), repo.clone());
    let origin = state.created_at - TimeDelta::days(30);
    let (log, records) = {
        let mut inner = state.lock();
        let art = &mut inner.artifact;
        if !art.repos.contains_key(&repo) {
            return art_error(StatusCode::NOT_FOUND, NO_REPOSITORY);
        }
        // Appends that tests scheduled for this point of a walk happen before the answer.
        let served = art.audit_pages_served.entry(key.clone()).or_insert(0);
        *served += 1;
        let served = *served;
        let due: Vec<u64> = art
            .triggers
            .iter()
            .filter(|t| t.module == module && t.repo == repo && t.after_pages + 1 == served)
            .map(|t| t.count)
            .collect();
        for n in due {
            art.append_audit(&module, &repo, n);
        }
        let log = art.audit.get(&key).cloned().unwrap_or_default();
        // Newest first: page 1 holds indices count, count-1, …
        let skip = (page_num - 1).saturating_mul(page_size);
        let first = log.count.saturating_sub(skip);
        let last = first.saturating_sub(page_size);
        (log, (last + 1..=first).rev().collect::<Vec<u64>>())
    };
    let list: Vec<AuditDo> = records
        .into_iter()
        .filter(|i| *i >= 1)
        .map(|i| audit_record(&module, &repo, &log, i, origin))
        .collect();
    #[derive(Serialize)]
    struct AuditResult<'a> {
        #[serde(rename = "auditInfoList")]
        audit_info_list: Vec<AuditDo<'a>>,
        total: u64,
    }
    ok_typed(AuditResult {
        audit_info_list: list,
        total: log.count,
    })
}
