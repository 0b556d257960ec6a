//! Secret sources: a secret is never a value in the file but `{ env = "NAME" }` or
//! `{ file = "/path" }`. This file parses a source without ever echoing what was written in its
//! place, checks its shape, and resolves it into a [`SecretString`] whose `Debug` prints nothing.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{Auth, Config, Error};

/// Where a secret comes from: an environment variable or a file (trailing newline dropped).
///
/// Deserialised by hand: serde's own error for a literal (`password = "hunter2"`) quotes the
/// value, and a config error is printed, logged and pasted into tickets.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SecretSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// Why a secret key holds a value instead of a source; the figment path names the key.
pub const SECRET_IS_A_SOURCE: &str =
    "a secret is a source, not a value: write { env = \"NAME\" } or { file = \"/path\" }";

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretSourceVisitor)
    }
}

/// Accepts only a table with `env` or `file`; every other shape is refused without the value.
struct SecretSourceVisitor;

impl SecretSourceVisitor {
    fn refuse<E: serde::de::Error>(self) -> Result<SecretSource, E> {
        Err(E::custom(SECRET_IS_A_SOURCE))
    }
}

impl<'de> serde::de::Visitor<'de> for SecretSourceVisitor {
    type Value = SecretSource;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{ env = \"NAME\" } or { file = \"/path\" }")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SecretSource, A::Error> {
        use serde::de::Error as _;
        let mut out = SecretSource {
            env: None,
            file: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "env" if out.env.is_some() => return Err(A::Error::duplicate_field("env")),
                "file" if out.file.is_some() => return Err(A::Error::duplicate_field("file")),
                "env" => out.env = Some(map.next_value()?),
                "file" => out.file = Some(map.next_value()?),
                other => return Err(A::Error::unknown_field(other, &["env", "file"])),
            }
        }
        Ok(out)
    }

    // Every other shape: the default implementations would quote the value.
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_char<E: serde::de::Error>(self, _: char) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, _: D) -> Result<SecretSource, D::Error> {
        self.refuse()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<SecretSource, E> {
        self.refuse()
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(
        self,
        _: D,
    ) -> Result<SecretSource, D::Error> {
        self.refuse()
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<SecretSource, A::Error> {
        self.refuse()
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, _: A) -> Result<SecretSource, A::Error> {
        self.refuse()
    }
}

impl SecretSource {
    /// Reads the secret; `key` names it in errors.
    pub fn resolve(&self, key: &str, base_dir: &Path) -> Result<SecretString, Error> {
        match (&self.env, &self.file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
                Ok(_) => Err(Error::invalid(
                    key,
                    format!("environment variable {var} is empty"),
                )),
                Err(_) => Err(Error::invalid(
                    key,
                    format!("environment variable {var} is not set"),
                )),
            },
            (None, Some(path)) => {
                let path = base_dir.join(path);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::invalid(key, format!("cannot read {}: {e}", path.display()))
                })?;
                let text = text.trim_end_matches(['\n', '\r']).to_string();
                if text.is_empty() {
                    return Err(Error::invalid(key, format!("{} is empty", path.display())));
                }
                Ok(SecretString::from(text))
            }
            _ => Err(Error::invalid(
                key,
                "give exactly one of `env` or `file` (secrets are never written in the file itself)",
            )),
        }
    }

    /// Checks that exactly one of `env` or `file` is given, without reading either.
    pub(super) fn check_shape(&self, key: &str) -> Result<(), Error> {
        if self.env.is_some() == self.file.is_some() {
            return Err(Error::invalid(
                key,
                "give exactly one of `env` or `file` (secrets are never written in the file itself)",
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Resolves every secret source once, so `config check` can report a missing one by key.
    pub fn check_secrets(&self) -> Result<(), Error> {
        match self.cloud.auth.resolve()? {
            Auth::Password { password, .. } => {
                password.resolve("cloud.auth.password", &self.base_dir)?;
            }
            Auth::Aksk {
                access_key,
                secret_key,
            } => {
                access_key.resolve("cloud.auth.access_key", &self.base_dir)?;
                secret_key.resolve("cloud.auth.secret_key", &self.base_dir)?;
            }
        }
        if let Some(p) = &self.store.password {
            p.resolve("store.password", &self.base_dir)?;
        }
        if let Some(p) = self.amqp.as_ref().and_then(|a| a.password.as_ref()) {
            p.resolve("amqp.password", &self.base_dir)?;
        }
        for (name, p) in &self.credentials {
            p.username
                .resolve(&format!("credentials.{name}.username"), &self.base_dir)?;
            p.password
                .resolve(&format!("credentials.{name}.password"), &self.base_dir)?;
        }
        if let Some(srv) = &self.server {
            if let Some(h) = &srv.codearts_repo {
                h.token
                    .resolve("server.codearts_repo.token", &self.base_dir)?;
            }
            if let Some(h) = &srv.github {
                h.secret.resolve("server.github.secret", &self.base_dir)?;
            }
            if let Some(t) = &srv.api_token {
                t.resolve("server.api_token", &self.base_dir)?;
            }
        }
        Ok(())
    }
}
