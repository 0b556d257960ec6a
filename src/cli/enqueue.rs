//! `enqueue`: submit a job into the store, or publish it to AMQP when configured; with
//! `--wait`, then follow the job until it is final (see [`super::wait`]).

use clap::Args;
use serde_json::Value;

use super::{EXIT_FAILURE, EXIT_INVALID};
use crate::config::Config;
use crate::ingress::{self, Submission, Submitted};
use crate::store::Store;
use crate::Source;

#[derive(Args, Debug)]
pub struct EnqueueArgs {
    /// Job kind: remote_mirror, purge_recycle_bin, storage_snapshot, audit_mirror,
    /// swr_image_sync or swr_share_audit.
    pub kind: String,
    /// A parameter as key=value; the value is read as JSON when it parses (123, true,
    /// ["a","b"]), else as a string. Repeat for each parameter.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Idempotency key: a second submission with the same key creates no second job.
    #[arg(long)]
    pub key: Option<String>,
    /// Block until the job is final, then print its outcome. Exit 0 when it succeeded, 1 when
    /// it failed, was cancelled (or skipped), or --timeout passed first, 2 when rejected. With
    /// AMQP, waits for the row the daemon writes for the message's key (one is generated when
    /// --key is not given), then for that job.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: stop waiting after this long (e.g. 90s, 10m); the job goes on.
    #[arg(long, requires = "wait", value_parser = super::wait::parse_wait_timeout)]
    pub timeout: Option<std::time::Duration>,
    /// With --wait: print the final job as `jobs show --json` does.
    #[arg(long, requires = "wait")]
    pub json: bool,
}

/// Parses `key=value` parameters into a JSON object; the value is JSON when it parses.
pub fn parse_params(pairs: &[String]) -> Result<Value, String> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("--param {pair:?}: expected KEY=VALUE"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("--param {pair:?}: the key is empty"));
        }
        let value = serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.into()));
        if map.insert(k.to_string(), value).is_some() {
            return Err(format!("--param {k}: given twice"));
        }
    }
    Ok(Value::Object(map))
}

pub(super) async fn enqueue(cfg: &Config, args: EnqueueArgs) -> anyhow::Result<u8> {
    let params = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    if cfg.amqp.is_some() {
        // Check here so a bad job fails fast with its reason instead of a dead letter.
        let check = ingress::prepare(
            cfg,
            Submission {
                kind: args.kind.clone(),
                params: params.clone(),
                source: Source::Cli,
                key: args.key.clone(),
                schedule: None,
            },
        );
        if let Some(reason) = check.rejection {
            eprintln!("error: rejected: {reason} (nothing was published)");
            return Ok(EXIT_INVALID);
        }
        // Waiting needs a key to find the row the daemon writes for this message.
        let key = match (&args.key, args.wait) {
            (None, true) => Some(format!("enqueue-wait-{}", uuid::Uuid::new_v4().simple())),
            (k, _) => k.clone(),
        };
        return match ingress::amqp::publish(cfg, &args.kind, &params, key.as_deref()).await {
            Ok(()) => {
                let line = format!(
                    "published to exchange {:?}; the broker confirmed it",
                    cfg.amqp.as_ref().map(|a| a.exchange.as_str()).unwrap_or("")
                );
                if !args.wait {
                    println!("{line}");
                    return Ok(0);
                }
                eprintln!(
                    "{line}; waiting for the daemon to record it (key {:?})",
                    key.as_deref().unwrap_or("")
                );
                let waiting = super::wait::Waiting {
                    timeout: args.timeout,
                    json: args.json,
                };
                super::wait::wait_for_key(cfg, key.as_deref().unwrap_or(""), &waiting).await
            }
            Err(e) => {
                eprintln!("error: not submitted: {e}");
                Ok(EXIT_FAILURE)
            }
        };
    }
    let store = Store::open(&cfg.store).await?;
    let sub = Submission {
        kind: args.kind,
        params,
        source: Source::Cli,
        key: args.key,
        schedule: None,
    };
    let outcome = ingress::submit(&store, cfg, sub).await?;
    if args.wait {
        let waiting = super::wait::Waiting {
            timeout: args.timeout,
            json: args.json,
        };
        let code = super::wait::wait_submitted(&store, &outcome, &waiting).await;
        store.close().await;
        return code;
    }
    store.close().await;
    Ok(match outcome {
        Submitted::Queued(id) => {
            println!("queued job {id}");
            0
        }
        Submitted::Duplicate(id) => {
            println!("duplicate key: job {id} already exists; nothing added");
            0
        }
        Submitted::Coalesced(id) => {
            println!("joined queued job {id} (same kind and parameters)");
            0
        }
        Submitted::Skipped(id) => {
            println!("skipped (recorded as job {id})");
            0
        }
        Submitted::Rejected { id, reason } => {
            eprintln!("error: rejected: {reason} (recorded as job {id})");
            EXIT_INVALID
        }
    })
}
