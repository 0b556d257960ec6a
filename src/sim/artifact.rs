//! CodeArts Artifact routes: repository list and detail, file tree, recycle-bin delete and
//! restore, storage usage and trend, and audit logs, after the vendor's API reference and the
//! SDK-derived facts.
//!
//! Seeded data: active repositories of several formats with human size strings (thousands
//! separators included), trashed repositories and trashed files inside active repositories with
//! modified times spread over months, a daily storage trend, and audit logs. Audit records are
//! computed from their position, so a log of hundreds of thousands of records costs no memory;
//! appended records (tests append while a walk runs) extend the log at its newest end.
//!
//! Checks: authentication (401), `{tenant_id}`/`{project_id}` naming this account and CodeArts
//! project (403 `CR.4102`, the documented code), the repository existing (404), then the
//! parameters (400). Times are written `yyyy-MM-dd HH:mm:ss` in UTC+8, the service's home zone.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::state::{AuthKind, SimState};
use super::{AkSkVerified, SimConfig};
use crate::size::format_size;

/// The documented 403 for a project the caller has no permission on.
pub(crate) const NO_PERMISSION: (&str, &str) =
    ("CR.4102", "You do not have permissions on the project.");
/// The documented 500.
pub(crate) const UNKNOWN_ERROR: (&str, &str) = ("CR.5000", "Unknown service error.");
/// A missing token or one the gateway refuses.
pub(crate) const BAD_TOKEN: (&str, &str) = (
    "APIGW.0301",
    "Incorrect IAM authentication information: token expired or invalid",
);
/// No such repository. Not in the reference's code table; follows its `CR.4xxx` pattern.
pub(crate) const NO_REPOSITORY: (&str, &str) = ("CR.4104", "The repository does not exist.");
/// A bad parameter. Not in the reference's code table either.
const BAD_PARAM: &str = "CR.4100";

/// Formats the seeded repositories use, in the order they are handed out.
pub const FORMATS: [&str; 8] = [
    "maven2", "npm", "go", "pypi", "docker", "generic", "debian", "nuget",
];

/// The largest `page_size` the simulated audit and list calls accept.
pub const MAX_PAGE_SIZE: u32 = 1000;

const UTC8: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(o) => o,
    None => panic!("UTC+8 is a valid offset"),
};

/// `yyyy-MM-dd HH:mm:ss` in UTC+8, as the Artifact API writes times.
pub fn art_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&UTC8)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A human size as the service writes it: 1024-based, two decimals, `,` between thousands
/// (`"1,010.15 KB"`); `zero` is what it writes for nothing (`"0 MB"` or `""`, depending on the call).
pub fn human_size(bytes: u64, zero: &str) -> String {
    if bytes == 0 {
        return zero.to_string();
    }
    let plain = format_size(bytes);
    let (number, unit) = plain.split_once(' ').unwrap_or((&plain, ""));
    let (int, frac) = number
        .split_once('.')
        .map_or((number, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{grouped}.{f} {unit}"),
        None => format!("{grouped} {unit}"),
    }
}

/// A trashed file inside a repository.
#[derive(Clone, Debug)]
pub(crate) struct TrashFile {
    /// Path inside the repository, without a leading `/`, e.g. `com/acme/lib/1.0/lib-1.0.jar`.
    pub(crate) path: String,
    pub(crate) modified: DateTime<Utc>,
}

/// A simulated Artifact repository.
#[derive(Clone, Debug)]
pub(crate) struct ArtRepo {
    /// Creation order: listings come in this order.
    pub(crate) no: usize,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) format: String,
    /// `active` or `trash`.
    pub(crate) status: String,
    pub(crate) created: DateTime<Utc>,
    pub(crate) modified: DateTime<Utc>,
    pub(crate) files_count: i64,
    pub(crate) used_bytes: u64,
    pub(crate) trash: Vec<TrashFile>,
}

/// The audit log of one (module, repository): `seeded` records computed from their index, then
/// appended ones.
#[derive(Clone, Debug, Default)]
pub(crate) struct AuditLog {
    pub(crate) stream_no: u64,
    pub(crate) count: u64,
}

