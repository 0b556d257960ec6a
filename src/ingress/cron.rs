//! Cron ingress: the schedules from the config, fired by tokio-cron-scheduler in their time
//! zones. Each tick calls [`super::submit`]; a tick whose previous run of the same schedule is
//! still queued, running or following is recorded as `skipped`, never stacked.
//!
//! The set of schedules can be replaced while the daemon runs ([`Cron::replace`], on SIGHUP):
//! schedules are matched by name, and only those added, removed or changed are touched, so an
//! unchanged schedule keeps its next tick.

use std::sync::Arc;

use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use uuid::Uuid;

use super::leader::Leadership;
use super::{submit, Submission, Submitted};
use crate::config::{Config, Schedule};
use crate::store::Store;
use crate::Source;

/// Checks a six-field (seconds first) cron expression and that it fires within the next five
/// years in `tz` (`0 0 0 30 2 *` parses, but would leave a schedule silently dead). The error
/// reads after the quoted expression: `"0 0 0 30 2 *" never fires (...)`.
pub fn check_expression(expr: &str, tz: chrono_tz::Tz) -> Result<(), String> {
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| format!("is not a valid cron expression: {e}"))?;
    let now = chrono::Utc::now().with_timezone(&tz);
    let horizon = now
        .checked_add_months(chrono::Months::new(5 * 12))
        .unwrap_or(now);
    match cron.find_next_occurrence(&now, false) {
        Ok(next) if next <= horizon => Ok(()),
        _ => Err("never fires (no occurrence in the next 5 years)".to_string()),
    }
}

/// The running cron scheduler and the schedules registered in it.
pub struct Cron {
    sched: JobScheduler,
    store: Store,
    leader: Arc<dyn Leadership>,
    /// Each registered schedule, as configured, with its scheduler job id.
    registered: Vec<(Schedule, Uuid)>,
}

/// What [`Cron::replace`] changed, by schedule name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl ScheduleChanges {
    /// True when no schedule was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Starts the configured schedules; shut the returned scheduler down on exit.
/// Ticks fire on every instance, but only the cron leader submits: `leader` is asked at each
/// tick (see [`super::leader`]).
pub async fn start(
    store: Store,
    cfg: Arc<Config>,
    leader: Arc<dyn Leadership>,
) -> Result<Cron, JobSchedulerError> {
    let sched = JobScheduler::new().await?;
    let mut cron = Cron {
        sched,
        store,
        leader,
        registered: Vec::new(),
    };
    for s in &cfg.schedules {
        let job = cron.job(s, &cfg)?;
        let id = cron.sched.add(job).await?;
        cron.registered.push((s.clone(), id));
        tracing::info!(schedule = %s.name, cron = %s.cron, timezone = %s.timezone, kind = %s.kind, "schedule registered");
    }
    cron.sched.start().await?;
    Ok(cron)
}

impl Cron {
    /// Replaces the registered schedules with `cfg.schedules`: removes those no longer there,
    /// re-registers those whose definition changed, adds the new ones. Every new schedule is
    /// parsed before anything is removed, so a schedule the scheduler refuses leaves the old
    /// set in place. New ticks submit with `cfg`.
    pub async fn replace(
        &mut self,
        cfg: &Arc<Config>,
    ) -> Result<ScheduleChanges, JobSchedulerError> {
        let mut changes = ScheduleChanges::default();
        let mut build = Vec::new();
        for s in &cfg.schedules {
            match self.registered.iter().find(|(old, _)| old.name == s.name) {
                Some((old, _)) if same(old, s) => {}
                Some(_) => {
                    changes.changed.push(s.name.clone());
                    build.push((s.clone(), self.job(s, cfg)?));
                }
                None => {
                    changes.added.push(s.name.clone());
                    build.push((s.clone(), self.job(s, cfg)?));
                }
            }
        }
        for (old, _) in &self.registered {
            if !cfg.schedules.iter().any(|s| s.name == old.name) {
                changes.removed.push(old.name.clone());
            }
        }
        // Remove what goes away or is redefined, then add what is new or redefined. The
        // scheduler's calls fail only when its own tasks are gone; `registered` then still
        // lists exactly what is registered.
        let mut kept = Vec::with_capacity(self.registered.len());
        let mut old = std::mem::take(&mut self.registered).into_iter();
        while let Some((s, id)) = old.next() {
            if !changes.removed.contains(&s.name) && !changes.changed.contains(&s.name) {
                kept.push((s, id));
                continue;
            }
            if let Err(e) = self.sched.remove(&id).await {
                kept.push((s, id));
                kept.extend(old);
                self.registered = kept;
                return Err(e);
            }
            tracing::info!(schedule = %s.name, "schedule removed");
        }
        self.registered = kept;
        for (s, job) in build {
            let id = self.sched.add(job).await?;
            tracing::info!(schedule = %s.name, cron = %s.cron, timezone = %s.timezone, kind = %s.kind, "schedule registered");
            self.registered.push((s, id));
        }
        Ok(changes)
    }

    /// Stops the scheduler: no tick fires after this.
    pub async fn shutdown(&mut self) -> Result<(), JobSchedulerError> {
        self.sched.shutdown().await
    }

    /// The scheduler job for one schedule: a tick submits (on the leader only) with `cfg`.
    fn job(&self, s: &Schedule, cfg: &Arc<Config>) -> Result<Job, JobSchedulerError> {
        let tz: chrono_tz::Tz = s.timezone.parse().unwrap_or(chrono_tz::UTC);
        let store = self.store.clone();
        let cfg = cfg.clone();
        let schedule = s.clone();
        let leader = self.leader.clone();
        Job::new_async_tz(s.cron.as_str(), tz, move |_id, _sched| {
            let store = store.clone();
            let cfg = cfg.clone();
            let s = schedule.clone();
            let leading = leader.is_leader();
            Box::pin(async move {
                if !leading {
                    tracing::debug!(schedule = %s.name, "cron tick left to the leader instance");
                    return;
                }
                let sub = Submission {
                    kind: s.kind.clone(),
                    params: s.params.clone(),
                    source: Source::Cron,
                    key: None,
                    schedule: Some(s.name.clone()),
                };
                match submit(&store, &cfg, sub).await {
                    Ok(Submitted::Skipped(id)) => tracing::warn!(
                        schedule = %s.name, id, kind = %s.kind,
                        "cron tick skipped: the previous run is still active"
                    ),
                    Ok(done) => {
                        tracing::info!(schedule = %s.name, id = done.id(), kind = %s.kind, "cron tick submitted")
                    }
                    Err(e) => {
                        tracing::error!(schedule = %s.name, error = %e, "cron tick could not be recorded")
                    }
                }
            })
        })
    }
}

/// True when two schedules are defined alike (every field, parameters included).
fn same(a: &Schedule, b: &Schedule) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}
