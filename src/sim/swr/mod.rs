//! SWR (SoftWare Repository for Container), image synchronization: the repository's tags
//! (`list_repository_tags`), a manual sync (`create_manual_image_sync_repo`) and its sync jobs
//! (`show_sync_job`), all under `/v2/manage/namespaces/{namespace}/repos/{repository}/`.
//!
//! As the vendor pages and the SDK give them: listings are bare JSON arrays with a
//! `Content-Range: offset-count/total` header (on the tag listing only when both `limit` and
//! `offset` were sent; the sync jobs' `filter` requires both); a repository name's `/` arrives
//! as `$` in the path; a manual sync makes one sync job per tag, which moves `waiting` →
//! `running` → final (over [`SimConfig::sync_duration`](super::SimConfig::sync_duration)):
//! `success`, or `existed` when the tag is already at the target and `override` is false, or
//! the status a test set for the tag (`failed`, `timeout`, `cancel`; `running` for one that
//! never ends). A repository can be set to hang (its syncs stay `running`). Errors are
//! `{error_code, error_msg}` with SWR's `SVCSTG.SWR.*` codes (the codes follow the service's
//! pattern; the pages kept here do not list them), and the gateway's `APIGW.*` for
//! authentication and throttling.
//!
//! Seeded: organization `demo-team` with `web` (5 tags), `tools/builder` (2 tags) and `api`
//! (250 tags, every fifth named `v1.N`, the others `build-N`), and `platform` with
//! `base/alpine` (4 tags); at the target
//! `ap-southeast-1`/`demo-team-dr`, `web:v1.0.0` already exists.
//!
//! Every request that reaches a handler is kept as a [`SwrRequest`] (method, path as sent, raw
//! query, JSON body) for tests that check what the daemon sends.

pub(crate) mod control;
pub(crate) mod routes;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Route;

/// Regions a manual sync may target in the simulator.
pub const SYNC_REGIONS: &[&str] = &[
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "af-south-1",
    "cn-north-4",
    "cn-east-3",
    "la-north-2",
];

/// A bad request.
pub(crate) const BAD_REQUEST: &str = "SVCSTG.SWR.4001002";
/// No such organization.
pub(crate) const NO_NAMESPACE: (&str, &str) = ("SVCSTG.SWR.4041001", "Namespace not found");
/// No such repository.
pub(crate) const NO_REPOSITORY: (&str, &str) = ("SVCSTG.SWR.4041002", "Repository not found");
/// No such tag in the repository.
pub(crate) const NO_TAG: &str = "SVCSTG.SWR.4041003";
/// No permission.
pub(crate) const FORBIDDEN: (&str, &str) = ("SVCSTG.SWR.4031001", "Permission denied");
/// The service's own failure.
pub(crate) const INTERNAL: (&str, &str) = ("SVCSTG.SWR.5001001", "Internal server error");
/// A missing or refused token, as the API gateway answers it.
pub(crate) const BAD_TOKEN: (&str, &str) = (
    "APIGW.0301",
    "Incorrect IAM authentication information: token expired or invalid",
);
/// Throttled by the API gateway.
pub(crate) const THROTTLED: (&str, &str) =
    ("APIGW.0308", "The throttling threshold has been reached");

/// A repository's name from its path value (already percent-decoded). SWR's pages ask for a
/// `/` in a repository name to be sent as `$`, so a `$` stands for `/`; a raw (or
/// `%2F`-encoded) slash names nothing (`None`, which the routes answer with [`NO_REPOSITORY`]).
pub(crate) fn repository_name(path_value: &str) -> Option<String> {
    (!path_value.contains('/')).then(|| path_value.replace('$', "/"))
}

/// One request an SWR handler received.
#[derive(Clone, Debug, Serialize)]
pub struct SwrRequest {
    pub route: Route,
    pub method: String,
    /// The path as sent (still percent-encoded).
    pub path: String,
    /// The raw query string as sent (empty if none).
    pub query: String,
    /// The JSON body, if one was sent and parsed.
    pub body: Option<serde_json::Value>,
}

/// One sync job as the simulator keeps it.
#[derive(Clone, Debug)]
pub(crate) struct SimSyncJob {
    pub(crate) id: i64,
    pub(crate) namespace: String,
    pub(crate) repository: String,
    pub(crate) tag: String,
    pub(crate) remote_region_id: String,
    pub(crate) remote_namespace: String,
    pub(crate) override_existing: bool,
    pub(crate) created_at: DateTime<Utc>,
    /// The status it ends with.
    pub(crate) outcome: String,
    /// Never leaves `running`.
    pub(crate) hangs: bool,
}

impl SimSyncJob {
    /// The status at `now`: `waiting` for the first third of `duration`, then `running`, then
    /// the outcome.
    pub(crate) fn status(&self, now: DateTime<Utc>, duration: std::time::Duration) -> &str {
        let elapsed = (now - self.created_at).to_std().unwrap_or_default();
        if elapsed < duration / 3 {
            "waiting"
        } else if self.hangs || self.outcome == "running" || elapsed < duration {
            "running"
        } else {
            &self.outcome
        }
    }

    pub(crate) fn to_json(
        &self,
        now: DateTime<Utc>,
        duration: std::time::Duration,
        domain_id: &str,
    ) -> serde_json::Value {
        let status = self.status(now, duration);
        let updated = if status == "waiting" {
            self.created_at
        } else {
            now.min(self.created_at + chrono::TimeDelta::from_std(duration).unwrap_or_default())
        };
        serde_json::json!({
            "createdAt": self.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "domainID": domain_id,
            "domainName": "demo-account",
            "id": self.id,
            "namespace": self.namespace,
            "override": self.override_existing,
            "remoteNamespace": self.remote_namespace,
            "remoteRegionId": self.remote_region_id,
            "repoName": self.repository,
            "status": status,
            "syncOperatorId": "7a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "syncOperatorName": "demo-user",
            "tag": self.tag,
            "updatedAt": updated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }
}

/// Where a manual sync copies to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target<'a> {
    pub(crate) region: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) override_existing: bool,
}

