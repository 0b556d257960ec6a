//! CodeArts Artifact (`/cloudartifact/v5`): the recycle bin, repository listings and details,
//! storage usage and trend, and audit logs.
//!
//! Every answer comes in the envelope `{status, trace_id, result}`; the typed results below are
//! what `result` holds. Field names inside `result` are camelCase with a few snake_case
//! exceptions, as the API sends them. `{tenant_id}` is the account (domain) id and
//! `{project_id}` the CodeArts project id, never the IAM project id.

use reqwest::Method;
use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::signer::encode_component;
use super::{Client, Error, Request, Response, Service};

/// The identifiers every tenant-scoped Artifact path carries.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The account (domain) id: `{tenant_id}`.
    pub tenant_id: String,
    /// The CodeArts project id: `{project_id}`.
    pub project_id: String,
}

impl Scope {
    fn path(&self, rest: &str) -> String {
        format!(
            "/cloudartifact/v5/{}/{}/{rest}",
            encode_component(&self.tenant_id),
            encode_component(&self.project_id)
        )
    }
}

/// A decoded result with the trace id the envelope carried.
#[derive(Debug)]
pub struct Traced<T> {
    pub result: T,
    pub trace_id: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
    result: T,
}

/// Decodes the envelope; a `status` of `error` in a 2xx answer is an API error.
fn open<T: DeserializeOwned>(req: &Request, resp: &Response) -> Result<Traced<T>, Error> {
    #[derive(Deserialize)]
    struct Status {
        #[serde(default)]
        status: Option<String>,
    }
    // One parse on the happy path; the status is looked at on its own only when that fails or
    // says error, since an error's `result` need not have the success shape.
    let parsed: Result<Envelope<T>, Error> = resp.json(req);
    let is_error = match &parsed {
        Ok(env) => env.status.as_deref() == Some("error"),
        Err(_) => serde_json::from_slice::<Status>(&resp.body)
            .is_ok_and(|s| s.status.as_deref() == Some("error")),
    };
    if is_error {
        // A 2xx whose envelope says error: the same error as an error status would be.
        return Err(super::error::from_response(
            req.method.as_str(),
            &req.path,
            resp.status,
            &resp.headers,
            &resp.body,
        ));
    }
    let env = parsed?;
    Ok(Traced {
        result: env.result,
        trace_id: env.trace_id.or_else(|| resp.request_id()),
    })
}

/// A repository as the list and detail calls describe it (`RepositoryBasicDO`, the fields used).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub repository_name: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub modified_time: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub storage_summary_info: Option<StorageSummary>,
}

impl Repository {
    /// The repository id (`{region}_{domainId}_{format}_{n}`). The vendor's examples leave `id`
    /// null and carry the id in `name`, so `name` serves when `id` is empty.
    pub fn repo_id(&self) -> Option<&str> {
        self.id
            .as_deref()
            .filter(|s| !s.is_empty())
            .or_else(|| self.name.as_deref().filter(|s| !s.is_empty()))
    }
}

/// `storageSummaryInfo`: files and used space (a human size string).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageSummary {
    #[serde(default)]
    pub files_count: Option<i64>,
    #[serde(default)]
    pub used_space: Option<String>,
}

/// One page of `list_all_repositories`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RepositoryPage {
    #[serde(default)]
    pub total: i64,
    #[serde(default)]
    pub repositories: Vec<Repository>,
}

/// A node of `show_file_tree`. `has_child` arrives as a bool or as `"true"`.
#[derive(Clone, Debug, Deserialize)]
pub struct TreeNode {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub modified: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub folder: bool,
}

/// `show_file_tree`'s result (`total` and `uploadAccess` are strings there).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct FileTree {
    #[serde(default)]
    pub children: Vec<TreeNode>,
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
        Some(other) => Err(de::Error::custom(format!(
            "expected a boolean, got {other}"
        ))),
    }
}

/// One item of `DELETE /cloudartifact/v5/trashes`. The field is `format` (SDK ≥ 3.1.181; the
/// vendor's parameter table still spells it `fomat`, its example uses `format`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrashItem {
    pub id: String,
    pub format: String,
    pub uri: String,
    pub status: String,
}

