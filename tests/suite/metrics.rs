//! `GET /metrics`: the Prometheus exposition, read with a real text-format parser after a few
//! jobs have run in a daemon of its own (a separate process, so the counters are this test's).

use crate::support;

use std::time::{Duration, Instant};

use codearts_syncd::sim::{Fault, Route, SimConfig};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;
use support::broker::{acfg, all_jobs, amqp_app, cleanup, job_msg, publish_raw};
use support::{spawn_app, with_server};

const WAIT: Duration = Duration::from_secs(20);

/// Scrapes `/metrics` (waiting for the listener) and parses the exposition.
async fn scrape(base: &str) -> (String, Scrape) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(resp) = reqwest::get(format!("{base}/metrics")).await {
            assert_eq!(resp.status().as_u16(), 200);
            let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
            assert!(ctype.starts_with("text/plain"), "{ctype}");
            let text = resp.text().await.unwrap();
            let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
            return (text, parsed);
        }
        assert!(Instant::now() < deadline, "/metrics never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sample named `name` whose labels include every pair of `labels`.
fn find<'a>(s: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
}

/// A counter's value; 0 when it has not been recorded.
fn counter(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, name, labels).map(|x| &x.value) {
        Some(Value::Counter(v)) => *v,
        None => 0.0,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

fn gauge(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, name, labels).map(|x| &x.value) {
        Some(Value::Gauge(v)) => *v,
        other => panic!("{name} {labels:?} is not a gauge: {other:?}"),
    }
}

