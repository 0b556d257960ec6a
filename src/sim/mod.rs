//! placeholder until the simulator lands
#![allow(dead_code, unused_variables)]
use std::time::Duration;
#[derive(Clone, Debug)]
pub struct SimConfig { pub domain_name: String, pub user_name: String, pub password: String, pub iam_project_id: String, pub project_name: String, pub token_ttl: Duration, pub sync_duration: Duration, pub seed_repos: std::ops::RangeInclusive<u32> }
impl Default for SimConfig { fn default() -> Self { todo!() } }
#[derive(Clone)] pub struct Simulator;
impl Simulator {
 pub fn new(cfg: SimConfig) -> Self { todo!() }
 pub async fn spawn(&self, addr: std::net::SocketAddr) -> std::io::Result<std::net::SocketAddr> { todo!() }
 pub async fn serve(&self, listener: tokio::net::TcpListener, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> { todo!() }
 pub fn shutdown(&self) {}
 pub fn inject(&self, fault: Fault) {}
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)] pub enum Route { #[default] IamToken, MirrorStart, MirrorShow }
#[derive(Clone, Debug, Default)]
pub struct Fault { pub route: Route, pub repository_id: Option<u32>, pub status: Option<u16>, pub error_code: Option<String>, pub error_msg: Option<String>, pub retry_after: Option<u64>, pub delay_ms: Option<u64>, pub reset: bool, pub malformed: bool, pub times: u32 }
