//! `store vacuum`: give the space of pruned and deleted rows back to the file system.

use clap::Subcommand;

use crate::config::Config;
use crate::size::format_size;
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Run VACUUM on the store (it rewrites the file without its free pages, then truncates the
    /// WAL) and say how much it freed. Safe while the daemon runs: it waits for the write lock
    /// (store.busy_timeout) and holds it while it rewrites; on a large store that pauses jobs
    /// for as long, so run it in a quiet hour.
    Vacuum,
}

pub(super) async fn vacuum(cfg: &Config) -> anyhow::Result<u8> {
    let store = Store::open_existing(&cfg.store).await?;
    let done = store.vacuum(&cfg.store.path).await;
    store.close().await;
    let done = done?;
    println!(
        "vacuumed {}: {} -> {} (freed {})",
        cfg.store.path.display(),
        format_size(done.before),
        format_size(done.after),
        format_size(done.before.saturating_sub(done.after))
    );
    Ok(0)
}