/// The number of observations in a histogram (its `+Inf` bucket).
fn observations(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, name, labels).map(|x| &x.value) {
        Some(Value::Histogram(buckets)) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map_or(0.0, |b| b.count),
        None => 0.0,
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_finished_jobs_attempts_retries_and_api_calls() {
    let mut app = spawn_app().await;
    let base = with_server(&mut app, "");
    let mut daemon = app.spawn_run("metrics.log");
    let (_, before) = scrape(&base).await;
    let kind = [("kind", "remote_mirror")];
    assert_eq!(
        counter(&before, "codearts_syncd_jobs_finished_total", &kind),
        0.0
    );
    assert_eq!(
        gauge(
            &before,
            "codearts_syncd_jobs_queued",
            &[("kind", "audit_mirror")]
        ),
        0.0,
        "every kind has its gauges, even with no jobs"
    );

    // One job fails at once (404); one retries once after a 500, then follows and succeeds.
    let missing = app
        .submit("remote_mirror", json!({"repository_id": 999_999}))
        .await;
    assert_eq!(app.wait_final(missing, WAIT).await.status, "failed");
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(5),
        status: Some(500),
        times: 1,
        ..Fault::default()
    });
    let retried = app
        .submit("remote_mirror", json!({"repository_id": 5}))
        .await;
    assert_eq!(app.wait_final(retried, WAIT).await.status, "succeeded");

    let (text, after) = scrape(&base).await;
    let finished = |status| {
        counter(
            &after,
            "codearts_syncd_jobs_finished_total",
            &[("kind", "remote_mirror"), ("status", status)],
        )
    };
    assert_eq!(finished("succeeded"), 1.0, "{text}");
    assert_eq!(finished("failed"), 1.0, "{text}");
    let attempts = |outcome| {
        counter(
            &after,
            "codearts_syncd_attempts_total",
            &[("kind", "remote_mirror"), ("outcome", outcome)],
        )
    };
    // Polls are not attempts: the follow that ends in success counts once, as `following`.
    assert_eq!(attempts("failed"), 1.0, "{text}");
    assert_eq!(attempts("retry"), 1.0, "{text}");
    assert_eq!(attempts("following"), 1.0, "{text}");
    assert_eq!(attempts("succeeded"), 0.0, "{text}");
    assert_eq!(
        counter(&after, "codearts_syncd_retries_total", &kind),
        1.0,
        "{text}"
    );

    // The API calls, by route template: the repository id is not a label value.
    let route = "/v4/repositories/:id/remote-mirror";
    let call = |status| {
        observations(
            &after,
            "codearts_syncd_api_request_duration_seconds",
            &[("service", "repo"), ("route", route), ("status", status)],
        )
    };
    assert_eq!(call("404"), 1.0, "{text}");
    assert_eq!(call("500"), 1.0, "{text}");
    assert!(call("200") >= 2.0, "a start and at least one poll: {text}");
    assert!(!text.contains("/999999"), "no id in a label: {text}");
    assert!(
        observations(
            &after,
            "codearts_syncd_api_request_duration_seconds",
            &[("service", "iam"), ("route", "/v3/auth/tokens")],
        ) >= 1.0,
        "{text}"
    );
    assert!(counter(&after, "codearts_syncd_token_refreshes_total", &[]) >= 1.0);
    assert!(
        observations(&after, "codearts_syncd_store_commit_duration_seconds", &[]) >= 3.0,
        "{text}"
    );

    // The queue gauges are read at scrape time: nothing is left waiting.
    assert_eq!(
        gauge(&after, "codearts_syncd_jobs_queued", &kind),
        0.0,
        "{text}"
    );
    assert_eq!(gauge(&after, "codearts_syncd_jobs_following", &kind), 0.0);
    assert_eq!(
        gauge(&after, "codearts_syncd_oldest_due_age_seconds", &kind),
        0.0
    );

    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_gauges_show_waiting_jobs() {
    let mut app = spawn_app().await;
    let base = with_server(&mut app, "");
    // One snapshot at a time, each held up by a slow storage call: the others wait, due.
    let mut text = std::fs::read_to_string(app.config_path()).unwrap();
    text.push_str("\n[engine.per_kind]\nstorage_snapshot = 1\n");
    std::fs::write(app.config_path(), &text).unwrap();
    app.sim.inject(Fault {
        route: Route::Storage,
        delay_ms: Some(4000),
        times: 0,
        ..Fault::default()
    });
    for _ in 0..3 {
        app.submit("storage_snapshot", json!({})).await;
    }
    let _daemon = app.spawn_run("gauges.log");
    let kind = [("kind", "storage_snapshot")];
    let deadline = Instant::now() + WAIT;
    let (text, s) = loop {
        let (text, s) = scrape(&base).await;
        if gauge(&s, "codearts_syncd_jobs_running", &kind) == 1.0 {
            break (text, s);
        }
        assert!(Instant::now() < deadline, "no snapshot ever ran: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        gauge(&s, "codearts_syncd_jobs_queued", &kind),
        2.0,
        "{text}"
    );
    assert!(
        gauge(&s, "codearts_syncd_oldest_due_age_seconds", &kind) > 0.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_deliveries_are_counted_by_outcome() {
    let (mut app, _tag) = amqp_app(SimConfig::default(), "").await;
    let base = with_server(&mut app, "");
    let cfg = acfg(&app);
    // A job, the same job again (its key makes it a duplicate), and a body that is not JSON.
    publish_raw(
        &cfg,
        &[
            (job_msg(7, Some("metrics-k1")), None),
            (job_msg(7, Some("metrics-k1")), None),
            (b"not json".to_vec(), None),
        ],
    )
    .await;
    let daemon = app.spawn_run("amqp.log");
    let deadline = Instant::now() + WAIT;
    let outcome =
        |s: &Scrape, o| counter(s, "codearts_syncd_amqp_deliveries_total", &[("outcome", o)]);
    let (text, s) = loop {
        let (text, s) = scrape(&base).await;
        let total: f64 = ["stored", "duplicate", "rejected", "requeued"]
            .iter()
            .map(|o| outcome(&s, o))
            .sum();
        if total >= 3.0 {
            break (text, s);
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never counted: {text}\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(outcome(&s, "stored"), 1.0, "{text}");
    assert_eq!(outcome(&s, "duplicate"), 1.0, "{text}");
    assert_eq!(outcome(&s, "rejected"), 1.0, "{text}");
    assert_eq!(outcome(&s, "requeued"), 0.0, "{text}");
    assert_eq!(gauge(&s, "codearts_syncd_amqp_connected", &[]), 1.0);
    assert_eq!(
        all_jobs(&app.store).await.len(),
        2,
        "a job and a rejected row"
    );
    drop(daemon);
    cleanup(&cfg).await;
}
