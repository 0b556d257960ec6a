//! The cloud endpoints: the overrides a file may give, the region defaults (from the SDK region
//! files), and the endpoints in force after both.

use serde::{Deserialize, Serialize};

use super::Config;

/// Explicit endpoints; each defaults from the region.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointOverrides {
    pub iam: Option<String>,
    pub repo: Option<String>,
    pub artifact: Option<String>,
    pub swr: Option<String>,
}

/// The endpoints in force, after defaults.
#[derive(Clone, Debug, Serialize)]
pub struct Endpoints {
    pub iam: String,
    pub repo: String,
    pub artifact: String,
    pub swr: String,
}

impl Config {
    /// The endpoints in force: overrides, else the region's defaults.
    pub fn endpoints(&self) -> Endpoints {
        let d = default_endpoints(&self.cloud.region);
        let e = &self.cloud.endpoints;
        Endpoints {
            iam: e.iam.clone().unwrap_or(d.iam),
            repo: e.repo.clone().unwrap_or(d.repo),
            artifact: e.artifact.clone().unwrap_or(d.artifact),
            swr: e.swr.clone().unwrap_or(d.swr),
        }
    }
}

/// Region defaults, from the SDK region files: Artifact and Repo hosts are not uniform; SWR's
/// is `swr-api.{region}` everywhere, under the same domain as IAM's (`myhuaweicloud.eu` for
/// `eu-west-101`, `myhuaweicloud.com` elsewhere).
pub fn default_endpoints(region: &str) -> Endpoints {
    let artifact_host = match region {
        "ap-southeast-3" | "cn-south-1" | "me-east-1" | "af-south-1" | "af-north-1" => "artifact",
        _ => "cloudartifacts-ext",
    };
    let repo_host = match region {
        "la-south-2" | "tr-west-1" | "eu-west-101" => "codeartsrepo-ext",
        r if r == "me-east-1" || r.starts_with("af-") => "repo",
        _ => "codehub-ext",
    };
    let iam_swr_suffix = if region == "eu-west-101" {
        "myhuaweicloud.eu"
    } else {
        "myhuaweicloud.com"
    };
    Endpoints {
        iam: format!("https://iam.{region}.{iam_swr_suffix}"),
        repo: format!("https://{repo_host}.{region}.myhuaweicloud.com"),
        artifact: format!("https://{artifact_host}.{region}.myhuaweicloud.com"),
        swr: format!("https://swr-api.{region}.{iam_swr_suffix}"),
    }
}
