//! The real RabbitMQ on 127.0.0.1:5672 (guest/guest) for tests: each test declares its own
//! exchange and queues (unique names) and deletes them at the end.

use std::time::{Duration, Instant};

use codearts_syncd::config::AmqpConfig;
use codearts_syncd::sim::SimConfig;
use codearts_syncd::store::{JobRow, ListFilter, Store};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;

use super::{spawn_app_with, TestApp};

/// TOML for this test's own topology.
pub fn amqp_toml(tag: &str) -> String {
    format!(
        r#"
[amqp]
url = "amqp://127.0.0.1:5672/%2f"
exchange = "t-{tag}-ex"
queue = "t-{tag}-q"
dead_letter_exchange = "t-{tag}-dlx"
dead_letter_queue = "t-{tag}-dead"
leader_queue = "t-{tag}-leader"
connection_name = "codearts-syncd-test-{tag}"
prefetch = 200
max_message_bytes = 4096
reconnect_initial = "100ms"
reconnect_max = "1s"
"#
    )
}

pub fn unique_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

pub async fn amqp_app(sim: SimConfig, extra: &str) -> (TestApp, String) {
    let tag = unique_tag();
    let app = spawn_app_with(sim, &format!("{}\n{extra}", amqp_toml(&tag))).await;
    (app, tag)
}

pub fn acfg(app: &TestApp) -> AmqpConfig {
    app.cfg.amqp.clone().expect("amqp configured")
}

pub async fn connection() -> Connection {
    Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ answers on 127.0.0.1:5672")
}

/// Publishes raw bodies (with an optional message id each) with confirms; declares the
/// topology first so nothing is unroutable before the daemon starts.
pub async fn publish_raw(cfg: &AmqpConfig, messages: &[(Vec<u8>, Option<String>)]) {
    let conn = connection().await;
    let ch = conn.create_channel().await.unwrap();
    codearts_syncd::ingress::amqp::declare_topology(&ch, cfg)
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut confirms = Vec::new();
    for (body, id) in messages {
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"));
        if let Some(id) = id {
            props = props.with_message_id(ShortString::from(id.as_str()));
        }
        confirms.push(
            ch.basic_publish(
                cfg.exchange.as_str().into(),
                cfg.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .unwrap(),
        );
    }
    for c in confirms {
        assert!(c.await.unwrap().is_ack());
    }
    let _ = conn.close(200, "done".into()).await;
}

pub fn job_msg(repo: u32, key: Option<&str>) -> Vec<u8> {
    json!({"kind": "remote_mirror", "params": {"repository_id": repo, "follow": false}, "key": key})
        .to_string()
        .into_bytes()
}

pub async fn queue_depth(queue: &str) -> u32 {
    let conn = connection().await;
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = conn.close(200, "done".into()).await;
    q.message_count()
}

pub async fn cleanup(cfg: &AmqpConfig) {
    let conn = connection().await;
    let ch = conn.create_channel().await.unwrap();
    for q in [&cfg.queue, &cfg.dead_letter_queue, &cfg.leader_queue] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for e in [&cfg.exchange, &cfg.dead_letter_exchange] {
        let _ = ch
            .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
}

pub async fn all_jobs(store: &Store) -> Vec<JobRow> {
    store
        .list(&ListFilter {
            kind: None,
            status: None,
            limit: 0,
        })
        .await
        .unwrap()
}

pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The broker-side ids of the connections whose client properties mention `name`.
pub fn connection_pids(name: &str) -> Vec<String> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(name))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Closes every connection named `name` from the broker side, as an outage would.
pub fn close_connections(name: &str) {
    for pid in connection_pids(name) {
        let status = std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", &pid, "test drops the connection"])
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success());
    }
}
