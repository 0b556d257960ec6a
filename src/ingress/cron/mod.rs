//! Cron ingress: the schedules from the config, each fired by a task of its own that computes
//! its next slot in the schedule's time zone ([`plan`]) and sleeps until that instant, so a tick
//! is submitted within milliseconds of its slot and never drifts, across DST changes too.
//!
//! Each firing is recorded with its slot (the instant it was scheduled for), unique per
//! schedule in the store, and the last slot each schedule dealt with is persisted: after
//! downtime the schedule's misfire policy (`skip`, `run_once`, `catch_up`) decides what
//! happens to the ticks missed. A tick whose previous run of the same schedule is still
//! queued, running or following is recorded as `skipped`, never stacked; a paused schedule's
//! ticks are recorded as dealt with and nothing else.
//!
//! Ticks fire on every instance, but only the cron leader submits ([`Leadership`]). A follower
//! counts the ticks due up to its last evidence that another instance leads as that one's; when
//! it becomes the leader, the ticks after that evidence are missed ticks, for the policy.
//!
//! The set of schedules can be replaced while the daemon runs ([`Cron::replace`], on SIGHUP):
//! only those added, removed or changed are touched, and a redefined schedule continues from
//! its persisted last slot.

pub mod plan;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::leader::Leadership;
use super::{prepare, Submission};
use crate::config::{Config, Schedule};
use crate::store::{self, Fired, Store};
use crate::{rfc3339, Source};
pub use plan::Plan;

/// How long a follower sleeps between looks at the leadership evidence, and how long a
/// schedule waits before trying again after the store refused a tick.
const FOLLOWER_WAKE: Duration = Duration::from_secs(1);
const RETRY_AFTER_STORE_ERROR: Duration = Duration::from_secs(1);

/// Checks a six-field (seconds first) cron expression and that it fires within the next five
/// years in `tz` (`0 0 0 30 2 *` parses, but would leave a schedule silently dead). The error
/// reads after the quoted expression: `"0 0 0 30 2 *" never fires (...)`.
pub fn check_expression(expr: &str, tz: chrono_tz::Tz) -> Result<(), String> {
    let plan = Plan::parse(expr, tz)?;
    let now = crate::now_ms();
    let horizon = now + 5 * 366 * 24 * 3600 * 1000;
    match plan.next(now, 1).first() {
        Some(next) if *next <= horizon => Ok(()),
        _ => Err("never fires (no occurrence in the next 5 years)".to_string()),
    }
}

/// The time a schedule reads: the wall clock in the daemon, a paused tokio clock in tests.
pub trait Clock: Send + Sync + 'static {
    /// Now, as Unix ms.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> i64 {
        crate::now_ms()
    }
}

/// Where a schedule's ticks are recorded: the store in the daemon, a list in tests.
pub trait Ticks: Clone + Send + Sync + 'static {
    /// The latest slot the schedule dealt with.
    fn last_slot(
        &self,
        schedule: &str,
    ) -> impl Future<Output = Result<Option<i64>, store::Error>> + Send;
    /// Records one firing of `s` at `slot`; with `behind`, queued behind a run still active
    /// instead of skipped (a made-up tick).
    fn fire(
        &self,
        s: &Schedule,
        slot: i64,
        behind: bool,
    ) -> impl Future<Output = Result<Fired, store::Error>> + Send;
    /// Records every slot up to `slot` as dealt with, without a job.
    fn pass(
        &self,
        schedule: &str,
        slot: i64,
    ) -> impl Future<Output = Result<(), store::Error>> + Send;
}

/// Ticks recorded in the store as jobs, validated like every submission.
#[derive(Clone)]
pub struct StoreTicks {
    store: Store,
    cfg: Arc<Config>,
}

impl Ticks for StoreTicks {
    async fn last_slot(&self, schedule: &str) -> Result<Option<i64>, store::Error> {
        self.store.last_slot(schedule).await
    }

    async fn fire(&self, s: &Schedule, slot: i64, behind: bool) -> Result<Fired, store::Error> {
        let mut p = prepare(
            &self.cfg,
            Submission {
                kind: s.kind.clone(),
                params: s.params.clone(),
                source: Source::Cron,
                key: None,
                schedule: Some(s.name.clone()),
            },
        );
        if let Some(reason) = &p.rejection {
            tracing::error!(schedule = %s.name, reason = %reason, "cron tick rejected");
        }
        if p.rejection.is_none() && p.job.lane.is_none() {
            // A schedule's runs never overlap: a catch-up run waits for the one before it.
            p.job.lane = Some(format!("schedule:{}", s.name));
        }
        self.store.fire_slot(&s.name, slot, &p.job, behind).await
    }

