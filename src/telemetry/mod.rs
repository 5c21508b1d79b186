//! Logs, metrics and the health endpoints.

pub mod metrics;
pub mod server;

pub use metrics::{DirectoryCompliance, Metrics, PolicyUsers};
pub use server::Health;

/// Logs to stderr; LOG_FORMAT=json for JSON lines, RUST_LOG for levels (default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
