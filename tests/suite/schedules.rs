//! Schedules an operator can trust, on a real store (and a real broker for the trickle): slots
//! that fire once across restarts, the misfire policy after downtime, pause/resume/run, and one
//! sync per repository whatever the arrival pattern.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use codearts_syncd::sim::{RepoBehaviour, SimConfig};
use codearts_syncd::store::JobRow;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::BasicProperties;
use serde_json::json;
use support::broker::{acfg, all_jobs, amqp_app, cleanup, connection};
use support::{spawn_app_with, text};

async fn jobs(app: &support::TestApp) -> Vec<JobRow> {
    all_jobs(&app.store).await
}

fn sim() -> SimConfig {
    SimConfig {
        sync_duration: Duration::from_millis(50),
        ..SimConfig::default()
    }
}

/// Slots of `schedule`'s jobs that have one, sorted.
fn slots(jobs: &[JobRow], schedule: &str) -> Vec<i64> {
    let mut s: Vec<i64> = jobs
        .iter()
        .filter(|j| j.schedule.as_deref() == Some(schedule))
        .filter_map(|j| j.slot)
        .collect();
    s.sort();
    s
}

#[tokio::test]
async fn restarting_twice_within_a_second_fires_no_slot_twice_and_loses_none() {
    let extra = r#"
[[schedules]]
name = "every-second"
cron = "* * * * * *"
kind = "storage_snapshot"
"#;
    let mut app = spawn_app_with(sim(), extra).await;
    app.start();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    for _ in 0..2 {
        app.stop().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        app.start();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.stop().await;
    let all = jobs(&app).await;
    let got = slots(&all, "every-second");
    let distinct: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(distinct.len(), got.len(), "a slot fired twice: {got:?}");
    assert!(got.len() >= 4, "{got:?}");
    for pair in got.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "a slot was lost: {got:?}");
    }
    for j in &all {
        assert_eq!(j.source, "cron");
        let slot = j.slot.expect("every tick has its slot");
        assert_eq!(
            slot % 1000,
            0,
            "a slot is the scheduled instant, not when it was seen"
        );
        assert!(j.created_at >= slot);
    }
}

#[tokio::test]
async fn after_downtime_each_schedule_makes_up_what_its_policy_says() {
    let mut extra = String::new();
    for (name, policy) in [
        ("skip", "misfire = \"skip\""),
        ("once", "misfire = \"run_once\""),
        ("catch", "misfire = \"catch_up\"\nmax_catch_up = 5"),
    ] {
        extra.push_str(&format!(
            "[[schedules]]\nname = \"{name}\"\ncron = \"*/2 * * * * *\"\nkind = \"storage_snapshot\"\nmisfire_grace = \"500ms\"\n{policy}\n\n"
        ));
    }
    let mut app = spawn_app_with(sim(), &extra).await;
    app.start();
    tokio::time::sleep(Duration::from_millis(4200)).await;
    app.stop().await;
    let before = jobs(&app).await;
    // Down for 5 s: two or three ticks come due and are found more than 500 ms late.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restart = codearts_syncd::now_ms();
    app.start();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    app.stop().await;
    let after = jobs(&app).await;
    for name in ["skip", "once", "catch"] {
        let last_before = *slots(&before, name).last().expect("fired before the stop");
        // Every */2 slot after the last one fired that was already late at the restart.
        let missed: Vec<i64> = (1..)
            .map(|i| last_before + 2000 * i)
            .take_while(|s| *s < restart - 500)
            .collect();
        assert!(missed.len() >= 2, "{name}: {missed:?}");
        // Made up means run: a made-up tick recorded `skipped` does not count.
        let ran: Vec<JobRow> = after
            .iter()
            .filter(|j| j.status != "skipped")
            .cloned()
            .collect();
        let fired = slots(&ran, name);
        let made_up: Vec<i64> = fired
            .iter()
            .copied()
            .filter(|s| *s > last_before && *s < restart - 500)
            .collect();
        let expected: Vec<i64> = match name {
            "skip" => vec![],
            "once" => vec![*missed.last().unwrap()],
            _ => missed.clone(),
        };
        assert_eq!(
            made_up, expected,
            "{name}: missed {missed:?}, fired {fired:?}"
        );
    }
}

// Several threads: the CLI runs as a child process the test waits for (blocking its thread),
// while the daemon in this process must go on committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_run_by_hand() {
    let extra = r#"