/// The SWR part of the simulator's state.
pub(crate) struct SwrState {
    /// Tags by (organization, repository), in listing order.
    pub(crate) repos: BTreeMap<(String, String), Vec<String>>,
    /// Images present at targets: (region, organization, repository, tag).
    pub(crate) remote: HashSet<(String, String, String, String)>,
    pub(crate) jobs: Vec<SimSyncJob>,
    pub(crate) next_id: i64,
    /// A tag's sync ends with this status: (organization, repository, tag) → status.
    pub(crate) tag_outcome: HashMap<(String, String, String), String>,
    /// Repositories whose syncs never finish.
    pub(crate) hanging: HashSet<(String, String)>,
    pub(crate) requests: Vec<SwrRequest>,
    /// Tag pages served per repository, for [`TagShift`]s.
    pub(crate) pages_served: HashMap<(String, String), u64>,
    pub(crate) shifts: Vec<TagShift>,
}

/// A change to a repository's tags once its listing has served `after_pages` pages (a tag
/// pushed or deleted while a client walks the listing).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagShift {
    pub namespace: String,
    pub repository: String,
    pub after_pages: u64,
    /// Tags removed.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Tags added at the front of the listing.
    #[serde(default)]
    pub add_front: Vec<String>,
    /// Tags added at the end of the listing.
    #[serde(default)]
    pub add_back: Vec<String>,
}

impl Default for SwrState {
    fn default() -> Self {
        let key = |r: &str| ("demo-team".to_string(), r.to_string());
        let mut repos = BTreeMap::new();
        repos.insert(
            key("web"),
            ["v1.0.0", "v1.0.1", "v1.1.0", "v2.0.0", "latest"]
                .map(str::to_string)
                .to_vec(),
        );
        repos.insert(key("tools/builder"), vec!["1.0".into(), "1.1".into()]);
        repos.insert(
            ("platform".to_string(), "base/alpine".to_string()),
            ["3.18", "3.19", "3.20", "edge"]
                .map(str::to_string)
                .to_vec(),
        );
        repos.insert(
            key("api"),
            (0..250)
                .map(|i| {
                    if i % 5 == 0 {
                        format!("v1.{i}")
                    } else {
                        format!("build-{i}")
                    }
                })
                .collect(),
        );
        let mut remote = HashSet::new();
        remote.insert((
            "ap-southeast-1".to_string(),
            "demo-team-dr".to_string(),
            "web".to_string(),
            "v1.0.0".to_string(),
        ));
        SwrState {
            repos,
            remote,
            jobs: Vec::new(),
            // Ids carry on from earlier activity, as a real account's would.
            next_id: 1_000,
            tag_outcome: HashMap::new(),
            hanging: HashSet::new(),
            requests: Vec::new(),
            pages_served: HashMap::new(),
            shifts: Vec::new(),
        }
    }
}

impl SwrState {
    /// Whether the organization exists (it holds a repository).
    pub(crate) fn has_namespace(&self, namespace: &str) -> bool {
        self.repos.keys().any(|(ns, _)| ns == namespace)
    }

    /// Counts a served page of the repository's tags and applies the shifts now due.
    pub(crate) fn page_served(&mut self, namespace: &str, repository: &str) {
        let key = (namespace.to_string(), repository.to_string());
        let served = self.pages_served.entry(key.clone()).or_default();
        *served += 1;
        let served = *served;
        let (due, rest): (Vec<TagShift>, Vec<TagShift>) = self.shifts.drain(..).partition(|s| {
            s.namespace == namespace && s.repository == repository && s.after_pages <= served
        });
        self.shifts = rest;
        for s in due {
            let tags = self.repos.entry(key.clone()).or_default();
            tags.retain(|t| !s.remove.contains(t));
            for t in s.add_front.iter().rev() {
                if !tags.contains(t) {
                    tags.insert(0, t.clone());
                }
            }
            for t in &s.add_back {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
        }
    }

    /// Makes one sync job per tag; the outcome is fixed now.
    pub(crate) fn start(
        &mut self,
        namespace: &str,
        repository: &str,
        tags: &[String],
        target: &Target<'_>,
        now: DateTime<Utc>,
    ) -> Vec<i64> {
        let Target {
            region,
            namespace: remote_namespace,
            override_existing,
        } = *target;
        let hangs = self
            .hanging
            .contains(&(namespace.to_string(), repository.to_string()));
        let mut ids = Vec::new();
        for tag in tags {
            let at_target = (
                region.to_string(),
                remote_namespace.to_string(),
                repository.to_string(),
                tag.clone(),
            );
            let set =
                self.tag_outcome
                    .get(&(namespace.to_string(), repository.to_string(), tag.clone()));
            let outcome = match set {
                Some(s) => s.clone(),
                None if !override_existing && self.remote.contains(&at_target) => {
                    "existed".to_string()
                }
                None => {
                    self.remote.insert(at_target);
                    "success".to_string()
                }
            };
            self.next_id += 1;
            ids.push(self.next_id);
            self.jobs.push(SimSyncJob {
                id: self.next_id,
                namespace: namespace.to_string(),
                repository: repository.to_string(),
                tag: tag.clone(),
                remote_region_id: region.to_string(),
                remote_namespace: remote_namespace.to_string(),
                override_existing,
                created_at: now,
                outcome,
                hangs,
            });
        }
        ids
    }
}