/// Appends `count` records to a log once the audit route has answered `after_pages` pages of it.
#[derive(Clone, Debug)]
pub(crate) struct AuditTrigger {
    pub(crate) module: String,
    pub(crate) repo: String,
    pub(crate) after_pages: u64,
    pub(crate) count: u64,
}

/// How the trash delete answers `result`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteResultShape {
    /// `{successNum, failedNum, failedMessages}` (current SDKs).
    #[default]
    Counts,
    /// `"success"` when every item went (the vendor doc's example); counts otherwise.
    Legacy,
}

/// One entry of the recycle bin, for tests to compare with what a purge recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrashEntry {
    pub repo_id: String,
    pub format: String,
    /// What a delete item carries in `uri`: `{repo}/` for a trashed repository, `{repo}/{path}`
    /// for a trashed file.
    pub uri: String,
    pub modified: String,
}

/// All Artifact state.
#[derive(Default)]
pub(crate) struct ArtifactState {
    pub(crate) repos: BTreeMap<String, ArtRepo>,
    pub(crate) audit: HashMap<(String, String), AuditLog>,
    pub(crate) audit_pages_served: HashMap<(String, String), u64>,
    pub(crate) triggers: Vec<AuditTrigger>,
    pub(crate) delete_shape: DeleteResultShape,
    /// URIs whose deletion fails (a per-item failure in `failedMessages`).
    pub(crate) locked: Vec<String>,
    /// Every item URI a delete removed, in order: a test checks each appears once.
    pub(crate) deleted: Vec<String>,
    /// Every item URI received by a delete call that reached the handler, in order.
    pub(crate) delete_requests: Vec<String>,
    next_stream: u64,
}

impl ArtifactState {
    /// The seeded account: see [`SimConfig::artifact_repos`] and the fields after it.
    pub(crate) fn seed(cfg: &SimConfig, now: DateTime<Utc>) -> ArtifactState {
        let mut st = ArtifactState::default();
        let prefix = format!("{}_{}", cfg.project_name, cfg.domain_id);
        let total = cfg.artifact_repos + cfg.trashed_repos;
        for n in 0..total {
            let format = FORMATS[n % FORMATS.len()];
            let id = format!("{prefix}_{format}_{}", n + 1);
            let trashed = n >= cfg.artifact_repos;
            // Sizes from bytes to gigabytes, so every unit and thousands separators appear.
            let used_bytes = match n % 5 {
                0 => 0,
                1 => 12 + n as u64,
                2 => 1_034_390 + 977 * n as u64,
                3 => 576_318_341 + 7_919 * n as u64,
                _ => 2_115_286_548 + 104_729 * n as u64,
            };
            let days = (n as i64 * 11) % 200 + 1;
            let mut repo = ArtRepo {
                no: n,
                id: id.clone(),
                name: format!("{format}-repo-{}", n + 1),
                format: format.to_string(),
                status: if trashed { "trash" } else { "active" }.to_string(),
                created: now - TimeDelta::days(400),
                modified: now - TimeDelta::days(days) - TimeDelta::minutes(n as i64),
                files_count: (used_bytes / 40_000) as i64,
                used_bytes,
                trash: Vec::new(),
            };
            if !trashed && n % 3 == 0 {
                for k in 0..cfg.trash_files_per_repo {
                    let age = (k as i64 * 17 + n as i64 * 5) % 120 + 1;
                    repo.trash.push(TrashFile {
                        path: format!("com/acme/lib{n}/1.{k}/lib{n}-1.{k}.bin"),
                        modified: now - TimeDelta::days(age) - TimeDelta::seconds(k as i64),
                    });
                }
            }
            if !trashed {
                let records = if n == 0 {
                    cfg.audit_records
                } else {
                    37 + 13 * n as u64
                };
                st.add_log("file", &id, records);
                st.add_log("repository", &id, 5 + n as u64);
            }
            st.repos.insert(id, repo);
        }
        st
    }

    /// The repositories in creation order.
    pub(crate) fn in_order(&self) -> Vec<&ArtRepo> {
        let mut v: Vec<&ArtRepo> = self.repos.values().collect();
        v.sort_by_key(|r| r.no);
        v
    }

    fn add_log(&mut self, module: &str, repo: &str, count: u64) {
        self.next_stream += 1;
        self.audit.insert(
            (module.to_string(), repo.to_string()),
            AuditLog {
                stream_no: self.next_stream,
                count,
            },
        );
    }

