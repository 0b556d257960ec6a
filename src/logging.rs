//! Log output through tracing-subscriber: readable text on a terminal or JSON lines, filtered by
//! `RUST_LOG`, else by a default that keeps other crates at WARN (see [`default_filter`]). Lines
//! about a job carry its `id` and `kind` through the `job` span the engine opens around every
//! run. Secrets never reach a log line: they live in `SecretString`s and sensitive header values,
//! and no request body or header is logged.
//!
//! The filter sits behind a reload layer, so the daemon can change `logging.level` on SIGHUP
//! ([`set_level`]) without a restart. Colour only when stderr is a terminal and `NO_COLOR` is
//! unset or empty.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::{LogFormat, LogLevel};

/// The installed filter's reload handle, and whether `RUST_LOG` chose the filter.
struct Installed {
    handle: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// The filter used when `RUST_LOG` is not set: this crate at `level`, every other crate at WARN,
/// and lapin silenced (it logs message bodies at WARN; RUST_LOG can turn it back on).
pub fn default_filter(level: LogLevel) -> String {
    format!("warn,codearts_syncd={},lapin=off", level.as_str())
}

/// The filter: `RUST_LOG` when set (and valid), else `default`; true when `RUST_LOG` chose it.
fn filter_with_origin(default: &str) -> (EnvFilter, bool) {
    match EnvFilter::try_from_default_env() {
        Ok(f) => (f, true),
        Err(_) => (EnvFilter::new(default), false),
    }
}

/// The filter: `RUST_LOG` when set, else `default`.
pub fn filter(default: &str) -> EnvFilter {
    filter_with_origin(default).0
}

/// Whether to colour the output: stderr is a terminal and `NO_COLOR` is unset or empty.
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Installs the global subscriber writing to stderr. Does nothing if one is already installed.
pub fn init(format: LogFormat, default_filter: &str) {
    let (filter, from_env) = filter_with_origin(default_filter);
    install(format, filter, from_env, std::io::stderr, colour());
}

/// Installs the global subscriber writing to `writer` (tests capture logs this way), never in
/// colour.
pub fn init_with_writer<W>(format: LogFormat, filter: EnvFilter, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    install(format, filter, false, writer, false);
}

fn install<W>(format: LogFormat, filter: EnvFilter, from_env: bool, writer: W, ansi: bool)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_target(false)
                    .with_ansi(ansi),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(writer)
                    .with_target(false)
                    .with_ansi(false)
                    .with_current_span(true)
                    .with_span_list(false)
                    .flatten_event(true),
            )
            .try_init(),
    };
    if installed.is_ok() {
        let _ = INSTALLED.set(Installed { handle, from_env });
    }
}

/// What [`set_level`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelChange {
    /// The default filter now uses the new level.
    Applied,
    /// `RUST_LOG` chose the filter, and it stays in force.
    KeptRustLog,
    /// No reloadable subscriber is installed (e.g. in tests that install their own).
    NotInstalled,
}

/// Switches the default filter to `level` (see [`default_filter`]), unless `RUST_LOG` chose the
/// filter at start.
pub fn set_level(level: LogLevel) -> Result<LevelChange, String> {
    let Some(installed) = INSTALLED.get() else {
        return Ok(LevelChange::NotInstalled);
    };
    if installed.from_env {
        return Ok(LevelChange::KeptRustLog);
    }
    installed
        .handle
        .reload(EnvFilter::new(default_filter(level)))
        .map_err(|e| e.to_string())?;
    Ok(LevelChange::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_keeps_other_crates_at_warn_and_lapin_off() {
        let f = default_filter(LogLevel::Debug);
        assert_eq!(f, "warn,codearts_syncd=debug,lapin=off");
        // It parses as a filter.
        let _ = EnvFilter::builder().parse(&f).expect("valid filter");
    }
}
