//! The long-running daemon (`run`): recover, then cron and workers until shutdown, then drain.
//!
//! While it runs, a reload request (SIGHUP in the binary, see [`Reload`]) reads the configuration
//! file again and applies what can change safely in a running process: the cron schedules and
//! `logging.level`, and it reads the listener's TLS certificate and key again (a renewed
//! certificate, at the paths in force). An invalid file is refused with its reason and the
//! configuration in force is kept; any other key that differs is named as needing a restart,
//! and not applied.
//!
//! Under systemd (`Type=notify`), `READY=1` is sent once the store is open, recovery has run and
//! the AMQP consumer and cron are started; then status lines and, while the engine's loop goes
//! round, watchdog pings (see [`crate::notify`]).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::config::Config;
use crate::engine::Engine;
use crate::ingress::amqp;
use crate::ingress::cron::{self, Cron};
use crate::ingress::http;
use crate::ingress::leader::Leader;
use crate::jobs::Ctx;
use crate::logging::{self, LevelChange};
use crate::notify;
use crate::store::Store;

pub mod checks;
pub mod operator;
pub mod retention;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Api(#[from] api::Error),
    #[error("cannot start the cron scheduler: {0}")]
    Cron(String),
    /// The HTTP listener could not bind (the message names the address).
    #[error("{0}")]
    Listen(std::io::Error),
}

impl Error {
    /// True when the store is damaged or from a newer version: restarting will not help.
    pub fn is_store_unusable(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_unusable())
    }
}

/// Where reload requests come from and which file they read.
pub struct Reload {
    /// The configuration file to read again (the one the daemon started from).
    pub path: PathBuf,
    /// One message per request; requests that arrive while one is applied may be merged.
    pub requests: mpsc::Receiver<()>,
}

/// Opens the store and the client, re-queues jobs a dead process left running, then runs cron
/// and the engine until `shutdown` fires; in-flight jobs then finish within the grace period.
/// With `reload`, each request re-reads the configuration (see the module documentation).
pub async fn run(
    cfg: Config,
    shutdown: CancellationToken,
    reload: Option<Reload>,
) -> Result<(), Error> {
    let cfg = Arc::new(cfg);
    let store = Store::open(&cfg.store).await?;
    let result = run_on(cfg, store.clone(), shutdown, reload).await;
    store.close().await;
    result
}

/// As [`run`] without reloads, on an open store (left open for the caller).
pub async fn run_with_store(
    cfg: Arc<Config>,
    store: Store,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_on(cfg, store, shutdown, None).await
}

async fn run_on(
    cfg: Arc<Config>,
    store: Store,
    shutdown: CancellationToken,
    reload: Option<Reload>,
) -> Result<(), Error> {
    let recovered = store.recover_running(cfg.store.lease).await?;
    if recovered > 0 {
        tracing::warn!(
            jobs = recovered,
            "re-queued jobs left running by a previous process"
        );
    }
    // On a shared store: heartbeats, and taking over the jobs of instances that fell silent.
    // They go on through the drain, and stop once the last job is settled.
    let live_stop = CancellationToken::new();
    let liveness = store
        .is_shared()
        .then(|| tokio::spawn(liveness(store.clone(), cfg.store.lease, live_stop.clone())));
    let api = api::Client::from_config(&cfg)?;
    let ctx = Ctx {
        api,
        config: cfg.clone(),
        store: store.clone(),
    };
    // Who leads cron: alone, this instance; with AMQP and SQLite stores, whichever instance
    // the broker grants the leader queue to (the consumer sets the flag while it holds it).
    // On a shared store every instance fires every tick: the `(schedule, slot)` key lets one
    // tick's job in, so no instance is a single point of failure (the consumer's campaign
    // then decides nothing).
    let leader = if cfg.amqp.is_some() && !store.is_shared() {
        Leader::contender()
    } else {
        Leader::always()
    };
    let campaign = if store.is_shared() {
        Leader::contender()
    } else {
        leader.clone()
    };
    let amqp_stop = CancellationToken::new();
    let connected = amqp::Connected::default();
    // The listener binds first: a port already taken fails the start, before any work.
    let http_stop = CancellationToken::new();
    let http = match &cfg.server {
        Some(_) => {
            let readiness = http::Readiness {
                store: store.clone(),
                broker: cfg.amqp.is_some().then(|| connected.clone()),
                draining: shutdown.clone(),
            };
            let operator = operator::router(store.clone(), cfg.clone())
                .map_err(|e| Error::Listen(std::io::Error::other(e.to_string())))?;
            Some(
                http::serve(cfg.clone(), readiness, operator, http_stop.clone())
                    .await
                    .map_err(Error::Listen)?,
            )
        }
        None => None,
    };
    let consumer = tokio::spawn(amqp::run(
        store.clone(),
        cfg.clone(),
        campaign,
        connected,
        amqp_stop.clone(),
    ));
    let cron_leader = leader.clone();
    let cron = cron::start(store.clone(), cfg.clone(), Arc::new(leader))
        .await
        .map_err(|e| Error::Cron(e.to_string()))?;
    tracing::info!(
        db = %match &cfg.store.url {
            Some(url) => crate::store::shown_url(url),
            None => cfg.store.path.display().to_string(),
        },
        schedules = cfg.schedules.len(),
        concurrency = cfg.engine.concurrency,
        "daemon started"
    );
    // Reloads are taken until shutdown; the task then hands the scheduler back.
    let certificate = http.as_ref().and_then(|h| h.certificate.clone());
    let reloader = tokio::spawn(reload_loop(
        cron,
        cfg.clone(),
        certificate,
        reload,
        shutdown.clone(),
    ));
    // On shutdown the consumer stops first, so no delivery arrives while jobs drain.
    let stop_consumer = {
        let shutdown = shutdown.clone();
        let amqp_stop = amqp_stop.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            amqp_stop.cancel();
        })
    };
    // Retention prunes on its own schedule, in short transactions beside the engine's.
    let pruner = tokio::spawn(retention::run(
        store.clone(),
        cfg.retention.clone(),
        shutdown.clone(),
    ));
    // Up: the store is open, recovery ran, the consumer and cron are started.
    let status = status_line(store.clone(), cfg.amqp.is_some().then_some(cron_leader));
    notify::ready(&status(0));
    let engine = Engine::new(ctx);
    let engine = match notify::heartbeat() {
        Some(hb) => {
            notify::spawn_supervisor(hb.clone(), status, shutdown.clone());
            engine.with_heartbeat(hb)
        }
        None => engine,
    };
    let result = engine.run(shutdown).await;
    amqp_stop.cancel();
    let _ = consumer.await;
    // The listener answered through the drain (`/readyz`: draining); now it stops.
    http_stop.cancel();
    if let Some(h) = http {
        let _ = h.task.await;
    }
    stop_consumer.abort();
    let _ = pruner.await;
    match reloader.await {
        Ok(mut cron) => {
            cron.shutdown().await;
        }
        Err(e) => tracing::error!(error = %e, "the reload task ended abnormally"),
    }
    live_stop.cancel();
    if let Some(task) = liveness {
        let _ = task.await;
        if let Err(e) = store.stopped().await {
            tracing::warn!(error = %e, "could not record this instance's stop in the store");
        }
    }
    tracing::info!("daemon stopped");
    result.map_err(Error::from)
}

