//! The walk of one `audit_mirror` stream: its pages in order, requested ahead of the writer, and
//! written by this one writer, so the stream's hash chain stays a chain while other streams are
//! walked beside it.
//!
//! **Fetch-ahead and page shifts.** A page answer carries the log's `total` at the instant it was
//! served, and records only arrive at the newest end, so page `k` served with total `T` holds
//! exactly the records at oldest-first positions `T - k·P ..= T - (k-1)·P - 1` (`P` the page
//! size). Consecutive pages `k` and `k+1` therefore leave no gap between them when
//! `T(k+1) >= T(k)`: arrivals in between only make them overlap (a record seen twice, archived
//! once). A walk that sends one request at a time has that for free, since each page is served
//! after the one before. With pages requested ahead they may be served in any order, and a page
//! served *before* its predecessor, with records arriving in between, would leave a gap of
//! `T(k) - T(k+1)` records. So every page is checked as it is taken, in page order: an answer
//! whose `total` is below the total of the page accepted before it is dropped and the page is
//! requested again, now — after its predecessor's answer was received, hence served after it,
//! exactly as in a one-request-at-a-time walk. (A log whose total shrinks, old records expiring,
//! keeps positions from the newest end unchanged; the repeated answer is then taken as it is.)
//!
//! Pages are requested ahead only while walking to the end of the log, and only those that the
//! newest known `total` says exist; walking down to what is archived, whether the next page is
//! wanted depends on the current page's write, so nothing is requested ahead.
//!
//! **Checkpoints.** Each page is written in one transaction with the job's checkpoint. Streams
//! write concurrently, so the checkpoint a page carries holds this stream's position after the
//! page and, for every other stream, the position of its last *committed* page (never one still
//! being written). Whichever transaction commits last, the stored checkpoint never puts a stream
//! past a page that is not in the archive; at worst it puts a stream a few pages back, which
//! refetches pages whose records are already archived.

use std::collections::VecDeque;

use serde_json::Value;
use tokio::task::JoinHandle;

use super::{record_time, Checkpoint, Key, MAX_PASSES};
use crate::api::{
    self,
    artifact::{AuditPage, Scope, Traced},
};
use crate::jobs::{Ctx, RunError};
use crate::store::archive::NewRecord;
use crate::store::JobRow;

type Fetched = Result<Traced<AuditPage>, api::Error>;

/// What every stream's walk shares: the job, where to look, and the committed positions.
pub(super) struct Walk<'a> {
    pub ctx: &'a Ctx,
    pub job: &'a JobRow,
    pub scope: &'a Scope,
    pub module: &'a str,
    pub page_size: u32,
    pub full: bool,
    /// Pages requested ahead of the one being written, per stream.
    pub prefetch: u32,
    /// Every stream's last committed position, and the job's counters.
    pub committed: std::sync::Mutex<Checkpoint>,
}

impl Walk<'_> {
    fn committed(&self) -> std::sync::MutexGuard<'_, Checkpoint> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep using it.
        self.committed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn request(&self, repo: &str, page: u32) -> JoinHandle<Fetched> {
        let (api, scope, module, repo) = (
            self.ctx.api.clone(),
            self.scope.clone(),
            self.module.to_string(),
            repo.to_string(),
        );
        let size = self.page_size;
        tokio::spawn(async move { api.audit_page(&scope, &module, &repo, page, size).await })
    }

    async fn fetch(&self, repo: &str, page: u32) -> Fetched {
        self.ctx
            .api
            .audit_page(self.scope, self.module, repo, page, self.page_size)
            .await
    }
}

/// Pages requested ahead, in page order; whatever is still pending is aborted when dropped (a
/// failed or cancelled run leaves no request behind).
#[derive(Default)]
struct Ahead(VecDeque<(u32, JoinHandle<Fetched>)>);

impl Ahead {
    /// The answer for `page` if it was requested ahead; anything requested for earlier pages is
    /// dropped.
    async fn take(&mut self, page: u32) -> Option<Fetched> {
        while let Some((p, _)) = self.0.front() {
            if *p >= page {
                break;
            }
            if let Some((_, h)) = self.0.pop_front() {
                h.abort();
            }
        }
        if self.0.front().is_none_or(|(p, _)| *p != page) {
            return None;
        }
        let (_, handle) = self.0.pop_front()?;
        match handle.await {
            Ok(fetched) => Some(fetched),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Aborted: fetch it again.
            Err(_) => None,
        }
    }

    /// The first page not requested yet, at or after `from`.
    fn next_unrequested(&self, from: u32) -> u32 {
        self.0.back().map_or(from, |(p, _)| (p + 1).max(from))
    }

