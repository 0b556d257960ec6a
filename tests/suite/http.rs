//! The HTTP listener: `/healthz`, `/readyz` (store, broker, draining), the access log.

use crate::support;

use std::time::{Duration, Instant};

use codearts_syncd::sim::{Fault, Route, SimConfig};
use serde_json::Value;
use support::broker::{acfg, amqp_app, cleanup, close_connections, connection_pids};
use support::{spawn_app, with_server};

async fn get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest::get(url).await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.unwrap_or_default()))
}

async fn wait_for(url: &str, want: u16, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some((status, body)) = get(url).await {
            if status == want {
                return serde_json::from_str(&body).unwrap_or(Value::String(body));
            }
        }
        assert!(Instant::now() < deadline, "{url} never answered {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_and_readiness_turns_503_while_draining() {
    let mut app = spawn_app().await;
    let base = with_server(&mut app, "");
    // A start that answers after 3 s keeps the drain going (the grace is 5 s).
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        delay_ms: Some(3000),
        times: 1,
        ..Fault::default()
    });
    let id = app
        .submit(
            "remote_mirror",
            serde_json::json!({"repository_id": 3, "follow": false}),
        )
        .await;
    let mut daemon = app.spawn_run("http.log");
    let ready = wait_for(&format!("{base}/readyz"), 200, Duration::from_secs(20)).await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["checks"]["store"], "ok");
    assert!(
        ready["checks"].get("broker").is_none(),
        "no AMQP configured"
    );
    let (status, body) = get(&format!("{base}/healthz")).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    app.wait_for(id, Duration::from_secs(10), |j| j.status == "running")
        .await;
    daemon.signal("TERM");
    let draining = wait_for(&format!("{base}/readyz"), 503, Duration::from_secs(5)).await;
    assert_eq!(draining["failing"][0]["check"], "draining", "{draining}");
    let status = daemon.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    assert_eq!(
        app.job(id).await.status,
        "succeeded",
        "the drain let it finish"
    );
    assert!(
        get(&format!("{base}/healthz")).await.is_none(),
        "the listener stopped"
    );
    // The access log names the route and status, never a body.
    let log = daemon.log_text();
    assert!(
        log.lines().any(|l| l.contains("http request")
            && l.contains("route=/readyz")
            && l.contains("status=503")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_broker_connection() {
    let (mut app, tag) = amqp_app(SimConfig::default(), "").await;
    let base = with_server(&mut app, "");
    let cfg = acfg(&app);
    app.start();
    let ready = wait_for(&format!("{base}/readyz"), 200, Duration::from_secs(30)).await;
    assert_eq!(ready["checks"]["broker"], "ok", "{ready}");
    let name = format!("codearts-syncd-test-{tag}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while connection_pids(&name).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the daemon's connection never showed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    close_connections(&name);
    let down = wait_for(&format!("{base}/readyz"), 503, Duration::from_secs(10)).await;
    assert_eq!(down["failing"][0]["check"], "broker", "{down}");
    let back = wait_for(&format!("{base}/readyz"), 200, Duration::from_secs(30)).await;
    assert_eq!(back["checks"]["broker"], "ok");
    app.stop().await;
    cleanup(&cfg).await;
}
