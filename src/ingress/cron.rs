//! Cron ingress: the schedules from the config, fired by tokio-cron-scheduler in their time
//! zones. Each tick calls [`super::submit`]; a tick whose previous run of the same schedule is
//! still queued, running or following is recorded as `skipped`, never stacked.

use std::sync::Arc;

use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use super::amqp::Leader;
use super::{submit, Submission, Submitted};
use crate::config::Config;
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

/// Starts the configured schedules; shut the returned scheduler down on exit.
/// Ticks fire on every instance, but only the cron leader submits (see [`Leader`]).
pub async fn start(
    store: Store,
    cfg: Arc<Config>,
    leader: Leader,
) -> Result<JobScheduler, JobSchedulerError> {
    let sched = JobScheduler::new().await?;
    for s in cfg.schedules.clone() {
        let tz: chrono_tz::Tz = s.timezone.parse().unwrap_or(chrono_tz::UTC);
        let store = store.clone();
        let cfg = cfg.clone();
        let schedule = s.clone();
        let leader = leader.clone();
        let job = Job::new_async_tz(s.cron.as_str(), tz, move |_id, _sched| {
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
        })?;
        sched.add(job).await?;
        tracing::info!(schedule = %s.name, cron = %s.cron, timezone = %s.timezone, kind = %s.kind, "schedule registered");
    }
    sched.start().await?;
    Ok(sched)
}
