//! The shared repositories' data: each repository shared by this account, the accounts it is
//! shared with, and the changes tests and `/__sim/swr/shares` make, now or once the listing has
//! answered some pages. It knows nothing of HTTP or of the simulator's shared state.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// One account a repository is shared with.
#[derive(Clone, Debug, Serialize)]
pub struct SimShare {
    pub permit: String,
    /// `forever` or a UTC time.
    pub deadline: String,
    pub description: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// A shared repository: its accounts by name.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SimSharedRepo {
    pub num_images: i64,
    pub tags: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub domains: BTreeMap<String, SimShare>,
}

/// A change to the shares, now or after some listing pages (`/__sim/swr/shares`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShareChange {
    /// `put` (add, or change permit and deadline) or `remove`.
    pub op: ShareOp,
    pub namespace: String,
    pub repository: String,
    pub access_domain: String,
    /// For `put`; default `read`.
    #[serde(default)]
    pub permit: Option<String>,
    /// For `put`; default `forever`.
    #[serde(default)]
    pub deadline: Option<String>,
    /// Apply once the listing has answered this many more pages (0 or absent: now).
    #[serde(default)]
    pub after_pages: Option<u64>,
}

/// What a [`ShareChange`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareOp {
    Put,
    Remove,
}

/// The shares, held by the simulator's state.
#[derive(Debug, Default)]
pub(crate) struct ShareState {
    pub(crate) repos: BTreeMap<(String, String), SimSharedRepo>,
    /// Listing pages answered so far.
    pages: u64,
    /// Changes waiting for the listing to answer `.0` pages in all.
    pending: Vec<(u64, ShareChange)>,
}

impl ShareState {
    /// A few shares: one forever, one with a deadline ahead, one whose deadline has passed
    /// (still listed, as the service keeps it), and a repository shared with two accounts.
    pub(crate) fn seed(now: DateTime<Utc>) -> ShareState {
        let mut s = ShareState::default();
        let ahead = (now + TimeDelta::days(90)).format("%Y-%m-%dT%H:%M:%SZ");
        let passed = (now - TimeDelta::days(30)).format("%Y-%m-%dT%H:%M:%SZ");
        for (ns, repo, domain, deadline) in [
            ("team-a", "api-server", "partner-x", "forever".to_string()),
            ("team-a", "api-server", "partner-y", ahead.to_string()),
            ("team-a", "web", "partner-x", "forever".to_string()),
            ("team-b", "batch-worker", "old-vendor", passed.to_string()),
        ] {
            s.put(
                ns,
                repo,
                domain,
                "read",
                &deadline,
                now - TimeDelta::days(60),
            );
        }
        s
    }

    fn put(
        &mut self,
        ns: &str,
        repo: &str,
        domain: &str,
        permit: &str,
        deadline: &str,
        at: DateTime<Utc>,
    ) {
        let r = self
            .repos
            .entry((ns.to_string(), repo.to_string()))
            .or_insert_with(|| SimSharedRepo {
                num_images: 3,
                tags: vec!["latest".into(), "v1".into(), "v2".into()],
                created_at: Some(at - TimeDelta::days(10)),
                domains: BTreeMap::new(),
            });
        let created = r.domains.get(domain).map_or(at, |d| d.created);
        r.domains.insert(
            domain.to_string(),
            SimShare {
                permit: permit.to_string(),
                deadline: deadline.to_string(),
                description: String::new(),
                created,
                updated: at,
            },
        );
    }

    /// Applies a change now, or queues it (see [`ShareChange::after_pages`]).
    pub(crate) fn change(&mut self, c: ShareChange, now: DateTime<Utc>) {
        if let Some(k) = c.after_pages.filter(|k| *k > 0) {
            self.pending.push((self.pages + k, c));
            return;
        }
        let key = (c.namespace.clone(), c.repository.clone());
        match c.op {
            ShareOp::Put => self.put(
                &c.namespace,
                &c.repository,
                &c.access_domain,
                c.permit.as_deref().unwrap_or("read"),
                c.deadline.as_deref().unwrap_or("forever"),
                now,
            ),
            ShareOp::Remove => {
                if let Some(r) = self.repos.get_mut(&key) {
                    r.domains.remove(&c.access_domain);
                    if r.domains.is_empty() {
                        self.repos.remove(&key);
                    }
                }
            }
        }
    }

    /// Counts one answered listing page and applies the changes now due.
    pub(crate) fn page_answered(&mut self, now: DateTime<Utc>) {
        self.pages += 1;
        let pages = self.pages;
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(at, _)| *at <= pages);
        self.pending = rest;
        for (_, mut c) in due {
            c.after_pages = None;
            self.change(c, now);
        }
    }
}
