//! The server itself: unknown paths, stopping, serving on a given listener, and what it logs.

use super::*;

#[tokio::test]
async fn unknown_paths_get_a_json_404_and_are_not_recorded() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{base}/v4/nothing"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    assert!(json_of(resp).await["error_code"].is_string());
    assert!(sim.calls().is_empty());
}

#[tokio::test]
async fn shutdown_and_dropping_the_last_handle_stop_the_server() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    assert!(client
        .get(format!("{base}/__sim/health"))
        .send()
        .await
        .is_ok());
    sim.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::new();
    assert!(fresh
        .get(format!("{base}/__sim/health"))
        .send()
        .await
        .is_err());

    let (sim, base) = start(fast_config()).await;
    let other = sim.clone();
    drop(sim);
    assert!(fresh
        .get(format!("{base}/__sim/health"))
        .send()
        .await
        .is_ok());
    drop(other);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::new();
    assert!(fresh
        .get(format!("{base}/__sim/health"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn serve_runs_on_a_listener_until_its_shutdown_future_resolves() {
    let sim = Simulator::new(fast_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let sim = sim.clone();
        tokio::spawn(async move {
            sim.serve(listener, async {
                let _ = rx.await;
            })
            .await
        })
    };
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("http://{addr}/__sim/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let _ = tx.send(());
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns")
        .expect("task");
    assert!(result.is_ok());
    let fresh = reqwest::Client::new();
    assert!(fresh
        .get(format!("http://{addr}/__sim/health"))
        .send()
        .await
        .is_err());
}

/// Collects every formatted tracing event, to check what the simulator logs.
struct Capture(std::sync::Arc<std::sync::Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        span.record(&mut Fields(&mut out));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        values.record(&mut Fields(&mut out));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        event.record(&mut Fields(&mut out));
        out.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// Single-threaded so the server's tasks log through this thread's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn debug_log_names_requests_without_tokens_or_passwords() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let _guard = tracing::subscriber::set_default(Capture(log.clone()));
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    let body = json!({ "username": "bWlycm9yLWJvdA==", "password": "czNjcjN0" });
    // Another test's thread may have cached "no subscriber" for the
    // simulator's log call site just before this thread's subscriber was
    // registered; recompute it now that the subscriber is in place.
    tracing::callsite::rebuild_interest_cache();
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "1", &body)
            .await
            .status(),
        200
    );
    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(log.contains("/v4/repositories/1/remote-mirror"), "{log}");
    for secret in sim.issued_tokens() {
        assert!(!log.contains(&secret));
    }
    for secret in ["demo-password", "czNjcjN0", "s3cr3t"] {
        assert!(!log.contains(secret), "{secret} in {log}");
    }
}