    async fn pass(&self, schedule: &str, slot: i64) -> Result<(), store::Error> {
        self.store.pass_slots(schedule, slot).await
    }
}

/// The running schedules.
pub struct Cron {
    store: Store,
    leader: Arc<dyn Leadership>,
    /// Each running schedule, as configured, with what stops its task.
    registered: Vec<(Schedule, CancellationToken, JoinHandle<()>)>,
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

/// A schedule that cannot run: its expression or zone does not parse.
#[derive(Debug, thiserror::Error)]
#[error("schedule {name}: {reason}")]
pub struct BadSchedule {
    pub name: String,
    pub reason: String,
}

/// Starts the configured schedules; call [`Cron::shutdown`] on exit.
pub async fn start(
    store: Store,
    cfg: Arc<Config>,
    leader: Arc<dyn Leadership>,
) -> Result<Cron, BadSchedule> {
    let mut cron = Cron {
        store,
        leader,
        registered: Vec::new(),
    };
    let plans = cfg
        .schedules
        .iter()
        .map(|s| Ok((s.clone(), plan_of(s)?)))
        .collect::<Result<Vec<_>, BadSchedule>>()?;
    for (s, plan) in plans {
        cron.spawn(s, plan, &cfg);
    }
    Ok(cron)
}

impl Cron {
    /// Replaces the running schedules with `cfg.schedules`: stops those no longer there,
    /// restarts those whose definition changed, starts the new ones. Every new schedule is
    /// parsed before anything is stopped, so a schedule that cannot run leaves the old set in
    /// place.
    pub async fn replace(&mut self, cfg: &Arc<Config>) -> Result<ScheduleChanges, BadSchedule> {
        let mut changes = ScheduleChanges::default();
        let mut build = Vec::new();
        for s in &cfg.schedules {
            match self.registered.iter().find(|(old, ..)| old.name == s.name) {
                Some((old, ..)) if same(old, s) => {}
                Some(_) => {
                    changes.changed.push(s.name.clone());
                    build.push((s.clone(), plan_of(s)?));
                }
                None => {
                    changes.added.push(s.name.clone());
                    build.push((s.clone(), plan_of(s)?));
                }
            }
        }
        for (old, ..) in &self.registered {
            if !cfg.schedules.iter().any(|s| s.name == old.name) {
                changes.removed.push(old.name.clone());
            }
        }
        let (stop, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.registered)
            .into_iter()
            .partition(|(s, ..)| {
                changes.removed.contains(&s.name) || changes.changed.contains(&s.name)
            });
        self.registered = keep;
        for (s, token, task) in stop {
            token.cancel();
            // A tick being recorded finishes first: the restarted schedule reads its slot.
            let _ = task.await;
            tracing::info!(schedule = %s.name, "schedule removed");
        }
        for (s, plan) in build {
            self.spawn(s, plan, cfg);
        }
        Ok(changes)
    }

    /// Stops every schedule: no tick fires after this.
    pub async fn shutdown(&mut self) {
        for (_, token, _) in &self.registered {
            token.cancel();
        }
        for (_, _, task) in self.registered.drain(..) {
            let _ = task.await;
        }
    }

