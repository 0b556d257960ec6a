//! SWR (SoftWare Repository for Container): what the SWR calls share. Listings under
//! `/v2/manage/...` answer with a bare JSON array and, when `limit` and `offset` are sent, a
//! `Content-Range` header. The documentation gives it as `offset-count/total` while other
//! services write `first-last/total`, so only the first number and the total are relied on: a
//! listing is paged by the number of items each page actually held, until the total is reached
//! or a page comes back short.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{listing, Client, Error, Request, Service};

/// Walks of a repository's tag listing before it is taken for one that never settles.
pub const TAG_WALKS: u32 = 6;

/// A parsed `Content-Range`: the first record's offset and the total the listing had when the
/// page was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    pub offset: u64,
    pub total: u64,
}

impl ContentRange {
    /// Parses `offset-n/total`, with or without a unit (`items 0-9/35`) and spaces. `None`
    /// when the header is missing or holds something else.
    pub fn parse(value: &str) -> Option<ContentRange> {
        let value = value.trim();
        let value = value.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let (range, total) = value.split_once('/')?;
        let (offset, _) = range.split_once('-')?;
        Some(ContentRange {
            offset: offset.trim().parse().ok()?,
            total: total.trim().parse().ok()?,
        })
    }

    /// The header of a response, if it is present and well formed.
    pub fn from_headers(headers: &HeaderMap) -> Option<ContentRange> {
        ContentRange::parse(headers.get("content-range")?.to_str().ok()?)
    }
}

/// What a path parameter keeps unencoded: the SDK encodes every path value with nothing safe
/// (Python's `quote(v, safe='')`), so a raw `/` would go out as `%2F`; a repository name's is
/// written `$` before that (see [`repository_path_value`]).
const PATH_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A repository name as a path value, for every SWR path that names a repository. SWR's API
/// reference asks for a `/` in a repository name to be written `$` in the path ("Replace a
/// slash (/) with a dollar sign ($) before you send the request"), which then goes out as `%24`.
pub fn repository_path_value(repository: &str) -> String {
    utf8_percent_encode(&repository.replace('/', "$"), PATH_VALUE).to_string()
}

/// `/v2/manage/namespaces/{namespace}/repos/{repository}/{tail}`, the values encoded (the
/// repository's by [`repository_path_value`]).
pub fn repo_path(namespace: &str, repository: &str, tail: &str) -> String {
    format!(
        "/v2/manage/namespaces/{}/repos/{}/{tail}",
        utf8_percent_encode(namespace, PATH_VALUE),
        repository_path_value(repository)
    )
}

/// One page of a `/v2/manage` listing: its items and its `Content-Range`, if it had one.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub range: Option<ContentRange>,
}

impl<T> Page<T> {
    /// True when no page follows this one, taken at `offset` with `limit`: a short page, or
    /// the total reached.
    pub fn is_last(&self, offset: u64, limit: u64) -> bool {
        let n = self.items.len() as u64;
        n == 0 || n < limit || self.range.is_some_and(|r| offset + n >= r.total)
    }
}

/// An image tag as `list_repository_tags` (`ShowReposTagResp`) returns it; only what is used.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ImageTag {
    /// The tag's name; the wire field is `Tag`, capitalised.
    #[serde(rename = "Tag")]
    pub tag: String,
    #[serde(default)]
    pub digest: Option<String>,
}

/// The body of `create_manual_image_sync_repo` (`CreateManualImageSyncRepoRequestBody`).
#[derive(Clone, Debug, Serialize)]
pub struct ManualSync {
    #[serde(rename = "imageTag")]
    pub image_tag: Vec<String>,
    #[serde(rename = "override")]
    pub override_existing: bool,
    #[serde(rename = "remoteNamespace")]
    pub remote_namespace: String,
    #[serde(rename = "remoteRegionId")]
    pub remote_region_id: String,
}

/// One image sync job as `show_sync_job` (`SyncJob`) returns it; only what is used.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct SyncJob {
    pub id: i64,
    #[serde(default)]
    pub tag: String,
    /// waiting, running, success, failed, timeout, cancel or existed.
    #[serde(default)]
    pub status: String,
    #[serde(default, rename = "remoteRegionId")]
    pub remote_region_id: String,
    #[serde(default, rename = "remoteNamespace")]
    pub remote_namespace: String,
    #[serde(default, rename = "createdAt")]
    pub created_at: Option<String>,
    #[serde(default, rename = "updatedAt")]
    pub updated_at: Option<String>,
}

