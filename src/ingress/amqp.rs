//! AMQP ingress (RabbitMQ through lapin): persist, then acknowledge.
//!
//! Each delivery is parsed and validated, its job committed to SQLite, and only then
//! acknowledged. Deliveries that arrive together (up to `batch_max`, within `batch_wait`) are
//! committed in one transaction and acknowledged together, which keeps the guarantee at a
//! fraction of the commit cost. Invalid deliveries are recorded as `rejected` jobs and rejected
//! without requeue, so the broker dead-letters them. When the store cannot commit, the
//! deliveries go back to the broker (nack, requeue) and consuming backs off: nothing is acked
//! that was not stored. A delivery is never held while its job waits for a retry: the job row
//! is the retry's memory.
//!
//! The topology is declared on every (re)connect; the connection is re-established with capped
//! exponential backoff, each state change logged once. Among several instances, cron leadership
//! belongs to whichever holds the exclusive consumer on `leader_queue`: the broker grants it to
//! one connection at a time and takes it back when that connection dies. The session records it
//! in the [`Leader`] flag the cron scheduler reads (see [`super::leader`]).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::leader::Leader;
use super::{
    json, prepare_checked, prepare_invalid_envelope, prepare_raw, reject, submit_many, Prepared,
    Submission, Submitted,
};
use crate::config::{AmqpConfig, Config, QueueType};
use crate::store::Store;
use crate::Source;

/// An AMQP failure, with the broker named (never its credentials).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the AMQP broker at {url}: {source}")]
    Connect { url: String, source: lapin::Error },
    #[error("AMQP broker at {url}: {what}: {source}")]
    Broker {
        url: String,
        what: &'static str,
        source: lapin::Error,
    },
    #[error("the broker did not confirm the message within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound to exchange {exchange:?} with routing key {routing_key:?}: the message was returned unrouted")]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    #[error("{0}")]
    Config(String),
}

/// The broker's connection URL with credentials (never logged), and the one without (for messages).
fn urls(cfg: &AmqpConfig, password: &SecretString) -> Result<(SecretString, String), Error> {
    let mut u = url::Url::parse(&cfg.url)
        .map_err(|e| Error::Config(format!("amqp.url {:?}: {e}", cfg.url)))?;
    let shown = u.to_string();
    if !u.query_pairs().any(|(k, _)| k == "frame_max") {
        u.query_pairs_mut()
            .append_pair("frame_max", &cfg.frame_max.to_string());
    }
    u.set_username(&cfg.username)
        .and_then(|_| u.set_password(Some(password.expose_secret())))
        .map_err(|_| Error::Config(format!("amqp.url {:?} cannot carry credentials", cfg.url)))?;
    Ok((SecretString::from(u.to_string()), shown))
}

/// The AMQP password from the config (the broker's default `guest` when unset).
pub fn password(cfg: &Config) -> Result<SecretString, Error> {
    match cfg.amqp.as_ref().and_then(|a| a.password.as_ref()) {
        Some(src) => src
            .resolve("amqp.password", &cfg.base_dir)
            .map_err(|e| Error::Config(e.to_string())),
        None => Ok(SecretString::from("guest".to_string())),
    }
}

/// Opens a connection on the tokio runtime.
pub async fn connect(cfg: &AmqpConfig, password: &SecretString) -> Result<Connection, Error> {
    let (url, shown) = urls(cfg, password)?;
    let name = cfg
        .connection_name
        .clone()
        .unwrap_or_else(|| format!("codearts-syncd pid {}", std::process::id()));
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    Connection::connect(url.expose_secret(), props)
        .await
        .map_err(|source| Error::Connect { url: shown, source })
}

/// A name or tag from the config as an AMQP short string (at most 255 bytes).
fn short(key: &str, value: &str) -> Result<ShortString, Error> {
    ShortString::try_new(value).map_err(|_| {
        Error::Config(format!(
            "{key} {value:?} is {} bytes long; AMQP names are at most 255 bytes",
            value.len()
        ))
    })
}