    /// The recycle bin's content.
    pub(crate) fn trash_entries(&self) -> Vec<TrashEntry> {
        let mut out = Vec::new();
        for r in self.in_order() {
            if r.status == "trash" {
                out.push(TrashEntry {
                    repo_id: r.id.clone(),
                    format: r.format.clone(),
                    uri: format!("{}/", r.id),
                    modified: art_time(r.modified),
                });
            }
            for f in &r.trash {
                out.push(TrashEntry {
                    repo_id: r.id.clone(),
                    format: r.format.clone(),
                    uri: format!("{}/{}", r.id, f.path),
                    modified: art_time(f.modified),
                });
            }
        }
        out
    }

    /// Appends `count` records to a log (created if needed).
    pub(crate) fn append_audit(&mut self, module: &str, repo: &str, count: u64) {
        let key = (module.to_string(), repo.to_string());
        if !self.audit.contains_key(&key) {
            self.add_log(module, repo, 0);
        }
        if let Some(log) = self.audit.get_mut(&key) {
            log.count += count;
        }
    }

    /// The full log, oldest first, as the route would render it (for tests).
    pub(crate) fn audit_ids(&self, module: &str, repo: &str) -> Vec<String> {
        let key = (module.to_string(), repo.to_string());
        self.audit
            .get(&key)
            .map(|l| (1..=l.count).map(|i| record_id(l.stream_no, i)).collect())
            .unwrap_or_default()
    }
}

fn record_id(stream_no: u64, i: u64) -> String {
    (stream_no * 100_000_000 + i).to_string()
}

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

/// [`ok`] for a typed result, serialised once.
fn ok_typed<T: Serialize>(result: T) -> Response {
    #[derive(Serialize)]
    struct Envelope<T> {
        status: &'static str,
        trace_id: String,
        result: T,
    }
    let trace = format!(
        "143002-{}-{}",
        Utc::now().timestamp_millis(),
        rand::random::<u16>()
    );
    (
        StatusCode::OK,
        Json(Envelope {
            status: "success",
            trace_id: trace,
            result,
        }),
    )
        .into_response()
}

/// The envelope every Artifact answer uses.
fn ok(result: Value) -> Response {
    let trace = format!(
        "143002-{}-{}",
        Utc::now().timestamp_millis(),
        rand::random::<u16>()
    );
    (
        StatusCode::OK,
        Json(json!({"status": "success", "trace_id": trace, "result": result})),
    )
        .into_response()
}

/// An Artifact error: the envelope with `status: error` and the `{error_code, error_msg}` pair.
pub(crate) fn art_error(status: StatusCode, (code, msg): (&str, &str)) -> Response {
    let trace = format!("143002-{}-0", Utc::now().timestamp_millis());
    (
        status,
        Json(json!({"status": "error", "trace_id": trace, "error_code": code, "error_msg": msg})),
    )
        .into_response()
}

fn bad_param(msg: &str) -> Response {
    art_error(StatusCode::BAD_REQUEST, (BAD_PARAM, msg))
}

/// The checks every Artifact call shares: auth, then the tenant and project in the path.
fn check(
    state: &SimState,
    headers: &HeaderMap,
    aksk: &Option<Extension<AkSkVerified>>,
    tenant: Option<(&str, &str)>,
) -> Result<(), Response> {
    if aksk.is_none() && state.auth_kind(headers) != AuthKind::Token {
        return Err(art_error(StatusCode::UNAUTHORIZED, BAD_TOKEN));
    }
    if let Some((tenant_id, project_id)) = tenant {
        if tenant_id != state.cfg.domain_id || project_id != state.cfg.codearts_project_id {
            return Err(art_error(StatusCode::FORBIDDEN, NO_PERMISSION));
        }
    }
    Ok(())
}

fn parse_bool(v: Option<&String>, name: &str) -> Result<Option<bool>, Response> {
    match v.map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(bad_param(&format!(
            "{name} must be true or false, got {other:?}"
        ))),
    }
}

fn parse_page(v: Option<&String>, name: &str, default: u32, max: u32) -> Result<u32, Response> {
    match v {
        None => Ok(default),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad_param(&format!(
                "{name} must be an integer in 1..={max}"
            ))),
        },
    }
}