    fn spawn(&mut self, s: Schedule, plan: Plan, cfg: &Arc<Config>) {
        tracing::info!(
            schedule = %s.name, cron = %s.cron, timezone = %s.timezone, kind = %s.kind,
            misfire = s.misfire.as_str(), "schedule registered"
        );
        let token = CancellationToken::new();
        let ticks = StoreTicks {
            store: self.store.clone(),
            cfg: cfg.clone(),
        };
        let task = tokio::spawn(run_schedule(
            s.clone(),
            plan,
            ticks,
            self.leader.clone(),
            Arc::new(WallClock),
            token.clone(),
        ));
        self.registered.push((s, token, task));
    }
}

fn plan_of(s: &Schedule) -> Result<Plan, BadSchedule> {
    let bad = |reason: String| BadSchedule {
        name: s.name.clone(),
        reason,
    };
    let tz: chrono_tz::Tz = s
        .timezone
        .parse()
        .map_err(|_| bad(format!("{:?} is not an IANA time zone name", s.timezone)))?;
    Plan::parse(&s.cron, tz).map_err(|e| bad(format!("{:?} {e}", s.cron)))
}

/// True when two schedules are defined alike (every field, parameters included).
fn same(a: &Schedule, b: &Schedule) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// One schedule, until `stop`: sleeps until its next slot, then, as the leader, fires what is
/// due (on-time slots, and missed ones as its misfire policy says); as a follower, counts the
/// slots up to the last evidence of another leader as dealt with.
pub async fn run_schedule<T: Ticks>(
    s: Schedule,
    plan: Plan,
    ticks: T,
    leader: Arc<dyn Leadership>,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let name = s.name.as_str();
    let grace = i64::try_from(s.misfire_grace.as_millis()).unwrap_or(i64::MAX);
    // Where this schedule left off; a schedule never fired before misses nothing before now.
    let mut done = loop {
        match ticks.last_slot(name).await {
            Ok(last) => break last.unwrap_or_else(|| clock.now_ms()),
            Err(e) => {
                tracing::error!(schedule = %name, error = %e, "cannot read the schedule's last slot; trying again");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_AFTER_STORE_ERROR) => {}
                }
            }
        }
    };
    let mut slots = plan.slots_after(done);
    loop {
        let mut wait = None;
        if leader.is_leader() {
            let now = clock.now_ms();
            let due = plan::due(&plan, &mut slots, now, grace, s.makeup_limit());
            if let Some((first, last)) = due.missed_span {
                let made_up = due.fire.iter().filter(|f| f.makeup).count();
                tracing::warn!(
                    schedule = %name, misfire = s.misfire.as_str(),
                    first = %rfc3339(first), last = %rfc3339(last),
                    made_up, not_made_up = due.dropped, not_made_up_is_a_lower_bound = due.uncounted,
                    "ticks were missed (no instance fired them in time)"
                );
                metrics::counter!("codearts_syncd_schedule_ticks_total", "schedule" => name.to_string(), "outcome" => "missed")
                    .increment(due.dropped);
            }
            let mut failed = false;
            for f in &due.fire {
                // A made-up tick is the policy's decision: it runs, after a run still active.
                match ticks.fire(&s, f.slot, f.makeup).await {
                    Ok(fired) => {
                        done = f.slot;
                        record(name, f, fired, clock.now_ms());
                    }
                    Err(e) => {
                        tracing::error!(schedule = %name, slot = %rfc3339(f.slot), error = %e, "cron tick could not be recorded; trying again");
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                // Everything after the last recorded slot is due again, under the same policy.
                slots = plan.slots_after(done);
                wait = Some(RETRY_AFTER_STORE_ERROR);
            } else if let Some(upto) = due.upto.filter(|u| *u > done) {
                // Misfires the policy left out, after the last fired slot.
                match ticks.pass(name, upto).await {
                    Ok(()) => done = upto,
                    Err(e) => {
                        tracing::error!(schedule = %name, error = %e, "cannot record the passed slots; trying again");
                        slots = plan.slots_after(done);
                        wait = Some(RETRY_AFTER_STORE_ERROR);
                    }
                }
            }
        } else {
            // Following: the slots up to the last evidence of another leader are its.
            if let Some(at) = leader.other_led_at() {
                while let Some(slot) = slots.peek().filter(|s| *s <= at) {
                    slots.next();
                    done = slot;
                }
            }
            wait = Some(FOLLOWER_WAKE);
        }
        let wait = wait.unwrap_or_else(|| match slots.peek() {
            Some(next) => Duration::from_millis((next - clock.now_ms()).max(0) as u64),
            None => Duration::from_secs(24 * 3600),
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = leader.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Logs and counts one firing; `at` is when it was recorded.
fn record(name: &str, f: &plan::Fire, fired: Fired, at: i64) {
    let slot = rfc3339(f.slot);
    let lag_ms = at - f.slot;
    let outcome = match fired {
        Fired::Queued(id) => {
            let why = if f.makeup {
                "made up (missed)"
            } else {
                "on time"
            };
            tracing::info!(schedule = %name, id, slot = %slot, lag_ms, "cron tick submitted ({why})");
            if f.makeup {
                "made_up"
            } else {
                "fired"
            }
        }
        Fired::Skipped(id) => {
            tracing::warn!(schedule = %name, id, slot = %slot, "cron tick skipped: the previous run is still active");
            "skipped"
        }
        Fired::Paused => {
            tracing::info!(schedule = %name, slot = %slot, "cron tick passed: the schedule is paused");
            "paused"
        }
        Fired::Already(id) => {
            tracing::info!(schedule = %name, id, slot = %slot, "cron tick had fired already");
            "already"
        }
    };
    if !f.makeup {
        metrics::gauge!("codearts_syncd_schedule_lag_seconds", "schedule" => name.to_string())
            .set(lag_ms as f64 / 1000.0);
    }
    metrics::counter!("codearts_syncd_schedule_ticks_total", "schedule" => name.to_string(), "outcome" => outcome)
        .increment(1);
}

#[cfg(test)]
mod tests;