/// On a shared store, until `shutdown`: a heartbeat every third of the lease, and each time
/// the running jobs of instances silent past the lease taken back.
async fn liveness(store: Store, lease: std::time::Duration, shutdown: CancellationToken) {
    let every = (lease / 3).max(std::time::Duration::from_millis(100));
    loop {
        if let Err(e) = store.heartbeat().await {
            tracing::warn!(error = %e, "store heartbeat failed");
        }
        match store.take_over(lease).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                jobs = n,
                "took over jobs of an instance that stopped heartbeating"
            ),
            Err(e) => tracing::warn!(error = %e, "could not check for silent instances"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The status line systemd shows (`systemctl status`): jobs running, whether the store takes
/// writes, and with AMQP whether this instance leads cron (it holds the broker's leader queue).
fn status_line(store: Store, leader: Option<Leader>) -> impl Fn(usize) -> String + Send + 'static {
    move |running| {
        let store = if store.health().is_failing() {
            "store cannot write"
        } else {
            "store ok"
        };
        let cron = match &leader {
            None => "",
            Some(l) if l.is_leader() => "; cron leader (broker connected)",
            Some(_) => "; cron standby (another instance leads, or no broker)",
        };
        format!("{running} jobs running; {store}{cron}")
    }
}

/// Applies reload requests until `shutdown`, then returns the scheduler. `certificate` is the
/// listener's when it speaks TLS.
async fn reload_loop(
    mut cron: Cron,
    running: Arc<Config>,
    certificate: Option<http::tls::Certificate>,
    reload: Option<Reload>,
    shutdown: CancellationToken,
) -> Cron {
    let Some(Reload { path, mut requests }) = reload else {
        shutdown.cancelled().await;
        return cron;
    };
    // What is in force: the start-up configuration with the reloaded schedules and level.
    let mut current = running.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            request = requests.recv() => match request {
                Some(()) => {
                    current = apply_reload(&mut cron, &running, current, &path).await;
                    if let Some(c) = &certificate {
                        reload_certificate(c, &running);
                    }
                }
                None => {
                    shutdown.cancelled().await;
                    break;
                }
            },
        }
    }
    cron
}

