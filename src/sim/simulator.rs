//! The [`Simulator`] handle held by tests, the demo and `simulate`: starting servers and stopping
//! them, and the controls (faults, token expiry, repositories, Artifact data, recorded calls)
//! that `/__sim/` also offers over HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::artifact::model::{human_size, AuditTrigger, DeleteResultShape, TrashEntry};
use super::server::serve_loop;
use super::state::SimState;
use super::{Call, Fault, RepoBehaviour, Route, ShareChange, SimConfig};

/// A simulator instance. Clones share state; when the last clone is dropped,
/// servers started with [`Simulator::spawn`] or [`Simulator::serve`] stop.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<SimState>,
    life: Arc<Lifetime>,
}

/// Held only by `Simulator` handles, never by server tasks, so that dropping
/// the last handle closes the channel and stops the servers.
struct Lifetime {
    stop: watch::Sender<u64>,
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Self {
        let (stop, _) = watch::channel(0);
        Simulator {
            state: Arc::new(SimState::new(cfg)),
            life: Arc::new(Lifetime { stop }),
        }
    }

    /// Binds `addr` (use "127.0.0.1:0" in tests) and serves in a spawned task
    /// until the handle is dropped or `shutdown` is called; returns the bound
    /// address.
    pub async fn spawn(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let state = Arc::clone(&self.state);
        let stop = self.life.stop.subscribe();
        tokio::spawn(serve_loop(state, listener, stop, std::future::pending()));
        Ok(local)
    }

