//! The configuration checks that need to know the job kinds and how cron reads an expression,
//! and the one full check that `config check`, `run` and a reload (SIGHUP) all go through.
//!
//! [`crate::config`] is plain data and checks only what it can alone (shapes, ranges, secrets).
//! What names a job kind or holds a cron expression is checked here, at the face, with the
//! modules that own that knowledge: [`crate::jobs`] for kinds and their params, and
//! [`crate::ingress::cron`] for expressions; the listener's certificate and key are loaded by
//! [`crate::ingress::http::tls`], which serves them. The errors are [`config::Error`]s, named by key, so
//! that a user sees one kind of configuration error whichever check refused it.

use crate::config::{self, Config};
use crate::ingress::{cron, http};
use crate::jobs::{self, JobKind};

/// Everything `config check` checks, `run` requires before it starts anything, and a reload
/// requires of the new file: the values, the schedules and job kinds, then that every secret
/// source resolves and that the listener's certificate and key load and match. One function,
/// so that the daemon never starts or reloads with a configuration `config check` refuses.
pub fn check_config(cfg: &Config) -> Result<(), config::Error> {
    check_values(cfg)?;
    cfg.check_secrets()?;
    if let Some(files) = cfg.server.as_ref().and_then(|s| s.tls.as_ref()) {
        http::tls::Certificate::load(files, &cfg.base_dir)?;
    }
    Ok(())
}

/// Every check but reading the secrets: [`Config::validate`], then the schedules and the job
/// kinds. What every command requires of the configuration it loads.
pub fn check_values(cfg: &Config) -> Result<(), config::Error> {
    cfg.validate()?;
    check_jobs(cfg)
}

/// The kinds named in `engine.per_kind`, and each schedule's cron expression, kind and params
/// (against the rest of `cfg`: a params' credential profile must exist in it, for instance).
fn check_jobs(cfg: &Config) -> Result<(), config::Error> {
    for kind in cfg.engine.per_kind.keys() {
        if JobKind::parse(kind).is_none() {
            return Err(config::Error::invalid(
                format!("engine.per_kind.{kind}"),
                format!("unknown job kind (known: {})", JobKind::names().join(", ")),
            ));
        }
    }
    for kind in cfg.engine.timeout.keys() {
        if JobKind::parse(kind).is_none() {
            return Err(config::Error::invalid(
                format!("engine.timeout.{kind}"),
                format!("unknown job kind (known: {})", JobKind::names().join(", ")),
            ));
        }
    }
    for s in &cfg.schedules {
        // Config::validate has checked the zone; a zone it refuses is named as it names it.
        let tz: chrono_tz::Tz = s.timezone.parse().map_err(|_| {
            config::Error::invalid(
                format!("schedules.{}.timezone", s.name),
                format!("{:?} is not an IANA time zone name", s.timezone),
            )
        })?;
        cron::check_expression(&s.cron, tz).map_err(|e| {
            config::Error::invalid(
                format!("schedules.{}.cron", s.name),
                format!("{:?} {e}", s.cron),
            )
        })?;
        let Some(kind) = JobKind::parse(&s.kind) else {
            return Err(config::Error::invalid(
                format!("schedules.{}.kind", s.name),
                format!(
                    "unknown job kind {:?} (known: {})",
                    s.kind,
                    JobKind::names().join(", ")
                ),
            ));
        };
        jobs::validate(kind, &s.params, cfg).map_err(|e| {
            config::Error::invalid(format!("schedules.{}.params", s.name), e.to_string())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const MINIMAL: &str = r#"
[cloud]
region = "ap-southeast-3"
iam_project_id = "p1"
[cloud.auth]
method = "password"
domain_name = "acct"
user_name = "u"
password = { env = "SOME_VAR" }
"#;

    /// Loads `text` as `run` and `config check` do, short of resolving the secrets.
    fn load(text: &str, base_dir: &Path) -> Result<Config, config::Error> {
        Config::from_toml_str(text, base_dir).and_then(|c| check_values(&c).map(|()| c))
    }

    #[test]
    fn a_cron_expression_that_never_fires_is_refused() {
        for (cron, tz) in [("0 0 0 30 2 *", "UTC"), ("0 0 0 31 4 *", "Asia/Tokyo")] {
            let text = format!(
                "{MINIMAL}\n[[schedules]]\nname = \"never\"\ncron = \"{cron}\"\ntimezone = \"{tz}\"\nkind = \"remote_mirror\"\nparams = {{ repository_id = 1 }}\n"
            );
            let started = std::time::Instant::now();
            let msg = load(&text, Path::new(".")).unwrap_err().to_string();
            assert!(
                msg.ends_with(&format!(
                    "schedules.never.cron: \"{cron}\" never fires (no occurrence in the next 5 years)"
                )),
                "got: {msg}"
            );
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
        }
        let text = format!(
            "{MINIMAL}\n[[schedules]]\nname = \"leap\"\ncron = \"0 0 0 29 2 *\"\nkind = \"remote_mirror\"\nparams = {{ repository_id = 1 }}\n"
        );
        load(&text, Path::new(".")).expect("29 February comes within 5 years");
        let text = format!(
            "{MINIMAL}\n[[schedules]]\nname = \"bad\"\ncron = \"0 0 25 * * *\"\nkind = \"remote_mirror\"\nparams = {{ repository_id = 1 }}\n"
        );
        let msg = load(&text, Path::new(".")).unwrap_err().to_string();
        assert!(
            msg.contains("schedules.bad.cron: \"0 0 25 * * *\" is not a valid cron expression"),
            "got: {msg}"
        );
    }

    #[test]
    fn unknown_job_kinds_are_named_by_key() {
        let text = format!("{MINIMAL}\n[engine.per_kind]\nmirror_everything = 2\n");
        Config::from_toml_str(&text, Path::new(".")).expect("the data alone is well formed");
        let msg = load(&text, Path::new(".")).unwrap_err().to_string();
        assert!(
            msg.contains(
                "engine.per_kind.mirror_everything: unknown job kind (known: remote_mirror"
            ),
            "got: {msg}"
        );
        let text = format!(
            "{MINIMAL}\n[[schedules]]\nname = \"n\"\ncron = \"0 * * * * *\"\nkind = \"mirror_everything\"\n"
        );
        let msg = load(&text, Path::new(".")).unwrap_err().to_string();
        assert!(
            msg.contains("schedules.n.kind: unknown job kind \"mirror_everything\" (known: "),
            "got: {msg}"
        );
    }

    #[test]
    fn the_documented_example_and_the_demo_config_are_valid() {
        let example = include_str!("../../config/codearts-syncd.toml");
        let cfg = load(example, Path::new("/etc/codearts-syncd"))
            .expect("config/codearts-syncd.toml is valid");
        assert_eq!(cfg.schedules.len(), 4);
        load(crate::demo::DEMO_CONFIG, Path::new("/tmp")).expect("config/demo.toml is valid");
    }
}