fn repo_view(r: &ArtRepo, region: &str, with_counts: bool) -> Value {
    json!({
        "id": Value::Null,
        "name": r.id,
        "description": "",
        "createdTime": art_time(r.created),
        "createdUserId": "e9253deb37654775bb3c411aca89153a",
        "createdUserName": "demo-user",
        "modifiedTime": art_time(r.modified),
        "modifiedUserId": "e9253deb37654775bb3c411aca89153a",
        "modifiedUserName": "demo-user",
        "format": r.format,
        "repoType": "hosted",
        "includesPattern": "**/*",
        "url": Value::Null,
        "storageSummaryInfo": if with_counts {
            json!({"filesCount": r.files_count, "usedSpace": human_size(r.used_bytes, "0 MB")})
        } else {
            Value::Null
        },
        "projectId": Value::Null,
        "shareRight": Value::Null,
        "deploymentPolicy": Value::Null,
        "repositoryName": r.name,
        "displayName": Value::Null,
        "policy": Value::Null,
        "tabId": Value::Null,
        "status": r.status,
        "domainId": Value::Null,
        "region": region,
        "uri": Value::Null,
        "disable": false,
        "packageType": r.format,
    })
}

/// `GET /cloudartifact/v5/{tenant_id}/{project_id}/repositories`.
pub(crate) async fn list_repositories(
    State(state): State<Arc<SimState>>,
    Path((tenant, project)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, Some((&tenant, &project))) {
        return r;
    }
    let recycle = match parse_bool(q.get("is_recycle_bin"), "is_recycle_bin") {
        Ok(b) => b.unwrap_or(false),
        Err(r) => return r,
    };
    let paging = match parse_bool(q.get("is_need_paging"), "is_need_paging") {
        Ok(b) => b.unwrap_or(true),
        Err(r) => return r,
    };
    let page_no = match parse_page(q.get("page_no"), "page_no", 1, u32::MAX) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let page_size = match parse_page(q.get("page_size"), "page_size", 10, MAX_PAGE_SIZE) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let formats: Option<Vec<String>> = q
        .get("format_list")
        .filter(|f| !f.is_empty())
        .map(|f| f.split(',').map(str::to_string).collect());
    let region = state.cfg.project_name.clone();
    let inner = state.lock();
    // In the recycle bin: trashed repositories, and active ones holding trashed files.
    let matching: Vec<&ArtRepo> = inner
        .artifact
        .in_order()
        .into_iter()
        .filter(|r| {
            if recycle {
                r.status == "trash" || !r.trash.is_empty()
            } else {
                r.status == "active"
            }
        })
        .filter(|r| formats.as_ref().is_none_or(|f| f.contains(&r.format)))
        .collect();
    let total = matching.len();
    let page: Vec<Value> = if paging {
        matching
            .iter()
            .skip((page_no as usize - 1).saturating_mul(page_size as usize))
            .take(page_size as usize)
            .map(|r| repo_view(r, &region, false))
            .collect()
    } else {
        matching
            .iter()
            .map(|r| repo_view(r, &region, false))
            .collect()
    };
    drop(inner);
    ok(json!({"total": total, "repositories": page}))
}

/// `GET /cloudartifact/v5/{tenant_id}/{project_id}/{repo_id}/repositories?region=`.
pub(crate) async fn show_repository(
    State(state): State<Arc<SimState>>,
    Path((tenant, project, repo_id)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, Some((&tenant, &project))) {
        return r;
    }
    // `region` is mandatory on this call.
    match q.get("region") {
        Some(r) if *r == state.cfg.project_name => {}
        Some(_) => return art_error(StatusCode::NOT_FOUND, NO_REPOSITORY),
        None => return bad_param("region is required"),
    }
    let region = state.cfg.project_name.clone();
    let inner = state.lock();
    match inner.artifact.repos.get(&repo_id) {
        Some(r) if r.status == "active" => {
            let v = repo_view(r, &region, true);
            drop(inner);
            ok(v)
        }
        _ => art_error(StatusCode::NOT_FOUND, NO_REPOSITORY),
    }
}

