//! Shared simulator state: issued tokens, queued faults, recorded calls and the
//! repositories with their mirror state.
//!
//! Everything sits behind one `std::sync::Mutex`. Handlers take it for a few
//! map look-ups and never hold it across an `.await`, so a single lock is both
//! simpler and cheaper than finer-grained ones on a small machine.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use axum::http::HeaderMap;
use chrono::{DateTime, TimeDelta, Utc};

use super::artifact::model::ArtifactState;
use super::swr::SwrState;
use super::{Call, Fault, RepoBehaviour, Route, SimConfig};

/// How a request authenticated itself, as recorded in [`Call::auth`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthKind {
    /// An issued, unexpired, project-scoped `X-Auth-Token`.
    Token,
    /// No `X-Auth-Token` header at all.
    None,
    /// A token that is unknown, expired, revoked or not project-scoped.
    Invalid,
    /// A verified AK/SK signature.
    AkSk,
    /// An AK/SK signature that did not verify.
    BadSignature,
}

impl AuthKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthKind::Token => "token",
            AuthKind::None => "none",
            AuthKind::Invalid => "invalid",
            AuthKind::AkSk => "aksk",
            AuthKind::BadSignature => "bad_signature",
        }
    }
}

pub(crate) struct TokenRecord {
    pub(crate) expires_at: DateTime<Utc>,
    /// CodeArts APIs need a project-scoped token (the Artifact reference says
    /// `auth.scope` must be `project`); a domain-scoped one is rejected there.
    pub(crate) project_scoped: bool,
    /// Set by `expire_tokens`: the token is treated as expired from then on.
    pub(crate) revoked: bool,
}

struct QueuedFault {
    fault: Fault,
    /// Matching requests still to let through before the fault applies.
    skip: u32,
    /// `None` for `times == 0`: applies until the queue is cleared.
    remaining: Option<u32>,
}

/// A sync started by the start call and not yet folded into the mirror record.
#[derive(Clone, Debug)]
pub(crate) struct RunningSync {
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) finishes_at: DateTime<Utc>,
    /// `Some(last_error)` if this sync is going to fail.
    pub(crate) failure: Option<String>,
}

/// The fields `show_remote_mirror` reports, kept as the service would store them.
#[derive(Clone, Debug)]
pub(crate) struct MirrorRecord {
    pub(crate) id: u64,
    pub(crate) url: String,
    pub(crate) mirroring_enabled: bool,
    pub(crate) is_private: bool,
    pub(crate) endpoint_uuid: String,
    pub(crate) update_status: String,
    pub(crate) last_update_at: Option<DateTime<Utc>>,
    pub(crate) last_successful_update_at: Option<DateTime<Utc>>,
    pub(crate) number_of_failures: u32,
    pub(crate) last_error: String,
}

pub(crate) struct RepoState {
    pub(crate) behaviour: RepoBehaviour,
    pub(crate) mirror: MirrorRecord,
    pub(crate) running: Option<RunningSync>,
}

impl RepoState {
    /// Initial state of a repository that exists but has not been touched yet.
    ///
    /// Most repositories have one successful sync about a day before the
    /// simulator started, so a client has a baseline to compare against.
    /// Repositories whose id is a multiple of 10 have never been synced: their
    /// timestamps are empty strings, as a never-run mirror would show.
    fn seeded(id: u32, created_at: DateTime<Utc>) -> Self {
        let never_synced = id % 10 == 0;
        // Spread the baseline over a few minutes so repositories differ.
        let last = created_at - TimeDelta::days(1) - TimeDelta::minutes(i64::from(id % 60));
        RepoState {
            behaviour: RepoBehaviour::default(),
            mirror: MirrorRecord {
                id: 100_000 + u64::from(id),
                url: format!("https://github.com/example-org/project-{id}.git"),
                mirroring_enabled: true,
                is_private: id % 2 == 0,
                endpoint_uuid: String::new(),
                update_status: if never_synced { "none" } else { "finished" }.to_string(),
                last_update_at: (!never_synced).then_some(last),
                last_successful_update_at: (!never_synced).then_some(last),
                number_of_failures: 0,
                last_error: String::new(),
            },
            running: None,
        }
    }