/// What a trash delete answered: the documented string, or the counts of current SDKs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteResult {
    /// `"result": "success"`: every item went.
    Success,
    /// `{successNum, failedNum, failedMessages}`.
    Counts {
        success_num: i64,
        failed_num: i64,
        failed_messages: Vec<String>,
    },
}

impl<'de> Deserialize<'de> for DeleteResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Counts {
            #[serde(default)]
            success_num: i64,
            #[serde(default)]
            failed_num: i64,
            #[serde(default)]
            failed_messages: Option<Vec<String>>,
        }
        match Value::deserialize(d)? {
            Value::String(s) if s.eq_ignore_ascii_case("success") => Ok(DeleteResult::Success),
            Value::String(s) => Err(de::Error::custom(format!(
                "unexpected result string {s:?} (expected \"success\")"
            ))),
            v @ Value::Object(_) => {
                let c: Counts = serde_json::from_value(v).map_err(de::Error::custom)?;
                Ok(DeleteResult::Counts {
                    success_num: c.success_num,
                    failed_num: c.failed_num,
                    failed_messages: c.failed_messages.unwrap_or_default(),
                })
            }
            other => Err(de::Error::custom(format!(
                "expected \"success\" or the counts object, got {other}"
            ))),
        }
    }
}

/// `show_storage`'s result.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageTotal {
    #[serde(default)]
    pub total_storage: Option<String>,
    #[serde(default)]
    pub total_count: Option<i64>,
}

/// One day of the storage trend.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrendDay {
    pub summary_date: String,
    #[serde(default)]
    pub used_space_length: Option<i64>,
    #[serde(default)]
    pub used_space: Option<String>,
    #[serde(default)]
    pub files_count: Option<i64>,
}

/// One page of audit records, each kept as the exact JSON text the API sent.
#[derive(Debug, Deserialize)]
pub struct AuditPage {
    #[serde(default)]
    pub total: i64,
    #[serde(rename = "auditInfoList", default)]
    pub records: Vec<Box<RawValue>>,
}

impl Client {
    /// `GET …/{tenant_id}/{project_id}/repositories`: one page (`page_no` from 1).
    pub async fn list_repositories(
        &self,
        scope: &Scope,
        recycle_bin: bool,
        page_no: u32,
        page_size: u32,
    ) -> Result<Traced<RepositoryPage>, Error> {
        let mut req = Request::new(Service::Artifact, Method::GET, scope.path("repositories"));
        req.query = vec![
            ("is_recycle_bin".into(), recycle_bin.to_string()),
            ("is_need_paging".into(), "true".into()),
            ("page_no".into(), page_no.to_string()),
            ("page_size".into(), page_size.to_string()),
        ];
        let resp = self.call(&req).await?;
        open(&req, &resp)
    }

    /// `GET …/{tenant_id}/{project_id}/{repo_id}/repositories?region=`: one repository with its
    /// artifact counts.
    pub async fn show_repository(
        &self,
        scope: &Scope,
        repo_id: &str,
        region: &str,
    ) -> Result<Traced<Repository>, Error> {
        let path = scope.path(&format!("{}/repositories", encode_component(repo_id)));
        let mut req = Request::new(Service::Artifact, Method::GET, path);
        req.query = vec![("region".into(), region.to_string())];
        let resp = self.call(&req).await?;
        open(&req, &resp)
    }

    /// `GET …/{tenant_id}/{project_id}/{repo_name}/file-tree?path=&is_recycle_bin=`.
    pub async fn file_tree(
        &self,
        scope: &Scope,
        repo: &str,
        path: &str,
        recycle_bin: bool,
    ) -> Result<Traced<FileTree>, Error> {
        let p = scope.path(&format!("{}/file-tree", encode_component(repo)));
        let mut req = Request::new(Service::Artifact, Method::GET, p);
        req.query = vec![
            ("path".into(), path.to_string()),
            ("is_recycle_bin".into(), recycle_bin.to_string()),
        ];
        let resp = self.call(&req).await?;
        open(&req, &resp)
    }

    /// `DELETE /cloudartifact/v5/trashes` with a bare JSON array of items. The second value is
    /// true when an earlier send of the same batch got no answer (see
    /// [`Response::maybe_resent`]): failures may then be items that send already deleted.
    pub async fn delete_trashes(
        &self,
        items: &[TrashItem],
    ) -> Result<(Traced<DeleteResult>, bool), Error> {
        let req = Request::new(
            Service::Artifact,
            Method::DELETE,
            "/cloudartifact/v5/trashes",
        )
        .json(&items);
        let resp = self.call(&req).await?;
        Ok((open(&req, &resp)?, resp.maybe_resent))
    }

