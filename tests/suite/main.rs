//! The integration suite, one test binary: each module was a file of its own under `tests/`.
//! One binary links the crate once instead of once per file, which keeps a clean build's disk
//! use and link time small. Tests that install a process-wide log subscriber stay in their own
//! binaries (`tests/bad_input.rs`, `tests/no_secrets.rs`, `tests/no_secrets_aksk.rs`).
//!
//! Run one module's tests with `cargo test --test suite fleet::`.

#[path = "../support/mod.rs"]
mod support;

mod aksk;
mod amqp;
mod architecture;
mod audit_mirror;
mod cli;
mod cron;
mod demo;
mod disk_full;
mod enqueue_wait;
mod fleet;
mod http;
mod lifecycle;
mod lost_answers;
mod metrics;
mod operator_api;
mod purge_recycle_bin;
mod remote_mirror;
mod retention;
mod schedules;
mod signals;
mod sim_artifact;
mod storage_snapshot;
mod store_batch;
mod store_copy;
mod store_unusable;
mod swr_api_table;
mod swr_image_sync;
mod swr_image_sync_replay;
mod swr_share_api_table;
mod swr_share_audit;
mod systemd;
mod tls;
mod webhooks;