[[schedules]]
name = "snap"
cron = "* * * * * *"
timezone = "Europe/Berlin"
kind = "storage_snapshot"
misfire = "catch_up"
max_catch_up = 3
"#;
    let mut app = spawn_app_with(sim(), extra).await;
    let out = app.cli(&["schedules", "pause", "snap"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.contains("schedule snap paused"),
        "{:?}",
        text(&out)
    );
    let again = app.cli(&["schedules", "pause", "snap"]);
    assert!(
        text(&again).0.contains("already paused"),
        "{:?}",
        text(&again)
    );
    app.start();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        slots(&jobs(&app).await, "snap").is_empty(),
        "a paused schedule queues nothing"
    );
    let list = app.cli(&["schedules", "list", "--json"]);
    let views: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let v = &views[0];
    assert_eq!(v["name"], "snap");
    assert_eq!(v["paused"], true);
    assert_eq!(v["misfire"], "catch_up");
    assert_eq!(v["max_catch_up"], 3);
    assert_eq!(v["next"].as_array().unwrap().len(), 3);
    assert!(v["last_slot"].is_string(), "paused ticks still pass: {v}");
    assert!(v["paused_by"].as_str().unwrap().starts_with("cli:"));

    let out = app.cli(&["schedules", "run", "snap"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let by_hand: Vec<JobRow> = jobs(&app)
        .await
        .into_iter()
        .filter(|j| j.schedule.as_deref() == Some("snap"))
        .collect();
    assert_eq!(by_hand.len(), 1, "{by_hand:?}");
    assert_eq!(by_hand[0].source, "cli");
    assert_eq!(by_hand[0].slot, None);

    let out = app.cli(&["schedules", "resume", "snap"]);
    assert!(out.status.success(), "{:?}", text(&out));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.stop().await;
    let fired = slots(&jobs(&app).await, "snap");
    assert!(!fired.is_empty(), "resumed");
    assert!(
        fired.len() <= 3,
        "the ticks passed while paused are not made up on resume: {fired:?}"
    );
    let table = text(&app.cli(&["schedules", "list"])).0;
    assert!(
        table.contains("snap") && table.contains("Europe/Berlin") && table.contains("active"),
        "{table}"
    );

    let unknown = app.cli(&["schedules", "pause", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown)
            .1
            .contains("no schedule \"nope\" (configured: snap)"),
        "{:?}",
        text(&unknown)
    );
}

/// 150 requests for one repository, in three bursts over ~9 s with 0-20 ms between messages,
/// while each sync takes 4 s: at most ⌈9 / 4⌉ + 1 = 4 syncs, never two at once.
#[tokio::test]
async fn a_trickle_for_one_repository_costs_few_syncs_and_they_never_overlap() {
    let (mut app, _tag) = amqp_app(sim(), "").await;
    app.sim.set_repo(
        77,
        RepoBehaviour {
            sync_duration: Some(Duration::from_secs(4)),
            ..Default::default()
        },
    );
    let cfg = acfg(&app);
    app.start();
    // Watch the job table: never two of the repository's jobs running or following.
    let store = app.store.clone();
    let stop_watch = tokio_util::sync::CancellationToken::new();
    let watch = {
        let stop = stop_watch.clone();
        tokio::spawn(async move {
            let mut samples = 0u32;
            let mut worst = 0usize;
            while !stop.is_cancelled() {
                let all = all_jobs(&store).await;
                let active = all
                    .iter()
                    .filter(|j| j.status == "running" || j.status == "following")
                    .count();
                worst = worst.max(active);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (samples, worst)
        })
    };
    let conn = connection().await;
    let ch = conn.create_channel().await.unwrap();
    codearts_syncd::ingress::amqp::declare_topology(&ch, &cfg)
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let body = json!({"kind": "remote_mirror", "params": {"repository_id": 77}}).to_string();
    let started = std::time::Instant::now();
    let mut rng = 7u64;
    for burst in 0..3 {
        for _ in 0..50 {
            ch.basic_publish(
                cfg.exchange.as_str().into(),
                cfg.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type(ShortString::from("application/json")),
            )
            .await
            .unwrap()
            .await
            .unwrap();
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            tokio::time::sleep(Duration::from_millis((rng >> 33) % 21)).await;
        }
        if burst < 2 {
            tokio::time::sleep(Duration::from_millis(3000)).await;
        }
    }
    let spread = started.elapsed();
    // Every request recorded, then every job final.
    support::broker::wait_until(Duration::from_secs(60), "all jobs final", || {
        let store = app.store.clone();
        async move {
            let all = all_jobs(&store).await;
            let mut served = 0;
            for j in &all {
                served += store.requests_of(j.id).await.unwrap().len();
            }
            served == 150 && all.iter().all(|j| j.status().is_some_and(|s| s.is_final()))
        }
    })
    .await;
    stop_watch.cancel();
    let (samples, worst) = watch.await.unwrap();
    app.stop().await;
    let all = jobs(&app).await;
    let starts = app.sim.mirror_starts(77);
    assert!(samples > 100, "the table was watched ({samples} samples)");
    assert_eq!(worst, 1, "two syncs of one repository were active at once");
    assert!(
        starts <= 4,
        "{starts} syncs for 150 requests over {spread:?} (jobs: {})",
        all.len()
    );
    assert!(all.iter().all(|j| j.status == "succeeded"), "{all:?}");
    assert_eq!(starts, all.len(), "one sync per job");
    // Each job ran after the previous one had ended.
    let mut by_start: Vec<&JobRow> = all.iter().collect();
    by_start.sort_by_key(|j| j.started_at);
    for pair in by_start.windows(2) {
        assert!(
            pair[1].started_at >= pair[0].finished_at,
            "overlap: {:?} / {:?}",
            pair[0],
            pair[1]
        );
    }
    cleanup(&cfg).await;
}