/// Reads `path` again and applies its schedules and log level; returns what is now in force.
/// `running` is the configuration the daemon started with: every key other than the schedules
/// and `logging.level` stays as it says until a restart.
async fn apply_reload(
    cron: &mut Cron,
    running: &Arc<Config>,
    current: Arc<Config>,
    path: &std::path::Path,
) -> Arc<Config> {
    let path_shown = path.display().to_string();
    tracing::info!(path = %path_shown, "reload requested: reading the configuration again");
    let new = match Config::load(path).and_then(|c| checks::check_config(&c).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(path = %path_shown, error = %e, "configuration reload refused; the configuration in force is kept");
            return current;
        }
    };
    // The new schedules run against the keys in force (credentials, retry limits), so they
    // are checked against those, not only against the new file.
    let mut effective = (**running).clone();
    effective.schedules = new.schedules.clone();
    effective.logging.level = new.logging.level;
    if let Err(e) = checks::check_values(&effective) {
        tracing::error!(
            path = %path_shown, error = %e,
            "configuration reload refused: the new schedules do not fit the configuration in force (the keys they rely on change only at a restart); the configuration in force is kept"
        );
        return current;
    }
    let restart_keys = changed_keys(running, &new);
    let effective = Arc::new(effective);

    let changes = match cron.replace(&effective).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the schedules could not all be replaced; the scheduler holds a mix of the old and new ones until the next reload or restart");
            Default::default()
        }
    };
    let (old_level, new_level) = (current.logging.level, new.logging.level);
    let level = if old_level == new_level {
        "unchanged".to_string()
    } else {
        match logging::set_level(new_level) {
            Ok(LevelChange::Applied) => format!("{} -> {}", old_level.as_str(), new_level.as_str()),
            Ok(LevelChange::KeptRustLog) => format!(
                "{} -> {} (not applied: RUST_LOG sets the filter)",
                old_level.as_str(),
                new_level.as_str()
            ),
            Ok(LevelChange::NotInstalled) => "not reloadable here".to_string(),
            Err(e) => format!("not applied: {e}"),
        }
    };
    let names = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    if changes.is_empty() && old_level == new_level {
        tracing::info!(path = %path_shown, "configuration reloaded: no schedule or log level changed");
    } else {
        tracing::info!(
            path = %path_shown,
            schedules_added = %names(&changes.added),
            schedules_removed = %names(&changes.removed),
            schedules_changed = %names(&changes.changed),
            level = %level,
            "configuration reloaded"
        );
    }
    if !restart_keys.is_empty() {
        tracing::warn!(
            keys = %restart_keys.join(", "),
            "these changed keys take effect only after a restart; until then the daemon keeps their old values"
        );
    }
    effective
}

/// Reads the listener's certificate and key again from the paths in force (a changed path
/// takes a restart, as every other key does); on an error the one in force is kept.
fn reload_certificate(certificate: &http::tls::Certificate, running: &Config) {
    let Some(files) = running.server.as_ref().and_then(|s| s.tls.as_ref()) else {
        return;
    };
    match certificate.reload(files, &running.base_dir) {
        Ok(true) => tracing::info!("TLS certificate read again: new connections get the new one"),
        Ok(false) => tracing::info!("TLS certificate read again: unchanged"),
        Err(e) => tracing::error!(
            error = %e,
            "TLS certificate not reloaded; the one in force is kept"
        ),
    }
}

/// The keys (dotted paths) whose values differ between `old` and `new`, apart from those a
/// reload applies (the schedules and `logging.level`). Only key names, never values.
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    fn strip(cfg: &Config) -> Value {
        let mut v = serde_json::to_value(cfg).unwrap_or(Value::Null);
        if let Some(m) = v.as_object_mut() {
            m.remove("schedules");
            if let Some(l) = m.get_mut("logging").and_then(Value::as_object_mut) {
                l.remove("level");
            }
        }
        v
    }
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(
                        &child,
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(path.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", &strip(old), &strip(new), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[cloud]
region = "ap-southeast-3"
iam_project_id = "p1"
[cloud.auth]
method = "password"
domain_name = "acct"
user_name = "u"
password = { env = "SOME_VAR" }

[[schedules]]
name = "mirror"
cron = "0 0 3 * * *"
kind = "remote_mirror"
params = { repository_id = 1 }
"#;

    fn cfg(extra: &str) -> Config {
        Config::from_toml_str(&format!("{BASE}\n{extra}"), std::path::Path::new("/tmp"))
            .expect("valid")
    }

    #[test]
    fn changed_keys_name_what_needs_a_restart_and_skip_what_reloads() {
        let old = cfg("");
        let new = cfg(
            "[engine]\nconcurrency = 3\n[logging]\nlevel = \"debug\"\n[store]\npath = \"other.db\"\n\n[[schedules]]\nname = \"b\"\ncron = \"* * * * * *\"\nkind = \"remote_mirror\"\nparams = { repository_id = 2 }\n",
        );
        assert_eq!(
            changed_keys(&old, &new),
            vec!["engine.concurrency".to_string(), "store.path".to_string()]
        );
        assert!(changed_keys(&old, &cfg("")).is_empty());
        let amqp = cfg("[amqp]\nurl = \"amqp://127.0.0.1:5672/%2f\"\n");
        assert_eq!(changed_keys(&old, &amqp), vec!["amqp".to_string()]);
    }
}
