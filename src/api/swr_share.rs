//! SWR shared repositories: what this account shares, and with whom.
//!
//! - `list_shared_repos_details`: `GET /v2/manage/shared-repositories` with the SDK's separate
//!   query parameters `center`, `limit`, `offset` (the API page writes them into one
//!   `filter=center::self|limit::…|offset::…`; the SDK's `ListSharedReposDetailsRequest` has
//!   both, and the daemon follows the SDK). A bare JSON array, paged through `Content-Range`.
//! - `list_repo_domains`: `GET /v2/manage/namespaces/{namespace}/repositories/{repository}/access-domains`,
//!   a bare array of `ShowRepoDomainsResponse` (`access_domain`, `permit`, `deadline`, …).
//!
//! Path parameters are percent-encoded with nothing kept, as the SDK does; a `/` in a
//! repository name is first written `$` (so `%24`), as the `ListRepoDomains` page asks and as
//! every other SWR path naming a repository does ([`super::swr::repository_path_value`]).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::signer::encode_component;
use super::swr::{repository_path_value, ContentRange};
use super::{Client, Error, Request, Service};

/// `GET /v2/manage/shared-repositories`.
pub const SHARED_REPOS_PATH: &str = "/v2/manage/shared-repositories";

/// One shared repository as listed (`ShowReposResp`); only what the audit keeps.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct SharedRepo {
    /// Organization (namespace).
    #[serde(default)]
    pub namespace: String,
    /// Repository name.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub num_images: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub is_public: Option<bool>,
}

/// One page of the shared listing with the `Content-Range` it came with.
#[derive(Clone, Debug)]
pub struct SharedPage {
    pub repos: Vec<SharedRepo>,
    pub range: Option<ContentRange>,
    pub request_id: Option<String>,
}

/// One account a repository is shared with (`ShowRepoDomainsResponse`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct AccessDomain {
    /// The account (domain) name the repository is shared with.
    #[serde(default)]
    pub access_domain: String,
    /// `read` (the only permit the service grants today).
    #[serde(default)]
    pub permit: String,
    /// `forever`, or a UTC time such as `2025-06-30T16:00:00Z`.
    #[serde(default)]
    pub deadline: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub creator_name: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub updated: Option<String>,
    /// The service's own view: true while valid, false once expired.
    #[serde(default)]
    pub status: Option<bool>,
}

/// The access-domains path of a repository: the namespace encoded as the SDK does, the
/// repository with its `/` written `$`.
pub fn access_domains_path(namespace: &str, repository: &str) -> String {
    format!(
        "/v2/manage/namespaces/{}/repositories/{}/access-domains",
        encode_component(namespace),
        repository_path_value(repository)
    )
}

impl Client {
    /// One page of the repositories this account shares (`center=self`).
    pub async fn list_shared_repos(&self, offset: u64, limit: u64) -> Result<SharedPage, Error> {
        let mut req = Request::new(Service::Swr, Method::GET, SHARED_REPOS_PATH);
        req.query = vec![
            ("center".into(), "self".into()),
            ("limit".into(), limit.to_string()),
            ("offset".into(), offset.to_string()),
        ];
        let resp = self.call(&req).await?;
        let repos: Vec<SharedRepo> = resp.json(&req)?;
        Ok(SharedPage {
            repos,
            range: ContentRange::from_headers(&resp.headers),
            request_id: resp.request_id(),
        })
    }

    /// The accounts a repository is shared with.
    pub async fn list_repo_domains(
        &self,
        namespace: &str,
        repository: &str,
    ) -> Result<Vec<AccessDomain>, Error> {
        let req = Request::new(
            Service::Swr,
            Method::GET,
            access_domains_path(namespace, repository),
        );
        self.call(&req).await?.json(&req)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_slash_in_a_repository_name_goes_out_as_a_dollar() {
        assert_eq!(
            super::access_domains_path("team-a", "group/app"),
            "/v2/manage/namespaces/team-a/repositories/group%24app/access-domains"
        );
        assert_eq!(
            super::access_domains_path("team a", "web"),
            "/v2/manage/namespaces/team%20a/repositories/web/access-domains"
        );
    }
}
