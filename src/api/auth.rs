//! Authentication: IAM password tokens (cached, refreshed before expiry and once on a 401, one
//! refresh at a time however many jobs wait) or AK/SK request signing.
//!
//! Secrets stay in [`SecretString`]s and reach the wire only as header values marked sensitive;
//! nothing here logs a token, a password or a key.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{error, sensitive_header, signer, Error};

/// How requests are authenticated; cheap to clone.
#[derive(Clone)]
pub enum Auth {
    Token(Arc<TokenSource>),
    AkSk(Arc<AkSk>),
}

/// AK/SK credentials plus the IAM project id sent (and signed) as `X-Project-Id`.
pub struct AkSk {
    access_key: SecretString,
    secret_key: SecretString,
    project_id: String,
}

impl Auth {
    /// Token authentication.
    pub fn token(source: TokenSource) -> Auth {
        Auth::Token(Arc::new(source))
    }

    /// AK/SK signing.
    pub fn aksk(access_key: SecretString, secret_key: SecretString, project_id: &str) -> Auth {
        Auth::AkSk(Arc::new(AkSk {
            access_key,
            secret_key,
            project_id: project_id.to_string(),
        }))
    }

    /// What to authenticate the next request with.
    pub async fn credential(&self) -> Result<Credential, Error> {
        match self {
            Auth::Token(t) => Ok(Credential::Token(t.token().await?)),
            Auth::AkSk(k) => Ok(Credential::AkSk(k.clone())),
        }
    }

    /// Drops a token the API rejected, unless another caller already replaced it.
    pub async fn invalidate(&self, used: &Credential) {
        if let (Auth::Token(t), Credential::Token(tok)) = (self, used) {
            t.invalidate(tok).await;
        }
    }
}

/// The credential for one request.
pub enum Credential {
    Token(SecretString),
    AkSk(Arc<AkSk>),
}

/// What the signer needs of a request.
pub struct Signable<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Credential {
    /// True for a token (a 401 is then worth one re-authentication).
    pub fn is_token(&self) -> bool {
        matches!(self, Credential::Token(_))
    }

    /// Adds the authentication headers to `headers` (which already hold `Content-Type`).
    pub fn apply(&self, headers: &mut HeaderMap, req: &Signable<'_>) -> Result<(), Error> {
        match self {
            Credential::Token(tok) => {
                headers.insert("x-auth-token", sensitive_header(tok)?);
                Ok(())
            }
            Credential::AkSk(k) => {
                let url = url::Url::parse(req.url)
                    .map_err(|e| Error::Auth(format!("cannot sign {}: {e}", req.path)))?;
                // Host exactly as reqwest sends it: the port only when it is not the default.
                let host = match (url.host_str(), url.port()) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    (Some(h), None) => h.to_string(),
                    (None, _) => return Err(Error::Auth(format!("no host in {}", req.url))),
                };
                let mut explicit: Vec<(String, String)> = headers
                    .iter()
                    .filter_map(|(n, v)| {
                        Some((n.as_str().to_string(), v.to_str().ok()?.to_string()))
                    })
                    .collect();
                explicit.push(("X-Project-Id".to_string(), k.project_id.clone()));
                let date = signer::sdk_date_from_unix(Utc::now().timestamp());
                let signed = signer::sign(
                    k.access_key.expose_secret(),
                    k.secret_key.expose_secret(),
                    &date,
                    &signer::SignInput {
                        method: req.method,
                        host: &host,
                        path: req.path,
                        query: req.query,
                        headers: &explicit,
                        body: req.body,
                    },
                );
                headers.clear();
                for (name, value) in signed.headers {
                    // reqwest sets Host itself, byte-identical to what was signed.
                    if name.eq_ignore_ascii_case("host") {
                        continue;
                    }
                    let name = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| Error::Auth(format!("bad header name {name}: {e}")))?;
                    let mut value = HeaderValue::from_str(&value)
                        .map_err(|e| Error::Auth(format!("bad header value for {name}: {e}")))?;
                    if name.as_str() == "authorization" {
                        value.set_sensitive(true);
                    }
                    headers.insert(name, value);
                }
                Ok(())
            }
        }
    }
}

/// The sorted, encoded query string sent on the wire (the signer's canonical query; token
/// requests use it too, so both auth methods send the same URL).
pub fn canonical_query(pairs: &[(String, String)]) -> String {
    signer::canonical_query(pairs)
}