    /// `GET /cloudartifact/v5/storage?format_list=&in_project=` (`in_project` is a string here).
    pub async fn show_storage(
        &self,
        format_list: Option<&str>,
    ) -> Result<Traced<StorageTotal>, Error> {
        let mut req = Request::new(Service::Artifact, Method::GET, "/cloudartifact/v5/storage");
        req.query = vec![("in_project".into(), "false".into())];
        if let Some(f) = format_list {
            req.query.push(("format_list".into(), f.to_string()));
        }
        let resp = self.call(&req).await?;
        open(&req, &resp)
    }

    /// `GET …/{tenant_id}/{project_id}/storageinfo/statistic?repo=&start_time=&end_time=`.
    pub async fn storage_trend(
        &self,
        scope: &Scope,
        repo: Option<&str>,
        start: &str,
        end: &str,
    ) -> Result<Traced<Vec<TrendDay>>, Error> {
        let mut req = Request::new(
            Service::Artifact,
            Method::GET,
            scope.path("storageinfo/statistic"),
        );
        req.query = vec![
            ("start_time".into(), start.to_string()),
            ("end_time".into(), end.to_string()),
        ];
        if let Some(r) = repo {
            req.query.push(("repo".into(), r.to_string()));
        }
        let resp = self.call(&req).await?;
        let t: Traced<Option<Vec<TrendDay>>> = open(&req, &resp)?;
        Ok(Traced {
            result: t.result.unwrap_or_default(),
            trace_id: t.trace_id,
        })
    }

    /// `GET …/{tenant_id}/{project_id}/{module}/{repo}/audit?page_num=&page_size=`, newest first.
    pub async fn audit_page(
        &self,
        scope: &Scope,
        module: &str,
        repo: &str,
        page_num: u32,
        page_size: u32,
    ) -> Result<Traced<AuditPage>, Error> {
        let path = scope.path(&format!(
            "{}/{}/audit",
            encode_component(module),
            encode_component(repo)
        ));
        let mut req = Request::new(Service::Artifact, Method::GET, path);
        req.query = vec![
            ("page_num".into(), page_num.to_string()),
            ("page_size".into(), page_size.to_string()),
        ];
        let resp = self.call(&req).await?;
        open(&req, &resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_result_takes_both_documented_shapes() {
        let s: DeleteResult = serde_json::from_str(r#""success""#).unwrap();
        assert_eq!(s, DeleteResult::Success);
        let c: DeleteResult = serde_json::from_str(
            r#"{"successNum": 2, "failedNum": 1, "failedMessages": ["x is locked"]}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            DeleteResult::Counts {
                success_num: 2,
                failed_num: 1,
                failed_messages: vec!["x is locked".into()]
            }
        );
        assert!(serde_json::from_str::<DeleteResult>(r#""partial""#).is_err());
        assert!(serde_json::from_str::<DeleteResult>("3").is_err());
    }

    #[test]
    fn trash_items_go_out_with_format_not_fomat() {
        let item = TrashItem {
            id: "r1".into(),
            format: "npm".into(),
            uri: "r1/".into(),
            status: "trash".into(),
        };
        let text = serde_json::to_string(&[item]).unwrap();
        assert_eq!(
            text,
            r#"[{"id":"r1","format":"npm","uri":"r1/","status":"trash"}]"#
        );
    }

    #[test]
    fn repository_id_falls_back_to_name() {
        let r: Repository =
            serde_json::from_str(r#"{"id": null, "name": "cn-north-7_x_conan_5"}"#).unwrap();
        assert_eq!(r.repo_id(), Some("cn-north-7_x_conan_5"));
        let r: Repository = serde_json::from_str(r#"{"id": "a", "name": "b"}"#).unwrap();
        assert_eq!(r.repo_id(), Some("a"));
    }

    #[test]
    fn tree_nodes_accept_string_booleans() {
        let t: FileTree = serde_json::from_str(
            r#"{"children": [{"name": "1", "folder": "true"}, {"name": "2", "folder": false}], "total": "2"}"#,
        )
        .unwrap();
        assert!(t.children[0].folder);
        assert!(!t.children[1].folder);
    }
}
