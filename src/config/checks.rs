//! The checks the types cannot express, made on the data alone: non-empty identifiers, URLs,
//! which authentication keys a method needs, numeric ranges, the bounds of every duration,
//! secret sources' shape, AMQP names, schedule names and time zones.
//!
//! Not here: anything that needs to know the job kinds or how cron reads an expression (a
//! schedule's `cron`, `kind` and `params`; the kinds named in `engine.per_kind`). The layers that
//! own that knowledge check it, in `crate::daemon::checks`, which runs these checks first.

use std::time::Duration;

use super::{Auth, Config, Error};

pub(super) const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// The longest `retention.keep`: a century.
const MAX_KEEP: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The largest `misfire_grace` a schedule may set.
const MAX_MISFIRE_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A duration key and its bounds.
pub(super) struct DurationKey {
    pub(super) key: &'static str,
    /// Zero would stop the daemon doing its work (a timeout that always fires, a busy loop).
    pub(super) nonzero: bool,
    pub(super) max: Duration,
    pub(super) get: fn(&Config) -> Option<Duration>,
}

/// Every duration in the configuration with its bounds, in one place. The maxima are far
/// above any sensible value; they are there so that a typo (`"99999999d"`) is refused by name
/// instead of overflowing a timer or parking a job for centuries. A test checks that no
/// duration key is missing here.
pub(super) const DURATION_KEYS: &[DurationKey] = &[
    DurationKey {
        key: "server.request_timeout",
        nonzero: true,
        max: HOUR,
        get: |c| c.server.as_ref().map(|s| s.request_timeout),
    },
    DurationKey {
        key: "store.busy_timeout",
        nonzero: false,
        max: HOUR,
        get: |c| Some(c.store.busy_timeout),
    },
    DurationKey {
        key: "store.lease",
        nonzero: true,
        max: HOUR,
        get: |c| Some(c.store.lease),
    },
    DurationKey {
        key: "http.connect_timeout",
        nonzero: true,
        max: HOUR,
        get: |c| Some(c.http.connect_timeout),
    },
    DurationKey {
        key: "http.request_timeout",
        nonzero: true,
        max: HOUR,
        get: |c| Some(c.http.request_timeout),
    },
    DurationKey {
        key: "http.token_refresh_margin",
        nonzero: false,
        max: Duration::from_secs(12 * 3600),
        get: |c| Some(c.http.token_refresh_margin),
    },
    DurationKey {
        key: "engine.poll_interval",
        nonzero: true,
        max: HOUR,
        get: |c| Some(c.engine.poll_interval),
    },
    DurationKey {
        key: "engine.shutdown_grace",
        nonzero: false,
        max: HOUR,
        get: |c| Some(c.engine.shutdown_grace),
    },
    DurationKey {
        key: "retry.initial_interval",
        nonzero: false,
        max: DAY,
        get: |c| Some(c.retry.initial_interval),
    },
    DurationKey {
        key: "retry.max_interval",
        nonzero: false,
        max: DAY,
        get: |c| Some(c.retry.max_interval),
    },
    DurationKey {
        key: "retry.max_retry_after",
        nonzero: true,
        max: DAY,
        get: |c| Some(c.retry.max_retry_after),
    },
    DurationKey {
        key: "remote_mirror.poll_interval",
        nonzero: true,
        max: HOUR,
        get: |c| Some(c.remote_mirror.poll_interval),
    },
    DurationKey {
        key: "remote_mirror.follow_timeout",
        nonzero: true,
        max: Duration::from_secs(7 * 24 * 3600),
        get: |c| Some(c.remote_mirror.follow_timeout),
    },
    DurationKey {
        key: "swr.poll_interval",
        nonzero: true,
        max: HOUR,
        get: |c| Some(c.swr.poll_interval),
    },
    DurationKey {
        key: "swr.follow_timeout",
        nonzero: true,
        max: Duration::from_secs(7 * 24 * 3600),
        get: |c| Some(c.swr.follow_timeout),
    },
    DurationKey {
        key: "retention.interval",
        nonzero: true,
        max: DAY,
        get: |c| Some(c.retention.interval),
    },
    DurationKey {
        key: "amqp.batch_wait",
        nonzero: false,
        max: Duration::from_secs(10),
        get: |c| c.amqp.as_ref().map(|a| a.batch_wait),
    },
    DurationKey {
        key: "amqp.reconnect_initial",
        nonzero: true,
        max: HOUR,
        get: |c| c.amqp.as_ref().map(|a| a.reconnect_initial),
    },
    DurationKey {
        key: "amqp.reconnect_max",
        nonzero: true,
        max: HOUR,
        get: |c| c.amqp.as_ref().map(|a| a.reconnect_max),
    },
    DurationKey {
        key: "amqp.confirm_timeout",
        nonzero: true,
        max: HOUR,
        get: |c| c.amqp.as_ref().map(|a| a.confirm_timeout),
    },
];