    /// Folds a finished sync into the mirror record. The state is computed
    /// lazily on access, so no timer task per sync is needed.
    pub(crate) fn settle(&mut self, now: DateTime<Utc>) {
        let finished = matches!(&self.running, Some(r) if now >= r.finishes_at);
        if !finished {
            return;
        }
        let Some(run) = self.running.take() else {
            return;
        };
        let m = &mut self.mirror;
        m.last_update_at = Some(run.finishes_at);
        match run.failure {
            None => {
                m.update_status = "finished".to_string();
                m.last_successful_update_at = Some(run.finishes_at);
                // Counts consecutive failures, as mirror services usually do;
                // a client must not assume it only ever grows.
                m.number_of_failures = 0;
                m.last_error = String::new();
            }
            Some(error) => {
                m.update_status = "failed".to_string();
                m.number_of_failures = m.number_of_failures.saturating_add(1);
                m.last_error = error;
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) tokens: HashMap<String, TokenRecord>,
    pub(crate) issued: Vec<String>,
    faults: Vec<QueuedFault>,
    /// Append-only: a call's index is used to fill in its status later.
    calls: Vec<Call>,
    repos: HashMap<u32, RepoState>,
    /// Seeded repositories removed with `remove_repo`.
    removed: HashSet<u32>,
    pub(crate) starts: HashMap<u32, usize>,
    pub(crate) artifact: ArtifactState,
    pub(crate) swr_shares: super::swr_share::model::ShareState,
    pub(crate) swr: SwrState,
}

pub(crate) struct SimState {
    pub(crate) cfg: SimConfig,
    pub(crate) created_at: DateTime<Utc>,
    inner: Mutex<Inner>,
    /// The delay before every API answer, in microseconds (see [`SimConfig::latency`]).
    latency_us: std::sync::atomic::AtomicU64,
}

impl SimState {
    pub(crate) fn new(cfg: SimConfig) -> Self {
        let created_at = Utc::now();
        let inner = Inner {
            artifact: ArtifactState::seed(&cfg, created_at),
            swr_shares: super::swr_share::model::ShareState::seed(created_at),
            ..Inner::default()
        };
        SimState {
            latency_us: std::sync::atomic::AtomicU64::new(cfg.latency.as_micros() as u64),
            cfg,
            created_at,
            inner: Mutex::new(inner),
        }
    }

    /// The delay before every API answer.
    pub(crate) fn latency(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.latency_us.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub(crate) fn set_latency(&self, d: std::time::Duration) {
        self.latency_us
            .store(d.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// A panic elsewhere must not wedge the simulator, so a poisoned lock is
    /// used as is: every update below leaves the state consistent.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn auth_kind(&self, headers: &HeaderMap) -> AuthKind {
        let Some(value) = headers.get("x-auth-token") else {
            return AuthKind::None;
        };
        let Ok(token) = value.to_str() else {
            return AuthKind::Invalid;
        };
        let now = Utc::now();
        match self.lock().tokens.get(token) {
            Some(t) if t.project_scoped && !t.revoked && now < t.expires_at => AuthKind::Token,
            _ => AuthKind::Invalid,
        }
    }

    pub(crate) fn push_fault(&self, fault: Fault) {
        let remaining = (fault.times > 0).then_some(fault.times);
        let skip = fault.skip;
        self.lock().faults.push(QueuedFault {
            fault,
            skip,
            remaining,
        });
    }

    pub(crate) fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Takes the first queued fault that matches, using up one of its times.
    pub(crate) fn take_fault(
        &self,
        route: Route,
        repository_id: Option<u32>,
        target: &str,
    ) -> Option<Fault> {
        let mut inner = self.lock();
        let pos = inner.faults.iter().position(|q| {
            q.fault.route == route
                && (q.fault.repository_id.is_none() || q.fault.repository_id == repository_id)
                && q.fault
                    .target_contains
                    .as_deref()
                    .is_none_or(|t| target.contains(t))
        })?;
        let queued = &mut inner.faults[pos];
        if queued.skip > 0 {
            queued.skip -= 1;
            return None;
        }
        let fault = queued.fault.clone();
        if let Some(left) = queued.remaining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                inner.faults.remove(pos);
            }
        }
        Some(fault)
    }

    pub(crate) fn expire_tokens(&self) {
        for t in self.lock().tokens.values_mut() {
            t.revoked = true;
        }
    }

    pub(crate) fn begin_call(&self, call: Call) -> usize {
        let mut inner = self.lock();
        inner.calls.push(call);
        inner.calls.len() - 1
    }

    pub(crate) fn finish_call(&self, index: usize, status: u16, body_username: Option<String>) {
        if let Some(call) = self.lock().calls.get_mut(index) {
            call.status = status;
            call.body_username = body_username;
        }
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub(crate) fn count(&self, route: Route) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.route == route)
            .count()
    }

    pub(crate) fn set_repo(&self, id: u32, behaviour: RepoBehaviour) {
        let created_at = self.created_at;
        let mut inner = self.lock();
        inner.removed.remove(&id);
        inner
            .repos
            .entry(id)
            .or_insert_with(|| RepoState::seeded(id, created_at))
            .behaviour = behaviour;
    }

    /// Appends tags to an SWR repository, creating it if needed.
    pub(crate) fn add_swr_tags(&self, namespace: &str, repository: &str, tags: &[String]) {
        let mut inner = self.lock();
        let list = inner
            .swr
            .repos
            .entry((namespace.to_string(), repository.to_string()))
            .or_default();
        for t in tags {
            if !list.contains(t) {
                list.push(t.clone());
            }
        }
    }

    /// Sets (or with `None` clears) the status a tag's syncs end with.
    pub(crate) fn set_swr_tag_outcome(
        &self,
        namespace: &str,
        repository: &str,
        tag: &str,
        status: Option<&str>,
    ) {
        let key = (
            namespace.to_string(),
            repository.to_string(),
            tag.to_string(),
        );
        let mut inner = self.lock();
        match status {
            Some(s) => inner.swr.tag_outcome.insert(key, s.to_string()),
            None => inner.swr.tag_outcome.remove(&key),
        };
    }

    /// Makes a repository's syncs (started from now on) never finish; or lets them finish again,
    /// those already hanging too (a slow sync that ends after all).
    pub(crate) fn set_swr_hang(&self, namespace: &str, repository: &str, hang: bool) {
        let key = (namespace.to_string(), repository.to_string());
        let mut inner = self.lock();
        if hang {
            inner.swr.hanging.insert(key);
        } else {
            inner.swr.hanging.remove(&key);
            for j in inner.swr.jobs.iter_mut() {
                if j.namespace == namespace && j.repository == repository {
                    j.hangs = false;
                }
            }
        }
    }

    pub(crate) fn remove_repo(&self, id: u32) {
        let mut inner = self.lock();
        inner.repos.remove(&id);
        inner.removed.insert(id);
    }
}

impl Inner {
    /// The repository's state, created on first use for seeded ids so a large
    /// seed range costs nothing until it is touched.
    pub(crate) fn repo_mut(
        &mut self,
        id: u32,
        seed: &std::ops::RangeInclusive<u32>,
        created_at: DateTime<Utc>,
    ) -> Option<&mut RepoState> {
        if !self.repos.contains_key(&id) {
            if !seed.contains(&id) || self.removed.contains(&id) {
                return None;
            }
            self.repos.insert(id, RepoState::seeded(id, created_at));
        }
        self.repos.get_mut(&id)
    }
}
