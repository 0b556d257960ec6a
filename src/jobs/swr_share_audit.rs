//! `swr_share_audit`: a complete snapshot of what this account shares in SWR — the repositories
//! it shares (`GET /v2/manage/shared-repositories`, `center=self`, paged through
//! `Content-Range`) and, for each, the accounts it is shared with (`GET …/access-domains`:
//! account, `permit`, `deadline`) — stored as one snapshot that `swr shares` reads.
//!
//! **Complete while the listing changes.** An offset-paged listing that changes between pages
//! can skip an entry (one removed ahead of the walk shifts the next page by one) or show one
//! twice, and a total alone cannot tell: a removal and an addition leave it unchanged. So the
//! listing is walked again until two consecutive walks agree on the set of repositories, each
//! walk having seen one total on all its pages and as many distinct repositories as that total.
//! A quiet listing costs two walks; a listing that keeps changing for [`MAX_WALKS`] walks fails
//! the attempt as transient (retried with backoff). The access domains are read after the
//! listing has settled; a repository whose access domains answer 404 stopped being shared in
//! the meantime and is left out (counted as `vanished`).
//!
//! A snapshot is written in one transaction after everything was read, so an attempt that
//! fails (a 5xx past the client's own repeats, a 429) writes nothing, and the engine's retry
//! starts the snapshot again from the first page.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_params, Ctx, ParamError, RunError, Step};
use crate::api;
use crate::api::listing;
use crate::api::swr_share::SharedRepo;
use crate::config::Config;
use crate::store::swr_shares::{NewShareSnapshot, ShareRow, SharedRepoRow};
use crate::store::JobRow;

/// Repositories per listing page when a job gives no `page_size`.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// The largest `page_size` accepted.
pub const MAX_PAGE_SIZE: u64 = 1000;
/// Walks of the listing before an attempt gives up on it settling.
pub const MAX_WALKS: u32 = 6;
/// Pages of one walk before it is taken for a listing that never ends (a service that ignores
/// `offset` and sends full pages for ever).
const MAX_PAGES: u32 = 10_000;

/// Parameters of a `swr_share_audit` job: none required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Repositories per listing page (default 100, at most 1000).
    #[serde(default)]
    pub page_size: Option<u64>,
}

/// Parses and checks parameters.
pub fn parse(params: &Value) -> Result<Params, ParamError> {
    let p: Params = parse_params(params)?;
    if let Some(n) = p.page_size {
        if !(1..=MAX_PAGE_SIZE).contains(&n) {
            return Err(ParamError(format!(
                "parameter `page_size`: {n} is out of range 1..={MAX_PAGE_SIZE}"
            )));
        }
    }
    Ok(p)
}

/// Validates parameters at ingress.
pub fn validate(params: &Value, _cfg: &Config) -> Result<(), ParamError> {
    parse(params).map(|_| ())
}

/// True when `deadline` (`forever`, or a UTC time as the API writes it) is before `now`. A
/// deadline that does not parse is not called passed.
pub fn deadline_passed(deadline: &str, now: DateTime<Utc>) -> bool {
    deadline_time(deadline).is_some_and(|d| d < now)
}

