//! The Artifact data model: repositories with their sizes and trashed files, the recycle bin
//! view, audit logs computed from their position, and the seeded account. Plain data: the routes
//! read and change it under the simulator's lock; it imports nothing from the routes or from
//! the shared state that holds it.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::sim::SimConfig;
use crate::size::format_size;

/// Formats the seeded repositories use, in the order they are handed out.
pub const FORMATS: [&str; 8] = [
    "maven2", "npm", "go", "pypi", "docker", "generic", "debian", "nuget",
];

pub(super) const UTC8: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
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
                let records = match cfg.audit_records_per_repo {
                    Some(each) => each,
                    None if n == 0 => cfg.audit_records,
                    None => 37 + 13 * n as u64,
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

pub(super) fn record_id(stream_no: u64, i: u64) -> String {
    (stream_no * 100_000_000 + i).to_string()
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