impl Client {
    /// `GET /v2/manage/namespaces/{namespace}/repos/{repository}/tags?limit=&offset=`
    /// (`list_repository_tags`): one page of the repository's tags.
    pub async fn list_image_tags(
        &self,
        namespace: &str,
        repository: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Page<ImageTag>, Error> {
        let mut req = Request::new(
            Service::Swr,
            Method::GET,
            repo_path(namespace, repository, "tags"),
        );
        req.query = vec![
            ("limit".into(), limit.to_string()),
            ("offset".into(), offset.to_string()),
        ];
        let resp = self.call(&req).await?;
        Ok(Page {
            items: resp.json(&req)?,
            range: ContentRange::from_headers(&resp.headers),
        })
    }

    /// Every tag of the repository, complete even when tags are pushed or removed meanwhile:
    /// the listing is walked until two consecutive walks agree (see [`listing`]), at most
    /// [`TAG_WALKS`] times; a listing that keeps changing is a transient error.
    pub async fn all_image_tags(
        &self,
        namespace: &str,
        repository: &str,
    ) -> Result<Vec<String>, Error> {
        const PAGE: u64 = 100;
        // A listing that grows while it is walked still ends: at most this many pages a walk.
        const MAX_PAGES: u64 = 10_000;
        let walk = || async {
            let mut walker = listing::Walker::default();
            let mut offset = 0;
            for _ in 0..MAX_PAGES {
                let page = self
                    .list_image_tags(namespace, repository, offset, PAGE)
                    .await?;
                let last = page.is_last(offset, PAGE);
                offset += page.items.len() as u64;
                walker.page(
                    page.items.into_iter().map(|t| (t.tag, ())),
                    page.range.map(|r| r.total),
                    None,
                );
                if last {
                    break;
                }
            }
            Ok::<_, Error>(walker.finish())
        };
        match listing::settle("image tags", TAG_WALKS, walk).await? {
            Some((w, _)) => Ok(w.entries.into_keys().collect()),
            None => Err(Error::Decode {
                method: "GET".into(),
                path: repo_path(namespace, repository, "tags"),
                status: 200,
                message: format!(
                    "the tag listing changed during each of {TAG_WALKS} walks; no two \
                     consecutive walks agreed (the attempt is retried)"
                ),
            }),
        }
    }

    /// `POST /v2/manage/namespaces/{namespace}/repos/{repository}/sync_images`
    /// (`create_manual_image_sync_repo`): starts one sync job per tag. The answer is a bare array
    /// of strings the SDK leaves undescribed; it is kept as is and not relied on.
    pub async fn start_image_sync(
        &self,
        namespace: &str,
        repository: &str,
        body: &ManualSync,
    ) -> Result<Vec<String>, Error> {
        let req = Request::new(
            Service::Swr,
            Method::POST,
            repo_path(namespace, repository, "sync_images"),
        )
        .json(body)
        .unrepeatable();
        let resp = self.call(&req).await?;
        if resp.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        resp.json(&req)
    }

    /// `GET /v2/manage/namespaces/{namespace}/repos/{repository}/sync_job`
    /// `?filter=limit::{limit}|offset::{offset}|order::desc` (`show_sync_job`): one page of the
    /// repository's sync jobs, newest first.
    pub async fn list_sync_jobs(
        &self,
        namespace: &str,
        repository: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Page<SyncJob>, Error> {
        let mut req = Request::new(
            Service::Swr,
            Method::GET,
            repo_path(namespace, repository, "sync_job"),
        );
        req.query = vec![(
            "filter".into(),
            format!("limit::{limit}|offset::{offset}|order::desc"),
        )];
        let resp = self.call(&req).await?;
        Ok(Page {
            items: resp.json(&req)?,
            range: ContentRange::from_headers(&resp.headers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{repo_path, ContentRange};

    #[test]
    fn path_values_are_encoded_with_nothing_safe() {
        assert_eq!(
            repo_path("team-a", "tools/builder", "sync_job"),
            "/v2/manage/namespaces/team-a/repos/tools%24builder/sync_job"
        );
    }

    #[test]
    fn content_range_takes_the_offset_and_the_total() {
        let want = |offset, total| Some(ContentRange { offset, total });
        assert_eq!(ContentRange::parse("0-10/35"), want(0, 35));
        assert_eq!(ContentRange::parse("20-9/29"), want(20, 29));
        assert_eq!(ContentRange::parse("items 10-19/35"), want(10, 35));
        assert_eq!(ContentRange::parse(" 0 - 0 / 0 "), want(0, 0));
        assert_eq!(ContentRange::parse("*/35"), None);
        assert_eq!(ContentRange::parse("0-10"), None);
        assert_eq!(ContentRange::parse("a-10/35"), None);
        assert_eq!(ContentRange::parse(""), None);
    }
}