    fn clear(&mut self) {
        for (_, h) in self.0.drain(..) {
            h.abort();
        }
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Reads a page's records: the id and time each needs, the text kept as it came. The error is
/// what is wrong with a record.
fn records_of(raws: &[Box<serde_json::value::RawValue>]) -> Result<Vec<NewRecord<'_>>, String> {
    let mut records = Vec::with_capacity(raws.len());
    for raw in raws {
        let key: Key = serde_json::from_str(raw.get())
            .map_err(|e| format!("an audit record has no usable id: {e}"))?;
        let id = match key.id {
            Value::String(s) if !s.is_empty() => s,
            Value::Number(n) => n.to_string(),
            other => return Err(format!("an audit record's id is {other}")),
        };
        records.push(NewRecord {
            record_id: id,
            record_time: key.time.as_deref().and_then(record_time),
            raw: raw.get(),
        });
    }
    Ok(records)
}

/// Walks stream `i` from its committed position to the end of this run; returns the last
/// answer's trace id.
pub(super) async fn stream(w: &Walk<'_>, i: usize) -> Result<Option<String>, RunError> {
    let mut s = w.committed().streams[i].clone();
    if s.done {
        return Ok(None);
    }
    let repo = s.repo.clone();
    let page_size = w.page_size;
    if s.pass == 0 {
        // A new stream walk: stop where the last complete walk reached, unless told `full`.
        let state = w.ctx.store.audit_stream(w.module, &repo).await?;
        s.pass = 1;
        s.page = 1;
        s.stop_seq = (!w.full && state.complete_seq > 0).then_some(state.complete_seq);
    }
    let mut ahead = Ahead::default();
    let mut last_trace = None;
    loop {
        let page = s.page;
        let mut answer = match ahead.take(page).await {
            Some(fetched) => fetched?,
            None => w.fetch(&repo, page).await?,
        };
        // Served before the page accepted before it, with records arriving in between: ask
        // again (see the module doc).
        if page > 1 && s.last_total.is_some_and(|prev| answer.result.total < prev) {
            tracing::debug!(repo = %repo, page, "audit page answered out of order; fetching it again");
            answer = w.fetch(&repo, page).await?;
        }
        last_trace = answer.trace_id.or(last_trace);
        let total = answer.result.total;
        let raws = answer.result.records;
        let records = records_of(&raws).map_err(|message| {
            RunError::Api(api::Error::Decode {
                method: "GET".into(),
                path: format!("audit of {repo}"),
                status: 200,
                message,
            })
        })?;
        // Decide what comes next before writing, so the page and the position that follows it
        // are saved together.
        if s.first_total.is_none() {
            s.first_total = Some(total);
        }
        s.last_total = Some(total);
        let at_end = records.is_empty()
            || records.len() < page_size as usize
            || i64::from(page) * i64::from(page_size) >= total;
        s.page = page + 1;
        // Walking to the end, the next pages are certain to be wanted: request them now, so
        // that they arrive while this one is written.
        if s.stop_seq.is_none() && !at_end && w.prefetch > 0 {
            let known = u64::try_from(total).unwrap_or(0);
            let last_page = u32::try_from(known.div_ceil(u64::from(page_size))).unwrap_or(u32::MAX);
            let upto = page.saturating_add(w.prefetch).min(last_page);
            for p in ahead.next_unrequested(page + 1)..=upto {
                ahead.0.push_back((p, w.request(&repo, p)));
            }
        }
        let snapshot = {
            let c = w.committed();
            let mut cp = c.clone();
            cp.streams[i] = s.clone();
            cp.pages += 1;
            serde_json::to_value(&cp).unwrap_or(Value::Null)
        };
        let writing = std::time::Instant::now();
        let wrote = w
            .ctx
            .store
            .archive_page(w.job.id, w.module, &repo, &records, &snapshot)
            .await?;
        tracing::debug!(
            repo = %repo,
            page,
            records = records.len(),
            inserted = wrote.inserted,
            write_us = writing.elapsed().as_micros() as u64,
            "audit page archived"
        );
        {
            let mut c = w.committed();
            c.streams[i] = s.clone();
            c.pages += 1;
            c.archived += wrote.inserted as u64;
        }
        let reached_archived = match (s.stop_seq, wrote.min_existing_seq) {
            (Some(stop), Some(min)) => min <= stop,
            _ => false,
        };
        if !(at_end || reached_archived) {
            continue;
        }
        // This pass is complete down to what was already archived.
        ahead.clear();
        let complete = w.ctx.store.audit_mark_complete(w.module, &repo).await?;
        let grew = s.last_total != s.first_total;
        if grew && s.pass < MAX_PASSES {
            tracing::info!(repo = %repo, pass = s.pass, "audit log grew during the walk; catching up from page 1");
            s.pass += 1;
            s.page = 1;
            s.stop_seq = Some(complete);
            s.first_total = None;
            s.last_total = None;
            continue;
        }
        s.done = true;
        break;
    }
    let snapshot = {
        let mut c = w.committed();
        c.streams[i] = s;
        serde_json::to_value(&*c).unwrap_or(Value::Null)
    };
    w.ctx
        .store
        .checkpoint(w.job.id, Some(&snapshot), None)
        .await?;
    Ok(last_trace)
}
