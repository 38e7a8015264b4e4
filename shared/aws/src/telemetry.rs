//! Logging set-up shared by every binary: one JSON object per line, fields flattened so that
//! CloudWatch Logs Insights can filter on `action`, `pool`, `instance_id`...

use tracing_subscriber::EnvFilter;

/// JSON logs to stdout. Level from `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging controls),
/// else `RUST_LOG`, else `info`.
pub fn init_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(EnvFilter::new(level.to_lowercase()))
        .init();
}
