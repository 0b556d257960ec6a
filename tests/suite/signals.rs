//! Signals as production sends them to the binary: a second SIGTERM or SIGINT during the drain
//! exits at once and the next start recovers the job; SIGHUP reloads the schedules and the log
//! level, refuses a broken file and keeps the old configuration, and never ends the process.

use crate::support;

use std::time::{Duration, Instant};

use codearts_syncd::sim::{Fault, Route, SimConfig};
use codearts_syncd::store::ListFilter;
use support::{spawn_app, TestApp};

/// Rewrites the app's config file: the base with `replace` applied, then `extra` appended.
fn write_config(app: &TestApp, base: &str, replace: &[(&str, &str)], extra: &str) {
    let mut text = base.to_string();
    for (from, to) in replace {
        assert!(text.contains(from), "the base config has {from:?}");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(app.config_path(), format!("{text}\n{extra}")).unwrap();
}

/// Jobs a schedule has recorded so far.
async fn ticks(app: &TestApp, schedule: &str) -> usize {
    app.store
        .list(&ListFilter::default())
        .await
        .unwrap()
        .iter()
        .filter(|j| j.schedule.as_deref() == Some(schedule))
        .count()
}

/// Waits until a schedule has recorded at least `n` jobs.
async fn wait_ticks(app: &TestApp, schedule: &str, n: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let seen = ticks(app, schedule).await;
        if seen >= n {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "schedule {schedule} recorded {seen} jobs, expected {n} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first signal starts the drain of a job stuck in a slow call; the second exits at once
/// with `status`, leaving the job `running` as SIGKILL would; the next start re-queues it and
/// it ends final.
async fn second_signal_exits_at_once_and_the_job_is_recovered(
    first: &str,
    second: &str,
    status: i32,
) {
    let app = spawn_app().await;
    let base = std::fs::read_to_string(app.config_path()).unwrap();
    // A grace period far longer than the test: only the second signal can end the drain.
    write_config(
        &app,
        &base,
        &[("shutdown_grace = \"5s\"", "shutdown_grace = \"120s\"")],
        "",
    );
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        delay_ms: Some(60_000),
        times: 1,
        ..Fault::default()
    });
    let id = app
        .submit(
            "remote_mirror",
            serde_json::json!({"repository_id": 4, "follow": false}),
        )
        .await;
    let mut daemon = app.spawn_run("first.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.sim.count(Route::MirrorStart) == 0 {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.job(id).await.status, "running");

    daemon.signal(first);
    daemon
        .wait_log("shutdown signal received", 1, Duration::from_secs(5))
        .await;
    daemon
        .wait_log("waiting for running jobs", 1, Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(daemon.is_running(), "the drain waits for the slow job");

    let sent = Instant::now();
    daemon.signal(second);
    let exit = daemon.wait_exit(Duration::from_secs(10)).await;
    let took = sent.elapsed();
    assert_eq!(exit.code(), Some(status), "exit status {exit:?}");
    assert!(
        took < Duration::from_secs(1),
        "exited {took:?} after the second signal"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("second shutdown signal") && log.contains("re-queued at the next start"),
        "{log}"
    );
    // As after SIGKILL: the row still says running; nothing half-written.
    assert_eq!(app.job(id).await.status, "running");

    let mut daemon = app.spawn_run("second.log");
    let job = app.wait_final(id, Duration::from_secs(20)).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert!(job.jid.is_some());
    // On a shared store the new process is another instance: it takes the job back once
    // the dead one's lease has passed, not as its own start-up recovery.
    let recovered = if support::postgres() {
        "took over jobs of an instance that stopped heartbeating"
    } else {
        "re-queued jobs left running by a previous process"
    };
    daemon.wait_log(recovered, 1, Duration::from_secs(5)).await;
    let attempts = app.attempts(id).await;
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_deref()).collect();
    assert_eq!(
        outcomes,
        vec![Some("interrupted"), Some("succeeded")],
        "{attempts:?}"
    );
    daemon.signal("TERM");
    let exit = daemon.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(0), "{}", daemon.log_text());
}

#[tokio::test]
async fn a_second_sigterm_during_the_drain_exits_143_at_once_and_the_job_is_recovered() {
    second_signal_exits_at_once_and_the_job_is_recovered("TERM", "TERM", 143).await;
}

#[tokio::test]
async fn a_second_sigint_during_the_drain_exits_130_at_once_and_the_job_is_recovered() {
    second_signal_exits_at_once_and_the_job_is_recovered("INT", "INT", 130).await;
}

const YEARLY: &str = r#"
[[schedules]]
name = "yearly"
cron = "0 0 0 1 1 *"
kind = "remote_mirror"
params = { repository_id = 7, follow = false }
"#;

const GONE: &str = r#"
[[schedules]]
name = "gone"
cron = "0 0 0 1 1 *"
kind = "remote_mirror"
params = { repository_id = 8, follow = false }
"#;

const EVERY_SECOND: &str = r#"
[[schedules]]
name = "every-second"
cron = "* * * * * *"
kind = "remote_mirror"
params = { repository_id = 5, follow = false }
"#;

#[tokio::test]
async fn sighup_applies_added_changed_and_removed_schedules_and_the_log_level() {
    let app = spawn_app().await;
    let base = std::fs::read_to_string(app.config_path()).unwrap();
    write_config(&app, &base, &[], &format!("{YEARLY}{GONE}"));
    let mut daemon = app.spawn_run("daemon.log");
    daemon
        .wait_log("daemon started", 1, Duration::from_secs(20))
        .await;

    // Added, changed, removed; a new level; and a key only a restart applies.
    let yearly_changed = YEARLY.replace("0 0 0 1 1 *", "0 0 0 2 1 *");
    write_config(
        &app,
        &base,
        &[("concurrency = 8", "concurrency = 4")],
        &format!("[logging]\nlevel = \"debug\"\n{yearly_changed}{EVERY_SECOND}"),
    );
    daemon.signal("HUP");
    let line = daemon
        .wait_log("configuration reloaded", 1, Duration::from_secs(5))
        .await;
    for part in [
        "schedules_added=every-second",
        "schedules_removed=gone",
        "schedules_changed=yearly",
        "info -> debug",
    ] {
        assert!(line.contains(part), "expected {part:?} in: {line}");
    }
    let warn = daemon
        .wait_log("only after a restart", 1, Duration::from_secs(5))
        .await;
    assert!(
        warn.contains("WARN") && warn.contains("engine.concurrency"),
        "{warn}"
    );
    wait_ticks(&app, "every-second", 2, Duration::from_secs(6)).await;
    assert!(daemon.is_running());

    // Removing it again stops its ticks.
    write_config(&app, &base, &[], &format!("{YEARLY}{GONE}"));
    daemon.signal("HUP");
    let line = daemon
        .wait_log("configuration reloaded", 2, Duration::from_secs(5))
        .await;
    assert!(line.contains("schedules_removed=every-second"), "{line}");
    assert!(line.contains("debug -> info"), "{line}");
    // A tick that fired just before the removal may still be recording.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = ticks(&app, "every-second").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        ticks(&app, "every-second").await,
        before,
        "the removed schedule still fires"
    );

    daemon.signal("TERM");
    let exit = daemon.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(0));
    let log = daemon.log_text();
    // Log hygiene: not a terminal, so no colour; the scheduler's own chatter stays out of INFO.
    assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log}");
    assert!(
        !log.contains("Job creator created") && !log.contains("Uninited"),
        "{log}"
    );
}

