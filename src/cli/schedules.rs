//! `schedules list|run|pause|resume`: the configured schedules with what the store knows of
//! them (last slot and its outcome, paused or not), and the controls. The operator API serves
//! the same views and controls.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::render::render_table;
use super::{EXIT_FAILURE, EXIT_INVALID};
use crate::config::{show_duration, Config, Schedule};
use crate::ingress::cron::Plan;
use crate::ingress::{self, Submission, Submitted};
use crate::store::{ScheduleState, Store};
use crate::{now_ms, rfc3339, Source};

#[derive(Subcommand, Debug)]
pub enum SchedulesCommand {
    /// The schedules: cron, zone, next three fire times, last slot and its outcome, paused or
    /// not, misfire policy.
    List(ListArgs),
    /// Fire a schedule once now (recorded with source `cli`, the schedule's name and no slot;
    /// skipped while its previous run is still active). The daemon using this store runs it.
    Run(NameArgs),
    /// Pause a schedule: its ticks are recorded as passed, with no job, until it is resumed
    /// (missed ticks are not made up on resume). Persisted in the store.
    Pause(NameArgs),
    /// Resume a paused schedule from its next tick.
    Resume(NameArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    /// The schedule's name, as in the configuration's [[schedules]].
    pub name: String,
}

/// One schedule as shown.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduleView {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub kind: String,
    pub misfire: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_catch_up: Option<u32>,
    pub misfire_grace: String,
    /// The next three fire times.
    pub next: Vec<String>,
    pub last_slot: Option<String>,
    pub last_job: Option<i64>,
    /// The status of the last slot's job.
    pub last_outcome: Option<String>,
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<String>,
}

/// Every configured schedule with its state in `store`.
pub async fn views(cfg: &Config, store: &Store) -> Result<Vec<ScheduleView>, crate::store::Error> {
    let states = store.schedule_states().await?;
    let now = now_ms();
    Ok(cfg
        .schedules
        .iter()
        .map(|s| {
            let state = states.iter().find(|st| st.name == s.name);
            view(s, state, now)
        })
        .collect())
}

fn view(s: &Schedule, state: Option<&ScheduleState>, now: i64) -> ScheduleView {
    let next = s
        .timezone
        .parse()
        .ok()
        .and_then(|tz| Plan::parse(&s.cron, tz).ok())
        .map(|p| p.next(now, 3).into_iter().map(rfc3339).collect())
        .unwrap_or_default();
    ScheduleView {
        name: s.name.clone(),
        cron: s.cron.clone(),
        timezone: s.timezone.clone(),
        kind: s.kind.clone(),
        misfire: s.misfire.as_str().to_string(),
        max_catch_up: s.max_catch_up,
        misfire_grace: show_duration(s.misfire_grace),
        next,
        last_slot: state.and_then(|st| st.last_slot).map(rfc3339),
        last_job: state.and_then(|st| st.last_job.as_ref().map(|(id, _)| *id)),
        last_outcome: state.and_then(|st| st.last_job.as_ref().map(|(_, s)| s.clone())),
        paused: state.is_some_and(|st| st.paused),
        paused_by: state
            .filter(|st| st.paused)
            .and_then(|st| st.paused_by.clone()),
        paused_at: state
            .filter(|st| st.paused)
            .and_then(|st| st.paused_at)
            .map(rfc3339),
    }
}

/// The configured schedule called `name`, or an error naming the configured ones.
pub fn find<'a>(cfg: &'a Config, name: &str) -> Result<&'a Schedule, String> {
    cfg.schedules
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = cfg.schedules.iter().map(|s| s.name.as_str()).collect();
            if known.is_empty() {
                format!("no schedule {name:?}: the configuration has no [[schedules]]")
            } else {
                format!("no schedule {name:?} (configured: {})", known.join(", "))
            }
        })
}

/// Fires `s` once, by hand, from `source`.
pub async fn fire_now(
    cfg: &Config,
    store: &Store,
    s: &Schedule,
    source: Source,
) -> Result<Submitted, crate::store::Error> {
    ingress::submit(
        store,
        cfg,
        Submission {
            kind: s.kind.clone(),
            params: s.params.clone(),
            source,
            key: None,
            schedule: Some(s.name.clone()),
        },
    )
    .await
}

/// Who is at the terminal, for `paused_by`.
fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

pub(super) async fn run(cfg: &Config, command: SchedulesCommand) -> anyhow::Result<u8> {
    match command {
        SchedulesCommand::List(args) => {
            let store = Store::open_existing(&cfg.store).await?;
            let views = views(cfg, &store).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else if views.is_empty() {
                println!("no schedules configured");
            } else {
                print!("{}", table(&views));
            }
            Ok(0)
        }
        SchedulesCommand::Run(args) => {
            let s = match find(cfg, &args.name) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(EXIT_INVALID);
                }
            };
            let store = Store::open(&cfg.store).await?;
            let outcome = fire_now(cfg, &store, s, Source::Cli).await?;
            store.close().await;
            Ok(match outcome {
                Submitted::Queued(id) => {
                    println!("schedule {} fired by hand: queued job {id}", s.name);
                    0
                }
                Submitted::Skipped(id) => {
                    println!(
                        "schedule {} not fired: its previous run is still active (recorded as skipped job {id})",
                        s.name
                    );
                    EXIT_FAILURE
                }
                Submitted::Rejected { id, reason } => {
                    eprintln!("error: rejected: {reason} (recorded as job {id})");
                    EXIT_INVALID
                }
                Submitted::Duplicate(id) | Submitted::Coalesced(id) => {
                    println!("schedule {} fired by hand: job {id}", s.name);
                    0
                }
            })
        }
        SchedulesCommand::Pause(args) => pause(cfg, &args.name, true).await,
        SchedulesCommand::Resume(args) => pause(cfg, &args.name, false).await,
    }
}

async fn pause(cfg: &Config, name: &str, paused: bool) -> anyhow::Result<u8> {
    if let Err(e) = find(cfg, name) {
        eprintln!("error: {e}");
        return Ok(EXIT_INVALID);
    }
    let store = Store::open(&cfg.store).await?;
    let changed = store.set_paused(name, paused, &who()).await?;
    store.close().await;
    let state = if paused { "paused" } else { "resumed" };
    if changed {
        println!("schedule {name} {state}");
    } else {
        println!(
            "schedule {name} was already {}",
            if paused { "paused" } else { "running" }
        );
    }
    Ok(0)
}

/// The schedules as a table.
pub fn table(views: &[ScheduleView]) -> String {
    let rows: Vec<[String; 7]> = views
        .iter()
        .map(|v| {
            let misfire = match v.max_catch_up {
                Some(n) => format!("{} (max {n}), grace {}", v.misfire, v.misfire_grace),
                None => format!("{}, grace {}", v.misfire, v.misfire_grace),
            };
            let last = match (&v.last_slot, v.last_job, &v.last_outcome) {
                (Some(slot), Some(id), Some(outcome)) => format!("{slot} job {id} {outcome}"),
                (Some(slot), _, _) => format!("{slot} (no job)"),
                _ => "-".into(),
            };
            [
                v.name.clone(),
                format!("{} {}", v.cron, v.timezone),
                v.kind.clone(),
                if v.paused {
                    "paused".into()
                } else {
                    "active".into()
                },
                v.next.join(", "),
                last,
                misfire,
            ]
        })
        .collect();
    render_table(
        &[
            "NAME",
            "CRON",
            "KIND",
            "STATE",
            "NEXT",
            "LAST SLOT",
            "MISFIRE",
        ],
        &rows,
    )
}
