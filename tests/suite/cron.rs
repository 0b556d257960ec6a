//! Cron ingress: schedules fire and record; an overlapping tick is recorded `skipped`.

use crate::support;

use std::time::Duration;

use codearts_syncd::sim::{RepoBehaviour, SimConfig};
use codearts_syncd::store::ListFilter;
use support::spawn_app_with;

#[tokio::test]
async fn cron_fires_and_an_overlapping_tick_is_skipped() {
    let extra = r#"
[[schedules]]
name = "mirror-every-second"
cron = "* * * * * *"
timezone = "Europe/Berlin"
kind = "remote_mirror"
params = { repository_id = 40 }
"#;
    let mut app = spawn_app_with(
        SimConfig {
            sync_duration: Duration::from_millis(200),
            ..SimConfig::default()
        },
        extra,
    )
    .await;
    // Each sync takes 2.5 s, so ticks in between find the previous run still following.
    app.sim.set_repo(
        40,
        RepoBehaviour {
            sync_duration: Some(Duration::from_millis(2500)),
            ..Default::default()
        },
    );
    app.start();
    tokio::time::sleep(Duration::from_millis(5500)).await;
    app.stop().await;

    let jobs = app
        .store
        .list(&ListFilter {
            kind: None,
            status: None,
            limit: 0,
        })
        .await
        .unwrap();
    assert!(jobs.iter().all(|j| j.source == "cron"));
    assert!(jobs
        .iter()
        .all(|j| j.schedule.as_deref() == Some("mirror-every-second")));
    let ran: Vec<_> = jobs.iter().filter(|j| j.status != "skipped").collect();
    let skipped: Vec<_> = jobs.iter().filter(|j| j.status == "skipped").collect();
    assert!(!ran.is_empty(), "the schedule fired: {jobs:?}");
    assert!(
        skipped.len() >= 2,
        "overlapping ticks were skipped: {jobs:?}"
    );
    // Never two active runs of one schedule: each run took 2.5 s, so at most three in 5.5 s.
    assert!(ran.len() <= 3, "{ran:?}");
    for pair in ran.windows(2) {
        // Newest first: the later run was created after the earlier one had finished.
        let (later, earlier) = (pair[0], pair[1]);
        if let Some(done) = earlier.finished_at {
            assert!(
                later.created_at >= done,
                "overlapping runs: {earlier:?} {later:?}"
            );
        }
    }
    assert!(skipped.iter().all(|j| j
        .error_msg
        .as_deref()
        .unwrap_or("")
        .contains("still active")));
    let starts = app.sim.mirror_starts(40);
    assert!(
        starts >= 1 && starts <= ran.len(),
        "{starts} starts for {} runs",
        ran.len()
    );
}

#[tokio::test]
async fn a_bad_cron_expression_or_zone_is_named() {
    let app = spawn_app_with(SimConfig::default(), "").await;
    let base = std::fs::read_to_string(app.config_path()).unwrap();
    for (schedule, key) in [
        (
            "[[schedules]]\nname = \"n\"\ncron = \"61 * * * * *\"\nkind = \"remote_mirror\"\nparams = { repository_id = 1 }\n",
            "schedules.n.cron",
        ),
        (
            "[[schedules]]\nname = \"n\"\ncron = \"0 * * * * *\"\ntimezone = \"Mars/Olympus\"\nkind = \"remote_mirror\"\nparams = { repository_id = 1 }\n",
            "schedules.n.timezone",
        ),
        (
            "[[schedules]]\nname = \"n\"\ncron = \"0 * * * * *\"\nkind = \"remote_mirror\"\nparams = { repository_id = \"x\" }\n",
            "schedules.n.params",
        ),
    ] {
        let text = format!("{base}\n{schedule}");
        let err = codearts_syncd::config::Config::from_toml_str(&text, app.dir.path())
            .and_then(|c| codearts_syncd::daemon::checks::check_values(&c))
            .unwrap_err();
        assert!(err.to_string().contains(key), "expected {key} in: {err}");
    }
}
