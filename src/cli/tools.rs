//! `demo`, `bench` and `simulate`: the bundled simulator, alone or with the daemon.

use clap::{Args, Subcommand};

use super::{wait_for_signal, EXIT_INVALID};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the temporary directory (database, config) and print its path.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Mirror N audit records per repository from the simulator into a fresh archive; print
    /// records/s and peak RSS. Run once per size: the peak is per process.
    Audit(BenchAuditArgs),
}

#[derive(Args, Debug)]
pub struct BenchAuditArgs {
    /// Audit records in each repository's simulated log.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Repositories, each with its own log (one stream each).
    #[arg(long, default_value_t = 1)]
    pub repos: usize,
    /// Records per page (1..=1000).
    #[arg(long, default_value_t = 1000)]
    pub page_size: u32,
    /// The simulator delays every answer by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// The job's `parallel_streams` (default: the job's default).
    #[arg(long)]
    pub parallel_streams: Option<u32>,
    /// The job's `prefetch_pages` (default: the job's default).
    #[arg(long)]
    pub prefetch_pages: Option<u32>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Address to listen on, e.g. 127.0.0.1:18080.
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: std::net::SocketAddr,
    /// Delay every API answer by this long, as a real cloud's would be (e.g. 100ms); change it
    /// while running with PUT /__sim/latency {"ms": N}.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub latency: std::time::Duration,
}

pub(super) async fn bench_audit(args: BenchAuditArgs) -> anyhow::Result<u8> {
    if args.records == 0 {
        eprintln!("error: --records must be at least 1");
        return Ok(EXIT_INVALID);
    }
    if !(1..=crate::jobs::audit_mirror::MAX_PAGE_SIZE).contains(&args.page_size) {
        eprintln!(
            "error: --page-size must be in 1..={}",
            crate::jobs::audit_mirror::MAX_PAGE_SIZE
        );
        return Ok(EXIT_INVALID);
    }
    if args.repos == 0 || args.repos > 1000 {
        eprintln!("error: --repos must be in 1..=1000");
        return Ok(EXIT_INVALID);
    }
    use crate::jobs::audit_mirror::{MAX_PARALLEL_STREAMS, MAX_PREFETCH_PAGES};
    if args
        .parallel_streams
        .is_some_and(|n| n == 0 || n > MAX_PARALLEL_STREAMS)
    {
        eprintln!("error: --parallel-streams must be in 1..={MAX_PARALLEL_STREAMS}");
        return Ok(EXIT_INVALID);
    }
    if args.prefetch_pages.is_some_and(|n| n > MAX_PREFETCH_PAGES) {
        eprintln!("error: --prefetch-pages must be in 0..={MAX_PREFETCH_PAGES}");
        return Ok(EXIT_INVALID);
    }
    let b = crate::bench::audit(crate::bench::AuditSetup {
        records: args.records,
        repos: args.repos,
        page_size: args.page_size,
        latency: std::time::Duration::from_millis(args.latency_ms),
        parallel_streams: args.parallel_streams,
        prefetch_pages: args.prefetch_pages,
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&b)?);
    } else {
        println!(
            "audit_mirror: {} records ({} repositories, {} streams at once, {} pages ahead, \
             latency {} ms) in {} pages of {} in {:.2} s = {:.0} records/s; peak RSS {}",
            b.records,
            b.repos,
            b.parallel_streams,
            b.prefetch_pages,
            b.latency_ms,
            b.pages,
            b.page_size,
            b.seconds,
            b.records_per_second,
            b.peak_rss_kib
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "unknown".into())
        );
    }
    Ok(0)
}

pub(super) async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let sim = crate::sim::Simulator::new(crate::sim::SimConfig {
        latency: args.latency,
        ..crate::sim::SimConfig::default()
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!("simulator listening on http://{addr} (control routes under /__sim/)");
    sim.serve(listener, wait_for_signal()).await?;
    Ok(())
}
