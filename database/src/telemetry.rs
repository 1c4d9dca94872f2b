//! Logging set-up: human-readable text or one JSON object per line, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// The server's filter when `RUST_LOG` is not set.
pub const SERVER_FILTER: &str = "info,sqlx=warn,tower_http=info";

/// Installs the global subscriber, logging to stderr. `RUST_LOG` overrides `default_filter`.
pub fn init(log_format: &str, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log_format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.init();
    }
}
