//! The `cloud` section: the account, its identifiers, endpoint overrides and how requests are
//! authenticated. [`AuthConfig::resolve`] is the one place that decides which keys a method needs;
//! the secrets themselves are sources, read in `secrets`.

use serde::{Deserialize, Serialize};

use super::{EndpointOverrides, Error, SecretSource};

/// The cloud account, identifiers, endpoints and authentication.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    /// Region id, e.g. `ap-southeast-3`; endpoints default from it.
    pub region: String,
    /// Account (domain) id: `{tenant_id}` in Artifact paths.
    #[serde(default)]
    pub domain_id: Option<String>,
    /// IAM project id of the region: token scope and the `X-Project-Id` header.
    pub iam_project_id: String,
    /// CodeArts project id: `{project_id}` in Artifact paths (not the IAM project id).
    #[serde(default)]
    pub codearts_project_id: Option<String>,
    #[serde(default)]
    pub endpoints: EndpointOverrides,
    pub auth: AuthConfig,
}

/// How requests are authenticated: `method = "password"` (IAM user password → token, sent as
/// `X-Auth-Token`) with `domain_name`, `user_name`, `password`; or `method = "aksk"` (request
/// signing, `SDK-HMAC-SHA256`) with `access_key`, `secret_key`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub method: AuthMethod,
    /// Account name (IAM `domain.name`), for `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// IAM user name, for `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretSource>,
}

/// The authentication method.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Password,
    Aksk,
}

/// Authentication after validation: what each method needs, present.
pub enum Auth<'a> {
    Password {
        domain_name: &'a str,
        user_name: &'a str,
        password: &'a SecretSource,
    },
    Aksk {
        access_key: &'a SecretSource,
        secret_key: &'a SecretSource,
    },
}

impl AuthConfig {
    /// The keys the method needs, or an error naming the missing or superfluous one.
    pub fn resolve(&self) -> Result<Auth<'_>, Error> {
        fn need<'a, T>(v: &'a Option<T>, key: &str, method: &str) -> Result<&'a T, Error> {
            v.as_ref().ok_or_else(|| {
                Error::invalid(
                    format!("cloud.auth.{key}"),
                    format!("required with method = \"{method}\""),
                )
            })
        }
        fn unused<T>(v: &Option<T>, key: &str, method: &str) -> Result<(), Error> {
            match v {
                Some(_) => Err(Error::invalid(
                    format!("cloud.auth.{key}"),
                    format!("not used with method = \"{method}\""),
                )),
                None => Ok(()),
            }
        }
        match self.method {
            AuthMethod::Password => {
                unused(&self.access_key, "access_key", "password")?;
                unused(&self.secret_key, "secret_key", "password")?;
                let domain_name = need(&self.domain_name, "domain_name", "password")?;
                let user_name = need(&self.user_name, "user_name", "password")?;
                if domain_name.is_empty() {
                    return Err(Error::invalid(
                        "cloud.auth.domain_name",
                        "must not be empty",
                    ));
                }
                if user_name.is_empty() {
                    return Err(Error::invalid("cloud.auth.user_name", "must not be empty"));
                }
                Ok(Auth::Password {
                    domain_name,
                    user_name,
                    password: need(&self.password, "password", "password")?,
                })
            }
            AuthMethod::Aksk => {
                unused(&self.domain_name, "domain_name", "aksk")?;
                unused(&self.user_name, "user_name", "aksk")?;
                unused(&self.password, "password", "aksk")?;
                Ok(Auth::Aksk {
                    access_key: need(&self.access_key, "access_key", "aksk")?,
                    secret_key: need(&self.secret_key, "secret_key", "aksk")?,
                })
            }
        }
    }
}