/// `GET /cloudartifact/v5/{tenant_id}/{project_id}/{repo_name}/file-tree?path=&is_recycle_bin=`.
///
/// Only the recycle-bin view has content here (the simulator keeps no live file trees): it lists
/// the trashed files and folders directly under `path`.
pub(crate) async fn file_tree(
    State(state): State<Arc<SimState>>,
    Path((tenant, project, repo_id)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, Some((&tenant, &project))) {
        return r;
    }
    let Some(path) = q.get("path") else {
        return bad_param("path is required");
    };
    let recycle = match parse_bool(q.get("is_recycle_bin"), "is_recycle_bin") {
        Ok(b) => b.unwrap_or(false),
        Err(r) => return r,
    };
    let inner = state.lock();
    let Some(repo) = inner.artifact.repos.get(&repo_id) else {
        return art_error(StatusCode::NOT_FOUND, NO_REPOSITORY);
    };
    let dir = path.trim_matches('/');
    let mut children: BTreeMap<String, Value> = BTreeMap::new();
    if recycle {
        for f in &repo.trash {
            let rest = if dir.is_empty() {
                Some(f.path.as_str())
            } else {
                f.path.strip_prefix(dir).and_then(|r| r.strip_prefix('/'))
            };
            let Some(rest) = rest else { continue };
            let (name, folder) = match rest.split_once('/') {
                Some((first, _)) => (first, true),
                None => (rest, false),
            };
            let rel = if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            let entry = children.entry(name.to_string()).or_insert_with(|| {
                json!({
                    "name": name,
                    "uri": format!("https://artifact.example/artgalaxy/api/storage/auto-trashcan/{}/{rel}", repo.id),
                    "path": format!("{}/{rel}", repo.id),
                    "modified": art_time(f.modified),
                    "folder": folder,
                    "display_size": Value::Null,
                    "modified_by": "demo-user",
                    "has_child": if folder { "true" } else { "false" },
                })
            });
            // A folder shows its newest content's time.
            if folder {
                let t = art_time(f.modified);
                if entry["modified"].as_str().is_some_and(|m| m < t.as_str()) {
                    entry["modified"] = Value::String(t);
                }
            }
        }
    }
    let list: Vec<Value> = children.into_values().collect();
    // `total` is a string on this call.
    let total = list.len().to_string();
    let created = art_time(repo.created);
    let id = repo.id.clone();
    drop(inner);
    ok(json!({
        "children": list,
        "uploadAccess": "false",
        "total": total,
        "uri": format!("/{id}"),
        "created": created,
    }))
}

#[derive(Deserialize)]
struct DeleteItem {
    id: String,
    format: String,
    uri: String,
    status: String,
    #[serde(default)]
    #[allow(dead_code)] // accepted as documented; the simulator deletes whole items
    include_pattern: Option<String>,
}

/// Parses the bare-array body shared by delete and restore; names the bad field.
fn parse_items(body: &[u8]) -> Result<Vec<DeleteItem>, Response> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| bad_param("the request body must be a JSON array of items"))?;
    let Value::Array(items) = v else {
        return Err(bad_param(
            "the request body must be a bare JSON array of items",
        ));
    };
    if items.is_empty() {
        return Err(bad_param("the request body must not be an empty array"));
    }
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        // The old field name is gone on the wire since SDK 3.1.181; it is not accepted in place
        // of `format`.
        let item: DeleteItem =
            serde_json::from_value(item).map_err(|e| bad_param(&format!("item {i}: {e}")))?;
        if item.id.is_empty() || item.format.is_empty() || item.uri.is_empty() {
            return Err(bad_param(&format!(
                "item {i}: id, format and uri must not be empty"
            )));
        }
        if !["active", "trash", "delete"].contains(&item.status.as_str()) {
            return Err(bad_param(&format!(
                "item {i}: status must be active, trash or delete"
            )));
        }
        out.push(item);
    }
    Ok(out)
}

/// Finds what `item` names in the recycle bin: the repository itself (`{id}/`) or one file.
enum Target {
    Repo,
    File(usize),
}