/// A duration as a person would write it: the largest unit that divides it (`7d`, `90s`),
/// else humantime's long form.
/// A duration as a person writes it in the config: `7d`, `90s`, `250ms`.
pub fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() == 0 {
        for (unit, name) in [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")] {
            if s > 0 && s % unit == 0 {
                return format!("{}{name}", s / unit);
            }
        }
        if s == 0 {
            return "0s".into();
        }
    }
    if d.as_nanos() % 1_000_000 == 0 {
        return format!("{}ms", d.as_millis());
    }
    humantime::format_duration(d).to_string()
}

impl Config {
    /// Checks what the types cannot, on the data alone: ranges, references between sections,
    /// schedule names and time zones. [`Config::load`] runs it.
    pub fn validate(&self) -> Result<(), Error> {
        if self.cloud.region.trim().is_empty() {
            return Err(Error::invalid("cloud.region", "must not be empty"));
        }
        if self.cloud.iam_project_id.trim().is_empty() {
            return Err(Error::invalid("cloud.iam_project_id", "must not be empty"));
        }
        for (key, url) in [
            ("cloud.endpoints.iam", &self.cloud.endpoints.iam),
            ("cloud.endpoints.repo", &self.cloud.endpoints.repo),
            ("cloud.endpoints.artifact", &self.cloud.endpoints.artifact),
            ("cloud.endpoints.swr", &self.cloud.endpoints.swr),
        ] {
            if let Some(url) = url {
                match url::Url::parse(url) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => {
                        return Err(Error::invalid(
                            key,
                            format!("{url:?} is not an http(s) URL"),
                        ))
                    }
                }
            }
        }
        if let Some(url) = &self.store.url {
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "postgres" || u.scheme() == "postgresql" => {
                    if u.password().is_some() {
                        return Err(Error::invalid(
                            "store.url",
                            "must not hold a password: give it with store.password = { env = \"…\" } or { file = \"…\" }",
                        ));
                    }
                }
                _ => {
                    return Err(Error::invalid(
                        "store.url",
                        "is not a postgres:// URL (leave it out for the SQLite file at store.path)",
                    ))
                }
            }
        }
        if let Some(p) = &self.store.password {
            if self.store.url.is_none() {
                return Err(Error::invalid(
                    "store.password",
                    "is only for a PostgreSQL store.url",
                ));
            }
            p.check_shape("store.password")?;
        }
        if !(1..=1000).contains(&self.store.max_connections) {
            return Err(Error::invalid(
                "store.max_connections",
                "must be between 1 and 1000",
            ));
        }
        match self.cloud.auth.resolve()? {
            Auth::Password { password, .. } => password.check_shape("cloud.auth.password")?,
            Auth::Aksk {
                access_key,
                secret_key,
            } => {
                access_key.check_shape("cloud.auth.access_key")?;
                secret_key.check_shape("cloud.auth.secret_key")?;
            }
        }
        for d in DURATION_KEYS {
            let Some(value) = (d.get)(self) else { continue };
            if d.nonzero && value.is_zero() {
                return Err(Error::invalid(d.key, "must be above zero"));
            }
            if value > d.max {
                return Err(Error::invalid(
                    d.key,
                    format!(
                        "{} is above the maximum of {}",
                        show_duration(value),
                        show_duration(d.max)
                    ),
                ));
            }
        }
        for region in &self.swr.sync_regions {
            if !region_id_is_valid(region) {
                return Err(Error::invalid(
                    "swr.sync_regions",
                    format!("{region:?} is not a region id (such as \"ap-southeast-1\")"),
                ));
            }
        }
        if self.engine.concurrency == 0 {
            return Err(Error::invalid("engine.concurrency", "must be at least 1"));
        }
        // Whether each key names a job kind is checked where the kinds are known.
        for (kind, limit) in &self.engine.per_kind {
            if *limit == 0 {
                return Err(Error::invalid(
                    format!("engine.per_kind.{kind}"),
                    "must be at least 1",
                ));
            }
        }
        // Whether each key names a job kind is checked where the kinds are known.
        for (kind, t) in &self.engine.timeout {
            let key = format!("engine.timeout.{kind}");
            if t.is_zero() {
                return Err(Error::invalid(key, "must be above zero"));
            }
            if **t > DAY {
                return Err(Error::invalid(
                    key,
                    format!(
                        "{} is above the maximum of {}",
                        show_duration(**t),
                        show_duration(DAY)
                    ),
                ));
            }
        }
        // Optional, so not in DURATION_KEYS (whose every key has a value by default).
        if let Some(keep) = self.retention.keep {
            if keep.is_zero() {
                return Err(Error::invalid("retention.keep", "must be above zero"));
            }
            if keep > MAX_KEEP {
                return Err(Error::invalid(
                    "retention.keep",
                    format!(
                        "{} is above the maximum of {}",
                        show_duration(keep),
                        show_duration(MAX_KEEP)
                    ),
                ));
            }
        }
        if !(1..=100_000).contains(&self.retention.batch_size) {
            return Err(Error::invalid(
                "retention.batch_size",
                "must be in 1..=100000",
            ));
        }
        let r = &self.retry;
        if !(r.multiplier >= 1.0 && r.multiplier.is_finite()) {
            return Err(Error::invalid("retry.multiplier", "must be at least 1.0"));
        }
        if !(0.0..1.0).contains(&r.randomization_factor) {
            return Err(Error::invalid(
                "retry.randomization_factor",
                "must be in [0, 1)",
            ));
        }
        if r.max_attempts == 0 {
            return Err(Error::invalid("retry.max_attempts", "must be at least 1"));
        }
        if r.initial_interval > r.max_interval {
            return Err(Error::invalid(
                "retry.initial_interval",
                "must not exceed retry.max_interval",
            ));
        }
        if !(1..=1000).contains(&self.purge_recycle_bin.batch_size) {
            return Err(Error::invalid(
                "purge_recycle_bin.batch_size",
                "must be in 1..=1000",
            ));
        }
        for (name, profile) in &self.credentials {
            profile
                .username
                .check_shape(&format!("credentials.{name}.username"))?;
            profile
                .password
                .check_shape(&format!("credentials.{name}.password"))?;
        }
        if let Some(a) = &self.amqp {
            match url::Url::parse(&a.url) {
                Ok(u) if u.scheme() == "amqp" || u.scheme() == "amqps" => {
                    if !u.username().is_empty() || u.password().is_some() {
                        return Err(Error::invalid(
                            "amqp.url",
                            "must not carry credentials; use amqp.username and amqp.password",
                        ));
                    }
                }
                _ => {
                    return Err(Error::invalid(
                        "amqp.url",
                        format!("{:?} is not an amqp:// or amqps:// URL", a.url),
                    ))
                }
            }
            if let Some(p) = &a.password {
                p.check_shape("amqp.password")?;
            }
            for (key, v) in [
                ("amqp.exchange", &a.exchange),
                ("amqp.queue", &a.queue),
                ("amqp.dead_letter_exchange", &a.dead_letter_exchange),
                ("amqp.dead_letter_queue", &a.dead_letter_queue),
                ("amqp.leader_queue", &a.leader_queue),
            ] {
                if v.is_empty() {
                    return Err(Error::invalid(key, "must not be empty"));
                }
            }
            if a.prefetch == 0 {
                return Err(Error::invalid("amqp.prefetch", "must be at least 1"));
            }
            if a.batch_max == 0 {
                return Err(Error::invalid("amqp.batch_max", "must be at least 1"));
            }
            if !(4096..=131_072).contains(&a.frame_max) {
                return Err(Error::invalid(
                    "amqp.frame_max",
                    format!("{} is outside 4096..=131072", a.frame_max),
                ));
            }
            if a.reconnect_initial > a.reconnect_max {
                return Err(Error::invalid(
                    "amqp.reconnect_initial",
                    "must not exceed amqp.reconnect_max",
                ));
            }
        }
        if let Some(srv) = &self.server {
            if !(1024..=64 * 1024 * 1024).contains(&srv.max_body_bytes) {
                return Err(Error::invalid(
                    "server.max_body_bytes",
                    "must be in 1024..=67108864 (1 KiB to 64 MiB)",
                ));
            }
            if let Some(h) = &srv.codearts_repo {
                h.token.check_shape("server.codearts_repo.token")?;
                if !header_name_is_valid(&h.token_header) {
                    return Err(Error::invalid(
                        "server.codearts_repo.token_header",
                        "must be a valid HTTP header name",
                    ));
                }
            }
            if let Some(h) = &srv.github {
                h.secret.check_shape("server.github.secret")?;
            }
            if let Some(t) = &srv.api_token {
                t.check_shape("server.api_token")?;
            }
            for (i, r) in srv.routes.iter().enumerate() {
                let key = format!("server.routes[{i}]");
                if r.repo.is_none() && r.project_id.is_none() {
                    return Err(Error::invalid(key, "give `repo` (a glob) or `project_id`"));
                }
                for (field, glob) in [("repo", &r.repo), ("branches", &r.branches)] {
                    if let Some(g) = glob {
                        globset::Glob::new(g).map_err(|e| {
                            Error::invalid(format!("{key}.{field}"), format!("invalid glob: {e}"))
                        })?;
                    }
                }
                if let Some(c) = &r.credential {
                    if !self.credentials.contains_key(c) {
                        return Err(Error::invalid(
                            format!("{key}.credential"),
                            format!("no credential profile {c:?} in [credentials]"),
                        ));
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.schedules.iter().enumerate() {
            let key = format!("schedules[{i}]");
            if s.name.trim().is_empty() {
                return Err(Error::invalid(format!("{key}.name"), "must not be empty"));
            }
            if !seen.insert(s.name.as_str()) {
                return Err(Error::invalid(
                    format!("{key}.name"),
                    format!("schedule name {:?} is used twice", s.name),
                ));
            }
            s.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
                Error::invalid(
                    format!("schedules.{}.timezone", s.name),
                    format!("{:?} is not an IANA time zone name", s.timezone),
                )
            })?;
            if s.misfire_grace > MAX_MISFIRE_GRACE {
                return Err(Error::invalid(
                    format!("schedules.{}.misfire_grace", s.name),
                    format!(
                        "{} is above the maximum of {}",
                        show_duration(s.misfire_grace),
                        show_duration(MAX_MISFIRE_GRACE)
                    ),
                ));
            }
            match (s.misfire, s.max_catch_up) {
                (super::Misfire::CatchUp, Some(0)) => {
                    return Err(Error::invalid(
                        format!("schedules.{}.max_catch_up", s.name),
                        "must be at least 1 (use misfire = \"skip\" to make up nothing)",
                    ))
                }
                (super::Misfire::CatchUp, Some(n)) if n > 1000 => {
                    return Err(Error::invalid(
                        format!("schedules.{}.max_catch_up", s.name),
                        format!("{n} is above the maximum of 1000"),
                    ))
                }
                (super::Misfire::CatchUp, _) | (_, None) => {}
                (other, Some(_)) => {
                    return Err(Error::invalid(
                        format!("schedules.{}.max_catch_up", s.name),
                        format!(
                            "only applies with misfire = \"catch_up\" (this schedule has {:?})",
                            other.as_str()
                        ),
                    ))
                }
            }
            // Whether the expression parses and fires, and the kind and params, are checked
            // where cron and the job kinds are known.
        }
        Ok(())
    }

    /// Every check this module can make alone: the values ([`Config::validate`]) and that every
    /// secret source resolves ([`Config::check_secrets`]). `config check`, `run` and a reload add
    /// the schedule and job-kind checks through `crate::daemon::checks::check_config`.
    pub fn check_all(&self) -> Result<(), Error> {
        self.validate()?;
        self.check_secrets()
    }
}

/// True for a header name as HTTP allows it: a non-empty token of visible ASCII, no separators.
/// A region id as Huawei Cloud writes them: lower-case letters and digits in `-`-separated
/// parts, the first of letters only (`ap-southeast-1`, `cn-north-4`, `la-north-2`).
fn region_id_is_valid(id: &str) -> bool {
    let mut parts = id.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()));
    let rest: Vec<&str> = parts.collect();
    first_ok
        && !rest.is_empty()
        && id.len() <= 64
        && rest.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

fn header_name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
