//! `GET /metrics`: the Prometheus text exposition of the process's metrics. The counters and
//! histograms are recorded where things happen (the engine, the client, the store, the AMQP
//! consumer) through the `metrics` facade; this module installs the recorder they go to, once per
//! process, and renders it. The queue gauges and each schedule's last success are read from the
//! store at scrape time, so a scrape costs two small queries and nothing on the job path. It is
//! not an HTTP server of its own: the route sits on the one listener (`[server]`).

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::jobs::JobKind;
use crate::now_ms;
use crate::store::Store;

/// Bucket bounds, in seconds, for every `*_seconds` histogram: from a fast local commit to a
/// slow cloud call.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often histograms are folded in when nobody scrapes, so memory stays bounded.
const UPKEEP_EVERY: Duration = Duration::from_secs(10);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder handle, installing the recorder on first use. A second call (or a
/// recorder another part of the process installed first) keeps what is there.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows this one's");
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let h = handle.clone();
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(UPKEEP_EVERY).await;
                    h.run_upkeep();
                }
            });
        }
        handle
    })
}

/// The `/metrics` route, for a router of any state; installs the recorder.
pub fn router<S: Clone + Send + Sync + 'static>(store: Store) -> Router<S> {
    handle();
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(store)
}

async fn scrape(State(store): State<Store>) -> Response {
    match store.queue_stats(now_ms()).await {
        Ok(stats) => {
            for kind in JobKind::ALL {
                let k = kind.as_str();
                let s = stats.iter().find(|s| s.kind == k);
                let (queued, due_age, following, running) = s.map_or((0, 0.0, 0, 0), |s| {
                    (
                        s.queued,
                        s.oldest_due_age_ms as f64 / 1000.0,
                        s.following,
                        s.running,
                    )
                });
                metrics::gauge!("codearts_syncd_jobs_queued", "kind" => k).set(queued as f64);
                metrics::gauge!("codearts_syncd_oldest_due_age_seconds", "kind" => k).set(due_age);
                metrics::gauge!("codearts_syncd_jobs_following", "kind" => k).set(following as f64);
                metrics::gauge!("codearts_syncd_jobs_running", "kind" => k).set(running as f64);
            }
        }
        // The counters still render; the gauges keep their last values.
        Err(e) => tracing::warn!(error = %e, "cannot read the queue for /metrics"),
    }
    match store.last_success_by_schedule().await {
        Ok(done) => {
            for (schedule, at) in done {
                metrics::gauge!("codearts_syncd_schedule_last_success_timestamp_seconds", "schedule" => schedule)
                    .set(at as f64 / 1000.0);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the schedules' last successes for /metrics")
        }
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle().render(),
    )
        .into_response()
}