fn broker<'a>(cfg: &'a AmqpConfig, what: &'static str) -> impl FnOnce(lapin::Error) -> Error + 'a {
    move |source| Error::Broker {
        url: cfg.url.clone(),
        what,
        source,
    }
}

/// Declares the exchange, the queue bound to it (with its dead-letter exchange and type), and
/// the dead-letter exchange with its queue. Idempotent; run on every (re)connect.
pub async fn declare_topology(ch: &Channel, cfg: &AmqpConfig) -> Result<(), Error> {
    let exchange = short("amqp.exchange", &cfg.exchange)?;
    let dead_letter_exchange = short("amqp.dead_letter_exchange", &cfg.dead_letter_exchange)?;
    let dead_letter_queue = short("amqp.dead_letter_queue", &cfg.dead_letter_queue)?;
    let queue = short("amqp.queue", &cfg.queue)?;
    let routing_key = short("amqp.routing_key", &cfg.routing_key)?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        exchange.clone(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await
    .map_err(broker(cfg, "declaring the exchange"))?;
    ch.exchange_declare(
        dead_letter_exchange.clone(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await
    .map_err(broker(cfg, "declaring the dead-letter exchange"))?;
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(dead_letter_queue.clone(), durable_q, FieldTable::default())
        .await
        .map_err(broker(cfg, "declaring the dead-letter queue"))?;
    ch.queue_bind(
        dead_letter_queue,
        dead_letter_exchange,
        ShortString::default(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(broker(cfg, "binding the dead-letter queue"))?;
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString(LongString::from(cfg.dead_letter_exchange.as_str())),
    );
    let qtype = match cfg.queue_type {
        QueueType::Classic => "classic",
        QueueType::Quorum => "quorum",
    };
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from(qtype)),
    );
    ch.queue_declare(queue.clone(), durable_q, args)
        .await
        .map_err(broker(cfg, "declaring the job queue"))?;
    ch.queue_bind(
        queue,
        exchange,
        routing_key,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(broker(cfg, "binding the job queue"))?;
    Ok(())
}

/// The message format: `{"kind": "...", "params": {...}, "key": "..."}`. A key named twice,
/// here or anywhere in `params`, rejects the message (see [`super::json`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    kind: String,
    #[serde(default = "empty_object")]
    params: Value,
    #[serde(default)]
    key: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Turns one message body into a prepared submission (valid, or rejected with the reason). A
/// rejected one keeps a bounded, redacted copy of the body (see [`super::reject`]).
pub fn parse_message(
    cfg: &Config,
    max_bytes: usize,
    body: &[u8],
    message_id: Option<String>,
) -> Prepared {
    if body.len() > max_bytes {
        return prepare_raw(
            Source::Amqp,
            None,
            body,
            message_id,
            format!(
                "message of {} bytes exceeds amqp.max_message_bytes ({max_bytes}); only its size, SHA-256 and first {} bytes are kept",
                body.len(),
                reject::MAX_UNPARSED_PREFIX
            ),
        );
    }
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            return prepare_raw(
                Source::Amqp,
                None,
                body,
                message_id,
                format!("message body is not UTF-8: {e}"),
            )
        }
    };
    let (value, duplicate) = match json::from_str_strict(text) {
        Ok(v) => (v, None),
        // A repeated key: the body is JSON all the same, read last-wins only to keep it.
        Err(e) => match serde_json::from_str::<Value>(text) {
            Ok(v) => (v, Some(format!("message is not a valid job: {e}"))),
            Err(_) => {
                return prepare_raw(
                    Source::Amqp,
                    None,
                    body,
                    message_id,
                    format!("message is not a valid job: not JSON: {e}"),
                )
            }
        },
    };
    match Envelope::deserialize(value) {
        Ok(env) => prepare_checked(
            cfg,
            Submission {
                kind: env.kind,
                params: env.params,
                source: Source::Amqp,
                key: env.key.or(message_id),
                schedule: None,
            },
            duplicate,
        ),
        Err(e) => {
            let reason = duplicate.unwrap_or_else(|| {
                format!(
                    "message is not a valid job (expected {{\"kind\", \"params\", \"key\"}}): {e}"
                )
            });
            // Read again (it parsed once, so it parses) to keep it: rare, unlike a copy of
            // every message to have it at hand.
            let value = serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
            prepare_invalid_envelope(Source::Amqp, value, body, message_id, reason)
        }
    }
}

/// Whether the consumer is connected to the broker and consuming (readiness reads it).
#[derive(Clone, Debug, Default)]
pub struct Connected(Arc<std::sync::atomic::AtomicBool>);

impl Connected {
    /// True while a session consumes.
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    fn set(&self, v: bool) {
        self.0.store(v, std::sync::atomic::Ordering::Release);
        metrics::gauge!("codearts_syncd_amqp_connected").set(if v { 1.0 } else { 0.0 });
    }
}

/// Consumes until `cancel` fires, reconnecting as needed; `leader` tracks cron leadership and
/// `connected` whether a session is consuming.
pub async fn run(
    store: Store,
    cfg: Arc<Config>,
    leader: Leader,
    connected: Connected,
    cancel: CancellationToken,
) {
    let Some(acfg) = cfg.amqp.clone() else {
        return;
    };
    let password = match password(&cfg) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "AMQP ingress disabled");
            return;
        }
    };
    let mut delay = acfg.reconnect_initial;
    let mut failures = 0u32;
    while !cancel.is_cancelled() {
        let session = Session {
            store: &store,
            cfg: &cfg,
            acfg: &acfg,
            leader: &leader,
            cancel: &cancel,
            consuming: &connected,
        };
        match session.run(&password, failures).await {
            Ok(()) => break,
            Err(SessionEnd {
                connected: was_connected,
                error,
            }) => {
                connected.set(false);
                leader.set(false);
                let connected = was_connected;
                if connected {
                    tracing::warn!(error = %error, "AMQP connection lost; reconnecting");
                    failures = 0;
                    delay = acfg.reconnect_initial;
                } else if failures == 0 {
                    tracing::warn!(error = %error, "AMQP broker unreachable; retrying with backoff");
                } else {
                    tracing::debug!(error = %error, attempt = failures + 1, "AMQP broker still unreachable");
                }
                if !connected {
                    failures += 1;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(acfg.reconnect_max);
    }
    leader.resign();
}

struct SessionEnd {
    connected: bool,
    error: String,
}

struct Session<'a> {
    store: &'a Store,
    cfg: &'a Arc<Config>,
    acfg: &'a AmqpConfig,
    leader: &'a Leader,
    cancel: &'a CancellationToken,
    consuming: &'a Connected,
}

impl Session<'_> {
    async fn run(&self, password: &SecretString, failures: u32) -> Result<(), SessionEnd> {
        let not_connected = |e: Error| SessionEnd {
            connected: false,
            error: e.to_string(),
        };
        let conn = Arc::new(connect(self.acfg, password).await.map_err(not_connected)?);
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| not_connected(broker(self.acfg, "opening a channel")(e)))?;
        declare_topology(&ch, self.acfg)
            .await
            .map_err(not_connected)?;
        ch.basic_qos(self.acfg.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| not_connected(broker(self.acfg, "setting prefetch")(e)))?;
        let tag = ShortString::from(format!("codearts-syncd-{}", std::process::id()));
        let queue = short("amqp.queue", &self.acfg.queue).map_err(not_connected)?;
        let leader_queue =
            short("amqp.leader_queue", &self.acfg.leader_queue).map_err(not_connected)?;
        let mut consumer = ch
            .basic_consume(
                queue,
                tag.clone(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| not_connected(broker(self.acfg, "starting the consumer")(e)))?;
        if failures > 0 {
            tracing::info!(
                queue = %self.acfg.queue,
                after_attempts = failures + 1,
                "AMQP connected; consuming"
            );
        } else {
            tracing::info!(queue = %self.acfg.queue, prefetch = self.acfg.prefetch, "AMQP connected; consuming");
        }
        self.consuming.set(true);
        let lead = tokio::spawn(hold_leadership(
            conn.clone(),
            leader_queue,
            self.leader.clone(),
        ));
        let lost = |what: String| SessionEnd {
            connected: true,
            error: what,
        };
        let mut store_failures = 0u32;
        let result = loop {
            let first = tokio::select! {
                _ = self.cancel.cancelled() => break Ok(()),
                next = consumer.next() => next,
            };
            let first = match first {
                Some(Ok(d)) => d,
                Some(Err(e)) => break Err(lost(e.to_string())),
                None => break Err(lost("the consumer was cancelled by the broker".into())),
            };
            let mut batch = vec![first];
            let gather_until = tokio::time::Instant::now() + self.acfg.batch_wait;
            while batch.len() < self.acfg.batch_max {
                match tokio::time::timeout_at(gather_until, consumer.next()).await {
                    Ok(Some(Ok(d))) => batch.push(d),
                    _ => break,
                }
            }
            match self.settle_batch(&ch, batch).await {
                Ok(()) => store_failures = 0,
                Err(BatchError::Store) => {
                    // Back off, capped low so that consuming resumes soon after the store can
                    // write again; meanwhile the deliveries wait in the broker.
                    store_failures += 1;
                    let pause = Duration::from_millis(50 * 2u64.pow(store_failures.min(6)));
                    tokio::select! {
                        _ = self.cancel.cancelled() => break Ok(()),
                        _ = tokio::time::sleep(pause.min(Duration::from_secs(2))) => {}
                    }
                }
                Err(BatchError::Broker(e)) => break Err(lost(e)),
            }
        };
        // The leadership task's channel goes before the connection closes: dropped after it,
        // lapin reports the closed connection as an error.
        lead.abort();
        let _ = lead.await;
        self.consuming.set(false);
        if result.is_ok() {
            self.leader.resign();
            // Shutdown: stop deliveries first; unacknowledged prefetched ones return to the
            // queue when the channel closes.
            let _ = ch.basic_cancel(tag, BasicCancelOptions::default()).await;
            let _ = ch.close(200, ShortString::from("shutdown")).await;
            let _ = conn.close(200, ShortString::from("shutdown")).await;
            tracing::info!("AMQP consumer stopped");
        }
        result
    }

    /// Commits a batch, then acknowledges it; on a store failure hands it back to the broker.
    async fn settle_batch(&self, ch: &Channel, batch: Vec<Delivery>) -> Result<(), BatchError> {
        let prepared: Vec<Prepared> = batch
            .iter()
            .map(|d| {
                let id = d.properties.message_id().as_ref().map(|s| s.to_string());
                parse_message(self.cfg, self.acfg.max_message_bytes, &d.data, id)
            })
            .collect();
        let last_tag = batch.last().map(|d| d.delivery_tag).unwrap_or(0);
        let results = match submit_many(self.store, &prepared).await {
            Ok(r) => r,
            Err(e) => {
                // A passing condition (a full disk) is logged once by the store's health.
                if !e.is_transient() {
                    tracing::error!(error = %e, deliveries = batch.len(), "cannot store deliveries; returning them to the broker");
                }
                count_deliveries("requeued", batch.len());
                ch.basic_nack(
                    last_tag,
                    BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    },
                )
                .await
                .map_err(|e| BatchError::Broker(e.to_string()))?;
                return Err(BatchError::Store);
            }
        };
        let (mut stored, mut duplicate, mut rejected) = (0, 0, 0);
        for r in &results {
            match r {
                Submitted::Rejected { .. } => rejected += 1,
                Submitted::Duplicate(_) => duplicate += 1,
                _ => stored += 1,
            }
        }
        for (outcome, n) in [
            ("stored", stored),
            ("duplicate", duplicate),
            ("rejected", rejected),
        ] {
            if n > 0 {
                count_deliveries(outcome, n);
            }
        }
        let any_rejected = results
            .iter()
            .any(|r| matches!(r, Submitted::Rejected { .. }));
        if !any_rejected {
            // Every delivery up to the last one in this batch is stored: one ack covers them.
            return ch
                .basic_ack(last_tag, BasicAckOptions { multiple: true })
                .await
                .map_err(|e| BatchError::Broker(e.to_string()));
        }
        for (d, r) in batch.iter().zip(&results) {
            let sent = match r {
                Submitted::Rejected { .. } => {
                    ch.basic_reject(d.delivery_tag, BasicRejectOptions { requeue: false })
                        .await
                }
                _ => {
                    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
                        .await
                }
            };
            sent.map_err(|e| BatchError::Broker(e.to_string()))?;
        }
        Ok(())
    }
}

