//! `storage report`, `audit verify` and `audit export`: what storage_snapshot and audit_mirror
//! jobs recorded.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::render::render_table;
use super::{EXIT_FAILURE, EXIT_INVALID};
use crate::config::Config;
use crate::rfc3339;
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Print the latest snapshot and the daily trend; `--svg` also draws the trend.
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Only this repository (its usage and its trend); default the whole project.
    #[arg(long)]
    pub repo: Option<String>,
    /// Days of trend to show.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Also draw the trend as an SVG chart into this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute every stream's SHA-256 chain; exits 1 naming the first broken link.
    Verify(VerifyArgs),
    /// Stream the archive (oldest archived first) as JSON Lines or CSV.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Export formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ExportFormatArg {
    /// One JSON object per line: the record verbatim plus archive fields.
    Jsonl,
    /// A header row, then the archive fields and every audit field as columns.
    Csv,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormatArg,
    /// Only this repository id.
    #[arg(long)]
    pub repo: Option<String>,
    /// Only records whose time is at or after this: YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS" (the
    /// time as the API reports it).
    #[arg(long)]
    pub since: Option<String>,
    /// Write here instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub(super) async fn storage_report(cfg: &Config, args: ReportArgs) -> anyhow::Result<u8> {
    use crate::size::format_size;
    if args.days == 0 {
        eprintln!("error: --days must be at least 1");
        return Ok(EXIT_INVALID);
    }
    let store = Store::open_existing(&cfg.store).await?;
    let snapshot = store.latest_snapshot().await?;
    let trend = store
        .storage_trend(args.repo.as_deref().unwrap_or(""), args.days)
        .await?;
    store.close().await;
    let Some(snap) = snapshot else {
        eprintln!("error: no storage snapshot yet; run a storage_snapshot job first");
        return Ok(EXIT_INVALID);
    };
    let repos: Vec<_> = snap
        .repos
        .iter()
        .filter(|r| args.repo.as_deref().is_none_or(|id| r.repo_id == id))
        .collect();
    if let Some(id) = &args.repo {
        if repos.is_empty() && trend.is_empty() {
            eprintln!("error: --repo {id}: not in the latest snapshot and no trend recorded");
            return Ok(EXIT_INVALID);
        }
    }
    if let Some(path) = &args.svg {
        let title = match &args.repo {
            Some(id) => format!("storage used: {id}"),
            None => "storage used: whole project".to_string(),
        };
        crate::chart::trend_svg(&trend, &title, path)?;
        eprintln!("trend chart written to {}", path.display());
    }
    if args.json {
        let v = serde_json::json!({
            "snapshot": {
                "id": snap.id,
                "taken_at": rfc3339(snap.taken_at),
                "total_bytes": snap.total_bytes,
                "total_storage": snap.total_text,
                "total_count": snap.total_count,
            },
            "repos": repos,
            "trend": trend,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "snapshot {} taken {}: total {} ({} bytes, API: {:?}), {} files",
        snap.id,
        rfc3339(snap.taken_at),
        format_size(snap.total_bytes.max(0) as u64),
        snap.total_bytes,
        snap.total_text,
        snap.total_count.map_or("-".into(), |c| c.to_string())
    );
    let rows: Vec<[String; 5]> = repos
        .iter()
        .map(|r| {
            [
                r.repo_id.clone(),
                r.format.clone().unwrap_or_default(),
                r.used_bytes.to_string(),
                r.used_text.clone(),
                r.files_count.map_or("-".into(), |c| c.to_string()),
            ]
        })
        .collect();
    println!();
    print!(
        "{}",
        render_table(
            &["REPOSITORY", "FORMAT", "BYTES", "API SIZE", "FILES"],
            &rows
        )
    );
    let rows: Vec<[String; 4]> = trend
        .iter()
        .map(|t| {
            [
                t.day.clone(),
                t.used_bytes.to_string(),
                format_size(t.used_bytes.max(0) as u64),
                t.files_count.map_or("-".into(), |c| c.to_string()),
            ]
        })
        .collect();
    println!();
    println!(
        "trend ({}), last {} days:",
        args.repo.as_deref().unwrap_or("whole project"),
        args.days
    );
    print!(
        "{}",
        render_table(&["DAY", "BYTES", "SIZE", "FILES"], &rows)
    );
    Ok(0)
}

pub(super) async fn audit_verify(cfg: &Config, args: VerifyArgs) -> anyhow::Result<u8> {
    let store = Store::open_existing(&cfg.store).await?;
    let v = store.verify_audit().await?;
    store.close().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    // "intact, 0 records" would pass a check that verified nothing.
    if v.records == 0 && v.broken.is_none() {
        eprintln!(
            "error: no audit records archived yet in {}; nothing to verify (run an audit_mirror job first)",
            cfg.store.path.display()
        );
        return Ok(EXIT_FAILURE);
    }
    match &v.broken {
        None => {
            if !args.json {
                println!(
                    "audit archive intact: {} records in {} streams",
                    v.records, v.streams
                );
            }
            Ok(0)
        }
        Some(b) => {
            let at = match (&b.record_id, b.seq) {
                (Some(id), Some(seq)) => format!("record {id} (archive seq {seq})"),
                (None, Some(seq)) => format!("after archive seq {seq}"),
                _ => "its head".to_string(),
            };
            eprintln!(
                "error: audit archive broken: stream {}/{}: {at}: {} ({} records verified before it)",
                b.module, b.repo, b.reason, v.records
            );
            Ok(EXIT_FAILURE)
        }
    }
}

/// Checks `--since` and normalises it to the archive's `YYYY-MM-DD HH:MM:SS` form.
pub fn parse_since(s: &str) -> Result<String, String> {
    let t = s.trim().replace('T', " ");
    if chrono::NaiveDate::parse_from_str(&t, "%Y-%m-%d").is_ok() {
        return Ok(t);
    }
    if chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S").is_ok() {
        return Ok(t);
    }
    Err(format!(
        "--since {s:?}: expected YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\""
    ))
}

pub(super) async fn audit_export(cfg: &Config, args: ExportArgs) -> anyhow::Result<u8> {
    use crate::store::archive::{ExportFilter, ExportFormat};
    let since = match args.since.as_deref().map(parse_since).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    let format = match args.format {
        ExportFormatArg::Jsonl => ExportFormat::Jsonl,
        ExportFormatArg::Csv => ExportFormat::Csv,
    };
    let filter = ExportFilter {
        repo: args.repo,
        since,
    };
    let store = Store::open_existing(&cfg.store).await?;
    let n = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("--output {}: {e}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            store.export_audit(&filter, format, &mut w).await?
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout());
            store.export_audit(&filter, format, &mut w).await?
        }
    };
    store.close().await;
    eprintln!("exported {n} records");
    Ok(0)
}