#[tokio::test]
async fn sighup_with_a_broken_file_keeps_the_old_schedules_and_the_process() {
    let app = spawn_app().await;
    let base = std::fs::read_to_string(app.config_path()).unwrap();
    write_config(&app, &base, &[], EVERY_SECOND);
    let good = std::fs::read_to_string(app.config_path()).unwrap();
    let mut daemon = app.spawn_run("daemon.log");
    wait_ticks(&app, "every-second", 1, Duration::from_secs(20)).await;

    let upstream = app.dir.path().join("upstream-password");
    // (what the refusal names, the file's text, whether a secret file goes missing)
    let cases = [
        (
            "invalid configuration",
            "this = is not [toml".to_string(),
            false,
        ),
        (
            "logging.levl",
            format!("{good}\n[logging]\nlevl = \"debug\"\n"),
            false,
        ),
        ("credentials.upstream.password", good.clone(), true),
    ];
    for (i, (reason, text, lose_secret)) in cases.iter().enumerate() {
        std::fs::write(app.config_path(), text).unwrap();
        if *lose_secret {
            std::fs::remove_file(&upstream).unwrap();
        }
        daemon.signal("HUP");
        let line = daemon
            .wait_log(
                "configuration reload refused",
                i + 1,
                Duration::from_secs(5),
            )
            .await;
        assert!(
            line.contains("ERROR") && line.contains(reason),
            "expected {reason:?} in: {line}"
        );
        assert!(daemon.is_running(), "SIGHUP ended the process");
        // The old schedule keeps firing.
        let seen = ticks(&app, "every-second").await;
        wait_ticks(&app, "every-second", seen + 1, Duration::from_secs(4)).await;
    }

    // Mended, the same file reloads with nothing to change.
    std::fs::write(&upstream, support::UPSTREAM_PASSWORD).unwrap();
    daemon.signal("HUP");
    daemon
        .wait_log(
            "no schedule or log level changed",
            1,
            Duration::from_secs(5),
        )
        .await;
    assert!(daemon.is_running());
    daemon.signal("TERM");
    let exit = daemon.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(0), "{}", daemon.log_text());
}

#[tokio::test]
async fn a_clean_stop_with_amqp_gives_up_the_cron_leadership_without_a_warning() {
    let (app, _tag) = support::broker::amqp_app(SimConfig::default(), "").await;
    let amqp = support::broker::acfg(&app);
    let mut daemon = app.spawn_run("amqp-stop.log");
    daemon
        .wait_log(
            "this instance is now the cron leader",
            1,
            Duration::from_secs(30),
        )
        .await;
    daemon.signal("TERM");
    let exit = daemon.wait_exit(Duration::from_secs(30)).await;
    let log = daemon.log_text();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(
        log.contains("cron leadership given up: shutting down"),
        "{log}"
    );
    // An operator reads a warning or an error at a planned stop as something gone wrong (a
    // lost leadership, lapin reporting the connection it was closing).
    for line in log.lines() {
        assert!(
            !line.contains(" WARN ") && !line.contains(" ERROR "),
            "a clean stop logged: {line}\n{log}"
        );
    }
    support::broker::cleanup(&amqp).await;
}