/// A deadline as an instant: `None` for `forever` and for text that does not parse.
pub fn deadline_time(deadline: &str) -> Option<DateTime<Utc>> {
    let d = deadline.trim();
    if d.is_empty() || d.eq_ignore_ascii_case("forever") {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(d) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(d.trim_end_matches('Z'), f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

type Walk = listing::Walk<(String, String), SharedRepo>;

/// One walk of the listing: the repositories by (namespace, name).
async fn walk(ctx: &Ctx, page_size: u64) -> Result<Walk, RunError> {
    let mut walker = listing::Walker::default();
    let mut offset = 0u64;
    let mut pages = 0u32;
    loop {
        let page = ctx.api.list_shared_repos(offset, page_size).await?;
        let n = page.repos.len() as u64;
        offset += n;
        let total_reached = page.range.is_some_and(|r| offset >= r.total);
        walker.page(
            page.repos
                .into_iter()
                .map(|r| ((r.namespace.clone(), r.name.clone()), r)),
            page.range.map(|r| r.total),
            page.request_id,
        );
        // More than asked for: the service ignored the paging and sent the whole listing.
        if n == 0 || n != page_size || total_reached {
            break;
        }
        pages += 1;
        if pages >= MAX_PAGES {
            return Err(listing_error(format!(
                "the shared listing did not end within {MAX_PAGES} pages of {page_size}"
            )));
        }
    }
    Ok(walker.finish())
}

/// A listing that cannot be read whole: transient, so the attempt is retried.
fn listing_error(message: String) -> RunError {
    RunError::Api(api::Error::Decode {
        method: "GET".into(),
        path: api::swr_share::SHARED_REPOS_PATH.into(),
        status: 200,
        message,
    })
}

/// Walks the listing until two consecutive consistent walks agree; returns the last and the
/// number of walks taken.
async fn settled_listing(ctx: &Ctx, page_size: u64) -> Result<(Walk, u32), RunError> {
    listing::settle("shared repositories", MAX_WALKS, || walk(ctx, page_size))
        .await?
        .ok_or_else(|| {
            listing_error(format!(
                "the shared listing changed during each of {MAX_WALKS} walks; no two \
                 consecutive walks agreed (the attempt is retried)"
            ))
        })
}

/// Reads the listing and every repository's accounts, then writes the snapshot.
pub async fn run(ctx: &Ctx, job: &JobRow) -> Result<Step, RunError> {
    let p = parse(&job.params).map_err(|e| RunError::Invalid(e.0))?;
    let page_size = p.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    let (listing, walks) = settled_listing(ctx, page_size).await?;
    let mut snap = NewShareSnapshot {
        walks: i64::from(walks),
        ..NewShareSnapshot::default()
    };
    let mut vanished = Vec::new();
    for ((namespace, repository), r) in &listing.entries {
        let domains = match ctx.api.list_repo_domains(namespace, repository).await {
            Ok(d) => d,
            Err(api::Error::Api { status: 404, .. }) => {
                vanished.push(format!("{namespace}/{repository}"));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        snap.repos.push(SharedRepoRow {
            namespace: namespace.clone(),
            repository: repository.clone(),
            path: r.path.clone(),
            num_images: r.num_images,
            updated_at: r.updated_at.clone(),
        });
        let mut seen = std::collections::BTreeSet::new();
        for d in domains {
            if !seen.insert(d.access_domain.clone()) {
                continue;
            }
            snap.shares.push(ShareRow {
                namespace: namespace.clone(),
                repository: repository.clone(),
                access_domain: d.access_domain,
                permit: d.permit,
                deadline: d.deadline,
                status: d.status,
                description: d.description,
                creator_name: d.creator_name,
                created: d.created,
                updated: d.updated,
            });
        }
    }
    let now = Utc::now();
    let passed = snap
        .shares
        .iter()
        .filter(|s| deadline_passed(&s.deadline, now))
        .count();
    let id = ctx.store.save_share_snapshot(Some(job.id), &snap).await?;
    Ok(Step::Done {
        jid: None,
        trace_id: listing.trace_id,
        result: json!({
            "snapshot_id": id,
            "repositories": snap.repos.len(),
            "shares": snap.shares.len(),
            "deadline_passed": passed,
            "walks": walks,
            "vanished": vanished,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_parse_as_the_api_writes_them() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(!deadline_passed("forever", now));
        assert!(!deadline_passed("", now));
        assert!(!deadline_passed("soon", now));
        assert!(deadline_passed("2025-12-31T23:59:59Z", now));
        assert!(deadline_passed("2025-12-31T16:00:00.000Z", now));
        assert!(deadline_passed("2025-06-30", now));
        assert!(!deadline_passed("2026-01-01T00:00:01Z", now));
        assert!(!deadline_passed("2026-01-02T08:00:00+08:00", now));
    }
}
