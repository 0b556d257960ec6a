//! Log output through tracing-subscriber: readable text on a terminal or JSON lines, filtered by
//! `RUST_LOG`. Lines about a job carry its `id` and `kind` through the `job` span the engine
//! opens around every run. Secrets never reach a log line: they live in `SecretString`s and
//! sensitive header values, and no request body or header is logged.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The filter: `RUST_LOG` when set, else `default`.
pub fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Installs the global subscriber writing to stderr. Does nothing if one is already installed.
pub fn init(format: LogFormat, default_filter: &str) {
    init_with_writer(format, filter(default_filter), std::io::stderr);
}

/// Installs the global subscriber writing to `writer` (tests capture logs this way).
pub fn init_with_writer<W>(format: LogFormat, filter: EnvFilter, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
    };
}