fn count_deliveries(outcome: &'static str, n: usize) {
    metrics::counter!("codearts_syncd_amqp_deliveries_total", "outcome" => outcome)
        .increment(n as u64);
}

enum BatchError {
    Store,
    Broker(String),
}

/// Tries, once a second, to become the exclusive consumer of the leader queue; holds the
/// channel, and `leader` set, while it leads. The broker ends the leadership with the connection.
async fn hold_leadership(conn: Arc<Connection>, queue: ShortString, leader: Leader) {
    let tag = ShortString::from(format!("cron-leader-{}", std::process::id()));
    loop {
        let attempt = async {
            let ch = conn.create_channel().await?;
            ch.queue_declare(
                queue.clone(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
            let asked_at = crate::now_ms();
            let consumer = ch
                .basic_consume(
                    queue.clone(),
                    tag.clone(),
                    BasicConsumeOptions {
                        exclusive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                // Refused with the queue declared: another instance holds the consumer.
                .inspect_err(|_| leader.saw_other(asked_at))?;
            Ok::<_, lapin::Error>((ch, consumer))
        };
        match attempt.await {
            Ok((ch, mut consumer)) => {
                leader.set(true);
                // Nothing is published to the leader queue; the stream ends with the channel.
                while let Some(item) = consumer.next().await {
                    if item.is_err() {
                        break;
                    }
                }
                leader.set(false);
                drop(ch);
            }
            Err(e) => {
                tracing::trace!(error = %e, "cron leadership held by another instance");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Publishes one job message with publisher confirms and mandatory routing (for `enqueue`).
pub async fn publish(
    cfg: &Config,
    kind: &str,
    params: &Value,
    key: Option<&str>,
) -> Result<(), Error> {
    let acfg = cfg
        .amqp
        .as_ref()
        .ok_or_else(|| Error::Config("no [amqp] section in the configuration".into()))?;
    let password = password(cfg)?;
    let exchange = short("amqp.exchange", &acfg.exchange)?;
    let routing_key = short("amqp.routing_key", &acfg.routing_key)?;
    let work = async {
        let conn = connect(acfg, &password).await?;
        let ch = conn
            .create_channel()
            .await
            .map_err(broker(acfg, "opening a channel"))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(broker(acfg, "enabling publisher confirms"))?;
        ch.exchange_declare(
            exchange.clone(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(broker(acfg, "declaring the exchange"))?;
        let body = serde_json::json!({"kind": kind, "params": params, "key": key}).to_string();
        let message_id = match key {
            Some(k) => short("the idempotency key", k)?,
            None => ShortString::from(uuid::Uuid::new_v4().to_string()),
        };
        let confirm = ch
            .basic_publish(
                exchange,
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body.as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type(ShortString::from("application/json"))
                    .with_message_id(message_id),
            )
            .await
            .map_err(broker(acfg, "publishing"))?
            .await
            .map_err(broker(acfg, "waiting for the confirm"))?;
        let _ = ch.close(200, ShortString::from("done")).await;
        let _ = conn.close(200, ShortString::from("done")).await;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => Err(Error::Unroutable {
                exchange: acfg.exchange.clone(),
                routing_key: acfg.routing_key.clone(),
            }),
            Confirmation::Nack(_) => Err(Error::Nacked),
        }
    };
    tokio::time::timeout(acfg.confirm_timeout, work)
        .await
        .map_err(|_| Error::ConfirmTimeout(acfg.confirm_timeout))?
}