fn locate(repo: &ArtRepo, item: &DeleteItem) -> Result<Target, String> {
    if item.format != repo.format {
        return Err(format!(
            "{}: format {} does not match the repository's {}",
            item.uri, item.format, repo.format
        ));
    }
    if item.uri == format!("{}/", repo.id) {
        return if repo.status == "trash" {
            Ok(Target::Repo)
        } else {
            Err(format!(
                "{}: the repository is not in the recycle bin",
                item.uri
            ))
        };
    }
    let rel = item
        .uri
        .strip_prefix(&format!("{}/", repo.id))
        .unwrap_or("");
    match repo.trash.iter().position(|f| f.path == rel) {
        Some(i) => Ok(Target::File(i)),
        None => Err(format!("{}: not in the recycle bin", item.uri)),
    }
}

fn counts_result(ok: usize, failed: Vec<String>, shape: DeleteResultShape) -> Value {
    if failed.is_empty() && shape == DeleteResultShape::Legacy {
        return Value::String("success".into());
    }
    json!({"successNum": ok, "failedNum": failed.len(), "failedMessages": failed})
}

/// `DELETE /cloudartifact/v5/trashes`: deletes each item for good.
pub(crate) async fn delete_trashes(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, None) {
        return r;
    }
    let items = match parse_items(&body) {
        Ok(items) => items,
        Err(r) => return r,
    };
    let mut inner = state.lock();
    let art = &mut inner.artifact;
    let (mut done, mut failed) = (0usize, Vec::new());
    for item in &items {
        art.delete_requests.push(item.uri.clone());
        if art.locked.contains(&item.uri) {
            failed.push(format!(
                "{}: the artifact is locked by a retention policy",
                item.uri
            ));
            continue;
        }
        let Some(repo) = art.repos.get_mut(&item.id) else {
            failed.push(format!("{}: repository {} not found", item.uri, item.id));
            continue;
        };
        match locate(repo, item) {
            Ok(Target::Repo) => {
                art.repos.remove(&item.id);
                art.deleted.push(item.uri.clone());
                done += 1;
            }
            Ok(Target::File(i)) => {
                repo.trash.remove(i);
                art.deleted.push(item.uri.clone());
                done += 1;
            }
            Err(msg) => failed.push(msg),
        }
    }
    let shape = art.delete_shape;
    drop(inner);
    ok(counts_result(done, failed, shape))
}

/// `PUT /cloudartifact/v5/trashes`: restores each item out of the recycle bin.
pub(crate) async fn restore_trashes(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    aksk: Option<Extension<AkSkVerified>>,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&state, &headers, &aksk, None) {
        return r;
    }
    let items = match parse_items(&body) {
        Ok(items) => items,
        Err(r) => return r,
    };
    let mut inner = state.lock();
    let art = &mut inner.artifact;
    let (mut done, mut failed) = (0usize, Vec::new());
    for item in &items {
        let Some(repo) = art.repos.get_mut(&item.id) else {
            failed.push(format!("{}: repository {} not found", item.uri, item.id));
            continue;
        };
        match locate(repo, item) {
            Ok(Target::Repo) => {
                repo.status = "active".into();
                done += 1;
            }
            Ok(Target::File(i)) => {
                repo.trash.remove(i);
                done += 1;
            }
            Err(msg) => failed.push(msg),
        }
    }
    let shape = art.delete_shape;
    drop(inner);
    ok(counts_result(done, failed, shape))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::parse_size;

    #[test]
    fn human_sizes_group_thousands_and_parse_back() {
        assert_eq!(human_size(1_034_390, ""), "1,010.15 KB");
        assert_eq!(human_size(0, ""), "");
        assert_eq!(human_size(0, "0 MB"), "0 MB");
        assert_eq!(human_size(12, ""), "12 B");
        assert_eq!(human_size(2_068_780, ""), "1.97 MB");
        for b in [
            1u64,
            1023,
            1024,
            1_034_390,
            576_318_341,
            2_115_286_548,
            5 << 40,
        ] {
            let text = human_size(b, "");
            let back = parse_size(&text).unwrap();
            // Two decimals of the unit: within half a hundredth of it.
            let unit = 1u64
                << (10
                    * ["B", "KB", "MB", "GB", "TB", "PB"]
                        .iter()
                        .position(|u| text.ends_with(&format!(" {u}")))
                        .unwrap());
            assert!(
                back.abs_diff(b) <= unit / 200 + 1,
                "{b} -> {text} -> {back}"
            );
        }
    }
}
