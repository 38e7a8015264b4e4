//! Logging set-up shared by every binary: one JSON object per line, the event's fields flattened
//! and the current span's fields (saga id, account, region, target) under `span`, so CloudWatch
//! Logs Insights can filter on `span.saga_id`, `action`, `pool`...

use tracing_subscriber::EnvFilter;

/// JSON logs to stdout at `level` (the function's `Env::log_level`).
pub fn init_logging(level: &str) {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(EnvFilter::new(level.to_lowercase()))
        .init();
}
