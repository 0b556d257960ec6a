//! CodeArts Repo: the remote-mirror calls (`/v4/repositories/{repository_id}/remote-mirror`).
//!
//! The cloud has no API that looks a sync up by its `jid`; the repository's mirror state
//! (`GET` on the same path) is the only view of how a sync went.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{Client, Error, Request, Service};

/// The start call's body; every field optional. Credentials are already base64-encoded.
/// No `Debug`: it may carry a password.
#[derive(Serialize, Default)]
pub struct StartMirror {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_fetch: Option<bool>,
}

/// A started sync.
#[derive(Clone, Debug)]
pub struct Started {
    pub jid: String,
    pub request_id: Option<String>,
}

/// The repository's mirror state (`show_remote_mirror`). `update_status` values are not
/// documented; outcomes are decided from the timestamps and counters.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct MirrorState {
    #[serde(default)]
    pub update_status: Option<String>,
    #[serde(default)]
    pub last_update_at: Option<String>,
    #[serde(default)]
    pub last_successful_update_at: Option<String>,
    #[serde(default)]
    pub number_of_failures: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub mirroring_enabled: Option<bool>,
}

fn mirror_path(repository_id: u32) -> String {
    format!("/v4/repositories/{repository_id}/remote-mirror")
}

impl Client {
    /// `POST /v4/repositories/{repository_id}/remote-mirror` → the sync's `jid`.
    pub async fn start_mirror(
        &self,
        repository_id: u32,
        body: &StartMirror,
    ) -> Result<Started, Error> {
        #[derive(Deserialize)]
        struct Resp {
            jid: Option<String>,
        }
        let req = Request::new(Service::Repo, Method::POST, mirror_path(repository_id))
            .json(body)
            .unrepeatable();
        let resp = self.call(&req).await?;
        let parsed: Resp = resp.json(&req)?;
        match parsed.jid.filter(|j| !j.is_empty()) {
            Some(jid) => Ok(Started {
                jid,
                request_id: resp.request_id(),
            }),
            None => Err(Error::Decode {
                method: "POST".into(),
                path: req.path,
                status: resp.status,
                message: "the response has no jid".into(),
            }),
        }
    }

    /// `GET /v4/repositories/{repository_id}/remote-mirror`.
    pub async fn show_mirror(&self, repository_id: u32) -> Result<MirrorState, Error> {
        let req = Request::new(Service::Repo, Method::GET, mirror_path(repository_id));
        self.call(&req).await?.json(&req)
    }
}
