//! Loading: the file, then the `CODEARTS_SYNCD_*` environment overrides on top (figment), then
//! the plain checks of `checks`. Figment's errors are turned here into one line per problem that
//! names the key by its path, and never quotes a value found under a secret key.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;

use super::{Config, Error, ENV_PREFIX, SECRET_IS_A_SOURCE};

impl Config {
    /// Loads the file at `path` and the `CODEARTS_SYNCD_*` environment overrides, then runs the
    /// plain checks ([`Config::validate`]); the checks that need job kinds or cron are the
    /// caller's (`crate::daemon::checks`).
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let env = Env::prefixed(ENV_PREFIX)
            .split("__")
            .filter(|k| k.as_str() != "config");
        let figment = Figment::from(Toml::string(&text)).merge(env);
        // Absolute, so that messages name the store and secret files unambiguously.
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::path::absolute(&base).unwrap_or(base);
        Self::from_figment(figment, base)
    }

    /// Parses a TOML string alone (no environment), then runs the plain checks.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, Error> {
        Self::from_figment(Figment::from(Toml::string(text)), base_dir.to_path_buf())
    }

    fn from_figment(figment: Figment, base_dir: PathBuf) -> Result<Config, Error> {
        let mut cfg: Config = figment.extract().map_err(describe_figment_error)?;
        // A relative store path is relative to the config file, like the secret files.
        if cfg.store.path.is_relative() {
            cfg.store.path = base_dir.join(&cfg.store.path);
        }
        cfg.store.base_dir = base_dir.clone();
        cfg.base_dir = base_dir;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Turns figment's error into one line per problem, each naming the key once by its full path
/// (and the environment variable when the value came from one). A message about a secret key
/// never carries serde's description of the value: that would be the secret itself.
pub(super) fn describe_figment_error(err: figment::Error) -> Error {
    use figment::error::Kind;
    let mut lines = Vec::new();
    for e in err {
        let mut path: Vec<String> = e
            .path
            .iter()
            .filter(|p| p.as_str() != "default")
            .cloned()
            .collect();
        // Figment prefixes the path with the key whose key or value failed, so for an unknown
        // key the path already ends with it; a missing key is reported on its table.
        let field = match &e.kind {
            Kind::UnknownField(field, _) => Some(field.to_string()),
            Kind::DuplicateField(field) => Some(field.to_string()),
            Kind::MissingField(field) => Some(field.to_string()),
            _ => None,
        };
        if let Some(field) = field {
            if path.last() != Some(&field) {
                path.push(field);
            }
        }
        // A missing key is tagged with its table's source, which says nothing about the key.
        let from_env = !matches!(e.kind, Kind::MissingField(_))
            && e.metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment variable"));
        let secret = secret_key_of(&path);
        let (key, reason) = match (&e.kind, secret) {
            (Kind::UnknownField(_, expected), _) if !expected.is_empty() => (
                path.join("."),
                format!("unknown key (known here: {})", expected.join(", ")),
            ),
            (Kind::UnknownField(..), _) => (path.join("."), "unknown key".to_string()),
            (Kind::MissingField(_), _) => (path.join("."), "missing key".to_string()),
            (Kind::DuplicateField(_), _) => (path.join("."), "given twice".to_string()),
            // Whatever else went wrong at or under a secret key, say what the key wants, not
            // what it holds (the value is not trusted to be anything but the secret).
            (_, Some(secret)) => (secret, SECRET_IS_A_SOURCE.to_string()),
            (kind, None) => (path.join("."), kind.to_string()),
        };
        let line = match (key.is_empty(), from_env) {
            (true, _) => reason,
            (false, false) => format!("{key}: {reason}"),
            (false, true) => format!(
                "{key} (from the environment variable {ENV_PREFIX}{}): {reason}",
                path.join("__").to_ascii_uppercase()
            ),
        };
        lines.push(line);
    }
    lines.dedup();
    Error::Parse(lines.join("; "))
}

/// The secret key a config path is at or under (`cloud.auth.password`, `amqp.password`,
/// `credentials.NAME.username`, ...), if any.
fn secret_key_of(path: &[String]) -> Option<String> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let n = match p.as_slice() {
        ["cloud", "auth", "password" | "access_key" | "secret_key", ..] => 3,
        ["amqp", "password", ..] => 2,
        ["credentials", _, "username" | "password", ..] => 3,
        _ => return None,
    };
    Some(p[..n].join("."))
}