    /// Serves on an existing listener until `shutdown` resolves (or
    /// [`Simulator::shutdown`] is called, or the last handle is dropped).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = Arc::clone(&self.state);
        let stop = self.life.stop.subscribe();
        serve_loop(state, listener, stop, shutdown).await
    }

    /// Stops every server started from this simulator so far. Servers started
    /// afterwards are not affected.
    pub fn shutdown(&self) {
        self.life.stop.send_modify(|generation| *generation += 1);
    }

    /// Queues a fault; see [`Fault`].
    pub fn inject(&self, fault: Fault) {
        self.state.push_fault(fault);
    }

    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// Every token issued so far is expired from now on (401 `DEV.00000003`
    /// on use). Tokens issued later are unaffected.
    pub fn expire_tokens(&self) {
        self.state.expire_tokens();
    }

    /// Makes repository `id` exist with `behaviour`, keeping its mirror state
    /// if it already existed.
    pub fn set_repo(&self, id: u32, behaviour: RepoBehaviour) {
        self.state.set_repo(id, behaviour);
    }

    /// Every API answer waits this long from now on (see [`super::SimConfig::latency`]).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.state.set_latency(latency);
    }

    /// Repository `id` no longer exists (404 `CH.004404`).
    pub fn remove_repo(&self, id: u32) {
        self.state.remove_repo(id);
    }

    /// Every request received on a simulated API route, in order of arrival.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls()
    }

    /// Requests received on `route`, including faulted and rejected ones.
    pub fn count(&self, route: Route) -> usize {
        self.state.count(route)
    }

    /// Every token value issued, so tests can check none of them leaks into logs.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.lock().issued.clone()
    }

    /// The recycle bin's content now.
    pub fn trash_entries(&self) -> Vec<TrashEntry> {
        self.state.lock().artifact.trash_entries()
    }

    /// Every item URI deleted for good, in order (each should appear once).
    pub fn deleted_uris(&self) -> Vec<String> {
        self.state.lock().artifact.deleted.clone()
    }

    /// Every item URI received by delete calls that reached the service, in order.
    pub fn delete_requests(&self) -> Vec<String> {
        self.state.lock().artifact.delete_requests.clone()
    }

    /// Deleting `uri` fails (reported in `failedMessages`) from now on.
    pub fn lock_trash(&self, uri: &str) {
        self.state.lock().artifact.locked.push(uri.to_string());
    }

    /// Chooses the shape of the trash delete's `result`.
    pub fn set_delete_result_shape(&self, shape: DeleteResultShape) {
        self.state.lock().artifact.delete_shape = shape;
    }

    /// Ids of the active Artifact repositories, in listing order.
    pub fn artifact_repo_ids(&self) -> Vec<String> {
        self.state
            .lock()
            .artifact
            .in_order()
            .into_iter()
            .filter(|r| r.status == "active")
            .map(|r| r.id.clone())
            .collect()
    }

    /// `(repository id, exact bytes, usedSpace string)` of each active repository.
    pub fn artifact_usage(&self) -> Vec<(String, u64, String)> {
        self.state
            .lock()
            .artifact
            .in_order()
            .into_iter()
            .filter(|r| r.status == "active")
            .map(|r| (r.id.clone(), r.used_bytes, human_size(r.used_bytes, "0 MB")))
            .collect()
    }

    /// Appends `count` audit records to the log of (`module`, `repo`) now.
    pub fn append_audit(&self, module: &str, repo: &str, count: u64) {
        self.state.lock().artifact.append_audit(module, repo, count);
    }

    /// Appends `count` audit records to (`module`, `repo`) right after the audit route has
    /// answered `after_pages` pages of that log: an append in the middle of a walk.
    pub fn append_audit_after(&self, module: &str, repo: &str, after_pages: u64, count: u64) {
        self.state.lock().artifact.triggers.push(AuditTrigger {
            module: module.to_string(),
            repo: repo.to_string(),
            after_pages,
            count,
        });
    }

    /// The ids of every record in the log of (`module`, `repo`), oldest first.
    pub fn audit_ids(&self, module: &str, repo: &str) -> Vec<String> {
        self.state.lock().artifact.audit_ids(module, repo)
    }

    /// Successful (200) start calls for `repository_id`.
    pub fn mirror_starts(&self, repository_id: u32) -> usize {
        self.state
            .lock()
            .starts
            .get(&repository_id)
            .copied()
            .unwrap_or(0)
    }

    /// Changes SWR's shares now, or once the shared listing has answered `after_pages` more
    /// pages (see [`ShareChange`]).
    pub fn change_swr_share(&self, change: ShareChange) {
        let now = chrono::Utc::now();
        self.state.lock().swr_shares.change(change, now);
    }

    /// Every SWR share: `(namespace, repository, account, permit, deadline)`, in listing order.
    pub fn swr_shares(&self) -> Vec<(String, String, String, String, String)> {
        let inner = self.state.lock();
        let mut out = Vec::new();
        for ((ns, repo), r) in &inner.swr_shares.repos {
            for (domain, s) in &r.domains {
                out.push((
                    ns.clone(),
                    repo.clone(),
                    domain.clone(),
                    s.permit.clone(),
                    s.deadline.clone(),
                ));
            }
        }
        out
    }

    /// What the SWR routes received, oldest first.
    pub fn swr_requests(&self) -> Vec<super::swr::SwrRequest> {
        self.state.lock().swr.requests.clone()
    }

    /// Appends tags to an SWR repository (creating it and its organization if needed).
    pub fn swr_add_tags(&self, namespace: &str, repository: &str, tags: &[&str]) {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        self.state.add_swr_tags(namespace, repository, &tags);
    }

    /// Makes the tag's syncs end with `status` (`failed`, `timeout`, `cancel`, ...); `None`
    /// lets them succeed again.
    pub fn swr_tag_outcome(
        &self,
        namespace: &str,
        repository: &str,
        tag: &str,
        status: Option<&str>,
    ) {
        self.state
            .set_swr_tag_outcome(namespace, repository, tag, status);
    }

    /// Makes the repository's syncs started from now on never finish (or finish again).
    pub fn swr_hang(&self, namespace: &str, repository: &str, hang: bool) {
        self.state.set_swr_hang(namespace, repository, hang);
    }

    /// Changes the repository's tags once its listing has served `shift.after_pages` pages.
    pub fn swr_shift_tags(&self, shift: super::swr::TagShift) {
        self.state.lock().swr.shifts.push(shift);
    }

    /// How many sync jobs the repository has.
    pub fn swr_sync_jobs(&self, namespace: &str, repository: &str) -> usize {
        self.state
            .lock()
            .swr
            .jobs
            .iter()
            .filter(|j| j.namespace == namespace && j.repository == repository)
            .count()
    }
}
