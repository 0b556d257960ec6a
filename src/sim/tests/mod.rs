//! Behaviour of the simulator as seen over HTTP, one file per route group; the helpers that
//! start a simulator and call its routes are here.

mod control;
mod faults;
mod iam;
mod repo;
mod server;
mod swr;

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const JSON_UTF8: &str = "application/json;charset=utf-8";

fn fast_config() -> SimConfig {
    SimConfig {
        sync_duration: Duration::from_millis(150),
        ..SimConfig::default()
    }
}

async fn start(cfg: SimConfig) -> (Simulator, String) {
    let sim = Simulator::new(cfg);
    let addr = sim
        .spawn("127.0.0.1:0".parse().expect("loopback address"))
        .await
        .expect("bind simulator");
    (sim, format!("http://{addr}"))
}

fn token_request(user: &str, password: &str, domain: &str, scope: Value) -> Value {
    json!({
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": { "domain": { "name": domain }, "name": user, "password": password }
                }
            },
            "scope": scope
        }
    })
}

fn default_token_request() -> Value {
    token_request(
        "demo-user",
        "demo-password",
        "demo-account",
        json!({ "project": { "id": "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e" } }),
    )
}

async fn post_token(client: &reqwest::Client, base: &str, body: &Value) -> reqwest::Response {
    client
        .post(format!("{base}/v3/auth/tokens"))
        .header("content-type", JSON_UTF8)
        .body(body.to_string())
        .send()
        .await
        .expect("token request")
}

async fn get_token(client: &reqwest::Client, base: &str) -> String {
    let resp = post_token(client, base, &default_token_request()).await;
    assert_eq!(resp.status(), 201);
    resp.headers()
        .get("x-subject-token")
        .expect("X-Subject-Token header")
        .to_str()
        .expect("ascii token")
        .to_string()
}

async fn start_mirror(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    repo: &str,
    body: &Value,
) -> reqwest::Response {
    let mut req = client
        .post(format!("{base}/v4/repositories/{repo}/remote-mirror"))
        .json(body);
    if let Some(token) = token {
        req = req.header("x-auth-token", token);
    }
    req.send().await.expect("start request")
}

async fn show_mirror(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    repo: &str,
) -> reqwest::Response {
    let mut req = client
        .get(format!("{base}/v4/repositories/{repo}/remote-mirror"))
        .header("content-type", "application/json");
    if let Some(token) = token {
        req = req.header("x-auth-token", token);
    }
    req.send().await.expect("show request")
}

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

fn ts(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().expect("timestamp string")).expect("ISO-8601 time")
}

fn documented_401() -> Value {
    json!({ "error_code": "DEV.00000003", "error_msg": "Authentication information expired." })
}