/// IAM password tokens, cached.
pub struct TokenSource {
    http: reqwest::Client,
    url: String,
    domain_name: String,
    user_name: String,
    password: SecretString,
    project_id: String,
    refresh_margin: Duration,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    token: SecretString,
    refresh_at: DateTime<Utc>,
}

impl TokenSource {
    /// A token source for `POST {iam}/v3/auth/tokens`.
    pub fn new(
        http: reqwest::Client,
        iam_endpoint: &str,
        domain_name: &str,
        user_name: &str,
        password: SecretString,
        project_id: &str,
        refresh_margin: Duration,
    ) -> TokenSource {
        TokenSource {
            http,
            url: format!(
                "{}/v3/auth/tokens?nocatalog=true",
                iam_endpoint.trim_end_matches('/')
            ),
            domain_name: domain_name.to_string(),
            user_name: user_name.to_string(),
            password,
            project_id: project_id.to_string(),
            refresh_margin,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid token: the cached one, or a new one. Callers queue on the lock while one of them
    /// fetches, so a crowd of jobs costs one token request.
    pub async fn token(&self) -> Result<SecretString, Error> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if Utc::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    /// Forgets `rejected` if it is still the cached token.
    pub async fn invalidate(&self, rejected: &SecretString) {
        let mut cache = self.cache.lock().await;
        if cache
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == rejected.expose_secret())
        {
            *cache = None;
        }
    }

    async fn fetch(&self) -> Result<Cached, Error> {
        let body = json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "domain": {"name": self.domain_name},
                            "name": self.user_name,
                            "password": self.password.expose_secret(),
                        }
                    }
                },
                "scope": {"project": {"id": self.project_id}}
            }
        });
        let path = "/v3/auth/tokens";
        metrics::counter!("codearts_syncd_token_refreshes_total").increment(1);
        let started = std::time::Instant::now();
        let sent = self
            .http
            .post(&self.url)
            .header("content-type", "application/json;charset=utf-8")
            .body(body.to_string())
            .send()
            .await;
        let resp = sent.map_err(|e| {
            super::observe_request(super::Service::Iam, path, None, started);
            Error::Transport {
                method: "POST".into(),
                path: path.into(),
                message: super::describe_reqwest_error(&e),
                maybe_sent: !e.is_connect(),
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| {
            super::observe_request(super::Service::Iam, path, None, started);
            Error::Transport {
                method: "POST".into(),
                path: path.into(),
                message: super::describe_reqwest_error(&e),
                maybe_sent: true,
            }
        })?;
        super::observe_request(super::Service::Iam, path, Some(status), started);
        if status >= 400 {
            let api = error::from_response("POST", path, status, &headers, &bytes);
            // Wrong credentials will not heal by retrying; an IAM outage will.
            return Err(if api.is_retryable() {
                api
            } else {
                Error::Auth(api.to_string())
            });
        }
        let token = headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Decode {
                method: "POST".into(),
                path: path.into(),
                status,
                message: "no X-Subject-Token header in the token response".into(),
            })?;
        let now = Utc::now();
        let expires_at = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.pointer("/token/expires_at")
                    .and_then(|e| e.as_str())
                    .and_then(parse_expires_at)
            });
        let expires_at = match expires_at {
            Some(t) => t,
            None => {
                tracing::warn!("token response has no readable expires_at; assuming one hour");
                now + chrono::Duration::hours(1)
            }
        };
        // Refresh `margin` early, but never more than a tenth of the lifetime early.
        let lifetime = (expires_at - now).to_std().unwrap_or(Duration::ZERO);
        let margin = self.refresh_margin.min(lifetime / 10);
        let refresh_at =
            expires_at - chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::zero());
        tracing::info!(expires_at = %expires_at.to_rfc3339(), "obtained IAM token");
        Ok(Cached {
            token: SecretString::from(token.to_string()),
            refresh_at,
        })
    }
}

/// Parses IAM's `expires_at` leniently: RFC 3339 with or without a fraction, or without a zone
/// (taken as UTC).
pub fn parse_expires_at(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_at_is_parsed_leniently() {
        let want = DateTime::parse_from_rfc3339("2024-01-16T08:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for s in [
            "2024-01-16T08:30:00.000000Z",
            "2024-01-16T08:30:00Z",
            "2024-01-16T08:30:00.000Z",
            "2024-01-16T08:30:00",
            "2024-01-16 08:30:00",
            "2024-01-16T16:30:00+08:00",
        ] {
            assert_eq!(parse_expires_at(s), Some(want), "{s}");
        }
        assert_eq!(parse_expires_at("tomorrow"), None);
    }
}
